"""Per-type dispatch is complete: every customizer type has its reader, every plan action its executor and its
`aibx plan` rendering, every transport scheme its descriptor. (Adding a type without its handler fails here.)"""

from __future__ import annotations

import typing

import pytest

from aibx import model, plan
from aibx.commands.plan import action_lines
from aibx.engine.executors import executor_for
from aibx.engine.transports import DESCRIPTORS, SCHEMES, descriptor

ACTIONS = typing.get_args(plan.Action)
SAMPLES = {
    plan.Exec: plan.Exec("true"),
    plan.Upload: plan.Upload("/tmp/x", plan.Content(data=b"x")),
    plan.Restart: plan.Restart("shutdown /r", None, 300.0),
    plan.WindowsUpdate: plan.WindowsUpdate("IsInstalled=0", (), 1000),
}


def test_every_customizer_type_has_a_reader() -> None:
    assert set(model.STEP_TYPES.values()) == set(model.STEP_READERS)


@pytest.mark.parametrize("kind", sorted(model.STEP_TYPES))
def test_each_reader_builds_its_own_type(kind: str) -> None:
    cls = model.STEP_TYPES[kind]
    reader = model.STEP_READERS[cls]
    built = reader(model._Reader({"type": cls.kind, "name": "n"}, ("properties", "customize", 0)), "n")
    assert type(built) is cls and built.name == "n"


def test_every_action_has_an_executor_and_a_rendering() -> None:
    assert set(ACTIONS) == set(SAMPLES)
    for action in SAMPLES.values():
        assert executor_for(action) is not None  # type: ignore[arg-type]
        lines = action_lines(action, "")
        assert lines and not lines[0].strip().startswith(type(action).__name__)  # its own rendering


def test_every_scheme_has_one_descriptor() -> None:
    schemes = [s for d in DESCRIPTORS for s in d.schemes]
    assert len(schemes) == len(set(schemes)) and set(schemes) == set(SCHEMES)
    assert descriptor("winrms").name == "winrm" and "windows" in descriptor("ssh").serves
