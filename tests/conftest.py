"""Shared pytest configuration. Fixtures for real targets live in tests/support/ and are registered here."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fleet import TargetFleet
from tests.support.http_server import ContentServer
from tests.support.network_guard import NetworkGuard
from tests.support.power import PowerWatcher
from tests.support.requirements import require_program, require_root
from tests.support.sshd import SshTarget

pytest_plugins = ["tests.support.winrm_fixtures", "tests.support.qemu_vm"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# Packer must never phone home from the test suite.
os.environ.setdefault("CHECKPOINT_DISABLE", "1")
# Colour codes would get in the way of assertions on output.
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[NetworkGuard]:
    """Every test: in-process name lookups and connections outside loopback (and the test's own network
    namespaces) fail, and fail the test naming the address even when the code under test caught the error."""
    guard = NetworkGuard().install()
    try:
        yield guard
    finally:
        guard.uninstall()
    if guard.violations:
        pytest.fail("\n".join(dict.fromkeys(guard.violations)), pytrace=False)


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


# ----------------------------------------------------------------------------------------------- reboots and fleets
@pytest.fixture
def make_rebootable_target(
    make_ssh_target: Callable[..., SshTarget],
) -> Iterator[Callable[..., tuple[SshTarget, PowerWatcher]]]:
    """``make_rebootable_target(down_s=1, refused_s=0.5, terminate_first=0, **target_args)``: a loopback target
    whose power shims (``sudo reboot``, ``shutdown -r now``, ``systemctl reboot``) really take it down and bring it
    back (tests/support/power.py); a new boot id on every boot when running as root."""
    watchers: list[PowerWatcher] = []

    def make(
        down_s: float = 1.0,
        refused_s: float = 0.5,
        blackhole: bool = True,
        terminate_first: float = 0.0,
        **target_args: object,
    ):
        target = make_ssh_target(**target_args)
        reboot_args = {"down_s": down_s, "refused_s": refused_s, "blackhole": blackhole}
        watcher = PowerWatcher([target], {**reboot_args, "terminate_first": terminate_first})
        watcher.start()
        watchers.append(watcher)
        return target, watcher

    yield make
    for watcher in watchers:
        watcher.stop()


@pytest.fixture(scope="session")
def netns_lab() -> Iterator[object]:
    """This session's share of network namespaces, bridge and addresses (tests/support/netns.py); root only."""
    require_root("network namespaces")
    require_program("ip", "iproute2")
    require_program("sshd", "openssh-server")
    from tests.support.netns import NetnsLab

    with NetnsLab() as lab:
        yield lab


@pytest.fixture
def make_netns_vm(netns_lab, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``make_netns_vm(index, hang_s=.., down_s=.., refused_s=.., graceful=False)``: a VM in its own network
    namespace, rebooted by its power shims; destroyed after the test."""
    made: list[tuple[object, PowerWatcher]] = []

    def make(index: int, *, hang_s: float = 0.5, down_s: float = 1.0, refused_s: float = 0.5, graceful=False, **kw):
        vm = netns_lab.vm(index, **kw)
        watcher = PowerWatcher([vm], {"hang_s": hang_s, "down_s": down_s, "refused_s": refused_s, "graceful": graceful})
        watcher.start()
        made.append((vm, watcher))
        return vm, watcher

    yield make
    for vm, watcher in made:
        watcher.stop()
        vm.remove()  # type: ignore[attr-defined]


@pytest.fixture
def make_fleet(request: pytest.FixtureRequest) -> Iterator[Callable[..., TargetFleet]]:
    """``make_fleet(16)``: that many loopback targets sharing one client key and known_hosts (tests/support/
    fleet.py), started in parallel, removed after the test."""
    require_program("sshd", "openssh-server")
    require_program("ssh-keygen", "openssh-client")
    fleets: list[TargetFleet] = []

    def make(count: int, **target_args: object) -> TargetFleet:
        fleet = TargetFleet(count, _target_name(request), **target_args)
        fleets.append(fleet)
        return fleet.start()

    yield make
    for fleet in fleets:
        fleet.remove()
