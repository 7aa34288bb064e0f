"""Windows temporary files (a step's script, aibx's runner, the Windows Update and deprovision scripts) are created
exclusively and never through anything another user of the VM planted at their names; File destinations that are
symbolic links or junctions are refused (issue 11, item 4).

Windows cannot run here, so: the upload script's exact text, as the WinRM transport sends it, parsed with the
PowerShell grammar; the WinRM exchange against the protocol server (whose upload emulation judges the destination
as the script does); and, over SSH to Windows OpenSSH's stand-in, the SFTP open flags and a real planted symlink.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from aibx import powershell as ps
from aibx.engine.transports import parse_target
from aibx.engine.transports.asyncssh_import import asyncssh
from aibx.engine.transports.winrm import UPLOAD_SCRIPT, WinRMOptions, WinRMTransport
from tests.support.cli import RecordedRun
from tests.support.plans import WINDOWS_SOURCE
from tests.support.powershell_parse import parse_errors
from tests.support.sshd import SshTarget
from tests.support.templates import write_template
from tests.support.winrm_fixtures import PASSWORD
from tests.support.winrm_server import RemoteCommand, WinRMHost, _norm, _ps_param, emulate_upload
from tests.support.winrm_windows import RUNNER_COMMAND, WindowsVm

PASSWORD_VAR = "AIBX_TEST_WINTEMP_PASSWORD"
UPLOAD_MARKER = "# aibx: receive a file on stdin"
EXCLUSIVE_MESSAGE = "already exists; aibx creates its temporary files only where nothing is"


def uploads(host: WinRMHost) -> list[RemoteCommand]:
    return [c for c in host.commands if c.script is not None and UPLOAD_MARKER in c.script]


def transport(host: WinRMHost) -> WinRMTransport:
    return WinRMTransport(
        parse_target(f"winrm://aibx@127.0.0.1:{host.port}"),
        WinRMOptions(receive_timeout=1, read_timeout=5),
        password=PASSWORD,
    )


def sent_upload_scripts(host: WinRMHost, *, exclusive: bool) -> list[str]:
    """Two uploads through two transports (two runs): the upload script exactly as each sent it."""
    host.add_directory("C:\\data")

    async def go() -> None:
        for _ in range(2):
            t = transport(host)
            await t.connect()
            try:
                path = "C:\\Windows\\Temp\\aibx-x.ps1" if exclusive else "C:\\data\\a.txt"
                await t.put(b"hello", path, exclusive=exclusive)
            finally:
                await t.close()
            host.files.clear()

    asyncio.run(go())
    return [c.script or "" for c in uploads(host)]


# ----------------------------------------------------------------------------------------------- the exact text
@pytest.mark.parametrize("exclusive", [True, False])
def test_the_upload_script_creates_its_file_exclusively_and_never_writes_through_a_reparse_point(
    winrm_host: WinRMHost, exclusive: bool
) -> None:
    """The bytes go to a new file created with FileMode CreateNew (which fails on a file, a symbolic link or a
    junction already there, and follows none), under a name random for each run; the destination is checked for a
    reparse point (GetAttributes follows no link) before and after the transfer; an exclusive upload never deletes
    what is at the destination, and Move never replaces. The text parses as PowerShell."""
    first, second = sent_upload_scripts(winrm_host, exclusive=exclusive)
    for script in (first, second):
        assert parse_errors(script) == [], script
        assert "[IO.File]::Create(" not in script and ".aibx-part'" not in script
        assert (
            "$out = [IO.File]::Open($part, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)"
            in script
        )
        assert f"$exclusive = '{'yes' if exclusive else 'no'}' -eq 'yes'" in script
        assert "try { return [IO.File]::GetAttributes($Name) } catch { return $null }" in script
        assert "if ($found.HasFlag($reparse)) { Stop-Upload 7" in script
        assert "if ($exclusive) { Stop-Upload 7" in script
        # checked when the upload starts and again just before the move
        assert script.count("Assert-Free $path") == 2
        end = script[script.index("end {") :]
        assert end.index("Assert-Free $path") < end.index("[IO.File]::Move($part, $path)")
        assert "if (-not $exclusive -and [IO.File]::Exists($path)) { [IO.File]::Delete($path) }" in end
        # only a file this upload created is deleted when it fails
        assert "if ($script:created) { [IO.File]::Delete($script:part) }" in script
    tokens = [re.search(r"\$part = \$path \+ '\.aibx-' \+ '([0-9a-f]{16})'", s) for s in (first, second)]
    assert all(tokens) and tokens[0][1] != tokens[1][1]  # type: ignore[index]


def test_the_upload_script_as_shipped_parses() -> None:
    text = ps.package_script_text(UPLOAD_SCRIPT)
    assert parse_errors(text) == []
    assert "__AIBX_TOKEN__" in text and "__AIBX_EXCLUSIVE__" in text


# ----------------------------------------------------------------------------------------------- WinRM exchange
@pytest.fixture
def vm(make_winrm_host: Callable[..., WinRMHost], monkeypatch: pytest.MonkeyPatch) -> WindowsVm:
    monkeypatch.setenv(PASSWORD_VAR, PASSWORD)
    return WindowsVm(make_winrm_host(users={"aibx": PASSWORD}))


def winrm_run(tmp_path: Path, vm: WindowsVm, steps: list[dict]) -> RecordedRun:
    template = write_template(tmp_path, steps, source=WINDOWS_SOURCE)
    host = f"winrm://aibx@127.0.0.1:{vm.host.port}"
    return RecordedRun(tmp_path, template, "--host", host, "--password-env", PASSWORD_VAR, "--connect-timeout", "5s")


def test_windows_temp_uploads_over_winrm_are_exclusive_and_file_destinations_are_not(
    vm: WindowsVm, tmp_path: Path
) -> None:
    """By the exchange: every temporary file of a PowerShell step (and the staged deprovisioning launcher's
    neighbours) goes up with $exclusive 'yes'; a File destination, which may replace a file, with 'no'."""
    vm.on_script("hi", 0)
    vm.host.add_directory("C:\\data")
    (tmp_path / "tool.bin").write_bytes(b"tool")
    steps = [
        {"type": "PowerShell", "name": "plain", "inline": ["Write-Output 'hi'"]},
        {"type": "PowerShell", "name": "elevated", "inline": ["Write-Output 'hi'"], "runElevated": True},
        {"type": "File", "name": "tool", "sourceUri": "file:tool.bin", "destination": "C:\\data\\tool.bin"},
    ]
    run = winrm_run(tmp_path, vm, steps)
    assert run.code == 0, run.result.text
    modes = {_ps_param(c.script or "", "path"): _ps_param(c.script or "", "exclusive") for c in uploads(vm.host)}
    temp = {p: m for p, m in modes.items() if p.lower().startswith("c:\\windows\\temp\\aibx-")}
    assert len(temp) == 4 and set(temp.values()) == {"yes"}, modes
    assert modes["C:\\data\\tool.bin"] == "no"
    assert modes["c:\\DeprovisioningScript.ps1"] == "no"  # AIB's fixed path, replaced as before
    assert vm.leftovers() == []


def test_a_file_planted_at_a_windows_temp_name_over_winrm_stops_the_step(vm: WindowsVm, tmp_path: Path) -> None:
    """Another user who learns the script's name and puts a file there first: the upload fails (exit 7, naming the
    path), the step fails, and nothing runs."""
    planted: list[str] = []

    def plant_then_upload(cmd: RemoteCommand) -> object:
        path = _ps_param(cmd.script or "", "path")
        cmd.host.files[_norm(path)] = b"Write-Output 'from another user'\r\n"
        planted.append(path)
        return emulate_upload(cmd)

    def is_the_script_upload(cmd: RemoteCommand) -> bool:
        script = cmd.script or ""
        return UPLOAD_MARKER in script and re.search(r"aibx-ps-[0-9a-f]{16}\.ps1'", script) is not None

    vm.host.rules.insert(0, (is_the_script_upload, plant_then_upload))
    vm.on_script("another user", 0)
    vm.on_script("hi", 0)
    run = winrm_run(tmp_path, vm, [{"type": "PowerShell", "name": "ps", "inline": ["Write-Output 'hi'"]}])
    assert run.code == 1, run.result.text
    [path] = planted
    assert run.step("ps")["message"] == f"cannot write {path}: {path} {EXCLUSIVE_MESSAGE}"
    [upload] = [c for c in uploads(vm.host) if _ps_param(c.script or "", "path") == path]
    assert upload.exit_code == 7 and b"AIBX-UPLOAD-OK" not in upload.stdout_sent
    assert not any(RUNNER_COMMAND.match(c.command_line) for c in vm.host.commands)
    assert vm.runs == []


def test_a_file_destination_that_is_a_reparse_point_is_refused_over_winrm(vm: WindowsVm, tmp_path: Path) -> None:
    vm.host.add_directory("C:\\data")
    vm.host.reparse_points.add(_norm("C:\\data\\tool.bin"))
    (tmp_path / "tool.bin").write_bytes(b"tool")
    steps = [{"type": "File", "name": "tool", "sourceUri": "file:tool.bin", "destination": "C:\\data\\tool.bin"}]
    run = winrm_run(tmp_path, vm, steps)
    assert run.code == 1, run.result.text
    assert run.step("tool")["message"] == (
        "cannot write C:\\data\\tool.bin: C:\\data\\tool.bin is a symbolic link or junction; "
        "aibx does not write through one"
    )
    assert vm.host.file("C:\\data\\tool.bin") is None


# ----------------------------------------------------------------------------------------------- SSH to Windows
FIXED = "5a" * 8  # what secrets.token_hex(8) gives in these tests: the names another user is assumed to know


def ssh_run(tmp_path: Path, target: SshTarget, steps: list[dict]) -> RecordedRun:
    template = write_template(tmp_path, steps, source=WINDOWS_SOURCE)
    return RecordedRun(
        tmp_path, template, "--host", target.url, "-i", target.client_key, "--known-hosts", target.known_hosts
    )


@pytest.fixture
def sftp_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every SFTP open of the run: (path, pflags)."""
    opens: list[tuple[str, str]] = []
    real = asyncssh.SFTPClient.open

    def recording(self: asyncssh.SFTPClient, path: str, pflags_or_mode: object = "r", *args: object, **kw: object):
        opens.append((str(path), str(pflags_or_mode)))
        return real(self, path, pflags_or_mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncssh.SFTPClient, "open", recording)
    return opens


