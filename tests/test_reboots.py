"""Reboots and dropped connections during aibx run, against real sshd targets whose reboots are simulated
(tests/support/sshd.py, power.py, netns.py): the issue's "Done when", point by point.

Loopback targets run everywhere; a reboot is *confirmed* by a new boot id, which a target only has when it runs in
its own mount namespace (root, as in CI), so those tests need root. Network-namespace targets (root) add the
realistic failure modes: a VM that vanishes without closing its connections (only the keepalive notices), and a
network that fails while the VM lives on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.agent_modes import ssh_agent_mode  # noqa: F401
from tests.support.requirements import require_root
from tests.support.ssh_run import ROOT, Run, wait_for
from tests.support.sshd import IS_ROOT, PortBlackhole, SilentPort, SshTarget
from tests.support.templates import shell, write_template

FAST = ("--keepalive", "1s", "--connect-timeout", "5s")  # a dead peer is noticed within 3 s


def boot_id_of(target: SshTarget, remote_file: str) -> str:
    return target.host_path(remote_file).read_text().strip()


def reboots(run: Run) -> list[dict]:
    return run.report["reboots"]


def step(run: Run, name: str) -> dict:
    return next(s for s in run.report["steps"] if s["name"] == name)


# ----------------------------------------------------------------------------------------------- the plan
@pytest.mark.parametrize(
    ("step_", "watched"),
    [
        (shell("plain", "apt-get install -y nginx", "echo done"), False),
        (shell("reboots", "apt-get dist-upgrade -y", "sudo reboot"), True),
        (shell("shuts-down", "sudo shutdown -r now"), True),
        (shell("systemd", "sudo systemctl restart nginx"), True),
        (shell("sysv", "sudo init 6"), True),
        (shell("not-a-word", "echo rebooting-is-not-needed > /tmp/x", "cp /etc/shutdowns.conf /tmp"), False),
        ({"type": "Shell", "name": "uri", "scriptUri": "https://example.com/s.sh", "sha256Checksum": "0" * 64}, True),
    ],
)
def test_the_wrapper_watches_for_a_shutdown_only_after_scripts_that_can_restart(step_: dict, watched: bool) -> None:
    """Asking systemd costs a process per step, so only scripts that can restart the VM ask: a scriptUri (aibx
    cannot read it at plan time) or inline lines that mention a restart command."""
    from aibx.plan import Exec
    from tests.support.plans import linux_plan

    [action] = linux_plan([step_]).steps[1].actions
    assert isinstance(action, Exec)
    assert ("systemctl is-system-running" in action.command) is watched
    assert bool(action.shutdown_marker) is watched


@pytest.mark.usefixtures("ssh_agent_mode")
# ----------------------------------------------------------------------------------------------- a reboot mid-step
@pytest.mark.parametrize(
    ("command", "cut"),
    [
        ("sudo reboot", True),  # does not return: the reboot cuts the script
        ("sudo systemctl reboot", True),
        ("sudo shutdown -r now", False),  # returns at once: the script ends, then the VM goes down
    ],
)
def test_a_reboot_mid_step_is_survived_and_the_next_step_runs_on_the_new_boot(
    make_rebootable_target, tmp_path: Path, command: str, cut: bool
) -> None:
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, watcher = make_rebootable_target(down_s=1.0, refused_s=0.5)
    d = target.remote_dir("reboot")
    first_boot = target.boot_id
    steps = [
        shell("update-kernel", f"echo before > {d}/before", command, f"echo after > {d}/after"),
        shell("after-reboot", f"cat /proc/sys/kernel/random/boot_id > {d}/boot", f"ls /tmp > {d}/tmp-listing"),
    ]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert target.boot_count == 2 and target.boot_id != first_boot
    assert boot_id_of(target, f"{d}/boot") == target.boot_id  # the next step ran on the new boot
    assert target.host_path(f"{d}/before").exists()
    assert target.host_path(f"{d}/after").exists() is not cut
    assert [line.split()[0] for _, line in watcher.requests] == ["reboot"]

    [reboot] = reboots(run)
    assert (reboot["step"], reboot["bootIdBefore"], reboot["bootIdAfter"]) == (
        "update-kernel",
        first_boot,
        target.boot_id,
    )
    assert reboot["confirmed"] is True and reboot["awaySeconds"] >= 1.0
    assert reboot["during"] == ("the command" if cut else "the reboot after the command")
    updated = step(run, "update-kernel")
    assert updated["outcome"] == "succeeded" and updated["reboots"] == 1
    assert updated["endedByReboot"] is cut and updated["exitCode"] == (None if cut else 0)
    assert run.report["bootId"] == target.boot_id and run.report["totals"]["reboots"] == 1

    log = run.log.read_text()
    assert f"the VM restarted: boot id {first_boot} -> {target.boot_id}" in log
    if cut:
        assert "did not run to completion" in log and "ended by a reboot before the command finished" in run.result.out
        # the step's temporary script, left behind by the cut, was removed after the reboot
        script = re.search(r"update-kernel: exec d=(/tmp/aibx-\w+);", log)
        assert script and Path(script[1]).name not in target.host_path(f"{d}/tmp-listing").read_text()
        assert f"update-kernel: exec rm -rf {script[1]}" in log
    else:
        assert "aibx: the script finished and the VM is shutting down" in run.result.out
        assert "the command finished, then the VM restarted" in log
    assert "the VM restarted" in run.result.out


@pytest.mark.usefixtures("ssh_agent_mode")
def test_two_reboots_in_a_row(make_rebootable_target, tmp_path: Path) -> None:
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, _ = make_rebootable_target(down_s=0.5, refused_s=0.3)
    d = target.remote_dir("twice")
    boots = [target.boot_id]
    steps = [
        shell("first", f"cat /proc/sys/kernel/random/boot_id > {d}/1", "sudo reboot"),
        shell("second", f"cat /proc/sys/kernel/random/boot_id > {d}/2", "sudo systemctl reboot"),
        shell("third", f"cat /proc/sys/kernel/random/boot_id > {d}/3"),
    ]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    boots += [boot_id_of(target, f"{d}/2"), boot_id_of(target, f"{d}/3")]
    assert boot_id_of(target, f"{d}/1") == boots[0] and len(set(boots)) == 3 and boots[2] == target.boot_id
    assert [(r["step"], r["bootIdBefore"], r["bootIdAfter"]) for r in reboots(run)] == [
        ("first", boots[0], boots[1]),
        ("second", boots[1], boots[2]),
    ]
    assert [s["outcome"] for s in run.report["steps"]] == ["succeeded"] * 5


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_reboot_nobody_announced_during_a_later_step_is_survived(make_rebootable_target, tmp_path: Path) -> None:
    """An installer that restarts the VM a moment after its step ended: the reboot hits the next step."""
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, _ = make_rebootable_target(down_s=0.5, refused_s=0.3)
    d = target.remote_dir("installer")
    steps = [
        shell("installer", "nohup sh -c 'sleep 1; sudo reboot' >/dev/null 2>&1 &", "echo installed"),
        shell("long-step", f"echo started > {d}/started", "sleep 30", f"echo finished > {d}/finished"),
        shell("check", f"cat /proc/sys/kernel/random/boot_id > {d}/boot"),
    ]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert target.host_path(f"{d}/started").exists() and not target.host_path(f"{d}/finished").exists()
    assert boot_id_of(target, f"{d}/boot") == target.boot_id
    [reboot] = reboots(run)
    assert reboot["step"] == "long-step" and reboot["expected"] is False
    assert step(run, "long-step")["endedByReboot"] is True
    assert "connection lost during the command" in run.result.out


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_reboot_between_steps_runs_the_next_command_once_on_the_new_boot(make_ssh_target, tmp_path: Path) -> None:
    """The VM restarts while aibx is between two steps: the next command could not start (the channel never
    opened), so it runs once the VM is back, exactly once."""
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    import asyncio

    from aibx.engine.events import EventBus, StepFinished
    from aibx.engine.runner import Runner, RunOptions
    from aibx.engine.selection import Selection, select
    from aibx.engine.transports import ConnectOptions, create_transport, parse_target
    from tests.support.plans import linux_plan

    target = make_ssh_target()
    d = target.remote_dir("between")
    first_boot = target.boot_id
    plan = linux_plan([shell("one", "true"), shell("two", f"echo ran >> {d}/runs")])
    events: list = []

    def on_event(event: object) -> None:
        events.append(event)
        if isinstance(event, StepFinished) and event.step.name == "one":
            target.reboot(down_s=0.3, refused_s=0.2)  # blocks aibx's loop: it is "between steps"

    options = ConnectOptions(identity=str(target.client_key), known_hosts=str(target.known_hosts))
    runner = Runner(
        select(plan, Selection()),
        lambda: create_transport(parse_target(target.url), options),
        EventBus(None, [on_event]),
        RunOptions(timeout_seconds=60, reconnect_timeout=30),
        target=target.url,
    )
    result = asyncio.run(runner.run())
    assert result.exit_code == 0, result.message
    assert target.host_path(f"{d}/runs").read_text() == "ran\n"  # once
    assert result.boot_id == target.boot_id != first_boot
    two = next(s for s in result.steps if s.ref.name == "two")
    assert two.reboots == 1 and not two.ended_by_reboot and two.exit_code == 0
    assert any("the command had not started" in getattr(e, "message", "") for e in events)


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_command_killed_by_sigterm_as_the_vm_goes_down_counts_as_ended_by_the_reboot(
    make_rebootable_target, tmp_path: Path
) -> None:
    """A shutdown sends SIGTERM to every process first: sshd may report the command's exit code 143 before the
    connection drops. The VM says it is stopping, so that is the reboot, not a failure."""
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, _ = make_rebootable_target(down_s=0.3, refused_s=0.3, terminate_first=0.5)
    d = target.remote_dir("sigterm")
    steps = [shell("reboots", "sudo reboot"), shell("next", f"cat /proc/sys/kernel/random/boot_id > {d}/boot")]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert boot_id_of(target, f"{d}/boot") == target.boot_id
    [reboot] = reboots(run)
    assert reboot["reason"] == "killed by a signal (exit code 143) as the VM went down"
    assert step(run, "reboots")["endedByReboot"] is True


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_command_killed_by_a_signal_without_a_reboot_still_fails(ssh_target: SshTarget, tmp_path: Path) -> None:
    steps = [shell("kills-itself", "echo going", "kill -TERM $$"), shell("next", "true")]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps), *FAST)
    assert run.code == 1, run.result.text
    assert "exit code 143" in run.result.err and reboots(run) == []
    assert "waiting up to" not in run.result.out  # the VM said it is running: no wait for a reboot


@pytest.mark.usefixtures("ssh_agent_mode")
# ----------------------------------------------------------------------------------------------- uploads
def test_a_reboot_during_a_file_upload_writes_the_whole_file_again(make_ssh_target, tmp_path: Path) -> None:
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target = make_ssh_target()
    d = target.remote_dir("upload")
    data = os.urandom(96 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    destination = target.host_path(f"{d}/big.bin")
    seen_partial: list[int] = []

    def partial_size() -> int:  # the upload goes to a new file beside the destination, renamed over it at the end
        sizes = [p.stat().st_size for p in destination.parent.glob(".big.bin.aibx-*")]
        return sizes[0] if sizes else 0

    def reboot_mid_upload() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            size = partial_size()
            if 0 < size < len(data):
                seen_partial.append(size)
                target.reboot(down_s=0.5, refused_s=0.3)
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=reboot_mid_upload)
    watcher.start()
    step_ = {
        "type": "File",
        "name": "payload",
        "sourceUri": "file:big.bin",
        "destination": f"{d}/big.bin",
        "sha256Checksum": hashlib.sha256(data).hexdigest(),
    }
    run = Run(tmp_path, target, write_template(tmp_path, [step_, shell("after", "true")]), *FAST)
    watcher.join()
    assert seen_partial, "the upload finished before the reboot could hit it"
    assert run.code == 0, run.result.text
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    [reboot] = reboots(run)
    assert reboot["during"] == f"an upload to {d}/big.bin" and reboot["confirmed"] is True
    assert f"writing {d}/big.bin again, from the start" in run.result.err
    assert step(run, "payload")["reboots"] == 1 and step(run, "payload")["outcome"] == "succeeded"
    assert [p.name for p in destination.parent.iterdir()] == ["big.bin"]  # the cut attempt's file is gone too


@pytest.mark.usefixtures("ssh_agent_mode")
# ----------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("down", ["refused", "timeout"])
def test_a_vm_that_never_comes_back_is_exit_4_naming_the_step_and_the_last_error(
    make_ssh_target, tmp_path: Path, down: str
) -> None:
    target = make_ssh_target()
    d = target.remote_dir("gone")
    steps = [shell("long", f"echo started > {d}/started", "sleep 60"), shell("next", "true")]
    hole: list[PortBlackhole] = []

    def power_off() -> None:
        wait_for(target.host_path(f"{d}/started"))
        target.kill()
        if down == "timeout":
            hole.append(PortBlackhole(target.host, target.port))

    killer = threading.Thread(target=power_off)
    killer.start()
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST, "--reconnect-timeout", "3s")
    killer.join()
    for h in hole:
        h.close()
    assert run.code == 4, run.result.text
    message = run.result.err
    assert "step 'long': SSH did not come back within 3.00 s (--reconnect-timeout)" in message
    assert ("last error: connection refused" if down == "refused" else "last error: no answer") in message
    assert run.outcomes()["long"] == "timed out" and run.outcomes()["next"] == "not run"
    assert run.report["exitCode"] == 4 and reboots(run) == []
    assert "waiting up to 3.00 s" in run.result.out


@pytest.mark.usefixtures("ssh_agent_mode")
def test_ctrl_c_while_waiting_for_the_vm_exits_130_at_once(make_ssh_target, tmp_path: Path) -> None:
    target = make_ssh_target()
    d = target.remote_dir("sigint")
    template = write_template(tmp_path, [shell("long", f"echo started > {d}/started", "sleep 60")])
    console = tmp_path / "console.txt"
    with console.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aibx", "run", str(template), "--host", target.url, "-i", str(target.client_key),
             "--known-hosts", str(target.known_hosts), "--log", str(tmp_path / "log"), "--report",
             str(tmp_path / "report.json"), *FAST],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        wait_for(target.host_path(f"{d}/started"))
        target.kill()  # and it stays off
        deadline = time.monotonic() + 20
        while "waiting up to 20m00s" not in console.read_text():
            assert time.monotonic() < deadline, console.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, console.read_text()  # (a guard against a hang; speed is bench/'s)
    assert "waiting up to 20m00s" in console.read_text()  # interrupted in the middle of the 20-minute wait
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "interrupted" and report["steps"][-2]["outcome"] == "interrupted"
    assert report["steps"][-1]["outcome"] == "not run"  # the staged script stays, for a rerun


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_port_forward_that_accepts_while_the_vm_is_down_does_not_stall_the_reconnect(
    make_ssh_target, tmp_path: Path
) -> None:
    """While the VM is down its NAT port forward accepts connections and stays silent: each attempt gives up
    after a few seconds without an SSH banner, instead of waiting out the 30 s connect timeout. The reconnect
    window (20 s) is shorter than that timeout: a stalled attempt would time the step out (exit 4)."""
    target = make_ssh_target()
    d = target.remote_dir("silent")
    steps = [shell("long", f"echo started > {d}/started", "sleep 60"), shell("next", f"touch {d}/next")]
    timeline: list[float] = []
    silent: list[SilentPort] = []

    def reboot_behind_a_port_forward() -> None:
        wait_for(target.host_path(f"{d}/started"))
        target.kill()
        silent.append(SilentPort(target.host, target.port))
        time.sleep(2.0)
        silent[0].close()
        target.start()
        timeline.append(time.time())

    rebooter = threading.Thread(target=reboot_behind_a_port_forward)
    rebooter.start()
    run = Run(tmp_path, target, write_template(tmp_path, steps), "--keepalive", "1s", "--connect-timeout", "30s",
              "--reconnect-timeout", "20s")  # fmt: skip
    rebooter.join()
    silent[0].release()
    assert silent[0].accepted  # aibx did knock while the VM was down
    assert run.code == (0 if IS_ROOT else 1), run.result.text  # unprivileged: the boot id cannot change
    assert timeline and run.outcomes()["long"] != "timed out"  # back within the window, not after 30 s


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_dropped_connection_without_a_reboot_fails_the_step(make_ssh_target, tmp_path: Path) -> None:
    """sshd restarts (all connections drop) but the VM does not: the step's outcome is unknown, so it fails,
    where Packer's expect_disconnect would have passed it."""
    target = make_ssh_target()
    d = target.remote_dir("blip")
    boot = target.boot_id
    steps = [shell("long", f"echo started > {d}/started", "sleep 60"), shell("next", f"touch {d}/next")]
    restarter = threading.Thread(
        target=lambda: (wait_for(target.host_path(f"{d}/started")), target.restart_sshd(down_s=0.5))
    )
    restarter.start()
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    restarter.join()
    assert run.code == 1, run.result.text
    assert target.boot_id == boot
    assert "the VM came back without restarting" in run.result.err and f"boot id {boot} unchanged" in run.result.err
    assert "the VM did not restart (boot id unchanged)" in run.result.out
    assert "the VM did NOT restart" in run.log.read_text()
    assert run.outcomes()["long"] == "failed" and run.outcomes()["next"] == "not run"
    assert not target.host_path(f"{d}/next").exists() and reboots(run) == []


