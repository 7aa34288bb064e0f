"""aibx translate: AIB templates to Packer HCL2, and Packer (HCL2 or legacy JSON) to AIB templates."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aibx.commands.template_args import add_template_options
from aibx.exitcodes import ExitCode

if TYPE_CHECKING:
    from aibx.translators.bicep_writer import PackerVariable
    from aibx.translators.from_packer import Upload
    from aibx.translators.report import Report

EXAMPLES = """\
examples:
  aibx translate template.json --to packer -o template.pkr.hcl
  aibx translate deploy.json --parameters deploy.parameters.json --to packer -o packer/
  aibx translate build.pkr.hcl --to aib -o template.json
  aibx translate build.pkr.hcl --to bicep -o image.bicep
  aibx translate template.json --to bicep -o image.bicep
  aibx translate image.bicep --parameters image.bicepparam --to packer
  aibx translate packer/ --to aib --var image_os=ubuntu22 --only 'ubuntu-22_04.*' -o out/
  aibx translate packer/ --to aib --upload-base-uri https://acct.blob.core.windows.net/aib -o out/
  aibx translate legacy.json --to aib --arm --api-version 2022-07-01 -o deploy.json
  aibx translate template.json --to packer --report-json report.json --allow-lossy
  aibx translate template.json --to packer --format json | jq -r '.reports[0].text'
  aibx translate template.json --to packer -o t.pkr.hcl --format json | jq '.reports[].entries[] | select(.code)'

The report (standard error) lists every field and step: mapped, approximated (how) or dropped (why).
Fields the target cannot express make the translation lossy: exit 1 unless --allow-lossy.
Unknown values become <placeholders> (AIB, set with aibx validate -p) or variables (Packer, -var).
Secrets (secure ARM parameters, sensitive Packer variables) are never written: they become sensitive
Packer variables, secureString parameters (--arm) or <placeholders> (a bare AIB template: lossy), AIB077.
Nor are values from your environment (env(), {{env}}, PKR_VAR_NAME; AIB079) unless --allow-env-values,
nor local files outside the configuration's folder (AIB078) unless --allow-local-files.

exit status: 0 translated, 1 lossy (without --allow-lossy), 2 invalid input or usage
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from aibx.cli import HelpFormatter

    p = sub.add_parser(
        "translate",
        help="convert between AIB templates, Bicep and Packer",
        description="Translate an AIB image template (JSON, ARM or Bicep) to a Packer HCL2 build (--to packer), "
        "or a Packer configuration (a .pkr.hcl file, a folder of them, or a legacy JSON template) to AIB image "
        "templates (--to aib); --to bicep writes Bicep from either, through aibx's template model.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="AIB template or .bicep (--to packer|bicep); Packer file or folder (--to aib|bicep)",
    )
    p.add_argument("--to", required=True, choices=["packer", "aib", "bicep"], help="the format to write")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE|DIR",
        help="where to write (a folder when it ends with / or exists; default: standard output)",
    )
    p.add_argument("--allow-lossy", action="store_true", help="exit 0 even if something could not be translated")
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: print one JSON document on standard output: the report, and the translation itself when "
        "there is no -o (default: text)",
    )
    p.add_argument(
        "--report-json",
        metavar="FILE",
        help="write the JSON document --format json prints to FILE as well (- is an old spelling of --format json)",
    )
    p.add_argument("--arm", action="store_true", help="--to aib: write an ARM deployment template around the resource")
    g = p.add_argument_group("Packer input (--to aib)")
    g.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a Packer variable")
    g.add_argument("--var-file", action="append", default=[], metavar="FILE", help="a Packer variables file")
    g.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="BUILD.SOURCE",
        help="translate only matching builds/sources (globs; TYPE.NAME or BUILD.TYPE.NAME also match)",
    )
    g.add_argument(
        "--upload-base-uri",
        metavar="URL",
        help="publish local scripts and files under this URL: aibx writes them to the upload folder and "
        "refers to them with sha256 checksums (without it, small text files are inlined)",
    )
    g.add_argument(
        "--allow-local-files",
        action="store_true",
        help="let the configuration's scripts and files be read from anywhere on this machine (absolute paths, "
        "paths out of its folder) and copied into the translation; by default only files in its own folder are read "
        "(Bicep input: the same for loadTextContent() and modules)",
    )
    g.add_argument(
        "--allow-env-values",
        action="store_true",
        help="write values that come from your environment (env(), {{env}}, PKR_VAR_NAME) into the translation; by "
        "default a parameter (--arm) or a <placeholder> stands there (AIB079)",
    )
    g.add_argument(
        "--upload-dir",
        metavar="DIR",
        help="where to write the files to publish (default: 'upload' next to the output)",
    )
    add_template_options(p)
    for action in p._actions:
        if action.dest == "api_version":
            action.help = "AIB input: read as this apiVersion; AIB output: write this apiVersion (default: newest)"
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aibx.commands import json_output
    from aibx.console import Style
    from aibx.translators.report import format_reports

    err = sys.stderr
    if args.report_json == "-":
        print("aibx: --report-json - is deprecated: use --format json", file=err)
        args.format, args.report_json = "json", None
    json_mode = args.format == "json"
    if args.report_json:
        from aibx.commands.output_paths import output_path_problem

        problem = output_path_problem(args.report_json, "report.json")
        if problem:  # before anything is translated or written
            message = f"aibx translate: --report-json {args.report_json}: {problem}"
            print(message, file=err)
            return json_output.refuse(args, "translate", json_output.Refusal(ExitCode.USAGE, [message]))
    outcome = _to_packer(args, json_mode) if _reads_aib(args) else _to_aib(args, json_mode)
    lossy = any(r.lossy for r in outcome.reports)
    if args.report_json:
        try:
            text = json.dumps(_document(args, outcome, lossy), indent=2, ensure_ascii=False)
            Path(args.report_json).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            outcome.fail("AIB076", f"cannot write the report: {exc.strerror or exc}", args.report_json)
    for d in outcome.diagnostics:
        print(d.format(), file=err)
    if outcome.reports:
        print(format_reports(outcome.reports, Style(err)), file=err)
    for note in outcome.notes:
        print(note, file=err)
    if lossy and not args.allow_lossy and not outcome.failed:
        print("aibx: the translation is lossy (see 'dropped' above); pass --allow-lossy to accept it", file=err)
    if json_mode:
        json_output.write(_document(args, outcome, lossy))
    return _exit_code(args, outcome, lossy)


