"""Reading image templates: bare resources, ARM deployment templates, parameters and placeholders.

``load()`` never raises for bad input: it returns the documents it could read and diagnostics for the rest.

Two kinds of file hold an image template:

* a *bare resource* (``{"type": ..., "location": ..., "properties": {...}}``), which ``az resource create`` or a
  REST call sends to AIB exactly as written: nothing in it is evaluated, so a string such as
  ``"[parameters('x')]"`` stays that string (AIB033 says so);
* an *ARM deployment template* (``{"$schema": ..., "parameters": ..., "resources": [...]}``), whose
  ``Microsoft.VirtualMachineImages/imageTemplates`` resources ARM evaluates: expressions in values and in
  property names, parameters from ``-p``, ``--parameters`` files and defaults.

In both, ``<name>`` placeholders (Microsoft's quickstarts are meant for ``sed``) are replaced by ``-p name=VALUE``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aibx import armexpr
from aibx.diagnostics import Diagnostic, Severity, closest, format_path, make
from aibx.document import Document, OpenValue, Unresolved, find_unresolved
from aibx.jsonc import JsonPath, JsonSyntaxError, SourceMap, parse

if TYPE_CHECKING:
    from aibx.packer_input import PackerOptions

RESOURCE_TYPE = "Microsoft.VirtualMachineImages/imageTemplates"
DEPLOYMENTS_TYPE = "Microsoft.Resources/deployments"
MAX_NESTED_DEPLOYMENTS = 16  # ARM's own limit is deeper; real templates nest two or three
MAX_CHECKED_COPIES = 50  # image templates of a resource copy loop checked one by one
STDIN = "-"  # the path that means "read standard input"
STDIN_NAME = "<stdin>"
COMMAND_LINE = "<command line>"

_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)>")
_PARAMETER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
# fields whose text is code, where <...> is shell or PowerShell syntax rather than a placeholder
_CODE_FIELDS = {"inline", "restartcommand", "restartcheckcommand", "filters", "searchcriteria"}
_JSON_TYPES = {"int", "bool", "array", "object", "secureobject"}
_TYPE_CHECKS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "string": ("a string", str),
    "securestring": ("a string", str),
    "int": ("an integer", int),
    "bool": ("true or false", bool),
    "object": ("an object", dict),
    "secureobject": ("an object", dict),
    "array": ("an array", list),
}


@dataclass
class LoadOptions:
    parameters: Mapping[str, str] = field(default_factory=dict)  # -p NAME=VALUE
    parameter_files: Sequence[str] = ()  # --parameters FILE (ARM JSON, or .bicepparam for a Bicep file)
    resource: str | None = None  # --resource NAME
    api_version: str | None = None  # --api-version
    context: armexpr.DeploymentContext = field(default_factory=armexpr.DeploymentContext)
    # a string parameter without a value becomes the open value ``<name>`` (OpenValue) instead of leaving the
    # whole expression Unresolved: translations then carry it inside IDs and URIs (resourceId(), concat(),
    # format()) as a variable of its own
    open_parameters: bool = False
    allow_local_files: bool = False  # Bicep's loadTextContent() may read outside the template's folder
    # --var, --var-file, --only, --allow-env-values: how a Packer configuration is read (aibx.packer_input)
    packer: PackerOptions | None = None


# what an open deployment context (open_context) calls the values Azure supplies at deployment
OPEN_CONTEXT = {"subscription_id": "subscriptionId", "resource_group": "resourceGroupName", "location": "location"}


def open_context(context: armexpr.DeploymentContext) -> armexpr.DeploymentContext:
    """``context`` with each value it lacks (subscription, resource group, location) an OpenValue."""
    from dataclasses import replace

    missing = {k: OpenValue(f"<{v}>") for k, v in OPEN_CONTEXT.items() if getattr(context, k) is None}
    return replace(context, **missing)


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # -p names this file used (as a parameter or a <placeholder>), lower case; see unused_assignments()
    names_used: set[str] = field(default_factory=set)
    # names this file offers to -p (declared parameters, placeholders), for "did you mean"
    names_known: set[str] = field(default_factory=set)
    # the file is JSON but plainly not an image template (a parameters file, another deployment, package.json):
    # a folder of templates may hold such files, and `aibx validate FOLDER` passes over them
    unrelated: bool = False
    # a Packer configuration, translated in memory: its translation reports, and the --only patterns that picked
    # its build sources (on run, the others name steps)
    packer: bool = False
    reports: list[Any] = field(default_factory=list)
    packer_only: list[str] = field(default_factory=list)


def undecodable(text: str) -> bool:
    """Whether a command-line argument or environment value held bytes that are not UTF-8 (Python keeps them as
    lone surrogates, which no output of aibx could write)."""
    return bool(_SURROGATE.search(text))


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_assignments(items: Iterable[str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """Parse ``-p NAME=VALUE`` arguments."""
    out: dict[str, str] = {}
    diags: list[Diagnostic] = []
    # a value is never echoed: it may be a password (and a forgotten "NAME=" leaves only the value)
    for number, item in enumerate(items, 1):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            message = f'-p expects NAME=VALUE: the {_ordinal(number)} -p has no "NAME=" (its text is not shown)'
            diags.append(make("AIB007", message, file=COMMAND_LINE))
            continue
        if undecodable(item):
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            diags.append(make("AIB007", f"-p {shown}=...: not UTF-8 text", file=COMMAND_LINE))
            continue
        out[name.strip()] = value
    return out, diags


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def unused_assignments(parameters: Mapping[str, str], results: Iterable[LoadResult]) -> list[Diagnostic]:
    """A warning for each ``-p`` name that no loaded file used: most likely a typo."""
    results = list(results)
    used = set().union(*(r.names_used for r in results)) if results else set()
    known = sorted(set().union(*(r.names_known for r in results))) if results else []
    out = []
    for name in parameters:
        if name.lower() in used:
            continue
        close = closest(name, known)
        hint = f'; did you mean "{close}"?' if close else ""
        out.append(
            make(
                "AIB007",
                f"-p {name}: no template declares a parameter or uses a <{name}> placeholder of that name{hint}",
                file=COMMAND_LINE,
                severity=Severity.WARNING,
            )
        )
    return out


def read_text(path: str) -> tuple[str | None, list[Diagnostic]]:
    """The text of a file (``-`` is standard input), or AIB001."""
    name = STDIN_NAME if path == STDIN else path
    try:
        raw = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
    except OSError as exc:
        return None, [make("AIB001", f"cannot read: {exc.strerror or exc}", file=name)]
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        return None, [make("AIB001", f"not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})", file=name)]


def read_json(path: str) -> tuple[object, SourceMap | None, list[Diagnostic]]:
    """Read and parse one JSON(C) file; diagnostics instead of exceptions."""
    text, diags = read_text(path)
    if text is None:
        return None, None, diags
    return parse_json(text, STDIN_NAME if path == STDIN else path)


def parse_json(text: str, file: str) -> tuple[object, SourceMap | None, list[Diagnostic]]:
    try:
        value, smap = parse(text)
    except JsonSyntaxError as exc:
        message = exc.message + _bare_placeholder_hint(text, exc.line, exc.column)
        return None, None, [make("AIB002", message, file=file, line=exc.line, column=exc.column)]
    diags = []
    for path, offset in smap.duplicates:
        line, column = smap.line_col(offset)
        diags.append(
            make(
                "AIB034",
                f'"{path[-1]}" is written twice in this object; only the later value counts',
                file=file,
                line=line,
                column=column,
                json_path=format_path(path),
            )
        )
    return value, smap, diags


def _bare_placeholder_hint(text: str, line: int, column: int) -> str:
    """A ``<name>`` placeholder outside quotes (``"defaultValue": <name>``) is meant for sed; say so."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    m = _PLACEHOLDER.match(lines[line - 1], max(column - 1, 0))
    if not m:
        return ""
    return f"; {m.group()} is a placeholder outside quotes: replace it with a JSON value (a string in quotes) first"


