"""aibx validate: check templates as the AIB service would, before upload."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from aibx.commands.template_args import add_packer_options, add_template_options, load_templates
from aibx.exitcodes import ExitCode

if TYPE_CHECKING:
    from aibx.commands.template_args import Loaded
    from aibx.console import Style

EXAMPLES = """\
examples:
  aibx validate template.json -p artifactsBaseUrl=https://example.com --parameters @params.json
  aibx validate template.json
  aibx validate templates/                       every *.json, *.jsonc, *.bicep, *.bicepparam below (not .dot folders)
  aibx validate deploy.json --parameters deploy.parameters.json --resource-group rg --subscription-id ID
  aibx validate quickstart.json -p region1=westeurope -p runOutputName=img1
  aibx validate template.json --api-version 2024-02-01 --strict
  aibx validate main.bicep --parameters dev.bicepparam -p imageName=web
  aibx validate dev.bicepparam                   the .bicep file it is `using`, with its values
  aibx validate build.pkr.hcl --var-file dev.pkrvars.hcl
                                                 a Packer build, as the AIB template translate --to aib makes
  az image builder show -n NAME -g RG | aibx validate -
  aibx validate template.json --format json | jq '.diagnostics[] | select(.severity=="error")'

Each diagnostic reads FILE:LINE:COLUMN: SEVERITY[CODE] JSON.PATH: MESSAGE. The codes are explained in
docs/diagnostics.md of the aibx sources.

exit status: 0 valid (warnings allowed), 2 invalid or unreadable (or any warning with --strict)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from aibx.cli import HelpFormatter

    p = sub.add_parser(
        "validate",
        help="check templates as the AIB service would",
        description="Check AIB image templates (bare resources or ARM deployment templates) against the schema "
        "of their apiVersion and AIB's documented rules, and lint for known pitfalls.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="template files or folders, or Packer configurations (.pkr.hcl files, folders of them, legacy JSON "
        "templates); - reads standard input",
    )
    add_template_options(p)
    add_packer_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument(
        "--allow-local-files",
        action="store_true",
        help="let a Bicep file's loadTextContent() and modules, and a Packer configuration's scripts and files, "
        "read files outside its folder",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aibx.console import Style
    from aibx.diagnostics import Severity, format_path

    if hasattr(sys.stdout, "reconfigure"):  # a template may hold text the terminal's encoding cannot show
        sys.stdout.reconfigure(errors="backslashreplace")
    loaded = load_templates(args, args.paths)
    diags = loaded.all_diagnostics()
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = len(diags) - errors
    failed = errors > 0 or (args.strict and warnings > 0) or not loaded.files
    code = ExitCode.USAGE if failed else ExitCode.OK
    if args.format == "json":
        from aibx.commands import json_output

        json_output.write(
            json_output.header(
                code,
                valid=not failed,
                files=loaded.files,
                skipped=loaded.skipped,
                templates=[
                    {
                        "file": r.document.file,
                        "name": r.document.name,
                        "resource": format_path(r.document.prefix),
                        "apiVersion": r.api_version,
                        "os": r.template.os_type.value,
                        "osReason": r.template.os_reason,
                        "errors": sum(d.severity is Severity.ERROR for d in r.diagnostics),
                        "warnings": sum(d.severity is Severity.WARNING for d in r.diagnostics),
                    }
                    for r in loaded.results
                ],
                diagnostics=[d.as_dict() for d in diags],
                summary={"errors": errors, "warnings": warnings},
                # a Packer configuration: what the in-memory translation made of each field and provisioner
                **({"translations": [r.as_dict() for r in loaded.reports]} if loaded.packer else {}),
            )
        )
        return code

    style = Style(sys.stdout)
    colors = {Severity.ERROR: ("red", "bold"), Severity.WARNING: ("yellow",)}
    for d in diags:
        text = d.format()
        marker = f"{d.severity.value}[{d.code}]"
        print(text.replace(marker, style(marker, *colors[d.severity]), 1))
    print(summary_line(loaded, errors, warnings, failed, style))
    return code


def summary_line(loaded: Loaded, errors: int, warnings: int, failed: bool, style: Style) -> str:
    def count(n: int, word: str) -> str:
        return f"{n} {word}{'s' * (n != 1)}"

    if loaded.files:
        summary = (
            f"{count(len(loaded.files), 'file')}, {count(len(loaded.results), 'template')}: "
            f"{count(errors, 'error')}, {count(warnings, 'warning')}"
        )
    else:
        summary = "no template files found" if not errors else count(errors, "error")
    if loaded.skipped:
        summary += f" ({count(len(loaded.skipped), 'other JSON file')} skipped)"
    if failed and not errors and warnings:
        verdict = style("invalid (--strict: warnings count)", "red", "bold")
    else:
        verdict = style("invalid", "red", "bold") if failed else style("valid", "green")
    return f"{summary} - {verdict}"
