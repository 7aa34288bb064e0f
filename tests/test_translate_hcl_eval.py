"""HCL2 expression evaluation: the functions, templates and references Packer configurations use."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import hcl2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibx.document import Unresolved
from aibx.translators import hcl_eval
from aibx.translators.hcl_eval import BuildValue, Context, EvalError
from aibx.translators.hcl_writer import string_literal

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def ev(expr: str, **kw) -> object:
    tree = hcl2.parses_to_tree(f"x = {expr}\n")
    attribute = next(tree.find_data("attribute"))
    ctx = Context(now=NOW, **kw)
    return hcl_eval.evaluate(attribute.children[-1], ctx)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('"plain"', "plain"),
        ('"a\\tb\\n\\"q\\" \\\\"', 'a\tb\n"q" \\'),
        ('"$${not} %%{directive}"', "${not} %{directive}"),
        ("[1, 2.5, true, null]", [1, 2.5, True, None]),
        ('{ a = 1, "b c" = "d", e: [] }', {"a": 1, "b c": "d", "e": []}),
        ("(1 + 2) * -3", -9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 % 3", 1),
        ("1 < 2 && !false", True),
        ('2 >= 3 || "x" == "x"', True),
        ('1 == 2 ? "yes" : "no"', "no"),
        ('"n=${1 + 1}, b=${true}"', "n=2, b=true"),
        ('[for s in ["a", "b"] : upper(s)]', ["A", "B"]),
        ('[for i, s in ["a", "b", ""] : "${i}${s}" if s != ""]', ["0a", "1b"]),
        ("{for k, v in { a = 1, b = 2 } : v => k}", {"1": "a", "2": "b"}),
        ('{for s in ["a", "b", "a"] : s => s...}', {"a": ["a", "a"], "b": ["b"]}),
        ('["a", "b"][1]', "b"),
        ('{ a = { b = ["x", "y"] } }.a.b.0', "x"),
        ("[{ id = 1 }, { id = 2 }][*].id", [1, 2]),
        # the functions the issue lists
        ('split(":", "Canonical:jammy:22_04-lts")[2]', "22_04-lts"),
        ('join("-", ["a", "b"], ["c"])', "a-b-c"),
        ('coalesce("", null, "third")', "third"),
        ('length("four")', 4),
        ("length([1, 2])", 2),
        ("merge({ a = 1, b = 1 }, { b = 2 })", {"a": 1, "b": 2}),
        ('lower("MiXeD")', "mixed"),
        ('upper("MiXeD")', "MIXED"),
        ('concat(["a"], [], ["b", "c"])', ["a", "b", "c"]),
        ('replace("a-b-c", "-", "_")', "a_b_c"),
        ('replace("a1b22c", "/[0-9]+/", "#")', "a#b#c"),
        ('regex_replace("2026-01-02T03:04:05Z", "[- TZ:]", "")', "20260102030405"),
        ('regex_replace("key=value", "(\\\\w+)=(\\\\w+)", "$2=$${1}")', "value=key"),
        ('format("%s-%03d-%.2f-%t-%q-%x-%%", "a", 7, 1.5, true, "q", 255)', 'a-007-1.50-true-"q"-ff-%'),
        ("timestamp()", "2026-03-04T05:06:07Z"),
        ('formatdate("YYYY-MM-DD hh:mm:ss ZZZ", "2026-03-04T05:06:07Z")', "2026-03-04 05:06:07 UTC"),
        ('formatdate("EEE, DD MMM YY h:m AA", "2026-03-04T15:06:07+02:00")', "Wed, 04 Mar 26 15:6 PM"),
        ("formatdate(\"'day' D 'o''clock'\", \"2026-03-04T05:06:07Z\")", "day 4 o'clock"),
    ],
)
def test_expressions(expr: str, expected: object) -> None:
    assert ev(expr) == expected


def test_references() -> None:
    ctx = {
        "variables": {"name": "img", "list": ["a", "b"]},
        "local": lambda name, node: {"sku": "22_04"}[name],
        "path_root": "cfg",
        "source": {"name": "web", "type": "azure-arm"},
    }
    assert ev('"${var.name}-${local.sku}-${source.name}.${source.type}"', **ctx) == "img-22_04-web.azure-arm"
    assert ev('"${path.root}/scripts/a.sh"', **ctx) == "cfg/scripts/a.sh"
    assert ev("var.list[1]", **ctx) == "b"
    assert ev("build.Password") == BuildValue("Password")
    assert ev('"${build.Password}"') == BuildValue("Password")


def test_env_only_where_packer_allows_it() -> None:
    assert ev('env("HOME_X")', env={"HOME_X": "/h"}) == "/h"
    assert ev('env("MISSING")', env={}) == ""
    with pytest.raises(EvalError, match="variable defaults"):
        ev('env("HOME_X")', env={"HOME_X": "/h"}, allow_env=False)


def test_heredocs() -> None:
    assert ev("<<EOT\nhello ${var.n}\n  two\nEOT\n", variables={"n": "x"}) == "hello x\n  two\n"
    assert ev("<<-EOT\n    a\n      b\n    EOT\n") == "a\n  b\n"
    assert ev('<<EOT\n$${literal} ${upper("x")}\nEOT\n') == "${literal} X\n"


def test_unset_variable_becomes_a_placeholder_in_templates() -> None:
    unset = Unresolved("<image>", "no value")
    assert ev("var.image", variables={"image": unset}) == unset
    value = ev('"/images/${var.image}/x"', variables={"image": unset})
    assert value == Unresolved("/images/<image>/x", "no value")
    # what a function or an operator computes from an open value is open too (issue 10, class 11)
    assert ev("upper(var.image)", variables={"image": unset}).text == "<image>"
    assert ev('var.image == "a" ? "x" : "y"', variables={"image": unset}).text == "<image>"
    assert ev("var.image.resourceGroup", variables={"image": unset}).text == "<image.resourceGroup>"
    assert ev('[for p in var.image : "apt-get install ${p}"]', variables={"image": unset}).text == "<image>"


def test_packer_functions_aibx_does_not_evaluate_are_open_values() -> None:
    """Functions Packer has that read files or secret stores (file, templatefile, vault, ...) and data sources
    (HCP Packer's) are open values: reported where they are used, never a refusal of the configuration."""
    assert ev('file("x.txt")').text == "<file>"
    assert ev('templatefile("a", {})').text == "<templatefile>"
    assert ev('data.hcp-packer-image.base.labels["managed_image_name"]').text == (
        "<hcp-packer-image.base.labels.managed_image_name>"
    )
    assert ev('try(var.nope, "fallback")') == "fallback"
    assert ev("can(var.nope)") is False
    assert ev('basename("/a/b/c.ps1")') == "c.ps1"
    assert ev('element(["a", "b"], 3)') == "b"
    assert ev('convert(lower("TRUE"), bool)') is True


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('nosuchfunction("x.txt")', "function nosuchfunction() is not supported"),
        ("var.nope", 'no variable named "nope"'),
        ("local.nope", "local.nope cannot be used here"),
        ('"${nope}"', 'unknown name "nope"'),
        ('"%{ if true }x%{ endif }"', "template directives"),
        ("[1][5]", "out of range"),
        ('{ a = 1 }["b"]', 'no key "b"'),
        ("1 / 0", "division by zero"),
        ('format("%s %s", "one")', "not enough arguments"),
        ('formatdate("YYYY Q", "2026-01-01T00:00:00Z")', "unsupported sequence"),
        ('coalesce("", null)', "no non-null"),
        ("range()", "range takes 1 to 3 numbers"),
    ],
)
def test_errors_name_the_problem(expr: str, message: str) -> None:
    with pytest.raises(EvalError, match=re.escape(message)) as info:
        ev(expr)
    assert info.value.line == 1


def test_variable_types() -> None:
    def conv(value: object, type_expr: str) -> object:
        tree = hcl2.parses_to_tree(f"x = {type_expr}\n")
        return hcl_eval.convert(value, next(tree.find_data("attribute")).children[-1])

    assert conv("5", "number") == 5
    assert conv("true", "bool") is True
    assert conv(5, "string") == "5"
    assert conv(["1", "2"], "list(number)") == [1, 2]
    assert conv({"a": 1}, "map(string)") == {"a": "1"}
    with pytest.raises(EvalError, match="expected a number"):
        conv("five", "number")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_any_string_written_by_the_writer_reads_back_unchanged(text: str) -> None:
    """string_literal (used for every string aibx writes) and the evaluator agree on HCL's escapes."""
    assert ev(string_literal(text)) == text
