"""aibx run: run a template's customizers on VMs you own, over SSH, WinRM or locally, with AIB's semantics;
reboots inside steps are ridden out; many hosts run at once (``--host`` repeated, ``--hosts-file``,
``--parallel``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from aibx.commands.json_output import Refusal, refuse
from aibx.commands.plan import add_compile_options
from aibx.commands.template_args import add_template_options
from aibx.exitcodes import ExitCode

DEPROVISION_THIS_MACHINE = "--deprovision-this-machine"

EXAMPLES = """\
examples:
  aibx run template.json --host azureuser@vm.example.com
  aibx run template.json --host myvm                  an alias from ~/.ssh/config
  aibx run template.json --host ssh://azureuser@10.0.0.4:2222 -i ~/.ssh/vm_key
  AIBX_PASSWORD=... aibx run template.json --host azureuser@vm --password-env AIBX_PASSWORD
  AIBX_PASSWORD=... aibx run win.json --host winrms://admin@vm --winrm-ca ca.pem --password-env AIBX_PASSWORD
                                                      Windows over WinRM (HTTPS, NTLM)
  aibx run win.json --host ssh://admin@vm             Windows with OpenSSH: the same customizers
  aibx run template.json --host local                 this machine (careful: customizers change it)
  aibx run template.json --host vm --generalize --yes deprovision last, without asking (CI)
  aibx run template.json --host vm --from install-app --report report.json
  aibx run template.json --host vm --only install-app --only configure
  aibx run template.json --host vm --dry-run          the plan, nothing runs
  aibx run template.json --host vm1 --host vm2        two VMs at once
  aibx run template.json --hosts-file vms.txt --parallel 20 --report fleet.json
  aibx run template.json --host vm --format json | jq '.steps[] | {name, outcome}'
                                                      the report on standard output, live output on stderr

Customizers run in template order as the connecting user (sudo is the script's business; on Windows runElevated
and runAsSystem run the script in a scheduled task), then the in-VM validations; the first failure stops the run.
AIB's deprovisioning script is staged at /tmp/DeprovisioningScript.sh (c:\\DeprovisioningScript.ps1) but runs only
with --generalize, for at most --deprovision-timeout. --generalize asks for "yes" on a terminal first (--yes
skips the question; without a terminal it is required), and with --host local it is refused unless
--deprovision-this-machine is given too. Without --generalize the staged Linux script is removed at the end
(--skip 'stage deprovisioning script' leaves it alone). Every scriptUri/sourceUri is fetched and checked against its
sha256Checksum before anything reaches the VM (unless --fetch-on-target).

WindowsUpdate runs rounds of search, download and install as SYSTEM, restarting the VM between rounds when needed
(each restart within --reconnect-timeout), until nothing is left (at most 10 rounds).

A VM that reboots during a step (sudo reboot, shutdown -r now, an installer) is waited for (--reconnect-timeout),
reconnected with its host key checked, and confirmed to have restarted (a new boot id); then the run goes on. A
step the reboot cut short counts as succeeded, as in AIB; a dropped connection without a reboot fails the step.

