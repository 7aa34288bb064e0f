"""Dropped connections and restarts: waiting for the VM to go down and come back, and comparing boot identities.

When the connection drops, ``RebootWatcher.ride_out`` waits for the VM within the reconnect window, reconnecting
through ``Transport.reconnect`` (the SSH host key of the first connection is the only one accepted) and reporting
progress; then it compares the boot identity with the one the session had. ``restart_vm`` is the one seam for
every restart the engine makes (WindowsRestart, and WindowsUpdate between rounds).
"""

from __future__ import annotations

import asyncio

from aibx.durations import format_duration
from aibx.engine.events import ConnectionDropped, Outcome, Reconnected, StepRef, WaitingForHost
from aibx.engine.session import Session, StepFailed, StepResult, WindowClosed
from aibx.engine.transports.base import ConnectError, ConnectionLost, TransportError
from aibx.errors import NotLetIn

# how often one action may lose its connection before the step fails (a flapping network)
MAX_DROPS_PER_ACTION = 5
# exit codes 128 + N: killed by signal N (a shell's convention, which the transports follow)
SIGNALLED = range(129, 193)
# after a command killed by a signal, how long the connection may take to drop if it was a reboot (when the VM
# cannot say that it is shutting down)
SIGNAL_GRACE = 5.0
# Windows: ERROR_SHUTDOWN_IN_PROGRESS and ERROR_SHUTDOWN_IS_SCHEDULED, a restart is on its way already
RESTART_UNDER_WAY = {1115: "a shutdown is already in progress", 1190: "a shutdown is already scheduled"}
ENDED_BY_REBOOT = (
    "ended by a reboot before the command finished: it did not run to completion and has no exit code; "
    "counted as succeeded, as AIB and Packer's expect_disconnect do"
)


class NotBack(Exception):
    def __init__(self, last_error: str) -> None:
        super().__init__(last_error)
        self.last_error = last_error


def one_more_drop(drops: int, exc: ConnectionLost) -> int:
    """Count a dropped connection during a command; a VM that keeps dropping it ends the step."""
    drops += 1
    if drops > MAX_DROPS_PER_ACTION:
        raise StepFailed(
            Outcome.CONNECTION_LOST, f"the connection dropped {drops} times during this step: {exc}"
        ) from None
    return drops


