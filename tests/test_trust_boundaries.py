"""Trust boundaries, second round (issue 11, the engine's items): a template from standard input, redirects that
change the scheme, ssh-agent forwarding, temp names in fleets, descriptors in big fleets, PowerShell-on-Linux temp
files, and the warnings about secrets on the command line and NTLM over plain http.

Each test failed on the code before the fix; docs/security.md and docs/reliability.md name them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aibx.engine.fetch import ContentFetcher, FetchError, FetchPolicy, RedirectRefused
from aibx.plan import Content
from tests.support.cli import invoke
from tests.support.http_server import ContentServer
from tests.support.sshd import SshTarget
from tests.support.templates import shell, write_template


def ssh_auth(target: SshTarget) -> list[str | Path]:
    return ["-i", target.client_key, "--known-hosts", target.known_hosts]


def invoke_with_stdin(text: str, *args: object) -> tuple[int, str, str]:
    """``aibx ARGS`` in this process with ``text`` on standard input."""
    import contextlib

    from aibx.cli import main

    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
    old = sys.stdin
    sys.stdin = stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------------------------- item 3: stdin
def test_a_template_from_stdin_reads_no_local_file_without_the_flag(
    ssh_target: SshTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cat evil.json | aibx run - --host VM``: the template has no folder, so ``file:notes.txt`` would be read
    from the working directory (your home, say) and copied to the VM. Refused unless --allow-local-files."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("my private notes\n")
    d = ssh_target.remote_dir("stdin")
    step = {"type": "File", "name": "steal", "sourceUri": "file:notes.txt", "destination": f"{d}/notes.txt"}
    text = write_template(tmp_path, [step]).read_text()
    monkeypatch.chdir(home)
    code, out, err = invoke_with_stdin(text, "run", "-", "--host", ssh_target.url, *ssh_auth(ssh_target),
                                       "--log", tmp_path / "c.log")  # fmt: skip
    assert code == 2, out + err
    assert "the template came from standard input, so it has no folder of its own" in err
    assert "--allow-local-files" in err
    assert not ssh_target.host_path(f"{d}/notes.txt").exists()
    assert ssh_target.sessions_started() == []
    code, out, err = invoke_with_stdin(text, "plan", "-")
    assert code == 2 and "CANNOT RUN: sourceUri: 'file:notes.txt': the template came from standard input" in out
    # the user's own choice: then the working directory is the folder
    code, out, err = invoke_with_stdin(text, "run", "-", "--host", ssh_target.url, *ssh_auth(ssh_target),
                                       "--allow-local-files", "--log", tmp_path / "c.log")  # fmt: skip
    assert code == 0, out + err
    assert ssh_target.host_path(f"{d}/notes.txt").read_text() == "my private notes\n"


# ----------------------------------------------------------------------------------------------- item 7: redirects
class Listener:
    """A TCP port on loopback that only counts the connections made to it (an FTP server nobody should reach)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


def fetch(tmp_path: Path, uri: str) -> tuple[Path | None, list[str], BaseException | None]:
    warnings: list[str] = []
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    fetcher = ContentFetcher(work, FetchPolicy(tries=2, first_delay=0.01), on_warning=warnings.append)
    try:
        return asyncio.run(fetcher.fetch(Content(uri=uri))), warnings, None
    except FetchError as exc:
        return None, warnings, exc


def test_a_redirect_to_ftp_is_refused(content_server: ContentServer, tmp_path: Path) -> None:
    ftp = Listener()
    try:
        uri = content_server.redirect("/setup.sh", f"ftp://127.0.0.1:{ftp.port}/setup.sh")
        path, _, error = fetch(tmp_path, uri)
        assert path is None and isinstance(error, RedirectRefused), error
        assert "redirects (302) to ftp://127.0.0.1" in str(error) and "refused" in str(error)
        assert ftp.connections() == 0  # urllib would have gone there (and run what it found)
    finally:
        ftp.close()


