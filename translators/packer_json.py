"""Legacy Packer JSON templates → the evaluated Packer configuration (translators/packer_config.py).

Template functions evaluated here, as Packer evaluates them before a build: ``{{user `x`}}``, ``{{env `X`}}``,
``{{timestamp}}``, ``{{template_dir}}`` and ``{{build `Name`}}`` / ``{{.WinRMPassword}}`` (values known only
while Packer builds). Fields a provisioner fills in itself (``{{ .Path }}``, ``{{ .Vars }}`` in
``execute_command``) stay as written. Any other function is an error that names it.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from aibx.document import Unresolved
from aibx.jsonc import JsonPath, SourceMap
from aibx.loader import read_json, undecodable
from aibx.translators.hcl_eval import LIMIT_HINT, MAX_STRING, BuildValue
from aibx.translators.packer_config import Attr, Build, PackerConfig, Section, SourceRef
from aibx.translators.packer_hcl import PackerInputs
from aibx.translators.report import Location

_ARG = r"(?:`([^`]*)`|\"((?:[^\"\\]|\\.)*)\")"
_USER = re.compile(rf"user\s+{_ARG}$")
_USER_ANYWHERE = re.compile(rf"\{{{{\s*user\s+{_ARG}\s*\}}}}")
_ENV = re.compile(rf"env\s+{_ARG}$")
_BUILD = re.compile(rf"build\s+{_ARG}$")
_FIELD = re.compile(r"\.(\w+)$")
_SPLIT = re.compile(rf"split\s+\(([^()]*)\)\s+{_ARG}\s+(\d+)$")
_ISOTIME = re.compile(rf"isotime(?:\s+{_ARG})?$")
_PIPE_ARGS = re.compile(rf"\s*{_ARG}")
# build-time fields Packer fills in from the build itself
_BUILD_FIELDS = {"WinRMPassword": "Password", "WinRMUser": "User", "SSHPassword": "Password", "SSHUser": "User"}
_KNOWN_TOP = {"variables", "sensitive-variables", "builders", "provisioners", "post-processors", "description",
              "min_packer_version", "_comment", "error-cleanup-provisioner"}  # fmt: skip


class TemplateError(Exception):
    pass


def template_actions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, body) of each ``{{ ... }}`` action, ``{{-`` and ``-}}`` trim markers and spaces taken off
    the body. (A lazy regex would do the same in quadratic time: a value of many ``{{`` hangs it.)"""
    out = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            break
        body = text[start + 2 : end]
        body = body[1:] if body.startswith("-") else body
        body = body[:-1] if body.endswith("-") else body
        out.append((start, end + 2, body.strip()))
        pos = end + 2
    return out