@pytest.mark.usefixtures("ssh_agent_mode")
def test_cleanup_after_a_reboot_is_best_effort(make_rebootable_target, tmp_path: Path) -> None:
    """Removing the cut step's temporary script fails after the reboot: a warning, and the run goes on."""
    require_root("a simulated reboot changes the boot id only inside the target's own mount namespace")
    target, _ = make_rebootable_target(down_s=0.3, refused_s=0.2)
    d = target.remote_dir("cleanup")
    failing_rm = target.shims / "rm"
    failing_rm.write_text('#!/bin/sh\necho "rm: cannot remove: Read-only file system" >&2\nexit 1\n')
    failing_rm.chmod(0o755)
    steps = [shell("reboots", "sudo reboot"), shell("next", f"echo ran > {d}/next")]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert "warning: removing the step's temporary files failed: exit code 1" in run.result.err
    assert any("removing the step's temporary files failed" in w for w in run.report["warnings"])
    assert target.host_path(f"{d}/next").read_text() == "ran\n"
    assert step(run, "reboots")["outcome"] == "succeeded"


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_changed_host_key_after_a_reboot_is_refused(make_rebootable_target, tmp_path: Path) -> None:
    """The VM comes back with another host key: aibx refuses it, even with --accept-new-host-key."""
    target, _ = make_rebootable_target(down_s=0.2, refused_s=0.2)
    d = target.remote_dir("hostkey")
    original_reboot = target.reboot

    def reboot_with_a_new_key(**kwargs: object) -> None:
        for suffix in ("", ".pub"):
            Path(f"{target.host_key}{suffix}").unlink()
        from tests.support.sshd import keygen

        keygen(target.host_key)
        original_reboot(**kwargs)  # type: ignore[arg-type]

    target.reboot = reboot_with_a_new_key  # type: ignore[method-assign]
    known_hosts = tmp_path / "known_hosts"  # trusted on first use, as a user would
    steps = [shell("reboots", "sudo reboot"), shell("next", f"touch {d}/next")]
    run = Run(tmp_path, target, write_template(tmp_path, steps), *FAST, "-i", target.client_key, "--known-hosts",
              known_hosts, "--accept-new-host-key", "--reconnect-timeout", "10s", auth=False)  # fmt: skip
    assert run.code == 3, run.result.text
    assert "the host key has CHANGED since this run's first connection" in run.result.err
    assert not target.host_path(f"{d}/next").exists()
    assert run.outcomes()["reboots"] == "connection lost"


