"""The ``Restart`` executor (WindowsRestart): the restart command, the new boot, the check command."""

from __future__ import annotations

import asyncio

from aibx.durations import format_duration
from aibx.engine.events import ActionStarted, Outcome
from aibx.engine.executors.base import StepRun, executes
from aibx.engine.session import StepFailed, WindowClosed
from aibx.engine.transports.base import ConnectionLost, TransportError
from aibx.plan import Restart


@executes(Restart)
async def restart(run: StepRun, action: Restart) -> None:
    """WindowsRestart: restart the VM, wait for a new boot, then for the check command to exit 0, all within
    ``restartTimeout``."""
    session, ref, result = run.session, run.ref, run.result
    loop = asyncio.get_running_loop()
    began = loop.time()
    until = began + action.timeout_seconds
    limit = f"restartTimeout ({format_duration(action.timeout_seconds)})"
    session.emit(
        ActionStarted(session.target, step=ref, kind="restart", text=action.command, detail=action.description)
    )
    rebooted = await run.reboots.restart_vm(ref, action.command, until, limit)
    run.reboots.count_reboot(result, rebooted, "the VM restarted")
    if action.check_command:
        await _restart_check(run, action.check_command, until, limit)


async def _restart_check(run: StepRun, command: str, until: float, limit: str) -> None:
    """Run ``command`` until it exits 0 (its exit code decides, unlike Packer's), by ``until``."""
    session, ref, result = run.session, run.ref, run.result
    last = "it never ran"
    while True:
        collector = session.collector(ref)
        session.emit(ActionStarted(session.target, step=ref, kind="exec", text=command, detail="restart check"))
        try:
            code = await session.guarded(session.live().run(command, on_output=collector.feed), until)
        except ConnectionLost as exc:  # it went down again (a second restart, as updates often want)
            rebooted = await run.reboots.ride_out(ref, str(exc), "the restart check", until=until, limit=limit)
            run.reboots.count_reboot(result, rebooted, "the VM restarted again during the restart check")
            continue
        except TransportError as exc:
            raise StepFailed(Outcome.FAILED, f"restart check: {exc}") from None
        except WindowClosed:
            raise StepFailed(Outcome.TIMED_OUT, f"the restart check did not succeed within {limit}; {last}") from None
        finally:
            collector.flush()
        if code == 0:
            return
        last = "last " + collector.failure_message(code, (0,))
        pause = format_duration(session.options.restart_check_interval)
        session.notice(ref, f"restart check: exit code {code}; trying again in {pause}")
        try:
            await session.sleep(session.options.restart_check_interval, until)
        except WindowClosed:
            raise StepFailed(Outcome.TIMED_OUT, f"the restart check did not succeed within {limit}; {last}") from None