class _Reader:
    def __init__(self, path: str, inputs: PackerInputs) -> None:
        self.path = path
        self.inputs = inputs
        self.root = str(Path(path).resolve().parent)
        self.config = PackerConfig(path=path, format="json", root=self.root)
        self.smap: SourceMap | None = None
        self.values: dict[str, Any] = {}
        self.now = inputs.clock()

    def locate(self, path: JsonPath) -> Location:
        if self.smap is None:
            return Location(self.path)
        line, col = self.smap.locate(path)
        return Location(self.path, line, col)

    def error(self, code: str, message: str, path: JsonPath = (), file: str | None = None) -> None:
        from aibx.diagnostics import format_path, make

        loc = self.locate(path) if file is None else Location(file)
        self.config.diagnostics.append(
            make(code, message, file=loc.file, line=loc.line, column=loc.column, json_path=format_path(path))
        )

    # ------------------------------------------------------------------------------------------- templates
    def render(self, text: str, path: JsonPath) -> Any:
        """Evaluate the template functions in ``text``; an unknown value makes the result Unresolved."""
        actions = template_actions(text)
        if not actions:
            return text
        if len(actions) == 1 and actions[0][:2] == (0, len(text)):
            value = self.action(actions[0][2], path)
            return value if value is not None else text
        out: list[str] = []
        reason = None
        pos = 0
        for start, end, body in actions:
            out.append(text[pos:start])
            pos = end
            value = self.action(body, path)
            if value is None:
                out.append(text[start:end])
            elif isinstance(value, Unresolved):
                out.append(value.text)
                reason = reason or value.reason
            elif isinstance(value, BuildValue):
                out.append(f"<{value}>")
                reason = reason or f"{value} is known only while Packer builds"
            else:
                out.append(str(value))
        out.append(text[pos:])
        size = sum(map(len, out))
        if size > MAX_STRING:  # variables that each repeat the one before: bounded as in HCL
            raise TemplateError(
                f"a string of {size:,} characters, more than aibx builds ({MAX_STRING:,}); {LIMIT_HINT}"
            )
        joined = "".join(out)
        return Unresolved(joined, reason) if reason else joined

    def action(self, body: str, path: JsonPath) -> Any:
        """The value of one ``{{ ... }}``, a pipeline ``{{ A | f x | g }}`` too; None for a field the provisioner
        fills in itself."""
        stages = _pipeline(body)
        value = self.single(stages[0], path)
        for stage in stages[1:]:
            if not isinstance(value, str):
                return value if isinstance(value, (Unresolved, BuildValue)) else None
            value = _pipe(stage, value)
        return value

    def single(self, body: str, path: JsonPath) -> Any:
        body = body.strip()
        if m := _SPLIT.match(body):  # {{split (user `x`) "-" 0}}
            inner = self.single(m.group(1), path)
            if not isinstance(inner, str):
                return inner
            sep = m.group(2) if m.group(2) is not None else m.group(3)
            parts = inner.split(sep) if sep else list(inner)
            n = int(m.group(4))
            if n >= len(parts):
                raise TemplateError(f"split: there is no part {n} of {inner!r}")
            return parts[n]
        if m := _ISOTIME.match(body):
            from aibx.translators.hcl_functions import go_time_format

            layout = m.group(1) if m.group(1) is not None else m.group(2)
            return go_time_format(self.now, layout if layout is not None else "2006-01-02T15:04:05Z07:00")
        if m := _USER.match(body):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            if name not in self.values:  # not declared: Packer treats it as a required variable (variables())
                return Unresolved(f"<{name}>", f'variable "{name}" is used but not declared; pass --var {name}=VALUE')
            return self.values[name]
        if m := _ENV.match(body):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            value = self.inputs.env.get(name, "")
            if undecodable(value):
                raise TemplateError(f"{{{{env `{name}`}}}}: the environment variable is not UTF-8 text")
            if value and not self.inputs.env_values:  # a secret unless asked for (--allow-env-values)
                self.config.secrets.add(value)
                self.config.secret_names.setdefault(value, name)
                self.config.environment_sources.add(name)
                self.config.sensitive_locations.setdefault(name, self.locate(path))
            return value
        if body == "timestamp":
            return str(int(self.now.timestamp()))
        if body == "template_dir":
            return self.root
        if body == "pwd":  # the folder packer runs in
            return os.path.abspath(self.inputs.cwd)
        if m := _BUILD.match(body):
            return BuildValue(m.group(1) if m.group(1) is not None else m.group(2))
        if m := _FIELD.match(body):
            field = m.group(1)
            return BuildValue(_BUILD_FIELDS[field]) if field in _BUILD_FIELDS else None
        name = re.split(r"[\s(|]", body, maxsplit=1)[0]
        raise TemplateError(
            f"template function {name!r} in {{{{{body}}}}} is not supported by aibx "
            "(supported: user, env, timestamp, isotime, template_dir, pwd, build, and the pipeline functions "
            f"{', '.join(sorted(_PIPE_FUNCTIONS))})"
        )

    def value(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, str):
            try:
                return self.render(value, path)
            except TemplateError as exc:
                self.error("AIB073", str(exc), path)
                return value
        if isinstance(value, list):
            return [self.value(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.value(v, (*path, k)) for k, v in value.items()}
        return value

    def section(self, kind: str, labels: list[str], obj: dict[str, Any], path: JsonPath, skip: set[str]) -> Section:
        sec = Section(kind, labels, location=self.locate(path))
        for key, raw in obj.items():
            if key in skip:
                continue
            origin = None
            if isinstance(raw, str) and (m := re.fullmatch(r"\{\{\s*user\s+" + _ARG + r"\s*\}\}", raw)):
                origin = "var." + (m.group(1) if m.group(1) is not None else m.group(2))
            sec.attrs[key] = Attr(self.value(raw, (*path, key)), self.locate((*path, key)), origin)
        return sec

    # ------------------------------------------------------------------------------------------- reading
    def read(self) -> PackerConfig:
        doc, smap, diags = read_json(self.path)
        for d in diags:
            self.config.diagnostics.append(d.__class__(d.severity, "AIB072", d.message, d.file, d.line, d.column))
        if smap is None:
            return self.config
        self.smap = smap
        if not isinstance(doc, dict) or not isinstance(doc.get("builders"), list):
            self.error("AIB072", 'a legacy Packer template is a JSON object with "builders"')
            return self.config
        for key in doc:
            if key not in _KNOWN_TOP:
                self.error("AIB072", f'unknown top-level key "{key}" in a Packer template', (key,))
        self.variables(doc)
        if self.config.diagnostics:
            return self.config
        builders = doc["builders"]
        sources: list[SourceRef] = []
        for i, b in enumerate(builders):
            if not isinstance(b, dict) or not isinstance(b.get("type"), str):
                self.error("AIB072", 'each builder needs a "type"', ("builders", i))
                continue
            name: str = b["name"] if isinstance(b.get("name"), str) else b["type"]
            rendered = self.value(name, ("builders", i, "name"))  # Packer renders builder names too
            name = (
                rendered.text if isinstance(rendered, Unresolved) else rendered if isinstance(rendered, str) else name
            )
            sec = self.section("source", [b["type"], name], b, ("builders", i), {"type", "name"})
            sources.append(SourceRef(b["type"], name, sec, self.locate(("builders", i))))
        raw_provisioners = doc.get("provisioners") or []
        if not isinstance(raw_provisioners, list):
            self.error("AIB072", '"provisioners" must be a list', ("provisioners",))
            raw_provisioners = []
        provisioners: list[Section] = []
        for i, p in enumerate(raw_provisioners):
            if not isinstance(p, dict) or not isinstance(p.get("type"), str):
                self.error("AIB072", 'each provisioner needs a "type"', ("provisioners", i))
                continue
            sec = self.section("provisioner", [p["type"]], p, ("provisioners", i), {"type"})
            sec.index = i
            provisioners.append(sec)
        post = self.post_processors(doc.get("post-processors"))
        cleanup = None
        raw_cleanup = doc.get("error-cleanup-provisioner")
        if isinstance(raw_cleanup, dict) and isinstance(raw_cleanup.get("type"), str):
            path = ("error-cleanup-provisioner",)
            cleanup = self.section("provisioner", [raw_cleanup["type"]], raw_cleanup, path, {"type"})
        elif raw_cleanup is not None:
            self.error("AIB072", 'the error-cleanup-provisioner needs a "type"', ("error-cleanup-provisioner",))
        self.config.builds.append(
            Build("", sources, lambda _source: copy.deepcopy(provisioners), post, cleanup, location=self.locate(()))
        )
        return self.config

    def variables(self, doc: dict[str, Any]) -> None:
        declared = doc.get("variables") or {}
        if not isinstance(declared, dict):
            self.error("AIB072", '"variables" must be an object', ("variables",))
            return
        sensitive = doc.get("sensitive-variables") or []
        # a variable used ({{user `X`}}) but not declared is a required one for Packer: -var X=VALUE sets it
        implicit = {n: None for n in _user_variables(doc) if n not in declared}
        declared = {**declared, **implicit}
        for name, raw in declared.items():
            path: JsonPath = ("variables", name)
            if raw is None:
                self.values[name] = Unresolved(f"<{name}>", f'variable "{name}" is required; pass --var {name}=VALUE')
                continue
            self.values[name] = self.value(raw, path)
        for f in self.inputs.var_files:
            value, _smap, diags = read_json(f)
            for d in diags:
                self.config.diagnostics.append(d.__class__(d.severity, "AIB074", d.message, d.file, d.line, d.column))
            if isinstance(value, dict):
                for name, v in value.items():
                    if name not in declared:
                        self.error("AIB074", f'--var-file: the template declares no variable "{name}"', file=f)
                        continue
                    self.values[name] = v
            elif value is not None:
                self.error("AIB074", "a variables file is a JSON object", file=f)
        for item in self.inputs.variables:
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or undecodable(item):
                self.error("AIB074", f"--var expects NAME=VALUE in UTF-8, got {item!r}", file="<command line>")
                continue
            if name.strip() not in declared:
                self.error("AIB074", f'--var {name}: the template declares no variable "{name}"', file="<command line>")
                continue
            self.values[name.strip()] = value
        self.config.variables = {name: self.values[name] for name in declared if name in self.values}
        if not isinstance(sensitive, list) or not all(isinstance(name, str) for name in sensitive):
            self.error("AIB072", '"sensitive-variables" must be a list of variable names', ("sensitive-variables",))
            return
        for name in sensitive:
            self.config.sensitive_names.add(name)
            v = self.values.get(name)
            if isinstance(v, str) and v:
                self.config.secrets.add(v)
                self.config.secret_names.setdefault(v, name)

    def post_processors(self, raw: Any) -> list[Section]:
        out: list[Section] = []
        if not isinstance(raw, (list, type(None))):
            self.error("AIB072", '"post-processors" must be a list', ("post-processors",))
            return out
        for i, item in enumerate(raw or []):
            for j, pp in enumerate(item if isinstance(item, list) else [item]):
                path: JsonPath = ("post-processors", i, j) if isinstance(item, list) else ("post-processors", i)
                if isinstance(pp, str):
                    out.append(Section("post-processor", [pp], location=self.locate(path)))
                elif isinstance(pp, dict) and isinstance(pp.get("type"), str):
                    before = len(self.config.diagnostics)
                    out.append(self.section("post-processor", [pp["type"]], pp, path, {"type"}))
                    del self.config.diagnostics[before:]
        return out


def _pipeline(body: str) -> list[str]:
    """The stages of a template action, split at ``|`` outside quotes."""
    stages, current, quote = [], "", ""
    for ch in body:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in '`"':
            quote = ch
        elif ch == "|":
            stages.append(current)
            current = ""
            continue
        current += ch
    return [*stages, current]


# Packer's template functions that take the piped value as their last argument
_PIPE_FUNCTIONS: dict[str, Any] = {
    "replace_all": lambda old, new, s: s.replace(old, new),
    "replace": lambda old, new, n, s: s.replace(old, new, int(n)),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "clean_resource_name": lambda s: re.sub(r"[^-a-zA-Z0-9_.]", "-", s),
}


def _pipe(stage: str, value: str) -> str:
    name, _, rest = stage.strip().partition(" ")
    fn = _PIPE_FUNCTIONS.get(name)
    args = [m.group(1) if m.group(1) is not None else m.group(2) for m in _PIPE_ARGS.finditer(rest)]
    if fn is None:
        raise TemplateError(f"template function {name!r} in a pipeline is not supported by aibx")
    try:
        return str(fn(*args, value))
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"template function {name!r}: {exc}") from None


def _user_variables(value: Any) -> list[str]:
    """The names ``{{user `X`}}`` refers to anywhere in ``value``, in order."""
    out: list[str] = []
    if isinstance(value, str):
        for m in _USER_ANYWHERE.finditer(value):
            out.append(m.group(1) if m.group(1) is not None else m.group(2))
    elif isinstance(value, dict):
        for k, v in value.items():
            out += _user_variables(k) + _user_variables(v)
    elif isinstance(value, list):
        for v in value:
            out += _user_variables(v)
    return list(dict.fromkeys(out))


def read_config(path: str, inputs: PackerInputs | None = None) -> PackerConfig:
    """Read a legacy Packer JSON template; problems are diagnostics in the result, never exceptions."""
    return _Reader(path, inputs or PackerInputs()).read()


def looks_like_packer_json(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("builders"), list)
