"""The diagnostics aibx translate prints for bad input, exactly (they are docs/diagnostics.md's examples)."""

from __future__ import annotations

from tests.translate_cases import TRANSLATE, diagnostic_lines


def test_translate_diagnostics_golden() -> None:
    expected = (TRANSLATE / "golden" / "diagnostics.txt").read_text(encoding="utf-8")
    assert diagnostic_lines() == expected, "run scripts/update_translate_golden.py and review the diff"


def test_every_translation_code_has_an_example() -> None:
    text = (TRANSLATE / "golden" / "diagnostics.txt").read_text(encoding="utf-8")
    for code in ("AIB072", "AIB073", "AIB074", "AIB075", "AIB076"):
        assert f"[{code}]" in text