def _reads_aib(args: argparse.Namespace) -> bool:
    """Whether the input is an AIB template (JSON, ARM, Bicep) rather than a Packer configuration."""
    if args.to == "packer":
        return True
    if args.to == "aib":
        return False
    from aibx.translators import packer_kind

    return not (Path(args.path).is_dir() or packer_kind(args.path))


def _exit_code(args: argparse.Namespace, outcome: _Outcome, lossy: bool) -> int:
    if outcome.failed:
        return ExitCode.USAGE
    return ExitCode.FAILED if lossy and not args.allow_lossy else ExitCode.OK


def _document(args: argparse.Namespace, outcome: _Outcome, lossy: bool) -> dict[str, object]:
    """The JSON document (``--format json``, ``--report-json FILE``): every report, with the translation's text
    when it went to no file, and every diagnostic."""
    reports = []
    for report in outcome.reports:
        reports.append({**report.as_dict(), "text": outcome.texts.get(id(report))})
    from aibx.commands.json_output import header

    return header(
        _exit_code(args, outcome, lossy),
        to=args.to,
        lossy=lossy,
        reports=reports,
        diagnostics=[d.as_dict() for d in outcome.diagnostics],
    )


class _Outcome:
    def __init__(self) -> None:
        self.reports: list = []
        self.diagnostics: list = []
        self.notes: list[str] = []
        self.failed = False
        self.texts: dict[int, str] = {}  # id(report): the translation, in JSON mode when there is no -o

    def print(self, report: object, text: str, json_mode: bool) -> None:
        """The translation with no -o: on standard output, or in the JSON document."""
        if json_mode:
            self.texts[id(report)] = text
        else:
            sys.stdout.write(text)

    def fail(self, code: str, message: str, file: str = "") -> _Outcome:
        from aibx.diagnostics import make

        self.diagnostics.append(make(code, message, file=file))
        self.failed = True
        return self


def _output_target(args: argparse.Namespace, count: int) -> tuple[Path | None, bool]:
    """(path, is a folder)."""
    if not args.output:
        return None, False
    p = Path(args.output)
    return p, args.output.endswith(("/", "\\")) or p.is_dir() or count > 1


def _write(path: Path, text: str, outcome: _Outcome) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        outcome.fail("AIB076", f"cannot write: {exc.strerror or exc}", str(path))
        return False
    return True


