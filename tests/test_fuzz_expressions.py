"""Fuzzing the expression evaluators: ARM template expressions (aibx/armexpr.py) and HCL2 expressions
(translators/hcl_eval.py), with expressions generated from their grammars: every function each evaluator knows
(and some it does not), huge numbers, deep variable chains, self-references, hostile regexes and format verbs.

Contract: an ARM expression evaluates to a JSON value or an Unresolved, or raises ExpressionError; an HCL
expression evaluates to a value or raises EvalError. Nothing else escapes, nothing hangs.
"""

from __future__ import annotations

from datetime import datetime, timezone

import hcl2
from hypothesis import assume
from hypothesis import strategies as st
from lark.exceptions import LarkError

from aibx import armexpr
from aibx.document import Unresolved
from aibx.translators import hcl_eval
from aibx.translators.hcl_eval import BuildValue, Context, EvalError
from tests.support.fuzz_inputs import ARM_EXPRESSIONS, HCL_EXPRESSIONS, arm_scopes, hostile_values, odd_strings
from tests.support.fuzzing import budgets, fuzz

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def is_value(value: object) -> bool:
    """A JSON value (or an unknown one), all the way down."""
    if isinstance(value, (Unresolved, BuildValue, str, bool, int, float)) or value is None:
        return True
    if isinstance(value, list):
        return all(is_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_value(v) for k, v in value.items())
    return False


# ----------------------------------------------------------------------------------------------- ARM
def check_arm_expression(text: str, scope: armexpr.Scope, damage: tuple[int, str]) -> None:
    where, insert = damage
    for candidate in (f"[{text}]", f"[{text[:where]}{insert}{text[where:]}]"):
        armexpr.is_well_formed(candidate)
        try:
            value = armexpr.evaluate_string(candidate, scope)
        except armexpr.ExpressionError as exc:
            assert str(exc)
            continue
        assert is_value(value), value


def check_arm_tree(value: object, scope: armexpr.Scope) -> None:
    try:
        out = armexpr.resolve_tree(value, scope)
    except armexpr.ExpressionError:
        return
    assert is_value(out)


@budgets(sample=300, full=3000)
def test_arm_expressions_evaluate_or_raise_expression_error(budget: int) -> None:
    fuzz(
        budget,
        check_arm_expression,
        text=ARM_EXPRESSIONS,
        scope=arm_scopes(),
        damage=st.tuples(st.integers(0, 200), st.sampled_from(["(", ")", "'", ",", "[", "]", ".", " ", "[[", ""])),
    )


@budgets(sample=100, full=600)
def test_arm_trees_of_hostile_values_resolve_or_raise_expression_error(budget: int) -> None:
    fuzz(budget, check_arm_tree, value=hostile_values, scope=arm_scopes())


# ----------------------------------------------------------------------------------------------- HCL
VARIABLES = {
    "name": "img",
    "list": ["a", "b"],
    "map": {"a": 1, "id": "x"},
    "unset": Unresolved("<unset>", "no value"),
    "secret": "s3cret-value",
}


def _local(name: str, node: object) -> object:
    if name == "greeting":
        return "hello"
    if name == "loop":  # a local that refers to itself: the reader reports it as an EvalError
        raise EvalError("local.loop refers to itself", None)
    raise EvalError(f"local.{name} cannot be used here", None)


def check_hcl_expression(text: str, env_allowed: bool, source: bool, name: str) -> None:
    try:
        tree = hcl2.parses_to_tree(f"x = {text}\n")
    except (LarkError, ValueError, RecursionError):
        assume(False)  # not HCL: the reader's syntax errors are fuzzed in test_fuzz_translate.py
        return
    attribute = next(tree.find_data("attribute"))
    ctx = Context(
        variables={**VARIABLES, "odd": name},
        local=_local,
        path_root="cfg",
        env={"HOME": "/root", "X": name},
        now=NOW,
        allow_env=env_allowed,
        source={"name": name, "type": "azure-arm"} if source else None,
    )
    try:
        value = hcl_eval.evaluate(attribute.children[-1], ctx)
    except EvalError as exc:
        assert exc.message
        return
    assert is_value(value), value


@budgets(sample=300, full=1600)
def test_hcl_expressions_evaluate_or_raise_eval_error(budget: int) -> None:
    fuzz(
        budget,
        check_hcl_expression,
        text=HCL_EXPRESSIONS,
        env_allowed=st.booleans(),
        source=st.booleans(),
        name=st.one_of(st.just("web"), odd_strings),
    )
