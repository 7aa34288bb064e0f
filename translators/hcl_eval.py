"""Evaluating the HCL2 expressions Packer configurations use, over python-hcl2's parse tree.

Supported: literals, tuples and objects, string templates and heredocs, ``var.*``, ``local.*``, ``path.root``,
``path.cwd``, ``source.name``/``source.type``, ``build.*`` (a ``BuildValue``: known only while Packer builds),
iterator names of ``for`` expressions and ``dynamic`` blocks, indexing, attribute access, splats, arithmetic,
comparison, logic, conditionals, ``for`` expressions, and the functions in ``FUNCTIONS``. Anything else is an
``EvalError`` that names it, with the line and column.

A variable without a value evaluates to ``Unresolved("<name>")``: a string template holding one becomes an
``Unresolved`` with the placeholder in its text; a function or operator given one is an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from lark import Token, Tree

from aibx.document import Unresolved
from aibx.loader import undecodable


class EvalError(Exception):
    def __init__(self, message: str, node: Tree | Token | None = None, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line, self.column = line, column
        if node is not None and not line:
            self.line, self.column = position(node)


def position(node: Tree | Token | None) -> tuple[int, int]:
    if isinstance(node, Token):
        return node.line or 0, node.column or 0
    if isinstance(node, Tree):
        meta = node.meta
        if not getattr(meta, "empty", True):
            return meta.line, meta.column
        for child in node.children:
            if isinstance(child, (Tree, Token)):
                line, col = position(child)
                if line:
                    return line, col
    return 0, 0


@dataclass(frozen=True)
class BuildValue:
    """``build.NAME``: a value Packer knows only while it builds (``build.Password``, ``build.User``, ...)."""

    name: str

    def __str__(self) -> str:
        return f"build.{self.name}"


# Bounds on what one configuration may make aibx compute (issue 11: forty locals that each double the last, or
# hundreds of nested brackets, ate all memory or ended in RecursionError). Past one, evaluation stops with an
# EvalError naming the file and line; docs/security.md and docs/reliability.md list them.
MAX_DEPTH = 256  # evaluations nested inside each other: each bracket, call, template and local reference counts
MAX_STRING = 16 * 1024 * 1024  # characters of one string (AIB and ARM refuse a request over 4 MB anyway)
MAX_VALUE_ITEMS = 100_000  # list items and object members in one value, counted through every level
MAX_VALUE_CHARS = 64 * 1024 * 1024  # characters of all strings in one value, counted each time they appear
MAX_BUILT = 256 * 1024 * 1024  # characters of strings and items of lists built while reading one configuration
MAX_STEPS = 2_000_000  # expressions evaluated while reading one configuration
LIMIT_HINT = "simplify the configuration; aibx stops there to keep its time and memory bounded"


@dataclass
class Limits:
    """What evaluation has used so far; one object shared by a context and all its children."""

    depth: int = 0
    steps: int = 0
    built: int = 0

    def build(self, size: int, node: Tree | Token | None = None) -> None:
        """Count a string of ``size`` characters about to be built."""
        if size > MAX_STRING:
            raise EvalError(
                f"a string of {size:,} characters, more than aibx builds ({MAX_STRING:,}); {LIMIT_HINT}", node
            )
        self.built += size
        if self.built > MAX_BUILT:
            raise EvalError(
                f"more than {MAX_BUILT:,} characters of strings built in all; {LIMIT_HINT}",
                node,
            )


def check_size(value: Any, node: Tree | Token | None = None) -> None:
    """EvalError if ``value`` nests deeper than MAX_DEPTH or is bigger than MAX_VALUE_ITEMS items or
    MAX_VALUE_CHARS characters, counting a shared part each time it appears (as anything writing the value would).
    Iterative, and stops at the first limit passed: its cost is bounded whatever the value."""
    items = chars = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            chars += len(v)
        elif isinstance(v, (list, dict)):
            if depth >= MAX_DEPTH:
                raise EvalError(f"a value nested more than {MAX_DEPTH} levels deep; {LIMIT_HINT}", node)
            items += len(v)
            if items > MAX_VALUE_ITEMS:
                raise EvalError(f"a value of more than {MAX_VALUE_ITEMS:,} items; {LIMIT_HINT}", node)
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
        if chars > MAX_VALUE_CHARS:
            raise EvalError(f"a value of more than {MAX_VALUE_CHARS:,} characters; {LIMIT_HINT}", node)


@dataclass
class Context:
    variables: Mapping[str, Any] = field(default_factory=dict)
    local: Callable[[str, Tree | Token | None], Any] | None = None
    path_root: str = "."
    path_cwd: str = "."
    source: Mapping[str, str] | None = None  # {"name": ..., "type": ...} inside a build
    env: Mapping[str, str] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    names: dict[str, Any] = field(default_factory=dict)  # iterators of for expressions / dynamic blocks
    allow_env: bool = True
    limits: Limits = field(default_factory=Limits)

    def child(self, **names: Any) -> Context:
        ctx = Context(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        ctx.names = {**self.names, **names}
        return ctx


def is_known(value: Any) -> bool:
    return not isinstance(value, (Unresolved, BuildValue))


def _children(node: Tree) -> list[Any]:  # Tree or Token by position in the grammar
    """Meaningful children: no punctuation tokens, no newlines or comments."""
    return [
        c
        for c in node.children
        if (isinstance(c, Tree) and c.data != "new_line_or_comment")
        or (isinstance(c, Token) and c.type in _VALUE_TOKENS)
    ]


_VALUE_TOKENS = {"NAME", "INT_LITERAL", "FLOAT_LITERAL", "STRING_CHARS", "ESCAPED_INTERPOLATION", "ELLIPSIS"}


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate(node: Tree | Token, ctx: Context) -> Any:
    if isinstance(node, Token):
        raise EvalError(f"unexpected {node.type}", node)
    handler = _HANDLERS.get(node.data)
    if handler is None:
        raise EvalError(f"{node.data.replace('_', ' ')} is not supported", node)
    limits = ctx.limits
    limits.steps += 1
    if limits.steps > MAX_STEPS:
        raise EvalError(f"more than {MAX_STEPS:,} expressions evaluated; {LIMIT_HINT}", node)
    if limits.depth >= MAX_DEPTH:
        raise EvalError(f"expressions nested more than {MAX_DEPTH} levels deep; {LIMIT_HINT}", node)
    limits.depth += 1
    try:
        return handler(node, ctx)
    finally:
        limits.depth -= 1


def _expr_term(node: Tree, ctx: Context) -> Any:
    kids = _children(node)
    if len(kids) != 1:
        raise EvalError("malformed expression", node)
    return evaluate(kids[0], ctx)


def _identifier(node: Tree, ctx: Context) -> Any:
    name = str(node.children[0])
    if name in ctx.names:
        return ctx.names[name]
    if name in _ROOTS:
        raise EvalError(f"{name} must be followed by an attribute, as in {name}.NAME", node)
    raise EvalError(f'unknown name "{name}"', node)


_ROOTS = {"var", "local", "path", "source", "build", "data", "packer", "each", "self", "count"}


def _literal(node: Tree, ctx: Context) -> Any:
    text = str(node.children[0])
    return {"true": True, "false": False, "null": None}[text]


def _int(node: Tree, ctx: Context) -> Any:
    text = str(node.children[0])
    try:
        return int(text)
    except ValueError:  # Python converts at most 4300 digits
        raise EvalError(f"the number {text[:20]}… has {len(text)} digits, more than aibx reads", node) from None


def _float(node: Tree, ctx: Context) -> Any:
    value = float(str(node.children[0]))
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _tuple(node: Tree, ctx: Context) -> Any:
    return [evaluate(c, ctx) for c in _children(node)]


def _object(node: Tree, ctx: Context) -> Any:
    out: dict[str, Any] = {}
    for elem in _children(node):
        key_node, value_node = _children(elem)
        out[object_key(key_node, ctx)] = evaluate(value_node, ctx)
    return out


def object_key(key_node: Tree, ctx: Context) -> str:
    """An object key: a bare name is the name itself (not a variable), anything else is evaluated."""
    inner = _children(key_node)[0]
    if isinstance(inner, Tree) and inner.data == "expr_term":
        sub = _children(inner)
        if len(sub) == 1 and isinstance(sub[0], Tree) and sub[0].data == "identifier":
            return str(sub[0].children[0])
    if isinstance(inner, Tree) and inner.data == "keyword":
        return str(inner.children[0])
    value = evaluate(inner, ctx)
    if not is_known(value):
        raise EvalError(f"an object key needs a known value: {describe_unknown(value)}", key_node)
    return to_string(value, key_node)


def _string(node: Tree, ctx: Context) -> Any:
    parts: list[Any] = []
    for part in node.children:
        if isinstance(part, Token):
            continue  # the quotes
        for child in part.children:
            if isinstance(child, Token):
                if child.type == "STRING_CHARS":
                    parts.append(unescape(str(child)))
                elif child.type == "ESCAPED_INTERPOLATION" or child.type == "ESCAPED_DIRECTIVE":
                    parts.append(str(child)[1:])
                else:
                    raise EvalError(f"unexpected {child.type} in a string", child)
            elif child.data == "interpolation":
                parts.append(_Interp(evaluate(_children(child)[0], ctx), child))
            else:
                raise EvalError("template directives (%{ ... }) are not supported", child)
    return join_template(parts, ctx.limits)


@dataclass
class _Interp:
    value: Any
    node: Tree | Token | None


def join_template(parts: list[Any], limits: Limits | None = None) -> Any:
    """Join literal text and interpolated values; a template that is one interpolation keeps the value's type."""
    if len(parts) == 1 and isinstance(parts[0], _Interp):
        return parts[0].value
    unknown = [p.value for p in parts if isinstance(p, _Interp) and not is_known(p.value)]
    text = []
    for p in parts:
        if isinstance(p, _Interp):
            v = p.value
            if isinstance(v, Unresolved):
                text.append(v.text)
            elif isinstance(v, BuildValue):
                text.append(f"<{v}>")
            else:
                text.append(to_string(v, p.node))
        else:
            text.append(p)
    if limits is not None:
        limits.build(sum(map(len, text)), next((p.node for p in parts if isinstance(p, _Interp)), None))
    joined = "".join(text)
    if unknown:
        return Unresolved(joined, describe_unknown(unknown[0]))
    return joined


