"""Memory growth: loading, validating and translating thousands of different inputs in one process must not grow
memory without bound (a cache keyed by input, a list that is only appended to, a reference cycle kept alive).

Each workload runs in rounds under tracemalloc after a warm-up (which fills the bounded caches: re's, the lark
parser's); the test fails only if every round grows the traced memory by more than LEAK_PER_INPUT for each input, a
steady leak of kilobytes per input. (Measured: a few KB per round in all, shrinking from round to round.)
"""

from __future__ import annotations

import copy
import json
import random
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aibx import armexpr
from aibx.loader import LoadOptions, load_text
from aibx.translators import AibOptions, PackerInputs, aib_to_packer, packer_to_aib, read_packer
from aibx.validation import validate
from tests.support.fuzz_inputs import REAL_HCL, write_file
from tests.support.fuzzing import traced_growth
from tests.support.template_mutations import TEMPLATES, TRICKY_STRINGS, get, paths_of

LEAK_PER_INPUT = 2048  # bytes


def different_template(i: int) -> str:
    """Template number i: a fixture with a few values replaced by others, all of them distinct from one i to the
    next (names, strings, numbers), so that anything keyed by content would keep growing."""
    rng = random.Random(i)
    doc = copy.deepcopy(TEMPLATES[i % len(TEMPLATES)])
    paths = [p for p in paths_of(doc) if p and not isinstance(get(doc, p), (dict, list))]  # leaves
    for path in rng.sample(paths, min(4, len(paths))):
        parent = get(doc, path[:-1])
        parent[path[-1]] = rng.choice([f"value-{i}", i, f"[concat('x', '{i}')]", f"<p{i}>", rng.choice(TRICKY_STRINGS)])
    if isinstance(doc, dict):
        doc["name"] = f"template-{i}"
    return json.dumps(doc)


def validate_and_write_packer(i: int) -> None:
    options = LoadOptions(parameters={f"p{i}": "x"}, context=armexpr.DeploymentContext("sub", f"rg-{i}", "westeurope"))
    result = load_text(different_template(i), f"t{i}.json", options)
    for doc in result.documents:
        template = validate(doc).template
        if i % 4 == 0:
            aib_to_packer(template, Path("/tmp"), source=f"t{i}.json")


def read_packer_config(i: int) -> None:
    text = REAL_HCL[i % len(REAL_HCL)].replace('"westeurope"', f'"region-{i}"').replace("jammy", f"jammy-{i}")
    with tempfile.TemporaryDirectory(prefix="aibx-memory-") as tmp:
        path = write_file(Path(tmp) / "build.pkr.hcl", text)
        inputs = PackerInputs(env={}, now=datetime(2026, 1, 1, tzinfo=timezone.utc), cwd=tmp)
        config = read_packer(str(path), inputs)
        packer_to_aib(config, AibOptions(cwd=tmp))


@pytest.mark.parametrize(
    ("workload", "per_round", "warmup"),
    [(validate_and_write_packer, 80, 80), (read_packer_config, 30, 30)],
    ids=["validate-and-write-packer", "read-packer"],
)
def test_memory_does_not_grow_with_the_number_of_inputs(workload, per_round: int, warmup: int) -> None:
    growth = traced_growth(workload, rounds=3, per_round=per_round, warmup=warmup)
    leaking = all(g > LEAK_PER_INPUT * per_round for g in growth)
    assert not leaking, f"traced memory grew by {[f'{g / 1024:.0f} KiB' for g in growth]} in successive rounds"


def test_the_probe_sees_a_leak() -> None:
    """The measurement itself: a workload that keeps 4 KB per input is caught."""
    kept: list[bytes] = []
    growth = traced_growth(lambda i: kept.append(bytes(4096)), rounds=3, per_round=30, warmup=10)
    assert all(g > LEAK_PER_INPUT * 30 for g in growth)
