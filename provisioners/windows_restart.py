"""WindowsRestart customizer: one ``Restart`` action; the engine carries it out.

The engine records the boot identity (LastBootUpTime), runs ``restartCommand`` (exit codes 1115 and 1190, a
shutdown already in progress or scheduled, are not failures), waits for the connection to drop and to come back
with a new boot identity, then runs ``restartCheckCommand`` until it exits 0, all within ``restartTimeout``
(default 5m). Unlike Packer it never mistakes "still up" for "restarted", and it honours the check command's exit
code.
"""

from __future__ import annotations

from aibx import model
from aibx.plan import Restart, StepPlan
from aibx.provisioners import CompileContext
from aibx.provisioners.powershell import unresolved_reasons


def compile_step(step: model.WindowsRestartStep, ctx: CompileContext) -> StepPlan:
    plan = StepPlan(name=step.label, kind="WindowsRestart", phase=ctx.phase, path=step.path)
    if ctx.os_type is not model.OsType.WINDOWS:
        plan.blocked.append("WindowsRestart runs on Windows images only; restart Linux with a Shell step")
    plan.blocked += unresolved_reasons(
        step,
        restartCommand=step.restart_command,
        restartCheckCommand=step.restart_check_command,
        restartTimeout=step.restart_timeout,
    )
    timeout = step.restart_timeout
    if isinstance(timeout, str) and timeout and model.parse_duration(timeout) is None:
        plan.blocked.append(f"restartTimeout {timeout!r} is not a duration such as 5m, 2h or 90s")
    if plan.blocked:
        return plan
    seconds = step.effective_restart_timeout_seconds
    check = step.restart_check_command or None
    plan.actions = [
        Restart(
            command=str(step.effective_restart_command),
            check_command=str(check) if check else None,
            timeout_seconds=seconds,
            description="restart, wait for a new boot" + (", then until the check command exits 0" if check else ""),
        )
    ]
    plan.notes.append(f"restartTimeout: {seconds:g} s, for the whole restart including the check")
    return plan
