"""Shell customizer (Linux): inline lines or a scriptUri, run as the connecting user (``sudo`` is the script's).

* inline: the lines become one ``#!/bin/sh -e`` script (Packer's and so AIB's semantics: one shell, stop at the
  first failing line).
* scriptUri: aibx fetches the script and checks its sha256 before anything reaches the VM; with
  ``--fetch-on-target`` the VM downloads and checks it instead, as AIB's build VM does.

Either way the step is a single ``Exec`` of the POSIX wrapper (see ``posix.run_stdin_script``): one round trip.
"""

from __future__ import annotations

from aibx import model
from aibx.plan import Content, Exec, StepPlan, redact_uri
from aibx.provisioners import CompileContext, posix, sources, unresolved_fields

# Packer's own words for a disconnect in a shell provisioner without expect_disconnect, and what to do
RESTART_FAILS = (
    "the VM restarted during this step, and its Packer provisioner has no expect_disconnect = true: Packer fails "
    "the build here (Script disconnected unexpectedly); add expect_disconnect = true to the provisioner"
)


def compile_step(step: model.Step, ctx: CompileContext) -> StepPlan:
    assert isinstance(step, model.ShellStep)
    plan = StepPlan(name=step.label, kind="Shell", phase=ctx.phase, path=step.path)
    if ctx.os_type is model.OsType.WINDOWS:
        plan.blocked.append("Shell customizers run on Linux; this is a Windows image (use PowerShell)")
        return plan
    plan.blocked += unresolved_fields(
        step, {"inline": "inline", "script_uri": "scriptUri", "sha256_checksum": "sha256Checksum"}
    )
    if plan.blocked:
        return plan
    has_inline = step.inline is not None
    has_uri = bool(step.script_uri)
    if has_inline == has_uri:
        plan.blocked.append('give exactly one of "inline" and "scriptUri"')
        return plan

    folder = posix.temp_dir(ctx.options.random_name())  # private: made by the wrapper, removed after
    script_path = f"{folder}/script.sh"
    interpreter = None
    if has_inline:
        interpreter = posix.INLINE_INTERPRETER + ("x" if ctx.options.trace else "")  # -ex: a trace on stderr
        lines = [str(line) for line in step.inline or []]
        stdin = Content(data=posix.inline_script(lines))
        description = f"run {len(lines)} inline line{'s' * (len(lines) != 1)} as one /bin/sh -e script"
    else:
        uri = str(step.script_uri)
        checksum = str(step.sha256_checksum) if step.sha256_checksum else None
        source = sources.resolve(
            uri, checksum, ctx.options.base_dir, script=True, allow_local_files=ctx.options.allow_local_files
        )
        if source.blocked:
            plan.blocked.append(f"scriptUri: {source.blocked}")
            return plan
        if source.note:
            plan.notes.append(source.note)
        if source.remote and ctx.options.fetch_on_target:
            fetched_path = f"{folder}/fetched"
            stdin = Content(data=posix.fetch_and_run_script(uri, checksum, fetched_path))
            checks = "checks it and runs it" if checksum else "runs it"
            description = f"the VM downloads {redact_uri(uri)}, {checks}"
        else:
            assert source.content is not None
            stdin = source.content
            description = "run the script, fetched and checked by aibx before anything reaches the VM"
        if not checksum:
            plan.notes.append("no sha256Checksum: a changed script would go unnoticed")
    # a script aibx cannot read now (a scriptUri) or lines that call reboot & co. may restart the VM
    watch = has_uri or posix.may_restart([str(line) for line in step.inline or []])
    plan.actions.append(
        Exec(
            posix.run_stdin_script(script_path, interpreter, watch_shutdown=watch),
            stdin=stdin,
            description=description,
            shutdown_marker=posix.SHUTDOWN_MARKER if watch else "",
            restart_fails=RESTART_FAILS if step.expect_disconnect is False else "",
        )
    )
    plan.on_interrupt.append(Exec(posix.remove_dir(folder), description="remove the temporary script"))
    if step.expect_disconnect is False and watch:
        plan.notes.append("Packer, no expect_disconnect: a restart during this step fails it")
    elif step.expect_disconnect:
        plan.notes.append("Packer expect_disconnect: a restart is accepted once the VM is back with a new boot id")
    return plan
