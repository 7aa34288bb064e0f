#!/usr/bin/env python3
"""Benchmark: aibx run at network distance, side by side with Packer 1.6.6 and an OpenSSH ControlMaster loop.

A loopback sshd (tests/support/sshd.py) and the WinRM test server (tests/support/winrm_server.py, playing a
Windows VM with tests/support/winrm_windows.py) behind the latency proxy of tests/support/latency_proxy.py, which
adds ``--delay-ms`` (default 10 ms) each way, so a round trip takes 20 ms, like a VM in a nearby region. In one
run, interleaved run by run after one warm-up, median of N runs, whole commands:

* SSH at 20 ms: jobs of 1 and of 21 inline Shell customizers (``true``) with
  - aibx (this tree), aibx without its command agent (``AIBX_SSH_AGENT=off``), and aibx at ``--baseline`` (a git
    ref, default main: what came before), each ``aibx run TEMPLATE --host ...``;
  - Packer 1.6.6's null builder with the same ``shell`` provisioners;
  - ``ssh`` with ControlMaster: 1 and 21 commands ``true``, the master's start included;
* SSH on loopback (no proxy): 50 steps, aibx, aibx at the baseline and the ControlMaster loop;
* WinRM at 20 ms: jobs of 1 and 21 inline PowerShell customizers, aibx and aibx at the baseline (NTLM with
  message encryption over HTTP, as Windows does by default).

aibx runs as ``python -m aibx`` with its bytecode cached (written at the warm-up), as an installed aibx starts.

Round trips are the proxy's turnarounds (bytes towards the server answered by bytes back; for WinRM, one per HTTP
request); per step is (21-step job - 1-step job) / 20.

Goals (issue 15): <= 1.5 round trips per step over SSH; the 1-step job no slower than Packer's; 21 steps in
<= 1.0x the ControlMaster loop's time; on loopback, 50 steps in <= 1.0x ControlMaster.

usage: python3 bench/latency.py [--runs N] [--delay-ms 10] [--baseline main] [--no-packer] [--no-winrm]
(from the repository root, as root or a user sshd accepts; needs sshd, ssh, packer, git)
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.latency_proxy import LatencyProxy  # noqa: E402
from tests.support.packer import null_ssh_source  # noqa: E402
from tests.support.plans import WINDOWS_SOURCE  # noqa: E402
from tests.support.sshd import SshTarget  # noqa: E402
from tests.support.templates import shell, write_template  # noqa: E402

SHORT, LONG, LOOPBACK_STEPS = 1, 21, 50
WINRM_USER, WINRM_PASSWORD, PASSWORD_VAR = "aibx", "Bench-Passw0rd", "AIBX_BENCH_PASSWORD"


@dataclass
class Endpoint:
    """Where the tools connect: the proxy or sshd itself, with a known_hosts file naming that port."""

    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"


@dataclass
class Case:
    tool: str
    job: str  # e.g. "21 steps @ 20 ms"
    fn: Callable[[], None]
    proxy: LatencyProxy | None
    times: list[float] = field(default_factory=list)
    round_trips: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.tool}, {self.job}"


def run(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(
            f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def baseline_tree(ref: str, work: Path) -> Path:
    """aibx at git ``ref``, laid out as the installed package (engine/, provisioners/, translators/ under aibx/),
    for PYTHONPATH: the dependencies are this environment's."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    source = work / "baseline-src"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    package = work / "baseline" / "aibx"
    shutil.copytree(source / "aibx", package)
    for folder in ("engine", "provisioners", "translators"):
        shutil.copytree(source / folder, package / folder)
    return package.parent


def endpoint_for(target: SshTarget, port: int, work: Path) -> Endpoint:
    known_hosts = work / f"known_hosts.{port}"
    key = (target.host_key.parent / f"{target.host_key.name}.pub").read_text().strip()
    known_hosts.write_text(f"[{target.host}]:{port} {key}\n")
    return Endpoint(target.host, port, target.user, target.client_key, known_hosts)


def aibx_job(template: Path, host_args: list[str], env: dict[str, str], work: Path) -> Callable[[], None]:
    command = [sys.executable, "-m", "aibx", "run", str(template), *host_args, "--log", str(work / "aibx.log")]

    def job() -> None:
        run(command, env=env, cwd=work)

    return job


def packer_job(work: Path, end: Endpoint, steps: int, env: dict[str, str]) -> Callable[[], None]:
    folder = work / f"packer-{end.port}-{steps}"
    folder.mkdir()
    provisioners = '\n  provisioner "shell" {\n    inline = ["true"]\n  }\n' * steps
    source = null_ssh_source(end, "30s")  # type: ignore[arg-type]  # it reads host, port, user, client_key
    (folder / "job.pkr.hcl").write_text(f'{source}\nbuild {{\n  sources = ["source.null.vm"]\n{provisioners}}}\n')

    def job() -> None:
        run(["packer", "build", "-color=false", "job.pkr.hcl"], env=env, cwd=folder)

    return job


