"""PowerShell, WindowsRestart and WindowsUpdate compile into the exact actions checked in as golden files
(fixtures/golden/windows/); run with AIBX_UPDATE_GOLDEN=1 to rewrite them after an intended change."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from aibx import powershell as ps
from aibx.plan import Content, Exec, Restart, StepPlan, Upload, WindowsUpdate
from aibx.provisioners import windows_update as wu
from tests.support.windows_plans import compiled, template_from, template_with

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "fixtures" / "windows" / "customizers.json"
GOLDEN = ROOT / "fixtures" / "golden" / "windows"
PACKAGE_SCRIPTS = {
    hashlib.sha256(ps.package_script_bytes(n)).hexdigest(): n
    for n in ("Invoke-AibxScript.ps1", "Install-AibxWindowsUpdates.ps1")
}


# ----------------------------------------------------------------------------------------------- rendering
def describe_content(content: Content) -> list[str]:
    if content.data is None:
        return [f"  content: {content.describe()}"]
    digest = hashlib.sha256(content.data).hexdigest()
    if digest in PACKAGE_SCRIPTS:
        return [f"  content: aibx/data/{PACKAGE_SCRIPTS[digest]} ({len(content.data)} bytes, sha256 {digest})"]
    data = content.data
    facts = ["UTF-8 with BOM" if data.startswith(b"\xef\xbb\xbf") else "UTF-8"]
    facts.append("CRLF" if b"\r\n" in data else "LF")
    text = data.decode("utf-8").removeprefix(ps.BOM).replace("\r\n", "\n")
    return [f"  content ({', '.join(facts)}):", *(f"  | {line}" for line in text.rstrip("\n").split("\n"))]


def describe_command(label: str, command: str) -> list[str]:
    lines = [f"  {label}: {command}"]
    m = re.search(r"-EncodedCommand (\S+)", command)
    if m:
        lines += ["  decoded:", *(f"  | {line}" for line in ps.decode_command(m.group(1)).split("\n"))]
    return lines


def render(plan: StepPlan) -> str:
    out = [f"step: {plan.name} ({plan.kind}, {plan.phase})"]
    out += [f"blocked: {b}" for b in plan.blocked]
    for group, actions in (("action", plan.actions), ("cleanup", plan.cleanup)):
        for action in actions:
            if isinstance(action, Upload):
                out.append(f"{group}: Upload {action.remote_path}" + (f" mode {action.mode:o}" if action.mode else ""))
                out += describe_content(action.content)
            elif isinstance(action, Exec):
                out.append(f"{group}: Exec ({action.description})")
                out += describe_command("command", action.command)
                out.append(f"  valid exit codes: {list(action.valid_exit_codes)}")
            elif isinstance(action, Restart):
                out.append(f"{group}: Restart ({action.description})")
                out.append(f"  command: {action.command}")
                out.append(f"  check command: {action.check_command}")
                out.append(f"  timeout: {action.timeout_seconds:g} s")
            elif isinstance(action, WindowsUpdate):
                out.append(f"{group}: WindowsUpdate ({action.description})")
                out.append(f"  search criteria: {action.search_criteria}")
                out.append(f"  filters: {list(action.filters)}")
                out.append(f"  update limit: {action.update_limit}, max rounds: {action.max_rounds}")
                out += describe_command("round command", action.command)
    out += [f"note: {n}" for n in plan.notes]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------- golden files
STEPS = [s.label for s in template_from(TEMPLATE).customize]


@pytest.mark.parametrize("index", range(len(STEPS)), ids=STEPS)
def test_golden(index: int) -> None:
    tpl = template_from(TEMPLATE)
    text = render(compiled(tpl, index))
    golden = GOLDEN / f"{index + 1:02d}-{STEPS[index]}.txt"
    if os.environ.get("AIBX_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run with AIBX_UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


def test_golden_files_have_no_strays() -> None:
    expected = {f"{i + 1:02d}-{name}.txt" for i, name in enumerate(STEPS)}
    assert {p.name for p in GOLDEN.glob("*.txt")} == expected


# ----------------------------------------------------------------------------------------------- PowerShell
def test_valid_exit_codes_given_as_strings() -> None:
    tpl = template_with([{"type": "PowerShell", "inline": ["exit 3010"], "validExitCodes": ["0", "3010"]}])
    run = compiled(tpl).actions[-1]
    assert isinstance(run, Exec) and run.valid_exit_codes == (0, 3010)


def test_valid_exit_codes_replace_the_default() -> None:
    tpl = template_with([{"type": "PowerShell", "inline": ["exit 1"], "validExitCodes": [1]}])
    assert compiled(tpl).actions[-1].valid_exit_codes == (1,)  # type: ignore[union-attr]
    tpl = template_with([{"type": "PowerShell", "inline": ["Write-Output hi"]}])
    assert compiled(tpl).actions[-1].valid_exit_codes == (0,)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flags", "run_as"),
    [({}, None), ({"runElevated": True}, "User"), ({"runElevated": True, "runAsSystem": True}, "System")],
)
def test_elevation_wrapper(flags: dict, run_as: str | None) -> None:
    tpl = template_with([{"type": "PowerShell", "inline": ["whoami"], **flags}])
    plan = compiled(tpl)
    runner = plan.actions[1]
    assert isinstance(runner, Upload) and runner.content.data == ps.package_script_bytes("Invoke-AibxScript.ps1")
    command = plan.actions[-1].command  # type: ignore[union-attr]
    base = (
        r"powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File C:\Windows\Temp\aibx-ps-0001-run.ps1"
        r" -ScriptPath C:\Windows\Temp\aibx-ps-0001.ps1"
    )
    if run_as is None:
        assert command == base
    else:
        assert command == f"{base} -RunAs {run_as} -TaskName aibx-ps-0001 -TimeoutSeconds 14400"
    cleanup = ps.decode_command(plan.cleanup[0].command.split()[-1])  # type: ignore[union-attr]
    assert ("DeleteTask('aibx-ps-0001', 0)" in cleanup) == (run_as is not None)
    assert r"'C:\Windows\Temp\aibx-ps-0001.ps1'" in cleanup and r"'C:\Windows\Temp\aibx-ps-0001-run.ps1'" in cleanup
    if run_as:
        assert r"'C:\Windows\Temp\aibx-ps-0001.ps1.stderr'" in cleanup


def test_elevation_wrapper_principals() -> None:
    """The wrapper's two principals: the connecting user with S4U (no password anywhere), or SYSTEM."""
    text = ps.package_script_text("Invoke-AibxScript.ps1")
    assert "$user = 'S-1-5-18'" in text and "$logonType = 5" in text
    assert "[System.Security.Principal.WindowsIdentity]::GetCurrent().Name" in text and "$logonType = 2" in text
    assert "RegisterTaskDefinition($TaskName, $task, 6, $user, $null, $logonType)" in text
    assert "$task.Principal.RunLevel = 1" in text  # highest privileges
    # bounded waits, separate streams, cleanup in finally
    assert "$StartTimeoutSeconds" in text and "$TimeoutSeconds" in text
    assert "1>>\"' + $stdoutPath + '\" 2>>\"' + $stderrPath" in text
    assert re.search(r"finally \{\s*if \(\$registered\) \{ try \{ \$folder\.DeleteTask", text)


