"""The pipeline behind the verbs: load → validate → compile (``prepare``), and running the compiled plan on one host
or a fleet (``execute``). Face side: it prints and decides exit codes, beside the commands; the core (model,
loader, validation, provisioners, engine) never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aibx.commands.json_output import Refusal
from aibx.engine.selection import Selection
from aibx.exitcodes import ExitCode

if TYPE_CHECKING:
    from aibx import validation
    from aibx.diagnostics import Diagnostic
    from aibx.engine.customization_log import DeferredLog
    from aibx.engine.events import Event, EventBus, Notice
    from aibx.engine.fetch import SharedFetcher
    from aibx.engine.fleet import HostEntry, HostRun
    from aibx.engine.run_report import RunReport
    from aibx.engine.runner import RunOptions
    from aibx.engine.selection import SelectedPlan
    from aibx.engine.session import Pilot
    from aibx.engine.transports import ConnectOptions
    from aibx.plan import Plan
    from aibx.provisioners import CompileOptions
    from aibx.redaction import Redactor


@dataclass
class Prepared:
    """A template loaded, validated and compiled: what ``plan`` shows and ``run`` executes."""

    result: validation.Result
    plan: Plan
    redact: Redactor
    # how the plan was compiled: a fleet compiles it again for each host, so that every host gets its own random
    # temporary names (two VMs that share a /tmp, or a user who saw one host's names, cannot collide or plant)
    compile_options: CompileOptions | None = None
    # a Packer configuration's translation report (aibx.translators.report.Report), shown before anything runs
    translations: list[Any] = field(default_factory=list)

    def compile_again(self) -> Plan:
        """The same plan with new random names (for one more host)."""
        from aibx.provisioners import CompileOptions, compile_plan

        return compile_plan(self.result.template, self.compile_options or CompileOptions())


def prepare(args: argparse.Namespace, *, random_name: Any = None) -> Prepared | Refusal:
    """Load, validate and compile the template; on invalid input print why and return the refusal."""
    from aibx.commands.template_args import load_templates
    from aibx.diagnostics import Severity
    from aibx.loader import STDIN
    from aibx.provisioners import CompileOptions, compile_plan
    from aibx.redaction import Redactor

    loaded = load_templates(args, [args.template])
    diags = [_unknown_parameter_is_an_error(d) for d in loaded.all_diagnostics()]
    errors = [d for d in diags if d.severity is Severity.ERROR]
    for d in errors:
        print(d.format(), file=sys.stderr)
    if errors:
        count = f"{len(errors)} error{'s' * (len(errors) != 1)}"
        what = "Packer configuration" if loaded.packer else "image template"
        return _refused(f"aibx: {args.template} is not a valid {what} ({count})", errors)
    if not loaded.results and loaded.packer:  # every source dropped (not azure-arm): say why, then stop
        for d in diags:
            print(d.format(), file=sys.stderr)
        return _refused(f"aibx: {args.template}: no azure-arm build source to run (AIB071 above says why)")
    if not loaded.results and os.path.isdir(args.template):
        return _refused(
            f"aibx: {args.template}: no templates here (no *.json or *.jsonc file in it holds an image template)"
        )
    if len(loaded.results) != 1:
        names = ", ".join(str(r.document.name) for r in loaded.results) or "none"
        what, pick = ("image templates", "--resource NAME")
        if loaded.packer:  # as packer build -only
            what, pick = ("build sources", "--only BUILD.SOURCE")
        return _refused(f"aibx: {args.template} holds {len(loaded.results)} {what} ({names}); pick one with {pick}")
    if not getattr(args, "quiet", False):  # one line each, before the plan or the run (-q: none)
        for d in diags:
            if d.severity is not Severity.ERROR:
                print(d.format(), file=sys.stderr)
        for report in loaded.reports:  # a Packer configuration, translated in memory
            from aibx.packer_input import summary

            print(summary(report), file=sys.stderr)
    result = loaded.results[0]
    from aibx.model import parse_duration

    deprovision_timeout = parse_duration(args.deprovision_timeout)
    if deprovision_timeout is None or deprovision_timeout <= 0:
        return _refused(
            f"aibx: --deprovision-timeout {args.deprovision_timeout!r} is not a duration such as 20m, 1h or 90s"
        )
    options = CompileOptions(
        generalize=args.generalize,
        deprovision_timeout_seconds=deprovision_timeout,
        fetch_on_target=args.fetch_on_target,
        allow_any_destination=args.allow_any_destination,
        allow_local_files=args.allow_local_files,
        base_dir=None if args.template == STDIN else os.path.dirname(result.document.file),
        trace=getattr(args, "verbose", False) and hasattr(args, "host"),  # run -v (plan -v: the wrapper)
    )
    if random_name is not None:
        options.random_name = random_name
    plan = compile_plan(result.template, options)
    reports = [r for r in loaded.reports if r.name == result.document.name]
    return Prepared(result, plan, Redactor(result.document.secrets), options, reports)


def with_translations(document: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
    """A JSON document with the Packer translation's report, when the template was a Packer configuration."""
    if prepared.translations:
        document["translations"] = [r.as_dict() for r in prepared.translations]
    return document