On a terminal a status line shows the step, its time, how long it has been silent and a long upload's or
download's progress; in a CI log (not a terminal) a step silent for a minute gets a "still running" line each
minute, and a long transfer a line of progress every 10 seconds.

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
        help="run the customizers on a VM you own (SSH, WinRM, or local)",
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
        help="local, [ssh://][user@]host[:port] (host may be an alias from ~/.ssh/config), "
        "winrm://[user@]host[:port] (HTTP, 5985) or winrms://[user@]host[:port] (HTTPS, 5986); repeatable",
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
        help="read the SSH or WinRM password from environment variable VAR (a password is never taken on the "
        "command line)",
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
    w = p.add_argument_group("WinRM (winrm:// and winrms:// targets)")
    w.add_argument(
        "--winrm-auth",
        choices=["ntlm", "kerberos", "credssp", "basic", "certificate"],
        metavar="METHOD",
        help="ntlm (default; encrypts the messages over HTTP too), kerberos, credssp, basic or certificate",
    )
    w.add_argument(
        "--winrm-ca",
        metavar="FILE",
        help="PEM file with the CA (or the self-signed certificate) the VM's HTTPS listener uses; "
        "the system's CAs otherwise",
    )
    w.add_argument(
        "--winrm-client-cert", metavar="FILE", help="certificate authentication: the client certificate (PEM)"
    )
    w.add_argument("--winrm-client-key", metavar="FILE", help="certificate authentication: its private key (PEM)")
    w.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        help="do not verify the VM's certificate (a throw-away test VM only: anyone in between can listen)",
    )
    w.add_argument(
        "--allow-unencrypted",
        action="store_true",
        help="allow Basic authentication over plain HTTP (the password and everything else unencrypted)",
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
    g = p.add_argument_group("deprovisioning (--generalize)")
    g.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before --generalize deprovisions the VM (as Terraform's -auto-approve); without a "
        "terminal --generalize needs it",
    )
    g.add_argument(
        DEPROVISION_THIS_MACHINE,
        action="store_true",
        help="with --host local, let --generalize deprovision THIS machine (waagent -deprovision+user deletes "
        "your user account; refused without this option)",
    )
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
    o.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: print the report (as --report writes it) on standard output when the run ends, and the live "
        "output on standard error (default: text)",
    )
    o.add_argument("--dry-run", action="store_true", help="show the plan (as aibx plan does) and run nothing")
    p.set_defaults(handler=run)


def _error(message: str) -> Refusal:
    text = f"aibx run: {message}"
    print(text, file=sys.stderr)
    return Refusal(ExitCode.USAGE, [text])


