"""WindowsRestart in the engine, on the transport abstraction: over SSH to a "Windows-like" sshd (its commands
answered by test shims: ``shutdown /r`` restarts it, ``powershell.exe`` tells the boot time) and over WinRM to the
WinRM test server (``tests/support/winrm_server.py``, whose ``shutdown /r`` restarts it with a new LastBootUpTime).

The flow: run restartCommand (1115 and 1190, a shutdown already under way, are fine), wait for the VM to go down
and come back with a different boot identity, then run restartCheckCommand until it exits 0 (its exit code
counts, unlike Packer's), all within restartTimeout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aibx.engine.events import Reconnected
from aibx.engine.transports import ConnectOptions, create_transport, parse_target
from aibx.engine.transports.base import Transport
from tests.support.windows_restart import run_restart
from tests.support.winrm_fixtures import PASSWORD
from tests.support.winrm_server import RemoteCommand, Reply, WinRMHost

DEFAULT_RESTART = 'shutdown /r /f /t 0 /c "packer restart"'


# ----------------------------------------------------------------------------------------------- over SSH
def ssh_factory(target) -> Callable[[], Transport]:  # type: ignore[no-untyped-def]
    options = ConnectOptions(
        identity=str(target.client_key),
        known_hosts=str(target.known_hosts),
        remote_os="windows",
        keepalive_interval=1,
    )
    return lambda: create_transport(parse_target(target.url), options)


def counting_check(d: str, succeed_at: int) -> str:
    """A restartCheckCommand for the Windows-like target (run by its sh): fails until its ``succeed_at``-th run."""
    return (
        f'n=$(cat {d}/checks 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/checks; echo "check $n"; '
        f"[ $n -ge {succeed_at} ]"
    )


def test_over_ssh_restart_waits_for_a_new_boot_then_for_the_check(make_rebootable_target, tmp_path: Path) -> None:
    target, watcher = make_rebootable_target(down_s=0.5, refused_s=0.3, windows_like=True)
    d = target.remote_dir("winrestart")
    boot_before = target.boot_time_file.read_text().strip()
    step = {"restartCheckCommand": counting_check(d, 3), "restartTimeout": "1m"}
    outcome = run_restart(tmp_path, ssh_factory(target), target.url, step)
    assert outcome.result.exit_code == 0, outcome.result.message
    assert watcher.requests[0][1].split()[2:4] == ["shutdown", "/r"]
    assert target.boot_count == 2
    [back] = [e for e in outcome.events if isinstance(e, Reconnected)]
    assert back.rebooted is True and back.previous_boot_id == boot_before
    assert back.boot_id == target.boot_time_file.read_text().strip()  # LastBootUpTime, through powershell.exe
    # the check ran until it exited 0: after the restart, never before it
    assert target.host_path(f"{d}/checks").read_text().strip() == "3"
    assert outcome.notices().count("restart check: exit code 1; trying again in 0.20 s") == 2
    assert outcome.step().reboots == 1 and outcome.report["reboots"][0]["during"] == "a restart"
    assert f"restart with {DEFAULT_RESTART}" in outcome.log


def test_over_ssh_a_vm_that_does_not_restart_times_out(make_ssh_target, tmp_path: Path) -> None:
    """restartCommand exits 0 but nothing restarts: Packer would call that restarted; aibx waits for a new boot
    until restartTimeout and exits 4."""
    target = make_ssh_target(windows_like=True)
    step = {"restartCommand": "echo pretending to restart", "restartTimeout": "2s"}
    outcome = run_restart(tmp_path, ssh_factory(target), target.url, step)
    assert outcome.result.exit_code == 4, outcome.result.message
    assert "the VM did not restart within restartTimeout (2.00 s)" in outcome.result.message
    assert "it still answers with the same boot identity" in outcome.result.message


def test_over_ssh_a_check_that_never_succeeds_times_out(make_rebootable_target, tmp_path: Path) -> None:
    target, _ = make_rebootable_target(down_s=0.2, refused_s=0.2, windows_like=True)
    step = {"restartCheckCommand": "echo 'services not ready' >&2; exit 7", "restartTimeout": "4s"}
    outcome = run_restart(tmp_path, ssh_factory(target), target.url, step)
    assert outcome.result.exit_code == 4, outcome.result.message
    assert "the restart check did not succeed within restartTimeout (4.00 s)" in outcome.result.message
    assert "last exit code 7" in outcome.result.message and "services not ready" in outcome.result.message
    assert target.boot_count == 2  # the restart itself happened


# ----------------------------------------------------------------------------------------------- over WinRM
def winrm_factory(host: WinRMHost) -> Callable[[], Transport]:
    options = ConnectOptions(
        password=PASSWORD,
        connect_timeout=5,
        extra={"auth": "basic", "allow_unencrypted": True, "receive_timeout": 1, "read_timeout": 5},
    )
    return lambda: create_transport(parse_target(f"winrm://aibx@127.0.0.1:{host.port}"), options)


def check_counter(succeed_at: int) -> Callable[[RemoteCommand], Reply]:
    calls: list[int] = []

    def check(cmd: RemoteCommand) -> Reply:
        calls.append(cmd.host.boot_count)
        if len(calls) < succeed_at:
            return Reply(stderr="not yet\r\n", exit_code=1)
        return Reply(f"ready on boot {cmd.host.boot_count}\r\n")

    check.calls = calls  # type: ignore[attr-defined]
    return check


def test_over_winrm_the_default_restart_and_a_check(winrm_host: WinRMHost, tmp_path: Path) -> None:
    check = check_counter(2)
    winrm_host.on("Test-AibxReady", check)
    boot_before = winrm_host.boot_time
    outcome = run_restart(
        tmp_path,
        winrm_factory(winrm_host),
        "winrm://aibx@127.0.0.1",
        {"restartCheckCommand": "powershell -Command Test-AibxReady", "restartTimeout": "1m"},
    )
    assert outcome.result.exit_code == 0, outcome.result.message
    assert winrm_host.boot_count == 2 and winrm_host.boot_time != boot_before
    assert check.calls == [2, 2]  # type: ignore[attr-defined]  # only after the restart, until it said 0
    lines = [c.command_line for c in winrm_host.commands]
    assert lines.count(DEFAULT_RESTART) == 1
    assert not any("/t 60" in line or "shutdown /a" in line for line in lines)  # none of Packer's test restarts
    [back] = [e for e in outcome.events if isinstance(e, Reconnected)]
    assert back.service == "WinRM" and back.rebooted is True
    assert outcome.report["reboots"][0]["expected"] is True


@pytest.mark.parametrize(("code", "meaning"), [(1115, "already in progress"), (1190, "already scheduled")])
def test_over_winrm_a_shutdown_already_under_way_is_not_a_failure(
    winrm_host: WinRMHost, tmp_path: Path, code: int, meaning: str
) -> None:
    def busy(cmd: RemoteCommand) -> int:
        cmd.host.schedule_restart()  # an installer had asked for it already
        return code

    winrm_host.on("shutdown", busy)
    outcome = run_restart(tmp_path, winrm_factory(winrm_host), "winrm://h", {"restartTimeout": "1m"})
    assert outcome.result.exit_code == 0, outcome.result.message
    assert winrm_host.boot_count == 2
    assert any(f"exit code {code}, a shutdown is {meaning}" in n for n in outcome.notices())


def test_over_winrm_a_failing_restart_command_fails_the_step(winrm_host: WinRMHost, tmp_path: Path) -> None:
    winrm_host.on("shutdown", Reply(stderr="Access is denied.(5)\r\n", exit_code=5))
    outcome = run_restart(tmp_path, winrm_factory(winrm_host), "winrm://h", {"restartTimeout": "1m"})
    assert outcome.result.exit_code == 1
    assert "restart command: exit code 5" in outcome.result.message and "Access is denied" in outcome.result.message
    assert winrm_host.boot_count == 1


def test_over_winrm_a_second_restart_during_the_check_is_ridden_out(winrm_host: WinRMHost, tmp_path: Path) -> None:
    """Updates often want two restarts: the first check runs into the second one; aibx waits again."""
    checks: list[int] = []

    def check(cmd: RemoteCommand) -> Reply | int:
        checks.append(cmd.host.boot_count)
        if cmd.host.boot_count == 2:
            cmd.host.schedule_restart(0.1)
            cmd.wait_terminated(10)
            return 1
        return Reply("ready\r\n")

    winrm_host.on("Test-AibxReady", check)
    outcome = run_restart(
        tmp_path,
        winrm_factory(winrm_host),
        "winrm://h",
        {"restartCheckCommand": "Test-AibxReady", "restartTimeout": "1m"},
    )
    assert outcome.result.exit_code == 0, outcome.result.message
    assert checks == [2, 3] and winrm_host.boot_count == 3
    assert outcome.step().reboots == 2 and len(outcome.report["reboots"]) == 2
