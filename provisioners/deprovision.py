"""AIB's hidden deprovision customizer.

AIB stages its default script at ``/tmp/DeprovisioningScript.sh`` (Linux) or ``c:\\DeprovisioningScript.ps1``
(Windows) before the customizers, so they may replace or edit it, and runs whatever is there last. On a VM the user
keeps, deprovisioning destroys access, so ``aibx run`` stages the script always but runs it only with
``--generalize``; a missing script is a warning, as in AIB's log.

Unlike AIB and Packer, the run is bounded (``--deprovision-timeout``, default 20 minutes): AIB's Windows script
waits without end for Azure's guest agent services and then for Sysprep's image state to become
``IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE``; when the limit runs out the script is stopped, the step times out (exit
code 4) with its last lines of output, and on Windows the image state and the end of Sysprep's error log
(``Panther\\setuperr.log``) are shown.

On Windows a small launcher (``C:\\Windows\\Temp\\aibx-deprovision-<id>.ps1``) runs the script, so the command
line is plain ``powershell.exe -File`` (the same under cmd.exe, OpenSSH's PowerShell shell and WinRM) and errors
stay readable text.
"""

from __future__ import annotations

import shlex

from aibx import model
from aibx import powershell as ps
from aibx.deprovisioning import default_script, missing_message
from aibx.plan import Content, Exec, KeptFile, StepPlan, Upload
from aibx.provisioners import CompileContext
from aibx.provisioners.powershell import WINDOWS_TEMP, windows_cleanup

# The deprovision command's exit code when the script is missing: a warning, not a failure (AIB goes on too).
MISSING_EXIT = 197
TIMEOUT_OPTION = "--deprovision-timeout"
SYSPREP_DONE_STATE = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"


STAGE_STEP = "stage deprovisioning script"
UNSTAGE_STEP = "remove the staged deprovisioning script"


def stage(ctx: CompileContext) -> StepPlan:
    """AIB's first, hidden step: the default deprovisioning script at its well-known path, before the customizers
    (which may replace or edit it). On Linux the path is in the shared /tmp: a file another user left there (or a
    symlink) is refused with its owner and what to do, never written through (see ``linux_stage_command``)."""
    path = ctx.template.deprovision_path
    plan = StepPlan(name=STAGE_STEP, kind="Deprovision", phase="stage")
    if ctx.os_type is model.OsType.WINDOWS:
        plan.actions.append(
            Upload(path, Content(data=default_script(ctx.os_type)), description="AIB's default deprovisioning script")
        )
    else:
        plan.actions.append(
            Exec(
                linux_stage_command(path),
                stdin=Content(data=default_script(ctx.os_type)),
                description=f"write AIB's default deprovisioning script to {path} (new, mode 0644, yours)",
            )
        )
    generalize = "it runs last (--generalize)" if ctx.options.generalize else "it runs last only with --generalize"
    plan.notes.append(f"customizers may replace {path}; {generalize}")
    if ctx.os_type is not model.OsType.WINDOWS:
        if not ctx.options.generalize:
            plan.notes.append(f"removed at the end of the run (step {UNSTAGE_STEP!r})")
        plan.keeps.append(KeptFile(path, f"test -f {shlex.quote(path)}", lost_after_reboot_message(path)))
    plan.notes.append(f"leave this step out with --skip {shlex.quote(STAGE_STEP)}")
    return plan


def linux_stage_command(path: str) -> str:
    """Write stdin to ``path`` as a file of the connecting user, mode 0644 (it later runs with sudo, so never
    writable by others). A symlink, a directory, or a file of another user (an earlier run as root leaves a
    root-owned one, which the sticky /tmp lets nobody else remove) is refused with the owner and the fix; a file of
    the user's own is replaced. The bytes go to a new private file (``mktemp``: an exclusive create) beside it,
    renamed over the path: a rename never follows what is planted there meanwhile."""
    fix = f"remove it (sudo rm -f $f), run as that user, or leave this step out with --skip '{STAGE_STEP}'"
    return (
        f"f={shlex.quote(path)}; t=; "
        f'no() {{ echo "aibx: cannot stage $f: $1; {fix}" >&2; exit 1; }}; '
        'if [ -h "$f" ]; then no "it is a symbolic link (to $(readlink "$f"))"; fi; '
        'if [ -d "$f" ]; then no "it is a directory"; fi; '
        'if [ -e "$f" ] && [ ! -O "$f" ]; then no "it exists and belongs to '
        '$(stat -c %U "$f" 2>/dev/null || echo another user), not to $(id -un) '
        '(left by an earlier run as that user?)"; fi; '
        "trap 'rm -f \"$t\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; "
        't=$(mktemp "$f.aibx-XXXXXXXXXX") || no "cannot create a file beside it"; '
        'cat >"$t" && chmod 644 "$t" && mv -f "$t" "$f" || no "cannot write it"'
    )


def unstage(ctx: CompileContext) -> StepPlan:
    """Without --generalize nothing runs the staged Linux script: remove it at the end, so that the shared /tmp
    keeps no file in the way of another user's run. Only a regular file of the connecting user is removed (one a
    customizer replaced with sudo is left, with a line saying so); it never fails the run."""
    path = ctx.template.deprovision_path
    plan = StepPlan(name=UNSTAGE_STEP, kind="Deprovision", phase="unstage")
    command = (
        f"f={shlex.quote(path)}; "
        'if [ -f "$f" ] && [ ! -h "$f" ]; then '
        'if [ -O "$f" ]; then rm -f "$f"; else '
        'echo "aibx: left $f: it belongs to $(stat -c %U "$f" 2>/dev/null || echo another user)" >&2; fi; fi; '
        "exit 0"
    )
    plan.actions.append(Exec(command, description=f"remove {path}: nothing runs it without --generalize"))
    plan.notes.append("left out with --generalize, or when the staging step is skipped")
    return plan


