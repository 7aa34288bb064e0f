"""Azure Resource Manager template expressions: ``"[concat(parameters('a'), '-x')]"``.

Covers what real image templates use: ``parameters``, ``variables``, ``concat``, ``format``, ``resourceId``,
``subscription()``, ``resourceGroup()``, ``toLower``/``toUpper``, ``string``, ``replace``, ``uniqueString``,
``take``/``substring`` and friends, ``if``, arithmetic and comparisons, literals, property access and ``[[``
escapes. Anything that needs Azure (``reference()``, ``utcNow()``, ``guid()``, ``resourceGroup().id`` when
nobody gave it, a parameter without a value) evaluates to ``Unresolved``, which carries the original text and
the reason.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import quote, unquote, urljoin

from aibx.document import OpenValue, Unresolved

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[(),.\[\]])
    )""",
    re.VERBOSE,
)


MAX_NESTING = 64  # function calls inside function calls; ARM templates rarely go past 5
# ARM's integers are 64-bit: a literal or an arithmetic result outside this range is an error
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# aibx builds no longer string (padLeft): ARM's whole request is limited to 4 MB
MAX_BUILT_STRING = 4 * 1024 * 1024
MAX_COPIES = 800  # ARM's limit on the count of a copy loop
# calls of user-defined functions in one template: functions that each call the next twice would otherwise make
# 2**depth calls; real templates make a few dozen
MAX_FUNCTION_CALLS = 10_000
# Bounds on what one template may make aibx compute (issue 11: forty variables that each concat() the last twice ate
# all memory). A value is at most MAX_BUILT_STRING characters and MAX_VALUE_ITEMS array items and object members,
# counted through every level, and nests at most MAX_VALUE_DEPTH deep; all strings the functions of one template
# build together are at most MAX_TOTAL_BUILT characters and items. ARM would refuse any of these (a 4 MB request).
MAX_VALUE_ITEMS = 100_000
MAX_VALUE_DEPTH = 128
MAX_TOTAL_BUILT = 64 * 1024 * 1024
_LIMIT_HINT = "ARM refuses a deployment over 4 MB; aibx stops there to keep its time and memory bounded"


class ExpressionError(ValueError):
    """The expression is malformed or misuses a function (a template error, not an unknown value)."""


class _NotEvaluated(Exception):
    """A function aibx knows but cannot compute exactly for these arguments: the value stays Unresolved."""


@dataclass
class DeploymentContext:
    """What Azure would supply at deployment; empty fields stay unresolved."""

    subscription_id: str | None = None
    resource_group: str | None = None
    location: str | None = None


@dataclass
class Scope:
    """Parameters and variables of one ARM deployment template."""

    parameters: Mapping[str, object] = field(default_factory=dict)
    variables: Mapping[str, object] = field(default_factory=dict)
    context: DeploymentContext = field(default_factory=DeploymentContext)
    # the current iteration of each property copy loop (copyIndex('name')), by loop name
    copy_index: Mapping[str, int] = field(default_factory=dict)
    # the template's user-defined functions, by lower-case ``namespace.member`` (see template_functions())
    functions: Mapping[str, object] = field(default_factory=dict)
    in_function: str | None = None  # the user-defined function whose body is being evaluated
    # calls of user-defined functions so far, shared with the scopes of their bodies (MAX_FUNCTION_CALLS)
    _function_calls: list[int] = field(default_factory=lambda: [0])
    _resolving: set[str] = field(default_factory=set)
    _resolved_variables: dict[str, object] = field(default_factory=dict)
    _built: int = 0  # characters and items the functions built so far (MAX_TOTAL_BUILT)


