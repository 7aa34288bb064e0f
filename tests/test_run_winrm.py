"""aibx run against the WinRM protocol server (tests/support/winrm_server.py) over real HTTP and HTTPS, with a
Windows VM's side of aibx's scripts played by tests/support/winrm_windows.py: issue 6's "Done when", point by point.

The golden file fixtures/golden/winrm-run/exchange.txt holds every command of a whole Windows template's
run as the server received it (rewrite with AIBX_UPDATE_GOLDEN=1 after an intended change, and read the diff).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aibx.engine.transports import ConnectOptions, create_transport, parse_target
from aibx.engine.transports.winrm import DEFAULT_MAX_ENVELOPE_SIZE, upload_chunk_size
from tests.support.cli import RecordedRun, invoke
from tests.support.http_server import ContentServer
from tests.support.plans import WINDOWS_SOURCE
from tests.support.templates import write_template
from tests.support.winrm_exchange import render_exchange
from tests.support.winrm_fixtures import PASSWORD
from tests.support.winrm_server import RemoteCommand, Reply, TlsMaterial, WinRMHost
from tests.support.winrm_windows import DEPROVISION_PATH, ScriptRun, WindowsVm, round_line, update_rounds

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "fixtures" / "golden" / "winrm-run"
PASSWORD_VAR = "AIBX_TEST_WINRM_PASSWORD"
USER = "winadmin"  # NTLM test users are process-wide: this one (with CANARY) is only this file's
CANARY = "Canary-Pw-7f3c9e21"  # the WinRM password: it must appear nowhere aibx writes
SAS = "sig=SAS-CANARY-b1a4%2Bq%3D"  # a SAS signature in a scriptUri: likewise


@pytest.fixture
def vm(make_winrm_host: Callable[..., WinRMHost], monkeypatch: pytest.MonkeyPatch) -> WindowsVm:
    """A "Windows VM" on HTTP (NTLM with message encryption, or Basic when allowed) whose password is CANARY."""
    monkeypatch.setenv(PASSWORD_VAR, CANARY)
    host = make_winrm_host(users={USER: CANARY}, allow_unencrypted=True)
    host.restart_down_seconds = 0.3
    return WindowsVm(host)


@pytest.fixture
def https_vm(
    make_winrm_host: Callable[..., WinRMHost], winrm_tls: TlsMaterial, monkeypatch: pytest.MonkeyPatch
) -> WindowsVm:
    monkeypatch.setenv(PASSWORD_VAR, CANARY)
    # "aibx" is the client certificate's user (with the password the other WinRM tests give it)
    return WindowsVm(make_winrm_host(users={USER: CANARY, "aibx": PASSWORD}, tls=winrm_tls))


class WinRun(RecordedRun):
    """One `aibx run` against a WinRM test host."""

    def __init__(
        self,
        tmp_path: Path,
        host: WinRMHost,
        template: Path,
        *extra: str | Path,
        auth: str | None = "ntlm",
        user: str = USER,
    ) -> None:
        scheme = "winrms" if host.tls else "winrm"
        args: list[str | Path] = ["--host", f"{scheme}://{user}@127.0.0.1:{host.port}", "--password-env", PASSWORD_VAR]
        args += ["--reconnect-timeout", "30s", "--connect-timeout", "5s"]
        if auth is not None:
            args += ["--winrm-auth", auth]
        super().__init__(tmp_path, template, *args, *extra)


def windows_template(tmp_path: Path, steps: list[dict], **properties: object) -> Path:
    return write_template(tmp_path, steps, source=WINDOWS_SOURCE, **properties)


def ps_step(name: str, *lines: str, **extra: object) -> dict:
    return {"type": "PowerShell", "name": name, "inline": list(lines), **extra}


# ----------------------------------------------------------------------------------------------- a whole template
def test_a_windows_template_end_to_end(vm: WindowsVm, content_server: ContentServer, tmp_path: Path) -> None:
    """Every Windows customizer in one run over NTLM-encrypted HTTP: the exact commands (golden file), the
    elevation wrapper for runElevated and runAsSystem, validExitCodes given as strings, a scriptUri fetched and
    checked by aibx, a File checked by hash on the VM, a restart confirmed by a new boot, Windows Update rounds
    with a restart between them, Sysprep's bounded wait; nothing left behind, no secret anywhere."""
    host = vm.host
    host.add_directory("C:\\aibx-test")
    tools = b"Write-Output 'Install tools'\r\n"
    content_server.serve("/install-tools.ps1", tools)
    config = random.Random(6).randbytes(200_000)  # three WinRM Sends of file data (the same in every run)
    (tmp_path / "config.bin").write_bytes(config)

    def hello(cmd: RemoteCommand, run: ScriptRun) -> Reply:
        return Reply("hello from the VM\r\n", "a warning on stderr\r\n", 3010)

    checks: list[int] = []

    def ready(cmd: RemoteCommand) -> Reply:
        checks.append(cmd.host.boot_count)
        return Reply("ready\r\n")

    vm.on_script("Write-Output 'hello'", hello)
    vm.on_script("Install tools", Reply("tools installed\r\n"))
    vm.on_script("whoami", lambda cmd, run: Reply(run.identity + "\r\n"))
    vm.on_script(
        "-SearchCriteria",
        update_rounds(
            {
                2: [round_line("reboot-required", ["KB5031364", "KB5032198"], True)],
                3: [round_line("installed", ["KB890830"]), round_line("none")],
            }
        ),
    )
    vm.on_script("Sysprep.exe", vm.sysprep(reaches_after=0.2))
    host.on("Test-AibxReady", ready)
    uri = f"{content_server.url('/install-tools.ps1')}?sv=2022-11-02&{SAS}"
    template = windows_template(
        tmp_path,
        [
            ps_step("hello", "Write-Output 'hello'", "exit 3010", validExitCodes=["0", "3010"]),
            {
                "type": "PowerShell",
                "name": "tools",
                "scriptUri": uri,
                "sha256Checksum": hashlib.sha256(tools).hexdigest(),
            },
            ps_step("elevated", "whoami", runElevated=True),
            ps_step("system", "whoami", runElevated=True, runAsSystem=True),
            {"type": "File", "name": "config", "sourceUri": "file:config.bin", "destination": "C:\\aibx-test\\c.bin"},
            {
                "type": "WindowsRestart",
                "name": "restart",
                "restartCheckCommand": "powershell -Command Test-AibxReady",
                "restartTimeout": "1m",
            },
            {
                "type": "WindowsUpdate",
                "name": "updates",
                "filters": ["exclude:$_.Title -like '*Preview*'", "include:$true"],
                "updateLimit": 50,
            },
        ],
    )
    run = WinRun(tmp_path, host, template, "--generalize", "--yes")
    assert run.code == 0, run.result.text
    assert set(run.outcomes().values()) == {"succeeded"}
    # the exact exchange
    golden = GOLDEN / "exchange.txt"
    text = render_exchange(host.commands)
    if os.environ.get("AIBX_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs (AIBX_UPDATE_GOLDEN=1 rewrites it)"
    # what the VM saw
    assert host.file("C:\\aibx-test\\c.bin") == config
    assert [(r.run_as, r.task is not None) for r in vm.runs if "whoami" in r.text] == [("User", True), ("System", True)]
    assert vm.leftovers() == [] and len(set(vm.tasks_seen)) == 3  # two elevated steps, one update task (3 rounds)
    assert checks == [2]  # the check ran once, after the restart
    assert host.boot_count == 3  # WindowsRestart, then one restart between update rounds
    assert all(r.auth == "ntlm" and r.encrypted for r in host.requests if r.action == "Command")
    # console, log and report
    out = run.result.out
    assert "hello | hello from the VM" in out and f"elevated | WIN-AIBX\\{USER}" in out
    assert "system | nt authority\\system" in out
    assert "Windows Update round 1: found 2, selected 2, skipped 0, installed 2, failed 0; restart required" in out
    assert "Windows Update round 3: found 0, selected 0" in out
    log = run.log.read_text()
    assert "OUT   hello: hello from the VM" in log and "ERR   hello: a warning on stderr" in log
    assert run.step("hello")["exitCode"] == 3010
    rounds = run.step("updates")["windowsUpdateRounds"]
    assert [(r["round"], r["installed"], r["next"]) for r in rounds] == [
        (1, 2, "restart"),
        (2, 1, "again"),
        (3, 0, "done"),
    ]
    assert rounds[0]["updates"][0] == {
        "kb": "KB5031364",
        "title": "Update KB5031364",
        "result": "installed",
        "hresult": "",
    }
    assert run.step("updates")["reboots"] == 1 and run.report["totals"]["reboots"] == 2
    everything = run.everything()
    assert CANARY not in everything and "SAS-CANARY" not in everything
    assert CANARY not in text and "SAS-CANARY" not in text  # nor anything sent to the VM


# ----------------------------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(
    ("valid", "code", "expected"),
    [(["0", "3010"], 3010, 0), ([0, 3010], 3010, 0), (None, 0, 0), (None, 1, 1), (["0", "3010"], 5, 1), ([1], 0, 1)],
)
def test_exit_codes_against_valid_exit_codes(
    vm: WindowsVm, tmp_path: Path, valid: list | None, code: int, expected: int
) -> None:
    vm.on_script("do-it", Reply("out\r\n", "the disk is full\r\n", code))
    vm.on_script("after", Reply("after\r\n"))
    step = ps_step("do-it", "do-it") if valid is None else ps_step("do-it", "do-it", validExitCodes=valid)
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, [step, ps_step("after", "after")]))
    assert run.code == expected, run.result.text
    assert run.step("do-it")["exitCode"] == code
    if expected:
        assert run.outcomes()["after"] == "not run"
        message = run.step("do-it")["message"]
        assert f"exit code {code}" in message and "the disk is full" in message
        allowed = ", ".join(str(int(c)) for c in valid) if valid else ""
        assert (f"(allowed: {allowed})" in message) == (valid not in (None, [0]))
    assert vm.leftovers() == []