def lost_after_reboot_message(path: str) -> str:
    """Why the staged Linux script vanished and what it means for the image (AIB stages it once, before the
    customizers, in /tmp, which many distributions empty at boot: Ubuntu, Debian 13)."""
    return (
        f"the VM probably clears /tmp at boot. AIB stages {path} once, before the customizers, so on a source "
        "image that does the same the deprovisioning step would find no script and the image would not be "
        "generalized. Write the script again in a step after the reboot (AIB's default runs "
        "'/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync')"
    )


def linux_deprovision_command(path: str) -> str:
    """Run the script at ``path`` with ``sudo -n`` (fail at once rather than wait for a password prompt nobody
    can answer), ``MISSING_EXIT`` when it is gone. Its path is well known and it runs as root, so it runs only if
    nobody else could have written it: a regular file (not a symlink) owned by the connecting user or root and
    not writable by group or others (a file in the sticky /tmp cannot then be swapped either)."""
    refuse = 'echo "aibx: $f $1: not run as root (deprovisioning)" >&2; exit 1'
    return (
        f"f={shlex.quote(path)}; "
        f'if [ ! -f "$f" ]; then exit {MISSING_EXIT}; fi; '
        f"refuse() {{ {refuse}; }}; "
        'if [ -L "$f" ]; then refuse "is a symbolic link"; fi; '
        'set -- $(stat -c "%u %a" "$f"); '
        'if [ "$1" != 0 ] && [ "$1" != "$(id -u)" ]; then '
        'refuse "belongs to user id $1, not to $(id -un) or root"; fi; '
        'if [ $((0$2 & 022)) -ne 0 ]; then refuse "is writable by group or others (mode $2)"; fi; '
        'sudo -n sh "$f"'
    )


def windows_launcher(path: str) -> bytes:
    """The launcher that runs the deprovisioning script with AIB's semantics: the script's exit code (its own
    ``exit N``, else the last native command's), 1 on a terminating error, ``MISSING_EXIT`` when it is gone."""
    quoted = ps.quote(path)
    text = (
        "# aibx: run the deprovisioning script that AIB runs last, or say that it is missing\r\n"
        "$ProgressPreference = 'SilentlyContinue'\r\n"
        f"if (-not (Test-Path -LiteralPath {quoted})) {{\r\n"
        f"    [Console]::Out.WriteLine({ps.quote(f'aibx: {path} is missing')})\r\n"
        f"    exit {MISSING_EXIT}\r\n"
        "}\r\n"
        "$global:LASTEXITCODE = 0\r\n"
        f"& {quoted}\r\n"
        "exit $LASTEXITCODE\r\n"
    )
    return (ps.BOM + text).encode("utf-8")


# Shown when the Windows deprovisioning step is cut short (the timeout, an interrupt): where Sysprep got to.
SYSPREP_DIAGNOSTICS = """# aibx: Sysprep's image state and the end of its error log
$ErrorActionPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$state = (Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State').ImageState
[Console]::Out.WriteLine('aibx: ImageState is ' + $state)
$log = Join-Path $env:SystemRoot 'System32\\Sysprep\\Panther\\setuperr.log'
if (Test-Path -LiteralPath $log) {
    [Console]::Out.WriteLine('aibx: the end of ' + $log + ':')
    Get-Content -LiteralPath $log -Tail 20 | ForEach-Object { [Console]::Out.WriteLine('  ' + $_) }
}
exit 0"""


def run(ctx: CompileContext) -> StepPlan:
    path = ctx.template.deprovision_path
    plan = StepPlan(name="deprovision", kind="Deprovision", phase="deprovision")
    warning = (MISSING_EXIT, missing_message(path))
    timeout = ctx.options.deprovision_timeout_seconds
    if ctx.os_type is model.OsType.WINDOWS:
        launcher = f"{WINDOWS_TEMP}\\aibx-deprovision-{ctx.options.random_name()}.ps1"
        plan.actions = [
            Upload(
                launcher,
                Content(data=windows_launcher(path)),
                description=f"aibx's launcher for {path}",
                temporary=True,
            ),
            Exec(
                f"{ps.POWERSHELL} {ps.POWERSHELL_FLAGS} -File {launcher}",
                description="run the deprovisioning script (Sysprep)",
                warn_exit_codes=(warning,),
                timeout_seconds=timeout,
                timeout_message="the deprovisioning script did not finish within {limit}: Sysprep's image state "
                f"did not become {SYSPREP_DONE_STATE} (or the script waits for something else: see its last lines)",
                timeout_name=TIMEOUT_OPTION,
            ),
        ]
        plan.on_interrupt = [
            Exec(ps.encoded_command_line(SYSPREP_DIAGNOSTICS), description="Sysprep's image state and error log")
        ]
        plan.cleanup = [windows_cleanup([launcher])]
        plan.notes.append(
            "AIB's default script waits for Azure's guest agent services (RdAgent, WindowsAzureGuestAgent): outside "
            f"Azure replace {path} in a customizer"
        )
    else:
        command = linux_deprovision_command(path)
        plan.actions.append(
            Exec(
                command,
                description="run the deprovisioning script with sudo (waagent -deprovision+user)",
                warn_exit_codes=(warning,),
                timeout_seconds=timeout,
                timeout_message="the deprovisioning script did not finish",
                timeout_name=TIMEOUT_OPTION,
            )
        )
    plan.notes.append("--generalize: after this the VM is generalized; keep no data on it you still need")
    return plan
