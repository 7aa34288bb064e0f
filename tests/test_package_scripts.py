"""Static checks of the PowerShell shipped as package data (aibx/data/*.ps1): encoding, line endings, and a
parse with tree-sitter's PowerShell grammar (PowerShell itself cannot be installed here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aibx import powershell as ps
from aibx.engine.transports.winrm import DOWNLOAD_SCRIPT, UPLOAD_SCRIPT
from tests.support.powershell_parse import parse_errors

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "aibx" / "data"
# AIB's default Sysprep script, kept verbatim: ASCII without a BOM, as AIB's documentation has it
VERBATIM = {"DeprovisioningScript.ps1"}
OURS = sorted(p.name for p in DATA.glob("*.ps1") if p.name not in VERBATIM)


def test_scripts_found() -> None:
    assert set(OURS) >= {"Invoke-AibxScript.ps1", "Install-AibxWindowsUpdates.ps1", UPLOAD_SCRIPT, DOWNLOAD_SCRIPT}


@pytest.mark.parametrize("name", OURS)
def test_utf8_with_bom_and_crlf(name: str) -> None:
    data = (DATA / name).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "Windows PowerShell 5.1 needs the BOM to read UTF-8"
    data.decode("utf-8")
    body = data.replace(b"\r\n", b"")
    assert b"\n" not in body and b"\r" not in body, "CRLF line endings only"
    assert data.endswith(b"\r\n")
    assert b"\t" not in data


def test_verbatim_script_is_ascii_crlf() -> None:
    data = (DATA / "DeprovisioningScript.ps1").read_bytes()
    data.decode("ascii")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_git_keeps_the_bytes() -> None:
    """.gitattributes must stop git from converting line endings of the .ps1 files."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "check-attr", "text", "eol", "--", "aibx/data/Invoke-AibxScript.ps1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    assert "text: unset" in out.stdout


def test_the_parser_catches_errors() -> None:
    assert parse_errors("if ($x -eq 1 {\r\n  Write-Output 'a'\r\n}\r\n")
    assert parse_errors("$a = @(1, 2\r\n")
    assert parse_errors("Write-Output 'unterminated\r\n")
    assert not parse_errors("if ($x -eq 1) { Write-Output 'a' }\r\n")


@pytest.mark.parametrize("name", OURS)
def test_parses(name: str) -> None:
    assert parse_errors(ps.package_script_text(name)) == []


@pytest.mark.parametrize(("name", "values"), [(UPLOAD_SCRIPT, {"sha256": "0" * 64}), (DOWNLOAD_SCRIPT, {})])
def test_compacted_transfer_scripts_parse_and_fit(name: str, values: dict[str, str]) -> None:
    """The upload and download scripts travel as -EncodedCommand: compacted, they parse and fit cmd.exe's
    8191-character limit even with a 240-character path."""
    script = ps.fill(ps.compact(ps.package_script_text(name)), path="C:\\" + "x" * 240, **values)
    assert parse_errors(script) == []
    assert len(ps.encoded_command_line(script)) <= ps.MAX_COMMAND_LINE


def test_generated_scripts_parse() -> None:
    from aibx.provisioners.windows_update import invocation_script

    text = invocation_script(
        "C:\\Windows\\Temp\\u.ps1",
        "IsInstalled=0 and Type='Software'",
        ("exclude:$_.Title -like '*Preview*'", "include:$true"),
        5,
    )
    assert parse_errors(text) == []


def test_deprovisioning_scripts_parse() -> None:
    """The launcher of the Windows deprovision step and the Sysprep diagnostics shown when it is cut short."""
    from aibx.provisioners.deprovision import SYSPREP_DIAGNOSTICS, windows_launcher

    launcher = windows_launcher("c:\\it's\\DeprovisioningScript.ps1").decode("utf-8").removeprefix(ps.BOM)
    assert parse_errors(launcher) == []
    assert "& 'c:\\it''s\\DeprovisioningScript.ps1'" in launcher
    assert parse_errors(SYSPREP_DIAGNOSTICS) == []
    assert len(ps.encoded_command_line(SYSPREP_DIAGNOSTICS)) <= ps.MAX_COMMAND_LINE
