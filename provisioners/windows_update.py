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

# the round protocol lives in the hub (the engine's executor speaks it too); known here as before
from aibx.windows_update_rounds import MAX_ROUNDS, RESULT_MARKER, Move, RoundResult, next_move, parse_round_output

__all__ = ["MAX_ROUNDS", "RESULT_MARKER", "Move", "RoundResult", "compile_step", "next_move", "parse_round_output"]

UPDATE_SCRIPT = "Install-AibxWindowsUpdates.ps1"
DEFAULT_FILTERS = ("include:$true",)


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
            temporary=True,
        ),
        Upload(
            script,
            Content(data=invocation),
            description="the step's search criteria, filters and limit",
            temporary=True,
        ),
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