def check_size(value: object) -> None:
    """ExpressionError if ``value`` is bigger or deeper than aibx evaluates (see MAX_VALUE_ITEMS), counting a shared
    part each time it appears, as anything writing the value would. Iterative, and its cost is bounded: it stops
    at the first limit passed."""
    items = chars = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            chars += len(v)
            if chars > MAX_BUILT_STRING:
                raise ExpressionError(f"a value of more than {MAX_BUILT_STRING:,} characters; {_LIMIT_HINT}")
        elif isinstance(v, (list, dict)):
            if depth >= MAX_VALUE_DEPTH:
                raise ExpressionError(f"a value nested more than {MAX_VALUE_DEPTH} levels deep; {_LIMIT_HINT}")
            items += len(v)
            if items > MAX_VALUE_ITEMS:
                raise ExpressionError(f"a value of more than {MAX_VALUE_ITEMS:,} items; {_LIMIT_HINT}")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]") and not value.startswith("[[")


def is_well_formed(value: object) -> bool:
    """Whether ``value`` is ``[...]`` around a function call that parses (nothing is evaluated)."""
    if not is_expression(value):
        return False
    assert isinstance(value, str)
    try:
        tokens = _tokenize(value[1:-1])
        parser = _Parser(tokens, value)
        node = parser.expr()
    except ExpressionError:
        return False
    return parser.pos == len(tokens) and isinstance(node, (_Call, _Access))


def evaluate_string(value: str, scope: Scope) -> object:
    """Evaluate one JSON string as ARM does: ``[expr]`` is an expression, ``[[`` escapes a literal ``[``."""
    if value.startswith("[["):
        return value[1:]
    if not is_expression(value):
        return value
    return evaluate(value[1:-1], scope, original=value)


def evaluate(text: str, scope: Scope, *, original: str | None = None) -> object:
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    node = parser.expr()
    if parser.pos != len(tokens):
        raise ExpressionError(f"unexpected '{tokens[parser.pos][1]}' in expression")
    try:
        result = _Evaluator(scope, original or f"[{text}]").eval(node)
    except RecursionError:  # variables that refer to variables, hundreds deep
        raise ExpressionError("the expression (or the variables it uses) is nested too deeply") from None
    if isinstance(result, Lambda):
        raise ExpressionError(f"a lambda is not a value: lambda() is an argument of {_LAMBDA_TAKERS_TEXT} only")
    if isinstance(result, Unresolved) and original is not None:
        return Unresolved(original, result.reason, result.reported)
    return result


def resolve_tree(value: object, scope: Scope) -> object:
    """Evaluate every expression string in a JSON tree (objects, arrays, strings)."""
    if isinstance(value, str):
        return evaluate_string(value, scope)
    if isinstance(value, dict):
        return {k: resolve_tree(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_tree(v, scope) for v in value]
    return value


# ----------------------------------------------------------------------------------------------- parsing
def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"unexpected character {text[pos:].lstrip()[:1]!r} in expression")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    if not tokens:
        raise ExpressionError("empty expression")
    return tokens


@dataclass
class _Call:
    name: str
    args: list[object]


@dataclass
class _Access:
    target: object
    key: object  # a node (index) or a str (property)


@dataclass
class _Literal:
    value: object


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.text = text

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value: str) -> None:
        kind, got = self.peek()
        if got != value or kind not in ("punct",):
            raise ExpressionError(f"expected '{value}' but found {got or 'the end'!r} in '{self.text}'")
        self.pos += 1

    def _user_function_name(self) -> bool:
        """Whether the tokens after an identifier are ``.member(``, as in a call of ``namespace.member(...)``."""
        ahead = self.tokens[self.pos : self.pos + 3]
        return [(k, v if k == "punct" else "") for k, v in ahead] == [("punct", "."), ("ident", ""), ("punct", "(")]

    def expr(self, depth: int = 0) -> object:
        if depth > MAX_NESTING:
            raise ExpressionError(f"functions nested more than {MAX_NESTING} deep in '{self.text[:60]}...'")
        kind, value = self.peek()
        self.pos += 1
        node: object
        if kind == "string":
            node = _Literal(value[1:-1].replace("''", "'"))
        elif kind == "number":
            node = _Literal(float(value) if "." in value else _int64_literal(value))
        elif kind == "ident":
            if self._user_function_name():  # namespace.member(...): a user-defined function
                value = f"{value}.{self.tokens[self.pos + 1][1]}"
                self.pos += 2
            if self.peek()[1] != "(":
                if value.lower() in ("true", "false"):
                    return _Literal(value.lower() == "true")
                raise ExpressionError(f"'{value}' must be called as a function, e.g. {value}()")
            self.take("(")
            args: list[object] = []
            if self.peek()[1] != ")":
                args.append(self.expr(depth + 1))
                while self.peek()[1] == ",":
                    self.pos += 1
                    args.append(self.expr(depth + 1))
            self.take(")")
            node = _Call(value, args)
        else:
            raise ExpressionError(f"unexpected {value or 'end of expression'!r} in '{self.text}'")
        while self.peek()[1] in (".", "["):
            if self.peek()[1] == ".":
                self.pos += 1
                kind, name = self.peek()
                if kind != "ident":
                    raise ExpressionError(f"expected a property name after '.' in '{self.text}'")
                self.pos += 1
                node = _Access(node, name)
            else:
                self.pos += 1
                index = self.expr(depth + 1)
                self.take("]")
                node = _Access(node, index)
        return node


def _int64_literal(digits: str) -> int:
    if len(digits.lstrip("-")) > 19 or not INT_MIN <= int(digits) <= INT_MAX:
        raise ExpressionError(f"the number {digits[:24]}{'…' * (len(digits) > 24)} is outside ARM's 64-bit integers")
    return int(digits)


# ----------------------------------------------------------------------------------------------- evaluation
@dataclass
class Lambda:
    """An ARM ``lambda('x', 'y', body)`` value: ``invoke`` computes the body for one set of arguments.

    The ARM functions that take a lambda (filter, map, reduce, sort, toObject) only call it, so any evaluator can
    make one: aibx's ARM evaluator binds ``lambdaVariables()``, a Bicep evaluator its own lambda variables."""

    params: tuple[str, ...]
    invoke: Callable[..., object]

    def __call__(self, *args: object) -> object:
        if len(args) < len(self.params):
            raise ExpressionError(f"the lambda takes {len(self.params)} argument(s), got {len(args)}")
        return self.invoke(*args[: len(self.params)])


class _Evaluator:
    def __init__(self, scope: Scope, original: str) -> None:
        self.scope = scope
        self.original = original
        # the lambda variables in effect, innermost last (per evaluation: nothing is shared between expressions)
        self.frames: list[dict[str, object]] = []

    def make_lambda(self, args: list[object]) -> Lambda:
        if len(args) < 2:
            raise ExpressionError("lambda() takes parameter names and a body")
        names = [self.eval(a) for a in args[:-1]]
        if not all(isinstance(n, str) and n for n in names):
            raise ExpressionError("lambda(): the parameter names must be strings")
        body = args[-1]
        params = tuple(str(n) for n in names)

        def invoke(*values: object) -> object:
            self.frames.append(dict(zip(params, values, strict=True)))
            try:
                return self.eval(body)
            finally:
                self.frames.pop()

        return Lambda(params, invoke)

    def lambdavariables(self, name: object) -> object:
        if not isinstance(name, str):
            raise ExpressionError("lambdaVariables() takes a variable name")
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise ExpressionError(f"lambdaVariables('{name}') is used outside a lambda that declares it")

    def unresolved(self, reason: str) -> Unresolved:
        return Unresolved(self.original, reason)

    def eval(self, node: object) -> object:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Access):
            target = self.eval(node.target)
            key = node.key if isinstance(node.key, str) else self.eval(node.key)
            if isinstance(target, Unresolved):
                return target
            if isinstance(key, Unresolved):
                return key
            return _access(target, key)
        assert isinstance(node, _Call)
        name = node.name.lower()
        if "." in name:
            return self.user_function(node)
        func = _FUNCTIONS.get(name)
        if name in _NEEDS_AZURE:
            reason = _NEEDS_AZURE[name] or "is only known to Azure at deployment"
            return self.unresolved(f"{node.name}() {reason}")
        if func is None:
            return self.unresolved(f"aibx does not evaluate the function {node.name}()")
        if name == "lambda":  # lazy: the body is evaluated by the function that calls it
            return self.make_lambda(node.args)
        if name == "if":  # lazy: only the branch taken is evaluated
            if len(node.args) != 3:
                raise ExpressionError("if() takes 3 arguments")
            cond = self.eval(node.args[0])
            if isinstance(cond, Unresolved):
                return cond
            if isinstance(cond, OpenValue):
                return self.unresolved("if() on a value nobody gave (a parameter without a value)")
            return self.eval(node.args[1] if cond else node.args[2])
        return self.apply(node.name, func, [self.eval(a) for a in node.args])

    def apply(self, shown: str, func: Callable[..., object], args: list[object]) -> object:
        """Call an ARM function on evaluated arguments, with the rules every call follows: lambdas only where
        taken, unknown and open arguments carried through, and the limits on what functions build."""
        key = shown.lower()
        if key not in _LAMBDA_TAKERS and any(isinstance(a, Lambda) for a in args):
            raise ExpressionError(f"{shown}() takes no lambda: lambda() is an argument of {_LAMBDA_TAKERS_TEXT} only")
        if key not in _TAKE_UNRESOLVED:
            unknown = next((a for a in args if isinstance(a, Unresolved)), None)
            if unknown is not None:
                return unknown
        if key not in _CARRY_OPEN and any(isinstance(a, OpenValue) for a in args):
            return self.unresolved(f"{shown}() of a value nobody gave (a parameter without a value)")
        if key in _BUILDERS:
            check_size(args)  # what these build is about as big as their arguments: bound it first
        try:
            result = func(self, *args)
        except _NotEvaluated as exc:
            return self.unresolved(f"{shown}(): {exc}")
        except TypeError as exc:
            raise ExpressionError(f"{shown}(): wrong number or kind of arguments ({exc})") from None
        if key in _BUILDERS:
            check_size(result)
            self.scope._built += len(result) if isinstance(result, (str, list, dict)) else 0
            if self.scope._built > MAX_TOTAL_BUILT:
                raise ExpressionError(f"the template's functions build more than {MAX_TOTAL_BUILT:,} characters")
        return result

    def user_function(self, node: _Call) -> object:
        """A call of the template's ``namespace.member(...)``: its output evaluated in a scope of its own
        parameters only (ARM: no variables(), no reference()). What cannot be evaluated is unknown."""
        name = node.name.lower()
        member = self.scope.functions.get(name)
        if member is None:
            known = {k: None for k in self.scope.functions}
            raise ExpressionError(f"the template defines no function {node.name}(){_did_you_mean(name, known)}")
        if f"function:{name}" in self.scope._resolving or len(self.scope._resolving) > MAX_NESTING:
            raise ExpressionError(f"the user-defined function {node.name}() calls itself")
        spec = member if isinstance(member, dict) else {}
        params = spec.get("parameters", [])
        names = [p.get("name") for p in params if isinstance(p, dict)] if isinstance(params, list) else []
        output = spec.get("output")
        if not isinstance(output, dict) or "value" not in output or not all(isinstance(n, str) for n in names):
            return self.unresolved(f"the user-defined function {node.name}() has no readable parameters and output")
        if len(node.args) != len(names):
            raise ExpressionError(f"{node.name}() takes {len(names)} argument(s), got {len(node.args)}")
        self.scope._function_calls[0] += 1
        if self.scope._function_calls[0] > MAX_FUNCTION_CALLS:
            raise ExpressionError(
                f"the template's user-defined functions are called more than {MAX_FUNCTION_CALLS:,} times"
            )
        args = [self.eval(a) for a in node.args]
        unknown = next((a for a in args if isinstance(a, (Unresolved, OpenValue))), None)
        if isinstance(unknown, Unresolved):
            return unknown
        if unknown is not None:
            return self.unresolved(f"{node.name}() of a value nobody gave (a parameter without a value)")
        if any(isinstance(a, Lambda) for a in args):
            raise ExpressionError(
                f"{node.name}() takes no lambda: lambda() is an argument of {_LAMBDA_TAKERS_TEXT} only"
            )
        inner = Scope(
            parameters=dict(zip([str(n) for n in names], args, strict=True)),
            context=self.scope.context,
            functions=self.scope.functions,
            in_function=name,
            _resolving={*self.scope._resolving, f"function:{name}"},
            _function_calls=self.scope._function_calls,
        )
        try:
            result = resolve_tree(output["value"], inner)
        finally:
            self.scope._built += inner._built
        if isinstance(result, Unresolved):
            return Unresolved(self.original, f"{node.name}(): {result.reason}", result.reported)
        return result

    # functions that need the scope
    def parameters(self, name: object) -> object:
        if isinstance(name, Unresolved):
            return name
        if not isinstance(name, str):
            raise ExpressionError("parameters() takes a parameter name")
        params = self.scope.parameters
        match = next((k for k in params if k.lower() == name.lower()), None)
        if match is None:
            raise ExpressionError(f"the template has no parameter '{name}'{_did_you_mean(name, params)}")
        value = params[match]
        if isinstance(value, Unresolved):
            return Unresolved(self.original, value.reason, value.reported)
        return value

    def variables(self, name: object) -> object:
        if isinstance(name, Unresolved):
            return name
        if not isinstance(name, str):
            raise ExpressionError("variables() takes a variable name")
        if self.scope.in_function is not None:
            raise ExpressionError(
                f"variables() cannot be used in the user-defined function {self.scope.in_function}(): "
                "ARM gives a function only its own parameters; pass the value as an argument"
            )
        variables = self.scope.variables
        match = next((k for k in variables if k.lower() == name.lower() and k.lower() != "copy"), None)
        loop = _variable_loop(variables, name) if match is None else None
        if match is None and loop is None:
            raise ExpressionError(f"the template has no variable '{name}'{_did_you_mean(name, variables)}")
        key = match if match is not None else f"copy:{name.lower()}"
        if key in self.scope._resolved_variables:
            return self.scope._resolved_variables[key]
        if key in self.scope._resolving:
            raise ExpressionError(f"variable '{match or name}' refers to itself")
        self.scope._resolving.add(key)
        try:
            value = resolve_tree(variables[match], self.scope) if match is not None else self.variable_copies(loop)
        finally:
            self.scope._resolving.discard(key)
        self.scope._resolved_variables[key] = value
        return value

    def variable_copies(self, loop: dict[str, object] | None) -> object:
        """ARM variable iteration: ``"copy": [{"name": N, "count": C, "input": X}]`` in ``variables``."""
        assert loop is not None
        name = str(loop["name"])
        count = resolve_tree(loop.get("count"), self.scope)
        if isinstance(count, Unresolved):
            return Unresolved(self.original, f"the number of {name} is unknown: {count.reason}", count.reported)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COPIES:
            raise ExpressionError(f"the count of the variable loop '{name}' must be an integer from 0 to 800")
        values = []
        for i in range(count):
            inner = dataclasses.replace(
                self.scope, copy_index={**self.scope.copy_index, name: i}, _resolved_variables={}
            )
            values.append(resolve_tree(loop.get("input"), inner))
        return values

    def copyindex(self, *args: object) -> object:
        """copyIndex(), copyIndex(offset), copyIndex('loop') or copyIndex('loop', offset)."""
        name = next((a for a in args if isinstance(a, str)), None)
        offsets = [a for a in args if not isinstance(a, str)]
        offset = _integer("copyIndex", offsets[0]) if offsets else 0
        for key, index in self.scope.copy_index.items():
            if name is None or key.lower() == name.lower():
                return index + offset
        return self.unresolved("copyIndex() of a resource copy loop: aibx checks the resource as written, once")

    def subscription(self) -> object:
        sub = self.scope.context.subscription_id
        if sub is None:
            return self.unresolved("subscription() is unknown; pass --subscription-id")
        return _PartialObject({"subscriptionId": sub, "id": f"/subscriptions/{sub}"}, self, "subscription()")

    def resourcegroup(self) -> object:
        ctx = self.scope.context
        if ctx.resource_group is None:
            return self.unresolved("resourceGroup() is unknown; pass --resource-group (and --location)")
        sub = ctx.subscription_id
        rg: dict[str, object] = {"name": ctx.resource_group}
        if ctx.location is not None:
            rg["location"] = ctx.location
        if sub is not None:
            rg["id"] = f"/subscriptions/{sub}/resourceGroups/{ctx.resource_group}"
        return _PartialObject(rg, self, "resourceGroup()")

    def resourceid(self, *args: object) -> object:
        strs = _id_arguments("resourceId", args)
        if isinstance(strs, Unresolved):
            return strs
        # optional leading subscription id and resource group name, then type, then one name per type segment
        type_index = next((i for i, a in enumerate(strs) if "/" in a and "." in a.split("/")[0]), None)
        if type_index is None:
            raise ExpressionError(f"resourceId(): no resource type such as Microsoft.Compute/images in {strs}")
        lead, tail = strs[:type_index], _type_and_names("resourceId", strs[type_index:])
        if len(lead) > 2:
            raise ExpressionError("resourceId(): at most a subscription id and a resource group come before the type")
        ctx = self.scope.context
        sub = lead[0] if len(lead) == 2 else ctx.subscription_id
        rg = lead[-1] if lead else ctx.resource_group
        if sub is None or rg is None:
            return self.unresolved("resourceId() needs the subscription and resource group")
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{tail}"

    def subscriptionresourceid(self, *args: object) -> object:
        """subscriptionResourceId([subscriptionId], type, names...): an ID at subscription scope."""
        strs = _id_arguments("subscriptionResourceId", args)
        if isinstance(strs, Unresolved):
            return strs
        has_sub = bool(strs) and not _is_resource_type(strs[0])
        tail = _type_and_names("subscriptionResourceId", strs[1:] if has_sub else strs)
        sub = strs[0] if has_sub else self.scope.context.subscription_id
        if sub is None:
            return self.unresolved("subscriptionResourceId() needs the subscription; pass --subscription-id")
        return f"/subscriptions/{sub}/providers/{tail}"

    def tenantresourceid(self, *args: object) -> object:
        strs = _id_arguments("tenantResourceId", args)
        if isinstance(strs, Unresolved):
            return strs
        return f"/providers/{_type_and_names('tenantResourceId', strs)}"

    def extensionresourceid(self, *args: object) -> object:
        """extensionResourceId(baseResourceId, type, names...): the ID of a resource that extends another."""
        strs = _id_arguments("extensionResourceId", args)
        if isinstance(strs, Unresolved):
            return strs
        if len(strs) < 3:
            raise ExpressionError("extensionResourceId() takes a base resource ID, a resource type and names")
        return f"{strs[0].rstrip('/')}/providers/{_type_and_names('extensionResourceId', strs[1:])}"


