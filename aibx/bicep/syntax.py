"""Bicep source to a small syntax tree, through the tree-sitter-bicep grammar from PyPI.

Only what evaluating an image template needs is kept: declarations (``param``, ``var``, ``resource``, ``module``,
``output``, ``using``) and expressions, each node with the character offset where it was written. Two things the
grammar gets wrong are put right here:

* a postfix (``.name``, ``[index]``, ``!``) after a binary, ternary or unary expression binds, in the grammar's
  tree, to the whole expression (``a ?? b.c`` reads as ``(a ?? b).c``); Bicep binds it to the last operand, so
  the postfix is moved down unless the expression was in parentheses;
* ``.bicepparam`` files (``param name = value`` without a type) are not in the grammar: ``param`` is read as
  ``var`` (padded to the same width, so every position stays where it was);
* the spread operator ``...x`` (Bicep 0.27) is not in the grammar either: in an object it is read as the property
  ``_: x``, in an array as the item ``   x`` (the same width), and the converter marks those as spreads.

Syntax the grammar cannot read becomes a ``SyntaxProblem`` naming the construct and its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_DEPTH = 200  # nesting of expressions; real templates stay far below


@dataclass
class Node:
    pos: int  # character offset where the node starts
    end: int = field(default=0, kw_only=True)  # and where it ends


@dataclass
class Literal(Node):
    value: object


@dataclass
class Template(Node):  # a string with ${interpolations}: literal parts and expressions
    parts: list[str | Node]


@dataclass
class Name(Node):
    name: str


@dataclass
class Prop:
    key: str | Node  # a Node for a computed key ('${x}': ...)
    value: Node
    key_pos: int
    spread: bool = False  # ...value: the object's properties merged in here (key is then "")


@dataclass
class Obj(Node):
    props: list[Prop]
    # resources declared inside a resource's body (reached as outer::inner)
    nested: list[Declaration] = field(default_factory=list)


@dataclass
class Arr(Node):
    items: list[Node]
    spreads: set[int] = field(default_factory=set)  # indexes of the items written ...item: their items go here


@dataclass
class Member(Node):
    target: Node
    name: str
    safe: bool = False  # .?


@dataclass
class Index(Node):
    target: Node
    index: Node
    safe: bool = False  # [?i]


@dataclass
class Call(Node):
    name: str  # without the sys./az. namespace
    args: list[Node]
    target: Node | None = None  # a method call on a resource or module (rarely used)


@dataclass
class Unary(Node):
    op: str
    arg: Node


@dataclass
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass
class Ternary(Node):
    cond: Node
    then: Node
    other: Node


@dataclass
class For(Node):
    item: str | None
    index: str | None
    iterable: Node
    body: Node
    condition: Node | None = None


@dataclass
class Conditional(Node):  # a resource or module body behind `if (condition)`
    condition: Node
    body: Node


@dataclass
class Lambda(Node):  # (a, b) => body
    params: list[str]
    body: Node


@dataclass
class NestedRef(Node):  # outer::inner, a resource declared inside another's body
    names: list[str]


@dataclass
class Unsupported(Node):
    what: str  # e.g. "a lambda expression"


@dataclass
class Declaration:
    kind: str  # param, var, resource, module, output, using
    name: str
    pos: int
    value: Node | None = None
    type_text: str = ""  # a param's or output's type as written; a resource's type string; a module's path
    type_pos: int = 0
    decorators: dict[str, list[Node]] = field(default_factory=dict)
    existing: bool = False
    broken: bool = False  # holds syntax the grammar cannot read


@dataclass
class SyntaxProblem:
    pos: int
    construct: str
    in_type: bool = False  # inside a type expression: the value is still read, its type not checked
    declaration: str | None = None  # the top-level declaration it is in (None: between declarations)
    text: str = ""  # what the grammar could not read


@dataclass
class Program:
    declarations: list[Declaration]
    problems: list[SyntaxProblem]


@lru_cache(maxsize=1)
def _parser() -> Any:
    import tree_sitter_bicep
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bicep.language()))


_BICEPPARAM_PARAM = re.compile(r"^([ \t]*)param(?=[ \t]+[A-Za-z_]\w*[ \t]*=)", re.MULTILINE)


def bicepparam_as_bicep(text: str) -> tuple[str, list[str]]:
    """A .bicepparam file in the grammar's terms: each ``param NAME = value`` as ``var   NAME = value`` (the
    same width); and the names so rewritten."""
    names = re.findall(r"^[ \t]*param[ \t]+([A-Za-z_]\w*)[ \t]*=", text, re.MULTILINE)
    return _BICEPPARAM_PARAM.sub(lambda m: m.group(1) + "var  ", text), names


def parse(text: str) -> Program:
    text, spreads = _spreads_rewritten(text)
    raw = text.encode("utf-8")
    tree = _parser().parse(raw)
    converter = _Converter(text, raw)
    converter.spreads = spreads
    return converter.program(tree.root_node)


def _spreads_rewritten(text: str) -> tuple[str, set[int]]:
    """``text`` with each spread ``...x`` in the grammar's terms (see the module note), and the offsets of the
    spreads: where an object's spread was written, where an array's operand starts. Strings, interpolations and
    comments are skipped; ``...`` occurs nowhere else in Bicep."""
    if "..." not in text:
        return text, set()
    out = list(text)
    spreads: set[int] = set()
    stack: list[str] = []  # open brackets; "'" for a string, "$" for an interpolation inside one
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        top = stack[-1] if stack else ""
        if top == "'":
            if c == "\\":
                i += 2
                continue
            if c == "'":
                stack.pop()
            elif text.startswith("${", i):
                stack.append("$")
                i += 1
            i += 1
            continue
        if text.startswith("'''", i):  # a multi-line string: no escapes, no interpolation
            end = text.find("'''", i + 3)
            i = n if end < 0 else end + 3
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == "'":
            stack.append("'")
        elif c in "{[(":
            stack.append(c)
        elif c in "}])" and stack:
            stack.pop()  # the end of an interpolation ("$") is back in its string
        elif text.startswith("...", i) and top in ("{", "["):
            out[i : i + 3] = ["_", ":", " "] if top == "{" else [" ", " ", " "]
            operand = i + 3
            while top == "[" and operand < n and text[operand] in " \t":
                operand += 1
            spreads.add(i if top == "{" else operand)  # an object's "_" key, or an array's item
            i += 3
            continue
        i += 1
    return "".join(out), spreads


_STATEMENTS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
    "using_statement": "using",
    "user_defined_function": "func",
}
_POSTFIX = ("member_expression", "subscript_expression")
# a declaration that an unreadable `type` statement must not have swallowed
_DECLARATION = re.compile(r"^\s*(?:param|var|resource|module|output)\s", re.MULTILINE)
_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}
_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|.)", re.DOTALL)
_CONSTRUCT_NAMES = {
    "parameter_declaration": "a param declaration",
    "variable_declaration": "a var declaration",
    "resource_declaration": "a resource declaration",
    "module_declaration": "a module declaration",
    "output_declaration": "an output declaration",
    "type_declaration": "a type declaration",
    "user_defined_function": "a function declaration",
    "import_statement": "an import statement",
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "call_expression": "a function call",
    "type": "a type expression",
}


class _Converter:
    def __init__(self, text: str, raw: bytes) -> None:
        self.text = text
        self.raw = raw
        self.ascii = len(raw) == len(text)
        self.problems: list[SyntaxProblem] = []
        self.glued: dict[int, tuple[str, int]] = {}  # see array_items
        self.spreads: set[int] = set()  # offsets of the spreads _spreads_rewritten() rewrote

    def offset(self, node: Any) -> int:
        return self.offset_at(node.start_byte)

    def src(self, node: Any) -> str:
        return node.text.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------------------------- statements
    def program(self, root: Any) -> Program:
        decls: list[Declaration] = []
        pending: dict[str, list[Node]] = {}
        for child in root.children:
            if child.is_named and child.type not in _STATEMENTS:
                self.find_problems(child, root)
        for child in root.named_children:
            if child.type == "decorators":
                pending = self.decorators(child)
                continue
            kind = _STATEMENTS.get(child.type)
            if kind is not None:
                first = len(self.problems)
                self.find_problems(child, root)
                decl = self.declaration(kind, child)
                if decl is not None:
                    decl.decorators = pending
                    decl.broken = len(self.problems) > first
                    for problem in self.problems[first:]:
                        problem.declaration = decl.name
                    decls.append(decl)
            if child.type != "comment":
                pending = {}
        return Program(decls, self.problems)

    def find_problems(self, node: Any, parent: Any = None) -> None:
        if node.type == "ERROR" or node.is_missing:
            owner = parent
            while owner is not None and owner.type not in _CONSTRUCT_NAMES:
                owner = owner.parent
            construct = _CONSTRUCT_NAMES.get(owner.type, "this statement") if owner is not None else "this statement"
            what = f"missing {node.type!r}" if node.is_missing else repr(self.src(node)[:30])
            text = self.src(node)
            in_type = (owner is not None and owner.type in ("type", "type_declaration")) or (
                text.startswith("type ") and not _DECLARATION.search(text)
            )
            self.problems.append(SyntaxProblem(self.offset(node), f"{construct} ({what})", in_type, text=text))
            return
        if not node.has_error:
            return
        for child in node.children:
            self.find_problems(child, node)

    def decorators(self, node: Any) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for dec in node.named_children:
            call = next((c for c in dec.named_children if c.type == "call_expression"), None)
            if call is None:
                continue
            expr = self.expr(call)
            if isinstance(expr, Call):
                out[expr.name.lower()] = expr.args
        return out

    def declaration(self, kind: str, node: Any) -> Declaration | None:
        named = node.named_children
        ident = next((c for c in named if c.type in ("identifier", "compatible_identifier")), None)
        if kind == "func":
            return self.function(node)
        if kind == "using":
            target = next((c for c in named if c.type == "string"), None)
            if target is None:
                return None
            path = self.expr(target)
            text = path.value if isinstance(path, Literal) and isinstance(path.value, str) else ""
            return Declaration("using", "", self.offset(node), type_text=text, type_pos=self.offset(target))
        if ident is None:
            return None
        decl = Declaration(kind, self.src(ident), self.offset(ident))
        rest = [c for c in named if c is not ident and c.type not in ("comment", "diagnostic_comment")]
        if kind in ("resource", "module"):
            type_node = next((c for c in rest if c.type == "string"), None)
            if type_node is not None:
                t = self.expr(type_node)
                decl.type_text = t.value if isinstance(t, Literal) and isinstance(t.value, str) else ""
                decl.type_pos = self.offset(type_node)
                rest = [c for c in rest if c is not type_node]
            decl.existing = any(c.type == "existing" for c in node.children)
        elif kind in ("param", "output"):
            type_node = next((c for c in rest if c.type == "type"), None)
            if type_node is None and kind == "output" and rest and rest[0].type == "identifier":
                type_node = rest[0]  # output x resource '...'
            if type_node is not None:
                decl.type_text = self.src(type_node)
                decl.type_pos = self.offset(type_node)
                rest = [c for c in rest if c is not type_node]
        eq = next((i for i, c in enumerate(node.children) if c.type == "="), None)
        if eq is not None:
            after = [c for c in node.children[eq + 1 :] if c.is_named and c.type not in ("comment",)]
            if after:
                decl.value = self.expr(after[0])
        return decl

    def function(self, node: Any) -> Declaration | None:
        """``func name(a type, b type) type => body``: a Declaration whose value is a Lambda."""
        name = node.child_by_field_name("name")
        params = next((c for c in node.named_children if c.type == "parameters"), None)
        body = node.named_children[-1] if node.named_children else None
        if name is None or body is None or body is name:
            return None
        names = []
        for p in params.named_children if params is not None else []:
            ident = next((c for c in p.named_children if c.type == "identifier"), None)
            if ident is not None:
                names.append(self.src(ident))
        value = Lambda(self.offset(node), names, self.expr(body))
        return Declaration("func", self.src(name), self.offset(name), value=value)

    # ------------------------------------------------------------------------------------------- expressions
    def expr(self, node: Any, depth: int = 0) -> Node:
        out = self.expression(node, depth)
        if not out.end:
            out.end = self.offset_at(node.end_byte)
        return out

    def expression(self, node: Any, depth: int) -> Node:
        if depth > MAX_DEPTH:
            return Unsupported(self.offset(node), "an expression nested too deeply")
        t = node.type
        pos = self.offset(node)
        if t in _POSTFIX:
            return self.postfix(node, depth)
        if t == "identifier" or t == "compatible_identifier":
            return Name(pos, self.src(node))  # x! (a non-null assertion) is x itself
        if t == "string":
            return self.string(node, depth)
        if t == "number":
            text = self.src(node)
            try:
                return Literal(pos, int(text))
            except ValueError:
                return Unsupported(pos, f"the number {text}")
        if t == "boolean":
            return Literal(pos, self.src(node).strip() == "true")
        if t == "null":
            return Literal(pos, None)
        if t == "object":
            return self.object(node, depth)
        if t == "array":
            items, spreads = self.array_items(node, depth)
            return Arr(pos, items, spreads)
        if t == "parenthesized_expression":
            inner = [c for c in node.named_children if c.type != "comment"]
            if node.start_byte in self.glued:  # the arguments of a call the grammar split (array_items)
                name, start = self.glued.pop(node.start_byte)
                return Call(start, name, [self.expr(a, depth + 1) for a in inner])
            return self.expr(inner[0], depth + 1) if inner else Unsupported(pos, "empty parentheses")
        if t == "call_expression":
            return self.call(node, depth)
        if t == "unary_expression":
            op = node.child_by_field_name("operator")
            arg = node.child_by_field_name("argument")
            if op is None or arg is None:
                return Unsupported(pos, "a unary expression")
            return Unary(pos, self.src(op), self.expr(arg, depth + 1))
        if t == "binary_expression":
            left, op, right = (node.child_by_field_name(f) for f in ("left", "operator", "right"))
            if left is None or op is None or right is None:
                return Unsupported(pos, "a binary expression")
            return Binary(pos, self.src(op), self.expr(left, depth + 1), self.expr(right, depth + 1))
        if t == "ternary_expression":
            c, a, b = (node.child_by_field_name(f) for f in ("condition", "consequence", "alternative"))
            if c is None or a is None or b is None:
                return Unsupported(pos, "a ternary expression")
            return Ternary(pos, self.expr(c, depth + 1), self.expr(a, depth + 1), self.expr(b, depth + 1))
        if t == "for_statement":
            return self.for_loop(node, depth)
        if t == "if_statement":
            parts = [c for c in node.named_children if c.type != "comment"]
            if len(parts) < 2:
                return Unsupported(pos, "an if condition")
            return Conditional(pos, self.expr(parts[0], depth + 1), self.expr(parts[-1], depth + 1))
        if t == "lambda_expression":
            parts = [c for c in node.named_children if c.type != "comment"]
            if len(parts) < 2:
                return Unsupported(pos, "a lambda expression")
            head = parts[0]
            names = [head] if head.type == "identifier" else [c for c in head.named_children if c.type == "identifier"]
            return Lambda(pos, [self.src(c) for c in names], self.expr(parts[-1], depth + 1))
        if t == "resource_expression":
            names = [self.src(c) for c in node.named_children if c.type == "identifier"]
            return NestedRef(pos, names) if len(names) >= 2 else Unsupported(pos, "a resource expression")
        return Unsupported(pos, f"{t.replace('_', ' ')}")

    def postfix(self, node: Any, depth: int) -> Node:
        target_node = node.child_by_field_name("object")
        if target_node is None:
            return Unsupported(self.offset(node), "a property access")
        pos = self.offset(node)

        def apply(target: Node) -> Node:
            if node.type == "member_expression":
                prop = node.child_by_field_name("property")
                safe = any(c.type == ".?" for c in node.children)
                return Member(target.pos, target, self.src(prop) if prop is not None else "", safe)
            index = node.child_by_field_name("index")
            safe = any(c.type == "?" for c in node.children)
            idx = self.expr(index, depth + 1) if index is not None else Unsupported(pos, "an index")
            return Index(target.pos, target, idx, safe)

        target = self.expr(target_node, depth + 1)
        if target_node.type != "parenthesized_expression" and isinstance(target, (Binary, Ternary, Unary, Lambda)):
            return _push_down(target, apply)  # the grammar's precedence slip: see the module's docstring
        return apply(target)

    def call(self, node: Any, depth: int) -> Node:
        pos = self.offset(node)
        func = node.child_by_field_name("function")
        args_node = node.child_by_field_name("arguments")
        args = [self.expr(a, depth + 1) for a in args_node.named_children if a.type != "comment"] if args_node else []
        if func is None:
            return Unsupported(pos, "a function call")
        if func.type == "identifier":
            return Call(pos, self.src(func), args)
        if func.type == "member_expression":
            obj = func.child_by_field_name("object")
            prop = func.child_by_field_name("property")
            if obj is not None and prop is not None:
                if obj.type == "identifier" and self.src(obj) in ("sys", "az"):
                    return Call(pos, self.src(prop), args)
                return Call(pos, self.src(prop), args, target=self.expr(obj, depth + 1))
        return Unsupported(pos, "a call of a computed function")

    def string(self, node: Any, depth: int) -> Node:
        pos = self.offset(node)
        text = self.src(node)
        if text.startswith("'''"):
            body = text[3:-3] if len(text) >= 6 else ""
            if body.startswith("\r\n"):
                body = body[2:]
            elif body.startswith("\n"):
                body = body[1:]
            return Literal(pos, body)
        parts: list[str | Node] = []
        cursor = node.start_byte + 1
        for child in node.named_children:
            if child.type != "interpolation":
                continue
            # the grammar's `${` token swallows the blanks before it: the literal text ends where `${` starts
            opener = child.children[0] if child.children else child
            start = opener.end_byte - 2 if opener.type == "${" else child.start_byte
            parts.append(_unescape(self.raw[cursor:start].decode("utf-8", errors="replace")))
            inner = [c for c in child.named_children if c.type != "comment"]
            parts.append(self.expr(inner[0], depth + 1) if inner else Unsupported(pos, "an empty ${}"))
            cursor = child.end_byte
        parts.append(_unescape(self.raw[cursor : max(cursor, node.end_byte - 1)].decode("utf-8", errors="replace")))
        parts = [p for p in parts if p != ""]
        if not parts:
            return Literal(pos, "")
        if len(parts) == 1 and isinstance(parts[0], str):
            return Literal(pos, parts[0])
        return Template(pos, parts)

    def array_items(self, node: Any, depth: int) -> tuple[list[Node], set[int]]:
        """The items of an array. The grammar reads an item ``f(x)`` as two items, ``f`` and ``(x)``: a name
        followed at once by parentheses is put back together as the call it is."""
        children = [c for c in node.named_children if c.type != "comment"]
        items: list[Node] = []
        spreads: set[int] = set()  # the indexes of items written ...item
        i = 0
        while i < len(children):
            c = children[i]
            nxt = children[i + 1] if i + 1 < len(children) else None
            if c.type == "identifier" and nxt is not None and nxt.start_byte == c.end_byte:
                inner = nxt  # f().x and f(a)[0] arrive as f and ().x: the parentheses are the leftmost part
                while inner.type in _POSTFIX and inner.child_by_field_name("object") is not None:
                    inner = inner.child_by_field_name("object")
                if inner.type == "parenthesized_expression" and inner.start_byte == c.end_byte:
                    self.glued[inner.start_byte] = (self.src(c), self.offset(c))
                    if self.spread_before(c):
                        spreads.add(len(items))
                    items.append(self.expr(nxt, depth + 1))
                    i += 2
                    continue
            if self.spread_before(c):
                spreads.add(len(items))
            items.append(self.expr(c, depth + 1))
            i += 1
        return items, spreads

    def spread_before(self, node: Any) -> bool:
        """Whether ``node`` is the operand of a spread in an array (``...`` written before it, now blanks)."""
        return self.offset(node) in self.spreads

    def offset_at(self, b: int) -> int:
        return b if self.ascii else len(self.raw[:b].decode("utf-8", errors="ignore"))

    def object(self, node: Any, depth: int) -> Node:
        props: list[Prop] = []
        nested: list[Declaration] = []
        for child in node.named_children:
            if child.type != "object_property":
                continue
            named = [c for c in child.named_children if c.type not in ("comment", "decorators")]
            if named and named[0].type == "resource_declaration":
                decl = self.declaration("resource", named[0])
                if decl is not None:
                    nested.append(decl)
                continue
            if len(named) < 2:
                continue
            key_node, value_node = named[0], named[-1]
            if self.offset(key_node) in self.spreads and self.src(key_node) == "_":
                props.append(Prop("", self.expr(value_node, depth + 1), self.offset(key_node), spread=True))
                continue
            if key_node.type == "string":
                k = self.expr(key_node, depth + 1)
                key: str | Node = k.value if isinstance(k, Literal) and isinstance(k.value, str) else k
            else:
                key = self.src(key_node)
            props.append(Prop(key, self.expr(value_node, depth + 1), self.offset(key_node)))
        return Obj(self.offset(node), props, nested)

    def for_loop(self, node: Any, depth: int) -> Node:
        pos = self.offset(node)
        item = index = None
        params = next((c for c in node.named_children if c.type == "for_loop_parameters"), None)
        if params is not None:
            for c in params.named_children:
                if c.type == "loop_variable":
                    item = self.src(c)
                elif c.type == "loop_enumerator":
                    index = self.src(c)
        else:
            var = next((c for c in node.named_children if c.type in ("loop_variable", "identifier")), None)
            item = self.src(var) if var is not None else None
        children = node.children
        in_at = next((i for i, c in enumerate(children) if c.type == "in"), None)
        colon_at = next((i for i, c in enumerate(children) if c.type == ":"), None)
        if in_at is None or colon_at is None:
            return Unsupported(pos, "a for loop")
        iterable = next((c for c in children[in_at + 1 : colon_at] if c.is_named), None)
        body = node.child_by_field_name("body") or next(
            (c for c in children[colon_at + 1 :] if c.is_named and c.type != "comment"), None
        )
        if iterable is None or body is None:
            return Unsupported(pos, "a for loop")
        body_expr = self.expr(body, depth + 1)
        condition = None
        if isinstance(body_expr, Conditional):
            condition, body_expr = body_expr.condition, body_expr.body
        return For(pos, item, index, self.expr(iterable, depth + 1), body_expr, condition)


def _push_down(node: Node, apply: Any) -> Node:
    """Apply a postfix to the last operand of an unparenthesised operator expression."""
    if isinstance(node, Binary):
        return Binary(node.pos, node.op, node.left, _push_down(node.right, apply))
    if isinstance(node, Ternary):
        return Ternary(node.pos, node.cond, node.then, _push_down(node.other, apply))
    if isinstance(node, Unary):
        return Unary(node.pos, node.op, _push_down(node.arg, apply))
    if isinstance(node, Lambda):
        return Lambda(node.pos, node.params, _push_down(node.body, apply))
    return apply(node)


def _unescape(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc.startswith("u{"):
            return chr(int(esc[2:-1], 16))
        return _ESCAPES.get(esc, m.group())

    return _ESCAPE.sub(sub, text) if "\\" in text else text
