"""A Packer configuration (a ``.pkr.hcl`` file, a folder of them, or a legacy JSON template) read as image
templates, for ``validate``, ``plan`` and ``run``: the same in-memory translation as ``aibx translate --to aib``,
loaded as the ARM deployment template it would write.

Each selected build source becomes one document. Its translation report goes with it: every approximated or
dropped entry is a warning (AIB070, AIB071) at the Packer file and line, shown before anything runs. The values of
sensitive variables are not written anywhere: the translation makes them secureString parameters, and this module
gives the parameters their values in memory, so the run uses them and the redactor hides them. Values that come
from the environment (AIB079) are given only with ``--allow-env-values``, as ``translate`` writes them only then;
otherwise ``-p NAME=VALUE`` supplies them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aibx.diagnostics import Diagnostic, Severity, make
from aibx.jsonc import JsonPath, SourceMap

if TYPE_CHECKING:
    from aibx.loader import LoadOptions, LoadResult
    from aibx.model import ImageTemplate
    from aibx.translators.packer_config import PackerConfig
    from aibx.translators.report import Report


@dataclass
class PackerOptions:
    """How to read a Packer configuration: ``--var``, ``--var-file``, ``--only``, ``--allow-env-values``."""

    variables: Sequence[str] = ()
    var_files: Sequence[str] = ()
    # BUILD.SOURCE globs, as translate's --only
    only: Sequence[str] = ()
    # run's --only also names steps: a pattern that matches no build source is left to the step selection
    only_names_steps: bool = False
    allow_env_values: bool = False
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: str = field(default_factory=os.getcwd)


def is_packer_config(path: str) -> bool:
    """A ``.pkr.hcl`` file or a folder holding ``.pkr.hcl`` files (``.pkr.json``: to refuse it clearly)."""
    p = Path(path)
    if p.is_dir():
        return any(p.glob("*.pkr.hcl"))
    return p.name.endswith((".pkr.hcl", ".pkr.json"))  # a legacy JSON template: aibx.loader.load() sees its text


def build_patterns(config: PackerConfig, patterns: Sequence[str]) -> list[str]:
    """The ``--only`` patterns that match a build source of the configuration (the others may name steps)."""
    from aibx.translators.from_packer import source_names

    names = [n for build in config.builds for source in build.sources for n in source_names(build, source)]
    return [p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)]


def load_packer(path: str, options: LoadOptions) -> LoadResult:
    """The image templates a Packer configuration translates to, one per selected build source."""
    from aibx.loader import LoadResult
    from aibx.swagger_tables import API_VERSIONS
    from aibx.translators import AibOptions, PackerInputs, packer_to_aib, read_packer

    packer = options.packer or PackerOptions()
    result = LoadResult(packer=True)
    if path.endswith(".pkr.json"):
        result.diagnostics.append(
            make("AIB072", "HCL2 in JSON syntax (.pkr.json) is not supported; use .pkr.hcl", file=path)
        )
        return result
    config = read_packer(
        path,
        PackerInputs(
            variables=list(packer.variables),
            var_files=list(packer.var_files),
            env=packer.env,
            cwd=packer.cwd,
            env_values=packer.allow_env_values,
        ),
    )
    result.diagnostics += config.diagnostics
    if any(d.severity is Severity.ERROR for d in config.diagnostics):
        return result
    patterns = [p.strip() for item in packer.only for p in item.split(",") if p.strip()]
    result.packer_only = build_patterns(config, patterns) if packer.only_names_steps else patterns
    api_version = options.api_version if options.api_version in API_VERSIONS else API_VERSIONS[-1]
    translations = packer_to_aib(
        config,
        AibOptions(
            only=result.packer_only,
            api_version=api_version,
            cwd=packer.cwd,
            allow_local_files=options.allow_local_files,
        ),
    )
    if not translations:
        what = f" matching --only {', '.join(result.packer_only)}" if result.packer_only else ""
        result.diagnostics.append(make("AIB076", f"no build source{what} in this Packer configuration", file=path))
        return result
    for t in translations:
        result.reports.append(t.report)
        loaded = result.diagnostics
        result.diagnostics = []
        given: set[str] = set()
        if t.template is not None:
            given = _load_translation(path, t.name, t.template, t.report, api_version, options, packer, result)
        # the report is complete only now (writing the document adds the secrets' entries)
        result.diagnostics = [*loaded, *report_diagnostics(t.report, given), *result.diagnostics]
    return result


def summary(report: Report) -> str:
    """One line for a translation: what it counts, and what that means for a run."""
    c = report.counts()
    line = (
        f"aibx: {report.source} [{report.name}] read as Packer: {c['mapped']} mapped, {c['approximated']} "
        f"approximated, {c['dropped']} not carried over"
    )
    if report.lossy:
        line += " (AIB071 above: those do not run)"
    return line


_SECRET_SUBJECT = re.compile(r'^(?:environment )?variable "([^"]+)"')


def report_diagnostics(report: Report, given: set[str] | frozenset[str] = frozenset()) -> list[Diagnostic]:
    """The report's approximated and dropped entries as warnings, one line each, at the Packer file and line.
    ``given``: the secrets (by source name) this run has the values of, in memory."""
    from aibx.translators.report import Status
    from aibx.translators.secrets import variable_name

    out: list[Diagnostic] = []
    for e in report.entries:
        if e.status is Status.MAPPED:
            continue
        how = "approximated" if e.status is Status.APPROXIMATED else "not carried over"
        code = "AIB071" if e.status is Status.DROPPED else (e.code or "AIB070")
        detail = e.detail
        secret = _SECRET_SUBJECT.match(e.subject) if e.code in ("AIB077", "AIB079") else None
        if secret and secret[1] in given:
            code, how = e.code or code, "kept in memory"
            detail = "its value is used by this run and shown as ***; it is written nowhere"
        elif secret and e.code == "AIB079":
            code, how = "AIB079", "not used"
            detail = (
                "its value comes from your environment: pass --allow-env-values to use it, or give it with "
                f"-p {variable_name(secret[1])}=VALUE"
            )
        out.append(
            make(
                code,
                f"[{report.name}] {e.subject}: {how}: {detail}",
                file=e.location.file or report.source,
                line=e.location.line,
                column=e.location.column,
                severity=Severity.WARNING,
            )
        )
    return out + list(report.diagnostics)


def engine_hints(template: ImageTemplate) -> dict[JsonPath, dict[str, object]]:
    """The Packer semantics the AIB document cannot carry, by step path (the writer keeps the steps' order)."""
    from aibx import model

    steps: list[tuple[JsonPath, model.Step]] = [
        (("properties", "customize", i), s) for i, s in enumerate(template.customize)
    ]
    if template.validate:
        steps += [
            (("properties", "validate", "inVMValidations", i), s)
            for i, s in enumerate(template.validate.in_vm_validations)
        ]
    return {
        path: {"expect_disconnect": step.expect_disconnect}
        for path, step in steps
        if isinstance(step, model.ShellStep) and step.expect_disconnect is not None
    }


def _load_translation(
    path: str,
    name: str,
    template: object,
    report: Report,
    api_version: str,
    options: LoadOptions,
    packer: PackerOptions,
    result: LoadResult,
) -> set[str]:
    """One translated source as the ARM deployment translate --arm would write, loaded with its secrets given;
    returns the secrets (their variables' names) it gave values to."""
    from aibx.loader import load_text
    from aibx.translators import aib_document
    from aibx.translators.secrets import variable_name

    document = aib_document(template, report, api_version=api_version, arm=True)  # type: ignore[arg-type]
    if report.diagnostics:  # report_diagnostics() shows them
        return set()
    environment = {re.split(r"[.\[]", s, maxsplit=1)[0] for s in report.environment_sources}
    given: dict[str, str] = {"imageTemplateName": name}
    for value, source in report.secret_sources.items():
        if re.split(r"[.\[]", source, maxsplit=1)[0] in environment and not packer.allow_env_values:
            continue  # translate writes a placeholder for it: -p NAME=VALUE (or --allow-env-values) gives it
        given[variable_name(source)] = value
    declared = document.get("parameters", {})
    parameters = {k: v for k, v in given.items() if k in declared}
    parameters.update(options.parameters)
    text = json.dumps(document, indent=2, ensure_ascii=False)
    # a folder's documents are named after the folder; the plan compiles file: URIs relative to its dirname
    label = os.path.join(path, "") if os.path.isdir(path) else path
    loaded = load_text(text, label, dataclasses.replace(options, parameters=parameters, parameter_files=()))
    secrets = [v for k, v in parameters.items() if k in given and k != "imageTemplateName"]
    sources = {variable_name(source): source for source in report.secret_sources.values()}
    for doc in loaded.documents:
        # diagnostics point at the Packer file (its lines are in the report), not at the JSON nobody sees
        doc.source_map = SourceMap()
        doc.engine_hints = engine_hints(template)  # type: ignore[arg-type]
        doc.name = name
        doc.secrets = list(dict.fromkeys([*doc.secrets, *secrets]))
        result.documents.append(doc)
    # its lines are those of the JSON nobody sees: the message and the JSON path say what is meant
    result.diagnostics += [dataclasses.replace(d, line=0, column=0) for d in loaded.diagnostics]
    result.names_used |= loaded.names_used
    result.names_known |= loaded.names_known
    return {re.split(r"[.\[]", sources[k], maxsplit=1)[0] for k in parameters if k in sources}