def victim(target: SshTarget) -> Path:
    """A file of the login user's that a planted symlink points at."""
    path = target.dir / "victim.txt"
    path.write_text("the login user's own file\n")
    path.chmod(0o666)
    return path


def test_windows_temp_uploads_over_sftp_are_exclusive_creates(
    make_ssh_target, tmp_path: Path, sftp_opens: list[tuple[str, str]]
) -> None:
    """Over Windows OpenSSH: the step's script and runner are opened "xb" (SFTP's FXF_CREAT|FXF_EXCL), the File
    destination "wb" after its symlink check."""
    from tests.test_run_windows_ssh import windows_target

    target = windows_target(make_ssh_target(windows_like=True))
    (target.winroot / "c:" / "data").mkdir(mode=0o1777)
    (target.winroot / "c:" / "data").chmod(0o1777)
    (tmp_path / "tool.bin").write_bytes(b"tool")
    steps = [
        {"type": "PowerShell", "name": "hello", "inline": ["Write-Output 'hello'"], "validExitCodes": ["5"]},
        {"type": "File", "name": "tool", "sourceUri": "file:tool.bin", "destination": "C:\\data\\tool.bin"},
    ]
    run = ssh_run(tmp_path, target, steps)
    assert run.code == 0, run.result.text
    flags = {path: mode for path, mode in sftp_opens}
    temp = {p: m for p, m in flags.items() if p.startswith("C:/Windows/Temp/aibx-ps-")}
    assert len(temp) == 2 and set(temp.values()) == {"xb"}, flags
    assert flags["C:/data/tool.bin"] == "wb"


