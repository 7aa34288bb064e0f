#!/usr/bin/env python3
"""Benchmark: aibx run over SSH against baselines, in one run, against the same loopback sshd.

1. 50 inline Shell customizers (`true`):
   * `aibx run TEMPLATE --host ssh://...` (the whole command: start-up, connect, staging, 50 steps, log);
   * Packer 1.6.6's null builder running the same 50 shell provisioners (`packer build`);
   * OpenSSH `ssh` with ControlMaster running the 50 commands (the master's start included).
2. A 20 MiB File customizer against `scp` of the same file (OpenSSH 9.2's scp, which speaks SFTP).

Each measurement is the median of N runs (default 5), the tools interleaved run by run. Goals (issue 4): aibx at most
0.5x Packer's wall time and at most 1.5x the ControlMaster loop; File at least 0.8x scp's throughput.

usage: python3 bench/run_over_ssh.py [--runs N]     (from the repository root; needs sshd, ssh, scp, packer)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.cli import aibx_command  # noqa: E402
from tests.support.packer import null_ssh_source  # noqa: E402
from tests.support.sshd import SshTarget  # noqa: E402
from tests.support.templates import shell, write_template  # noqa: E402

STEPS = 50
FILE_MIB = 20


def packer_template(target: SshTarget, steps: int) -> str:
    provisioners = '\n  provisioner "shell" {\n    inline = ["true"]\n  }\n' * steps
    return (
        null_ssh_source(target, "30s")
        + f"""