def controlmaster_job(end: Endpoint, steps: int) -> Callable[[], None]:
    opts = ["-i", str(end.client_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={end.known_hosts}", "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
    destination = ["-p", str(end.port), f"{end.user}@{end.host}"]

    def job() -> None:
        socket_dir = tempfile.mkdtemp(prefix="cm", dir="/tmp")  # a unix socket path must stay short
        cm = ["-o", "ControlMaster=auto", "-o", f"ControlPath={socket_dir}/%C", "-o", "ControlPersist=60"]
        for _ in range(steps):
            run(["ssh", *opts, *cm, *destination, "true"])
        subprocess.run(["ssh", *opts, *cm, "-O", "exit", *destination], capture_output=True)
        shutil.rmtree(socket_dir, ignore_errors=True)

    return job


def ssh_cases(
    target: SshTarget, far_proxy: LatencyProxy, work: Path, envs: dict[str, dict[str, str]], packer: bool, rtt: str
) -> list[Case]:
    far = endpoint_for(target, far_proxy.port, work)
    near = endpoint_for(target, target.port, work)
    cases: list[Case] = []

    def host_args(end: Endpoint) -> list[str]:
        return ["--host", end.url, "-i", str(end.client_key), "--known-hosts", str(end.known_hosts)]

    templates = {
        n: write_template(work, [shell(f"step-{i:02d}", "true") for i in range(n)], name=f"shell-{n}.json")
        for n in (SHORT, LONG, LOOPBACK_STEPS)
    }
    for steps in (SHORT, LONG):
        job = f"{steps} step{'s' * (steps > 1)} @ {rtt}"
        for tool, env in envs.items():
            cases.append(Case(tool, job, aibx_job(templates[steps], host_args(far), env, work), far_proxy))
        if packer:
            cases.append(Case("packer", job, packer_job(work, far, steps, envs["aibx"]), far_proxy))
        cases.append(Case("ssh ControlMaster", job, controlmaster_job(far, steps), far_proxy))
    for steps in (SHORT, LOOPBACK_STEPS):  # the 1-step job tells the fixed cost from the cost per step
        job = f"{steps} step{'s' * (steps > 1)}, loopback"
        for tool, env in envs.items():
            if tool != "aibx without agent":
                cases.append(Case(tool, job, aibx_job(templates[steps], host_args(near), env, work), None))
        cases.append(Case("ssh ControlMaster", job, controlmaster_job(near, steps), None))
    return cases


def winrm_cases(proxy: LatencyProxy, work: Path, envs: dict[str, dict[str, str]], rtt: str) -> list[Case]:
    cases = []
    host_args = ["--host", f"winrm://{WINRM_USER}@127.0.0.1:{proxy.port}", "--password-env", PASSWORD_VAR,
                 "--winrm-auth", "ntlm"]  # fmt: skip
    for steps in (SHORT, LONG):
        ps = [{"type": "PowerShell", "name": f"ps-{i:02d}", "inline": ["Write-Output ok"]} for i in range(steps)]
        template = write_template(work, ps, name=f"ps-{steps}.json", source=WINDOWS_SOURCE)
        job = f"{steps} PowerShell step{'s' * (steps > 1)} @ {rtt}, WinRM"
        for tool, env in envs.items():
            if tool != "aibx without agent":
                cases.append(Case(tool, job, aibx_job(template, host_args, dict(env, **{PASSWORD_VAR: WINRM_PASSWORD}),
                                                      work), proxy))  # fmt: skip
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="added each way by the proxy (default 10)")
    parser.add_argument("--baseline", default="main", help="git ref of the aibx to compare with ('' for none)")
    parser.add_argument("--no-packer", action="store_true", help="leave Packer out (quicker)")
    parser.add_argument("--no-winrm", action="store_true", help="leave the WinRM jobs out")
    args = parser.parse_args()
    for program in ("sshd", "ssh", *(() if args.no_packer else ("packer",))):
        if not (shutil.which(program) or shutil.which(program, path="/usr/sbin")):
            raise SystemExit(f"{program} is needed (Debian: openssh-server, openssh-client, packer)")

    work = Path(tempfile.mkdtemp(prefix="aibx-bench-latency-"))
    base_env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(work / "home"), PACKER_CACHE_DIR=str(work / "cache"),
                    NO_COLOR="1", AIBX_SSH_AGENT="on")  # fmt: skip
    base_env.pop("PYTHONPATH", None)
    # as an installed aibx starts: with its modules' bytecode cached (pip compiles it at install time), which a
    # PYTHONDONTWRITEBYTECODE in the environment would turn into compiling every module at every start
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    (work / "home").mkdir()
    envs = {"aibx": base_env, "aibx without agent": dict(base_env, AIBX_SSH_AGENT="off")}
    if args.baseline:
        envs[f"aibx {args.baseline}"] = dict(base_env, PYTHONPATH=str(baseline_tree(args.baseline, work)))
    rtt = f"{2 * args.delay_ms:g} ms"
    delay = args.delay_ms / 1000
    with SshTarget("bench-latency") as target, LatencyProxy(target.port, delay=delay) as ssh_proxy:
        cases = ssh_cases(target, ssh_proxy, work, envs, not args.no_packer, rtt)
        winrm = None
        if not args.no_winrm:
            from tests.support.winrm_server import Reply, WinRMHost
            from tests.support.winrm_windows import WindowsVm

            host = WinRMHost(users={WINRM_USER: WINRM_PASSWORD}, allow_unencrypted=True)
            WindowsVm(host).on_script("Write-Output ok", Reply("ok\r\n"))
            host.start()
            winrm = LatencyProxy(host.port, delay=delay).start()
            cases += winrm_cases(winrm, work, envs, rtt)
        try:
            for case in cases:  # warm-up: page cache, first start of each binary
                case.fn()
            for _ in range(args.runs):
                for case in cases:
                    before = case.proxy.snapshot() if case.proxy else None
                    started = time.perf_counter()
                    case.fn()
                    case.times.append(time.perf_counter() - started)
                    if case.proxy and before:
                        case.round_trips.append((case.proxy.snapshot() - before).round_trips)
        finally:
            if winrm is not None:
                winrm.close()
                host.stop()
    shutil.rmtree(work, ignore_errors=True)
    report(cases, args, rtt)


