"""JSON as Azure Resource Manager accepts it, with the source position of every value.

ARM templates may carry ``//`` and ``/* */`` comments and trailing commas; no JSON library that keeps source
positions accepts those, so this small recursive-descent parser does both. It returns plain Python values and a
``SourceMap`` from JSON paths (tuples of keys and indexes) to offsets, which diagnostics turn into line:column.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

JsonPath = tuple[str | int, ...]

MAX_DEPTH = 256
# no template needs a longer number; Python refuses to convert integers of more than 4300 digits anyway
MAX_NUMBER_LENGTH = 400

# Strings and comments are scanned with str.find and single-class runs, not with a regex such as
# "(?:[^"\\]|\\.)*": Python's re keeps backtracking state for each repetition of a group, over 100 bytes for
# each character of a megabyte string.
_BLANK = re.compile(r"[ \t\r\n\ufeff]*")
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')  # what ends a run of plain characters in a string
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_LITERALS = {"true": True, "false": False, "null": None}
# what is left of a \uD800-\uDFFF escape once json has joined the pairs: half a character, which UTF-8 (every
# script, HCL file and report aibx writes) cannot encode
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonSyntaxError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column


@dataclass
class SourceMap:
    """Where each value (and each object key) of a parsed document starts."""

    text: str = ""
    values: dict[JsonPath, int] = field(default_factory=dict)
    keys: dict[JsonPath, int] = field(default_factory=dict)
    # keys written twice in one object: the path and the offset of the later key (its value is the one kept)
    duplicates: list[tuple[JsonPath, int]] = field(default_factory=list)
    _lines: list[int] = field(default_factory=list, repr=False)

    def line_col(self, offset: int) -> tuple[int, int]:
        if not self._lines:
            self._lines = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._lines, offset)
        return line, offset - self._lines[line - 1] + 1

    def locate(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column of the value at ``path`` (of its key with ``key=True``), else of the nearest
        ancestor that exists in the file; (0, 0) when nothing does (a value the parser never saw)."""
        path = tuple(path)
        if key and path in self.keys:
            return self.line_col(self.keys[path])
        while path:
            if path in self.values:
                return self.line_col(self.values[path])
            path = path[:-1]
        if () in self.values:
            return self.line_col(self.values[()])
        return 0, 0


def parse(text: str) -> tuple[object, SourceMap]:
    """Parse ``text``; raise JsonSyntaxError with line and column on bad input."""
    smap = SourceMap(text=text)
    parser = _Parser(text, smap)
    value = parser.document()
    return value, smap


class _Parser:
    def __init__(self, text: str, smap: SourceMap) -> None:
        self.text = text
        self.pos = 0
        self.smap = smap

    def fail(self, message: str, offset: int | None = None) -> JsonSyntaxError:
        line, col = self.smap.line_col(self.pos if offset is None else offset)
        return JsonSyntaxError(message, line, col)

    def skip(self) -> None:
        """Past whitespace, // comments and /* comments."""
        text = self.text
        while True:
            self.pos = _BLANK.match(text, self.pos).end()  # type: ignore[union-attr]
            if text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = len(text) if newline < 0 else newline
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def document(self) -> object:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("the file is empty; expected a JSON object")
        value = self.value((), 0)
        self.skip()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.describe()} after the end of the document")
        return value

    def describe(self) -> str:
        if self.pos >= len(self.text):
            return "end of file"
        ch = self.text[self.pos]
        return f"'{ch}'" if ch.isprintable() else f"character U+{ord(ch):04X}"

    def value(self, path: JsonPath, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        self.smap.values[path] = self.pos
        ch = self.text[self.pos : self.pos + 1]
        if ch == "{":
            return self.obj(path, depth)
        if ch == "[":
            return self.array(path, depth)
        if ch == '"':
            return self.string()
        m = _NUMBER.match(self.text, self.pos)
        if m:
            if len(m.group()) > MAX_NUMBER_LENGTH:
                raise self.fail(f"number with more than {MAX_NUMBER_LENGTH} characters")
            self.pos = m.end()
            return float(m.group()) if m.group(1) or m.group(2) else int(m.group())
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return literal
        if ch == "'":
            raise self.fail("strings must use double quotes")
        raise self.fail(f"expected a value, found {self.describe()}")

    def string_end(self) -> int | None:
        """The offset after the closing quote of the string at self.pos; None if it has none or holds a raw
        control character."""
        text = self.text
        pos = self.pos + 1
        while True:
            stop = _STRING_STOP.search(text, pos)
            if stop is None:
                return None
            if stop.group() == '"':
                return stop.end()
            if stop.group() != "\\" or stop.end() >= len(text):
                return None
            pos = stop.end() + 1  # the escaped character, whatever it is (json checks the escape)

    def string(self) -> str:
        start = self.pos
        end = self.string_end()
        if end is None:
            newline = self.text.find("\n", self.pos)
            if '"' not in self.text[self.pos + 1 : newline if newline >= 0 else None]:
                raise self.fail("unterminated string")
            raise self.fail("invalid character or escape in string")
        raw = self.text[start:end]
        self.pos = end
        if "\\" not in raw:
            value = raw[1:-1]
        else:
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise self.fail(f"invalid escape in string: {exc.args[0].split(':')[0]}", start) from None
        lone = _LONE_SURROGATE.search(value)
        if lone:
            raise self.fail(
                f"\\u{ord(lone.group()):04x} in a string is half of a UTF-16 surrogate pair, not a character",
                start,
            )
        return value

    def obj(self, path: JsonPath, depth: int) -> dict[str, object]:
        start = self.pos
        self.pos += 1
        out: dict[str, object] = {}
        self.skip()
        while True:
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return out
            if not self.text.startswith('"', self.pos):
                if self.pos >= len(self.text):
                    raise self.fail("unterminated object (missing '}')", start)
                raise self.fail(f"expected a quoted key or '}}', found {self.describe()}")
            key_pos = self.pos
            key = self.string()
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail(f"expected ':' after key \"{key}\", found {self.describe()}")
            self.pos += 1
            self.skip()
            child = (*path, key)
            if key in out:
                self.smap.duplicates.append((child, key_pos))
            self.smap.keys[child] = key_pos
            out[key] = self.value(child, depth + 1)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.skip()
                continue
            if self.text.startswith("}", self.pos):
                continue
            if self.pos >= len(self.text):
                raise self.fail("unterminated object (missing '}')", start)
            hint = " (a missing ',' before it?)" if self.text.startswith('"', self.pos) else ""
            raise self.fail(f"expected ',' or '}}' after the value of \"{key}\", found {self.describe()}{hint}")

    def array(self, path: JsonPath, depth: int) -> list[object]:
        start = self.pos
        self.pos += 1
        out: list[object] = []
        self.skip()
        while True:
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return out
            if self.pos >= len(self.text):
                raise self.fail("unterminated array (missing ']')", start)
            out.append(self.value((*path, len(out)), depth + 1))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.skip()
                continue
            if self.text.startswith("]", self.pos):
                continue
            if self.pos >= len(self.text):
                raise self.fail("unterminated array (missing ']')", start)
            hint = " (a missing ',' before it?)" if self.text[self.pos : self.pos + 1] in ('"', "{", "[") else ""
            raise self.fail(f"expected ',' or ']' in array, found {self.describe()}{hint}")
