"""Fuzzing the Bicep reader: the fixtures of fixtures/bicep/ with bytes flipped, inserted, deleted, spliced or cut
short, read in-process and through `aibx validate`. Every outcome is diagnostics (exit 0 or 2), never an exception,
a hang or a runaway allocation (tests/support/fuzzing.py has the harness). `pytest -m fuzz` runs the full budgets.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from aibx import validation
from aibx.loader import LoadOptions, load
from tests.conftest import FIXTURES
from tests.support.cli import invoke
from tests.support.fuzz_inputs import mutated_bytes
from tests.support.fuzzing import budgets, fuzz

BICEP = FIXTURES / "bicep"
ORIGINALS = [p.read_bytes() for p in sorted(BICEP.rglob("*.bicep*"))]


def check_in_process(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(BICEP, tmp, dirs_exist_ok=True)  # modules and scripts beside it, as the fixtures expect
        path = Path(tmp) / f"fuzzed{suffix}"
        path.write_bytes(data)
        result = load(str(path), LoadOptions(parameters={"adminPassword": "pa55word"}))
        for doc in result.documents:
            validation.validate(doc)


def check_through_the_cli(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(BICEP, tmp, dirs_exist_ok=True)
        path = Path(tmp) / "fuzzed.bicep"
        path.write_bytes(data)
        out = invoke("validate", str(path))
        assert out.code in (0, 2), out.text
        assert "Traceback" not in out.text


@budgets(sample=60, full=800)
def test_mutated_bicep_files_give_diagnostics(budget: int) -> None:
    fuzz(budget, check_in_process, data=mutated_bytes(ORIGINALS), suffix=st.sampled_from([".bicep", ".bicepparam"]))


@budgets(sample=20, full=300)
def test_mutated_bicep_files_through_aibx_validate_exit_0_or_2(budget: int) -> None:
    fuzz(budget, check_through_the_cli, data=mutated_bytes(ORIGINALS))
