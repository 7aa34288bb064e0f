"""aibx.powershell: quoting, -EncodedCommand and package scripts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibx import powershell as ps


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ('$env:X `n "x"', "'$env:X `n \"x\"'"),  # nothing expands inside single quotes
        ("\u2018smart\u2019", "'\u2018\u2018smart\u2019\u2019'"),  # PowerShell reads these as quotes too
    ],
)
def test_quote(text: str, quoted: str) -> None:
    assert ps.quote(text) == quoted


@given(st.text())
def test_quote_round_trip(text: str) -> None:
    """Undoing PowerShell's doubling gives the text back, and no lone quote character is left inside."""
    import re

    inner = ps.quote(text)[1:-1]
    assert re.sub("([\u0027\u2018\u2019\u201a\u201b])\\1", r"\1", inner) == text
    assert not re.search(
        "(?<![\u0027\u2018\u2019\u201a\u201b])[\u0027\u2018\u2019\u201a\u201b](?![\u0027\u2018\u2019\u201a\u201b])",
        inner.replace("''", ""),
    )


@given(st.text(max_size=500))
def test_encoded_command_round_trip(script: str) -> None:
    assert ps.decode_command(ps.encode_command(script)) == script


def test_encoded_command_line_refuses_what_cmd_cannot_take() -> None:
    line = ps.encoded_command_line("Write-Output 1")
    assert line.startswith("powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ")
    with pytest.raises(ValueError, match="8191"):
        ps.encoded_command_line("x" * 4000)


def test_fill_needs_its_placeholder() -> None:
    assert ps.fill("$p = '__AIBX_PATH__'", path="C:\\a'b") == "$p = 'C:\\a''b'"
    with pytest.raises(KeyError):
        ps.fill("$p = 1", path="x")


def test_compact_keeps_the_marker_and_drops_comments() -> None:
    assert ps.compact("# aibx: marker\n# comment\n\n    $a = 1\n  # more\n$b = 2") == "# aibx: marker\n$a = 1\n$b = 2"
