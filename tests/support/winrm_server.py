"""A WinRM server for tests: real WS-Management (the Windows Remote Shell resource) over HTTP and HTTPS.

pywinrm talks to it over real sockets, so the transport under test runs its real code: authentication (Basic,
NTLM with WinRM message encryption through pyspnego's acceptor, client certificates), TLS, the Create / Command /
Send / Receive / Signal / Delete exchange, OperationTimeout faults and dropped connections.

What runs "on Windows" is a Python *handler* per command. A handler gets the ``RemoteCommand`` (its command
line, the decoded script of ``powershell -EncodedCommand``, stdin as it streams in) and writes stdout / stderr and
returns the exit code. Tests add handlers with ``host.on(matcher, handler)``; the first match wins. Without a
match, built-in emulations answer the commands aibx itself sends (boot identity, ``shutdown``, the upload and
download scripts, which write to an in-memory file system) and anything else fails loudly.

``host.restart()`` simulates a reboot: the listener closes, open connections are reset, running commands die,
shells are gone, and the host comes back on the same port with a new boot identity.

Nothing here is a Windows emulator: PowerShell semantics are out of reach (no PowerShell on this machine), so
tests check the exact PowerShell text separately (golden files).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import ipaddress
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_NS = NS["rsp"] + "/"
CMD_RESOURCE = SHELL_NS + "cmd"
SIGNAL_TERMINATE = SHELL_NS + "signal/terminate"
CERT_AUTH_HEADER = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
MIME_BOUNDARY = b"--Encrypted Boundary"

# WSManFault codes as Windows sends them
FAULT_OPERATION_TIMEOUT = 2150858793  # 0x80338029
FAULT_SHELL_NOT_FOUND = 2150858843  # 0x8033805B
FAULT_BAD_RESOURCE = 2150858778
FAULT_UNSUPPORTED_ACTION = 2150858817
FAULT_MAX_ENVELOPE_SIZE = 2150859025  # 0x80338111, "request size exceeded the configured MaxEnvelopeSize quota"
FAULT_PIPE_ENDED = 2147942509  # 0x8007006D, HRESULT of ERROR_BROKEN_PIPE: stdin sent to a finished process

DEFAULT_DIRECTORIES = ("C:\\", "C:\\Windows", "C:\\Windows\\Temp", "C:\\Users", "C:\\Users\\aibx")


# ----------------------------------------------------------------------------------------------- commands
@dataclass
class Reply:
    """A scripted result: what a handler may return instead of writing the streams itself."""

    stdout: bytes | str = b""
    stderr: bytes | str = b""
    exit_code: int = 0


class RemoteCommand:
    """One process started by a Command request, as a handler sees it."""

    def __init__(self, host: WinRMHost, shell_id: str, command_line: str, options: dict[str, str]) -> None:
        self.host = host
        self.id = str(uuid.uuid4()).upper()
        self.shell_id = shell_id
        self.command_line = command_line
        self.options = options
        self.script = decode_powershell(command_line)  # the PowerShell text of -EncodedCommand, else None
        self.boot = host.boot_count
        self.exit_code: int | None = None
        self.signals: list[str] = []
        self.terminated = threading.Event()  # a terminate signal arrived, the shell was deleted, or the host rebooted
        self.done = threading.Event()
        self._stdin = bytearray()
        self._stdin_pos = 0
        self._stdin_closed = False
        self._out: list[tuple[str, bytes]] = []
        self._stdout_all = bytearray()
        self._stderr_all = bytearray()
        self._cond = threading.Condition()

    # -- what tests read afterwards
    @property
    def stdin(self) -> bytes:
        with self._cond:
            return bytes(self._stdin)

    @property
    def stdout_sent(self) -> bytes:
        return bytes(self._stdout_all)

    @property
    def stderr_sent(self) -> bytes:
        return bytes(self._stderr_all)

    @property
    def text(self) -> str:
        """The decoded script if there is one, else the command line."""
        return self.script if self.script is not None else self.command_line

    # -- for handlers
    def write(self, stream: str, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        if not data:
            return
        with self._cond:
            self._out.append((stream, data))
            (self._stdout_all if stream == "stdout" else self._stderr_all).extend(data)
            self._cond.notify_all()

    def stdout(self, data: bytes | str) -> None:
        self.write("stdout", data)

    def stderr(self, data: bytes | str) -> None:
        self.write("stderr", data)

    def read_stdin(self, timeout: float = 30.0) -> bytes | None:
        """The next stdin bytes; b"" at end of input; None when the command was terminated."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._stdin_pos >= len(self._stdin) and not self._stdin_closed:
                if self.terminated.is_set():
                    return None
                if not self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic()))) and (
                    time.monotonic() >= deadline
                ):
                    raise TimeoutError("no stdin within the handler's timeout")
            data = bytes(self._stdin[self._stdin_pos :])
            self._stdin_pos = len(self._stdin)
            return data

    def stdin_lines(self) -> Iterator[bytes]:
        """Lines of stdin as they arrive (what PowerShell's ``$input`` enumerates), without line endings."""
        pending = b""
        while True:
            chunk = self.read_stdin()
            if chunk is None:
                return
            if not chunk:
                if pending:
                    yield pending.rstrip(b"\r")
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r")

    def wait_terminated(self, timeout: float) -> bool:
        return self.terminated.wait(timeout)

    # -- for the protocol side
    def feed_stdin(self, data: bytes, end: bool) -> None:
        with self._cond:
            self._stdin.extend(data)
            self._stdin_closed = self._stdin_closed or end
            self._cond.notify_all()

    def finish(self, exit_code: int) -> None:
        with self._cond:
            if self.exit_code is None:
                self.exit_code = exit_code
            self.done.set()
            self._cond.notify_all()

    def terminate(self, reason: str) -> None:
        with self._cond:
            self.signals.append(reason)
            self.terminated.set()
            self._cond.notify_all()
        if self.exit_code is None:
            self.finish(-1 if reason == "reboot" else 0xC000013A & 0xFFFFFFFF)

    def take_output(self, timeout: float) -> tuple[list[tuple[str, bytes]], bool] | None:
        """Pending output and whether the command is done; None when nothing happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._out and not self.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            out, self._out = self._out, []
            return out, self.done.is_set()


Handler = Callable[[RemoteCommand], "int | Reply | tuple[bytes, bytes, int] | None"]
Matcher = Callable[[RemoteCommand], bool]

_ENCODED = re.compile(r"(?i)^\s*(?:powershell|pwsh)(?:\.exe)?\s+(?:.*\s)?-(?:e|ec|enc|encodedcommand)\s+(\S+)")


def decode_powershell(command_line: str) -> str | None:
    """The script of ``powershell ... -EncodedCommand B64`` (base64 of UTF-16LE), else None."""
    m = _ENCODED.match(command_line)
    if not m:
        return None
    try:
        return base64.b64decode(m.group(1)).decode("utf-16-le")
    except (ValueError, UnicodeDecodeError):
        return None


def matcher_for(pattern: str | re.Pattern[str] | Matcher) -> Matcher:
    """A plain string matches a substring of the decoded script or command line; a regex searches it."""
    if callable(pattern):
        return pattern
    if isinstance(pattern, re.Pattern):
        return lambda cmd: pattern.search(cmd.text) is not None
    return lambda cmd: pattern in cmd.text


# ----------------------------------------------------------------------------------------------- TLS material
@dataclass(frozen=True)
class TlsMaterial:
    """A private CA, a server certificate for localhost/127.0.0.1/::1 and a client certificate, as PEM files."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_user: str


