"""The layer contract of docs/architecture.md, read from the imports of every module (in functions too):

* translators import neither the engine nor the provisioners;
* provisioners never import the transports (nor the engine that drives them);
* transports know nothing of AIB: not the model, the plan, the provisioners, the translators, loading or validation;
  and one transport does not import another (what two share, such as the Windows boot identity, is in the hub);
* the core (everything but the face: ``aibx/cli.py``, ``aibx/__main__.py``, ``aibx/completion.py``, ``aibx/commands/``,
  ``aibx/pipeline.py``) never imports the face.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the package-dir mapping of pyproject.toml: folder -> the package it installs as
PACKAGES = {
    "aibx": "aibx",
    "engine": "aibx.engine",
    "provisioners": "aibx.provisioners",
    "translators": "aibx.translators",
}
FACE = ("aibx.__main__", "aibx.cli", "aibx.commands", "aibx.completion", "aibx.pipeline")
AIB = ("aibx.model", "aibx.plan", "aibx.provisioners", "aibx.translators", "aibx.loader", "aibx.validation")
RULES = (
    ("aibx.translators", ("aibx.engine", "aibx.provisioners"), "translators import neither engine nor provisioners"),
    ("aibx.provisioners", ("aibx.engine",), "provisioners never import the transports (or the engine)"),
    ("aibx.engine.transports", AIB, "transports know nothing of AIB"),
)


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


TRANSPORTS = tuple(f"aibx.engine.transports.{name}" for name in ("ssh", "winrm", "local"))


def violations() -> list[str]:
    found = []
    for module, path in modules().items():
        face = within(module, FACE)
        for line, imported in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}: {module} imports {imported}"
            if not face and within(imported, FACE):
                found.append(f"{where} (the core never imports the face)")
            other_transports = tuple(t for t in TRANSPORTS if t != module)
            if within(module, TRANSPORTS) and within(imported, other_transports):
                found.append(f"{where} (one transport does not import another)")
            for layer, forbidden, rule in RULES:
                if within(module, (layer,)) and within(imported, forbidden):
                    found.append(f"{where} ({rule})")
    return sorted(set(found))


def test_every_layer_keeps_to_its_imports() -> None:
    assert violations() == []


def test_the_contract_test_sees_a_crossing() -> None:
    """The reader of imports is not blind: the folders are mapped, and imports inside functions count."""
    found = modules()
    assert "aibx.engine.transports.ssh" in found and "aibx.translators.aib" in found
    source = found["aibx.engine.runner"]
    assert any(name.startswith("aibx.engine.session") for _, name in imports(source))
    assert within("aibx.engine.transports.ssh", ("aibx.engine.transports",))
    assert not within("aibx.engineering", ("aibx.engine",))


@pytest.mark.parametrize("layer", [rule[0] for rule in RULES])
def test_every_layer_has_modules(layer: str) -> None:
    assert any(within(m, (layer,)) for m in modules())