def load(path: str | os.PathLike[str], options: LoadOptions | None = None) -> LoadResult:
    """Load the image templates in one file (``-`` for standard input; a ``.bicep`` or ``.bicepparam`` file is
    read as Bicep; a Packer configuration, a ``.pkr.hcl`` file, a folder of them or a legacy JSON template, is
    translated in memory as ``aibx translate --to aib`` would)."""
    from aibx.packer_input import is_packer_config

    path = os.fspath(path)
    if path != STDIN and is_packer_config(path):
        from aibx.packer_input import load_packer

        return load_packer(path, options or LoadOptions())
    if path.lower().endswith((".bicep", ".bicepparam")):
        from aibx.bicep import load_bicep

        return load_bicep(path, options)
    text, diags = read_text(path)
    if text is None:
        return LoadResult(diagnostics=diags)
    if path != STDIN and '"builders"' in text and _is_packer_json_text(text):  # legacy JSON Packer template
        from aibx.packer_input import load_packer

        return load_packer(path, options or LoadOptions())
    if path == STDIN and _BICEP_START.match(text):  # Bicep on standard input
        from aibx.bicep import load_bicep

        return load_bicep(STDIN_NAME, options, text=text)
    return load_text(text, STDIN_NAME if path == STDIN else path, options)


# how a Bicep file starts (after comments): no JSON document starts so
_BICEP_START = re.compile(
    r"(?:\s|//[^\n]*|/\*.*?\*/)*(?:@|(?:param|var|resource|module|targetScope|metadata|using|import|type|func|output"
    r"|extension)\b)",
    re.DOTALL,
)


def load_text(text: str, file: str, options: LoadOptions | None = None) -> LoadResult:
    """Load the image templates in ``text``; ``file`` is the name diagnostics show."""
    options = options or LoadOptions()
    result = LoadResult()
    value, smap, diags = parse_json(text, file)
    if smap is None:
        looks = what_it_looks_like(text)
        if looks is not None:  # not JSON at all: say what it is and what to do, not where JSON failed
            result.diagnostics.append(make("AIB003", looks.replace("FILE", file), file=file, line=1, column=1))
            return result
    result.diagnostics += diags
    if smap is None:
        return result
    if not isinstance(value, dict):
        result.unrelated = True
        result.diagnostics.append(
            make(
                "AIB003",
                f"expected a JSON object (an image template or ARM deployment), found {_kind(value)}",
                file=file,
                line=1,
                column=1,
            )
        )
        return result
    if _is_packer_json(value):
        result.unrelated = True
        result.diagnostics.append(make("AIB003", _PACKER_JSON.replace("FILE", file), file=file, line=1, column=1))
        return result
    if _is_parameters_file(value):
        result.unrelated = True
        result.diagnostics.append(
            make(
                "AIB003",
                "this is an ARM parameters file; pass it with --parameters next to its template",
                file=file,
                line=1,
                column=1,
            )
        )
        return result
    loader = _Loader(file, smap, options, result)
    if isinstance(value.get("resources"), (list, dict)):
        loader.deployment(value)
    else:
        loader.bare(value)
    return result


