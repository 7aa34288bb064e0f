"""``customization.log``, in the spirit of AIB's: a timestamped record of the run, every step's start and end,
the exact commands and scripts, and the full output of every step."""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path
from typing import TextIO

from aibx import __version__
from aibx.engine.events import (
    ActionStarted,
    Connected,
    Connecting,
    ConnectionDropped,
    Event,
    Notice,
    Output,
    Reconnected,
    RunFinished,
    RunStarted,
    StepFinished,
    StepSkipped,
    StepStarted,
    TransferProgress,
    UpdateRound,
    WaitingForHost,
)


def timestamp(when: float) -> str:
    moment = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class DeferredLog:
    """A host's log in a fleet: opened when the host's turn comes (``open``) and closed when its run ends
    (``close``), so a fleet holds descriptors for at most ``--parallel`` logs, not one per host. Events before the
    log is open (the fleet's shared downloads, reported to every host) are kept, at most ``MAX_PENDING``, and
    written first; events after it is closed are dropped."""

    MAX_PENDING = 1000

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.log: CustomizationLog | None = None
        self.pending: list[Event] = []
        self.closed = False

    def open(self) -> None:
        """Open the file (OSError if it cannot be written) and write what came before."""
        if self.log is None and not self.closed:
            self.log = CustomizationLog(self.path)
            for event in self.pending:
                self.log(event)
            self.pending.clear()

    def close(self) -> None:
        self.closed = True
        self.pending.clear()
        if self.log is not None:
            self.log.close()

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        if self.log is not None:
            self.log(event)
        elif len(self.pending) < self.MAX_PENDING:
            self.pending.append(event)