def test_an_https_to_http_downgrade_is_refused_and_http_to_https_is_followed(
    tls_content_server: ContentServer, tmp_path: Path
) -> None:
    plain = ContentServer(tmp_path).start()
    try:
        plain.serve("/a.sh", b"echo plain\n")
        uri = tls_content_server.redirect("/a.sh", plain.url("/a.sh"))
        path, _, error = fetch(tmp_path, uri)
        assert isinstance(error, RedirectRefused), error
        assert "from https down to plain http" in str(error)
        assert plain.requests == []
        # the other way round is an upgrade: followed (the http URI itself is warned about)
        tls_content_server.serve("/b.sh", b"echo secure\n")
        uri = plain.redirect("/b.sh", tls_content_server.url("/b.sh"))
        path, warnings, error = fetch(tmp_path, uri)
        assert error is None and path is not None and path.read_bytes() == b"echo secure\n"
        assert any("plain http" in w for w in warnings)
        # and http to http stays allowed, with the warning the http URI gets anyway
        plain.serve("/c.sh", b"echo c\n")
        path, warnings, error = fetch(tmp_path, plain.redirect("/r.sh", plain.url("/c.sh")))
        assert error is None and path is not None and any("plain http" in w for w in warnings)
    finally:
        plain.stop()


def test_a_refused_redirect_fails_the_run_before_anything_reaches_the_vm(
    content_server: ContentServer, tmp_path: Path
) -> None:
    ftp = Listener()
    try:
        uri = content_server.redirect("/s.sh", f"ftp://127.0.0.1:{ftp.port}/s.sh")
        marker = tmp_path / "ran"
        steps = [shell("first", f"touch {marker}"), {"type": "Shell", "name": "fetched", "scriptUri": uri}]
        result = invoke("run", write_template(tmp_path, steps), "--host", "local", "--log", tmp_path / "c.log")
        assert result.code == 1, result.text
        assert "aibx follows redirects only to https (or http from http); refused" in result.err
        assert not marker.exists() and ftp.connections() == 0
    finally:
        ftp.close()


# ----------------------------------------------------------------------------------------------- item 9: agent
@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real ssh-agent holding a key, as SSH_AUTH_SOCK."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.02"])
        key = tmp_path / "agent_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env=env, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_the_agent_is_never_forwarded_even_when_ssh_config_says_so(
    ssh_target: SshTarget, ssh_agent: Path, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    ForwardAgent yes\n")
    probe = shell("probe", 'echo "agent=${SSH_AUTH_SOCK:-none}"')
    result = invoke("run", write_template(tmp_path, [probe]), "--host", ssh_target.url, *ssh_auth(ssh_target),
                    "-F", config, "--log", tmp_path / "c.log")  # fmt: skip
    assert result.code == 0, result.text
    assert "probe | agent=none" in result.out


# ----------------------------------------------------------------------------------------------- smaller items
def secure_template(folder: Path) -> Path:
    """An ARM deployment whose secureString parameter reaches an inline line."""
    from tests.support.templates import write_template as write

    bare = json.loads(write(folder, [shell("use", "echo token-length=${#TOKEN}")]).read_text())
    bare["properties"]["customize"][0]["inline"].insert(0, "[concat('TOKEN=', parameters('apiToken'))]")
    deployment = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"apiToken": {"type": "secureString"}, "region": {"type": "string", "defaultValue": "x"}},
        "resources": [{**bare, "name": "t"}],
    }
    path = folder / "deployment.json"
    path.write_text(json.dumps(deployment))
    return path


