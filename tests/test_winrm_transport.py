"""The WinRM transport against the WinRM protocol server (tests/support/winrm_server.py) over real HTTP(S)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aibx.engine.transports.base import ConnectError, ConnectionLost, RemoteFileError
from aibx.engine.transports.winrm import (
    DEFAULT_MAX_ENVELOPE_SIZE,
    WinRMConfigError,
    WinRMOptions,
    WinRMTarget,
    WinRMTransport,
    clixml_to_text,
    upload_chunk_size,
)
from tests.support.winrm_fixtures import PASSWORD
from tests.support.winrm_server import RemoteCommand, Reply, TlsMaterial, WinRMHost

ENV = {"AIBX_TEST_WINRM_PASSWORD": PASSWORD}
PACKER_CHUNK = ((8000 - len(r"C:\Windows\Temp\file.bin")) // 4) * 3  # winrmcp's chunk for this path


def transport(host: WinRMHost, user: str = "aibx", environ: dict[str, str] | None = None, **opts) -> WinRMTransport:
    scheme = "winrms" if host.tls else "winrm"
    opts.setdefault("password_env", "AIBX_TEST_WINRM_PASSWORD")
    return WinRMTransport.from_url(
        f"{scheme}://{user}@127.0.0.1:{host.port}", WinRMOptions(**opts), environ=environ or ENV
    )


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connected(t: WinRMTransport, fn: Callable[[WinRMTransport], object]):
    await t.connect()
    try:
        return await fn(t)  # type: ignore[misc]
    finally:
        await t.close()


class Collector:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []

    def __call__(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))

    def text(self, stream: str) -> str:
        return b"".join(c for s, c in self.chunks if s == stream).decode()


# ----------------------------------------------------------------------------------------------- targets, options
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("winrm://vm1", ("winrm", "vm1", 5985, None)),
        ("winrms://admin@vm1", ("winrms", "vm1", 5986, "admin")),
        ("WINRM://admin@10.0.0.4:15985", ("winrm", "10.0.0.4", 15985, "admin")),
        ("winrms://CONTOSO%5Cadmin@[::1]:5986", ("winrms", "::1", 5986, "CONTOSO\\admin")),
        ("winrm://admin%40contoso.com@vm1", ("winrm", "vm1", 5985, "admin@contoso.com")),
    ],
)
def test_target_urls(url: str, expected: tuple) -> None:
    t = WinRMTarget.parse(url)
    assert (t.scheme, t.host, t.port, t.user) == expected
    assert t.endpoint.endswith("/wsman")


def test_target_display_and_endpoint() -> None:
    t = WinRMTarget.parse("winrms://CONTOSO%5Cadmin@[::1]")
    assert t.endpoint == "https://[::1]:5986/wsman"
    assert t.display() == "winrms://CONTOSO\\admin@[::1]:5986"


@pytest.mark.parametrize("url", ["ssh://vm1", "winrm://", "winrm://vm1/other", "winrm://vm1:notaport", "vm1"])
def test_bad_target_urls(url: str) -> None:
    with pytest.raises(WinRMConfigError):
        WinRMTarget.parse(url)


def test_password_in_url_refused_without_echoing_it() -> None:
    with pytest.raises(WinRMConfigError) as e:
        WinRMTarget.parse("winrm://admin:S3cret-in-url@vm1")
    assert "S3cret-in-url" not in str(e.value)
    assert "--password-env" in str(e.value)


def test_basic_over_http_refused_unless_allowed() -> None:
    with pytest.raises(WinRMConfigError) as e:
        WinRMTransport.from_url("winrm://admin@vm1", WinRMOptions(auth="basic", password_env="P"), environ={"P": "x"})
    assert "unencrypted" in str(e.value) and "winrms://" in str(e.value)
    WinRMTransport.from_url(
        "winrm://admin@vm1", WinRMOptions(auth="basic", password_env="P", allow_unencrypted=True), environ={"P": "x"}
    )
    WinRMTransport.from_url("winrms://admin@vm1", WinRMOptions(auth="basic", password_env="P"), environ={"P": "x"})


@pytest.mark.parametrize(
    ("url", "opts", "environ", "message"),
    [
        ("winrm://admin@vm1", {"password_env": "NOPE"}, {}, "NOPE is not set"),
        ("winrm://admin@vm1", {}, {}, "needs a password"),
        ("winrm://vm1", {"password_env": "P"}, {"P": "x"}, "needs a user name"),
        ("winrm://admin@vm1", {"auth": "digest", "password_env": "P"}, {"P": "x"}, "unknown WinRM auth"),
        ("winrm://admin@vm1", {"auth": "certificate"}, {}, "needs HTTPS"),
        ("winrms://admin@vm1", {"auth": "certificate"}, {}, "client certificate"),
        ("winrms://a@vm1", {"password_env": "P", "ca_file": "/nonexistent.pem"}, {"P": "x"}, "CA file not found"),
    ],
)
def test_option_errors(url: str, opts: dict, environ: dict, message: str) -> None:
    with pytest.raises(WinRMConfigError) as e:
        WinRMTransport.from_url(url, WinRMOptions(**opts), environ=environ)
    assert message in str(e.value)


def test_password_never_in_repr() -> None:
    t = WinRMTransport.from_url("winrm://admin@vm1", WinRMOptions(password_env="P"), environ={"P": "Pa55-repr"})
    assert "Pa55-repr" not in repr(t) and "Pa55-repr" not in str(vars(t).get("target"))


# ----------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_run_over_http(winrm_host: WinRMHost, auth: str) -> None:
    winrm_host.on("whoami", Reply("win-aibx\\aibx\r\n", "a warning\r\n", 3))
    out = Collector()
    code = run(
        connected(transport(winrm_host, auth=auth, allow_unencrypted=True), lambda t: t.run("whoami", on_output=out))
    )
    assert code == 3
    assert out.text("stdout") == "win-aibx\\aibx\r\n"
    assert out.text("stderr") == "a warning\r\n"
    assert [c.command_line for c in winrm_host.commands] == ["whoami"]
    wsman = [r for r in winrm_host.requests if r.action == "Command"]
    assert wsman and all(r.auth == auth for r in wsman)
    # NTLM over HTTP encrypts every message (what Windows requires by default); Basic cannot
    assert all(r.encrypted == (auth == "ntlm") for r in wsman)


@pytest.mark.parametrize("auth", ["ntlm", "basic", "certificate"])
def test_run_over_https(winrms_host: WinRMHost, winrm_tls: TlsMaterial, auth: str) -> None:
    winrms_host.on("hostname", Reply("WIN-AIBX\r\n"))
    extra = {"client_cert": str(winrm_tls.client_cert), "client_key": str(winrm_tls.client_key)}
    opts = {"auth": auth, "ca_file": str(winrm_tls.ca_cert), **(extra if auth == "certificate" else {})}
    if auth == "certificate":
        opts["password_env"] = None
    out = Collector()
    code = run(connected(transport(winrms_host, **opts), lambda t: t.run("hostname", on_output=out)))
    assert (code, out.text("stdout")) == (0, "WIN-AIBX\r\n")
    assert {r.auth for r in winrms_host.requests if r.action == "Command"} == {auth}


def test_one_shell_for_many_commands(winrm_host: WinRMHost) -> None:
    winrm_host.on("echo", Reply("x\r\n"))

    async def many(t: WinRMTransport) -> list[int]:
        return [await t.run(f"echo {i}") for i in range(5)]

    assert run(connected(transport(winrm_host), many)) == [0] * 5
    actions = [r.action for r in winrm_host.requests]
    assert actions.count("Create") == 1 and actions.count("Command") == 5 and actions.count("Delete") == 1
    # three requests a command: Command, Receive, and no Signal for a command that ended by itself
    assert actions.count("Signal") == 0 and actions.count("Receive") == 5


def test_commands_that_ended_are_released_by_replacing_the_shell(winrm_host: WinRMHost) -> None:
    """No Signal per finished command: after UNSIGNALLED_PER_SHELL of them a new shell takes over and the old
    one is deleted (which releases its commands on Windows), so they never pile up against WinRM's quotas."""
    from aibx.engine.transports.winrm import UNSIGNALLED_PER_SHELL

    winrm_host.on("echo", Reply("x\r\n"))
    total = UNSIGNALLED_PER_SHELL * 2 + 1

    async def many(t: WinRMTransport) -> list[int]:
        return [await t.run(f"echo {i}") for i in range(total)]

    assert run(connected(transport(winrm_host), many)) == [0] * total
    records = winrm_host.requests
    actions = [r.action for r in records]
    assert actions.count("Signal") == 0 and actions.count("Command") == total
    assert actions.count("Create") == 3 and actions.count("Delete") == 3  # two replacements, then the close
    per_shell: dict[str | None, int] = {}
    for r in records:
        if r.action == "Command":
            per_shell[r.shell_id] = per_shell.get(r.shell_id, 0) + 1
    assert sorted(per_shell.values()) == [1, UNSIGNALLED_PER_SHELL, UNSIGNALLED_PER_SHELL]


