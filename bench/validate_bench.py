#!/usr/bin/env python3
"""Benchmark `aibx validate` and `aibx --version` as whole processes, side by side with interpreter baselines.

Every command is started as a new process, the way a user or a CI job runs it, so start-up and imports count.
The commands run in rounds (one of each per round, in turn) so that background noise hits all of them alike;
the report gives the median and the minimum per command and their ratios to `python -c pass`. On a busy
machine the minimum is the steadier figure.

    python bench/validate_bench.py                 # 30 rounds, a Markdown table on stdout
    python bench/validate_bench.py --rounds 100

The validated template is generated: 200 customizers (Shell inline, Shell scriptUri with a checksum, File) plus
validators and three distribute targets, every rule engaged. Goals (issue 2): validate under 0.3 s, --version
under 0.15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUB = "00000000-0000-0000-0000-000000000000"
IDENTITIES = f"/subscriptions/{SUB}/resourceGroups/id/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
CHECKSUM = "4209d788ad32c40cbda3c66b3de47eefb929308ca703bb77a6382625986add17"


def big_template(customizers: int = 200) -> dict:
    steps = []
    for i in range(customizers):
        kind = i % 3
        if kind == 0:
            steps.append({"type": "Shell", "name": f"inline-{i}", "inline": [f"echo step {i}", "sudo true"]})
        elif kind == 1:
            steps.append(
                {
                    "type": "Shell",
                    "name": f"script-{i}",
                    "scriptUri": f"https://example.org/scripts/{i}.sh",
                    "sha256Checksum": CHECKSUM,
                }
            )
        else:
            steps.append(
                {
                    "type": "File",
                    "name": f"file-{i}",
                    "sourceUri": f"https://example.org/files/{i}",
                    "destination": f"/tmp/file-{i}",
                    "sha256Checksum": CHECKSUM,
                }
            )
    images = f"/subscriptions/{SUB}/resourceGroups/images/providers/Microsoft.Compute"
    return {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "apiVersion": "2025-10-01",
        "name": "bench-200-customizers",
        "location": "westeurope",
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {f"{IDENTITIES}/aib": {}},
        },
        "properties": {
            "buildTimeoutInMinutes": 240,
            "source": {
                "type": "PlatformImage",
                "publisher": "Canonical",
                "offer": "ubuntu-24_04-lts",
                "sku": "server",
                "version": "latest",
            },
            "customize": steps,
            "validate": {"inVMValidations": [{"type": "Shell", "name": "check", "inline": ["true"]}]},
            "distribute": [
                {
                    "type": "ManagedImage",
                    "runOutputName": "m",
                    "imageId": f"{images}/images/x",
                    "location": "westeurope",
                },
                {
                    "type": "SharedImage",
                    "runOutputName": "g",
                    "galleryImageId": f"{images}/galleries/g/images/x",
                    "targetRegions": [{"name": "westeurope", "replicaCount": 2}],
                    "versioning": {"scheme": "Latest"},
                },
                {"type": "VHD", "runOutputName": "v"},
            ],
        },
    }


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()} ({sys.executable})"
    )


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[:500]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    aibx = shutil.which("aibx", path=str(Path(sys.executable).parent)) or shutil.which("aibx")
    if aibx is None:
        raise SystemExit("aibx is not installed in this environment (pip install -e .)")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "bench-200.json"
        template.write_text(json.dumps(big_template(), indent=2))
        commands = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "python -c 'import json'": [python, "-c", "import json"],
            "aibx --version": [aibx, "--version"],
            "aibx validate (200 customizers)": [aibx, "validate", str(template)],
        }
        for argv in commands.values():  # warm the page cache and the .pyc files
            time_once(argv)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                samples[name].append(time_once(argv))

    base = samples["python -c pass (baseline)"]
    base_median, base_min = statistics.median(base), min(base)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Machine: {machine()}  ")
    print(
        f"Rounds: {args.rounds}, commands interleaved; wall-clock time of each whole process; load average {load:.1f}."
    )
    print()
    print("| command | median | min | median / baseline | min / baseline |")
    print("|---|---|---|---|---|")
    for name, times in samples.items():
        med, low = statistics.median(times), min(times)
        print(
            f"| {name} | {med * 1000:.0f} ms | {low * 1000:.0f} ms | {med / base_median:.1f}× | {low / base_min:.1f}× |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