def test_an_hresult_exit_code_is_shown_in_hex(vm: WindowsVm, tmp_path: Path) -> None:
    task_failed = (
        "aibx: the scheduled task 'aibx-ps-1' (User) finished with 0x8007052E, logon failure: unknown user name "
        "or bad password\r\n"
    )
    vm.on_script("x", Reply(stderr=task_failed, exit_code=-2147023570))
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, [ps_step("x", "x", runElevated=True)]))
    assert run.code == 1
    assert run.step("x")["message"].startswith("exit code -2147023570 (0x8007052E); last lines of stderr:\n  aibx:")


def test_a_script_that_was_never_uploaded_is_a_clear_failure(vm: WindowsVm, tmp_path: Path) -> None:
    """If the runner cannot find its script, powershell.exe's own message reaches the user."""
    real = vm._run_script

    def lose_the_script(cmd: RemoteCommand) -> Reply | int:
        for path in list(vm.host.files):
            if path.endswith(".ps1") and "-run" not in path and "aibx-ps-" in path:
                vm.host.files.pop(path)
        return real(cmd)

    vm.host.rules.insert(0, (lambda c: "-ScriptPath" in c.command_line, lose_the_script))
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, [ps_step("x", "x")]))
    assert run.code == 1
    assert "to the -File parameter does not exist" in run.step("x")["message"]


