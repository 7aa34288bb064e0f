"""aibx plan: show exactly what each step of a template would do on the VM (the commands, scripts and files)."""

from __future__ import annotations

import argparse
import functools
import re
import sys
from typing import Any

from aibx.commands.json_output import Refusal, refuse
from aibx.commands.template_args import add_packer_options, add_template_options
from aibx.exitcodes import ExitCode
from aibx.pipeline import Prepared, prepare
from aibx.plan import Exec, Restart, Upload, WindowsUpdate

EXAMPLES = """\
examples:
  aibx plan template.json
  aibx plan template.json --generalize             include the deprovision step
  aibx plan template.json --fetch-on-target        let the VM download scriptUri/sourceUri itself
  aibx plan template.json --format json | jq '.steps[].actions[].command'
  aibx plan templates/ --resource web-image         the template named web-image, whichever file holds it
  aibx plan template.json -v -q                     the scripts' wrapper on every step; no validation warnings
  aibx plan arm.json --parameters @params.json      parameters as the az CLI takes them (or NAME=VALUE)
  aibx plan build.pkr.hcl --var region=westeurope   a Packer build, translated in memory as translate --to aib
  aibx plan packer/ --only 'web.*'                   one build source of a Packer folder (as packer -only)

Secrets (SAS signatures, secure parameter values) are shown as ***.
exit status: 0 every step can run, 2 invalid template or a step that cannot run (unresolved values)
"""


def add_compile_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("what the steps do")
    g.add_argument(
        "--generalize",
        action="store_true",
        help="run AIB's deprovision step last (waagent -deprovision+user / Sysprep): the VM is unusable afterwards",
    )
    g.add_argument(
        "--deprovision-timeout",
        default="20m",
        metavar="DURATION",
        help="stop the deprovision step after this long (Sysprep waiting for IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE "
        "that never comes) and fail with exit code 4 (default 20m)",
    )
    g.add_argument(
        "--fetch-on-target",
        action="store_true",
        help="let the VM download scriptUri/sourceUri and check them (as AIB's build VM does), "
        "instead of aibx fetching them first",
    )
    g.add_argument(
        "--allow-any-destination",
        action="store_true",
        help="allow File destinations outside /tmp on Linux (AIB can only write to /tmp)",
    )
    g.add_argument(
        "--allow-local-files",
        action="store_true",
        help="let file: URIs read any file on this machine (absolute paths, paths out of the template's folder) "
        "and copy it to the VM; by default only files in the template's own folder are read",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    from aibx.cli import HelpFormatter

    p = sub.add_parser(
        "plan",
        help="show exactly what each customizer would do on the VM",
        description="Compile every step of an AIB image template into the exact commands, scripts and file "
        "transfers aibx run would use, in run order: staging the deprovisioning script, the customizers, the "
        "in-VM validations, and (with --generalize) the deprovision step.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "template",
        metavar="TEMPLATE",
        help="the image template (bare resource, ARM deployment or Bicep), or a Packer configuration (a .pkr.hcl "
        "file, a folder of them, or a legacy JSON template)",
    )
    add_template_options(p)
    add_packer_options(p)
    add_compile_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the wrapper aibx puts around each script on every step"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not show the template's validation warnings")
    p.set_defaults(handler=run)


def blocked_messages(prepared: Prepared, steps: Any = None) -> list[str]:
    """One line per reason a step cannot run, with file, line and JSON path."""
    from aibx.diagnostics import format_path

    doc = prepared.result.document
    out = []
    for step in steps if steps is not None else prepared.plan.steps:
        for reason in step.blocked:
            line, column = doc.source_map.locate(doc.full_path(step.path)) if step.path else (0, 0)
            where = f"{doc.file}:{line}:{column}" if line else doc.file
            path = f" {format_path(doc.full_path(step.path))}:" if step.path else ""
            out.append(prepared.redact(f"{where}: error:{path} step {step.name!r} cannot run: {reason}"))
    return out


def run(args: argparse.Namespace) -> int:
    prepared = prepare(args)
    if isinstance(prepared, Refusal):
        return refuse(args, "plan", prepared)
    problems = blocked_messages(prepared)
    code = ExitCode.USAGE if problems else ExitCode.OK
    if args.format == "json":
        print(render_json(prepared, exit_code=code))
    else:
        print(render_text(prepared, verbose=args.verbose), end="")
    for message in problems:
        print(message, file=sys.stderr)
    return code


# ----------------------------------------------------------------------------------------------- rendering
def render_json(prepared: Prepared, selected: Any = None, *, exit_code: int = 0) -> str:
    """The plan document (``aibx plan --format json``, ``aibx run --dry-run --format json``)."""
    import json

    from aibx.commands.json_output import header
    from aibx.plan import step_as_dict

    plan = prepared.plan
    reasons = {id(s.step): s.reason for s in selected.steps} if selected is not None else {}
    steps = []
    for index, step in enumerate(plan.steps, start=1):
        entry = {"index": index, **step_as_dict(step)}
        if selected is not None:
            entry["runs"] = reasons.get(id(step)) is None
            entry["skipReason"] = reasons.get(id(step))
        steps.append(entry)
    from aibx.redaction import redact_tree

    document = header(exit_code, template=plan.template, os=plan.os_type, steps=steps)
    if prepared.translations:  # a Packer configuration: what the translation made of it
        document["translations"] = [r.as_dict() for r in prepared.translations]
    return json.dumps(redact_tree(document, prepared.redact), indent=2)


