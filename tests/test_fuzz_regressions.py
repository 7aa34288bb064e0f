"""Inputs the fuzz tests (tests/test_fuzz_*.py) found crashing, hanging or exhausting memory, replayed through
the aibx command itself: each gives diagnostics and a documented exit code now, within the watchdog's time and
memory bounds. Small inputs live in fixtures/fuzz/ (see its README); inputs of megabytes are built here."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import Completed, invoke
from tests.support.fuzzing import memory_limit, watchdog
from tests.support.tracebacks import debug_tracebacks

FUZZ = Path(__file__).resolve().parent.parent / "fixtures" / "fuzz"
FUZZ_TESTS = sorted(Path(__file__).resolve().parent.glob("test_fuzz_*.py"))


@dataclass
class Case:
    name: str
    args: list[str]  # after the verb; {fixture} and {out} are filled in
    codes: tuple[int, ...]
    shows: str = ""  # text the output must hold


VALIDATE = ["{fixture}", "--format", "json"]
TO_AIB = ["{fixture}", "--to", "aib", "-o", "{out}/", "--allow-lossy"]
TO_PACKER = ["{fixture}", "--to", "packer", "-o", "{out}/x.pkr.hcl", "--allow-lossy"]
CASES = [
    Case("arm-huge-integer.json", ["validate", *VALIDATE], (2,), "outside ARM's 64-bit integers"),
    Case("arm-variables-without-name.json", ["validate", *VALIDATE], (2,), "wrong number or kind of arguments"),
    Case("arm-padleft-two-billion.json", ["validate", *VALIDATE], (0, 2), "does not build a string of 2000000000"),
    Case("arm-mul-overflow.json", ["validate", *VALIDATE], (2,), "overflows ARM's 64-bit integers"),
    Case("arm-createobject-number-key.json", ["validate", *VALIDATE], (2,), "pairs of a string key and a value"),
    Case("lone-surrogate.json", ["validate", *VALIDATE], (2,), "half of a UTF-16 surrogate pair"),
    Case("lone-surrogate.json", ["translate", *TO_PACKER], (2,), "half of a UTF-16 surrogate pair"),
    Case("huge-digit-string.json", ["validate", *VALIDATE], (2,), "buildTimeoutInMinutes"),
    Case("huge-digit-string.json", ["translate", *TO_PACKER], (0, 1, 2)),
    Case("hcl-regex-backtracking.pkr.hcl", ["translate", *TO_AIB], (0,)),
    Case("hcl-huge-integer.pkr.hcl", ["translate", *TO_AIB], (2,), "more than aibx reads"),
    Case("hcl-format-width.pkr.hcl", ["translate", *TO_AIB], (2,), "Go allows widths and precisions up to 1000000"),
    Case("legacy-sensitive-variables.json", ["translate", *TO_AIB], (2,), '"sensitive-variables" must be a list'),
    Case("legacy-post-processors.json", ["translate", *TO_AIB], (2,), '"post-processors" must be a list'),
    Case("legacy-provisioner-types.json", ["translate", *TO_AIB], (0,), "valid_exit_codes must be numbers"),
    # read only with --allow-local-files (issue 11): then a device is still refused, not read for ever
    Case(
        "legacy-hostile-paths.json", ["translate", *TO_AIB, "--allow-local-files"], (0,), "/dev/zero: is not a regular"
    ),
    Case("aib-file-dev-zero.json", ["translate", *TO_PACKER], (2,), "is not a regular file"),
]


def run_bounded(*args: str) -> Completed:
    """The aibx command under the fuzz watchdog and memory limit, re-raising a crash (AIBX_DEBUG)."""
    with debug_tracebacks(), watchdog(), memory_limit():
        done = invoke(*args)
    assert "internal error" not in done.err
    return done


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}-{c.args[0]}" for c in CASES])
def test_fuzz_finding_gives_diagnostics(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FUZZ)  # the Packer fixtures name script.sh beside them
    args = [a.format(fixture=case.name, out=tmp_path) for a in case.args]
    done = run_bounded(*args)
    assert done.code in case.codes, done.text
    assert case.shows in done.text


def test_regex_replace_follows_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RE2 as in Packer: "(a+)+$" answers at once, and a reference to a group the pattern lacks is empty."""
    monkeypatch.chdir(FUZZ)
    done = run_bounded("translate", "hcl-regex-backtracking.pkr.hcl", "--to", "aib", "-o", str(tmp_path / "t.json"))
    assert done.code == 0, done.text
    template = json.loads((tmp_path / "t.json").read_text())
    assert template["properties"]["distribute"][0]["imageId"].endswith(
        "/images/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
    )
    assert template["properties"]["customize"][0]["inline"] == ["echo value:key:"]


