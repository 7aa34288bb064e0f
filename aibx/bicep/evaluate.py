"""Bicep expressions to values, with the offset where each part was written.

Operators follow Bicep (``&&``/``||``/``??``/``?:`` evaluate only what they need); functions are ARM's, through
``armexpr.call_function``, except the few Bicep has of its own (``range``, ``loadTextContent`` ...). An
``Unresolved`` operand makes the result Unresolved; a misuse raises ``EvalError`` with the offset to report.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import TYPE_CHECKING

from aibx import armexpr
from aibx.bicep import content
from aibx.bicep import syntax as syn
from aibx.bicep.values import MAX_LOCAL_FILE, MAX_LOOP_ITEMS, EvalError, Runtime, Spots, Val, base64_of
from aibx.document import Unresolved
from aibx.jsonc import JsonPath

if TYPE_CHECKING:
    from aibx.bicep.files import BicepFile


_PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9_.\-]*>")


def evaluate(f: BicepFile, node: syn.Node, env: dict[str, Val], path: JsonPath) -> Val:
    return _Evaluator(f, env).eval(node, path)


def sub_spots(spots: Spots, prefix: JsonPath) -> Spots:
    n = len(prefix)
    return {p[n:]: o for p, o in spots.items() if p[:n] == prefix}


def nest(val: Val, prefix: JsonPath, into: Val) -> None:
    """Record ``val``'s spots (and its unknown keys) under ``prefix`` in ``into``."""
    for p, o in val.spots.items():
        key = (*prefix, *p)
        into.spots[key] = o
    for p, o in val.keys.items():
        key = (*prefix, *p)
        into.keys[key] = o
    for p, u in val.unknown_keys.items():
        key = (*prefix, *p)
        into.unknown_keys[key] = u


def _find_key(obj: dict[str, object], name: str) -> str | None:
    if name in obj:
        return name
    return next((k for k in obj if k.lower() == name.lower()), None)


def make_lambda(f: BicepFile, node: syn.Lambda, env: dict[str, Val]) -> armexpr.Lambda:
    """A Bicep lambda (or user-defined function) as ARM's ``Lambda``, which ARM's map(), filter(), reduce(),
    sort(), toObject() ... call: the same functions for both languages."""

    def invoke(*values: object) -> object:
        inner = dict(env)
        for name, value in zip(node.params, values, strict=True):
            inner[name] = Val(value, {(): node.pos})
        return _Evaluator(f, inner).eval(node.body, ()).value

    return armexpr.Lambda(tuple(node.params), invoke)


