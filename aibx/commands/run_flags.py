"""The flags of ``aibx run``: the parser, and the checks that turn them into ``Flags`` before the template is read
(hosts, durations, the password's variable, files that must exist, each transport's own flags from its
descriptor)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aibx.commands.json_output import Refusal
from aibx.commands.output_paths import output_path_problem
from aibx.commands.plan import add_compile_options
from aibx.commands.template_args import add_packer_options, add_template_options
from aibx.engine.transports import DESCRIPTORS, descriptor
from aibx.pipeline import usage_error

if TYPE_CHECKING:
    from aibx.engine.fleet import HostEntry

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
  aibx run template.json --host vm --on-error ask     after a failure: retry, skip, abort or pause (Packer's
                                                      -on-error=ask); needs a terminal
  aibx run template.json --host vm --step             ask before each step (Packer's -debug)
  aibx run template.json --host vm -v --timestamps    each command of the scripts as it runs, with the time
  aibx run template.json --host vm --timeout 90m      the whole run's deadline (--timeout-minutes 90 too)
  aibx run template.json --hosts-file vms.txt --limit 'web*'
                                                      only the hosts that match (Ansible's --limit)
  aibx run arm.json --host vm --parameters @params.json --parameters imageName=web-01
                                                      parameters as the az CLI takes them
  aibx run template.json --host vm --no-color -q      no colour, no validation warnings
  aibx run build.pkr.hcl --host vm --var-file dev.pkrvars.hcl
                                                      pre-flight a Packer build's provisioners on your VM
  aibx run packer/ --host vm --only 'web.azure-arm.ubuntu' --var image_os=ubuntu22
                                                      one build source of a Packer folder (as packer -only)

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

Every run ends with a recap: steps ok / failed / skipped / not run, the time, the log and the report. The
previous run's log is kept as FILE.1. The template's validation warnings are shown first, one line each (-q hides
them); a -p NAME the template does not use is an error. Options of Packer, Terraform and Ansible (-var, --except,
-debug, --check, ...) are answered with aibx's own.

exit status: 0 success, 1 a step failed, 2 invalid input, 3 cannot resolve a host name, connect, authenticate or
verify the host key (or lost the connection for good), 4 timed out (the build, or a VM that did not come back),
130 interrupted
"""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], handler: Callable[[argparse.Namespace], int]
) -> None:
    from aibx.cli import HelpFormatter

    p = sub.add_parser(
        "run",
        help="run the customizers on a VM you own (SSH, WinRM, or local)",
        description="Run an AIB image template's customizers and in-VM validations against a VM you own, with AIB's "
        "semantics, streaming their output and leaving a customization.log and, on request, a JSON report.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "template",
        metavar="TEMPLATE",
        help="the image template (bare resource, ARM deployment or Bicep), or a Packer configuration (a .pkr.hcl "
        "file, a folder of them, or a legacy JSON template)",
    )
    _host_flags(p.add_argument_group("hosts"))
    add_template_options(p)
    add_packer_options(p, only=False)
    _connection_flags(p.add_argument_group("connection"))
    _winrm_flags(p.add_argument_group("WinRM (winrm:// and winrms:// targets)"))
    _step_flags(p.add_argument_group("steps"))
    add_compile_options(p)
    _generalize_flags(p.add_argument_group("deprovisioning (--generalize)"))
    _output_flags(p)
    p.set_defaults(handler=handler)


def _host_flags(h: argparse._ArgumentGroup) -> None:
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
        "--limit",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only on the hosts (of --host and --hosts-file) that match: a name, user@name or a shell pattern "
        "such as 'web*'; comma-separated or repeatable (Ansible's --limit)",
    )
    h.add_argument(
        "--parallel",
        type=int,
        default=10,
        metavar="N",
        help="run on at most N hosts at a time (default 10)",
    )


def _connection_flags(c: argparse._ArgumentGroup) -> None:
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


