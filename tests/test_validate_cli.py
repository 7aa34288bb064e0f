"""`aibx validate` as a user meets it: exit codes, output formats, folders, many files, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aibx import cli
from tests.conftest import FIXTURES

VALID = FIXTURES / "validate" / "valid" / "linux-2025-10-01.json"
WARNS = FIXTURES / "validate" / "broken" / "rules" / "AIB015-build-timeout-too-short.json"
ERRORS = FIXTURES / "validate" / "broken" / "rules" / "AIB012-run-as-system.json"
ARM = FIXTURES / "validate" / "arm"


def aibx(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "aibx", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([str(VALID)], 0),
        ([str(WARNS)], 0),
        (["--strict", str(WARNS)], 2),
        ([str(ERRORS)], 2),
        ([str(VALID), str(ERRORS)], 2),
        ([str(FIXTURES / "validate" / "nope.json")], 2),
    ],
)
def test_exit_codes(capsys, args, expected):
    assert run(capsys, *args)[0] == expected


def test_summary_line_counts_files_templates_errors_and_warnings(capsys):
    code, out = run(capsys, str(VALID), str(WARNS), str(ERRORS))
    assert code == 2
    assert out.splitlines()[-1] == "3 files, 3 templates: 2 errors, 1 warning - invalid"
    _, out = run(capsys, str(VALID))
    assert out == "1 file, 1 template: 0 errors, 0 warnings - valid\n"


def test_json_format_is_one_document_for_all_files(capsys):
    code, out = run(capsys, str(VALID), str(ERRORS), "--format", "json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False
    assert report["files"] == [str(VALID), str(ERRORS)]
    assert [t["errors"] for t in report["templates"]] == [0, 2]
    first = report["diagnostics"][0]
    assert set(first) == {"severity", "code", "message", "file", "line", "column", "path"}
    assert first["file"] == str(ERRORS) and first["line"] > 0 and first["path"].startswith("properties.customize")


def test_folders_are_searched_recursively_skipping_dot_folders_and_parameters_files(tmp_path, capsys):
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "nested" / "deeper" / "a.json").write_text(VALID.read_text())
    (tmp_path / "b.jsonc").write_text("// comment\n" + WARNS.read_text())
    (tmp_path / ".git" / "broken.json").write_text("{")
    (tmp_path / "deploy.parameters.json").write_text((ARM / "deployment.parameters.json").read_text())
    (tmp_path / "notes.txt").write_text("not json")
    code, out = run(capsys, str(tmp_path), "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert sorted(Path(f).name for f in report["files"]) == ["a.json", "b.jsonc"]
    assert [Path(f).name for f in report["skipped"]] == ["deploy.parameters.json"]
    code, out = run(capsys, str(tmp_path))
    assert out.splitlines()[-1].endswith("(1 other JSON file skipped) - valid")


def test_an_empty_folder_is_an_error(tmp_path, capsys):
    code, out = run(capsys, str(tmp_path))
    assert code == 2 and out == "no template files found - invalid\n"


def test_many_files_in_one_call_keep_their_order(capsys):
    files = sorted((FIXTURES / "validate" / "broken" / "rules").glob("*.json"))
    _, out = run(capsys, *map(str, reversed(files)))
    seen = []
    for line in out.splitlines()[:-1]:
        name = line.split(":")[0]
        if not seen or seen[-1] != name:
            seen.append(name)
    assert seen == [str(f) for f in reversed(files) if str(f) in seen]
    assert out.splitlines()[-1].startswith(f"{len(files)} files, {len(files)} templates")


def test_unreadable_file_is_reported_and_the_others_still_checked(tmp_path, capsys):
    locked = tmp_path / "locked.json"
    locked.write_text(VALID.read_text())
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: use a path that cannot be a file instead
            locked = tmp_path / "missing" / "x.json"
        code, out = run(capsys, str(locked), str(VALID))
    finally:
        if locked.exists():
            locked.chmod(0o644)
    assert code == 2
    assert f"{locked}: error[AIB001] cannot read:" in out
    assert out.splitlines()[-1].startswith("2 files, 1 template: 1 error")


def test_standard_input(capsys):
    proc = aibx("validate", "-", stdin=WARNS.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("<stdin>:") and "AIB015" in proc.stdout


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\xff\xfe garbage",
        b"[" * 3000,
        b'{"a": ' + b"9" * 5000 + b"}",
        b'{"properties": {"customize": [{"type": "Shell", "inline": ["\\ud800\\u001b[31m"]}]}, "location": "x"}',
        b"",
        b"\xef\xbb\xbf{}",
    ],
)
def test_nasty_input_gives_exit_2_and_no_traceback(tmp_path, content):
    path = tmp_path / "nasty.json"
    path.write_bytes(content)
    proc = aibx("validate", str(path))
    assert proc.returncode in (0, 2)
    assert proc.stderr == "" and "Traceback" not in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith(("valid", "invalid"))


def test_control_characters_in_a_template_cannot_break_the_output_lines(tmp_path, capsys):
    tpl = json.loads(VALID.read_text())
    tpl["properties"]["customize"][0]["type"] = "Shell\n\x1b[2Jfake: error[AIB000]"
    path = tmp_path / "t.json"
    path.write_text(json.dumps(tpl))
    _, out = run(capsys, str(path))
    assert "\x1b" not in out
    assert all(line.startswith(str(path)) for line in out.splitlines()[:-1])


def test_colour_only_when_asked_and_never_with_no_color(capsys, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[31;1merror[AIB012]\x1b[0m" in run(capsys, str(ERRORS))[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run(capsys, str(ERRORS))[1]


def test_usage_errors_exit_2_with_a_message():
    proc = aibx("validate")
    assert proc.returncode == 2 and "PATH" in proc.stderr
    proc = aibx("validate", str(VALID), "--format", "yaml")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_help_shows_examples_and_the_version_is_printed():
    proc = aibx("validate", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "--parameters" in proc.stdout
    proc = aibx("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("aibx ")


def imported_modules(*argv: str) -> set[str]:
    code = (
        "import sys\n"
        "from aibx import cli\n"
        "try:\n"
        f"    cli.main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(proc.stderr.split())


def test_validate_imports_none_of_the_heavy_libraries():
    modules = imported_modules("validate", str(VALID))
    assert "aibx.validation" in modules  # the check ran
    heavy = {m for m in modules if m.split(".")[0] in {"asyncssh", "winrm", "hcl2", "lark", "cryptography", "requests"}}
    assert heavy == set()


def test_version_imports_neither_the_loader_nor_the_schema_tables():
    modules = imported_modules("--version")
    assert not {"aibx.loader", "aibx.validation", "aibx.swagger_tables", "aibx.model"} & modules


def test_a_parameters_file_shared_by_several_templates_is_reported_once(capsys):
    pfile = ARM / "bad-parameters.parameters.json"
    _, out = run(capsys, str(ARM / "bad-parameters.json"), str(ARM / "two-templates.json"), "--parameters", str(pfile))
    lines = [line for line in out.splitlines() if line.startswith(str(pfile))]
    assert len(lines) == len(set(lines))
    assert any("two-templates.json declares no parameter" in line for line in lines)
