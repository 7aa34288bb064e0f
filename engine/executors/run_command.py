"""The ``Exec`` executor: one command, its exit code, and the reboots around it."""

from __future__ import annotations

import asyncio

from aibx.durations import format_duration
from aibx.engine.collector import OutputCollector
from aibx.engine.events import ActionStarted, Outcome
from aibx.engine.executors.base import StepRun, executes
from aibx.engine.reboots import ENDED_BY_REBOOT, SIGNALLED, one_more_drop
from aibx.engine.session import StepFailed, WindowClosed
from aibx.engine.transports.base import ConnectionLost, TransportError
from aibx.plan import Exec


@executes(Exec)
async def run_command(run: StepRun, action: Exec) -> int | None:
    """Run the command; ride out a reboot under it (the step ended by the reboot), a dropped connection before it
    started (run it then), and a reboot it announced (wait for it before the next step)."""
    session, ref, result = run.session, run.ref, run.result
    stdin = run.stdin(action.stdin)
    script = action.stdin.data.decode(errors="replace") if action.stdin and action.stdin.data else None
    detail = action.description or ""
    if action.stdin and action.stdin.data is None:
        detail = f"{detail}; stdin: {action.stdin.describe()}"
    session.emit(
        ActionStarted(session.target, step=ref, kind="exec", text=action.command, detail=detail, script=script)
    )
    until = None  # the command's own limit (the Sysprep wait), inside the build deadline
    if action.timeout_seconds is not None:
        until = asyncio.get_running_loop().time() + action.timeout_seconds
    drops = 0
    while True:
        collector = session.collector(ref, action.shutdown_marker)
        try:
            code = await session.guarded(
                session.live().run(action.command, stdin=stdin, on_output=collector.feed), until
            )
        except WindowClosed:
            collector.flush()
            raise StepFailed(Outcome.TIMED_OUT, _timeout_message(action, collector)) from None
        except ConnectionLost as exc:
            collector.flush()
            drops = one_more_drop(drops, exc)
            if not exc.command_started:
                rebooted = await run.reboots.ride_out(ref, str(exc), "the start of the command")
                run.reboots.count_reboot(result, rebooted, "the VM restarted before the command started; it ran after")
                session.notice(ref, "the command had not started: running it now")
                continue
            rebooted = await run.reboots.ride_out(ref, str(exc), "the command")
            if rebooted is False:
                raise StepFailed(
                    Outcome.FAILED,
                    f"the connection dropped while the command ran ({exc}), and the VM came back without "
                    f"restarting (boot id {session.boot_id} unchanged): the command's outcome is unknown (it may "
                    "still be running on the VM); aibx does not run it again",
                ) from None
            run.reboots.count_reboot(result, rebooted, ENDED_BY_REBOOT)
            result.ended_by_reboot = True
            _restart_allowed(action)
            return None
        except TransportError as exc:  # the transport could not run it at all (its message says why)
            raise StepFailed(Outcome.FAILED, str(exc)) from None
        finally:
            collector.flush()  # a last line without a newline; flushing twice is harmless
        if collector.saw_shutdown_marker and code in action.valid_exit_codes:
            await run.reboots.announced_reboot(ref, result)
            _restart_allowed(action)
        if code in action.valid_exit_codes:
            return code
        warning = dict(action.warn_exit_codes).get(code)
        if warning is not None:
            session.notice(ref, warning, "warning")
            return code
        if code in SIGNALLED and await run.reboots.killed_by_a_reboot(ref, code, result):
            _restart_allowed(action)
            return None
        raise StepFailed(Outcome.FAILED, collector.failure_message(code, action.valid_exit_codes), code)


def _restart_allowed(action: Exec) -> None:
    """A restart the step may not have (Packer without expect_disconnect) fails it, once the VM is back."""
    if action.restart_fails:
        raise StepFailed(Outcome.FAILED, action.restart_fails)


def _timeout_message(action: Exec, collector: OutputCollector) -> str:
    limit = format_duration(action.timeout_seconds or 0)
    if action.timeout_name:
        limit += f" ({action.timeout_name})"
    message = action.timeout_message or "the command did not finish within {limit}"
    if "{limit}" not in message:
        message += " within {limit}"
    return message.replace("{limit}", limit) + "; it was stopped" + collector.last_lines()
