"""Faults of the VM and of the input that docs/reliability.md lists and no other test proves: a full disk, sudo
that asks for a password, a missing shell, a download that never succeeds, a malformed parameters file.

The VM faults live in the sshd target's own mount namespace (tests/support/sshd.py: a small tmpfs as /tmp, the
real sudo with sudoers that want a password, an /etc/passwd naming a login shell that does not exist, /bin/sh
hidden by an overlay); the local ones in a mount namespace the test creates with unshare.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.plans import WINDOWS_SOURCE
from tests.support.requirements import require_program, require_root
from tests.support.sshd import SshTarget
from tests.support.templates import shell, write_template
from tests.support.winrm_server import WinRMHost
from tests.support.winrm_windows import WindowsVm

ROOT = Path(__file__).resolve().parent.parent


def run_on(target: SshTarget, tmp_path: Path, template: Path, *extra: str | Path) -> tuple[int, str, dict]:
    """``aibx run`` against ``target``; returns (exit code, everything printed, the JSON report)."""
    report = tmp_path / "report.json"
    result = invoke(
        "run", template, "--host", target.url, "-i", target.client_key, "--known-hosts", target.known_hosts,
        "--log", tmp_path / "customization.log", "--report", report, *extra,
    )  # fmt: skip
    return result.code, result.text, json.loads(report.read_text()) if report.exists() else {}


def outcomes(report: dict) -> dict[str, str]:
    return {s["name"]: s["outcome"] for s in report["steps"]}


@pytest.fixture
def faulty_target(make_ssh_target):  # type: ignore[no-untyped-def]
    """``faulty_target(tmp_size="256k")`` and so on: an isolated sshd target with a fault of its files."""
    require_root("the faults live in the target's own mount namespace")

    def make(**fault: object) -> SshTarget:
        return make_ssh_target(**fault)

    return make


# ----------------------------------------------------------------------------------------------- disk full
def test_a_file_upload_to_a_full_disk_fails_naming_the_path_and_removes_the_partial_file(
    faulty_target, tmp_path: Path
) -> None:
    target = faulty_target(tmp_size="256k")
    d = target.remote_dir("full")
    (tmp_path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    steps = [
        {"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": f"{d}/big.bin"},
        shell("after", f"touch {d}/after"),
    ]
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, steps))
    assert code == 1, text
    assert f"cannot write {d}/big.bin: no space left on the device (1.0 MiB to write" in text
    assert "the partial file was removed" in text
    assert "Traceback" not in text and "Task exception" not in text
    assert list(target.host_path(d).iterdir()) == []  # no truncated big.bin, and the next step did not run
    assert outcomes(report)["big"] == "failed" and outcomes(report)["after"] == "not run"


def test_an_inline_script_on_a_full_disk_fails_naming_the_path_and_leaves_nothing(
    faulty_target, tmp_path: Path
) -> None:
    target = faulty_target(tmp_size="256k")
    steps = [
        # /tmp is full after this step but for the page its own script took
        shell("fill", "head -c 1000000 /dev/zero > /tmp/filler || true"),
        shell("next", "# " + "a long script " * 1000, "echo never-printed"),  # 14 KB: more than that page
    ]
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, steps))
    assert code == 1, text
    assert "exit code 125" in text and "No space left on device" in text
    assert "aibx: cannot write the script to /tmp/aibx-" in text and "(removed it)" in text
    assert "never-printed" not in text
    assert sorted(p.name for p in target.host_path("/tmp").iterdir()) == ["DeprovisioningScript.sh", "filler"]
    assert outcomes(report)["next"] == "failed"


def test_a_local_file_upload_to_a_full_disk_removes_the_partial_file(tmp_path: Path) -> None:
    require_root("a tmpfs in a mount namespace of the test's own")
    require_program("unshare", "util-linux")
    small = tmp_path / "small"
    small.mkdir()
    (tmp_path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    step = {"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": f"{small}/big.bin"}
    template = write_template(tmp_path, [step])
    aibx = [sys.executable, "-m", "aibx", "run", str(template), "--host", "local", "--allow-any-destination",
            "--log", str(tmp_path / "log")]  # fmt: skip
    inner = (
        f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(small))} && cd {shlex.quote(str(ROOT))} && "
        f"{shlex.join(aibx)}; echo exit=$?; ls -A {shlex.quote(str(small))}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", inner],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    exit_line = next(i for i, line in enumerate(lines) if line.startswith("exit="))
    assert lines[exit_line] == "exit=1", result.stdout + result.stderr
    assert f"cannot write {small}/big.bin: No space left on device; the partial file was removed" in result.stderr
    assert lines[exit_line + 1 :] == []  # nothing left in the full file system


def test_a_winrm_upload_to_a_full_disk_fails_with_windows_message(
    make_winrm_host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host: WinRMHost = make_winrm_host(users={"aibx": "Passw0rd!"}, allow_unencrypted=True)
    vm = WindowsVm(host)
    host.disk_free = 64 * 1024
    (tmp_path / "big.bin").write_bytes(os.urandom(512 * 1024))
    step = {"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": "c:\\windows\\temp\\big.bin"}
    monkeypatch.setenv("AIBX_TEST_FAULTS_PW", "Passw0rd!")
    result = invoke(
        "run", write_template(tmp_path, [step], source=WINDOWS_SOURCE), "--host",
        f"winrm://aibx@127.0.0.1:{host.port}", "--password-env", "AIBX_TEST_FAULTS_PW", "--log", tmp_path / "log",
    )  # fmt: skip
    assert result.code == 1, result.text
    assert "cannot write c:\\windows\\temp\\big.bin: There is not enough space on the disk." in result.err
    assert host.file("c:\\windows\\temp\\big.bin") is None and vm.leftovers() == []


# ----------------------------------------------------------------------------------------------- sudo
@pytest.mark.parametrize("command", ["sudo id -u", "sudo -S id -u"])
def test_sudo_that_asks_for_a_password_fails_the_step_at_once(faulty_target, tmp_path: Path, command: str) -> None:
    require_program("sudo", "sudo")
    target = faulty_target(sudo_asks_password=True)
    steps = [shell("needs-root", "echo before", command, "echo after"), shell("next", "echo next")]
    started = time.monotonic()
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, steps))
    assert time.monotonic() - started < 30  # a guard against waiting for a password nobody types
    assert code == 1, text
    assert "sudo: a password is required" in text or "sudo: no password was provided" in text
    assert "hint: sudo on the VM asks for a password" in text and "NOPASSWD" in text
    assert "after" not in report["steps"][1]["message"] and outcomes(report)["next"] == "not run"


def test_deprovisioning_with_sudo_that_asks_for_a_password_fails_at_once(faulty_target, tmp_path: Path) -> None:
    require_program("sudo", "sudo")
    target = faulty_target(sudo_asks_password=True)
    started = time.monotonic()
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, [shell("ok", "true")]), "--generalize")
    assert time.monotonic() - started < 30
    assert code == 1, text
    assert "'deprovision' failed" in text and "sudo: a password is required" in text and "NOPASSWD" in text
    assert outcomes(report)["deprovision"] == "failed"


# ----------------------------------------------------------------------------------------------- shells
def test_a_login_shell_that_does_not_exist_is_refused_at_login(faulty_target, tmp_path: Path) -> None:
    target = faulty_target(login_shell="/nonexistent/bash")
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, [shell("s", "true")]))
    assert code == 3, text
    assert "authentication failed" in text and "login shell does not exist" in text
    assert "shell /nonexistent/bash does not exist" in target.log_text()  # sshd's own reason, on the VM
    assert report["outcome"] == "connect failed"


def test_a_vm_without_bin_sh_fails_the_step_with_a_hint(faulty_target, tmp_path: Path) -> None:
    target = faulty_target(missing_programs=("/usr/bin/sh",))
    steps = [shell("s", "echo never-printed"), shell("next", "true")]
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, steps))
    assert code == 1, text
    assert "exit code 127" in text and "/bin/sh: No such file or directory" in text
    assert "hint: the VM has no /bin/sh" in text and "never-printed" not in text
    assert [p.name for p in target.host_path("/tmp").iterdir() if p.name.startswith("aibx-")] == []
    assert outcomes(report) == {"stage deprovisioning script": "succeeded", "s": "failed", "next": "not run"}


# ----------------------------------------------------------------------------------------------- downloads
def test_a_download_failing_twice_then_succeeding_runs_the_step(tmp_path: Path, content_server) -> None:
    body = b"fetched after two failures\n"
    url = content_server.serve("/payload.txt", body, failures=[503, 500])
    destination = tmp_path / "payload.txt"
    step = {
        "type": "File",
        "name": "payload",
        "sourceUri": url,
        "destination": str(destination),
        "sha256Checksum": hashlib.sha256(body).hexdigest(),
    }
    log = tmp_path / "log"
    result = invoke("run", write_template(tmp_path, [step]), "--host", "local", "--allow-any-destination", "--log", log)
    assert result.code == 0, result.text
    assert destination.read_bytes() == body
    assert content_server.requests == ["/payload.txt"] * 3
    text = log.read_text()
    assert "(HTTP 503 Service Unavailable); try 2 of 10 in 1 s" in text
    assert "(HTTP 500 Internal Server Error); try 3 of 10 in 2 s" in text


def test_a_missing_download_fails_at_once_and_nothing_runs(tmp_path: Path, content_server) -> None:
    url = content_server.url("/nope.sh")  # 404
    marker = tmp_path / "marker"
    steps = [shell("first", f"touch {marker}"), {"type": "Shell", "name": "fetched", "scriptUri": url}]
    started = time.monotonic()
    result = invoke("run", write_template(tmp_path, steps), "--host", "local", "--log", tmp_path / "log")
    assert time.monotonic() - started < 30  # no ten tries with backoff for a permanent error
    assert result.code == 1, result.text
    assert "HTTP 404 Not Found" in result.err and "nothing was run on the VM" in result.err
    assert content_server.requests == ["/nope.sh"] and not marker.exists()


# ----------------------------------------------------------------------------------------------- malformed input
def test_a_malformed_parameters_file_is_exit_2_with_its_position(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    template = write_template(tmp_path, [shell("first", f"touch {marker}")])
    params = tmp_path / "params.json"
    params.write_text('{\n  "parameters": {\n    "imageName": {"value": }\n  }\n}\n')
    for verb in (["validate"], ["plan"], ["run", "--host", "local", "--log", str(tmp_path / "log")]):
        result = invoke(*verb[:1], template, *verb[1:], "--parameters", params)
        assert result.code == 2, (verb, result.text)
        assert f"{params}:3:" in result.text and "error[AIB007]" in result.text, result.text
        assert "Traceback" not in result.text
    assert not marker.exists()


def test_a_malformed_template_is_exit_2_before_anything_is_fetched_or_connected(tmp_path: Path, content_server) -> None:
    broken = tmp_path / "broken.json"
    text = write_template(tmp_path, [{"type": "Shell", "name": "s", "scriptUri": content_server.url("/s.sh")}])
    broken.write_text(text.read_text()[:-40])  # cut short
    result = invoke("run", broken, "--host", "ssh://nobody@127.0.0.1:9", "--log", tmp_path / "log")
    assert result.code == 2, result.text
    assert f"{broken}:" in result.err and "error[AIB002]" in result.err and "not a valid image template" in result.err
    assert content_server.requests == []  # nothing fetched; and port 9 (discard) was never asked
