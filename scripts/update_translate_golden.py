#!/usr/bin/env python3
"""Rewrite the translation golden files in fixtures/translate/expected/ from the current code.

Run it after an intended change to a translation, then review `git diff fixtures/translate/expected` before
committing: the diff is exactly what changed for users. The tests compare against these files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.translate_cases import (
    AIB_FIXTURES,
    PACKER_CASES,
    TRANSLATE,
    aib_to_packer_outputs,
    diagnostic_lines,
    expected_dir,
    packer_to_aib_outputs,
)


def write(folder: Path, files: dict[str, str]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return len(files)


def main() -> int:
    count = 0
    target = expected_dir("aib-to-packer")
    shutil.rmtree(target, ignore_errors=True)
    for fixture in AIB_FIXTURES:
        count += write(target, aib_to_packer_outputs(fixture))
    for case in PACKER_CASES:
        folder = expected_dir("packer-to-aib", case.name)
        shutil.rmtree(folder, ignore_errors=True)
        count += write(folder, packer_to_aib_outputs(case))
    count += write(TRANSLATE / "golden", {"diagnostics.txt": diagnostic_lines()})
    print(f"wrote {count} golden files under {expected_dir('')} and {TRANSLATE / 'golden'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
