"""Writing HCL2 documents with python-hcl2's writer, formatted the way ``packer fmt`` formats them.

A document is a list of ``Block``s; attribute values are Python values (str, int, float, bool, list, dict) or
``Expr`` for a raw HCL expression such as ``var.subscription_id``. python-hcl2 builds and formats the syntax
tree; ``PackerFormatter`` changes its formatting in the two places where it differs from ``packer fmt``
(docs/translate.md, "HCL formatting"):

* ``packer fmt`` aligns the ``=`` of *runs of consecutive single-line* attributes (and object elements); an
  attribute whose value spans several lines ends a run and keeps a single space before its ``=``;
* blank lines carry no indentation, and there is at most one blank line between items.

Comments are not part of python-hcl2's dict format; ``Block.comment`` is attached to the formatted tree as a
comment line before the block.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import hcl2
from hcl2.deserializer import DeserializerOptions
from hcl2.formatter import BaseFormatter, FormatterOptions
from hcl2.rules.abstract import LarkRule
from hcl2.rules.base import AttributeRule, BlockRule, BodyRule, StartRule
from hcl2.rules.containers import ObjectElemRule, ObjectRule, TupleRule
from hcl2.rules.expressions import ExprTermRule
from hcl2.rules.strings import HeredocTemplateRule
from hcl2.rules.tokens import COMMA
from hcl2.rules.whitespace import NewLineOrCommentRule

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

# a class made at import time (StaticStringToken[...]); to the type checker, a parameterized generic
_COMMA: type = COMMA


@dataclass(frozen=True)
class Expr:
    """A raw HCL expression, written as is: ``Expr("var.subscription_id")``."""

    text: str


@dataclass
class Block:
    type: str
    labels: list[str] = field(default_factory=list)
    # attributes first, then nested blocks (HCL allows any order; packer fmt keeps the order given)
    attributes: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    comment: str | None = None

    def set(self, name: str, value: Any) -> None:
        """Set an attribute unless the value is None."""
        if value is not None:
            self.attributes[name] = value

    def add(self, block: Block) -> Block:
        self.blocks.append(block)
        return block


Value = Union[str, int, float, bool, Expr, list, dict, None]  # noqa: UP007


def string_literal(text: str) -> str:
    """``text`` as an HCL quoted string (with quotes): escapes, and ``${``/``%{`` written as literal text.

    A literal ``${`` is written ``$${`` when a plain ``}`` closes it (python-hcl2's grammar reads ``$${``
    only up to a ``}``), else ``\\u0024{``, which HCL (and Packer) read as the same two characters."""
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    out = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group()) or f"\\u{ord(m.group()):04x}", text)
    if "{" in out:
        out = _escape_template_starts(out)
    # python-hcl2's writer splits strings before each "$${...}" and strips a quote that ends a piece,
    # which would eat an escaped quote right before one: write that quote as \u0022 instead
    return '"' + _QUOTE_BEFORE_DOLLAR.sub(r"\1\\u0022", out) + '"'


_PLAIN = re.compile(r"[^\\\"\x00-\x1f\x7f${%]*")
_ESCAPE = re.compile(r"[\\\"\x00-\x1f\x7f]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TEMPLATE_START = re.compile(r"[$%]\{")
_CLOSE_OR_ESCAPE = re.compile(r"[}\\]")


def _escape_template_starts(text: str) -> str:
    """Each "${" or "%{" of already escaped text as "$${" when a plain "}" closes it (nothing escaped in
    between), else as "\\u0024{". One pass: the search for what follows moves only forward, so a value of many
    "${" takes linear time (a lookahead regex took quadratic)."""
    out: list[str] = []
    pos = 0
    stop_at, stop_char = -1, ""  # the first "}" or "\\" after the current "${" ("" when there is none)
    for m in _TEMPLATE_START.finditer(text):
        if stop_at == -1 or (stop_char and stop_at < m.end()):
            stop = _CLOSE_OR_ESCAPE.search(text, m.end())
            stop_at, stop_char = (stop.start(), stop.group()) if stop else (len(text), "")
        out.append(text[pos : m.start()])
        sign = m.group()[0]
        closed = stop_char == "}"
        out.append(sign * 2 + "{" if closed else f"\\u{ord(sign):04x}{{")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


_QUOTE_BEFORE_DOLLAR = re.compile(r'(?<!\\)((?:\\\\)*)\\"(?=\$)')


def template(parts: Sequence[str | Expr]) -> str | Expr:
    """A string template from literal text and expressions: ``template(["/x/", Expr("var.y")])`` is
    ``"/x/${var.y}"``; a plain string when there is no expression, the expression alone when there is no text."""
    parts = [p for p in parts if p != ""]
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)  # type: ignore[arg-type]
    if len(parts) == 1:
        return parts[0]
    body = "".join(string_literal(p)[1:-1] if isinstance(p, str) else "${" + p.text + "}" for p in parts)
    return Expr(f'"{body}"')


def _to_python(value: Any) -> Any:
    """The value in python-hcl2's dict format: strings quoted, expressions as ``${...}``."""
    if isinstance(value, Expr):
        return "${" + value.text + "}"
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    if isinstance(value, dict):
        return {(k if _IDENTIFIER.fullmatch(k) else string_literal(k)): _to_python(v) for k, v in value.items()}
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


def _block_dict(block: Block) -> dict[str, Any]:
    body: dict[str, Any] = {"__is_block__": True}
    for name, value in block.attributes.items():
        body[name] = _to_python(value)
    seen: list[str] = []
    for child in block.blocks:
        if seen and child.type != seen[-1] and child.type in seen:
            raise ValueError(f"blocks of type {child.type!r} must be contiguous in {block.type!r}")
        seen.append(child.type)
        body.setdefault(child.type, []).append(_labelled(child))
    return body


def _labelled(block: Block) -> dict[str, Any]:
    inner: dict[str, Any] = _block_dict(block)
    for label in reversed(block.labels):
        inner = {string_literal(label): inner}
    return inner


def _ordered(blocks: Sequence[Block]) -> Iterator[Block]:
    """Blocks in document order, depth first (the order python-hcl2 writes them)."""
    for b in blocks:
        yield b
        yield from _ordered(b.blocks)


def dumps(blocks: Sequence[Block]) -> str:
    top = Block("")
    top.blocks = list(blocks)
    data = _block_dict(top)
    del data["__is_block__"]
    tree = hcl2.from_dict(
        data,
        deserializer_options=DeserializerOptions(object_elements_trailing_comma=False),
        apply_format=False,
    )
    formatter = PackerFormatter(FormatterOptions(open_empty_blocks=False))
    formatter.format_tree(tree)
    _tidy_whitespace(tree)
    _attach_comments(tree, list(_ordered(blocks)), formatter.options.indent_length)
    text = hcl2.reconstruct(tree)
    return text.rstrip("\n") + "\n"


# ----------------------------------------------------------------------------------------------- formatting
class PackerFormatter(BaseFormatter):
    """python-hcl2's formatter, aligning ``=`` the way ``packer fmt`` does."""

    def _vertically_align_attributes_in_body(self, body: BodyRule) -> None:
        for run in _runs(body.children, AttributeRule):
            self._align_attributes_sequence(run)

    def _vertically_align_object_elems(self, rule: Any) -> None:
        for run in _runs(rule.children, ObjectElemRule):
            width = max(self._key_text_width(e.key) for e in run)
            for elem in run:
                pad = width - self._key_text_width(elem.key)
                sep = elem.children[1]
                sep.set_value(" " * (pad + 1) + sep.value.lstrip(" \t"))


def _runs(children: Sequence[Any], kind: Any) -> Iterator[list[Any]]:
    """Runs of consecutive single-line items of ``kind``; anything else (a block, a multi-line value) ends a run.
    Commas and newlines between items do not."""
    run: list = []
    for child in children:
        if isinstance(child, kind) and not _spans_lines(child.expression):
            run.append(child)
        elif isinstance(child, kind) or not isinstance(child, (NewLineOrCommentRule, _COMMA)):
            if run:
                yield run
            run = []
            if isinstance(child, kind):  # a multi-line item keeps one space before its "="
                yield [child]
    if run:
        yield run


def _spans_lines(node: Any) -> bool:
    """Whether the formatter writes this expression over several lines: it holds a non-empty tuple or object,
    or a heredoc."""
    if isinstance(node, (ObjectRule, TupleRule)) and node.elements:
        return True
    if isinstance(node, HeredocTemplateRule):
        return True
    return isinstance(node, LarkRule) and any(_spans_lines(c) for c in node.children if c is not None)


# nodes whose children may be newline tokens, or lead to nodes that have some
_LAYOUT = (StartRule, BodyRule, BlockRule, AttributeRule, ExprTermRule, ObjectRule, ObjectElemRule, TupleRule)


def _tidy_whitespace(node: Any) -> None:
    """Merge adjacent newline tokens: no indentation on blank lines, at most one blank line in a row."""
    children = node.children
    merged: list = []
    for child in children:
        if (
            isinstance(child, NewLineOrCommentRule)
            and merged
            and isinstance(merged[-1], NewLineOrCommentRule)
            and _blank(merged[-1])
            and _blank(child)
        ):
            merged[-1].token.set_value(merged[-1].token.value + child.token.value)
            continue
        merged.append(child)
    for child in merged:
        if isinstance(child, NewLineOrCommentRule):
            if _blank(child):
                value = child.token.value
                newlines = min(value.count("\n"), 2)
                child.token.set_value("\n" * newlines + value.rsplit("\n", 1)[-1])
        elif isinstance(child, _LAYOUT):
            _tidy_whitespace(child)
    if len(merged) != len(children):
        node._children = merged
        for i, child in enumerate(merged):
            if child is not None:
                child.set_index(i)
                child.set_parent(node)


def _blank(rule: Any) -> bool:
    return rule.token.value.strip(" \t\n") == ""


def _attach_comments(tree: Any, blocks: list[Block], indent_length: int) -> None:
    """Write ``Block.comment`` as comment lines just above each block."""
    rules = list(_block_rules(tree.body, BlockRule))
    for block, (rule, depth) in zip(blocks, rules, strict=True):
        if not block.comment:
            continue
        parent = rule.parent
        index = parent.children.index(rule)
        indent = " " * (indent_length * depth)
        lines = "".join(f"{indent}# {line}".rstrip() + "\n" for line in block.comment.splitlines())
        before = parent.children[index - 1] if index > 0 else None
        if isinstance(before, NewLineOrCommentRule):
            value = before.token.value
            head, _, _ = value.rpartition("\n")
            before.token.set_value(head + "\n" + lines + indent)
        else:  # the first block of the document
            comment = NewLineOrCommentRule.from_string(lines)
            parent._children.insert(index, comment)
            for i, child in enumerate(parent.children):
                if child is not None:
                    child.set_index(i)
                    child.set_parent(parent)


def _block_rules(body: Any, block_rule: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    for child in body.children:
        if isinstance(child, block_rule):
            yield child, depth
            yield from _block_rules(child.body, block_rule, depth + 1)
