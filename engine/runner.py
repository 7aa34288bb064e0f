"""The runner: executes a plan against one VM through a transport, and tells the world through events.

It owns the order of the steps, the overall deadline (``buildTimeoutInMinutes``), fetching and checking every
script and file before anything reaches the VM, stopping a step's remote process and removing its temporary files
when the step does not end by itself (interrupt, deadline), and the exit code.

Made to grow: ``Runner.run`` is a coroutine that neither prints nor calls ``asyncio.run``, so many runners can
share one event loop (``--parallel``); the transport comes from a factory, so a dropped connection can be replaced
by a new one; the boot identity is recorded at connect; a lost connection goes through ``_connection_lost``, the one
place where reconnecting within ``reconnect_timeout`` and confirming a reboot will go.
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
    Event,
    Notice,
    Outcome,
    Output,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepSkipped,
    StepStarted,
)
from aibx.engine.fetch import ContentFetcher, FetchError, FetchPolicy
from aibx.engine.output import LineSplitter
from aibx.engine.selection import SelectedPlan, SelectedStep
from aibx.engine.transports.base import (
    ConnectError,
    ConnectionLost,
    RemoteFileError,
    Transport,
    TransportError,
)

from aibx.exitcodes import ExitCode
from aibx.plan import Action, Content, Exec, StepPlan, Upload

T = TypeVar("T")
TAIL_LINES = 10  # stderr lines quoted when a step fails
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
    reconnect_timeout: float = 20 * 60.0  # how long a rebooting VM may take to come back (used by reboots)
    cleanup_timeout: float = 15.0  # removing temporary files after an interrupt or the deadline
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    command_line: str = ""


@dataclass
class StepResult:
    ref: StepRef
    outcome: Outcome
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    message: str = ""


@dataclass
class RunResult:
    outcome: Outcome
    exit_code: int
    message: str = ""
    boot_id: str | None = None
    steps: list[StepResult] = field(default_factory=list)


class _Interrupted(Exception):
    pass


class _DeadlineExceeded(Exception):
    pass


class _StepFailed(Exception):
    def __init__(self, outcome: Outcome, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.outcome, self.message, self.exit_code = outcome, message, exit_code


class Runner:
    def __init__(
        self,
        selected: SelectedPlan,
        transport_factory: Callable[[], Transport],
        emit: Callable[[Event], None],
        options: RunOptions,
        *,
        target: str,
    ) -> None:
        self.selected = selected
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
        self._fetcher: ContentFetcher | None = None

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
                if not isinstance(action, (Exec, Upload)):
                    problems.append(f"{s.step.name}: {type(action).__name__} is not supported over this transport yet")
        return "; ".join(problems)

    def _skip(self, ref: StepRef, outcome: Outcome, reason: str) -> None:
        self.results.append(StepResult(ref, outcome, message=reason))
        self.emit(StepSkipped(self.target, step=ref, outcome=outcome, reason=reason))

    def _not_run_all(self, why: str) -> None:
        for ref, selected in zip(self.refs, self.selected.steps, strict=True):
            self._skip(ref, *_not_run(selected, why))

    # ------------------------------------------------------------------------------------------ guarded awaits
    async def _guarded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` within the deadline, cancellable by ``interrupt()``."""
        loop = asyncio.get_running_loop()
        remaining = self._deadline - loop.time()
        if self._interrupted or remaining <= 0:
            coro.close()
            raise _Interrupted() if self._interrupted else _DeadlineExceeded()
        task = asyncio.ensure_future(coro)
        self._current = task
        try:
            return await asyncio.wait_for(task, remaining)
        except asyncio.TimeoutError:
            if self._interrupted:
                raise _Interrupted() from None
            raise _DeadlineExceeded() from None
        except asyncio.CancelledError:
            if self._interrupted and task.cancelled():
                raise _Interrupted() from None
            raise
        finally:
            self._current = None

    # ------------------------------------------------------------------------------------------ fetching
    async def _fetch_all(self, workdir: Path) -> RunResult | None:
        def notice(level: str) -> Callable[[str], None]:
            return lambda message: self.emit(Notice(self.target, message=message, level=level))

        self._fetcher = ContentFetcher(
            workdir, self.options.fetch, on_retry=notice("info"), on_warning=notice("warning")
        )
        for index, (ref, selected) in enumerate(zip(self.refs, self.selected.steps, strict=True)):
            if not selected.runs:
                continue
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
        note = getattr(transport, "host_key_note", "")
        if note:
            self.emit(Notice(self.target, message=note, level="warning"))
        self.boot_id = await self._guarded(transport.boot_identity())
        self.emit(Connected(self.target, boot_id=self.boot_id, seconds=loop.time() - began))

    async def _connection_lost(self, ref: StepRef, exc: ConnectionLost) -> None:
        """The seam for reboots inside a step: reconnect within ``options.reconnect_timeout`` (a new transport from
        the factory), confirm a new boot by comparing ``boot_identity()`` with ``self.boot_id``, then let the step
        go on. Today a lost connection ends the step."""
        raise _StepFailed(Outcome.CONNECTION_LOST, str(exc))

    # ------------------------------------------------------------------------------------------ steps
    async def _run_step(self, ref: StepRef, step: StepPlan) -> StepResult:
        self.emit(StepStarted(self.target, step=ref))
        started = time.time()
        result = StepResult(ref, Outcome.SUCCEEDED, started=started)
        try:
            for action in step.actions:
                result.exit_code = await self._execute(ref, action)
        except _StepFailed as exc:
            result.outcome, result.message = exc.outcome, exc.message
            result.exit_code = exc.exit_code if exc.exit_code is not None else result.exit_code
        except _Interrupted:
            result.outcome, result.message = Outcome.INTERRUPTED, "interrupted; the remote process was stopped"
        except _DeadlineExceeded:
            result.outcome = Outcome.TIMED_OUT
            result.message = self._deadline_message() + "; the remote process was stopped"
        if result.outcome in (Outcome.INTERRUPTED, Outcome.TIMED_OUT, Outcome.CONNECTION_LOST):
            await self._best_effort(ref, step.on_interrupt, "removing the step's temporary files")
        await self._best_effort(ref, step.cleanup, "clean-up")
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
            )
        )
        return result

    async def _execute(self, ref: StepRef, action: Action) -> int | None:
        transport = self.transport
        assert transport is not None
        if isinstance(action, Exec):
            stdin = self._stdin(action.stdin)
            script = action.stdin.data.decode(errors="replace") if action.stdin and action.stdin.data else None
            detail = action.description or ""
            if action.stdin and action.stdin.data is None:
                detail = f"{detail}; stdin: {action.stdin.describe()}"
            self.emit(
                ActionStarted(self.target, step=ref, kind="exec", text=action.command, detail=detail, script=script)
            )
            collector = _OutputCollector(self, ref)
            try:
                code = await self._guarded(transport.run(action.command, stdin=stdin, on_output=collector.feed))
            except ConnectionLost as exc:
                collector.flush()
                await self._connection_lost(ref, exc)
                return None
            except TransportError as exc:  # the transport could not run it at all (its message says why)
                raise _StepFailed(Outcome.FAILED, str(exc)) from None
            finally:
                collector.flush()  # a last line without a newline; flushing twice is harmless
            if code in action.valid_exit_codes:
                return code
            warning = dict(action.warn_exit_codes).get(code)
            if warning is not None:
                self.emit(Notice(self.target, message=warning, level="warning", step=ref))
                return code
            raise _StepFailed(Outcome.FAILED, collector.failure_message(code, action.valid_exit_codes), code)
        if isinstance(action, Upload):
            data: bytes | Path = (
                action.content.data if action.content.data is not None else self._fetched[action.content]
            )
            self.emit(
                ActionStarted(
                    self.target, step=ref, kind="upload", text=action.remote_path, detail=action.content.describe()
                )
            )
            try:
                await self._guarded(transport.put(data, action.remote_path, action.mode))
            except RemoteFileError as exc:
                raise _StepFailed(Outcome.FAILED, f"cannot write {exc}") from None
            except ConnectionLost as exc:
                await self._connection_lost(ref, exc)
            except TransportError as exc:
                raise _StepFailed(Outcome.FAILED, f"cannot write {action.remote_path}: {exc}") from None
            return None
        raise _StepFailed(Outcome.FAILED, f"{type(action).__name__} is not supported over this transport yet")

    def _stdin(self, content: Content | None) -> bytes | Path | None:
        if content is None:
            return None
        return content.data if content.data is not None else self._fetched[content]

    async def _best_effort(self, ref: StepRef, actions: list[Action], what: str) -> None:
        """Run clean-up actions outside the deadline and the interrupt, bounded by ``cleanup_timeout``; a failure
        is a warning."""
        if not actions or self.transport is None:
            return
        transport = self.transport
        for action in actions:
            if not isinstance(action, Exec):
                continue
            self.emit(ActionStarted(self.target, step=ref, kind="exec", text=action.command, detail=action.description))
            try:
                code = await asyncio.wait_for(transport.run(action.command), self.options.cleanup_timeout)
            except (asyncio.TimeoutError, ConnectionLost, OSError) as exc:
                self.emit(
                    Notice(
                        self.target, message=f"{what} failed: {exc or type(exc).__name__}", level="warning", step=ref
                    )
                )
                return
            if code not in action.valid_exit_codes:
                self.emit(Notice(self.target, message=f"{what} failed: exit code {code}", level="warning", step=ref))


