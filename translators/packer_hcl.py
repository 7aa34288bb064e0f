"""Packer HCL2: reading a ``.pkr.hcl`` file or a folder of them (with ``*.auto.pkrvars.hcl``), and writing the
model as a ``.pkr.hcl`` file.

Reading follows Packer: variable values come from defaults, then ``PKR_VAR_NAME`` environment variables, then
``*.auto.pkrvars.hcl`` files (in name order), then ``--var-file`` files, then ``--var`` (later wins); locals are
evaluated on demand; ``dynamic`` blocks are expanded; each build's provisioners are evaluated once per source
(``source.name`` may appear in them). Parsing is python-hcl2's; expressions are evaluated by hcl_eval.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lark import Token, Tree

from aibx import model
from aibx.diagnostics import Severity, make
from aibx.document import Unresolved
from aibx.loader import undecodable
from aibx.translators import hcl_eval
from aibx.translators.hcl_eval import Context, EvalError, evaluate
from aibx.translators.packer_config import Attr, Build, PackerConfig, Section, SourceRef
from aibx.translators.report import Location, Report


@dataclass
class PackerInputs:
    """What a Packer run would get from its command line and environment."""

    variables: Sequence[str] = ()  # --var NAME=VALUE
    var_files: Sequence[str] = ()  # --var-file FILE
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    now: datetime | None = None
    cwd: str = "."
    # write values from the environment (env(), {{env}}, PKR_VAR_NAME) into the translation as they are; by default
    # they are secrets: a parameter or placeholder stands where they would be (--allow-env-values)
    env_values: bool = False

    def clock(self) -> datetime:
        if self.now is not None:
            return self.now
        epoch = self.env.get("SOURCE_DATE_EPOCH")
        if epoch and epoch.isdigit():
            return datetime.fromtimestamp(int(epoch), timezone.utc)
        return datetime.now(timezone.utc)


class EnvironmentReads(Mapping[str, str]):
    """The environment, remembering which variables were read (and their values) since ``take()``."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.read: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        value = self.env[name]
        self.read[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)

    def take(self) -> dict[str, str]:
        read, self.read = self.read, {}
        return read


def parse_file(path: str) -> tuple[Tree | None, str | None, int, int]:
    """(tree, error message, line, column)."""
    import hcl2
    from lark.exceptions import UnexpectedInput

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read: {getattr(exc, 'strerror', None) or exc}", 0, 0
    try:
        return hcl2.parses_to_tree(text), None, 0, 0
    except UnexpectedInput as exc:
        line, col = getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0
        return None, f"HCL syntax error: {_describe_unexpected(exc)}", max(line, 0), max(col, 0)
    except Exception as exc:  # python-hcl2 raises assorted errors for malformed input
        return None, f"HCL syntax error: {exc}", 0, 0


def _describe_unexpected(exc: Exception) -> str:
    token = getattr(exc, "token", None)
    if token is not None:
        text = str(token)
        if not text.strip():
            return "unexpected end of line" if "\n" in text else "unexpected end of file"
        first = text.strip().splitlines()[0]
        return f"unexpected {first[:40]!r}"
    char = getattr(exc, "char", None)
    if char is not None:
        return f"unexpected character {char!r}"
    return "the text is not HCL"


def _children(node: Tree) -> list[Any]:
    return hcl_eval._children(node)


def _body_items(body: Tree) -> list[tuple[Tree, list[str]]]:
    """(attribute or block, the comment lines just above it) for each item of a body.

    The text between two items is split into lines: the first line ends the previous item (an inline comment
    there is the previous item's), the last one indents the next item; in between, a blank line starts over."""
    out: list[tuple[Tree, list[str]]] = []
    text = ""
    for child in body.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "new_line_or_comment":
            text += "".join(str(t) for t in child.children)
            continue
        comments: list[str] = []
        for raw in text.split("\n")[1:-1]:
            stripped = raw.strip()
            if not stripped:
                comments = []
            elif stripped.startswith("#"):
                comments.append(stripped[1:].strip())
            elif stripped.startswith("//"):
                comments.append(stripped[2:].strip())
            elif stripped.startswith("/*"):
                comments.append(stripped.strip("/*").strip())
        out.append((child, comments))
        text = ""
    return out


