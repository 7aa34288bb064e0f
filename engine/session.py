"""The session with one VM: the connection, the build deadline, interrupts and guarded awaits.

Every await on the VM goes through ``Session.guarded``: it ends at the build deadline (``DeadlineExceeded``), at an
action's own limit when that comes first (``WindowClosed``), or when the run is interrupted (``Interrupted``).
The session also knows the VM's boot identity; ``aibx.engine.reboots.RebootWatcher`` rides out dropped connections
and restarts with it. Executors (``aibx.engine.executors``) get the session through a ``StepRun``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aibx.durations import format_duration
from aibx.engine.collector import OutputCollector
from aibx.engine.events import Connected, Connecting, Event, Notice, Outcome, StepRef
from aibx.engine.fetch import FetchPolicy
from aibx.engine.progress import TransferMeter, TransferTiming, event_meter
from aibx.engine.transports.base import Transport

T = TypeVar("T")


@dataclass
class RunOptions:
    timeout_seconds: float  # the whole run, connecting included (buildTimeoutInMinutes, --timeout or --timeout-minutes)
    reconnect_timeout: float = 20 * 60.0  # how long a VM may take to come back after the connection dropped
    cleanup_timeout: float = 15.0  # removing temporary files after an interrupt, the deadline or a reboot
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    command_line: str = ""
    # between connection attempts that failed at once (connection refused: one SYN and one RST each)
    reconnect_pause: float = 0.1
    progress_interval: float = 10.0  # how often a wait for the VM is reported
    down_poll: float = 0.5  # how often a VM on its way down is asked whether it still runs
    restart_check_interval: float = 5.0  # between restartCheckCommand attempts (as Packer)
    transfer: TransferTiming = field(default_factory=TransferTiming)  # when long uploads and downloads report


@dataclass
class StepResult:
    ref: StepRef
    outcome: Outcome
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    message: str = ""
    reboots: int = 0
    ended_by_reboot: bool = False
    notes: list[str] = field(default_factory=list)  # what happened on the way (reboots), for the report


class Interrupted(Exception):
    """The run was interrupted (Ctrl-C) while an await was under way."""


class DeadlineExceeded(Exception):
    """The build deadline passed."""


class WindowClosed(Exception):
    """An action's own time limit (the reconnect window, restartTimeout) ran out before the build deadline."""


class StepFailed(Exception):
    """The step ends with ``outcome`` (failed, timed out, connection lost) and ``message``."""

    def __init__(self, outcome: Outcome, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.outcome, self.message, self.exit_code = outcome, message, exit_code


class Session:
    def __init__(
        self,
        transport_factory: Callable[[], Transport],
        emit: Callable[[Event], None],
        options: RunOptions,
        target: str,
    ) -> None:
        self.transport_factory = transport_factory
        self.emit = emit
        self.options = options
        self.target = target
        self.transport: Transport | None = None
        self.boot_id: str | None = None
        self.interrupted = False
        self.on_interrupt: list[Callable[[], None]] = []  # what else stops on Ctrl-C (a download)
        self._current: asyncio.Future[Any] | None = None
        self._deadline = 0.0

    # ------------------------------------------------------------------------------------------ control
    def start_clock(self) -> None:
        self._deadline = asyncio.get_running_loop().time() + self.options.timeout_seconds

    def interrupt(self) -> None:
        """Stop the operation under way (its remote process is stopped by the transport)."""
        self.interrupted = True
        for stop in self.on_interrupt:
            stop()
        if self._current is not None and not self._current.done():
            self._current.cancel()

    def deadline_message(self) -> str:
        minutes = self.options.timeout_seconds / 60
        return f"the build timeout of {minutes:g} minutes expired (buildTimeoutInMinutes, or --timeout)"

    def live(self) -> Transport:
        """The connected transport (only asked for after ``connect``)."""
        if self.transport is None:
            raise RuntimeError("the session is not connected")
        return self.transport

    # ------------------------------------------------------------------------------------------ guarded awaits
    async def guarded(self, coro: Coroutine[Any, Any, T], until: float | None = None) -> T:
        """Await ``coro`` within the deadline (and ``until``, an action's own limit, if it comes first),
        cancellable by ``interrupt()``. Raises DeadlineExceeded, WindowClosed or Interrupted."""
        loop = asyncio.get_running_loop()
        window = until is not None and until < self._deadline
        limit = until if window and until is not None else self._deadline
        remaining = limit - loop.time()
        if self.interrupted or remaining <= 0:
            coro.close()
            if self.interrupted:
                raise Interrupted()
            raise WindowClosed() if window else DeadlineExceeded()
        task = asyncio.ensure_future(coro)
        self._current = task
        try:
            return await asyncio.wait_for(task, remaining)
        except asyncio.TimeoutError:
            if self.interrupted:
                raise Interrupted() from None
            raise (WindowClosed() if window else DeadlineExceeded()) from None
        except asyncio.CancelledError:
            if self.interrupted and task.cancelled():
                raise Interrupted() from None
            raise
        finally:
            self._current = None

    async def sleep(self, seconds: float, until: float | None = None) -> None:
        limit = min(self._deadline, until if until is not None else self._deadline)
        remaining = limit - asyncio.get_running_loop().time()
        await self.guarded(asyncio.sleep(max(0.0, min(seconds, remaining))), until)

    # ------------------------------------------------------------------------------------------ connecting
    async def connect(self) -> None:
        transport = self.transport_factory()
        self.emit(Connecting(self.target))
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self.guarded(transport.connect())
        self.transport = transport
        note = transport.connect_note
        if note:
            self.emit(Notice(self.target, message=note, level="warning"))
        self.boot_id = await self.guarded(transport.boot_identity())
        self.emit(Connected(self.target, boot_id=self.boot_id, seconds=loop.time() - began))

    async def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.transport.close(), 10)

    # ------------------------------------------------------------------------------------------ telling
    def notice(self, ref: StepRef | None, message: str, level: str = "info") -> None:
        self.emit(Notice(self.target, message=message, level=level, step=ref))

    def collector(self, ref: StepRef, shutdown_marker: str = "", capture: str = "") -> OutputCollector:
        return OutputCollector(self.emit, self.target, ref, shutdown_marker, capture)

    def transfer_meter(self, ref: StepRef | None, direction: str, path: str, total: int | None = None) -> TransferMeter:
        """A meter whose reports become TransferProgress events of ``ref`` (None: of no step)."""
        return event_meter(self.emit, self.target, ref, direction, path, total, self.options.transfer)

    def reconnect_limit(self) -> str:
        return f"{format_duration(self.options.reconnect_timeout)} (--reconnect-timeout)"


class Pilot(Protocol):
    """Someone at a terminal who decides (``--step``, ``--on-error ask``); None: nobody, the run goes on alone.
    Waiting for an answer is inside the build deadline and ends with an interrupt."""

    async def before_step(self, ref: StepRef) -> str:
        """Before a step (``--step``): "run", "skip" or "abort"."""
        ...

    async def after_failure(self, ref: StepRef, message: str) -> str:
        """After a step failed (``--on-error ask``): "retry", "skip" or "abort"."""
        ...
