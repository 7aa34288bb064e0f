"""Live output of a run on the terminal: every output line prefixed with its step's name, step start and end lines,
what happens when the connection drops (the wait for the VM, its progress, the reboot), and on a terminal a status
line (step k/n, name, elapsed time, how long the step has been silent, a long upload's or download's progress) and
colour (never with NO_COLOR). Elsewhere (a CI log) a step silent for a long time gets a line now and then saying it
still runs, and a long transfer its progress every so often. With many hosts every line starts with the host's
``prefix``."""

from __future__ import annotations

import collections
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from aibx.console import Style
from aibx.durations import format_seconds
from aibx.engine.events import (
    Connected,
    Connecting,
    ConnectionDropped,
    Event,
    Notice,
    Outcome,
    Output,
    Reconnected,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepSkipped,
    StepStarted,
    TransferProgress,
    UpdateRound,
    WaitingForHost,
)

_OUTCOME_STYLE = {
    Outcome.SUCCEEDED: ("green",),
    Outcome.FAILED: ("red", "bold"),
    Outcome.TIMED_OUT: ("red", "bold"),
    Outcome.INTERRUPTED: ("yellow", "bold"),
    Outcome.CONNECTION_LOST: ("red", "bold"),
    Outcome.CONNECT_FAILED: ("red", "bold"),
    Outcome.REFUSED: ("red", "bold"),
}


@dataclass(frozen=True)
class ProgressTiming:
    """How often time passing is shown (``tick()`` is called a few times a second)."""

    heartbeat_after: float = 60.0  # not on a terminal: "still running" after this long without a line
    silence_after: float = 10.0  # on a terminal: the status line says how long the step has been silent
    transfer_line_every: float = 10.0  # not on a terminal: a long transfer's progress, at most this often


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_transfer(event: TransferProgress) -> str:
    """ "45% of 1.0 GiB, 12.0 MiB/s", or "120.0 MiB, 5.0 MiB/s" when the size is unknown."""
    rate = f"{format_bytes(event.rate)}/s"
    if event.total:
        return f"{event.transferred * 100 // event.total}% of {format_bytes(event.total)}, {rate}"
    return f"{format_bytes(event.transferred)}, {rate}"


