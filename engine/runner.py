"""The runner: executes a plan against one VM through a transport, and tells the world through events.

It owns the order of the steps, fetching and checking every script and file before anything reaches the VM,
clean-up (a step's temporary files when its command did not end by itself: interrupt, deadline, reboot), the files
earlier steps keep for later ones, and the run's outcome and exit code. The rest lives beside it:

* ``aibx.engine.session.Session``: the connection, the build deadline (``buildTimeoutInMinutes``), interrupts and
  guarded awaits;
* ``aibx.engine.reboots.RebootWatcher``: dropped connections, restarts and boot identities;
* ``aibx.engine.executors``: one executor per action type (Exec, Upload, Restart, WindowsUpdate), found by type.

Made to grow: ``Runner.run`` is a coroutine that neither prints nor calls ``asyncio.run``, so many runners share
one event loop (``aibx.engine.fleet``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aibx.engine.events import (
    ActionStarted,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepSkipped,
    StepStarted,
    exit_code_of,
)
from aibx.engine.executors import StepRun, executor_for
from aibx.engine.fetch import ContentFetcher, FetchError, NameNotFound, SharedFetcher
from aibx.engine.reboots import RebootWatcher
from aibx.engine.selection import SelectedPlan, SelectedStep
from aibx.engine.session import DeadlineExceeded, Interrupted, Pilot, RunOptions, Session, StepFailed, StepResult
from aibx.engine.transports.base import ConnectError, ConnectionLost, Transport, TransportError
from aibx.plan import Action, Content, Exec, KeptFile, StepPlan

__all__ = ["Pilot", "RunOptions", "RunResult", "Runner", "StepResult", "exit_code_of"]


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
        pilot: Pilot | None = None,
    ) -> None:
        self.selected = selected
        self.pilot = pilot
        self._passed_over: list[StepResult] = []  # failed steps the pilot chose to skip (--on-error ask)
        self.shared_fetcher = shared_fetcher  # a fleet fetches each script and file once for all its hosts
        self.session = Session(transport_factory, emit, options, target)
        self.reboots = RebootWatcher(self.session)
        self.emit = emit
        self.options = options
        self.target = target
        self.results: list[StepResult] = []
        total = len(selected.steps)
        self.refs = [
            StepRef(i, total, s.step.name, s.step.kind, s.step.phase) for i, s in enumerate(selected.steps, start=1)
        ]
        self._fetched: dict[Content, Path] = {}
        self._fetcher: ContentFetcher | SharedFetcher | None = None
        self._kept: list[tuple[KeptFile, str]] = []  # files earlier steps left for later ones, with the step's name
        self._fetching: StepRef | None = None  # the step whose script or file is being fetched

    # ------------------------------------------------------------------------------------------ control
    def interrupt(self) -> None:
        """Stop the run (Ctrl-C): the operation under way is cancelled, its remote process stopped, temporary
        files removed; the run then ends as interrupted."""
        if self._fetcher is not None:
            self._fetcher.cancel()
        self.session.interrupt()

    async def run(self) -> RunResult:
        started = time.time()
        self.session.start_clock()
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
            await self.session.close()
        result.boot_id = self.session.boot_id
        result.steps = self.results
        self.emit(
            RunFinished(
                self.target,
                outcome=result.outcome,
                exit_code=result.exit_code,
                started=started,
                ended=time.time(),
                message=result.message,
                boot_id=self.session.boot_id,
            )
        )
        return result

    def _finish(self, outcome: Outcome, message: str = "") -> RunResult:
        return RunResult(outcome, int(exit_code_of(outcome)), message)

    async def _run(self, workdir: Path) -> RunResult:
        refused = self._refusals()
        if refused:
            return self._finish(Outcome.REFUSED, refused)
        # 1. every script and file, checked, before anything reaches the VM
        try:
            failure = await self._fetch_all(workdir)
        except Interrupted:
            self._not_run_all("interrupted")
            return self._finish(Outcome.INTERRUPTED, "interrupted while fetching scripts and files")
        except DeadlineExceeded:
            self._not_run_all("timed out")
            return self._finish(Outcome.TIMED_OUT, self.session.deadline_message())
        if failure:
            return failure
        # 2. connect
        try:
            await self.session.connect()
        except (ConnectError, ConnectionLost) as exc:
            self._not_run_all("could not connect")
            return self._finish(Outcome.CONNECT_FAILED, str(exc))
        except Interrupted:
            self._not_run_all("interrupted")
            return self._finish(Outcome.INTERRUPTED, "interrupted while connecting")
        except DeadlineExceeded:
            self._not_run_all("timed out")
            return self._finish(Outcome.TIMED_OUT, self.session.deadline_message())
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
            try:
                result = await self._piloted_step(ref, selected.step)
            except Interrupted:
                self._skip(ref, Outcome.NOT_RUN, "interrupted before it")
                outcome, message = Outcome.INTERRUPTED, f"interrupted before step {ref.name!r}"
                continue
            except DeadlineExceeded:
                self._skip(ref, Outcome.NOT_RUN, "timed out before it")
                outcome, message = Outcome.TIMED_OUT, self.session.deadline_message()
                continue
            if result is None:
                outcome, message = Outcome.FAILED, f"aborted before step {ref.name!r}"
            elif result.outcome is Outcome.FAILED and any(r is result for r in self._passed_over):
                continue
            elif result.outcome is Outcome.FAILED:
                outcome, message = result.outcome, f"step {ref.name!r} failed: {result.message}"
            elif result.outcome not in (Outcome.SUCCEEDED, Outcome.SKIPPED):
                outcome, message = result.outcome, f"step {ref.name!r}: {result.message}"
        if outcome is None and self._passed_over:
            first = self._passed_over[0]
            message = f"step {first.ref.name!r} failed: {first.message} (skipped at the --on-error prompt)"
            return self._finish(Outcome.FAILED, message)
        if outcome is None:
            return self._finish(Outcome.SUCCEEDED)
        return self._finish(outcome, message)

    async def _piloted_step(self, ref: StepRef, step: StepPlan) -> StepResult | None:
        """The step, with the pilot's say before it (--step) and after a failure (--on-error ask): None when the
        pilot aborted before it; a skipped step is a SKIPPED result."""
        if self.pilot is None:
            return await self._run_step(ref, step)
        choice = await self.session.guarded(self.pilot.before_step(ref))
        if choice == "abort":
            self._skip(ref, Outcome.NOT_RUN, "aborted at the --step prompt")
            return None
        if choice == "skip":
            self._skip(ref, Outcome.SKIPPED, "skipped at the --step prompt")
            return StepResult(ref, Outcome.SKIPPED)
        while True:
            result = await self._run_step(ref, step)
            if result.outcome is not Outcome.FAILED:
                return result
            try:
                choice = await self.session.guarded(self.pilot.after_failure(ref, result.message))
            except (Interrupted, DeadlineExceeded):  # no answer: the failure stands
                return result
            if choice == "retry":
                self.results.remove(result)
                continue
            if choice == "skip":  # the run goes on, and fails at the end
                self._passed_over.append(result)
            return result

    def _deadline_message(self) -> str:
        minutes = self.options.timeout_seconds / 60
        return f"the build timeout of {minutes:g} minutes expired (buildTimeoutInMinutes, or --timeout)"

    def _refusals(self) -> str:
        """Steps that cannot run, found before anything is fetched or connected to."""
        problems = []
        for s in self.selected.steps:
            if not s.runs:
                continue
            problems += [f"{s.step.name}: {reason}" for reason in s.step.blocked]
            for action in s.step.actions:
                if executor_for(action) is None:
                    problems.append(f"{s.step.name}: {type(action).__name__} is not supported by aibx run yet")
        return "; ".join(problems)

    def _skip(self, ref: StepRef, outcome: Outcome, reason: str) -> None:
        self.results.append(StepResult(ref, outcome, message=reason))
        self.emit(StepSkipped(self.target, step=ref, outcome=outcome, reason=reason))

    def _not_run_all(self, why: str) -> None:
        for ref, selected in zip(self.refs, self.selected.steps, strict=True):
            self._skip(ref, *_not_run(selected, why))

    # ------------------------------------------------------------------------------------------ fetching
    async def _fetch_all(self, workdir: Path) -> RunResult | None:
        def notice(level: str) -> Callable[[str], None]:
            return lambda message: self.session.notice(None, message, level)

        self._fetcher = self.shared_fetcher or ContentFetcher(
            workdir,
            self.options.fetch,
            on_retry=notice("info"),
            on_warning=notice("warning"),
            start_meter=lambda shown: self.session.transfer_meter(self._fetching, "download", shown),
        )
        for index, (ref, selected) in enumerate(zip(self.refs, self.selected.steps, strict=True)):
            if not selected.runs:
                continue
            self._fetching = ref
            for content in selected.step.fetched_contents():
                try:
                    self._fetched[content] = await self.session.guarded(self._fetcher.fetch(content))
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
                    # a host name that does not exist: cannot connect (exit 3), not a step that failed (exit 1)
                    outcome = Outcome.CONNECT_FAILED if isinstance(exc, NameNotFound) else Outcome.FAILED
                    return self._finish(outcome, f"step {ref.name!r} failed: {message}")
        return None

    # ------------------------------------------------------------------------------------------ steps
    async def _run_step(self, ref: StepRef, step: StepPlan) -> StepResult:
        self.emit(StepStarted(self.target, step=ref))
        started = time.time()
        result = StepResult(ref, Outcome.SUCCEEDED, started=started)
        run = StepRun(self.session, self.reboots, ref, result, self._fetched)
        cut = False  # the step's command did not end by itself: its temporary files are still there
        try:
            for action in step.actions:
                executor = executor_for(action)
                if executor is None:
                    raise StepFailed(Outcome.FAILED, f"{type(action).__name__} is not supported by aibx run yet")
                result.exit_code = await executor(run, action)
        except StepFailed as exc:
            result.outcome, result.message = exc.outcome, exc.message
            result.exit_code = exc.exit_code if exc.exit_code is not None else result.exit_code
            cut = exc.outcome is not Outcome.FAILED or exc.exit_code is None
        except Interrupted:
            result.outcome, result.message = Outcome.INTERRUPTED, "interrupted; the remote process was stopped"
        except DeadlineExceeded:
            result.outcome = Outcome.TIMED_OUT
            result.message = self.session.deadline_message() + "; the remote process was stopped"
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

    async def _best_effort(self, ref: StepRef, actions: list[Action], what: str) -> None:
        """Run clean-up actions outside the deadline and the interrupt, bounded by ``cleanup_timeout``; a failure
        (the VM gone again, an exit code) is a warning."""
        transport = self.session.transport
        if not actions or transport is None:
            return
        for action in actions:
            if not isinstance(action, Exec):
                continue
            self.emit(ActionStarted(self.target, step=ref, kind="exec", text=action.command, detail=action.description))
            collector = self.session.collector(ref)
            try:
                code = await asyncio.wait_for(
                    transport.run(action.command, on_output=collector.feed), self.options.cleanup_timeout
                )
            except (asyncio.TimeoutError, TransportError, OSError) as exc:
                self.session.notice(ref, f"{what} failed: {exc or type(exc).__name__}", "warning")
                return
            finally:
                collector.flush()
            if code not in action.valid_exit_codes:
                self.session.notice(ref, f"{what} failed: exit code {code}", "warning")

    async def _check_kept_files(self, ref: StepRef) -> None:
        """After a step in which the VM restarted: warn about every file an earlier step left for a later one
        (the staged deprovisioning script) that the reboot took away. Best effort, outside the deadline."""
        transport = self.session.transport
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
                self.session.notice(ref, message, "warning")
            else:
                still_kept.append((kept, staged_by))
        self._kept = still_kept


def _not_run(selected: SelectedStep, why: str) -> tuple[Outcome, str]:
    return (Outcome.NOT_RUN, why) if selected.runs else (Outcome.SKIPPED, selected.reason or "")
