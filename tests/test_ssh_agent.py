"""The SSH transport's command agent (engine/transports/ssh_agent.py, aibx/data/aibx-agent.sh) against a real sshd:
one round trip per step, the same process, environment and output as an exec channel, and a fallback to exec
channels whenever the agent cannot run. The semantic tests of tests/test_run_ssh.py, test_reboots.py and
test_faults.py run with and without the agent (tests/support/agent_modes.py); these are the agent's own."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from aibx.engine.transports import ConnectOptions, parse_target
from aibx.engine.transports.base import RemoteFileError
from aibx.engine.transports.ssh import SshTransport
from aibx.engine.transports.ssh_agent import Agent, _EndScanner, accepts, read_stdin
from tests.support.cli import invoke
from tests.support.latency_proxy import LatencyProxy
from tests.support.sshd import SshTarget
from tests.support.templates import shell, write_template


# ---------------------------------------------------------------------------------------------- the end token
def test_the_end_token_is_found_across_chunks_and_output_before_it_passes_unchanged() -> None:
    scanner = _EndScanner(b"0123456789abcdef ")
    assert scanner.feed(b"hello\nworld0123") == (b"hello\nworld", None)  # the token's start is held back
    assert scanner.feed(b"4567") == (b"", None)
    assert scanner.feed(b"89abcdef 0\n") == (b"", b"0\n")


def test_bytes_that_only_look_like_the_token_start_are_passed_on() -> None:
    scanner = _EndScanner(b"abcdef ")
    assert scanner.feed(b"xxabc") == (b"xx", None)
    assert scanner.feed(b"X") == (b"abcX", None)
    assert scanner.feed(b"abcdef 7\n") == (b"", b"7\n")


def test_what_the_agent_takes() -> None:
    assert accepts("f=/tmp/x; cat >$f")
    assert not accepts("cat <<'END'\nx\nEND")  # a command on several lines goes over an exec channel
    assert read_stdin(None) == b""
    assert read_stdin(b"data") == b"data"


# ---------------------------------------------------------------------------------------------- on a real sshd
def transport_for(target: SshTarget, port: int | None = None, known_hosts: Path | None = None) -> SshTransport:
    url = target.url if port is None else f"ssh://{target.user}@{target.host}:{port}"
    options = ConnectOptions(identity=str(target.client_key), known_hosts=str(known_hosts or target.known_hosts))
    return SshTransport(parse_target(url), options)


def on(target: SshTarget, body: Callable[[SshTransport], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        transport = transport_for(target)
        await transport.connect()
        try:
            await transport.boot_identity()  # as the runner does: the first command, alongside the agent's start
            await body(transport)
        finally:
            await transport.close()

    asyncio.run(main())


async def output(transport: SshTransport, command: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    code = await transport.run(command, stdin=stdin, on_output=lambda s, chunk: streams[s].extend(chunk))
    return code, bytes(streams["stdout"]), bytes(streams["stderr"])


async def agent_of(transport: SshTransport) -> Agent:
    """The transport's agent, once a command has waited for its start."""
    assert await transport.run("true") == 0
    agent = transport._agent
    assert agent is not None and agent.usable, "the agent did not start"
    return agent


def test_a_command_sees_the_same_process_environment_and_streams_with_and_without_the_agent(
    ssh_target: SshTarget,
) -> None:
    probe = 'echo "$0|$-|$(umask)|$(pwd)"; env | sort'

    async def body(transport: SshTransport) -> None:
        agent = await agent_of(transport)
        with_agent = await output(transport, probe)
        agent.usable = False  # the same connection, over an exec channel
        with_channel = await output(transport, probe)
        agent.usable = True
        assert with_agent == with_channel
        assert b"_aibx_" not in with_agent[1]  # none of the agent's variables leaks
        code, out, err = await output(transport, "cat; echo; echo to-stderr >&2; exit 7", stdin=b"a\0b\nno newline")
        assert (code, out, err) == (7, b"a\0b\nno newline\n", b"to-stderr\n")
        assert await output(transport, "printf 'no newline'; printf 'err' >&2") == (0, b"no newline", b"err")
        assert await output(transport, "kill -TERM $$") == (143, b"", b"")  # a signalled shell: 128 + N
        assert agent.usable

    on(ssh_target, body)


def test_a_step_script_is_a_real_file_named_by_dollar_0_and_removed(ssh_target: SshTarget, tmp_path: Path) -> None:
    d = ssh_target.remote_dir("agent")
    steps = [shell(f"step-{i}", f'echo "$0" >> {d}/paths', f'test -f "$0"; echo $$ >> {d}/pids') for i in range(3)]
    result = invoke("run", write_template(tmp_path, steps), "--host", ssh_target.url, "-i", ssh_target.client_key,
                    "--known-hosts", ssh_target.known_hosts, "--log", tmp_path / "log")  # fmt: skip
    assert result.code == 0, result.text
    paths = ssh_target.host_path(f"{d}/paths").read_text().split()
    assert len(set(paths)) == 3 and all(p.startswith("/tmp/aibx-") for p in paths)
    assert not any(ssh_target.host_path(p).exists() for p in paths)
    assert len(set(ssh_target.host_path(f"{d}/pids").read_text().split())) == 3  # a fresh process each
    # the boot id probe and the agent: no exec channel per step
    assert sum("command" in s for s in ssh_target.sessions_started()) == 2
    assert not list(ssh_target.host_path("/tmp").glob("aibx-agent-*"))  # its stdin file is unlinked at once


