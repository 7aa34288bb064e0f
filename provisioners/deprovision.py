"""AIB's hidden deprovision customizer.

AIB stages its default script at ``/tmp/DeprovisioningScript.sh`` (Linux) or ``c:\\DeprovisioningScript.ps1``
(Windows) before the customizers, so they may replace or edit it, and runs whatever is there last. On a VM the user
keeps, deprovisioning destroys access, so ``aibx run`` stages the script always but runs it only with
``--generalize``; a missing script is a warning, as in AIB's log.
"""

from __future__ import annotations

import shlex
from importlib import resources

from aibx.provisioners import CompileContext

from aibx import model
from aibx.plan import Content, Exec, StepPlan, Upload

# The deprovision command's exit code when the script is missing: a warning, not a failure (AIB goes on too).
MISSING_EXIT = 197


def missing_message(path: str) -> str:
    """AIB's own wording (from its customization log)."""
    return (
        f"Deprovisioning script [{path}] could not be found. Image build may fail or the VM created from the "
        "Image may not boot. Please make sure the deprovisioning script is not accidentally deleted by a "
        "Customizer in the Template."
    )


def default_script(os_type: model.OsType) -> bytes:
    name = "DeprovisioningScript.ps1" if os_type is model.OsType.WINDOWS else "DeprovisioningScript.sh"
    return resources.files("aibx").joinpath("data", name).read_bytes()


def stage(ctx: CompileContext) -> StepPlan:
    path = ctx.template.deprovision_path
    plan = StepPlan(name="stage deprovisioning script", kind="Deprovision", phase="stage")
    plan.actions.append(
        Upload(path, Content(data=default_script(ctx.os_type)), description="AIB's default deprovisioning script")
    )
    plan.notes.append(f"customizers may replace {path}; it runs last only with --generalize")
    return plan


def run(ctx: CompileContext) -> StepPlan:
    path = ctx.template.deprovision_path
    plan = StepPlan(name="deprovision", kind="Deprovision", phase="deprovision")
    warning = (MISSING_EXIT, missing_message(path))
    if ctx.os_type is model.OsType.WINDOWS:
        quoted = path.replace("'", "''")
        script = (
            f"if (Test-Path '{quoted}') {{ & '{quoted}'; exit $LASTEXITCODE }} "
            f"else {{ Write-Output 'aibx: {quoted} is missing'; exit {MISSING_EXIT} }}"
        )
        command = f'powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "{script}"'
        plan.actions.append(
            Exec(command, description="run the deprovisioning script (Sysprep)", warn_exit_codes=(warning,))
        )
    else:
        # sudo -n: fail at once instead of waiting for a password prompt nobody can answer
        q = shlex.quote(path)
        command = f"if [ ! -f {q} ]; then exit {MISSING_EXIT}; fi; sudo -n sh {q}"
        plan.actions.append(
            Exec(
                command,
                description="run the deprovisioning script with sudo (waagent -deprovision+user)",
                warn_exit_codes=(warning,),
            )
        )
    plan.notes.append("--generalize: after this the VM is generalized; keep no data on it you still need")
    return plan
