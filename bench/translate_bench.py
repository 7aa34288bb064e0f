#!/usr/bin/env python3
"""Translate every translation fixture in one process, next to baselines measured in the same run.

aibx (per template, in one warm process):
  * AIB → Packer HCL2: load, validate, translate and write each fixtures/translate/aib/*.json;
  * Packer → AIB: read, evaluate and translate each fixtures/translate/packer case, and write the AIB JSON.
Baselines:
  * python-hcl2 alone: ``hcl2.loads`` + ``hcl2.dumps`` of the HCL aibx wrote (the library's own parse and write of
    the same text, with none of aibx's work), in the same process and rounds;
  * Packer 1.6.6: ``packer fmt -check`` of each generated file, and ``packer hcl2_upgrade`` of the legacy JSON
    fixtures (Packer's own JSON → HCL2 translator), one process each, as Packer is used.

Rounds interleave all measurements so background load hits them alike. Prints a Markdown table.

``--big``: one Packer config whose only provisioner is one inline line holding a base64 blob of 0.25, 1 and 4 MB,
translated to AIB (read, evaluate, recognise aibx's own idioms, write the JSON), beside the baseline of python-hcl2
parsing the same text (``parses_to_tree``, which any reading of the file pays). Linear work keeps both the ratio to
the baseline and the time per MB the same at every size (issue 11: the idiom recogniser was quadratic).

Usage: python bench/translate_bench.py [--rounds 20] [--big]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = time.perf_counter()
import aibx.translators  # noqa: E402, F401  (timed: the import a translation pays once)

IMPORT_MS = (time.perf_counter() - START) * 1000

from tests.translate_cases import (  # noqa: E402
    AIB_FIXTURES,
    PACKER_CASES,
    TRANSLATE,
    aib_to_packer_outputs,
    packer_to_aib_outputs,
)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--big", action="store_true", help="only the one-big-inline-line measurement")
    args = parser.parse_args()
    if args.big:
        return big_line(max(3, args.rounds // 4))
    import hcl2

    # cold: the first translation in the process (parser tables load on first use)
    first = timed(lambda: aib_to_packer_outputs(AIB_FIXTURES[0]))
    hcl_texts = [aib_to_packer_outputs(f)[f.replace(".json", ".pkr.hcl")] for f in AIB_FIXTURES]
    n_packer = sum(1 for c in PACKER_CASES for name in packer_to_aib_outputs(c) if not name.endswith("report.json")
                   and not name.endswith("uploads.json"))  # fmt: skip
    samples: dict[str, list[float]] = {"aib→packer": [], "packer→aib": [], "hcl2 loads+dumps": []}
    for _ in range(args.rounds):
        samples["aib→packer"].append(
            sum(timed(lambda f=f: aib_to_packer_outputs(f)) for f in AIB_FIXTURES) / len(AIB_FIXTURES)
        )
        samples["packer→aib"].append(sum(timed(lambda c=c: packer_to_aib_outputs(c)) for c in PACKER_CASES) / n_packer)
        samples["hcl2 loads+dumps"].append(
            sum(timed(lambda t=t: hcl2.dumps(hcl2.loads(t))) for t in hcl_texts) / len(hcl_texts)
        )

    packer = shutil.which("packer")
    tool: dict[str, list[float]] = {"packer fmt -check": [], "packer hcl2_upgrade": []}
    legacy = sorted((TRANSLATE / "packer" / "legacy").glob("*.json"))
    if packer:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(scratch), PACKER_CACHE_DIR=str(scratch / "c"))
            files = []
            for i, text in enumerate(hcl_texts):
                (scratch / f"f{i}").mkdir()
                (scratch / f"f{i}" / "t.pkr.hcl").write_text(text)
                files.append(scratch / f"f{i}")
            for _ in range(max(3, args.rounds // 4)):
                tool["packer fmt -check"].append(
                    sum(timed(lambda d=d: _run([packer, "fmt", "-check", "."], d, env)) for d in files) / len(files)
                )
                runs = []
                for src in legacy:
                    copy = scratch / src.name
                    shutil.copy(src, copy)
                    runs.append(timed(lambda c=copy: _run([packer, "hcl2_upgrade", str(c)], scratch, env)))
                tool["packer hcl2_upgrade"].append(sum(runs) / len(runs))

    base = statistics.median(samples["hcl2 loads+dumps"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"templates: {len(AIB_FIXTURES)} AIB fixtures, {n_packer} AIB templates from {len(PACKER_CASES)} Packer "
          f"cases; {args.rounds} rounds; import of aibx.translators {IMPORT_MS:.0f} ms, first template "
          f"{first:.0f} ms")  # fmt: skip
    print()
    print("| measurement | median ms/template | min | median / python-hcl2 baseline |")
    print("|---|---|---|---|")
    for name, values in {**samples, **{k: v for k, v in tool.items() if v}}.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {min(values):.1f} | {med / base:.2f}× |")
    print()
    print(json.dumps({k: round(statistics.median(v), 2) for k, v in {**samples, **tool}.items() if v}))
    return 0


def big_line_config(megabytes: float) -> str:
    """A Packer HCL2 config with one inline line that holds ``megabytes`` of base64 text."""
    import base64

    blob = base64.b64encode(os.urandom(int(megabytes * 1024 * 1024 * 3 / 4))).decode()
    return (
        'source "azure-arm" "big" {\n  os_type = "Linux"\n  location = "westus"\n  image_publisher = "Canonical"\n'
        '  image_offer = "ubuntu-24_04-lts"\n  image_sku = "server"\n  managed_image_name = "big"\n'
        '  managed_image_resource_group_name = "rg"\n}\n'
        'build {\n  sources = ["source.azure-arm.big"]\n  provisioner "shell" {\n'
        f'    inline = ["echo {blob} | base64 -d > /tmp/blob"]\n  }}\n}}\n'
    )


def big_line(rounds: int) -> int:
    import hcl2

    from aibx.translators import AibOptions, PackerInputs, aib_document, packer_to_aib, read_packer

    sizes = (0.25, 1.0, 4.0)
    samples: dict[float, dict[str, list[float]]] = {mb: {"aibx": [], "hcl2": []} for mb in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for mb in sizes:
            paths[mb] = Path(tmp) / f"big-{mb}.pkr.hcl"
            paths[mb].write_text(big_line_config(mb))

        def translate(path: Path) -> None:
            config = read_packer(str(path), PackerInputs(env={}, cwd=tmp))
            assert not config.diagnostics, config.diagnostics
            (t,) = packer_to_aib(config, AibOptions(cwd=tmp))
            json.dumps(aib_document(t.template, t.report))

        for _ in range(rounds):
            for mb in sizes:
                text = paths[mb].read_text()
                samples[mb]["aibx"].append(timed(lambda p=paths[mb]: translate(p)))
                samples[mb]["hcl2"].append(timed(lambda t=text: hcl2.parses_to_tree(t)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; {rounds} rounds")  # fmt: skip
    print()
    print("| inline line | aibx translate --to aib, median ms | python-hcl2 parse (baseline), median ms "
          "| aibx / baseline | aibx ms per MB |")  # fmt: skip
    print("|---|---|---|---|---|")
    for mb in sizes:
        ours, base = statistics.median(samples[mb]["aibx"]), statistics.median(samples[mb]["hcl2"])
        print(f"| {mb:g} MB | {ours:.0f} | {base:.0f} | {ours / base:.2f}× | {ours / mb:.0f} |")
    return 0


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False)


if __name__ == "__main__":
    sys.exit(main())