def _id_arguments(name: str, args: tuple[object, ...]) -> list[str] | Unresolved:
    """The arguments of a resource-ID function: all strings, or the first unknown one."""
    for a in args:
        if isinstance(a, Unresolved):
            return a
    if not all(isinstance(a, str) for a in args) or len(args) < 2:
        raise ExpressionError(f"{name}() takes a resource type and names")
    return [str(a) for a in args]


def _is_resource_type(text: str) -> bool:
    return "/" in text and "." in text.split("/")[0]


def _type_and_names(name: str, strs: list[str]) -> str:
    """``Provider/type/child`` and its names as ``Provider/type/NAME/child/NAME``. Empty segments of the type
    (``'Microsoft.ManagedIdentity/userAssignedIdentities/'``, which real templates write) are ignored, as ARM does."""
    if not strs or not _is_resource_type(strs[0]):
        raise ExpressionError(f"{name}(): no resource type such as Microsoft.Compute/images in {strs}")
    rtype, names = strs[0], strs[1:]
    segments = [s for s in rtype.split("/") if s]
    if len(names) != len(segments) - 1:
        raise ExpressionError(f"{name}(): {rtype} needs {len(segments) - 1} name(s), got {len(names)}")
    return segments[0] + "".join(f"/{t}/{n}" for t, n in zip(segments[1:], names, strict=True))


