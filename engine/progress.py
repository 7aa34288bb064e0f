"""Progress of long transfers, measured where the bytes move and reported as events (never printed from here).

A transport or the fetcher calls ``TransferMeter.update(transferred, total)`` as bytes go (on the event loop's
thread); the meter stays quiet for a transfer that ends within ``after`` seconds (every script upload), then
reports at most once every ``every`` seconds, and once more from ``finish()``. How often the console shows a
report is the console's business (``console_view.ProgressTiming``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aibx.engine.events import Event, StepRef, TransferProgress

# report(transferred, total, elapsed seconds, finished)
Report = Callable[[int, "int | None", float, bool], None]


@dataclass(frozen=True)
class TransferTiming:
    after: float = 1.0  # a transfer shorter than this says nothing
    every: float = 0.5  # then at most one report this often


class TransferMeter:
    def __init__(
        self,
        report: Report,
        total: int | None = None,
        timing: TransferTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.report = report
        self.total = total
        self.timing = timing or TransferTiming()
        self.clock = clock
        self.started = clock()
        self.transferred = 0
        self.reported_at: float | None = None  # when the last report went out; None: none yet

    def update(self, transferred: int, total: int | None = None) -> None:
        self.transferred = transferred
        if total is not None:
            self.total = total
        now = self.clock()
        if self.reported_at is None:
            if now - self.started < self.timing.after:
                return
        elif now - self.reported_at < self.timing.every:
            return
        self.reported_at = now
        self.report(transferred, self.total, now - self.started, False)

    def finish(self) -> None:
        """The transfer is complete: a last report, if it reported at all."""
        if self.reported_at is not None:
            self.report(self.transferred, self.total, self.clock() - self.started, True)


def event_meter(
    emit: Callable[[Event], None],
    target: str,
    step: StepRef | None,
    direction: str,
    path: str,
    total: int | None = None,
    timing: TransferTiming | None = None,
) -> TransferMeter:
    """A meter whose reports are TransferProgress events of ``step`` (None: of no step, a fleet's download)."""

    def report(transferred: int, total: int | None, elapsed: float, finished: bool) -> None:
        emit(
            TransferProgress(
                target,
                step=step,
                direction=direction,
                path=path,
                transferred=transferred,
                total=total,
                elapsed=elapsed,
                finished=finished,
            )
        )

    return TransferMeter(report, total, timing)
