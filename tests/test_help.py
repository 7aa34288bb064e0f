"""`aibx --help` reads like a man page (synopsis, verbs, examples, exit codes, environment, files, see also), and
what it says is true: the environment variables it names are read by aibx, the documents it names exist, and
every verb's help has examples and its exit status."""

from __future__ import annotations

import re

import pytest

from aibx import cli
from tests.conftest import ROOT
from tests.support.cli import invoke

SOURCES = [p for folder in ("aibx", "engine", "provisioners", "translators") for p in (ROOT / folder).rglob("*.py")]


@pytest.fixture(scope="module")
def top_help() -> str:
    done = invoke("--help")
    assert done.code == 0
    return done.out


def section(text: str, name: str) -> str:
    m = re.search(rf"^{name}:\n((?:  .*\n|\n(?=  ))+)", text, re.MULTILINE)
    assert m, f"no '{name}:' section"
    return m.group(1)


def test_the_top_help_has_the_sections_of_a_man_page(top_help: str) -> None:
    assert top_help.startswith("usage: aibx ")
    for verb in cli.VERBS:
        assert re.search(rf"^\s+{verb}\s+\S", top_help, re.MULTILINE), verb
    for name in ("examples", "exit codes", "environment", "files", "see also"):
        assert section(top_help, name).strip()
    codes = {int(c) for c in re.findall(r"^  (\d+) ", section(top_help, "exit codes"), re.MULTILINE)}
    from aibx.exitcodes import ExitCode

    assert codes == {int(c) for c in ExitCode}


def test_every_environment_variable_named_is_read_by_aibx(top_help: str) -> None:
    names = re.findall(r"^  ([A-Z][A-Z_]+)\s", section(top_help, "environment"), re.MULTILINE)
    assert {"NO_COLOR", "AIBX_DEBUG"} <= set(names)
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    for name in names:
        if name in ("SSH_AUTH_SOCK", "SSL_CERT_FILE"):
            continue  # read by asyncssh and by OpenSSL, as the help says
        needle = "PKR_VAR_" if name == "PKR_VAR_NAME" else name
        assert f'"{needle}' in code or f"'{needle}" in code, name


def test_the_documents_named_exist(top_help: str) -> None:
    for name in re.findall(r"[\w-]+\.md", section(top_help, "see also")):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("verb", cli.VERBS)
def test_each_verb_has_examples_and_its_exit_status(verb: str) -> None:
    done = invoke(verb, "--help")
    assert done.code == 0
    assert f"usage: aibx {verb} " in done.out
    assert "examples:" in done.out and f"aibx {verb} " in section(done.out, "examples")
    assert "exit status:" in done.out


@pytest.mark.parametrize("verb", cli.VERBS)
def test_each_verb_takes_format_json_and_shows_it_in_an_example(verb: str) -> None:
    done = invoke(verb, "--help")
    assert "--format {text,json}" in done.out
    assert re.search(rf"^  aibx {verb} .*--format json", section(done.out, "examples"), re.MULTILINE)


# issue 13: the new options are listed, each with an example
NEW_OPTIONS = {
    "run": ["--on-error", "--step", "--verbose", "--timestamps", "--timeout", "--limit", "--parameters", "--no-color"],
    "plan": ["--verbose", "--quiet", "--resource", "--parameters"],
    "validate": ["--parameters"],
}
SHORT = {"--verbose": "-v", "--quiet": "-q"}


@pytest.mark.parametrize("verb", sorted(NEW_OPTIONS))
def test_the_new_options_are_listed_with_an_example(verb: str) -> None:
    done = invoke(verb, "--help")
    examples = section(done.out, "examples")
    for option in NEW_OPTIONS[verb]:
        assert re.search(rf"^\s+(-\w, )?{option}\b", done.out, re.MULTILINE), f"{verb} --help does not list {option}"
        spelled = (option, SHORT.get(option, option))
        assert any(f" {s} " in examples or f" {s}\n" in examples for s in spelled), f"no example of {option}"


@pytest.mark.parametrize("verb", cli.VERBS)
def test_every_verb_takes_no_color(verb: str) -> None:
    assert "--no-color" in invoke(verb, "--help").out


def test_the_top_help_shows_the_new_run_options_and_exit_3_for_names(top_help: str) -> None:
    examples = section(top_help, "examples")
    for option in ("--on-error ask", "--step", "--timeout 90m", "--no-color", "--timestamps"):
        assert option in examples, option
    assert "cannot resolve a host name" in section(top_help, "exit codes")