# ----------------------------------------------------------------------------------------------- elevation
def test_elevated_script_whose_connection_drops_without_a_restart_is_not_run_again(
    vm: WindowsVm, tmp_path: Path
) -> None:
    """The scheduled task keeps running on the VM when WinRM drops: aibx must not start it a second time (Packer
    re-runs scripts after a communicator error). The step fails, and the clean-up still removes the task."""
    host = vm.host

    def drop_connections(cmd: RemoteCommand, run: ScriptRun) -> int:
        def bounce() -> None:
            host.stop()  # every connection reset, the shell gone ...
            host.start()  # ... but the same boot

        threading.Timer(0.2, bounce).start()
        cmd.wait_terminated(10)
        return 0

    vm.on_script("long-install", drop_connections)
    run = WinRun(tmp_path, host, windows_template(tmp_path, [ps_step("install", "long-install", runElevated=True)]))
    assert run.code == 1, run.result.text
    message = run.step("install")["message"]
    assert "came back without restarting" in message and "aibx does not run it again" in message
    assert len(vm.runs) == 1
    assert vm.leftovers() == []  # the task and the files, removed by the clean-up after reconnecting


# ----------------------------------------------------------------------------------------------- connecting
def test_https_with_the_vm_certificate_authority(https_vm: WindowsVm, winrm_tls: TlsMaterial, tmp_path: Path) -> None:
    https_vm.on_script("hi", Reply("hi\r\n"))
    template = windows_template(tmp_path, [ps_step("hi", "hi")])
    for auth in ("ntlm", "basic"):
        run = WinRun(tmp_path, https_vm.host, template, "--winrm-ca", winrm_tls.ca_cert, auth=auth)
        assert run.code == 0, run.result.text
        assert run.report["target"].startswith(f"winrms://{USER}@127.0.0.1:")


