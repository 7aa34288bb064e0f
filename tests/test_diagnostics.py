"""Diagnostics: one safe line each, stable codes, URI secrets removed, "did you mean"."""

import pytest

from aibx.diagnostics import CODES, Severity, closest, format_path, make, printable


def test_a_diagnostic_is_one_line_with_file_position_code_and_path():
    d = make("AIB012", 'requires "runElevated": true', file="w.json", line=41, column=17, json_path="a.b[2]")
    assert d.format() == 'w.json:41:17: error[AIB012] a.b[2]: requires "runElevated": true'
    assert make("AIB001", "cannot read", file="x.json").format() == "x.json: error[AIB001] cannot read"
    assert make("AIB005", "m", severity=Severity.ERROR).as_dict()["severity"] == "error"


def test_control_characters_and_lone_surrogates_are_escaped():
    assert printable("a\nb\x1b[31m\ud800\u2028é") == "a\\nb\\x1b[31m\\ud800\\u2028é"
    line = make("AIB052", "bad\nvalue", file="f\r.json").format()
    assert "\n" not in line and "\r" not in line


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            '"https://acct.blob.core.windows.net/c/s.sh?sv=2022&sig=SECRET" x',
            '"https://acct.blob.core.windows.net/c/s.sh?…" x',
        ),
        ("ftp://user:password@host/file", "ftp://host/file"),
        ("https://example.org/plain.sh", "https://example.org/plain.sh"),
    ],
)
def test_uri_queries_and_passwords_never_reach_a_message(message, shown):
    assert make("AIB029", message).message == shown


def test_closest_suggests_the_spelling_of_the_candidate():
    assert closest("aritfactTags", ["artifactTags", "runOutputName"]) == "artifactTags"
    assert closest("IMAGEVERSIONID", ["imageVersionId"]) == "imageVersionId"
    assert closest("zzz", ["artifactTags"]) is None


def test_format_path_quotes_keys_that_are_not_plain_names():
    assert format_path(("properties", "customize", 2, "name")) == "properties.customize[2].name"
    assert (
        format_path(("identity", "userAssignedIdentities", "/subs/x")) == 'identity.userAssignedIdentities["/subs/x"]'
    )
    assert format_path(()) == ""


def test_codes_are_well_formed():
    assert all(len(c) == 6 and c.startswith("AIB") and c[3:].isdigit() for c in CODES)