_PACKER_HCL = re.compile(
    r'^\s*(?:packer\s*\{|source\s+"[^"]+"\s+"[^"]+"\s*\{|build\s*\{|variable\s+"[^"]+"\s*\{|locals\s*\{'
    r'|data\s+"[^"]+"\s+"[^"]+"\s*\{|required_plugins\s*\{)',
    re.MULTILINE,
)
_BICEP = re.compile(
    r"^\s*(?:resource\s+\w+\s+'[^']+@[^']+'|module\s+\w+\s+'[^']+'|param\s+\w+\s+[\w.]+|targetScope\s*="
    r"|using\s+'[^']*'|var\s+\w+\s*=|output\s+\w+\s+\w+\s*=|metadata\s+\w+\s*=|import\s+[{*'])",
    re.MULTILINE,
)
_TERRAFORM = re.compile(
    r'^\s*(?:terraform\s*\{|provider\s+"[^"]+"\s*\{|resource\s+"[^"]+"\s+"[^"]+"\s*\{|module\s+"[^"]+"\s*\{)',
    re.MULTILINE,
)
_HCL_ASSIGNMENT = re.compile(r'^\s*[A-Za-z_][\w-]*\s*=\s*(?:"|\[|\{|-?\d|true\b|false\b|\]|\}|$)|^\s*[\]}"\d,]')
_YAML = re.compile(r"^(?:---\s*$|%YAML|-\s+\S|[A-Za-z_\"'][\w .\"'-]*:(?:\s|$))")
_PACKER_JSON = (
    "this is a legacy JSON Packer template, not an AIB image template: "
    "`aibx translate FILE --to aib` turns it into one (then validate that)"
)


def what_it_looks_like(text: str) -> str | None:
    """For a file that is not JSON: what it looks like and what to do, or None when it looks like broken JSON."""
    body = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith(("//", "#"))]
    if not lines or lines[0].lstrip()[:1] in ("{", "["):
        return None
    code = "\n".join(lines)
    if _TERRAFORM.search(code):
        return (
            "this looks like a Terraform configuration; aibx reads AIB image templates as JSON "
            "(a bare resource or an ARM deployment template), not Terraform"
        )
    if _PACKER_HCL.search(code):
        return (
            "this is a Packer HCL2 configuration, not an AIB image template: "
            "`aibx translate FILE --to aib` turns it into one (then validate that)"
        )
    if _BICEP.search(code) or lines[0].lstrip().startswith("@"):
        return (
            "this looks like a Bicep file: give it a .bicep name (or pipe it to `aibx validate -`) and aibx reads it "
            "as Bicep; `az bicep build --file FILE` and the .json it writes work too"
        )
    if all(_HCL_ASSIGNMENT.match(ln) for ln in lines[:20]):
        return (
            "this looks like a Packer variables file (.pkrvars.hcl): give it to `aibx translate CONFIG --to aib "
            "--var-file FILE` with the Packer configuration it belongs to"
        )
    if _YAML.match(lines[0].lstrip()) and sum(1 for ln in lines[:20] if ":" in ln or ln.lstrip().startswith("-")) > 1:
        return (
            "this looks like YAML; aibx reads AIB templates as JSON (a bare resource or an ARM deployment template): "
            "convert it to JSON, or if it is a pipeline, validate the template file it names"
        )
    return None


def _is_packer_json_text(text: str) -> bool:
    value, smap, _diags = parse_json(text, "")
    return smap is not None and isinstance(value, dict) and _is_packer_json(value)


def _is_packer_json(value: dict[str, object]) -> bool:
    return isinstance(value.get("builders"), list) and not any(k in value for k in ("resources", "properties"))


def _is_parameters_file(value: dict[str, object]) -> bool:
    schema = value.get("$schema")
    return isinstance(schema, str) and "deploymentParameters" in schema and "resources" not in value


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# ----------------------------------------------------------------------------------------------- parameters
@dataclass
class _Supplied:
    value: object
    file: str  # where the value was written: a parameters file or COMMAND_LINE
    smap: SourceMap | None = None
    path: JsonPath = ()


class _ParameterValues(Mapping[str, object]):
    """The values of a template's parameters: ``-p`` over ``--parameters`` files over ``defaultValue``, a
    missing one Unresolved. Defaults are evaluated on first use, so they may refer to parameters declared
    after them; a default that refers to itself is an AIB006 error."""

    def __init__(self, loader: _Loader, declared: dict[str, object], supplied: dict[str, _Supplied]) -> None:
        self.loader = loader
        self.declared = declared
        self.supplied = supplied
        self.extra = {k: s.value for k, s in supplied.items() if k not in declared}  # placeholder values
        self.cache: dict[str, object] = {}
        self.busy: set[str] = set()

    def __iter__(self) -> Iterator[str]:
        yield from self.declared
        yield from self.extra

    def __len__(self) -> int:
        return len(self.declared) + len(self.extra)

    def __getitem__(self, name: str) -> object:
        if name in self.cache:
            return self.cache[name]
        if name not in self.declared:
            return self.extra[name]
        spec = self.declared[name]
        spec = spec if isinstance(spec, dict) else {}
        if name in self.supplied:
            value = self.supplied[name].value
        elif "defaultValue" in spec:
            if name in self.busy:
                raise armexpr.ExpressionError(f"the default value of parameter '{name}' refers to itself")
            self.busy.add(name)
            # ARM gives a default the template's parameters and functions, never its variables
            scope = armexpr.Scope(
                parameters=self,
                variables={},
                context=self.loader.options.context,
                functions=self.loader.scope.functions,
            )
            try:
                value = armexpr.resolve_tree(spec["defaultValue"], scope)
            except armexpr.ExpressionError as exc:
                self.loader.add("AIB006", str(exc), ("parameters", name, "defaultValue"))
                value = Unresolved(
                    f"[parameters('{name}')]", f"the default value of '{name}' is invalid", reported=True
                )
            finally:
                self.busy.discard(name)
        elif spec.get("nullable") is True:
            value = None  # languageVersion 2.0: a nullable parameter without a value is null
        elif self.loader.options.open_parameters and _ptype(spec) == "string" and _PARAMETER_NAME.fullmatch(name):
            value = OpenValue(f"<{name}>")
        else:
            value = Unresolved(f"[parameters('{name}')]", f"parameter '{name}' has no value; pass -p {name}=VALUE")
        self.cache[name] = value
        return value


