#!/usr/bin/env python3
"""Run `aibx validate` over a corpus of real AIB templates and summarise the verdicts (a development tool).

Each template is checked by a separate `aibx validate --format json` process, exactly as a user would run it,
so a traceback or an unexpected exit status cannot hide. The summary is a Markdown table: one row per template
with its verdict, apiVersion, operating system and the codes reported, then the totals per code.

    python scripts/corpus_validate.py                          # shared/corpus/aib beside the checkout
    python scripts/corpus_validate.py PATH... [-- AIBX-OPTIONS]

Every template is counted in the corpus (the whole folder, recursively); the summary then groups the verdicts by
the issue-10 classes the diagnostics belong to (API version history, service-wide rules, later-version fields,
nested deployments, unknown values, input that is not a template), so a change shows which class moved.

Exit status: 0 when every run ended with exit status 0 or 2 and nothing on stderr, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


def default_corpus() -> Path:
    """shared/corpus/aib beside the checkout (or beside the folder of worktrees), or $AIBX_CORPUS."""
    if os.environ.get("AIBX_CORPUS"):
        return Path(os.environ["AIBX_CORPUS"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "corpus" / "aib"
        if candidate.is_dir():
            return candidate
    return Path("shared/corpus/aib")


def templates(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        patterns = ("*.json", "*.bicep", "*.bicepparam")
        out += sorted(f for pattern in patterns for f in p.rglob(pattern)) if p.is_dir() else [p]
    return out


# the class of a verdict, from its diagnostics: the first class whose test matches
CLASSES: list[tuple[str, str]] = [
    ("not a template (AIB001-AIB003)", r"AIB00[123]"),
    ("service-wide rule (AIB035, AIB036)", r"AIB03[56]"),
    ("apiVersion history (AIB058)", r"AIB058"),
    ("other errors", r".*"),
]


def classify(report: dict) -> str:
    """The class of one verdict: valid (clean, or warnings only), or the class of its first error."""
    errors = [d["code"] for d in report["diagnostics"] if d["severity"] == "error"]
    if not errors:
        return "valid, warnings only" if report["diagnostics"] else "valid, clean"
    for name, pattern in CLASSES:
        if any(re.fullmatch(pattern, code) for code in errors):
            return "invalid: " + name
    return "invalid: other errors"


def features(report: dict) -> list[str]:
    """What of the issue-10 work the verdict used: nested deployments, unknown values, later-version fields."""
    out = []
    if any(".properties.template." in (t.get("resource") or "") for t in report["templates"]):
        out.append("nested deployment")
    if any(d["code"] == "AIB005" for d in report["diagnostics"]):
        out.append("unknown values")
    if any(d["code"] == "AIB058" and d["severity"] == "warning" for d in report["diagnostics"]):
        out.append("later-version field (warning)")
    return out


def validate(path: Path, extra: list[str]) -> tuple[int, dict | None, str, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aibx", "validate", str(path), "--format", "json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    return proc.returncode, report, proc.stderr, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, default=[default_corpus()], help="templates or folders")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:split])
    extra = argv[split + 1 :]  # after --: options for aibx validate
    files = templates(args.paths)
    if not files:
        print(f"no templates under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1

    rows = []
    classes: Counter[str] = Counter()
    used: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    failures = []
    slowest = 0.0
    for path in files:
        code, report, stderr, elapsed = validate(path, extra)
        slowest = max(slowest, elapsed)
        if code not in (0, 2) or stderr or report is None:
            failures.append(f"{path.name}: exit {code}, stderr: {stderr.strip()[:300]!r}")
            rows.append((path.name, f"**crash (exit {code})**", "", "", "", ""))
            continue
        classes[classify(report)] += 1
        used.update(features(report))
        codes = Counter(d["code"] for d in report["diagnostics"])
        totals.update(codes)
        errors, warnings = report["summary"]["errors"], report["summary"]["warnings"]
        verdict = "valid" if report["valid"] else "**invalid**"
        tpl = report["templates"][0] if report["templates"] else {}
        listed = ", ".join(f"{c}×{n}" if n > 1 else c for c, n in sorted(codes.items()))
        rows.append(
            (path.name, verdict, tpl.get("apiVersion", ""), tpl.get("os", ""), f"{errors} / {warnings}", listed)
        )

    # names share the repository prefix in the corpus (Azure_azvmimagebuilder_...): say it once
    names = sorted(r[0] for r in rows)
    shared = next((i for i, (a, b) in enumerate(zip(names[0], names[-1], strict=False)) if a != b), len(names[0]))
    prefix = names[0][:shared] if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind("_") + 1]
    print(f"| template{f' (`{prefix}…`)' if prefix else ''} | verdict | checked as | OS | errors / warnings | codes |")
    print("|---|---|---|---|---|---|")
    for name, *rest in rows:
        print("| " + " | ".join([name[len(prefix) :], *rest]) + " |")
    valid = sum(1 for r in rows if r[1] == "valid")
    print()
    print(
        f"{len(rows)} templates: {valid} valid, {len(rows) - valid - len(failures)} invalid, "
        f"{len(failures)} crashed. Slowest run {slowest:.2f} s."
    )
    print()
    print("| verdict, by class | templates |")
    print("|---|---|")
    for name, n in sorted(classes.items()):
        print(f"| {name} | {n} |")
    if failures:
        print(f"| internal error (crash) | {len(failures)} |")
    for name, n in sorted(used.items()):
        print(f"| (used: {name}) | {n} |")
    print()
    print("| code | count |")
    print("|---|---|")
    for code, n in sorted(totals.items()):
        print(f"| {code} | {n} |")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