def test_https_with_a_client_certificate(https_vm: WindowsVm, winrm_tls: TlsMaterial, tmp_path: Path) -> None:
    https_vm.on_script("hi", Reply("hi\r\n"))
    template = windows_template(tmp_path, [ps_step("hi", "hi")])
    extra = ["--winrm-ca", winrm_tls.ca_cert, "--winrm-client-cert", winrm_tls.client_cert]
    run = WinRun(
        tmp_path, https_vm.host, template, *extra, "--winrm-client-key", winrm_tls.client_key, auth="certificate"
    )
    assert run.code == 0, run.result.text
    assert {r.auth for r in https_vm.host.requests if r.action == "Command"} == {"certificate"}


def test_an_unknown_certificate_is_refused_unless_told_not_to_check(https_vm: WindowsVm, tmp_path: Path) -> None:
    https_vm.on_script("hi", Reply("hi\r\n"))
    template = windows_template(tmp_path, [ps_step("hi", "hi")])
    run = WinRun(tmp_path, https_vm.host, template)
    assert run.code == 3
    assert "certificate was not accepted" in run.result.err and "--winrm-ca" in run.result.err
    assert not any(c for c in https_vm.host.commands)
    run = WinRun(tmp_path, https_vm.host, template, "--insecure-skip-tls-verify")
    assert run.code == 0, run.result.text
    assert "warning: the VM's TLS certificate is not verified (--insecure-skip-tls-verify)" in run.result.err


def test_basic_over_http_is_allowed_when_asked_and_said(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script("hi", Reply("hi\r\n"))
    run = WinRun(
        tmp_path, vm.host, windows_template(tmp_path, [ps_step("hi", "hi")]), "--allow-unencrypted", auth="basic"
    )
    assert run.code == 0, run.result.text
    assert "warning: Basic authentication over plain HTTP (--allow-unencrypted)" in run.result.err
    assert {(r.auth, r.encrypted) for r in vm.host.requests if r.action == "Command"} == {("basic", False)}
    assert CANARY not in run.everything()


def test_wrong_password_exits_3_without_showing_it(vm: WindowsVm, tmp_path: Path, monkeypatch) -> None:
    wrong = "Wrong-Canary-Pw-5531"
    monkeypatch.setenv(PASSWORD_VAR, wrong)
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, [ps_step("x", "x")]))
    assert run.code == 3
    assert "401 Unauthorized" in run.result.err and "ntlm" in run.result.err
    assert f"${PASSWORD_VAR}" in run.result.err  # the hint names the variable, not its value
    assert wrong not in run.everything() and CANARY not in run.everything()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--winrm-auth", "basic"], True, "Basic authentication over plain HTTP"),
        ([], False, f"--password-env {PASSWORD_VAR}: that environment variable is not set"),
        (["--winrm-ca", "/nonexistent/ca.pem"], True, "--winrm-ca /nonexistent/ca.pem: no such file"),
        (["--winrm-auth", "certificate"], True, "certificate authentication needs HTTPS"),
    ],
)
def test_usage_errors_exit_2_before_connecting(
    vm: WindowsVm, tmp_path: Path, monkeypatch, args: list[str], env: bool, message: str
) -> None:
    if not env:
        monkeypatch.delenv(PASSWORD_VAR)
    template = windows_template(tmp_path, [ps_step("x", "x")])
    result = invoke("run", template, "--host", f"winrm://{USER}@127.0.0.1:{vm.host.port}", "--password-env",
                    PASSWORD_VAR, "--log", tmp_path / "log", *args)  # fmt: skip
    assert result.code == 2, result.text
    assert message in result.err
    assert vm.host.requests == []


def test_a_password_in_the_target_is_refused_without_echoing_it(tmp_path: Path) -> None:
    template = windows_template(tmp_path, [ps_step("x", "x")])
    for target in ("winrm://aibx:Target-Canary-Pw@127.0.0.1", "aibx:Target-Canary-Pw@127.0.0.1:22"):
        result = invoke("run", template, "--host", target, "--log", tmp_path / "log")
        assert result.code == 2 and "a password in a target is not accepted" in result.err
        assert "Target-Canary-Pw" not in result.text


