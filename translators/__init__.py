"""Translating between AIB image templates and Packer, through the model (aibx.model).

* ``aib_to_packer(template)``: an ``ImageTemplate`` → Packer HCL2 text and a ``Report``;
* ``read_packer(path)``: a ``.pkr.hcl`` file, a folder of them, or a legacy JSON template → ``PackerConfig``;
* ``packer_to_aib(config)``: a ``PackerConfig`` → one ``Translation`` (model, report, files to publish) per
  selected ``azure-arm`` source;
* ``aib_document(template)``: the model → an AIB template (bare resource or ARM deployment) and its report.

Modules: ``aib`` (model → AIB JSON), ``packer_hcl`` (HCL2 reading and writing), ``packer_json`` (legacy JSON),
``packer_config`` (an evaluated Packer configuration), ``to_packer``, ``from_packer`` and ``packer_provisioners``
(the mappings), ``hcl_eval`` (expressions and functions), ``hcl_writer`` (python-hcl2's writer, formatted as
``packer fmt`` does), ``idioms`` (the command lines written where a format lacks a field), ``azure_ids``,
``report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aibx import model
from aibx.translators.from_packer import AibOptions, Translation, Upload
from aibx.translators.packer_config import PackerConfig
from aibx.translators.packer_hcl import PackerInputs
from aibx.translators.report import Location, Report, Status

__all__ = [
    "AibOptions",
    "PackerConfig",
    "PackerInputs",
    "Report",
    "Status",
    "Translation",
    "Upload",
    "aib_document",
    "aib_to_bicep",
    "aib_to_packer",
    "packer_kind",
    "packer_to_aib",
    "read_packer",
]


def aib_to_packer(
    tpl: model.ImageTemplate, output_dir: Path | None = None, source: str | None = None
) -> tuple[str, Report]:
    """The template as Packer HCL2 text (``packer fmt``-clean) and the report of what became of each field."""
    from aibx.translators import packer_hcl

    report = Report(source or tpl.file, "packer", name=tpl.name or "")
    text = packer_hcl.write(tpl, report, output_dir)
    check_no_secret(text, report)
    report.entries.sort(key=lambda e: (e.location.file != "", e.location.line, e.location.column))
    return text, report


def aib_to_bicep(
    tpl: model.ImageTemplate, source: str | None = None, api_version: str | None = None
) -> tuple[str, Report]:
    """An image template read from AIB JSON, an ARM template or Bicep, written as Bicep, and the report."""
    from aibx.translators.bicep_writer import write_bicep

    report = Report(source or tpl.file, "bicep", name=tpl.name or "")
    if tpl.document is not None:
        report.secrets.update(tpl.document.secrets)
        report.secret_sources.update(tpl.document.secret_names)
        report.secure_names.update(tpl.document.secure_parameters)
    text = write_bicep(tpl, report, api_version=api_version or tpl.api_version)
    report.entries.sort(key=lambda e: (e.location.file != "", e.location.line, e.location.column))
    return text, report


def check_no_secret(text: str, report: Report) -> None:
    """The last line of defence: an error (and so nothing written) if ``text`` still holds a secret, in a form
    the translation could not replace with a reference (inside an expression, a comment, quoted)."""
    from aibx.translators.secrets import SecretFinder

    for source in SecretFinder(report.secret_sources).leaks(text):
        report.error(
            "AIB071",
            f"the secret {source} would be written into the output in a form aibx cannot replace with a "
            "reference (quoted for a shell, or inside an expression or comment); nothing was written",
            Location(report.source),
        )


def packer_kind(path: str) -> str | None:
    """ "hcl2" for a .pkr.hcl file or a folder, "json" for a legacy JSON template, None otherwise."""
    p = Path(path)
    if p.is_dir() or p.name.endswith((".pkr.hcl", ".hcl")):
        return "hcl2"
    if p.suffix.lower() == ".json":
        from aibx.loader import read_json

        value, _smap, _diags = read_json(path)
        if isinstance(value, dict) and isinstance(value.get("builders"), list):
            return "json"
    return None


def read_packer(path: str, inputs: PackerInputs | None = None) -> PackerConfig:
    from aibx.translators import packer_hcl, packer_json

    if packer_kind(path) == "json":
        return packer_json.read_config(path, inputs)
    return packer_hcl.read_config(path, inputs)


def packer_to_aib(config: PackerConfig, options: AibOptions | None = None) -> list[Translation]:
    from aibx.translators import from_packer

    return from_packer.translate(config, options)


def aib_document(
    tpl: model.ImageTemplate, report: Report, *, api_version: str | None = None, arm: bool = False
) -> dict[str, Any]:
    """The model as an AIB template document, pruned to ``api_version`` (default: the newest)."""
    from aibx.translators import aib

    version = api_version or aib.NEWEST_API_VERSION
    resource = aib.template_to_resource(tpl, version)
    aib.prune_to_api_version(resource, version, report)
    resource = aib.protect_secrets(resource, report, arm=arm)
    document = aib.finish(resource, arm=arm, secure=report.secure_names)
    check_no_secret(json.dumps(document, ensure_ascii=False), report)
    return document
