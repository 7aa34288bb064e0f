#!/usr/bin/env python3
"""Benchmark: reboots and fleets, aibx against baselines in one run.

1. Reboot mid-step, then the next step: the time from the target accepting SSH again (its sshd is back and
   answers with a banner) to the next step running on it (the step writes the VM's clock, the same clock as the
   target's timeline), for
   * `aibx run` (keepalive 1 s; what it waits for: the drop, the VM, a new boot id);
   * Packer 1.6.6, null builder, a shell provisioner with `expect_disconnect = true` and the next one (what
     Packer's own docs and AIB do; it retries the next upload every 2 s).
   Both against the same loopback target (tests/support/sshd.py) whose `sudo reboot` (a shim) kills it, holds its
   port silent (connection attempts time out) for 1.0, 1.4, 1.8, 2.2, 2.6, 1.0, ... s in turn (so Packer's 2 s
   retry meets the target at every phase), refuses connections for 0.5 s, then starts sshd again with the same
   host key and a new boot id. Runs alternate between the tools, each pair with the same down time. Needs root.
2. A fleet: 32 loopback targets x 10 Shell steps (`aibx run --hosts-file ... --parallel 32`) against one target x
   the same 10 steps, wall time of the whole command and the aibx process's peak RSS (getrusage of the child).
   Runs alternate between the two.

Goals (issue 5): reboot -> next step <= 1 s for aibx; fleet wall time <= 3x one target's.

usage: python3 bench/reboots_and_fleets.py [--runs N] [--fleet 32] [--steps 10]   (from the repository root, as root)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.cli import aibx_command  # noqa: E402
from tests.support.fleet import TargetFleet  # noqa: E402
from tests.support.packer import null_ssh_source  # noqa: E402
from tests.support.power import PowerWatcher  # noqa: E402
from tests.support.sshd import IS_ROOT, SshTarget  # noqa: E402
from tests.support.templates import shell, write_template  # noqa: E402

DOWN_SECONDS = (1.0, 1.4, 1.8, 2.2, 2.6)
REFUSED_SECONDS = 0.5


def packer_reboot_template(target: SshTarget, marker: str) -> str:
    return (
        null_ssh_source(target, "60s")
        + f"""
