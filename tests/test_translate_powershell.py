"""The PowerShell aibx translate writes parses, as Packer runs it: its inline lines joined with newlines (Packer
up to 1.12), and indented inside Packer 1.13+'s try block (which rules out here-strings). No PowerShell here:
tree-sitter's PowerShell grammar checks the syntax."""

from __future__ import annotations

import json

import pytest

from aibx import model
from aibx.translators import PackerInputs, idioms, read_packer
from tests.support.powershell_parse import parse_errors
from tests.translate_cases import EXPECTED


def packer_113(lines: list[str]) -> str:
    """How Packer 1.13+ wraps inline PowerShell (packer-semantics.md, powershell provisioner)."""
    body = "\n\t".join(lines)
    return (
        "$exitCode = 0\n"
        f'try {{ {body} ; $exitCode = 0 }} catch {{ Write-Error "An error occurred: $_"; $exitCode = 1 }}\n'
        "exit $exitCode\n"
    )


def generated_powershell() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for hcl in sorted((EXPECTED / "aib-to-packer").glob("windows-*.pkr.hcl")):
        config = read_packer(str(hcl), PackerInputs(env={}, variables=[]))
        for build in config.builds:
            for source in build.sources:
                for i, p in enumerate(build.provisioners(source)):
                    if p.labels == ["powershell"]:
                        out.append((f"{hcl.name} provisioner {i}", p.value("inline")))
    for path in sorted((EXPECTED / "packer-to-aib").rglob("*.json")):
        if path.name.endswith((".report.json", ".uploads.json")):
            continue
        template = json.loads(path.read_text())
        for i, step in enumerate(template["properties"]["customize"]):
            if step["type"] == "PowerShell" and "inline" in step:
                out.append((f"{path.parent.name}/{path.name} customize {i}", step["inline"]))
    tricky = "it's \u2019quoted\u2019 $env:X `n ${y} @' '@ \"q\""
    out += [
        ("write_text", idioms.windows_write_text("C:\\a b\\x.ps1", f"{tricky}\nline two\n\n", bom=True)),
        ("write_file", idioms.windows_write_file("C:\\it's.bin", bytes(range(256)))),
        ("run_script", idioms.windows_run_script("https://x.example/a'b.ps1?sig=1", "a" * 64)),
        ("fetch_file", idioms.windows_fetch_file("https://x.example/f", "C:\\it's\\f.zip", None)),
        ("stage", idioms.stage_deprovision(model.OsType.WINDOWS)),
        ("run", idioms.run_deprovision(model.OsType.WINDOWS)),
        ("env", [*idioms.powershell_env({"A": tricky}), "Write-Output $env:A"]),
    ]
    return out


CASES = generated_powershell()


def test_every_kind_is_covered() -> None:
    names = " ".join(name for name, _ in CASES)
    assert "windows-platform.pkr.hcl" in names and "windows-dir/" in names and "legacy-windows/" in names


@pytest.mark.parametrize(("name", "lines"), CASES, ids=[name for name, _ in CASES])
def test_parses_as_packer_runs_it(name: str, lines: list[str]) -> None:
    assert isinstance(lines, list) and all(isinstance(x, str) for x in lines)
    assert parse_errors("\n".join(lines) + "\n") == [], "joined with newlines"
    assert parse_errors(packer_113(lines)) == [], "inside Packer 1.13's try block"


def test_a_here_string_would_not_survive_packer_113() -> None:
    """Why windows_write_text writes one quoted string per line."""
    here = ["$a = @'", "x", "'@"]
    assert parse_errors("\n".join(here) + "\n") == []
    assert parse_errors(packer_113(here)) != []


def test_windows_write_text_keeps_the_text() -> None:
    text = "first 'line'\n\u2019second\u2019\n\nlast\n"
    lines = idioms.windows_write_text("C:\\x.txt", text)
    body = lines[1 : lines.index(")")]
    assert [idioms._ps_unquote(x) for x in body] == text.splitlines()
