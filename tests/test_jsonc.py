import pytest

from aibx.jsonc import JsonSyntaxError, parse


def test_comments_and_trailing_commas_as_arm_accepts():
    text = """{
      // a line comment
      "a": [1, 2, /* inline */ 3,],
      "b": {"c": "x\\ty",},
    }"""
    value, smap = parse(text)
    assert value == {"a": [1, 2, 3], "b": {"c": "x\ty"}}
    assert smap.locate(("a", 2)) == (3, 32)
    assert smap.locate(("b", "c"), key=True) == (4, 13)


def test_locate_falls_back_to_the_nearest_ancestor():
    _, smap = parse('{"a": {"b": 1}}')
    assert smap.locate(("a", "missing", 3)) == (1, 7)


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ('{"a": 1,\n "b" 2}', "expected ':' after key \"b\"", 2, 6),
        ('{"a": [1, 2}', "expected ',' or ']' in array", 1, 12),
        ('{"a": "unterminated}', "unterminated string", 1, 7),
        ("{'a': 1}", "expected a quoted key", 1, 2),
        ('{"a": 1} x', "unexpected 'x' after the end", 1, 10),
        ("", "the file is empty", 1, 1),
        ('{"a": 1 /* open', "unterminated /* comment", 1, 9),
        ('{"a": tru}', "expected a value", 1, 7),
    ],
)
def test_syntax_errors_carry_line_and_column(text, message, line, column):
    with pytest.raises(JsonSyntaxError) as info:
        parse(text)
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, column)


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(JsonSyntaxError, match="nesting deeper"):
        parse("[" * 5000 + "]" * 5000)


def test_overlong_numbers_are_a_syntax_error_not_a_crash():
    with pytest.raises(JsonSyntaxError, match="number with more than"):
        parse('{"a": ' + "9" * 5000 + "}")


def test_a_missing_comma_is_named():
    with pytest.raises(JsonSyntaxError, match=r"missing ','"):
        parse('{"a": 1\n "b": 2}')
    with pytest.raises(JsonSyntaxError, match=r"missing ','"):
        parse('["a" "b"]')


def test_duplicate_keys_are_recorded_and_the_later_value_wins():
    value, smap = parse('{"a": 1, "b": {"c": 2}, "a": 3}')
    assert value == {"a": 3, "b": {"c": 2}}
    assert smap.duplicates == [(("a",), 24)]
    assert smap.locate(("a",), key=True) == (1, 25)


def test_a_byte_order_mark_and_unicode_escapes():
    value, _ = parse('\ufeff{"k": "caf\\u00e9 \\ud83d\\ude00"}')
    assert value == {"k": "café 😀"}
