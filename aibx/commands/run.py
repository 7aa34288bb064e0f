"""aibx run: run a template's customizers on VMs you own, over SSH, WinRM or locally, with AIB's semantics;
reboots inside steps are ridden out; many hosts run at once (``--host`` repeated, ``--hosts-file``,
``--parallel``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING

from aibx.commands import run_flags
from aibx.commands.json_output import Refusal, refuse
from aibx.commands.run_flags import DEPROVISION_THIS_MACHINE
from aibx.engine.transports import DESCRIPTORS, descriptor
from aibx.errors import InvalidSettings
from aibx.exitcodes import ExitCode
from aibx.pipeline import Prepared, RunSettings, execute, prepare, usage_error

if TYPE_CHECKING:
    from aibx.engine.fleet import HostEntry


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_flags.add_parser(sub, run)


def run(args: argparse.Namespace) -> int:
    outcome = _run(args)
    return refuse(args, "run", outcome) if isinstance(outcome, Refusal) else outcome


def _run(args: argparse.Namespace) -> int | Refusal:
    from aibx.commands.plan import blocked_messages, render_json, render_text
    from aibx.engine.selection import Selection, SelectionError, select

    flags = run_flags.read_flags(args)
    if isinstance(flags, Refusal):
        return flags
    prepared = prepare(args)
    if isinstance(prepared, Refusal):
        return prepared
    refused = _check_hosts(args, prepared, flags.hosts)
    if refused:
        return usage_error(refused)
    try:
        selected = select(prepared.plan, Selection(args.from_step, args.only, args.skip))
    except SelectionError as exc:
        return usage_error(str(exc))
    problems = blocked_messages(prepared, selected.running)
    if args.dry_run:  # as aibx plan: the plan, and exit 2 if a step that would run cannot
        code = ExitCode.USAGE if problems else ExitCode.OK
        print(
            render_json(prepared, selected, exit_code=code)
            if args.format == "json"
            else render_text(prepared, selected, verbose=args.verbose),
            end="\n" if args.format == "json" else "",
        )
        for message in problems:
            print(message, file=sys.stderr)
        return code
    if problems:
        problems.append("aibx run: nothing was run; the steps above cannot run as written")
        for message in problems:
            print(message, file=sys.stderr)
        return Refusal(ExitCode.USAGE, problems)
    if args.generalize:
        local = any(descriptor(h.target.scheme).name == "local" for h in flags.hosts)
        refused_generalize = _confirm_generalize(args, [h.text for h in flags.hosts], local)
        if refused_generalize is not None:
            return refused_generalize
    settings = _settings(args, flags, prepared)
    if isinstance(settings, Refusal):
        return settings
    return execute(settings, prepared, selected)


def _confirm_generalize(args: argparse.Namespace, hosts: list[str], local: bool) -> Refusal | None:
    """--generalize destroys access to the VM: never on this machine without ``--deprovision-this-machine``, and
    never without a "yes" typed on a terminal or ``--yes``. None when the run may go on."""
    if local and not args.deprovision_this_machine:
        return usage_error(
            "--generalize with --host local would deprovision THIS machine (waagent -force -deprovision+user deletes "
            f"your user account and SSH access); nothing was run. Use a VM, or add {DEPROVISION_THIS_MACHINE} if "
            "that is really what you want"
        )
    if args.yes:
        return None
    where = "this machine" if local else ", ".join(hosts)
    if not sys.stdin.isatty():
        return usage_error(
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
        return usage_error("not confirmed; nothing was run")
    return None


def _check_hosts(args: argparse.Namespace, prepared: Prepared, hosts: list[HostEntry]) -> str:
    """Every host's transport serves the template's OS; a transport that runs alone is alone."""
    template = prepared.result.template
    os_name = template.os_type.value.lower()
    for host in hosts:
        d = descriptor(host.target.scheme)
        if os_name in d.serves:
            continue
        what = d.wrong_os.format(host=host.text)
        return f"{args.template} is a {template.os_type.value} template ({template.os_reason}); {what}"
    if len(hosts) > 1:
        for host in hosts:
            if descriptor(host.target.scheme).alone:
                return f"{host.target} cannot be one of several hosts (run it on its own)"
    return ""


def _settings(args: argparse.Namespace, flags: run_flags.Flags, prepared: Prepared) -> RunSettings | Refusal:
    from aibx.engine.runner import RunOptions
    from aibx.engine.selection import Selection
    from aibx.engine.transports import ConnectOptions, create_transport
    from aibx.model import MAX_BUILD_TIMEOUT_MINUTES

    template = prepared.result.template
    timeout_seconds = flags.durations.get("--timeout") or 60.0 * min(
        template.effective_build_timeout_minutes, MAX_BUILD_TIMEOUT_MINUTES
    )
    names = {descriptor(h.target.scheme).name for h in flags.hosts}
    extra: dict[str, object] = {}
    for d in DESCRIPTORS:
        if d.name in names and d.flags:
            extra.update({key: getattr(args, dest) for _, dest, key in d.flags})
            if args.password_env:
                extra["password_env"] = args.password_env
    if extra and not extra.get("auth"):
        extra["auth"] = "ntlm"
    options = ConnectOptions(
        identity=os.path.expanduser(args.identity) if args.identity else None,
        password=flags.password,
        known_hosts=args.known_hosts,
        accept_new_host_key=args.accept_new_host_key,
        ssh_config=[args.ssh_config] if args.ssh_config else None,
        connect_timeout=flags.durations["--connect-timeout"],
        keepalive_interval=flags.durations["--keepalive"],
        remote_os=template.os_type.value.lower(),
        extra=extra,
    )
    if flags.password:
        prepared.redact.add(flags.password)
    for host in flags.hosts:  # settings a transport refuses (a WinRM auth without its password, ...) are usage errors
        try:
            create_transport(host.target, options)
        except InvalidSettings as exc:
            return usage_error(f"{host.text}: {exc}")
    run_options = RunOptions(
        timeout_seconds=timeout_seconds,
        reconnect_timeout=flags.durations["--reconnect-timeout"],
        command_line=" ".join(shlex.quote(a) for a in ["aibx", *sys.argv[1:]]),
    )
    return RunSettings(
        args.template,
        flags.hosts,
        options,
        run_options,
        args.parallel,
        args.log,
        args.report,
        args.format == "json",
        Selection(args.from_step, args.only, args.skip),
        timestamps=args.timestamps,
        step_through=args.step_through,
        ask_on_error=args.on_error == "ask",
    )
