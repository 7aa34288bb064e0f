"""Reading image templates: bare resources, ARM deployment templates, parameters and placeholders.

``load()`` never raises for bad input: it returns the documents it could read and diagnostics for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aibx import armexpr
from aibx.diagnostics import Diagnostic, format_path, make
from aibx.document import Document, Unresolved
from aibx.jsonc import JsonPath, JsonSyntaxError, SourceMap, parse

RESOURCE_TYPE = "Microsoft.VirtualMachineImages/imageTemplates"
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)>")
# fields whose text is code, where <...> is shell or PowerShell syntax rather than a placeholder
_CODE_FIELDS = {"inline", "restartcommand", "restartcheckcommand", "filters", "searchcriteria"}
_COMPLEX_TYPES = {"int", "bool", "array", "object", "secureobject"}


@dataclass
class LoadOptions:
    parameters: Mapping[str, str] = field(default_factory=dict)  # -p NAME=VALUE
    parameter_files: Sequence[str] = ()  # --parameters FILE
    resource: str | None = None  # --resource NAME
    api_version: str | None = None  # --api-version
    context: armexpr.DeploymentContext = field(default_factory=armexpr.DeploymentContext)


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def parse_assignments(items: Iterable[str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """Parse ``-p NAME=VALUE`` arguments."""
    out: dict[str, str] = {}
    diags: list[Diagnostic] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            diags.append(make("AIB007", f"-p expects NAME=VALUE, got {item!r}", file="<command line>"))
            continue
        out[name.strip()] = value
    return out, diags


def read_json(path: str) -> tuple[object, SourceMap | None, list[Diagnostic]]:
    """Read and parse one JSON(C) file; diagnostics instead of exceptions."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return None, None, [make("AIB001", f"cannot read: {exc.strerror or exc}", file=path)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, None, [make("AIB001", f"not UTF-8 text (byte {exc.start})", file=path)]
    try:
        value, smap = parse(text)
    except JsonSyntaxError as exc:
        return None, None, [make("AIB002", exc.message, file=path, line=exc.line, column=exc.column)]
    return value, smap, []


def load(path: str, options: LoadOptions | None = None) -> LoadResult:
    options = options or LoadOptions()
    result = LoadResult()
    value, smap, diags = read_json(path)
    result.diagnostics += diags
    if smap is None:
        return result
    assert smap is not None
    if not isinstance(value, dict):
        result.diagnostics.append(
            make(
                "AIB003",
                "expected a JSON object (an image template or ARM deployment)",
                file=path,
                line=1,
                column=1,
            )
        )
        return result

    if _is_parameters_file(value):
        result.diagnostics.append(
            make(
                "AIB003",
                "this is an ARM parameters file; pass it with --parameters next to the template",
                file=path,
                line=1,
                column=1,
            )
        )
        return result

    if isinstance(value.get("resources"), (list, dict)):
        _load_deployment(path, value, smap, options, result)
    else:
        _load_bare(path, value, smap, options, result)
    return result


def _is_parameters_file(value: dict[str, object]) -> bool:
    schema = value.get("$schema")
    return isinstance(schema, str) and "deploymentParameters" in schema and "resources" not in value


# ----------------------------------------------------------------------------------------------- parameters
def _template_parameters(
    path: str, template: dict[str, object], smap: SourceMap, options: LoadOptions, result: LoadResult
) -> tuple[dict[str, object], list[str]]:
    """Values of the template's parameters: -p over --parameters files over defaults; missing = Unresolved."""
    declared = template.get("parameters")
    declared = declared if isinstance(declared, dict) else {}
    supplied: dict[str, object] = {}
    for pfile in options.parameter_files:
        supplied.update(_read_parameter_file(pfile, result))
    lower_declared = {k.lower(): k for k in declared}
    for name, text in options.parameters.items():
        key = lower_declared.get(name.lower())
        if key is None:
            supplied[name] = text  # may be a <placeholder> name; not an error
            continue
        spec = declared[key]
        ptype = str(spec.get("type", "string")).lower() if isinstance(spec, dict) else "string"
        if ptype in _COMPLEX_TYPES:
            try:
                supplied[key] = json.loads(text)
            except ValueError:
                result.diagnostics.append(
                    make(
                        "AIB007",
                        f"-p {name}: a {ptype} parameter needs a JSON value, got {text!r}",
                        file=path,
                    )
                )
                continue
        else:
            supplied[key] = text

    scope_defaults = armexpr.Scope(parameters={}, variables={}, context=options.context)
    values: dict[str, object] = {}
    secrets: list[str] = []
    secret_names: set[str] = set()
    supplied_lower = {k.lower(): k for k in supplied}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        ptype = str(spec.get("type", "string")).lower()
        if ptype.startswith("secure"):
            secret_names.add(name)
        if name.lower() in supplied_lower:
            val = supplied[supplied_lower[name.lower()]]
        elif "defaultValue" in spec:
            scope_defaults.parameters = values
            try:
                val = armexpr.resolve_tree(spec["defaultValue"], scope_defaults)
            except armexpr.ExpressionError as exc:
                line, col = smap.locate(("parameters", name, "defaultValue"))
                result.diagnostics.append(
                    make("AIB006", str(exc), file=path, line=line, column=col, json_path=f"parameters.{name}")
                )
                val = Unresolved(f"[parameters('{name}')]", str(exc))
        else:
            val = Unresolved(f"[parameters('{name}')]", f"parameter '{name}' has no value; pass -p {name}=VALUE")
        allowed = spec.get("allowedValues")
        if isinstance(allowed, list) and not isinstance(val, Unresolved) and val not in allowed:
            result.diagnostics.append(
                make(
                    "AIB007",
                    f"parameter '{name}' = {val!r} is not one of its allowedValues {allowed}",
                    file=path,
                    json_path=f"parameters.{name}",
                )
            )
        values[name] = val
        if name in secret_names and isinstance(val, str) and val:
            secrets.append(val)
    # -p names the template does not declare stay available for <placeholder> substitution
    extra = {k: v for k, v in supplied.items() if k.lower() not in lower_declared}
    for k, v in extra.items():
        values.setdefault(k, v)
    return values, secrets