def test_a_command_on_several_lines_goes_over_a_channel_and_the_agent_stays(ssh_target: SshTarget) -> None:
    async def body(transport: SshTransport) -> None:
        agent = await agent_of(transport)
        assert await output(transport, "echo one\necho two") == (0, b"one\ntwo\n", b"")
        assert transport._agent is agent and agent.usable

    on(ssh_target, body)


def test_a_timeout_stops_the_command_and_later_commands_run_over_channels(ssh_target: SshTarget) -> None:
    marker = f"/tmp/agent-timeout-{id(ssh_target)}"

    async def body(transport: SshTransport) -> None:
        agent = await agent_of(transport)
        with pytest.raises(TimeoutError):
            await transport.run(f"trap 'touch {marker}; exit 143' TERM; sleep 30 & wait", timeout=0.5)
        assert not agent.usable
        assert ssh_target.host_path(marker).exists()  # the command got SIGTERM, as over a channel
        assert await output(transport, "echo after") == (0, b"after\n", b"")

    on(ssh_target, body)


def test_an_agent_killed_under_its_command_reports_the_signal_and_channels_take_over(ssh_target: SshTarget) -> None:
    async def body(transport: SshTransport) -> None:
        agent = await agent_of(transport)
        code, _, _ = await output(transport, "kill -TERM $PPID; sleep 5")  # the command's parent is the agent
        assert code == 143 and not agent.usable
        assert await output(transport, "echo after") == (0, b"after\n", b"")

    on(ssh_target, body)


def test_without_head_the_agent_is_not_used_and_every_step_still_runs(make_ssh_target, tmp_path: Path) -> None:
    from tests.support.requirements import require_root

    require_root("a target without head needs its own mount namespace")
    target = make_ssh_target(missing_programs=("/usr/bin/head",))
    steps = [shell(f"step-{i}", "echo ok") for i in range(3)]
    result = invoke("run", write_template(tmp_path, steps), "--host", target.url, "-i", target.client_key,
                    "--known-hosts", target.known_hosts, "--log", tmp_path / "log")  # fmt: skip
    assert result.code == 0, result.text
    assert result.out.count("| ok") == 3
    # the boot id probe, the agent that said "unsupported", and one exec channel per command of the run
    commands = sum(": exec " in line for line in (tmp_path / "log").read_text().splitlines())
    assert commands >= 3 and sum("command" in s for s in target.sessions_started()) == 2 + commands


# ---------------------------------------------------------------------------------------------- round trips
def round_trips(target: SshTarget, proxy: LatencyProxy, tmp_path: Path, steps: int, agent: str) -> int:
    known_hosts = tmp_path / "known_hosts.proxy"
    known_hosts.write_text(target.known_hosts_line().replace(f":{target.port} ", f":{proxy.port} ", 1) + "\n")
    template = write_template(tmp_path, [shell(f"s{i}", "true") for i in range(steps)], name=f"t{steps}.json")
    before = proxy.round_trips
    report = tmp_path / f"report-{steps}-{agent}.json"
    url = f"ssh://{target.user}@{target.host}:{proxy.port}"
    result = invoke("run", template, "--host", url, "-i", target.client_key, "--known-hosts", known_hosts,
                    "--log", tmp_path / "log", "--report", report)  # fmt: skip
    assert result.code == 0, result.text
    assert all(s["outcome"] == "succeeded" for s in json.loads(report.read_text())["steps"])
    return proxy.round_trips - before


@pytest.mark.parametrize(("agent", "most", "least"), [("on", 1.5, 0.0), ("off", 99.0, 2.5)])
def test_round_trips_per_step_through_the_latency_proxy(
    ssh_target: SshTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: str, most: float, least: float
) -> None:
    """Counted, not timed: the proxy's turnarounds for an 11-step job minus a 1-step job, per step."""
    monkeypatch.setenv("AIBX_SSH_AGENT", agent)
    with LatencyProxy(ssh_target.port, delay=0.002) as proxy:
        one = round_trips(ssh_target, proxy, tmp_path, 1, agent)
        eleven = round_trips(ssh_target, proxy, tmp_path, 11, agent)
    per_step = (eleven - one) / 10
    assert least <= per_step <= most, (one, eleven)