def test_a_symlink_planted_at_a_windows_temp_name_over_sftp_is_not_written_through(
    make_ssh_target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_run_windows_ssh import windows_log, windows_target

    monkeypatch.setattr(secrets, "token_hex", lambda n=32: "5a" * n)
    target = windows_target(make_ssh_target(windows_like=True))
    own = victim(target)
    (target.winroot / "c:" / "Windows" / "Temp" / f"aibx-ps-{FIXED}.ps1").symlink_to(own)
    run = ssh_run(tmp_path, target, [{"type": "PowerShell", "name": "ps", "inline": ["Write-Output 'hello'"]}])
    assert run.code == 1, run.result.text
    assert run.step("ps")["message"].startswith(
        f"cannot write C:\\Windows\\Temp\\aibx-ps-{FIXED}.ps1: {EXCLUSIVE_MESSAGE}"
    )
    assert own.read_text() == "the login user's own file\n"
    assert not [line for line in windows_log(target) if line.startswith("run ")]


def test_a_windows_file_destination_that_is_a_symlink_is_refused_over_sftp(make_ssh_target, tmp_path: Path) -> None:
    from tests.test_run_windows_ssh import windows_target

    target = windows_target(make_ssh_target(windows_like=True))
    own = victim(target)
    data = target.winroot / "c:" / "data"
    data.mkdir(mode=0o1777)
    data.chmod(0o1777)
    (data / "tool.bin").symlink_to(own)
    (tmp_path / "tool.bin").write_bytes(b"tool")
    steps = [{"type": "File", "name": "tool", "sourceUri": "file:tool.bin", "destination": "C:\\data\\tool.bin"}]
    run = ssh_run(tmp_path, target, steps)
    assert run.code == 1, run.result.text
    assert run.step("tool")["message"].startswith("cannot write C:\\data\\tool.bin: is a symbolic link (to ")
    assert own.read_text() == "the login user's own file\n"


def test_an_exclusive_sftp_write_cut_short_is_written_again_by_the_same_run_only(make_ssh_target) -> None:
    """A reboot during a temporary file's upload leaves what was written at its name: the same transport (the
    retry of the same run) removes that plain file and creates it again exclusively; another transport (another run,
    or what another user planted) is refused, and a symlink there is never removed or followed."""
    from aibx.engine.transports import ConnectOptions, create_transport, parse_target
    from aibx.engine.transports.base import RemoteFileError
    from aibx.engine.transports.options import SshOptions

    target = make_ssh_target(windows_like=True)
    temp = target.winroot / "c:" / "Windows" / "Temp"
    own = victim(target)
    (temp / "aibx-link.ps1").symlink_to(own)
    options = ConnectOptions(identity=str(target.client_key), known_hosts=str(target.known_hosts))
    options = dataclasses.replace(options, transport=(SshOptions(windows=True),))

    async def scenario() -> list[str]:
        outcomes: list[str] = []
        first, second = (create_transport(parse_target(target.url), options) for _ in range(2))
        for t in (first, second):
            await t.connect()
        try:
            await first.put(b"v1", "C:\\Windows\\Temp\\aibx-x.ps1", exclusive=True)
            (temp / "aibx-x.ps1").write_bytes(b"partial")  # as an attempt cut short leaves it
            await first.put(b"v2", "C:\\Windows\\Temp\\aibx-x.ps1", exclusive=True)  # the retry
            for t, path in ((second, "aibx-x.ps1"), (first, "aibx-link.ps1"), (first, "aibx-link.ps1")):
                try:
                    await t.put(b"v3", f"C:\\Windows\\Temp\\{path}", exclusive=True)
                    outcomes.append("written")
                except RemoteFileError as exc:
                    outcomes.append(exc.reason)
        finally:
            for t in (first, second):
                await t.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert (temp / "aibx-x.ps1").read_bytes() == b"v2"
    assert len(outcomes) == 3 and all(o.startswith(EXCLUSIVE_MESSAGE) for o in outcomes), outcomes
    assert (temp / "aibx-link.ps1").is_symlink() and own.read_text() == "the login user's own file\n"


def test_the_elevated_runner_creates_its_output_files_exclusively_before_the_task_writes_them() -> None:
    """runElevated/runAsSystem: the scheduled task (SYSTEM, or the user elevated) writes the script's output next
    to the script, at names another user could predict. The runner creates both files first with CreateNew (which
    fails on a planted file, symbolic link or junction, and follows none), the task's cmd.exe only appends (>>) to
    them, and only the files the runner created are deleted afterwards."""
    text = ps.package_script_text("Invoke-AibxScript.ps1")
    assert parse_errors(text) == []
    body = text[text.index("function Invoke-Elevated") :]
    create = body.index(
        "[System.IO.File]::Open($path, $mode, [System.IO.FileAccess]::Write, [System.IO.FileShare]::None).Dispose()"
    )
    assert "$mode = [System.IO.FileMode]::CreateNew" in body
    assert "foreach ($path in @($stdoutPath, $stderrPath)) {" in body[:create]
    assert create < body.index("$registered = $folder.RegisterTaskDefinition(")
    assert "-InTask 1>>\"' + $stdoutPath + '\" 2>>\"' + $stderrPath + '\"\"'" in body
    assert '-InTask 1>"' not in body and "2>\"'" not in body
    finally_block = body[body.index("    } finally {") :]
    assert "foreach ($path in $ours) {" in finally_block and "@($stdoutPath, $stderrPath)" not in finally_block
