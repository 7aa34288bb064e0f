"""Placeholders left in scripts (AIB005): ``TOKEN='<api_token>'`` in inline lines, or in a local script the template
names (``scriptUri: file:...`` in its own folder), is a value the user was meant to fill in, as in a field.

In code a ``<word>`` may be shell or PowerShell syntax (``sort <in.txt``, ``Get-Item <# comment #>``), so only a
placeholder that stands as a whole quoted value (``'<name>'``, ``"<name>"``) or right after ``=`` or ``:`` (an
assignment) counts. ``-p name=VALUE`` substitutes inline lines, which then hold no placeholder any more."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from aibx import model
from aibx.diagnostics import Diagnostic
from aibx.document import Document

PLACEHOLDER_IN_CODE = re.compile(
    r"""(?:(['"])<([A-Za-z][A-Za-z0-9_.\-]*)>\1|[=:]\s*<([A-Za-z][A-Za-z0-9_.\-]*)>(?![^\s;'"]))"""
)
MAX_SCRIPT_BYTES = 1024 * 1024  # a local script larger than this is not searched


def placeholders(text: str) -> list[str]:
    """The placeholder names left in a piece of script text, in order, once each."""
    found = [m.group(2) or m.group(3) for m in PLACEHOLDER_IN_CODE.finditer(text)]
    return list(dict.fromkeys(found))


def _steps(template: model.ImageTemplate) -> Iterator[model.Step]:
    yield from template.customize
    if template.validate is not None:
        yield from template.validate.in_vm_validations


def check(doc: Document, template: model.ImageTemplate) -> list[Diagnostic]:
    out = []
    for step in _steps(template):
        if not isinstance(step, (model.ShellStep, model.PowerShellStep)):
            continue
        for index, line in enumerate(step.inline or []):
            if isinstance(line, str):
                for name in placeholders(line):
                    message = f"placeholder <{name}> left in a script line; fill it in, or pass -p {name}=VALUE"
                    out.append(doc.diagnostic("AIB005", message, (*step.path, "inline", index)))
        if isinstance(step.script_uri, str):
            text = _local_script(doc, step.script_uri)
            for number, line in enumerate((text or "").splitlines(), start=1):
                for name in placeholders(line):
                    message = f"placeholder <{name}> left in the script, line {number}: fill it in"
                    out.append(doc.diagnostic("AIB005", message, (*step.path, "scriptUri")))
    return out


def _local_script(doc: Document, uri: str) -> str | None:
    """The text of a ``file:`` script in the template's own folder (what ``aibx run`` would read), else None."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost") or not doc.file:
        return None
    relative = unquote(parts.path)
    folder = os.path.dirname(os.path.abspath(doc.file))
    path = os.path.realpath(os.path.join(folder, relative))
    if os.path.isabs(relative) or not path.startswith(folder + os.sep) or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCRIPT_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_SCRIPT_BYTES:
        return None
    return data.decode("utf-8", errors="replace")