def report(cases: list[Case], args: argparse.Namespace, rtt: str) -> None:
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"method: median of {args.runs} runs each, interleaved, after one warm-up; proxy {args.delay_ms:g} ms each "
          "way")  # fmt: skip
    median = {c.name: statistics.median(c.times) for c in cases}
    trips = {c.name: statistics.median(c.round_trips) for c in cases if c.round_trips}
    print("\n| job | tool | median s | min–max s | round trips |")
    print("|---|---|---|---|---|")
    for c in cases:
        shown = f"{trips[c.name]:g}" if c.name in trips else "–"
        print(f"| {c.job} | {c.tool} | {median[c.name]:.2f} | {min(c.times):.2f}–{max(c.times):.2f} | {shown} |")
    print()
    jobs = {c.job for c in cases}
    for tool in dict.fromkeys(c.tool for c in cases):
        for kind in ("step", "PowerShell step"):
            suffix = f" @ {rtt}" + (", WinRM" if kind == "PowerShell step" else "")
            short, long = f"{tool}, {SHORT} {kind}{suffix}", f"{tool}, {LONG} {kind}s{suffix}"
            if short in trips and long in trips and f"{SHORT} {kind}{suffix}" in jobs:
                per_step = (trips[long] - trips[short]) / (LONG - SHORT)
                ms = (median[long] - median[short]) / (LONG - SHORT) * 1000
                print(f"{tool}: {per_step:.2f} round trips per {kind} ({ms:.0f} ms per {kind}){suffix}")
    for tool in dict.fromkeys(c.tool for c in cases):
        short, long = f"{tool}, {SHORT} step, loopback", f"{tool}, {LOOPBACK_STEPS} steps, loopback"
        if short in median and long in median:
            per_step = (median[long] - median[short]) / (LOOPBACK_STEPS - SHORT) * 1000
            print(f"{tool}, loopback: fixed cost {median[short] - per_step / 1000:.2f} s, {per_step:.1f} ms per step")
    print()
    fastest = {c.name: min(c.times) for c in cases}
    for tool in dict.fromkeys(c.tool for c in cases if c.tool.startswith("aibx")):
        ratios = []
        for label, job, other in (
            ("1 step / packer", f"{SHORT} step @ {rtt}", "packer"),
            (f"{LONG} steps / ControlMaster", f"{LONG} steps @ {rtt}", "ssh ControlMaster"),
            (f"loopback {LOOPBACK_STEPS} steps / ControlMaster", f"{LOOPBACK_STEPS} steps, loopback",
             "ssh ControlMaster"),
        ):  # fmt: skip
            mine, theirs = f"{tool}, {job}", f"{other}, {job}"
            if mine in median and theirs in median:
                ratios.append(f"{label} = {median[mine] / median[theirs]:.2f} (fastest runs: "
                              f"{fastest[mine] / fastest[theirs]:.2f})")  # fmt: skip
        if ratios:
            print(f"{tool}: " + "; ".join(ratios) + " (goals <= 1.0)")


if __name__ == "__main__":
    main()