@pytest.mark.usefixtures("ssh_agent_mode")
# ----------------------------------------------------------------------------------------------- progress
def test_waiting_for_the_vm_is_reported_as_it_goes(make_ssh_target, tmp_path: Path) -> None:
    """ "waiting for SSH… 1.20 s, last error: connection refused" on the console and in the log, from the engine
    (the interval is 10 s in production; a test makes it short)."""
    import asyncio
    import io

    from aibx.engine.console_view import ConsoleView
    from aibx.engine.customization_log import CustomizationLog
    from aibx.engine.events import EventBus, WaitingForHost
    from aibx.engine.runner import Runner, RunOptions
    from aibx.engine.selection import Selection, select
    from aibx.engine.transports import ConnectOptions, create_transport, parse_target
    from tests.support.plans import linux_plan

    target = make_ssh_target()
    d = target.remote_dir("progress")
    plan = linux_plan([shell("long", f"echo started > {d}/started", "sleep 60")])
    threading.Thread(
        target=lambda: (wait_for(target.host_path(f"{d}/started")), target.reboot(down_s=0, refused_s=2.0))
    ).start()
    out = io.StringIO()
    log = CustomizationLog(tmp_path / "log")
    waits: list[WaitingForHost] = []
    bus = EventBus(None, [ConsoleView(out, out, status_line=False), log, lambda e: waits.append(e)])
    options = ConnectOptions(identity=str(target.client_key), known_hosts=str(target.known_hosts))
    runner = Runner(
        select(plan, Selection()),
        lambda: create_transport(parse_target(target.url), options),
        bus,
        RunOptions(timeout_seconds=60, reconnect_timeout=30, progress_interval=0.5),
        target=target.url,
    )
    result = asyncio.run(runner.run())
    log.close()
    waits = [e for e in waits if isinstance(e, WaitingForHost)]
    assert len(waits) >= 2 and all(e.last_error == "connection refused" and e.phase == "up" for e in waits)
    assert [e.elapsed for e in waits] == sorted(e.elapsed for e in waits)
    assert "waiting for SSH… " in out.getvalue() and ", last error: connection refused" in out.getvalue()
    assert "waiting for SSH: " in (tmp_path / "log").read_text()
    expected = 0 if IS_ROOT else 1  # unprivileged: the boot id cannot change, so no reboot can be confirmed
    assert result.exit_code == expected, result.message


