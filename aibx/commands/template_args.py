"""Options every verb that reads an AIB template shares, and loading the templates they name."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from aibx import armexpr, diagnostics
from aibx.diagnostics import Diagnostic
from aibx.loader import LoadOptions, load, parse_assignments
from aibx.model import OsType


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
        help="an ARM parameters file (repeatable; later files and -p win)",
    )
    g.add_argument("--resource", metavar="NAME", help="pick one image template from an ARM deployment template")
    g.add_argument("--api-version", metavar="VERSION", help="check against this apiVersion instead of the file's")
    g.add_argument("--os", choices=["linux", "windows"], help="the image's OS, when aibx cannot tell")
    g.add_argument("--subscription-id", metavar="ID", help="value of subscription().subscriptionId")
    g.add_argument("--resource-group", metavar="NAME", help="value of resourceGroup().name")
    g.add_argument("--location", metavar="REGION", help="value of resourceGroup().location")


def load_options(args: argparse.Namespace) -> tuple[LoadOptions, list[Diagnostic]]:
    params, diags = parse_assignments(args.parameter)
    opts = LoadOptions(
        parameters=params,
        parameter_files=args.parameter_files,
        resource=args.resource,
        api_version=args.api_version,
        context=armexpr.DeploymentContext(
            subscription_id=args.subscription_id, resource_group=args.resource_group, location=args.location
        ),
    )
    return opts, diags


def os_override(args: argparse.Namespace) -> OsType | None:
    return {"linux": OsType.LINUX, "windows": OsType.WINDOWS}.get(args.os or "")


@dataclass
class Loaded:
    """Validated templates of one or more files."""

    results: list = field(default_factory=list)  # list[validation.Result]
    diagnostics: list[Diagnostic] = field(default_factory=list)  # loader diagnostics (per-template ones in results)
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files in a directory that hold no image template

    def all_diagnostics(self) -> list[Diagnostic]:
        out = list(self.diagnostics)
        for r in self.results:
            out += r.diagnostics
        return out

    @property
    def has_errors(self) -> bool:
        return diagnostics.has_errors(self.all_diagnostics())


def expand_paths(paths: list[str]) -> list[tuple[str, bool]]:
    """Files to read, each with whether the user named it (True) or it was found in a directory (False)."""
    out: list[tuple[str, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += [(str(f), False) for f in sorted(path.rglob("*.json")) if f.is_file()]
        else:
            out.append((p, True))
    return out


def load_templates(args: argparse.Namespace, paths: list[str]) -> Loaded:
    from aibx import validation

    opts, diags = load_options(args)
    loaded = Loaded(diagnostics=diags)
    for path, named in expand_paths(paths):
        result = load(path, opts)
        if not named and not result.documents and all(d.code == "AIB003" for d in result.diagnostics):
            loaded.skipped.append(path)
            continue
        loaded.files.append(path)
        loaded.diagnostics += result.diagnostics
        for doc in result.documents:
            loaded.results.append(validation.validate(doc, os_override(args)))
    return loaded
