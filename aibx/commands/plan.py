"""aibx plan: show exactly what each step of a template would do on the VM (the commands, scripts and files)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from aibx.commands.json_output import Refusal, refuse
from aibx.commands.template_args import add_template_options
from aibx.exitcodes import ExitCode

EXAMPLES = """\
examples:
  aibx plan template.json
  aibx plan template.json --generalize             include the deprovision step
  aibx plan template.json --fetch-on-target        let the VM download scriptUri/sourceUri itself
  aibx plan template.json --format json | jq '.steps[].actions[].command'

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
    p.add_argument("template", metavar="TEMPLATE", help="the image template (bare resource or ARM deployment)")
    add_template_options(p)
    add_compile_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    p.set_defaults(handler=run)


@dataclass
class Prepared:
    result: Any  # validation.Result
    plan: Any  # aibx.plan.Plan
    redact: Any  # Callable[[str], str]
    # how the plan was compiled: a fleet compiles it again for each host, so that every host gets its own random
    # temporary names (two VMs that share a /tmp, or a user who saw one host's names, cannot collide or plant)
    compile_options: Any = None  # aibx.provisioners.CompileOptions

    def compile_again(self) -> Any:
        """The same plan with new random names (for one more host)."""
        from aibx.provisioners import compile_plan

        return compile_plan(self.result.template, self.compile_options)


def prepare(args: argparse.Namespace, *, random_name: Any = None) -> Prepared | Refusal:
    """Load, validate and compile the template; on invalid input print why and return the refusal."""
    from aibx.commands.template_args import load_templates
    from aibx.diagnostics import Severity
    from aibx.engine.redaction import Redactor
    from aibx.loader import STDIN
    from aibx.provisioners import CompileOptions, compile_plan

    loaded = load_templates(args, [args.template])
    diags = loaded.all_diagnostics()
    errors = [d for d in diags if d.severity is Severity.ERROR]
    for d in errors:
        print(d.format(), file=sys.stderr)
    warnings = len(diags) - len(errors)
    if errors:
        count = f"{len(errors)} error{'s' * (len(errors) != 1)}"
        return _refused(f"aibx: {args.template} is not a valid image template ({count})", errors)
    if len(loaded.results) != 1:
        names = ", ".join(str(r.document.name) for r in loaded.results) or "none"
        return _refused(
            f"aibx: {args.template} holds {len(loaded.results)} image templates ({names}); "
            "pick one with --resource NAME"
        )
    if warnings:
        print(f"aibx: {warnings} validation warning(s); see them with: aibx validate {args.template}", file=sys.stderr)
    result = loaded.results[0]
    from aibx.model import parse_duration

    deprovision_timeout = parse_duration(args.deprovision_timeout)
    if deprovision_timeout is None or deprovision_timeout <= 0:
        return _refused(
            f"aibx: --deprovision-timeout {args.deprovision_timeout!r} is not a duration such as 20m, 1h or 90s"
        )
    options = CompileOptions(
        generalize=args.generalize,
        deprovision_timeout_seconds=deprovision_timeout,
        fetch_on_target=args.fetch_on_target,
        allow_any_destination=args.allow_any_destination,
        allow_local_files=args.allow_local_files,
        base_dir=None if args.template == STDIN else os.path.dirname(result.document.file),
    )
    if random_name is not None:
        options.random_name = random_name
    plan = compile_plan(result.template, options)
    return Prepared(result, plan, Redactor(result.document.secrets), options)


def _refused(message: str, diagnostics: list[Any] | None = None) -> Refusal:
    """Invalid input: the message on standard error (after the diagnostics, already printed), and the refusal."""
    print(message, file=sys.stderr)
    errors = [d.format() for d in diagnostics or []]
    return Refusal(ExitCode.USAGE, [*errors, message], diagnostics or [])


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
        print(render_text(prepared), end="")
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
    from aibx.engine.redaction import redact_tree

    document = header(exit_code, template=plan.template, os=plan.os_type, steps=steps)
    return json.dumps(redact_tree(document, prepared.redact), indent=2)


def render_text(prepared: Prepared, selected: Any = None) -> str:
    from aibx.diagnostics import format_path
    from aibx.plan import Exec, Restart, Upload, WindowsUpdate

    plan = prepared.plan
    reasons = {id(s.step): s.reason for s in selected.steps} if selected is not None else {}
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
                if isinstance(action, Exec):
                    out.append(f"    {label}exec   {action.command}")
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
                elif isinstance(action, Upload):
                    mode = f", mode {action.mode:04o}" if action.mode is not None else ""
                    out.append(f"    {label}upload {action.remote_path}{mode}")
                    out.append(f"           from {action.content.describe()}")
                    if action.description:
                        out.append(f"           ({action.description})")
                    text = _shown_text(action.content.data)
                    if text is not None:
                        out += [f"           | {line}" for line in text.splitlines()]
                elif isinstance(action, Restart):
                    out.append(f"    {label}restart {action.command}")
                    if action.check_command:
                        out.append(f"           then until this succeeds: {action.check_command}")
                    out.append(f"           (a new boot within {action.timeout_seconds:g} s)")
                elif isinstance(action, WindowsUpdate):
                    out.append(f"    {label}update {action.command or action.description}")
                    out.append(f"           search: {action.search_criteria}; at most {action.update_limit} updates")
                    out += [f"           filter: {f}" for f in action.filters]
                    out.append(
                        f"           (rounds until nothing is left, at most {action.max_rounds}; a restart between "
                        "rounds when one is needed)"
                    )
        for note in step.notes:
            out.append(f"    note: {note}")
        out.append("")
    if not any(s.phase == "deprovision" for s in plan.steps):
        out.append("The deprovision step is left out: add --generalize to run it (the VM is unusable afterwards).")
    return prepared.redact("\n".join(out) + "\n")


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
