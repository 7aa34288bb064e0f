"""WindowsUpdate customizer: aibx's own Windows Update script, run as SYSTEM, one round at a time.

Files (C:\\Windows\\Temp)::

    aibx-wu-<id>-update.ps1   aibx/data/Install-AibxWindowsUpdates.ps1 (one round: search, filter, install)
    aibx-wu-<id>.ps1          calls it with the step's searchCriteria, filters and updateLimit
    aibx-wu-<id>-run.ps1      aibx/data/Invoke-AibxScript.ps1, which runs it as SYSTEM in a scheduled task

The engine runs ``WindowsUpdate.command`` once per round, reads the ``AIBX-WU-RESULT`` line and asks
``next_move()``: restart and search again, search again, done, or fail (with the reason). Rounds are bounded
(``max_rounds``); an update that was installed and is offered again stops the loop instead of rebooting forever.

Filters keep the semantics AIB has through its Packer plugin: the first filter whose expression is true decides,
and an update no filter matches is skipped. ``updateLimit`` caps the updates of one round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aibx import model
from aibx import powershell as ps
from aibx.plan import Content, StepPlan, Upload, WindowsUpdate
from aibx.provisioners import CompileContext
from aibx.provisioners.powershell import (
    WINDOWS_TEMP,
    runner_upload,
    unresolved_reasons,
    windows_cleanup,
    windows_run_command,
)

UPDATE_SCRIPT = "Install-AibxWindowsUpdates.ps1"
RESULT_MARKER = "AIBX-WU-RESULT "
DEFAULT_FILTERS = ("include:$true",)
MAX_ROUNDS = 10


def invocation_script(update_script: str, criteria: str, filters: tuple[str, ...], limit: int) -> str:
    """The per-step script that calls the update script with the step's values (all single-quoted literals)."""
    filter_list = ", ".join(ps.quote(f) for f in filters)
    return (
        "# aibx: one Windows Update round for this step\r\n"
        f"& {ps.quote(update_script)} -SearchCriteria {ps.quote(criteria)} -Filters @({filter_list}) "
        f"-UpdateLimit {limit}\r\n"
        "exit $LASTEXITCODE\r\n"
    )


def compile_step(step: model.WindowsUpdateStep, ctx: CompileContext) -> StepPlan:
    from aibx.validation import check_update_filter

    plan = StepPlan(name=step.label, kind="WindowsUpdate", phase=ctx.phase, path=step.path)
    if ctx.os_type is not model.OsType.WINDOWS:
        plan.blocked.append("WindowsUpdate runs on Windows images only")
    plan.blocked += unresolved_reasons(step, searchCriteria=step.search_criteria, filters=step.filters)
    filters = tuple(str(f) for f in step.filters or ()) or DEFAULT_FILTERS
    plan.blocked += [p for p in (check_update_filter(f) for f in filters) if p]
    limit = step.effective_update_limit
    if limit < 1:
        plan.blocked.append(f"updateLimit {limit}: must be at least 1")
    if plan.blocked:
        return plan
    criteria = str(step.effective_search_criteria)
    name = ctx.options.random_name()
    base = f"{WINDOWS_TEMP}\\aibx-wu-{name}"
    update, script, runner, task = f"{base}-update.ps1", f"{base}.ps1", f"{base}-run.ps1", f"aibx-wu-{name}"
    invocation = (ps.BOM + invocation_script(update, criteria, filters, limit)).encode("utf-8")
    timeout_s = ctx.template.effective_build_timeout_minutes * 60
    plan.actions = [
        Upload(
            update,
            Content(data=ps.package_script_bytes(UPDATE_SCRIPT)),
            description=f"aibx's Windows Update script (aibx/data/{UPDATE_SCRIPT})",
        ),
        Upload(script, Content(data=invocation), description="the step's search criteria, filters and limit"),
        runner_upload(runner),
        WindowsUpdate(
            search_criteria=criteria,
            filters=filters,
            update_limit=limit,
            description="rounds of search, download and install as SYSTEM, restarting when needed",
            command=windows_run_command(runner, script, "System", task, timeout_s),
            max_rounds=MAX_ROUNDS,
        ),
    ]
    plan.cleanup = [windows_cleanup([update, script, runner], task, script)]
    if step.filters and not any(f.strip().lower().startswith("include") for f in filters):
        plan.notes.append(
            "no include: filter: every update is skipped (the first matching filter decides and an update that "
            'no filter matches is skipped, as in AIB); end the list with "include:$true" to install the rest'
        )
    plan.notes.append(f"at most {limit} updates per round, at most {MAX_ROUNDS} rounds")
    return plan