def _unknown_parameter_is_an_error(diagnostic: Diagnostic) -> Diagnostic:
    """A ``-p`` name no template uses (AIB007) is a warning for ``validate``, which may be given several files; on
    ``plan`` and ``run`` it is an error: the misspelt value would silently not be used."""
    import dataclasses

    from aibx.diagnostics import Severity
    from aibx.loader import COMMAND_LINE

    if diagnostic.code == "AIB007" and diagnostic.file == COMMAND_LINE and "no template declares" in diagnostic.message:
        return dataclasses.replace(diagnostic, severity=Severity.ERROR)
    return diagnostic


def _refused(message: str, diagnostics: list[Any] | None = None) -> Refusal:
    """Invalid input: the message on standard error (after the diagnostics, already printed), and the refusal."""
    print(message, file=sys.stderr)
    errors = [d.format() for d in diagnostics or []]
    return Refusal(ExitCode.USAGE, [*errors, message], diagnostics or [])


# ---------------------------------------------------------------------------------------------- running
@dataclass
class RunSettings:
    """Everything ``aibx run`` was told, checked: where, how to connect, the limits, where the output goes."""

    template: str
    hosts: list[HostEntry]
    connect: ConnectOptions
    run: RunOptions
    parallel: int = 10
    log: str = "customization.log"
    report: str | None = None
    json_mode: bool = False
    selection: Selection = field(default_factory=Selection)  # --from, --only, --skip (a fleet selects per host)
    timestamps: bool = False  # --timestamps: the time of day before every line
    step_through: bool = False  # --step: ask before each step (one host, on a terminal)
    ask_on_error: bool = False  # --on-error ask: ask after a failed step


def usage_error(message: str) -> Refusal:
    text = f"aibx run: {message}"
    print(text, file=sys.stderr)
    return Refusal(ExitCode.USAGE, [text])


def execute(settings: RunSettings, prepared: Prepared, selected: SelectedPlan) -> int | Refusal:
    """Run the selected steps on every host. One host is a fleet of one: the same path, with the console's status
    line, ``--log`` and ``--report`` as they are; several get prefixed lines, a log each and the summary table."""
    from aibx.engine.fleet import Fleet, HostRun, per_host_paths, raise_open_files_limit
    from aibx.engine.runner import Runner
    from aibx.engine.selection import select
    from aibx.engine.transports import create_transport

    single = len(settings.hosts) == 1
    paths = [Path(settings.log)] if single else per_host_paths(settings.log, settings.hosts)
    runs = [HostRun(entry, log_path=path) for entry, path in zip(settings.hosts, paths, strict=True)]
    if not single:
        for folder in sorted({os.path.dirname(os.path.abspath(host.log_path or "")) for host in runs}):
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
                return usage_error(f"--log {settings.log}: cannot write the hosts' logs in {folder}")
        raise_open_files_limit()
    with ExitStack() as files:
        output = _RunOutput(settings, prepared, runs, files)
        problem = output.open_hosts()
        if problem:
            return usage_error(problem)

        def make_runner(host: HostRun) -> Runner:
            # a fleet's hosts each get their own random temporary names: the plan was compiled once, for all, before
            plan = selected if single else select(prepared.compile_again(), settings.selection)
            output.open_log(host)
            target = host.entry.target
            return Runner(
                plan,
                lambda: create_transport(target, settings.connect),
                output.buses[host.entry],
                settings.run,
                target=str(target),
                shared_fetcher=output.fetcher,
                pilot=output.pilot,
            )

        fleet = Fleet(runs, settings.parallel, make_runner)
        fleet.on_internal_error = _raise if single else _internal_error
        fleet.on_host_done = output.close_log
        output.start(fleet.parallel)

        async def main() -> int:
            ticker = asyncio.create_task(_tick(output.views))
            try:
                return await fleet.run()
            finally:
                ticker.cancel()

        code = int(ExitCode.INTERRUPTED)
        try:
            code = run_interruptible(main, fleet.interrupt, output.tell)
        finally:
            output.finish(code, fleet.parallel)
        output.write_json(code, fleet.parallel)
        return code


