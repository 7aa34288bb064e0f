"""Diagnostics: the values that loading, validation and translation produce instead of exceptions.

Every diagnostic has a stable code from ``CODES`` (documented in docs/diagnostics.md, which a test keeps in step
with this table), a severity, a message, and where it points: file, line, column and JSON path.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


E, W = Severity.ERROR, Severity.WARNING

# code: (default severity, title). Codes are stable: never renumber, only add.
CODES: dict[str, tuple[Severity, str]] = {
    # reading the file
    "AIB001": (E, "file cannot be read"),
    "AIB002": (E, "JSON syntax error, or Bicep syntax aibx cannot read"),
    "AIB003": (E, "no image template in the document"),
    "AIB004": (W, "resource `type` missing or not Microsoft.VirtualMachineImages/imageTemplates"),
    "AIB005": (W, "value cannot be resolved (parameter, expression or placeholder)"),
    "AIB006": (E, "ARM template (or Bicep) expression error"),
    "AIB007": (E, "invalid parameter value or parameters file"),
    "AIB008": (W, "apiVersion missing or unknown; the newest is assumed"),
    "AIB009": (E, "resource selection (--resource) does not match"),
    # AIB rules
    "AIB010": (E, "exactly one of `scriptUri` and `inline` must be given"),
    "AIB011": (E, "required value is missing or empty"),
    "AIB012": (E, "`runAsSystem` requires `runElevated`"),
    "AIB013": (E, "customizer (or validator) names must be unique"),
    "AIB014": (E, "`runOutputName` must be unique across distribute targets"),
    "AIB015": (W, "`buildTimeoutInMinutes` below the documented minimum of 6"),
    "AIB016": (W, "`buildTimeoutInMinutes` below 60 for a Windows image"),
    "AIB017": (E, "`restartTimeout` is not a duration such as 5m, 2h or 90s"),
    "AIB018": (E, "`sha256Checksum` is not 64 hexadecimal digits"),
    "AIB019": (W, "`sha256Checksum` in upper case; AIB wants lower case"),
    "AIB020": (W, "downloaded script or file without `sha256Checksum`"),
    "AIB021": (E, "customizer or validator not available for the image's operating system"),
    "AIB022": (W, "File destination outside /tmp on Linux; AIB cannot write there"),
    "AIB023": (E, "`replicationRegions` and `targetRegions` are mutually exclusive"),
    "AIB024": (E, "conflicting or incomplete vnetConfig"),
    "AIB025": (W, "operating system of the image cannot be told for certain"),
    "AIB026": (E, "WindowsUpdate filter is not `include:EXPR` or `exclude:EXPR`"),
    "AIB027": (W, "number or boolean written as a string"),
    "AIB028": (W, "`storageAccountType` applies only with `replicationRegions`"),
    "AIB029": (W, "URI scheme AIB cannot fetch (aibx run can)"),
    "AIB031": (E, "`identity` must name exactly one user-assigned identity"),
    "AIB032": (W, "`sourceValidationOnly` skips the build: customizers do not run"),
    "AIB033": (W, "ARM expression in a bare resource: it is sent as written, not evaluated"),
    "AIB034": (W, "key written twice in one object; only the last value counts"),
    "AIB035": (E, "no user-assigned identity: AIB requires one whatever the apiVersion (since 2020-05-26)"),
    "AIB036": (E, "retired: the service no longer accepts it (RHEL ISO source, apiVersion before 2019-05-01-preview)"),
    # schema (generated from the swagger files)
    "AIB050": (E, "unknown field"),
    "AIB051": (E, "field name in the wrong case"),
    "AIB052": (E, "wrong type"),
    "AIB053": (E, "value not allowed"),
    "AIB054": (E, "required field missing"),
    "AIB055": (E, "number out of range"),
    "AIB056": (E, "value does not match the required pattern"),
    "AIB057": (E, "unknown type"),
    "AIB058": (E, "field not available in this apiVersion"),
    "AIB059": (W, "read-only field; the service ignores it"),
    # translation
    "AIB070": (W, "field approximated in translation"),
    "AIB071": (E, "field or step cannot be translated"),
    "AIB072": (E, "Packer configuration cannot be read"),
    "AIB073": (E, "Packer expression cannot be evaluated"),
    "AIB074": (E, "bad Packer variable: undeclared, wrong type, or an unusable --var / --var-file"),
    "AIB075": (E, "local file named by the template cannot be read or does not match its checksum"),
    "AIB076": (E, "nothing to translate, or the output cannot be written"),
    "AIB077": (W, "secret value written as a reference: supply it when building or deploying"),
    "AIB078": (E, "local file outside the configuration's folder not read: pass --allow-local-files to read it"),
    "AIB079": (W, "value from the environment written as a parameter or placeholder, not as its value"),
}


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    json_path: str = ""

    def format(self) -> str:
        """One line: ``FILE:LINE:COL: SEVERITY[CODE] JSON.PATH: MESSAGE``. Control characters a template may
        carry (newlines, terminal escapes) are shown escaped, so each diagnostic stays one harmless line."""
        where = self.file or "<input>"
        if self.line:
            where += f":{self.line}:{self.column}"
        path = f" {self.json_path}:" if self.json_path else ""
        return printable(f"{where}: {self.severity.value}[{self.code}]{path} {self.message}")

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.json_path,
        }


def make(
    code: str,
    message: str,
    *,
    file: str = "",
    line: int = 0,
    column: int = 0,
    json_path: str = "",
    severity: Severity | None = None,
) -> Diagnostic:
    default, _title = CODES[code]
    return Diagnostic(severity or default, code, redact_urls(message), file, line, column, json_path)


# a URI's query (SAS tokens, signatures) and user:password@ never reach a message
_URI_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#\"'<>]*)\?[^\s#\"'<>]*")
_URI_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@\"'<>]+@")


def redact_urls(text: str) -> str:
    """``text`` with the query of every URI in it replaced by ``…`` and user information dropped."""
    if "://" not in text:
        return text
    return _URI_USERINFO.sub(r"\1", _URI_QUERY.sub(r"\1?…", text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\n``, ``\\x1b``, ``\\ud800``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.7) -> str | None:
    """The candidate ``word`` most likely meant (compared without case), as the candidate is spelled; None if
    nothing is close. For "did you mean" hints."""
    import difflib  # only when there is something to suggest: it is slow to import

    by_lower = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[found[0]] if found else None


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def format_path(path: Iterable[str | int]) -> str:
    """('properties', 'customize', 2, 'name') -> 'properties.customize[2].name'"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}" if _is_plain(part) else f"[{_quote(part)}]"
        else:
            out = part if _is_plain(part) else f"[{_quote(part)}]"
    return out


def _is_plain(key: str) -> bool:
    return key.replace("_", "a").replace("-", "a").replace("$", "a").isalnum()


def _quote(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
