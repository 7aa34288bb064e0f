"""Windows templates built in the test and compiled by the real provisioners."""

from __future__ import annotations

import os
from pathlib import Path

from aibx import model
from aibx.loader import LoadOptions, load
from aibx.plan import StepPlan
from aibx.provisioners import CompileContext, CompileOptions, compile_step


def template_from(path: Path, os_override: model.OsType | None = None) -> model.ImageTemplate:
    result = load(str(path), LoadOptions())
    assert result.documents, result.diagnostics
    return model.from_document(result.documents[0], os_override)


def template_with(steps: list[dict], os_type: str = "Windows") -> model.ImageTemplate:
    import json
    import tempfile

    doc = {
        "type": "Microsoft.VirtualMachineImages/imageTemplates",
        "apiVersion": "2024-02-01",
        "location": "westeurope",
        "properties": {
            "source": {
                "type": "PlatformImage",
                "publisher": "MicrosoftWindowsServer" if os_type == "Windows" else "Canonical",
                "offer": "x",
                "sku": "y",
                "version": "latest",
            },
            "customize": steps,
            "distribute": [],
        },
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    try:
        return template_from(Path(f.name))
    finally:
        os.unlink(f.name)


def compiled(tpl: model.ImageTemplate, index: int = 0) -> StepPlan:
    names = iter(f"{n:04d}" for n in range(1, 1000))
    ctx = CompileContext(tpl, CompileOptions(random_name=lambda: next(names)))
    return compile_step(tpl.customize[index], ctx)