class RebootWatcher:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def ride_out(
        self,
        ref: StepRef,
        reason: str,
        during: str,
        *,
        expected: bool = False,
        until: float | None = None,
        limit: str = "",
    ) -> bool | None:
        """The connection dropped (``reason``) or the VM is going down: wait for it to answer again within the
        reconnect window (or ``until``), reconnect and compare the boot identity. Returns True when the VM
        restarted, False when it came back without restarting, None when its boot identity is unknown. Raises
        StepFailed: TIMED_OUT if it does not come back in time, CONNECTION_LOST if it no longer lets us in."""
        transport = self.session.live()
        loop = asyncio.get_running_loop()
        began = loop.time()
        if until is None:
            until = began + self.session.options.reconnect_timeout
        window = round(until - began, 3)  # (began + t) - began is not always t in floating point
        limit = limit or f"{format_duration(window)} (--reconnect-timeout)"
        before = self.session.boot_id
        self.session.emit(
            ConnectionDropped(
                self.session.target, step=ref, reason=reason, during=during, window_seconds=window, expected=expected
            )
        )
        attempts = 0
        while True:
            try:
                boot, tries = await self.wait_until_back(ref, until, reason, began)
            except NotBack as exc:
                raise StepFailed(
                    Outcome.TIMED_OUT,
                    f"{transport.service} did not come back within {limit} after the connection dropped "
                    f"(during {during}); last error: {exc.last_error}",
                ) from None
            attempts += tries
            if boot is not None and boot == before:
                try:
                    stopping = await self.session.guarded(transport.shutting_down(), until)
                except (ConnectionLost, TransportError):
                    continue  # gone again: it was on its way down
                except WindowClosed:
                    stopping = False
                if stopping:  # reached the old system still going down: wait until it is gone
                    try:
                        await self.wait_until_down(ref, before, until, began)
                    except WindowClosed:
                        raise StepFailed(
                            Outcome.TIMED_OUT, f"the VM was still shutting down when {limit} ran out"
                        ) from None
                    continue
            rebooted = None if boot is None or before is None else boot != before
            self.session.emit(
                Reconnected(
                    self.session.target,
                    step=ref,
                    seconds=loop.time() - began,
                    attempts=attempts,
                    boot_id=boot,
                    previous_boot_id=before,
                    rebooted=rebooted,
                    service=transport.service,
                )
            )
            if boot is not None:
                self.session.boot_id = boot
            return rebooted

    async def wait_until_back(self, ref: StepRef, until: float, why: str, began: float) -> tuple[str | None, int]:
        """Reconnect until the VM lets us in and tells its boot identity; returns (boot identity, attempts).
        Raises NotBack with the last error when ``until`` passes."""
        transport = self.session.live()
        loop = asyncio.get_running_loop()
        attempts = 0
        last_error = why
        next_report = loop.time() + self.session.options.progress_interval
        while True:
            attempts += 1
            tried = loop.time()
            try:
                await self.session.guarded(transport.reconnect(), until)
                return await self.session.guarded(transport.boot_identity(), until), attempts
            except NotLetIn as exc:  # the host key, the credentials or the certificate: waiting does not help
                raise StepFailed(
                    Outcome.CONNECTION_LOST, f"cannot reconnect after the connection dropped: {exc}"
                ) from None
            except ConnectError as exc:
                last_error = exc.detail
            except TransportError as exc:  # dropped again while logging in or reading the boot identity
                last_error = str(exc)
            except WindowClosed:
                pending = loop.time() - tried
                if pending >= 1:
                    last_error = f"no answer ({pending:.0f} s into a connection attempt)"
                raise NotBack(last_error) from None
            now = loop.time()
            next_report = self.report_waiting(ref, "up", now, next_report, began, attempts, last_error)
            if now - tried < self.session.options.reconnect_pause:
                try:
                    await self.session.sleep(self.session.options.reconnect_pause, until)
                except WindowClosed:
                    raise NotBack(last_error) from None

    def report_waiting(
        self, ref: StepRef, phase: str, now: float, due: float, began: float, attempts: int, last_error: str
    ) -> float:
        """Say how the wait for the VM goes, every ``progress_interval`` seconds; returns when it is next due."""
        if now < due:
            return due
        self.session.emit(
            WaitingForHost(
                self.session.target,
                step=ref,
                phase=phase,
                elapsed=now - began,
                attempts=attempts,
                last_error=last_error,
                service=self.session.live().service,
            )
        )
        return now + self.session.options.progress_interval

    async def wait_until_down(self, ref: StepRef, before: str | None, until: float, began: float) -> None:
        """Ask the VM for its boot identity every ``down_poll`` seconds until the connection drops (or a new
        boot answers). Raises WindowClosed if it still answers at ``until``."""
        transport = self.session.live()
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.session.options.progress_interval
        polls = 0
        while True:
            polls += 1
            try:
                boot = await self.session.guarded(transport.boot_identity(), until)
            except ConnectionLost:
                return
            except TransportError:  # an error while it shuts down: still up, ask again
                boot = before
            if boot is not None and boot != before:
                return
            next_report = self.report_waiting(ref, "down", loop.time(), next_report, began, polls, "it still answers")
            await self.session.sleep(self.session.options.down_poll, until)

    async def killed_by_a_reboot(self, ref: StepRef, code: int, result: StepResult) -> bool:
        """The command died of a signal (exit code 128 + N). A reboot does that: systemd and other inits send
        SIGTERM to every process before the connection drops, and the exit status may arrive first. If the VM is
        going down (or the connection drops within ``SIGNAL_GRACE`` seconds when the VM cannot say), ride the
        reboot out: the step was ended by it. Otherwise it is an ordinary failure."""
        transport = self.session.live()
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            stopping = await self.session.guarded(transport.shutting_down(), began + SIGNAL_GRACE)
        except ConnectionLost:
            stopping = True
        except (TransportError, WindowClosed):
            return False
        if stopping is False:
            return False
        until = began + (self.session.options.reconnect_timeout if stopping else SIGNAL_GRACE)
        try:
            await self.wait_until_down(ref, self.session.boot_id, until, began)
        except WindowClosed:
            if not stopping:
                return False  # it still answers: the signal came from something else
            raise StepFailed(
                Outcome.TIMED_OUT,
                f"the command was killed (exit code {code}) as the VM began shutting down, but the VM still "
                f"answered after {format_duration(self.session.options.reconnect_timeout)} (--reconnect-timeout)",
            ) from None
        reason = f"killed by a signal (exit code {code}) as the VM went down"
        rebooted = await self.ride_out(ref, reason, "the command")
        if rebooted is False:
            return False
        self.count_reboot(result, rebooted, ENDED_BY_REBOOT)
        result.ended_by_reboot = True
        return True

    async def announced_reboot(self, ref: StepRef, result: StepResult) -> None:
        """The command succeeded and said the VM is going down: wait for it to go and come back restarted."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        until = began + self.session.options.reconnect_timeout
        before = self.session.boot_id
        try:
            await self.wait_until_down(ref, before, until, began)
        except WindowClosed:
            raise StepFailed(
                Outcome.TIMED_OUT,
                f"the VM said it was shutting down, but still answered after "
                f"{format_duration(self.session.options.reconnect_timeout)} (--reconnect-timeout)",
            ) from None
        rebooted = await self.ride_out(
            ref, "the VM went down", "the reboot after the command", expected=True, until=until
        )
        if rebooted is False:
            raise StepFailed(
                Outcome.FAILED,
                f"the VM said it was shutting down, but came back without restarting (boot id {self.session.boot_id} "
                "unchanged)",
            )
        self.count_reboot(result, rebooted, "the command finished, then the VM restarted")

    @staticmethod
    def count_reboot(result: StepResult, rebooted: bool | None, note: str) -> None:
        if rebooted is False:
            return
        result.reboots += 1
        if rebooted is None:
            note += " (not confirmed: the VM's boot identity is unknown)"
        result.notes.append(note)

    async def restart_vm(self, ref: StepRef, command: str, until: float, limit: str) -> bool | None:
        """Restart the VM with ``command`` and wait for it to come back with a new boot identity, by ``until``
        (``limit`` names that limit in messages). The seam for every restart the engine makes: WindowsRestart,
        and WindowsUpdate between rounds. Returns ``rebooted`` as ``_ride_out``; raises StepFailed."""
        transport = self.session.live()
        loop = asyncio.get_running_loop()
        began = loop.time()
        before = self.session.boot_id
        collector = self.session.collector(ref)
        dropped = ""
        try:
            code = await self.session.guarded(transport.run(command, on_output=collector.feed), until)
        except ConnectionLost as exc:  # it went down under the command: that is the restart
            dropped = str(exc)
        except TransportError as exc:
            raise StepFailed(Outcome.FAILED, f"the restart command could not run: {exc}") from None
        except WindowClosed:
            raise StepFailed(Outcome.TIMED_OUT, f"the restart command was still running when {limit} ran out") from None
        else:
            if code in RESTART_UNDER_WAY:
                self.session.notice(ref, f"restart command: exit code {code}, {RESTART_UNDER_WAY[code]}")
            elif code != 0:
                raise StepFailed(Outcome.FAILED, "restart command: " + collector.failure_message(code, (0,)), code)
        finally:
            collector.flush()
        while True:
            if not dropped:
                try:
                    await self.wait_until_down(ref, before, until, began)
                except WindowClosed:
                    raise StepFailed(
                        Outcome.TIMED_OUT,
                        f"the VM did not restart within {limit}: it still answers with the same boot identity",
                    ) from None
            rebooted = await self.ride_out(
                ref, dropped or "the VM went down", "a restart", expected=True, until=until, limit=limit
            )
            if rebooted is not False:
                return rebooted
            # the connection dropped, but the VM is the same boot: the restart has not happened yet
            self.session.notice(ref, "the VM has not restarted yet; waiting for it to go down")
            dropped = ""
