"""aibx run against a real OpenSSH sshd on loopback (tests/support/sshd.py): the issue's "Done when", point by point."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aibx.model import OsType
from aibx.provisioners.deprovision import default_script
from tests.support.agent_modes import ssh_agent_mode  # noqa: F401
from tests.support.cli import invoke
from tests.support.requirements import require_program, require_root
from tests.support.ssh_run import ROOT, Run, wait_for
from tests.support.sshd import IS_ROOT, PortBlackhole, SshTarget
from tests.support.templates import shell, write_template

# every test twice: with the SSH transport's command agent and with one exec channel per command
pytestmark = pytest.mark.usefixtures("ssh_agent_mode")


def running(token: str) -> list[int]:
    """Processes on this machine (any namespace) whose command line contains ``token``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmdline:
                pids.append(int(entry.name))
    return pids


def wait_running(token: str, timeout: float = 20.0) -> list[int]:
    """The processes whose command line contains ``token``, once there is one (the script may not have reached
    that command yet when its first line has run)."""
    deadline = time.monotonic() + timeout
    while not running(token):
        assert time.monotonic() < deadline, f"no process with {token!r} in its command line"
        time.sleep(0.02)
    return running(token)


def wait_gone(token: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while running(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running(token)


# ----------------------------------------------------------------------------------------------- happy paths
def test_shell_inline_runs_as_one_script_and_leaves_nothing_behind(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("inline")
    template = write_template(
        tmp_path,
        [shell("write-files", f"cd {d}", "echo one > a.txt", 'echo "$0" > script-path', "id -un > who", "echo done")],
    )
    run = Run(tmp_path, ssh_target, template)
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/a.txt").read_text() == "one\n"
    assert ssh_target.host_path(f"{d}/who").read_text().strip() == ssh_target.user  # as the user, no sudo
    script = ssh_target.host_path(f"{d}/script-path").read_text().strip()
    assert script.startswith("/tmp/aibx-") and not ssh_target.host_path(script).exists()
    assert "write-files | done" in run.result.out
    assert run.outcomes()["write-files"] == "succeeded"
    assert run.report["bootId"] == ssh_target.boot_id
    # without the agent one channel per command: staging, the Shell step and removing the staged script, plus the
    # boot id probe; with it the boot id probe and the agent, which runs the rest; no SFTP session either way
    sessions = ssh_target.sessions_started()
    commands = 2 if os.environ["AIBX_SSH_AGENT"] == "on" else 4  # set by the ssh_agent_mode fixture
    assert sum("command" in s for s in sessions) == commands and sum("sftp" in s for s in sessions) == 0


def test_shell_script_uri_from_a_local_file_is_checked_and_run(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("script")
    script = f"#!/bin/sh\r\necho from-script > {d}/out\r\necho script says hi\r\n".encode()  # CRLF, as from Windows
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_bytes(script)
    step = {
        "type": "Shell",
        "name": "setup",
        "scriptUri": "file:scripts/setup.sh",
        "sha256Checksum": hashlib.sha256(script).hexdigest(),
    }
    run = Run(tmp_path, ssh_target, write_template(tmp_path, [step]))
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/out").read_text() == "from-script\n"
    assert "setup | script says hi" in run.result.out


def test_shell_script_uri_over_https_is_fetched_by_aibx(
    ssh_target: SshTarget, tmp_path: Path, tls_content_server
) -> None:
    d = ssh_target.remote_dir("https")
    body = f"#!/bin/sh -e\necho fetched > {d}/out\n".encode()
    url = tls_content_server.serve("/setup.sh", body, failures=[503])  # one transient failure, then the script
    step = {"type": "Shell", "name": "setup", "scriptUri": url, "sha256Checksum": hashlib.sha256(body).hexdigest()}
    run = Run(tmp_path, ssh_target, write_template(tmp_path, [step]))
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/out").read_text() == "fetched\n"
    assert tls_content_server.requests == ["/setup.sh", "/setup.sh"]
    assert "try 2 of 10" in run.log.read_text()


def test_fetch_on_target_makes_the_vm_download_and_check(ssh_target: SshTarget, tmp_path: Path, content_server) -> None:
    require_program("curl")
    d = ssh_target.remote_dir("on-target")
    body = f"#!/bin/sh -e\necho downloaded-by-vm > {d}/out\n".encode()
    url = content_server.serve("/s.sh", body)
    payload = b"payload\n"
    file_url = content_server.serve("/payload.txt", payload)
    steps = [
        {"type": "Shell", "name": "setup", "scriptUri": url, "sha256Checksum": hashlib.sha256(body).hexdigest()},
        {
            "type": "File",
            "name": "payload",
            "sourceUri": file_url,
            "destination": f"{d}/payload.txt",
            "sha256Checksum": hashlib.sha256(payload).hexdigest(),
        },
    ]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps), "--fetch-on-target")
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/out").read_text() == "downloaded-by-vm\n"
    assert ssh_target.host_path(f"{d}/payload.txt").read_bytes() == payload
    assert content_server.requests == ["/s.sh", "/payload.txt"]


def test_file_is_uploaded_with_its_checksum_checked(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("file")
    data = os.urandom(3 * 1024 * 1024)  # more blocks than SFTP requests kept in flight
    (tmp_path / "blob.bin").write_bytes(data)
    step = {
        "type": "File",
        "name": "blob",
        "sourceUri": "file:blob.bin",
        "destination": f"{d}/blob.bin",
        "sha256Checksum": hashlib.sha256(data).hexdigest(),
    }
    run = Run(tmp_path, ssh_target, write_template(tmp_path, [step]))
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/blob.bin").read_bytes() == data


def test_file_with_a_missing_parent_directory_is_a_clear_error(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("file")
    (tmp_path / "x.txt").write_text("x\n")
    steps = [
        {"type": "File", "name": "copy", "sourceUri": "file:x.txt", "destination": f"{d}/missing/x.txt"},
        shell("after", f"touch {d}/after"),
    ]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps))
    assert run.code == 1
    assert f"parent directory {d}/missing does not exist" in run.result.err
    assert not ssh_target.host_path(f"{d}/missing").exists()  # never Packer's file named after the directory
    assert not ssh_target.host_path(f"{d}/after").exists()
    assert run.outcomes() == {"stage deprovisioning script": "succeeded", "copy": "failed", "after": "not run",
                              "remove the staged deprovisioning script": "not run"}  # fmt: skip


def test_file_outside_tmp_is_refused_unless_allowed(ssh_target: SshTarget, tmp_path: Path) -> None:
    home = Path(pwd.getpwnam(ssh_target.user).pw_dir) / f"aibx-test-{os.urandom(4).hex()}"
    home.mkdir()
    try:
        if IS_ROOT:
            os.chown(home, pwd.getpwnam(ssh_target.user).pw_uid, -1)
        (tmp_path / "x.txt").write_text("x\n")
        step = {"type": "File", "name": "copy", "sourceUri": "file:x.txt", "destination": f"{home}/x.txt"}
        template = write_template(tmp_path, [step])
        refused = Run(tmp_path, ssh_target, template)
        assert refused.code == 2
        assert "properties.customize[0]" in refused.result.err and "--allow-any-destination" in refused.result.err
        assert ssh_target.sessions_started() == []  # refused before connecting
        allowed = Run(tmp_path, ssh_target, template, "--allow-any-destination")
        assert allowed.code == 0, allowed.result.text
        assert (home / "x.txt").read_text() == "x\n"
    finally:
        shutil.rmtree(home)


def test_validations_run_after_the_customizers(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("validate")
    template = write_template(
        tmp_path,
        [shell("make", f"echo made > {d}/made")],
        validations=[shell("check", f"grep -q made {d}/made", "echo checked")],
    )
    run = Run(tmp_path, ssh_target, template)
    assert run.code == 0, run.result.text
    assert [(s["name"], s["phase"]) for s in run.report["steps"]] == [
        ("stage deprovisioning script", "stage"),
        ("make", "customize"),
        ("check", "validate"),
        ("remove the staged deprovisioning script", "unstage"),
    ]
    assert "check | checked" in run.result.out


def test_deprovisioning_script_is_staged_and_runs_only_with_generalize(ssh_target: SshTarget, tmp_path: Path) -> None:
    staged = ssh_target.host_path("/tmp/DeprovisioningScript.sh")
    copy = ssh_target.remote_dir("staged") + "/copy"
    plain = Run(
        tmp_path, ssh_target, write_template(tmp_path, [shell("noop", f"cat /tmp/DeprovisioningScript.sh > {copy}")])
    )
    assert plain.code == 0, plain.result.text
    if IS_ROOT:  # the target's own /tmp: the staged file was AIB's default script, removed at the end
        assert ssh_target.host_path(copy).read_bytes() == default_script(OsType.LINUX)
        assert not staged.exists()
    assert "deprovision" not in plain.outcomes()

    d = ssh_target.remote_dir("deprov")
    replace = shell(
        "replace-deprovision",
        # a customizer may replace AIB's script, as under AIB; sudo here is the test shim (no real root)
        f"printf 'echo deprovisioned-as-$(id -un) > {d}/marker\\n' > /tmp/DeprovisioningScript.sh",
    )
    run = Run(tmp_path, ssh_target, write_template(tmp_path, [replace]), "--generalize", "--yes")
    assert run.code == 0, run.result.text
    assert ssh_target.host_path(f"{d}/marker").read_text().strip() == f"deprovisioned-as-{ssh_target.user}"
    assert run.outcomes()["deprovision"] == "succeeded"


def test_missing_deprovisioning_script_is_a_warning(ssh_target: SshTarget, tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("delete-it", "rm /tmp/DeprovisioningScript.sh")])
    run = Run(tmp_path, ssh_target, template, "--generalize", "--yes")
    assert run.code == 0, run.result.text
    assert "Deprovisioning script [/tmp/DeprovisioningScript.sh] could not be found" in run.result.err
    assert any("could not be found" in w for w in run.report["warnings"])
    assert "WARN  Deprovisioning script" in run.log.read_text()


def test_ssh_config_alias_is_honoured(ssh_target: SshTarget, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host testvm\n  HostName {ssh_target.host}\n  Port {ssh_target.port}\n  User {ssh_target.user}\n"
        f"  IdentityFile {ssh_target.client_key}\n"
    )
    d = ssh_target.remote_dir("alias")
    template = write_template(tmp_path, [shell("hello", f"echo via-alias > {d}/out")])
    result = invoke(
        "run", template, "--host", "testvm", "-F", config, "--known-hosts", ssh_target.known_hosts,
        "--log", tmp_path / "log",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert ssh_target.host_path(f"{d}/out").read_text() == "via-alias\n"


# ----------------------------------------------------------------------------------------------- failures
def test_a_failing_step_stops_the_run_with_its_stderr(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("fail")
    steps = [
        shell("first", f"touch {d}/first"),
        shell(
            "breaks", "echo starting", "echo 'E: Unable to locate package nosuchpkg' >&2", "false", "echo unreachable"
        ),
        shell("third", f"touch {d}/third"),
    ]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps))
    assert run.code == 1
    message = run.result.err
    assert "'breaks' failed" in message and "exit code 1" in message
    assert "E: Unable to locate package nosuchpkg" in message
    assert "unreachable" not in run.result.out  # /bin/sh -e stopped at the failing line
    assert ssh_target.host_path(f"{d}/first").exists() and not ssh_target.host_path(f"{d}/third").exists()
    assert run.outcomes() == {
        "stage deprovisioning script": "succeeded",
        "first": "succeeded",
        "breaks": "failed",
        "third": "not run",
        "remove the staged deprovisioning script": "not run",
    }
    assert run.report["exitCode"] == 1 and run.report["steps"][2]["exitCode"] == 1


def test_checksum_mismatch_runs_and_writes_nothing_on_the_host(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("checksum")
    (tmp_path / "evil.sh").write_text(f"#!/bin/sh\ntouch {d}/pwned\n")
    steps = [
        shell("first", f"touch {d}/first"),
        {"type": "Shell", "name": "tampered", "scriptUri": "file:evil.sh", "sha256Checksum": "0" * 64},
    ]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps))
    assert run.code == 1
    assert "sha256 mismatch" in run.result.err and "'tampered'" in run.result.err
    # nothing reached the host: no connection was even authenticated, no file appeared
    log = ssh_target.log_text()
    assert "Accepted" not in log and ssh_target.sessions_started() == []
    assert list(ssh_target.host_path(d).iterdir()) == []
    if IS_ROOT:
        assert not ssh_target.host_path("/tmp/DeprovisioningScript.sh").exists()
    assert run.outcomes() == {"stage deprovisioning script": "not run", "first": "not run", "tampered": "failed",
                              "remove the staged deprovisioning script": "not run"}  # fmt: skip


def _refused_before_any_command(target: SshTarget, run: Run, marker: str) -> None:
    assert run.code == 3, run.result.text
    assert target.sessions_started() == [], target.log_text()
    assert not target.host_path(marker).exists()
    assert run.report["outcome"] == "connect failed"


def test_host_key_mismatch_is_refused(ssh_target: SshTarget, make_ssh_target, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("hostkey")
    other = make_ssh_target()  # a different server key, listed for our target's address
    wrong = tmp_path / "known_hosts"
    key = other.known_hosts.read_text().split(" ", 1)[1]
    wrong.write_text(f"[{ssh_target.host}]:{ssh_target.port} {key}")
    template = write_template(tmp_path, [shell("marker", f"touch {d}/marker")])
    run = Run(tmp_path, ssh_target, template, "-i", ssh_target.client_key, "--known-hosts", wrong, auth=False)
    _refused_before_any_command(ssh_target, run, f"{d}/marker")
    assert "host key has CHANGED" in run.result.err
    # --accept-new-host-key never overrides a changed key
    again = Run(tmp_path, ssh_target, template, "-i", ssh_target.client_key, "--known-hosts", wrong,
                "--accept-new-host-key", auth=False)  # fmt: skip
    _refused_before_any_command(ssh_target, again, f"{d}/marker")


def test_unknown_host_key_is_refused_then_trusted_on_first_use(
    ssh_target: SshTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the default known_hosts is the user's: ~/.ssh/known_hosts
    d = ssh_target.remote_dir("tofu")
    template = write_template(tmp_path, [shell("marker", f"touch {d}/marker")])
    refused = Run(tmp_path, ssh_target, template, "-i", ssh_target.client_key, auth=False)
    _refused_before_any_command(ssh_target, refused, f"{d}/marker")
    assert "is not known" in refused.result.err and "--accept-new-host-key" in refused.result.err
    trusted = Run(tmp_path, ssh_target, template, "-i", ssh_target.client_key, "--accept-new-host-key", auth=False)
    assert trusted.code == 0, trusted.result.text
    recorded = (tmp_path / ".ssh" / "known_hosts").read_text()
    assert recorded.startswith(f"[{ssh_target.host}]:{ssh_target.port} ssh-ed25519 ")
    assert "recorded it in" in trusted.result.err
    strict_again = Run(tmp_path, ssh_target, template, "-i", ssh_target.client_key, auth=False)
    assert strict_again.code == 0, strict_again.result.text


def test_wrong_key_is_refused(ssh_target: SshTarget, make_ssh_target, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("wrongkey")
    other = make_ssh_target()
    template = write_template(tmp_path, [shell("marker", f"touch {d}/marker")])
    run = Run(tmp_path, ssh_target, template, "-i", other.client_key, "--known-hosts", ssh_target.known_hosts,
              auth=False)  # fmt: skip
    _refused_before_any_command(ssh_target, run, f"{d}/marker")
    assert "authentication failed" in run.result.err
    assert "Accepted" not in ssh_target.log_text()


def test_wrong_password_is_refused(ssh_target: SshTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_root("sshd checks passwords only when it runs as root")
    d = ssh_target.remote_dir("wrongpw")
    monkeypatch.setenv("AIBX_TEST_PW", "not-the-password")
    template = write_template(tmp_path, [shell("marker", f"touch {d}/marker")])
    run = Run(tmp_path, ssh_target, template, "--password-env", "AIBX_TEST_PW", "--known-hosts",
              ssh_target.known_hosts, auth=False)  # fmt: skip
    _refused_before_any_command(ssh_target, run, f"{d}/marker")
    assert "Failed password" in ssh_target.log_text()
    assert "not-the-password" not in run.everything()


def test_right_password_logs_in(ssh_target: SshTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_root("sshd checks passwords only when it runs as root")
    d = ssh_target.remote_dir("password")
    monkeypatch.setenv("AIBX_TEST_PW", ssh_target.password or "")
    template = write_template(tmp_path, [shell("marker", f"touch {d}/marker")])
    run = Run(tmp_path, ssh_target, template, "--password-env", "AIBX_TEST_PW", "--known-hosts",
              ssh_target.known_hosts, auth=False)  # fmt: skip
    assert run.code == 0, run.result.text
    assert "Accepted password" in ssh_target.log_text()


def test_unreachable_host_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("noop", "true")])
    with PortBlackhole() as hole:
        result = invoke(
            "run", template, "--host", f"ssh://nobody@{hole.host}:{hole.port}", "--connect-timeout", "1s",
            "--known-hosts", tmp_path / "none", "--accept-new-host-key", "--log", tmp_path / "log",
        )  # fmt: skip
    assert result.code == 3, result.text
    assert "no answer within 1 s" in result.err  # the connect timeout ended the attempt (its speed: bench/)


def test_refused_port_is_exit_3(tmp_path: Path) -> None:
    template = write_template(tmp_path, [shell("noop", "true")])
    with PortBlackhole() as hole:
        port = hole.port
    result = invoke("run", template, "--host", f"127.0.0.1:{port}", "--log", tmp_path / "log", "--known-hosts",
                    tmp_path / "none", "--accept-new-host-key")  # fmt: skip
    assert result.code == 3 and "connection refused" in result.err


# ----------------------------------------------------------------------------------------------- limits
def test_build_timeout_stops_the_remote_process(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("timeout")
    token = f"{60000 + int.from_bytes(os.urandom(2), 'big')}"
    template = write_template(tmp_path, [shell("hangs", f'echo "$0" > {d}/script', f"sleep {token}")])
    run = Run(tmp_path, ssh_target, template, "--timeout-minutes", "0.05")
    assert run.code == 4, run.result.text
    assert "timed out" in run.result.err and "build timeout" in run.result.err
    assert wait_gone(f"sleep {token}") == []
    script = ssh_target.host_path(f"{d}/script").read_text().strip()
    assert not ssh_target.host_path(script).exists()
    assert run.outcomes()["hangs"] == "timed out" and run.report["exitCode"] == 4


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_or_sigterm_stops_the_remote_process_and_removes_temp_files(
    ssh_target: SshTarget, tmp_path: Path, signum: signal.Signals
) -> None:
    d = ssh_target.remote_dir("sigint")
    token = f"{60000 + int.from_bytes(os.urandom(2), 'big')}"
    template = write_template(
        tmp_path, [shell("long", f'echo "$0" > {d}/script', f"sleep {token}"), shell("next", f"touch {d}/next")]
    )
    console = tmp_path / "console.txt"
    with console.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aibx", "run", str(template), "--host", ssh_target.url, "-i",
             str(ssh_target.client_key), "--known-hosts", str(ssh_target.known_hosts), "--log",
             str(tmp_path / "log"), "--report", str(tmp_path / "report.json")],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        script = wait_for(ssh_target.host_path(f"{d}/script"))
        assert wait_running(f"sleep {token}")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 130, console.read_text()
    assert wait_gone(f"sleep {token}") == []
    assert not ssh_target.host_path(script).exists()
    assert not ssh_target.host_path(f"{d}/next").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "interrupted" and report["exitCode"] == 130
    assert "interrupted" in console.read_text()


def _run_with_output(target: SshTarget, tmp_path: Path, megabytes: int) -> tuple[int, int]:
    """Run a step printing ``megabytes`` MB in 1000-character lines; return (exit code, peak RSS in KiB)."""
    line = "x" * 999
    template = write_template(tmp_path, [shell("flood", f"yes {line} | head -c {megabytes * 1_000_000}")])
    with (tmp_path / f"console-{megabytes}.txt").open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aibx", "run", str(template), "--host", target.url, "-i", str(target.client_key),
             "--known-hosts", str(target.known_hosts), "--log", str(tmp_path / f"log-{megabytes}")],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    log = tmp_path / f"log-{megabytes}"
    assert log.stat().st_size > megabytes * 1_000_000  # the full output is in the log
    return proc.returncode, usage.ru_maxrss


def test_100_mb_of_output_streams_with_flat_memory(ssh_target: SshTarget, tmp_path: Path) -> None:
    code_small, rss_small = _run_with_output(ssh_target, tmp_path, 5)
    code_big, rss_big = _run_with_output(ssh_target, tmp_path, 100)
    assert (code_small, code_big) == (0, 0)
    assert rss_big - rss_small < 16 * 1024, (rss_small, rss_big)  # KiB: 20x the output, (almost) no more memory
    console = (tmp_path / "console-100.txt").read_text()
    assert console.count("flood | x") == 100_000


def test_powershell_on_linux_without_pwsh_is_a_clear_error(ssh_target: SshTarget, tmp_path: Path) -> None:
    if shutil.which("pwsh"):
        pytest.skip("pwsh is installed here; this test is about a VM without it")
    d = ssh_target.remote_dir("pwsh")
    steps = [shell("before", f"touch {d}/before"), {"type": "PowerShell", "name": "ps", "inline": ["Write-Output hi"]}]
    run = Run(tmp_path, ssh_target, write_template(tmp_path, steps), "--os", "linux")
    assert run.code == 1, run.result.text
    assert "step 'ps' failed" in run.result.err and "needs pwsh (PowerShell 7)" in run.result.err
    assert ssh_target.host_path(f"{d}/before").exists()
