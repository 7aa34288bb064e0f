"""Faults that docs/reliability.md lists and no other test proves: a full disk (SSH, local, WinRM), an upload cut
by an interrupt, sudo that asks for a password, a missing shell, WinRM connections that drop or never come back,
signals to a local run, downloads that fail for a while or for good, malformed parameters and HCL files.

The VM faults live in the sshd target's own mount namespace (tests/support/sshd.py: a small tmpfs as /tmp, the
real sudo with sudoers that want a password, an /etc/passwd naming a login shell that does not exist, /bin/sh
hidden by an overlay); the local ones in a mount namespace the test creates with unshare.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.agent_modes import ssh_agent_mode  # noqa: F401
from tests.support.cli import invoke
from tests.support.plans import WINDOWS_SOURCE
from tests.support.requirements import require_program, require_root
from tests.support.sshd import SshTarget
from tests.support.templates import shell, write_template
from tests.support.winrm_server import RemoteCommand, Reply, WinRMHost
from tests.support.winrm_windows import ScriptRun, WindowsVm

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


@pytest.mark.usefixtures("ssh_agent_mode")
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


@pytest.mark.usefixtures("ssh_agent_mode")
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


@pytest.mark.usefixtures("ssh_agent_mode")
def test_an_upload_cut_by_sigint_leaves_no_partial_file(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("interrupted-upload")
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse here; a few seconds of SFTP on loopback
    destination = ssh_target.host_path(f"{d}/big.bin")

    def partial_size() -> int:  # the upload goes to a new file beside the destination, renamed over it at the end
        return sum(p.stat().st_size for p in destination.parent.glob(".big.bin.aibx-*"))

    step = {"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": f"{d}/big.bin"}
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aibx", "run", str(write_template(tmp_path, [step])), "--host", ssh_target.url,
         "-i", str(ssh_target.client_key), "--known-hosts", str(ssh_target.known_hosts), "--log",
         str(tmp_path / "log"), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not partial_size():
        assert time.monotonic() < deadline and proc.poll() is None, "the upload did not start"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "Task exception" not in out
    assert json.loads(report.read_text())["steps"][1]["outcome"] == "interrupted", out
    assert list(ssh_target.host_path(d).iterdir()) == []  # no truncated big.bin, nor the file it was written to


def in_mount_namespace(setup: str, command: list[str], after: str = "", **popen: object) -> subprocess.Popen[str]:
    """Start ``command`` (aibx, from the checkout) in a mount namespace of its own, after the shell commands
    ``setup`` (mounts only it sees); ``after`` runs there once it ended. Prints ``exit=N`` between the two."""
    require_root("a mount namespace of the test's own")
    require_program("unshare", "util-linux")
    inner = f"{setup} && cd {shlex.quote(str(ROOT))} && {shlex.join(command)}; echo exit=$?; {after or 'true'}"
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", inner], text=True, **popen
    )  # type: ignore[call-overload]


def aibx_command(template: Path, *extra: str | Path) -> list[str]:
    return [sys.executable, "-m", "aibx", "run", str(template), "--host", "local", *map(str, extra)]


def test_a_local_file_upload_to_a_full_disk_removes_the_partial_file(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (tmp_path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    step = {"type": "File", "name": "big", "sourceUri": "file:big.bin", "destination": f"{small}/big.bin"}
    command = aibx_command(write_template(tmp_path, [step]), "--allow-any-destination", "--log", tmp_path / "log")
    proc = in_mount_namespace(
        f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(small))}",
        command,
        after=f"ls -A {shlex.quote(str(small))}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    lines = out.splitlines()
    exit_line = next(i for i, line in enumerate(lines) if line.startswith("exit="))
    assert lines[exit_line] == "exit=1", out + err
    assert f"cannot write {small}/big.bin: No space left on device; the partial file was removed" in err
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


@pytest.mark.usefixtures("ssh_agent_mode")
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


@pytest.mark.usefixtures("ssh_agent_mode")
def test_deprovisioning_with_sudo_that_asks_for_a_password_fails_at_once(faulty_target, tmp_path: Path) -> None:
    require_program("sudo", "sudo")
    target = faulty_target(sudo_asks_password=True)
    started = time.monotonic()
    code, text, report = run_on(
        target, tmp_path, write_template(tmp_path, [shell("ok", "true")]), "--generalize", "--yes"
    )
    assert time.monotonic() - started < 30
    assert code == 1, text
    assert "'deprovision' failed" in text and "sudo: a password is required" in text and "NOPASSWD" in text
    assert outcomes(report)["deprovision"] == "failed"


def test_locally_a_step_has_no_terminal_so_sudo_cannot_prompt_on_the_users(tmp_path: Path) -> None:
    """aibx run --host local typed in a terminal: the step's commands run in a session of their own, without the
    terminal, and with stdin at end of file. A sudo that wants a password cannot prompt there (it needs /dev/tty,
    or a password on stdin with -S) and fails at once, as the SSH tests above show with the real sudo."""
    require_program("setsid", "util-linux")
    import pty

    probe = [
        "if (exec 3</dev/tty) 2>/dev/null; then echo step-has-a-terminal; else echo step-has-no-terminal; fi",
        "if read -r line; then echo stdin-has-data; else echo stdin-at-eof; fi",
    ]
    template = write_template(tmp_path, [shell("probe", *probe)])
    master, terminal = pty.openpty()
    output = bytearray()
    reader = threading.Thread(target=_drain, args=(master, output), daemon=True)
    reader.start()
    try:
        with_terminal = {"stdin": terminal, "stdout": terminal, "stderr": terminal, "cwd": ROOT}
        # the control: a command started that way does have the terminal
        control = subprocess.Popen(["setsid", "--ctty", "sh", "-c", "exec 3</dev/tty && echo aibx-has-a-terminal"],
                                   **with_terminal)  # type: ignore[call-overload]  # fmt: skip
        assert control.wait(timeout=30) == 0
        started = time.monotonic()
        proc = subprocess.Popen(["setsid", "--ctty", *aibx_command(template, "--log", tmp_path / "log")],
                                **with_terminal)  # type: ignore[call-overload]  # fmt: skip
        assert proc.wait(timeout=60) == 0
        assert time.monotonic() - started < 30  # a guard against a step waiting on the terminal
    finally:
        os.close(terminal)
        reader.join(timeout=10)
    text = output.decode(errors="replace")
    assert "aibx-has-a-terminal" in text
    assert "probe | step-has-no-terminal" in text and "probe | stdin-at-eof" in text, text


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's last user closed it
            break
        if not chunk:
            break
        into += chunk
    os.close(fd)


@pytest.mark.usefixtures("ssh_agent_mode")
# ----------------------------------------------------------------------------------------------- shells
def test_a_login_shell_that_does_not_exist_is_refused_at_login(faulty_target, tmp_path: Path) -> None:
    target = faulty_target(login_shell="/nonexistent/bash")
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, [shell("s", "true")]))
    assert code == 3, text
    assert "authentication failed" in text and "login shell does not exist" in text
    assert "shell /nonexistent/bash does not exist" in target.log_text()  # sshd's own reason, on the VM
    assert report["outcome"] == "connect failed"


@pytest.mark.usefixtures("ssh_agent_mode")
def test_a_vm_without_bin_sh_fails_the_step_with_a_hint(faulty_target, tmp_path: Path) -> None:
    target = faulty_target(missing_programs=("/usr/bin/sh",))
    steps = [shell("s", "echo never-printed"), shell("next", "true")]
    code, text, report = run_on(target, tmp_path, write_template(tmp_path, steps))
    assert code == 1, text
    assert "exit code 127" in text and "/bin/sh: No such file or directory" in text
    assert "hint: the VM has no /bin/sh" in text and "never-printed" not in text
    assert [p.name for p in target.host_path("/tmp").iterdir() if p.name.startswith("aibx-")] == []
    assert outcomes(report) == {"stage deprovisioning script": "succeeded", "s": "failed", "next": "not run",
                                "remove the staged deprovisioning script": "not run"}  # fmt: skip


def test_locally_a_missing_bin_sh_fails_the_step_instead_of_an_internal_error(tmp_path: Path) -> None:
    o = tmp_path / "overlay"
    o.mkdir()
    setup = (
        f"mount -t tmpfs tmpfs {o} && mkdir {o}/upper {o}/work && mount -t overlay overlay "
        f"-o lowerdir=/usr/bin,upperdir={o}/upper,workdir={o}/work /usr/bin && rm /usr/bin/sh"
    )
    template = write_template(tmp_path, [shell("s", "echo never-printed"), shell("next", "true")])
    proc = in_mount_namespace(
        setup,
        aibx_command(template, "--log", tmp_path / "log", "--report", tmp_path / "report.json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    assert "exit=1" in out, out + err
    assert "cannot start /bin/sh on this machine: No such file or directory" in err
    assert "internal error" not in err and "never-printed" not in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert outcomes(report) == {"stage deprovisioning script": "failed", "s": "not run", "next": "not run",
                                "remove the staged deprovisioning script": "not run"}  # fmt: skip


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_locally_sigint_or_sigterm_stops_the_step_and_removes_its_script(tmp_path: Path, signame: str) -> None:
    token = f"{60000 + int.from_bytes(os.urandom(2), 'big')}"
    script_name = tmp_path / "script"
    template = write_template(
        tmp_path, [shell("long", f'echo "$0" > {script_name}', f"sleep {token}"), shell("next", "true")]
    )
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        aibx_command(template, "--log", tmp_path / "log", "--report", report),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (script_name.exists() and script_name.read_text().endswith("\n")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.Signals[signame])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert not Path(script_name.read_text().strip()).exists()  # the temporary script was removed
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == f"sleep {token}"]
    assert json.loads(report.read_text())["outcome"] == "interrupted"


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


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


def test_with_fetch_on_target_the_vm_retries_a_failing_download(
    ssh_target: SshTarget, tmp_path: Path, content_server
) -> None:
    require_program("curl")
    d = ssh_target.remote_dir("on-target-retry")
    body = f"#!/bin/sh -e\necho downloaded > {d}/out\n".encode()
    url = content_server.serve("/s.sh", body, failures=[503])
    step = {"type": "Shell", "name": "setup", "scriptUri": url, "sha256Checksum": hashlib.sha256(body).hexdigest()}
    code, text, _ = run_on(ssh_target, tmp_path, write_template(tmp_path, [step]), "--fetch-on-target")
    assert code == 0, text
    assert ssh_target.host_path(f"{d}/out").read_text() == "downloaded\n"
    assert content_server.requests == ["/s.sh", "/s.sh"]  # curl --retry 10 on the VM, as AIB's build VM


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


def test_malformed_hcl_is_exit_2_with_its_position(tmp_path: Path) -> None:
    config = tmp_path / "build.pkr.hcl"
    config.write_text('source "azure-arm" "x" {\n  image_offer = \n}\n')
    out = tmp_path / "out.json"
    result = invoke("translate", config, "--to", "aib", "-o", out)
    assert result.code == 2, result.text
    assert f"{config}:2:" in result.err and "error[AIB072] HCL syntax error" in result.err
    assert "Traceback" not in result.text and not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "line"), [("bad.pkrvars.hcl", 'a = "x"\nb = \n', 2), ("bad.pkrvars.json", '{"a": ', 1)]
)
def test_a_malformed_packer_var_file_is_exit_2_with_its_position(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    var_file = tmp_path / name
    var_file.write_text(text)
    out = tmp_path / "out.json"
    config = ROOT / "fixtures" / "translate" / "packer" / "linux-single"
    result = invoke("translate", config, "--to", "aib", "--var-file", var_file, "-o", out)
    assert result.code == 2, result.text
    assert f"{var_file}:{line}:" in result.err and "error[AIB07" in result.err and "Traceback" not in result.text
    assert not out.exists()


def test_a_malformed_template_is_exit_2_before_anything_is_fetched_or_connected(tmp_path: Path, content_server) -> None:
    broken = tmp_path / "broken.json"
    text = write_template(tmp_path, [{"type": "Shell", "name": "s", "scriptUri": content_server.url("/s.sh")}])
    broken.write_text(text.read_text()[:-40])  # cut short
    result = invoke("run", broken, "--host", "ssh://nobody@127.0.0.1:9", "--log", tmp_path / "log")
    assert result.code == 2, result.text
    assert f"{broken}:" in result.err and "error[AIB002]" in result.err and "not a valid image template" in result.err
    assert content_server.requests == []  # nothing fetched; and port 9 (discard) was never asked


# ----------------------------------------------------------------------------------------------- WinRM connections
WINRM_USER = "faultadmin"  # NTLM test users are process-wide: this one is only this file's
WINRM_PASSWORD = "Fault-Passw0rd-3c1d"


@pytest.fixture
def windows_vm(make_winrm_host, monkeypatch: pytest.MonkeyPatch) -> WindowsVm:
    monkeypatch.setenv("AIBX_TEST_FAULTS_PW", WINRM_PASSWORD)
    host = make_winrm_host(users={WINRM_USER: WINRM_PASSWORD})
    host.restart_down_seconds = 0.3
    return WindowsVm(host)


def run_windows(vm: WindowsVm, tmp_path: Path, steps: list[dict], *extra: str) -> tuple[int, str, dict]:
    report = tmp_path / "report.json"
    result = invoke(
        "run", write_template(tmp_path, steps, source=WINDOWS_SOURCE), "--host",
        f"winrm://{WINRM_USER}@127.0.0.1:{vm.host.port}", "--password-env", "AIBX_TEST_FAULTS_PW",
        "--log", tmp_path / "log", "--report", report, "--connect-timeout", "2s", *extra,
    )  # fmt: skip
    return result.code, result.text, json.loads(report.read_text())


def powershell(name: str, *lines: str) -> dict:
    return {"type": "PowerShell", "name": name, "inline": list(lines)}


def test_over_winrm_a_connection_dropped_mid_step_without_a_restart_fails_and_is_not_run_again(
    windows_vm: WindowsVm, tmp_path: Path
) -> None:
    host = windows_vm.host

    def drop_connections(cmd: RemoteCommand, run: ScriptRun) -> int:
        threading.Timer(0.2, lambda: (host.stop(), host.start())).start()  # every connection reset, same boot
        cmd.wait_terminated(10)
        return 0

    windows_vm.on_script("install-app", drop_connections)
    windows_vm.on_script("configure", Reply("configured\r\n"))
    steps = [powershell("install", "install-app"), powershell("configure", "configure")]
    code, text, report = run_windows(windows_vm, tmp_path, steps)
    assert code == 1, text
    message = report["steps"][1]["message"]
    assert "came back without restarting" in message and "aibx does not run it again" in message
    assert len(windows_vm.runs) == 1 and host.boot_count == 1
    assert outcomes(report)["configure"] == "not run"
    assert windows_vm.leftovers() == []  # the clean-up ran after reconnecting


def test_over_winrm_a_restart_nobody_announced_ends_the_step_and_the_next_runs_on_the_new_boot(
    windows_vm: WindowsVm, tmp_path: Path
) -> None:
    def restarts_the_vm(cmd: RemoteCommand, run: ScriptRun) -> int:
        cmd.stdout("installing a driver\r\n")
        cmd.host.schedule_restart(0.1)  # an installer that restarts Windows by itself
        cmd.wait_terminated(10)
        return 1

    windows_vm.on_script("install-driver", restarts_the_vm)
    windows_vm.on_script("after", lambda cmd, run: Reply(f"boot {cmd.host.boot_count}\r\n"))
    steps = [powershell("driver", "install-driver"), powershell("after", "after")]
    code, text, report = run_windows(windows_vm, tmp_path, steps)
    assert code == 0, text
    driver = report["steps"][1]
    assert driver["outcome"] == "succeeded" and driver["endedByReboot"] and driver["reboots"] == 1
    assert "after | boot 2" in text


def test_over_winrm_a_vm_that_never_comes_back_is_exit_4(windows_vm: WindowsVm, tmp_path: Path) -> None:
    host = windows_vm.host

    def power_off(cmd: RemoteCommand, run: ScriptRun) -> int:
        threading.Timer(0.2, host.stop).start()  # and it never starts again
        cmd.wait_terminated(10)
        return 0

    windows_vm.on_script("shutdown-for-good", power_off)
    started = time.monotonic()
    code, text, report = run_windows(
        windows_vm, tmp_path, [powershell("gone", "shutdown-for-good")], "--reconnect-timeout", "2s"
    )
    assert time.monotonic() - started < 60  # the 2 s window, a connection attempt and the clean-up's bound
    assert code == 4, text
    message = report["steps"][1]["message"]
    assert "WinRM did not come back within 2.00 s (--reconnect-timeout)" in message
    assert "last error: connection refused" in message
    assert report["outcome"] == "timed out"