class _PartialObject(dict):
    """resourceGroup() or subscription() when only some properties are known (its tags, tenantId, displayName only
    Azure knows): a missing property is Unresolved, not an error."""

    def __init__(self, known: dict[str, object], ev: _Evaluator, what: str) -> None:
        super().__init__(known)
        self.ev, self.what = ev, what

    def __missing__(self, key: str) -> object:
        if self.what == "subscription()":
            return self.ev.unresolved(f"subscription().{key} is only known to Azure at deployment")
        hint = "--location" if key == "location" else "--subscription-id"
        return self.ev.unresolved(f"resourceGroup().{key} is unknown; pass {hint}")


_ID_FUNCTIONS = ("resourceid", "subscriptionresourceid", "tenantresourceid", "extensionresourceid")


def _variable_loop(variables: Mapping[str, object], name: str) -> dict[str, object] | None:
    """The entry of ``variables["copy"]`` (variable iteration) that defines ``name``."""
    loops = next((v for k, v in variables.items() if k.lower() == "copy"), None)
    if not isinstance(loops, list):
        return None
    for loop in loops:
        if isinstance(loop, dict) and isinstance(loop.get("name"), str) and loop["name"].lower() == name.lower():
            return loop
    return None


def _did_you_mean(name: str, names: Mapping[str, object]) -> str:
    from aibx.diagnostics import closest

    close = closest(name, names)
    return f"; did you mean '{close}'?" if close else ""


def _access(target: object, key: object) -> object:
    if isinstance(target, dict) and isinstance(key, str):
        for k in target:
            if k.lower() == key.lower():
                return target[k]
        if isinstance(target, _PartialObject):
            return target[key]
        raise ExpressionError(f"the object has no property '{key}'")
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        if not -len(target) <= key < len(target):
            raise ExpressionError(f"index {key} is out of range")
        return target[key]
    raise ExpressionError(f"cannot take [{key!r}] of {type(target).__name__}")


