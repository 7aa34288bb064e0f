"""Compiling customizers into plans (pure), and the POSIX commands those plans run, executed for real by /bin/sh."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from aibx import model
from aibx.document import Unresolved
from aibx.plan import Content, Exec, Upload
from aibx.provisioners import CompileContext, CompileOptions, compile_plan, compile_step, posix
from aibx.provisioners.deprovision import MISSING_EXIT, default_script, linux_stage_command
from tests.support.requirements import require_program

FIXED = "0123456789abcdef"


def context(os_type: model.OsType = model.OsType.LINUX, **options: object) -> CompileContext:
    template = model.ImageTemplate(file="t.json", os_type=os_type)
    return CompileContext(template, CompileOptions(random_name=lambda: FIXED, **options))  # type: ignore[arg-type]


def shell_step(**fields: object) -> model.ShellStep:
    return model.ShellStep(name="s", path=("properties", "customize", 0), **fields)  # type: ignore[arg-type]


def file_step(destination: str, source: str = "https://example.com/f.txt", **fields: object) -> model.FileStep:
    return model.FileStep(
        name="f", path=("properties", "customize", 1), source_uri=source, destination=destination, **fields
    )  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- Shell
def test_inline_is_one_exec_of_the_wrapper_with_the_script_on_stdin() -> None:
    plan = compile_step(shell_step(inline=["apt-get update", "echo 'done'"]), context())
    assert plan.blocked == [] and len(plan.actions) == 1
    action = plan.actions[0]
    assert isinstance(action, Exec)
    assert action.command == posix.run_stdin_script(f"/tmp/aibx-{FIXED}/script.sh", "/bin/sh -e")
    assert '/bin/sh -e "$f" </dev/null' in action.command
    assert action.stdin == Content(data=b"#!/bin/sh -e\napt-get update\necho 'done'\n")
    assert plan.on_interrupt == [Exec(f"rm -rf /tmp/aibx-{FIXED}", description="remove the temporary script")]


def test_script_uri_is_fetched_by_aibx_and_normalized() -> None:
    sha = "a" * 64
    plan = compile_step(shell_step(script_uri="https://host/a.sh?sig=x", sha256_checksum=sha), context())
    action = plan.actions[0]
    assert isinstance(action, Exec)
    assert action.stdin == Content(uri="https://host/a.sh?sig=x", sha256=sha, normalize_newlines=True)
    assert plan.notes == []


def test_script_uri_over_http_carries_a_warning_and_no_checksum_a_note() -> None:
    plan = compile_step(shell_step(script_uri="http://host/a.sh"), context())
    assert any("plain http" in n for n in plan.notes) and any("no sha256Checksum" in n for n in plan.notes)


@pytest.mark.parametrize(
    ("uri", "base", "expected", "allow"),
    [
        ("file:scripts/a.sh", "templates", "templates/scripts/a.sh", False),
        ("file:a.sh", "", "a.sh", False),
        ("file:///srv/a%20b.sh", "templates", "/srv/a b.sh", True),
        ("file://localhost/srv/a.sh", "templates", "/srv/a.sh", True),
    ],
)
def test_file_uris_are_local_files_relative_to_the_template(uri: str, base: str, expected: str, allow: bool) -> None:
    plan = compile_step(shell_step(script_uri=uri), context(base_dir=base, allow_local_files=allow))
    action = plan.actions[0]
    assert isinstance(action, Exec) and action.stdin is not None
    assert action.stdin.local_path == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file://otherhost/a.sh", "another host"),
        ("ftp://host/a.sh", "cannot fetch ftp:"),
        ("scripts/a.sh", "not a URI"),
        ("https://host/a b.sh", "white space"),
    ],
)
def test_sources_aibx_cannot_fetch_are_refused(uri: str, reason: str) -> None:
    plan = compile_step(shell_step(script_uri=uri), context())
    assert plan.actions == [] and reason in plan.blocked[0]


def test_fetch_on_target_keeps_the_url_off_the_command_line() -> None:
    url = "https://acct.blob.core.windows.net/c/a.sh?sv=1&sig=SECRET"
    plan = compile_step(shell_step(script_uri=url, sha256_checksum="b" * 64), context(fetch_on_target=True))
    action = plan.actions[0]
    assert isinstance(action, Exec) and action.stdin is not None and action.stdin.data is not None
    assert "SECRET" not in action.command
    script = action.stdin.data.decode()
    assert f"url=$(cat <<'AIBX_END'\n{url}\nAIBX_END\n)" in script
    assert "curl --config -" in script and "wget" in script and "b" * 64 in script
    assert plan.on_interrupt[0].command == f"rm -rf /tmp/aibx-{FIXED}"


def test_fetch_on_target_does_not_apply_to_local_files() -> None:
    plan = compile_step(shell_step(script_uri="file:a.sh"), context(fetch_on_target=True))
    action = plan.actions[0]
    assert isinstance(action, Exec) and action.stdin is not None and action.stdin.local_path == "a.sh"


def test_shell_is_refused_on_windows_and_with_unresolved_values() -> None:
    windows = compile_step(shell_step(inline=["true"]), context(model.OsType.WINDOWS))
    assert "run on Linux" in windows.blocked[0]
    pending = Unresolved("<scriptHost>", "placeholder <scriptHost> not substituted; pass -p scriptHost=VALUE")
    unresolved = compile_step(shell_step(inline=["echo hi", pending]), context())  # type: ignore[list-item]
    assert unresolved.blocked == [f"inline[1] has no value: <scriptHost> ({pending.reason})"]
    assert unresolved.actions == []


def test_shell_needs_exactly_one_of_inline_and_script_uri() -> None:
    assert compile_step(shell_step(), context()).blocked
    assert compile_step(shell_step(inline=["true"], script_uri="https://h/a.sh"), context()).blocked


# ----------------------------------------------------------------------------------------------- File
def test_file_is_an_upload() -> None:
    plan = compile_step(file_step("/tmp/x/f.txt", sha256_checksum="c" * 64), context())
    assert plan.actions == [Upload("/tmp/x/f.txt", Content(uri="https://example.com/f.txt", sha256="c" * 64))]


@pytest.mark.parametrize(
    ("destination", "problem"),
    [
        ("/etc/motd", "only write under /tmp"),
        ("/tmp/../etc/motd", "only write under /tmp"),
        ("tmp/f.txt", "absolute"),
        ("/tmp/dir/", "name the file"),
    ],
)
def test_linux_file_destinations_outside_tmp_are_refused(destination: str, problem: str) -> None:
    plan = compile_step(file_step(destination), context())
    assert plan.actions == [] and problem in plan.blocked[0]


def test_allow_any_destination_lifts_the_tmp_rule_only() -> None:
    assert compile_step(file_step("/etc/motd"), context(allow_any_destination=True)).blocked == []
    assert compile_step(file_step("etc/motd"), context(allow_any_destination=True)).blocked


def test_windows_file_destinations() -> None:
    ok = compile_step(file_step(r"c:\buildArtifacts\index.html"), context(model.OsType.WINDOWS))
    assert ok.blocked == [] and isinstance(ok.actions[0], Upload)
    assert compile_step(file_step("buildArtifacts"), context(model.OsType.WINDOWS)).blocked
    assert compile_step(file_step(r"c:\x.txt"), context(model.OsType.WINDOWS, fetch_on_target=True)).blocked


def test_file_fetch_on_target_moves_the_checked_download_into_place() -> None:
    plan = compile_step(file_step("/tmp/f.txt", sha256_checksum="d" * 64), context(fetch_on_target=True))
    action = plan.actions[0]
    assert isinstance(action, Exec) and action.stdin is not None and action.stdin.data is not None
    script = action.stdin.data.decode()
    assert "dest=/tmp/f.txt" in script and 'mv -f "$part" "$dest"' in script
    assert "parent directory" in script


# ----------------------------------------------------------------------------------------------- deprovision
def test_deprovisioning_is_staged_first_and_runs_last_only_with_generalize() -> None:
    template = model.ImageTemplate(file="t.json", customize=[shell_step(inline=["true"])])
    steps = compile_plan(template, CompileOptions(random_name=lambda: FIXED)).steps
    assert [(s.name, s.phase) for s in steps] == [
        ("stage deprovisioning script", "stage"),
        ("s", "customize"),
        ("remove the staged deprovisioning script", "unstage"),
    ]
    stage = steps[0].actions[0]
    assert stage == Exec(
        linux_stage_command("/tmp/DeprovisioningScript.sh"),
        stdin=Content(data=default_script(model.OsType.LINUX)),
        description="write AIB's default deprovisioning script to /tmp/DeprovisioningScript.sh (new, mode 0644, yours)",
    )
    assert b"-deprovision+user" in default_script(model.OsType.LINUX)
    steps = compile_plan(template, CompileOptions(generalize=True)).steps
    run = steps[-1].actions[0]
    assert steps[-1].phase == "deprovision" and isinstance(run, Exec)
    assert run.command.startswith(f'f=/tmp/DeprovisioningScript.sh; if [ ! -f "$f" ]; then exit {MISSING_EXIT}; fi;')
    assert run.command.endswith('; sudo -n sh "$f"')  # after the ownership checks (tests/test_security.py)
    assert dict(run.warn_exit_codes)[MISSING_EXIT].startswith("Deprovisioning script [/tmp/DeprovisioningScript.sh]")


def test_windows_deprovisioning() -> None:
    template = model.ImageTemplate(file="t.json", os_type=model.OsType.WINDOWS)
    options = CompileOptions(generalize=True, deprovision_timeout_seconds=600, random_name=lambda: FIXED)
    steps = compile_plan(template, options).steps
    stage = steps[0].actions[0]
    assert isinstance(stage, Upload) and stage.remote_path == r"c:\DeprovisioningScript.ps1"
    assert stage.content.data is not None and b"Sysprep" in stage.content.data
    launcher, run = steps[-1].actions
    path = rf"C:\Windows\Temp\aibx-deprovision-{FIXED}.ps1"
    assert isinstance(launcher, Upload) and launcher.remote_path == path and launcher.content.data is not None
    assert r"& 'c:\DeprovisioningScript.ps1'" in launcher.content.data.decode("utf-8-sig")
    assert isinstance(run, Exec)
    assert run.command == f"powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File {path}"
    assert run.timeout_seconds == 600 and run.timeout_name == "--deprovision-timeout"
    assert "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" in run.timeout_message
    assert dict(run.warn_exit_codes)[MISSING_EXIT].startswith("Deprovisioning script [c:\\DeprovisioningScript.ps1]")


def test_unknown_customizer_types_are_refused() -> None:
    plan = compile_step(model.UnknownStep(name="x", type_name="Ansible"), context())
    assert plan.blocked == ["unknown customizer type 'Ansible'"]


# ----------------------------------------------------------------------------------------------- the wrapper, for real
def run_wrapper(
    path: str, script: bytes, interpreter: str | None = None, timeout: float = 10
) -> subprocess.CompletedProcess[bytes]:
    command = posix.run_stdin_script(path, interpreter)
    return subprocess.run(["/bin/sh", "-c", command], input=script, capture_output=True, timeout=timeout)


def unique_path() -> str:
    return posix.temp_dir(os.urandom(8).hex()) + "/script.sh"


@pytest.mark.parametrize(("interpreter", "mode"), [(None, b"700"), ("/bin/sh -e", b"600")])
def test_wrapper_runs_the_script_privately_and_removes_it(interpreter: str | None, mode: bytes) -> None:
    path = unique_path()
    script = posix.inline_script(['stat -c %a "$0"', "cat", "echo after-cat", "exit 7"])
    result = run_wrapper(path, script, interpreter)
    assert result.returncode == 7
    assert result.stdout == mode + b"\nafter-cat\n"  # owner-only, and stdin is empty (/dev/null), not the script
    assert not os.path.exists(path)


def test_wrapper_stops_at_the_first_failing_line() -> None:
    result = run_wrapper(unique_path(), posix.inline_script(["echo one", "false", "echo two"]), "/bin/sh -e")
    assert (result.returncode, result.stdout) == (1, b"one\n")


def test_wrapper_never_writes_through_an_existing_file_or_link(tmp_path: Path) -> None:
    path = unique_path()
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, os.path.dirname(path))  # the private directory's name, planted
    try:
        result = run_wrapper(path, posix.inline_script(["echo pwned"]))
        assert result.returncode == posix.CANNOT_CREATE_EXIT
        assert b"cannot create" in result.stderr and list(victim.iterdir()) == []
    finally:
        os.unlink(os.path.dirname(path))


def test_wrapper_removes_the_script_when_its_process_group_is_stopped() -> None:
    path = unique_path()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", posix.run_stdin_script(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(posix.inline_script(["echo started", "sleep 30"]))
    proc.stdin.close()
    assert proc.stdout.readline() == b"started\n"
    assert os.path.exists(path)
    os.killpg(proc.pid, signal.SIGTERM)  # what sshd does with OpenSSH's "signal" request
    assert proc.wait(timeout=10) == 143
    assert not os.path.exists(path)


def test_fetch_on_target_script_checks_before_running(content_server, tmp_path: Path) -> None:
    require_program("curl")
    marker = tmp_path / "ran"
    body = f"#!/bin/sh\r\necho ran > {marker}\r\n".encode()
    url = content_server.serve("/a.sh", body)
    fetched = posix.temp_path(os.urandom(8).hex(), ".fetched")
    bad = run_wrapper(unique_path(), posix.fetch_and_run_script(url, "0" * 64, fetched))
    assert bad.returncode == 1 and b"sha256 mismatch" in bad.stderr
    assert not marker.exists() and not os.path.exists(fetched)
    good = run_wrapper(unique_path(), posix.fetch_and_run_script(url, hashlib.sha256(body).hexdigest(), fetched))
    assert good.returncode == 0, good.stderr
    assert marker.read_text() == "ran\n" and not os.path.exists(fetched)


def test_fetch_to_file_script_refuses_a_missing_parent(content_server, tmp_path: Path) -> None:
    require_program("curl")
    url = content_server.serve("/f.txt", b"data\n")
    part = posix.temp_path(os.urandom(8).hex(), ".part")
    missing = run_wrapper(unique_path(), posix.fetch_to_file_script(url, None, str(tmp_path / "no" / "f.txt"), part))
    assert missing.returncode == 1 and b"parent directory" in missing.stderr
    assert content_server.requests == []
    dest = tmp_path / "f.txt"
    ok = run_wrapper(
        unique_path(), posix.fetch_to_file_script(url, hashlib.sha256(b"data\n").hexdigest(), str(dest), part)
    )
    assert ok.returncode == 0, ok.stderr
    assert dest.read_bytes() == b"data\n" and not os.path.exists(part)