class _NestedParameters(Mapping[str, object]):
    """The parameters of a nested deployment's inner-scope template: the values its ``parameters`` pass (evaluated
    in the outer template), else the inner ``defaultValue`` (evaluated in the inner template), else Unresolved."""

    def __init__(
        self,
        loader: _Loader,
        declared: dict[str, object],
        passed: dict[str, object],
        outer: armexpr.Scope,
        props_path: JsonPath,
    ) -> None:
        self.loader = loader
        self.declared = declared
        self.passed = passed
        self.outer = outer
        self.inner = outer  # set to the inner scope once it exists
        self.props_path = props_path
        # where the inner template's parameters are written: inline in this file, or a linked file (set by the caller)
        self.defaults_loader = loader
        self.defaults_path: JsonPath = (*props_path, "template")
        self.cache: dict[str, object] = {}
        self.busy: set[str] = set()

    def __iter__(self) -> Iterator[str]:
        return iter(self.declared)

    def __len__(self) -> int:
        return len(self.declared)

    def __getitem__(self, name: str) -> object:
        if name in self.cache:
            return self.cache[name]
        if name in self.busy:
            raise armexpr.ExpressionError(f"the default value of parameter '{name}' refers to itself")
        spec = self.declared[name]
        spec = spec if isinstance(spec, dict) else {}
        given = next((v for k, v in self.passed.items() if k.lower() == name.lower()), None)
        self.busy.add(name)
        try:
            if isinstance(given, dict) and "value" in given:
                value = self.evaluate(given["value"], self.outer, (*self.props_path, "parameters", name, "value"))
            elif isinstance(given, dict) and "reference" in given:
                value = Unresolved(f"[parameters('{name}')]", "the value is a Key Vault reference, read by ARM")
            elif "defaultValue" in spec:
                path = (*self.defaults_path, "parameters", name, "defaultValue")
                value = self.evaluate(spec["defaultValue"], self.inner, path, self.defaults_loader)
            elif spec.get("nullable") is True:
                value = None
            else:
                value = Unresolved(
                    f"[parameters('{name}')]", f"the nested deployment passes no value for its parameter '{name}'"
                )
        finally:
            self.busy.discard(name)
        self.cache[name] = value
        return value

    def evaluate(self, value: object, scope: armexpr.Scope, path: JsonPath, loader: _Loader | None = None) -> object:
        try:
            return armexpr.resolve_tree(value, scope)
        except armexpr.ExpressionError as exc:
            (loader or self.loader).add("AIB006", str(exc), path)
            return Unresolved(f"[parameters('{path[-2]}')]", "its value is an invalid expression", reported=True)


