"""More of Packer's HCL2 functions (the cty standard library Packer builds on), for hcl_eval.FUNCTIONS.

Only functions whose result is known when translating: pure string, collection, encoding, hash, number and
conversion functions, and the path functions that only compute text (``basename``, ``dirname``). ``try`` and
``can`` evaluate their arguments lazily, so they live in hcl_eval itself. Functions that read files, the clock of
the build or a secret store are not here: an error names them, as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from aibx.document import Unresolved
from aibx.translators.hcl_eval import (
    Context,
    EvalError,
    boolean,
    go_regex,
    number,
    parse_timestamp,
    to_string,
    type_name,
)


def _list(value: Any, fn: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise EvalError(f"{fn}: expected a list, got {type_name(value)}")


def _map(value: Any, fn: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise EvalError(f"{fn}: expected a map, got {type_name(value)}")


def _int(value: Any, fn: str) -> int:
    n = number(value)
    if not float(n).is_integer():
        raise EvalError(f"{fn}: expected a whole number, got {n}")
    return int(n)


def _regex(ctx: Context, pattern: Any, text: Any) -> Any:
    m = go_regex(to_string(pattern)).search(to_string(text))
    if m is None:
        raise EvalError("regex: the pattern did not match")
    return _groups(m)


def _groups(m: Any) -> Any:
    if m.re.groupindex:
        return {k: m.group(k) for k in m.re.groupindex}
    if m.re.groups:
        return list(m.groups())
    return m.group(0)


def _regexall(ctx: Context, pattern: Any, text: Any) -> list[Any]:
    return [_groups(m) for m in go_regex(to_string(pattern)).finditer(to_string(text))]


def _substr(ctx: Context, text: Any, offset: Any, length: Any) -> str:
    s, start, n = to_string(text), _int(offset, "substr"), _int(length, "substr")
    if start < 0:
        start = max(len(s) + start, 0)
    return s[start:] if n < 0 else s[start : start + n]


def _element(ctx: Context, lst: Any, i: Any) -> Any:
    items = _list(lst, "element")
    if not items:
        raise EvalError("element: the list is empty")
    return items[_int(i, "element") % len(items)]


def _lookup(ctx: Context, m: Any, key: Any, *default: Any) -> Any:
    mapping = _map(m, "lookup")
    k = to_string(key)
    if k in mapping:
        return mapping[k]
    if default:
        return default[0]
    raise EvalError(f'lookup: no key "{k}" and no default')


def _flatten(ctx: Context, lst: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(lst, "flatten"):
        out += _flatten(ctx, x) if isinstance(x, list) else [x]
    return out


def _distinct(ctx: Context, lst: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(lst, "distinct"):
        if x not in out:
            out.append(x)
    return out


def _slice(ctx: Context, lst: Any, start: Any, end: Any) -> list[Any]:
    items, a, b = _list(lst, "slice"), _int(start, "slice"), _int(end, "slice")
    if not 0 <= a <= b <= len(items):
        raise EvalError(f"slice: indexes {a}..{b} are out of range for {len(items)} items")
    return items[a:b]


def _range(ctx: Context, *args: Any) -> list[int | float]:
    if not 1 <= len(args) <= 3:
        raise EvalError("range takes 1 to 3 numbers: range(stop), range(start, stop) or range(start, stop, step)")
    nums = [number(a) for a in args]
    start, stop, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2 else 1)
    if step == 0 or abs((stop - start) / step) > 1024:
        raise EvalError("range: more than 1024 items, or a step of 0")
    out: list[int | float] = []
    x = start
    while (step > 0 and x < stop) or (step < 0 and x > stop):
        out.append(x)
        x += step
    return out


def _zipmap(ctx: Context, keys: Any, values: Any) -> dict[str, Any]:
    ks, vs = _list(keys, "zipmap"), _list(values, "zipmap")
    if len(ks) != len(vs):
        raise EvalError("zipmap: the lists have different lengths")
    return {to_string(k): v for k, v in zip(ks, vs, strict=True)}


def _coalescelist(ctx: Context, *lists: Any) -> list[Any]:
    for lst in lists:
        if _list(lst, "coalescelist"):
            return lst
    raise EvalError("coalescelist: no non-empty list")


def _jsondecode(ctx: Context, text: Any) -> Any:
    try:
        return json.loads(to_string(text))
    except ValueError as exc:
        raise EvalError(f"jsondecode: {exc}") from None


def _legacy_isotime(ctx: Context, *spec: Any) -> str:
    """Packer's legacy_isotime(format): the clock in a Go reference-time layout (2006-01-02T15:04:05Z07:00)."""
    layout = to_string(spec[0]) if spec else "2006-01-02T15:04:05Z07:00"
    return go_time_format(ctx.now, layout)


