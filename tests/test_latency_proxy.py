"""The latency proxy of the benchmarks (tests/support/latency_proxy.py): bytes pass unchanged both ways, and a
round trip is counted each time the server answers what the client sent (requests in flight together count once).
Counted, not timed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.latency_proxy import LatencyProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A line echo server on loopback: each line back as soon as it is read."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    conn.sendall(line)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def read_lines(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(4096)
        assert chunk, "the proxy closed the connection"
        data += chunk
    return data


def test_one_round_trip_per_request_and_one_for_requests_in_flight_together(echo_port: int) -> None:
    with LatencyProxy(echo_port, delay=0.002) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        for i in range(3):  # one request at a time: three round trips
            s.sendall(b"ping %d\n" % i)
            assert read_lines(s, 1) == b"ping %d\n" % i
        s.sendall(b"a\nb\nc\n")  # pipelined: one round trip
        assert read_lines(s, 3) == b"a\nb\nc\n"
        big = b"x" * 300_000 + b"\n"  # more than one read: still unchanged, still one round trip
        s.sendall(big)
        assert read_lines(s, 1) == big
        counts = proxy.snapshot()
    assert counts.connections == 1
    assert counts.round_trips == 5
    assert counts.bytes_up == counts.bytes_down == 3 * 7 + 6 + len(big)


def test_the_proxy_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy(22, upstream_host="10.0.0.1")
