"""PowerShell customizer: the script (inline lines or scriptUri) uploaded with aibx's runner, then run.

On Windows::

    C:\\Windows\\Temp\\aibx-ps-<id>.ps1       the customizer's script (inline: UTF-8 with BOM, CRLF)
    C:\\Windows\\Temp\\aibx-ps-<id>-run.ps1   aibx/data/Invoke-AibxScript.ps1
    powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File <run.ps1> -ScriptPath <script.ps1>
        [-RunAs User|System -TaskName aibx-ps-<id> -TimeoutSeconds <build timeout>]

The runner fixes the exit-code rule (the script's ``exit N``, else ``$LASTEXITCODE``, 1 on a terminating error)
and, for ``runElevated``/``runAsSystem``, runs the script in a scheduled task with the highest privileges as the
connecting user or as SYSTEM, with bounded waits and stdout/stderr kept apart. Cleanup removes the files and the
task whatever happened. Command lines use ``-File`` with plain paths, so they mean the same under cmd.exe (WinRM,
OpenSSH's default) and PowerShell; ``-File`` also keeps stderr as text where ``-EncodedCommand`` would turn it
into CLIXML.

On Linux (an aibx extension; AIB has no PowerShell on Linux) the same runner and the script go into a new private
directory ``/tmp/aibx-ps-<id>`` and run under ``pwsh``, with ``sudo -n`` for runElevated, in one command that
removes the directory whichever way it ends (``linux_run_command``); without pwsh the step fails with a message
saying so.
"""

from __future__ import annotations

from aibx import model
from aibx import powershell as ps
from aibx.document import Unresolved
from aibx.plan import Action, Content, Exec, StepPlan, Upload
from aibx.provisioners import CompileContext, sources
from aibx.provisioners.posix import CANNOT_CREATE_EXIT

RUNNER = "Invoke-AibxScript.ps1"
WINDOWS_TEMP = "C:\\Windows\\Temp"
LINUX_TEMP = "/tmp"
# exit code of the Linux command when pwsh is missing (the shell's "command not found")
PWSH_MISSING_EXIT = 127


def windows_paths(prefix: str, name: str) -> tuple[str, str]:
    """(script, runner) paths under C:\\Windows\\Temp for one step."""
    base = f"{WINDOWS_TEMP}\\{prefix}-{name}"
    return f"{base}.ps1", f"{base}-run.ps1"


LINUX_RUNNER_END = "AIBX_RUNNER_END"


def linux_run_command(folder: str, sudo: str) -> str:
    """PowerShell on Linux in one command, as the Shell wrapper: a new private directory (``mkdir -m 700`` fails on
    anything already there, a planted symlink included), the runner from a here-document and the script from
    standard input written into it, pwsh run on them, and the directory removed when the command ends, whichever
    way (exit, or a hang-up, interrupt or termination signal: the client gone, Ctrl-C, the deadline)."""
    runner = ps.package_script_bytes(RUNNER).decode("utf-8")
    assert f"\n{LINUX_RUNNER_END}" not in runner and runner.endswith("\n")
    missing = (
        "command -v pwsh >/dev/null 2>&1 || { echo 'aibx: this PowerShell step needs pwsh (PowerShell 7) on "
        "the VM: https://learn.microsoft.com/powershell/scripting/install/installing-powershell-on-linux' >&2; "
        f"exit {PWSH_MISSING_EXIT}; }}; "
    )
    return (
        f"{missing}d={folder}; "
        'mkdir -m 700 "$d" || { echo "aibx: cannot create the private directory $d" >&2; '
        f"exit {CANNOT_CREATE_EXIT}; }}; "
        "trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; "
        f"cat >\"$d/run.ps1\" <<'{LINUX_RUNNER_END}'\n{runner}{LINUX_RUNNER_END}\n"
        'cat >"$d/script.ps1" || { echo "aibx: cannot write the script to $d" >&2; '
        f"exit {CANNOT_CREATE_EXIT}; }}; "
        f'{sudo}pwsh {ps.POWERSHELL_FLAGS} -File "$d/run.ps1" -ScriptPath "$d/script.ps1" </dev/null; rc=$?; exit $rc'
    )


def runner_upload(path: str) -> Upload:
    return Upload(
        path,
        Content(data=ps.package_script_bytes(RUNNER)),
        description=f"aibx's script runner (aibx/data/{RUNNER})",
        temporary=True,
    )


def windows_run_command(runner: str, script: str, run_as: str = "None", task: str = "", timeout_s: int = 0) -> str:
    """The command that runs ``script`` through the runner; ``run_as`` None, User or System."""
    line = f"{ps.POWERSHELL} {ps.POWERSHELL_FLAGS} -File {runner} -ScriptPath {script}"
    if run_as != "None":
        line += f" -RunAs {run_as} -TaskName {task} -TimeoutSeconds {timeout_s}"
    return line


