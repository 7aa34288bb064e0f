"""The task guides in docs/ stay in step with the command: every `aibx ...` command they show parses with the
current options, and every document they (and the README) link to exists. (Each guide was also tried by hand, as
written, in a fresh virtualenv; the outputs they quote come from those runs.)"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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


# ------------------------------------------------------------------------------------ the output blocks, for real
# Every fenced block of the README, the guides and docs/run.md is checked against a real run (issue 13):
#
# * a ```sh (or ```yaml) block's aibx and jq lines run, in order, in a sandbox (below) when they can run here (no
#   remote host); the output block that follows (```, before the next command block) must be what they printed:
#   whole, or with "..." lines standing for lines left out and ".../" for a path's beginning;
# * a ``` block that starts with "$ aibx ..." is a command and its output: run and compared the same way when it
#   can run here; otherwise (a remote VM) every line must have the form the console gives it, and the step counts
#   must be those of the template's plan;
# * only what must vary is normalised: times, boot ids, dates, random temporary names, this machine's name.
DOC_PAGES = [ROOT / "README.md", *GUIDES, *MANUALS]
# the sandbox: the sources' fixtures, and the files the pages name that are not in the sources under that name
SANDBOX_FILES = {
    "ubuntu.json": "fixtures/docs/ubuntu.json",
    "templates/hello-linux.json": "fixtures/quickstart/hello-linux.json",
    "templates/windows.json": "fixtures/validate/broken/rules/AIB012-run-as-system.json",
}
LOCAL_VERBS = ("validate", "translate", "plan")
T = "<T>"
CONSOLE_LINES = [
    r"\$ .+",
    r"\.\.\.",
    r"aibx: \S+ on \S+: \d+ of \d+ steps \(build timeout <T>\)",
    r"connecting to \S+ \.\.\.",
    r"connected in <T>, boot id \S+",
    r"==> \[\d+/\d+\] .+ \(\w+\)",
    r"<== \[\d+/\d+\] .+: (succeeded|failed|timed out|interrupted|connection lost) in <T>( \(.+\))?",
    r"--- \[\d+/\d+\] .+: skipped( \(.+\))?",
    r"[\w.-]+ \| .*",
    r"run succeeded in <T>",
    r"aibx: run [a-z ]+ after <T>: .+",
    r"recap: \d+ ok(, \d+ [a-z ]+)* in <T>",
    r"(log|report): \S+( \(.+\))?",
    r"connection lost during .+: .+; waiting up to <T> for it",
    r"the VM is restarting \(.+\); waiting up to <T> for it to come back",
    r"waiting for \w+… <T>, last error: .+",
    r"\w+ is back after <T>: the VM restarted \(boot id \S+\)",
    r"Windows Update round \d+: found \d+, selected \d+, skipped \d+, installed \d+, failed \d+(; .+)?",
    r"Windows Update done after \d+ rounds: .+",
    r"\d+ hosts: (\d+ [a-z ]+)(, \d+ [a-z ]+)*; exit status \d+",
    r"host +outcome +steps ok +reboots +time +exit",
    r"\S+ +(succeeded|failed|timed out|interrupted|connect failed) +\d+/\d+ +\d+ +(<T>|\d+(\.\d)?s) +\d+( +.+)?",
]


def normalise(text: str, sandbox: Path | None = None) -> str:
    if sandbox is not None:
        text = text.replace(f"{sandbox}/", "").replace(str(sandbox), ".")
        text = re.sub(rf"\b{re.escape(os.uname().nodename)}\b", "vm", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<UUID>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<DATE>", text)
    text = re.sub(r"\b(\d+h)?\d+m\d\ds\b|\b\d+(\.\d+)? s\b", T, text)
    text = re.sub(r"aibx-[0-9a-f]{16}", "aibx-<RANDOM>", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected``, where a line "..." stands for any lines and ".../" for a path's beginning."""
    parts = []
    for line in expected.splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(re.escape(line).replace(re.escape(".../"), r"\S*/") + r"\n")
    return re.fullmatch("".join(parts), actual + "\n") is not None


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line) of every fenced block, in order."""
    return [
        (m.group(1), m.group(2), text[: m.start()].count("\n") + 1)
        for m in re.finditer(r"^```(\w*)\n(.*?)^```\n", text, re.MULTILINE | re.DOTALL)
    ]


def command_lines(body: str, language: str) -> list[str]:
    lines = [line.strip() for line in body.replace("\\\n", " ").splitlines()]
    if language == "yaml":
        return [line for line in lines if line.startswith(("aibx ", "jq "))]
    return [line for line in lines if line]


def runs_here(command: str) -> bool:
    """An aibx command that needs no remote host (or a jq over what one wrote)."""
    if command.startswith("jq "):
        return True
    words = shlex.split(command.split(" | ")[0].split(" > ")[0].split(" || ")[0])
    if words[0] != "aibx" or len(words) < 2:
        return False
    if words[1] in LOCAL_VERBS:
        return True
    return words[1] == "run" and "--host" in words and words[words.index("--host") + 1] == "local"


def run_in(sandbox: Path, command: str) -> tuple[int, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        ["bash", "-c", command.split(" || ")[0]],
        cwd=sandbox,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout


def make_sandbox(tmp_path: Path) -> Path:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "fixtures").symlink_to(ROOT / "fixtures")
    for name, source in SANDBOX_FILES.items():
        (sandbox / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, sandbox / name)
    return sandbox


def plan_step_count(sandbox: Path, command: str) -> int | None:
    """How many steps ``aibx plan`` gives the template of an ``aibx run`` command (None: no such file here)."""
    words = shlex.split(command)
    if not (sandbox / words[2]).is_file():
        return None
    extra = [w for w in words if w in ("--generalize",)]
    _, out = run_in(sandbox, shlex.join(["aibx", "plan", words[2], *extra]))
    found = re.search(r"^Plan for .*: (\d+) steps", out, re.MULTILINE)
    assert found, out
    return int(found.group(1))


def check_console_excerpt(page: str, line: int, body: str, sandbox: Path) -> list[str]:
    """A run on a remote VM, as the console shows it: every line in a form the console gives, the same step
    count throughout, and that count the template's own when the page names a template of the sources."""
    problems = []
    text = normalise(re.sub(r"\\\n\s*", " ", body))  # a command's continuation lines joined
    counts = {int(n) for n in re.findall(r"\[\d+/(\d+)\]|of (\d+) steps", text) for n in n if n}
    commands = [ln[2:] for ln in body.replace("\\\n", " ").splitlines() if ln.startswith("$ aibx run ")]
    for number, shown in enumerate(text.splitlines(), start=line + 1):
        if shown and not any(re.fullmatch(form, shown) for form in CONSOLE_LINES):
            problems.append(f"{page}:{number}: not a line aibx prints: {shown!r}")
    if len(counts) > 1:
        problems.append(f"{page}:{line}: step counts differ within one run: {sorted(counts)}")
    for command in commands:
        expected = plan_step_count(sandbox, command)
        if expected is not None and counts and counts != {expected}:
            problems.append(f"{page}:{line}: {command!r} has {expected} steps, the page shows {sorted(counts)}")
    return problems