class _RunOutput:
    """What a run shows and writes; the one place that builds each host's event bus, console view, log and report.

    One host: the console with its status line (on standard error in JSON mode), ``--log`` opened before anything
    runs (the previous run's kept), ``--report`` written by the host's report. Several: a console view and a log per
    host (prefixed lines; a log is opened when its host's turn comes and closed when it is done, so descriptors stay
    proportional to --parallel), a view for what concerns every host (fetching, said once and logged for each), one
    download of each file for all, the summary table and the fleet report."""

    def __init__(self, settings: RunSettings, prepared: Prepared, runs: list[HostRun], files: ExitStack) -> None:
        from aibx.engine.console_view import ConsoleView
        from aibx.engine.events import EventBus
        from aibx.engine.run_report import FleetReport

        self.settings, self.prepared, self.runs, self.files = settings, prepared, runs, files
        self.single = len(runs) == 1
        self.say = sys.stderr if settings.json_mode else sys.stdout  # a fleet's lines; standard output is JSON's
        self.report = FleetReport(settings.report, settings.template, settings.run.command_line)
        self.host_reports: dict[HostEntry, RunReport] = {}
        self.host_logs: list[DeferredLog] = []
        self.logs_of: dict[HostEntry, DeferredLog] = {}
        self.buses: dict[HostEntry, EventBus] = {}
        self.views: list[ConsoleView] = []
        self.pilot: Pilot | None = None
        self.fetcher: SharedFetcher | None = None
        if not self.single:
            fleet_view = ConsoleView(self.say, status_line=False, timestamps=settings.timestamps)
            self.fleet_bus = EventBus(prepared.redact, [fleet_view, self._to_every_log])
            self.views.append(fleet_view)
            self.fetcher = self._shared_fetcher(settings.run)

    def _to_every_log(self, event: Event) -> None:
        for log in self.host_logs:
            log(event)

    def open_hosts(self) -> str:
        """Each host's bus, view, log and report; what makes the run impossible (a --log that cannot be written)."""
        from aibx.engine.customization_log import DeferredLog

        for host in self.runs:
            log = self.logs_of[host.entry] = DeferredLog(str(host.log_path))
            self.files.callback(log.close)
            self.host_logs.append(log)
            if self.single:
                try:
                    log.open()
                except OSError as exc:
                    return f"--log {self.settings.log}: {exc.strerror or exc}"
            self._open_host(host, log)
        return ""

    def _open_host(self, host: HostRun, log: DeferredLog) -> None:
        from aibx.engine.console_view import ConsoleView
        from aibx.engine.events import EventBus
        from aibx.engine.run_report import RunReport

        settings = self.settings
        if self.single:
            previous = log.log.previous if log.log is not None else None
            shown = [f"log: {settings.log}" + (f" (the previous run's: {previous})" if previous else "")]
            if settings.report:
                shown.append(f"report: {settings.report}")
            where = sys.stderr if settings.json_mode else None
            console = ConsoleView(where, files=tuple(shown), timestamps=settings.timestamps)
            report = RunReport(settings.report)
        else:
            console = ConsoleView(
                self.say,
                status_line=False,
                files=(f"log: {host.log_path}",),
                prefix=f"[{host.entry.text}] ",
                timestamps=settings.timestamps,
            )
            report = RunReport(None)
            self.report.add(host.entry.text, report, str(host.log_path))
        self.views.append(console)
        self.host_reports[host.entry] = report
        self.buses[host.entry] = EventBus(self.prepared.redact, [console, log, report])
        if self.single and (settings.step_through or settings.ask_on_error):
            from aibx.pilot import TerminalPilot

            self.pilot = TerminalPilot(
                str(host.entry.target),
                [console],
                step_through=settings.step_through,
                ask_on_error=settings.ask_on_error,
            )

    def open_log(self, host: HostRun) -> None:
        try:
            self.logs_of[host.entry].open()
        except OSError as exc:
            print(f"[{host.entry.text}] aibx: cannot write {host.log_path}: {exc.strerror or exc}", file=sys.stderr)

    def close_log(self, host: HostRun) -> None:
        self.logs_of[host.entry].close()

    def start(self, parallel: int) -> None:
        if not self.single:
            print(
                f"aibx: {self.settings.template} on {len(self.runs)} hosts, at most {parallel} at a time",
                file=self.say,
                flush=True,
            )

    def tell(self, message: str) -> None:
        """What an interrupt says: in the host's output for one host, on standard error for a fleet."""
        if self.single:
            self.buses[self.runs[0].entry].emit(_notice(str(self.runs[0].entry.target), message))
        else:
            print(message, file=sys.stderr)

    def finish(self, code: int, parallel: int) -> None:
        """The end, whichever way the run ended: one host's log is closed; a fleet's summary table and report."""
        from aibx.engine.fleet import outcome_counts, summary_table

        if self.single:
            for log in self.host_logs:
                log.close()
            return
        counts = ", ".join(f"{n} {outcome}" for outcome, n in outcome_counts(self.runs).items())
        summary = f"\n{len(self.runs)} hosts: {counts}; exit status {code}\n" + summary_table(self.runs)
        print(summary, end="", file=self.say, flush=True)
        if self.settings.report:
            self.report.write(code, parallel)
            print(f"report: {self.settings.report}", file=self.say)

    def write_json(self, code: int, parallel: int) -> None:
        """--format json: one host's report, or the fleet's."""
        from aibx.commands import json_output

        if not self.settings.json_mode:
            return
        if not self.single:
            json_output.write(with_translations(self.report.document(code, parallel), self.prepared))
            return
        report = self.host_reports[self.runs[0].entry]
        document = report.document()
        if not report.finished:  # aborted at once (a second Ctrl-C): no RunFinished came
            document.update(outcome="interrupted", exitCode=code)
        json_output.write(with_translations(document, self.prepared))

    def _shared_fetcher(self, run_options: RunOptions) -> SharedFetcher:
        """One download of each script and file for every host."""
        from aibx.engine.events import Notice
        from aibx.engine.fetch import ContentFetcher, SharedFetcher
        from aibx.engine.progress import event_meter

        def tell(level: str) -> Callable[[str], None]:
            return lambda message: self.fleet_bus.emit(Notice("fleet", message=message, level=level))

        fetch_dir = Path(tempfile.mkdtemp(prefix="aibx-fleet-"))
        self.files.callback(shutil.rmtree, fetch_dir, True)
        return SharedFetcher(
            ContentFetcher(
                fetch_dir,
                run_options.fetch,
                tell("info"),
                tell("warning"),
                lambda shown: event_meter(
                    self.fleet_bus, "fleet", None, "download", shown, timing=run_options.transfer
                ),
            )
        )


