"""What the runner tells the world. Presentation (console, customization.log, JSON report) subscribes to these
events; nothing below the runner prints.

Every event passes the ``EventBus``'s redactor before any subscriber sees it, so a secret cannot reach the console,
the log or the report by forgetting to redact in one of them.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aibx import errors
from aibx.exitcodes import ExitCode
from aibx.redaction import LineRedactor, Redactor


class Outcome(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    INTERRUPTED = "interrupted"
    CONNECTION_LOST = "connection lost"
    CONNECT_FAILED = "connect failed"  # the run: could not connect, authenticate or verify the host key
    REFUSED = "refused"  # the run: invalid input found before connecting
    SKIPPED = "skipped"  # a step left out by --from/--only/--skip (or staging after --from)
    NOT_RUN = "not run"  # a step after a failure


@dataclass(frozen=True)
class StepRef:
    """A step as the run sees it: its position among the steps of the plan."""

    index: int  # 1-based position in the plan
    total: int
    name: str
    kind: str
    phase: str


@dataclass(frozen=True)
class Event:
    target: str
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    template: str
    os_type: str
    steps: tuple[StepRef, ...]
    selected: int  # how many of them will run
    timeout_seconds: float
    command_line: str = ""


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should know; ``level`` is "info" or "warning"."""

    message: str
    level: str = "info"
    step: StepRef | None = None


@dataclass(frozen=True)
class Connecting(Event):
    pass


@dataclass(frozen=True)
class Connected(Event):
    boot_id: str | None
    seconds: float


@dataclass(frozen=True)
class StepStarted(Event):
    step: StepRef


@dataclass(frozen=True)
class ActionStarted(Event):
    """An action of a step begins: ``kind`` "exec" (``text`` is the command) or "upload" (``text`` is the path);
    ``detail`` says what goes in (a script, a file); ``script`` is the script text when it is known."""

    step: StepRef
    kind: str
    text: str
    detail: str = ""
    script: str | None = None


@dataclass(frozen=True)
class Output(Event):
    step: StepRef
    stream: str  # "stdout" or "stderr"
    lines: tuple[str, ...]


@dataclass(frozen=True)
class StepFinished(Event):
    step: StepRef
    outcome: Outcome
    started: float | None
    ended: float
    exit_code: int | None = None
    message: str = ""  # why it failed; for a step that succeeded, what happened on the way (a reboot)
    reboots: int = 0  # restarts of the VM during the step
    # a restart cut the step's command: it did not run to completion and has no exit code (it still succeeded,
    # as with AIB and with Packer's expect_disconnect)
    ended_by_reboot: bool = False


@dataclass(frozen=True)
class TransferProgress(Event):
    """Bytes of a long transfer so far: an upload to the VM (``direction`` "upload", ``path`` the remote path) or a
    download of a scriptUri/sourceUri before connecting ("download", ``path`` the URI without its query). Only a
    transfer still under way after a moment reports (``progress.TransferMeter``), now and then, and once more
    with ``finished`` when it is complete. ``total`` is None when the server does not say."""

    step: StepRef | None
    direction: str
    path: str
    transferred: int
    total: int | None
    elapsed: float
    finished: bool = False

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.transferred / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class ConnectionDropped(Event):
    """The connection to the VM dropped, or the VM is going down (``expected``: it was asked to restart, or the
    step's script said so); the runner waits for it within ``window_seconds``."""

    step: StepRef | None
    reason: str
    during: str  # what was under way: "the command", "the start of the command", "a restart", ...
    window_seconds: float
    expected: bool = False


@dataclass(frozen=True)
class WaitingForHost(Event):
    """Progress of a wait: ``phase`` "down" (a VM asked to restart still answers) or "up" (no answer yet)."""

    step: StepRef | None
    phase: str
    elapsed: float
    attempts: int
    last_error: str
    service: str  # what is waited for: "SSH", "WinRM"


@dataclass(frozen=True)
class Reconnected(Event):
    """The VM answers again. ``rebooted``: the boot identity changed (True), did not (False), or is unknown (None)."""

    step: StepRef | None
    seconds: float  # from the drop (or from the start of the wait for a restart) to the new connection
    attempts: int
    boot_id: str | None
    previous_boot_id: str | None
    rebooted: bool | None
    service: str = "SSH"


@dataclass(frozen=True)
class UpdateRound(Event):
    """One WindowsUpdate round finished: what it found and installed, and what the runner does next."""

    step: StepRef
    number: int
    max_rounds: int
    summary: str  # "round 1: found 3, selected 2, skipped 1, installed 2, failed 0; restart required"
    next: str  # "restart", "again", "done" or "fail"
    found: int = 0
    selected: int = 0
    skipped: int = 0
    installed: int = 0
    failed: int = 0
    reboot_required: bool = False
    # each selected update: (KB, title, result, HRESULT with its meaning)
    updates: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(frozen=True)
class StepSkipped(Event):
    step: StepRef
    outcome: Outcome  # SKIPPED or NOT_RUN
    reason: str = ""


@dataclass(frozen=True)
class RunFinished(Event):
    outcome: Outcome
    exit_code: int
    started: float
    ended: float
    message: str = ""
    boot_id: str | None = None


Subscriber = Callable[[Event], None]


class EventBus:
    """Redacts each event, then hands it to every subscriber in order."""

    def __init__(self, redactor: Redactor | None = None, subscribers: list[Subscriber] | None = None) -> None:
        self.redactor = redactor or Redactor()
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self._line_redactors: dict[tuple[str, int, str], LineRedactor] = {}

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def __call__(self, event: Event) -> None:
        self.emit(event)

    def emit(self, event: Event) -> None:
        event = self._redacted(event)
        for subscriber in self.subscribers:
            subscriber(event)

    def _redacted(self, event: Event) -> Event:
        if isinstance(event, Output):
            key = (event.target, event.step.index, event.stream)
            line_redactor = self._line_redactors.get(key)
            if line_redactor is None:
                line_redactor = self._line_redactors[key] = self.redactor.lines()
            return dataclasses.replace(event, lines=tuple(line_redactor(line) for line in event.lines))
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, enum.Enum):
                continue
            redacted = self._redact_value(value)
            if redacted != value:
                changes[f.name] = redacted
        return dataclasses.replace(event, **changes) if changes else event

    def _redact_value(self, value: object) -> object:
        """Strings, and strings inside (nested) tuples, redacted."""
        if isinstance(value, str):
            return self.redactor.redact(value) if value else value
        if isinstance(value, tuple):
            return tuple(self._redact_value(v) for v in value)
        return value


# a run's outcome as the error it is (its exit code comes from the one table, aibx.errors.EXIT_CODES)
OUTCOME_ERRORS: dict[Outcome, type[errors.AibxError]] = {
    Outcome.FAILED: errors.StepFailure,
    Outcome.TIMED_OUT: errors.TimedOut,
    Outcome.INTERRUPTED: errors.Interrupted,
    Outcome.CONNECTION_LOST: errors.ConnectFailure,
    Outcome.CONNECT_FAILED: errors.ConnectFailure,
    Outcome.REFUSED: errors.InvalidInput,
}


def exit_code_of(outcome: Outcome) -> ExitCode:
    error = OUTCOME_ERRORS.get(outcome)
    return ExitCode.OK if error is None else errors.exit_code(error)