def test_inline_script_encoding() -> None:
    tpl = template_with([{"type": "PowerShell", "inline": ["Write-Output 'Zoë'", "exit 0"]}])
    content = compiled(tpl).actions[0].content.data  # type: ignore[union-attr]
    assert content == "\ufeffWrite-Output 'Zoë'\r\nexit 0\r\n".encode()


def test_script_uri_is_fetched_and_checked_by_aibx() -> None:
    tpl = template_with(
        [{"type": "PowerShell", "scriptUri": "https://x.test/s.ps1?sv=1&sig=SECRET", "sha256Checksum": "AB" * 32}]
    )
    content = compiled(tpl).actions[0].content  # type: ignore[union-attr]
    assert content.uri == "https://x.test/s.ps1?sv=1&sig=SECRET" and content.sha256 == "ab" * 32
    assert "SECRET" not in content.describe()


def test_powershell_on_linux_needs_pwsh() -> None:
    tpl = template_with([{"type": "PowerShell", "inline": ["$PSVersionTable"], "runElevated": True}], "Linux")
    plan = compiled(tpl)
    command = plan.actions[-1].command  # type: ignore[union-attr]
    assert command.startswith("command -v pwsh >/dev/null 2>&1 || { echo 'aibx: this PowerShell step needs pwsh")
    assert 'exit 127; }; d=/tmp/aibx-ps-0001; mkdir -m 700 "$d"' in command
    assert 'sudo -n pwsh -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "$d/run.ps1"' in command
    assert plan.actions[0].stdin.data == b"$PSVersionTable\n"  # type: ignore[union-attr]
    assert plan.on_interrupt[0].command == "rm -rf /tmp/aibx-ps-0001"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"type": "PowerShell"}, "exactly one of scriptUri and inline"),
        ({"type": "PowerShell", "inline": ["x"], "scriptUri": "https://x/y.ps1"}, "exactly one"),
        ({"type": "PowerShell", "scriptUri": "https://<storageAccount>/setup.ps1"}, "not known before deployment"),
    ],
)
def test_powershell_blocked(step: dict, reason: str) -> None:
    plan = compiled(template_with([step]))
    assert plan.blocked and reason in plan.blocked[0] and not plan.actions