def _read_parameter_file(pfile: str, result: LoadResult) -> dict[str, object]:
    value, smap, diags = read_json(pfile)
    for d in diags:  # a broken parameters file is invalid input, whatever the reason
        result.diagnostics.append(make("AIB007", d.message, file=d.file, line=d.line, column=d.column))
    if smap is None:
        return {}
    params = value.get("parameters") if isinstance(value, dict) else None
    if not isinstance(params, dict):
        result.diagnostics.append(
            make("AIB007", 'an ARM parameters file needs a "parameters" object', file=pfile, line=1, column=1)
        )
        return {}
    out: dict[str, object] = {}
    for name, entry in params.items():
        if isinstance(entry, dict) and "value" in entry:
            out[name] = entry["value"]
        elif isinstance(entry, dict) and "reference" in entry:
            out[name] = Unresolved(f"[parameters('{name}')]", "the value is a Key Vault reference")
        else:
            line, col = smap.locate(("parameters", name))
            result.diagnostics.append(
                make(
                    "AIB007",
                    f'parameter "{name}" needs {{"value": ...}} or {{"reference": ...}}',
                    file=pfile,
                    line=line,
                    column=col,
                    json_path=f"parameters.{name}",
                )
            )
    return out


# ----------------------------------------------------------------------------------------------- documents
def _load_deployment(
    path: str, template: dict[str, object], smap: SourceMap, options: LoadOptions, result: LoadResult
) -> None:
    values, secrets = _template_parameters(path, template, smap, options, result)
    variables = template.get("variables")
    scope = armexpr.Scope(
        parameters=values,
        variables=variables if isinstance(variables, dict) else {},
        context=options.context,
    )
    resources = template["resources"]
    entries: list[tuple[JsonPath, object, str | None]] = []
    if isinstance(resources, list):
        entries = [(("resources", i), r, None) for i, r in enumerate(resources)]
    elif isinstance(resources, dict):  # languageVersion 2.0: symbolic names
        entries = [(("resources", k), r, k) for k, r in resources.items()]
    found: list[Document] = []
    for prefix, res, symbolic in entries:
        if not isinstance(res, dict):
            continue
        rtype = _resolve_value(res.get("type"), scope, values, (*prefix, "type"), path, smap, result)
        if not (isinstance(rtype, str) and rtype.lower() == RESOURCE_TYPE.lower()):
            continue
        doc = _make_document(path, res, smap, prefix, scope, values, options, result)
        doc.secrets = secrets
        if symbolic and doc.name is None:
            doc.name = symbolic
        doc.symbolic_name = symbolic
        found.append(doc)
    if not found:
        result.diagnostics.append(
            make(
                "AIB003",
                f"the ARM deployment template has no {RESOURCE_TYPE} resource",
                file=path,
                line=smap.locate(("resources",))[0],
                column=smap.locate(("resources",))[1],
                json_path="resources",
            )
        )
        return
    result.documents += _select(path, found, options, result)


