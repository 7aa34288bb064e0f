"""Keeping secret values out of translated files.

A secret is the value of an ARM ``secureString``/``secureObject`` parameter (AIB → Packer) or of a Packer
variable or local declared ``sensitive`` (Packer → AIB). Wherever a translation would write one, alone or inside
a longer string (a concat'ed inline line, a SAS-tokened URI), it writes a reference instead: a Packer variable
declared ``sensitive = true`` without a default (``"...${var.x}..."``), or an ARM ``secureString`` parameter
(``[format('...{0}...', parameters('x'))]``), or, in a bare AIB resource that has no such thing, a
``<placeholder>``. ``SecretFinder.split`` finds them; ``SecretFinder.leaks`` is the last check on the text
written, which must name no secret in any form it could take there (escaped, or quoted for a shell).

A secret is recognised by its exact text, as the redactor (aibx/redaction.py) does; a value a function made
from it (``base64(...)``, ``toUpper(...)``) is not recognised. A secret shorter than four characters is recognised
only as a whole value: inside longer text it would match ordinary words and numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from aibx.redaction import MIN_SECRET_LENGTH

_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Reference:
    """Where a secret was in a string: ``source`` names where it came from (a parameter or variable, or a path
    inside a secureObject such as ``creds.password``)."""

    source: str


def variable_name(source: str) -> str:
    """A Packer variable / ARM parameter name for a secret: ``creds.password`` → ``creds_password``."""
    name = _NOT_IDENTIFIER.sub("_", source).strip("_") or "secret"
    return name if name[:1].isalpha() or name[:1] == "_" else f"secret_{name}"


class SecretFinder:
    """Finds known secret values in text. ``sources`` maps each secret value to where it came from."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = {value: source for value, source in sources.items() if value}
        # longest first: no secret left half-replaced
        ordered = sorted((s for s in self.sources if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return bool(self.sources)

    def split(self, text: str) -> list[str | Reference]:
        """``text`` as literal pieces and references, in order; ``[text]`` when it holds no secret."""
        if text in self.sources:
            return [Reference(self.sources[text])]
        if self._pattern is None:
            return [text]
        out: list[str | Reference] = []
        pos = 0
        for m in self._pattern.finditer(text):
            if m.start() > pos:
                out.append(text[pos : m.start()])
            out.append(Reference(self.sources[m.group()]))
            pos = m.end()
        if pos < len(text):
            out.append(text[pos:])
        return out or [text]

    def leaks(self, text: str) -> list[str]:
        """Where the secrets come from that ``text`` still holds, in any form they could be written in."""
        return sorted(
            {
                source
                for value, source in self.sources.items()
                if len(value) >= MIN_SECRET_LENGTH and any(f in text for f in _forms(value))
            }
        )


def _forms(secret: str) -> set[str]:
    """The secret as written raw, quoted for a POSIX shell or PowerShell, and each of those escaped as JSON or as
    an HCL string."""
    from aibx.translators.hcl_writer import string_literal

    quoted = {secret}
    if "'" in secret:
        quoted |= {secret.replace("'", "'\"'\"'"), secret.replace("'", "'\\''"), secret.replace("'", "''")}
    forms = set(quoted)
    for q in quoted:
        forms.add(json.dumps(q, ensure_ascii=False)[1:-1])
        forms.add(json.dumps(q)[1:-1])
        forms.add(string_literal(q)[1:-1])
    return forms