def test_a_server_with_two_sessions_at_most_still_runs_every_step(make_ssh_target, tmp_path: Path) -> None:
    """MaxSessions 2: the boot id probe gets its channel first; SFTP and the agent share what is left (the agent
    falls back to exec channels when it finds no session), and steps and files still go through."""
    target = make_ssh_target(config_overrides="MaxSessions 2")
    d = target.remote_dir("sessions")
    (tmp_path / "payload.txt").write_text("payload\n")
    steps = [
        shell("one", f"echo one > {d}/one"),
        {"type": "File", "name": "file", "sourceUri": "file:payload.txt", "destination": f"{d}/payload.txt"},
        shell("two", f"cat {d}/payload.txt"),
    ]
    result = invoke("run", write_template(tmp_path, steps), "--host", target.url, "-i", target.client_key,
                    "--known-hosts", target.known_hosts, "--log", tmp_path / "log")  # fmt: skip
    assert result.code == 0, result.text
    assert target.host_path(f"{d}/one").read_text() == "one\n"
    assert "two | payload" in result.out


# ---------------------------------------------------------------------------------------------- a lighter start
def test_importing_the_ssh_transport_starts_no_process() -> None:
    """asyncssh's search for liboqs would run ldconfig, gcc and ld at every start (asyncssh_import.py)."""
    import subprocess
    import sys

    probe = (
        "import subprocess, sys\n"
        "started = []\n"
        "real = subprocess.Popen.__init__\n"
        "def spy(self, args, *a, **k):\n"
        "    started.append(args)\n"
        "    real(self, args, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        "import aibx.engine.transports.ssh\n"
        "print(started)\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_library_search_finds_shared_objects_only() -> None:
    from aibx.engine.transports.asyncssh_import import find_library_in_dirs

    libc = find_library_in_dirs("c")
    assert libc is not None and Path(libc).name.startswith("libc.so.")  # not the libc.so linker script
    assert find_library_in_dirs("aibx-no-such-library") is None


def test_a_small_upload_sends_write_chmod_and_fsync_in_that_order_before_any_answer(
    ssh_target: SshTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """One round trip for the bytes, the mode and the fsync: all three requests go out at once, in order (the
    fsync after the write, or the file would not be on disk)."""
    import logging

    import asyncssh

    d = ssh_target.remote_dir("upload")

    async def body(transport: SshTransport) -> None:
        (await agent_of(transport)).usable = False  # over SFTP (a small file goes through the agent otherwise)
        asyncssh.set_sftp_log_level(logging.DEBUG)
        asyncssh.set_debug_level(2)
        try:
            with caplog.at_level(logging.DEBUG, logger="asyncssh"):
                await transport.put(b"hello\n", f"{d}/small", 0o640)
        finally:
            asyncssh.set_sftp_log_level(logging.WARNING)
            asyncssh.set_debug_level(1)

    on(ssh_target, body)
    assert ssh_target.host_path(f"{d}/small").read_bytes() == b"hello\n"
    assert ssh_target.host_path(f"{d}/small").stat().st_mode & 0o777 == 0o640
    events = [
        word
        for record in caplog.records
        for word in ("Sending write", "Sending fsetstat", "Sending fsync", "Received OK", "Sending close")
        if record.getMessage().startswith(word) or f"] {word}" in record.getMessage()
    ]
    assert events[:6] == ["Sending write", "Sending fsetstat", "Sending fsync", "Received OK", "Received OK",
                          "Received OK"]  # fmt: skip


def test_a_small_file_goes_up_through_the_agent_as_sftp_would_write_it(ssh_target: SshTarget) -> None:
    d = ssh_target.remote_dir("put")
    existing = ssh_target.host_path(f"{d}/existing")

    async def body(transport: SshTransport) -> None:
        agent = await agent_of(transport)
        seen: list[tuple[int, int]] = []
        await transport.put(b"private\n", f"{d}/private", 0o600, on_progress=lambda n, total: seen.append((n, total)))
        assert seen == [(8, 8)]
        existing.write_bytes(b"a longer old content\n")
        if os.geteuid() == 0:  # the login user's file, as one an earlier step left
            user = pwd.getpwnam(ssh_target.user)
            os.chown(existing, user.pw_uid, user.pw_gid)
        await transport.put(b"new\n", f"{d}/existing", 0o640)
        await transport.put(b"umask\n", f"{d}/plain")  # no mode: the session's umask, as SFTP creates it
        # what the agent cannot do falls back to SFTP, which explains it the same way with or without the agent
        with pytest.raises(RemoteFileError, match=r"parent directory .* does not exist"):
            await transport.put(b"x", f"{d}/missing/file", 0o600)
        with pytest.raises(RemoteFileError, match="is a directory"):
            await transport.put(b"x", d, 0o600)
        assert agent.usable and transport._agent is agent

    on(ssh_target, body)
    private = ssh_target.host_path(f"{d}/private")
    assert private.read_bytes() == b"private\n" and private.stat().st_mode & 0o777 == 0o600
    assert existing.read_bytes() == b"new\n" and existing.stat().st_mode & 0o777 == 0o640
    assert ssh_target.host_path(f"{d}/plain").stat().st_mode & 0o777 == 0o644
    assert not ssh_target.host_path(f"{d}/missing").exists()
    assert sum("sftp" in s for s in ssh_target.sessions_started()) == 1
