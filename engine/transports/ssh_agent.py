"""One long-lived SSH channel to a small POSIX ``sh`` agent on the VM (``aibx/data/aibx-agent.sh``): every command
of a run costs one round trip (the request out, the output and exit status back) instead of an exec channel's
three (open, exec, data and close).

What a command sees is what an exec channel gives it: a fresh ``$SHELL -c COMMAND`` process with the session's
environment, its stdin bytes then end of file, and stdout and stderr streaming back live. The end of a command is
marked on both streams with a nonce that is new for every command and known only to the transport. The agent
runs one command at a time; the transport uses an exec channel for anything the agent cannot take (a command on
more than one line, a second command while one runs, a Windows VM) and whenever the agent could not start.

Stopping a command (timeout, interrupt) signals the agent's process group (the command with it) and retires the
agent: later commands go over exec channels until the next connection. A dropped connection drops the agent
with it; ``reconnect`` starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import signal
from importlib import resources
from pathlib import Path

from aibx.engine.transports.asyncssh_import import asyncssh
from aibx.engine.transports.base import OutputCallback

READ_CHUNK = 64 * 1024
READY = b"aibx-agent ready 1"
# how long the agent may take to say it is ready (it waits for nothing but a process start)
START_SECONDS = 5.0
# what a login shell may print before the agent starts (a chatty .bashrc), at most
PREAMBLE_LIMIT = 64 * 1024
# stdin larger than this goes over an exec channel (streamed) rather than through the agent (held in memory)
STDIN_LIMIT = 16 * 1024 * 1024
# a file up to this size goes up through the agent (one round trip) rather than over SFTP (three, and streamed)
PUT_LIMIT = 256 * 1024
_STATUS = re.compile(rb"-?\d+")


def enabled() -> bool:
    """``AIBX_SSH_AGENT=off`` (or 0, no, false) runs every command over its own exec channel."""
    return os.environ.get("AIBX_SSH_AGENT", "on").strip().lower() not in ("off", "0", "no", "false")


def agent_command(temp_name: str) -> str:
    script = resources.files("aibx.data").joinpath("aibx-agent.sh").read_text()
    return f"exec /bin/sh -c {shlex.quote(script)} aibx-agent {shlex.quote(temp_name)}"


def accepts(command: str) -> bool:
    return "\n" not in command and "\0" not in command


class _EndScanner:
    """Passes a stream's bytes on until ``token``; holds back only a tail that could be the token's start."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.pending = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """(bytes to pass on, what came after the token, or None while the token has not come)."""
        buf = self.pending + data
        at = buf.find(self.token)
        if at >= 0:
            self.pending = b""
            return buf[:at], buf[at + len(self.token) :]
        keep = 0
        for k in range(min(len(self.token) - 1, len(buf)), 0, -1):
            if buf.endswith(self.token[:k]):
                keep = k
                break
        self.pending = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], None


class AgentGone(Exception):
    """The agent's channel ended before the command's end. ``started``: whether the agent had said it started
    the command; ``code``: what the command would have reported (the agent and its process group killed by a
    signal: 128 + N), or None when the connection itself dropped."""

    def __init__(self, started: bool, code: int | None, reason: str = "") -> None:
        super().__init__(started, code, reason)
        self.started = started
        self.code = code
        self.reason = reason  # why the connection dropped, when asyncssh said


class _Stream:
    """One of the agent's output streams, read across commands (bytes after a token wait for the next read)."""

    def __init__(self, reader: asyncssh.SSHReader, name: str) -> None:
        self.reader = reader
        self.name = name
        self.left = b""

    async def until(self, token: bytes, on_output: OutputCallback | None) -> bool:
        """Pass the bytes on until ``token``; False when the stream ends first."""
        scanner = _EndScanner(token)
        data, self.left = self.left, b""
        while True:
            if data:
                out, rest = scanner.feed(data)
                if out and on_output:
                    on_output(self.name, out)
                if rest is not None:
                    self.left = rest
                    return True
            data = await self.reader.read(READ_CHUNK)
            if not data:
                if scanner.pending and on_output:
                    on_output(self.name, scanner.pending)
                return False

    async def line(self) -> bytes | None:
        while b"\n" not in self.left:
            more = await self.reader.read(READ_CHUNK)
            if not more:
                return None
            self.left += more
        line, _, self.left = self.left.partition(b"\n")
        return line