build {{
  sources = ["source.null.vm"]
{provisioners}}}
"""
    )


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(
            f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=STEPS, help="customizers / provisioners / commands (default 50)")
    args = parser.parse_args()
    steps = args.steps
    for program in ("sshd", "ssh", "scp", "packer"):
        if not (shutil.which(program) or shutil.which(program, path="/usr/sbin")):
            raise SystemExit(f"{program} is needed (Debian: openssh-server, openssh-client, packer)")

    work = Path(tempfile.mkdtemp(prefix="aibx-bench-"))
    env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(work / "home"), PACKER_CACHE_DIR=str(work / "cache"),
               NO_COLOR="1")  # fmt: skip
    (work / "home").mkdir()
    with SshTarget("bench") as target:
        ssh_opts = ["-i", str(target.client_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
        aibx_auth = ["--host", target.url, "-i", str(target.client_key), "--known-hosts", str(target.known_hosts)]

        # ---------------------------------------------------------------- 50 steps
        shells = write_template(work, [shell(f"step-{i:02d}", "true") for i in range(steps)], name="shells.json")
        packer_dir = work / "packer"
        packer_dir.mkdir()
        (packer_dir / "shells.pkr.hcl").write_text(packer_template(target, steps))

        def aibx_steps() -> None:
            run([*aibx_command(), "run", str(shells), *aibx_auth, "--log", str(work / "steps.log")], env=env)

        def packer_steps() -> None:
            run(["packer", "build", "-color=false", "shells.pkr.hcl"], env=env, cwd=packer_dir)

        def controlmaster_steps() -> None:
            socket_dir = tempfile.mkdtemp(prefix="cm", dir="/tmp")  # a unix socket path must stay short
            cm = ["-o", "ControlMaster=auto", "-o", f"ControlPath={socket_dir}/%C", "-o", "ControlPersist=60"]
            destination = ["-p", str(target.port), f"{target.user}@{target.host}"]
            for _ in range(steps):
                run(["ssh", *ssh_opts, *cm, *destination, "true"])
            subprocess.run(["ssh", *ssh_opts, *cm, "-O", "exit", *destination], capture_output=True)
            shutil.rmtree(socket_dir, ignore_errors=True)

        # ---------------------------------------------------------------- 20 MiB file
        blob = work / "blob.bin"
        blob.write_bytes(os.urandom(FILE_MIB * 1024 * 1024))
        file_step = {
            "type": "File",
            "name": "blob",
            "sourceUri": "file:blob.bin",
            "destination": "/tmp/aibx-bench-blob.bin",
            "sha256Checksum": hashlib.sha256(blob.read_bytes()).hexdigest(),
        }
        files = write_template(work, [file_step], name="file.json")
        empty = work / "empty"
        empty.write_bytes(b"")
        empty_step = dict(file_step, sourceUri="file:empty", sha256Checksum=hashlib.sha256(b"").hexdigest())
        empty_files = write_template(work, [empty_step], name="empty.json")
        file_report = work / "file-report.json"
        file_step_seconds: list[float] = []

        def aibx_file() -> None:
            run([*aibx_command(), "run", str(files), *aibx_auth, "--log", str(work / "file.log"), "--report",
                 str(file_report)], env=env)  # fmt: skip
            step = next(s for s in json.loads(file_report.read_text())["steps"] if s["name"] == "blob")
            file_step_seconds.append(step["durationSeconds"])

        def aibx_empty() -> None:  # aibx's fixed cost for the same template with an empty file
            run([*aibx_command(), "run", str(empty_files), *aibx_auth, "--log", str(work / "empty.log")], env=env)

        def scp_file() -> None:
            run(["scp", "-q", *ssh_opts, "-P", str(target.port), str(blob),
                 f"{target.user}@{target.host}:/tmp/aibx-bench-scp.bin"])  # fmt: skip

        def scp_empty() -> None:  # scp's fixed cost (start, connect, authenticate), to isolate its transfer time
            run(["scp", "-q", *ssh_opts, "-P", str(target.port), str(empty),
                 f"{target.user}@{target.host}:/tmp/aibx-bench-empty"])  # fmt: skip

        cases: dict[str, Callable[[], None]] = {
            f"aibx run, {steps} inline Shell customizers": aibx_steps,
            f"packer build (null builder), {steps} shell provisioners": packer_steps,
            f"ssh with ControlMaster, {steps} commands": controlmaster_steps,
            f"aibx run, one {FILE_MIB} MiB File customizer": aibx_file,
            "aibx run, the same with an empty file": aibx_empty,
            f"scp of the same {FILE_MIB} MiB file": scp_file,
            "scp of an empty file": scp_empty,
        }
        for fn in cases.values():  # warm-up: page cache, first start of each binary
            fn()
        file_step_seconds.clear()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                times[name].append(timed(fn))
    shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(xs) for name, xs in times.items()}
    names = list(cases)
    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    )
    print(f"method: median of {args.runs} runs each, interleaved, after one warm-up; loopback sshd (OpenSSH)")
    for name in names:
        xs = times[name]
        print(f"  {median[name]:8.3f} s  (min {min(xs):.3f}, max {max(xs):.3f})  {name}")
    aibx, packer, cm = (median[n] for n in names[:3])
    print(f"aibx / packer        = {aibx / packer:.2f}  (goal <= 0.5)")
    print(f"aibx / ControlMaster = {aibx / cm:.2f}  (goal <= 1.5)")
    mib = FILE_MIB
    aibx_rate, scp_rate = mib / median[names[3]], mib / median[names[5]]
    print(f"File, whole commands: aibx run {aibx_rate:.1f} MiB/s, scp {scp_rate:.1f} MiB/s "
          f"-> {aibx_rate / scp_rate:.2f}")  # fmt: skip

    def marginal(full: str, empty: str) -> float:
        """Median over runs of (20 MiB) - (empty file), each pair from the same round."""
        return statistics.median(a - b for a, b in zip(times[full], times[empty], strict=True))

    aibx_marginal = mib / marginal(names[3], names[4])
    scp_marginal = mib / marginal(names[5], names[6])
    print(f"File, the 20 MiB alone (20 MiB run minus empty-file run): aibx {aibx_marginal:.1f} MiB/s, "
          f"scp {scp_marginal:.1f} MiB/s -> {aibx_marginal / scp_marginal:.2f}  (goal >= 0.8)")  # fmt: skip
    step_rate = mib / statistics.median(file_step_seconds)
    print(f"(aibx's File step itself, from its report: {step_rate:.1f} MiB/s, checked copy made before connecting)")


if __name__ == "__main__":
    main()
