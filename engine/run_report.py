"""The JSON report of a run (``--report FILE``, or standard output with ``--format json``): per step its name,
type, start, end, exit code and outcome; the host's boot identity; every reboot (when, during what, how long the VM
was away, the boot identities); for a WindowsUpdate step each round (counts, and every selected update's KB, title,
result and HRESULT); the totals. Written when the run ends, whatever way it ends. For many hosts, ``FleetReport``
holds one such document per host.
"""

from __future__ import annotations

import collections
import functools
import json
import os
from pathlib import Path

from aibx import __version__
from aibx.engine.customization_log import timestamp
from aibx.engine.events import (
    Connected,
    ConnectionDropped,
    Event,
    Notice,
    Outcome,
    Reconnected,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepSkipped,
    StepStarted,
    UpdateRound,
)

FORMAT_VERSION = 1
STEP_OUTCOMES = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED, Outcome.NOT_RUN)


def _camel(text: str) -> str:
    first, *rest = text.split()
    return first + "".join(word.capitalize() for word in rest)


class RunReport:
    """The report of one host's run; with ``path`` None it is only kept (``document()``), for a fleet report."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.data: dict[str, object] = {}
        self.steps: dict[int, dict[str, object]] = {}
        self.warnings: list[str] = []
        self.reboots: list[dict[str, object]] = []
        self._dropped: ConnectionDropped | None = None
        self.finished = False

    def _step(self, ref: StepRef) -> dict[str, object]:
        return self.steps.setdefault(
            ref.index,
            {"index": ref.index, "name": ref.name, "type": ref.kind, "phase": ref.phase, "outcome": None,
             "exitCode": None, "start": None, "end": None, "durationSeconds": None, "message": "", "reboots": 0,
             "endedByReboot": False},
        )  # fmt: skip

    def __call__(self, event: Event) -> None:
        self._on(event)

    @functools.singledispatchmethod
    def _on(self, event: Event) -> None:
        """An event this subscriber does not record."""

    @_on.register
    def _(self, event: RunStarted) -> None:
        self.data.update(
            aibx=__version__, formatVersion=FORMAT_VERSION, template=event.template, os=event.os_type,
            target=event.target, commandLine=event.command_line, buildTimeoutSeconds=event.timeout_seconds,
            bootId=None,
        )  # fmt: skip
        for ref in event.steps:
            self._step(ref)

    @_on.register
    def _(self, event: Connected) -> None:
        self.data["bootId"] = event.boot_id
        self.data["connectSeconds"] = round(event.seconds, 3)

    @_on.register
    def _(self, event: StepStarted) -> None:
        self._step(event.step)["start"] = timestamp(event.time)

    @_on.register
    def _(self, event: StepFinished) -> None:
        step = self._step(event.step)
        step.update(
            outcome=event.outcome.value, exitCode=event.exit_code, end=timestamp(event.ended), message=event.message
        )
        if event.started is not None:
            step["start"] = timestamp(event.started)
            step["durationSeconds"] = round(event.ended - event.started, 3)
        step.update(reboots=event.reboots, endedByReboot=event.ended_by_reboot)

    @_on.register
    def _(self, event: ConnectionDropped) -> None:
        self._dropped = event

    @_on.register
    def _(self, event: Reconnected) -> None:
        dropped = self._dropped
        self._dropped = None
        if event.rebooted is False:
            return
        self.reboots.append(
            {
                "step": event.step.name if event.step else None,
                "stepIndex": event.step.index if event.step else None,
                "during": dropped.during if dropped else None,
                "expected": dropped.expected if dropped else None,
                "reason": dropped.reason if dropped else None,
                "droppedAt": timestamp(dropped.time) if dropped else None,
                "backAt": timestamp(event.time),
                "awaySeconds": round(event.seconds, 3),
                "attempts": event.attempts,
                "bootIdBefore": event.previous_boot_id,
                "bootIdAfter": event.boot_id,
                "confirmed": event.rebooted is True,
            }
        )

    @_on.register
    def _(self, event: UpdateRound) -> None:
        rounds = self._step(event.step).setdefault("windowsUpdateRounds", [])
        assert isinstance(rounds, list)
        rounds.append(
            {
                "round": event.number,
                "found": event.found,
                "selected": event.selected,
                "skipped": event.skipped,
                "installed": event.installed,
                "failed": event.failed,
                "rebootRequired": event.reboot_required,
                "next": event.next,
                "updates": [
                    {"kb": kb, "title": title, "result": outcome, "hresult": hresult}
                    for kb, title, outcome, hresult in event.updates
                ],
            }
        )

    @_on.register
    def _(self, event: StepSkipped) -> None:
        self._step(event.step).update(outcome=event.outcome.value, message=event.reason)

    @_on.register
    def _(self, event: Notice) -> None:
        if event.level != "warning":
            return
        self.warnings.append(event.message)

    @_on.register
    def _(self, event: RunFinished) -> None:
        self.data.update(
            outcome=event.outcome.value,
            exitCode=event.exit_code,
            message=event.message,
            start=timestamp(event.started),
            end=timestamp(event.ended),
            durationSeconds=round(event.ended - event.started, 3),
            bootId=event.boot_id,
        )
        self.finished = True
        if self.path is not None:
            self.write()

    def document(self) -> dict[str, object]:
        steps = [self.steps[i] for i in sorted(self.steps)]
        counts = collections.Counter(str(s["outcome"]) for s in steps)
        totals = {"steps": len(steps)}
        for outcome in Outcome:  # every outcome a step can have, in camelCase: succeeded, notRun, timedOut, ...
            if outcome in STEP_OUTCOMES or counts[outcome.value]:
                totals[_camel(outcome.value)] = counts[outcome.value]
        totals["reboots"] = len(self.reboots)
        return {**self.data, "steps": steps, "reboots": self.reboots, "warnings": self.warnings, "totals": totals}

    def write(self) -> None:
        assert self.path is not None
        write_json(self.path, self.document())


def write_json(path: Path, document: object) -> None:
    """Replace ``path`` atomically: a reader never sees half a report."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # never a .NNN.tmp left behind (a folder in the way, a full disk)
        raise