# ----------------------------------------------------------------------------------------------- WindowsRestart
def test_restart_defaults() -> None:
    action = compiled(template_with([{"type": "WindowsRestart"}])).actions[0]
    assert action == Restart(
        'shutdown /r /f /t 0 /c "packer restart"', None, 300.0, description="restart, wait for a new boot"
    )


def test_restart_blocked_on_linux_and_for_bad_timeouts() -> None:
    assert compiled(template_with([{"type": "WindowsRestart"}], "Linux")).blocked
    plan = compiled(template_with([{"type": "WindowsRestart", "restartTimeout": "5 minutes"}]))
    assert "'5 minutes' is not a duration" in plan.blocked[0]


# ----------------------------------------------------------------------------------------------- WindowsUpdate
def test_update_defaults() -> None:
    plan = compiled(template_with([{"type": "WindowsUpdate"}]))
    action = plan.actions[-1]
    assert isinstance(action, WindowsUpdate)
    assert (action.search_criteria, action.filters, action.update_limit) == (
        "BrowseOnly=0 and IsInstalled=0",
        ("include:$true",),
        1000,
    )
    assert "-RunAs System" in action.command
    invocation = plan.actions[1].content.data.decode()  # type: ignore[union-attr]
    assert "-Filters @('include:$true') -UpdateLimit 1000" in invocation


def test_update_filters_are_quoted_verbatim() -> None:
    filters = ["exclude:$_.Title -like '*Preview*'", "include:$_.Title -like \u2018*KB*\u2019"]
    plan = compiled(template_with([{"type": "WindowsUpdate", "filters": filters}]))
    invocation = plan.actions[1].content.data.decode("utf-8")  # type: ignore[union-attr]
    assert (
        "@('exclude:$_.Title -like ''*Preview*''', 'include:$_.Title -like \u2018\u2018*KB*\u2019\u2019')" in invocation
    )


def test_update_with_only_exclude_filters_warns() -> None:
    plan = compiled(template_with([{"type": "WindowsUpdate", "filters": ["exclude:$_.Title -like '*Preview*'"]}]))
    assert any("no include: filter" in n for n in plan.notes)


@pytest.mark.parametrize(
    "step",
    [
        {"type": "WindowsUpdate", "filters": ["install:$true"]},
        {"type": "WindowsUpdate", "filters": ["include:($_.Title"]},
    ],
)
def test_update_blocked_on_bad_filters(step: dict) -> None:
    assert compiled(template_with([step])).blocked


def test_update_blocked_on_linux() -> None:
    assert "Windows images only" in compiled(template_with([{"type": "WindowsUpdate"}], "Linux")).blocked[0]


