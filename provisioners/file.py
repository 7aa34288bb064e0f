"""File customizer: ``sourceUri`` is fetched and its sha256 checked by aibx, then written to ``destination``
(SFTP over SSH). The destination is the full path of the file; its parent directory must exist: a missing one is an
error, never Packer's silent file named after the directory. On Linux AIB can only write under /tmp; aibx refuses
anything else unless ``--allow-any-destination``.
"""

from __future__ import annotations

import ntpath
import posixpath

from aibx import model
from aibx.plan import Content, Exec, StepPlan, Upload, redact_uri
from aibx.provisioners import CompileContext, posix, sources, unresolved_fields


def compile_step(step: model.Step, ctx: CompileContext) -> StepPlan:
    assert isinstance(step, model.FileStep)
    plan = StepPlan(name=step.label, kind="File", phase=ctx.phase, path=step.path)
    plan.blocked += unresolved_fields(
        step, {"source_uri": "sourceUri", "destination": "destination", "sha256_checksum": "sha256Checksum"}
    )
    if plan.blocked:
        return plan
    if not step.source_uri or not step.destination:
        plan.blocked.append('File needs "sourceUri" and "destination"')
        return plan
    uri, destination = str(step.source_uri), str(step.destination)
    checksum = str(step.sha256_checksum) if step.sha256_checksum else None
    windows = ctx.os_type is model.OsType.WINDOWS

    problem = _destination_problem(destination, windows, ctx.options.allow_any_destination)
    if problem:
        plan.blocked.append(f"destination {destination!r}: {problem}")
    source = sources.resolve(uri, checksum, ctx.options.base_dir, allow_local_files=ctx.options.allow_local_files)
    if source.blocked:
        plan.blocked.append(f"sourceUri: {source.blocked}")
    if plan.blocked:
        return plan
    if source.note:
        plan.notes.append(source.note)
    if not checksum:
        plan.notes.append("no sha256Checksum: a changed file would go unnoticed")

    if source.remote and ctx.options.fetch_on_target:
        if windows:
            plan.blocked.append("--fetch-on-target: downloading on a Windows VM is not supported yet; run without it")
            return plan
        folder = posix.temp_dir(ctx.options.random_name())  # private: made by the wrapper, removed after
        script_path, part_path = f"{folder}/script.sh", f"{folder}/part"
        script = posix.fetch_to_file_script(uri, checksum, destination, part_path)
        plan.actions.append(
            Exec(
                posix.run_stdin_script(script_path),
                stdin=Content(data=script),
                description=f"the VM downloads {redact_uri(uri)}, {'checks it and ' if checksum else ''}"
                f"moves it to {destination}",
            )
        )
        plan.on_interrupt.append(Exec(posix.remove_dir(folder), description="remove the temporary files"))
        return plan
    assert source.content is not None
    plan.actions.append(Upload(destination, source.content))
    return plan


def _destination_problem(destination: str, windows: bool, allow_any: bool) -> str | None:
    if windows:
        if not ntpath.isabs(destination):
            return "must be an absolute path such as c:\\buildArtifacts\\file.txt"
        if destination.endswith(("\\", "/")):
            return "must name the file, not a folder"
        return None
    if not destination.startswith("/"):
        return "must be an absolute path"
    if destination.endswith("/"):
        return "must name the file, not a directory"
    normalized = posixpath.normpath(destination)
    if not allow_any and not normalized.startswith("/tmp/"):
        return "on Linux AIB can only write under /tmp (aibx refuses the rest unless --allow-any-destination)"
    return None
