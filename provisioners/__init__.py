"""Provisioners: one module per customizer type, each compiling a model step into a ``StepPlan``.

A provisioner never touches the network: its output is data (aibx.plan), so the exact commands are reviewable
and testable. Each module ``aibx.provisioners.<name>`` exposes::

    def compile_step(step: model.Step, ctx: CompileContext) -> plan.StepPlan
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aibx import model
from aibx.document import Unresolved
from aibx.plan import Plan, StepPlan

# step kind -> module in this package
MODULES = {
    "Shell": "shell",
    "PowerShell": "powershell",
    "File": "file",
    "WindowsRestart": "windows_restart",
    "WindowsUpdate": "windows_update",
}


@dataclass
class CompileOptions:
    generalize: bool = False  # run the deprovision step at the end (destroys access to a real VM)
    deprovision_timeout_seconds: float = 20 * 60.0  # the deprovision step's own limit (the Sysprep wait)
    fetch_on_target: bool = False  # let the VM download scriptUri/sourceUri itself, as AIB does
    allow_any_destination: bool = False  # File on Linux outside /tmp
    # where relative file: URIs are resolved (the template's folder); None: it has none (read from standard input),
    # so file: URIs need allow_local_files
    base_dir: str | None = "."
    allow_local_files: bool = False  # file: URIs may name any local file, not only those in base_dir
    # random part of remote temp-file names; tests pass a fixed one for golden output
    random_name: Callable[[], str] = field(default=lambda: secrets.token_hex(8))
    # show each command of inline lines as it runs (aibx run -v): /bin/sh -x, PowerShell's Set-PSDebug -Trace 1
    trace: bool = False


@dataclass
class CompileContext:
    template: model.ImageTemplate
    options: CompileOptions
    phase: str = "customize"  # "stage", "customize", "validate", "deprovision" or "unstage"

    @property
    def os_type(self) -> model.OsType:
        return self.template.os_type


def compile_step(step: model.Step, ctx: CompileContext) -> StepPlan:
    module_name = MODULES.get(step.kind)
    if module_name is None:
        kind = getattr(step, "type_name", "") or step.kind or "?"
        return StepPlan(
            name=step.label,
            kind=kind,
            phase=ctx.phase,
            path=step.path,
            blocked=[f"unknown customizer type {kind!r}"],
        )
    try:
        module = importlib.import_module(f"aibx.provisioners.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"aibx.provisioners.{module_name}":
            raise
        return StepPlan(
            name=step.label,
            kind=step.kind,
            phase=ctx.phase,
            path=step.path,
            blocked=[f"{step.kind} customizers are not supported by this version of aibx"],
        )
    return module.compile_step(step, ctx)


def unresolved_fields(step: model.Step, fields: dict[str, str]) -> list[str]:
    """Why a step cannot run: each of ``fields`` (attribute -> JSON name) whose value only Azure knows."""
    reasons = []
    for attr, json_name in fields.items():
        value = getattr(step, attr, None)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, Unresolved):
                where = f"{json_name}[{i}]" if isinstance(value, list) else json_name
                reasons.append(f"{where} has no value: {item.text} ({item.reason})")
    return reasons


def compile_plan(template: model.ImageTemplate, options: CompileOptions | None = None) -> Plan:
    """Every step in run order: stage the deprovision script, customizers, validators, deprovision (or, on
    Linux without ``generalize``, removing the staged script)."""
    from aibx.provisioners import deprovision

    options = options or CompileOptions()
    plan = Plan(template=template.file, os_type=template.os_type.value)
    plan.steps.append(deprovision.stage(CompileContext(template, options, "stage")))
    ctx = CompileContext(template, options, "customize")
    plan.steps += [compile_step(s, ctx) for s in template.customize]
    if template.validate:
        vctx = CompileContext(template, options, "validate")
        plan.steps += [compile_step(s, vctx) for s in template.validate.in_vm_validations]
    if options.generalize:
        plan.steps.append(deprovision.run(CompileContext(template, options, "deprovision")))
    elif template.os_type is not model.OsType.WINDOWS:
        plan.steps.append(deprovision.unstage(CompileContext(template, options, "unstage")))
    return plan