class _OutputCollector:
    """Turns a step's output chunks into Output events of whole lines, keeping the last stderr lines for the
    failure message. Memory stays bounded whatever the output's size."""

    def __init__(self, runner: Runner, ref: StepRef) -> None:
        self.runner, self.ref = runner, ref
        self.splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_stdout: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def feed(self, stream: str, chunk: bytes) -> None:
        self._emit(stream, self.splitters[stream].feed(chunk))

    def flush(self) -> None:
        for stream, splitter in self.splitters.items():
            self._emit(stream, splitter.flush())

    def _emit(self, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        (self.tail if stream == "stderr" else self.last_stdout).extend(lines[-TAIL_LINES:])
        self.runner.emit(Output(self.runner.target, step=self.ref, stream=stream, lines=tuple(lines)))

    def failure_message(self, code: int, valid: tuple[int, ...]) -> str:
        allowed = "" if valid == (0,) else f" (allowed: {', '.join(map(str, valid))})"
        text = f"exit code {code}{allowed}"
        lines, what = (self.tail, "stderr") if self.tail else (self.last_stdout, "output")
        if lines:
            text += f"; last lines of {what}:\n" + "\n".join(f"  {line}" for line in lines)
        return text


def _not_run(selected: SelectedStep, why: str) -> tuple[Outcome, str]:
    return (Outcome.NOT_RUN, why) if selected.runs else (Outcome.SKIPPED, selected.reason or "")


def _contents(step: StepPlan) -> list[Content]:
    out = []
    for action in step.actions:
        content = action.stdin if isinstance(action, Exec) else action.content if isinstance(action, Upload) else None
        if content is not None and content.needs_fetch:
            out.append(content)
    return out