_GO_LAYOUT = [
    ("2006", "%Y"),
    ("Z07:00", "Z"),
    ("-07:00", "%z:"),
    ("-0700", "%z"),
    ("January", "%B"),
    ("Monday", "%A"),
    ("Jan", "%b"),
    ("Mon", "%a"),
    ("MST", "UTC"),
    ("01", "%m"),
    ("02", "%d"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("06", "%y"),
    ("PM", "%p"),
    ("_2", "%e"),
    ("1", "%-m"),
    ("2", "%-d"),
    ("3", "%-I"),
    ("4", "%-M"),
    ("5", "%-S"),
]
_GO_TOKEN = re.compile("|".join(re.escape(k) for k, _ in _GO_LAYOUT))


def go_time_format(now: datetime, layout: str) -> str:
    """``now`` (UTC) formatted with Go's reference-time ``layout``, as Packer's isotime does."""
    from datetime import timezone

    t = now.astimezone(timezone.utc)
    table = dict(_GO_LAYOUT)
    out: list[str] = []
    pos = 0
    for m in _GO_TOKEN.finditer(layout):
        out.append(layout[pos : m.start()].replace("%", "%%"))
        pos = m.end()
        code = table[m.group()]
        if code == "Z":
            out.append("Z")
        elif code == "%z:":
            out.append("+00:00")
        elif code.startswith("%-"):
            out.append(str(int(t.strftime("%" + code[2:]))))
        else:
            out.append(code)
    out.append(layout[pos:].replace("%", "%%"))
    return t.strftime("".join(out))


def _timeadd(ctx: Context, ts: Any, duration: Any) -> str:
    t = parse_timestamp(to_string(ts))
    return (t + timedelta(seconds=parse_duration(to_string(duration)))).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration: ``1h30m``, ``-5s``, ``250ms``."""
    m = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+)", text)
    if not m:
        raise EvalError(f"{text!r} is not a duration such as 1h30m")
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", m.group(2)))
    return -total if m.group(1) == "-" else total


def _fileset(ctx: Context, path: Any, pattern: Any) -> Any:
    """Packer's fileset(path, pattern): the files under ``path`` matching ``pattern``, relative to ``path``,
    sorted. Only inside the configuration's folder (no file is read, only names listed); elsewhere an open
    value, so what uses it is reported rather than read."""
    from pathlib import Path

    base = Path(ctx.path_cwd, to_string(path)).resolve()
    root = Path(ctx.path_cwd, ctx.path_root).resolve()
    pat = to_string(pattern)
    inside = base == root or root in base.parents
    if not inside or pat.startswith("/") or ".." in Path(pat).parts:
        return Unresolved(
            "<fileset>", f"fileset({to_string(path)!r}, {pat!r}) lists files outside the configuration's folder"
        )
    return sorted(p.relative_to(base).as_posix() for p in base.glob(pat) if p.is_file())[:10_000]


def _tonumber(ctx: Context, value: Any) -> Any:
    return None if value is None else number(value)


def _tostring(ctx: Context, value: Any) -> Any:
    if isinstance(value, (list, dict)):
        raise EvalError(f"tostring: cannot convert {type_name(value)} to a string")
    return None if value is None else to_string(value)


def _hash(algorithm: str) -> Callable[[Context, Any], str]:
    return lambda ctx, text: hashlib.new(algorithm, to_string(text).encode()).hexdigest()


def _trim(ctx: Context, text: Any, chars: Any) -> str:
    return to_string(text).strip(to_string(chars))


def _indent(ctx: Context, spaces: Any, text: Any) -> str:
    pad = " " * _int(spaces, "indent")
    return to_string(text).replace("\n", "\n" + pad)


def _title(ctx: Context, text: Any) -> str:
    return re.sub(r"\b([a-z])", lambda m: m.group(1).upper(), to_string(text))


def _max_min(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda ctx, *args: fn(number(a) for a in args)


def _sort(ctx: Context, lst: Any) -> list[str]:
    return sorted(to_string(x) for x in _list(lst, "sort"))


def _set_op(op: str) -> Callable[..., list[Any]]:
    def run(ctx: Context, first: Any, *rest: Any) -> list[Any]:
        out = _distinct(ctx, first)
        for other in rest:
            items = _list(other, op)
            if op == "setunion":
                out += [x for x in items if x not in out]
            elif op == "setintersection":
                out = [x for x in out if x in items]
            else:
                out = [x for x in out if x not in items]
        return out

    return run


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # strings
    "chomp": lambda ctx, s: re.sub(r"(\r\n|\n|\r)+$", "", to_string(s)),
    "trimspace": lambda ctx, s: to_string(s).strip(),
    "trim": _trim,
    "trimprefix": lambda ctx, s, p: to_string(s).removeprefix(to_string(p)),
    "trimsuffix": lambda ctx, s, p: to_string(s).removesuffix(to_string(p)),
    "title": _title,
    "strrev": lambda ctx, s: to_string(s)[::-1],
    "substr": _substr,
    "indent": _indent,
    "regex": _regex,
    "regexall": _regexall,
    "startswith": lambda ctx, s, p: to_string(s).startswith(to_string(p)),
    "endswith": lambda ctx, s, p: to_string(s).endswith(to_string(p)),
    "strcontains": lambda ctx, s, p: to_string(p) in to_string(s),
    "formatlist": lambda ctx, spec, *lists: _formatlist(ctx, spec, *lists),
    # collections
    "element": _element,
    "lookup": _lookup,
    "contains": lambda ctx, lst, v: v in _list(lst, "contains"),
    "keys": lambda ctx, m: sorted(_map(m, "keys")),
    "values": lambda ctx, m: [v for _k, v in sorted(_map(m, "values").items())],
    "flatten": _flatten,
    "distinct": _distinct,
    "compact": lambda ctx, lst: [x for x in _list(lst, "compact") if x not in (None, "")],
    "reverse": lambda ctx, lst: list(reversed(_list(lst, "reverse"))),
    "slice": _slice,
    "sort": _sort,
    "range": _range,
    "zipmap": _zipmap,
    "coalescelist": _coalescelist,
    "chunklist": lambda ctx, lst, n: [
        _list(lst, "chunklist")[i : i + _int(n, "chunklist")] for i in range(0, len(lst), max(_int(n, "chunklist"), 1))
    ],
    "index": lambda ctx, lst, v: _list(lst, "index").index(v),
    "setunion": _set_op("setunion"),
    "setintersection": _set_op("setintersection"),
    "setsubtract": _set_op("setsubtract"),
    # encoding
    "jsonencode": lambda ctx, v: json.dumps(v, separators=(",", ":")),
    "jsondecode": _jsondecode,
    "base64encode": lambda ctx, s: base64.b64encode(to_string(s).encode()).decode(),
    "base64decode": lambda ctx, s: base64.b64decode(to_string(s)).decode(),
    "urlencode": lambda ctx, s: quote(to_string(s), safe=""),
    # hashes
    "md5": _hash("md5"),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    # paths (text only: no file is read)
    "abspath": lambda ctx, p: os.path.abspath(os.path.join(ctx.path_cwd, to_string(p))),
    "basename": lambda ctx, p: posixpath.basename(to_string(p).rstrip("/")) or "/",
    "dirname": lambda ctx, p: posixpath.dirname(to_string(p).rstrip("/")) or ".",
    # time
    "legacy_isotime": _legacy_isotime,
    "timeadd": _timeadd,
    # numbers
    "abs": lambda ctx, n: abs(number(n)),
    "ceil": lambda ctx, n: math.ceil(number(n)),
    "floor": lambda ctx, n: math.floor(number(n)),
    "max": _max_min(max),
    "min": _max_min(min),
    "pow": lambda ctx, a, b: number(a) ** number(b),
    "signum": lambda ctx, n: (number(n) > 0) - (number(n) < 0),
    "parseint": lambda ctx, s, base: int(to_string(s), _int(base, "parseint")),
    "fileset": _fileset,
    # random values: new each time Packer runs
    "uuidv4": lambda ctx: Unresolved("<uuid>", "uuidv4() is a new random value each time Packer runs"),
    # conversions
    "tostring": _tostring,
    "tonumber": _tonumber,
    "tobool": lambda ctx, v: None if v is None else boolean(v),
    "tolist": lambda ctx, v: list(_list(v, "tolist")),
    "toset": _distinct,
    "tomap": lambda ctx, v: dict(_map(v, "tomap")),
}


def _formatlist(ctx: Context, spec: Any, *lists: Any) -> list[str]:
    from aibx.translators.hcl_eval import FUNCTIONS as BASE

    n = max((len(x) for x in lists if isinstance(x, list)), default=1)
    return [BASE["format"](ctx, spec, *[x[i] if isinstance(x, list) else x for x in lists]) for i in range(n)]


# Packer's other functions: aibx does not evaluate them (they read files, secret stores or the network, or are
# rarely used), so their value is open, and what uses it is reported instead of the whole configuration refused
PACKER_ONLY = frozenset(
    [
        "aws_secretsmanager",
        "aws_secretsmanager_raw",
        "base64gzip",
        "bcrypt",
        "cidrhost",
        "cidrnetmask",
        "cidrsubnet",
        "cidrsubnets",
        "convert",
        "csvdecode",
        "file",
        "filebase64",
        "filebase64sha256",
        "filebase64sha512",
        "fileexists",
        "filemd5",
        "filesha1",
        "filesha256",
        "filesha512",
        "legacy_strftime",
        "log",
        "one",
        "pathexpand",
        "rsadecrypt",
        "setproduct",
        "sum",
        "templatefile",
        "textdecodebase64",
        "textencodebase64",
        "transpose",
        "uuidv5",
        "vault",
        "yamldecode",
        "yamlencode",
        "alltrue",
        "anytrue",
    ]
)