def test_output_streams_while_the_command_runs(winrm_host: WinRMHost) -> None:
    first_seen = threading.Event()

    def slow(cmd: RemoteCommand) -> int:
        cmd.stdout("first line\r\n")
        # the command only goes on once the client has shown the first line: streaming, not buffering
        if not first_seen.wait(10):
            return 9
        cmd.stderr("second\r\n")
        return 0

    winrm_host.on("slow", slow)
    order: list[str] = []

    def on_output(stream: str, data: bytes) -> None:
        order.append(stream)
        if b"first line" in data:
            first_seen.set()

    assert run(connected(transport(winrm_host), lambda t: t.run("slow.exe", on_output=on_output))) == 0
    assert order == ["stdout", "stderr"]


def test_operation_timeout_faults_are_retried(winrm_host: WinRMHost) -> None:
    release = threading.Event()

    def waits(cmd: RemoteCommand) -> Reply:
        release.wait(10)
        return Reply("done\r\n")

    faults = []
    winrm_host.on("wait", waits)

    def watch(record) -> None:
        if record.action == "Receive":
            faults.append(record)
            if len(faults) == 3:  # two Receives timed out on the server (1 s each), the third gets the result
                release.set()

    winrm_host.on_request = watch
    out = Collector()
    code = run(
        connected(transport(winrm_host, receive_timeout=1, read_timeout=10), lambda t: t.run("wait", on_output=out))
    )
    assert (code, out.text("stdout")) == (0, "done\r\n")
    assert len(faults) >= 3


