"""Pytest fixtures for the WinRM test server (registered from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.winrm_server import TlsMaterial, WinRMHost, make_tls_material

PASSWORD = "Passw0rd!"


@pytest.fixture(scope="session")
def winrm_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A private CA with a server certificate for localhost, 127.0.0.1 and ::1, and a client certificate."""
    return make_tls_material(Path(tmp_path_factory.mktemp("winrm-tls")))


@pytest.fixture
def make_winrm_host() -> Iterator[Callable[..., WinRMHost]]:
    """Start WinRM test hosts with any options; all are powered off after the test."""
    hosts: list[WinRMHost] = []

    def make(**kwargs: object) -> WinRMHost:
        kwargs.setdefault("users", {"aibx": PASSWORD})
        host = WinRMHost(**kwargs).start()  # type: ignore[arg-type]
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def winrm_host(make_winrm_host: Callable[..., WinRMHost]) -> WinRMHost:
    """HTTP on 127.0.0.1, Basic and NTLM (with message encryption); unencrypted Basic accepted."""
    return make_winrm_host(allow_unencrypted=True)


@pytest.fixture
def winrms_host(make_winrm_host: Callable[..., WinRMHost], winrm_tls: TlsMaterial) -> WinRMHost:
    """HTTPS on 127.0.0.1 with the test CA's certificate; Basic, NTLM and client certificates."""
    return make_winrm_host(tls=winrm_tls)
