"""The engine's logic against the scripted fake VM (tests/support/fake_transport.py), in milliseconds: the Session
(deadline, interrupts, connect), the RebootWatcher (drops, restarts, boot identities) and every executor.

The same behaviours are proven against real targets in test_run_ssh.py, test_reboots.py, test_faults.py,
test_windows_restart.py, test_run_winrm.py and the QEMU tests; these tests pin the state machine's branches."""

from __future__ import annotations

import asyncio
import json

import pytest

from aibx.engine.events import ConnectionDropped, Notice, Output, Reconnected, UpdateRound
from aibx.engine.executors import executor_for
from aibx.engine.reboots import MAX_DROPS_PER_ACTION
from aibx.engine.runner import Runner
from aibx.engine.transports.base import ConnectError
from aibx.plan import Content, Exec, Restart, Upload, WindowsUpdate
from tests.support.fake_transport import FakeRun, FakeVM, Reply, fast_options, one_step_plan, run_plan


def run(vm: FakeVM, actions: list, **kw: object) -> FakeRun:
    return asyncio.run(run_plan(vm, actions, **kw))  # type: ignore[arg-type]


def step(fake: FakeRun):  # the one step's result
    [result] = fake.result.steps
    return result


def output(fake: FakeRun, stream: str = "stdout") -> list[str]:
    return [line for e in fake.of(Output) if e.stream == stream for line in e.lines]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ registry
@pytest.mark.parametrize(
    "action",
    [Exec("true"), Upload("/tmp/x", Content(data=b"x")), Restart("r", None, 1.0), WindowsUpdate("c", (), 1)],
)
def test_every_action_type_has_an_executor(action: object) -> None:
    assert executor_for(action) is not None  # type: ignore[arg-type]


def test_an_action_without_an_executor_is_refused_before_connecting() -> None:
    vm = FakeVM()
    fake = run(vm, [object()])  # type: ignore[list-item]
    assert fake.result.outcome.value == "refused" and fake.result.exit_code == 2
    assert "object is not supported by aibx run yet" in fake.result.message
    assert vm.commands == []


# ------------------------------------------------------------------------------------------------ Session
def test_connect_refused_ends_the_run_with_exit_3_and_nothing_run() -> None:
    vm = FakeVM([Reply()], refuse_connect=ConnectError("refused", "fake", "connection refused"))
    fake = run(vm, [Exec("echo hi")])
    assert fake.result.exit_code == 3 and fake.result.outcome.value == "connect failed"
    assert vm.commands == [] and step(fake).outcome.value == "not run"


def test_the_build_deadline_stops_a_command_that_hangs() -> None:
    vm = FakeVM([Reply(hang=True)])
    fake = run(vm, [Exec("sleep 1000")], options=fast_options(timeout_seconds=0.05))
    assert fake.result.exit_code == 4 and step(fake).outcome.value == "timed out"
    assert "the build timeout of" in step(fake).message and "the remote process was stopped" in step(fake).message
    assert vm.stopped == ["sleep 1000"]


def test_an_interrupt_stops_the_command_and_ends_the_run_with_130() -> None:
    vm = FakeVM([Reply(hang=True)])

    def interrupt_soon(runner: Runner) -> None:
        asyncio.get_running_loop().call_later(0.02, runner.interrupt)

    fake = run(vm, [Exec("sleep 1000")], while_running=interrupt_soon)
    assert fake.result.exit_code == 130 and step(fake).outcome.value == "interrupted"
    assert vm.stopped == ["sleep 1000"]


def test_a_commands_own_limit_times_the_step_out_with_its_message_and_last_lines() -> None:
    vm = FakeVM([Reply(hang=True, stdout=b"waiting for sysprep\n")])
    action = Exec("sysprep", timeout_seconds=0.02, timeout_message="Sysprep did not finish", timeout_name="--x")
    fake = run(vm, [action])
    assert step(fake).outcome.value == "timed out" and fake.result.exit_code == 4
    assert step(fake).message.startswith("Sysprep did not finish within 0.02 s (--x); it was stopped")
    assert "waiting for sysprep" in step(fake).message


# ------------------------------------------------------------------------------------------------ Exec
def test_exec_streams_whole_lines_from_slow_output() -> None:
    chunks = [("stdout", b"one\ntw", 0.001), ("stdout", b"o\nthree", 0.001), ("stderr", b"warn\n", 0.0)]
    fake = run(FakeVM([Reply(chunks=chunks)]), [Exec("slow")])
    assert fake.result.exit_code == 0
    assert output(fake) == ["one", "two", "three"] and output(fake, "stderr") == ["warn"]


def test_exec_failure_quotes_stderr_and_ends_the_run_with_1() -> None:
    fake = run(FakeVM([Reply(exit_code=3, stderr=b"no such package\n")]), [Exec("apt-get install nope")])
    assert fake.result.exit_code == 1 and step(fake).exit_code == 3
    assert step(fake).message == "exit code 3; last lines of stderr:\n  no such package"