def _confirm_generalize(args: argparse.Namespace, hosts: list[str], local: bool) -> Refusal | None:
    """--generalize destroys access to the VM: never on this machine without ``--deprovision-this-machine``, and
    never without a "yes" typed on a terminal or ``--yes``. None when the run may go on."""
    if local and not args.deprovision_this_machine:
        return _error(
            "--generalize with --host local would deprovision THIS machine (waagent -force -deprovision+user deletes "
            f"your user account and SSH access); nothing was run. Use a VM, or add {DEPROVISION_THIS_MACHINE} if "
            "that is really what you want"
        )
    if args.yes:
        return None
    where = "this machine" if local else ", ".join(hosts)
    if not sys.stdin.isatty():
        return _error(
            f"--generalize deprovisions {where} at the end and there is no terminal to confirm it: add --yes "
            "(nothing was run)"
        )
    print(
        f"aibx run: --generalize runs AIB's deprovisioning script last on {where} (waagent -deprovision+user or "
        "Sysprep): its user accounts and logins are removed and it cannot be used afterwards.",
        file=sys.stderr,
    )
    print("Type 'yes' to go on: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() != "yes":
        return _error("not confirmed; nothing was run")
    return None


def _winrm_settings(args: argparse.Namespace) -> dict[str, object]:
    """``WinRMOptions`` fields from the command line (``ConnectOptions.extra``); the password travels in
    ``ConnectOptions.password``, its variable's name only for hints."""
    settings: dict[str, object] = {
        "auth": args.winrm_auth or "ntlm",
        "ca_file": args.winrm_ca,
        "client_cert": args.winrm_client_cert,
        "client_key": args.winrm_client_key,
        "insecure_skip_tls_verify": args.insecure_skip_tls_verify,
        "allow_unencrypted": args.allow_unencrypted,
    }
    if args.password_env:
        settings["password_env"] = args.password_env
    return settings


def run(args: argparse.Namespace) -> int:
    outcome = _run(args)
    return refuse(args, "run", outcome) if isinstance(outcome, Refusal) else outcome


def _run(args: argparse.Namespace) -> int | Refusal:
    from aibx.commands.plan import blocked_messages, prepare, render_json, render_text
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
    winrm_hosts = [h for h in hosts if h.target.scheme in ("winrm", "winrms")]
    winrm_flags = [
        flag
        for flag, given in (
            ("--winrm-auth", args.winrm_auth),
            ("--winrm-ca", args.winrm_ca),
            ("--winrm-client-cert", args.winrm_client_cert),
            ("--winrm-client-key", args.winrm_client_key),
            ("--insecure-skip-tls-verify", args.insecure_skip_tls_verify),
            ("--allow-unencrypted", args.allow_unencrypted),
        )
        if given
    ]
    if winrm_flags and not winrm_hosts:
        return _error(f"{', '.join(winrm_flags)}: only for winrm:// and winrms:// targets")
    for option, path in (
        ("--winrm-ca", args.winrm_ca),
        ("--winrm-client-cert", args.winrm_client_cert),
        ("--winrm-client-key", args.winrm_client_key),
    ):
        if path and not os.path.isfile(path):
            return _error(f"{option} {path}: no such file")
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
    if isinstance(prepared, Refusal):
        return prepared
    template = prepared.result.template
    windows = template.os_type is OsType.WINDOWS
    for host in hosts:
        scheme = host.target.scheme
        if windows and scheme == "local":
            return _error(
                f"{args.template} is a Windows template ({template.os_reason}); local runs Linux customizers "
                "(use winrm://, winrms:// or ssh:// to a Windows VM)"
            )
        if not windows and scheme in ("winrm", "winrms"):
            return _error(
                f"{args.template} is a Linux template ({template.os_reason}); {host.text} is a WinRM target, for "
                "Windows VMs (use ssh:// for Linux)"
            )
    if len(hosts) > 1 and any(h.target.scheme == "local" for h in hosts):
        return _error("local cannot be one of several hosts (run it on its own)")
    try:
        selected = select(prepared.plan, Selection(args.from_step, args.only, args.skip))
    except SelectionError as exc:
        return _error(str(exc))
    problems = blocked_messages(prepared, selected.running)
    if args.dry_run:  # as aibx plan: the plan, and exit 2 if a step that would run cannot
        code = ExitCode.USAGE if problems else ExitCode.OK
        if args.format == "json":
            print(render_json(prepared, selected, exit_code=code))
        else:
            print(render_text(prepared, selected), end="")
        for message in problems:
            print(message, file=sys.stderr)
        return code
    if problems:
        problems.append("aibx run: nothing was run; the steps above cannot run as written")
        for message in problems:
            print(message, file=sys.stderr)
        return Refusal(ExitCode.USAGE, problems)
    if args.generalize:
        refused = _confirm_generalize(args, [h.text for h in hosts], any(h.target.scheme == "local" for h in hosts))
        if refused is not None:
            return refused

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
        extra=_winrm_settings(args) if winrm_hosts else {},
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


def _execute(args, prepared, selected, target, connect_options, run_options) -> int | Refusal:  # type: ignore[no-untyped-def]
    import asyncio

    from aibx.commands import json_output
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
    json_mode = args.format == "json"
    console = ConsoleView(sys.stderr if json_mode else None, files=tuple(files))
    report = RunReport(args.report)
    bus.subscribe(console)
    bus.subscribe(log)
    bus.subscribe(report)
    runner = Runner(selected, lambda: create_transport(target, connect_options), bus, run_options, target=str(target))

    async def main() -> int:
        ticker = asyncio.create_task(_tick([console]))
        try:
            result = await runner.run()
            return result.exit_code
        finally:
            ticker.cancel()

    try:
        code = _run_interruptible(main, runner.interrupt, lambda message: bus.emit(_notice(str(target), message)))
    finally:
        log.close()
    if json_mode:
        document = report.document()
        if not report.finished:  # aborted at once (a second Ctrl-C): no RunFinished came
            document.update(outcome="interrupted", exitCode=code)
        json_output.write(document)
    return code


def _execute_fleet(args, prepared, selected, hosts, connect_options, run_options) -> int | Refusal:  # type: ignore[no-untyped-def]
    """Every host with its own runner, event bus, prefixed console, log and report entry; the summary table.
    A host's log is opened when its turn comes and closed when it is done: descriptors stay proportional to
    --parallel, however many hosts (and the soft limit on open files is raised to the hard one first)."""
    import asyncio
    import contextlib
    import shutil
    import tempfile
    import traceback
    from pathlib import Path

    from aibx.commands import json_output
    from aibx.engine.console_view import ConsoleView
    from aibx.engine.customization_log import DeferredLog
    from aibx.engine.events import EventBus, Notice
    from aibx.engine.fetch import ContentFetcher, SharedFetcher
    from aibx.engine.fleet import (
        Fleet,
        HostEntry,
        HostRun,
        outcome_counts,
        per_host_paths,
        raise_open_files_limit,
        summary_table,
    )
    from aibx.engine.progress import event_meter
    from aibx.engine.run_report import FleetReport, RunReport
    from aibx.engine.runner import Runner
    from aibx.engine.selection import Selection, select
    from aibx.engine.transports import create_transport

    json_mode = args.format == "json"
    say = sys.stderr if json_mode else sys.stdout  # what the fleet tells the user; standard output is JSON's
    fleet_report = FleetReport(args.report, args.template, run_options.command_line)
    runs = [HostRun(entry, log_path=path) for entry, path in zip(hosts, per_host_paths(args.log, hosts), strict=True)]
    for folder in sorted({os.path.dirname(os.path.abspath(host.log_path or "")) for host in runs}):
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            return _error(f"--log {args.log}: cannot write the hosts' logs in {folder}")
    raise_open_files_limit()
    with contextlib.ExitStack() as logs:
        buses = {}
        host_logs: list[DeferredLog] = []
        logs_of: dict[HostEntry, DeferredLog] = {}
        # what concerns every host (fetching the scripts and files, once for all): said once, logged for each
        fleet_view = ConsoleView(say, status_line=False)
        fleet_bus = EventBus(prepared.redact, [fleet_view, lambda e: [g(e) for g in host_logs]])
        views = [fleet_view]

        def tell(level: str):  # type: ignore[no-untyped-def]
            return lambda message: fleet_bus.emit(Notice("fleet", message=message, level=level))

        fetch_dir = Path(tempfile.mkdtemp(prefix="aibx-fleet-"))
        logs.callback(shutil.rmtree, fetch_dir, True)
        fetcher = SharedFetcher(
            ContentFetcher(
                fetch_dir,
                run_options.fetch,
                tell("info"),
                tell("warning"),
                lambda shown: event_meter(fleet_bus, "fleet", None, "download", shown, timing=run_options.transfer),
            )
        )
        for host in runs:
            log = logs_of[host.entry] = DeferredLog(host.log_path)  # type: ignore[arg-type]
            logs.callback(log.close)
            host_logs.append(log)
            console = ConsoleView(
                say, status_line=False, files=(f"log: {host.log_path}",), prefix=f"[{host.entry.text}] "
            )
            views.append(console)
            bus = buses[host.entry] = EventBus(prepared.redact, [console, log])
            report = RunReport(None)
            bus.subscribe(report)
            fleet_report.add(host.entry.text, report, str(host.log_path))

        selection = Selection(args.from_step, args.only, args.skip)

        def make_runner(host: HostRun) -> Runner:
            # this host's own random temporary names: the plan was compiled once, for all, before
            host_selected = select(prepared.compile_again(), selection)
            try:
                logs_of[host.entry].open()
            except OSError as exc:
                print(f"[{host.entry.text}] aibx: cannot write {host.log_path}: {exc.strerror or exc}", file=sys.stderr)
            target = host.entry.target
            return Runner(
                host_selected,
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
        fleet.on_host_done = lambda host: logs_of[host.entry].close()
        print(f"aibx: {args.template} on {len(runs)} hosts, at most {fleet.parallel} at a time", file=say, flush=True)

        async def main() -> int:
            ticker = asyncio.create_task(_tick(views))
            try:
                return await fleet.run()
            finally:
                ticker.cancel()

        code = int(ExitCode.INTERRUPTED)
        try:
            code = _run_interruptible(main, fleet.interrupt, lambda message: print(message, file=sys.stderr))
        finally:
            counts = ", ".join(f"{n} {outcome}" for outcome, n in outcome_counts(runs).items())
            summary = f"\n{len(runs)} hosts: {counts}; exit status {code}\n" + summary_table(runs)
            print(summary, end="", file=say, flush=True)
            if args.report:
                fleet_report.write(code, fleet.parallel)
                print(f"report: {args.report}", file=say)
        if json_mode:
            json_output.write(fleet_report.document(code, fleet.parallel))
        return code


def _notice(target: str, message: str):  # type: ignore[no-untyped-def]
    from aibx.engine.events import Notice

    return Notice(target, message=message, level="warning")


async def _tick(views) -> None:  # type: ignore[no-untyped-def]
    """Let the consoles show time passing: the status line's clock on a terminal, a line now and then during a long
    silent step otherwise."""
    import asyncio

    while True:
        await asyncio.sleep(0.25)
        for view in views:
            view.tick()


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