def _block_parts(block: Tree) -> tuple[str, list[str], Tree]:
    kids = _children(block)
    body = next(k for k in kids if isinstance(k, Tree) and k.data == "body")
    names: list[str] = []
    for k in kids:
        if k is body:
            break
        if isinstance(k, Tree) and k.data == "identifier":
            names.append(str(k.children[0]))
        elif isinstance(k, Tree) and k.data == "string":
            names.append(str(hcl_eval._string(k, Context())))
        elif isinstance(k, Tree) and k.data == "keyword":
            names.append(str(k.children[0]))
    return names[0], names[1:], body


def _attr_parts(attr: Tree) -> tuple[str, Tree]:
    kids = _children(attr)
    name_node = kids[0]
    name = str(name_node.children[0]) if isinstance(name_node, Tree) else str(name_node)
    return name, kids[-1]


def origin(expr: Tree) -> str | None:
    """ "var.NAME" when the expression is just that variable (bare or as "${var.NAME}")."""
    node = expr
    while isinstance(node, Tree) and node.data == "expr_term" and len(_children(node)) == 1:
        node = _children(node)[0]
    if isinstance(node, Tree) and node.data == "string":
        parts = [p for p in node.children if isinstance(p, Tree)]
        if len(parts) == 1 and isinstance(parts[0].children[0], Tree):
            return origin(_children(parts[0].children[0])[0])
        return None
    if isinstance(node, Tree) and node.data == "get_attr_expr_term":
        root = hcl_eval._traversal_root(node)
        if root and root[0] == "var":
            return f"var.{root[1]}"
    return None