@pytest.mark.parametrize("kind", ["bytes", "path"])
def test_stdin_streams_in_envelope_sized_chunks(winrm_host: WinRMHost, tmp_path: Path, kind: str) -> None:
    data = os.urandom(300_000)

    def digest(cmd: RemoteCommand) -> Reply:
        received = bytearray()
        while chunk := cmd.read_stdin():
            received += chunk
        return Reply(hashlib.sha256(received).hexdigest())

    winrm_host.on("sha256sum", digest)
    source: bytes | Path = data
    if kind == "path":
        source = tmp_path / "stdin.bin"
        source.write_bytes(data)
    out = Collector()
    code = run(connected(transport(winrm_host), lambda t: t.run("sha256sum", stdin=source, on_output=out)))
    assert (code, out.text("stdout")) == (0, hashlib.sha256(data).hexdigest())
    sends = [r for r in winrm_host.requests if r.action == "Send"]
    assert len(sends) == 3  # 300 000 bytes at ~110 KiB per Send
    assert all(r.size <= DEFAULT_MAX_ENVELOPE_SIZE for r in sends)
    assert winrm_host.commands[0].options["WINRS_CONSOLEMODE_STDIN"] == "FALSE"


def test_timeout_stops_the_remote_command(winrm_host: WinRMHost) -> None:
    winrm_host.on("hang", lambda cmd: 0 if cmd.wait_terminated(30) else 7)

    with pytest.raises(TimeoutError):
        run(connected(transport(winrm_host, receive_timeout=1, read_timeout=10), lambda t: t.run("hang", timeout=1.5)))
    cmd = winrm_host.commands[0]
    assert cmd.terminated.is_set() and cmd.signals == ["terminate"]


def test_cancellation_stops_the_remote_command(winrm_host: WinRMHost) -> None:
    started = threading.Event()

    def hang(cmd: RemoteCommand) -> int:
        started.set()
        return 0 if cmd.wait_terminated(30) else 7

    winrm_host.on("hang", hang)

    async def cancel_it(t: WinRMTransport) -> None:
        task = asyncio.ensure_future(t.run("hang"))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(connected(transport(winrm_host, receive_timeout=1, read_timeout=10), cancel_it))
    assert winrm_host.commands[0].signals == ["terminate"]