# the random part of aibx's temporary names on the VM (/tmp/aibx-0123456789abcdef.sh, ...)
_TEMP_NAME = re.compile(r"aibx-[0-9a-f]{8,}")


def _shown_once(action: object, label: str, index: int, wrappers: dict[str, int]) -> list[str]:
    """An action's lines, with a script's wrapper (the same command around every script, with another temporary
    name) in full only the first time: later steps name the step that shows it, and show their script."""
    lines = action_lines(action, label)
    if not isinstance(action, Exec) or action.stdin is None or action.stdin.data is None or not lines:
        return lines
    shape = _TEMP_NAME.sub("aibx-*", action.command)
    first = wrappers.setdefault(shape, index)
    if first == index:
        return lines
    names = sorted(set(_TEMP_NAME.findall(action.command)))
    temp = f" (temporary name {', '.join(names)})" if names else ""
    return [f"    {label}exec   the wrapper shown in step [{first}]{temp}; aibx plan -v shows it here too", *lines[1:]]


def render_text(prepared: Prepared, selected: Any = None, verbose: bool = False) -> str:
    from aibx.diagnostics import format_path

    plan = prepared.plan
    reasons = {id(s.step): s.reason for s in selected.steps} if selected is not None else {}
    wrappers: dict[str, int] = {}  # a wrapper's shape -> the step that shows it (not verbose: only there)
    out = [f"Plan for {plan.template} ({plan.os_type}): {len(plan.steps)} steps, in run order", ""]
    for index, step in enumerate(plan.steps, start=1):
        where = f"  {format_path(step.path)}" if step.path else ""
        out.append(f"[{index}] {step.name}  ({step.kind}, {step.phase}){where}")
        if reasons.get(id(step)):
            out.append(f"    skipped: {reasons[id(step)]}")
        for reason in step.blocked:
            out.append(f"    CANNOT RUN: {reason}")
        for label, actions in (("", step.actions), ("on interrupt: ", step.on_interrupt), ("clean-up: ", step.cleanup)):
            for action in actions:
                out += action_lines(action, label) if verbose else _shown_once(action, label, index, wrappers)
        for note in step.notes:
            out.append(f"    note: {note}")
        out.append("")
    if not any(s.phase == "deprovision" for s in plan.steps):
        out.append("The deprovision step is left out: add --generalize to run it (the VM is unusable afterwards).")
    return prepared.redact("\n".join(out) + "\n")


@functools.singledispatch
def action_lines(action: object, label: str) -> list[str]:
    """How ``aibx plan`` shows one action (``label``: "", "on interrupt: " or "clean-up: "); one function per action
    type, registered below."""
    return [f"    {label}{type(action).__name__}"]


@action_lines.register
def _(action: Exec, label: str) -> list[str]:
    out = [f"    {label}exec   {action.command}"]
    if action.description and (not label or "-EncodedCommand " in action.command):
        out.append(f"           ({action.description})")
    script = _encoded_script(action.command)
    if script is not None:
        out.append("           decoded:")
        out += [f"           | {line}" for line in script.splitlines()]
    if action.stdin is not None:
        if action.stdin.data is not None:
            out.append("    stdin")
            text = action.stdin.data.decode("utf-8", errors="replace")
            out += [f"           | {line}" for line in text.splitlines()]
        else:
            out.append(f"    stdin  {action.stdin.describe()}")
    if action.valid_exit_codes != (0,):
        out.append(f"           success: exit code {', '.join(map(str, action.valid_exit_codes))}")
    for code, warning in action.warn_exit_codes:
        out.append(f"           exit code {code}: warning: {warning}")
    if action.timeout_seconds is not None:
        name = f" ({action.timeout_name})" if action.timeout_name else ""
        out.append(f"           stopped after {action.timeout_seconds:g} s{name}")
    return out


@action_lines.register
def _(action: Upload, label: str) -> list[str]:
    mode = f", mode {action.mode:04o}" if action.mode is not None else ""
    out = [f"    {label}upload {action.remote_path}{mode}", f"           from {action.content.describe()}"]
    if action.description:
        out.append(f"           ({action.description})")
    shown = _shown_text(action.content.data)
    if shown is not None:
        out += [f"           | {line}" for line in shown.splitlines()]
    return out


@action_lines.register
def _(action: Restart, label: str) -> list[str]:
    out = [f"    {label}restart {action.command}"]
    if action.check_command:
        out.append(f"           then until this succeeds: {action.check_command}")
    out.append(f"           (a new boot within {action.timeout_seconds:g} s)")
    return out


@action_lines.register
def _(action: WindowsUpdate, label: str) -> list[str]:
    return [
        f"    {label}update {action.command or action.description}",
        f"           search: {action.search_criteria}; at most {action.update_limit} updates",
        *(f"           filter: {f}" for f in action.filters),
        f"           (rounds until nothing is left, at most {action.max_rounds}; a restart between "
        "rounds when one is needed)",
    ]


def _encoded_script(command: str) -> str | None:
    """The PowerShell script of a ``-EncodedCommand`` command line (so a plan shows what it does), else None."""
    from aibx.powershell import decode_command

    _, found, encoded = command.partition(" -EncodedCommand ")
    if not found or " " in encoded.strip():
        return None
    try:
        return decode_command(encoded.strip())
    except ValueError:
        return None


SHOWN_UPLOAD_BYTES = 4096  # a script written for the step (inline lines, a launcher) is shown; aibx's own are not


def _shown_text(data: bytes | None) -> str | None:
    if data is None or len(data) > SHOWN_UPLOAD_BYTES:
        return None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
