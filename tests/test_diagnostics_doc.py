"""docs/diagnostics.md is generated from aibx.diagnostics.CODES and the golden files; it must not drift."""

import subprocess
import sys

from aibx.diagnostics import CODES
from tests.conftest import ROOT


def test_diagnostics_page_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_diagnostics_doc.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_code_has_a_section_with_an_example():
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    for code, (severity, title) in CODES.items():
        section = text.split(f"\n## {code}\n", 1)[1].split("\n## ", 1)[0]
        assert title in section and severity.value in section
        if not code.startswith("AIB07"):  # reserved for aibx translate
            assert f"[{code}]" in section.split("```text", 1)[1], f"{code} has no example"
