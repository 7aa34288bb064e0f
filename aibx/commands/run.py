"""aibx run: run a template's customizers on VMs you own, over SSH or locally, with AIB's semantics; reboots
inside steps are ridden out; many hosts run at once (``--host`` repeated, ``--hosts-file``, ``--parallel``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from aibx.commands.plan import add_compile_options
from aibx.commands.template_args import add_template_options
from aibx.exitcodes import ExitCode

EXAMPLES = """\
examples:
  aibx run template.json --host azureuser@vm.example.com
  aibx run template.json --host myvm                  an alias from ~/.ssh/config
  aibx run template.json --host ssh://azureuser@10.0.0.4:2222 -i ~/.ssh/vm_key
  AIBX_PASSWORD=... aibx run template.json --host azureuser@vm --password-env AIBX_PASSWORD
  aibx run template.json --host local                 this machine (careful: customizers change it)
  aibx run template.json --host vm --from install-app --report report.json
  aibx run template.json --host vm --only install-app --only configure
  aibx run template.json --host vm --dry-run          the plan, nothing runs
  aibx run template.json --host vm1 --host vm2        two VMs at once
  aibx run template.json --hosts-file vms.txt --parallel 20 --report fleet.json

Customizers run in template order as the connecting user (sudo is the script's business), then the in-VM
validations; the first failure stops the run. AIB's deprovisioning script is staged at /tmp/DeprovisioningScript.sh
but runs only with --generalize. Every scriptUri/sourceUri is fetched and checked against its sha256Checksum before
anything reaches the VM (unless --fetch-on-target).

A VM that reboots during a step (sudo reboot, shutdown -r now, an installer) is waited for (--reconnect-timeout),
reconnected with its host key checked, and confirmed to have restarted (a new boot id); then the run goes on. A
step the reboot cut short counts as succeeded, as in AIB; a dropped connection without a reboot fails the step.

With several hosts every output line starts with the host, each host has its own log
(customization-HOST.log), and a table sums them up at the end; the exit status is the worst host's:
130 > 70 > 4 > 3 > 2 > 1 > 0.

exit status: 0 success, 1 a step failed, 2 invalid input, 3 cannot connect / authenticate / verify the host key
(or lost the connection for good), 4 timed out (the build, or a VM that did not come back), 130 interrupted
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from aibx.cli import HelpFormatter

    p = sub.add_parser(
        "run",
        help="run the customizers on a VM you own (SSH, or local)",
        description="Run an AIB image template's customizers and in-VM validations against a VM you own, with AIB's "
        "semantics, streaming their output and leaving a customization.log and, on request, a JSON report.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("template", metavar="TEMPLATE", help="the image template (bare resource or ARM deployment)")
    h = p.add_argument_group("hosts")
    h.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="TARGET",
        help="local, or [ssh://][user@]host[:port] (host may be an alias from ~/.ssh/config); repeatable",
    )
    h.add_argument(
        "--hosts-file", metavar="FILE", help="more targets, one per line (blank lines and # comments ignored)"
    )
    h.add_argument(
        "--parallel",
        type=int,
        default=10,
        metavar="N",
        help="run on at most N hosts at a time (default 10)",
    )
    add_template_options(p)
    c = p.add_argument_group("connection")
    c.add_argument("-i", "--identity", metavar="KEY", help="private key file (ssh-agent and ~/.ssh keys are tried too)")
    c.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the SSH password from environment variable VAR (a password is never taken on the command line)",
    )
    c.add_argument(
        "--known-hosts", metavar="FILE", help="known hosts file to verify the host key (default ~/.ssh/known_hosts)"
    )
    c.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust an unknown host key on first use and record it (a changed key is always refused)",
    )
    c.add_argument(
        "-F", "--ssh-config", metavar="FILE", help="OpenSSH client configuration file (default ~/.ssh/config)"
    )
    c.add_argument("--connect-timeout", default="30s", metavar="DURATION", help="per connection attempt (default 30s)")
    c.add_argument(
        "--keepalive",
        default="10s",
        metavar="DURATION",
        help="SSH keepalive interval; a VM that misses 3 in a row is gone (a reset, a cut network) (default 10s)",
    )
    s = p.add_argument_group("steps")
    s.add_argument(
        "--from", dest="from_step", metavar="NAME", help="start at this customizer (the ones before are skipped)"
    )
    s.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only this customizer or validator (repeatable)"
    )
    s.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this customizer or validator out (repeatable)",
    )
    add_compile_options(p)
    t = p.add_argument_group("limits")
    t.add_argument(
        "--timeout-minutes",
        type=float,
        metavar="N",
        help="the whole run's deadline (default: the template's buildTimeoutInMinutes; 0 there means 240)",
    )
    t.add_argument(
        "--reconnect-timeout",
        default="20m",
        metavar="DURATION",
        help="how long a VM that reboots (or drops the connection) may take to come back (default 20m)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--log",
        default="customization.log",
        metavar="FILE",
        help="the full log (default ./customization.log; with several hosts FILE-HOST.log each)",
    )
    o.add_argument(
        "--report",
        metavar="FILE",
        help="write a JSON report: every step's outcome, times, exit code and reboots (per host with several)",
    )
    o.add_argument("--dry-run", action="store_true", help="show the plan (as aibx plan does) and run nothing")
    p.set_defaults(handler=run)