# ----------------------------------------------------------------------------------------------- AIB → Packer
def _to_packer(args: argparse.Namespace, json_mode: bool) -> _Outcome:
    from dataclasses import replace

    from aibx.commands.template_args import load_templates
    from aibx.diagnostics import Severity, has_errors
    from aibx.translators import aib_to_packer, packer_kind

    outcome = _Outcome()
    if Path(args.path).is_dir() or packer_kind(args.path):
        return outcome.fail("AIB076", "this is a Packer configuration; translate it with --to aib", args.path)
    packer_only = (args.var, args.var_file, args.only, args.upload_base_uri, args.arm, args.upload_dir)
    bicep_input = args.path.lower().endswith((".bicep", ".bicepparam"))
    if any(packer_only) or (args.allow_local_files and not bicep_input) or args.allow_env_values:
        return outcome.fail(
            "AIB076",
            "--var, --var-file, --only, --upload-base-uri, --upload-dir, --arm, --allow-local-files and "
            "--allow-env-values apply to --to aib",
        )
    loaded = load_templates(args, [args.path], open_parameters=True)
    # reading problems stop the translation; what AIB would reject in a readable template does not (the
    # translation shows exactly what it made of each field), so validation errors are shown as warnings
    outcome.diagnostics += loaded.diagnostics
    if has_errors(loaded.diagnostics) or not loaded.results:
        outcome.failed = True
        if not loaded.results and not has_errors(loaded.diagnostics):
            outcome.fail("AIB003", "no image template to translate", args.path)
        return outcome
    rejected = 0
    for result in loaded.results:
        for d in result.diagnostics:
            if d.severity is Severity.ERROR:
                rejected += 1
                d = replace(d, severity=Severity.WARNING)
            outcome.diagnostics.append(d)
    if rejected:
        outcome.notes.append(
            f"aibx: AIB would reject the template ({rejected} error{'s' * (rejected != 1)} above, shown as "
            "warnings); it was translated anyway"
        )
    target, folder = _output_target(args, len(loaded.results))
    if len(loaded.results) > 1 and target is None:
        return outcome.fail("AIB076", f"{len(loaded.results)} templates in the file: write them with -o DIR", args.path)
    output_dir = (target if folder else target.parent) if target is not None else Path.cwd()
    texts: list[tuple[Report, Path | None, str]] = []
    for result in loaded.results:
        tpl = result.template
        out_path = None
        if target is not None:
            from aibx.translators.to_packer import source_name

            out_path = (
                target / f"{source_name(tpl)}.{'bicep' if args.to == 'bicep' else 'pkr.hcl'}" if folder else target
            )
        if args.to == "bicep":
            from aibx.translators import aib_to_bicep

            text, report = aib_to_bicep(tpl, source=args.path, api_version=args.api_version)
        else:
            text, report = aib_to_packer(tpl, output_dir, source=args.path)
        report.output = str(out_path) if out_path else None
        outcome.reports.append(report)
        outcome.diagnostics += report.diagnostics
        if report.diagnostics:
            outcome.failed = True
        texts.append((report, out_path, text))
    if outcome.failed:
        outcome.notes = [n for n in outcome.notes if not n.endswith("it was translated anyway")]
        return outcome
    for report, out_path, text in texts:
        if out_path is None:
            outcome.print(report, text, json_mode)
        elif not _write(out_path, text, outcome):
            return outcome
    return outcome


# ----------------------------------------------------------------------------------------------- Packer → AIB
def _variables(config: object) -> dict[str, PackerVariable]:
    """The Packer variables that have values, for the params of a Bicep file."""
    from aibx.document import Unresolved
    from aibx.translators.bicep_writer import PackerVariable

    sensitive: set[str] = getattr(config, "sensitive_names", set())
    secrets: set[str] = getattr(config, "secrets", set())  # values from the environment are secrets too (AIB079)
    return {
        name: PackerVariable(value, name in sensitive or (isinstance(value, str) and value in secrets))
        for name, value in getattr(config, "variables", {}).items()
        if value is not None and not isinstance(value, Unresolved)
    }


