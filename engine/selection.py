"""Which steps of a plan a run executes: ``--from NAME``, ``--only NAME`` (repeatable), ``--skip NAME``.

Names are the customizers' and validators' labels (their ``name``, or ``Shell #2`` for an unnamed one). Staging the
deprovisioning script belongs to a run from the beginning only: after ``--from`` or with ``--only``, an earlier run
staged it and a customizer may have replaced it since, so it is left alone. ``--skip`` may name the staging step
(``stage deprovisioning script``); then the step that removes the staged script at the end of a run without
``--generalize`` is left out too. The deprovision step itself runs with ``--generalize`` whatever the selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aibx.plan import Plan, StepPlan

SELECTABLE_PHASES = ("customize", "validate")
STAGE_PHASE = "stage"
UNSTAGE_PHASE = "unstage"


class SelectionError(ValueError):
    pass


@dataclass
class Selection:
    from_name: str | None = None
    only: Sequence[str] = ()
    skip: Sequence[str] = ()

    @property
    def from_beginning(self) -> bool:
        return self.from_name is None and not self.only


@dataclass
class SelectedStep:
    step: StepPlan
    reason: str | None = None  # why it is left out; None: it runs

    @property
    def runs(self) -> bool:
        return self.reason is None


@dataclass
class SelectedPlan:
    plan: Plan
    steps: list[SelectedStep] = field(default_factory=list)

    @property
    def running(self) -> list[StepPlan]:
        return [s.step for s in self.steps if s.runs]


def select(plan: Plan, selection: Selection) -> SelectedPlan:
    names = [s.name for s in plan.steps if s.phase in SELECTABLE_PHASES]
    staging = [s.name for s in plan.steps if s.phase == STAGE_PHASE]
    for option, wanted in (
        ("--from", [selection.from_name] if selection.from_name else []),
        ("--only", selection.only),
        ("--skip", selection.skip),
    ):
        known = names + staging if option == "--skip" else names
        unknown = [n for n in wanted if n not in known]
        if unknown:
            listed = ", ".join(repr(n) for n in known) or "none"
            raise SelectionError(f"{option} {unknown[0]!r}: no such customizer or validator (the steps are: {listed})")
    out = SelectedPlan(plan)
    skipped_staging = any(name in selection.skip for name in staging)
    reached = selection.from_name is None
    for step in plan.steps:
        reason = None
        if step.phase == STAGE_PHASE:
            if skipped_staging:
                reason = "--skip"
            elif not selection.from_beginning:
                reason = "already staged by an earlier run (--from/--only): left as the customizers made it"
        elif step.phase == UNSTAGE_PHASE and skipped_staging:
            reason = f"--skip {staging[0]!r}: the staged script is left alone"
        elif step.phase in SELECTABLE_PHASES:
            reached = reached or step.name == selection.from_name
            if not reached:
                reason = f"before --from {selection.from_name!r}"
            elif selection.only and step.name not in selection.only:
                reason = "not named by --only"
            elif step.name in selection.skip:
                reason = "--skip"
        out.steps.append(SelectedStep(step, reason))
    return out
