"""The runner: executes a plan against one VM through a transport, and tells the world through events.

It owns the order of the steps, the overall deadline (``buildTimeoutInMinutes``), fetching and checking every
script and file before anything reaches the VM, stopping a step's remote process and removing its temporary files
when the step does not end by itself (interrupt, deadline), restarts, and the exit code.

Restarts and dropped connections (see ``_ride_out``): when the connection drops, the runner waits for the VM
within ``reconnect_timeout``, reconnecting through ``Transport.reconnect`` (the SSH host key of the first
connection is the only one accepted) and reporting progress; then it compares the boot identity with the one it
had. What happens next depends on what was under way:

* a command that had not started yet (the channel never opened): it runs now, on the new boot or connection;
* a command that was running: a new boot means the restart cut it; the step counts as succeeded, as with AIB and
  Packer's ``expect_disconnect``, but is reported as ended by a reboot, without an exit code, and its temporary
  files are removed (best effort). The same boot means the connection was lost, not the VM: the step fails (its
  outcome is unknown);
* a command that succeeded and said the VM is going down (``Exec.shutdown_marker``): the runner waits for the VM
  to go down and come back with a new boot before the next step;
* an upload: it starts again from the beginning (writing a file is idempotent);
* a ``Restart`` action (WindowsRestart): run the restart command (exit codes 1115 and 1190 mean a shutdown is
  already under way), wait for the VM to go down and come back with a new boot identity, then for the check
  command to exit 0, all within the action's timeout (``_restart``);
* a ``WindowsUpdate`` action: rounds of its command, each ending with a result line that
  ``provisioners.windows_update.next_move`` turns into what comes next: a restart (through ``restart_vm``, the one
  seam for every restart), another round, done or a failure (``_windows_update``). A round a restart cut short is
  followed by another; a round whose connection dropped without a restart fails the step, never runs twice.

An ``Exec`` may carry its own time limit inside the build deadline (``timeout_seconds``: the bounded Sysprep
wait); when it runs out the command is stopped and the step times out, quoting its last lines.

Made to grow: ``Runner.run`` is a coroutine that neither prints nor calls ``asyncio.run``, so many runners share
one event loop (``aibx.engine.fleet``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aibx.engine.events import (
    ActionStarted,
    Connected,
    Connecting,
    ConnectionDropped,
    Event,
    EventBus,
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
    UpdateRound,
    WaitingForHost,
)
from aibx.engine.fetch import ContentFetcher, FetchError, FetchPolicy, SharedFetcher
from aibx.engine.output import LineSplitter
from aibx.engine.progress import TransferMeter, TransferTiming, event_meter
from aibx.engine.selection import SelectedPlan, SelectedStep
from aibx.engine.transports.base import (
    ConnectError,
    ConnectionLost,
    RemoteFileError,
    Transport,
    TransportError,
)
from aibx.exitcodes import ExitCode
from aibx.plan import Action, Content, Exec, KeptFile, Restart, StepPlan, Upload, WindowsUpdate

T = TypeVar("T")
TAIL_LINES = 10  # stderr lines quoted when a step fails
# Windows: ERROR_SHUTDOWN_IN_PROGRESS and ERROR_SHUTDOWN_IS_SCHEDULED, a restart is on its way already
RESTART_UNDER_WAY = {1115: "a shutdown is already in progress", 1190: "a shutdown is already scheduled"}
# how often one action may lose its connection before the step fails (a flapping network)
MAX_DROPS_PER_ACTION = 5
# exit codes 128 + N: killed by signal N (a shell's convention, which the transports follow)
SIGNALLED = range(129, 193)
# after a command killed by a signal, how long the connection may take to drop if it was a reboot (when the VM
# cannot say that it is shutting down)
SIGNAL_GRACE = 5.0
# how the engine restarts a VM between Windows Update rounds
WINDOWS_UPDATE_RESTART = 'shutdown /r /f /t 0 /c "aibx windows update"'
ENDED_BY_REBOOT = (
    "ended by a reboot before the command finished: it did not run to completion and has no exit code; "
    "counted as succeeded, as AIB and Packer's expect_disconnect do"
)
# What a failing command's stderr says about a VM that cannot run it as asked, and what to do about it
FAILURE_HINTS = (
    (
        ("sudo: a terminal is required", "sudo: a password is required", "sudo: no password was provided"),
        "sudo on the VM asks for a password, and aibx runs commands without a terminal (as AIB does): give the "
        "user passwordless sudo (NOPASSWD) for the build",
    ),
    (
        ("/bin/sh: No such file or directory", "/bin/sh: not found", "/bin/sh: bad interpreter"),
        "the VM has no /bin/sh, which runs inline Shell lines (/bin/sh -e, as AIB does) and aibx's wrapper",
    ),
)
EXIT_CODES = {
    Outcome.SUCCEEDED: ExitCode.OK,
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.TIMED_OUT: ExitCode.TIMEOUT,
    Outcome.INTERRUPTED: ExitCode.INTERRUPTED,
    Outcome.CONNECTION_LOST: ExitCode.CONNECT,
    Outcome.CONNECT_FAILED: ExitCode.CONNECT,
    Outcome.REFUSED: ExitCode.USAGE,
}


@dataclass
class RunOptions:
    timeout_seconds: float  # the whole run, connecting included (buildTimeoutInMinutes or --timeout-minutes)
    reconnect_timeout: float = 20 * 60.0  # how long a VM may take to come back after the connection dropped
    cleanup_timeout: float = 15.0  # removing temporary files after an interrupt, the deadline or a reboot
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    command_line: str = ""
    # between connection attempts that failed at once (connection refused: one SYN and one RST each)
    reconnect_pause: float = 0.1
    progress_interval: float = 10.0  # how often a wait for the VM is reported
    down_poll: float = 0.5  # how often a VM on its way down is asked whether it still runs
    restart_check_interval: float = 5.0  # between restartCheckCommand attempts (as Packer)
    transfer: TransferTiming = field(default_factory=TransferTiming)  # when long uploads and downloads report


@dataclass
class StepResult:
    ref: StepRef
    outcome: Outcome
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    message: str = ""
    reboots: int = 0
    ended_by_reboot: bool = False
    notes: list[str] = field(default_factory=list)  # what happened on the way (reboots), for the report


@dataclass
class RunResult:
    outcome: Outcome
    exit_code: int
    message: str = ""
    boot_id: str | None = None
    steps: list[StepResult] = field(default_factory=list)

    @property
    def reboots(self) -> int:
        return sum(s.reboots for s in self.steps)


class _Interrupted(Exception):
    pass


class _DeadlineExceeded(Exception):
    pass


class _WindowClosed(Exception):
    """An action's own time limit (the reconnect window, restartTimeout) ran out before the build deadline."""


