"""Checking an image template as the AIB service would for its apiVersion, plus lints for known pitfalls.

Two passes: the schema pass walks the document against the tables generated from the official swagger files
(aibx/swagger_tables.py): field names, types, enums, required fields, patterns and limits of the template's
apiVersion. The rules pass checks what the service enforces or documents beyond the schema (one method per
rule, each with its code from aibx/diagnostics.py).

Field names: from apiVersion 2024-02-01 the service rejects a field name in the wrong case and an unknown
field; older versions accept the first and ignore the second. Both are reported either way, as errors or as
warnings, with "did you mean" for near misses.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aibx import api_history, model
from aibx.diagnostics import Diagnostic, Severity, closest, format_path
from aibx.document import Document, Unresolved
from aibx.jsonc import JsonPath
from aibx.swagger_tables import API_VERSIONS, ROOT, SCHEMAS, TEMPLATE_NAME_PATTERNS

NEWEST = API_VERSIONS[-1]
STRICT_SINCE = "2024-02-01"  # the service rejects wrong-case and unknown field names from this version on

# keys an ARM deployment template may carry on a resource besides the swagger's; ARM consumes them and does
# not send them to AIB
ARM_RESOURCE_KEYS = {
    "apiVersion",
    "name",
    "type",
    "dependsOn",
    "comments",
    "condition",
    "copy",
    "scope",
    "metadata",
}
# resource keys whose unresolved values do not matter to AIB: apiVersion has AIB008, the rest ARM consumes
_NOT_SENT_TO_AIB = ARM_RESOURCE_KEYS - {"name", "type"}
# keys of the REST body that the swagger marks read-only yet every resource carries
_ENVELOPE_KEYS = {"id", "name", "type"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_Value = object  # a JSON value (the name "object" is shadowed by _Schema.object)


def version_key(v: str) -> tuple[str, int]:
    return (v[:10], 0 if v.endswith("preview") else 1)


def is_strict(version: str) -> bool:
    """Whether the service rejects wrong-case and unknown field names for this apiVersion."""
    return version_key(version) >= version_key(STRICT_SINCE)


def _version_range(versions: list[str]) -> str:
    first, last = versions[0], versions[-1]
    if first == last:
        return f"apiVersion {first}"
    if last == NEWEST:
        return f"apiVersion {first} or later"
    if first == API_VERSIONS[0]:
        return f"apiVersion {last} or earlier"
    return f"apiVersion {first} to {last}"


@dataclass
class Result:
    document: Document
    template: model.ImageTemplate
    api_version: str
    diagnostics: list[Diagnostic] = field(default_factory=list)


def validate(doc: Document, os_override: model.OsType | None = None) -> Result:
    diags: list[Diagnostic] = []
    version = _api_version(doc, diags)
    tpl, checked = _check(doc, version, os_override)
    diags += checked
    written = doc.api_version_written
    if isinstance(written, Unresolved) or (written is None and not doc.in_deployment):
        diags = _whatever_the_version(doc, diags, os_override)  # the version is chosen at deployment or submission
    if not doc.deployed:  # its condition is false: ARM skips it, and the service never sees it
        note = " (not deployed with these parameters: its condition is false)"
        diags = [
            dataclasses.replace(d, severity=Severity.WARNING, message=d.message + note)
            if d.severity is Severity.ERROR
            else d
            for d in diags
        ]
    return Result(doc, tpl, version, _dedupe(diags))


def _check(
    doc: Document, version: str, os_override: model.OsType | None
) -> tuple[model.ImageTemplate, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    _Schema(doc, version, diags).walk(doc.resource, {"t": "ref", "ref": ROOT}, ())
    diags += _unknown_values(doc)
    tpl = model.from_document(doc, os_override)
    tpl.api_version = version
    diags += _Rules(doc, tpl, version).run()
    from aibx import script_placeholders

    diags += script_placeholders.check(doc, tpl)  # issue 13: TOKEN='<api_token>' in a script is AIB005 too
    return tpl, diags


def _whatever_the_version(doc: Document, diags: list[Diagnostic], os_override: model.OsType | None) -> list[Diagnostic]:
    """The apiVersion is unknown (a parameter without a value): an error found with the newest version stays an
    error only where every apiVersion the service accepts today finds one; elsewhere it depends on the unknown
    value, and is a warning."""
    accepted = [v for v in API_VERSIONS if version_key(v) >= version_key(api_history.RETIRED_VERSIONS_BEFORE)]
    everywhere = {d.json_path for d in diags if d.severity is Severity.ERROR}
    for version in accepted:
        if version != NEWEST and everywhere:
            found = _check(doc, version, os_override)[1]
            everywhere &= {d.json_path for d in found if d.severity is Severity.ERROR}
    out = []
    for d in diags:
        if d.severity is Severity.ERROR and d.json_path not in everywhere:
            note = f" (with apiVersion {NEWEST}; not with every apiVersion, and this template's is unknown)"
            d = dataclasses.replace(d, severity=Severity.WARNING, message=d.message + note)
        out.append(d)
    return out


def _unknown_values(doc: Document) -> list[Diagnostic]:
    """One AIB005 per unknown value (the same reason, such as a parameter without a value, is reported once, at
    its first use, with the number of other places). Checks that need the value skip it."""
    by_reason: dict[str, list[tuple[JsonPath, Unresolved]]] = {}
    for path, value in doc.unresolved.items():
        if value.reported or (path and path[0] in _NOT_SENT_TO_AIB):
            continue
        by_reason.setdefault(value.reason, []).append((path, value))
    out = []
    for reason, uses in by_reason.items():
        uses.sort(key=lambda use: doc.source_map.locate(doc.full_path(use[0]))[0])
        path, value = uses[0]
        is_key = bool(path) and value.text == path[-1]  # an unresolved property name, such as "<imgBuilderId>"
        more = len(uses) - 1
        if more:
            second = format_path(doc.full_path(uses[1][0]))
            reason += f" (used in {more} more place{'s' * (more > 1)}: {second}{', …' * (more > 1)})"
        out.append(doc.diagnostic("AIB005", reason, path, key=is_key))
    return out


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for d in sorted(diags, key=lambda d: (d.line, d.column, d.code)):
        k = (d.code, d.json_path, d.message)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


def _api_version(doc: Document, diags: list[Diagnostic]) -> str:
    written = doc.api_version_written
    if isinstance(written, str) and written in API_VERSIONS:
        return written
    if isinstance(written, str):
        close = closest(written, API_VERSIONS, 0.6)
        hint = f"did you mean {close}?" if close else f"known: {', '.join(API_VERSIONS)}."
        diags.append(
            doc.diagnostic(
                "AIB008",
                f'"{written}" is not an AIB API version; {hint} Checking against {NEWEST}',
                ("apiVersion",),
                severity=Severity.ERROR,
            )
        )
    elif isinstance(written, Unresolved):
        diags.append(
            doc.diagnostic(
                "AIB008",
                f"apiVersion is {written.text} ({written.reason}); checking against {NEWEST}. "
                "Use --api-version to choose",
                ("apiVersion",),
            )
        )
    elif written is None:
        where = "" if doc.in_deployment else " (a REST call names it in the URL)"
        diags.append(
            doc.diagnostic("AIB008", f"no apiVersion{where}; checking against {NEWEST}. Use --api-version to choose")
        )
    else:
        diags.append(
            doc.diagnostic(
                "AIB008",
                f'apiVersion must be a string such as "{NEWEST}"; checking against {NEWEST}',
                ("apiVersion",),
                severity=Severity.ERROR,
            )
        )
    return NEWEST


# ----------------------------------------------------------------------------------------------- schema pass
class _Schema:
    def __init__(self, doc: Document, version: str, diags: list[Diagnostic], shown: str | None = None) -> None:
        self.doc = doc
        self.version = version
        # the template's apiVersion, for messages (a feature accepted early is walked with a later version's schema)
        self.shown = shown or version
        self.defs = SCHEMAS[version]
        self.strict = is_strict(version)
        self.diags = diags

    def add(
        self, code: str, message: str, path: JsonPath, *, key: bool = False, severity: Severity | None = None
    ) -> None:
        self.diags.append(self.doc.diagnostic(code, message, path, key=key, severity=severity))

    def name_severity(self) -> Severity:
        return Severity.ERROR if self.strict else Severity.WARNING

    def leniency(self, consequence: str) -> str:
        """How this apiVersion treats a wrong-case or unknown name, for the end of a message."""
        if self.strict:
            return f"apiVersion {STRICT_SINCE} and later reject it"
        return f"apiVersion {self.shown} {consequence}; {STRICT_SINCE} and later reject it"

    def resolve(self, spec: dict) -> tuple[str | None, dict]:
        if spec.get("t") == "ref":
            return spec["ref"], self.defs[spec["ref"]]
        return None, spec

    def walk(self, value: object, spec: dict, path: JsonPath, def_name: str | None = None) -> None:
        if isinstance(value, Unresolved):
            return
        ref_name, spec = self.resolve(spec)
        def_name = ref_name or def_name
        t = spec["t"]
        if t == "object":
            self.object(value, spec, path, def_name)
        elif t == "array":
            if not isinstance(value, list):
                self.add("AIB052", f"expected an array, found {_kind(value)}", path)
                return
            for i, item in enumerate(value):
                self.walk(item, spec["items"], (*path, i))
        elif t == "string":
            self.string(value, spec, path)
        elif t == "integer":
            self.integer(value, spec, path)
        elif t == "boolean":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                self.add("AIB027", f'"{value}" is a string; write {value.lower()} without quotes', path)
            elif not isinstance(value, bool):
                self.add("AIB052", f"expected true or false, found {_kind(value)}", path)
        elif t == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            self.add("AIB052", f"expected a number, found {_kind(value)}", path)

    def string(self, value: object, spec: dict, path: JsonPath) -> None:
        if not isinstance(value, str):
            self.add("AIB052", f"expected a string, found {_kind(value)}", path)
            return
        enum = spec.get("enum")
        if enum and value not in enum:
            match = next((e for e in enum if e.lower() == value.lower()), None)
            if match:
                self.add(
                    "AIB053",
                    f'"{value}": did you mean "{match}"? Values are case-sensitive; '
                    + self.leniency("accepts this spelling"),
                    path,
                    severity=self.name_severity(),
                )
            else:
                close = closest(value, enum, 0.6)
                hint = f'; did you mean "{close}"?' if close else ""
                self.add("AIB053", f'"{_short(value)}" is not one of {", ".join(enum)}{hint}', path)
        pattern = spec.get("pattern")
        if pattern and not re.search(pattern, value):
            self.add("AIB056", f'"{_short(value)}" does not match {pattern}', path)

    def integer(self, value: object, spec: dict, path: JsonPath) -> None:
        number: int | None = None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.add("AIB052", f"expected an integer, found {_kind(value)}", path)
            return
        if isinstance(value, str):
            if not re.fullmatch(r"\s*-?\d{1,18}\s*", value):
                self.add("AIB052", f"expected an integer, found {_kind(value)}", path)
                return
            self.add("AIB027", f'"{value}" is a string; write {value.strip()} without quotes', path)
            number = int(value)
        elif isinstance(value, float) and not value.is_integer():
            self.add("AIB052", f"expected an integer, found {value}", path)
            return
        else:
            number = int(value)
        low, high = spec.get("min"), spec.get("max")
        if low is not None and number < low:
            self.add("AIB055", f"{number} is below the minimum {low}", path)
        if high is not None and number > high:
            self.add("AIB055", f"{number} is above the maximum {high}", path)

    def object(self, value: object, spec: dict, path: JsonPath, def_name: str | None) -> None:
        if not isinstance(value, dict):
            self.add("AIB052", f"expected an object, found {_kind(value)}", path)
            return
        if "disc" in spec:
            resolved = self.variant(value, spec, path, def_name)
            if resolved is None:
                return
            def_name, spec = resolved
        props: dict[str, dict] = spec.get("props", {})
        lower = {k.lower(): k for k in props}
        for key, item in value.items():
            child = (*path, key)
            if item is None:
                continue  # null: the service reads it as a field not written (Bicep writes null() for "not set")
            if key in props:
                self.field(item, props[key], child, key, def_name)
            elif def_name == ROOT and key in ARM_RESOURCE_KEYS:
                self.arm_key(key, child)
            elif key.lower() in lower:
                canonical = lower[key.lower()]
                self.add(
                    "AIB051",
                    f'"{key}": did you mean "{canonical}"? Field names are case-sensitive; '
                    + self.leniency("accepts this spelling"),
                    child,
                    key=True,
                    severity=self.name_severity(),
                )
                self.field(item, props[canonical], child, canonical, def_name)
            elif "map" in spec:
                self.walk(item, spec["map"], child)
            else:
                self.unknown(key, item, props, child, def_name)
        for req in spec.get("required", []):
            written = next((k for k in value if k.lower() == req.lower() and value[k] is not None), None)
            if written is None:
                self.add("AIB054", f'"{req}" is required', path)
            elif value[written] == "":
                self.add("AIB011", f'"{req}" is required and must not be empty', (*path, written))

    def field(self, item: Any, spec: dict, path: JsonPath, name: str, def_name: str | None) -> None:
        if spec.get("ro") and not (def_name == ROOT and name in _ENVELOPE_KEYS):
            self.add(
                "AIB059", f'"{name}" is read-only: the service sets it and ignores what is written', path, key=True
            )
            return
        self.walk(item, spec, path)

    def arm_key(self, key: str, path: JsonPath) -> None:
        """A deployment-template key (dependsOn, apiVersion ...) on the resource: ARM consumes it in a
        deployment; in a bare resource it goes into the request body, where strict versions may reject it."""
        if self.doc.in_deployment or key in _ENVELOPE_KEYS or key == "apiVersion" or not self.strict:
            return  # apiVersion stays: it is how a bare file tells aibx (and az resource create) its version
        self.add(
            "AIB050",
            f'"{key}" belongs to ARM deployment templates; in a bare resource it is sent in the request body, '
            f"where apiVersion {STRICT_SINCE} and later may reject it as an unknown field. Remove it",
            path,
            key=True,
            severity=Severity.WARNING,
        )

    def variant(self, value: dict, spec: dict, path: JsonPath, def_name: str | None) -> tuple[str, dict] | None:
        disc = spec["disc"]
        variants: dict[str, str] = spec["variants"]
        disc_key = next((k for k in value if k.lower() == disc.lower()), None)
        if disc_key is None:
            self.add("AIB054", f'"{disc}" is required: one of {", ".join(variants)}', path)
            return None
        kind = value[disc_key]
        if isinstance(kind, Unresolved):
            return None
        if not isinstance(kind, str):
            self.add("AIB052", f"expected a string, found {_kind(kind)}", (*path, disc_key))
            return None
        if kind in variants:
            return variants[kind], self.defs[variants[kind]]
        match = next((v for v in variants if v.lower() == kind.lower()), None)
        if match:
            elsewhere = [v for v in API_VERSIONS if kind in SCHEMAS[v].get(def_name or "", {}).get("variants", {})]
            where = f' ("{kind}" is how {_version_range(elsewhere)} spells it)' if elsewhere else ""
            self.add(
                "AIB053",
                f'{disc} "{kind}": did you mean "{match}"?{where} Values are case-sensitive; '
                + self.leniency("accepts this spelling"),
                (*path, disc_key),
                severity=self.name_severity(),
            )
            return variants[match], self.defs[variants[match]]
        elsewhere = [
            v
            for v in API_VERSIONS
            if def_name in SCHEMAS[v] and kind.lower() in {x.lower() for x in SCHEMAS[v][def_name].get("variants", {})}
        ]
        if elsewhere:
            evidence = api_history.accepted_early(def_name, f"variant:{kind}", self.version)
            if evidence is not None:  # accepted before its swagger listed it: check it against that swagger
                later = next(v for v in elsewhere if version_key(v) > version_key(self.version))
                _Schema(self.doc, later, self.diags, self.shown).walk(value, {"t": "ref", "ref": def_name}, path)
                return None
            self.later_field(f'{disc} "{kind}"', elsewhere, (*path, disc_key), key=False)
        else:
            known = sorted([*variants, *api_history.accepted_variants(def_name, self.version)])
            close = closest(kind, known, 0.5)
            hint = f'; did you mean "{close}"?' if close else ""
            self.add(
                "AIB057",
                f'unknown {disc} "{_short(kind)}"; {self.shown} knows {", ".join(known)}{hint}',
                (*path, disc_key),
            )
        return None

    def later_field(self, what: str, elsewhere: list[str], path: JsonPath, *, key: bool) -> None:
        """A field or type that other apiVersions define. From 2024-02-01 on the service rejects it; before, it
        ignores an unknown field, and for a type no release note says either way: a warning."""
        needs = f"{what} needs {_version_range(elsewhere)}; this template uses {self.shown}"
        if self.strict:
            self.add("AIB058", f"{needs}, which rejects it", path, key=key)
        elif what.startswith('"'):
            self.add("AIB058", f"{needs}, which ignores it: it has no effect", path, key=key, severity=Severity.WARNING)
        else:
            self.add(
                "AIB058",
                f"{needs}; neither its swagger nor a release note says it accepts it, so the service may reject it",
                path,
                key=key,
                severity=Severity.WARNING,
            )

    def unknown(self, key: str, value: _Value, props: dict[str, dict], path: JsonPath, def_name: str | None) -> None:
        elsewhere = [
            v
            for v in API_VERSIONS
            if def_name in SCHEMAS[v] and key.lower() in {p.lower() for p in SCHEMAS[v][def_name].get("props", {})}
        ]
        if elsewhere:
            evidence = api_history.accepted_early(def_name, key, self.version)
            if evidence is not None:  # accepted before its swagger listed it: check it against that swagger
                later = next(v for v in elsewhere if version_key(v) > version_key(self.version))
                props = SCHEMAS[later][def_name or ""]["props"]
                canonical = next(p for p in props if p.lower() == key.lower())
                schema = _Schema(self.doc, later, self.diags, self.shown)
                schema.field(value, props[canonical], path, canonical, def_name)
                return
            self.later_field(f'"{key}"', elsewhere, path, key=True)
            return
        if def_name == ROOT and key.lower() in {k.lower() for k in self.defs["ImageTemplateProperties"]["props"]}:
            hint = '; it belongs inside "properties"'
        else:
            candidates = [c for c in props if not props[c].get("ro")]
            close = closest(key, candidates, 0.75)
            if close:
                hint = f'; did you mean "{close}"?'
            else:
                hint = f"; known here: {', '.join(candidates)}" if candidates else ""
        self.add(
            "AIB050",
            f'unknown field "{_short(key)}"{hint} ({self.leniency("ignores it, so it has no effect")})',
            path,
            key=True,
            severity=self.name_severity(),
        )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{value}"' if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------- rules pass
_FILTER = re.compile(r"^\s*(include|exclude)\s*:(.*)$", re.DOTALL | re.IGNORECASE)


class _Rules:
    def __init__(self, doc: Document, tpl: model.ImageTemplate, version: str) -> None:
        self.doc = doc
        self.tpl = tpl
        self.version = version
        self.defs = SCHEMAS[version]
        self.diags: list[Diagnostic] = []

    def add(
        self, code: str, message: str, path: JsonPath, *, key: bool = False, severity: Severity | None = None
    ) -> None:
        self.diags.append(self.doc.diagnostic(code, message, path, key=key, severity=severity))

    def run(self) -> list[Diagnostic]:
        tpl = self.tpl
        self.properties()
        self.template_name()
        self.build_timeout()
        self.identity()
        self.service_today()
        self.source()
        self.unique_names(tpl.customize, "customizer")
        if tpl.validate:
            self.unique_names(tpl.validate.in_vm_validations, "validator")
            self.source_validation_only()
        for step in tpl.steps():
            self.step(step)
        self.optimize()
        self.os_consistency()
        self.distribute()
        self.vnet()
        return self.diags

    # ------------------------------------------------------------------------------------------- helpers
    def step_fields(self, step: model.Step) -> dict[str, str]:
        """The fields (lower case -> canonical) this apiVersion knows for the step's type; {} if none."""
        base = "ImageTemplateInVMValidator" if "inVMValidations" in step.path else "ImageTemplateCustomizer"
        variants = self.defs.get(base, {}).get("variants", {})
        def_name = next((d for v, d in variants.items() if v.lower() == step.kind.lower()), None)
        props = self.defs[def_name]["props"] if def_name else {}
        fields = {p.lower(): p for p in props}
        for name in api_history.accepted_fields(def_name, self.version):  # accepted before its swagger said so
            fields[name.lower()] = name
        return fields

    def written_key(self, path: JsonPath, *names: str) -> str | None:
        """The key as written at ``path`` for the first of ``names`` present (any case)."""
        node: object = self.doc.resource
        for part in path:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        if not isinstance(node, dict):
            return None
        for name in names:
            found = next((k for k in node if k.lower() == name.lower()), None)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------------------------------- rules
    def properties(self) -> None:
        if not any(k.lower() == "properties" for k in self.doc.resource):
            self.add("AIB054", '"properties" is required: it holds "source", "customize" and "distribute"', ())

    def template_name(self) -> None:
        name = self.doc.resource.get("name")
        pattern = TEMPLATE_NAME_PATTERNS[self.version]
        if isinstance(name, str) and not re.search(pattern, name):
            self.add(
                "AIB056",
                f'the image template name "{_short(name)}" does not match {pattern} (letters, digits, - and _'
                + (", ." if "." in pattern else "")
                + ", at most 64)",
                ("name",),
            )

    def build_timeout(self) -> None:
        minutes = self.tpl.build_timeout_in_minutes
        path = ("properties", "buildTimeoutInMinutes")
        if minutes is None or minutes <= 0:
            return
        if minutes < 6:
            self.add("AIB015", f"{minutes} minutes is below AIB's documented minimum of 6", path)
        elif minutes < 60 and self.tpl.os_type is model.OsType.WINDOWS:
            self.add(
                "AIB016",
                f"{minutes} minutes is short for a Windows build ({self.tpl.os_reason}); AIB recommends at least 60",
                path,
            )

    def identity(self) -> None:
        raw = next((v for k, v in self.doc.resource.items() if k.lower() == "identity"), None)
        ident = self.tpl.identity
        if isinstance(raw, Unresolved) or (ident and isinstance(ident.type, Unresolved)):
            return  # unknown until deployment: AIB005 says so
        if not ident or not isinstance(ident.type, str) or ident.type.lower() != "userassigned":
            if raw is None and "identity" in self.defs[ROOT].get("required", []):
                return  # the schema of this apiVersion requires it: AIB054 says so
            where: JsonPath = ("identity",) if raw is not None else ()
            self.retired(api_history.IDENTITY_REQUIRED, where)
            return
        path = ("identity", self.written_key(("identity",), "userAssignedIdentities") or "userAssignedIdentities")
        if isinstance(self.value_at(path), Unresolved):
            return  # computed at deployment (a reduce() or a parameter): AIB005 says so
        count = len(ident.user_assigned_identities)
        if count > 1:
            self.add("AIB031", f"{count} identities given; AIB supports exactly one", path)
        elif count == 0:
            self.add("AIB031", "UserAssigned names no identity; give the resource id of exactly one", path)

    def retired(self, rule: api_history.Retirement, path: JsonPath) -> None:
        self.add(rule.code, rule.what, path)

    def service_today(self) -> None:
        """What the service refuses today whatever the apiVersion (aibx/api_history.py)."""
        if version_key(self.version) < version_key(api_history.RETIRED_VERSIONS_BEFORE):
            self.retired(api_history.OLD_PREVIEW_RETIRED, ("apiVersion",))
        if isinstance(self.tpl.source, model.IsoSource):
            self.retired(api_history.RHEL_ISO_RETIRED, self.tpl.source.path)

    def maybe_null(self, path: JsonPath, *names: str) -> bool:
        """Whether one of the fields ``names`` at ``path`` is unknown, so it may turn out null (not given), as
        ``[if(cond, 'x', null())]`` does."""
        return any(isinstance(self.value_at((*path, self.written_key(path, n) or n)), Unresolved) for n in names)

    def value_at(self, path: JsonPath) -> object:
        node: object = self.doc.resource
        for part in path:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node

    def source(self) -> None:
        src = self.tpl.source
        if isinstance(src, model.PlatformImageSource):
            missing = [n for n in ("publisher", "offer", "sku") if getattr(src, n) in (None, "")]
            if missing:
                self.add(
                    "AIB011",
                    f"PlatformImage needs {' and '.join(missing)} to find the image in the Azure Marketplace",
                    src.path,
                )
        if isinstance(src, model.IsoSource) and isinstance(src.sha256_checksum, str) and src.sha256_checksum:
            self.checksum(src.sha256_checksum, (*src.path, self.written_key(src.path, "sha256Checksum") or ""))

    def unique_names(self, steps: list[model.Step], what: str) -> None:
        seen: dict[str, model.Step] = {}
        for step in steps:
            if not isinstance(step.name, str) or not step.name:
                continue
            key = step.name.lower()
            if key in seen:
                first = seen[key]
                line = self.doc.source_map.locate(self.doc.full_path(first.path))[0]
                self.add(
                    "AIB013",
                    f'{what} name "{step.name}" is already used by {format_path(first.path[-2:])} (line {line})',
                    (*step.path, "name"),
                )
            else:
                seen[key] = step

    def source_validation_only(self) -> None:
        val = self.tpl.validate
        if not (val and val.source_validation_only is True):
            return
        path = ("properties", "validate", self.written_key(("properties", "validate"), "sourceValidationOnly") or "")
        if self.tpl.customize:
            n = len(self.tpl.customize)
            self.add(
                "AIB032",
                "sourceValidationOnly validates the source image as it is, without a build: "
                + ("the customizer in customize does not run" if n == 1 else f"the {n} customizers do not run"),
                path,
            )
        if not val.in_vm_validations:
            self.add("AIB032", "sourceValidationOnly is true but inVMValidations is empty: nothing is checked", path)

    def step(self, step: model.Step) -> None:
        fields = self.step_fields(step)
        if isinstance(step, (model.ShellStep, model.PowerShellStep)):
            uri_name = fields.get("scripturi") or fields.get("script") or "scriptUri"
            has_uri = isinstance(step.script_uri, Unresolved) or bool(step.script_uri)
            has_inline = isinstance(step.inline, list) and len(step.inline) > 0
            if "inline" not in fields and fields:
                if not has_uri:
                    self.add("AIB010", f'{step.kind} in apiVersion {self.version} needs "{uri_name}"', step.path)
            elif has_uri == has_inline and not (has_uri and self.maybe_null(step.path, "scriptUri", "inline")):
                which = "both were given" if has_uri else "neither was given"
                self.add("AIB010", f"{step.kind} needs exactly one of {uri_name} and inline; {which}", step.path)
            written = self.written_key(step.path, "scriptUri", "script") or uri_name
            if has_uri and written.lower() in fields:  # a field of another apiVersion is AIB058 already
                self.download(step.script_uri, (*step.path, written), step.sha256_checksum, "sha256checksum" in fields)
        if (
            isinstance(step, model.PowerShellStep)
            and step.run_as_system
            and not step.run_elevated
            and not self.maybe_null(step.path, "runElevated")
        ):
            self.add("AIB012", 'requires "runElevated": true', (*step.path, "runAsSystem"), key=True)
        if isinstance(step, model.FileStep):
            self.file_step(step, fields)
        if isinstance(step, (model.ShellStep, model.PowerShellStep, model.FileStep)):
            checksum = step.sha256_checksum
            if isinstance(checksum, str) and checksum:
                self.checksum(checksum, (*step.path, self.written_key(step.path, "sha256Checksum") or ""))
        timeout = step.restart_timeout if isinstance(step, model.WindowsRestartStep) else None
        if isinstance(timeout, str) and timeout and model.parse_duration(timeout) is None:
            self.add(
                "AIB017",
                f'"{timeout}" is not a duration; write it like 5m, 2h or 90s',
                (*step.path, self.written_key(step.path, "restartTimeout") or "restartTimeout"),
            )
        if isinstance(step, model.WindowsUpdateStep):
            for i, flt in enumerate(step.filters or []):
                if isinstance(flt, str):
                    problem = check_update_filter(flt)
                    if problem:
                        self.add("AIB026", problem, (*step.path, self.written_key(step.path, "filters") or "", i))

    def file_step(self, step: model.FileStep, fields: dict[str, str]) -> None:
        for attr, name in (("source_uri", "sourceUri"), ("destination", "destination")):
            if getattr(step, attr) in (None, ""):
                self.add("AIB011", f'File needs "{name}"', step.path)
        if step.source_uri:
            written = self.written_key(step.path, "sourceUri") or "sourceUri"
            self.download(step.source_uri, (*step.path, written), step.sha256_checksum, "sha256checksum" in fields)
        dest = step.destination
        if self.tpl.os_type is model.OsType.LINUX and isinstance(dest, str) and dest:
            normal = posixpath.normpath(dest) if dest.startswith("/") else dest
            if not normal.startswith("/tmp/"):
                self.add(
                    "AIB022",
                    f'"{dest}": on Linux AIB can write only below /tmp; upload there and move the file into place '
                    "with a Shell step (sudo mv)",
                    (*step.path, self.written_key(step.path, "destination") or "destination"),
                )

    def download(self, uri: model.Text | None, path: JsonPath, checksum: model.Text | None, can_check: bool) -> None:
        """A script or file AIB downloads: a scheme it can fetch, and a checksum where the version has one."""
        field_name = str(path[-1])
        if isinstance(uri, str):
            scheme = urlsplit(uri).scheme.lower() if ":" in uri else ""
            if scheme not in ("https", "http"):
                shown = _short(uri, 100)  # make() drops the query (SAS tokens) of any URI in a message
                if scheme == "file" or len(scheme) < 2:  # no scheme, or a Windows drive letter
                    reason = "a local file works with aibx run only; AIB downloads http(s) URIs"
                else:
                    reason = f"AIB downloads only http(s) URIs, not {scheme}:"
                self.add("AIB029", f'{field_name} "{shown}": {reason}', path)
        if can_check and (checksum is None or checksum == ""):
            self.add(
                "AIB020",
                f"{field_name} without sha256Checksum: a changed or tampered download would go unnoticed",
                path,
            )

    def checksum(self, checksum: str, path: JsonPath) -> None:
        if not _HEX64.fullmatch(checksum):
            problem = f"{len(checksum)} characters" if len(checksum) != 64 else "not hexadecimal"
            self.add("AIB018", f"{problem}; a SHA-256 checksum is 64 hexadecimal digits (sha256sum FILE)", path)
        elif checksum != checksum.lower():
            self.add("AIB019", "write the checksum in lower case: AIB compares it as written", path)

    def optimize(self) -> None:
        opt = self.tpl.optimize
        if not opt or not opt.workload_script_uri:
            return
        path = ("properties", "optimize", "workload")
        written = (*path, self.written_key(path, "scriptUri") or "scriptUri")
        self.download(opt.workload_script_uri, written, opt.workload_sha256_checksum, True)
        if isinstance(opt.workload_sha256_checksum, str) and opt.workload_sha256_checksum:
            self.checksum(opt.workload_sha256_checksum, (*path, self.written_key(path, "sha256Checksum") or ""))

    def os_consistency(self) -> None:
        tpl = self.tpl
        src_os, src_reason = model.source_os(tpl.source)
        os_type = tpl.os_type
        if tpl.os_reason == "--os":
            src_reason = "--os"
        elif src_os is None:
            step_os, _ = model.steps_os(tpl)
            kinds = {type(s) for s in tpl.steps()}
            if step_os is None and model.ShellStep in kinds and kinds & set(model.WINDOWS_ONLY_STEPS):
                self.add(
                    "AIB025",
                    "the source does not say which OS this is and the steps mix Shell with Windows steps; "
                    "use --os to choose",
                    ("properties", "source"),
                )
                return
            if step_os is None:
                return
            src_reason = tpl.os_reason
        for step in tpl.steps():
            if os_type is model.OsType.WINDOWS and isinstance(step, model.ShellStep):
                self.add(
                    "AIB021",
                    f"Shell does not run on a Windows image ({src_reason}); use PowerShell",
                    step.path,
                )
            if os_type is model.OsType.LINUX:
                if isinstance(step, (model.WindowsRestartStep, model.WindowsUpdateStep)):
                    self.add("AIB021", f"{step.kind} does not run on a Linux image ({src_reason})", step.path)
                elif isinstance(step, model.PowerShellStep):
                    if step.run_elevated or step.run_as_system:
                        self.add(
                            "AIB021",
                            f"runElevated and runAsSystem need Windows; this is a Linux image ({src_reason})",
                            step.path,
                        )
                    else:
                        self.add(
                            "AIB021",
                            f"PowerShell on a Linux image ({src_reason}) needs pwsh on the VM; "
                            "AIB documents PowerShell for Windows only",
                            step.path,
                            severity=Severity.WARNING,
                        )

    def distribute(self) -> None:
        seen: dict[str, model.Distributor] = {}
        for dist in self.tpl.distribute:
            name = dist.run_output_name
            if isinstance(name, str) and name:
                first = seen.get(name.lower())
                if first is not None:
                    line = self.doc.source_map.locate(self.doc.full_path(first.path))[0]
                    self.add(
                        "AIB014",
                        f'runOutputName "{name}" is already used by {format_path(first.path[-2:])} (line {line}); '
                        "each target needs its own",
                        (*dist.path, self.written_key(dist.path, "runOutputName") or "runOutputName"),
                    )
                seen.setdefault(name.lower(), dist)
            if isinstance(dist, model.SharedImageDistributor):
                both = dist.replication_regions and dist.target_regions
                if both and not self.maybe_null(dist.path, "replicationRegions", "targetRegions"):
                    self.add(
                        "AIB023",
                        "give targetRegions (current) or replicationRegions (deprecated), not both",
                        dist.path,
                    )
                if dist.storage_account_type and dist.target_regions is not None and not dist.replication_regions:
                    self.add(
                        "AIB028",
                        "storageAccountType is ignored with targetRegions; set it per target region",
                        (*dist.path, self.written_key(dist.path, "storageAccountType") or "storageAccountType"),
                    )

    def vnet(self) -> None:
        vm = self.tpl.vm_profile
        vnet = vm.vnet_config if vm else None
        if not vnet:
            return
        path = ("properties", "vmProfile", "vnetConfig")
        maybe_null = self.maybe_null(path, "proxyVmSize", "containerInstanceSubnetId")
        if vnet.proxy_vm_size and vnet.container_instance_subnet_id and not maybe_null:
            self.add("AIB024", "proxyVmSize cannot be combined with containerInstanceSubnetId", path)
        if vnet.container_instance_subnet_id and not vnet.subnet_id:
            self.add("AIB024", "containerInstanceSubnetId requires subnetId (same VNet, another subnet)", path)


def check_update_filter(text: str) -> str | None:
    """A WindowsUpdate filter is ``include:EXPR`` or ``exclude:EXPR`` with a PowerShell expression over ``$_``.

    Without PowerShell here, the expression is checked for what breaks a script block: empty, unbalanced
    brackets or quotes."""
    m = _FILTER.match(text)
    if not m:
        return f'"{text}" must start with include: or exclude: (e.g. "exclude:$_.Title -like \'*Preview*\'")'
    expr = m.group(2).strip()
    if not expr:
        return f'"{text}" has no expression after "{m.group(1)}:"; use $true to match everything'
    problem = _balance(expr)
    return f'"{text}": {problem}' if problem else None


def _balance(expr: str) -> str | None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "`" and quote == '"':
                i += 2
                continue
            if ch == quote:
                if i + 1 < len(expr) and expr[i + 1] == quote:  # doubled quote escapes itself
                    i += 2
                    continue
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}" and (not stack or stack.pop() != pairs[ch]):
            return f"unbalanced '{ch}' at position {i + 1}"
        i += 1
    if quote:
        return f"unterminated {quote} quote"
    if stack:
        return f"unclosed '{stack[-1]}'"
    return None