def _error(message: str) -> int:
    print(f"aibx run: {message}", file=sys.stderr)
    return ExitCode.USAGE


def run(args: argparse.Namespace) -> int:
    from aibx.commands.plan import blocked_messages, prepare, render_text
    from aibx.engine.fleet import HostListError, check_unique, parse_host_text, read_hosts_file
    from aibx.engine.runner import RunOptions
    from aibx.engine.selection import Selection, SelectionError, select
    from aibx.engine.transports import ConnectOptions, create_transport
    from aibx.model import MAX_BUILD_TIMEOUT_MINUTES, OsType, parse_duration

    # ---- everything that can be wrong with the input, before anything is fetched or connected to
    try:
        hosts = [parse_host_text(text, "--host") for text in args.host]
        if args.hosts_file:
            hosts += read_hosts_file(args.hosts_file)
        check_unique(hosts)
    except HostListError as exc:
        return _error(str(exc))
    if not hosts:
        return _error("say where to run: --host TARGET (repeatable) or --hosts-file FILE")
    for host in hosts:  # the engine has the transport; aibx run's WinRM options are not there yet
        if host.target.scheme in ("winrm", "winrms"):
            return _error(f"{host.text}: WinRM targets are not supported by aibx run yet")
    if args.parallel < 1:
        return _error(f"--parallel {args.parallel}: must be at least 1")
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            return _error(f"--password-env {args.password_env}: that environment variable is not set")
    if args.identity and not os.path.isfile(os.path.expanduser(args.identity)):
        return _error(f"--identity {args.identity}: no such file")
    if args.known_hosts and not os.path.exists(args.known_hosts) and not args.accept_new_host_key:
        return _error(f"--known-hosts {args.known_hosts}: no such file (--accept-new-host-key would create it)")
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        return _error(f"--report {args.report}: its folder does not exist")
    if args.ssh_config and not os.path.isfile(args.ssh_config):
        return _error(f"--ssh-config {args.ssh_config}: no such file")
    durations = {}
    for option, value in (
        ("--reconnect-timeout", args.reconnect_timeout),
        ("--connect-timeout", args.connect_timeout),
        ("--keepalive", args.keepalive),
    ):
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            return _error(f"{option} {value!r} is not a duration such as 90s, 5m or 1h")
        durations[option] = seconds
    if args.timeout_minutes is not None and not 0 < args.timeout_minutes <= MAX_BUILD_TIMEOUT_MINUTES:
        return _error(f"--timeout-minutes must be more than 0 and at most {MAX_BUILD_TIMEOUT_MINUTES}")

    prepared = prepare(args)
    if isinstance(prepared, int):
        return prepared
    template = prepared.result.template
    windows = template.os_type is OsType.WINDOWS
    for host in hosts:
        scheme = host.target.scheme
        if windows and scheme in ("ssh", "local"):
            return _error(
                f"{args.template} is a Windows template ({template.os_reason}); {scheme} targets run Linux customizers"
            )
    if len(hosts) > 1 and any(h.target.scheme == "local" for h in hosts):
        return _error("local cannot be one of several hosts (run it on its own)")
    try:
        selected = select(prepared.plan, Selection(args.from_step, args.only, args.skip))
    except SelectionError as exc:
        return _error(str(exc))
    problems = blocked_messages(prepared, selected.running)
    if args.dry_run:  # as aibx plan: the plan, and exit 2 if a step that would run cannot
        print(render_text(prepared, selected), end="")
        for message in problems:
            print(message, file=sys.stderr)
        return ExitCode.USAGE if problems else ExitCode.OK
    if problems:
        for message in problems:
            print(message, file=sys.stderr)
        print("aibx run: nothing was run; the steps above cannot run as written", file=sys.stderr)
        return ExitCode.USAGE

    timeout_minutes = args.timeout_minutes or float(
        min(template.effective_build_timeout_minutes, MAX_BUILD_TIMEOUT_MINUTES)
    )
    options = ConnectOptions(
        identity=os.path.expanduser(args.identity) if args.identity else None,
        password=password,
        known_hosts=args.known_hosts,
        accept_new_host_key=args.accept_new_host_key,
        ssh_config=[args.ssh_config] if args.ssh_config else None,
        connect_timeout=durations["--connect-timeout"],
        keepalive_interval=durations["--keepalive"],
        remote_os="windows" if windows else "linux",
    )
    if password:
        prepared.redact.add(password)
    for host in hosts:  # settings a transport refuses (a WinRM auth without its password, ...) are usage errors
        try:
            create_transport(host.target, options)
        except ValueError as exc:
            return _error(f"{host.text}: {exc}")
    run_options = RunOptions(
        timeout_seconds=timeout_minutes * 60.0,
        reconnect_timeout=durations["--reconnect-timeout"],
        command_line=" ".join(shlex.quote(a) for a in ["aibx", *sys.argv[1:]]),
    )
    if len(hosts) == 1:
        return _execute(args, prepared, selected, hosts[0].target, options, run_options)
    return _execute_fleet(args, prepared, selected, hosts, options, run_options)


