"""The translation fixtures and how their expected outputs (golden files) are produced.

Shared by the tests and by scripts/update_translate_golden.py, which rewrites the golden files after an
intended change (review the diff before committing it). Everything runs with ``fixtures/translate`` as the
working directory, a fixed clock and a fixed environment, so outputs do not depend on the machine.
"""

from __future__ import annotations

import io
import json
import os
import re
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aibx.loader import load
from aibx.translators import AibOptions, PackerInputs, aib_document, aib_to_packer, packer_to_aib, read_packer
from aibx.translators.report import Report
from aibx.validation import validate

ROOT = Path(__file__).resolve().parent.parent
TRANSLATE = ROOT / "fixtures" / "translate"
EXPECTED = TRANSLATE / "expected"
AIB_FIXTURES = sorted(p.name for p in (TRANSLATE / "aib").glob("*.json"))
NOW = datetime(2026, 1, 1, 12, 30, 0, tzinfo=timezone.utc)
ENV = {"ARM_SSH_PASS": "pw-from-env-9d1", "ARM_CLIENT_SECRET": "cs-from-env-77"}


@dataclass
class PackerCase:
    name: str
    path: str  # relative to fixtures/translate
    variables: list[str] = field(default_factory=list)
    upload: bool = False
    only: list[str] = field(default_factory=list)


PACKER_CASES = [
    PackerCase("linux-single", "packer/linux-single"),
    PackerCase("linux-single-upload", "packer/linux-single", upload=True),
    PackerCase("windows-dir", "packer/windows-dir"),
    PackerCase("multi-source", "packer/multi-source"),
    PackerCase("multi-source-only-noble", "packer/multi-source", only=["ubuntu.azure-arm.noble"]),
    PackerCase("legacy-linux", "packer/legacy/linux.json"),
    PackerCase(
        "legacy-windows",
        "packer/legacy/windows.json",
        variables=["subscription_id=33333333-0000-0000-0000-000000000000"],
    ),
]
UPLOAD_BASE = "https://artifacts.example.com/aib/files"


@contextmanager
def in_fixtures():
    old = Path.cwd()
    os.chdir(TRANSLATE)
    try:
        yield
    finally:
        os.chdir(old)


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def aib_to_packer_outputs(fixture: str) -> dict[str, str]:
    """{file name: text} of the expected outputs of one AIB fixture (the HCL and the report)."""
    with in_fixtures():
        result = validate(load(f"aib/{fixture}").documents[0])
        text, report = aib_to_packer(result.template, Path.cwd() / "aib")
    stem = fixture.removesuffix(".json")
    return {f"{stem}.pkr.hcl": text, f"{stem}.report.json": report_json(report)}


def packer_inputs(case: PackerCase) -> PackerInputs:
    return PackerInputs(variables=case.variables, env=dict(ENV), now=NOW, cwd=".")


def packer_to_aib_outputs(case: PackerCase) -> dict[str, str]:
    """{file name: text}: one AIB template per translated source, each report, and the uploads' list."""
    with in_fixtures():
        config = read_packer(case.path, packer_inputs(case))
        if config.diagnostics:
            raise AssertionError("\n".join(d.format() for d in config.diagnostics))
        options = AibOptions(only=case.only, upload_base_uri=UPLOAD_BASE if case.upload else None, cwd=".")
        out: dict[str, str] = {}
        for t in packer_to_aib(config, options):
            if t.template is not None:
                document = aib_document(t.template, t.report)
                out[f"{t.name}.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            out[f"{t.name}.report.json"] = report_json(t.report)
            if t.uploads:
                listing = [{"name": u.name, "sha256": u.sha256, "local": u.local} for u in t.uploads]
                out[f"{t.name}.uploads.json"] = json.dumps(listing, indent=2) + "\n"
    return out


def expected_dir(kind: str, name: str = "") -> Path:
    return EXPECTED / kind / name if name else EXPECTED / kind


# command lines whose diagnostics make fixtures/translate/golden/diagnostics.txt (one example per code)
DIAGNOSTIC_RUNS = [
    ["bad/syntax-error.pkr.hcl", "--to", "aib"],
    ["bad/unsupported-function.pkr.hcl", "--to", "aib"],
    ["bad/undefined-user-variable.json", "--to", "aib", "--allow-lossy"],
    ["packer/multi-source", "--to", "aib", "--var", "image=x"],
    ["bad/checksum-mismatch.json", "--to", "packer"],
    ["packer/multi-source", "--to", "aib"],
]
DIAGNOSTIC_LINE = re.compile(r"^.*?: (error|warning)\[AIB07\d\] .*$")


def diagnostic_lines() -> str:
    """The diagnostics ``aibx translate`` prints for DIAGNOSTIC_RUNS, one per line."""
    from aibx.cli import main

    lines: list[str] = []
    with in_fixtures():
        for argv in DIAGNOSTIC_RUNS:
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                main(["translate", *argv])
            lines += [line for line in err.getvalue().splitlines() if DIAGNOSTIC_LINE.match(line)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- secrets
SECURE_VALUES = {"adminPassword": "Pw-s3cr3t-9c1", "sasToken": "sv=2022-11-02&sp=r&sig=S1G-s3cr3t-4d2"}
SECURE_OBJECT = {"token": 'T0k"en-s3cr3t-7e5'}  # a quote: escaped in HCL, still found


def secure_deployment(tmp_path: Path) -> Path:
    """An ARM deployment whose customizers use secure parameters alone, concat'ed into a line, inside a
    SAS-tokened URI, and from a secureObject."""
    resource = {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "apiVersion": "2024-02-01",
        "name": "sec",
        "location": "westeurope",
        "properties": {
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "o", "sku": "s", "version": "1"},
            "distribute": [
                {
                    "type": "ManagedImage",
                    "imageId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/i",
                    "location": "westeurope",
                    "runOutputName": "r",
                }
            ],
        },
    }
    resource["properties"]["customize"] = [
        {
            "type": "Shell",
            "name": "secrets",
            "inline": [
                "[concat('echo ', parameters('adminPassword'), ' | passwd --stdin builder')]",
                "[parameters('adminPassword')]",
                "[concat('export TOKEN=\"', parameters('creds').token, '\"')]",
            ],
        },
        {
            "type": "Shell",
            "name": "sas",
            "scriptUri": "[concat('https://acct.blob.core.windows.net/c/s.sh?', parameters('sasToken'))]",
            "sha256Checksum": "a" * 64,
        },
    ]
    deployment = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "adminPassword": {"type": "securestring"},
            "sasToken": {"type": "secureString"},
            "creds": {"type": "secureObject"},
        },
        "resources": [resource],
    }
    path = tmp_path / "sec.json"
    path.write_text(json.dumps(deployment, indent=2))
    return path