def _winrm_flags(w: argparse._ArgumentGroup) -> None:
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


def _step_flags(s: argparse._ArgumentGroup) -> None:
    s.add_argument(
        "--from", dest="from_step", metavar="NAME", help="start at this customizer (the ones before are skipped)"
    )
    s.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this customizer or validator (repeatable); with a Packer configuration, a value that matches "
        "a build source (BUILD.SOURCE globs, as packer -only) picks that build instead",
    )
    s.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this customizer or validator out (repeatable)",
    )
    s.add_argument(
        "--on-error",
        choices=["abort", "ask"],
        default="abort",
        help="when a step fails: abort (default: stop, clean up, exit 1) or ask on the terminal: retry the step, "
        "skip it, abort, or pause to inspect the VM first (Packer's -on-error)",
    )
    s.add_argument(
        "--step",
        dest="step_through",
        action="store_true",
        help="pause before each step until you press Enter (s skips it, q aborts); Packer's -debug",
    )


def _generalize_flags(g: argparse._ArgumentGroup) -> None:
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


def _output_flags(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("limits")
    t.add_argument(
        "--timeout",
        metavar="DURATION",
        help="the whole run's deadline, such as 90m or 2h (default: the template's buildTimeoutInMinutes; 0 there "
        "means 240)",
    )
    t.add_argument(
        "--timeout-minutes",
        metavar="N",
        help="the same deadline in minutes (a duration such as 1h30m is accepted too)",
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
    o.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show each command of inline Shell and PowerShell lines as it runs (sh -x, Set-PSDebug -Trace 1): a "
        "step that fails without a word then names its failing line",
    )
    o.add_argument(
        "--timestamps",
        action="store_true",
        help="start every line of live output with the time (Packer's -timestamp-ui)",
    )
    o.add_argument("-q", "--quiet", action="store_true", help="do not show the template's validation warnings")


@dataclass
class Flags:
    """The command line, checked before the template is read."""

    hosts: list[HostEntry]
    password: str | None
    durations: dict[str, float]


def read_flags(args: argparse.Namespace) -> Flags | Refusal:
    """Everything that can be wrong with the flags, before anything is read, fetched or connected to."""
    from aibx.engine.fleet import HostListError, check_unique, parse_host_text, read_hosts_file
    from aibx.model import MAX_BUILD_TIMEOUT_MINUTES, parse_duration

    try:
        hosts = [parse_host_text(text, "--host") for text in args.host]
        if args.hosts_file:
            hosts += read_hosts_file(args.hosts_file)
        check_unique(hosts)
    except HostListError as exc:
        return usage_error(str(exc))
    if not hosts:
        return usage_error("say where to run: --host TARGET (repeatable) or --hosts-file FILE")
    if args.limit:
        hosts = limit_hosts(hosts, args.limit)
        if not hosts:
            return usage_error(f"--limit {','.join(args.limit)}: no host matches")
    from aibx.pilot import terminal_problem

    problem = (
        _transport_flag_problem(args, hosts)
        or _file_flag_problem(args)
        or terminal_problem(args.step_through, args.on_error, len(hosts))
    )
    if problem:
        return usage_error(problem)
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            # the NAME of a variable; anything else may be the password itself, typed there by mistake: not shown
            shown = args.password_env if re.fullmatch(r"[A-Z][A-Z0-9_]*", args.password_env) else "..."
            return usage_error(
                f"--password-env {shown}: that environment variable is not set (give the variable's name, "
                "never the password)"
            )
    durations = {}
    for option, value in (
        ("--reconnect-timeout", args.reconnect_timeout),
        ("--connect-timeout", args.connect_timeout),
        ("--keepalive", args.keepalive),
    ):
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            return usage_error(f"{option} {value!r} is not a duration such as 90s, 5m or 1h")
        durations[option] = seconds
    for option, value, unit in (("--timeout", args.timeout, 1.0), ("--timeout-minutes", args.timeout_minutes, 60.0)):
        if value is None:
            continue
        seconds = read_duration(value, unit)
        if seconds is None or not 0 < seconds <= MAX_BUILD_TIMEOUT_MINUTES * 60:
            return usage_error(
                f"{option} {value!r}: give a duration such as 90m or 2h, more than 0 and at most "
                f"{MAX_BUILD_TIMEOUT_MINUTES // 60}h"
            )
        durations["--timeout"] = seconds
    return Flags(hosts, password, durations)


def read_duration(text: str, unit: float = 1.0) -> float | None:
    """A duration (90s, 5m, 1h30m) or a bare number of ``unit`` seconds (--timeout-minutes 90), or None."""
    from aibx.model import parse_duration

    try:
        return float(text) * unit
    except ValueError:
        return parse_duration(text)


def limit_hosts(hosts: list[HostEntry], patterns: list[str]) -> list[HostEntry]:
    """The hosts ``--limit`` selects (Ansible): each pattern (comma-separated) a host as written, its name, or a
    shell pattern of either."""
    from fnmatch import fnmatchcase

    wanted = [p.strip() for text in patterns for p in text.split(",") if p.strip()]
    out = []
    for host in hosts:
        names = {host.text, host.target.host or "", str(host.target)}
        if any(fnmatchcase(name, pattern) for name in names if name for pattern in wanted):
            out.append(host)
    return out


def _transport_flag_problem(args: argparse.Namespace, hosts: list[HostEntry]) -> str:
    """A transport's own flags without a host of that transport, or naming a file that is not there."""
    used = {descriptor(h.target.scheme).name for h in hosts}
    for d in DESCRIPTORS:
        given = [flag for flag, dest, _ in d.flags if getattr(args, dest)]
        if given and d.name not in used:
            schemes = " and ".join(f"{scheme}://" for scheme in d.schemes)
            return f"{', '.join(given)}: only for {schemes} targets"
        for flag, dest, _ in d.flags:
            path = getattr(args, dest)
            if flag in d.files and path and not os.path.isfile(path):
                return f"{flag} {path}: no such file"
    if args.parallel < 1:
        return f"--parallel {args.parallel}: must be at least 1"
    return ""


def _file_flag_problem(args: argparse.Namespace) -> str:
    if args.identity and not os.path.isfile(os.path.expanduser(args.identity)):
        return f"--identity {args.identity}: no such file"
    if args.identity and _is_public_key(os.path.expanduser(args.identity)):
        private = args.identity.removesuffix(".pub")
        there = " (it is there)" if private != args.identity and os.path.isfile(os.path.expanduser(private)) else ""
        return (
            f"--identity {args.identity}: this is a public key (what the VM keeps in authorized_keys); give the "
            f"private key: -i {private}{there}"
        )
    if args.known_hosts and not os.path.exists(args.known_hosts) and not args.accept_new_host_key:
        return f"--known-hosts {args.known_hosts}: no such file (--accept-new-host-key would create it)"
    for option, path, example in (("--report", args.report, "report.json"), ("--log", args.log, "customization.log")):
        problem = output_path_problem(path, example) if path else ""
        if problem:
            return f"{option} {path}: {problem}"
    if args.ssh_config and not os.path.isfile(args.ssh_config):
        return f"--ssh-config {args.ssh_config}: no such file"
    return ""


PUBLIC_KEY_PREFIXES = (b"ssh-", b"ecdsa-sha2-", b"sk-ssh-", b"sk-ecdsa-", b"---- BEGIN SSH2 PUBLIC KEY")


def _is_public_key(path: str) -> bool:
    """An OpenSSH (or RFC 4716) public key file, given where the private key belongs."""
    try:
        with open(path, "rb") as f:
            start = f.read(64).lstrip()
    except OSError:
        return False
    return start.startswith(PUBLIC_KEY_PREFIXES)