def windows_cleanup(paths: list[str], task: str | None = None, elevated_script: str | None = None) -> Exec:
    """Remove the step's files, and for an elevated run its task and output files; errors are ignored."""
    lines = [
        "$ErrorActionPreference = 'SilentlyContinue'",
        "$ProgressPreference = 'SilentlyContinue'",
    ]
    if task:
        lines += [
            "$service = New-Object -ComObject Schedule.Service",
            "$service.Connect()",
            f"try {{ $service.GetFolder('\\').GetTask({ps.quote(task)}).Stop(0) }} catch {{ }}",
            f"try {{ $service.GetFolder('\\').DeleteTask({ps.quote(task)}, 0) }} catch {{ }}",
        ]
    if elevated_script:
        paths = [*paths, f"{elevated_script}.stdout", f"{elevated_script}.stderr"]
    lines.append("Remove-Item -Force -LiteralPath " + ", ".join(ps.quote(p) for p in paths))
    lines.append("exit 0")
    what = "remove the step's files" + (" and task" if task else "")
    return Exec(ps.encoded_command_line("\n".join(lines)), description=what)


def inline_script(lines: list[str], windows: bool) -> bytes:
    """Inline lines joined into one script: on Windows UTF-8 with BOM and CRLF (what Windows PowerShell 5.1
    needs to read non-ASCII text correctly), on Linux plain UTF-8 with LF."""
    if windows:
        return (ps.BOM + "".join(line + "\r\n" for line in lines)).encode("utf-8")
    return "".join(line + "\n" for line in lines).encode("utf-8")


def unresolved_reasons(step: model.Step, **fields: object) -> list[str]:
    reasons = []
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, Unresolved):
                reasons.append(f"{name} is not known before deployment: {v.text} ({v.reason})")
    return reasons


def compile_step(step: model.PowerShellStep, ctx: CompileContext) -> StepPlan:
    plan = StepPlan(name=step.label, kind="PowerShell", phase=ctx.phase, path=step.path)
    plan.blocked += unresolved_reasons(
        step, inline=step.inline, scriptUri=step.script_uri, sha256Checksum=step.sha256_checksum
    )
    has_inline, has_uri = step.inline is not None, bool(step.script_uri)
    if has_inline == has_uri:
        plan.blocked.append("give exactly one of scriptUri and inline")
    if plan.blocked:
        return plan
    windows = ctx.os_type is model.OsType.WINDOWS
    if has_inline:
        trace = ["Set-PSDebug -Trace 1"] if ctx.options.trace else []  # aibx run -v: each line as it runs
        content = Content(data=inline_script([*trace, *(str(x) for x in step.inline or [])], windows))
        what = f"the step's {len(step.inline or [])} inline line(s)"
    else:
        checksum = step.sha256_checksum if isinstance(step.sha256_checksum, str) and step.sha256_checksum else None
        source = sources.resolve(
            str(step.script_uri),
            checksum.lower() if checksum else None,
            ctx.options.base_dir,
            allow_local_files=ctx.options.allow_local_files,
        )
        if source.blocked:
            plan.blocked.append(f"scriptUri: {source.blocked}")
            return plan
        if source.note:
            plan.notes.append(source.note)
        assert source.content is not None
        content = source.content
        what = "the step's scriptUri, fetched by aibx" + (" and checked against sha256Checksum" if checksum else "")
    codes = tuple(step.effective_valid_exit_codes)
    name = ctx.options.random_name()
    run_as = "System" if step.run_as_system else "User" if step.run_elevated else "None"
    if step.run_as_system and not step.run_elevated:
        plan.notes.append("runAsSystem without runElevated: AIB rejects this; aibx runs it as SYSTEM")
    if windows:
        script, runner = windows_paths("aibx-ps", name)
        task = f"aibx-ps-{name}" if run_as != "None" else ""
        timeout_s = ctx.template.effective_build_timeout_minutes * 60
        actions: list[Action] = [
            Upload(script, content, description=what, temporary=True),
            runner_upload(runner),
            Exec(
                windows_run_command(runner, script, run_as, task, timeout_s),
                valid_exit_codes=codes,
                description={
                    "None": "run the script",
                    "User": "run the script elevated (scheduled task, highest privileges, as the connecting user)",
                    "System": "run the script as SYSTEM (scheduled task)",
                }[run_as],
            ),
        ]
        plan.actions = actions
        plan.cleanup = [windows_cleanup([script, runner], task or None, script if task else None)]
    else:
        folder = f"{LINUX_TEMP}/aibx-ps-{name}"
        sudo = "sudo -n " if run_as != "None" else ""
        plan.actions = [
            Exec(
                linux_run_command(folder, sudo),
                stdin=content,
                valid_exit_codes=codes,
                description=f"run {what} with pwsh" + (" as root (sudo -n)" if sudo else ""),
            )
        ]
        plan.on_interrupt = [Exec(f"rm -rf {folder}", description="remove the step's private directory")]
        plan.notes.append("PowerShell on Linux is an aibx extension (AIB runs PowerShell on Windows only)")
    plan.notes.append(f"valid exit codes: {', '.join(str(c) for c in codes)}")
    return plan
