"""Keeping the test process off the outside network: only loopback (127.0.0.0/8, ::1) and the address range of the
network namespaces the tests create themselves (tests/support/netns.py) may be resolved or connected to.

``NetworkGuard`` replaces the in-process entry points (``socket.getaddrinfo`` and friends, ``socket.connect`` /
``connect_ex`` / ``sendto``) while a test runs. A lookup of any other name, or a connection to any other address,
raises ``OutsideNetworkError`` at once (a ``BaseException``: no ``except Exception`` or retry loop swallows it) and
is remembered, so that the test fails naming the address even where the error itself was caught. Subprocesses
(sshd, ssh, packer, curl run by a script) are out of its reach.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from tests.support.netns import SUPERNET

ALLOWED_NETWORKS = [
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network(SUPERNET),
]
ALLOWED_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class OutsideNetworkError(BaseException):
    """A test tried to look up or reach something outside loopback."""


def _allowed_address(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    text = host.split("%", 1)[0]  # fe80::1%eth0
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in ALLOWED_NETWORKS)


def _allowed_host(host: object) -> bool:
    """A name or address a test may look up: loopback or test-range literals, ``localhost``, or none (a wildcard)."""
    if host is None or host == "" or host == b"":
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return isinstance(host, str) and (host.lower().rstrip(".") in ALLOWED_NAMES or _allowed_address(host))


class NetworkGuard:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self._saved: list[tuple[object, str, Any]] = []

    def _refuse(self, what: str) -> OutsideNetworkError:
        message = f"a test tried to {what}: tests must only touch loopback (tests/support/network_guard.py)"
        self.violations.append(message)
        return OutsideNetworkError(message)

    def _patch(self, owner: object, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self._saved.append((owner, name, original))
        setattr(owner, name, make(original))

    def install(self) -> NetworkGuard:
        guard = self

        def lookup(original: Any) -> Any:
            def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
                if not _allowed_host(host):
                    raise guard._refuse(f"look up {host!r}")
                return original(host, *args, **kwargs)

            return guarded

        def nameinfo(original: Any) -> Any:
            def guarded(sockaddr: Any, flags: int) -> Any:
                if not _allowed_host(sockaddr[0]):
                    raise guard._refuse(f"look up the name of {sockaddr[0]!r}")
                return original(sockaddr, flags)

            return guarded

        def connecting(original: Any, verb: str) -> Any:
            def guarded(sock: socket.socket, address: Any, *args: Any) -> Any:
                # sendto(data, address) / sendto(data, flags, address): the address is the last argument
                target = args[-1] if args else address
                internet = sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(target, tuple)
                if internet and not _allowed_address(target[0]):
                    raise guard._refuse(f"{verb} {target[0]!r} port {target[1]}")
                return original(sock, address, *args)

            return guarded

        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
            self._patch(socket, name, lookup)
        self._patch(socket, "getnameinfo", nameinfo)
        self._patch(socket.socket, "connect", lambda original: connecting(original, "connect to"))
        self._patch(socket.socket, "connect_ex", lambda original: connecting(original, "connect to"))
        self._patch(socket.socket, "sendto", lambda original: connecting(original, "send to"))
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)