class Agent:
    def __init__(self, process: asyncssh.SSHClientProcess, stop_grace: float) -> None:
        self.process = process
        self.stop_grace = stop_grace
        self.lock = asyncio.Lock()
        self.usable = True
        self.stdout = _Stream(process.stdout, "stdout")
        self.stderr = _Stream(process.stderr, "stderr")

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection, stop_grace: float) -> Agent | None:
        """Start the agent; None when it cannot run on this VM (the caller then uses exec channels)."""
        temp_name = f"/tmp/aibx-agent-{secrets.token_hex(8)}"
        try:
            process = await conn.create_process(agent_command(temp_name), encoding=None)
        except (asyncssh.Error, OSError):
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_SECONDS
        seen = 0
        try:
            while seen <= PREAMBLE_LIMIT:
                line = await asyncio.wait_for(process.stdout.readline(), max(deadline - loop.time(), 0.001))
                if not line:
                    break
                if line.rstrip(b"\n") == READY:
                    return cls(process, stop_grace)
                seen += len(line)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pass
        process.close()
        return None

    async def run(self, command: str, stdin: bytes, on_output: OutputCallback | None) -> int:
        """Run one command; raise AgentGone when the agent's channel ends first. The agent marks the start on
        stdout ("<nonce><"), the end on stderr ("<nonce>>") and on stdout ("<nonce>><exit status>")."""
        nonce = secrets.token_hex(16).encode()
        started = False
        try:
            self.process.stdin.write(b"%s %d\n%s\n%s" % (nonce, len(stdin), command.encode(), stdin))
        except (asyncssh.Error, OSError):
            self.usable = False
            raise AgentGone(False, None) from None

        async def stdout() -> int | None:
            nonlocal started
            if not await self.stdout.until(nonce + b"<\n", on_output):
                return None
            started = True
            if not await self.stdout.until(nonce + b">", on_output):
                return None
            status = await self.stdout.line()
            return int(status) if status is not None and _STATUS.fullmatch(status) else None

        reason = ""
        try:
            status, complete = await asyncio.gather(stdout(), self.stderr.until(nonce + b">\n", on_output))
        except (asyncssh.Error, OSError) as exc:  # the connection dropped (a read raises rather than ending)
            status, complete = None, False
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        if status is None or not complete:
            self.usable = False
            raise AgentGone(started, self._exit_code() if started else None, reason)
        return status

    def _exit_code(self) -> int | None:
        process = self.process
        if process.exit_signal:
            try:
                return 128 + signal.Signals[f"SIG{process.exit_signal[0]}"].value
            except KeyError:
                return 255
        if process.exit_status is not None and process.exit_status >= 0:
            return process.exit_status
        return None

    async def stop(self) -> None:
        """SIGTERM to the agent's process group (the command's too), SIGKILL after the grace period, then close
        the channel: the agent is retired."""
        self.usable = False
        process = self.process
        for sig, wait in (("TERM", self.stop_grace), ("KILL", 3.0)):
            if process.exit_status is not None or process.exit_signal is not None:
                break
            try:
                process.send_signal(sig)
            except (OSError, asyncssh.Error):
                break
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
                await asyncio.shield(asyncio.wait_for(process.wait_closed(), wait))
        process.close()

    def close(self) -> None:
        self.usable = False
        with contextlib.suppress(asyncssh.Error, OSError):
            self.process.stdin.write_eof()
        self.process.close()


def put_command(path: str, partial: str, mode: int | None) -> str:
    """The command that writes its stdin to ``path`` as the SFTP upload does: nothing is written through a
    symlink (a link or a directory at ``path`` fails the command); the bytes go to ``partial``, created new and
    exclusively (a regular file an earlier attempt left there is removed first), with the session's umask or, with
    ``mode``, private and then given ``mode``; synced to disk, then renamed over ``path``. On failure the
    transport writes the file over SFTP, which says what is wrong."""
    f, t = '"$f"', '"$t"'
    create = f"(set -C; exec cat >{t})" if mode is None else f"(umask 077; set -C; exec cat >{t}) && chmod {mode:o} {t}"
    # stopped (an interrupt): no partial file is left, as SFTP's cancelled upload removes its own
    traps = "".join(f"trap 'rm -f {t}; exit {128 + n}' {sig}; " for sig, n in (("HUP", 1), ("INT", 2), ("TERM", 15)))
    return (
        f"f={shlex.quote(path)}; t={shlex.quote(partial)}; "
        f"if [ -h {f} ] || [ -d {f} ]; then exit 3; fi; "
        f"if [ -f {t} ] && [ ! -h {t} ]; then rm -f {t}; fi; {traps}"
        f"{create} && sync -- {t} && mv -f -T -- {t} {f} || "
        f"{{ rc=$?; [ -f {t} ] && [ ! -h {t} ] && rm -f {t}; exit $rc; }}"
    )


def small_file(data: bytes | Path) -> bytes | None:
    """The bytes of ``data`` when it is small enough for the agent (PUT_LIMIT), else None."""
    if isinstance(data, bytes):
        return data if len(data) <= PUT_LIMIT else None
    try:
        return data.read_bytes() if data.stat().st_size <= PUT_LIMIT else None
    except OSError:
        return None


def read_stdin(stdin: bytes | Path | None) -> bytes | None:
    """The bytes to send through the agent, or None when they are better streamed over an exec channel."""
    if stdin is None:
        return b""
    if isinstance(stdin, Path):
        try:
            if stdin.stat().st_size > STDIN_LIMIT:
                return None
            return stdin.read_bytes()
        except OSError:
            return None
    return stdin if len(stdin) <= STDIN_LIMIT else None
