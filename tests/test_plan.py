"""aibx plan: golden files of the exact commands and files, and the command's exit codes.

Update the golden files after an intended change with: AIBX_UPDATE_GOLDEN=1 pytest tests/test_plan.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aibx import __version__
from aibx.cli import build_parser
from aibx.commands.plan import Prepared, blocked_messages, prepare, render_json, render_text
from tests.support.cli import invoke

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "fixtures" / "plan" / "expected"
CASES = {
    "quickstart-generalize": ("fixtures/quickstart/hello-linux.json", ["--generalize"]),
    "sources": ("fixtures/plan/sources.json", []),
    "sources-fetch-on-target": ("fixtures/plan/sources.json", ["--fetch-on-target"]),
    "refused": ("fixtures/plan/refused.json", []),
    "windows-file": ("fixtures/plan/windows-file.json", ["--generalize"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # paths in the plan are as the user wrote them, relative to the working directory
    template, extra = CASES[case]
    args = build_parser().parse_args(["plan", template, *extra])
    prepared = prepare(args, random_name=lambda: "0123456789abcdef")
    assert isinstance(prepared, Prepared)
    # the version of aibx that wrote the document is not part of the golden file
    exit_code = 2 if blocked_messages(prepared) else 0
    document = render_json(prepared, exit_code=exit_code).replace(f'"aibx": "{__version__}"', '"aibx": "VERSION"', 1)
    for suffix, text in (("txt", render_text(prepared)), ("json", document + "\n")):
        golden = EXPECTED / f"{case}.plan.{suffix}"
        if os.environ.get("AIBX_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden.name} differs (AIBX_UPDATE_GOLDEN=1 rewrites it)"


def test_plan_shows_sas_signatures_as_stars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for extra in ([], ["--fetch-on-target"], ["--format", "json"]):
        result = invoke("plan", "fixtures/plan/sources.json", *extra)
        assert result.code == 0, result.err
        assert "c2VjcmV0LXNhcy1zaWduYXR1cmU" not in result.out


def test_plan_json_is_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke("plan", "fixtures/quickstart/hello-linux.json", "--format", "json")
    assert result.code == 0
    plan = json.loads(result.out)
    assert [s["name"] for s in plan["steps"]] == [
        "stage deprovisioning script",
        "write-build-info",
        "copy-motd",
        "check-files",
        "remove the staged deprovisioning script",
    ]
    shell = plan["steps"][1]["actions"][0]
    assert shell["type"] == "exec" and shell["stdin"]["text"].startswith("#!/bin/sh -e\n")
    assert "> /tmp/aibx-quickstart/motd.txt" in plan["steps"][2]["actions"][0]["stdin"]["text"]
    local = json.loads(invoke("plan", "fixtures/quickstart/local-file/hello-file.json", "--format", "json").out)
    assert local["steps"][2]["actions"][0]["content"]["file"] == "fixtures/quickstart/local-file/motd.txt"


def test_plan_with_steps_that_cannot_run_exits_2_with_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke("plan", "fixtures/plan/refused.json")
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if "cannot run" in line]
    assert lines == [
        "fixtures/plan/refused.json:19:7: error: properties.customize[1]: step 'needs-a-value' cannot run: "
        "scriptUri has no value: https://<storageAccount>.blob.core.windows.net/scripts/setup.sh "
        "(placeholder <storageAccount> not substituted; pass -p storageAccount=VALUE)",
        "fixtures/plan/refused.json:25:7: error: properties.customize[2]: step 'outside-tmp' cannot run: destination "
        "'/etc/motd': on Linux AIB can only write under /tmp (aibx refuses the rest unless --allow-any-destination)",
    ]
    fixed = invoke(
        "plan", "fixtures/plan/refused.json", "-p", "storageAccount=acct", "--allow-any-destination"
    )  # the placeholder given a value, and the destination allowed
    assert fixed.code == 0, fixed.err


def test_plan_of_an_invalid_template_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "Microsoft.VirtualMachineImages/imageTemplates", "properties": {"customize": 3}')
    result = invoke("plan", bad)
    assert result.code == 2 and "error[AIB002]" in result.err


def test_plan_shows_windows_restarts_and_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke("plan", "fixtures/windows/customizers.json")
    assert result.code == 0, result.err
    assert 'restart shutdown /r /f /t 0 /c "packer restart"' in result.out
    assert "search: BrowseOnly=0 and IsInstalled=0; at most 1000 updates" in result.out
