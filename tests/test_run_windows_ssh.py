"""Windows templates over SSH (Windows hosts with OpenSSH): the same customizers as over WinRM, through the same
engine, against a real sshd whose shell and ``powershell.exe`` are the Windows-like shims of
tests/support/windows_shims (see tests/support/sshd.py).

What is real here: the SSH transport's Windows handling (SFTP with ``C:/...`` paths, command lines whose
backslashes must survive a cmd.exe-like shell, LastBootUpTime through ``powershell.exe -EncodedCommand``), the
engine's flows (restarts through ``shutdown /r``, Windows Update rounds, the bounded deprovision step, clean-up).
What is played: PowerShell itself; a test's ``windows-behaviour`` script stands in for the customer's scripts, and
exit codes are 0-255 as on Linux (Windows has 32 bits).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import Completed, invoke
from tests.support.plans import WINDOWS_SOURCE
from tests.support.sshd import SshTarget
from tests.support.templates import write_template
from tests.support.winrm_windows import round_line

BEHAVIOUR = r"""
text=$(cat "$AIBX_SCRIPT")
case "$AIBX_KIND:$text" in
  deprovision:*)
    echo '>>> Sysprepping VM ...'
    while [ "$(cat "$AIBX_CTL_DIR/image_state")" != IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE ]; do
      cat "$AIBX_CTL_DIR/image_state"; sleep 0.05
    done
    echo '>>> Sysprep complete ...' ;;
  *hello*) echo "hello over ssh"; echo "a warning" >&2; exit 5 ;;
  *whoami*) if [ "$AIBX_RUN_AS" = System ]; then echo 'nt authority\system'; else echo "win-aibx\\$(id -un)"; fi ;;
  *-SearchCriteria*)
    n=$(($(cat "$AIBX_CTL_DIR/wu-round") + 1)); echo $n > "$AIBX_CTL_DIR/wu-round"
    cat "$AIBX_CTL_DIR/wu-round-$n" ;;
  *) echo "no behaviour for: $text" >&2; exit 1 ;;
esac
"""


def windows_target(target: SshTarget, image_state: str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE") -> SshTarget:
    """The behaviour of the customer's scripts, and the state files it uses (writable by the login user)."""
    (target.dir / "windows-behaviour").write_text(BEHAVIOUR)
    for name, text in (("wu-round", "0\n"), ("image_state", image_state + "\n")):
        (target.dir / name).write_text(text)
        (target.dir / name).chmod(0o666)
    return target


class SshWinRun:
    def __init__(self, tmp_path: Path, target: SshTarget, template: Path, *extra: str) -> None:
        self.log = tmp_path / "customization.log"
        self.report_path = tmp_path / "report.json"
        self.result: Completed = invoke(
            "run", template, "--host", target.url, "-i", target.client_key, "--known-hosts", target.known_hosts,
            "--log", self.log, "--report", self.report_path, "--reconnect-timeout", "30s", *extra,
        )  # fmt: skip

    @property
    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    def step(self, name: str) -> dict:
        return next(s for s in self.report["steps"] if s["name"] == name)


def windows_log(target: SshTarget) -> list[str]:
    path = target.dir / "windows.log"
    return path.read_text().splitlines() if path.exists() else []


def temp_files(target: SshTarget) -> list[str]:
    return sorted(p.name for p in (target.winroot / "c:" / "Windows" / "Temp").iterdir())