def keep_previous(path: Path) -> Path | None:
    """The previous run's log is kept as ``FILE.1`` (one generation, as logrotate's first step), never silently
    overwritten; returns where it went (None: there was none)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    previous = path.with_name(path.name + ".1")
    os.replace(path, previous)
    return previous


class CustomizationLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.previous = keep_previous(self.path)
        self.file: TextIO = self.path.open("w", encoding="utf-8", errors="replace")

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()

    def _line(self, when: float, level: str, text: str) -> None:
        stamp = timestamp(when)
        self.file.write("".join(f"{stamp} {level:<5} {line}\n" for line in (text.splitlines() or [""])))

    def __call__(self, event: Event) -> None:
        self._on(event)
        if not isinstance(event, Output):  # output is written as it comes; the rest at once
            self.file.flush()

    @functools.singledispatchmethod
    def _on(self, event: Event) -> None:
        """An event this subscriber does not record."""

    @_on.register
    def _(self, event: Output) -> None:
        t = event.time
        stamp = timestamp(t)
        level = "OUT" if event.stream == "stdout" else "ERR"
        name = event.step.name
        self.file.write("".join(f"{stamp} {level:<5} {name}: {line}\n" for line in event.lines))

    @_on.register
    def _(self, event: RunStarted) -> None:
        t = event.time
        self._line(t, "INFO", f"aibx {__version__}: {event.command_line}".rstrip(": "))
        self._line(t, "INFO", f"template {event.template} ({event.os_type}), target {event.target}")
        self._line(
            t,
            "INFO",
            f"{event.selected} of {len(event.steps)} steps to run; build timeout {event.timeout_seconds:g} s",
        )

    @_on.register
    def _(self, event: Connecting) -> None:
        t = event.time
        self._line(t, "INFO", f"connecting to {event.target}")

    @_on.register
    def _(self, event: Connected) -> None:
        t = event.time
        self._line(
            t, "INFO", f"connected to {event.target} in {event.seconds:.3f} s; boot id {event.boot_id or 'unknown'}"
        )

    @_on.register
    def _(self, event: StepStarted) -> None:
        t = event.time
        ref = event.step
        self._line(t, "INFO", f"step {ref.index}/{ref.total} {ref.name!r} ({ref.kind}, {ref.phase}): started")

    @_on.register
    def _(self, event: ActionStarted) -> None:
        t = event.time
        ref = event.step
        what = {"exec": "exec", "upload": "upload to", "restart": "restart with"}.get(event.kind, event.kind)
        self._line(t, "INFO", f"{ref.name}: {what} {event.text}")
        if event.detail:
            self._line(t, "INFO", f"{ref.name}:   {event.detail}")
        if event.script is not None:
            self._line(t, "INFO", f"{ref.name}:   stdin:")
            for line in event.script.splitlines():
                self._line(t, "INFO", f"{ref.name}:   | {line}")

    @_on.register
    def _(self, event: StepFinished) -> None:
        t = event.time
        ref = event.step
        code = f", exit code {event.exit_code}" if event.exit_code is not None else ""
        took = f" in {event.ended - event.started:.3f} s" if event.started else ""
        reboots = f", {event.reboots} reboot{'s' * (event.reboots != 1)}" if event.reboots else ""
        self._line(t, "INFO", f"step {ref.index}/{ref.total} {ref.name!r}: {event.outcome.value}{code}{took}{reboots}")
        if event.message:
            level = "INFO" if event.outcome.value == "succeeded" else "ERROR"
            self._line(t, "WARN" if event.ended_by_reboot else level, f"{ref.name}: {event.message}")

    @_on.register
    def _(self, event: ConnectionDropped) -> None:
        t = event.time
        where = f"{event.step.name}: " if event.step else ""
        what = "the VM is restarting" if event.expected else "connection lost"
        self._line(
            t,
            "INFO" if event.expected else "WARN",
            f"{where}{what} during {event.during}: {event.reason}; waiting up to {event.window_seconds:g} s "
            "for it to come back",
        )

    @_on.register
    def _(self, event: WaitingForHost) -> None:
        t = event.time
        where = f"{event.step.name}: " if event.step else ""
        if event.phase == "down":
            text = f"waiting for the VM to go down: {event.elapsed:.1f} s ({event.last_error})"
        else:
            text = (
                f"waiting for {event.service}: {event.elapsed:.1f} s, {event.attempts} attempts, "
                f"last error: {event.last_error}"
            )
        self._line(t, "INFO", where + text)

    @_on.register
    def _(self, event: Reconnected) -> None:
        t = event.time
        where = f"{event.step.name}: " if event.step else ""
        back = f"{event.service} back after {event.seconds:.3f} s ({event.attempts} attempts)"
        if event.rebooted:
            text = f"{back}; the VM restarted: boot id {event.previous_boot_id} -> {event.boot_id}"
        elif event.rebooted is None:
            text = f"{back}; a restart cannot be confirmed: the boot identity is unknown"
        else:
            text = f"{back}; the VM did NOT restart: boot id {event.boot_id} unchanged"
        self._line(t, "INFO" if event.rebooted else "WARN", where + text)

    @_on.register
    def _(self, event: StepSkipped) -> None:
        t = event.time
        ref = event.step
        reason = f": {event.reason}" if event.reason else ""
        self._line(t, "INFO", f"step {ref.index}/{ref.total} {ref.name!r}: {event.outcome.value}{reason}")

    @_on.register
    def _(self, event: TransferProgress) -> None:
        t = event.time
        if not event.finished:  # the log keeps what happened, not how it went along
            return
        where = f"{event.step.name}: " if event.step else ""
        verb, place = ("uploaded", "to") if event.direction == "upload" else ("downloaded", "from")
        self._line(
            t,
            "INFO",
            f"{where}{verb} {event.transferred} bytes {place} {event.path} in {event.elapsed:.3f} s "
            f"({event.rate / 1048576:.1f} MiB/s)",
        )

    @_on.register
    def _(self, event: UpdateRound) -> None:
        t = event.time
        name = event.step.name
        self._line(t, "INFO", f"{name}: Windows Update {event.summary}; next: {event.next}")
        for kb, title, outcome, hresult in event.updates:
            self._line(t, "INFO", f"{name}:   {outcome:<16} {kb or '-':<12} {title} {hresult}".rstrip())

    @_on.register
    def _(self, event: Notice) -> None:
        t = event.time
        self._line(t, "WARN" if event.level == "warning" else "INFO", event.message)

    @_on.register
    def _(self, event: RunFinished) -> None:
        t = event.time
        self._line(
            t,
            "INFO",
            f"run {event.outcome.value} in {event.ended - event.started:.3f} s, exit code {event.exit_code}",
        )
        if event.message:
            self._line(t, "ERROR" if event.exit_code else "INFO", event.message)