def _string(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    return str(value)


def _concat(_ev: _Evaluator, *args: object) -> object:
    if args and all(isinstance(a, list) for a in args):
        return [x for a in cast("tuple[list[object], ...]", args) for x in a]
    return "".join(_string(a) for a in args)


def _format(_ev: _Evaluator, fmt: object, *args: object) -> str:
    """.NET composite formatting as ARM's format() does it; alignment and format specifiers ({0,5}, {0:D3})
    are not reproduced, so such a value stays unresolved rather than wrong."""
    if not isinstance(fmt, str):
        raise ExpressionError("format() takes a format string first")

    def sub(m: re.Match[str]) -> str:
        if m.group() in ("{{", "}}"):
            return m.group()[0]
        index = int(m.group(1))
        if index >= len(args):
            raise ExpressionError(f"format(): no argument for {{{index}}}")
        if m.group(2):
            raise _NotEvaluated(f"aibx does not apply the .NET format specifier {m.group()}")
        return _string(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)([,:][^}]*)?\}", sub, fmt)


def _str_only(name: str, func: Callable[[str], object]) -> Callable[..., object]:
    def wrapper(_ev: _Evaluator, value: object) -> object:
        if not isinstance(value, str):
            raise ExpressionError(f"{name}() takes a string")
        return func(value)

    return wrapper


def _length(_ev: _Evaluator, value: object) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ExpressionError("length() takes a string, array or object")


def _empty(_ev: _Evaluator, value: object) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and len(value) == 0)


