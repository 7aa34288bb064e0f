"""The WinRM transport: Windows Remote Shell over WS-Management, on pywinrm.

Targets are ``winrm://[user@]host[:port]`` (HTTP, port 5985) and ``winrms://[user@]host[:port]`` (HTTPS, port
5986); a domain user is written ``DOMAIN%5Cuser`` or ``user%40domain`` (percent-encoded ``\\`` or ``@``). The
password comes from an environment variable, never from the command line or the URL.

pywinrm blocks, so every call runs on one worker thread per transport (a requests session and, with NTLM over
HTTP, the message-encryption sequence numbers must not be shared between threads); the event loop only waits.
One remote shell is opened at ``connect()`` and reused by every command.

Files go up as base64 lines on the stdin of one PowerShell process, each WinRM Send carrying as much as the
envelope limit allows (about 84 KiB of file per round trip at WinRM's default 150 KiB, against Packer's ~6 KiB),
and the SHA-256 is checked on the VM before the file is moved into place.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import logging
import math
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aibx import powershell
from aibx.engine.transports.base import (
    ConnectError,
    ConnectionLost,
    OutputCallback,
    ProgressCallback,
    RemoteFileError,
    Transport,
    TransportError,
)
from aibx.engine.transports.options import (
    AUTH_METHODS,
    DEFAULT_AUTH,
    DEFAULT_MAX_ENVELOPE_SIZE,
    DEFAULT_PORTS,
    WINRM_SCHEMES,
    WinRMConfigError,
    WinRMOptions,
    WinRMTarget,
    check_winrm,
)

if TYPE_CHECKING:
    from aibx.engine.transports import ConnectOptions, Target

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_AUTH",
    "DEFAULT_MAX_ENVELOPE_SIZE",
    "DEFAULT_PORTS",
    "WinRMConfigError",
    "WinRMOptions",
    "WinRMTarget",
]

log = logging.getLogger(__name__)

SCHEMES = WINRM_SCHEMES

# room for the SOAP header and the Send body around the base64 of one stdin chunk (pywinrm's is ~1.5 KiB)
_ENVELOPE_OVERHEAD = 4096

# A command that ended by itself is not sent a Signal (terminate): that request would cost a round trip per
# command. Deleting its shell releases it (WinRM counts unreleased commands against MaxConcurrentOperationsPerUser,
# 1500 by default), so the shell is replaced after this many, at the cost of two requests.
UNSIGNALLED_PER_SHELL = 25

FAULT_OPERATION_TIMEOUT = 2150858793
FAULT_SHELL_NOT_FOUND = 2150858843

# What the runner compares before and after a restart (shared with SSH to Windows): see aibx.powershell
BOOT_IDENTITY_SCRIPT = powershell.BOOT_IDENTITY_SCRIPT

UPLOAD_SCRIPT = "Receive-AibxFile.ps1"
DOWNLOAD_SCRIPT = "Send-AibxFile.ps1"


def stdin_chunk_size(max_envelope_size: int) -> int:
    """Bytes of stdin one Send can carry: the envelope holds their base64."""
    return ((max_envelope_size - _ENVELOPE_OVERHEAD) // 4) * 3


def upload_chunk_size(max_envelope_size: int) -> int:
    """File bytes per Send for the upload script: one base64 line (plus CRLF) per Send."""
    return ((stdin_chunk_size(max_envelope_size) - 2) // 4) * 3


class WinRMTransport(Transport):
    """``Transport`` over WinRM, for a ``transports.Target`` of scheme winrm or winrms (``parse_target`` reads it)."""

    service = "WinRM"

    def __init__(
        self,
        target: Target,
        options: WinRMOptions | None = None,
        *,
        password: str | None = None,
        password_env: str | None = None,
    ) -> None:
        self.options = options = options or WinRMOptions()
        self.spec = spec = WinRMTarget.from_target(target.scheme, target.host, target.port, target.user)
        self.target = spec.display()
        self._password: str | None = password
        self._password_env = password_env  # the variable's name, for hints
        self.auth = check_winrm(spec, options, password)
        if spec.https and options.insecure_skip_tls_verify:
            self.connect_note = (
                "the VM's TLS certificate is not verified (--insecure-skip-tls-verify): anyone on the way can read "
                "and change what is sent"
            )
        elif self.auth == "basic" and not spec.https:
            self.connect_note = (
                "Basic authentication over plain HTTP (--allow-unencrypted): the password and everything else "
                "travel unencrypted"
            )
        elif self.auth == "ntlm" and not spec.https:
            self.connect_note = (
                "NTLM over plain HTTP (winrm://) encrypts the messages but does not authenticate the VM: whoever "
                "answers at that address gets the commands and files; use winrms:// (with --winrm-ca) to verify it"
            )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._protocol = None
        self._shell_id: str | None = None
        self._unsignalled = 0  # commands of the current shell that ended without a Signal
        self._closed = False
        # uploads are written to PATH.aibx-<token> before the move: random for this run, the same for every attempt
        # (what an upload cut short by a restart left there is removed by the next attempt)
        self._upload_token = secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"WinRMTransport({self.target!r}, auth={self.auth!r})"

    # ------------------------------------------------------------------------------------------- plumbing
    def _scrub(self, text: str) -> str:
        if self._password and self._password in text:
            text = text.replace(self._password, "***")
        return text

    async def _in_worker(self, fn: Callable[..., object], *args: object) -> object:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aibx-winrm")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _new_protocol(self) -> Any:  # a winrm.Protocol (pywinrm has no type information)
        import winrm

        o = self.options
        skip = self.spec.https and o.insecure_skip_tls_verify
        validation = "ignore" if skip else "validate"
        protocol = winrm.Protocol(
            self.spec.endpoint,
            transport=self.auth,  # type: ignore[arg-type]
            username=self.spec.user,
            password=self._password,
            ca_trust_path=cast(str, o.ca_file),  # None: requests' default bundle, never REQUESTS_CA_BUNDLE & co.
            cert_pem=o.client_cert,
            cert_key_pem=o.client_key,
            server_cert_validation=validation,  # type: ignore[arg-type]
            read_timeout_sec=math.ceil(o.read_timeout),
            operation_timeout_sec=o.receive_timeout,
            message_encryption="auto",
            proxy=None,  # a VM's WinRM port is reached directly; no proxy from the environment
        )
        # requests takes (connect, read): fail fast on a dead address, wait long enough for a busy VM
        protocol.transport.read_timeout_sec = (o.connect_timeout, o.read_timeout)  # type: ignore[assignment]
        protocol.max_env_sz = o.max_envelope_size
        return protocol

    # ------------------------------------------------------------------------------------------- connect
    async def connect(self) -> None:
        await self._in_worker(self._connect_blocking)

    async def reconnect(self) -> None:
        """A new session and shell; the old ones are dropped without a word to a VM that is gone (a TLS
        certificate is verified again, as at every connect)."""
        await self.connect()

    def _connect_blocking(self) -> None:
        self._closed = False
        self._drop_protocol()
        protocol = self._new_protocol()
        started = time.monotonic()
        try:
            self._shell_id = protocol.open_shell(codepage=self.options.codepage)
        except Exception as e:
            raise self._connect_error(e) from None
        self._unsignalled = 0
        self._protocol = protocol
        log.debug("connected to %s (%s) in %.3fs", self.target, self.auth, time.monotonic() - started)

    def _drop_protocol(self) -> None:
        protocol, self._protocol, self._shell_id = self._protocol, None, None
        if protocol is not None:
            with contextlib.suppress(Exception):
                protocol.transport.close_session()

    def _connect_error(self, exc: BaseException) -> ConnectError:
        import requests
        from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError, WSManFaultError

        t = self.spec
        port_hint = (
            f"check that the VM listens on {t.port} (winrm quickconfig; "
            f"{'winrm create winrm/config/Listener?Address=*+Transport=HTTPS' if t.https else 'Enable-PSRemoting'}) "
            "and that firewalls and network security groups let TCP "
            f"{t.port} through"
        )
        if isinstance(exc, InvalidCredentialsError):
            offered = self._offered_auth()
            detail = f"401 Unauthorized: the server rejected {t.user or 'the client'} with {self.auth} authentication"
            if offered:
                detail += f" (it offers: {', '.join(offered)})"
            wanted = {"ntlm": "negotiate", "kerberos": "negotiate", "basic": "basic", "credssp": "credssp"}
            if offered and wanted.get(self.auth, self.auth) not in {o.lower() for o in offered}:
                hint = "the server does not offer this method: choose another --winrm-auth"
                if self.auth == "basic":
                    hint += ' or enable it: winrm set winrm/config/service/auth @{Basic="true"}'
            elif self.auth == "certificate":
                hint = "map the client certificate to a local user (winrm create winrm/config/service/certmapping)"
            else:
                hint = f"check the user name and the password in ${self._password_env or 'VAR'}"
                if "\\" not in (t.user or "") and "@" not in (t.user or ""):
                    hint += r"; a domain user is written DOMAIN%5Cuser or user%40domain"
            return ConnectError("auth", self.target, detail, hint)
        if isinstance(exc, requests.exceptions.SSLError):
            reason = _ssl_reason(exc)
            if "wrong version number" in reason or "record layer failure" in reason:
                return ConnectError(
                    "tls", self.target, f"TLS handshake failed: {reason}", "this port speaks plain HTTP: use winrm://"
                )
            return ConnectError(
                "tls",
                self.target,
                f"the VM's certificate was not accepted: {reason}",
                "pass --winrm-ca FILE with the CA (or the self-signed certificate) the VM's listener uses; "
                "--insecure-skip-tls-verify only for a throw-away VM",
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return ConnectError(
                "timeout", self.target, f"no answer within {self.options.connect_timeout:g}s", port_hint
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return ConnectError("timeout", self.target, "connected, but the WinRM service did not answer", port_hint)
        if isinstance(exc, requests.exceptions.ConnectionError):
            kind, detail = _connection_failure(exc)
            hint = port_hint
            if kind == "dns":
                hint = "check the host name"
            elif kind == "protocol" and not t.https:
                hint = "the connection was closed on the first request: if this port is HTTPS, use winrms://"
            return ConnectError(kind, self.target, detail, hint)
        if isinstance(exc, WSManFaultError):
            return ConnectError("protocol", self.target, f"WinRM fault: {self._scrub(exc.reason)}")
        if isinstance(exc, WinRMTransportError):
            return ConnectError(
                "protocol",
                self.target,
                f"HTTP {exc.code} from {t.endpoint}",
                "is this a WinRM listener? the endpoint must answer WS-Management at /wsman",
            )
        if isinstance(exc, WinRMError):
            return ConnectError("protocol", self.target, self._scrub(str(exc)))
        return ConnectError("protocol", self.target, self._scrub(f"{type(exc).__name__}: {exc}"))

    def _offered_auth(self) -> list[str]:
        """The schemes of the server's WWW-Authenticate headers, from one unauthenticated request."""
        import requests

        verify: bool | str = not self.options.insecure_skip_tls_verify
        if verify and self.options.ca_file:
            verify = self.options.ca_file
        try:
            with requests.Session() as s:
                s.trust_env = False
                r = s.post(
                    self.spec.endpoint,
                    data=b"",
                    headers={"Content-Type": "application/soap+xml;charset=UTF-8"},
                    verify=verify,
                    timeout=(self.options.connect_timeout, 10),
                )
            raw = r.raw.headers.getlist("WWW-Authenticate") if hasattr(r.raw.headers, "getlist") else []
        except Exception:
            return []
        schemes: list[str] = []
        for value in raw:
            for part in value.split(","):
                word = part.strip().split(" ", 1)[0]
                if word and "=" not in word and word not in schemes:
                    schemes.append(word)
        return schemes

    # ------------------------------------------------------------------------------------------- commands
    async def run(
        self,
        command: str,
        *,
        stdin: bytes | Path | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        chunks = None
        if stdin is not None:
            size = stdin_chunk_size(self.options.max_envelope_size)
            chunks = _file_chunks(stdin, size) if isinstance(stdin, Path) else _bytes_chunks(stdin, size)
        return await self._execute(command, chunks, on_output, timeout)

    async def _execute(
        self,
        command: str,
        stdin_chunks: Iterable[bytes] | None,
        on_output: OutputCallback | None,
        timeout: float | None,
    ) -> int:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def emit(stream: str, data: bytes) -> None:
            if on_output is not None:
                loop.call_soon_threadsafe(on_output, stream, data)

        deadline = None if timeout is None else time.monotonic() + timeout
        future = asyncio.ensure_future(
            self._in_worker(self._execute_blocking, command, stdin_chunks, emit, deadline, cancel)
        )
        try:
            return cast(int, await asyncio.shield(future))
        except asyncio.CancelledError:
            # stop the remote process before giving up: the worker notices within one Receive
            cancel.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(future), self.options.read_timeout + 5)
            raise

    def _execute_blocking(
        self,
        command: str,
        stdin_chunks: Iterable[bytes] | None,
        emit: Callable[[str, bytes], None],
        deadline: float | None,
        cancel: threading.Event,
    ) -> int:
        if self._protocol is None or self._shell_id is None:
            if self._closed:
                raise ConnectionLost(f"{self.target}: the transport is closed", command_started=False)
            raise ConnectionLost(f"{self.target}: not connected", command_started=False)
        protocol = self._protocol
        command_id = self._start_command(command, console_mode_stdin=stdin_chunks is None)
        shell_id = self._shell_id
        try:
            return self._finish_command(protocol, shell_id, command_id, stdin_chunks, emit, deadline, cancel)
        except ConnectionLost as e:
            if not e.command_started:  # a later request was not delivered, but the command had started
                raise ConnectionLost(str(e)) from None
            raise

    def _finish_command(
        self,
        protocol: Any,
        shell_id: str,
        command_id: str,
        stdin_chunks: Iterable[bytes] | None,
        emit: Callable[[str, bytes], None],
        deadline: float | None,
        cancel: threading.Event,
    ) -> int:
        from winrm.exceptions import WinRMOperationTimeoutError, WSManFaultError

        try:
            if stdin_chunks is not None:
                self._send_stdin(protocol, shell_id, command_id, stdin_chunks)
            while True:
                if cancel.is_set():
                    self._terminate(protocol, shell_id, command_id)
                    raise TimeoutError("cancelled; the remote command was stopped")
                wait = self.options.receive_timeout
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._terminate(protocol, shell_id, command_id)
                        raise TimeoutError("the command timed out; it was stopped on the VM")
                    wait = max(1, min(wait, math.ceil(remaining)))
                protocol.operation_timeout_sec = wait
                try:
                    answer = self._guard(protocol.get_command_output_raw, shell_id, command_id)
                    out, err, code, done = cast("tuple[bytes, bytes, int, bool]", answer)
                except WinRMOperationTimeoutError:
                    continue
                if out:
                    emit("stdout", out)
                if err:
                    emit("stderr", err)
                if done:
                    break
        except WSManFaultError as e:
            if e.wsman_fault_code == FAULT_SHELL_NOT_FOUND:
                self._drop_protocol()
                raise ConnectionLost(f"{self.target}: the remote shell is gone (did the VM restart?)") from None
            raise TransportError(self._scrub(f"{self.target}: WinRM fault: {e.reason}")) from None
        finally:
            protocol.operation_timeout_sec = self.options.receive_timeout
        # ended by itself: released with its shell (see UNSIGNALLED_PER_SHELL), no Signal round trip
        self._unsignalled += 1
        return code

    def _start_command(self, command: str, console_mode_stdin: bool) -> str:
        """Start ``command``; if the shell is gone (idle timeout, restart), open a new one and try once more: a
        Command that faulted never ran."""
        from winrm.exceptions import WSManFaultError

        if self._unsignalled >= UNSIGNALLED_PER_SHELL:
            self._renew_shell()
        for attempt in (1, 2):
            assert self._protocol is not None and self._shell_id is not None
            try:
                return self._guard(self._protocol.run_command, self._shell_id, command, (), console_mode_stdin, False)
            except WSManFaultError as e:
                if e.wsman_fault_code != FAULT_SHELL_NOT_FOUND or attempt == 2:
                    raise TransportError(self._scrub(f"{self.target}: WinRM fault: {e.reason}")) from None
                log.debug("shell %s is gone; opening a new one", self._shell_id)
                self._shell_id = self._guard(self._protocol.open_shell, codepage=self.options.codepage)
                self._unsignalled = 0
        raise AssertionError("unreachable")

    def _renew_shell(self) -> None:
        """A new shell for the next commands; deleting the old one releases the commands it holds."""
        assert self._protocol is not None
        protocol, old = self._protocol, self._shell_id
        try:
            shell_id = self._guard(protocol.open_shell, codepage=self.options.codepage)
        except ConnectionLost as e:
            raise ConnectionLost(str(e), command_started=False) from None  # the command was not sent
        self._shell_id, self._unsignalled = shell_id, 0
        with contextlib.suppress(Exception):
            self._guard(protocol.close_shell, old, close_session=False)

    def _send_stdin(self, protocol: Any, shell_id: str, command_id: str, chunks: Iterable[bytes]) -> None:
        from winrm.exceptions import WSManFaultError

        pending: bytes | None = None
        try:
            for chunk in chunks:
                if pending is not None:
                    self._guard(protocol.send_command_input, shell_id, command_id, pending, False)
                pending = chunk
            self._guard(protocol.send_command_input, shell_id, command_id, pending or b"", True)
        except WSManFaultError as e:
            # the process ended before reading everything (it failed early): its output tells why
            log.debug("stdin not accepted any more: %s", e.reason)

    def _terminate(self, protocol: Any, shell_id: str, command_id: str) -> None:
        with contextlib.suppress(Exception):
            self._guard(protocol.cleanup_command, shell_id, command_id)

    def _guard(self, fn: Callable[..., object], *args: object, **kwargs: object) -> object:
        """Call pywinrm; a dropped or dead connection becomes ConnectionLost, with ``command_started`` False when
        the request cannot have been acted on (no connection, or refused with 401)."""
        import requests
        from winrm.exceptions import InvalidCredentialsError

        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            self._drop_protocol()
            if isinstance(e, requests.exceptions.Timeout):
                detail = f"no answer for {self.options.read_timeout:g}s"
            else:
                detail = _connection_failure(e)[1]
            undelivered = isinstance(e, requests.exceptions.ConnectTimeout) or _never_connected(e)
            raise ConnectionLost(
                self._scrub(f"{self.target}: connection lost: {detail}"), command_started=not undelivered
            ) from None
        except requests.exceptions.ChunkedEncodingError:
            self._drop_protocol()
            raise ConnectionLost(f"{self.target}: connection lost in the middle of a response") from None
        except InvalidCredentialsError:
            # the VM came back and no longer knows this NTLM session, or the credentials changed
            self._drop_protocol()
            raise ConnectionLost(
                f"{self.target}: the VM asked to authenticate again (401)", command_started=False
            ) from None

    # ------------------------------------------------------------------------------------------- files
    async def put(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        exclusive: bool = False,
    ) -> None:
        """Upload ``data`` to ``remote_path`` (``mode`` has no meaning on Windows and is ignored). The bytes go to a
        new file beside it, created exclusively under a name random for this run, and are moved into place once
        their SHA-256 is checked; a destination that is a symbolic link or junction is refused, and ``exclusive``
        refuses anything at all there (see Receive-AibxFile.ps1)."""
        if isinstance(data, Path):
            digest = await asyncio.to_thread(_file_sha256, data)
            total = data.stat().st_size
            chunks: Iterable[bytes] = _file_chunks(data, upload_chunk_size(self.options.max_envelope_size))
        else:
            digest = hashlib.sha256(data).hexdigest()
            total = len(data)
            chunks = _bytes_chunks(data, upload_chunk_size(self.options.max_envelope_size))
        if on_progress is not None:
            chunks = _counted(chunks, total, asyncio.get_running_loop(), on_progress)
        script = powershell.fill(
            powershell.compact(powershell.package_script_text(UPLOAD_SCRIPT)),
            path=remote_path,
            sha256=digest,
            token=self._upload_token,
            exclusive="yes" if exclusive else "no",
        )
        stdout, stderr = bytearray(), bytearray()

        def collect(stream: str, chunk: bytes) -> None:
            (stdout if stream == "stdout" else stderr).extend(chunk)

        lines = (base64.b64encode(c) + b"\r\n" for c in chunks)
        code = await self._execute(powershell.encoded_command_line(script), lines, collect, None)
        if code == 0 and f"AIBX-UPLOAD-OK {digest}".encode() in stdout:
            return
        reason = _marked_error(bytes(stderr), "AIBX-UPLOAD-ERROR") or f"upload failed with exit code {code}"
        raise RemoteFileError(remote_path, self._scrub(reason))

    async def get(self, remote_path: str) -> bytes:
        script = powershell.fill(powershell.compact(powershell.package_script_text(DOWNLOAD_SCRIPT)), path=remote_path)
        stdout, stderr = bytearray(), bytearray()

        def collect(stream: str, chunk: bytes) -> None:
            (stdout if stream == "stdout" else stderr).extend(chunk)

        code = await self._execute(powershell.encoded_command_line(script), None, collect, None)
        if code != 0:
            reason = _marked_error(bytes(stderr), "AIBX-DOWNLOAD-ERROR") or f"download failed with exit code {code}"
            raise RemoteFileError(remote_path, self._scrub(reason))
        return b"".join(base64.b64decode(line) for line in bytes(stdout).split() if line)

    async def boot_identity(self) -> str:
        """LastBootUpTime (UTC, ISO 8601): it changes with every boot."""
        out, err = bytearray(), bytearray()
        code = await self._execute(
            powershell.encoded_command_line(BOOT_IDENTITY_SCRIPT),
            None,
            lambda s, c: (out if s == "stdout" else err).extend(c),
            self.options.read_timeout,
        )
        text = bytes(out).decode("utf-8", "replace").strip()
        if code != 0 or not text:
            detail = clixml_to_text(bytes(err)) or f"exit code {code}"
            raise TransportError(f"{self.target}: cannot read the boot time: {self._scrub(detail)}")
        return text.splitlines()[-1].strip()

    # ------------------------------------------------------------------------------------------- close
    async def close(self) -> None:
        if self._closed and self._executor is None:
            return
        self._closed = True
        if self._executor is not None:
            with contextlib.suppress(Exception):
                await self._in_worker(self._close_blocking)
            self._executor.shutdown(wait=False)
            self._executor = None

    def _close_blocking(self) -> None:
        protocol, shell_id = self._protocol, self._shell_id
        if protocol is not None and shell_id is not None:
            protocol.transport.read_timeout_sec = (self.options.connect_timeout, 10)
            with contextlib.suppress(Exception):
                protocol.close_shell(shell_id, close_session=False)
        self._drop_protocol()


