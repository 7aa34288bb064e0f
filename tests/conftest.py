"""Shared pytest configuration. Fixtures for real targets live in tests/support/ and are registered here."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.http_server import ContentServer
from tests.support.requirements import require_program
from tests.support.sshd import SshTarget

pytest_plugins = ["tests.support.winrm_fixtures", "tests.support.qemu_vm"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Packer must never phone home from the test suite.
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
# Colour codes would get in the way of assertions on output.
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def _target_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]


@pytest.fixture
def make_ssh_target(request: pytest.FixtureRequest) -> Iterator[Callable[..., SshTarget]]:
    """Start real sshd targets on loopback (``make_ssh_target(password_auth=False, config_overrides=...)``);
    every one is killed and removed after the test."""
    require_program("sshd", "openssh-server")
    require_program("ssh-keygen", "openssh-client")
    started: list[SshTarget] = []

    def make(**kwargs: object) -> SshTarget:
        target = SshTarget(_target_name(request), **kwargs)  # type: ignore[arg-type]
        started.append(target)
        return target.prepare().start()

    yield make
    for target in started:
        target.remove()


@pytest.fixture
def ssh_target(make_ssh_target: Callable[..., SshTarget]) -> SshTarget:
    """A fresh real sshd on 127.0.0.1 for this test (about 50 ms to start): see tests/support/sshd.py."""
    return make_ssh_target()


@pytest.fixture
def content_server(tmp_path: Path) -> Iterator[ContentServer]:
    """An HTTP server on 127.0.0.1 for scriptUri/sourceUri (see tests/support/http_server.py)."""
    server = ContentServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def tls_content_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContentServer]:
    """The same over HTTPS, with its throw-away CA trusted by this process (SSL_CERT_FILE)."""
    server = ContentServer(tmp_path, tls=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    yield server
    server.stop()
