"""Options every verb that reads an AIB template shares, and loading the templates they name.

Only the standard library is imported at module level (``aibx --version`` builds every verb's parser); the
loader, model and validation are imported when templates are loaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aibx.diagnostics import Diagnostic
    from aibx.loader import LoadOptions
    from aibx.model import OsType
    from aibx.validation import Result

# what a folder argument expands to; dot-folders (.git, .venv) are not searched
TEMPLATE_PATTERNS = ("*.json", "*.jsonc", "*.bicep", "*.bicepparam")


def add_template_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("template input")
    g.add_argument(
        "-p",
        "--parameter",
        dest="parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an ARM parameter or substitute a <NAME> placeholder (repeatable)",
    )
    g.add_argument(
        "--parameters",
        dest="parameter_files",
        action="append",
        default=[],
        metavar="FILE",
        help="an ARM parameters file, as the az CLI takes it: FILE or @FILE, or NAME=VALUE as -p (repeatable; "
        "later ones and -p win)",
    )
    g.add_argument("--resource", metavar="NAME", help="pick one image template from an ARM deployment template")
    g.add_argument("--api-version", metavar="VERSION", help="check against this apiVersion instead of the file's")
    g.add_argument("--os", choices=["linux", "windows"], help="the image's OS, when aibx cannot tell")
    g.add_argument("--subscription-id", metavar="ID", help="value of subscription().subscriptionId")
    g.add_argument("--resource-group", metavar="NAME", help="value of resourceGroup().name")
    g.add_argument("--location", metavar="REGION", help="value of resourceGroup().location")


def add_packer_options(parser: argparse.ArgumentParser, *, only: bool = True) -> None:
    """A Packer configuration as input (``validate``, ``plan``, ``run``): the options ``translate --to aib`` takes
    to read one. ``run`` has its own ``--only`` (a build source or a step)."""
    g = parser.add_argument_group("Packer input (a .pkr.hcl file, a folder of them, or a legacy JSON template)")
    g.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a Packer variable")
    g.add_argument("--var-file", action="append", default=[], metavar="FILE", help="a Packer variables file")
    if only:
        g.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="BUILD.SOURCE",
            help="only the matching builds/sources, as packer -only (globs; TYPE.NAME or BUILD.TYPE.NAME also match)",
        )
    g.add_argument(
        "--allow-env-values",
        action="store_true",
        help="use values that come from your environment (env(), {{env}}, PKR_VAR_NAME); by default each is a "
        "<placeholder> to give with -p NAME=VALUE (AIB079)",
    )


def load_options(args: argparse.Namespace) -> tuple[LoadOptions, list[Diagnostic]]:
    from aibx import armexpr
    from aibx.diagnostics import Severity, closest, make
    from aibx.loader import COMMAND_LINE, LoadOptions, parse_assignments
    from aibx.swagger_tables import API_VERSIONS

    files, assignments = split_parameters(args.parameter_files)
    params, diags = parse_assignments([*assignments, *args.parameter])
    if args.api_version is not None and args.api_version not in API_VERSIONS:
        close = closest(args.api_version, API_VERSIONS, 0.6)
        hint = f"did you mean {close}?" if close else f"known: {', '.join(API_VERSIONS)}"
        diags.append(
            make(
                "AIB008",
                f"--api-version {args.api_version} is not an AIB API version; {hint}",
                file=COMMAND_LINE,
                severity=Severity.ERROR,
            )
        )
    opts = LoadOptions(
        parameters=params,
        parameter_files=files,
        resource=args.resource,
        api_version=args.api_version,
        context=armexpr.DeploymentContext(
            subscription_id=args.subscription_id, resource_group=args.resource_group, location=args.location
        ),
        allow_local_files=getattr(args, "allow_local_files", False),
    )
    if hasattr(args, "var_file"):  # validate, plan, run (translate reads Packer itself)
        from aibx.packer_input import PackerOptions

        opts.packer = PackerOptions(
            variables=args.var,
            var_files=args.var_file,
            only=args.only,
            only_names_steps=hasattr(args, "from_step"),  # run: --only names steps too
            allow_env_values=args.allow_env_values,
        )
    return opts, diags


def split_parameters(values: list[str]) -> tuple[list[str], list[str]]:
    """``--parameters`` as the az CLI reads it: ``@FILE`` (or a FILE that exists) is a parameters file, and
    ``NAME=VALUE`` an assignment like ``-p``. Returns (files, assignments)."""
    import os
    import re

    files, assignments = [], []
    for value in values:
        if value.startswith("@"):
            files.append(value[1:])
        elif re.match(r"^[A-Za-z_][\w.-]*=", value) and not os.path.exists(value):
            assignments.append(value)
        else:
            files.append(value)
    return files, assignments


def os_override(args: argparse.Namespace) -> OsType | None:
    from aibx.model import OsType

    return {"linux": OsType.LINUX, "windows": OsType.WINDOWS}.get(args.os or "")


class Loaded:
    """Validated templates of one or more files. (A plain class: `dataclasses` is slow to import, and every
    verb's parser, `aibx --version` included, imports this module.)"""

    def __init__(
        self,
        results: list[Result] | None = None,
        diagnostics: list[Diagnostic] | None = None,
        files: list[str] | None = None,
        skipped: list[str] | None = None,
    ) -> None:
        self.results: list[Result] = results or []
        # loader and command-line diagnostics; the per-template ones are in results
        self.diagnostics: list[Diagnostic] = diagnostics or []
        self.files: list[str] = files or []
        self.skipped: list[str] = skipped or []  # files in a directory that hold no image template
        self.reports: list[Any] = []  # the translation reports of Packer configurations (aibx.translators.report)
        self.packer = False  # a Packer configuration was read

    def all_diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic, file by file (in the order the files were named), each file's in source order."""
        out = list(self.diagnostics)
        for r in self.results:
            out += r.diagnostics
        # a parameters file or a -p is read again for each template file: say what is wrong with it once
        out = list(dict.fromkeys(out))
        order = {f: i for i, f in enumerate(self.files)}
        return sorted(out, key=lambda d: (order.get(d.file, -1), d.line, d.column))

    @property
    def has_errors(self) -> bool:
        from aibx import diagnostics

        return diagnostics.has_errors(self.all_diagnostics())


def expand_paths(paths: list[str]) -> list[tuple[str, bool]]:
    """Files to read, each with whether the user named it (True) or it was found in a directory (False)."""
    from pathlib import Path

    from aibx.packer_input import is_packer_config

    out: list[tuple[str, bool]] = []
    for p in paths:
        path = Path(p)
        if p != "-" and path.is_dir() and not is_packer_config(p):
            found = {f for pattern in TEMPLATE_PATTERNS for f in path.rglob(pattern) if f.is_file()}
            visible = [f for f in found if not any(part.startswith(".") for part in f.relative_to(path).parts)]
            out += [(str(f), False) for f in sorted(visible)]
        else:
            out.append((p, True))
    return out


def load_templates(args: argparse.Namespace, paths: list[str], *, open_parameters: bool = False) -> Loaded:
    from aibx import validation
    from aibx.diagnostics import has_errors, make
    from aibx.loader import COMMAND_LINE, load, unused_assignments

    opts, diags = load_options(args)
    if open_parameters:  # translations carry parameters without a value (and unknown context) as variables
        from dataclasses import replace

        from aibx.loader import open_context

        opts = replace(opts, open_parameters=True, context=open_context(opts.context))
    loaded = Loaded(diagnostics=diags)
    if has_errors(diags):
        return loaded
    load_results = []
    override = os_override(args)
    expanded = expand_paths(paths)
    for path, named in expanded:
        result = load(path, opts)
        if not named and result.unrelated:
            loaded.skipped.append(path)  # a parameters file or another JSON file beside the templates
            continue
        if not named and result.packer:
            loaded.skipped.append(path)  # a legacy Packer template beside AIB templates: name it to read it
            continue
        if not named and opts.resource and any(d.code == "AIB009" for d in result.diagnostics):
            loaded.skipped.append(path)  # --resource NAME across a folder: another file holds it
            continue
        load_results.append(result)
        loaded.files.append("<stdin>" if path == "-" else path)
        loaded.diagnostics += result.diagnostics
        loaded.reports += result.reports
        if result.packer:
            loaded.packer = True
            if hasattr(args, "only"):  # run: the patterns that picked build sources do not select steps
                picked = set(result.packer_only)
                args.only = [o for o in args.only if not {x.strip() for x in o.split(",") if x.strip()} <= picked]
        for doc in result.documents:
            loaded.results.append(validation.validate(doc, override))
    if opts.resource and not loaded.results and loaded.skipped and all(not named for _, named in expanded):
        loaded.diagnostics.append(
            make(
                "AIB009",
                f"--resource {opts.resource}: no image template of that name in {', '.join(paths)}",
                file=COMMAND_LINE,
            )
        )
    loaded.diagnostics += _packer_options_unused(args, loaded)
    loaded.diagnostics += unused_assignments(opts.parameters, load_results)
    _warn_secure_parameters_on_the_command_line(opts.parameters, loaded.results)
    return loaded


def _packer_options_unused(args: argparse.Namespace, loaded: Loaded) -> list[Diagnostic]:
    """--var, --var-file, --allow-env-values (and --only, but on run) given for AIB templates: an error, not
    silently nothing."""
    from aibx.diagnostics import make
    from aibx.loader import COMMAND_LINE

    if loaded.packer or not hasattr(args, "var_file") or not loaded.files:
        return []
    given = [("--var", args.var), ("--var-file", args.var_file), ("--allow-env-values", args.allow_env_values)]
    if not hasattr(args, "from_step"):  # run's --only names steps
        given.append(("--only", args.only))
    names = [name for name, value in given if value]
    if not names:
        return []
    return [
        make(
            "AIB074",
            f"{', '.join(names)}: for a Packer configuration (a .pkr.hcl file, a folder of them, a legacy JSON "
            "template), not for an AIB template (its parameters: -p NAME=VALUE or --parameters FILE; one of several "
            "templates: --resource NAME)",
            file=COMMAND_LINE,
        )
    ]


def _warn_secure_parameters_on_the_command_line(parameters: Mapping[str, str], results: list[Result]) -> None:
    """A secureString (or secureObject) value given with ``-p`` is in this process's command line, which every
    local user can read (``ps``, /proc/PID/cmdline): say so, once per name (never the value)."""
    import sys

    secure = {name.lower() for r in results for name in r.document.secure_parameters}
    for name in parameters:
        if name.lower() in secure:
            print(
                f"aibx: warning: -p {name}=...: {name} is a secure parameter, and the command line is visible to "
                "every user of this machine (ps); give it in a parameters file only you can read (--parameters "
                "FILE), written for example from an environment variable by your CI job",
                file=sys.stderr,
            )
            secure.discard(name.lower())