build {{
  sources = ["source.null.vm"]
  provisioner "shell" {{
    inline            = ["sudo reboot"]
    expect_disconnect = true
  }}
  provisioner "shell" {{
    inline = ["date +%s.%N > {marker}"]
  }}
}}
"""
    )


CPU_SECONDS: list[float] = []  # user + system time of the last command run by run_timed


def run_timed(cmd: list[str], **kwargs: object) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of a command (its CPU time goes to CPU_SECONDS); it must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{output.decode(errors='replace')[-4000:]}")
    return took, usage.ru_maxrss


def reboot_latency(target: SshTarget, run_tool: callable, marker: str) -> tuple[float, float]:  # type: ignore[valid-type]
    """(seconds from sshd accepting again to the next step, the whole command's seconds) for one run."""
    path = target.host_path(marker)
    path.unlink(missing_ok=True)
    ups_before = sum(1 for _, what in target.timeline if what == "up")
    took, _ = run_tool()
    ups = [when for when, what in target.timeline if what == "up"]
    assert len(ups) == ups_before + 1, "the target did not reboot exactly once"
    next_step = float(path.read_text().strip())
    return next_step - ups[-1], took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not IS_ROOT:
        raise SystemExit("run as root: a simulated reboot changes the boot id only in the target's own namespace")
    for program in ("sshd", "packer"):
        if not (shutil.which(program) or shutil.which(program, path="/usr/sbin")):
            raise SystemExit(f"{program} is needed (Debian: openssh-server, packer)")
    work = Path(tempfile.mkdtemp(prefix="aibx-bench-reboot-"))
    (work / "home").mkdir()
    env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(work / "home"), PACKER_CACHE_DIR=str(work / "cache"),
               NO_COLOR="1")  # fmt: skip
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip

    # ------------------------------------------------------------------------------------ 1. reboot -> next step
    latency: dict[str, list[float]] = {"aibx": [], "packer": []}
    whole: dict[str, list[float]] = {"aibx": [], "packer": []}
    reboot = {"down_s": DOWN_SECONDS[0], "refused_s": REFUSED_SECONDS}
    with SshTarget("bench-reboot") as target, PowerWatcher([target], reboot):
        marker = "/tmp/aibx-bench-next-step"
        template = write_template(
            work, [shell("reboot", "sudo reboot"), shell("next", f"date +%s.%N > {marker}")], name="reboot.json"
        )
        (work / "packer").mkdir()
        (work / "packer" / "reboot.pkr.hcl").write_text(packer_reboot_template(target, marker))
        auth = ["-i", str(target.client_key), "--known-hosts", str(target.known_hosts)]
        log = ["--log", str(work / "reboot.log")]
        aibx = [*aibx_command(), "run", str(template), "--host", target.url, *auth, "--keepalive", "1s", *log]
        packer = ["packer", "build", "-color=false", "reboot.pkr.hcl"]
        tools = {
            "aibx": lambda: run_timed(aibx, env=env),
            "packer": lambda: run_timed(packer, env=env, cwd=work / "packer"),
        }
        for run in range(args.runs):
            reboot["down_s"] = DOWN_SECONDS[run % len(DOWN_SECONDS)]
            for name, tool in tools.items():
                seconds, took = reboot_latency(target, tool, marker)
                latency[name].append(seconds)
                whole[name].append(took)
    downs = "/".join(map(str, DOWN_SECONDS))
    print(f"\n1. reboot mid-step -> next step; {args.runs} runs each, alternating; target down {downs} s in turn "
          f"(SYNs time out), then refusing {REFUSED_SECONDS} s")  # fmt: skip
    print("   tool    sshd accepting again -> next step runs (median, min-max)   whole command (median)")
    for name in tools:
        xs = latency[name]
        print(f"   {name:<7} {statistics.median(xs):7.3f} s  ({min(xs):.3f}-{max(xs):.3f})"
              f"{'':27}{statistics.median(whole[name]):7.2f} s")  # fmt: skip
    ratio = statistics.median(latency["aibx"]) / statistics.median(latency["packer"])
    print(f"   aibx / packer = {ratio:.2f}; aibx median {statistics.median(latency['aibx']):.3f} s (goal <= 1 s)")

    # ------------------------------------------------------------------------------------ 2. fleet
    steps = [shell(f"step-{i:02d}", f"echo step {i}", "sleep 0.1") for i in range(args.steps)]
    template = write_template(work, steps, name="fleet.json")
    wall: dict[str, list[float]] = {"one": [], "fleet": []}
    rss: dict[str, list[int]] = {"one": [], "fleet": []}
    cpu: dict[str, list[float]] = {"one": [], "fleet": []}
    with TargetFleet(args.fleet, "bench-fleet") as fleet:
        hosts = fleet.hosts_file(work / "hosts.txt")
        commands = {
            "one": [*aibx_command(), "run", str(template), "--host", fleet.targets[0].url, *fleet.auth_args(),
                    "--log", str(work / "one.log")],
            "fleet": [*aibx_command(), "run", str(template), "--hosts-file", str(hosts), *fleet.auth_args(),
                      "--parallel", str(args.fleet), "--log", str(work / "fleet.log")],
        }  # fmt: skip
        for command in commands.values():  # warm-up
            run_timed(command, env=env)
        for _ in range(args.runs):
            for name, command in commands.items():
                took, peak = run_timed(command, env=env)
                wall[name].append(took)
                rss[name].append(peak)
                cpu[name].append(CPU_SECONDS[-1])
    print(f"\n2. {args.steps} Shell steps (echo, sleep 0.1) on 1 target and on {args.fleet} targets at once "
          f"(--parallel {args.fleet}); {args.runs} runs each, alternating, after a warm-up")  # fmt: skip
    print("   targets  wall time (median, min-max)   aibx CPU time   peak RSS of aibx (medians)")
    for name, count in (("one", 1), ("fleet", args.fleet)):
        xs = wall[name]
        print(f"   {count:>7}  {statistics.median(xs):6.2f} s  ({min(xs):.2f}-{max(xs):.2f})"
              f"{statistics.median(cpu[name]):12.2f} s{statistics.median(rss[name]) / 1024:14.1f} MiB")  # fmt: skip
    ratio = statistics.median(wall["fleet"]) / statistics.median(wall["one"])
    print(f"   {args.fleet} targets / 1 target = {ratio:.2f} (goal <= 3)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
