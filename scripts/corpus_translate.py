#!/usr/bin/env python3
"""Translate a corpus both ways, as a user would with ``aibx translate``, and count what happens by class (a dev
script, not a test).

* every AIB template in CORPUS/aib/ (``*.json``) → Packer HCL2: complete (exit 0), lossy (exit 1), refused
  (exit 2, with the reason) or internal error (exit 70); each written file is checked with ``packer fmt -check``
  and ``packer validate`` (Packer 1.6.6, after removing the ``packer {}`` block and windows-update provisioners,
  which it predates, and with a value given for every variable without a default); then the **round trip**:
  the written file back to AIB, whose customizers (type, name, order) must be the original's, and whose
  templates must pass ``aibx validate`` (placeholders apart);
* every Packer configuration in CORPUS/packer/ (legacy JSON, ``.pkr.hcl`` files, folders) → AIB, by class, with
  the variables a user of that configuration would pass; each template written is validated.

Usage: scripts/corpus_translate.py [CORPUS]   (CORPUS defaults to /work/shared/corpus)
It prints the "translate" section of docs/corpus.md, and exits 1 if a goal of issue 10 is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support

from aibx.cli import main as aibx
from aibx.loader import read_json
from tests.support.packer import packer_validate

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
CLASSES = {0: "complete", 1: "lossy", 2: "refused", 70: "internal error"}
# the first line of an aibx diagnostic, for the reason of a refusal
_ERROR = re.compile(r"(?:error\[(AIB\d+)\]|aibx: internal error:)\s*(.*)")


@dataclass
class Tally:
    rows: list[str] = field(default_factory=list)
    classes: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    total: int = 0
    written: int = 0
    packer_ok: int = 0
    templates: int = 0
    valid: int = 0
    roundtrip: int = 0  # templates whose round trip kept every customizer
    roundtrip_valid: int = 0
    roundtrip_total: int = 0
    customizers: int = 0
    customizers_kept: int = 0


def run_aibx(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            code = aibx(argv)
        except Exception as exc:  # counted as an internal error
            code, _ = 70, err.write(f"aibx: internal error: {type(exc).__name__}: {exc}\n")
    return code, err.getvalue()


def reason(stderr: str) -> str:
    for line in stderr.splitlines():
        m = _ERROR.search(line)
        if m:
            return (f"{m.group(1)}: " if m.group(1) else "internal error: ") + m.group(2)[:160]
    return stderr.strip().splitlines()[-1][:160] if stderr.strip() else "?"


def aib_valid(path: Path) -> bool:
    code, _err = run_aibx(["validate", str(path)])
    return code == 0


# ----------------------------------------------------------------------------------------------- AIB → Packer
def packer_check(hcl: Path, scratch: Path) -> tuple[bool, bool, str]:
    """(packer fmt -check ok, packer validate ok, Packer's complaint) for one written file."""
    env = dict(os.environ, CHECKPOINT_DISABLE="1", HOME=str(scratch / "home"), PACKER_CACHE_DIR=str(scratch / "cache"))
    text = hcl.read_text()
    fmt = subprocess.run(["packer", "fmt", "-check", hcl.name], cwd=hcl.parent, env=env, capture_output=True)
    check = packer_validate(text, hcl.parent / "166", scratch)
    complaint = " ".join((check.stdout + check.stderr).split())[:200]
    return fmt.returncode == 0, check.returncode == 0, complaint


def customizers(path: Path) -> list[tuple[str, str]]:
    doc, _smap, _diags = read_json(str(path))
    resources = doc.get("resources", [doc]) if isinstance(doc, dict) else []
    if isinstance(resources, dict):
        resources = list(resources.values())
    out: list[tuple[str, str]] = []
    for res in resources:
        if (
            isinstance(res, dict)
            and str(res.get("type", "")).lower() == "microsoft.virtualmachineimages/imagetemplates"
        ):
            for c in res.get("properties", {}).get("customize", []) or []:
                out.append((str(c.get("type", "")).lower(), str(c.get("name", ""))))
    return out


def aib_to_packer_corpus(corpus: Path, tally: Tally, scratch: Path) -> None:
    for path in sorted((corpus / "aib").glob("*.json")):
        tally.total += 1
        folder = scratch / path.stem[:80]
        folder.mkdir(parents=True)
        out = folder / "t.pkr.hcl"
        report = folder / "report.json"
        code, err = run_aibx(["translate", str(path), "--to", "packer", "-o", str(out), "--report-json", str(report)])
        klass = CLASSES.get(code, f"exit {code}")
        tally.classes[klass] += 1
        row = klass if code in (0, 1) else f"{klass}: {reason(err)}"
        if report.exists():
            for rep in json.loads(report.read_text()).get("reports", []):
                tally.statuses.update(rep.get("counts", {}))
                if code == 1:
                    drops = [e["subject"] for e in rep["entries"] if e["status"] == "dropped"]
                    row += f" ({', '.join(drops)[:160]})"
        if out.exists():
            tally.written += 1
            fmt_ok, packer_ok, complaint = packer_check(out, scratch / "packer")
            tally.packer_ok += packer_ok
            row += f"; packer fmt {'ok' if fmt_ok else 'FAIL'}, validate {'ok' if packer_ok else 'FAIL: ' + complaint}"
            row += "; " + roundtrip(path, out, folder, tally)
        tally.rows.append(f"| `{path.name}` | {row} |")


def roundtrip(original: Path, hcl: Path, folder: Path, tally: Tally) -> str:
    """The written file back to AIB: customizers kept (type, name, order), and the templates valid."""
    back = folder / "back"
    code, err = run_aibx(["translate", str(hcl), "--to", "aib", "-o", str(back), "--allow-lossy"])
    if code not in (0, 1):
        tally.roundtrip_total += 1
        return f"round trip {CLASSES.get(code, code)}: {reason(err)}"
    want = customizers(original)
    results = sorted(back.glob("*.json")) if back.is_dir() else [back] if back.exists() else []
    results = [p for p in results if not p.name.endswith(".report.json")]
    kept_all = valid_all = True
    for result in results:
        tally.roundtrip_total += 1
        got = customizers(result)
        kept = sum(1 for w, g in zip(want, got, strict=True) if w == g) if len(got) == len(want) else 0
        tally.customizers += len(want)
        tally.customizers_kept += kept
        ok = kept == len(want)
        tally.roundtrip += ok
        kept_all &= ok
        if not ok:
            kept_all = False
        valid = aib_valid(result)
        tally.roundtrip_valid += valid
        valid_all &= valid
    if not results:
        tally.roundtrip_total += 1
        return "round trip: no template"
    return f"round trip: customizers {'kept' if kept_all else 'CHANGED'}, {'valid' if valid_all else 'INVALID'}"


# ----------------------------------------------------------------------------------------------- Packer → AIB
def packer_to_aib_corpus(corpus: Path, tally: Tally, scratch: Path) -> None:
    entries = sorted(
        p for p in (corpus / "packer").iterdir() if p.suffix == ".json" or p.is_dir() or p.name.endswith(".pkr.hcl")
    )
    for path in entries:
        tally.total += 1
        worst = 0
        rows: list[str] = []
        for i, (only, variables) in enumerate(RUNS.get(path.name, [([], [])])):
            out = scratch / f"{path.name}-{i}"
            argv = ["translate", str(path), "--to", "aib", "-o", str(out) + "/", "--report-json", str(out) + ".json"]
            argv += [a for v in variables for a in ("--var", v)] + [a for o in only for a in ("--only", o)]
            code, err = run_aibx(argv)
            worst = max(worst, code if code != 70 else 99)
            produced = sorted(p for p in out.glob("*.json") if not p.name.endswith(".report.json"))
            tally.templates += len(produced)
            valid = sum(aib_valid(p) for p in produced)
            tally.valid += valid
            if Path(str(out) + ".json").exists():
                for rep in json.loads(Path(str(out) + ".json").read_text()).get("reports", []):
                    tally.statuses.update(rep.get("counts", {}))
            if code in (0, 1):
                rows.append(f"{len(produced)} template(s), {valid} valid")
            else:
                rows.append(reason(err))
        klass = CLASSES.get(70 if worst == 99 else worst, f"exit {worst}")
        tally.classes[klass] += 1
        tally.rows.append(f"| `{path.name}` | {klass} | {'; '.join(rows)} |")


def pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f} %)" if d else "0/0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default="/work/shared/corpus")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    aib, packer = Tally(), Tally()
    with tempfile.TemporaryDirectory() as scratch:
        if (corpus / "aib").is_dir():
            aib_to_packer_corpus(corpus, aib, Path(scratch) / "aib")
        if (corpus / "packer").is_dir():
            (Path(scratch) / "packer").mkdir()
            packer_to_aib_corpus(corpus, packer, Path(scratch) / "packer")

    def classes(t: Tally) -> str:
        return ", ".join(f"{t.classes[c]} {c}" for c in CLASSES.values())

    def statuses(t: Tally) -> str:
        return ", ".join(f"{t.statuses[s]} {s}" for s in ("mapped", "approximated", "dropped", "not-applicable"))

    lines = [
        "## translate",
        "",
        "Produced by `scripts/corpus_translate.py` (`aibx translate` as a user runs it; Packer 1.6.6 for the checks).",
        "",
        f"**AIB → Packer**, {aib.total} templates: {classes(aib)}. Complete: {pct(aib.classes['complete'], aib.total)}."
        f" Written files accepted by `packer validate`: {pct(aib.packer_ok, aib.written)}. Report entries: "
        f"{statuses(aib)}.",
        "",
        f"**Round trip** AIB → Packer → AIB: customizers kept (type, name, order) in "
        f"{pct(aib.roundtrip, aib.roundtrip_total)} templates, {pct(aib.customizers_kept, aib.customizers)} "
        f"customizers; valid for `aibx validate`: {pct(aib.roundtrip_valid, aib.roundtrip_total)}.",
        "",
        "| template | result |",
        "|---|---|",
        *aib.rows,
        "",
        f"**Packer → AIB**, {packer.total} configurations: {classes(packer)}. {packer.templates} AIB templates "
        f"written, {packer.valid} valid for `aibx validate`. Report entries: {statuses(packer)}.",
        "",
        "| configuration | class | result |",
        "|---|---|---|",
        *packer.rows,
    ]
    print("\n".join(lines))
    goals = (
        aib.classes["internal error"] == 0
        and packer.classes["internal error"] == 0
        and aib.classes["complete"] >= 0.8 * aib.total
        and aib.packer_ok >= 0.9 * aib.written
        and aib.roundtrip == aib.roundtrip_total
    )
    return 0 if goals else 1


if __name__ == "__main__":
    sys.exit(main())