def _raise(host: HostRun, exc: BaseException) -> None:
    """One host: a bug in aibx is not one host's failure among others; it goes up as it is."""
    raise exc


def _internal_error(host: HostRun, exc: BaseException) -> None:
    if os.environ.get("AIBX_DEBUG"):
        traceback.print_exception(exc)
    print(f"[{host.entry.text}] aibx: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)


def _notice(target: str, message: str) -> Notice:
    from aibx.engine.events import Notice

    return Notice(target, message=message, level="warning")


class _Ticking(Protocol):
    def tick(self) -> None: ...


async def _tick(views: Sequence[_Ticking]) -> None:
    """Let the consoles show time passing: the status line's clock on a terminal, a line now and then during a long
    silent step otherwise."""
    while True:
        await asyncio.sleep(0.25)
        for view in views:
            view.tick()


def run_interruptible(
    main: Callable[[], Awaitable[int]], interrupt: Callable[[], None], tell: Callable[[str], None]
) -> int:
    """``asyncio.run(main())``; the first SIGINT/SIGTERM calls ``interrupt()`` (steps stop, temporary files are
    removed), the second aborts at once."""

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                tell(
                    "interrupted: stopping the step and removing its temporary files (interrupt again to abort at once)"
                )
                interrupt()
            elif main_task is not None:
                main_task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests), or no signals here
                pass
        try:
            return int(await main())
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("aibx run: aborted", file=sys.stderr)
        return ExitCode.INTERRUPTED