# ----------------------------------------------------------------------------------------------- the rounds
@dataclass
class RoundResult:
    """What one round reported (the JSON of its ``AIBX-WU-RESULT`` line)."""

    status: str  # none, installed, reboot-required, error
    found: int = 0
    selected: int = 0
    skipped: int = 0
    installed: int = 0
    failed: int = 0
    reboot_required: bool = False
    more: bool = False
    updates: list[dict[str, str]] = field(default_factory=list)
    message: str = ""

    def installed_ids(self) -> set[str]:
        return {u.get("id", "") for u in self.updates if u.get("result") == "installed"}

    def selected_ids(self) -> set[str]:
        return {u.get("id", "") for u in self.updates}

    def summary(self, number: int) -> str:
        text = (
            f"round {number}: found {self.found}, selected {self.selected}, skipped {self.skipped}, "
            f"installed {self.installed}, failed {self.failed}"
        )
        failures = [
            f"{u.get('kb') or u.get('title', '?')}: {u.get('hresult', '')}".strip()
            for u in self.updates
            if u.get("result", "").endswith("failed")
        ]
        if failures:
            text += " (" + "; ".join(failures) + ")"
        if self.reboot_required:
            text += "; restart required"
        if self.more:
            text += "; more updates left"
        return text


def parse_round_output(stdout: str) -> RoundResult | None:
    """The result of a round from its stdout; None if the round never printed one (it was killed)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith(RESULT_MARKER):
            try:
                data = json.loads(line[len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                return None
            if not isinstance(data, dict) or not isinstance(data.get("status"), str):
                return None
            updates = data.get("updates") or []
            if isinstance(updates, dict):  # ConvertTo-Json writes a one-element array as an object
                updates = [updates]
            return RoundResult(
                status=data["status"],
                found=int(data.get("found") or 0),
                selected=int(data.get("selected") or 0),
                skipped=int(data.get("skipped") or 0),
                installed=int(data.get("installed") or 0),
                failed=int(data.get("failed") or 0),
                reboot_required=bool(data.get("rebootRequired")),
                more=bool(data.get("more")),
                updates=[{k: str(v) for k, v in u.items()} for u in updates if isinstance(u, dict)],
                message=str(data.get("message") or ""),
            )
    return None


@dataclass(frozen=True)
class Move:
    action: str  # "restart" (then another round), "again" (another round now), "done", "fail"
    reason: str


def next_move(rounds: list[RoundResult | None], max_rounds: int = MAX_ROUNDS) -> Move:
    """What the engine does after the last of ``rounds`` (None: that round printed no result)."""
    if not rounds:
        return Move("again", "first round")
    last, number = rounds[-1], len(rounds)
    if last is None:
        return Move("fail", f"round {number} ended without a result line (was the update script stopped?)")
    if last.status == "error":
        return Move("fail", f"round {number}: {last.message or 'the update script failed'}")
    earlier = set().union(*(r.installed_ids() for r in rounds[:-1] if r is not None))
    again = sorted(earlier & last.selected_ids() - {""})
    if again:
        titles = [u.get("kb") or u.get("title", "") for u in last.updates if u.get("id") in again]
        return Move(
            "fail",
            f"round {number}: {', '.join(titles)} installed in an earlier round and offered again; stopping instead "
            "of looping (exclude it with a filter)",
        )
    if last.reboot_required or last.status == "reboot-required":
        previous = rounds[-2] if number > 1 else None
        if last.installed == 0 and previous is not None and previous.reboot_required and previous.installed == 0:
            return Move(
                "fail",
                f"round {number}: a restart is still pending after restarting, with nothing installed in between "
                f"({last.message or 'the pending-restart flag does not clear'})",
            )
        if number >= max_rounds:
            return Move("fail", f"still needs a restart after {number} rounds (the limit)")
        return Move("restart", last.message or "a restart is required")
    if last.installed == 0 and not last.more:
        return Move("done", last.message or "no applicable updates left")
    if number >= max_rounds:
        return Move("fail", f"updates still left after {number} rounds (the limit)")
    return Move("again", "more updates may be applicable")