def split_session(body: str) -> tuple[list[str], list[str]]:
    """A terminal session shown as "$ command" lines (continued by a trailing backslash) and their output."""
    commands: list[str] = []
    output: list[str] = []
    continued = False
    for line in body.splitlines():
        if continued:
            commands[-1] += " " + line.strip().removesuffix("\\").strip()
        elif line.startswith("$ "):
            commands.append(line[2:].removesuffix("\\").strip())
        else:
            output.append(line)
        continued = line.endswith("\\")
    return commands, output


def check_page(page: Path, sandbox: Path) -> list[str]:
    problems: list[str] = []
    name = page.name
    last_output: str | None = None  # what the last command block printed (None: it could not run here)
    for language, body, line in fenced_blocks(page.read_text(encoding="utf-8")):
        if language in ("sh", "yaml"):
            commands = command_lines(body, language)
            runnable = [c for c in commands if c.startswith(("aibx ", "jq "))]
            if runnable and all(runs_here(c) for c in runnable):
                last_output = ""
                for command in runnable:
                    code, out = run_in(sandbox, command)
                    if code == 70 or "Traceback" in out:
                        problems.append(f"{name}:{line}: {command!r} crashed (exit {code}):\n{out}")
                    last_output += out
            else:
                last_output = None
            continue
        if language:
            continue  # ```json (an excerpt of a document), checked by the JSON tests
        if body.startswith("$ "):
            commands, output_lines = split_session(body)
            if not output_lines:
                continue  # commands only: they parse (test_every_command_shown_parses)
            if all(runs_here(c) for c in commands):
                actual = "".join(run_in(sandbox, c)[1] for c in commands)
                expected = "\n".join(output_lines)
                if not matches(normalise(expected), normalise(actual, sandbox)):
                    problems.append(f"{name}:{line}: the output shown differs from a real run:\n{actual}")
            else:
                problems += check_console_excerpt(name, line, body, sandbox)
            continue
        if last_output is None:
            problems += check_console_excerpt(name, line, body, sandbox)
        elif not matches(normalise(body), normalise(last_output, sandbox)):
            problems.append(f"{name}:{line}: the output shown differs from a real run; it printed:\n{last_output}")
    return problems


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_every_output_shown_is_what_aibx_prints(page: Path, tmp_path: Path) -> None:
    problems = check_page(page, make_sandbox(tmp_path))
    assert not problems, "\n\n".join(problems)


def test_the_output_check_fails_on_a_difference(tmp_path: Path) -> None:
    """The check itself: a wrong count, a wrong line, a line aibx does not print are each found."""
    sandbox = make_sandbox(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\naibx validate fixtures/quickstart/hello-linux.json\n```\n```\n"
        "1 file, 1 template: 0 errors, 1 warning - valid\n```\n"
        "```\n$ aibx run ubuntu.json --host azureuser@vm\naibx: ubuntu.json on ssh://azureuser@vm: 4 of 4 steps "
        "(build timeout 1h00m00s)\nthis is not aibx\n```\n"
    )
    problems = check_page(page, sandbox)
    text = "\n".join(problems)
    assert "differs from a real run" in text and "0 warnings - valid" in text
    assert "'this is not aibx'" in text
    assert "has 3 steps, the page shows [4]" in text