# ----------------------------------------------------------------------------------------------- big inputs
def test_a_string_of_megabytes_is_read_in_constant_memory(tmp_path: Path) -> None:
    """jsonc matched strings with a regex that kept state per character: 450 MB for a 3.6 MB string."""
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"description": "[concat('a', " * 300_000, "type": "x"}))
    assert run_bounded("validate", str(path)).code == 2


def test_a_comment_of_megabytes_is_skipped_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text("/*" + "*" * 5_000_000 + "*/ {}")  # 580 MB with the regex it replaced
    assert run_bounded("validate", str(path)).code == 2


def test_many_template_actions_in_a_packer_json_value_take_linear_time(tmp_path: Path) -> None:
    """A lazy {{ ... }} regex was quadratic: 150,000 "{{" without "}}" hung the legacy JSON reader."""
    template = json.loads((FUZZ / "legacy-post-processors.json").read_text())
    del template["post-processors"]
    template["builders"][0]["managed_image_name"] = "{{" * 150_000
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(template))
    done = run_bounded("translate", str(path), "--to", "aib", "-o", str(tmp_path / "out") + "/", "--allow-lossy")
    assert done.code in (0, 1), done.text


def test_many_template_starts_in_an_aib_value_are_written_in_linear_time(tmp_path: Path) -> None:
    """Escaping "${" for HCL used a lookahead regex, quadratic: 100,000 of them took minutes."""
    template = json.loads((FUZZ.parent / "quickstart" / "hello-linux.json").read_text())
    template["properties"]["customize"] = [{"type": "Shell", "inline": ["${" * 100_000, "%{" * 100_000 + "}"]}]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template))
    out = tmp_path / "t.pkr.hcl"
    done = run_bounded("translate", str(path), "--to", "packer", "-o", str(out), "--allow-lossy")
    assert done.code == 0, done.text
    assert "\\u0024{" * 1000 in out.read_text()


def test_the_fuzz_fixtures_are_all_replayed() -> None:
    replayed = {c.name for c in CASES} | {"script.sh", "README.md"}
    assert {p.name for p in FUZZ.iterdir()} == replayed


def test_arguments_that_are_not_utf8_are_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python keeps argv and environment bytes that are not UTF-8 as lone surrogates: `-p region=$'\\xff'` once
    crashed translate writing the HCL. Now -p, --var, PKR_VAR_* and env() refuse them with a diagnostic."""
    placeholders = str(FUZZ.parent / "validate" / "quickstart" / "placeholders.json")
    packer = str(FUZZ.parent / "translate" / "packer" / "linux-single")
    out = str(tmp_path / "out.x")
    done = run_bounded("translate", placeholders, "--to", "packer", "-o", out, "-p", "region=\udcff")
    assert done.code == 2 and "-p region=...: not UTF-8 text" in done.err
    assert run_bounded("validate", placeholders, "-p", "region=\udcff").code == 2
    done = run_bounded("translate", packer, "--to", "aib", "-o", out, "--var", "image_name=\udcff")
    assert done.code == 2 and "in UTF-8" in done.err
    monkeypatch.setitem(os.environ, "PKR_VAR_image_name", "\udcff")
    done = run_bounded("translate", packer, "--to", "aib", "-o", out)
    assert done.code == 2 and "PKR_VAR_image_name: not UTF-8 text" in done.err


def test_the_full_fuzz_run_generates_more_than_10000_inputs() -> None:
    budgets = re.findall(r"@budgets\(sample=\d+, full=(\d+)\)", "".join(p.read_text() for p in FUZZ_TESTS))
    assert len(budgets) >= 10 and sum(map(int, budgets)) > 10_000