class ConsoleView:
    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        status_line: bool | None = None,
        files: tuple[str, ...] = (),
        prefix: str = "",
        timing: ProgressTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        timestamps: bool = False,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.style = Style(self.out)
        isatty = getattr(self.out, "isatty", None)
        self.status_enabled = bool(isatty and isatty()) if status_line is None else status_line
        self.files = files  # shown at the end: the log and the report
        self.prefix = prefix  # the host's, when several run at once
        self.current: StepRef | None = None
        self.step_started = 0.0
        self.status_shown = False
        self.not_run = 0
        self.waiting: tuple[str, float] | None = None  # (what, since when) while the VM is away
        self.timing = timing or ProgressTiming()
        self.clock = clock
        self.last_line = clock()  # when a line was last written
        self.last_output: float | None = None  # when the current step last printed something
        self.transfer: TransferProgress | None = None  # a long upload or download under way
        self.transfer_line_at = 0.0  # its elapsed time at its last progress line (not on a terminal)
        self.timestamps = timestamps  # every line starts with the time of day (Packer's -timestamp-ui)
        self.held = False  # a question is on the terminal (--on-error ask, --step): no status line meanwhile
        self.outcomes: dict[int, Outcome] = {}  # each step's last outcome (a retried step counts once), for the recap

    # ------------------------------------------------------------------------------------------ writing
    def _write(self, text: str, stream: TextIO | None = None) -> None:
        try:
            self._write_unguarded(text, stream)
        except (BrokenPipeError, ValueError, OSError):
            # the reader went away (aibx run ... | head): the run goes on, and the log keeps everything
            self.out = self.err = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the view
            self.status_enabled = False

    def _write_unguarded(self, text: str, stream: TextIO | None) -> None:
        stream = stream or self.out
        if (self.prefix or self.timestamps) and text:
            stamp = time.strftime("%H:%M:%S ") if self.timestamps else ""
            text = "".join(stamp + self.prefix + line for line in text.splitlines(keepends=True))
        if self.status_shown:
            self.out.write("\r\033[K")
            self.status_shown = False
            if stream is not self.out:
                self.out.flush()
        stream.write(text)
        if text:
            self.last_line = self.clock()
        if stream is not self.out or not self.status_enabled:
            stream.flush()
        self._draw_status()

    def hold(self, held: bool) -> None:
        """While a question waits for an answer on the terminal, no status line and no heartbeat."""
        if held and self.status_shown:
            self.out.write("\r\033[K")
            self.out.flush()
            self.status_shown = False
        self.held = held

    def _draw_status(self) -> None:
        if self.held or not self.status_enabled or (self.current is None and self.transfer is None):
            self.out.flush()
            return
        now = self.clock()
        parts = []
        if self.current is not None:
            ref = self.current
            parts.append(f"[{ref.index}/{ref.total}] {ref.name}  {format_seconds(now - self.step_started)}")
        if self.waiting is not None:
            what, since = self.waiting
            parts.append(f"{what}… {format_seconds(now - since)}")
        elif self.transfer is not None:
            where = "" if self.current is not None else f" {self.transfer.path}"
            parts.append(f"{self.transfer.direction}{where} {format_transfer(self.transfer)}")
        elif self.current is not None:
            silent = now - (self.last_output if self.last_output is not None else self.step_started)
            if silent >= self.timing.silence_after:
                parts.append(f"no output for {format_seconds(silent)}")
        text = "  ".join(parts)
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.out.write("\r\033[K" + self.style(text[:width], "dim"))
        self.out.flush()
        self.status_shown = True

    def tick(self) -> None:
        """Show time passing; called a few times a second while a run goes on. On a terminal the status line is
        redrawn; elsewhere a step without a line for ``heartbeat_after`` (no output, no transfer progress: a
        stalled upload too) gets a line saying it still runs (not while the VM is away: those waits say so
        themselves)."""
        if self.held:
            return
        if self.status_enabled:
            if self.current is not None or self.transfer is not None:
                self._write("")
            return
        ref = self.current
        now = self.clock()
        if ref is None or self.waiting is not None:
            return
        if now - self.last_line < self.timing.heartbeat_after:
            return
        if self.last_output is None:
            last = "no output yet"
        else:
            last = f"last output {format_seconds(now - self.last_output)} ago"
        running = format_seconds(now - self.step_started)
        self._write(self.style(f"[{ref.index}/{ref.total}] {ref.name}: still running, {running}, {last}", "dim") + "\n")

    def _transfer(self, event: TransferProgress) -> None:
        """On a terminal the status line shows the progress; elsewhere a line every ``transfer_line_every``
        seconds. Both get a line when the transfer is done."""
        if event.finished:
            self.transfer = None
            verb, where = ("uploaded", "to") if event.direction == "upload" else ("downloaded", "from")
            rate = f"{format_bytes(event.rate)}/s"
            took = format_seconds(event.elapsed)
            text = f"{verb} {format_bytes(event.transferred)} {where} {event.path} in {took} ({rate})"
            self._write(self.style(text, "dim") + "\n")
            return
        if self.transfer is None or self.transfer.path != event.path:
            self.transfer_line_at = 0.0
        self.transfer = event
        if self.status_enabled:
            self._write("")
        elif event.elapsed - self.transfer_line_at >= self.timing.transfer_line_every:
            self.transfer_line_at = event.elapsed
            self._write(self.style(f"{event.direction} {event.path}: {format_transfer(event)}", "dim") + "\n")

    def _prefix(self, ref: StepRef, stream: str) -> str:
        return self.style(f"{ref.name} |", "red" if stream == "stderr" else "cyan")

    # ------------------------------------------------------------------------------------------ events
    def __call__(self, event: Event) -> None:
        self._on(event)

    @functools.singledispatchmethod
    def _on(self, event: Event) -> None:
        """An event this subscriber does not record."""

    @_on.register
    def _(self, event: Output) -> None:
        if self.current is not None and event.step.index == self.current.index:
            self.last_output = self.clock()
        prefix = self._prefix(event.step, event.stream)
        self._write("".join(f"{prefix} {line}\n" for line in event.lines))

    @_on.register
    def _(self, event: StepStarted) -> None:
        s = self.style
        self.current, self.step_started, self.last_output = event.step, self.clock(), None
        ref = event.step
        self._write(s(f"==> [{ref.index}/{ref.total}] {ref.name}", "bold") + s(f" ({ref.kind})", "dim") + "\n")

    @_on.register
    def _(self, event: StepFinished) -> None:
        s = self.style
        ref = event.step
        took = f" in {format_seconds(event.ended - event.started)}" if event.started else ""
        verdict = s(event.outcome.value, *_OUTCOME_STYLE.get(event.outcome, ()))
        self.outcomes[event.step.index] = event.outcome
        self.current = self.transfer = None  # the run's final message explains a failure
        note = ""
        if event.outcome is Outcome.SUCCEEDED and event.ended_by_reboot:
            note = s(" (ended by a reboot before the command finished)", "yellow")
        elif event.outcome is Outcome.SUCCEEDED and event.reboots:
            note = s(f" ({event.message})" if event.message else f" ({event.reboots} reboot(s))", "yellow")
        self._write(f"<== [{ref.index}/{ref.total}] {ref.name}: {verdict}{took}{note}\n")

    @_on.register
    def _(self, event: ConnectionDropped) -> None:
        s = self.style
        window = format_seconds(event.window_seconds)
        if event.expected:
            text = f"the VM is restarting ({event.reason}); waiting up to {window} for it to come back"
        else:
            text = f"connection lost during {event.during}: {event.reason}; waiting up to {window} for it"
        self.waiting = (f"waiting for the VM ({event.during})", self.clock())
        self.transfer = None  # an upload cut off: the runner says so, and starts it again
        self._write(s(text, "yellow") + "\n")

    @_on.register
    def _(self, event: WaitingForHost) -> None:
        s = self.style
        if event.phase == "down":
            text = f"waiting for the VM to go down… {format_seconds(event.elapsed)} ({event.last_error})"
        else:
            text = f"waiting for {event.service}… {format_seconds(event.elapsed)}, last error: {event.last_error}"
        self._write(s(text, "dim") + "\n")

    @_on.register
    def _(self, event: Reconnected) -> None:
        s = self.style
        self.waiting = None
        back = f"{event.service} is back after {format_seconds(event.seconds)}"
        if event.rebooted:
            self._write(s(f"{back}: the VM restarted (boot id {event.boot_id})", "yellow") + "\n")
        elif event.rebooted is None:
            text = f"{back}, but whether the VM restarted is unknown (it does not tell its boot identity)"
            self._write(s("warning:", "yellow", "bold") + f" {text}\n", self.err)
        else:
            self._write(s(f"{back}: the VM did not restart (boot id unchanged)", "yellow") + "\n")

    @_on.register
    def _(self, event: StepSkipped) -> None:
        s = self.style
        self.outcomes[event.step.index] = event.outcome
        if event.outcome is Outcome.NOT_RUN:  # counted, and said once at the end
            self.not_run += 1
            return
        ref = event.step
        reason = f" ({event.reason})" if event.reason else ""
        self._write(s(f"--- [{ref.index}/{ref.total}] {ref.name}: {event.outcome.value}{reason}", "dim") + "\n")

    @_on.register
    def _(self, event: TransferProgress) -> None:
        self._transfer(event)

    @_on.register
    def _(self, event: UpdateRound) -> None:
        s = self.style
        after = {"restart": "; restarting the VM", "again": "; searching again"}.get(event.next, "")
        self._write(s(f"Windows Update {event.summary}{after}", "bold") + "\n")

    @_on.register
    def _(self, event: Notice) -> None:
        s = self.style
        if event.level == "warning":
            self._write(s("warning:", "yellow", "bold") + f" {event.message}\n", self.err)
        else:
            self._write(s(event.message, "dim") + "\n")

    @_on.register
    def _(self, event: RunStarted) -> None:
        s = self.style
        timeout = format_seconds(event.timeout_seconds)
        self._write(
            s(f"aibx: {event.template} on {event.target}: {event.selected} of {len(event.steps)} steps", "bold")
            + s(f" (build timeout {timeout})", "dim")
            + "\n"
        )

    @_on.register
    def _(self, event: Connecting) -> None:
        s = self.style
        self._write(s(f"connecting to {event.target} ...", "dim") + "\n")

    @_on.register
    def _(self, event: Connected) -> None:
        s = self.style
        boot = f", boot id {event.boot_id}" if event.boot_id else ""
        self._write(s(f"connected in {format_seconds(event.seconds)}{boot}", "dim") + "\n")

    @_on.register
    def _(self, event: RunFinished) -> None:
        s = self.style
        self.current = self.transfer = None
        took = format_seconds(event.ended - event.started)
        verdict = s(f"run {event.outcome.value}", *_OUTCOME_STYLE.get(event.outcome, ()))
        files = "".join(s(f"{name}\n", "dim") for name in self.files)
        if self.not_run:
            self._write(s(f"{self.not_run} step{'s' * (self.not_run != 1)} not run", "dim") + "\n")
        recap = s(f"recap: {self.recap()} in {took}", "bold") + "\n"
        if event.outcome is Outcome.SUCCEEDED:
            self._write(f"{verdict} in {took}\n{recap}{files}")
        else:
            self._write(f"aibx: {verdict} after {took}: {event.message}\n", self.err)
            self._write(f"{recap}{files}", self.err)

    def recap(self) -> str:
        """ "3 ok, 1 failed, 1 skipped, 2 not run": the steps by outcome (only those that happened, ok always)."""
        c = collections.Counter(self.outcomes.values())
        parts = [f"{c[Outcome.SUCCEEDED]} ok"]
        for outcome in Outcome:
            if outcome is not Outcome.SUCCEEDED and c[outcome]:
                parts.append(f"{c[outcome]} {outcome.value}")
        return ", ".join(parts)
