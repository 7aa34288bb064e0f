"""The value of a Bicep ``param``: ``-p`` over parameter files (``.bicepparam`` or ARM JSON) over module
arguments over the default; checked against its type and decorators (``@allowed``, ``@minLength`` ...); secure
ones (``@secure()``) kept out of every message."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aibx.bicep import syntax as syn
from aibx.bicep.values import Supplied, Val
from aibx.document import Unresolved
from aibx.loader import COMMAND_LINE, _named_secret_strings

if TYPE_CHECKING:
    from aibx.bicep.files import BicepFile

_TYPES: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "string": ("a string", str),
    "int": ("an integer", int),
    "bool": ("true or false", bool),
    "object": ("an object", dict),
    "array": ("an array", list),
}
_EXAMPLES = {"int": "3", "bool": "true", "array": '["a","b"]', "object": '{"k":"v"}'}


def base_type(decl: syn.Declaration) -> tuple[str, bool]:
    """The primitive type of a param (``string``, ``int`` ... or ``""`` for any other) and whether it is
    nullable (``string?``)."""
    text = decl.type_text.strip()
    nullable = text.endswith("?")
    text = text.rstrip("?").strip()
    if text.endswith("[]"):
        return "array", nullable
    return (text if text in _TYPES else ""), nullable


def parameter_value(f: BicepFile, decl: syn.Declaration) -> Val:
    ptype, nullable = base_type(decl)
    secure = "secure" in decl.decorators
    supplied = f.supplied.get(decl.name)
    if supplied is not None:
        value = _converted(f, decl, supplied, ptype, secure)
        val = Val(value, supplied.spots or {(): (supplied.file, supplied.line, supplied.column)})
    elif decl.value is not None:
        val = f.eval_or_unresolved(decl.value, {}, ())
    elif nullable:
        val = Val(None, {(): decl.pos})
    else:
        hint = f"pass -p {decl.name}=VALUE" + (" or a parameters file" if f.from_command_line else "")
        if not f.from_command_line:
            hint = "the module is given no value for it"
        # written <name>, as a placeholder of a JSON template: -p name=VALUE fills both, and translations make it a
        # parameter again
        val = Val(Unresolved(f"<{decl.name}>", f"parameter '{decl.name}' has no value; {hint}"), {(): decl.pos})
    if secure:
        f.session.secure_parameters.add(decl.name)
        for where, secret in _named_secret_strings(decl.name, val.value):
            f.session.secrets.append(secret)
            f.session.secret_names.setdefault(secret, where)
    if not isinstance(val.value, Unresolved):
        _check(f, decl, val, supplied, ptype, secure)
    return val


def _converted(f: BicepFile, decl: syn.Declaration, supplied: Supplied, ptype: str, secure: bool) -> object:
    """A -p value as the param's type: JSON for int, bool, array and object; text for the rest."""
    value = supplied.value
    if supplied.file != COMMAND_LINE or not isinstance(value, str) or ptype == "string":
        return value
    if not ptype:  # a type aibx does not check (user-defined, resourceInput<>): JSON when it is JSON
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    try:
        converted = json.loads(value)
    except (ValueError, RecursionError):
        converted = None
    expect = _TYPES[ptype][1]
    if converted is None or not isinstance(converted, expect) or (ptype == "int" and isinstance(converted, bool)):
        got = "something else" if secure else f'"{value}"'
        f.session.add(
            COMMAND_LINE,
            None,
            "AIB007",
            f"-p {decl.name}: parameter '{decl.name}' is of type {ptype} and needs a JSON value such as "
            f"{_EXAMPLES[ptype]}, got {got}",
        )
        return Unresolved(decl.name, f"-p {decl.name} is not {_TYPES[ptype][0]}", reported=True)
    return converted


def _check(f: BicepFile, decl: syn.Declaration, val: Val, supplied: Supplied | None, ptype: str, secure: bool) -> None:
    value = val.value
    shown = "the value" if secure else _short(value)
    problems: list[str] = []
    if ptype and value is not None:
        text, expect = _TYPES[ptype]
        if not isinstance(value, expect) or (ptype == "int" and isinstance(value, bool)):
            problems.append(f"{shown} is not {text} (the parameter is of type {ptype})")
    allowed = _decorator_value(f, decl, "allowed")
    if isinstance(allowed, list) and value is not None:
        candidates = value if isinstance(value, list) and ptype == "array" else [value]
        if any(c not in allowed for c in candidates):
            listed = "" if secure else f": {', '.join(_short(a) for a in allowed)}"
            problems.append(f"{shown} is not one of its allowed values{listed}")
    for name, test, words in (
        ("minlength", lambda v, n: len(v) < n, "shorter than its @minLength"),
        ("maxlength", lambda v, n: len(v) > n, "longer than its @maxLength"),
        ("minvalue", lambda v, n: v < n, "below its @minValue"),
        ("maxvalue", lambda v, n: v > n, "above its @maxValue"),
    ):
        limit = _decorator_value(f, decl, name)
        if not isinstance(limit, int):
            continue
        sized = isinstance(value, (str, list)) if "length" in name else isinstance(value, int)
        if sized and not isinstance(value, bool) and test(value, limit):
            problems.append(f"{shown} is {words} {limit}")
    for problem in problems:
        message = f"parameter '{decl.name}': {problem}"
        if supplied is None:
            f.add(decl.value.pos if decl.value else decl.pos, "AIB007", message)
        elif supplied.file == COMMAND_LINE:
            f.session.add(COMMAND_LINE, None, "AIB007", f"-p {decl.name}: {problem}")
        else:
            f.session.add(supplied.file, None, "AIB007", message, line=supplied.line, column=supplied.column)


def _decorator_value(f: BicepFile, decl: syn.Declaration, name: str) -> object:
    args = decl.decorators.get(name)
    if not args:
        return None
    return f.eval_or_unresolved(args[0], {}, ()).value


def _short(value: object, limit: int = 60) -> str:
    text = value.text if isinstance(value, Unresolved) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
