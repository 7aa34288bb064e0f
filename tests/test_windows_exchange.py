"""Compiled Windows steps carried out over WinRM against the protocol server: what reaches the "VM" is exactly
what the plan says (files byte for byte, command lines verbatim), exit codes are judged by validExitCodes, and
nothing is left behind. The server cannot run PowerShell, so the runner script's part is played by handlers.

``apply()`` below is test glue that walks a StepPlan's Upload/Exec actions in order; the real runner (issue 4/5)
adds events, restarts and retries on top.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

import pytest

from aibx import powershell as ps
from aibx.engine.transports.base import ConnectError, ConnectionLost
from aibx.engine.transports.winrm import WinRMOptions, WinRMTransport
from aibx.plan import Exec, StepPlan, Upload, WindowsUpdate
from aibx.provisioners import windows_update as wu
from tests.support.windows_plans import compiled, template_with
from tests.support.winrm_fixtures import PASSWORD
from tests.support.winrm_server import RemoteCommand, Reply, WinRMHost


@dataclass
class Outcome:
    ok: bool = True
    codes: list[int] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


def transport(host: WinRMHost) -> WinRMTransport:
    return WinRMTransport.from_url(
        f"winrm://aibx@127.0.0.1:{host.port}",
        WinRMOptions(password_env="P", receive_timeout=1, read_timeout=5),
        environ={"P": PASSWORD},
    )


async def apply(t: WinRMTransport, plan: StepPlan) -> Outcome:
    assert not plan.blocked, plan.blocked
    outcome = Outcome()

    def collect(stream: str, data: bytes) -> None:
        if stream == "stdout":
            outcome.stdout += data.decode()
        else:
            outcome.stderr += data.decode()

    try:
        for action in plan.actions:
            if isinstance(action, Upload):
                assert action.content.data is not None
                await t.put(action.content.data, action.remote_path)
            elif isinstance(action, Exec):
                code = await t.run(action.command, on_output=collect)
                outcome.codes.append(code)
                if code not in action.valid_exit_codes:
                    outcome.ok = False
                    break
    finally:
        for action in plan.cleanup:
            assert isinstance(action, Exec)
            await t.run(action.command)
    return outcome


def emulate_cleanup(cmd: RemoteCommand) -> int:
    """The cleanup script: Remove-Item of its quoted paths."""
    line = next(ln for ln in (cmd.script or "").split("\n") if ln.startswith("Remove-Item"))
    for path in re.findall(r"'((?:[^']|'')*)'", line):
        cmd.host.files.pop(path.replace("''", "'").lower(), None)
    return 0


def runner_handler(exit_code: int, stdout: str = "", stderr: str = ""):
    """Plays Invoke-AibxScript.ps1: checks its files were uploaded first, then prints and exits."""

    def handle(cmd: RemoteCommand) -> Reply:
        m = re.search(r"-File (\S+) -ScriptPath (\S+)", cmd.command_line)
        assert m, cmd.command_line
        missing = [p for p in m.groups() if cmd.host.file(p) is None]
        if missing:
            return Reply(
                stderr=f"The argument '{missing[0]}' to the -File parameter does not exist.\r\n", exit_code=-196608
            )
        return Reply(stdout, stderr, exit_code)

    return handle


def scripted_host(host: WinRMHost, runner) -> WinRMHost:
    host.on("-File C:\\Windows\\Temp\\aibx-", runner)
    host.on("Remove-Item -Force -LiteralPath", emulate_cleanup)
    return host


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connected(host: WinRMHost, plan: StepPlan) -> Outcome:
    t = transport(host)
    await t.connect()
    try:
        return await apply(t, plan)
    finally:
        await t.close()


def test_inline_powershell_reaches_the_vm_verbatim(winrm_host: WinRMHost) -> None:
    plan = compiled(
        template_with(
            [{"type": "PowerShell", "inline": ["Write-Output 'Zoë'", "exit 3010"], "validExitCodes": ["0", "3010"]}]
        )
    )
    scripted_host(winrm_host, runner_handler(3010, "Zoë\r\n"))
    outcome = run(connected(winrm_host, plan))
    assert outcome == Outcome(True, [3010], "Zoë\r\n", "")
    commands = [c.command_line for c in winrm_host.commands]
    uploads, run_cmd, cleanup = commands[:2], commands[2], commands[3]
    assert all("-EncodedCommand" in u for u in uploads)
    assert run_cmd == plan.actions[2].command  # type: ignore[union-attr]
    assert cleanup == plan.cleanup[0].command  # type: ignore[union-attr]
    # what was uploaded is the plan's bytes: BOM, CRLF, the runner from package data
    sent = {c.script and re.search(r"\$path = '([^']*)'", c.script).group(1): c for c in winrm_host.commands[:2]}  # type: ignore[union-attr]
    assert set(sent) == {r"C:\Windows\Temp\aibx-ps-0001.ps1", r"C:\Windows\Temp\aibx-ps-0001-run.ps1"}
    # nothing left behind
    assert not [p for p in winrm_host.files if "aibx-" in p]


def test_exit_code_outside_valid_codes_fails_with_stderr(winrm_host: WinRMHost) -> None:
    plan = compiled(template_with([{"type": "PowerShell", "inline": ["throw 'disk full'"]}]))
    scripted_host(winrm_host, runner_handler(1, "", "disk full\r\nAt C:\\Windows\\Temp\\aibx-ps-0001.ps1:1 char:1\r\n"))
    outcome = run(connected(winrm_host, plan))
    assert not outcome.ok and outcome.codes == [1] and "disk full" in outcome.stderr
    assert not [p for p in winrm_host.files if "aibx-" in p]  # cleaned up after a failure too


@pytest.mark.parametrize(
    ("flags", "run_as"), [({"runElevated": True}, "User"), ({"runElevated": True, "runAsSystem": True}, "System")]
)
def test_elevated_runs_through_the_wrapper(winrm_host: WinRMHost, flags: dict, run_as: str) -> None:
    plan = compiled(template_with([{"type": "PowerShell", "inline": ["whoami"], **flags}]))
    identity = "nt authority\\system" if run_as == "System" else "win-aibx\\aibx"
    scripted_host(winrm_host, runner_handler(0, identity + "\r\n"))
    outcome = run(connected(winrm_host, plan))
    assert outcome.ok and outcome.stdout == identity + "\r\n"
    run_cmd = winrm_host.commands[2].command_line
    assert run_cmd.endswith(f"-RunAs {run_as} -TaskName aibx-ps-0001 -TimeoutSeconds 14400")
    cleanup = winrm_host.commands[3].script or ""
    assert "DeleteTask('aibx-ps-0001', 0)" in cleanup


def round_output(status: str, installed: list[str], reboot: bool) -> str:
    result = {
        "status": status,
        "found": len(installed),
        "selected": len(installed),
        "skipped": 0,
        "installed": len(installed),
        "failed": 0,
        "rebootRequired": reboot,
        "more": False,
        "updates": [
            {"id": f"id-{kb}", "kb": kb, "title": f"Update {kb}", "result": "installed", "hresult": ""}
            for kb in installed
        ],
        "message": f"installed {len(installed)}" if installed else "no applicable updates left",
    }
    return "".join(f"aibx-wu:   install  {kb}\r\n" for kb in installed) + f"AIBX-WU-RESULT {json.dumps(result)}\r\n"


def test_update_loop_found_restart_none_left(winrm_host: WinRMHost) -> None:
    """Round 1 installs two updates and needs a restart; after it, round 2 installs one more; round 3 finds
    nothing. The loop is driven by next_move() over the real WinRM exchange, the restart by shutdown /r."""
    plan = compiled(template_with([{"type": "WindowsUpdate"}]))
    action = plan.actions[-1]
    assert isinstance(action, WindowsUpdate)
    per_boot_round = {
        1: [("reboot-required", ["KB1", "KB2"], True)],
        2: [("installed", ["KB3"], False), ("none", [], False)],
    }

    def update_round(cmd: RemoteCommand) -> Reply:
        assert cmd.command_line == action.command
        status, kbs, reboot = per_boot_round[cmd.host.boot_count].pop(0)
        return Reply(round_output(status, kbs, reboot))

    scripted_host(winrm_host, update_round)

    async def loop() -> tuple[list[wu.RoundResult | None], wu.Move, list[str]]:
        t = transport(winrm_host)
        await t.connect()
        boots = [await t.boot_identity()]
        for upload in plan.actions[:-1]:
            assert isinstance(upload, Upload) and upload.content.data is not None
            await t.put(upload.content.data, upload.remote_path)
        rounds: list[wu.RoundResult | None] = []
        while True:
            out = bytearray()

            def keep_stdout(stream: str, chunk: bytes, out: bytearray = out) -> None:
                if stream == "stdout":
                    out.extend(chunk)

            code = await t.run(action.command, on_output=keep_stdout)
            assert code == 0
            rounds.append(wu.parse_round_output(out.decode()))
            move = wu.next_move(rounds, action.max_rounds)
            if move.action == "restart":
                assert await t.run('shutdown /r /f /t 0 /c "aibx windows update"') == 0
                with pytest.raises(ConnectionLost):
                    for _ in range(500):
                        await t.run("hostname")
                for _ in range(200):
                    try:
                        await t.connect()
                        break
                    except ConnectError:
                        await asyncio.sleep(0.02)
                boots.append(await t.boot_identity())
            elif move.action != "again":
                break
        await t.run(plan.cleanup[0].command)  # type: ignore[union-attr]
        await t.close()
        return rounds, move, boots

    rounds, move, boots = run(loop())
    assert move == wu.Move("done", "no applicable updates left")
    assert [r.status for r in rounds if r] == ["reboot-required", "installed", "none"]
    assert rounds[0] is not None and rounds[0].summary(1) == (
        "round 1: found 2, selected 2, skipped 0, installed 2, failed 0; restart required"
    )
    assert len(set(boots)) == 2  # one restart, confirmed by a new boot time
    assert not [p for p in winrm_host.files if "aibx-" in p]
    uploaded = [c for c in winrm_host.commands if c.script and "aibx: receive a file" in c.script]
    assert len(uploaded) == 3  # the scripts went up once, not once per round


def test_invocation_script_quotes_survive_the_upload(winrm_host: WinRMHost) -> None:
    filters = ["exclude:$_.Title -like '*Preview*'", "include:$true"]
    plan = compiled(template_with([{"type": "WindowsUpdate", "filters": filters, "searchCriteria": "Type='Software'"}]))
    scripted_host(winrm_host, runner_handler(0))
    run(connected(winrm_host, StepPlan(plan.name, plan.kind, plan.phase, actions=plan.actions[:-1])))
    data = winrm_host.file(r"C:\Windows\Temp\aibx-wu-0001.ps1")
    assert data is not None and data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "-SearchCriteria 'Type=''Software'''" in text
    assert ps.quote(filters[0]) in text