# ----------------------------------------------------------------------------------------------- connect errors
def test_wrong_password_is_an_auth_error_naming_the_method(winrm_host: WinRMHost, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Wr0ng-Secret-Value"
    t = transport(winrm_host, environ={"AIBX_TEST_WINRM_PASSWORD": secret})
    with pytest.raises(ConnectError) as e:
        run(t.connect())
    err = e.value
    assert err.kind == "auth"
    assert "ntlm" in err.detail and "Negotiate" in err.detail and "Basic" in err.detail
    assert "AIBX_TEST_WINRM_PASSWORD" in err.hint
    assert secret not in str(err) and secret not in caplog.text
    assert not [c for c in winrm_host.commands]  # nothing ran


def test_wrong_user_with_basic(winrms_host: WinRMHost, winrm_tls: TlsMaterial) -> None:
    t = transport(winrms_host, user="nobody", auth="basic", ca_file=str(winrm_tls.ca_cert))
    with pytest.raises(ConnectError) as e:
        run(t.connect())
    assert e.value.kind == "auth" and "basic" in e.value.detail


def test_method_the_server_does_not_offer(make_winrm_host, winrm_tls: TlsMaterial) -> None:
    host = make_winrm_host(tls=winrm_tls, auth=("ntlm",))
    t = transport(host, auth="basic", ca_file=str(winrm_tls.ca_cert))
    with pytest.raises(ConnectError) as e:
        run(t.connect())
    assert e.value.kind == "auth"
    assert "offers: Negotiate" in e.value.detail and "does not offer" in e.value.hint


def test_untrusted_certificate_is_a_tls_error(winrms_host: WinRMHost, winrm_tls: TlsMaterial) -> None:
    with pytest.raises(ConnectError) as e:
        run(transport(winrms_host).connect())
    assert e.value.kind == "tls"
    assert "certificate" in e.value.detail and "--winrm-ca" in e.value.hint
    # skipping verification is possible, but only when asked
    winrms_host.on("hostname", Reply("WIN-AIBX\r\n"))
    assert run(connected(transport(winrms_host, insecure_skip_tls_verify=True), lambda t: t.run("hostname"))) == 0
    assert run(connected(transport(winrms_host, ca_file=str(winrm_tls.ca_cert)), lambda t: t.run("hostname"))) == 0


def test_https_to_an_http_port_and_back(winrm_host: WinRMHost, winrms_host: WinRMHost) -> None:
    wrong = WinRMTransport.from_url(
        f"winrms://aibx@127.0.0.1:{winrm_host.port}", WinRMOptions(password_env="P"), environ={"P": PASSWORD}
    )
    with pytest.raises(ConnectError) as e:
        run(wrong.connect())
    assert e.value.kind == "tls" and "winrm://" in e.value.hint
    wrong = WinRMTransport.from_url(
        f"winrm://aibx@127.0.0.1:{winrms_host.port}", WinRMOptions(password_env="P"), environ={"P": PASSWORD}
    )
    with pytest.raises(ConnectError) as e:
        run(wrong.connect())
    assert e.value.kind == "protocol" and "winrms://" in e.value.hint


def test_refused() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = WinRMTransport.from_url(f"winrm://aibx@127.0.0.1:{port}", WinRMOptions(password_env="P"), environ={"P": "x"})
    with pytest.raises(ConnectError) as e:
        run(t.connect())
    assert e.value.kind == "refused" and str(port) in e.value.hint


def test_silent_listener_times_out() -> None:
    with socket.socket() as s:  # accepts TCP (backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t = WinRMTransport.from_url(
            f"winrm://aibx@127.0.0.1:{s.getsockname()[1]}",
            WinRMOptions(password_env="P", connect_timeout=1, receive_timeout=1, read_timeout=1.5),
            environ={"P": "x"},
        )
        with pytest.raises(ConnectError) as e:
            run(t.connect())
    assert e.value.kind == "timeout"