def test_a_windows_template_over_ssh(make_rebootable_target, tmp_path: Path) -> None:
    target, watcher = make_rebootable_target(down_s=0.3, refused_s=0.2, windows_like=True)
    windows_target(target)
    (target.winroot / "c:" / "data").mkdir(mode=0o1777)
    (target.winroot / "c:" / "data").chmod(0o1777)
    (target.dir / "wu-round-1").write_text(round_line("reboot-required", ["KB1", "KB2"], True))
    (target.dir / "wu-round-2").write_text(round_line("none"))
    payload = bytes(range(256)) * 1000
    (tmp_path / "tool.bin").write_bytes(payload)
    template = write_template(
        tmp_path,
        [
            {"type": "PowerShell", "name": "hello", "inline": ["Write-Output 'hello'"], "validExitCodes": ["0", "5"]},
            {"type": "PowerShell", "name": "elevated", "inline": ["whoami"], "runElevated": True},
            {"type": "PowerShell", "name": "system", "inline": ["whoami"], "runElevated": True, "runAsSystem": True},
            {"type": "File", "name": "tool", "sourceUri": "file:tool.bin", "destination": "C:\\data\\tool.bin"},
            {"type": "WindowsRestart", "name": "restart", "restartTimeout": "1m"},
            {"type": "WindowsUpdate", "name": "updates"},
        ],
        source=WINDOWS_SOURCE,
    )
    run = SshWinRun(tmp_path, target, template, "--generalize", "--yes")
    assert run.result.code == 0, run.result.text
    assert {s["name"]: s["outcome"] for s in run.report["steps"]} == {
        "stage deprovisioning script": "succeeded",
        "hello": "succeeded",
        "elevated": "succeeded",
        "system": "succeeded",
        "tool": "succeeded",
        "restart": "succeeded",
        "updates": "succeeded",
        "deprovision": "succeeded",
    }
    out = run.result.out
    assert "hello | hello over ssh" in out and run.step("hello")["exitCode"] == 5
    assert "system | nt authority\\system" in out
    assert "Windows Update round 1: found 2, selected 2, skipped 0, installed 2, failed 0; restart required" in out
    assert "deprovision | >>> Sysprep complete ..." in out
    # what reached the "VM": files at their Windows paths, command lines with their backslashes
    assert (target.winroot / "c:" / "data" / "tool.bin").read_bytes() == payload
    default = (Path(__file__).parent.parent / "aibx" / "data" / "DeprovisioningScript.ps1").read_bytes()
    assert (target.winroot / "c:" / "DeprovisioningScript.ps1").read_bytes() == default
    runs = [line.split(" ", 3) for line in windows_log(target) if line.startswith("run ")]
    assert [(r[1], r[2] != "-") for r in runs] == [("None", False), ("User", True), ("System", True)] + [
        ("System", True)
    ] * 2
    assert all(r[3].startswith("C:\\Windows\\Temp\\aibx-") for r in runs)
    # two restarts (WindowsRestart, then between the update rounds), each confirmed by a new LastBootUpTime
    assert target.boot_count == 3 and len(run.report["reboots"]) == 2
    assert all(r["confirmed"] for r in run.report["reboots"])
    requests = [line.split(" ", 3)[3] for _, line in watcher.requests]  # as the shim saw its arguments
    assert requests == ["/r /f /t 0 /c packer restart", "/r /f /t 0 /c aibx windows update"]
    # nothing left behind
    assert temp_files(target) == []
    assert {line.split()[-1] for line in windows_log(target) if line.startswith("task deleted")} == {
        r[2] for r in runs if r[2] != "-"
    }


def test_sysprep_over_ssh_is_bounded(make_ssh_target, tmp_path: Path) -> None:
    target = windows_target(make_ssh_target(windows_like=True), image_state="IMAGE_STATE_UNDEPLOYABLE")
    template = write_template(tmp_path, [], source=WINDOWS_SOURCE)
    run = SshWinRun(tmp_path, target, template, "--generalize", "--yes", "--deprovision-timeout", "1s")
    assert run.result.code == 4, run.result.text
    message = run.step("deprovision")["message"]
    assert "did not finish within 1.00 s (--deprovision-timeout)" in message
    assert "last lines of output:\n  IMAGE_STATE_UNDEPLOYABLE" in message
    assert "deprovision | aibx: ImageState is IMAGE_STATE_UNDEPLOYABLE" in run.result.out
    # The waiting script itself is not stopped here: sshd refuses signals to a ForceCommand session, much as Windows
    # OpenSSH neither delivers signals nor ends a command whose session closed (PowerShell/Win32-OpenSSH#1751);
    # over WinRM the command is stopped (test_run_winrm). The README says so.
    assert temp_files(target) == []


def test_file_to_a_missing_windows_folder_over_ssh(make_ssh_target, tmp_path: Path) -> None:
    target = windows_target(make_ssh_target(windows_like=True))
    (tmp_path / "a.txt").write_text("a")
    template = write_template(
        tmp_path,
        [{"type": "File", "name": "f", "sourceUri": "file:a.txt", "destination": "C:\\missing\\a.txt"}],
        source=WINDOWS_SOURCE,
    )
    run = SshWinRun(tmp_path, target, template)
    assert run.result.code == 1
    assert run.step("f")["message"] == "cannot write C:\\missing\\a.txt: parent directory C:\\missing does not exist"
    assert not (target.winroot / "c:" / "missing").exists()