def test_a_secure_parameter_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    template = secure_template(tmp_path)
    value = "Secret-Token-8c1d"
    result = invoke("plan", template, "-p", f"apiToken={value}", "-p", "region=y")
    assert result.code == 0, result.text
    assert "aibx: warning: -p apiToken=...: apiToken is a secure parameter" in result.err
    assert "visible to every user of this machine (ps)" in result.err and "--parameters FILE" in result.err
    assert "region" not in result.err and value not in result.text
    # from a parameters file: nothing to warn about
    (tmp_path / "p.json").write_text(json.dumps({"parameters": {"apiToken": {"value": value}}}))
    quiet = invoke("plan", template, "--parameters", tmp_path / "p.json")
    assert quiet.code == 0, quiet.text
    assert "secure parameter" not in quiet.err


def test_ntlm_over_plain_http_is_said_not_to_authenticate_the_vm() -> None:
    from aibx.engine.transports import ConnectOptions, create_transport, parse_target

    options = ConnectOptions(password="x", remote_os="windows", extra={"auth": "ntlm"})
    plain = create_transport(parse_target("winrm://admin@127.0.0.1:5985"), options)
    assert (
        "NTLM over plain HTTP (winrm://) encrypts the messages but does not authenticate the VM" in plain.connect_note
    )
    assert "winrms://" in plain.connect_note
    tls = create_transport(parse_target("winrms://admin@127.0.0.1:5986"), options)
    assert "NTLM" not in tls.connect_note


# ----------------------------------------------------------------------------------------------- item 10
FAKE_PWSH = """#!/bin/sh
# a stand-in for pwsh: records what it was given, then runs for a long time (as a long script would)
for a; do last=$a; done
ls -ln "$(dirname "$last")" > SAW.tmp
stat -c '%a %U' "$(dirname "$last")" >> SAW.tmp
cat "$last" >> SAW.tmp
mv SAW.tmp SAW
echo started
sleep 3
"""


def leftovers(target: SshTarget) -> list[str]:
    return sorted(p.name for p in target.host_path("/tmp").iterdir() if p.name.startswith("aibx-"))