# ----------------------------------------------------------------------------------------------- update rounds
def round_result(status: str, installed: list[str] = (), failed: list[str] = (), **kw) -> wu.RoundResult:
    updates = [{"id": i, "kb": f"KB{i}", "title": f"Update {i}", "result": "installed"} for i in installed]
    updates += [
        {"id": i, "kb": f"KB{i}", "title": f"Update {i}", "result": "install-failed", "hresult": "0x80240016"}
        for i in failed
    ]
    return wu.RoundResult(status=status, installed=len(installed), failed=len(failed), updates=updates, **kw)


def test_round_loop_found_restart_none_left() -> None:
    rounds: list[wu.RoundResult | None] = [round_result("reboot-required", ["1", "2"], reboot_required=True)]
    assert wu.next_move(rounds).action == "restart"
    rounds.append(round_result("installed", ["3"]))
    assert wu.next_move(rounds).action == "again"
    rounds.append(round_result("none"))
    assert wu.next_move(rounds) == wu.Move("done", "no applicable updates left")


def test_round_loop_stops_on_an_update_offered_again() -> None:
    rounds = [
        round_result("reboot-required", ["1"], reboot_required=True),
        round_result("reboot-required", ["1"], reboot_required=True),
    ]
    move = wu.next_move(rounds)
    assert move.action == "fail" and "KB1 installed in an earlier round and offered again" in move.reason


def test_round_loop_is_bounded() -> None:
    rounds = [round_result("reboot-required", [str(i)], reboot_required=True) for i in range(3)]
    assert wu.next_move(rounds, max_rounds=3).action == "fail"
    assert wu.next_move(rounds, max_rounds=4).action == "restart"


def test_round_errors_and_missing_results() -> None:
    assert wu.next_move([None]).action == "fail"
    move = wu.next_move([wu.RoundResult("error", message="search failed 3 times: 0x8024402C ...")])
    assert move == wu.Move("fail", "round 1: search failed 3 times: 0x8024402C ...")


def test_parse_round_output_as_powershell_writes_it() -> None:
    stdout = (
        "aibx-wu: searching: BrowseOnly=0 and IsInstalled=0\r\n"
        "aibx-wu:   install  KB5005112 2021-08 Servicing Stack Update\r\n"
        'AIBX-WU-RESULT {"status":"reboot-required","found":3,"selected":1,"skipped":2,"installed":1,'
        '"failed":0,"rebootRequired":true,"more":false,"updates":{"id":"u-1","kb":"KB5005112",'
        '"title":"2021-08 Servicing Stack Update","result":"installed","hresult":""},"message":"installed 1"}\r\n'
    )
    result = wu.parse_round_output(stdout)
    assert result is not None
    assert (result.status, result.found, result.installed, result.reboot_required) == ("reboot-required", 3, 1, True)
    assert result.installed_ids() == {"u-1"}
    assert result.summary(2) == "round 2: found 3, selected 1, skipped 2, installed 1, failed 0; restart required"
    assert wu.parse_round_output("aibx-wu: searching\r\n") is None
    assert wu.parse_round_output("AIBX-WU-RESULT {broken\r\n") is None


def test_summary_names_failures() -> None:
    r = round_result("installed", ["1"], ["2"])
    assert r.summary(1).endswith("installed 1, failed 1 (KB2: 0x80240016)")


def test_update_script_translates_error_codes() -> None:
    text = ps.package_script_text("Install-AibxWindowsUpdates.ps1")
    assert "'80240016' = 'WU_E_INSTALL_NOT_ALLOWED: another installation is running or a restart is pending" in text
    # bounded: the search is retried a fixed number of times, never forever
    assert "for ($attempt = 1; $attempt -le $SearchAttempts; $attempt++)" in text
    assert "while" not in text.lower()


def test_round_loop_stops_when_the_pending_restart_never_clears() -> None:
    pending = wu.RoundResult("reboot-required", reboot_required=True, message="a restart was pending before the search")
    assert wu.next_move([pending]).action == "restart"
    move = wu.next_move([pending, pending])
    assert move.action == "fail" and "still pending after restarting" in move.reason
