"""``aibx translate`` as a user runs it: outputs, reports, exit codes, and bad input without tracebacks."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aibx.cli import main
from tests.translate_cases import SECURE_OBJECT, SECURE_VALUES, TRANSLATE, secure_deployment

AIB = TRANSLATE / "aib"
PACKER = TRANSLATE / "packer"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["translate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_aib_to_packer_writes_the_file_and_the_reports(capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "linux.pkr.hcl"
    report = tmp_path / "report.json"
    code, out, err = run(
        capsys, str(AIB / "linux-platform.json"), "--to", "packer", "-o", str(out_file), "--report-json", str(report)
    )
    # the template-resource tags have no place in Packer, but change neither the image nor the build: not
    # applicable, and the translation is complete (issue 10, class 7)
    assert code == 0, err
    assert out == ""
    assert out_file.read_text().startswith("packer {")
    assert "not-applicable tags" in err and "complete" in err and "--allow-lossy" not in err
    data = json.loads(report.read_text())
    assert data["lossy"] is False and data["exitCode"] == 0
    [rep] = data["reports"]
    assert rep["output"] == str(out_file)
    assert rep["counts"]["not-applicable"] == 1 and rep["counts"]["dropped"] == 0
    not_applicable = [e for e in rep["entries"] if e["status"] == "not-applicable"]
    assert not_applicable == [
        {
            "status": "not-applicable",
            "subject": "tags",
            "detail": "tags of the image-template resource (metadata, not part of the image or the build): Packer "
            "has no template resource",
            "file": str(AIB / "linux-platform.json"),
            "line": 6,
            "column": 11,
        }
    ]
    assert "SECRETSIGNATURE" not in report.read_text() + err


def test_complete_translation_to_stdout(capsys) -> None:
    code, out, err = run(capsys, str(AIB / "linux-managed-image.json"), "--to", "packer")
    assert code == 0, err
    assert out.startswith("packer {") and 'source "azure-arm" "from-managed-image"' in out
    assert "complete" in err


def test_packer_to_aib_with_uploads(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, _out, err = run(
        capsys,
        str(PACKER / "linux-single"),
        "--to",
        "aib",
        "-o",
        f"{out_dir}/",
        "--upload-base-uri",
        "https://acct.blob.core.windows.net/aib",
        "--allow-lossy",
    )
    assert code == 0, err
    template = json.loads((out_dir / "web.azure-arm.web.json").read_text())
    files = [s for s in template["properties"]["customize"] if s["type"] == "File"]
    assert files
    for step in files:
        name = step["sourceUri"].removeprefix("https://acct.blob.core.windows.net/aib/")
        published = out_dir / "upload" / name
        assert hashlib.sha256(published.read_bytes()).hexdigest() == step["sha256Checksum"]
    assert "to publish under https://acct.blob.core.windows.net/aib written to" in err


def test_arm_output_validates(capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "deploy.json"
    code, _out, err = run(
        capsys, str(PACKER / "multi-source"), "--to", "aib", "--only", "*.noble", "--arm", "-o", str(out_file)
    )
    assert code == 0, err
    assert main(["validate", str(out_file), "-p", "identityId=/subscriptions/s/resourceGroups/r/providers/"
                 "Microsoft.ManagedIdentity/userAssignedIdentities/i"]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([str(PACKER / "multi-source"), "--to", "aib"], "write them with -o DIR"),
        ([str(PACKER / "multi-source"), "--to", "aib", "--only", "nothing.*"], "no build source matching"),
        ([str(AIB / "linux-vhd.json"), "--to", "aib"], "an AIB template translates with --to packer"),
        ([str(PACKER / "linux-single"), "--to", "packer"], "translate it with --to aib"),
        ([str(AIB / "linux-vhd.json"), "--to", "packer", "--var", "a=b"], "apply to --to aib"),
        ([str(PACKER / "multi-source"), "--to", "aib", "--api-version", "2099-01-01"], "known are"),
        ([str(PACKER / "multi-source"), "--to", "aib", "--var", "nope=1"], 'declares no variable "nope"'),
        (["/nonexistent/x.pkr.hcl", "--to", "aib"], "no such file"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(capsys, argv: list[str], message: str) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_what_aib_would_reject_is_shown_and_translated_anyway(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "type": "Microsoft.VirtualMachineImages/imageTemplates",
                "apiVersion": "2024-02-01",
                "location": "x",
                "properties": {
                    "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "o", "sku": "s"},
                    "customize": [{"type": "Shell", "inline": ["a"], "scriptUri": "https://x/y"}],
                    "distribute": [{"type": "VHD"}],
                },
            },
            indent=1,
        )
    )
    code, out, err = run(capsys, str(bad), "--to", "packer")
    assert code == 1 and out.startswith("packer {")  # the ambiguous customizer is dropped: lossy
    assert re.search(r"bad\.json:\d+:\d+: warning\[AIB010\] properties\.customize\[0\]", err)
    assert "warning[AIB054]" in err and "AIB would reject the template (" in err
    assert "both inline and scriptUri" in err


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbage", b"build {", b'{"builders": 5}', b"[]", b'source "azure-arm" {}'],
)
def test_garbage_never_shows_a_traceback(tmp_path: Path, content: bytes) -> None:
    for name in ("input.pkr.hcl", "input.json"):
        path = tmp_path / name
        path.write_bytes(content)
        for to in ("aib", "packer"):
            result = subprocess.run(
                [sys.executable, "-m", "aibx", "translate", str(path), "--to", to],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 2, (name, to, result.stderr)
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr
            assert str(path) in result.stderr or "<input>" in result.stderr


def test_help_lists_every_option(capsys) -> None:
    code = main(["translate", "--help"])
    out = capsys.readouterr().out
    assert code == 0
    for option in ("--to", "--var", "--var-file", "--only", "--upload-base-uri", "--api-version", "--arm",
                   "--allow-lossy", "--report-json", "--parameters", "--resource"):  # fmt: skip
        assert option in out


def test_a_secure_parameter_stays_secret_there_and_back(capsys, tmp_path: Path) -> None:
    """AIB (secureString) → Packer (a sensitive variable) → AIB: with --arm a secureString parameter again; bare,
    a placeholder and exit 1 (lossy), exit 0 with --allow-lossy; the value is in no file and no report."""
    template = secure_deployment(tmp_path)
    hcl = tmp_path / "packer" / "sec.pkr.hcl"
    params = [f"-p{k}={v}" for k, v in SECURE_VALUES.items()] + ["-pcreds=" + json.dumps(SECURE_OBJECT)]
    code, _out, err = run(capsys, str(template), "--to", "packer", "-o", str(hcl), *params)
    assert code == 0, err
    assert err.count("never written: var.") == 3
    given = [f"--var={k}={v}" for k, v in SECURE_VALUES.items()] + [f"--var=creds_token={SECURE_OBJECT['token']}"]
    arm, bare = tmp_path / "arm.json", tmp_path / "bare.json"
    code, _out, err = run(capsys, str(hcl), "--to", "aib", "--arm", "-o", str(arm), *given)
    assert code == 0, err
    parameters = json.loads(arm.read_text())["parameters"]
    assert {n: p["type"] for n, p in parameters.items() if n in ("adminPassword", "sasToken", "creds_token")} == {
        "adminPassword": "secureString",
        "sasToken": "secureString",
        "creds_token": "secureString",
    }
    code, _out, err = run(capsys, str(hcl), "--to", "aib", "-o", str(bare), *given)
    assert code == 1 and "pass --allow-lossy" in err
    assert err.count("dropped      variable") == 3
    code, _out, err = run(capsys, str(hcl), "--to", "aib", "-o", str(bare), "--allow-lossy", *given)
    assert code == 0, err
    inline = json.loads(bare.read_text())["properties"]["customize"][0]["inline"]
    assert inline == [
        "echo <adminPassword> | passwd --stdin builder",
        "<adminPassword>",
        'export TOKEN="<creds_token>"',
    ]
    for path in (hcl, arm, bare):
        assert "s3cr3t" not in path.read_text(), path