def test_a_user_is_needed_for_ntlm(vm: WindowsVm, tmp_path: Path) -> None:
    template = windows_template(tmp_path, [ps_step("x", "x")])
    result = invoke("run", template, "--host", f"winrm://127.0.0.1:{vm.host.port}", "--password-env", PASSWORD_VAR)
    assert result.code == 2 and "ntlm authentication needs a user name" in result.err


def test_targets_that_do_not_fit_the_template(vm: WindowsVm, tmp_path: Path) -> None:
    windows = windows_template(tmp_path, [ps_step("x", "x")])
    result = invoke("run", windows, "--host", "local")
    assert result.code == 2 and "is a Windows template" in result.err
    linux = write_template(tmp_path, [{"type": "Shell", "name": "s", "inline": ["true"]}], name="linux.json")
    result = invoke("run", linux, "--host", f"winrm://{USER}@127.0.0.1:{vm.host.port}", "--password-env", PASSWORD_VAR)
    assert result.code == 2 and "is a Linux template" in result.err
    result = invoke("run", windows, "--host", "aibx@127.0.0.1", "--winrm-auth", "basic")
    assert result.code == 2 and "--winrm-auth: only for winrm:// and winrms:// targets" in result.err


def test_a_closed_port_exits_3(tmp_path: Path, monkeypatch) -> None:
    from tests.support.sshd import free_port

    monkeypatch.setenv(PASSWORD_VAR, CANARY)
    template = windows_template(tmp_path, [ps_step("x", "x")])
    result = invoke("run", template, "--host", f"winrm://aibx@127.0.0.1:{free_port()}", "--password-env",
                    PASSWORD_VAR, "--log", tmp_path / "log")  # fmt: skip
    assert result.code == 3
    assert "connection refused" in result.err and "Enable-PSRemoting" in result.err


# ----------------------------------------------------------------------------------------------- File
def test_file_upload_is_checked_by_hash_on_the_vm(vm: WindowsVm, tmp_path: Path) -> None:
    from tests.support.winrm_server import emulate_upload

    payload = os.urandom(300_000)
    (tmp_path / "big.bin").write_bytes(payload)
    vm.host.add_directory("C:\\data")
    steps = [{"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": "C:\\data\\big.bin"}]
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, steps))
    assert run.code == 0, run.result.text
    assert vm.host.file("C:\\data\\big.bin") == payload
    [upload] = [c for c in vm.host.commands if c.script and "receive a file" in c.script and "big.bin" in c.script]
    assert f"$sha256 = '{hashlib.sha256(payload).hexdigest()}'" in upload.script  # type: ignore[operator]
    # ~84 KiB of file per round trip (Packer's winrmcp: ~6 KB), plus one for the staged deprovisioning script
    sends = [r for r in vm.host.requests if r.action == "Send"]
    assert len(sends) == 1 + math.ceil(len(payload) / upload_chunk_size(DEFAULT_MAX_ENVELOPE_SIZE)) == 5

    # the same file corrupted on the way: the VM's hash differs, nothing is left at the destination
    del vm.host.files["c:\\data\\big.bin"]

    def corrupting(cmd: RemoteCommand) -> int:
        cmd.script = (cmd.script or "").replace("$sha256 = '", "$sha256 = '0")
        return emulate_upload(cmd)

    vm.host.rules.insert(0, (lambda c: "receive a file" in (c.script or "") and "big.bin" in c.text, corrupting))
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, steps))
    assert run.code == 1
    assert "sha256 mismatch" in run.step("big")["message"]
    assert vm.host.file("C:\\data\\big.bin") is None


def test_file_to_a_missing_folder_is_a_clear_error(vm: WindowsVm, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    steps = [{"type": "File", "name": "f", "sourceUri": "file:a.txt", "destination": "C:\\missing\\dir\\a.txt"}]
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, steps))
    assert run.code == 1
    assert run.step("f")["message"] == (
        "cannot write C:\\missing\\dir\\a.txt: parent directory does not exist: c:\\missing\\dir"
    )


# ----------------------------------------------------------------------------------------------- Windows Update
def update_template(tmp_path: Path, **step: object) -> Path:
    return windows_template(tmp_path, [{"type": "WindowsUpdate", "name": "updates", **step}])


