"""Plans for tests that drive the engine's ``Runner`` directly: a template written to a temporary file, loaded,
validated and compiled by the real code, exactly as ``aibx run`` does."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aibx.loader import LoadOptions, load
from aibx.plan import Plan
from aibx.provisioners import CompileOptions, compile_plan
from aibx.validation import validate
from tests.support.templates import write_template

WINDOWS_SOURCE = {
    "type": "PlatformImage",
    "publisher": "MicrosoftWindowsServer",
    "offer": "WindowsServer",
    "sku": "2022-datacenter-azure-edition",
    "version": "latest",
}


def compiled_plan(customize: list[dict], *, windows: bool = False, **options: Any) -> Plan:
    """The plan of a template with these customizers (a Linux or a Windows platform image); ``options`` are
    CompileOptions fields (``allow_local_files=True``, ...)."""
    with tempfile.TemporaryDirectory(prefix="aibx-plan-") as folder:
        extra = {"source": WINDOWS_SOURCE} if windows else {}
        path = write_template(Path(folder), customize, **extra)
        loaded = load(str(path), LoadOptions())
        [document] = loaded.documents
        result = validate(document)
        assert result.template is not None, [d.format() for d in result.diagnostics]
        return compile_plan(result.template, CompileOptions(**options))


def linux_plan(customize: list[dict], **options: Any) -> Plan:
    return compiled_plan(customize, **options)


def windows_plan(customize: list[dict]) -> Plan:
    return compiled_plan(customize, windows=True)