def test_exec_allowed_and_warning_exit_codes() -> None:
    fake = run(FakeVM([Reply(exit_code=5)]), [Exec("a", valid_exit_codes=(0, 5))])
    assert fake.result.exit_code == 0 and step(fake).exit_code == 5
    fake = run(FakeVM([Reply(exit_code=197)]), [Exec("d", warn_exit_codes=((197, "the script is missing"),))])
    assert fake.result.exit_code == 0
    assert [e.message for e in fake.of(Notice) if e.level == "warning"] == ["the script is missing"]  # type: ignore[attr-defined]


def test_exec_runs_again_when_the_connection_dropped_before_it_started() -> None:
    vm = FakeVM([Reply(drop=True, started=False), Reply(stdout=b"ran\n")])
    fake = run(vm, [Exec("install")])
    assert fake.result.exit_code == 0 and vm.commands == ["install", "install"]
    assert step(fake).reboots == 0 and output(fake) == ["ran"]


def test_exec_cut_short_by_a_reboot_counts_as_succeeded_without_an_exit_code() -> None:
    vm = FakeVM([Reply(drop=True, reboot=True, down_for=3)])
    fake = run(vm, [Exec("sudo reboot")])
    result = step(fake)
    assert fake.result.exit_code == 0 and result.ended_by_reboot and result.reboots == 1
    assert result.exit_code is None and vm.reconnects == 4 and fake.result.boot_id == "boot-2"
    [back] = fake.of(Reconnected)
    assert back.rebooted is True and back.previous_boot_id == "boot-1"  # type: ignore[attr-defined]
    assert back.attempts == 4  # type: ignore[attr-defined]


def test_exec_whose_connection_dropped_without_a_reboot_fails_and_is_not_run_again() -> None:
    vm = FakeVM([Reply(drop=True)])
    fake = run(vm, [Exec("long job")])
    assert fake.result.exit_code == 1 and vm.commands.count("long job") == 1
    assert "the command's outcome is unknown" in step(fake).message


def test_a_vm_that_keeps_dropping_the_connection_ends_the_step() -> None:
    vm = FakeVM([Reply(drop=True, started=False) for _ in range(MAX_DROPS_PER_ACTION + 1)])
    fake = run(vm, [Exec("flaky")])
    assert step(fake).outcome.value == "connection lost" and fake.result.exit_code == 3
    assert f"dropped {MAX_DROPS_PER_ACTION + 1} times" in step(fake).message


def test_exec_that_announced_a_reboot_waits_for_it_before_the_next_step() -> None:
    vm = FakeVM([Reply(stderr=b"AIBX-GOING-DOWN\n", reboot=True, down_for=1), Reply(match="next")])
    plan = one_step_plan([Exec("update-and-reboot", shutdown_marker="AIBX-GOING-DOWN"), Exec("next")])
    fake = run(vm, plan)
    assert fake.result.exit_code == 0 and vm.commands == ["update-and-reboot", "next"]
    assert step(fake).reboots == 1 and not step(fake).ended_by_reboot
    assert step(fake).message == "the command finished, then the VM restarted"


def test_exec_killed_by_a_signal_as_the_vm_went_down_was_ended_by_the_reboot() -> None:
    fake = run(FakeVM([Reply(exit_code=143, reboot=True)]), [Exec("sudo reboot")])
    assert fake.result.exit_code == 0 and step(fake).ended_by_reboot and step(fake).reboots == 1


def test_exec_killed_by_a_signal_on_a_vm_that_stays_up_fails() -> None:
    fake = run(FakeVM([Reply(exit_code=143)], shutting_down=False), [Exec("killed")])
    assert fake.result.exit_code == 1 and step(fake).exit_code == 143


def test_a_changed_host_key_on_reconnect_stops_waiting_at_once() -> None:
    vm = FakeVM([Reply(drop=True, reboot=True)], refuse_reconnect=ConnectError("hostkey", "fake", "key changed"))
    fake = run(vm, [Exec("sudo reboot")])
    assert fake.result.exit_code == 3 and vm.reconnects == 1
    assert "cannot reconnect after the connection dropped" in step(fake).message


def test_a_vm_that_does_not_come_back_times_the_step_out() -> None:
    vm = FakeVM([Reply(drop=True, reboot=True, down_for=10**9)])
    fake = run(vm, [Exec("sudo poweroff")], options=fast_options(reconnect_timeout=0.05))
    assert step(fake).outcome.value == "timed out" and fake.result.exit_code == 4
    assert "did not come back within" in step(fake).message
    [dropped] = fake.of(ConnectionDropped)
    assert dropped.during == "the command"  # type: ignore[attr-defined]


def test_cleanup_runs_after_a_failure_and_its_own_failure_is_a_warning() -> None:
    vm = FakeVM([Reply(exit_code=1), Reply(match="rm", exit_code=2)])
    plan = one_step_plan([Exec("false")], cleanup=[Exec("rm -f /tmp/x")])
    fake = run(vm, plan)  # type: ignore[arg-type]
    assert vm.commands == ["false", "rm -f /tmp/x"] and fake.result.exit_code == 1
    assert any("clean-up failed: exit code 2" in e.message for e in fake.of(Notice))  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ Upload
