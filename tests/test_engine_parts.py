"""The engine's small parts: targets, redaction, line splitting, step selection, fetching, the report."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from aibx.engine.console_view import ConsoleView
from aibx.engine.events import (
    EventBus,
    Notice,
    Outcome,
    Output,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepStarted,
)
from aibx.engine.fetch import ChecksumMismatch, ContentFetcher, FetchError, FetchPolicy
from aibx.engine.output import LineSplitter
from aibx.engine.run_report import RunReport
from aibx.engine.selection import Selection, SelectionError, select
from aibx.engine.transports import SCHEMES, Target, TargetError, parse_target
from aibx.plan import Content, Plan, StepPlan
from aibx.redaction import Redactor, redact_tree


# ----------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", Target("local")),
        ("vm", Target("ssh", host="vm")),
        ("azureuser@vm.example.com", Target("ssh", host="vm.example.com", user="azureuser")),
        ("azureuser@10.0.0.4:2222", Target("ssh", host="10.0.0.4", user="azureuser", port=2222)),
        ("ssh://root@[::1]:22", Target("ssh", host="::1", user="root", port=22)),
        ("ssh://my-alias", Target("ssh", host="my-alias")),
    ],
)
def test_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["ftp://vm", "user@", "a b", "vm:99999", "ssh://", "local://x"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_a_scheme_is_one_entry() -> None:
    assert set(SCHEMES) >= {"ssh", "local"}
    assert str(parse_target("ssh://u@h:2")) == "ssh://u@h:2"


# ----------------------------------------------------------------------------------------------- redaction
def test_redaction_of_secrets_sas_signatures_url_passwords_and_keys() -> None:
    redact = Redactor(["Sup3r-Secret!", "ab"])  # too short to mask: it would mask ordinary words
    text = (
        "pw Sup3r-Secret! and https://a.blob.core.windows.net/c/x.sh?sv=2022&SIG=abc%2Bdef&se=1 "
        "ftp://user:hunter22@host/x about ab"
    )
    assert redact(text) == (
        "pw *** and https://a.blob.core.windows.net/c/x.sh?sv=2022&SIG=***&se=1 ftp://***@host/x about ab"
    )
    key = "before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\nafter"
    assert redact(key) == "before\n***\nafter"
    lines = redact.lines()
    assert [lines(x) for x in key.splitlines()] == ["before", "***", "***", "***", "after"]
    assert redact_tree({"a": ["x Sup3r-Secret!"], "Sup3r-Secret!": 1}, redact) == {"a": ["x ***"], "***": 1}


def test_the_event_bus_redacts_before_any_subscriber_sees_an_event() -> None:
    seen: list = []
    bus = EventBus(Redactor(["hunter2-password"]), [seen.append])
    ref = StepRef(1, 1, "s", "Shell", "customize")
    bus.emit(Notice("t", message="the password is hunter2-password"))
    bus.emit(Output("t", step=ref, stream="stdout", lines=("hunter2-password", "-----BEGIN RSA PRIVATE KEY-----")))
    bus.emit(Output("t", step=ref, stream="stdout", lines=("MIIEow...", "-----END RSA PRIVATE KEY-----", "ok")))
    assert seen[0].message == "the password is ***"
    assert seen[1].lines == ("***", "***") and seen[2].lines == ("***", "***", "ok")


# ----------------------------------------------------------------------------------------------- lines
def test_line_splitter() -> None:
    splitter = LineSplitter(max_line=8)
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\n10%\r50%\r100%\n") == ["two", "100%"]
    assert splitter.feed("é".encode()[:1]) == []
    assert splitter.feed("é".encode()[1:] + b"\n") == ["é"]
    assert splitter.feed(b"0123456789abcdefXY") == ["01234567", "89abcdef"]
    assert splitter.flush() == ["XY"] and splitter.flush() == []
    assert LineSplitter().feed(b"\xff\n") == ["\ufffd"]


# ----------------------------------------------------------------------------------------------- selection
def _plan(*names: str) -> Plan:
    steps = [StepPlan("stage deprovisioning script", "Deprovision", "stage")]
    steps += [StepPlan(n, "Shell", "customize") for n in names]
    steps.append(StepPlan("deprovision", "Deprovision", "deprovision"))
    return Plan("t.json", "Linux", steps)


def test_selection() -> None:
    plan = _plan("a", "b", "c")
    assert [s.step.name for s in select(plan, Selection()).steps if s.runs] == [
        "stage deprovisioning script", "a", "b", "c", "deprovision",
    ]  # fmt: skip
    assert [s.step.name for s in select(plan, Selection(from_name="b")).steps if s.runs] == ["b", "c", "deprovision"]
    assert [s.step.name for s in select(plan, Selection(only=["c", "a"])).steps if s.runs] == ["a", "c", "deprovision"]
    skipped = select(plan, Selection(skip=["b"]))
    assert [s.reason for s in skipped.steps] == [None, None, "--skip", None, None]
    with pytest.raises(SelectionError, match="--from 'x'"):
        select(plan, Selection(from_name="x"))


# ----------------------------------------------------------------------------------------------- fetching
def fetch(tmp_path: Path, content: Content, **policy: float) -> tuple[Path, list[str]]:
    notes: list[str] = []
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    fetcher = ContentFetcher(
        workdir,
        FetchPolicy(first_delay=0.01, **policy),  # type: ignore[arg-type]
        on_retry=notes.append,
        on_warning=lambda text: notes.append(f"warning: {text}"),
    )
    return asyncio.run(fetcher.fetch(content)), notes


def test_fetch_retries_transient_errors_then_succeeds(tmp_path: Path, content_server) -> None:
    body = b"#!/bin/sh\r\necho hi\r\n"
    url = content_server.serve("/a.sh", body, failures=[503, 500, 429])
    path, notes = fetch(
        tmp_path, Content(uri=url + "?sig=SECRET", sha256=hashlib.sha256(body).hexdigest(), normalize_newlines=True)
    )
    assert path.read_bytes() == b"#!/bin/sh\necho hi\n"  # checked as downloaded, then CRLF -> LF
    assert len(content_server.requests) == 4 and len(notes) == 4
    assert "HTTP 503" in notes[0] and "SECRET" not in "".join(notes)
    assert notes[3].startswith("warning:") and "plain http" in notes[3]


def test_fetch_gives_up_after_the_tries(tmp_path: Path, content_server) -> None:
    url = content_server.serve("/a.sh", b"x", failures=[503] * 5)
    with pytest.raises(FetchError, match="after 3 tries: HTTP 503"):
        fetch(tmp_path, Content(uri=url), tries=3)
    assert len(content_server.requests) == 3


def test_fetch_gives_up_after_ten_tries_as_aib_with_doubling_pauses(tmp_path: Path, content_server) -> None:
    url = content_server.serve("/a.sh", b"x", failures=[503] * 12)
    notes: list[str] = []
    workdir = tmp_path / "work"
    workdir.mkdir()
    fetcher = ContentFetcher(workdir, FetchPolicy(first_delay=0.001, max_delay=0.004), on_retry=notes.append)
    with pytest.raises(FetchError, match="after 10 tries: HTTP 503"):
        asyncio.run(fetcher.fetch(Content(uri=url)))
    assert len(content_server.requests) == 10 and len(notes) == 9
    pauses = [note.rsplit(" in ", 1)[1] for note in notes]
    assert pauses == ["0.001 s", "0.002 s", "0.004 s", "0.004 s", "0.004 s", "0.004 s", "0.004 s", "0.004 s", "0.004 s"]


def test_the_default_fetch_policy_is_ten_tries_within_three_minutes() -> None:
    policy = FetchPolicy()
    assert policy.tries == 10
    assert policy.delays() == [1, 2, 4, 8, 16, 30, 30, 30, 30]  # 151 s of pauses at most


def test_fetch_retries_a_refused_connection_and_does_not_retry_a_missing_file(tmp_path: Path, content_server) -> None:
    from tests.support.sshd import free_port

    with pytest.raises(FetchError, match="after 3 tries: Connection refused"):
        fetch(tmp_path, Content(uri=f"http://127.0.0.1:{free_port()}/a.sh"), tries=3)
    with pytest.raises(FetchError, match="HTTP 404 Not Found"):
        fetch(tmp_path, Content(uri=content_server.url("/missing.sh")))
    assert content_server.requests == ["/missing.sh"]


def test_fetch_does_not_retry_a_forbidden_download(tmp_path: Path, content_server) -> None:
    url = content_server.serve("/a.sh", b"x", failures=[403])
    with pytest.raises(FetchError, match="HTTP 403 Forbidden; the SAS token may have expired") as info:
        fetch(tmp_path, Content(uri=url + "?sv=1&sig=SECRET"))
    assert "SECRET" not in str(info.value) and len(content_server.requests) == 1


def test_fetch_checks_the_checksum(tmp_path: Path) -> None:
    (tmp_path / "a.sh").write_bytes(b"echo hi\n")
    with pytest.raises(ChecksumMismatch, match="expected 0000"):
        fetch(tmp_path, Content(local_path=str(tmp_path / "a.sh"), sha256="0" * 64))
    upper = hashlib.sha256(b"echo hi\n").hexdigest().upper()  # AIB wants lower case; validation warns (AIB019)
    assert fetch(tmp_path, Content(local_path=str(tmp_path / "a.sh"), sha256=upper))[0].read_bytes() == b"echo hi\n"
    with pytest.raises(FetchError, match="no such file"):
        fetch(tmp_path, Content(local_path=str(tmp_path / "missing.sh")))


def test_fetch_over_https_verifies_the_certificate(tmp_path: Path, tls_content_server, monkeypatch) -> None:
    url = tls_content_server.serve("/a.sh", b"ok\n")
    assert fetch(tmp_path, Content(uri=url))[0].read_bytes() == b"ok\n"
    monkeypatch.delenv("SSL_CERT_FILE")  # the throw-away CA is not trusted any more
    with pytest.raises(FetchError, match="certificate"):
        fetch(tmp_path, Content(uri=url))


# ----------------------------------------------------------------------------------------------- report
def test_report_totals(tmp_path: Path) -> None:
    refs = [StepRef(i, 3, f"s{i}", "Shell", "customize") for i in (1, 2, 3)]
    report = RunReport(tmp_path / "r.json")
    report(RunStarted("t", template="t.json", os_type="Linux", steps=tuple(refs), selected=3, timeout_seconds=60))
    report(StepFinished("t", step=refs[0], outcome=Outcome.SUCCEEDED, started=1.0, ended=2.5, exit_code=0))
    report(StepFinished("t", step=refs[1], outcome=Outcome.TIMED_OUT, started=2.5, ended=9.0))
    report(RunFinished("t", outcome=Outcome.TIMED_OUT, exit_code=4, started=0.5, ended=9.5, boot_id="b"))
    data = json.loads((tmp_path / "r.json").read_text())
    totals = {"steps": 3, "succeeded": 1, "failed": 0, "timedOut": 1, "skipped": 0, "notRun": 0, "reboots": 0}
    assert data["totals"] == totals
    assert data["steps"][0]["durationSeconds"] == 1.5 and data["steps"][2]["outcome"] is None
    assert (data["bootId"], data["exitCode"]) == ("b", 4)


# ----------------------------------------------------------------------------------------------- console
def _console_events(view) -> None:  # type: ignore[no-untyped-def]
    ref = StepRef(2, 3, "install", "Shell", "customize")
    view(StepStarted("t", step=ref))
    view(Output("t", step=ref, stream="stdout", lines=("hello", "world")))
    view(Output("t", step=ref, stream="stderr", lines=("oops",)))
    view(StepFinished("t", step=ref, outcome=Outcome.SUCCEEDED, started=1.0, ended=3.5, exit_code=0))


def test_console_prefixes_lines_with_the_step_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out, err = io.StringIO(), io.StringIO()
    _console_events(ConsoleView(out, err, status_line=False))
    assert out.getvalue() == (
        "==> [2/3] install (Shell)\ninstall | hello\ninstall | world\ninstall | oops\n"
        "<== [2/3] install: succeeded in 2.50 s\n"
    )


def test_console_on_a_terminal_has_colour_and_a_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = io.StringIO()
    view = ConsoleView(out, io.StringIO(), status_line=True)
    _console_events(view)
    text = out.getvalue()
    assert "\033[36minstall |\033[0m hello" in text and "\033[31minstall |\033[0m oops" in text  # stderr in red
    # the status line, redrawn after each line (its elapsed time is the real clock's)
    assert re.search(r"\r\033\[K\033\[2m\[2/3\] install  \d+\.\d\d s\033\[0m", text)
    monkeypatch.setenv("NO_COLOR", "1")  # NO_COLOR wins over everything
    plain = io.StringIO()
    _console_events(ConsoleView(plain, io.StringIO(), status_line=True))
    assert "\033[3" not in plain.getvalue() and "[2/3] install" in plain.getvalue()