def describe_unknown(value: Any) -> str:
    if isinstance(value, Unresolved):
        return value.reason
    if isinstance(value, BuildValue):
        return f"{value} is known only while Packer builds"
    return "unknown value"


def unescape(text: str) -> str:
    from hcl2.utils import process_escape_sequences

    return process_escape_sequences(text)


def _heredoc(node: Tree, ctx: Context) -> Any:
    token = cast(Token, node.children[0])
    raw = str(token)
    first_nl = raw.index("\n")
    marker = raw[2:first_nl].lstrip("-").strip()
    body = raw[first_nl + 1 :].rstrip("\n")
    lines = body.split("\n")
    if lines and lines[-1].strip() == marker:
        lines = lines[:-1]
    if node.data == "heredoc_template_trim":
        indents = [len(x) - len(x.lstrip(" \t")) for x in lines if x.strip()]
        cut = min(indents, default=0)
        lines = [x[cut:] for x in lines]
    text = "\n".join(lines) + ("\n" if lines else "")
    line = (token.line or 0) + 1
    return evaluate_template(text, ctx, line)


def evaluate_template(text: str, ctx: Context, line: int = 0) -> Any:
    """A template given as text (a heredoc body): literal parts and ``${...}`` interpolations."""
    import hcl2

    parts: list[Any] = []
    for kind, piece in split_template(text):
        if kind == "text":
            parts.append(piece)
        elif kind == "directive":
            raise EvalError("template directives (%{ ... }) are not supported", line=line)
        else:
            try:
                tree = hcl2.parses_to_tree(f"x = {piece}\n")
            except Exception as exc:
                raise EvalError(f"cannot parse ${{{piece}}}: {_first_line(exc)}", line=line) from None
            attribute = next(tree.find_data("attribute"))
            parts.append(_Interp(evaluate(attribute.children[-1], ctx), None))
    return join_template(parts, ctx.limits)


