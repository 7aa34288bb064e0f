"""Driving one WindowsRestart step through the engine against a transport (the WinRM server, the Windows shims)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aibx.engine.customization_log import CustomizationLog
from aibx.engine.events import Event, EventBus, Notice, StepFinished
from aibx.engine.run_report import RunReport
from aibx.engine.runner import Runner, RunOptions, RunResult
from aibx.engine.selection import Selection, select
from aibx.engine.transports.base import Transport
from tests.support.plans import windows_plan


@dataclass
class Outcome:
    result: RunResult
    events: list[Event] = field(default_factory=list)
    log: str = ""
    report: dict = field(default_factory=dict)

    def notices(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, Notice)]

    def step(self) -> StepFinished:
        return next(e for e in self.events if isinstance(e, StepFinished) and e.step.name == "restart")


def run_restart(tmp_path: Path, factory: Callable[[], Transport], target: str, step: dict, **options: float) -> Outcome:
    """Run one WindowsRestart step (named "restart") through the engine, with the real log and report."""
    plan = windows_plan([{"type": "WindowsRestart", "name": "restart", **step}])
    events: list[Event] = []
    log = CustomizationLog(tmp_path / "customization.log")
    report = RunReport(tmp_path / "report.json")
    settings: dict[str, float] = {"restart_check_interval": 0.2, "down_poll": 0.1, **options}
    runner = Runner(
        select(plan, Selection(only=["restart"])),
        factory,
        EventBus(None, [events.append, log, report]),
        RunOptions(timeout_seconds=120, reconnect_timeout=60, **settings),
        target=target,
    )
    result = asyncio.run(asyncio.wait_for(runner.run(), 120))
    log.close()
    return Outcome(result, events, (tmp_path / "customization.log").read_text(), report.document())
