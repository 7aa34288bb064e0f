"""The local transport: the VM is this machine (``--host local``). Commands run with /bin/sh -c in their own
process group, so stopping one stops everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import stat
from pathlib import Path

from aibx.engine.transports import ConnectOptions, Target
from aibx.engine.transports.base import (
    EXISTS_REFUSED,
    OutputCallback,
    ProgressCallback,
    RemoteFileError,
    Transport,
    TransportError,
)

CHUNK = 64 * 1024
COPY_BLOCK = 1024 * 1024
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
SHELL = "/bin/sh"
SYMLINK_REFUSED = (
    "is a symbolic link (to {target}); aibx does not write through one: name the file it points to as the "
    "destination if that is the one you mean"
)


class LocalTransport(Transport):
    def __init__(self, target: Target | None = None, options: ConnectOptions | None = None) -> None:
        self.target = "local"
        self.options = options or ConnectOptions()

    async def connect(self) -> None:
        return None

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | Path | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        try:
            process = await asyncio.create_subprocess_exec(
                SHELL,
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:  # no /bin/sh (a broken or minimal system), or no processes left
            raise TransportError(
                f"cannot start {SHELL} on this machine: {exc.strerror or exc}; local runs every command with it"
            ) from None
        try:
            await asyncio.wait_for(self._communicate(process, stdin, on_output), timeout)
        except asyncio.TimeoutError:
            await self._stop(process)
            raise TimeoutError(f"command still running after {timeout:g} s") from None
        except BaseException:  # cancellation (interrupt) or a failing callback: stop what runs
            await self._stop(process)
            raise
        assert process.returncode is not None
        code = process.returncode
        return 128 - code if code < 0 else code

    async def _communicate(
        self, process: asyncio.subprocess.Process, stdin: bytes | Path | None, on_output: OutputCallback | None
    ) -> None:
        assert process.stdin and process.stdout and process.stderr

        async def feed() -> None:
            assert process.stdin
            try:
                if isinstance(stdin, Path):
                    with stdin.open("rb") as src:
                        while chunk := src.read(CHUNK):
                            process.stdin.write(chunk)
                            await process.stdin.drain()
                elif stdin:
                    process.stdin.write(stdin)
                    await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command exited without reading all of it; its exit code tells
            finally:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    process.stdin.close()

        async def pump(reader: asyncio.StreamReader, stream: str) -> None:
            while chunk := await reader.read(CHUNK):
                if on_output:
                    on_output(stream, chunk)

        await asyncio.gather(feed(), pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        await process.wait()

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the command's process group, SIGKILL after the grace period."""
        for sig, wait in ((signal.SIGTERM, self.options.stop_grace), (signal.SIGKILL, 5.0)):
            if process.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.shield(asyncio.wait_for(process.wait(), wait))
        with contextlib.suppress(ProcessLookupError):  # what the group left behind
            os.killpg(process.pid, signal.SIGKILL)

    async def put(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        exclusive: bool = False,
    ) -> None:
        path = Path(remote_path)
        parent = path.parent
        if not parent.is_dir():
            reason = "is not a directory" if parent.exists() else "does not exist"
            raise RemoteFileError(remote_path, f"parent directory {parent} {reason}")
        if path.is_symlink():  # (and O_NOFOLLOW below, should one be planted meanwhile)
            raise RemoteFileError(remote_path, SYMLINK_REFUSED.format(target=os.readlink(path)))
        if path.is_dir():
            raise RemoteFileError(remote_path, "is a directory; the destination must name the file")
        try:
            progress: ProgressCallback | None = None
            if on_progress is not None:
                loop, report = asyncio.get_running_loop(), on_progress

                def progress(done: int, total: int) -> None:
                    loop.call_soon_threadsafe(report, done, total)

            await asyncio.to_thread(_write_file, data, path, progress, exclusive)
            if mode is not None:
                path.chmod(mode)
        except _PartialWrite as exc:
            raise RemoteFileError(remote_path, f"{exc.reason}; the partial file was removed") from None
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise RemoteFileError(remote_path, EXISTS_REFUSED) from None
            if exc.errno == errno.ELOOP:
                raise RemoteFileError(remote_path, SYMLINK_REFUSED.format(target="?")) from None
            raise RemoteFileError(remote_path, exc.strerror or str(exc)) from None

    async def get(self, remote_path: str) -> bytes:
        try:
            return await asyncio.to_thread(Path(remote_path).read_bytes)
        except OSError as exc:
            raise RemoteFileError(remote_path, exc.strerror or str(exc)) from None

    async def close(self) -> None:
        return None

    async def boot_identity(self) -> str | None:
        try:
            return BOOT_ID.read_text().strip() or None
        except OSError:
            return None


class _PartialWrite(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _write_file(
    data: bytes | Path, path: Path, on_progress: ProgressCallback | None = None, exclusive: bool = False
) -> None:
    """Write ``path``; if that fails once it is open (a full disk), remove it rather than leave a truncated file
    that looks like the real one (a regular file only: never a device such as /dev/full). Failing to open it
    changes nothing. ``on_progress`` hears (from this worker thread) how far a copy of a file got; ``exclusive``:
    created where nothing is (O_EXCL)."""
    how = os.O_EXCL if exclusive else os.O_TRUNC
    dst = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | how | os.O_NOFOLLOW, 0o666), "wb")
    regular = stat.S_ISREG(os.fstat(dst.fileno()).st_mode)
    try:
        with dst:
            if isinstance(data, Path):
                with data.open("rb") as src:
                    total = os.fstat(src.fileno()).st_size
                    done = 0
                    while block := src.read(COPY_BLOCK):
                        dst.write(block)
                        done += len(block)
                        if on_progress is not None:
                            on_progress(done, total)
            else:
                dst.write(data)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if not regular:
            raise
        with contextlib.suppress(OSError):
            path.unlink()
        raise _PartialWrite(reason) from None
