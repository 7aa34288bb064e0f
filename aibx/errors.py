"""One tree of errors under ``AibxError``, and one table from error type to exit code.

::

    AibxError
    ├── InvalidInput            2  a template, a flag or a setting is wrong (InvalidSettings: also a ValueError)
    ├── StepFailure             1  a step failed (its exit code, a dropped connection without a reboot, ...)
    ├── ConnectFailure          3  the VM cannot be reached ...
    │   └── NotLetIn               ... or answers but does not let us in; waiting does not help:
    │       ├── HostKeyRejected       the SSH host key is unknown or changed
    │       ├── AuthFailed            the user name, key, password or certificate is refused
    │       └── TlsFailed             the VM's certificate does not verify
    ├── TimedOut                4  the build deadline, or a VM that did not come back
    └── Interrupted           130  Ctrl-C, SIGTERM

Anything else that escapes is a bug in aibx: exit 70 (``ExitCode.INTERNAL``), with the advice to report it.
"""

from __future__ import annotations

from aibx.exitcodes import ExitCode


class AibxError(Exception):
    """The root of every error aibx reports to the user as a message and an exit code."""


class InvalidInput(AibxError):
    pass


class InvalidSettings(InvalidInput, ValueError):
    """Settings a transport or a compiler refuses (a WinRM auth without its password, ...)."""


class StepFailure(AibxError):
    pass


class ConnectFailure(AibxError):
    pass


class NotLetIn(ConnectFailure):
    pass


class HostKeyRejected(NotLetIn):
    pass


class AuthFailed(NotLetIn):
    pass


class TlsFailed(NotLetIn):
    pass


class TimedOut(AibxError):
    pass


class Interrupted(AibxError):
    pass


EXIT_CODES: dict[type[AibxError], ExitCode] = {
    InvalidInput: ExitCode.USAGE,
    StepFailure: ExitCode.FAILED,
    ConnectFailure: ExitCode.CONNECT,
    TimedOut: ExitCode.TIMEOUT,
    Interrupted: ExitCode.INTERRUPTED,
    AibxError: ExitCode.INTERNAL,
}


def exit_code(error: AibxError | type[AibxError]) -> ExitCode:
    """The exit code of an error (or error type): that of its nearest ancestor in ``EXIT_CODES``."""
    kind = error if isinstance(error, type) else type(error)
    for ancestor in kind.__mro__:
        if ancestor in EXIT_CODES:
            return EXIT_CODES[ancestor]
    return ExitCode.INTERNAL
