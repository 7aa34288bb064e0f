#!/usr/bin/env python3
"""Translate the shared development corpus both ways and count what happens (a dev script, not a test).

* every Packer configuration in CORPUS/packer/ (legacy JSON, single .pkr.hcl files, folders) → AIB, with a
  report; a folder with several builds is translated build by build (--only), with the variables a user of
  that configuration would pass;
* every AIB template in CORPUS/aib/ → Packer HCL2, checked with ``packer fmt -check`` and (after removing the
  ``packer {}`` block and windows-update provisioners, which Packer 1.6.6 predates)
  ``packer validate -syntax-only``.

Usage: scripts/corpus_translate.py [CORPUS]   (CORPUS defaults to /work/shared/corpus)
It prints the "translate" section of docs/corpus.md, and exits 1 if any configuration or template failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aibx.diagnostics import has_errors
from aibx.loader import load
from aibx.translators import AibOptions, PackerInputs, aib_document, packer_to_aib, read_packer
from aibx.translators.hcl_writer import dumps
from aibx.translators.report import Report
from aibx.translators.to_packer import ToPacker
from aibx.validation import validate

# what a user of these configurations passes on the command line (their builds need it)
RUNS: dict[str, list[tuple[list[str], list[str]]]] = {
    "runner-images-ubuntu": [
        ([f"{build}.*"], [f"image_os={os_name}"])
        for build, os_name in (
            ("ubuntu-22_04", "ubuntu22"),
            ("ubuntu-22_04-arm64", "ubuntu22-arm64"),
            ("ubuntu-24_04", "ubuntu24"),
            ("ubuntu-24_04-arm64", "ubuntu24-arm64"),
            ("ubuntu-26_04", "ubuntu26"),
            ("ubuntu-26_04-arm64", "ubuntu26-arm64"),
        )
    ],
}


@dataclass
class Tally:
    rows: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    configs: int = 0
    ok: int = 0
    templates: int = 0
    lossy: int = 0
    valid: int = 0


def packer_to_aib_corpus(corpus: Path, tally: Tally) -> None:
    entries = sorted(
        p for p in (corpus / "packer").iterdir() if p.suffix == ".json" or p.is_dir() or p.name.endswith(".pkr.hcl")
    )
    for path in entries:
        tally.configs += 1
        runs = RUNS.get(path.name, [([], [])])
        produced = lossy = 0
        problems: list[str] = []
        counts: Counter = Counter()
        for only, variables in runs:
            config = read_packer(str(path), PackerInputs(variables=variables, env={}, cwd=str(path.parent)))
            if has_errors(config.diagnostics):
                problems += [d.format() for d in config.diagnostics if d.severity.value == "error"][:2]
                continue
            for t in packer_to_aib(config, AibOptions(only=only, cwd=str(path.parent))):
                counts.update(t.report.counts())
                if t.template is None:
                    continue
                produced += 1
                lossy += t.report.lossy
                doc = aib_document(t.template, t.report)
                tally.valid += _aib_valid(doc)
        tally.statuses.update(counts)
        tally.templates += produced
        tally.lossy += lossy
        tally.ok += not problems
        state = "error: " + "; ".join(problems) if problems else f"{produced} template(s), {lossy} lossy"
        tally.rows.append(
            f"| `{path.name}` | {state} | {counts['mapped']} / {counts['approximated']} / {counts['dropped']} |"
        )


def _aib_valid(document: dict) -> bool:
    import json

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(document, fh)
    try:
        result = load(fh.name)
        return bool(result.documents) and not has_errors(validate(result.documents[0]).diagnostics)
    finally:
        os.unlink(fh.name)


def aib_to_packer_corpus(corpus: Path, tally: Tally, scratch: Path) -> None:
    env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(scratch / "home"), PACKER_CACHE_DIR=str(scratch / "cache"))
    for path in sorted((corpus / "aib").glob("*.json")):
        tally.configs += 1
        result = load(str(path))
        if not result.documents:
            tally.rows.append(f"| `{path.name}` | not readable: {result.diagnostics[0].message} | | |")
            continue
        tpl = validate(result.documents[0]).template
        report = Report(str(path), "packer")
        blocks = ToPacker(tpl, report, scratch).blocks()
        tally.statuses.update(report.counts())
        tally.templates += 1
        tally.lossy += report.lossy
        folder = scratch / path.stem
        (folder / "full").mkdir(parents=True)
        (folder / "166").mkdir()
        (folder / "full" / "t.pkr.hcl").write_text(dumps(blocks))
        fmt = subprocess.run(["packer", "fmt", "-check", "."], cwd=folder / "full", env=env, capture_output=True)
        stripped = [b for b in blocks if b.type != "packer"]
        for b in stripped:
            if b.type == "build":
                b.blocks = [p for p in b.blocks if p.labels != ["windows-update"]]
        (folder / "166" / "t.pkr.hcl").write_text(dumps(stripped))
        syntax = subprocess.run(
            ["packer", "validate", "-syntax-only", "t.pkr.hcl"], cwd=folder / "166", env=env, capture_output=True
        )
        ok = fmt.returncode == 0 and syntax.returncode == 0
        tally.ok += ok
        c = report.counts()
        tally.rows.append(
            f"| `{path.name}` | fmt {'ok' if fmt.returncode == 0 else 'FAIL'}, "
            f"validate -syntax-only {'ok' if syntax.returncode == 0 else 'FAIL'}"
            f"{', lossy' if report.lossy else ''} | {c['mapped']} / {c['approximated']} / {c['dropped']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default="/work/shared/corpus")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    packer = Tally()
    packer_to_aib_corpus(corpus, packer)
    aib = Tally()
    with tempfile.TemporaryDirectory() as scratch:
        aib_to_packer_corpus(corpus, aib, Path(scratch))
    lines = [
        "## translate",
        "",
        "Produced by `scripts/corpus_translate.py` (Packer 1.6.6 for the checks). Counts per configuration are",
        "report entries: mapped / approximated / dropped.",
        "",
        f"**Packer → AIB**: {packer.ok} of {packer.configs} configurations translate with a report, giving "
        f"{packer.templates} AIB templates ({packer.valid} valid for aibx's validator apart from placeholder "
        f"warnings, {packer.lossy} lossy). Report entries: {packer.statuses['mapped']} mapped, "
        f"{packer.statuses['approximated']} approximated, {packer.statuses['dropped']} dropped.",
        "",
        "| configuration | result | entries |",
        "|---|---|---|",
        *packer.rows,
        "",
        f"**AIB → Packer**: {aib.ok} of {aib.configs} templates translate to HCL that `packer fmt -check` and "
        f"`packer validate -syntax-only` accept ({aib.lossy} lossy). Report entries: "
        f"{aib.statuses['mapped']} mapped, {aib.statuses['approximated']} approximated, "
        f"{aib.statuses['dropped']} dropped.",
        "",
        "| template | result | entries |",
        "|---|---|---|",
        *aib.rows,
    ]
    print("\n".join(lines))
    return 0 if packer.ok == packer.configs and aib.ok == aib.configs else 1


if __name__ == "__main__":
    sys.exit(main())
