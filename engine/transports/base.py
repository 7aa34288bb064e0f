"""The transport contract: how the runner reaches a VM. A transport knows nothing of AIB.

Implementations: ``ssh`` (asyncssh), ``winrm`` (pywinrm in a worker thread), ``local`` (subprocess).
All methods are coroutines; none prints anything.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# on_output(stream, chunk): stream is "stdout" or "stderr"
OutputCallback = Callable[[str, bytes], None]


class TransportError(Exception):
    """Base of every error a transport raises; messages never contain secrets."""


@dataclass
class ConnectError(TransportError):
    """The VM cannot be reached or does not let us in.

    kind: "refused", "timeout", "dns", "unreachable", "auth", "hostkey", "tls" or "protocol"."""

    kind: str
    target: str
    detail: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"cannot connect to {self.target}: {self.detail}"
        return f"{text}\nhint: {self.hint}" if self.hint else text


class ConnectionLost(TransportError):
    """The connection dropped before the operation finished (a reboot, a network failure)."""


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
    async def put(self, data: bytes | Path, remote_path: str, mode: int | None = None) -> None:
        """Write a file on the VM; the parent directory must exist (RemoteFileError otherwise)."""

    @abc.abstractmethod
    async def get(self, remote_path: str) -> bytes:
        """Read a file from the VM."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; safe to call twice or after a ConnectionLost."""

    async def boot_identity(self) -> str | None:
        """Something that changes at every boot of the VM and only then (Linux: the kernel's boot_id; Windows:
        LastBootUpTime), or None when the transport cannot tell. The runner records it at connect; after a
        dropped connection a different value confirms a reboot."""
        return None