# ----------------------------------------------------------------------------------------------- netns "VMs"
def test_netns_hard_reboot_is_noticed_by_the_keepalive_and_survived(make_netns_vm, tmp_path: Path) -> None:
    """The VM's link goes down before it dies: no FIN, no RST. Only the keepalive notices; then SYNs time out,
    then connections are refused, then SSH is back with a new boot id."""
    vm, _ = make_netns_vm(1, hang_s=0.5, down_s=4.0, refused_s=0.5)
    d = vm.remote_dir("hard")
    first = vm.boot_id
    steps = [shell("reboots", "sudo reboot"), shell("after", f"cat /proc/sys/kernel/random/boot_id > {d}/boot")]
    run = Run(tmp_path, vm, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert boot_id_of(vm, f"{d}/boot") == vm.boot_id != first
    [reboot] = reboots(run)
    assert reboot["bootIdBefore"] == first, reboot
    assert "not responding to keepalive" in reboot["reason"]  # noticed by the keepalive (1 s x 3)
    assert step(run, "reboots")["endedByReboot"] is True


def test_netns_graceful_reboot_with_shutdown_r_now(make_netns_vm, tmp_path: Path) -> None:
    vm, _ = make_netns_vm(2, hang_s=0.2, down_s=1.0, refused_s=0.5, graceful=True)
    d = vm.remote_dir("graceful")
    steps = [
        shell("reboots", "sudo shutdown -r now", f"echo after > {d}/after"),
        shell("after", f"cat /proc/sys/kernel/random/boot_id > {d}/boot"),
    ]
    run = Run(tmp_path, vm, write_template(tmp_path, steps), *FAST)
    assert run.code == 0, run.result.text
    assert vm.host_path(f"{d}/after").exists() and boot_id_of(vm, f"{d}/boot") == vm.boot_id
    assert step(run, "reboots")["exitCode"] == 0 and reboots(run)[0]["expected"] is True


def test_netns_network_failure_without_a_reboot_fails_the_step(make_netns_vm, tmp_path: Path) -> None:
    vm, _ = make_netns_vm(3)
    d = vm.remote_dir("netfail")
    steps = [shell("long", f"echo started > {d}/started", "sleep 60")]
    cutter = threading.Thread(target=lambda: (wait_for(vm.host_path(f"{d}/started")), vm.cut_network(5.0)))
    cutter.start()
    run = Run(tmp_path, vm, write_template(tmp_path, steps), *FAST)
    cutter.join()
    assert run.code == 1, run.result.text
    assert "came back without restarting" in run.result.err
    assert "waiting up to 20m00s" in run.result.out  # the wait started when the keepalive gave up


def test_netns_vm_that_stays_down_is_exit_4_with_timeouts(make_netns_vm, tmp_path: Path) -> None:
    vm, _ = make_netns_vm(4)
    steps = [shell("off", "sudo poweroff")]
    run = Run(tmp_path, vm, write_template(tmp_path, steps), *FAST, "--reconnect-timeout", "4s")
    assert run.code == 4, run.result.text
    assert "SSH did not come back within 4.00 s" in run.result.err and "no answer" in run.result.err


@pytest.mark.usefixtures("ssh_agent_mode")
def test_report_is_json_with_the_reboot_fields(make_rebootable_target, tmp_path: Path) -> None:
    target, _ = make_rebootable_target(down_s=0.2, refused_s=0.2)
    run = Run(tmp_path, target, write_template(tmp_path, [shell("noop", "true")]))
    assert run.code == 0
    document = json.loads(run.report_path.read_text())
    assert document["reboots"] == [] and document["totals"]["reboots"] == 0
    assert all({"reboots", "endedByReboot"} <= set(s) for s in document["steps"])