class FleetReport:
    """``--report FILE`` for many hosts: the run's facts once, then one document per host (what a single host's
    report holds, plus ``host`` and ``log``), and the number of hosts by outcome."""

    SHARED = ("aibx", "formatVersion", "template", "os", "commandLine")

    def __init__(self, path: str | Path | None, template: str, command_line: str) -> None:
        self.path = Path(path) if path is not None else None  # None: only kept (``document()``)
        self.template = template
        self.command_line = command_line
        self.hosts: list[tuple[str, RunReport, str]] = []  # (host as written, its report, its log file)

    def add(self, host: str, report: RunReport, log: str) -> None:
        self.hosts.append((host, report, log))

    def document(self, exit_code: int, parallel: int) -> dict[str, object]:
        documents = []
        os_type = None
        for text, report, log in self.hosts:
            doc = {k: v for k, v in report.document().items() if k not in self.SHARED or k == "os"}
            os_type = doc.pop("os", None) or os_type
            doc.setdefault("outcome", "not run")
            documents.append({"host": text, "log": log, **doc})
        counts = collections.Counter(str(d["outcome"]) for d in documents)
        return {
            "aibx": __version__,
            "formatVersion": FORMAT_VERSION,
            "template": self.template,
            "os": os_type,
            "commandLine": self.command_line,
            "parallel": parallel,
            "exitCode": exit_code,
            "hosts": documents,
            "totals": {"hosts": len(documents), **{_camel(k): v for k, v in sorted(counts.items())}},
        }

    def write(self, exit_code: int, parallel: int) -> None:
        assert self.path is not None
        write_json(self.path, self.document(exit_code, parallel))