def split_template(text: str) -> list[tuple[str, str]]:
    """("text", literal) and ("expr", source) pieces of a template; ``$${`` and ``%%{`` are literal."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i) or text.startswith("%%{", i):
            buf.append(text[i + 1 : i + 3])
            i += 3
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            end = _matching_brace(text, i + 2)
            if end < 0:
                raise EvalError(f"unclosed {text[i : i + 2]} in a template")
            if buf:
                out.append(("text", "".join(buf)))
                buf = []
            out.append(("expr" if text[i] == "$" else "directive", text[i + 2 : end]))
            i = end + 1
            continue
        buf.append(text[i])
        i += 1
    if buf:
        out.append(("text", "".join(buf)))
    return out


def _matching_brace(text: str, start: int) -> int:
    depth, i, quote = 1, start, False
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _traversal_root(node: Tree) -> tuple[str, str] | None:
    """``var.x`` style references: (root, attribute) when node is get_attr on a root name."""
    kids = _children(node)
    base, attr = kids[0], kids[1]
    base_kids = _children(base) if isinstance(base, Tree) and base.data == "expr_term" else []
    if len(base_kids) == 1 and isinstance(base_kids[0], Tree) and base_kids[0].data == "identifier":
        root = str(base_kids[0].children[0])
        if root in _ROOTS and isinstance(attr, Tree) and attr.data == "get_attr":
            name_node = _children(attr)[0]
            return root, str(name_node.children[0]) if isinstance(name_node, Tree) else str(name_node)
    return None


def _get_attr_expr(node: Tree, ctx: Context) -> Any:
    root = _traversal_root(node)
    if root is not None:
        name, attr = root
        if name in ctx.names:  # an iterator named like a root (e.g. dynamic "source")
            return get_attr(ctx.names[name], attr, node)
        return _root_reference(name, attr, node, ctx)
    base, attr_node = _children(node)
    value = evaluate(base, ctx)
    name_node = _children(attr_node)[0]
    return get_attr(value, str(name_node.children[0]), node)


def _root_reference(root: str, attr: str, node: Tree, ctx: Context) -> Any:
    if root == "var":
        if attr not in ctx.variables:
            raise EvalError(f'there is no variable named "{attr}"', node)
        return ctx.variables[attr]
    if root == "local":
        if ctx.local is None:
            raise EvalError(f"local.{attr} cannot be used here", node)
        return ctx.local(attr, node)
    if root == "path":
        if attr == "root":
            return ctx.path_root
        if attr == "cwd":
            return ctx.path_cwd
        raise EvalError(f"unknown path.{attr} (path.root and path.cwd exist)", node)
    if root == "source":
        if ctx.source is None or attr not in ctx.source:
            raise EvalError(f"source.{attr} is only known inside a build (source.name, source.type)", node)
        return ctx.source[attr]
    if root == "build":
        return BuildValue(attr)
    if root == "data":  # a data source (HCP Packer's image, ...) is read when Packer builds: an open value
        return Unresolved(
            f"<{attr}>",
            f"data source {attr} is read when Packer builds (from HCP Packer, a cloud API); pass its value with -p",
        )
    raise EvalError(f"{root}.{attr} is not supported", node)


def _open_part(value: Unresolved, part: object) -> Unresolved | None:
    """A part of a variable without a value (``var.gallery.resourceGroup``, ``var.regions[0]``): an open value of
    its own, ``<gallery.resourceGroup>``, when the variable is one placeholder."""
    m = _OPEN.fullmatch(value.text)
    if m is None or not re.fullmatch(r"[A-Za-z0-9_\-]+", str(part)):
        return None
    return Unresolved(f"<{m.group(1)}.{part}>", value.reason)


_OPEN = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)>")


def get_attr(value: Any, name: str, node: Tree | Token | None) -> Any:
    if isinstance(value, Unresolved):  # a part of an open value is open
        return _open_part(value, name) or value
    if not is_known(value):
        raise EvalError(f"cannot read .{name}: {describe_unknown(value)}", node)
    if isinstance(value, dict):
        if name not in value:
            raise EvalError(f'no attribute "{name}" (has: {", ".join(sorted(value)) or "none"})', node)
        return value[name]
    raise EvalError(f"cannot read .{name} of {type_name(value)}", node)


def index(value: Any, key: Any, node: Tree | Token | None) -> Any:
    if isinstance(value, Unresolved):  # a part of an open value is open
        return (_open_part(value, key) if is_known(key) else None) or value
    if is_known(value) and isinstance(key, Unresolved):  # a known map at a key nobody gave: open
        return Unresolved(key.text, f"indexed by an open value: {key.reason}")
    if not is_known(value) or not is_known(key):
        raise EvalError(f"cannot index: {describe_unknown(value if not is_known(value) else key)}", node)
    if isinstance(value, list):
        if isinstance(key, str) and re.fullmatch(r"-?\d+", key):
            key = int(key)
        if not isinstance(key, int) or isinstance(key, bool):
            raise EvalError(f"a list index must be a whole number, not {type_name(key)}", node)
        if not 0 <= key < len(value):
            raise EvalError(f"index {key} is out of range (the list has {len(value)} elements)", node)
        return value[key]
    if isinstance(value, dict):
        k = to_string(key, node)
        if k not in value:
            raise EvalError(f'no key "{k}" (has: {", ".join(sorted(value)) or "none"})', node)
        return value[k]
    raise EvalError(f"cannot index {type_name(value)}", node)


def _index_expr(node: Tree, ctx: Context) -> Any:
    base, idx = _children(node)
    value = evaluate(base, ctx)
    if idx.data == "short_index":
        key: Any = int(str(next(t for t in idx.children if isinstance(t, Token) and t.type == "INT_LITERAL")))
    else:
        key = evaluate(_children(idx)[0], ctx)
    return index(value, key, node)


def _splat(node: Tree, ctx: Context) -> Any:
    base, splat = _children(node)
    value = evaluate(base, ctx)
    if not is_known(value):
        raise EvalError(f"cannot splat: {describe_unknown(value)}", node)
    items = value if isinstance(value, list) else ([] if value is None else [value])
    out = []
    for item in items:
        for op in _children(splat):
            if op.data == "get_attr":
                item = get_attr(item, str(_children(op)[0].children[0]), node)
            elif op.data == "short_index":
                item = index(item, int(str(op.children[-1])), node)
            else:
                item = index(item, evaluate(_children(op)[0], ctx), node)
        out.append(item)
    return out


def _unary(node: Tree, ctx: Context) -> Any:
    op = str(node.children[0])
    value = evaluate(node.children[1], ctx)
    if isinstance(value, Unresolved):
        return _depends(value)
    if op == "-":
        return -number(value, node)
    return not boolean(value, node)


def _binary(node: Tree, ctx: Context) -> Any:
    left_node, term = _children(node)[:2]
    op_node, right_node = _children(term)
    op = str(op_node.children[0])
    left = evaluate(left_node, ctx)
    if isinstance(left, Unresolved):
        return _depends(left)
    if op == "&&":
        return boolean(left, node) and boolean(evaluate(right_node, ctx), node)
    if op == "||":
        return boolean(left, node) or boolean(evaluate(right_node, ctx), node)
    right = evaluate(right_node, ctx)
    if isinstance(right, Unresolved):
        return _depends(right)
    if op in ("==", "!="):
        for v in (left, right):
            if not is_known(v):
                raise EvalError(f"cannot compare: {describe_unknown(v)}", node)
        return (left == right) == (op == "==")
    a, b = number(left, node), number(right, node)
    try:
        return _arithmetic(op, a, b, node)
    except (ArithmeticError, ValueError) as exc:  # a float overflow, a result of more than 4300 digits
        raise EvalError(f"{op}: {exc}", node) from None


def _arithmetic(op: str, a: int | float, b: int | float, node: Tree) -> Any:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise EvalError("division by zero", node)
        result = a / b
        return int(result) if float(result).is_integer() else result
    if op == "%":
        if b == 0:
            raise EvalError("division by zero", node)
        return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else int(math.fmod(a, b))
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _conditional(node: Tree, ctx: Context) -> Any:
    cond, yes, no = _children(node)
    test = evaluate(cond, ctx)
    if isinstance(test, Unresolved):  # which branch is open too
        return _depends(test)
    return evaluate(yes if boolean(test, node) else no, ctx)


def _depends(value: Unresolved) -> Unresolved:
    """What is computed from an open value (a variable without a value) is open."""
    reason = value.reason if value.reason.startswith("depends on") else f"depends on an open value: {value.reason}"
    return Unresolved(value.text, reason)


def _for_intro(node: Tree, ctx: Context) -> tuple[list[str], Any]:
    kids = _children(node)
    names = [str(k.children[0]) for k in kids if isinstance(k, Tree) and k.data == "identifier"]
    collection = evaluate(kids[-1], ctx)
    if isinstance(collection, Unresolved):
        return names, collection  # a variable without a value: the whole for expression is open
    if not is_known(collection):
        raise EvalError(f"cannot iterate: {describe_unknown(collection)}", node)
    return names, collection


def _pairs(collection: Any, node: Tree) -> list[tuple[Any, Any]]:
    if isinstance(collection, dict):
        return list(collection.items())
    if isinstance(collection, list):
        return list(enumerate(collection))
    raise EvalError(f"cannot iterate over {type_name(collection)}", node)


def _bind(names: list[str], key: Any, value: Any, ctx: Context) -> Context:
    if len(names) == 1:
        return ctx.child(**{names[0]: value})
    return ctx.child(**{names[0]: key, names[1]: value})


def _for_tuple(node: Tree, ctx: Context) -> Any:
    kids = [k for k in _children(node) if isinstance(k, Tree)]
    intro, body = kids[0], kids[1]
    cond = kids[2] if len(kids) > 2 and kids[2].data == "for_cond" else None
    names, collection = _for_intro(intro, ctx)
    if isinstance(collection, Unresolved):
        return collection
    out = []
    for key, value in _pairs(collection, node):
        inner = _bind(names, key, value, ctx)
        if cond is not None and not boolean(evaluate(_children(cond)[0], inner), cond):
            continue
        out.append(evaluate(body, inner))
    return out


def _for_object(node: Tree, ctx: Context) -> Any:
    kids = [k for k in _children(node) if isinstance(k, Tree)]
    intro, key_expr, value_expr = kids[0], kids[1], kids[2]
    cond = kids[3] if len(kids) > 3 and kids[3].data == "for_cond" else None
    grouping = any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in node.children)
    names, collection = _for_intro(intro, ctx)
    if isinstance(collection, Unresolved):
        return collection
    out: dict[str, Any] = {}
    for key, value in _pairs(collection, node):
        inner = _bind(names, key, value, ctx)
        if cond is not None and not boolean(evaluate(_children(cond)[0], inner), cond):
            continue
        k = to_string(evaluate(key_expr, inner), key_expr)
        v = evaluate(value_expr, inner)
        if grouping:
            out.setdefault(k, []).append(v)
        elif k in out:
            raise EvalError(f'duplicate key "{k}" in a for expression (use ... to group)', node)
        else:
            out[k] = v
    return out


def _paren(node: Tree, ctx: Context) -> Any:
    return evaluate(_children(node)[0], ctx)


def _function_call(node: Tree, ctx: Context) -> Any:
    kids = _children(node)
    names = [str(k.children[0]) for k in kids if isinstance(k, Tree) and k.data == "identifier"]
    name = "::".join(names)
    if name in ("try", "can"):
        return _try_can(name, node, kids, ctx)
    if name == "convert":
        return _convert(node, kids, ctx)
    fn = FUNCTIONS.get(name)
    if fn is None and name in _packer_only():
        return Unresolved(
            f"<{name}>",
            f"aibx does not evaluate Packer's {name}() (it reads files, secrets or the "
            "network, or is rare): its value is open",
        )
    if fn is None:
        raise EvalError(f"function {name}() is not supported by aibx (supported: {', '.join(sorted(FUNCTIONS))})", node)
    args_node = next((k for k in kids if isinstance(k, Tree) and k.data == "arguments"), None)
    args: list[Any] = []
    expand = False
    if args_node is not None:
        for child in args_node.children:
            if isinstance(child, Token) and child.type == "ELLIPSIS":
                expand = True
            elif isinstance(child, Tree) and child.data != "new_line_or_comment":
                args.append(evaluate(child, ctx))
    if expand:
        last = args.pop() if args else None
        if not isinstance(last, list):
            raise EvalError(f"{name}(...): the argument before ... must be a list", node)
        args.extend(last)
    for a in args:
        if isinstance(a, Unresolved) and name != "coalesce":  # of a variable without a value: open too
            return Unresolved(a.text, f"{name}() of an open value: {a.reason}")
        if not is_known(a) and name != "coalesce":
            raise EvalError(f"{name}() needs known arguments: {describe_unknown(a)}", node)
    if name in _BUILDERS:
        check_size(args, node)  # what these build is about as big as their arguments: bound it first
    try:
        result = fn(ctx, *args)
        if isinstance(result, str):
            ctx.limits.build(len(result), node)
        elif isinstance(result, (list, dict)):
            ctx.limits.build(len(result), node)  # items copied count as characters built
        return result
    except EvalError as exc:
        if not exc.line:
            exc.line, exc.column = position(node)
        raise
    except (TypeError, ValueError, ArithmeticError, re.error) as exc:
        raise EvalError(f"{name}(): {exc}", node) from None


def _convert(node: Tree, kids: list[Any], ctx: Context) -> Any:
    """convert(value, type): the value converted as a variable of that type is."""
    args_node = next((k for k in kids if isinstance(k, Tree) and k.data == "arguments"), None)
    args = [c for c in (args_node.children if args_node is not None else []) if isinstance(c, Tree)]
    args = [c for c in args if c.data != "new_line_or_comment"]
    if len(args) != 2:
        raise EvalError("convert() takes a value and a type", node)
    value = evaluate(args[0], ctx)
    if isinstance(value, Unresolved):
        return value
    return convert(value, args[1], node)


def _try_can(name: str, node: Tree, kids: list[Any], ctx: Context) -> Any:
    """try(a, b, ...): the first argument that evaluates without an error; can(a): whether it does. Both
    evaluate lazily, as Packer does."""
    args_node = next((k for k in kids if isinstance(k, Tree) and k.data == "arguments"), None)
    args = [c for c in (args_node.children if args_node is not None else []) if isinstance(c, Tree)]
    args = [c for c in args if c.data != "new_line_or_comment"]
    if name == "can" and len(args) != 1:
        raise EvalError("can() takes one argument", node)
    errors: list[str] = []
    for child in args:
        try:
            value = evaluate(child, ctx)
        except EvalError as exc:
            errors.append(exc.message)
            continue
        return value if name == "try" else (True if is_known(value) else value)
    if name == "can":
        return False
    raise EvalError(f"try(): no argument could be evaluated ({'; '.join(errors) or 'none given'})", node)


# functions whose result holds (copies of) their arguments
_BUILDERS = {"concat", "merge", "join", "format", "replace", "regex_replace", "split"}

_HANDLERS: dict[str, Callable[[Tree, Context], Any]] = {
    "expr_term": lambda n, c: _paren(n, c) if _is_paren(n) else _expr_term(n, c),
    "identifier": _identifier,
    "literal_value": _literal,
    "int_lit": _int,
    "float_lit": _float,
    "tuple": _tuple,
    "object": _object,
    "string": _string,
    "heredoc_template": _heredoc,
    "heredoc_template_trim": _heredoc,
    "get_attr_expr_term": _get_attr_expr,
    "index_expr_term": _index_expr,
    "attr_splat_expr_term": _splat,
    "full_splat_expr_term": _splat,
    "unary_op": _unary,
    "binary_op": _binary,
    "conditional": _conditional,
    "for_tuple_expr": _for_tuple,
    "for_object_expr": _for_object,
    "function_call": _function_call,
}


def _is_paren(node: Tree) -> bool:
    return any(isinstance(c, Token) and c.type == "LPAR" for c in node.children)


# ----------------------------------------------------------------------------------------------- conversions
def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def to_string(value: Any, node: Tree | Token | None = None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        raise EvalError("a null value cannot be used in a string", node)
    if not is_known(value):
        raise EvalError(describe_unknown(value), node)
    raise EvalError(f"{type_name(value)} cannot be used as a string", node)


def number(value: Any, node: Tree | Token | None = None) -> int | float:
    if isinstance(value, bool) or value is None:
        raise EvalError(f"expected a number, got {type_name(value)}", node)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            raise EvalError(f"expected a number, got the string {value!r}", node) from None
        return int(f) if f.is_integer() else f
    if not is_known(value):
        raise EvalError(describe_unknown(value), node)
    raise EvalError(f"expected a number, got {type_name(value)}", node)


def boolean(value: Any, node: Tree | Token | None = None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not is_known(value):
        raise EvalError(describe_unknown(value), node)
    raise EvalError(f"expected a bool, got {type_name(value)}", node)


# ----------------------------------------------------------------------------------------------- functions
def _fn_env(ctx: Context, name: Any) -> str:
    if not ctx.allow_env:
        raise EvalError("env() can only be used in variable defaults")
    value = ctx.env.get(to_string(name), "")
    if undecodable(value):
        raise EvalError(f"env({name!r}): the environment variable is not UTF-8 text")
    return value


def _fn_timestamp(ctx: Context) -> str:
    return ctx.now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fn_formatdate(ctx: Context, spec: Any, ts: Any) -> str:
    return format_date(to_string(spec), parse_timestamp(to_string(ts)))


def parse_timestamp(text: str) -> datetime:
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text)
    if not m:
        raise EvalError(f"{text!r} is not an RFC 3339 timestamp")
    tz = m.group(8)
    iso = text.replace("z", "Z").replace("t", "T")
    if tz in ("Z", "z"):
        iso = iso[:-1] + "+00:00"
    return datetime.fromisoformat(iso)


_DATE_TOKENS = re.compile(
    r"'(?:[^']|'')*'|YYYY|YY|MMMM|MMM|MM|M|DD|D|EEEE|EEE|hh|h|HH|H|AA|aa|mm|m|ss|s|ZZZZZ|ZZZZ|ZZZ|Z"
)


def format_date(spec: str, when: datetime) -> str:
    """Terraform's formatdate() mini-language."""
    out: list[str] = []
    pos = 0
    for m in _DATE_TOKENS.finditer(spec):
        literal = spec[pos : m.start()]
        if any(ch.isalpha() for ch in literal):
            raise EvalError(f"formatdate: unsupported sequence {literal!r} in {spec!r} (quote literal text with '')")
        out.append(literal)
        tok = m.group()
        pos = m.end()
        offset = when.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset else 0
        sign = "+" if minutes >= 0 else "-"
        hh, mm = divmod(abs(minutes), 60)
        value = {
            "YYYY": f"{when.year:04d}",
            "YY": f"{when.year % 100:02d}",
            "MMMM": when.strftime("%B"),
            "MMM": when.strftime("%b"),
            "MM": f"{when.month:02d}",
            "M": str(when.month),
            "DD": f"{when.day:02d}",
            "D": str(when.day),
            "EEEE": when.strftime("%A"),
            "EEE": when.strftime("%a"),
            "hh": f"{when.hour:02d}",
            "h": str(when.hour),
            "HH": f"{(when.hour % 12) or 12:02d}",
            "H": str((when.hour % 12) or 12),
            "AA": "AM" if when.hour < 12 else "PM",
            "aa": "am" if when.hour < 12 else "pm",
            "mm": f"{when.minute:02d}",
            "m": str(when.minute),
            "ss": f"{when.second:02d}",
            "s": str(when.second),
            "ZZZZZ": f"{sign}{hh:02d}:{mm:02d}",
            "ZZZZ": f"{sign}{hh:02d}{mm:02d}",
            "ZZZ": "UTC" if minutes == 0 else f"{sign}{hh:02d}{mm:02d}",
            "Z": "Z" if minutes == 0 else f"{sign}{hh:02d}:{mm:02d}",
        }.get(tok)
        out.append(value if value is not None else tok[1:-1].replace("''", "'"))
    rest = spec[pos:]
    if any(ch.isalpha() for ch in rest):
        raise EvalError(f"formatdate: unsupported sequence {rest!r} in {spec!r} (quote literal text with '')")
    out.append(rest)
    return "".join(out)