def _to_int(_ev: _Evaluator, value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise ExpressionError(f"int(): {value!r} is not a number") from None


def _to_bool(_ev: _Evaluator, value: object) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ExpressionError(f"bool(): {value!r} is not true or false")
        return value.lower() == "true"
    return bool(value)


def _json(_ev: _Evaluator, value: object) -> object:
    if not isinstance(value, str):
        raise ExpressionError("json() takes a string")
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise ExpressionError(f"json(): {exc}") from None


def _replace(_ev: _Evaluator, value: object, old: object, new: object) -> str:
    if not all(isinstance(v, str) for v in (value, old, new)):
        raise ExpressionError("replace() takes three strings")
    if not old:
        raise ExpressionError("replace(): the string to replace is empty")
    assert isinstance(value, str) and isinstance(old, str) and isinstance(new, str)
    if len(value) + value.count(old) * (len(new) - len(old)) > MAX_BUILT_STRING:
        raise ExpressionError(f"replace() would build more than {MAX_BUILT_STRING:,} characters; {_LIMIT_HINT}")
    return value.replace(old, new)


def _split(_ev: _Evaluator, value: object, sep: object) -> list[str]:
    if not isinstance(value, str):
        raise ExpressionError("split() takes a string")
    seps = sep if isinstance(sep, list) else [sep]
    if not all(isinstance(s, str) and s for s in seps):
        raise ExpressionError("split() takes non-empty delimiter strings")
    return re.split("|".join(re.escape(cast(str, s)) for s in seps), value)


def _contains(_ev: _Evaluator, container: object, item: object) -> bool:
    """ARM: a case-sensitive substring test for strings, a case-insensitive key test for objects."""
    if isinstance(container, str):
        return _string(item) in container
    if isinstance(container, dict):
        return isinstance(item, str) and item.lower() in (k.lower() for k in container)
    if isinstance(container, list):
        return item in container
    raise ExpressionError("contains() takes a string, array or object")


def _equals(_ev: _Evaluator, a: object, b: object) -> bool:
    return a == b


def _bool_args(name: str, func: Callable[[list[bool]], bool]) -> Callable[..., bool]:
    def wrapper(_ev: _Evaluator, *args: object) -> bool:
        if not args or not all(isinstance(a, bool) for a in args):
            raise ExpressionError(f"{name}() takes boolean arguments")
        return func(list(args))  # type: ignore[arg-type]

    return wrapper


def _coalesce(_ev: _Evaluator, *args: object) -> object:
    return next((a for a in args if a is not None), None)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExpressionError(f"{name}() takes integers, got {value!r}")
    return value


def _arith(name: str, func: Callable[[int, int], int]) -> Callable[..., int]:
    def wrapper(_ev: _Evaluator, a: object, b: object) -> int:
        x, y = _integer(name, a), _integer(name, b)
        if name in ("div", "mod") and y == 0:
            raise ExpressionError(f"{name}(): division by zero")
        result = func(x, y)
        if not INT_MIN <= result <= INT_MAX:
            raise ExpressionError(f"{name}(): the result overflows ARM's 64-bit integers")
        return result

    return wrapper


def _div(x: int, y: int) -> int:  # .NET integer division truncates toward zero
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _mod(x: int, y: int) -> int:  # .NET remainder takes the sign of the dividend
    return x - _div(x, y) * y


def _extreme(name: str, pick: Callable[..., int]) -> Callable[..., int]:
    def wrapper(_ev: _Evaluator, *args: object) -> int:
        values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not values:
            raise ExpressionError(f"{name}() needs at least one value")
        return pick(_integer(name, v) for v in values)

    return wrapper


def _compare(name: str, test: Callable[[int], bool]) -> Callable[..., bool]:
    def wrapper(_ev: _Evaluator, a: object, b: object) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return test((a > b) - (a < b))  # ordinal, as ARM compares strings
        x, y = _integer(name, a), _integer(name, b)
        return test((x > y) - (x < y))

    return wrapper


def _take(_ev: _Evaluator, value: object, count: object) -> object:
    n = _integer("take", count)
    if not isinstance(value, (str, list)):
        raise ExpressionError("take() takes a string or an array")
    return value[: max(n, 0)]


def _skip(_ev: _Evaluator, value: object, count: object) -> object:
    n = _integer("skip", count)
    if not isinstance(value, (str, list)):
        raise ExpressionError("skip() takes a string or an array")
    return value[max(n, 0) :]


def _substring(_ev: _Evaluator, value: object, start: object, length: object = None) -> str:
    if not isinstance(value, str):
        raise ExpressionError("substring() takes a string")
    begin = _integer("substring", start)
    size = len(value) - begin if length is None else _integer("substring", length)
    if begin < 0 or size < 0 or begin + size > len(value):
        raise ExpressionError(
            f"substring(): index {begin} and length {size} are outside the string of length {len(value)}"
        )
    return value[begin : begin + size]


def _first(_ev: _Evaluator, value: object) -> object:
    if not isinstance(value, (str, list)):
        raise ExpressionError("first() takes a string or an array")
    return value[:1] if isinstance(value, str) else (value[0] if value else None)


def _last(_ev: _Evaluator, value: object) -> object:
    if not isinstance(value, (str, list)):
        raise ExpressionError("last() takes a string or an array")
    return value[-1:] if isinstance(value, str) else (value[-1] if value else None)


def _index_of(name: str, find: Callable[[str, str], int]) -> Callable[..., int]:
    def wrapper(_ev: _Evaluator, value: object, item: object) -> int:  # ARM: case-insensitive
        if not isinstance(value, str) or not isinstance(item, str):
            raise ExpressionError(f"{name}() takes two strings")
        return find(value.lower(), item.lower())

    return wrapper


def _pad_left(_ev: _Evaluator, value: object, total: object, pad: object = " ") -> str:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise ExpressionError("padLeft() takes a string or an integer")
    if not isinstance(pad, str) or len(pad) != 1:
        raise ExpressionError("padLeft(): the padding must be one character")
    width = _integer("padLeft", total)
    if width > MAX_BUILT_STRING:
        raise _NotEvaluated(f"aibx does not build a string of {width} characters")
    return text.rjust(width, pad)


def _base64(_ev: _Evaluator, value: object) -> str:
    if not isinstance(value, str):
        raise ExpressionError("base64() takes a string")
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _base64_to_string(_ev: _Evaluator, value: object) -> str:
    if not isinstance(value, str):
        raise ExpressionError("base64ToString() takes a string")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError as exc:
        raise ExpressionError(f"base64ToString(): {exc}") from None


def _base64_to_json(ev: _Evaluator, value: object) -> object:
    return _json(ev, _base64_to_string(ev, value))


def _data_uri(_ev: _Evaluator, value: object) -> str:
    """dataUri(): ``data:text/plain;charset=utf8;base64,...`` as ARM writes it."""
    text = value if isinstance(value, str) else _string(value)
    return "data:text/plain;charset=utf8;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _data_uri_to_string(ev: _Evaluator, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("data:") or "," not in value:
        raise ExpressionError("dataUriToString() takes a data URI such as data:text/plain;base64,SGVsbG8=")
    head, data = value[5:].split(",", 1)
    if head.endswith(";base64"):
        return _base64_to_string(ev, data)
    return unquote(data)


def _uri_component(_ev: _Evaluator, value: object) -> str:
    if not isinstance(value, str):
        raise ExpressionError("uriComponent() takes a string")
    return quote(value, safe="-_.~")


def _uri_component_to_string(_ev: _Evaluator, value: object) -> str:
    if not isinstance(value, str):
        raise ExpressionError("uriComponentToString() takes a string")
    return unquote(value)


def _range(_ev: _Evaluator, start: object, count: object) -> list[int]:
    first, n = _integer("range", start), _integer("range", count)
    if n < 0 or n > 10000:  # ARM's limit
        raise ExpressionError("range(): the count must be from 0 to 10000")
    return list(range(first, first + n))


def _flatten(_ev: _Evaluator, values: object) -> list[object]:
    out: list[object] = []
    for item in _array_arg("flatten", values):
        if not isinstance(item, list):
            raise ExpressionError("flatten() takes an array of arrays")
        out += item
    return out


def _object_keys(_ev: _Evaluator, value: object) -> list[str]:
    if not isinstance(value, dict):
        raise ExpressionError("objectKeys() takes an object")
    return list(value)


def _intersection(_ev: _Evaluator, first: object, *others: object) -> object:
    if isinstance(first, dict) and all(isinstance(o, dict) for o in others):
        return {k: v for k, v in first.items() if all(k in o and o[k] == v for o in others)}  # type: ignore[operator,index]
    if isinstance(first, list) and all(isinstance(o, list) for o in others):
        out: list[object] = []
        for x in first:
            if x not in out and all(x in o for o in others):  # type: ignore[operator]
                out.append(x)
        return out
    raise ExpressionError("intersection() takes objects or arrays, all of one kind")


def _try_get(_ev: _Evaluator, value: object, *keys: object) -> object:
    """tryGet(object, key, ...): the value at the keys (an array takes an index), or null where one is missing."""
    for key in keys:
        if isinstance(value, dict) and isinstance(key, str):
            value = next((v for k, v in value.items() if k.lower() == key.lower()), None)
        elif isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            value = value[key] if -len(value) <= key < len(value) else None
        elif value is None:
            return None
        else:
            raise ExpressionError("tryGet() takes an object (or array) and keys (or indexes)")
    return value


def _uri(_ev: _Evaluator, base: object, relative: object) -> str:
    """ARM's uri(): ``relative`` resolved against ``base`` (RFC 3986, as .NET's Uri(Uri, string) does)."""
    if not isinstance(base, str) or not isinstance(relative, str):
        raise ExpressionError("uri() takes two strings")
    if "://" not in base:
        raise ExpressionError(f"uri(): {base[:60]!r} is not an absolute URI")
    return urljoin(base, relative)


def _union(_ev: _Evaluator, *args: object) -> object:
    if args and all(isinstance(a, dict) for a in args):
        merged: dict[str, object] = {}
        for a in args:
            merged.update(cast("dict[str, object]", a))
        return merged
    if args and all(isinstance(a, list) for a in args):
        out: list[object] = []
        for a in args:
            out += [x for x in cast("list[object]", a) if x not in out]
        return out
    raise ExpressionError("union() takes objects or arrays, all of one kind")


def _create_object(_ev: _Evaluator, *args: object) -> dict[str, object]:
    if len(args) % 2 or not all(isinstance(key, str) for key in args[::2]):
        raise ExpressionError("createObject() takes pairs of a string key and a value")
    return dict(zip(args[::2], args[1::2], strict=True))  # type: ignore[arg-type]


def _join(_ev: _Evaluator, values: object, delimiter: object) -> str:
    if not isinstance(values, list) or not isinstance(delimiter, str):
        raise ExpressionError("join() takes an array and a delimiter string")
    return delimiter.join(_string(v) for v in values)


def _unique_string(_ev: _Evaluator, *args: object) -> str:
    if not args or not all(isinstance(a, str) for a in args):
        raise ExpressionError("uniqueString() takes one or more strings")
    return unique_string(*args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- lambdas
def _lambda_arg(name: str, value: object, count: int) -> Lambda:
    if not isinstance(value, Lambda):
        raise ExpressionError(f"{name}() takes a lambda as its last argument")
    if len(value.params) > count:
        raise ExpressionError(f"{name}(): the lambda takes at most {count} parameter(s)")
    return value


def _array_arg(name: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise ExpressionError(f"{name}() takes an array")
    return value


def _filter(_ev: object, values: object, predicate: object) -> object:
    items, test = _array_arg("filter", values), _lambda_arg("filter", predicate, 2)
    out = []
    for i, item in enumerate(items):
        keep = test(item, i)
        if isinstance(keep, Unresolved):
            return keep
        if not isinstance(keep, bool):
            raise ExpressionError("filter(): the lambda must return true or false")
        if keep:
            out.append(item)
    return out


def _map(_ev: object, values: object, mapping: object) -> list[object]:
    items, func = _array_arg("map", values), _lambda_arg("map", mapping, 2)
    return [func(item, i) for i, item in enumerate(items)]


def _reduce(_ev: object, values: object, initial: object, step: object) -> object:
    items, func = _array_arg("reduce", values), _lambda_arg("reduce", step, 3)
    acc = initial
    for i, item in enumerate(items):
        acc = func(acc, item, i)
        if isinstance(acc, Unresolved):
            return acc
    return acc


def _sort(_ev: object, values: object, less: object) -> object:
    items, func = list(_array_arg("sort", values)), _lambda_arg("sort", less, 2)
    unknown: list[Unresolved] = []

    def compare(a: object, b: object) -> int:
        before = func(a, b)
        if isinstance(before, Unresolved):
            unknown.append(before)
            return 0
        if not isinstance(before, bool):
            raise ExpressionError("sort(): the lambda must return true or false")
        return -1 if before else (1 if func(b, a) is True else 0)

    result = sorted(items, key=functools.cmp_to_key(compare))
    return unknown[0] if unknown else result


def _to_object(_ev: object, values: object, key: object, value: object = None) -> object:
    items, key_of = _array_arg("toObject", values), _lambda_arg("toObject", key, 1)
    value_of = _lambda_arg("toObject", value, 1) if value is not None else None
    out: dict[str, object] = {}
    for item in items:
        k = key_of(item)
        if isinstance(k, Unresolved):
            return k
        if not isinstance(k, str):
            raise ExpressionError("toObject(): the key lambda must return a string")
        out[k] = value_of(item) if value_of else item
    return out


def _shallow_merge(_ev: object, values: object) -> dict[str, object]:
    merged: dict[str, object] = {}
    for item in _array_arg("shallowMerge", values):
        if not isinstance(item, dict):
            raise ExpressionError("shallowMerge() takes an array of objects")
        merged.update(item)
    return merged


def _items(_ev: object, value: object) -> list[dict[str, object]]:
    if not isinstance(value, dict):
        raise ExpressionError("items() takes an object")
    return [{"key": k, "value": value[k]} for k in sorted(value, key=str.lower)]


# ----------------------------------------------------------------------------------------------- uniqueString
_M32 = 0xFFFFFFFF
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _fmix32(h: int) -> int:
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & _M32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _arm_murmur64(data: bytes) -> int:
    """The 64-bit Murmur variant behind ARM's uniqueString(): two 32-bit lanes fed 8 bytes at a time, with
    MurmurHash3's block constants and finaliser, seed 0."""
    c1, c2 = 0x239B961B, 0xAB0E9789
    h1 = h2 = 0
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        k1 = int.from_bytes(data[i : i + 4], "little")
        k2 = int.from_bytes(data[i + 4 : i + 8], "little")
        h1 ^= (_rotl32((k1 * c1) & _M32, 15) * c2) & _M32
        h1 = (_rotl32(h1, 19) + h2) & _M32
        h1 = (h1 * 5 + 0x561CCD1B) & _M32
        h2 ^= (_rotl32((k2 * c2) & _M32, 17) * c1) & _M32
        h2 = (_rotl32(h2, 13) + h1) & _M32
        h2 = (h2 * 5 + 0x0BCAA747) & _M32
    tail = data[end:]
    if tail:
        h1 ^= (_rotl32((int.from_bytes(tail[:4], "little") * c1) & _M32, 15) * c2) & _M32
        if len(tail) > 4:
            h2 ^= (_rotl32((int.from_bytes(tail[4:], "little") * c2) & _M32, 17) * c1) & _M32
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _M32
    h2 = (h2 + h1) & _M32
    h1, h2 = _fmix32(h1), _fmix32(h2)
    h1 = (h1 + h2) & _M32
    h2 = (h2 + h1) & _M32
    return (h2 << 32) | h1


def unique_string(*values: str) -> str:
    """ARM's ``uniqueString(a, b, ...)``: the arguments joined with '-', hashed (UTF-8) and written as 13
    base-32 characters, most significant bits first. tests/test_armexpr.py checks it against published values
    of Microsoft's ARM expression library (Azure.Deployments.Expression, which Bicep uses as well)."""
    h = _arm_murmur64("-".join(values).encode("utf-8"))
    return "".join(_BASE32[((h << (5 * i)) & 0xFFFFFFFFFFFFFFFF) >> 59] for i in range(13))


# the functions that take a lambda() argument (ARM allows one nowhere else)
_LAMBDA_TAKERS = ("filter", "map", "reduce", "sort", "toobject", "groupby", "mapvalues")
_LAMBDA_TAKERS_TEXT = "filter(), map(), reduce(), sort(), toObject(), groupBy() and mapValues()"

# functions whose result holds (copies of) their arguments, or grows from them
_BUILDERS = {
    "concat", "format", "string", "replace", "join", "padleft", "base64", "base64tostring", "uricomponent",
    "uricomponenttostring", "json", "createarray", "array", "createobject", "union", "split", "tolower", "toupper",
    "range", "flatten", "map", "filter", "sort", "reduce", "items", "toobject", "shallowmerge", "intersection",
    "objectkeys", "uri",
}  # fmt: skip

# the function table, by lower-case name: each takes the evaluator first, then the evaluated arguments (a lambda
# argument arrives as a Lambda). Shared with the Bicep evaluator: keep the signatures stable.

_FUNCTIONS: dict[str, Callable[..., object]] = {
    "parameters": _Evaluator.parameters,
    "variables": _Evaluator.variables,
    "subscription": _Evaluator.subscription,
    "resourcegroup": _Evaluator.resourcegroup,
    "resourceid": _Evaluator.resourceid,
    "subscriptionresourceid": _Evaluator.subscriptionresourceid,
    "tenantresourceid": _Evaluator.tenantresourceid,
    "extensionresourceid": _Evaluator.extensionresourceid,
    "if": lambda *_: None,  # handled lazily in eval()
    "concat": _concat,
    "format": _format,
    "string": lambda _ev, v: _string(v),
    "tolower": _str_only("toLower", str.lower),
    "toupper": _str_only("toUpper", str.upper),
    "trim": _str_only("trim", str.strip),
    "replace": _replace,
    "split": _split,
    "join": _join,
    "length": _length,
    "empty": _empty,
    "contains": _contains,
    "startswith": lambda _ev, s, p: _string(s).lower().startswith(_string(p).lower()),
    "endswith": lambda _ev, s, p: _string(s).lower().endswith(_string(p).lower()),
    "indexof": _index_of("indexOf", str.find),
    "lastindexof": _index_of("lastIndexOf", str.rfind),
    "take": _take,
    "skip": _skip,
    "substring": _substring,
    "first": _first,
    "last": _last,
    "padleft": _pad_left,
    "base64": _base64,
    "base64tostring": _base64_to_string,
    "base64tojson": _base64_to_json,
    "datauri": _data_uri,
    "datauritostring": _data_uri_to_string,
    "uri": _uri,
    "tryget": _try_get,
    "range": _range,
    "flatten": _flatten,
    "objectkeys": _object_keys,
    "intersection": _intersection,
    "copyindex": _Evaluator.copyindex,
    "uricomponent": _uri_component,
    "uricomponenttostring": _uri_component_to_string,
    "uniquestring": _unique_string,
    "equals": _equals,
    "not": lambda _ev, v: not _to_bool(_ev, v),
    "and": _bool_args("and", all),
    "or": _bool_args("or", any),
    "add": _arith("add", lambda x, y: x + y),
    "sub": _arith("sub", lambda x, y: x - y),
    "mul": _arith("mul", lambda x, y: x * y),
    "div": _arith("div", _div),
    "mod": _arith("mod", _mod),
    "min": _extreme("min", min),
    "max": _extreme("max", max),
    "greater": _compare("greater", lambda c: c > 0),
    "greaterorequals": _compare("greaterOrEquals", lambda c: c >= 0),
    "less": _compare("less", lambda c: c < 0),
    "lessorequals": _compare("lessOrEquals", lambda c: c <= 0),
    "int": _to_int,
    "bool": _to_bool,
    "json": _json,
    "createarray": lambda _ev, *a: list(a),
    "array": lambda _ev, v: v if isinstance(v, list) else [v],
    "createobject": _create_object,
    "union": _union,
    "coalesce": _coalesce,
    "lambda": lambda *_: None,  # handled lazily in eval()
    "lambdavariables": _Evaluator.lambdavariables,
    "filter": _filter,
    "map": _map,
    "reduce": _reduce,
    "sort": _sort,
    "toobject": _to_object,
    "shallowmerge": _shallow_merge,
    "items": _items,
    "true": lambda _ev: True,
    "false": lambda _ev: False,
    "null": lambda _ev: None,
}

# functions whose result only Azure knows at deployment time
_NEEDS_AZURE: dict[str, str | None] = {
    name: None
    for name in (
        "reference",
        "list",
        "listkeys",
        "listsecrets",
        "listaccountsas",
        "utcnow",
        "newguid",
        "deployment",
        "environment",
        "tenant",
        "managementgroup",
        "providers",
        "pickzones",
    )
} | {
    # ARM's guid() is a name-based UUID whose exact construction no published test vector lets aibx verify
    "guid": "is computed by Azure Resource Manager; pass the resulting value with -p",
}


def template_functions(template: Mapping[str, object]) -> dict[str, object]:
    """A template's user-defined functions (``"functions": [{"namespace": N, "members": {M: {...}}}]``), by
    lower-case ``n.m``; anything not in that shape is left out (a call of it is then reported)."""
    out: dict[str, object] = {}
    spaces = template.get("functions")
    for space in spaces if isinstance(spaces, list) else []:
        ns = space.get("namespace") if isinstance(space, dict) else None
        members = space.get("members") if isinstance(space, dict) else None
        if isinstance(ns, str) and isinstance(members, dict):
            out.update({f"{ns}.{m}".lower(): spec for m, spec in members.items() if isinstance(m, str)})
    return out


FUNCTIONS = _FUNCTIONS  # public name for other evaluators (Bicep)


# ----------------------------------------------------------------------------------------------- shared library
# Bicep compiles to these functions, so aibx's Bicep reader (aibx/bicep/) calls them here: one library.
# functions that only build text from their arguments: an OpenValue (``<name>``) passes through them whole
_CARRY_OPEN = {
    "parameters",
    "variables",
    "concat",
    "format",
    "string",
    "tolower",
    "toupper",
    "trim",
    "uri",
    "resourceid",
    "subscriptionresourceid",
    "tenantresourceid",
    "extensionresourceid",
    "createobject",
    "createarray",
    "array",
    "coalesce",
}
# functions that take an unknown argument themselves (to name it, or to build an ID around it)
_TAKE_UNRESOLVED = ("parameters", "variables", "subscription", "resourcegroup", "lambdavariables", *_ID_FUNCTIONS)
_SCOPE_FUNCTIONS = ("parameters", "variables", "if", "lambda", "lambdavariables", "copyindex")


def call_function(name: str, args: list[object], scope: Scope, original: str) -> object:
    """Call the ARM function ``name`` on arguments already evaluated (a lambda as a ``Lambda``), with the limits
    ARM expressions have. An Unresolved argument, a function only Azure can compute, or one aibx does not know
    gives an Unresolved carrying ``original``; a misuse raises ExpressionError."""
    ev = _Evaluator(scope, original)
    key = name.lower()
    if key in _NEEDS_AZURE:
        return ev.unresolved(f"{name}() {_NEEDS_AZURE[key] or 'is only known to Azure at deployment'}")
    func = _FUNCTIONS.get(key)
    if func is None or key in _SCOPE_FUNCTIONS:
        return ev.unresolved(f"aibx does not evaluate the function {name}()")
    return ev.apply(name, func, args)


def _group_by(_ev: object, values: object, key: object) -> object:
    items, key_of = _array_arg("groupBy", values), _lambda_arg("groupBy", key, 1)
    out: dict[str, list[object]] = {}
    for item in items:
        k = key_of(item)
        if isinstance(k, Unresolved):
            return k
        if not isinstance(k, str):
            raise ExpressionError("groupBy(): the key lambda must return a string")
        out.setdefault(k, []).append(item)
    return out


def _map_values(_ev: object, value: object, mapping: object) -> object:
    if not isinstance(value, dict):
        raise ExpressionError("mapValues() takes an object")
    func = _lambda_arg("mapValues", mapping, 1)
    return {k: func(v) for k, v in value.items()}


# lambda functions the table above lacks (Bicep templates use them)
_FUNCTIONS.update({"groupby": _group_by, "mapvalues": _map_values})
_BUILDERS.update({"groupby", "mapvalues"})


def access(target: object, key: object) -> object:
    """``target.key`` or ``target[key]`` as ARM evaluates it (property names case-insensitively)."""
    return _access(target, key)


def to_string(value: object) -> str:
    """A value in a string, as ARM's string() and Bicep's interpolation write it."""
    return _string(value)
