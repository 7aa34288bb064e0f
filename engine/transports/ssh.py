"""The SSH transport, on asyncssh.

* One connection per run; every command is one channel (exec), files go over one SFTP session opened on first use.
* Bounded: ``connect_timeout`` covers TCP, handshake and authentication; within it a TCP connection that gets no
  answer is tried again every ``TCP_ATTEMPT_SECONDS`` (a VM coming back from a reboot is reached within seconds,
  not at the kernel's next, ever later SYN retry). Keepalives notice a dead peer after
  ``keepalive_interval * keepalive_count_max`` seconds, which also bounds every channel and SFTP request.
* Host keys are checked against ``known_hosts`` (default ``~/.ssh/known_hosts``). An unknown host is refused
  unless ``accept_new_host_key``, which trusts it on first use and records it; a *changed* key is always refused.
  ``reconnect()`` (after a reboot) accepts only the very key the first connection accepted.
* Auth: the ``identity`` file, the keys ssh-agent holds, the default keys (``~/.ssh/id_*``, ``IdentityFile``) and a
  password (given by the caller, never read from the command line). ``~/.ssh/config`` (aliases, HostName, Port,
  User, IdentityFile, ProxyJump, ...) is honoured through asyncssh, except ``ForwardAgent``: the agent is never
  forwarded to the VM.
* A command that does not end by itself (timeout, cancellation) is stopped with SIGTERM to its process group
  (OpenSSH's ``signal`` channel request), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import posixpath
import secrets
import signal
import socket
from pathlib import Path
from typing import BinaryIO

from aibx import powershell
from aibx.engine.transports import ConnectOptions, Target, ssh_agent
from aibx.engine.transports.asyncssh_import import asyncssh
from aibx.engine.transports.base import (
    EXISTS_REFUSED,
    ConnectError,
    ConnectionLost,
    OutputCallback,
    ProgressCallback,
    RemoteFileError,
    Transport,
)
from aibx.engine.transports.options import SshOptions

READ_CHUNK = 64 * 1024
# SFTP write requests in flight: 8 x 255 KiB fill OpenSSH's 2 MiB channel window (the most a high-latency link can
# use); more would only queue inside asyncssh, which measured slower on loopback (bench/run_over_ssh.py)
UPLOAD_DEPTH = 8
# after a failed write, how long the other writes in flight may take to end (their answers are on their way)
PENDING_WRITES_GRACE = 5.0
# an upload cut by an interrupt or the deadline: how long removing its partial file may take
CANCELLED_UPLOAD_CLEANUP = 5.0
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
BOOT_ID_COMMAND = "cat /proc/sys/kernel/random/boot_id"
# systemd's state: "stopping" from the moment a reboot or power-off is queued until the end
SYSTEM_STATE_COMMAND = "systemctl is-system-running"
# one TCP connection attempt; a SYN that gets no answer is sent again after 1 s and 3 s, so 3 s covers 3 SYNs
TCP_ATTEMPT_SECONDS = 3.0
# sshd sends its banner as soon as it accepts; a port that accepts and stays silent (a NAT port forward such as
# QEMU's or VirtualBox's while the VM behind it is down) is tried again after this long
BANNER_SECONDS = 5.0


class _HostKeyCheck:
    """Decides about host keys that are not in known_hosts: unknown (maybe trusted on first use) or changed.
    With ``pinned`` (a reconnect) only the key of the first connection is trusted: anything else has changed."""

    def __init__(self, known_hosts_path: Path, accept_new: bool, pinned: bool = False) -> None:
        self.path = known_hosts_path
        self.accept_new = accept_new and not pinned
        self.pinned = pinned
        self.known = asyncssh.read_known_hosts(str(known_hosts_path)) if known_hosts_path.exists() else None
        self.verdict: str | None = None  # "changed", "unknown" or "accepted"
        self.fingerprint = ""
        self.recorded_line = ""

    def trusted_for(self, host: str, addr: str, port: int) -> bool:
        if self.known is None:
            return False
        keys, ca_keys, *_ = self.known.match(host, addr, port if port != 22 else None)
        return bool(keys or ca_keys)

    def validate(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.fingerprint = key.get_fingerprint()
        if self.pinned or self.trusted_for(host, addr, port):
            self.verdict = "changed"
            return False
        if not self.accept_new:
            self.verdict = "unknown"
            return False
        name = host if port == 22 else f"[{host}]:{port}"
        algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
        self.recorded_line = f"{name} {algorithm} {blob}"
        self.verdict = "accepted"  # recorded once the server has proved it holds the key (the connection is up)
        return True

    def record(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(self.recorded_line + "\n")


class SshTransport(Transport):
    def __init__(self, target: Target, options: ConnectOptions) -> None:
        self.spec = target
        self.options = options
        self.target = str(target)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        # the command agent (ssh_agent.py): started in the background with the first command, used once ready
        self._agent: ssh_agent.Agent | None = None
        self._agent_start: asyncio.Task[ssh_agent.Agent | None] | None = None
        self._background_due = False  # the agent is still to be started on this connection
        self._sftp_busy = 0  # puts and gets under way (the SFTP session is not given back meanwhile)
        self._host_key: asyncssh.SSHKey | None = None  # the key the first connection accepted
        self.connect_note = ""  # e.g. "trusted the new host key SHA256:... and recorded it in ~/.ssh/known_hosts"
        self.windows = options.of(SshOptions).windows
        self.service = "SSH"
        self._upload_token = secrets.token_hex(6)  # part of the names uploads are written under before the rename
        self._exclusive_tried: set[str] = set()  # exclusive writes this transport began (see _put_over_sftp)

    # ------------------------------------------------------------------------------------------ connecting
    async def connect(self) -> None:
        opts = self.options
        known_hosts = Path(os.path.expanduser(opts.known_hosts or DEFAULT_KNOWN_HOSTS))
        pinned = self._host_key
        if opts.known_hosts and not known_hosts.exists() and not opts.accept_new_host_key and pinned is None:
            raise ConnectError("hostkey", self.target, f"known hosts file {known_hosts} does not exist")
        check = _HostKeyCheck(known_hosts, opts.accept_new_host_key, pinned=pinned is not None)

        class Client(asyncssh.SSHClient):
            def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
                return check.validate(host, addr, port, key)

        kwargs: dict[str, object] = {
            "known_hosts": str(known_hosts) if known_hosts.exists() else b"",
            "client_factory": Client,
            "keepalive_interval": opts.keepalive_interval,
            "keepalive_count_max": opts.keepalive_count_max,
            "config": opts.ssh_config if opts.ssh_config is not None else (),
            # never forward ssh-agent, whatever ~/.ssh/config says (ForwardAgent yes): a template's commands would
            # sign with your keys for as long as the run lasts
            "agent_forwarding": False,
        }
        if pinned is not None:
            # the same key as at the first connect, offered as a plain key (not a certificate for it)
            kwargs["known_hosts"] = ([pinned], [], [])
            kwargs["server_host_key_algs"] = [alg.decode() for alg in pinned.sig_algorithms]
        if self.spec.port:
            kwargs["port"] = self.spec.port
        if self.spec.user:
            kwargs["username"] = self.spec.user
        if opts.identity:
            kwargs["client_keys"] = [opts.identity]
        if opts.password is not None:
            kwargs["password"] = opts.password
        else:
            kwargs["password_auth"] = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.connect_timeout
        try:
            sock = await self._open_socket(kwargs, deadline)
            kwargs["connect_timeout"] = max(deadline - loop.time(), 0.001)
            self._conn = await asyncssh.connect(self.spec.host or "", sock=sock, **kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise self._host_key_error(check, known_hosts) from exc
        except asyncssh.PermissionDenied:
            raise ConnectError(
                "auth",
                self.target,
                "authentication failed (" + self._auth_tried() + ")",
                "check the user name and --identity, load the key into ssh-agent, or pass --password-env VAR (sshd "
                "also refuses a user whose login shell does not exist on the VM)",
            ) from None
        except asyncssh.KeyImportError as exc:
            raise ConnectError(
                "auth", self.target, f"cannot use the private key: {exc}", "for an encrypted key, add it to ssh-agent"
            ) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise ConnectError(
                "timeout",
                self.target,
                f"no answer within {opts.connect_timeout:g} s",
                "is the VM running, and does a firewall or network security group allow SSH from here?",
            ) from None
        except ConnectionRefusedError:
            raise ConnectError("refused", self.target, "connection refused", "is sshd running on that port?") from None
        except socket.gaierror as exc:
            raise ConnectError("dns", self.target, f"cannot resolve the host name: {exc.strerror}") from None
        except OSError as exc:
            kind = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "refused"
            raise ConnectError(kind, self.target, exc.strerror or str(exc)) from None
        except asyncssh.Error as exc:
            raise ConnectError("protocol", self.target, f"SSH error: {exc.reason}") from None
        if check.verdict == "accepted":
            check.record()
            self.connect_note = f"trusted the new host key {check.fingerprint} and recorded it in {known_hosts}"
        if self._host_key is None:
            self._host_key = self._conn.get_server_host_key()
        self._background_due = True  # started with the first command or file (see _start_background)

    async def _open_socket(self, kwargs: dict[str, object], deadline: float) -> socket.socket | None:
        """The TCP connection to the host ``~/.ssh/config`` names, tried again every ``TCP_ATTEMPT_SECONDS`` while
        SYNs go unanswered, until ``deadline``; None when a ProxyJump or ProxyCommand reaches the host instead."""
        loop = asyncio.get_running_loop()
        resolved = await asyncssh.SSHClientConnectionOptions.construct(
            config=kwargs["config"],
            host=self.spec.host or "",
            port=self.spec.port or (),
            known_hosts=None,
            client_keys=None,
            password_auth=False,
        )
        if resolved.tunnel or resolved.proxy_command:
            return None
        addresses = await loop.getaddrinfo(resolved.host, resolved.port, type=socket.SOCK_STREAM)
        while True:
            for family, kind, proto, _, address in addresses:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError()
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, address), min(TCP_ATTEMPT_SECONDS, remaining))
                    asked = loop.time()
                    if await _banner_ready(sock, min(BANNER_SECONDS, max(deadline - asked, 0.001))):
                        return sock
                    sock.close()
                    await asyncio.sleep(max(0.0, min(0.25 - (loop.time() - asked), deadline - loop.time())))
                except asyncio.TimeoutError:
                    sock.close()
                except BaseException:
                    sock.close()
                    raise

    async def reconnect(self) -> None:
        """Connect again (the first connection's host key is the only one accepted); the old connection is
        dropped without waiting for a VM that is gone."""
        self._abandon()
        await self.connect()

    def _abandon(self) -> None:
        self._sftp = None
        self._drop_background()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.abort()

    def _host_key_error(self, check: _HostKeyCheck, known_hosts: Path) -> ConnectError:
        if check.pinned:
            return ConnectError(
                "hostkey",
                self.target,
                f"the host key has CHANGED since this run's first connection: the server now offers "
                f"{check.fingerprint}",
                "a VM does not get a new host key by restarting; someone may be intercepting the connection",
            )
        if check.verdict == "changed":
            return ConnectError(
                "hostkey",
                self.target,
                f"the host key has CHANGED: the server offers {check.fingerprint}, which {known_hosts} does not "
                "list for this host",
                "if the VM was rebuilt, remove the old entry (ssh-keygen -R HOST) and connect again; otherwise "
                "someone may be intercepting the connection",
            )
        return ConnectError(
            "hostkey",
            self.target,
            f"the host key {check.fingerprint} is not known ({known_hosts} has no entry for this host)",
            "compare the fingerprint with the VM's (for example in its boot log), then run again with "
            "--accept-new-host-key, or add the key with ssh-keyscan to --known-hosts",
        )

    def _auth_tried(self) -> str:
        methods = []
        if self.options.identity:
            methods.append(f"key {self.options.identity}")
        else:
            methods.append("default keys and ssh-agent")
        if self.options.password is not None:
            methods.append("password")
        return "tried " + " and ".join(methods)

    def _require(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise ConnectionLost(f"not connected to {self.target}", command_started=False)
        return self._conn

    # ------------------------------------------------------------------------------------------ commands
    async def run(
        self,
        command: str,
        *,
        stdin: bytes | Path | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        agent = await self._ready_agent(command)
        data = ssh_agent.read_stdin(stdin) if agent is not None else None
        if agent is not None and data is not None:
            async with agent.lock:
                return await self._run_on_agent(agent, command, data, on_output, timeout)
        return await self._run_on_channel(command, stdin, on_output, timeout)

    async def _ready_agent(self, command: str) -> ssh_agent.Agent | None:
        """The agent, when it can take ``command`` now; None for an exec channel. The first command after connect
        (the boot id) does not wait for the agent: it runs alongside the agent's start, on its own channel; later
        commands wait for the start to end (bounded by ssh_agent.START_SECONDS)."""
        first = self._start_background()
        start = self._agent_start
        if start is not None:
            if not start.done():
                if first:
                    return None
                with contextlib.suppress(Exception):
                    await asyncio.shield(start)
            self._agent_start = None
            with contextlib.suppress(Exception, asyncio.CancelledError):
                self._agent = start.result()
        agent = self._agent
        if agent is None or not agent.usable or agent.lock.locked() or not ssh_agent.accepts(command):
            return None
        return agent

    async def _run_on_agent(
        self,
        agent: ssh_agent.Agent,
        command: str,
        stdin: bytes,
        on_output: OutputCallback | None,
        timeout: float | None,
    ) -> int:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            return await asyncio.wait_for(agent.run(command, stdin, on_output), timeout)
        except asyncio.TimeoutError:
            await agent.stop()
            raise TimeoutError(f"command still running after {timeout:g} s") from None
        except ssh_agent.AgentGone as gone:
            if not gone.started:  # it never ran: over an exec channel (which tells a dead connection exactly)
                left = None if timeout is None else max(timeout - (loop.time() - began), 0.001)
                return await self._run_on_channel(command, stdin, on_output, left)
            if gone.code is not None:  # the agent was killed with the command (a reboot's SIGTERM to all)
                return gone.code
            because = f" ({gone.reason})" if gone.reason else ""
            raise ConnectionLost(f"the connection to {self.target} dropped{because}") from None
        except (asyncssh.Error, OSError) as exc:
            agent.usable = False
            raise ConnectionLost(f"the connection to {self.target} dropped ({_reason(exc)})") from None
        except BaseException:  # cancelled (interrupt) or a failing callback: stop what runs
            await agent.stop()
            raise

    def _start_background(self) -> bool:
        """Start the agent, once per connection, at the first command or file; True when this call started it. It
        starts after the caller's own channel is asked for (tasks run at the loop's next turn), so a server with a
        low MaxSessions gives the first command its channel, and the agent falls back to exec channels when no
        session is left for it. (SFTP starts when a file needs it: most runs move no file over SFTP.)"""
        if not self._background_due or self._conn is None:
            return False
        self._background_due = False
        if not self.windows and ssh_agent.enabled():
            self._agent_start = asyncio.ensure_future(ssh_agent.Agent.start(self._conn, self.options.stop_grace))
        return True

    async def _open_process(self, command: str) -> asyncssh.SSHClientProcess:
        """An exec channel for ``command``. A server that refuses another session (MaxSessions, or a session it
        has not yet cleaned up) gets back the idle agent's and SFTP's, and is asked again, up to 3 times."""
        for attempt in range(1, 4):
            try:
                return await self._require().create_process(command, encoding=None)
            except asyncssh.ChannelOpenError:
                if attempt == 3:
                    raise
                self._give_back_sessions()
                await asyncio.sleep(0.1 * attempt)
        raise AssertionError("unreachable")

    def _give_back_sessions(self) -> None:
        """Close the agent (not to be started again on this connection) and the SFTP session (started again when
        a file needs it), unless they are in use."""
        if self._agent is not None and not self._agent.lock.locked():
            self._agent.close()
            self._agent = None
        if self._sftp is not None and not self._sftp_busy:
            self._sftp.exit()
            self._sftp = None

    def _drop_background(self) -> None:
        self._background_due = False
        if self._agent_start is not None:
            self._agent_start.cancel()
            self._agent_start = None
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    async def _run_on_channel(
        self,
        command: str,
        stdin: bytes | Path | None,
        on_output: OutputCallback | None,
        timeout: float | None,
    ) -> int:
        try:
            process = await self._open_process(command)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(
                f"cannot start a command on {self.target}: {_reason(exc)}", command_started=False
            ) from None
        try:
            await asyncio.wait_for(self._communicate(process, stdin, on_output), timeout)
        except asyncio.TimeoutError:
            await self._stop(process)
            raise TimeoutError(f"command still running after {timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            process.close()
            raise ConnectionLost(f"the connection to {self.target} dropped ({_reason(exc)})") from None
        except BaseException:  # cancelled (interrupt) or a failing callback: stop what runs
            await self._stop(process)
            raise
        if process.exit_status is not None and process.exit_status >= 0:
            return process.exit_status
        if process.exit_signal:
            name = process.exit_signal[0]
            try:
                return 128 + signal.Signals[f"SIG{name}"].value
            except KeyError:
                return 255
        raise ConnectionLost(f"the connection to {self.target} closed before the command reported its exit status")

    async def _communicate(
        self, process: asyncssh.SSHClientProcess, stdin: bytes | Path | None, on_output: OutputCallback | None
    ) -> None:
        async def feed() -> None:
            try:
                if isinstance(stdin, Path):
                    with stdin.open("rb") as src:
                        while chunk := src.read(READ_CHUNK * 4):
                            process.stdin.write(chunk)
                            await process.stdin.drain()
                elif stdin:
                    process.stdin.write(stdin)
                    await process.stdin.drain()
                process.stdin.write_eof()
            except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
                pass  # the command exited without reading all of it; its exit status tells

        async def pump(reader: asyncssh.SSHReader, stream: str) -> None:
            while chunk := await reader.read(READ_CHUNK):
                if on_output:
                    on_output(stream, chunk)

        await asyncio.gather(feed(), pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        await process.wait_closed()

    async def _stop(self, process: asyncssh.SSHClientProcess) -> None:
        """SIGTERM to the remote process group, SIGKILL after the grace period, then close the channel. Windows
        OpenSSH has no signals: there the channel is closed at once (whether the command ends with it is up to the
        server: PowerShell/Win32-OpenSSH#1751)."""
        signals = () if self.windows else (("TERM", self.options.stop_grace), ("KILL", 3.0))
        for sig, wait in signals:
            if process.exit_status is not None or process.exit_signal is not None:
                break
            try:
                process.send_signal(sig)
            except (OSError, asyncssh.Error):
                break
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.shield(asyncio.wait_for(process.wait_closed(), wait))
        process.close()

    async def boot_identity(self) -> str | None:
        """Linux: the kernel's boot_id; Windows (``SshOptions(windows=True)``): LastBootUpTime, through PowerShell."""
        command = powershell.encoded_command_line(powershell.BOOT_IDENTITY_SCRIPT) if self.windows else BOOT_ID_COMMAND
        code, text = await self._output_of(command)
        lines = text.splitlines()
        return lines[-1].strip() if code == 0 and lines and lines[-1].strip() else None

    async def shutting_down(self) -> bool | None:
        if self.windows:
            return None
        _, text = await self._output_of(SYSTEM_STATE_COMMAND)
        state = text.strip()
        return None if not state or " " in state else state == "stopping"

    async def _output_of(self, command: str) -> tuple[int | None, str]:
        chunks: list[bytes] = []
        try:
            code = await self.run(command, on_output=lambda s, c: chunks.append(c) if s == "stdout" else None)
        except TimeoutError:
            return None, ""
        return code, b"".join(chunks).decode(errors="replace").strip()

    # ------------------------------------------------------------------------------------------ files
    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = await self._require().start_sftp_client()
            except (asyncssh.Error, OSError) as exc:
                raise ConnectionLost(f"cannot start SFTP on {self.target}: {_reason(exc)}") from None
        return self._sftp

    def _sftp_path(self, remote_path: str) -> str:
        """Windows OpenSSH's SFTP server takes ``C:/Windows/Temp/x`` for ``C:\\Windows\\Temp\\x`` (a backslash is
        an ordinary character in SFTP paths); other paths go as they are."""
        return remote_path.replace("\\", "/") if self.windows else remote_path

    async def put(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        exclusive: bool = False,
    ) -> None:
        if not exclusive and await self._put_through_agent(data, remote_path, mode, on_progress):
            return
        self._sftp_busy += 1
        try:
            await self._put_over_sftp(data, remote_path, mode, on_progress, exclusive)
        finally:
            self._sftp_busy -= 1

    async def _put_over_sftp(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None,
        on_progress: ProgressCallback | None,
        exclusive: bool = False,
    ) -> None:
        sftp = await self._sftp_client()
        shown, remote_path = remote_path, self._sftp_path(remote_path)
        block = sftp.limits.max_write_len or 32768
        write_path = await self._write_path(sftp, remote_path, shown, exclusive)
        try:
            # created with its mode (not chmod-ed after the bytes are in): a private file is never readable by others
            attrs = asyncssh.SFTPAttrs(permissions=mode) if mode is not None and not self.windows else None
            # block_size=0: each write is one request, sent when its coroutine starts (asyncssh's own splitting
            # would send it from tasks of its own, after requests made later, such as the fsync)
            pflags = "wb" if self.windows and not exclusive else "xb"
            f = await sftp.open(write_path, pflags, attrs or asyncssh.SFTPAttrs(), block_size=0)
        except _SFTP_LOST as exc:
            raise ConnectionLost(f"connection to {self.target} lost while writing {shown}: {_reason(exc)}") from None
        except asyncssh.SFTPError as exc:
            if exclusive and await _lexists(sftp, write_path):
                raise RemoteFileError(shown, EXISTS_REFUSED) from None
            raise await self._explain(sftp, remote_path, shown, exc) from None
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(f"connection to {self.target} lost while writing {shown}: {_reason(exc)}") from None
        try:
            try:
                # then the mode, and on the VM's disk before the step counts as done (a reset right after it cannot
                # lose the file); a file of one block goes in one round trip with both, a larger one in two
                settle = mode if not self.windows else None
                size = data.stat().st_size if isinstance(data, Path) else len(data)
                if size <= block:
                    chunk = data.read_bytes() if isinstance(data, Path) else data
                    await _write_chmod_fsync(f, chunk, settle, on_progress)
                elif isinstance(data, Path):
                    with data.open("rb") as src:
                        await _pipelined_write(f, src, block, size, on_progress)
                    await _write_chmod_fsync(f, None, settle)
                else:
                    await _pipelined_write(f, io.BytesIO(data), block, size, on_progress)
                    await _write_chmod_fsync(f, None, settle)
            except _SFTP_LOST:
                raise
            except asyncssh.SFTPError as exc:
                size = data.stat().st_size if isinstance(data, Path) else len(data)
                reason = await _write_failure(f, size, exc)
                with contextlib.suppress(asyncssh.Error, OSError):
                    await f.close()
                # never leave a truncated file that looks like the real one
                removed = await _remove_regular_file(sftp, write_path)
                raise RemoteFileError(shown, reason + ("; the partial file was removed" if removed else "")) from None
            await f.close()
            if write_path != remote_path:
                try:
                    await sftp.posix_rename(write_path, remote_path)
                except asyncssh.SFTPError:
                    await _remove_regular_file(sftp, write_path)
                    raise
        except _SFTP_LOST as exc:  # SFTP's own word for a dropped connection (a reboot): the step rides it out
            raise ConnectionLost(f"connection to {self.target} lost while writing {shown}: {_reason(exc)}") from None
        except asyncssh.SFTPError as exc:
            raise await self._explain(sftp, remote_path, shown, exc) from None
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionLost(f"connection to {self.target} lost while writing {shown}: {_reason(exc)}") from None
        except asyncio.CancelledError:  # an interrupt or the deadline: the partial file goes too (best effort)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(_discard(f, sftp, write_path)), CANCELLED_UPLOAD_CLEANUP)
            raise

    async def _write_path(self, sftp: asyncssh.SFTPClient, remote_path: str, shown: str, exclusive: bool) -> str:
        """Where the bytes go, never through a symlink. ``exclusive`` (aibx's temporary files): the path itself,
        created exclusively (SFTP's ``FXF_EXCL``, which fails on anything there and follows nothing); a plain file
        there is removed first only when this transport began writing it before (an attempt cut short by a
        restart). Linux: a link at the path is refused; the bytes go to a new file beside it (an exclusive
        create) renamed over the path, which replaces whatever was planted there meanwhile instead of following
        it. Windows (OpenSSH): a link at the path is refused, and the path is written."""
        if exclusive:
            if remote_path in self._exclusive_tried:
                await _remove_regular_file(sftp, remote_path)
            self._exclusive_tried.add(remote_path)
            return remote_path
        await self._refuse_a_symlink(sftp, remote_path, shown)
        if self.windows:
            return remote_path
        write_path = self._partial_path(remote_path)
        await _remove_regular_file(sftp, write_path)
        return write_path

    def _partial_path(self, remote_path: str) -> str:
        """Where an upload writes before the rename: random for this run, the same for every attempt (an upload a
        reboot cut short leaves its partial file under this name, removed before the next attempt)."""
        folder, name = posixpath.split(remote_path)
        return posixpath.join(folder, f".{name[:100]}.aibx-{self._upload_token}")

    async def _put_through_agent(
        self, data: bytes | Path, remote_path: str, mode: int | None, on_progress: ProgressCallback | None
    ) -> bool:
        """A small file in one round trip through the agent, written as over SFTP (never through a symlink, into a
        new file beside it, given its mode, synced, renamed over the path) instead of SFTP's six round trips. False
        when the agent cannot take it or the command fails (a symlink, a missing folder, a full disk, ...): SFTP
        then writes it or says exactly what is wrong."""
        if self.windows or "\n" in remote_path:
            return False
        payload = ssh_agent.small_file(data)
        if payload is None:
            return False
        command = ssh_agent.put_command(remote_path, self._partial_path(remote_path), mode)
        agent = await self._ready_agent(command)
        if agent is None:
            return False
        async with agent.lock:
            code = await self._run_on_agent(agent, command, payload, None, None)
        if code != 0:
            return False
        if on_progress is not None and payload:
            on_progress(len(payload), len(payload))
        return True

    async def _refuse_a_symlink(self, sftp: asyncssh.SFTPClient, path: str, shown: str) -> None:
        try:
            attrs = await sftp.lstat(path)
        except (asyncssh.SFTPError, asyncssh.Error, OSError):
            return  # nothing there (or nothing to tell): the write itself says what is wrong
        if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK:
            target = ""
            with contextlib.suppress(asyncssh.Error, OSError):
                target = f" (to {await sftp.readlink(path)})"
            raise RemoteFileError(
                shown,
                f"is a symbolic link{target}; aibx does not write through one: name the file it points to as the "
                "destination if that is the one you mean",
            )

    async def _explain(
        self, sftp: asyncssh.SFTPClient, path: str, shown: str, exc: asyncssh.SFTPError
    ) -> RemoteFileError:
        """Turn the server's terse status into what went wrong, checking the parent and the path itself (``path``
        as SFTP takes it, ``shown`` as the template wrote it)."""
        parent = posixpath.dirname(path) or "/"
        parent_shown = parent.replace("/", "\\") if self.windows else parent
        with contextlib.suppress(asyncssh.SFTPError):
            if await sftp.isdir(path):
                return RemoteFileError(shown, "is a directory; the destination must name the file")
        try:
            attrs = await sftp.stat(parent)
        except asyncssh.SFTPNoSuchFile:
            return RemoteFileError(shown, f"parent directory {parent_shown} does not exist")
        except asyncssh.SFTPError:
            attrs = None
        if attrs is not None and attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
            return RemoteFileError(shown, f"{parent_shown} is not a directory")
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return RemoteFileError(shown, "permission denied")
        return RemoteFileError(shown, exc.reason or type(exc).__name__)

    async def get(self, remote_path: str) -> bytes:
        self._sftp_busy += 1
        try:
            return await self._get_over_sftp(remote_path)
        finally:
            self._sftp_busy -= 1

    async def _get_over_sftp(self, remote_path: str) -> bytes:
        sftp = await self._sftp_client()
        try:
            async with sftp.open(self._sftp_path(remote_path), "rb") as f:
                return await f.read()
        except asyncssh.SFTPError as exc:
            raise RemoteFileError(remote_path, exc.reason) from None

    async def close(self) -> None:
        self._drop_background()
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(conn.wait_closed(), 5)


async def _banner_ready(sock: socket.socket, timeout: float) -> bool:
    """Whether the server starts talking (its SSH banner) within ``timeout``; the bytes stay for asyncssh. False
    when it stays silent or closes the connection (a port forward whose VM is down)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await asyncio.wait_for(readable, timeout)
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(sock.fileno())
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


async def _pipelined_write(
    f: asyncssh.SFTPClientFile,
    src: BinaryIO,
    block: int,
    total: int,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Write a local file with up to UPLOAD_DEPTH SFTP requests in flight, reading it block by block (asyncssh's
    own writer takes a whole buffer and waits for all its requests before the next one). ``on_progress`` hears
    the bytes the server has acknowledged."""
    pending: set[asyncio.Future[int]] = set()
    sizes: dict[asyncio.Future[int], int] = {}
    offset = 0
    written = 0

    def acknowledged(done: set[asyncio.Future[int]]) -> None:
        nonlocal written
        errors = [e for e in (finished.exception() for finished in done) if e is not None]  # each one retrieved
        if errors:
            raise errors[0]
        written += sum(sizes.pop(finished) for finished in done)
        if on_progress is not None and done:
            on_progress(written, total)

    try:
        while chunk := src.read(block):
            if len(pending) >= UPLOAD_DEPTH:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                acknowledged(done)
            request: asyncio.Future[int] = asyncio.ensure_future(f.write(chunk, offset))
            sizes[request] = len(chunk)
            pending.add(request)
            offset += len(chunk)
        if pending:
            done, _ = await asyncio.wait(pending)
            acknowledged(done)
        pending = set()
    except asyncio.CancelledError:
        for request in pending:
            request.cancel()
        raise
    except Exception:
        # a write failed (a full disk fails them all): the other requests in flight end with the server's answer,
        # retrieved here (asyncssh logs an error nobody retrieved as a traceback); bounded, should one hang
        if pending:
            _, late = await asyncio.wait(pending, timeout=PENDING_WRITES_GRACE)
            for request in late:
                request.cancel()
            for request in pending - late:
                if not request.cancelled():
                    request.exception()
        raise


async def _write_chmod_fsync(
    f: asyncssh.SFTPClientFile, chunk: bytes | None, mode: int | None, on_progress: ProgressCallback | None = None
) -> None:
    """Write ``chunk`` at offset 0 (when given), set the mode (when given) and fsync: every request sent before any
    answer comes back (the server takes them in order), so one round trip. The first error is raised (a server
    without fsync@openssh.com is fine)."""
    requests: list[asyncio.Future[object]] = []
    if chunk:
        requests.append(asyncio.ensure_future(f.write(chunk, 0)))
    if mode is not None:
        requests.append(asyncio.ensure_future(f.chmod(mode)))
    requests.append(asyncio.ensure_future(f.fsync()))  # tasks start in the order they were made
    for outcome in await asyncio.gather(*requests, return_exceptions=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncssh.SFTPOpUnsupported):
            raise outcome
    if chunk and on_progress is not None:
        on_progress(len(chunk), len(chunk))


# what asyncssh's SFTP client raises when the connection under it is gone (not a refusal by the server)
_SFTP_LOST = (asyncssh.SFTPNoConnection, asyncssh.SFTPConnectionLost)


async def _write_failure(f: asyncssh.SFTPClientFile, size: int, exc: asyncssh.SFTPError) -> str:
    """Why writing a file of ``size`` bytes failed. OpenSSH's SFTP server reports a full disk (ENOSPC) as a bare
    "Failure": the file system's free space (statvfs@openssh.com, where the server offers it) tells."""
    reason = exc.reason or type(exc).__name__
    with contextlib.suppress(asyncssh.Error, OSError):
        attrs = await f.statvfs()
        free = attrs.bavail * attrs.frsize
        if free < size:
            return f"no space left on the device ({_bytes(size)} to write, {_bytes(free)} free)"
    return reason


async def _discard(f: asyncssh.SFTPClientFile, sftp: asyncssh.SFTPClient, path: str) -> None:
    with contextlib.suppress(asyncssh.Error, OSError):
        await f.close()
    await _remove_regular_file(sftp, path)


async def _lexists(sftp: asyncssh.SFTPClient, path: str) -> bool:
    """Whether anything (a file, a directory, a link, dangling or not) is at ``path``."""
    try:
        await sftp.lstat(path)
    except (asyncssh.Error, OSError):
        return False
    return True


async def _remove_regular_file(sftp: asyncssh.SFTPClient, path: str) -> bool:
    """Remove ``path`` if it is a regular file (never a device such as /dev/full); True when it was removed."""
    try:
        attrs = await sftp.lstat(path)
        if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
            return False
        await sftp.remove(path)
    except (asyncssh.Error, OSError):
        return False
    return True


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__
