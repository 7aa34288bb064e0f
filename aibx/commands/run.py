"""aibx run: run a template's customizers on a VM you own, over SSH or locally, with AIB's semantics."""

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

Customizers run in template order as the connecting user (sudo is the script's business), then the in-VM
validations; the first failure stops the run. AIB's deprovisioning script is staged at /tmp/DeprovisioningScript.sh
but runs only with --generalize. Every scriptUri/sourceUri is fetched and checked against its sha256Checksum before
anything reaches the VM (unless --fetch-on-target).

exit status: 0 success, 1 a step failed, 2 invalid input, 3 cannot connect / authenticate / verify the host key
(or the connection was lost), 4 timed out, 130 interrupted
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
    p.add_argument(
        "--host",
        required=True,
        metavar="TARGET",
        help="local, or [ssh://][user@]host[:port] (host may be an alias from ~/.ssh/config)",
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
        help="how long a VM that reboots during a step may take to come back (default 20m)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--log", default="customization.log", metavar="FILE", help="the full log (default ./customization.log)"
    )
    o.add_argument("--report", metavar="FILE", help="write a JSON report: every step's outcome, times and exit code")
    o.add_argument("--dry-run", action="store_true", help="show the plan (as aibx plan does) and run nothing")
    p.set_defaults(handler=run)


def _error(message: str) -> int:
    print(f"aibx run: {message}", file=sys.stderr)
    return ExitCode.USAGE


def run(args: argparse.Namespace) -> int:
    from aibx.commands.plan import blocked_messages, prepare, render_text
    from aibx.engine.selection import Selection, SelectionError, select
    from aibx.engine.transports import ConnectOptions, TargetError, parse_target
    from aibx.model import MAX_BUILD_TIMEOUT_MINUTES, OsType, parse_duration

    # ---- everything that can be wrong with the input, before anything is fetched or connected to
    try:
        target = parse_target(args.host)
    except TargetError as exc:
        return _error(str(exc))
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
    for option, value in (("--reconnect-timeout", args.reconnect_timeout), ("--connect-timeout", args.connect_timeout)):
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
    if template.os_type is OsType.WINDOWS and target.scheme in ("ssh", "local"):
        return _error(
            f"{args.template} is a Windows template ({template.os_reason}); "
            f"{target.scheme} targets run Linux customizers"
        )
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
    )
    if password:
        prepared.redact.add(password)
    return _execute(args, prepared, selected, target, options, timeout_minutes * 60.0, durations["--reconnect-timeout"])


def _execute(args, prepared, selected, target, connect_options, timeout_seconds, reconnect_timeout) -> int:  # type: ignore[no-untyped-def]
    import asyncio
    import signal

    from aibx.engine.console_view import ConsoleView
    from aibx.engine.customization_log import CustomizationLog
    from aibx.engine.events import EventBus, Notice
    from aibx.engine.run_report import RunReport
    from aibx.engine.runner import Runner, RunOptions
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
    command_line = " ".join(shlex.quote(a) for a in ["aibx", *sys.argv[1:]])
    runner = Runner(
        selected,
        lambda: create_transport(target, connect_options),
        bus,
        RunOptions(timeout_seconds=timeout_seconds, reconnect_timeout=reconnect_timeout, command_line=command_line),
        target=str(target),
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                bus.emit(
                    Notice(
                        str(target),
                        message="interrupted: stopping the step and removing its temporary files "
                        "(interrupt again to abort at once)",
                        level="warning",
                    )
                )
                runner.interrupt()
            elif main_task is not None:
                main_task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests), or no signals here
                pass

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.25)
                console.tick()

        ticker = asyncio.create_task(tick()) if console.status_enabled else None
        try:
            result = await runner.run()
            return result.exit_code
        finally:
            if ticker is not None:
                ticker.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("aibx run: aborted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        log.close()