def test_dns_failure_is_classified() -> None:
    """Without a network query (tests stay on loopback): the exception chain requests raises for a bad name."""
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    from aibx.engine.transports.winrm import _connection_failure

    resolution = NameResolutionError("vm1.invalid", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    error = requests.exceptions.ConnectionError(MaxRetryError(None, "/wsman", resolution))  # type: ignore[arg-type]
    assert _connection_failure(error) == ("dns", "the host name does not resolve")


# ----------------------------------------------------------------------------------------------- restarts
def test_restart_drops_the_connection_then_reconnect_sees_a_new_boot(winrm_host: WinRMHost) -> None:
    def reboots(cmd: RemoteCommand) -> int:
        cmd.stdout("installing…\r\n")
        threading.Timer(0.2, cmd.host.restart, kwargs={"down_seconds": 0.5}).start()
        cmd.wait_terminated(30)
        return 0

    winrm_host.on("installer", reboots)

    async def scenario(t: WinRMTransport) -> tuple[str, str]:
        before = await t.boot_identity()
        with pytest.raises(ConnectionLost):
            await t.run("installer.exe")
        with pytest.raises(ConnectionLost):  # no silent reconnect inside the transport: the runner decides
            await t.run("hostname")
        for _ in range(100):  # the runner's reconnect loop, in short
            try:
                await t.connect()
                break
            except ConnectError as e:
                assert e.kind == "refused"
                await asyncio.sleep(0.05)
        return before, await t.boot_identity()

    before, after = run(connected(transport(winrm_host, receive_timeout=1, read_timeout=5), scenario))
    assert before != after


def test_shutdown_command_restarts_the_host(winrm_host: WinRMHost) -> None:
    async def scenario(t: WinRMTransport) -> tuple[int, int]:
        code = await t.run('shutdown /r /f /t 0 /c "packer restart"')
        again = await t.run("shutdown /r /t 60")  # a second restart while one is pending
        with pytest.raises(ConnectionLost):
            for _ in range(200):
                await t.run("hostname")
                await asyncio.sleep(0.02)
        return code, again

    assert run(connected(transport(winrm_host), scenario)) == (0, 1190)
    winrm_host.wait_listening()
    assert winrm_host.boot_count == 2


def test_a_vanished_shell_is_replaced_before_the_command_runs(winrm_host: WinRMHost) -> None:
    winrm_host.on("hostname", Reply("WIN-AIBX\r\n"))

    async def scenario(t: WinRMTransport) -> int:
        await t.run("hostname")
        winrm_host.shells.clear()  # WinRM's idle timeout deleted the shell
        return await t.run("hostname")

    assert run(connected(transport(winrm_host), scenario)) == 0
    assert [r.action for r in winrm_host.requests].count("Create") == 2
    assert len(winrm_host.commands) == 2  # the command ran once, not twice


# ----------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("size", [0, 1, 84_000, 1_000_000])
def test_upload_is_checked_by_hash(winrm_host: WinRMHost, size: int) -> None:
    data = os.urandom(size)
    path = r"C:\Windows\Temp\file.bin"
    run(connected(transport(winrm_host), lambda t: t.put(data, path)))
    assert winrm_host.file(path) == data
    upload = winrm_host.commands[-1]
    assert upload.script is not None and f"$sha256 = '{hashlib.sha256(data).hexdigest()}'" in upload.script
    sends = [r for r in winrm_host.requests if r.action == "Send"]
    assert len(sends) == max(1, -(-size // upload_chunk_size(DEFAULT_MAX_ENVELOPE_SIZE)))
    assert all(r.size <= DEFAULT_MAX_ENVELOPE_SIZE for r in sends)


def test_upload_from_a_file_streams(winrm_host: WinRMHost, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2_500_000))
    run(connected(transport(winrm_host), lambda t: t.put(source, r"C:\Users\aibx\big.bin")))
    assert winrm_host.file(r"C:\Users\aibx\big.bin") == source.read_bytes()


def test_upload_progress_is_told_chunk_by_chunk(winrm_host: WinRMHost, tmp_path: Path) -> None:
    """``on_progress`` hears the bytes handed to the Send requests, on the event loop's thread, up to the whole."""
    import threading

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2_500_000))
    heard: list[tuple[int, int, bool]] = []

    def on_progress(done: int, total: int) -> None:
        heard.append((done, total, threading.current_thread() is threading.main_thread()))

    run(connected(transport(winrm_host), lambda t: t.put(source, r"C:\Users\aibx\big.bin", on_progress=on_progress)))
    assert winrm_host.file(r"C:\Users\aibx\big.bin") == source.read_bytes()
    assert len(heard) >= 2 and heard[-1][:2] == (2_500_000, 2_500_000)
    assert [d for d, _, _ in heard] == sorted(d for d, _, _ in heard)
    assert all(main for _, _, main in heard)


def test_upload_chunks_dwarf_packers() -> None:
    assert upload_chunk_size(DEFAULT_MAX_ENVELOPE_SIZE) > 13 * PACKER_CHUNK