class _Reader:
    def __init__(self, path: str, inputs: PackerInputs) -> None:
        self.inputs = inputs
        self.path = path
        p = Path(path)
        self.root = str(p if p.is_dir() else p.parent)
        self.config = PackerConfig(path=path, format="hcl2", root=self.root)
        self.trees: list[tuple[str, Tree]] = []
        self.var_decls: dict[str, tuple[str, Tree, dict[str, Tree]]] = {}  # name -> (file, block, attrs)
        self.values: dict[str, Any] = {}
        self.local_exprs: dict[str, tuple[str, Tree]] = {}
        self.local_values: dict[str, Any] = {}
        self.local_busy: set[str] = set()
        self.sensitive_locals: set[str] = set()
        self.sources: dict[str, tuple[str, Tree, list[str]]] = {}
        self.builds: list[tuple[str, Tree]] = []
        self.source_cache: dict[str, Section] = {}
        self.ctx = Context(
            variables=self.values,
            local=self.local,
            path_root=self.root,
            path_cwd=inputs.cwd,
            env=inputs.env,
            now=inputs.clock(),
            allow_env=False,
        )

    # ------------------------------------------------------------------------------------------- errors
    def error(self, code: str, message: str, file: str, line: int = 0, column: int = 0, path: str = "") -> None:
        self.config.diagnostics.append(make(code, message, file=file, line=line, column=column, json_path=path))

    def eval_error(self, exc: EvalError, file: str, path: str) -> None:
        code = "AIB074" if "no value" in exc.message or "there is no variable" in exc.message else "AIB073"
        self.error(code, exc.message, file, exc.line, exc.column, path)

    # ------------------------------------------------------------------------------------------- files
    def files(self) -> tuple[list[str], list[str]]:
        p = Path(self.path)
        if p.is_dir():
            configs = sorted(str(f) for f in p.glob("*.pkr.hcl") if f.is_file())
            autos = sorted(str(f) for f in p.glob("*.auto.pkrvars.hcl") if f.is_file())
            if not configs:
                self.error("AIB072", "no *.pkr.hcl files in this folder", self.path)
            return configs, autos
        return [self.path], []

    def read(self) -> PackerConfig:
        configs, autos = self.files()
        for f in configs:
            tree, message, line, col = parse_file(f)
            if tree is None:
                self.error("AIB072", message or "cannot parse", f, line, col)
                continue
            self.trees.append((f, tree))
        for f, tree in self.trees:
            self.collect(f, tree)
        if self.config.diagnostics:
            return self.config
        self.assign_variables(autos)
        self.make_builds()
        return self.config

    def collect(self, file: str, tree: Tree) -> None:
        body = _children(tree)[0]
        for item, comments in _body_items(body):
            line, col = hcl_eval.position(item)
            if item.data == "attribute":
                name, _ = _attr_parts(item)
                self.error("AIB072", f'unexpected attribute "{name}" at the top level', file, line, col)
                continue
            kind, labels, block_body = _block_parts(item)
            if kind == "variable" and len(labels) == 1:
                attrs = {n: e for n, e in (_attr_parts(a) for a, _ in _body_items(block_body) if a.data == "attribute")}
                if labels[0] in self.var_decls:
                    self.error("AIB072", f'variable "{labels[0]}" is declared twice', file, line, col)
                self.var_decls[labels[0]] = (file, item, attrs)
            elif kind == "variables":
                for a, _ in _body_items(block_body):
                    if a.data == "attribute":
                        name, expr = _attr_parts(a)
                        self.var_decls[name] = (file, a, {"default": expr})
            elif kind == "locals":
                for a, _ in _body_items(block_body):
                    if a.data == "attribute":
                        name, expr = _attr_parts(a)
                        self.local_exprs[name] = (file, expr)
            elif kind == "local" and len(labels) == 1:
                attrs = {n: e for n, e in (_attr_parts(a) for a, _ in _body_items(block_body) if a.data == "attribute")}
                if "expression" in attrs:
                    self.local_exprs[labels[0]] = (file, attrs["expression"])
                if "sensitive" in attrs:
                    self.sensitive_locals.add(labels[0])
            elif kind == "source" and len(labels) == 2:
                key = f"{labels[0]}.{labels[1]}"
                if key in self.sources:
                    self.error("AIB072", f'source "{labels[0]}" "{labels[1]}" is declared twice', file, line, col)
                self.sources[key] = (file, item, comments)
            elif kind == "build":
                self.builds.append((file, item))
            else:
                self.config.other.append(Section(kind, labels, location=Location(file, line, col), comments=comments))

    # ------------------------------------------------------------------------------------------- variables
    def assign_variables(self, autos: list[str]) -> None:
        env = EnvironmentReads(self.inputs.env)
        # values from the environment, registered as secrets last: a sensitive variable's own name wins
        from_env: list[tuple[Any, str, Location]] = []
        defaults_ctx = Context(path_root=self.root, path_cwd=self.inputs.cwd, env=env, now=self.ctx.now)
        types: dict[str, Tree | None] = {}
        for name, (file, _block, attrs) in self.var_decls.items():
            types[name] = attrs.get("type")
            if "default" in attrs:
                try:
                    self.values[name] = evaluate(attrs["default"], defaults_ctx)
                except EvalError as exc:
                    self.eval_error(exc, file, f"variable.{name}.default")
                    self.values[name] = None
                where = Location(file, *hcl_eval.position(attrs["default"]))
                from_env += [(value, env_name, where) for env_name, value in env.take().items()]
            else:
                self.values[name] = _unset(name)
        for name, (file, block, _attrs) in self.var_decls.items():
            env_value = self.inputs.env.get(f"PKR_VAR_{name}")
            if env_value is not None and undecodable(env_value):
                self.error("AIB074", f"PKR_VAR_{name}: not UTF-8 text", "<environment>")
            elif env_value is not None:
                self.assign(name, env_value, types[name], f"PKR_VAR_{name}", "<environment>")
                from_env.append((self.values[name], f"PKR_VAR_{name}", Location(file, *hcl_eval.position(block))))
        for f in [*autos, *self.inputs.var_files]:
            self.read_var_file(f, types)
        for item in self.inputs.variables:
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or undecodable(item):
                self.error("AIB074", f"--var expects NAME=VALUE in UTF-8, got {item!r}", "<command line>")
                continue
            name = name.strip()
            if name not in self.var_decls:
                self.error("AIB074", f'--var {name}: the configuration declares no variable "{name}"', "<command line>")
                continue
            self.assign(name, value, types[name], f"--var {name}", "<command line>")
        for name, (file, block, attrs) in self.var_decls.items():
            try:
                hcl_eval.check_size(self.values[name], block)
                self.values[name] = hcl_eval.convert(self.values[name], types[name], block)
            except EvalError as exc:
                self.eval_error(exc, file, f"variable.{name}")
            sensitive = attrs.get("sensitive")
            if sensitive is not None:
                try:
                    is_secret = evaluate(sensitive, defaults_ctx) is True
                except EvalError:
                    is_secret = False
                if is_secret:
                    self.config.sensitive_names.add(name)
                    self.config.sensitive_locations[name] = Location(file, *hcl_eval.position(block))
                    self.add_secret(self.values[name], name)
        for value, source, where in from_env:
            self.add_environment_value(value, source, where)
        self.config.variables = {name: self.values[name] for name in self.var_decls}

    def add_environment_value(self, value: Any, source: str, where: Location) -> None:
        """A value that came from the environment is a secret unless the user asked for values (env_values)."""
        if self.inputs.env_values or value in (None, ""):
            return
        self.add_secret(value, source)
        self.config.environment_sources.add(source)
        self.config.sensitive_locations.setdefault(source, where)

    def add_secret(self, value: Any, where: str) -> None:
        if isinstance(value, str) and value:
            self.config.secrets.add(value)
            self.config.secret_names.setdefault(value, where)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.add_secret(v, f"{where}[{i}]")
        elif isinstance(value, dict):
            for k, v in value.items():
                self.add_secret(v, f"{where}.{k}")

    def assign(self, name: str, text: str, type_expr: Tree | None, what: str, file: str) -> None:
        """A value given as text (--var, PKR_VAR_): a string for primitive types, else an HCL expression."""
        if hcl_eval.is_primitive_type(type_expr):
            self.values[name] = text
            return
        import hcl2

        try:
            tree = hcl2.parses_to_tree(f"x = {text}\n")
            expr = _attr_parts(next(tree.find_data("attribute")))[1]
            self.values[name] = evaluate(expr, Context(env=self.inputs.env, now=self.ctx.now, allow_env=False))
        except EvalError as exc:
            self.error("AIB074", f"{what}: {exc.message}", file)
        except Exception as exc:
            self.error("AIB074", f"{what}: not an HCL value ({hcl_eval._first_line(exc)})", file)

    def read_var_file(self, file: str, types: dict[str, Tree | None]) -> None:
        if file.endswith(".json"):
            from aibx.loader import read_json

            value, smap, diags = read_json(file)
            for d in diags:
                self.error("AIB074", d.message, d.file, d.line, d.column)
            if isinstance(value, dict):
                for name, v in value.items():
                    if name in self.var_decls:
                        self.values[name] = v
                    else:
                        line, col = smap.locate((name,), key=True) if smap else (0, 0)
                        self.config.diagnostics.append(
                            make(
                                "AIB074",
                                f'undeclared variable "{name}" (ignored, as Packer does)',
                                file=file,
                                line=line,
                                column=col,
                                severity=Severity.WARNING,
                            )
                        )
            return
        tree, message, line, col = parse_file(file)
        if tree is None:
            self.error("AIB074", message or "cannot parse", file, line, col)
            return
        ctx = Context(env=self.inputs.env, now=self.ctx.now, path_root=self.root, allow_env=False)
        for item, _ in _body_items(_children(tree)[0]):
            line, col = hcl_eval.position(item)
            if item.data != "attribute":
                self.error("AIB074", "a variables file holds only NAME = VALUE lines", file, line, col)
                continue
            name, expr = _attr_parts(item)
            if name not in self.var_decls:
                self.config.diagnostics.append(
                    make(
                        "AIB074",
                        f'undeclared variable "{name}" (ignored, as Packer does)',
                        file=file,
                        line=line,
                        column=col,
                        severity=Severity.WARNING,
                    )
                )
                continue
            try:
                self.values[name] = evaluate(expr, ctx)
            except EvalError as exc:
                self.eval_error(exc, file, name)

    def local(self, name: str, node: Tree | Token | None) -> Any:
        if name in self.local_values:
            return self.local_values[name]
        if name not in self.local_exprs:
            raise EvalError(f'there is no local named "{name}"', node)
        if name in self.local_busy:
            raise EvalError(f"local.{name} refers to itself", node)
        self.local_busy.add(name)
        try:
            _file, expr = self.local_exprs[name]
            value = evaluate(expr, self.ctx)
            hcl_eval.check_size(value, expr)
        finally:
            self.local_busy.discard(name)
        self.local_values[name] = value
        if name in self.sensitive_locals:
            self.config.sensitive_names.add(name)
            self.config.sensitive_locations[name] = Location(_file, *hcl_eval.position(expr))
            self.add_secret(value, name)
        return value

    # ------------------------------------------------------------------------------------------- blocks
    def section(self, file: str, block: Tree, ctx: Context, path: str, comments: list[str] | None = None) -> Section:
        kind, labels, body = _block_parts(block)
        line, col = hcl_eval.position(block)
        sec = Section(kind, labels, location=Location(file, line, col), comments=list(comments or []))
        self.fill(sec, file, body, ctx, path)
        return sec

    def fill(self, sec: Section, file: str, body: Tree, ctx: Context, path: str) -> None:
        for item, comments in _body_items(body):
            line, col = hcl_eval.position(item)
            if item.data == "attribute":
                name, expr = _attr_parts(item)
                try:
                    value = evaluate(expr, ctx)
                    hcl_eval.check_size(value, expr)
                except EvalError as exc:
                    self.eval_error(exc, file, f"{path}.{name}")
                    continue
                sec.attrs[name] = Attr(value, Location(file, line, col), origin(expr))
                continue
            kind, labels, inner = _block_parts(item)
            if kind == "dynamic" and labels:
                self.dynamic(sec, file, item, labels[0], inner, ctx, path)
                continue
            sub = Section(kind, labels, location=Location(file, line, col), comments=comments)
            self.fill(sub, file, inner, ctx, f"{path}.{kind}")
            sec.blocks.append(sub)

    def dynamic(self, sec: Section, file: str, item: Tree, label: str, body: Tree, ctx: Context, path: str) -> None:
        attrs = {n: e for n, e in (_attr_parts(a) for a, _ in _body_items(body) if a.data == "attribute")}
        content = next((b for b, _ in _body_items(body) if b.data == "block" and _block_parts(b)[0] == "content"), None)
        line, col = hcl_eval.position(item)
        if "for_each" not in attrs or content is None:
            self.error("AIB073", f'dynamic "{label}" needs for_each and a content block', file, line, col, path)
            return
        iterator = label
        try:
            if "iterator" in attrs:
                it = _children(attrs["iterator"])
                iterator = str(it[0].children[0]) if it and isinstance(it[0], Tree) else label
            collection = evaluate(attrs["for_each"], ctx)
        except EvalError as exc:
            self.eval_error(exc, file, f"{path}.dynamic.{label}.for_each")
            return
        if isinstance(collection, Unresolved) or not isinstance(collection, (list, dict)):
            self.error("AIB073", f'dynamic "{label}": for_each needs a list or map', file, line, col, path)
            return
        pairs = collection.items() if isinstance(collection, dict) else enumerate(collection)
        for key, value in pairs:
            inner = ctx.child(**{iterator: {"key": key, "value": value}})
            sub = Section(label, location=Location(file, line, col))
            self.fill(sub, file, _block_parts(content)[2], inner, f"{path}.{label}")
            sec.blocks.append(sub)

    def make_builds(self) -> None:
        for file, block in self.builds:
            self.make_build(file, block)
        if not self.builds:
            self.error("AIB072", "no build block: nothing to translate", self.path)

    def source_section(self, key: str) -> Section | None:
        if key not in self.source_cache:
            file, block, comments = self.sources[key]
            self.source_cache[key] = self.section(file, block, self.ctx, f"source.{key}", comments)
        return self.source_cache[key]

    def make_build(self, file: str, block: Tree) -> None:
        _, _labels, body = _block_parts(block)
        line, col = hcl_eval.position(block)
        name = ""
        refs: list[SourceRef] = []
        provisioner_nodes: list[tuple[Tree, list[str]]] = []
        post: list[Section] = []
        other: list[Section] = []
        cleanup: Section | None = None
        for item, comments in _body_items(body):
            iline, icol = hcl_eval.position(item)
            where = Location(file, iline, icol)
            if item.data == "attribute":
                attr, expr = _attr_parts(item)
                try:
                    value = evaluate(expr, self.ctx)
                except EvalError as exc:
                    self.eval_error(exc, file, f"build.{attr}")
                    continue
                if attr == "name":
                    name = str(value)
                elif attr == "sources":
                    for ref in value if isinstance(value, list) else [value]:
                        src = self.resolve_source(str(ref), None, file, where)
                        if src is not None:
                            refs.append(src)
                else:
                    other.append(Section(attr, attrs={attr: Attr(value, where)}, location=where))
                continue
            kind, labels, inner = _block_parts(item)
            if kind == "source" and labels:
                src = self.resolve_source(labels[0], (inner, comments), file, where)
                if src is not None:
                    refs.append(src)
            elif kind == "provisioner":
                provisioner_nodes.append((item, comments))
            elif kind == "post-processor":
                post.append(self.tolerant_section(file, item, f"build.post-processor.{labels[0] if labels else ''}"))
            elif kind == "post-processors":
                for sub, _c in _body_items(inner):
                    if sub.data == "block":
                        post.append(self.tolerant_section(file, sub, "build.post-processors"))
            elif kind == "error-cleanup-provisioner":
                cleanup = self.tolerant_section(file, item, "build.error-cleanup-provisioner")
            else:
                other.append(Section(kind, labels, location=where, comments=comments))

        # evaluated now, once per source (source.name may appear), so that errors surface while reading
        evaluated: dict[str, list[Section]] = {}
        for ref in refs:
            ctx = self.ctx.child()
            ctx.source = {"name": ref.name, "type": ref.type}
            evaluated[ref.full_name] = []
            for i, (node, comments) in enumerate(provisioner_nodes):
                sec = self.section(file, node, ctx, f"build.provisioner[{i}]", comments)
                sec.index = i
                evaluated[ref.full_name].append(sec)

        def provisioners(source: SourceRef) -> list[Section]:
            return copy.deepcopy(evaluated[source.full_name])

        self.config.builds.append(Build(name, refs, provisioners, post, cleanup, Location(file, line, col), other))

    def tolerant_section(self, file: str, block: Tree, path: str) -> Section:
        """A block that will be reported, not translated: evaluation errors in it do not stop the translation."""
        before = len(self.config.diagnostics)
        sec = self.section(file, block, self.ctx, path)
        del self.config.diagnostics[before:]
        return sec

    def resolve_source(
        self, ref: str, override: tuple[Tree, list[str]] | None, file: str, where: Location
    ) -> SourceRef | None:
        key = ref[len("source.") :] if ref.startswith("source.") else ref
        parts = ref.split(".")
        if key not in self.sources and len(parts) == 3:
            key = ".".join(parts[1:])  # Packer ignores the first segment: "sources.azure-arm.x" is source.azure-arm.x
        if key not in self.sources:
            known = ", ".join(f"source.{k}" for k in self.sources) or "none"
            self.error("AIB072", f"{ref}: no such source (declared: {known})", file, where.line, where.column)
            return None
        base = self.source_section(key)
        assert base is not None
        section = Section(
            base.type, list(base.labels), dict(base.attrs), list(base.blocks), base.location, base.comments
        )
        name = base.labels[1]
        if override is not None:
            inner, _comments = override
            extra = Section("source")
            self.fill(extra, file, inner, self.ctx, f"build.source.{key}")
            if "name" in extra.attrs:
                name = str(extra.attrs.pop("name").value)
            section.attrs.update(extra.attrs)
            section.blocks += extra.blocks
        return SourceRef(base.labels[0], name, section, where)


def _unset(name: str) -> Unresolved:
    return Unresolved(f"<{name}>", f'variable "{name}" has no value; pass --var {name}=VALUE')


def read_config(path: str, inputs: PackerInputs | None = None) -> PackerConfig:
    """Read a Packer HCL2 file or folder; problems are diagnostics in the result, never exceptions."""
    reader = _Reader(path, inputs or PackerInputs())
    try:
        return reader.read()
    except RecursionError:  # a walk over the parse tree of input nested past Python's stack (hcl_eval.MAX_DEPTH)
        config = PackerConfig(path=path, format="hcl2", root=reader.root)
        config.diagnostics.append(
            make("AIB072", f"the configuration is nested too deeply to read; {hcl_eval.LIMIT_HINT}", file=path)
        )
        return config


# ----------------------------------------------------------------------------------------------- writing
def write(tpl: model.ImageTemplate, report: Report, output_dir: Path | None = None) -> str:
    """The template as a Packer HCL2 file, ``packer fmt``-clean."""
    from aibx.translators.hcl_writer import dumps
    from aibx.translators.to_packer import ToPacker

    return dumps(ToPacker(tpl, report, output_dir).blocks())
