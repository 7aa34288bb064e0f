"""A loopback TCP proxy that adds a fixed delay each way, and counts round trips.

``LatencyProxy(upstream_port, delay=0.010)`` listens on a kernel-assigned port of 127.0.0.1 and forwards every
connection to ``127.0.0.1:upstream_port``; every chunk it reads, in either direction, is written on ``delay``
seconds later (order kept), so a round trip through it takes ``2 * delay`` on top of loopback: a VM in a nearby
region, without kernel modules (``netem`` is not available here) and without leaving loopback.

Round trips are counted the way latency sees them: a *turnaround* is the moment the server starts answering after
the client spoke (server-bound bytes, then client-bound bytes, on one connection). A client that waits for every
reply pays one delay pair per turnaround; a client that pipelines pays fewer. ``round_trips`` is the total over all
connections; ``snapshot()`` and differences of it measure one job.

The proxy runs its own event loop in a daemon thread (``start()``/``close()``, or ``with``), so a benchmark or a
test can drive other processes against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
READ_CHUNK = 256 * 1024


@dataclass
class ProxyCounts:
    connections: int = 0
    round_trips: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client

    def __sub__(self, other: ProxyCounts) -> ProxyCounts:
        return ProxyCounts(
            self.connections - other.connections,
            self.round_trips - other.round_trips,
            self.bytes_up - other.bytes_up,
            self.bytes_down - other.bytes_down,
        )


@dataclass(eq=False)
class _Link:
    """One proxied connection: which way bytes went last (for counting turnarounds)."""

    last: str = ""  # "up" or "down"
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class LatencyProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        delay: float = 0.010,
        upstream_host: str = LOOPBACK,
        host: str = LOOPBACK,
    ) -> None:
        if not host.startswith("127.") or not upstream_host.startswith("127."):
            raise ValueError("the latency proxy works on loopback only")
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.host = host
        self.port = 0
        self.counts = ProxyCounts()
        # (time.monotonic(), "up" or "down", bytes) of every chunk, when ``trace`` is set: where the round trips go
        self.trace: list[tuple[float, str, int]] | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._ready = threading.Event()

    # ------------------------------------------------------------------------------------------ control
    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(target=self._serve, name="latency-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        return self

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self) -> ProxyCounts:
        with self._lock:
            return ProxyCounts(**vars(self.counts))

    @property
    def round_trips(self) -> int:
        return self.snapshot().round_trips

    # ------------------------------------------------------------------------------------------ the loop
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, sock=sock))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            for task in link.tasks:
                task.cancel()
        await asyncio.sleep(0)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        _nodelay(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        _nodelay(server_w)
        with self._lock:
            self.counts.connections += 1
        link = _Link()
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pipe(link, client_r, server_w, "up")),
            asyncio.ensure_future(self._pipe(link, server_r, client_w, "down")),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for w in (client_w, server_w):
                w.close()

    async def _pipe(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str) -> None:
        """Read as bytes come; write each chunk ``delay`` seconds after it came, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                with contextlib.suppress(OSError):
                    await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    chunk = await reader.read(READ_CHUNK)
                except OSError:
                    chunk = b""
                now = time.monotonic()
                if chunk:
                    with self._lock:
                        if way == "down" and link.last == "up":
                            self.counts.round_trips += 1
                        link.last = way
                        if self.trace is not None:
                            self.trace.append((now, way, len(chunk)))
                        if way == "up":
                            self.counts.bytes_up += len(chunk)
                        else:
                            self.counts.bytes_down += len(chunk)
                queue.put_nowait((now + self.delay, chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
