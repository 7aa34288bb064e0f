"""The translation report: one entry per field or step, saying what became of it.

``not-applicable``: metadata of the input with no counterpart in the target and no effect on the image or the
build (the tags of the image-template resource); it does not make a translation lossy. ``mapped``: carried over
with the same meaning. ``approximated``: carried over as the closest faithful
equivalent; the entry says how. ``dropped``: the target format cannot express it; the entry says why. A
translation with a dropped entry is *lossy* (``aibx translate`` exits 1 unless ``--allow-lossy``).

Secrets (values of sensitive variables, SAS tokens in URIs) never reach an entry: the report redacts every
registered secret from its text.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aibx.diagnostics import Diagnostic, make

if TYPE_CHECKING:
    from aibx.console import Style


class Status(str, enum.Enum):
    MAPPED = "mapped"
    APPROXIMATED = "approximated"
    DROPPED = "dropped"
    NOT_APPLICABLE = "not-applicable"


# the diagnostic code each status carries in --report-json (mapped entries carry none)
STATUS_CODES = {Status.APPROXIMATED: "AIB070", Status.DROPPED: "AIB071"}


@dataclass(frozen=True)
class Location:
    file: str = ""
    line: int = 0
    column: int = 0

    def format(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


NOWHERE = Location()


@dataclass(frozen=True)
class Entry:
    status: Status
    # what the entry is about, in the input's terms: a JSON path (AIB) or a Packer block/field
    subject: str
    # mapped: where it went; approximated: how; dropped: why
    detail: str
    location: Location = NOWHERE
    # a more precise code than the status's (AIB077: a secret written as a reference)
    diagnostic_code: str | None = None

    @property
    def code(self) -> str | None:
        return self.diagnostic_code or STATUS_CODES.get(self.status)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status.value, "subject": self.subject, "detail": self.detail}
        if self.code:
            out["code"] = self.code
        if self.location.file:
            out.update(file=self.location.file, line=self.location.line, column=self.location.column)
        return out


@dataclass
class Report:
    """What one translation did with each field or step of its input."""

    source: str  # the input file or folder
    target: str  # "packer", "aib" or "bicep"
    name: str = ""  # the template or build it describes
    output: str | None = None  # where the result was written (None: standard output)
    entries: list[Entry] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)  # errors: the input could not be translated
    secrets: set[str] = field(default_factory=set)
    # each secret value and where it came from (a secure parameter, a sensitive variable): translations write a
    # reference to it instead of the value (translators/secrets.py)
    secret_sources: dict[str, str] = field(default_factory=dict)
    # names of secure parameters / sensitive variables, with or without a value
    secure_names: set[str] = field(default_factory=set)
    # where each of them is declared, when known
    secure_locations: dict[str, Location] = field(default_factory=dict)
    # the secret sources that are environment variables (values from env(), {{env}}, PKR_VAR_NAME)
    environment_sources: set[str] = field(default_factory=set)

    def add(
        self, status: Status, subject: str, detail: str, location: Location = NOWHERE, code: str | None = None
    ) -> None:
        self.entries.append(Entry(status, self.redact(subject), self.redact(detail), location, code))

    def mapped(self, subject: str, detail: str, location: Location = NOWHERE) -> None:
        self.add(Status.MAPPED, subject, detail, location)

    def approximated(self, subject: str, detail: str, location: Location = NOWHERE) -> None:
        self.add(Status.APPROXIMATED, subject, detail, location)

    def dropped(self, subject: str, detail: str, location: Location = NOWHERE) -> None:
        self.add(Status.DROPPED, subject, detail, location)

    def not_applicable(self, subject: str, detail: str, location: Location = NOWHERE) -> None:
        self.add(Status.NOT_APPLICABLE, subject, detail, location)

    def error(self, code: str, message: str, location: Location = NOWHERE, json_path: str = "") -> None:
        self.diagnostics.append(
            make(
                code,
                self.redact(message),
                file=location.file,
                line=location.line,
                column=location.column,
                json_path=json_path,
            )
        )

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "<sensitive>")
        return _SAS.sub(r"\1…", text)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for e in self.entries:
            out[e.status.value] += 1
        return out

    @property
    def lossy(self) -> bool:
        return any(e.status is Status.DROPPED for e in self.entries)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "name": self.name,
            "output": self.output,
            "lossy": self.lossy,
            "counts": self.counts(),
            "entries": [e.as_dict() for e in self.entries],
            "diagnostics": [d.as_dict() for d in self.diagnostics],
        }


# a URI query (where SAS tokens live) inside free text
_SAS = re.compile(r"(https?://[^\s'\"?]+\?)[^\s'\"]+")


def format_reports(reports: Iterable[Report], style: Style | None = None) -> str:
    """The human text of one or more reports."""
    paint = style or (lambda text, *_: text)
    colors = {
        Status.MAPPED: ("green",),
        Status.APPROXIMATED: ("yellow",),
        Status.DROPPED: ("red", "bold"),
        Status.NOT_APPLICABLE: ("dim",),
    }
    lines: list[str] = []
    for report in reports:
        arrow = report.output or "<stdout>"
        title = f"{report.source}" + (f" [{report.name}]" if report.name else "")
        kind = {"packer": "Packer HCL2", "bicep": "Bicep"}.get(report.target, "AIB template")
        lines.append(f"{title} -> {arrow} ({kind})")
        width = max((len(e.subject) for e in report.entries), default=0)
        width = min(width, 48)
        for e in report.entries:
            where = f"  ({e.location.format()})" if e.location.file else ""
            status = paint(f"{e.status.value:<12}", *colors[e.status])
            lines.append(f"  {status} {e.subject:<{width}}  {e.detail}{where}")
        c = report.counts()
        verdict = "lossy" if report.lossy else "complete"
        na = f", {c['not-applicable']} not applicable" if c["not-applicable"] else ""
        lines.append(
            f"  {c['mapped']} mapped, {c['approximated']} approximated, {c['dropped']} dropped{na}: "
            + paint(verdict, *(("red", "bold") if report.lossy else ("green",)))
        )
    return "\n".join(lines)