def test_windows_update_found_restart_none_left(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script(
        "-SearchCriteria",
        update_rounds({1: [round_line("reboot-required", ["KB1", "KB2"], True)], 2: [round_line("none")]}),
    )
    run = WinRun(tmp_path, vm.host, update_template(tmp_path, updateLimit=20))
    assert run.code == 0, run.result.text
    out = run.result.out
    assert out.index("updates | aibx-wu:   install  KB1 Update KB1") < out.index(
        "Windows Update round 1: found 2, selected 2, skipped 0, installed 2, failed 0; restart required; "
        "restarting the VM"
    )
    assert "WinRM is back after" in out and "the VM restarted" in out
    assert "Windows Update done after 2 rounds: 2 installed, 1 restart; no applicable updates left" in out
    assert "AIBX-WU-RESULT" not in out  # the result line is read, not shown
    restarts = [c.command_line for c in vm.host.commands if c.command_line.startswith("shutdown")]
    assert restarts == ['shutdown /r /f /t 0 /c "aibx windows update"']
    assert vm.host.boot_count == 2 and vm.leftovers() == []
    invocation = vm.runs[0].text
    assert "-UpdateLimit 20" in invocation and "-SearchCriteria 'BrowseOnly=0 and IsInstalled=0'" in invocation
    assert run.report["reboots"][0]["during"] == "a restart"


def test_windows_update_stops_when_an_installed_update_is_offered_again(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script(
        "-SearchCriteria",
        update_rounds(
            {1: [round_line("reboot-required", ["KB5007651"], True)], 2: [round_line("installed", ["KB5007651"])]}
        ),
    )
    run = WinRun(tmp_path, vm.host, update_template(tmp_path))
    assert run.code == 1
    message = run.step("updates")["message"]
    assert "KB5007651 installed in an earlier round and offered again" in message
    assert "exclude it with a filter" in message


def test_windows_update_errors_are_translated(vm: WindowsVm, tmp_path: Path) -> None:
    text = (
        "search refused: 0x80240016 WU_E_INSTALL_NOT_ALLOWED: another installation is running or a restart is "
        "pending; add a WindowsRestart before this step"
    )
    vm.on_script("-SearchCriteria", update_rounds({1: [round_line("error", message=text)]}))
    run = WinRun(tmp_path, vm.host, update_template(tmp_path))
    assert run.code == 1
    assert run.step("updates")["message"] == f"Windows Update: round 1: {text}"
    assert run.step("updates")["exitCode"] == 1


def test_windows_update_rounds_are_capped(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script(
        "-SearchCriteria", update_rounds({1: [round_line("installed", [f"KB{n}"], more=True) for n in range(12)]})
    )
    run = WinRun(tmp_path, vm.host, update_template(tmp_path))
    assert run.code == 1
    assert run.step("updates")["message"] == "Windows Update: updates still left after 10 rounds (the limit)"
    assert len(vm.runs) == 10


def test_a_pending_restart_that_does_not_clear_stops_the_loop(vm: WindowsVm, tmp_path: Path) -> None:
    pending = round_line(
        "reboot-required", [], True, message="a restart was pending before the search (Windows Update)"
    )
    vm.on_script("-SearchCriteria", update_rounds({1: [pending], 2: [pending]}))
    run = WinRun(tmp_path, vm.host, update_template(tmp_path))
    assert run.code == 1
    assert "a restart is still pending after restarting" in run.step("updates")["message"]
    assert vm.host.boot_count == 2


def test_a_round_cut_short_by_a_restart_is_followed_by_another(vm: WindowsVm, tmp_path: Path) -> None:
    """An update restarts the VM in the middle of a round (no result line): after the VM is back with a new
    boot, the next round searches again."""

    def restarting(cmd: RemoteCommand, run: ScriptRun) -> Reply | int:
        if cmd.host.boot_count == 1:
            cmd.stdout("aibx-wu: installing 1 updates\r\n")
            cmd.host.schedule_restart(0.1)
            cmd.wait_terminated(10)
            return 1
        return Reply(round_line("none"))

    vm.on_script("-SearchCriteria", restarting)
    run = WinRun(tmp_path, vm.host, update_template(tmp_path))
    assert run.code == 0, run.result.text
    assert "Windows Update round 1 was cut short by a restart of the VM" in run.result.out
    assert "Windows Update round 2: found 0" in run.result.out
    assert run.step("updates")["reboots"] == 1 and vm.host.boot_count == 2
    assert vm.leftovers() == []


def test_a_round_whose_connection_drops_without_a_restart_is_not_started_again(vm: WindowsVm, tmp_path: Path) -> None:
    host = vm.host

    def dropping(cmd: RemoteCommand, run: ScriptRun) -> int:
        threading.Timer(0.2, lambda: (host.stop(), host.start())).start()
        cmd.wait_terminated(10)
        return 0

    vm.on_script("-SearchCriteria", dropping)
    run = WinRun(tmp_path, host, update_template(tmp_path))
    assert run.code == 1
    message = run.step("updates")["message"]
    assert "the round may still be running on the VM as a scheduled task" in message
    assert len(vm.runs) == 1 and vm.leftovers() == []


# ----------------------------------------------------------------------------------------------- Sysprep
def test_sysprep_that_never_reaches_its_state_times_out_cleanly(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script("Sysprep.exe", vm.sysprep(reaches_after=None))
    vm.panther_errors = ["[0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred while executing 'Cleanup'"]
    template = windows_template(tmp_path, [])
    run = WinRun(tmp_path, vm.host, template, "--generalize", "--yes", "--deprovision-timeout", "1s")
    assert run.code == 4, run.result.text
    message = run.step("deprovision")["message"]
    assert message.startswith(
        "the deprovisioning script did not finish within 1.00 s (--deprovision-timeout): Sysprep's image state did "
        "not become IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    )
    assert "; it was stopped; last lines of output:\n  IMAGE_STATE_UNDEPLOYABLE" in message
    assert run.step("deprovision")["outcome"] == "timed out"
    out = run.result.out
    assert "deprovision | aibx: ImageState is IMAGE_STATE_UNDEPLOYABLE" in out
    assert "deprovision |   [0x0f0082] SYSPRP ActionPlatform::LaunchModule" in out
    [sysprep] = [c for c in vm.host.commands if "aibx-deprovision-" in c.command_line and "-File" in c.command_line]
    assert sysprep.signals == ["terminate"]  # stopped on the VM, not left running
    assert vm.leftovers() == []


def test_sysprep_that_reaches_its_state_succeeds(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script("Sysprep.exe", vm.sysprep(reaches_after=0.3))
    run = WinRun(
        tmp_path, vm.host, windows_template(tmp_path, []), "--generalize", "--yes", "--deprovision-timeout", "30s"
    )
    assert run.code == 0, run.result.text
    assert "deprovision | >>> Sysprep complete ..." in run.result.out
    assert vm.image_state == "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" and vm.leftovers() == []


def test_a_customizer_that_deletes_the_deprovisioning_script_gets_aibs_warning(vm: WindowsVm, tmp_path: Path) -> None:
    def delete_it(cmd: RemoteCommand, run: ScriptRun) -> int:
        cmd.host.files.pop(DEPROVISION_PATH.lower())
        return 0

    vm.on_script("Remove-Item c:\\DeprovisioningScript.ps1", delete_it)
    template = windows_template(tmp_path, [ps_step("oops", "Remove-Item c:\\DeprovisioningScript.ps1")])
    run = WinRun(tmp_path, vm.host, template, "--generalize", "--yes")
    assert run.code == 0, run.result.text
    warning = (
        "Deprovisioning script [c:\\DeprovisioningScript.ps1] could not be found. Image build may fail or the VM "
        "created from the Image may not boot."
    )
    assert warning in run.result.err and any(warning in w for w in run.report["warnings"])


def test_without_generalize_the_script_is_staged_but_not_run(vm: WindowsVm, tmp_path: Path) -> None:
    run = WinRun(tmp_path, vm.host, windows_template(tmp_path, []))
    assert run.code == 0, run.result.text
    assert vm.file_text(DEPROVISION_PATH) == (
        ROOT / "aibx/data/DeprovisioningScript.ps1"
    ).read_bytes().decode().replace("\r\n", "\n")
    assert "deprovision" not in run.outcomes()
    assert not any("aibx-deprovision" in c.command_line for c in vm.host.commands)


# ----------------------------------------------------------------------------------------------- the restart flow
def test_restart_check_that_fails_twice_then_succeeds(make_winrm_host, tmp_path: Path) -> None:
    """WindowsRestart through the engine over NTLM-encrypted WinRM: the restart command, a new LastBootUpTime, then
    restartCheckCommand until it exits 0 (twice 1, then 0), all within restartTimeout."""
    from tests.support.windows_restart import run_restart

    host = make_winrm_host(users={USER: CANARY})
    calls: list[int] = []

    def check(cmd: RemoteCommand) -> Reply:
        calls.append(cmd.host.boot_count)
        if len(calls) <= 2:
            return Reply(stderr="the Windows Modules Installer is still busy\r\n", exit_code=1)
        return Reply("ready\r\n")

    host.on("Test-AibxReady", check)
    options = ConnectOptions(password=CANARY, connect_timeout=5, remote_os="windows", extra={"auth": "ntlm"})
    target = parse_target(f"winrm://{USER}@127.0.0.1:{host.port}")
    step = {"restartCheckCommand": "powershell -Command Test-AibxReady", "restartTimeout": "1m"}
    outcome = run_restart(tmp_path, lambda: create_transport(target, options), str(target), step)
    assert outcome.result.exit_code == 0, outcome.result.message
    assert calls == [2, 2, 2]  # all after the restart
    assert outcome.notices().count("restart check: exit code 1; trying again in 0.20 s") == 2
    lines = [c.command_line for c in host.commands if not c.script]
    assert lines == ['shutdown /r /f /t 0 /c "packer restart"'] + ["powershell -Command Test-AibxReady"] * 3
    assert outcome.step().reboots == 1
    assert all(r.auth == "ntlm" and r.encrypted for r in host.requests if r.action == "Command")


# ----------------------------------------------------------------------------------------------- stopping, many hosts
def waits_until_stopped(cmd: RemoteCommand, run: ScriptRun) -> int:
    cmd.stdout("working\r\n")
    cmd.wait_terminated(60)
    return 1


def test_the_build_timeout_stops_an_elevated_script_and_removes_its_task(vm: WindowsVm, tmp_path: Path) -> None:
    vm.on_script("long-install", waits_until_stopped)
    template = windows_template(tmp_path, [ps_step("install", "long-install", runElevated=True)])
    run = WinRun(tmp_path, vm.host, template, "--timeout-minutes", "0.02")
    assert run.code == 4, run.result.text
    assert run.step("install")["outcome"] == "timed out"
    [command] = [r.command for r in vm.runs]
    assert command.signals == ["terminate"]  # WS-Management Signal: stopped on the VM
    assert vm.leftovers() == []


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_remote_command_and_cleans_up(vm: WindowsVm, tmp_path: Path, signame: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    vm.on_script("long-install", waits_until_stopped)
    template = windows_template(tmp_path, [ps_step("install", "long-install", runAsSystem=True, runElevated=True)])
    env = {**os.environ, PASSWORD_VAR: CANARY}
    command = [sys.executable, "-m", "aibx", "run", str(template), "--host",
               f"winrm://{USER}@127.0.0.1:{vm.host.port}", "--password-env", PASSWORD_VAR, "--log",
               str(tmp_path / "log"), "--report", str(tmp_path / "report.json")]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not vm.runs:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    proc.send_signal(signal.Signals[signame])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert vm.runs[0].command.signals == ["terminate"]
    assert vm.leftovers() == []
    assert json.loads((tmp_path / "report.json").read_text())["outcome"] == "interrupted"


def test_several_windows_vms_at_once(make_winrm_host, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PASSWORD_VAR, CANARY)
    vms = [WindowsVm(make_winrm_host(users={USER: CANARY}, computer_name=f"WIN-{n}")) for n in range(3)]
    for vm in vms:
        vm.on_script("hostname", lambda cmd, run: Reply(cmd.host.computer_name + "\r\n"))
    template = windows_template(tmp_path, [ps_step("name", "hostname")])
    hosts = [a for vm in vms for a in ("--host", f"winrm://{USER}@127.0.0.1:{vm.host.port}")]
    result = invoke("run", template, *hosts, "--password-env", PASSWORD_VAR, "--log", tmp_path / "log.txt")
    assert result.code == 0, result.text
    for n, vm in enumerate(vms):
        assert f"[winrm://{USER}@127.0.0.1:{vm.host.port}] name | WIN-{n}" in result.out
        assert vm.leftovers() == []