def _execute(args, prepared, selected, target, connect_options, run_options) -> int:  # type: ignore[no-untyped-def]
    import asyncio

    from aibx.engine.console_view import ConsoleView
    from aibx.engine.customization_log import CustomizationLog
    from aibx.engine.events import EventBus
    from aibx.engine.run_report import RunReport
    from aibx.engine.runner import Runner
    from aibx.engine.transports import create_transport

    try:
        log = CustomizationLog(args.log)
    except OSError as exc:
        return _error(f"--log {args.log}: {exc.strerror or exc}")
    files = [f"log: {args.log}"]
    bus = EventBus(prepared.redact)
    if args.report:
        files.append(f"report: {args.report}")
    console = ConsoleView(files=tuple(files))
    bus.subscribe(console)
    bus.subscribe(log)
    if args.report:
        bus.subscribe(RunReport(args.report))
    runner = Runner(selected, lambda: create_transport(target, connect_options), bus, run_options, target=str(target))

    async def main() -> int:
        ticker = asyncio.create_task(_tick(console)) if console.status_enabled else None
        try:
            result = await runner.run()
            return result.exit_code
        finally:
            if ticker is not None:
                ticker.cancel()

    try:
        return _run_interruptible(main, runner.interrupt, lambda message: bus.emit(_notice(str(target), message)))
    finally:
        log.close()