class _Evaluator:
    def __init__(self, f: BicepFile, env: dict[str, Val]) -> None:
        self.f = f
        self.env = env

    def unresolved(self, node: syn.Node, reason: str) -> Val:
        return Val(self.f.unresolved(node, reason), {(): node.pos})

    def eval(self, node: syn.Node, path: JsonPath) -> Val:
        if isinstance(node, syn.Literal):
            return Val(node.value, {(): node.pos})
        if isinstance(node, syn.Name):
            if node.name in self.env:
                return self.env[node.name]
            return self.f.lookup(node.name, node, path)
        method = getattr(self, "eval_" + type(node).__name__.lower(), None)
        if method is None:
            raise EvalError(f"aibx cannot evaluate {type(node).__name__}", node.pos)
        return method(node, path)

    # ------------------------------------------------------------------------------------------- literals
    def eval_template(self, node: syn.Template, path: JsonPath) -> Val:
        out: list[str] = []
        unknown: Unresolved | None = None
        for part in node.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self.eval(part, path).value
            if isinstance(value, Unresolved):
                unknown = unknown or value
                # a parameter without a value stays its <name> placeholder; anything else its Bicep text
                bare = isinstance(part, syn.Name) and _PLACEHOLDER.fullmatch(value.text)
                out.append(value.text if bare else "${" + self.f.snippet(part) + "}")
                continue
            out.append(armexpr.to_string(_plain(value)))
        if unknown is not None:
            return Val(Unresolved("".join(out), unknown.reason, unknown.reported), {(): node.pos})
        return Val("".join(out), {(): node.pos})

    def eval_obj(self, node: syn.Obj, path: JsonPath) -> Val:
        result: dict[str, object] = {}
        val = Val(result, {(): node.pos})
        for prop in node.props:
            if prop.spread:  # ...value: its properties here, later ones winning (Bicep's shallowMerge)
                spread = self.spread(prop.value, path, dict)
                if isinstance(spread.value, Unresolved):
                    return spread
                assert isinstance(spread.value, dict)
                for k, v in spread.value.items():
                    result.pop(k, None)  # the key moves to where the spread put it, as in a merge
                    result[k] = v
                    val.spots = {p: o for p, o in val.spots.items() if p[:1] != (k,)}
                    val.spots[(k,)] = spread.spots.get((k,), prop.value.pos)
                nest(Val(None, {p: o for p, o in spread.spots.items() if len(p) > 1}, spread.keys), (), val)
                continue
            key = prop.key
            unknown: Unresolved | None = None
            if not isinstance(key, str):
                k = self.eval(key, path).value
                if isinstance(k, Unresolved):
                    unknown = k
                    key = k.text
                elif isinstance(k, str):
                    key = k
                else:
                    raise EvalError(f"a property name must be a string, not {json.dumps(_plain(k))[:40]}", prop.key_pos)
            child_path = (*path, key)
            try:
                child = self.eval(prop.value, child_path)
            except EvalError as exc:
                self.f.add(exc.pos, "AIB006", exc.message, child_path)
                child = Val(Unresolved(self.f.snippet(prop.value), exc.message, reported=True), {(): prop.value.pos})
            result[key] = child.value
            nest(child, (key,), val)
            val.spots.setdefault((key,), prop.value.pos)
            val.keys[(key,)] = prop.key_pos
            if unknown is not None:
                val.unknown_keys[(key,)] = Unresolved(key, unknown.reason, unknown.reported)
        return val

    def eval_arr(self, node: syn.Arr, path: JsonPath) -> Val:
        items: list[object] = []
        val = Val(items, {(): node.pos})
        for n, item in enumerate(node.items):
            i = len(items)
            if n in node.spreads:  # ...value: its items here
                spread = self.spread(item, (*path, i), list)
                if isinstance(spread.value, Unresolved):
                    return spread
                assert isinstance(spread.value, list)
                for j, v in enumerate(spread.value):
                    items.append(v)
                    nest(Val(None, sub_spots(spread.spots, (j,)), sub_spots(spread.keys, (j,))), (i + j,), val)
                    val.spots.setdefault((i + j,), item.pos)
                continue
            child = self.eval(item, (*path, i))
            items.append(child.value)
            nest(child, (i,), val)
            val.spots.setdefault((i,), item.pos)
        return val

    def spread(self, node: syn.Node, path: JsonPath, kind: type) -> Val:
        """The operand of ``...``: an object in an object, an array in an array (else an error); Unresolved makes
        the whole object or array unknown, as ARM's shallowMerge() and flatten() of it would be."""
        val = self.eval(node, path)
        if isinstance(val.value, (Unresolved, kind)):
            return val
        what = "an object" if kind is dict else "an array"
        raise EvalError(f"the spread operator ... in {what} takes {what}, not {_kind(_plain(val.value))}", node.pos)

    def eval_nestedref(self, node: syn.NestedRef, path: JsonPath) -> Val:
        from aibx.bicep.resources import nested_reference

        return Val(nested_reference(self.f, node), {(): node.pos})

    def eval_lambda(self, node: syn.Lambda, path: JsonPath) -> Val:
        return Val(make_lambda(self.f, node, self.env), {(): node.pos})

    def eval_unsupported(self, node: syn.Unsupported, path: JsonPath) -> Val:
        return self.unresolved(node, f"aibx does not evaluate {node.what}; {_fallback()}")

    def eval_conditional(self, node: syn.Conditional, path: JsonPath) -> Val:
        return self.unresolved(node, "an `if` condition belongs to a resource or module")

    # ------------------------------------------------------------------------------------------- access
    def eval_member(self, node: syn.Member, path: JsonPath) -> Val:
        target = self.eval(node.target, path)
        return self.member(target, node.name, node.safe, node)

    def member(self, target: Val, name: str, safe: bool, node: syn.Node) -> Val:
        value = target.value
        if isinstance(value, Unresolved):
            return target
        if value is None and safe:
            return Val(None, {(): node.pos})
        if isinstance(value, Runtime):
            return Val(value.member(name), {(): node.pos})
        if isinstance(value, dict):
            key = _find_key(value, name)
            if key is None:
                missing = getattr(type(value), "__missing__", None)
                if missing is not None:  # resourceGroup() with parts unknown
                    return Val(armexpr.access(value, name), {(): node.pos})
                if safe:
                    return Val(None, {(): node.pos})
                raise EvalError(f"the object has no property '{name}' (use .? for an optional one)", node.pos)
            return Val(value[key], sub_spots(target.spots, (key,)) or {(): node.pos}, sub_spots(target.keys, (key,)))
        if safe and value is None:
            return Val(None, {(): node.pos})
        raise EvalError(f"cannot read '.{name}' of {_kind(value)}", node.pos)

    def eval_index(self, node: syn.Index, path: JsonPath) -> Val:
        target = self.eval(node.target, path)
        index = self.eval(node.index, path).value
        value = target.value
        if isinstance(value, Unresolved):
            return target
        if isinstance(index, Unresolved):
            return Val(index, {(): node.pos})
        if isinstance(index, str):
            return self.member(target, index, node.safe, node)
        if isinstance(value, list) and isinstance(index, int) and not isinstance(index, bool):
            if not 0 <= index < len(value):
                if node.safe:
                    return Val(None, {(): node.pos})
                raise EvalError(f"index {index} is outside the array of length {len(value)}", node.pos)
            return Val(
                value[index], sub_spots(target.spots, (index,)) or {(): node.pos}, sub_spots(target.keys, (index,))
            )
        if value is None and node.safe:
            return Val(None, {(): node.pos})
        raise EvalError(f"cannot take [{json.dumps(_plain(index))[:30]}] of {_kind(value)}", node.pos)

    # ------------------------------------------------------------------------------------------- operators
    def eval_unary(self, node: syn.Unary, path: JsonPath) -> Val:
        arg = self.eval(node.arg, path).value
        if isinstance(arg, Unresolved):
            return Val(arg, {(): node.pos})
        if node.op == "!":
            if not isinstance(arg, bool):
                raise EvalError(f"'!' needs true or false, not {_kind(arg)}", node.pos)
            return Val(not arg, {(): node.pos})
        if node.op == "-":
            if isinstance(arg, bool) or not isinstance(arg, int):
                raise EvalError(f"'-' needs an integer, not {_kind(arg)}", node.pos)
            return Val(-arg, {(): node.pos})
        raise EvalError(f"unknown operator {node.op}", node.pos)

    def eval_binary(self, node: syn.Binary, path: JsonPath) -> Val:
        op = node.op
        left = self.eval(node.left, path)
        lv = left.value
        if op == "??":
            return left if lv is not None else self.eval(node.right, path)
        if isinstance(lv, Unresolved):
            return Val(lv, {(): node.pos})
        if op in ("&&", "||"):
            if not isinstance(lv, bool):
                raise EvalError(f"'{op}' needs true or false, not {_kind(lv)}", node.pos)
            if (op == "&&" and not lv) or (op == "||" and lv):
                return Val(lv, {(): node.pos})
        rv = self.eval(node.right, path).value
        if isinstance(rv, Unresolved):
            return Val(rv, {(): node.pos})
        return Val(_binary(op, _plain(lv), _plain(rv), node), {(): node.pos})

    def eval_ternary(self, node: syn.Ternary, path: JsonPath) -> Val:
        cond = self.eval(node.cond, path).value
        if isinstance(cond, Unresolved):
            return Val(cond, {(): node.pos})
        if not isinstance(cond, bool):
            raise EvalError(f"the condition of '?:' must be true or false, not {_kind(cond)}", node.cond.pos)
        return self.eval(node.then if cond else node.other, path)

    # ------------------------------------------------------------------------------------------- loops
    def eval_for(self, node: syn.For, path: JsonPath) -> Val:
        source = self.eval(node.iterable, path)
        items = source.value
        if isinstance(items, Unresolved):
            return Val(items, {(): node.pos})
        if isinstance(items, dict):
            raise EvalError("a for loop needs an array (use items() for an object)", node.iterable.pos)
        if not isinstance(items, list):
            raise EvalError(f"a for loop needs an array, not {_kind(items)}", node.iterable.pos)
        if len(items) > MAX_LOOP_ITEMS:
            raise EvalError(f"aibx does not loop over more than {MAX_LOOP_ITEMS} items", node.iterable.pos)
        out: list[object] = []
        val = Val(out, {(): node.pos})
        for i, item in enumerate(items):
            env = dict(self.env)
            if node.item:
                env[node.item] = Val(item, sub_spots(source.spots, (i,)) or {(): node.iterable.pos})
            if node.index:
                env[node.index] = Val(i, {(): node.pos})
            inner = _Evaluator(self.f, env)
            if node.condition is not None:
                cond = inner.eval(node.condition, path).value
                if cond is False:
                    continue
                if not isinstance(cond, (bool, Unresolved)):
                    raise EvalError(f"the loop's if condition must be true or false, not {_kind(cond)}", node.pos)
            child = inner.eval(node.body, (*path, len(out)))
            nest(child, (len(out),), val)
            out.append(child.value)
        return val

    # ------------------------------------------------------------------------------------------- functions
    def eval_call(self, node: syn.Call, path: JsonPath) -> Val:
        if node.target is not None:  # kv.getSecret('x'), storage.listKeys()
            return self.unresolved(node, f"{node.name}() on a resource is only known to Azure at deployment")
        name = node.name.lower()
        declared = self.f.decls.get(node.name)
        if declared is not None and declared.kind == "func" and isinstance(declared.value, syn.Lambda):
            values = [self.eval(a, path).value for a in node.args]
            if len(values) != len(declared.value.params):
                raise EvalError(f"{node.name}() takes {len(declared.value.params)} argument(s)", node.pos)
            return Val(make_lambda(self.f, declared.value, {})(*values), {(): node.pos})
        special = _SPECIAL.get(name)
        if special is not None:
            return special(self, node, path)
        args = [self.eval(a, path) for a in node.args]
        values = [_plain(a.value) for a in args]
        original = self.f.snippet(node)
        try:
            result = armexpr.call_function(node.name, values, self.f.scope, original)
        except armexpr.ExpressionError as exc:
            raise EvalError(str(exc), node.pos) from None
        val = Val(result, {(): node.pos})
        if name == "union" and all(isinstance(v, dict) for v in values):
            for a in args:
                nest(Val(None, {k: o for k, o in a.spots.items() if k}, a.keys), (), val)
        elif name == "concat" and all(isinstance(v, list) for v in values):
            shift = 0
            for a, v in zip(args, values, strict=True):
                for p, o in a.spots.items():
                    if p:
                        moved = (p[0] + shift, *p[1:])  # type: ignore[operator]
                        val.spots[moved] = o
                shift += len(v)  # type: ignore[arg-type]
        return val

    def args(self, node: syn.Call, path: JsonPath, low: int, high: int) -> list[object]:
        if not low <= len(node.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise EvalError(f"{node.name}() takes {want} arguments, got {len(node.args)}", node.pos)
        return [self.eval(a, path).value for a in node.args]

    def fn_any(self, node: syn.Call, path: JsonPath) -> Val:
        self.args(node, path, 1, 1)
        return self.eval(node.args[0], path)

    def fn_scope(self, node: syn.Call, path: JsonPath) -> Val:
        """resourceGroup('name') / resourceGroup('sub', 'name') / subscription('id'): another scope."""
        values = self.args(node, path, 0, 2)
        if not values:
            return self.eval_builtin(node, path)
        unknown = next((v for v in values if isinstance(v, Unresolved)), None)
        if unknown is not None:
            return Val(unknown, {(): node.pos})
        if not all(isinstance(v, str) for v in values):
            raise EvalError(f"{node.name}() takes strings", node.pos)
        ctx = self.f.scope.context
        strs = [str(v) for v in values]
        if node.name.lower() == "subscription":
            return Val({"subscriptionId": strs[0], "id": f"/subscriptions/{strs[0]}"}, {(): node.pos})
        sub = strs[0] if len(strs) == 2 else ctx.subscription_id
        rg = strs[-1]
        known: dict[str, object] = {"name": rg}
        if sub is not None:
            known["subscriptionId"] = sub
            known["id"] = f"/subscriptions/{sub}/resourceGroups/{rg}"
        return Val(Runtime(known, f"resource group {rg}"), {(): node.pos})

    def eval_builtin(self, node: syn.Call, path: JsonPath) -> Val:
        try:
            result = armexpr.call_function(node.name, [], self.f.scope, self.f.snippet(node))
        except armexpr.ExpressionError as exc:
            raise EvalError(str(exc), node.pos) from None
        return Val(result, {(): node.pos})

    def fn_load(self, node: syn.Call, path: JsonPath) -> Val:
        """loadTextContent / loadFileAsBase64 / loadJsonContent / loadYamlContent: a file beside the .bicep file."""
        name = node.name.lower()
        values = self.args(node, path, 1, 3)
        rel = values[0]
        if isinstance(rel, Unresolved):
            return Val(rel, {(): node.pos})
        if not isinstance(rel, str):
            raise EvalError(f"{node.name}() takes a file path", node.pos)
        target = self.f.session.local_path(self.f.folder, rel)
        if isinstance(target, str):
            return self.unresolved(node, target)
        try:  # a regular file only: /dev/zero or a pipe would never end
            info = os.stat(target)
            if not stat.S_ISREG(info.st_mode):
                raise EvalError(f"{node.name}('{rel}'): not a regular file", node.pos)
            if info.st_size > MAX_LOCAL_FILE:
                raise EvalError(f"{node.name}('{rel}'): larger than Bicep's limit", node.pos)
            data = target.read_bytes()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise EvalError(f"{node.name}('{rel}'): {reason}", node.pos) from None
        if name == "loadfileasbase64":
            return Val(base64_of(data), {(): node.pos})
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise EvalError(f"{node.name}('{rel}'): not UTF-8 text", node.pos) from None
        if name == "loadtextcontent":
            return Val(text, {(): node.pos})
        return self.loaded_content(node, rel, text, values[1] if len(values) > 1 else None)

    def loaded_content(self, node: syn.Call, rel: str, text: str, selector: object) -> Val:
        """loadJsonContent / loadYamlContent: the file's value, or the part the JSONPath selects."""
        kind = "yaml" if node.name.lower() == "loadyamlcontent" else "json"
        if isinstance(selector, Unresolved):
            return Val(selector, {(): node.pos})
        if selector is not None and not isinstance(selector, str):
            raise EvalError(f"{node.name}(): the path must be a string", node.pos)
        try:
            value = content.parse(kind, text)
            value = content.select(value, selector) if selector is not None else value
        except content.UnsupportedPath as exc:
            return self.unresolved(node, str(exc))
        except content.ContentError as exc:
            raise EvalError(f"{node.name}('{rel}'): {exc}", node.pos) from None
        return Val(value, {(): node.pos})

    def fn_environment_variable(self, node: syn.Call, path: JsonPath) -> Val:
        values = self.args(node, path, 1, 2)
        if not isinstance(values[0], str):
            return self.unresolved(node, "readEnvironmentVariable() takes a name")
        value = os.environ.get(values[0])
        if value is None:
            if len(values) == 2:
                return Val(values[1], {(): node.pos})
            return self.unresolved(node, f"the environment variable {values[0]} is not set")
        if len(value) >= 4:  # an environment value is treated as a secret
            self.f.session.secrets.append(value)
            self.f.session.secret_names.setdefault(value, values[0])
        return Val(value, {(): node.pos})

    def fn_unknown(self, node: syn.Call, path: JsonPath) -> Val:
        return self.unresolved(node, f"{node.name}() is only known at deployment")


_SPECIAL = {
    "any": _Evaluator.fn_any,
    "resourcegroup": _Evaluator.fn_scope,
    "subscription": _Evaluator.fn_scope,
    "loadtextcontent": _Evaluator.fn_load,
    "loadfileasbase64": _Evaluator.fn_load,
    "loadjsoncontent": _Evaluator.fn_load,
    "loadyamlcontent": _Evaluator.fn_load,
    "readenvironmentvariable": _Evaluator.fn_environment_variable,
    "getsecret": _Evaluator.fn_unknown,
    "externalinput": _Evaluator.fn_unknown,
}


def _fallback() -> str:
    from aibx.bicep.values import FALLBACK

    return FALLBACK


def _plain(value: object) -> object:
    """A value for ARM's functions: another resource as its ID, a module as its name."""
    if isinstance(value, Runtime):
        return value.plain()
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return "a resource" if isinstance(value, Runtime) else "a value"


def _binary(op: str, a: object, b: object, node: syn.Node) -> object:
    if op in ("&&", "||"):
        if not isinstance(b, bool):
            raise EvalError(f"'{op}' needs true or false, not {_kind(b)}", node.pos)
        return b
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("=~", "!~"):
        if not (isinstance(a, str) and isinstance(b, str)):
            raise EvalError(f"'{op}' compares strings", node.pos)
        same = a.lower() == b.lower()
        return same if op == "=~" else not same
    if op in ("<", "<=", ">", ">="):
        if isinstance(a, str) and isinstance(b, str):
            c = (a > b) - (a < b)
        elif _is_int(a) and _is_int(b):
            c = (a > b) - (a < b)  # type: ignore[operator]
        else:
            raise EvalError(f"'{op}' compares two integers or two strings", node.pos)
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
    names = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod"}
    if op in names:
        if not (_is_int(a) and _is_int(b)):
            hint = " (join strings with '${a}${b}' or concat())" if op == "+" else ""
            raise EvalError(f"'{op}' needs two integers, not {_kind(a)} and {_kind(b)}{hint}", node.pos)
        try:
            return armexpr.call_function(names[op], [a, b], armexpr.Scope(), op)
        except armexpr.ExpressionError as exc:
            raise EvalError(str(exc), node.pos) from None
    raise EvalError(f"aibx does not know the operator {op}", node.pos)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b
