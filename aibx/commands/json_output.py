"""``--format json``: every verb prints exactly one JSON document on standard output, whatever its exit code.

Every document starts with ``aibx`` (the version that wrote it), ``formatVersion`` (of that document's schema:
raised only by an incompatible change, fields are only ever added) and ``exitCode`` (the command's exit status).
A verb that stops before it can produce its own document (an invalid template for ``plan`` or ``run``, an option
value it refuses) prints a *refusal* instead: ``command``, ``exitCode``, ``errors`` (the messages, as standard
error shows them) and ``diagnostics`` (the template's errors with file, line and JSON path). Standard error keeps
what it says in text mode. Only argparse's own usage errors (an unknown option, a missing argument) come before
the format is known: those print nothing on standard output.

The schemas are documented in docs/guide-ci.md ("JSON output").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from aibx import __version__

FORMAT_VERSION = 1


class Refusal:
    """A verb stopped before doing its work: the exit status, and why (already shown on standard error)."""

    def __init__(self, exit_code: int, errors: Iterable[str] = (), diagnostics: Iterable[Any] = ()) -> None:
        self.exit_code = int(exit_code)
        self.errors = list(errors)
        self.diagnostics = list(diagnostics)  # aibx.diagnostics.Diagnostic

    def document(self, command: str) -> dict[str, object]:
        return header(
            self.exit_code,
            command=command,
            errors=self.errors,
            diagnostics=[d.as_dict() for d in self.diagnostics],
        )


def header(exit_code: int, **fields: object) -> dict[str, object]:
    """A document: the fields every one has, then ``fields``."""
    return {"aibx": __version__, "formatVersion": FORMAT_VERSION, "exitCode": int(exit_code), **fields}


def write(document: object, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    # non-ASCII as \u escapes: valid JSON whatever the terminal's or the pipe's encoding
    stream.write(json.dumps(document, indent=2) + "\n")
    stream.flush()


def refuse(args: Any, command: str, refusal: Refusal) -> int:
    """The exit status of a refusal; in JSON mode its document on standard output too."""
    if getattr(args, "format", "text") == "json":
        write(refusal.document(command))
    return refusal.exit_code
