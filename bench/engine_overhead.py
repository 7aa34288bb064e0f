#!/usr/bin/env python3
"""Benchmark: the engine's own cost per step, without a network: the Runner driving 1,000 Exec steps (each printing
three lines) and 200 Uploads through the scripted fake transport (tests/support/fake_transport.py), so what is
measured is the runner, the session, the executors and the events, not sshd or the machine's load on the network.

Side by side: each ``--python`` is an interpreter with an aibx installed (say this checkout's and a baseline's);
their runs alternate, one warm-up each, median of N. The fake transport is this checkout's, loaded by path.

usage: python3 bench/engine_overhead.py --python .venv/bin/python --python /tmp/base/.venv/bin/python [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = 1000
UPLOADS = 200

CHILD = r"""
import asyncio, importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("fake_transport", sys.argv[1])
fake = sys.modules["fake_transport"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(fake)
from aibx.plan import Content, Exec, Plan, StepPlan, Upload
steps, uploads = int(sys.argv[2]), int(sys.argv[3])
plan = Plan("bench.json", "Linux", [StepPlan(f"s{i}", "Shell", "customize", [Exec(f"echo {i}")]) for i in range(steps)]
            + [StepPlan(f"u{i}", "File", "customize", [Upload(f"/tmp/f{i}", Content(data=b"x" * 4096))])
               for i in range(uploads)])
vm = fake.FakeVM([fake.Reply(match=f"echo {i}", stdout=b"one\ntwo\nthree\n") for i in range(steps)])
began = time.perf_counter()
run = asyncio.run(fake.run_plan(vm, plan))
took = time.perf_counter() - began
assert run.result.exit_code == 0, run.result.message
print(json.dumps({"seconds": took, "events": len(run.events)}))
"""


def once(python: str) -> float:
    fake = ROOT / "tests" / "support" / "fake_transport.py"
    out = subprocess.run(
        [python, "-c", CHILD, str(fake), str(STEPS), str(UPLOADS)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",  # not this checkout: its aibx/ folder would shadow the interpreter's installed aibx
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="an interpreter with aibx installed")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {p: [] for p in args.python}
    for p in args.python:
        once(p)  # warm-up
    for _ in range(args.runs):
        for p in args.python:
            times[p].append(once(p))
    first = statistics.median(times[args.python[0]])
    print(
        f"{STEPS} Exec steps (3 output lines each) + {UPLOADS} uploads through the fake transport; "
        f"median of {args.runs}"
    )
    for p, ts in times.items():
        median = statistics.median(ts)
        per_step = median / (STEPS + UPLOADS) * 1000
        print(
            f"  {median:.3f} s  (min {min(ts):.3f}, max {max(ts):.3f})  {per_step:.3f} ms/step  "
            f"{median / first:.2f}x  {p}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
