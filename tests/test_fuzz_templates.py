"""Fuzzing the JSON/ARM loader, the validator and the model: damaged templates, ARM deployments with hostile
parameters and expressions, and mutated bytes through `aibx validate` itself. Every outcome is diagnostics (exit
0 or 2), never an exception, a hang or a runaway allocation (tests/support/fuzzing.py has the harness).

The normal suite runs a sample of each; `pytest -m fuzz` runs the full budgets. Inputs that once crashed aibx are
kept in fixtures/fuzz/ and replayed by tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from aibx import armexpr
from aibx.loader import LoadOptions
from tests.support.cli import Completed, invoke
from tests.support.fuzz_inputs import (
    VALID_BYTES,
    damaged_templates,
    deployments,
    mutated_bytes,
    odd_strings,
    raw_bytes,
    to_json_text,
    write_file,
)
from tests.support.fuzzing import budgets, fuzz
from tests.support.template_mutations import OPTIONS, check_everything
from tests.support.tracebacks import debug_tracebacks

PARAMETER_FILES = [
    (Path(__file__).parent.parent / "fixtures" / "validate" / "arm" / name).read_bytes()
    for name in ("deployment.parameters.json", "bad-parameters.parameters.json")
]


def validate_cli(*args: str) -> Completed:
    """`aibx validate ... --format json`, which must exit 0 or 2 with a JSON document that agrees."""
    with debug_tracebacks():
        done = invoke("validate", *args, "--format", "json")
    assert done.code in (0, 2), done.err
    report = json.loads(done.out)
    assert report["valid"] is (done.code == 0)
    assert all(d["code"].startswith("AIB") and "\n" not in d["message"] for d in report["diagnostics"])
    return done


# ----------------------------------------------------------------------------------------------- checks
def check_damaged_template(doc: object, options: LoadOptions) -> None:
    check_everything(to_json_text(doc), options)


def check_deployment(deployment: tuple[object, dict[str, str]], context: armexpr.DeploymentContext) -> None:
    template, assignments = deployment
    check_everything(to_json_text(template), LoadOptions(parameters=assignments, context=context))


def check_bytes_through_the_cli(data: bytes, parameters: bytes | None, strict: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="aibx-fuzz-") as tmp:
        args = [str(write_file(Path(tmp) / "template.json", data))]
        if parameters is not None:
            args += ["--parameters", str(write_file(Path(tmp) / "template.parameters.json", parameters))]
        validate_cli(*args, *(["--strict"] if strict else []))


# ----------------------------------------------------------------------------------------------- tests
@budgets(sample=150, full=1800)
def test_damaged_templates_give_diagnostics(budget: int) -> None:
    fuzz(
        budget,
        check_damaged_template,
        doc=damaged_templates(),
        options=st.sampled_from(OPTIONS),
    )


@budgets(sample=100, full=1200)
def test_arm_deployments_with_hostile_parameters_give_diagnostics(budget: int) -> None:
    contexts = st.builds(
        armexpr.DeploymentContext,
        st.one_of(st.none(), st.just("0000"), odd_strings),
        st.one_of(st.none(), st.just("rg")),
        st.one_of(st.none(), st.just("westeurope")),
    )
    fuzz(budget, check_deployment, deployment=deployments(), context=contexts)


@budgets(sample=60, full=500)
def test_mutated_files_through_aibx_validate_exit_0_or_2(budget: int) -> None:
    fuzz(
        budget,
        check_bytes_through_the_cli,
        data=st.one_of(mutated_bytes(VALID_BYTES), raw_bytes),
        parameters=st.one_of(st.none(), mutated_bytes(PARAMETER_FILES)),
        strict=st.booleans(),
    )
