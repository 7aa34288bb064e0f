"""The JSON report of a run (``--report FILE``): per step its name, type, start, end, exit code and outcome; the
host's boot identity; the totals. Written when the run ends, whatever way it ends."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

from aibx.engine.customization_log import timestamp
from aibx.engine.events import (
    Connected,
    Event,
    Notice,
    Outcome,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepSkipped,
    StepStarted,
)

from aibx import __version__

FORMAT_VERSION = 1
STEP_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED, Outcome.NOT_RUN)


def _camel(text: str) -> str:
    first, *rest = text.split()
    return first + "".join(word.capitalize() for word in rest)


class RunReport:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict[str, object] = {}
        self.steps: dict[int, dict[str, object]] = {}
        self.warnings: list[str] = []

    def _step(self, ref: StepRef) -> dict[str, object]:
        return self.steps.setdefault(
            ref.index,
            {"index": ref.index, "name": ref.name, "type": ref.kind, "phase": ref.phase, "outcome": None,
             "exitCode": None, "start": None, "end": None, "durationSeconds": None, "message": ""},
        )  # fmt: skip

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.data.update(
                aibx=__version__, formatVersion=FORMAT_VERSION, template=event.template, os=event.os_type,
                target=event.target, commandLine=event.command_line, buildTimeoutSeconds=event.timeout_seconds,
                bootId=None,
            )  # fmt: skip
            for ref in event.steps:
                self._step(ref)
        elif isinstance(event, Connected):
            self.data["bootId"] = event.boot_id
            self.data["connectSeconds"] = round(event.seconds, 3)
        elif isinstance(event, StepStarted):
            self._step(event.step)["start"] = timestamp(event.time)
        elif isinstance(event, StepFinished):
            step = self._step(event.step)
            step.update(
                outcome=event.outcome.value, exitCode=event.exit_code, end=timestamp(event.ended), message=event.message
            )
            if event.started is not None:
                step["start"] = timestamp(event.started)
                step["durationSeconds"] = round(event.ended - event.started, 3)
        elif isinstance(event, StepSkipped):
            self._step(event.step).update(outcome=event.outcome.value, message=event.reason)
        elif isinstance(event, Notice) and event.level == "warning":
            self.warnings.append(event.message)
        elif isinstance(event, RunFinished):
            self.data.update(
                outcome=event.outcome.value,
                exitCode=event.exit_code,
                message=event.message,
                start=timestamp(event.started),
                end=timestamp(event.ended),
                durationSeconds=round(event.ended - event.started, 3),
                bootId=event.boot_id,
            )
            self.write()

    def document(self) -> dict[str, object]:
        steps = [self.steps[i] for i in sorted(self.steps)]
        counts = collections.Counter(str(s["outcome"]) for s in steps)
        totals = {"steps": len(steps)}
        for outcome in Outcome:  # every outcome a step can have, in camelCase: succeeded, notRun, timedOut, ...
            if outcome in STEP_OUTCOMES or counts[outcome.value]:
                totals[_camel(outcome.value)] = counts[outcome.value]
        return {**self.data, "steps": steps, "warnings": self.warnings, "totals": totals}

    def write(self) -> None:
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(self.document(), indent=2) + "\n", encoding="utf-8")
        os.replace(temp, self.path)
