"""The transport contract: how the runner reaches a VM. A transport knows nothing of AIB.

Implementations: ``ssh`` (asyncssh), ``winrm`` (pywinrm in a worker thread), ``local`` (subprocess).
All methods are coroutines; none prints anything.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibx import errors

# on_output(stream, chunk): stream is "stdout" or "stderr"
OutputCallback = Callable[[str, bytes], None]
# on_progress(bytes written so far, total bytes): called on the event loop's thread as a file goes up
ProgressCallback = Callable[[int, int], None]
# why an exclusive write (``put(..., exclusive=True)``: aibx's own temporary files) was refused
EXISTS_REFUSED = (
    "already exists; aibx creates its temporary files only where nothing is (another user of the VM may have put "
    "a file or link there): nothing was written"
)


class TransportError(Exception):
    """Base of every error a transport raises; messages never contain secrets."""


@dataclass
class ConnectError(TransportError, errors.ConnectFailure):
    """The VM cannot be reached or does not let us in.

    kind: "refused", "timeout", "dns", "unreachable", "auth", "hostkey", "tls" or "protocol". ``ConnectError(kind,
    ...)`` is an instance of the subclass for its kind (``HostKeyError``, ``AuthError``, ``TlsError``): those the
    VM answers with but does not let us in (``aibx.errors.NotLetIn``), where waiting does not help."""

    kind: str
    target: str
    detail: str
    hint: str = ""

    def __new__(cls, kind: str = "", *args: object, **kwargs: object) -> ConnectError:
        if cls is ConnectError:
            cls = _BY_KIND.get(kind, ConnectError)
        return super().__new__(cls)

    def __str__(self) -> str:
        text = f"cannot connect to {self.target}: {self.detail}"
        return f"{text}\nhint: {self.hint}" if self.hint else text


class HostKeyError(ConnectError, errors.HostKeyRejected):
    pass


class AuthError(ConnectError, errors.AuthFailed):
    pass


class TlsError(ConnectError, errors.TlsFailed):
    pass


_BY_KIND: dict[str, type[ConnectError]] = {"hostkey": HostKeyError, "auth": AuthError, "tls": TlsError}


class ConnectionLost(TransportError):
    """The connection dropped before the operation finished (a reboot, a network failure).

    ``command_started`` is False when ``run`` failed before the command could have started on the VM (the channel
    or the request never got there): running it again after reconnecting runs it once, not twice."""

    def __init__(self, message: str, *, command_started: bool = True) -> None:
        super().__init__(message)
        self.command_started = command_started


@dataclass
class RemoteFileError(TransportError):
    """A file operation failed on the VM: missing parent directory, permission denied, disk full, ..."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class Transport(abc.ABC):
    #: how the target is shown to users: "ssh://user@host:22", "winrms://host:5986", "local"
    target: str
    #: what answers on the VM, for messages such as "waiting for SSH"
    service: str = "the VM"
    #: what the user should know about the connection once it is made (a host key trusted on first use, a TLS
    #: certificate not verified); the runner shows it as a warning
    connect_note: str = ""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection (bounded by the transport's connect timeout); raise ConnectError."""

    @abc.abstractmethod
    async def run(
        self,
        command: str,
        *,
        stdin: bytes | Path | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run ``command``, stream its output, return its exit code.

        Raise ConnectionLost if the connection drops first, TimeoutError after ``timeout`` seconds. Whenever the
        call does not end by itself (``timeout``, or the calling task is cancelled), the remote process is stopped
        before the exception propagates. A process killed by a signal returns 128 + the signal number, as a
        shell reports it."""

    @abc.abstractmethod
    async def put(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        exclusive: bool = False,
    ) -> None:
        """Write a file on the VM; the parent directory must exist (RemoteFileError otherwise). ``on_progress``
        hears how many bytes are written as they go (the runner turns that into progress events). ``exclusive``
        (aibx's own temporary files): the file is created where nothing is, never through anything already at the
        path (RemoteFileError if something is there); a transport may write it again after a dropped connection."""

    @abc.abstractmethod
    async def get(self, remote_path: str) -> bytes:
        """Read a file from the VM."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; safe to call twice or after a ConnectionLost."""

    async def reconnect(self) -> None:
        """Connect again after ConnectionLost (the VM rebooted, the network failed): the same VM with the same
        credentials, and a transport that checks a server identity (an SSH host key) accepts only the one it
        accepted at the first connect. One attempt, bounded like ``connect``; raise ConnectError."""
        await self.close()
        await self.connect()

    async def boot_identity(self) -> str | None:
        """Something that changes at every boot of the VM and only then (Linux: the kernel's boot_id; Windows:
        LastBootUpTime), or None when the transport cannot tell. The runner records it at connect; after a
        dropped connection a different value confirms a reboot."""
        return None

    async def shutting_down(self) -> bool | None:
        """Whether the VM is on its way down (a reboot or power-off under way: systemd's "stopping" state), or
        None when the transport cannot tell. Asked when a connection came back without a new boot, to tell a
        VM that is still going down from one that never restarted."""
        return None