def _load_bare(
    path: str, resource: dict[str, object], smap: SourceMap, options: LoadOptions, result: LoadResult
) -> None:
    values, _secrets = _template_parameters(path, {}, smap, options, result)
    scope = armexpr.Scope(parameters=values, variables={}, context=options.context)
    if not isinstance(resource.get("properties"), dict) and not _looks_like_properties(resource):
        result.diagnostics.append(
            make(
                "AIB003",
                'no image template here: expected "properties" with "source", "customize" and "distribute", '
                'or an ARM deployment template with "resources"',
                file=path,
                line=1,
                column=1,
            )
        )
        return
    doc = _make_document(path, resource, smap, (), scope, values, options, result)
    rtype = doc.resource.get("type")
    if rtype is None:
        result.diagnostics.append(doc.diagnostic("AIB004", f'"type" is missing; AIB expects "{RESOURCE_TYPE}"'))
    elif not (isinstance(rtype, str) and rtype.lower() == RESOURCE_TYPE.lower()):
        result.diagnostics.append(
            doc.diagnostic("AIB004", f'"type" is {rtype!r}; AIB expects "{RESOURCE_TYPE}"', ("type",))
        )
    result.documents += _select(path, [doc], options, result)


def _looks_like_properties(value: dict[str, object]) -> bool:
    return any(k in value for k in ("source", "customize", "distribute"))


def _select(path: str, docs: list[Document], options: LoadOptions, result: LoadResult) -> list[Document]:
    if not options.resource:
        return docs
    want = options.resource.lower()
    chosen = [
        d
        for d in docs
        if (isinstance(d.name, str) and d.name.lower() == want)
        or (d.symbolic_name or "").lower() == want
        or format_path(d.prefix) == options.resource
    ]
    if not chosen:
        names = ", ".join(str(d.name or format_path(d.prefix)) for d in docs)
        result.diagnostics.append(
            make("AIB009", f"no image template named {options.resource!r} (found: {names})", file=path)
        )
    return chosen


def _make_document(
    path: str,
    res: dict[str, object],
    smap: SourceMap,
    prefix: JsonPath,
    scope: armexpr.Scope,
    values: Mapping[str, object],
    options: LoadOptions,
    result: LoadResult,
) -> Document:
    resolved = _resolve_value(res, scope, values, prefix, path, smap, result)
    assert isinstance(resolved, dict)
    doc = Document(file=path, resource=resolved, source_map=smap, prefix=prefix)
    name = resolved.get("name")
    doc.name = name if isinstance(name, str) else None
    doc.unresolved = dict(_find_unresolved(resolved, ()))
    api = options.api_version or resolved.get("apiVersion")
    doc.api_version_written = api
    doc.api_version = api if isinstance(api, str) else None
    return doc


def _resolve_value(
    value: object,
    scope: armexpr.Scope,
    values: Mapping[str, object],
    path: JsonPath,
    file: str,
    smap: SourceMap,
    result: LoadResult,
) -> object:
    if isinstance(value, str):
        try:
            out = armexpr.evaluate_string(value, scope)
        except armexpr.ExpressionError as exc:
            line, col = smap.locate(path)
            result.diagnostics.append(
                make(
                    "AIB006",
                    f"{exc} in {value!r}",
                    file=file,
                    line=line,
                    column=col,
                    json_path=format_path(path),
                )
            )
            return Unresolved(value, str(exc))
        if isinstance(out, str):
            return _substitute(out, values, code=_in_code_field(path))
        return out
    if isinstance(value, dict):
        out_dict: dict[str, object] = {}
        for k, v in value.items():
            key = _substitute(k, values, code=True)
            out_dict[key if isinstance(key, str) else k] = _resolve_value(
                v, scope, values, (*path, k), file, smap, result
            )
        return out_dict
    if isinstance(value, list):
        return [_resolve_value(v, scope, values, (*path, i), file, smap, result) for i, v in enumerate(value)]
    return value


def _in_code_field(path: JsonPath) -> bool:
    return any(isinstance(p, str) and p.lower() in _CODE_FIELDS for p in path)


def _substitute(text: str, values: Mapping[str, object], *, code: bool) -> object:
    """Replace ``<name>`` tokens by -p values; outside code, a token left over makes the value Unresolved."""
    if "<" not in text:
        return text
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        for k, v in values.items():
            if k.lower() == name.lower() and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                return str(v)
        missing.append(name)
        return m.group()

    out = _PLACEHOLDER.sub(sub, text)
    if missing and not code:
        names = ", ".join(f"-p {n}=VALUE" for n in dict.fromkeys(missing))
        return Unresolved(out, f"placeholder {', '.join(f'<{n}>' for n in missing)} not substituted; pass {names}")
    return out


def _find_unresolved(value: object, path: JsonPath) -> Iterable[tuple[JsonPath, Unresolved]]:
    if isinstance(value, Unresolved):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and _PLACEHOLDER.fullmatch(k):
                yield (*path, k), Unresolved(k, f"placeholder {k} not substituted; pass -p {k[1:-1]}=VALUE")
            yield from _find_unresolved(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _find_unresolved(v, (*path, i))
