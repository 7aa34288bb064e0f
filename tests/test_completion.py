"""Shell completion: the bash and zsh scripts parse, and bash really completes verbs, options, choices and paths
(the script is sourced in a real bash and its completion function called as bash calls it on TAB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aibx import cli, completion
from tests.conftest import ROOT
from tests.support.cli import invoke
from tests.support.requirements import require_program

# call the completion function as bash does for the command line in $1 (the cursor at its end)
COMPLETE = r"""
source "$SCRIPT"
line="$1"
COMP_LINE="$line"; COMP_POINT=${#line}
read -ra COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
_shtab_aibx aibx "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "aibx.bash"
    path.write_text(completion.script("bash"))
    return path


def complete(script: Path, line: str) -> list[str]:
    bash = require_program("bash")
    done = subprocess.run(
        [bash, "-c", COMPLETE, "complete", line],
        env={**os.environ, "SCRIPT": str(script)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_script_parses(shell: str, tmp_path: Path) -> None:
    program = require_program(shell, shell)
    path = tmp_path / f"aibx.{shell}"
    path.write_text(invoke("--print-completion", shell).out)
    subprocess.run([program, "-n", str(path)], check=True)
    assert all(verb in path.read_text() for verb in cli.VERBS)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("aibx ", ["validate", "translate", "plan", "run"]),
        ("aibx tr", ["translate"]),
        ("aibx validate --str", ["--strict"]),
        ("aibx validate --format ", ["text", "json"]),
        ("aibx translate x.json --to ", ["packer", "aib", "bicep"]),
        ("aibx translate x.json --format ", ["text", "json"]),
        ("aibx run t.json --format ", ["text", "json"]),
        ("aibx run t.json --form", ["--format"]),
        ("aibx run t.json --os ", ["linux", "windows"]),
        ("aibx plan fixtures/quicks", ["fixtures/quickstart"]),
        ("aibx --install", ["--install-completion"]),
    ],
)
def test_bash_completes_verbs_options_choices_and_paths(bash_script: Path, line: str, expected: list[str]) -> None:
    assert complete(bash_script, line) == expected


def test_install_writes_where_the_shell_loads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SHELL", "/bin/bash")
    done = invoke("--install-completion")
    bash_file = tmp_path / "data" / "bash-completion" / "completions" / "aibx"
    assert done.code == 0 and str(bash_file) in done.out
    assert bash_file.read_text() == completion.script("bash")
    done = invoke("--install-completion", "zsh")
    assert done.code == 0 and "fpath=" in done.out
    assert (tmp_path / ".zfunc" / "_aibx").read_text().startswith("#compdef aibx")


def test_an_unknown_shell_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    done = invoke("--install-completion")
    assert done.code == 2 and "--install-completion {bash,zsh}" in done.err


def test_completion_costs_nothing_when_not_asked_for() -> None:
    code = "import sys; from aibx import cli; cli.main(['--version']); print(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "shtab" not in modules and "aibx.completion" not in modules