def _to_aib(args: argparse.Namespace, json_mode: bool) -> _Outcome:
    import os

    from aibx.diagnostics import has_errors
    from aibx.swagger_tables import API_VERSIONS
    from aibx.translators import AibOptions, PackerInputs, aib_document, packer_to_aib, read_packer

    outcome = _Outcome()
    path = args.path
    if _refuse_packer_input(args, outcome):
        return outcome
    config = read_packer(
        path,
        PackerInputs(
            variables=args.var,
            var_files=args.var_file,
            env=dict(os.environ),
            cwd=os.getcwd(),
            env_values=args.allow_env_values,
        ),
    )
    outcome.diagnostics += config.diagnostics
    if has_errors(config.diagnostics):
        outcome.failed = True
        return outcome
    patterns = [p.strip() for item in args.only for p in item.split(",") if p.strip()]
    options = AibOptions(
        only=patterns,
        upload_base_uri=args.upload_base_uri,
        api_version=args.api_version or API_VERSIONS[-1],
        cwd=os.getcwd(),
        allow_local_files=args.allow_local_files,
    )
    translations = packer_to_aib(config, options)
    if not translations:
        what = f" matching --only {', '.join(patterns)}" if patterns else ""
        return outcome.fail("AIB076", f"no build source{what} to translate", path)
    produced = [t for t in translations if t.template is not None]
    target, folder = _output_target(args, len(produced))
    if len(produced) > 1 and target is None:
        names = ", ".join(t.name for t in produced)
        return outcome.fail(
            "AIB076", f"{len(produced)} templates ({names}): write them with -o DIR or pick one with --only", path
        )
    uploads = [u for t in produced for u in t.uploads]
    upload_dir = _upload_dir(args, target, folder) if uploads else None
    documents: list[tuple[Report, Path | None, str]] = []
    for t in translations:
        outcome.reports.append(t.report)
        if t.template is None:
            t.report.output = "(nothing: not translated)"
            continue
        if args.to == "bicep":
            from aibx.translators.bicep_writer import write_bicep

            t.report.target = "bicep"
            text = write_bicep(t.template, t.report, api_version=options.api_version, variables=_variables(config))
        else:
            document = aib_document(t.template, t.report, api_version=options.api_version, arm=args.arm)
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if t.report.diagnostics:  # a secret it could not keep out: nothing is written
            outcome.diagnostics += t.report.diagnostics
            outcome.failed = True
            continue
        out_path = None
        if target is not None:
            suffix = "bicep" if args.to == "bicep" else "json"
            out_path = target / f"{t.name.replace('/', '_')}.{suffix}" if folder else target
        t.report.output = str(out_path) if out_path else None
        documents.append((t.report, out_path, text))
    if outcome.failed:
        return outcome
    for report, out_path, text in documents:
        if out_path is None:
            outcome.print(report, text, json_mode)
        elif not _write(out_path, text, outcome):
            return outcome
    if upload_dir is not None:
        _write_uploads(args, uploads, upload_dir, outcome)
    return outcome


def _refuse_packer_input(args: argparse.Namespace, outcome: _Outcome) -> bool:
    """What cannot be a Packer configuration to read (or a wrong --api-version): the outcome fails, True."""
    from aibx.swagger_tables import API_VERSIONS
    from aibx.translators import packer_kind

    path = args.path
    if not Path(path).exists():
        outcome.fail("AIB001", "no such file or folder", path)
    elif path.endswith(".pkr.json"):
        outcome.fail("AIB072", "HCL2 in JSON syntax (.pkr.json) is not supported; use .pkr.hcl", path)
    elif packer_kind(path) is None:
        outcome.fail(
            "AIB072",
            'not a Packer configuration (a .pkr.hcl file, a folder of them, or a JSON template with "builders")'
            + ("; an AIB template translates with --to packer" if path.endswith(".json") else ""),
            path,
        )
    elif args.api_version and args.api_version not in API_VERSIONS:
        outcome.fail("AIB008", f"--api-version {args.api_version}: known are {', '.join(API_VERSIONS)}")
    else:
        return False
    return True


def _upload_dir(args: argparse.Namespace, target: Path | None, folder: bool) -> Path:
    if args.upload_dir:
        return Path(args.upload_dir)
    if target is not None:
        return (target if folder else target.parent) / "upload"
    return Path("upload")


def _write_uploads(args: argparse.Namespace, uploads: list[Upload], upload_dir: Path, outcome: _Outcome) -> None:
    """The local files the templates now reference by URI, written once each for the user to publish."""
    written = set()
    for u in uploads:
        if u.name in written:
            continue
        written.add(u.name)
        data = u.data if u.data is not None else Path(u.local or "").read_bytes()
        try:
            dest = upload_dir / u.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        except OSError as exc:
            outcome.fail("AIB076", f"cannot write: {exc.strerror or exc}", str(upload_dir / u.name))
            return
    print(
        f"aibx: {len(written)} file(s) to publish under {args.upload_base_uri} written to {upload_dir}/",
        file=sys.stderr,
    )