# ----------------------------------------------------------------------------------------------- loading
class _Loader:
    def __init__(self, file: str, smap: SourceMap, options: LoadOptions, result: LoadResult) -> None:
        self.file = file
        self.smap = smap
        self.options = options
        self.result = result
        self.is_deployment = False
        self.values: Mapping[str, object] = {}
        self.scope = armexpr.Scope(context=options.context)
        self.secrets: list[str] = []
        self.secret_names: dict[str, str] = {}
        self.secure_parameters: set[str] = set()
        self.unresolved_keys: dict[JsonPath, Unresolved] = {}
        self.bare_expressions_seen = 0
        # the text of the deployment context's open values (LoadOptions.open_parameters)
        self.open_names = {v for v in vars(options.context).values() if isinstance(v, OpenValue)}
        self.links: list[str] = []  # templateLink targets of nested deployments (other files)
        self.visited: set[str] = {os.path.realpath(file)} if file != STDIN_NAME else set()  # linked files read

    def add(
        self,
        code: str,
        message: str,
        path: JsonPath = (),
        *,
        key: bool = False,
        severity: Severity | None = None,
        file: str | None = None,
        smap: SourceMap | None = None,
    ) -> None:
        smap = smap or (self.smap if file is None else None)
        line, column = smap.locate(path, key=key) if smap else (0, 0)
        for secret in self.secrets:
            message = message.replace(secret, "***")
        self.result.diagnostics.append(
            make(
                code,
                message,
                file=file or self.file,
                line=line,
                column=column,
                json_path=format_path(path),
                severity=severity,
            )
        )

    # ------------------------------------------------------------------------------------------- parameters
    def parameters(self, template: dict[str, object]) -> None:
        declared = _declared_parameters(template)
        by_lower = {k.lower(): k for k in declared}
        self.result.names_known.update(declared)
        supplied: dict[str, _Supplied] = {}
        for pfile in self.options.parameter_files:
            for name, entry in self.read_parameter_file(pfile).items():
                target = by_lower.get(name.lower())
                if target is None and self.is_deployment:
                    close = closest(name, declared)
                    hint = f'; did you mean "{close}"?' if close else ""
                    self.add(
                        "AIB007",
                        f'{self.file} declares no parameter "{name}"; ARM rejects the deployment{hint}',
                        entry.path[:2],
                        key=True,
                        file=entry.file,
                        smap=entry.smap,
                    )
                    continue
                supplied[target or name] = entry
        for name, text in self.options.parameters.items():
            target = by_lower.get(name.lower())
            if target is None:
                supplied[name] = _Supplied(text, COMMAND_LINE)  # maybe a <placeholder> name
                continue
            self.result.names_used.add(name.lower())
            spec = declared[target]
            ptype = _ptype(spec)
            if ptype in _JSON_TYPES:
                try:
                    supplied[target] = _Supplied(json.loads(text), COMMAND_LINE)
                except (ValueError, RecursionError):
                    got = "something else" if ptype.startswith("secure") else f'"{text}"'  # a secret: not shown
                    self.add(
                        "AIB007",
                        f"-p {name}: parameter '{target}' is of type {ptype} and needs a JSON value such as "
                        f"{_EXAMPLES.get(ptype, '3')}, got {got}",
                        file=COMMAND_LINE,
                    )
                continue
            supplied[target] = _Supplied(text, COMMAND_LINE)
        values = _ParameterValues(self, declared, supplied)
        self.values = values
        for name, spec in declared.items():
            if _ptype(spec).startswith("secure"):
                value = values[name]
                self.secure_parameters.add(name)
                for where, secret in _named_secret_strings(name, value):
                    self.secrets.append(secret)
                    self.secret_names.setdefault(secret, where)
        for name, spec in declared.items():
            self.check_parameter(name, spec if isinstance(spec, dict) else {}, values[name], supplied.get(name))

    def check_parameter(self, name: str, spec: dict, value: object, origin: _Supplied | None) -> None:
        """ARM's checks of a parameter value: type, allowedValues, minValue/maxValue, minLength/maxLength."""
        if isinstance(value, (Unresolved, OpenValue)) or (value is None and spec.get("nullable") is True):
            return
        secure = _ptype(spec).startswith("secure")
        shown = "the value" if secure else f"{_short(value)}"
        problems = []
        expect = _TYPE_CHECKS.get(_ptype(spec)) if "type" in spec else None  # an unresolved $ref: no type known
        if expect and (not isinstance(value, expect[1]) or (expect[1] is int and isinstance(value, bool))):
            problems.append(f"{shown} is not {expect[0]} (the parameter is of type {spec.get('type')})")
        allowed = spec.get("allowedValues")
        if isinstance(allowed, list) and value not in allowed:
            listed = "" if secure else f": {', '.join(_short(a) for a in allowed)}"
            problems.append(f"{shown} is not one of its allowedValues{listed}")
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = spec.get("minValue"), spec.get("maxValue")
            if isinstance(low, int) and value < low:
                problems.append(f"{shown} is below its minValue {low}")
            if isinstance(high, int) and value > high:
                problems.append(f"{shown} is above its maxValue {high}")
        if isinstance(value, (str, list)):
            low, high = spec.get("minLength"), spec.get("maxLength")
            if isinstance(low, int) and len(value) < low:
                problems.append(f"{shown} is shorter than its minLength {low}")
            if isinstance(high, int) and len(value) > high:
                problems.append(f"{shown} is longer than its maxLength {high}")
        for problem in problems:
            if origin is None:  # the template's own defaultValue
                self.add("AIB007", f"parameter '{name}': {problem}", ("parameters", name, "defaultValue"))
            elif origin.file == COMMAND_LINE:
                self.add("AIB007", f"-p {name}: {problem}", file=COMMAND_LINE)
            else:
                self.add(
                    "AIB007",
                    f"parameter '{name}': {problem}",
                    origin.path,
                    file=origin.file,
                    smap=origin.smap,
                )

    def read_parameter_file(self, pfile: str) -> dict[str, _Supplied]:
        value, smap, diags = read_json(pfile)
        for d in diags:  # a broken parameters file is invalid input, whatever the reason
            severity = d.severity if d.code == "AIB034" else Severity.ERROR
            self.result.diagnostics.append(
                make(
                    d.code if d.code == "AIB034" else "AIB007",
                    d.message,
                    file=d.file,
                    line=d.line,
                    column=d.column,
                    json_path=d.json_path,
                    severity=severity,
                )
            )
        if smap is None:
            return {}
        shown = STDIN_NAME if pfile == STDIN else pfile
        params = value.get("parameters") if isinstance(value, dict) else None
        if not isinstance(params, dict):
            self.add("AIB007", 'an ARM parameters file needs a "parameters" object', file=shown, smap=smap)
            return {}
        out: dict[str, _Supplied] = {}
        for name, entry in params.items():
            path = ("parameters", name)
            if isinstance(entry, dict) and "value" in entry:
                out[name] = _Supplied(entry["value"], shown, smap, (*path, "value"))
            elif isinstance(entry, dict) and "reference" in entry:
                reason = "the value is a Key Vault reference, read by ARM at deployment"
                out[name] = _Supplied(Unresolved(f"[parameters('{name}')]", reason), shown, smap, path)
            else:
                self.add(
                    "AIB007",
                    f'parameter "{name}" needs {{"value": ...}} or {{"reference": ...}}',
                    path,
                    file=shown,
                    smap=smap,
                )
        return out

    # ------------------------------------------------------------------------------------------- documents
    def deployment(self, template: dict[str, object]) -> None:
        self.is_deployment = True
        self.parameters(template)
        variables = template.get("variables")
        self.scope = armexpr.Scope(
            parameters=self.values,
            variables=variables if isinstance(variables, dict) else {},
            context=self.options.context,
            functions=armexpr.template_functions(template),
        )
        found: list[Document] = []
        others: set[str] = set()
        self.collect(template, (), found, others, 0)
        if not found:
            listed = f" (it has {', '.join(sorted(others))})" if others else ""
            linked = ""
            if self.links:
                linked = f"; its nested deployments link to {', '.join(self.links)}: validate the linked files"
            self.result.unrelated = True
            self.add(
                "AIB003", f"the ARM deployment template has no {RESOURCE_TYPE} resource{listed}{linked}", ("resources",)
            )
            return
        self.result.documents += self.select(found)

    def collect(
        self, template: dict[str, object], base: JsonPath, found: list[Document], others: set[str], depth: int
    ) -> None:
        """The image templates among ``template``'s resources, and inside its nested deployments."""
        resources = template.get("resources")
        entries: list[tuple[JsonPath, object, str | None]] = []
        if isinstance(resources, list):
            entries = [((*base, "resources", i), r, None) for i, r in enumerate(resources)]
        elif isinstance(resources, dict):  # languageVersion 2.0: symbolic names
            entries = [((*base, "resources", k), r, k) for k, r in resources.items()]
        for prefix, res, symbolic in entries:
            if not isinstance(res, dict):
                continue
            rtype = res.get("type")
            if armexpr.is_expression(rtype):
                rtype = self.resolve(rtype, (*prefix, "type"))
            if not isinstance(rtype, str):
                continue
            if rtype.lower() == DEPLOYMENTS_TYPE.lower() and depth < MAX_NESTED_DEPLOYMENTS:
                for index in self.copies(res, prefix):  # a module in a loop: one deployment per iteration
                    before = len(found)
                    with self.iteration(res, index):
                        self.nested(res, prefix, found, others, depth)
                        deployed = not self.condition_false(res, prefix)
                    for doc in found[before:]:
                        doc.deployed = doc.deployed and deployed
            elif rtype.lower() != RESOURCE_TYPE.lower():
                others.add(rtype)
            elif res.get("existing") is True:  # languageVersion 2.0: a reference to a template deployed elsewhere
                others.add(f"{rtype} (existing, not deployed here)")
            else:
                for index in self.copies(res, prefix):  # one image template per iteration of a copy loop
                    with self.iteration(res, index):
                        doc = self.document(res, prefix)
                        doc.deployed = not self.condition_false(res, prefix)
                    if symbolic and doc.name is None:
                        doc.name = symbolic if index is None else f"{symbolic}[{index}]"
                    doc.symbolic_name = symbolic
                    found.append(doc)

    @contextlib.contextmanager
    def iteration(self, res: dict[str, object], index: int | None) -> Iterator[None]:
        """Evaluate with copyIndex() at ``index`` of the resource's copy loop (nothing changes for None)."""
        outer = self.scope
        if index is not None:
            loop = res.get("copy")
            name = str(loop.get("name")) if isinstance(loop, dict) else ""
            self.scope = dataclasses.replace(outer, copy_index={name: index, **outer.copy_index})
        try:
            yield
        finally:
            self.scope = outer

    def copies(self, res: dict[str, object], prefix: JsonPath) -> list[int | None]:
        """The iterations of a resource copy loop (``"copy": {"name": N, "count": C}``): [0, 1, ...]; [None] for a
        resource without one, or whose count is unknown (copyIndex() then stays unknown)."""
        loop = res.get("copy")
        if not (isinstance(loop, dict) and isinstance(loop.get("name"), str)):
            return [None]
        count = self.resolve(loop.get("count"), (*prefix, "copy", "count"))
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CHECKED_COPIES:
            return [None]  # beyond MAX_CHECKED_COPIES the resource is checked once, which bounds the time taken
        return list(range(count))

    def condition_false(self, res: dict[str, object], prefix: JsonPath) -> bool:
        """Whether the resource's ``condition`` is false with these parameters (then ARM does not deploy it)."""
        key = next((k for k in res if k.lower() == "condition"), None)
        if key is None:
            return False
        value = self.resolve(res[key], (*prefix, key))
        return value is False or (isinstance(value, str) and value.lower() == "false")

    def nested(
        self, res: dict[str, object], prefix: JsonPath, found: list[Document], others: set[str], depth: int
    ) -> None:
        """A Microsoft.Resources/deployments resource with an inline template (Bicep modules, solution templates).
        Scope "inner": the inner template has its own parameters, given by the outer one's ``parameters``, and its
        own variables. Scope "outer" (the default): its expressions see the outer template's parameters and
        variables."""
        props = res.get("properties")
        inner = props.get("template") if isinstance(props, dict) else None
        if not isinstance(props, dict):
            return
        if not isinstance(inner, dict):
            link = props.get("templateLink")
            if isinstance(link, dict) and not self.linked(link, props, prefix, found, others, depth):
                target = link.get("relativePath") or link.get("uri") or link.get("id")
                self.links.append(_short(target, 100) if not isinstance(target, str) else target[:100])
            return
        options = props.get("expressionEvaluationOptions")
        kind = options.get("scope") if isinstance(options, dict) else None
        outer = self.scope
        if isinstance(kind, str) and kind.lower() == "inner":
            passed = props.get("parameters")
            variables = inner.get("variables")
            values = _NestedParameters(
                self,
                _declared_parameters(inner),
                passed if isinstance(passed, dict) else {},
                outer,
                (*prefix, "properties"),
            )
            self.scope = armexpr.Scope(
                parameters=values,
                variables=variables if isinstance(variables, dict) else {},
                context=self.options.context,
                functions=armexpr.template_functions(inner),
            )
            values.inner = self.scope
        try:
            self.collect(inner, (*prefix, "properties", "template"), found, others, depth + 1)
        finally:
            self.scope = outer

    def linked(
        self,
        link: dict[str, object],
        props: dict[str, object],
        prefix: JsonPath,
        found: list[Document],
        others: set[str],
        depth: int,
    ) -> bool:
        """A nested deployment's templateLink to a file in this template's folder (``relativePath``, or a URI built
        from the deployment's own location and a relative path, as solution templates write it): check the image
        templates in that file, with the parameters the deployment passes. False when the link leads elsewhere."""
        path = _linked_path(self.file, link, self.visited)
        if path is None:
            return False
        value, smap, diags = read_json(path)
        self.result.diagnostics += diags
        if smap is None or not isinstance(value, dict):
            return smap is None  # a broken linked file was reported
        self.visited.add(os.path.realpath(path))
        child = _Loader(path, smap, self.options, self.result)
        child.is_deployment = True
        child.secrets, child.secret_names = self.secrets, self.secret_names
        child.secure_parameters, child.links, child.visited = self.secure_parameters, self.links, self.visited
        passed = props.get("parameters")
        variables = value.get("variables")
        values = _NestedParameters(
            self,
            _declared_parameters(value),
            passed if isinstance(passed, dict) else {},
            self.scope,
            (*prefix, "properties"),
        )
        values.defaults_loader, values.defaults_path = child, ()
        child.scope = armexpr.Scope(
            parameters=values,
            variables=variables if isinstance(variables, dict) else {},
            context=self.options.context,
            functions=armexpr.template_functions(value),
        )
        values.inner = child.scope
        child.collect(value, (), found, others, depth + 1)
        return True

    def bare(self, resource: dict[str, object]) -> None:
        self.parameters({})
        if not isinstance(resource.get("properties"), dict):
            if any(k.lower() in ("source", "customize", "distribute") for k in resource):
                message = (
                    'this looks like the "properties" object alone; aibx checks the whole resource: '
                    '{"type": ..., "location": ..., "identity": ..., "properties": {"source": ...}}'
                )
            else:
                self.result.unrelated = True
                message = (
                    'no image template here: expected a resource with "properties" (holding "source", '
                    '"customize" and "distribute"), or an ARM deployment template with "resources"'
                )
            self.add("AIB003", message)
            return
        doc = self.document(resource, ())
        rtype = doc.resource.get("type")
        if rtype is None:
            self.add("AIB004", f'"type" is missing; AIB expects "{RESOURCE_TYPE}"')
        elif not (isinstance(rtype, str) and rtype.lower() == RESOURCE_TYPE.lower()):
            self.add("AIB004", f'"type" is {_short(rtype)}; AIB expects "{RESOURCE_TYPE}"', ("type",))
        self.result.documents += self.select([doc])

    def select(self, docs: list[Document]) -> list[Document]:
        if not self.options.resource:
            return docs
        want = self.options.resource.lower()
        chosen = [
            d
            for d in docs
            if (isinstance(d.name, str) and d.name.lower() == want)
            or (d.symbolic_name or "").lower() == want
            or format_path(d.prefix).lower() == want
        ]
        if not chosen:
            names = ", ".join(str(d.name or format_path(d.prefix) or "(unnamed)") for d in docs)
            self.add("AIB009", f'no image template named "{self.options.resource}" here (found: {names})')
        return chosen

    def document(self, res: dict[str, object], prefix: JsonPath) -> Document:
        self.unresolved_keys = {}
        resolved = self.resolve(res, prefix)
        assert isinstance(resolved, dict)
        doc = Document(file=self.file, resource=resolved, source_map=self.smap, prefix=prefix)
        doc.in_deployment = self.is_deployment
        name = resolved.get("name")
        doc.name = name if isinstance(name, str) else None
        doc.unresolved = dict(find_unresolved(resolved, ()))
        doc.unresolved.update((path[len(prefix) :], u) for path, u in self.unresolved_keys.items())
        api = self.options.api_version or resolved.get("apiVersion")
        doc.api_version_written = api
        doc.api_version = api if isinstance(api, str) else None
        doc.secrets = list(self.secrets)
        doc.secret_names = dict(self.secret_names)
        doc.secure_parameters = set(self.secure_parameters)
        return doc

    # ------------------------------------------------------------------------------------------- values
    def resolve(self, value: object, path: JsonPath) -> object:
        if isinstance(value, str):
            return self.resolve_string(value, path)
        if isinstance(value, dict):
            out: dict[str, object] = {}
            for k, v in value.items():
                if k.lower() == "copy" and isinstance(v, list) and self.is_deployment:
                    out.update(self.property_copies(v, (*path, k)))  # (a resource's own "copy" is an object)
                    continue
                out[self.resolve_key(k, (*path, k))] = self.resolve(v, (*path, k))
            return out
        if isinstance(value, list):
            return [self.resolve(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def property_copies(self, loops: list[object], path: JsonPath) -> dict[str, object]:
        """ARM property iteration: ``"copy": [{"name": N, "count": C, "input": X}]`` makes the property N, an array
        of C values of X, each evaluated with copyIndex('N')."""
        out: dict[str, object] = {}
        for i, loop in enumerate(loops):
            where = (*path, i)
            if not (isinstance(loop, dict) and isinstance(loop.get("name"), str) and "input" in loop):
                self.add("AIB006", 'a property copy loop needs "name", "count" and "input"', where)
                continue
            name = loop["name"]
            count = self.resolve(loop.get("count"), (*where, "count"))
            if isinstance(count, Unresolved):
                out[name] = Unresolved(count.text, f"the number of {name} is unknown: {count.reason}", count.reported)
                continue
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= armexpr.MAX_COPIES:
                self.add("AIB006", f"the count of {name} must be an integer from 0 to 800", (*where, "count"))
                out[name] = Unresolved(f"[copy {name}]", "its count is invalid", reported=True)
                continue
            outer = self.scope
            values = []
            for n in range(count):
                self.scope = dataclasses.replace(outer, copy_index={**outer.copy_index, name: n})
                try:
                    values.append(self.resolve(loop["input"], (*where, "input")))
                finally:
                    self.scope = outer
            out[name] = values
        return out

    def resolve_string(self, value: str, path: JsonPath) -> object:
        code = _in_code_field(path)
        if not self.is_deployment:
            if armexpr.is_expression(value) and armexpr.is_well_formed(value):
                self.add(
                    "AIB033",
                    f"{_short(value)} is sent to AIB as written: a bare resource is not an ARM deployment, "
                    "so nothing evaluates it. Put the resource in a deployment template, or write the value",
                    path,
                )
            return self.substitute(value, code=code)
        try:
            out = armexpr.evaluate_string(value, self.scope)
        except armexpr.ExpressionError as exc:
            hint = ""
            if not armexpr.is_well_formed(value):
                hint = "; ARM evaluates every string in [brackets]: write [[ to start a literal '['"
            self.add("AIB006", f"{_short(value)}: {exc}{hint}", path)
            return Unresolved(value, f"invalid ARM expression: {exc}", reported=True)
        if isinstance(out, str):
            return self.substitute(out, code=code)
        return out

    def resolve_key(self, key: str, path: JsonPath) -> str:
        new = key
        if self.is_deployment and (armexpr.is_expression(key) or key.startswith("[[")):
            try:
                out = armexpr.evaluate_string(key, self.scope)
            except armexpr.ExpressionError as exc:
                self.add("AIB006", f"{exc} in this property name", path, key=True)
                self.unresolved_keys[path] = Unresolved(key, f"invalid ARM expression: {exc}", reported=True)
                return key
            if isinstance(out, Unresolved):
                self.unresolved_keys[path] = Unresolved(key, out.reason)
                return key
            if not isinstance(out, str):
                self.add("AIB006", f"the property name {_short(key)} evaluates to {_kind(out)}", path, key=True)
                return key
            new = out
        subst = self.substitute(new, code=True)
        new = subst if isinstance(subst, str) else new
        if _PLACEHOLDER.fullmatch(new):
            unresolved_path = (*path[:-1], new)
            self.unresolved_keys[unresolved_path] = Unresolved(
                new, f"placeholder {new} not substituted; pass -p {new[1:-1]}=VALUE"
            )
        return new

    def substitute(self, text: str, *, code: bool) -> object:
        """Replace ``<name>`` tokens by -p values; outside code, a token left over makes the value Unresolved."""
        if "<" not in text:
            return text
        missing: list[str] = []
        opened: list[str] = []  # open parameters (LoadOptions.open_parameters): placeholders in code too
        values = {k.lower(): v for k, v in self.values.items()} if self.values else {}

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if not code:
                self.result.names_known.add(name)
            v = values.get(name.lower())
            if isinstance(v, OpenValue) or (v is None and f"<{name}>" in self.open_names):
                opened.append(name)
            elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
                self.result.names_used.add(name.lower())
                return str(v)
            missing.append(name)
            return m.group()

        out = _PLACEHOLDER.sub(sub, text)
        if opened or (missing and not code):
            names = ", ".join(f"-p {n}=VALUE" for n in dict.fromkeys(missing))
            tokens = ", ".join(f"<{n}>" for n in dict.fromkeys(missing))
            return Unresolved(out, f"placeholder {tokens} not substituted; pass {names}")
        return out


_EXAMPLES = {"int": "3", "bool": "true", "array": '["a","b"]', "object": '{"k":"v"}', "secureobject": '{"k":"v"}'}


_JSON_LITERAL = re.compile(r"'([^'\\]*\.json)(?:\?[^']*)?'", re.IGNORECASE)


def _linked_path(file: str, link: dict[str, object], visited: set[str]) -> str | None:
    """The file a templateLink names in the folder of ``file`` (never outside it), or None."""
    if file == STDIN_NAME:
        return None
    relative = link.get("relativePath")
    uri = link.get("uri")
    if not isinstance(relative, str) and isinstance(uri, str):
        if armexpr.is_expression(uri):  # uri(parameters('_artifactsLocation'), 'nested/aib.json') and the like
            literals = _JSON_LITERAL.findall(uri)
            relative = literals[-1] if literals else None
        elif "://" not in uri:
            relative = uri
    if not isinstance(relative, str) or not relative or armexpr.is_expression(relative):
        return None
    folder = os.path.dirname(os.path.realpath(file))
    target = os.path.realpath(os.path.join(folder, relative))
    if os.path.commonpath([folder, target]) != folder or target in visited or not os.path.isfile(target):
        return None
    return os.path.normpath(os.path.join(os.path.dirname(file), relative))


def _declared_parameters(template: dict[str, object]) -> dict[str, object]:
    """The template's parameters, each with the type definition its ``$ref`` names (languageVersion 2.0 user-defined
    types: ``{"$ref": "#/definitions/lockType"}``) merged in, so its type and ``nullable`` are known."""
    raw = template.get("parameters")
    definitions = template.get("definitions")
    defs = definitions if isinstance(definitions, dict) else {}
    out: dict[str, object] = {}
    for name, spec in raw.items() if isinstance(raw, dict) else []:
        for _ in range(8):  # a definition may itself be a $ref
            ref = spec.get("$ref") if isinstance(spec, dict) else None
            target = (
                defs.get(ref[len("#/definitions/") :])
                if isinstance(ref, str) and ref.startswith("#/definitions/")
                else None
            )
            if not isinstance(spec, dict) or not isinstance(target, dict):
                break
            spec = {**target, **{k: v for k, v in spec.items() if k != "$ref"}}
        out[name] = spec
    return out


def _ptype(spec: object) -> str:
    t = spec.get("type", "string") if isinstance(spec, dict) else "string"
    return t.lower() if isinstance(t, str) else "string"


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, Unresolved) else value.text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _named_secret_strings(where: str, value: object) -> list[tuple[str, str]]:
    """The strings of a secure parameter's value worth hiding (short ones would blank out ordinary words), each
    with where it sits in the parameter: ``name``, ``name.key``, ``name.list[0]``."""
    if isinstance(value, str):
        return [(where, value)] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _named_secret_strings(f"{where}.{k}", v)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _named_secret_strings(f"{where}[{i}]", v)]
    return []


def _in_code_field(path: JsonPath) -> bool:
    return any(isinstance(p, str) and p.lower() in _CODE_FIELDS for p in path)