def _execute_fleet(args, prepared, selected, hosts, connect_options, run_options) -> int:  # type: ignore[no-untyped-def]
    """Every host with its own runner, event bus, prefixed console, log and report entry; the summary table."""
    import contextlib
    import shutil
    import tempfile
    import traceback
    from pathlib import Path

    from aibx.engine.console_view import ConsoleView
    from aibx.engine.customization_log import CustomizationLog
    from aibx.engine.events import EventBus, Notice
    from aibx.engine.fetch import ContentFetcher, SharedFetcher
    from aibx.engine.fleet import Fleet, HostRun, outcome_counts, per_host_paths, summary_table
    from aibx.engine.run_report import FleetReport, RunReport
    from aibx.engine.runner import Runner
    from aibx.engine.transports import create_transport

    fleet_report = FleetReport(args.report, args.template, run_options.command_line) if args.report else None
    runs = [HostRun(entry, log_path=path) for entry, path in zip(hosts, per_host_paths(args.log, hosts), strict=True)]
    with contextlib.ExitStack() as logs:
        buses = {}
        host_logs: list[CustomizationLog] = []
        # what concerns every host (fetching the scripts and files, once for all): said once, logged for each
        fleet_bus = EventBus(prepared.redact, [ConsoleView(status_line=False), lambda e: [g(e) for g in host_logs]])

        def tell(level: str):  # type: ignore[no-untyped-def]
            return lambda message: fleet_bus.emit(Notice("fleet", message=message, level=level))

        fetch_dir = Path(tempfile.mkdtemp(prefix="aibx-fleet-"))
        logs.callback(shutil.rmtree, fetch_dir, True)
        fetcher = SharedFetcher(ContentFetcher(fetch_dir, run_options.fetch, tell("info"), tell("warning")))
        for host in runs:
            try:
                log = CustomizationLog(host.log_path)  # type: ignore[arg-type]
            except OSError as exc:
                return _error(f"--log {host.log_path}: {exc.strerror or exc}")
            logs.callback(log.close)
            host_logs.append(log)
            console = ConsoleView(status_line=False, files=(f"log: {host.log_path}",), prefix=f"[{host.entry.text}] ")
            bus = buses[host.entry] = EventBus(prepared.redact, [console, log])
            report = RunReport(None)
            bus.subscribe(report)
            if fleet_report is not None:
                fleet_report.add(host.entry.text, report, str(host.log_path))

        def make_runner(host: HostRun) -> Runner:
            target = host.entry.target
            return Runner(
                selected,
                lambda: create_transport(target, connect_options),
                buses[host.entry],
                run_options,
                target=str(target),
                shared_fetcher=fetcher,
            )

        fleet = Fleet(runs, args.parallel, make_runner)

        def internal_error(host: HostRun, exc: BaseException) -> None:
            if os.environ.get("AIBX_DEBUG"):
                traceback.print_exception(exc)
            print(f"[{host.entry.text}] aibx: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)

        fleet.on_internal_error = internal_error
        print(f"aibx: {args.template} on {len(runs)} hosts, at most {fleet.parallel} at a time", flush=True)
        code = int(ExitCode.INTERRUPTED)
        try:
            code = _run_interruptible(fleet.run, fleet.interrupt, lambda message: print(message, file=sys.stderr))
        finally:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in outcome_counts(runs).items())
            print(f"\n{len(runs)} hosts: {counts}; exit status {code}\n" + summary_table(runs), end="", flush=True)
            if fleet_report is not None:
                fleet_report.write(code, fleet.parallel)
                print(f"report: {args.report}")
        return code


def _notice(target: str, message: str):  # type: ignore[no-untyped-def]
    from aibx.engine.events import Notice

    return Notice(target, message=message, level="warning")


async def _tick(console) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    while True:
        await asyncio.sleep(0.25)
        console.tick()


def _run_interruptible(main, interrupt, tell) -> int:  # type: ignore[no-untyped-def]
    """``asyncio.run(main())``; the first SIGINT/SIGTERM calls ``interrupt()`` (steps stop, temporary files are
    removed), the second aborts at once."""
    import asyncio
    import signal

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