def make_tls_material(directory: Path, client_user: str = "aibx") -> TlsMaterial:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aibx test CA")])
    ca = (
        builder("aibx test CA", ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1"))]
    server = (
        builder("localhost", ca_name, server_key.public_key())
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        builder(client_user, ca_name, client_key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": key_pem(server_key),
        "client.pem": client.public_bytes(serialization.Encoding.PEM),
        "client.key": key_pem(client_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        os.chmod(directory / name, 0o600)
    return TlsMaterial(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
        client_user,
    )


# ----------------------------------------------------------------------------------------------- NTLM users
class _NtlmUserFile:
    """pyspnego's NTLM acceptor reads users from the file named by NTLM_USER_FILE (process-wide), so every host
    of this process shares one file, and a user name has one password in the whole test session."""

    lock = threading.Lock()
    path: Path | None = None
    users: set[tuple[str, str]] = set()  # noqa: RUF012 - process-wide on purpose

    @classmethod
    def add(cls, user: str, password: str) -> None:
        if ":" in user or ":" in password or "\n" in password:
            raise ValueError("NTLM test users cannot contain ':' or newlines (NTLM_USER_FILE format)")
        with cls.lock:
            other = next((p for u, p in cls.users if u.lower() == user.lower() and p != password), None)
            if other is not None:  # pyspnego would check every later login of this user against the first one
                raise ValueError(
                    f"NTLM test user {user!r} already has another password in this process: give the test its own "
                    "user name"
                )
            if cls.path is None:
                fd, name = tempfile.mkstemp(prefix="aibx-ntlm-users-")
                os.close(fd)
                cls.path = Path(name)
                atexit.register(cls.path.unlink, missing_ok=True)
            cls.users.add((user, password))
            cls.path.write_text("".join(f":{u}:{p}\n" for u, p in sorted(cls.users)))
            os.environ["NTLM_USER_FILE"] = str(cls.path)


# ----------------------------------------------------------------------------------------------- the host
@dataclass
class RequestRecord:
    action: str  # Create, Command, Send, Receive, Signal, Delete, (auth) ...
    shell_id: str | None
    auth: str  # basic, ntlm, certificate, none
    encrypted: bool
    size: int


@dataclass
class Shell:
    id: str
    options: dict[str, str]
    commands: dict[str, RemoteCommand] = field(default_factory=dict)


class WinRMHost:
    """The state of one "Windows machine": users, shells, commands, files, boot identity, and its listener."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        auth: tuple[str, ...] = ("basic", "ntlm", "certificate"),
        tls: TlsMaterial | None = None,
        allow_unencrypted: bool = False,
        max_envelope_size: int = 153600,
        host: str = "127.0.0.1",
        port: int = 0,
        computer_name: str = "WIN-AIBX",
    ) -> None:
        self.users = dict(users or {"aibx": "Passw0rd!"})
        self.auth = auth
        self.tls = tls
        self.allow_unencrypted = allow_unencrypted
        self.max_envelope_size = max_envelope_size
        self.bind_host = host
        self.port = port
        self.computer_name = computer_name
        self.rules: list[tuple[Matcher, Handler]] = []
        self.commands: list[RemoteCommand] = []
        self.requests: list[RequestRecord] = []
        self.shells: dict[str, Shell] = {}
        self.files: dict[str, bytes] = {}
        # paths that are symbolic links or junctions (reparse points), as another user of the VM might plant them
        self.reparse_points: set[str] = set()
        # free space on the "disk" in bytes (None: plenty): an upload that does not fit fails as .NET's write does
        self.disk_free: int | None = None
        self.directories: set[str] = {d.lower() for d in DEFAULT_DIRECTORIES}
        self.boot_count = 1
        self.boot_time = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.restart_delay = 0.2  # seconds between "shutdown /r" and the host going down
        self.restart_down_seconds = 0.5
        self.lock = threading.RLock()
        self._listener: _Listener | None = None
        self._restart_timer: threading.Timer | None = None
        self._connections: set[socket.socket] = set()
        self.on_request: Callable[[RequestRecord], None] | None = None
        if "ntlm" in auth:
            for user, password in self.users.items():
                _NtlmUserFile.add(user, password)

    # -- lifecycle
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"{self.scheme}://{host}:{self.port}/wsman"

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def start(self) -> WinRMHost:
        with self.lock:
            if self._listener is not None:
                return self
            listener = _Listener(self)
            self.port = listener.server_address[1]
            self._listener = listener
            threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Power off: the listener closes, open connections are reset, running commands die."""
        with self.lock:
            if self._restart_timer:
                self._restart_timer.cancel()
                self._restart_timer = None
            listener, self._listener = self._listener, None
            conns = list(self._connections)
            shells, self.shells = self.shells, {}
        if listener:
            listener.shutdown()
            listener.server_close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for shell in shells.values():
            for cmd in shell.commands.values():
                cmd.terminate("reboot")

    def restart(self, down_seconds: float | None = None, *, wait: bool = False) -> None:
        """Reboot: down now, back after ``down_seconds`` on the same port with a new boot identity."""
        down = self.restart_down_seconds if down_seconds is None else down_seconds
        self.stop()
        with self.lock:
            self.boot_count += 1
            self.boot_time = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(
                seconds=self.boot_count
            )

        def back() -> None:
            with self.lock:
                self._restart_timer = None
            self.start()

        if wait:
            time.sleep(down)
            back()
        else:
            with self.lock:
                self._restart_timer = threading.Timer(down, back)
                self._restart_timer.daemon = True
                self._restart_timer.start()

    def schedule_restart(self, delay: float | None = None) -> bool:
        """What ``shutdown /r`` does: go down shortly after the command returned. False if one is pending."""
        with self.lock:
            if self._restart_timer is not None:
                return False
            self._restart_timer = threading.Timer(self.restart_delay if delay is None else delay, self._do_restart)
            self._restart_timer.daemon = True
            self._restart_timer.start()
            return True

    def cancel_restart(self) -> bool:
        with self.lock:
            if self._restart_timer is None or not self.listening:
                return False
            self._restart_timer.cancel()
            self._restart_timer = None
            return True

    def _do_restart(self) -> None:
        with self.lock:
            self._restart_timer = None
        self.restart()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.listening:
            if time.monotonic() > deadline:
                raise TimeoutError("the test host did not come back")
            time.sleep(0.01)

    # -- scripting
    def on(self, pattern: str | re.Pattern[str] | Matcher, handler: Handler | Reply | int) -> None:
        """Answer commands matching ``pattern`` with ``handler`` (a function, a fixed Reply or an exit code)."""
        if isinstance(handler, Reply):
            reply = handler
            self.rules.append((matcher_for(pattern), lambda cmd: reply))
        elif isinstance(handler, int):
            code = handler
            self.rules.append((matcher_for(pattern), lambda cmd: code))
        else:
            self.rules.append((matcher_for(pattern), handler))

    def add_directory(self, path: str) -> None:
        self.directories.add(_norm(path))

    def file(self, path: str) -> bytes | None:
        return self.files.get(_norm(path))

    # -- executing a command
    def run(self, cmd: RemoteCommand) -> None:
        with self.lock:
            self.commands.append(cmd)
        handler = next((h for m, h in self.rules if m(cmd)), None) or builtin_handler(cmd)
        try:
            result = handler(cmd)
        except Exception as e:  # a handler bug is a command failure the test will see
            cmd.stderr(f"winrm test server: handler error: {e!r}\r\n")
            result = 1
        if isinstance(result, Reply):
            cmd.stdout(result.stdout)
            cmd.stderr(result.stderr)
            code = result.exit_code
        elif isinstance(result, tuple):
            cmd.stdout(result[0])
            cmd.stderr(result[1])
            code = result[2]
        else:
            code = 0 if result is None else int(result)
        if cmd.boot == self.boot_count and not cmd.terminated.is_set():
            cmd.finish(code)

    def check_password(self, user: str, password: str) -> bool:
        known = self.users.get(user) or self.users.get(user.split("\\")[-1])
        return known is not None and known == password


def _norm(path: str) -> str:
    path = path.replace("/", "\\")
    if len(path) > 3:
        path = path.rstrip("\\")
    return path.lower()


def _parent(path: str) -> str:
    norm = _norm(path)
    parent = norm.rsplit("\\", 1)[0]
    return parent + "\\" if len(parent) == 2 and parent.endswith(":") else parent


# ----------------------------------------------------------------------------------------------- built-in handlers
_BOOT_MARKER = "LastBootUpTime"
_UPLOAD_MARKER = "# aibx: receive a file on stdin"
_DOWNLOAD_MARKER = "# aibx: send a file on stdout"
_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell treats all of these as single quotes
_PS_STRING = f"[{_QUOTES}]((?:[^{_QUOTES}]|[{_QUOTES}]{{2}})*)[{_QUOTES}]"


def _ps_param(script: str, name: str) -> str:
    m = re.search(rf"\${name}\s*=\s*{_PS_STRING}", script)
    if not m:
        raise ValueError(f"no ${name} = '...' in the script")
    return re.sub(f"([{_QUOTES}])\\1", r"\1", m.group(1))


def builtin_handler(cmd: RemoteCommand) -> Handler:
    text = cmd.text
    line = cmd.command_line.strip().lower()
    if cmd.script is not None and _UPLOAD_MARKER in cmd.script:
        return emulate_upload
    if cmd.script is not None and _DOWNLOAD_MARKER in cmd.script:
        return emulate_download
    if cmd.script is not None and _BOOT_MARKER in cmd.script:
        return lambda c: Reply(c.host.boot_time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z") + "\r\n")
    if "restarted." in text and "GetHostName" in text:  # Packer's default restart check
        return lambda c: Reply(f"{c.host.computer_name} restarted.\r\n")
    if re.match(r"^shutdown(\.exe)?\s", line):
        return emulate_shutdown
    if line in ("hostname", "hostname.exe"):
        return lambda c: Reply(c.host.computer_name + "\r\n")
    return lambda c: Reply(stderr=f"winrm test server: no handler for {c.text!r}\r\n", exit_code=1)


def emulate_shutdown(cmd: RemoteCommand) -> int:
    args = cmd.command_line.lower().split()
    if "/a" in args or "-a" in args:
        return 0 if cmd.host.cancel_restart() else 1116  # ERROR_NO_SHUTDOWN_IN_PROGRESS
    if "/r" in args or "-r" in args:
        return 0 if cmd.host.schedule_restart() else 1190  # ERROR_SHUTDOWN_IS_SCHEDULED
    cmd.stderr("winrm test server: only shutdown /r and /a are emulated\r\n")
    return 1


def _in_the_way(host: WinRMHost, path: str, exclusive: bool) -> str | None:
    """Receive-AibxFile.ps1's Assert-Free: a reparse point is refused, and anything at all for $exclusive."""
    if _norm(path) in host.reparse_points:
        return f"{path} is a symbolic link or junction; aibx does not write through one"
    if exclusive and _norm(path) in host.files:
        return f"{path} already exists; aibx creates its temporary files only where nothing is"
    return None


def emulate_upload(cmd: RemoteCommand) -> int:
    """The aibx upload script: base64 lines on stdin, the file written, its sha256 checked against $sha256. What
    is at the destination is judged as the script judges it (``_in_the_way``), before and after the transfer."""
    script = cmd.script or ""
    path, want = _ps_param(script, "path"), _ps_param(script, "sha256")
    exclusive = "$exclusive" in script and _ps_param(script, "exclusive") == "yes"
    host = cmd.host
    if _parent(path) not in host.directories:
        # drain stdin as the real script's $input loop would not even start: it exits first
        cmd.stderr(f"AIBX-UPLOAD-ERROR parent directory does not exist: {_parent(path)}\r\n")
        return 3
    refused = _in_the_way(host, path, exclusive)
    if refused:
        cmd.stderr(f"AIBX-UPLOAD-ERROR {refused}\r\n")
        return 7
    data = bytearray()
    for line in cmd.stdin_lines():
        if line:
            data += base64.b64decode(line)
        if host.disk_free is not None and len(data) > host.disk_free:
            # Receive-AibxFile.ps1's Stop-Upload: the .part file deleted, the IOException's message, exit 5
            cmd.stderr("AIBX-UPLOAD-ERROR There is not enough space on the disk.\r\n")
            return 5
    if cmd.terminated.is_set():
        return 1
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        cmd.stderr(f"AIBX-UPLOAD-ERROR sha256 mismatch: got {got}, expected {want}\r\n")
        return 4
    refused = _in_the_way(host, path, exclusive)
    if refused:
        cmd.stderr(f"AIBX-UPLOAD-ERROR {refused}\r\n")
        return 7
    host.files[_norm(path)] = bytes(data)
    cmd.stdout(f"AIBX-UPLOAD-OK {got}\r\n")
    return 0


def emulate_download(cmd: RemoteCommand) -> int:
    path = _ps_param(cmd.script or "", "path")
    data = cmd.host.files.get(_norm(path))
    if data is None:
        cmd.stderr(f"AIBX-DOWNLOAD-ERROR file not found: {path}\r\n")
        return 2
    for i in range(0, len(data), 49152):
        cmd.stdout(base64.b64encode(data[i : i + 49152]) + b"\r\n")
    return 0


# ----------------------------------------------------------------------------------------------- HTTP
class _Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: WinRMHost) -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host.bind_host else socket.AF_INET
        self.address_family = family
        super().__init__((host.bind_host, host.port), _RequestHandler)
        self.tls_context: ssl.SSLContext | None = None
        if host.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(host.tls.server_cert, host.tls.server_key)
            if "certificate" in host.auth:
                ctx.load_verify_locations(host.tls.ca_cert)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            self.tls_context = ctx

    def get_request(self) -> tuple[socket.socket, object]:
        conn, addr = super().get_request()
        if self.tls_context is not None:
            conn = self.tls_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr


class _AuthFailed(Exception):
    pass


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates the connection
    disable_nagle_algorithm = True  # headers and body are two writes; avoid the delayed-ACK stall
    server: _Listener

    def setup(self) -> None:
        super().setup()
        self.host = self.server.host
        self.ntlm = None  # the NTLM acceptor context of this connection
        self.conn_user: str | None = None  # authenticated by NTLM (connection-based)
        self.tls_failed = False
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.settimeout(10)
                self.connection.do_handshake()
                self.connection.settimeout(None)
            except (OSError, ssl.SSLError):
                self.tls_failed = True
                self.close_connection = True
        with self.host.lock:
            self.host._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.host.lock:
            self.host._connections.discard(self.connection)

    def handle(self) -> None:
        if self.tls_failed:
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            super().handle()

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- HTTP plumbing
    def reply(self, code: int, body: bytes = b"", ctype: str = "application/soap+xml;charset=UTF-8", headers=()):
        self.send_response(code)
        for k, v in [("Server", "Microsoft-HTTPAPI/2.0"), ("Content-Type", ctype), *headers]:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def challenge(self, token: bytes | None = None) -> None:
        headers = []
        if "ntlm" in self.host.auth:
            value = f"Negotiate {base64.b64encode(token).decode()}" if token else "Negotiate"
            headers.append(("WWW-Authenticate", value))
        if "basic" in self.host.auth and not token:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self.reply(401, b"", ctype="text/plain", headers=headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            user, scheme = self.authenticate(body)
        except _AuthFailed:
            return
        if user is None:  # the NTLM handshake goes on
            return
        ctype = self.headers.get("Content-Type", "")
        encrypted = "multipart/encrypted" in ctype
        if encrypted:
            if self.ntlm is None:
                return self.challenge()
            body = self.decrypt(body)
        elif body and self.host.scheme == "http" and not self.host.allow_unencrypted:
            return self.reply(401, b"", ctype="text/plain")  # Windows: AllowUnencrypted=false
        if not body:  # pywinrm's empty POST that sets up NTLM message encryption
            return self.reply(200, b"", ctype="application/soap+xml;charset=UTF-8")
        soap = self.process(body, user, scheme, encrypted)
        code = 500 if b"<s:Fault>" in soap else 200
        if encrypted:
            self.send_encrypted(code, soap)
        else:
            self.reply(code, soap)

    # -- authentication
    def authenticate(self, body: bytes) -> tuple[str | None, str]:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme_l = scheme.lower()
        if header == CERT_AUTH_HEADER and "certificate" in self.host.auth:
            user = self.certificate_user()
            if user is None:
                self.reply(401, b"", ctype="text/plain")
                raise _AuthFailed
            return user, "certificate"
        if scheme_l == "basic" and "basic" in self.host.auth:
            try:
                user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if not self.host.check_password(user, password):
                self.challenge()
                raise _AuthFailed
            return user, "basic"
        if scheme_l in ("negotiate", "ntlm") and "ntlm" in self.host.auth:
            return self.ntlm_step(base64.b64decode(value)), "ntlm"
        if not header and self.conn_user is not None:
            return self.conn_user, "ntlm"
        self.challenge()
        raise _AuthFailed

    def ntlm_step(self, token: bytes) -> str | None:
        import spnego

        if token[:8] == b"NTLMSSP\x00" and token[8:12] == b"\x01\x00\x00\x00":  # Negotiate message: start over
            self.ntlm = spnego.server(
                protocol="ntlm",
                options=spnego.NegotiateOptions.use_ntlm,
                channel_bindings=self.channel_bindings(),
            )
            self.conn_user = None
        if self.ntlm is None:
            self.challenge()
            raise _AuthFailed
        try:
            out = self.ntlm.step(token)
        except Exception:  # wrong password, bad channel binding, garbage
            self.ntlm = None
            self.challenge()
            raise _AuthFailed from None
        if not self.ntlm.complete:
            self.challenge(out)
            return None
        self.conn_user = (self.ntlm.client_principal or "").split("\\")[-1]
        return self.conn_user

    def channel_bindings(self):
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        import spnego.channel_bindings

        der = self.server_certificate_der()
        return spnego.channel_bindings.GssChannelBindings(
            application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest()
        )

    def server_certificate_der(self) -> bytes:
        pem = self.host.tls.server_cert.read_text()  # type: ignore[union-attr]
        return ssl.PEM_cert_to_DER_cert(pem)

    def certificate_user(self) -> str | None:
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        cert = self.connection.getpeercert()
        if not cert:
            return None
        cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
        return cn if cn in self.host.users else None

    # -- message encryption (MS-WSMV 2.2.9.1.1)
    def decrypt(self, body: bytes) -> bytes:
        parts = [p for p in body.split(MIME_BOUNDARY + b"\r\n") if p]
        message = b""
        for i in range(0, len(parts) - 1, 2):
            header, payload = parts[i], parts[i + 1]
            length = int(header.split(b"Length=")[1].strip())
            if payload.endswith(MIME_BOUNDARY + b"--\r\n"):
                payload = payload[: -len(MIME_BOUNDARY + b"--\r\n")]
            data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            sig_len = struct.unpack("<i", data[:4])[0]
            plain = self.ntlm.unwrap(data[4 : 4 + sig_len] + data[4 + sig_len :]).data  # type: ignore[union-attr]
            if len(plain) != length:
                raise ValueError("encrypted length mismatch")
            message += plain
        return message

    def send_encrypted(self, code: int, soap: bytes) -> None:
        wrapped = self.ntlm.wrap(soap, encrypt=True).data  # type: ignore[union-attr]
        signature, sealed = wrapped[:16], wrapped[16:]
        body = (
            MIME_BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(soap)).encode() + b"\r\n"
            + MIME_BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature)) + signature + sealed
            + MIME_BOUNDARY + b"--\r\n"
        )  # fmt: skip
        ctype = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
        self.reply(code, body, ctype=ctype)

    # -- WS-Management
    def process(self, body: bytes, user: str, scheme: str, encrypted: bool) -> bytes:
        host = self.host
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return self.fault("", FAULT_UNSUPPORTED_ACTION, "The request is not well-formed XML.")
        action = root.findtext(".//a:Action", "", NS)
        msg_id = root.findtext(".//a:MessageID", "", NS)
        selector = root.find(".//w:Selector[@Name='ShellId']", NS)
        shell_id = selector.text if selector is not None else None
        record = RequestRecord(action.rsplit("/", 1)[-1], shell_id, scheme, encrypted, len(body))
        with host.lock:
            host.requests.append(record)
        if host.on_request:
            host.on_request(record)
        if len(body) > host.max_envelope_size:
            return self.fault(
                msg_id,
                FAULT_MAX_ENVELOPE_SIZE,
                "The WinRM client sent a request to the remote WS-Management service and was notified that the "
                "request size exceeded the configured MaxEnvelopeSize quota.",
                sub="w:EncodingLimit",
            )
        if root.findtext(".//w:ResourceURI", "", NS) != CMD_RESOURCE:
            text = "The WS-Management service does not support the resource URI."
            return self.fault(msg_id, FAULT_BAD_RESOURCE, text)
        options = {o.get("Name", ""): (o.text or "") for o in root.iterfind(".//w:Option", NS)}
        if action.endswith("transfer/Create"):
            return self.create_shell(msg_id, root, options)
        with host.lock:
            shell = host.shells.get(shell_id or "")
        if shell is None:
            return self.fault(
                msg_id,
                FAULT_SHELL_NOT_FOUND,
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not "
                "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no "
                "longer exists on the server.",
            )
        if action.endswith("transfer/Delete"):
            with host.lock:
                host.shells.pop(shell.id, None)
            for cmd in shell.commands.values():
                if not cmd.done.is_set():
                    cmd.terminate("shell deleted")
            return self.ok(NS["x"] + "/DeleteResponse", msg_id, "")
        if action == SHELL_NS + "Command":
            parts = [root.findtext(".//rsp:Command", "", NS), root.findtext(".//rsp:Arguments", "", NS)]
            cmd = RemoteCommand(host, shell.id, " ".join(p for p in parts if p), options)
            shell.commands[cmd.id] = cmd
            threading.Thread(target=host.run, args=(cmd,), daemon=True).start()
            return self.ok(
                SHELL_NS + "CommandResponse",
                msg_id,
                f"<rsp:CommandResponse><rsp:CommandId>{cmd.id}</rsp:CommandId></rsp:CommandResponse>",
            )
        queries = (".//rsp:Signal", ".//rsp:DesiredStream", ".//rsp:Stream")
        node = next((n for n in (root.find(q, NS) for q in queries) if n is not None), None)
        cmd = shell.commands.get(node.get("CommandId", "") if node is not None else "")
        if cmd is None:
            return self.fault(msg_id, FAULT_SHELL_NOT_FOUND, "The command ID is not valid for this shell.")
        if action == SHELL_NS + "Send":
            if cmd.done.is_set():
                return self.fault(msg_id, FAULT_PIPE_ENDED, "The pipe has been ended.", sub="w:InternalError")
            cmd.feed_stdin(base64.b64decode(node.text or ""), node.get("End", "").lower() == "true")  # type: ignore[union-attr]
            return self.ok(SHELL_NS + "SendResponse", msg_id, "<rsp:SendResponse/>")
        if action == SHELL_NS + "Signal":
            code = root.findtext(".//rsp:Code", "", NS)
            if code == SIGNAL_TERMINATE:
                if not cmd.done.is_set():
                    cmd.terminate("terminate")
                shell.commands.pop(cmd.id, None)
            else:
                cmd.signals.append(code.rsplit("/", 1)[-1])
            return self.ok(SHELL_NS + "SignalResponse", msg_id, "<rsp:SignalResponse/>")
        if action == SHELL_NS + "Receive":
            return self.receive(msg_id, root, cmd)
        return self.fault(msg_id, FAULT_UNSUPPORTED_ACTION, f"The action {action} is not supported.")

    def create_shell(self, msg_id: str, root: ET.Element, options: dict[str, str]) -> bytes:
        shell = Shell(str(uuid.uuid4()).upper(), options)
        with self.host.lock:
            self.host.shells[shell.id] = shell
        return self.ok(
            NS["x"] + "/CreateResponse",
            msg_id,
            f"<x:ResourceCreated><a:Address>{self.host.url}</a:Address><a:ReferenceParameters>"
            f'<w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI><w:SelectorSet><w:Selector Name="ShellId">'
            f"{shell.id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId><rsp:ResourceUri>{CMD_RESOURCE}</rsp:ResourceUri>"
            f"<rsp:State>Connected</rsp:State></rsp:Shell>",
        )

    def receive(self, msg_id: str, root: ET.Element, cmd: RemoteCommand) -> bytes:
        timeout = _iso_seconds(root.findtext(".//w:OperationTimeout", "PT60S", NS))
        got = cmd.take_output(timeout)
        if got is None:
            return self.fault(
                msg_id,
                FAULT_OPERATION_TIMEOUT,
                "The WS-Management service cannot complete the operation within the time specified in "
                "OperationTimeout.",
                sub="w:TimedOut",
            )
        out, done = got
        streams = "".join(
            f'<rsp:Stream Name="{name}" CommandId="{cmd.id}">{base64.b64encode(data).decode()}</rsp:Stream>'
            for name, data in out
        )
        if done:
            streams += "".join(
                f'<rsp:Stream Name="{n}" CommandId="{cmd.id}" End="true"></rsp:Stream>' for n in ("stdout", "stderr")
            )
            state = (
                f'<rsp:CommandState CommandId="{cmd.id}" State="{SHELL_NS}CommandState/Done">'
                f"<rsp:ExitCode>{cmd.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            state = f'<rsp:CommandState CommandId="{cmd.id}" State="{SHELL_NS}CommandState/Running"/>'
        body = f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"
        return self.ok(SHELL_NS + "ReceiveResponse", msg_id, body)

    def envelope(self, action: str, relates_to: str, body: str) -> bytes:
        ns = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope {ns} xml:lang="en-US"><s:Header>'
            f"<a:Action>{action}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            f"<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
        ).encode()

    def ok(self, action: str, relates_to: str, body: str) -> bytes:
        return self.envelope(action, relates_to, body)

    def fault(self, relates_to: str, code: int, text: str, sub: str = "w:InvalidSelectors") -> bytes:
        body = (
            f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{sub}</s:Value></s:Subcode>"
            f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(text)}</s:Text></s:Reason><s:Detail>'
            f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}" '
            f'Machine="{self.host.computer_name}"><f:Message>{escape(text)}</f:Message></f:WSManFault>'
            f"</s:Detail></s:Fault>"
        )
        return self.envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def _iso_seconds(text: str) -> float:
    m = re.fullmatch(r"PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?", text.strip())
    if not m:
        return 60.0
    return float(m.group(1) or 0) * 60 + float(m.group(2) or 0)