class _NotBack(Exception):
    def __init__(self, last_error: str) -> None:
        super().__init__(last_error)
        self.last_error = last_error


class _StepFailed(Exception):
    def __init__(self, outcome: Outcome, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.outcome, self.message, self.exit_code = outcome, message, exit_code


def _one_more_drop(drops: int, exc: ConnectionLost) -> int:
    """Count a dropped connection during a command; a VM that keeps dropping it ends the step."""
    drops += 1
    if drops > MAX_DROPS_PER_ACTION:
        raise _StepFailed(
            Outcome.CONNECTION_LOST, f"the connection dropped {drops} times during this step: {exc}"
        ) from None
    return drops


class Runner:
    def __init__(
        self,
        selected: SelectedPlan,
        transport_factory: Callable[[], Transport],
        emit: Callable[[Event], None],
        options: RunOptions,
        *,
        target: str,
        shared_fetcher: SharedFetcher | None = None,
    ) -> None:
        self.selected = selected
        self.shared_fetcher = shared_fetcher  # a fleet fetches each script and file once for all its hosts
        self.transport_factory = transport_factory
        self.emit = emit
        self.options = options
        self.target = target
        self.transport: Transport | None = None
        self.boot_id: str | None = None
        self.results: list[StepResult] = []
        total = len(selected.steps)
        self.refs = [
            StepRef(i, total, s.step.name, s.step.kind, s.step.phase) for i, s in enumerate(selected.steps, start=1)
        ]
        self._interrupted = False
        self._current: asyncio.Future[Any] | None = None
        self._deadline = 0.0
        self._fetched: dict[Content, Path] = {}
        self._fetcher: ContentFetcher | SharedFetcher | None = None
        self._kept: list[tuple[KeptFile, str]] = []  # files earlier steps left for later ones, with the step's name
        self._fetching: StepRef | None = None  # the step whose script or file is being fetched

    # ------------------------------------------------------------------------------------------ control
    def interrupt(self) -> None:
        """Stop the run (Ctrl-C): the operation under way is cancelled, its remote process stopped, temporary
        files removed; the run then ends as interrupted."""
        self._interrupted = True
        if self._fetcher is not None:
            self._fetcher.cancel()
        if self._current is not None and not self._current.done():
            self._current.cancel()

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        started = time.time()
        self._deadline = loop.time() + self.options.timeout_seconds
        self.emit(
            RunStarted(
                self.target,
                template=self.selected.plan.template,
                os_type=self.selected.plan.os_type,
                steps=tuple(self.refs),
                selected=sum(s.runs for s in self.selected.steps),
                timeout_seconds=self.options.timeout_seconds,
                command_line=self.options.command_line,
            )
        )
        workdir = Path(tempfile.mkdtemp(prefix="aibx-run-"))
        try:
            result = await self._run(workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if self.transport is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.transport.close(), 10)
        result.boot_id = self.boot_id
        result.steps = self.results
        self.emit(
            RunFinished(
                self.target,
                outcome=result.outcome,
                exit_code=result.exit_code,
                started=started,
                ended=time.time(),
                message=result.message,
                boot_id=self.boot_id,
            )
        )
        return result

    def _finish(self, outcome: Outcome, message: str = "") -> RunResult:
        return RunResult(outcome, int(EXIT_CODES[outcome]), message)

    async def _run(self, workdir: Path) -> RunResult:
        refused = self._refusals()
        if refused:
            return self._finish(Outcome.REFUSED, refused)
        # 1. every script and file, checked, before anything reaches the VM
        try:
            failure = await self._fetch_all(workdir)
        except _Interrupted:
            self._not_run_all("interrupted")
            return self._finish(Outcome.INTERRUPTED, "interrupted while fetching scripts and files")
        except _DeadlineExceeded:
            self._not_run_all("timed out")
            return self._finish(Outcome.TIMED_OUT, self._deadline_message())
        if failure:
            return failure
        # 2. connect
        try:
            await self._connect()
        except (ConnectError, ConnectionLost) as exc:
            self._not_run_all("could not connect")
            return self._finish(Outcome.CONNECT_FAILED, str(exc))
        except _Interrupted:
            self._not_run_all("interrupted")
            return self._finish(Outcome.INTERRUPTED, "interrupted while connecting")
        except _DeadlineExceeded:
            self._not_run_all("timed out")
            return self._finish(Outcome.TIMED_OUT, self._deadline_message())
        # 3. the steps, in order; the first failure ends the run
        outcome: Outcome | None = None
        message = ""
        for ref, selected in zip(self.refs, self.selected.steps, strict=True):
            if outcome is not None:
                self._skip(ref, Outcome.NOT_RUN, f"the run {outcome.value} before it")
                continue
            if not selected.runs:
                self._skip(ref, Outcome.SKIPPED, selected.reason or "")
                continue
            result = await self._run_step(ref, selected.step)
            if result.outcome is Outcome.FAILED:
                outcome, message = result.outcome, f"step {ref.name!r} failed: {result.message}"
            elif result.outcome is not Outcome.SUCCEEDED:
                outcome, message = result.outcome, f"step {ref.name!r}: {result.message}"
        if outcome is None:
            return self._finish(Outcome.SUCCEEDED)
        return self._finish(outcome, message)

    def _deadline_message(self) -> str:
        minutes = self.options.timeout_seconds / 60
        return f"the build timeout of {minutes:g} minutes expired (buildTimeoutInMinutes, or --timeout-minutes)"

    def _refusals(self) -> str:
        """Steps that cannot run, found before anything is fetched or connected to."""
        problems = []
        for s in self.selected.steps:
            if not s.runs:
                continue
            problems += [f"{s.step.name}: {reason}" for reason in s.step.blocked]
            for action in s.step.actions:
                if not isinstance(action, (Exec, Upload, Restart, WindowsUpdate)):
                    problems.append(f"{s.step.name}: {type(action).__name__} is not supported by aibx run yet")
        return "; ".join(problems)

    def _skip(self, ref: StepRef, outcome: Outcome, reason: str) -> None:
        self.results.append(StepResult(ref, outcome, message=reason))
        self.emit(StepSkipped(self.target, step=ref, outcome=outcome, reason=reason))

    def _not_run_all(self, why: str) -> None:
        for ref, selected in zip(self.refs, self.selected.steps, strict=True):
            self._skip(ref, *_not_run(selected, why))

    # ------------------------------------------------------------------------------------------ guarded awaits
    async def _guarded(self, coro: Coroutine[Any, Any, T], until: float | None = None) -> T:
        """Await ``coro`` within the deadline (and ``until``, an action's own limit, if it comes first),
        cancellable by ``interrupt()``. Raises _DeadlineExceeded, _WindowClosed or _Interrupted."""
        loop = asyncio.get_running_loop()
        window = until is not None and until < self._deadline
        limit = until if window and until is not None else self._deadline
        remaining = limit - loop.time()
        if self._interrupted or remaining <= 0:
            coro.close()
            if self._interrupted:
                raise _Interrupted()
            raise _WindowClosed() if window else _DeadlineExceeded()
        task = asyncio.ensure_future(coro)
        self._current = task
        try:
            return await asyncio.wait_for(task, remaining)
        except asyncio.TimeoutError:
            if self._interrupted:
                raise _Interrupted() from None
            raise (_WindowClosed() if window else _DeadlineExceeded()) from None
        except asyncio.CancelledError:
            if self._interrupted and task.cancelled():
                raise _Interrupted() from None
            raise
        finally:
            self._current = None

    async def _sleep(self, seconds: float, until: float | None = None) -> None:
        limit = min(self._deadline, until if until is not None else self._deadline)
        remaining = limit - asyncio.get_running_loop().time()
        await self._guarded(asyncio.sleep(max(0.0, min(seconds, remaining))), until)

    # ------------------------------------------------------------------------------------------ fetching
    async def _fetch_all(self, workdir: Path) -> RunResult | None:
        def notice(level: str) -> Callable[[str], None]:
            return lambda message: self.emit(Notice(self.target, message=message, level=level))

        self._fetcher = self.shared_fetcher or ContentFetcher(
            workdir,
            self.options.fetch,
            on_retry=notice("info"),
            on_warning=notice("warning"),
            start_meter=lambda shown: self.transfer_meter(self._fetching, "download", shown),
        )
        for index, (ref, selected) in enumerate(zip(self.refs, self.selected.steps, strict=True)):
            if not selected.runs:
                continue
            self._fetching = ref
            for content in _contents(selected.step):
                try:
                    self._fetched[content] = await self._guarded(self._fetcher.fetch(content))
                except FetchError as exc:
                    now = time.time()
                    message = f"{exc} (nothing was run on the VM: every script and file is checked first)"
                    for earlier_ref, earlier in zip(self.refs[:index], self.selected.steps[:index], strict=True):
                        self._skip(earlier_ref, *_not_run(earlier, "a later step's script or file failed its check"))
                    self.results.append(StepResult(ref, Outcome.FAILED, started=None, ended=now, message=message))
                    self.emit(
                        StepFinished(
                            self.target, step=ref, outcome=Outcome.FAILED, started=None, ended=now, message=message
                        )
                    )
                    for later_ref, later in zip(self.refs[index + 1 :], self.selected.steps[index + 1 :], strict=True):
                        self._skip(later_ref, *_not_run(later, "an earlier step's script or file failed its check"))
                    return self._finish(Outcome.FAILED, f"step {ref.name!r} failed: {message}")
        return None

    # ------------------------------------------------------------------------------------------ connecting
    async def _connect(self) -> None:
        transport = self.transport_factory()
        self.emit(Connecting(self.target))
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self._guarded(transport.connect())
        self.transport = transport
        note = transport.connect_note
        if note:
            self.emit(Notice(self.target, message=note, level="warning"))
        self.boot_id = await self._guarded(transport.boot_identity())
        self.emit(Connected(self.target, boot_id=self.boot_id, seconds=loop.time() - began))

    # ------------------------------------------------------------------------------------------ drops and restarts
    async def _ride_out(
        self,
        ref: StepRef,
        reason: str,
        during: str,
        *,
        expected: bool = False,
        until: float | None = None,
        limit: str = "",
    ) -> bool | None:
        """The connection dropped (``reason``) or the VM is going down: wait for it to answer again within the
        reconnect window (or ``until``), reconnect and compare the boot identity. Returns True when the VM
        restarted, False when it came back without restarting, None when its boot identity is unknown. Raises
        _StepFailed: TIMED_OUT if it does not come back in time, CONNECTION_LOST if it no longer lets us in."""
        transport = self._transport()
        loop = asyncio.get_running_loop()
        began = loop.time()
        if until is None:
            until = began + self.options.reconnect_timeout
        window = round(until - began, 3)  # (began + t) - began is not always t in floating point
        limit = limit or f"{format_duration(window)} (--reconnect-timeout)"
        before = self.boot_id
        self.emit(
            ConnectionDropped(
                self.target, step=ref, reason=reason, during=during, window_seconds=window, expected=expected
            )
        )
        attempts = 0
        while True:
            try:
                boot, tries = await self._wait_until_back(ref, until, reason, began)
            except _NotBack as exc:
                raise _StepFailed(
                    Outcome.TIMED_OUT,
                    f"{transport.service} did not come back within {limit} after the connection dropped "
                    f"(during {during}); last error: {exc.last_error}",
                ) from None
            attempts += tries
            if boot is not None and boot == before:
                try:
                    stopping = await self._guarded(transport.shutting_down(), until)
                except (ConnectionLost, TransportError):
                    continue  # gone again: it was on its way down
                except _WindowClosed:
                    stopping = False
                if stopping:  # reached the old system still going down: wait until it is gone
                    try:
                        await self._wait_until_down(ref, before, until, began)
                    except _WindowClosed:
                        raise _StepFailed(
                            Outcome.TIMED_OUT, f"the VM was still shutting down when {limit} ran out"
                        ) from None
                    continue
            rebooted = None if boot is None or before is None else boot != before
            self.emit(
                Reconnected(
                    self.target,
                    step=ref,
                    seconds=loop.time() - began,
                    attempts=attempts,
                    boot_id=boot,
                    previous_boot_id=before,
                    rebooted=rebooted,
                    service=transport.service,
                )
            )
            if boot is not None:
                self.boot_id = boot
            return rebooted

    async def _wait_until_back(self, ref: StepRef, until: float, why: str, began: float) -> tuple[str | None, int]:
        """Reconnect until the VM lets us in and tells its boot identity; returns (boot identity, attempts).
        Raises _NotBack with the last error when ``until`` passes."""
        transport = self._transport()
        loop = asyncio.get_running_loop()
        attempts = 0
        last_error = why
        next_report = loop.time() + self.options.progress_interval
        while True:
            attempts += 1
            tried = loop.time()
            try:
                await self._guarded(transport.reconnect(), until)
                return await self._guarded(transport.boot_identity(), until), attempts
            except ConnectError as exc:
                if exc.kind in ("hostkey", "auth", "tls"):
                    raise _StepFailed(
                        Outcome.CONNECTION_LOST, f"cannot reconnect after the connection dropped: {exc}"
                    ) from None
                last_error = exc.detail
            except TransportError as exc:  # dropped again while logging in or reading the boot identity
                last_error = str(exc)
            except _WindowClosed:
                pending = loop.time() - tried
                if pending >= 1:
                    last_error = f"no answer ({pending:.0f} s into a connection attempt)"
                raise _NotBack(last_error) from None
            now = loop.time()
            next_report = self._report_waiting(ref, "up", now, next_report, began, attempts, last_error)
            if now - tried < self.options.reconnect_pause:
                try:
                    await self._sleep(self.options.reconnect_pause, until)
                except _WindowClosed:
                    raise _NotBack(last_error) from None

    def _report_waiting(
        self, ref: StepRef, phase: str, now: float, due: float, began: float, attempts: int, last_error: str
    ) -> float:
        """Say how the wait for the VM goes, every ``progress_interval`` seconds; returns when it is next due."""
        if now < due:
            return due
        self.emit(
            WaitingForHost(
                self.target,
                step=ref,
                phase=phase,
                elapsed=now - began,
                attempts=attempts,
                last_error=last_error,
                service=self._transport().service,
            )
        )
        return now + self.options.progress_interval

    async def _wait_until_down(self, ref: StepRef, before: str | None, until: float, began: float) -> None:
        """Ask the VM for its boot identity every ``down_poll`` seconds until the connection drops (or a new
        boot answers). Raises _WindowClosed if it still answers at ``until``."""
        transport = self._transport()
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.options.progress_interval
        polls = 0
        while True:
            polls += 1
            try:
                boot = await self._guarded(transport.boot_identity(), until)
            except ConnectionLost:
                return
            except TransportError:  # an error while it shuts down: still up, ask again
                boot = before
            if boot is not None and boot != before:
                return
            next_report = self._report_waiting(ref, "down", loop.time(), next_report, began, polls, "it still answers")
            await self._sleep(self.options.down_poll, until)

    def _transport(self) -> Transport:
        assert self.transport is not None
        return self.transport

    # ------------------------------------------------------------------------------------------ steps
    async def _run_step(self, ref: StepRef, step: StepPlan) -> StepResult:
        self.emit(StepStarted(self.target, step=ref))
        started = time.time()
        result = StepResult(ref, Outcome.SUCCEEDED, started=started)
        cut = False  # the step's command did not end by itself: its temporary files are still there
        try:
            for action in step.actions:
                result.exit_code = await self._execute(ref, action, result)
        except _StepFailed as exc:
            result.outcome, result.message = exc.outcome, exc.message
            result.exit_code = exc.exit_code if exc.exit_code is not None else result.exit_code
            cut = exc.outcome is not Outcome.FAILED or exc.exit_code is None
        except _Interrupted:
            result.outcome, result.message = Outcome.INTERRUPTED, "interrupted; the remote process was stopped"
        except _DeadlineExceeded:
            result.outcome = Outcome.TIMED_OUT
            result.message = self._deadline_message() + "; the remote process was stopped"
        if cut or result.ended_by_reboot or result.outcome in (Outcome.INTERRUPTED, Outcome.TIMED_OUT):
            await self._best_effort(ref, step.on_interrupt, "removing the step's temporary files")
        await self._best_effort(ref, step.cleanup, "clean-up")
        if result.outcome is Outcome.SUCCEEDED:
            self._kept += [(kept, ref.name) for kept in step.keeps]
        if result.reboots and self._kept:
            await self._check_kept_files(ref)
        if result.outcome is Outcome.SUCCEEDED and result.notes:
            result.message = "; ".join(result.notes)
        result.ended = time.time()
        self.results.append(result)
        self.emit(
            StepFinished(
                self.target,
                step=ref,
                outcome=result.outcome,
                started=started,
                ended=result.ended,
                exit_code=result.exit_code,
                message=result.message,
                reboots=result.reboots,
                ended_by_reboot=result.ended_by_reboot,
            )
        )
        return result

    async def _execute(self, ref: StepRef, action: Action, result: StepResult) -> int | None:
        if isinstance(action, Exec):
            return await self._exec(ref, action, result)
        if isinstance(action, Upload):
            await self._upload(ref, action, result)
            return None
        if isinstance(action, Restart):
            await self._restart(ref, action, result)
            return None
        if isinstance(action, WindowsUpdate):
            return await self._windows_update(ref, action, result)
        raise _StepFailed(Outcome.FAILED, f"{type(action).__name__} is not supported by aibx run yet")

    async def _exec(self, ref: StepRef, action: Exec, result: StepResult) -> int | None:
        stdin = self._stdin(action.stdin)
        script = action.stdin.data.decode(errors="replace") if action.stdin and action.stdin.data else None
        detail = action.description or ""
        if action.stdin and action.stdin.data is None:
            detail = f"{detail}; stdin: {action.stdin.describe()}"
        self.emit(ActionStarted(self.target, step=ref, kind="exec", text=action.command, detail=detail, script=script))
        until = None  # the command's own limit (the Sysprep wait), inside the build deadline
        if action.timeout_seconds is not None:
            until = asyncio.get_running_loop().time() + action.timeout_seconds
        drops = 0
        while True:
            collector = _OutputCollector(self, ref, action.shutdown_marker)
            try:
                code = await self._guarded(
                    self._transport().run(action.command, stdin=stdin, on_output=collector.feed), until
                )
            except _WindowClosed:
                collector.flush()
                raise _StepFailed(Outcome.TIMED_OUT, _timeout_message(action, collector)) from None
            except ConnectionLost as exc:
                collector.flush()
                drops = _one_more_drop(drops, exc)
                if not exc.command_started:
                    rebooted = await self._ride_out(ref, str(exc), "the start of the command")
                    self._count_reboot(result, rebooted, "the VM restarted before the command started; it ran after")
                    self.emit(Notice(self.target, message="the command had not started: running it now", step=ref))
                    continue
                rebooted = await self._ride_out(ref, str(exc), "the command")
                if rebooted is False:
                    raise _StepFailed(
                        Outcome.FAILED,
                        f"the connection dropped while the command ran ({exc}), and the VM came back without "
                        f"restarting (boot id {self.boot_id} unchanged): the command's outcome is unknown (it may "
                        "still be running on the VM); aibx does not run it again",
                    ) from None
                self._count_reboot(result, rebooted, ENDED_BY_REBOOT)
                result.ended_by_reboot = True
                return None
            except TransportError as exc:  # the transport could not run it at all (its message says why)
                raise _StepFailed(Outcome.FAILED, str(exc)) from None
            finally:
                collector.flush()  # a last line without a newline; flushing twice is harmless
            if collector.saw_shutdown_marker and code in action.valid_exit_codes:
                await self._announced_reboot(ref, result)
            if code in action.valid_exit_codes:
                return code
            warning = dict(action.warn_exit_codes).get(code)
            if warning is not None:
                self.emit(Notice(self.target, message=warning, level="warning", step=ref))
                return code
            if code in SIGNALLED and await self._killed_by_a_reboot(ref, code, result):
                return None
            raise _StepFailed(Outcome.FAILED, collector.failure_message(code, action.valid_exit_codes), code)

    async def _killed_by_a_reboot(self, ref: StepRef, code: int, result: StepResult) -> bool:
        """The command died of a signal (exit code 128 + N). A reboot does that: systemd and other inits send
        SIGTERM to every process before the connection drops, and the exit status may arrive first. If the VM is
        going down (or the connection drops within ``SIGNAL_GRACE`` seconds when the VM cannot say), ride the
        reboot out: the step was ended by it. Otherwise it is an ordinary failure."""
        transport = self._transport()
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            stopping = await self._guarded(transport.shutting_down(), began + SIGNAL_GRACE)
        except ConnectionLost:
            stopping = True
        except (TransportError, _WindowClosed):
            return False
        if stopping is False:
            return False
        until = began + (self.options.reconnect_timeout if stopping else SIGNAL_GRACE)
        try:
            await self._wait_until_down(ref, self.boot_id, until, began)
        except _WindowClosed:
            if not stopping:
                return False  # it still answers: the signal came from something else
            raise _StepFailed(
                Outcome.TIMED_OUT,
                f"the command was killed (exit code {code}) as the VM began shutting down, but the VM still "
                f"answered after {format_duration(self.options.reconnect_timeout)} (--reconnect-timeout)",
            ) from None
        reason = f"killed by a signal (exit code {code}) as the VM went down"
        rebooted = await self._ride_out(ref, reason, "the command")
        if rebooted is False:
            return False
        self._count_reboot(result, rebooted, ENDED_BY_REBOOT)
        result.ended_by_reboot = True
        return True

    async def _announced_reboot(self, ref: StepRef, result: StepResult) -> None:
        """The command succeeded and said the VM is going down: wait for it to go and come back restarted."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        until = began + self.options.reconnect_timeout
        before = self.boot_id
        try:
            await self._wait_until_down(ref, before, until, began)
        except _WindowClosed:
            raise _StepFailed(
                Outcome.TIMED_OUT,
                f"the VM said it was shutting down, but still answered after "
                f"{format_duration(self.options.reconnect_timeout)} (--reconnect-timeout)",
            ) from None
        rebooted = await self._ride_out(
            ref, "the VM went down", "the reboot after the command", expected=True, until=until
        )
        if rebooted is False:
            raise _StepFailed(
                Outcome.FAILED,
                f"the VM said it was shutting down, but came back without restarting (boot id {self.boot_id} "
                "unchanged)",
            )
        self._count_reboot(result, rebooted, "the command finished, then the VM restarted")

    async def _upload(self, ref: StepRef, action: Upload, result: StepResult) -> None:
        data: bytes | Path = action.content.data if action.content.data is not None else self._fetched[action.content]
        self.emit(
            ActionStarted(
                self.target, step=ref, kind="upload", text=action.remote_path, detail=action.content.describe()
            )
        )
        total = len(data) if isinstance(data, bytes) else None
        for drops in range(1, MAX_DROPS_PER_ACTION + 2):
            meter = self.transfer_meter(ref, "upload", action.remote_path, total)
            try:
                await self._guarded(
                    self._transport().put(data, action.remote_path, action.mode, on_progress=meter.update)
                )
                meter.finish()
                return
            except RemoteFileError as exc:
                raise _StepFailed(Outcome.FAILED, f"cannot write {exc}") from None
            except ConnectionLost as exc:
                if drops > MAX_DROPS_PER_ACTION:
                    raise _StepFailed(
                        Outcome.CONNECTION_LOST,
                        f"the connection dropped {drops} times while writing {action.remote_path}: {exc}",
                    ) from None
                rebooted = await self._ride_out(ref, str(exc), f"an upload to {action.remote_path}")
                self._count_reboot(result, rebooted, f"the VM restarted during the upload to {action.remote_path}")
                self.emit(
                    Notice(
                        self.target,
                        message=f"writing {action.remote_path} again, from the start (the first attempt was cut off)",
                        level="warning",
                        step=ref,
                    )
                )
            except TransportError as exc:
                raise _StepFailed(Outcome.FAILED, f"cannot write {action.remote_path}: {exc}") from None

    def transfer_meter(self, ref: StepRef | None, direction: str, path: str, total: int | None = None) -> TransferMeter:
        """A meter whose reports become TransferProgress events of ``ref`` (None: of no step)."""
        return event_meter(self.emit, self.target, ref, direction, path, total, self.options.transfer)

    async def _check_kept_files(self, ref: StepRef) -> None:
        """After a step in which the VM restarted: warn about every file an earlier step left for a later one
        (the staged deprovisioning script) that the reboot took away. Best effort, outside the deadline."""
        transport = self.transport
        if transport is None:
            return
        still_kept = []
        for kept, staged_by in self._kept:
            detail = f"is {kept.path} (from step {staged_by!r}) still there after the reboot?"
            self.emit(ActionStarted(self.target, step=ref, kind="exec", text=kept.check_command, detail=detail))
            try:
                code = await asyncio.wait_for(transport.run(kept.check_command), self.options.cleanup_timeout)
            except (asyncio.TimeoutError, TransportError, OSError):
                code = None  # unknown: check again after the next reboot
            if code == 1:
                message = (
                    f"{kept.path}, written by step {staged_by!r}, is gone after the reboot in step {ref.name!r}: "
                    f"{kept.lost_message}"
                )
                self.emit(Notice(self.target, message=message, level="warning", step=ref))
            else:
                still_kept.append((kept, staged_by))
        self._kept = still_kept

    def _count_reboot(self, result: StepResult, rebooted: bool | None, note: str) -> None:
        if rebooted is False:
            return
        result.reboots += 1
        if rebooted is None:
            note += " (not confirmed: the VM's boot identity is unknown)"
        result.notes.append(note)

    # ------------------------------------------------------------------------------------------ WindowsRestart
    async def _restart(self, ref: StepRef, action: Restart, result: StepResult) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        until = began + action.timeout_seconds
        limit = f"restartTimeout ({format_duration(action.timeout_seconds)})"
        self.emit(ActionStarted(self.target, step=ref, kind="restart", text=action.command, detail=action.description))
        rebooted = await self.restart_vm(ref, action.command, until, limit)
        self._count_reboot(result, rebooted, "the VM restarted")
        if action.check_command:
            await self._restart_check(ref, action.check_command, until, limit, result)

    async def restart_vm(self, ref: StepRef, command: str, until: float, limit: str) -> bool | None:
        """Restart the VM with ``command`` and wait for it to come back with a new boot identity, by ``until``
        (``limit`` names that limit in messages). The seam for every restart the engine makes: WindowsRestart,
        and WindowsUpdate between rounds. Returns ``rebooted`` as ``_ride_out``; raises _StepFailed."""
        transport = self._transport()
        loop = asyncio.get_running_loop()
        began = loop.time()
        before = self.boot_id
        collector = _OutputCollector(self, ref)
        dropped = ""
        try:
            code = await self._guarded(transport.run(command, on_output=collector.feed), until)
        except ConnectionLost as exc:  # it went down under the command: that is the restart
            dropped = str(exc)
        except TransportError as exc:
            raise _StepFailed(Outcome.FAILED, f"the restart command could not run: {exc}") from None
        except _WindowClosed:
            raise _StepFailed(
                Outcome.TIMED_OUT, f"the restart command was still running when {limit} ran out"
            ) from None
        else:
            if code in RESTART_UNDER_WAY:
                self.emit(
                    Notice(
                        self.target, message=f"restart command: exit code {code}, {RESTART_UNDER_WAY[code]}", step=ref
                    )
                )
            elif code != 0:
                raise _StepFailed(Outcome.FAILED, "restart command: " + collector.failure_message(code, (0,)), code)
        finally:
            collector.flush()
        while True:
            if not dropped:
                try:
                    await self._wait_until_down(ref, before, until, began)
                except _WindowClosed:
                    raise _StepFailed(
                        Outcome.TIMED_OUT,
                        f"the VM did not restart within {limit}: it still answers with the same boot identity",
                    ) from None
            rebooted = await self._ride_out(
                ref, dropped or "the VM went down", "a restart", expected=True, until=until, limit=limit
            )
            if rebooted is not False:
                return rebooted
            # the connection dropped, but the VM is the same boot: the restart has not happened yet
            self.emit(Notice(self.target, message="the VM has not restarted yet; waiting for it to go down", step=ref))
            dropped = ""

    async def _restart_check(self, ref: StepRef, command: str, until: float, limit: str, result: StepResult) -> None:
        """Run ``command`` until it exits 0 (its exit code decides, unlike Packer's), by ``until``."""
        last = "it never ran"
        while True:
            collector = _OutputCollector(self, ref)
            self.emit(ActionStarted(self.target, step=ref, kind="exec", text=command, detail="restart check"))
            try:
                code = await self._guarded(self._transport().run(command, on_output=collector.feed), until)
            except ConnectionLost as exc:  # it went down again (a second restart, as updates often want)
                rebooted = await self._ride_out(ref, str(exc), "the restart check", until=until, limit=limit)
                self._count_reboot(result, rebooted, "the VM restarted again during the restart check")
                continue
            except TransportError as exc:
                raise _StepFailed(Outcome.FAILED, f"restart check: {exc}") from None
            except _WindowClosed:
                raise _StepFailed(
                    Outcome.TIMED_OUT, f"the restart check did not succeed within {limit}; {last}"
                ) from None
            finally:
                collector.flush()
            if code == 0:
                return
            last = "last " + collector.failure_message(code, (0,))
            self.emit(
                Notice(
                    self.target,
                    message=f"restart check: exit code {code}; trying again in "
                    f"{format_duration(self.options.restart_check_interval)}",
                    step=ref,
                )
            )
            try:
                await self._sleep(self.options.restart_check_interval, until)
            except _WindowClosed:
                raise _StepFailed(
                    Outcome.TIMED_OUT, f"the restart check did not succeed within {limit}; {last}"
                ) from None

    # ------------------------------------------------------------------------------------------ WindowsUpdate
    async def _windows_update(self, ref: StepRef, action: WindowsUpdate, result: StepResult) -> int | None:
        """Rounds of ``action.command`` (search, filter, download and install, as SYSTEM), each ending with an
        ``AIBX-WU-RESULT`` line; ``next_move`` decides what follows: restart the VM and search again, search
        again, done, or fail (a loop, a pending restart that does not clear, the round limit, an error).

        A round cut short by a restart (an update that restarts the VM itself) is followed by another round. A
        round whose connection dropped *without* a restart fails the step: the update task may still be running
        on the VM, and aibx never starts a second one beside it."""
        from aibx.provisioners.windows_update import RESULT_MARKER, RoundResult, next_move, parse_round_output

        loop = asyncio.get_running_loop()
        rounds: list[RoundResult | None] = []  # the rounds that finished, for next_move
        started = 0  # rounds started, including those a restart cut short
        drops = 0
        restarts = 0
        while True:
            if started >= action.max_rounds:
                cut = started - len(rounds)
                raise _StepFailed(
                    Outcome.FAILED,
                    f"Windows Update did not finish within {action.max_rounds} rounds (the limit); {cut} of them "
                    "were cut short by restarts of the VM",
                )
            started += 1
            self.emit(
                ActionStarted(
                    self.target,
                    step=ref,
                    kind="exec",
                    text=action.command,
                    detail=f"Windows Update round {started} (at most {action.max_rounds})",
                )
            )
            collector = _OutputCollector(self, ref, capture=RESULT_MARKER)
            try:
                code = await self._guarded(self._transport().run(action.command, on_output=collector.feed))
            except ConnectionLost as exc:
                collector.flush()
                drops = _one_more_drop(drops, exc)
                if not exc.command_started:
                    started -= 1  # it never ran: the same round, once the VM answers
                    rebooted = await self._ride_out(ref, str(exc), "the start of a Windows Update round")
                    self._count_reboot(result, rebooted, "the VM restarted before a Windows Update round started")
                    continue
                rebooted = await self._ride_out(ref, str(exc), f"Windows Update round {started}")
                if rebooted is False:
                    raise _StepFailed(
                        Outcome.FAILED,
                        f"the connection dropped during Windows Update round {started} ({exc}) and the VM came back "
                        f"without restarting (boot id {self.boot_id} unchanged): the round may still be running on "
                        "the VM as a scheduled task; aibx does not start another beside it",
                    ) from None
                self._count_reboot(result, rebooted, f"the VM restarted during Windows Update round {started}")
                self.emit(
                    Notice(
                        self.target,
                        message=f"Windows Update round {started} was cut short by a restart of the VM; "
                        "the next round searches again",
                        step=ref,
                    )
                )
                continue
            except TransportError as exc:
                raise _StepFailed(Outcome.FAILED, str(exc)) from None
            finally:
                collector.flush()
            last = parse_round_output("\n".join(collector.captured))
            rounds.append(last)
            if last is None:
                raise _StepFailed(
                    Outcome.FAILED,
                    f"Windows Update round {started} ended without its result line ({RESULT_MARKER.strip()}): "
                    + collector.failure_message(code, (0,)),
                    code,
                )
            move = next_move(rounds, action.max_rounds)
            self.emit(
                UpdateRound(
                    self.target,
                    step=ref,
                    number=started,
                    max_rounds=action.max_rounds,
                    summary=last.summary(started),
                    next=move.action,
                    found=last.found,
                    selected=last.selected,
                    skipped=last.skipped,
                    installed=last.installed,
                    failed=last.failed,
                    reboot_required=last.reboot_required,
                    updates=tuple(
                        (u.get("kb", ""), u.get("title", ""), u.get("result", ""), u.get("hresult", ""))
                        for u in last.updates
                    ),
                )
            )
            if move.action == "fail":
                raise _StepFailed(Outcome.FAILED, f"Windows Update: {move.reason}", code)
            if move.action == "done":
                installed = sum(r.installed for r in rounds if r is not None)
                self.emit(
                    Notice(
                        self.target,
                        message=f"Windows Update done after {started} round{'s' * (started != 1)}: {installed} "
                        f"installed, {restarts} restart{'s' * (restarts != 1)}; {move.reason}",
                        step=ref,
                    )
                )
                return code
            if move.action == "restart":
                self.emit(
                    ActionStarted(
                        self.target,
                        step=ref,
                        kind="restart",
                        text=WINDOWS_UPDATE_RESTART,
                        detail=f"after Windows Update round {started}: {move.reason}",
                    )
                )
                window = self.options.reconnect_timeout
                limit = f"{format_duration(window)} (--reconnect-timeout)"
                rebooted = await self.restart_vm(ref, WINDOWS_UPDATE_RESTART, loop.time() + window, limit)
                restarts += 1
                self._count_reboot(result, rebooted, f"the VM restarted after Windows Update round {started}")

    def _stdin(self, content: Content | None) -> bytes | Path | None:
        if content is None:
            return None
        return content.data if content.data is not None else self._fetched[content]

    async def _best_effort(self, ref: StepRef, actions: list[Action], what: str) -> None:
        """Run clean-up actions outside the deadline and the interrupt, bounded by ``cleanup_timeout``; a failure
        (the VM gone again, an exit code) is a warning."""
        if not actions or self.transport is None:
            return
        transport = self.transport
        for action in actions:
            if not isinstance(action, Exec):
                continue
            self.emit(ActionStarted(self.target, step=ref, kind="exec", text=action.command, detail=action.description))
            collector = _OutputCollector(self, ref)
            try:
                code = await asyncio.wait_for(
                    transport.run(action.command, on_output=collector.feed), self.options.cleanup_timeout
                )
            except (asyncio.TimeoutError, TransportError, OSError) as exc:
                self.emit(
                    Notice(
                        self.target, message=f"{what} failed: {exc or type(exc).__name__}", level="warning", step=ref
                    )
                )
                return
            finally:
                collector.flush()
            if code not in action.valid_exit_codes:
                self.emit(Notice(self.target, message=f"{what} failed: exit code {code}", level="warning", step=ref))


class _OutputCollector:
    """Turns a step's output chunks into Output events of whole lines, keeping the last stderr lines for the
    failure message. Memory stays bounded whatever the output's size."""

    def __init__(self, runner: Runner, ref: StepRef, shutdown_marker: str = "", capture: str = "") -> None:
        self.runner, self.ref = runner, ref
        # stdout lines starting with ``capture`` are kept in ``captured`` instead of being shown (a result line)
        self.capture = capture
        self.captured: list[str] = []
        # long lines are cut where the bus's redactor sees no secret (issue 11: a secret cut in two was unmasked)
        guard = runner.emit.redactor if isinstance(runner.emit, EventBus) else None
        self.splitters = {"stdout": LineSplitter(guard=guard), "stderr": LineSplitter(guard=guard)}
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_stdout: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.shutdown_marker = shutdown_marker
        self.saw_shutdown_marker = False

    def feed(self, stream: str, chunk: bytes) -> None:
        self._emit(stream, self.splitters[stream].feed(chunk))

    def flush(self) -> None:
        for stream, splitter in self.splitters.items():
            self._emit(stream, splitter.flush())

    def _emit(self, stream: str, lines: list[str]) -> None:
        if self.capture and stream == "stdout" and lines:
            self.captured += [line for line in lines if line.startswith(self.capture)]
            lines = [line for line in lines if not line.startswith(self.capture)]
        if not lines:
            return
        if self.shutdown_marker and stream == "stderr" and lines[-1] == self.shutdown_marker:
            self.saw_shutdown_marker = True  # the wrapper's last word
        (self.tail if stream == "stderr" else self.last_stdout).extend(lines[-TAIL_LINES:])
        self.runner.emit(Output(self.runner.target, step=self.ref, stream=stream, lines=tuple(lines)))

    def last_lines(self) -> str:
        """The last lines of output and of stderr, for a message about a command that did not end by itself."""
        text = ""
        for lines, what in ((self.last_stdout, "output"), (self.tail, "stderr")):
            if lines:
                text += f"; last lines of {what}:\n" + "\n".join(f"  {line}" for line in lines)
        return text

    def failure_message(self, code: int, valid: tuple[int, ...]) -> str:
        allowed = "" if valid == (0,) else f" (allowed: {', '.join(map(str, valid))})"
        # Windows exit codes are often HRESULTs (-2147023570 is 0x8007052E): the hex form is what to search for
        hresult = f" (0x{code & 0xFFFFFFFF:08X})" if code < 0 or code > 0xFFFF else ""
        text = f"exit code {code}{hresult}{allowed}"
        lines, what = (self.tail, "stderr") if self.tail else (self.last_stdout, "output")
        if lines:
            text += f"; last lines of {what}:\n" + "\n".join(f"  {line}" for line in lines)
        for needles, hint in FAILURE_HINTS:
            if any(needle in line for line in self.tail for needle in needles):
                text += f"\nhint: {hint}"
        return text


def _timeout_message(action: Exec, collector: _OutputCollector) -> str:
    limit = format_duration(action.timeout_seconds or 0)
    if action.timeout_name:
        limit += f" ({action.timeout_name})"
    message = action.timeout_message or "the command did not finish within {limit}"
    if "{limit}" not in message:
        message += " within {limit}"
    return message.replace("{limit}", limit) + "; it was stopped" + collector.last_lines()


def format_duration(seconds: float) -> str:
    """90 -> "1m30s", 1200 -> "20m00s", 2.5 -> "2.5 s" (as the console shows times)."""
    from aibx.engine.console_view import format_seconds

    return format_seconds(seconds)


def _not_run(selected: SelectedStep, why: str) -> tuple[Outcome, str]:
    return (Outcome.NOT_RUN, why) if selected.runs else (Outcome.SKIPPED, selected.reason or "")


def _contents(step: StepPlan) -> list[Content]:
    out = []
    for action in step.actions:
        content = action.stdin if isinstance(action, Exec) else action.content if isinstance(action, Upload) else None
        if content is not None and content.needs_fetch:
            out.append(content)
    return out
