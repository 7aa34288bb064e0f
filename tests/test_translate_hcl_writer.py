"""HCL written by aibx: python-hcl2's writer, formatted exactly as ``packer fmt`` formats it, and read back
unchanged. Checked with the real Packer."""

from __future__ import annotations

import random
import shutil
import string
from pathlib import Path

from aibx.translators import packer_hcl
from aibx.translators.hcl_writer import Block, Expr, dumps
from aibx.translators.packer_hcl import PackerInputs
from tests.support.packer import run_packer


def fmt_check(folder: Path, scratch: Path) -> None:
    result = run_packer(["fmt", "-check", "."], folder, scratch)
    if result.returncode != 0:
        shown = scratch / "diff"
        shutil.copytree(folder, shown, dirs_exist_ok=True)
        diff = run_packer(["fmt", "-diff", "."], shown, scratch)  # -diff rewrites: work on a copy
        raise AssertionError(f"packer fmt -check failed ({result.returncode}):\n{result.stdout}{diff.stdout}")


def test_the_documented_differences_are_formatted_as_packer_fmt_does(tmp_path: Path) -> None:
    """Runs of single-line attributes align, a multi-line value ends a run; blank lines carry no spaces."""
    src = Block("source", ["azure-arm", "img"])
    src.set("a", 1)
    src.set("long_attribute_name", "x")
    src.set("azure_tags", {"k": "v", "longer key": "w"})
    src.set("after_the_map", True)
    src.set("b", Expr("var.b"))
    src.set("list", ["x", "y"])
    src.set("empty_list", [])
    src.add(Block("nested", attributes={"x": 1, "yy": {"nested_map": {"deep": 1}, "z": 2}}))
    build = Block("build", attributes={"sources": ["source.azure-arm.img"]})
    build.add(Block("provisioner", ["shell"], {"inline": ["a"]}, comment="a comment\nover two lines"))
    build.add(Block("provisioner", ["windows-restart"]))
    text = dumps([Block("packer"), src, build])
    assert "azure_tags = {" in text
    assert '  a                   = 1\n  long_attribute_name = "x"\n' in text
    assert "  after_the_map = true\n  b             = var.b\n" in text
    assert "\n\n\n" not in text and not any(line != line.rstrip() for line in text.splitlines())
    assert '  # a comment\n  # over two lines\n  provisioner "shell" {' in text
    assert 'provisioner "windows-restart" {}' in text
    (tmp_path / "doc.pkr.hcl").write_text(text)
    fmt_check(tmp_path, tmp_path / "scratch")


_KEY = string.ascii_lowercase + "_"


def _text(rng: random.Random) -> str:
    pieces = ["plain", "with space", '"quoted"', "back\\slash", "${not_interp}", "%{not_directive}", "tab\t",
              "new\nline", "ünïcödé", "{{ .Path }}", "$", "%", "{", "}", "'", "$${", "\u0001", "#x", "//y"]  # fmt: skip
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))


def _value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["str", "str", "int", "bool", "list", "map"] if depth < 2 else ["str", "int", "bool"])
    if kind == "str":
        return _text(rng)
    if kind == "int":
        return rng.randint(-5, 10**6)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = {"".join(rng.choice(_KEY) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(0, 4))}
    return {k if rng.random() < 0.7 else f"{k} {k}": _value(rng, depth + 1) for k in keys}


def _block(rng: random.Random, depth: int = 0) -> Block:
    block = Block("locals" if depth == 0 else "nested_block")
    for _ in range(rng.randint(0, 6)):
        name = "".join(rng.choice(_KEY) for _ in range(rng.randint(1, 20)))
        block.attributes["a" + name] = _value(rng)
    if depth == 0:
        return block
    for _ in range(rng.randint(0, 2) if depth < 3 else 0):
        block.add(_block(rng, depth + 1))
    return block


def test_random_documents_are_fmt_clean_and_read_back_unchanged(tmp_path: Path) -> None:
    """Random values and shapes: packer fmt finds nothing to change, and the reader gets the same values."""
    rng = random.Random(20260101)
    docs = tmp_path / "docs"
    docs.mkdir()
    written = {}
    for i in range(40):
        locals_block = _block(rng)
        src = Block("source", ["null", f"n{i}"], {"communicator": "none"})
        nested = src.add(_block(rng, 1))
        nested.comment = _text(rng).replace("\n", " ") or None
        build = Block("build", attributes={"sources": [f"source.null.n{i}"]})
        blocks = [locals_block, src, build] if i % 2 else [src, build]
        (docs / f"doc{i:02d}.pkr.hcl").write_text(dumps(blocks))
        written[i] = locals_block.attributes
    fmt_check(docs, tmp_path / "scratch")
    for i, attributes in written.items():
        if i % 2 == 0:
            continue
        reader = packer_hcl._Reader(str(docs / f"doc{i:02d}.pkr.hcl"), PackerInputs(env={}))
        reader.read()
        assert not reader.config.diagnostics
        values = {name: reader.local(name, None) for name in attributes}
        assert values == attributes
