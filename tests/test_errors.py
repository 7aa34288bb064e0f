"""One error tree, one table to exit codes (aibx/errors.py), and the transports' connect errors in it."""

from __future__ import annotations

import pytest

from aibx import errors
from aibx.engine.events import Outcome, exit_code_of
from aibx.engine.transports.base import AuthError, ConnectError, HostKeyError, TlsError
from aibx.engine.transports.winrm import WinRMConfigError
from aibx.exitcodes import ExitCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidInput, ExitCode.USAGE),
        (errors.InvalidSettings, ExitCode.USAGE),
        (errors.StepFailure, ExitCode.FAILED),
        (errors.ConnectFailure, ExitCode.CONNECT),
        (errors.HostKeyRejected, ExitCode.CONNECT),
        (errors.TimedOut, ExitCode.TIMEOUT),
        (errors.Interrupted, ExitCode.INTERRUPTED),
        (errors.AibxError, ExitCode.INTERNAL),
    ],
)
def test_every_error_has_its_documented_exit_code(error: type[errors.AibxError], code: ExitCode) -> None:
    assert errors.exit_code(error) == code
    assert errors.exit_code(error()) == code


@pytest.mark.parametrize(
    ("kind", "cls", "not_let_in"),
    [
        ("hostkey", HostKeyError, True),
        ("auth", AuthError, True),
        ("tls", TlsError, True),
        ("refused", ConnectError, False),
    ],
)
def test_a_connect_error_is_typed_by_its_kind(kind: str, cls: type[ConnectError], not_let_in: bool) -> None:
    error = ConnectError(kind, "ssh://vm", "detail", "a hint")
    assert type(error) is cls and error.kind == kind
    assert isinstance(error, errors.NotLetIn) is not_let_in
    assert errors.exit_code(error) == ExitCode.CONNECT
    assert str(error) == "cannot connect to ssh://vm: detail\nhint: a hint"


def test_settings_a_transport_refuses_are_invalid_input_and_still_value_errors() -> None:
    error = WinRMConfigError("Basic over plain HTTP")
    assert isinstance(error, errors.InvalidInput) and isinstance(error, ValueError)
    assert errors.exit_code(error) == ExitCode.USAGE


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome.SUCCEEDED, 0),
        (Outcome.FAILED, 1),
        (Outcome.REFUSED, 2),
        (Outcome.CONNECT_FAILED, 3),
        (Outcome.CONNECTION_LOST, 3),
        (Outcome.TIMED_OUT, 4),
        (Outcome.INTERRUPTED, 130),
    ],
)
def test_a_runs_outcome_maps_through_the_one_table(outcome: Outcome, code: int) -> None:
    assert exit_code_of(outcome) == code


def test_the_cli_turns_an_aibx_error_into_its_message_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aibx import cli
    from aibx.commands import validate

    def refuses(args: object) -> int:
        raise errors.TimedOut("the VM did not come back within 20m00s")

    monkeypatch.setattr(validate, "run", refuses)
    assert cli.main(["validate", "t.json"]) == ExitCode.TIMEOUT
    err = capsys.readouterr().err
    assert err == "aibx: the VM did not come back within 20m00s\n"