def test_upload_to_a_missing_directory(winrm_host: WinRMHost) -> None:
    with pytest.raises(RemoteFileError) as e:
        run(connected(transport(winrm_host), lambda t: t.put(b"data", r"C:\missing\dir\file.txt")))
    assert e.value.path == r"C:\missing\dir\file.txt"
    assert "parent directory does not exist" in e.value.reason
    assert not winrm_host.files


def test_corrupted_upload_is_refused(winrm_host: WinRMHost) -> None:
    from tests.support.winrm_server import emulate_upload

    def corrupting(cmd: RemoteCommand) -> int:
        cmd.script = (cmd.script or "").replace("$sha256 = '", "$sha256 = '0")  # the VM computes another hash
        return emulate_upload(cmd)

    winrm_host.on("aibx: receive a file", corrupting)
    with pytest.raises(RemoteFileError) as e:
        run(connected(transport(winrm_host), lambda t: t.put(b"payload", r"C:\Windows\Temp\p.txt")))
    assert "sha256 mismatch" in e.value.reason
    assert winrm_host.file(r"C:\Windows\Temp\p.txt") is None


def test_quotes_in_remote_paths(winrm_host: WinRMHost) -> None:
    winrm_host.add_directory(r"C:\it's here")
    path = "C:\\it's here\\\u2019quoted\u2019.txt"
    run(connected(transport(winrm_host), lambda t: t.put(b"q", path)))
    assert winrm_host.file(path) == b"q"
    assert "$path = 'C:\\it''s here\\\u2019\u2019quoted\u2019\u2019.txt'" in winrm_host.commands[-1].script


def test_download(winrm_host: WinRMHost) -> None:
    data = os.urandom(200_000)
    winrm_host.files[r"c:\windows\temp\log.txt"] = data
    assert run(connected(transport(winrm_host), lambda t: t.get(r"C:\Windows\Temp\log.txt"))) == data
    with pytest.raises(RemoteFileError) as e:
        run(connected(transport(winrm_host), lambda t: t.get(r"C:\Windows\Temp\none.txt")))
    assert "not found" in e.value.reason


def test_upload_command_fits_cmd_line_limit(winrm_host: WinRMHost) -> None:
    long_path = "C:\\Windows\\Temp\\" + "d" * 200 + ".txt"
    run(connected(transport(winrm_host), lambda t: t.put(b"x", long_path)))
    assert len(winrm_host.commands[-1].command_line) < 8191


# ----------------------------------------------------------------------------------------------- secrets
def test_no_secret_in_logs_or_errors(winrm_host: WinRMHost, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = PASSWORD
    winrm_host.on("fail", Reply(stderr="boom\r\n", exit_code=2))
    errors: list[str] = []

    async def scenario(t: WinRMTransport) -> None:
        assert await t.run("fail") == 2
        await t.put(b"x", r"C:\Windows\Temp\ok.txt")
        for coro in (t.put(b"x", r"C:\nope\x.txt"), t.get(r"C:\nope.txt")):
            try:
                await coro
            except RemoteFileError as e:
                errors.append(str(e))

    run(connected(transport(winrm_host), scenario))
    assert len(errors) == 2
    assert all(secret not in text for text in [caplog.text, *errors])


def test_clixml_errors_become_text() -> None:
    data = (
        b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        b'<S S="Error">Access is denied_x000D__x000A_</S><S S="Error">second line_x000D__x000A_</S></Objs>'
    )
    assert clixml_to_text(data) == "Access is denied\nsecond line"
    assert clixml_to_text(b"plain\r\n") == "plain\r\n"


def test_run_after_close_is_connection_lost(winrm_host: WinRMHost) -> None:
    async def scenario() -> None:
        t = transport(winrm_host)
        await t.connect()
        await t.close()
        await t.close()
        with pytest.raises(ConnectionLost):
            await t.run("hostname")

    run(scenario())


@pytest.mark.parametrize(("auth", "extra"), [("kerberos", "HAVE_KERBEROS"), ("credssp", "HAVE_CREDSSP")])
def test_optional_auth_methods_say_what_to_install(auth: str, extra: str) -> None:
    import winrm.transport

    make = lambda: WinRMTransport.from_url(  # noqa: E731
        "winrm://admin@vm1", WinRMOptions(auth=auth, password_env="P"), environ={"P": "x"}
    )
    if getattr(winrm.transport, extra):
        assert make().auth == auth
    else:
        with pytest.raises(WinRMConfigError) as e:
            make()
        assert f"pywinrm[{auth}]" in str(e.value)