def go_regex(pattern: str) -> Any:
    """The pattern compiled by RE2, whose syntax Go's regexp (and so Packer's regex_replace) follows: POSIX
    classes and \\p{L} as in Packer, and matching in linear time, so no pattern makes aibx hang (Python's
    backtracking ``re`` takes forever on ``(a+)+$``)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print to standard error; the EvalError says it instead
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise EvalError(f"invalid regular expression {pattern!r}: {reason}") from None


def go_replacement(template: str, pattern: Any = None) -> str:
    r"""RE2 replacement ``$1``, ``${1}``, ``${name}``, ``$$`` as Python's ``\g<1>``. Given the compiled
    ``pattern``, a reference to a group it does not have becomes empty, as in Go."""
    known: set[str] | None = None
    if pattern is not None:
        known = {str(i) for i in range(pattern.groups + 1)} | set(pattern.groupindex)
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\":
            out.append("\\\\")
        elif ch == "$" and i + 1 < len(template):
            nxt = template[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            m = re.match(r"\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+)", template[i + 1 :])
            if m:
                name = m.group(1) or m.group(2)
                if re.fullmatch("[0-9]{1,9}", name):
                    name = str(int(name))  # Go reads $01 as group 1
                if known is None or name in known:
                    out.append(f"\\g<{name}>")
                i += 1 + m.end()
                continue
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _fn_regex_replace(ctx: Context, text: Any, pattern: Any, replacement: Any) -> str:
    compiled = go_regex(to_string(pattern))
    return _regex_sub(ctx, compiled, to_string(replacement), to_string(text))


def _regex_sub(ctx: Context, compiled: re.Pattern[str], rep: str, s: str) -> str:
    # each match becomes rep, whose $references copy parts of that match: all of them together copy at most the
    # whole text once per reference in rep. Bound the result before building it
    matches = sum(1 for _ in compiled.finditer(s))
    ctx.limits.build(len(s) + matches * len(rep) + rep.count("$") * len(s))
    return compiled.sub(go_replacement(rep, compiled), s)


def _fn_replace(ctx: Context, text: Any, search: Any, replacement: Any) -> str:
    s, find, rep = to_string(text), to_string(search), to_string(replacement)
    if len(find) > 1 and find.startswith("/") and find.endswith("/"):
        return _regex_sub(ctx, go_regex(find[1:-1]), rep, s)
    count = s.count(find) if find else len(s) + 1
    ctx.limits.build(len(s) + count * max(len(rep) - len(find), 0))
    return s.replace(find, rep)


def _fn_split(ctx: Context, sep: Any, text: Any) -> list[str]:
    s, separator = to_string(text), to_string(sep)
    if separator == "":
        return list(s)
    return s.split(separator)


def _fn_join(ctx: Context, sep: Any, *lists: Any) -> str:
    items: list[str] = []
    for lst in lists:
        if not isinstance(lst, list):
            raise EvalError(f"join: expected a list, got {type_name(lst)}")
        items += [to_string(x) for x in lst]
    return to_string(sep).join(items)


def _fn_coalesce(ctx: Context, *args: Any) -> Any:
    for a in args:
        if isinstance(a, Unresolved):  # an open value before any known one: the result is open
            return a
        if not is_known(a):
            raise EvalError(f"coalesce() needs known arguments: {describe_unknown(a)}")
        if a is not None and a != "":
            return a
    raise EvalError("coalesce: no non-null, non-empty argument")


def _fn_length(ctx: Context, value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise EvalError(f"length: expected a string, list or map, got {type_name(value)}")


def _fn_merge(ctx: Context, *maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise EvalError(f"merge: expected maps, got {type_name(m)}")
        out.update(m)
    return out


def _fn_concat(ctx: Context, *lists: Any) -> list[Any]:
    out: list[Any] = []
    for lst in lists:
        if not isinstance(lst, list):
            raise EvalError(f"concat: expected lists, got {type_name(lst)}")
        out += lst
    return out


_FORMAT_MAX_WIDTH = 1_000_000  # Go's fmt refuses larger ones (BADWIDTH, BADPREC)
_FORMAT_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")


def _fn_format(ctx: Context, spec: Any, *args: Any) -> str:
    """Go's fmt verbs as Terraform's format() supports them: %s %d %f %e %g %t %q %v %x %X %o %b %%."""
    fmt = to_string(spec)
    out: list[str] = []
    pos, argi = 0, 0
    for m in _FORMAT_VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if "*" in (width or "") or "*" in (prec or ""):
            raise EvalError("format: * widths are not supported")
        if int(width or 0) > _FORMAT_MAX_WIDTH or int(prec or 0) > _FORMAT_MAX_WIDTH:
            raise EvalError(f"format: {m.group()}: Go allows widths and precisions up to {_FORMAT_MAX_WIDTH}")
        if argi >= len(args):
            raise EvalError(f"format: not enough arguments for {fmt!r}")
        arg = args[argi]
        argi += 1
        py = "%" + flags + (width or "") + (f".{prec}" if prec is not None else "")
        if verb in "sv":
            text = json.dumps(arg) if isinstance(arg, (list, dict)) else to_string(arg)
            out.append((py + "s") % text)
        elif verb == "q":
            out.append((py + "s") % json.dumps(to_string(arg)))
        elif verb == "t":
            out.append((py + "s") % ("true" if boolean(arg) else "false"))
        elif verb in "dxXob":
            n = number(arg)
            if not float(n).is_integer():
                raise EvalError(f"format: %{verb} needs a whole number, got {n}")
            if verb == "b":
                out.append((py.replace("#", "") + "s") % format(int(n), "b"))
            else:
                out.append((py + verb) % int(n))
        elif verb in "feEgG":
            out.append((py + verb) % float(number(arg)))
        else:
            raise EvalError(f"format: unsupported verb %{verb}")
    out.append(fmt[pos:])
    if argi != len(args):
        raise EvalError(f"format: {len(args) - argi} argument(s) left over for {fmt!r}")
    return "".join(out)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "env": _fn_env,
    "timestamp": _fn_timestamp,
    "formatdate": _fn_formatdate,
    "regex_replace": _fn_regex_replace,
    "replace": _fn_replace,
    "split": _fn_split,
    "join": _fn_join,
    "coalesce": _fn_coalesce,
    "length": _fn_length,
    "merge": _fn_merge,
    "lower": lambda ctx, s: to_string(s).lower(),
    "upper": lambda ctx, s: to_string(s).upper(),
    "format": _fn_format,
    "concat": _fn_concat,
}


# ----------------------------------------------------------------------------------------------- types
def convert(value: Any, type_expr: Tree | None, node: Tree | Token | None = None) -> Any:
    """Convert a variable's value to its declared type (``string``, ``number``, ``bool``, ``list(T)``,
    ``map(T)``, ``set(T)``, ``object(...)``, ``tuple(...)``, ``any``)."""
    if type_expr is None or value is None or not is_known(value):
        return value
    kind, inner = _type_of(type_expr)
    if kind == "string":
        if isinstance(value, (list, dict)):
            raise EvalError(f"expected a string, got {type_name(value)}", node)
        return to_string(value, node)
    if kind == "number":
        return number(value, node)
    if kind == "bool":
        return boolean(value, node)
    if kind in ("list", "set", "tuple"):
        if not isinstance(value, list):
            raise EvalError(f"expected a list, got {type_name(value)}", node)
        return [convert(v, inner, node) for v in value] if kind != "tuple" else value
    if kind in ("map", "object"):
        if not isinstance(value, dict):
            raise EvalError(f"expected a map, got {type_name(value)}", node)
        return {k: convert(v, inner, node) for k, v in value.items()} if kind == "map" else value
    return value


def _type_of(node: Tree) -> tuple[str, Tree | None]:
    kids = _children(node)
    if node.data == "expr_term" and len(kids) == 1:
        return _type_of(kids[0])
    if node.data == "identifier":
        return str(node.children[0]), None
    if node.data == "function_call":
        name = str(_children(node)[0].children[0])
        args = next((k for k in _children(node) if isinstance(k, Tree) and k.data == "arguments"), None)
        inner = _children(args)[0] if args is not None and _children(args) else None
        return name, inner
    return "any", None


def is_primitive_type(type_expr: Tree | None) -> bool:
    return type_expr is None or _type_of(type_expr)[0] in ("string", "number", "bool", "any")


def _packer_only() -> frozenset[str]:
    from aibx.translators.hcl_functions import PACKER_ONLY

    return PACKER_ONLY


def _more_functions() -> None:
    from aibx.translators.hcl_functions import FUNCTIONS as MORE

    for fn_name, fn in MORE.items():
        FUNCTIONS.setdefault(fn_name, fn)


_more_functions()