@pytest.mark.parametrize("kind", ["Shell", "PowerShell"])
def test_temp_files_do_not_survive_a_killed_client(ssh_target: SshTarget, tmp_path: Path, kind: str) -> None:
    """The client is SIGKILLed while a step runs: the step's files on the VM go when its command ends, for
    PowerShell on Linux (a private directory, one command) as for the Shell wrapper's script. (Before, PowerShell's
    two files were uploaded apart and removed by a later clean-up command, which a dead client never sends.)"""
    import signal
    import time

    from tests.support.cli import aibx_command

    remote_saw = ssh_target.remote_dir("ctl") + "/saw"
    shim = ssh_target.shims / "pwsh"
    shim.write_text(FAKE_PWSH.replace("SAW", remote_saw))
    shim.chmod(0o755)
    saw = ssh_target.host_path(remote_saw)
    if kind == "Shell":
        step = shell("long", f"echo started > {remote_saw}", "sleep 3")
    else:
        step = {"type": "PowerShell", "name": "long", "inline": ["Write-Output 'secret-ish script'"]}
    template = write_template(tmp_path, [step])
    args = ["run", str(template), "--host", ssh_target.url, *map(str, ssh_auth(ssh_target)),
            "--log", str(tmp_path / "c.log")]  # fmt: skip
    console = tmp_path / "console.txt"
    with console.open("wb") as out:
        client = subprocess.Popen([*aibx_command(), *args], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not saw.exists():
            assert time.monotonic() < deadline and client.poll() is None, console.read_text()
            time.sleep(0.02)
        assert leftovers(ssh_target), "the step's files should exist while it runs"
        if kind == "PowerShell":
            seen = saw.read_text()
            assert "700 " + ssh_target.user in seen and "Write-Output 'secret-ish script'" in seen
            assert "run.ps1" in seen and "script.ps1" in seen
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
    # the step's command outlives its client (nothing tells it the client is gone); when it ends, its files go
    deadline = time.monotonic() + 20
    while leftovers(ssh_target) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(ssh_target) == []


def test_powershell_on_linux_refuses_a_planted_directory(ssh_target: SshTarget, tmp_path: Path) -> None:
    """The private directory has the step's random name; were it predicted and planted (a symlink to a folder
    of the login user), mkdir refuses and nothing is written through it."""
    from aibx.provisioners.powershell import linux_run_command

    victim = Path(ssh_target.remote_dir("victim"))
    planted = "/tmp/aibx-ps-planted"
    ssh_target.host_path(planted).symlink_to(victim)
    command = linux_run_command(planted, "")
    shim = ssh_target.shims / "pwsh"
    shim.write_text("#!/bin/sh\necho pwsh ran\n")
    shim.chmod(0o755)
    done = subprocess.run(
        ["ssh", *ssh_target.ssh_args(), command], input=b"Write-Output hi\n", capture_output=True, timeout=30
    )
    assert done.returncode == 125, done
    assert b"cannot create the private directory /tmp/aibx-ps-planted" in done.stderr
    assert b"pwsh ran" not in done.stdout
    assert list(ssh_target.host_path(str(victim)).iterdir()) == []


# ----------------------------------------------------------------------------------------------- item 8: descriptors
FLEET_SIZE = 1100  # more than the usual soft limit of 1024 open files


def test_a_fleet_of_more_hosts_than_open_files_runs(ssh_target: SshTarget, tmp_path: Path) -> None:
    """1,100 hosts under a hard limit of 1,024 open files: each host's log is opened when its turn comes and closed
    after, so the run needs descriptors for --parallel hosts, not for all of them. (Before, every log was opened at
    the start: "Too many open files", exit 2.) The hosts are aliases in an ssh config file: every 100th is the one
    loopback sshd (they share its /tmp: each host gets its own temporary names), the others a port where nobody
    listens (cheap: refused at once, but each still has its log, its report entry and its turn)."""
    import resource

    from tests.support.cli import aibx_command
    from tests.support.sshd import free_port

    closed = free_port()
    config = tmp_path / "ssh_config"
    names = [f"h{i:04d}" for i in range(FLEET_SIZE)]
    real = set(names[::100])
    config.write_text(  # two blocks, not one per host: asyncssh reads the file again for every connection
        f"Host h??00\n    HostName 127.0.0.1\n    Port {ssh_target.port}\n    User {ssh_target.user}\n"
        f"Host *\n    HostName 127.0.0.1\n    Port {closed}\n    User {ssh_target.user}\n"
    )
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("\n".join(names) + "\n")
    template = write_template(tmp_path, [shell("hello", "sleep 0.2")])
    logs = tmp_path / "logs"
    logs.mkdir()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    done = subprocess.run(
        [*aibx_command(), "run", str(template), "--hosts-file", str(hosts), "-F", str(config),
         *map(str, ssh_auth(ssh_target)), "--parallel", "16", "--log", str(logs / "c.log"),
         "--report", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=600, preexec_fn=limit,
    )  # fmt: skip
    failed = FLEET_SIZE - len(real)
    summary = f"{FLEET_SIZE} hosts: {len(real)} succeeded, {failed} connect failed; exit status 3"
    assert summary in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 3 and "Too many open files" not in done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["totals"] == {"hosts": FLEET_SIZE, "succeeded": len(real), "connectFailed": failed}
    written = {p.name: p.read_text() for p in logs.iterdir()}
    assert len(written) == FLEET_SIZE
    assert all("'hello': succeeded" in written[f"c-{n}.log"] for n in real)
    assert all("connection refused" in written[f"c-{n}.log"] for n in names[1:20])
    # each host its own temporary names (the plan was compiled once for all before: the 11 clashed in one /tmp)
    import re

    scripts = {n: re.findall(r"/tmp/aibx-[0-9a-f]{16}/script\.sh", written[f"c-{n}.log"])[0] for n in real}
    assert len(set(scripts.values())) == len(real)


def test_the_soft_limit_on_open_files_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "from aibx.engine.fleet import raise_open_files_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "(4096, 4096) (4096, 4096)", done.stderr


# ----------------------------------------------------------------------------------------------- item 4: File
def file_step(tmp_path: Path, destination: str) -> Path:
    (tmp_path / "payload.txt").write_text("from the template\n")
    step = {"type": "File", "name": "copy", "sourceUri": "file:payload.txt", "destination": destination}
    return write_template(tmp_path, [step])


def test_a_file_destination_that_is_a_symlink_is_refused_over_ssh(ssh_target: SshTarget, tmp_path: Path) -> None:
    """Another VM user plants /tmp/app.conf -> the login user's own file: the upload does not write through it
    (before, it did, and the step "succeeded"). A destination that is a plain file is replaced, through a new file
    renamed over it."""
    victim = ssh_target.remote_dir("home") + "/precious"
    ssh_target.host_path(victim).write_text("precious\n")
    ssh_target.host_path("/tmp/app.conf").symlink_to(victim)
    result = invoke("run", file_step(tmp_path, "/tmp/app.conf"), "--host", ssh_target.url, *ssh_auth(ssh_target),
                    "--log", tmp_path / "c.log")  # fmt: skip
    assert result.code == 1, result.text
    assert f"/tmp/app.conf: is a symbolic link (to {victim}); aibx does not write through one" in result.err
    assert ssh_target.host_path(victim).read_text() == "precious\n"
    ssh_target.host_path("/tmp/app.conf").unlink()
    ssh_target.host_path("/tmp/app.conf").write_text("old\n")
    if os.geteuid() == 0:  # the login user's own file, as the first run would have left it
        import pwd

        user = pwd.getpwnam(ssh_target.user)
        os.chown(ssh_target.host_path("/tmp/app.conf"), user.pw_uid, user.pw_gid)
    result = invoke("run", file_step(tmp_path, "/tmp/app.conf"), "--host", ssh_target.url, *ssh_auth(ssh_target),
                    "--log", tmp_path / "c.log")  # fmt: skip
    assert result.code == 0, result.text
    assert ssh_target.host_path("/tmp/app.conf").read_text() == "from the template\n"
    assert [p.name for p in ssh_target.host_path("/tmp").iterdir() if ".aibx-" in p.name] == []


def test_a_file_destination_that_is_a_symlink_is_refused_locally(tmp_path: Path) -> None:
    victim = tmp_path / "precious"
    victim.write_text("precious\n")
    link = tmp_path / "app.conf"
    link.symlink_to(victim)
    folder = tmp_path / "template"
    folder.mkdir()
    result = invoke("run", file_step(folder, str(link)), "--host", "local", "--log", tmp_path / "c.log")
    assert result.code == 1, result.text
    assert f"is a symbolic link (to {victim}); aibx does not write through one" in result.err
    assert victim.read_text() == "precious\n"


def test_the_vm_follows_no_redirect_to_another_scheme_either(content_server: ContentServer, tmp_path: Path) -> None:
    """With --fetch-on-target the VM's curl downloads: it is held to the same rule (--proto, --proto-redir)."""
    from aibx.provisioners import posix
    from tests.support.requirements import require_program

    require_program("curl")
    ftp = Listener()
    marker = tmp_path / "ran"
    try:
        uri = content_server.redirect("/s.sh", f"ftp://127.0.0.1:{ftp.port}/s.sh")
        fetched = str(tmp_path / "fetched")
        script = posix.fetch_and_run_script(uri, None, fetched)
        done = subprocess.run(["sh", "-e", "-c", script.decode()], capture_output=True, timeout=60)
        assert done.returncode != 0 and not marker.exists()
        assert b"Protocol" in done.stderr or b"protocol" in done.stderr, done.stderr
        assert ftp.connections() == 0
    finally:
        ftp.close()
