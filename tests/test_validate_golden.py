"""Golden tests: `aibx validate` on the fixtures in fixtures/validate, text and JSON output, against the files
in fixtures/validate/golden/.

The cases (arguments and what each shows) are listed in fixtures/validate/cases.json. To regenerate the golden
files after an intended change, run

    AIBX_REGEN_GOLDEN=1 python -m pytest tests/test_validate_golden.py

and read every changed file (git diff fixtures/validate/golden) before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aibx import __version__, cli
from aibx.diagnostics import CODES
from tests.conftest import FIXTURES

HERE = FIXTURES / "validate"
GOLDEN = HERE / "golden"
CASES = json.loads((HERE / "cases.json").read_text())
REGENERATE = os.environ.get("AIBX_REGEN_GOLDEN") == "1"
# reserved for `aibx translate`; their examples come with the translator's fixtures
TRANSLATION_CODES = {c for c in CODES if c.startswith("AIB07")}


def run_validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, out


@pytest.fixture(autouse=True)
def in_fixture_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE)  # file names in the output stay relative, so the goldens do not depend on the checkout
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def compare(path: Path, actual: str) -> None:
    if REGENERATE:
        path.write_text(actual)
    assert path.exists(), f"{path} is missing; run with AIBX_REGEN_GOLDEN=1 to create it"
    assert actual == path.read_text(), f"output differs from {path}; see the module docstring to regenerate"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_text_and_json_output_match_the_golden_files(case: dict, capsys: pytest.CaptureFixture[str]) -> None:
    text_code, text = run_validate(case["args"], capsys)
    json_args = case["args"] if "--format" in case["args"] else [*case["args"], "--format", "json"]
    json_code, json_out = run_validate(json_args, capsys)
    report = json.loads(json_out)

    assert report["aibx"] == __version__ and report["exitCode"] == json_code
    # the version of aibx that wrote the document is not part of the golden file
    compare(GOLDEN / f"{case['name']}.json", json_out.replace(f'"aibx": "{__version__}"', '"aibx": "VERSION"', 1))
    if "--format" not in case["args"]:
        compare(GOLDEN / f"{case['name']}.txt", text)
        # one line per diagnostic, then the summary line
        assert len(text.splitlines()) == len(report["diagnostics"]) + 1
    assert text_code == json_code == (0 if report["valid"] else 2)
    assert report["summary"]["errors"] == sum(d["severity"] == "error" for d in report["diagnostics"])


def test_goldens_cover_every_diagnostic_code() -> None:
    seen = set()
    for case in CASES:
        report = json.loads((GOLDEN / f"{case['name']}.json").read_text())
        seen |= {d["code"] for d in report["diagnostics"]}
    missing = set(CODES) - TRANSLATION_CODES - seen
    assert not missing, f"no golden case shows {sorted(missing)}"
    assert seen <= set(CODES)


def test_valid_fixtures_have_no_diagnostics_at_all() -> None:
    report = json.loads((GOLDEN / "valid-every-version.json").read_text())
    # what the swagger of their apiVersion allowed, but the service refuses today (aibx/api_history.py RETIRED):
    # no identity, a RHEL ISO source, an apiVersion before 2019-05-01-preview; nothing else
    retired = {"preview-2018-02-01.json", "preview-2019-02-01.json", "preview-2019-05-01-iso.json"}
    assert {d["code"] for d in report["diagnostics"]} == {"AIB035", "AIB036"}
    assert {Path(d["file"]).name for d in report["diagnostics"]} == retired
    versions = {t["apiVersion"] for t in report["templates"]}
    from aibx.swagger_tables import API_VERSIONS

    assert versions == set(API_VERSIONS), "a valid fixture for every apiVersion"


def test_every_golden_file_belongs_to_a_case() -> None:
    names = {c["name"] for c in CASES}
    stray = [p.name for p in GOLDEN.iterdir() if p.stem not in names]
    assert not stray, f"golden files without a case in cases.json: {stray}"
