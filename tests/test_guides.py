"""The task guides in docs/ stay in step with the command: every `aibx ...` command they show parses with the
current options, and every document they (and the README) link to exists. (Each guide was also tried by hand, as
written, in a fresh virtualenv; the outputs they quote come from those runs.)"""

from __future__ import annotations

import re
import shlex

import pytest

from aibx.cli import build_parser
from tests.conftest import ROOT

GUIDES = sorted((ROOT / "docs").glob("guide-*.md"))
# the manuals that moved out of the README: their commands parse too
MANUALS = [ROOT / "docs" / "run.md"]


def shown_commands(text: str) -> list[str]:
    """`aibx ...` command lines in the shell blocks and inline code of a Markdown text."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" | ")[0].split(" > ")[0].split(" 2>")[0].strip()
            if line.startswith("aibx "):
                commands.append(line)
    # inline code that is a whole command (names a file), not the mention of a verb or an option
    inline = [c.split(" | ")[0].strip() for c in re.findall(r"`(aibx [^`]+)`", text)]
    commands += [c for c in inline if re.search(r"\.(json|hcl)\b", c) and "..." not in c]
    return commands


def test_there_are_the_three_guides() -> None:
    assert {p.name for p in GUIDES} >= {"guide-preflight.md", "guide-migrate.md", "guide-ci.md"}


@pytest.mark.parametrize("guide", GUIDES + MANUALS, ids=[p.name for p in GUIDES + MANUALS])
def test_every_command_shown_parses(guide) -> None:
    commands = shown_commands(guide.read_text(encoding="utf-8"))
    assert commands
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit as exc:
            if exc.code == 0:  # --version, --help
                continue
            pytest.fail(f"{guide.name}: {command!r} does not parse (exit {exc.code})")


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *GUIDES, *MANUALS, *(ROOT / "docs").glob("[ad]*.md"), ROOT / "docs" / "compatibility.md"],
    ids=lambda p: p.name,
)
def test_every_linked_document_exists(page) -> None:
    for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text(encoding="utf-8")):
        assert (page.parent / target).is_file(), f"{page.name} links to {target}"