def test_upload_writes_the_bytes_and_starts_again_after_a_drop() -> None:
    vm = FakeVM([Reply(match="put /tmp/s.sh", drop=True, reboot=True)])
    fake = run(vm, [Upload("/tmp/s.sh", Content(data=b"echo hi\n"), 0o755)])
    assert fake.result.exit_code == 0 and vm.uploads == {"/tmp/s.sh": b"echo hi\n"}
    assert step(fake).reboots == 1
    assert any("writing /tmp/s.sh again" in e.message for e in fake.of(Notice))  # type: ignore[attr-defined]


def test_upload_to_a_missing_folder_fails_with_the_reason() -> None:
    vm = FakeVM([Reply(match="put /nope/s.sh", fail="No such file or directory")])
    fake = run(vm, [Upload("/nope/s.sh", Content(data=b"x"))])
    assert fake.result.exit_code == 1 and step(fake).message == "cannot write /nope/s.sh: No such file or directory"


# ------------------------------------------------------------------------------------------------ Restart
def test_restart_waits_for_a_new_boot_then_for_the_check_command() -> None:
    vm = FakeVM([Reply(match="shutdown", drop=True, reboot=True, down_for=2), Reply(exit_code=1), Reply()])
    fake = run(vm, [Restart("shutdown /r", "check", 5.0)])
    assert fake.result.exit_code == 0 and step(fake).reboots == 1
    assert vm.commands == ["shutdown /r", "check", "check"]


def test_restart_already_under_way_is_a_notice_not_a_failure() -> None:
    vm = FakeVM([Reply(exit_code=1115, reboot=True)])
    fake = run(vm, [Restart("shutdown /r", None, 5.0)])
    assert fake.result.exit_code == 0 and step(fake).reboots == 1
    assert any("a shutdown is already in progress" in e.message for e in fake.of(Notice))  # type: ignore[attr-defined]


def test_restart_that_never_happens_times_out_on_restart_timeout() -> None:
    vm = FakeVM([Reply(exit_code=0)])
    fake = run(vm, [Restart("shutdown /r", None, 0.05)])
    assert step(fake).outcome.value == "timed out" and fake.result.exit_code == 4
    assert "the VM did not restart within restartTimeout (0.05 s)" in step(fake).message


# ------------------------------------------------------------------------------------------------ WindowsUpdate
def round_line(**fields: object) -> bytes:
    return b"AIBX-WU-RESULT " + json.dumps(fields).encode() + b"\n"


def test_windows_update_restarts_between_rounds_until_nothing_is_left() -> None:
    vm = FakeVM(
        [
            Reply(match="wu", stdout=round_line(status="reboot-required", installed=2, rebootRequired=True)),
            Reply(match="shutdown", drop=True, reboot=True),
            Reply(match="wu", stdout=round_line(status="none")),
        ]
    )
    fake = run(vm, [WindowsUpdate("IsInstalled=0", (), 1000, command="wu")])
    assert fake.result.exit_code == 0 and step(fake).reboots == 1
    rounds = fake.of(UpdateRound)
    assert [(r.number, r.next) for r in rounds] == [(1, "restart"), (2, "done")]  # type: ignore[attr-defined]
    assert output(fake) == []  # the result lines are read, not shown


def test_windows_update_round_cut_by_a_restart_is_followed_by_another() -> None:
    vm = FakeVM([Reply(match="wu", drop=True, reboot=True), Reply(match="wu", stdout=round_line(status="none"))])
    fake = run(vm, [WindowsUpdate("c", (), 10, command="wu")])
    assert fake.result.exit_code == 0 and step(fake).reboots == 1
    assert [r.number for r in fake.of(UpdateRound)] == [2]  # type: ignore[attr-defined]


def test_windows_update_round_dropped_without_a_restart_fails_and_starts_no_second_task() -> None:
    vm = FakeVM([Reply(match="wu", drop=True)])
    fake = run(vm, [WindowsUpdate("c", (), 10, command="wu")])
    assert fake.result.exit_code == 1 and vm.commands.count("wu") == 1
    assert "aibx does not start another beside it" in step(fake).message


def test_windows_update_round_without_its_result_line_fails() -> None:
    vm = FakeVM([Reply(match="wu", exit_code=1, stderr=b"Access denied\n")])
    fake = run(vm, [WindowsUpdate("c", (), 10, command="wu")])
    assert fake.result.exit_code == 1 and "ended without its result line" in step(fake).message
    assert "Access denied" in step(fake).message


def test_windows_update_stops_at_the_round_limit() -> None:
    pending = round_line(status="installed", installed=1, more=True)
    vm = FakeVM([Reply(match="wu", stdout=pending) for _ in range(3)])
    fake = run(vm, [WindowsUpdate("c", (), 10, command="wu", max_rounds=2)])
    assert fake.result.exit_code == 1 and "after 2 rounds (the limit)" in step(fake).message
