"""The content of ``loadJsonContent(path, jsonPath?)`` and ``loadYamlContent(path, pathFilter?)``.

JSON is read with the standard library, YAML with PyYAML's safe loader (no Python objects, no tags beyond YAML's
own). Both give JSON values: a YAML timestamp or binary scalar becomes its text, as Bicep writes it into the
compiled template. The optional path is the JSONPath subset Bicep templates use: ``$``, ``.name``, ``['name']``
and ``[index]``. A wildcard, a filter or a recursive descent is not evaluated (the value is then unknown).
"""

from __future__ import annotations

import base64
import datetime
import json
import re

from aibx import armexpr


class ContentError(ValueError):
    """The file's text is not JSON (or YAML), or the path selects nothing: a template error."""


class UnsupportedPath(ValueError):
    """A JSONPath form aibx does not evaluate: the value is unknown, not an error."""


_STEP = re.compile(
    r"\.([A-Za-z_$][\w$-]*)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*\"((?:[^\"\\]|\\.)*)\"\s*\]|\[\s*(-?\d+)\s*\]"
)


def parse(kind: str, text: str) -> object:
    """The value of a ``json`` or ``yaml`` file's text; ContentError when it is not one, or too big to evaluate."""
    if kind == "json":
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ContentError(f"not JSON ({exc})") from None
    else:
        value = _yaml(text)
    try:
        armexpr.check_size(value)  # YAML aliases can share one node many times: count every use
    except armexpr.ExpressionError as exc:
        raise ContentError(str(exc)) from None
    return value


def _yaml(text: str) -> object:
    import yaml  # PyYAML: only a template that loads YAML pays for the import

    try:
        return _plain(yaml.safe_load(text), 0, {})
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ContentError(f"not YAML{line} ({problem})") from None


def _plain(value: object, depth: int, done: dict[int, object]) -> object:
    """YAML's values as JSON values (keys as strings, timestamps and binary as text). A node that aliases share is
    converted once and stays shared (``done``), so the work is linear in the file, not in what it expands to."""
    if depth > armexpr.MAX_VALUE_DEPTH:
        raise ContentError(f"nested more than {armexpr.MAX_VALUE_DEPTH} levels deep")
    if isinstance(value, (dict, list)) and id(value) in done:
        return done[id(value)]
    if isinstance(value, dict):
        out: dict[str, object] = {}
        done[id(value)] = out
        out.update({_key(k): _plain(v, depth + 1, done) for k, v in value.items()})
        return out
    if isinstance(value, list):
        items: list[object] = []
        done[id(value)] = items
        items.extend(_plain(v, depth + 1, done) for v in value)
        return items
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and value != value:  # .nan has no JSON form
        return "NaN"
    return value


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    return str(key)


def select(value: object, path: str) -> object:
    """The part of ``value`` that ``path`` names. ContentError when it names nothing; UnsupportedPath for a
    wildcard, filter, slice or recursive descent."""
    text = path.strip()
    if text in ("", "$"):
        return value
    rest = text[1:] if text.startswith("$") else text
    if rest and rest[0] not in ".[":
        rest = "." + rest  # Bicep accepts 'a.b' as well as '$.a.b'
    pos = 0
    while pos < len(rest):
        if rest.startswith("..", pos) or rest[pos:].lstrip(".[").startswith(("*", "?", "(")):
            raise UnsupportedPath(f"aibx does not evaluate the JSONPath {path}")
        m = _STEP.match(rest, pos)
        if m is None:
            raise UnsupportedPath(f"aibx does not evaluate the JSONPath {path}")
        name = m.group(1) or m.group(2) or m.group(3)
        if m.group(4) is not None:
            index = int(m.group(4))
            if not isinstance(value, list) or not -len(value) <= index < len(value):
                raise ContentError(f"the path {path} selects nothing (no item [{index}])")
            value = value[index]
        else:
            if not isinstance(value, dict) or name not in value:
                raise ContentError(f"the path {path} selects nothing (no property '{name}')")
            value = value[name]
        pos = m.end()
    return value