def transport_for_target(target: Target, options: ConnectOptions) -> WinRMTransport:
    """The descriptor's factory for ``winrm://`` and ``winrms://``: the common ``ConnectOptions`` (password,
    connect timeout) and its ``WinRMOptions``."""
    settings = replace(options.of(WinRMOptions), connect_timeout=options.connect_timeout)
    return WinRMTransport(target, settings, password=options.password, password_env=options.password_env)


# ----------------------------------------------------------------------------------------------- helpers
def _counted(
    chunks: Iterable[bytes], total: int, loop: asyncio.AbstractEventLoop, on_progress: ProgressCallback
) -> Iterator[bytes]:
    """``chunks``, telling ``on_progress`` on the event loop's thread how many bytes the sender took (the worker
    thread takes a chunk when the Send before the previous one was answered: the count is at most one chunk
    ahead of the VM)."""
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        loop.call_soon_threadsafe(on_progress, done, total)


def _bytes_chunks(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()  # (hashlib.file_digest is Python 3.11's)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _ssl_reason(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"\[SSL: [A-Z_]+\] ([^(\]]+)", text) or re.search(r"SSLError\(\d*,? ?'?([^')]+)", text)
    if m:
        return m.group(1).strip().rstrip(".")
    m = re.search(r"certificate verify failed: ([^(')]+)", text)
    return m.group(0).strip() if m else "TLS error"


def _never_connected(exc: BaseException) -> bool:
    """True when a requests ConnectionError happened while connecting (so the request was never sent)."""
    from urllib3.exceptions import NewConnectionError

    node: BaseException | None = exc
    seen: list[BaseException] = []
    while node is not None and node not in seen:
        seen.append(node)
        if isinstance(node, NewConnectionError):
            return True
        nxt = node.__cause__ or node.__context__
        if nxt is None and node.args and isinstance(node.args[0], BaseException):
            nxt = node.args[0]
        if nxt is None and isinstance(getattr(node, "reason", None), BaseException):
            nxt = node.reason  # type: ignore[attr-defined]
        node = nxt
    return False


def _connection_failure(exc: BaseException) -> tuple[str, str]:
    """(kind, detail) for a requests ConnectionError, from the innermost cause."""
    import socket

    seen: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in seen:
        seen.append(node)
        nxt = node.__cause__ or node.__context__
        if nxt is None and node.args and isinstance(node.args[0], BaseException):
            nxt = node.args[0]
        if nxt is None and hasattr(node, "reason") and isinstance(node.reason, BaseException):
            nxt = node.reason
        node = nxt
    text = " ".join(str(e) for e in seen)
    for e in seen:
        if isinstance(e, socket.gaierror) or "NameResolutionError" in type(e).__name__:
            return "dns", "the host name does not resolve"
        if isinstance(e, ConnectionRefusedError):
            return "refused", "connection refused"
        if isinstance(e, OSError) and e.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
            return "unreachable", "no route to the host"
        if isinstance(e, (ConnectionResetError, BrokenPipeError)):
            return "protocol", "the connection was reset"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "protocol", "the server closed the connection without answering"
    if "Connection refused" in text:
        return "refused", "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "dns", "the host name does not resolve"
    return "protocol", "connection failed"


def _marked_error(stderr: bytes, marker: str) -> str | None:
    text = clixml_to_text(stderr)
    for line in text.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    return text.strip() or None


def clixml_to_text(data: bytes) -> str:
    """stderr of ``powershell -EncodedCommand`` may come as CLIXML (``#< CLIXML`` + <Objs>): the error lines as
    text. Anything else is returned decoded."""
    text = data.decode("utf-8", "replace")
    if "#< CLIXML" not in text:
        return text
    before, _, xml = text.partition("#< CLIXML")
    lines = [before.strip()] if before.strip() else []
    for chunk in re.findall(r"<Objs.*?</Objs>", xml, flags=re.DOTALL):
        try:
            root = ET.fromstring(chunk)
        except ET.ParseError:
            continue
        for node in root.iter():
            if node.tag.endswith("}S") and node.get("S") == "Error" and node.text:
                lines.append(re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), node.text))
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).replace("\r\n", "\n").strip()
