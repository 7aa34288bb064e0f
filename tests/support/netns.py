"""Network-namespace "VMs" for the tests (root only; CI runs as root): a real sshd on port 22 of its own address,
behind a bridge, with reboots that look like a real VM's from the client's side.

* Names and addresses (distinct from the ``aibx-vm*``/``aibxbr0``/10.213.0.0/24 of the prototypes on this kind of
  machine): a test session holds a *slot* k (0-63) for its lifetime, by an exclusive ``flock`` on
  ``/run/aibx-test-netns/slot-k.lock`` (released by the kernel when the session ends, even by a crash). The slot
  owns the bridge ``aibxrb<k>`` with 10.214.k.1/24, the namespaces ``aibxrb<k>-vm<i>``, the host-side veths
  ``arb<k>h<i>`` and the VM addresses 10.214.k.(10+i). Sessions running at the same time never share anything.
* Safety: ``unreachable 10.214.0.0/16`` in the main routing table, so nothing of the test range can ever leave the
  machine through a default route while a "VM" is down; a permanent neighbour entry per VM makes packets to a VM
  that is down vanish (connection attempts time out, as with a real VM) instead of failing at once.
* Clean-up at the start (leftovers of slots nobody holds: crashed sessions) and at the end (everything of the
  session's slot; the safety route once no slot is held).

Reboots (``NetnsTarget.reboot``), hard by default: the VM's link goes down (established connections hang: a
client notices only by its keepalive), its processes die and its network stack is destroyed (connection attempts
time out for ``down_s``), a fresh stack comes up without sshd (connection refused for ``refused_s``), then sshd
starts with the same host key and a new boot id. ``graceful=True`` first sends SIGTERM to every process, as systemd
does (a command may report exit code 143, and the connection closes before the network goes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from tests.support.sshd import SshTarget

PREFIX = "aibxrb"
VETH_PREFIX = "arb"
SUPERNET = "10.214.0.0/16"
SLOTS = 64
LOCK_DIR = Path("/run/aibx-test-netns")


def ip(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(map(str, args))}: {result.stderr.strip()}")
    return result


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    names = []
    for line in ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        names.append(name)
    return names


def remove_slot(slot: int) -> None:
    """Everything slot ``slot`` may have left: its namespaces (and their processes), veths and bridge."""
    for ns in _namespaces():
        if ns.startswith(f"{PREFIX}{slot}-"):
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)
    for link in _links():
        if link.startswith(f"{VETH_PREFIX}{slot}h") or link == f"{PREFIX}{slot}":
            ip("link", "del", link, check=False)


class NetnsLab:
    """One test session's slot, bridge and subnet; ``with NetnsLab() as lab: vm = lab.vm(1)``."""

    def __init__(self) -> None:
        self.slot: int | None = None
        self._lock: IO[str] | None = None
        self.vms: list[NetnsTarget] = []

    # -- the slot
    def open(self) -> NetnsLab:
        LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        for slot in range(SLOTS):
            handle = open(LOCK_DIR / f"slot-{slot}.lock", "w")  # noqa: SIM115 - held for the session
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.slot, self._lock = slot, handle
            break
        else:
            raise RuntimeError(f"all {SLOTS} network test slots are in use")
        self._remove_stale()
        remove_slot(self.slot)  # ours now: whatever is left of it is a crashed session's
        bridge = self.bridge
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        ip("route", "replace", "unreachable", SUPERNET)
        return self

    def _remove_stale(self) -> None:
        """Slots nobody holds but that left interfaces or namespaces behind (a session killed by SIGKILL)."""
        for slot in range(SLOTS):
            if slot == self.slot:
                continue
            used = any(ns.startswith(f"{PREFIX}{slot}-") for ns in _namespaces()) or f"{PREFIX}{slot}" in _links()
            if not used:
                continue
            with open(LOCK_DIR / f"slot-{slot}.lock", "w") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live session's
                remove_slot(slot)

    def close(self) -> None:
        for vm in list(self.vms):
            vm.destroy()
        if self.slot is not None:
            remove_slot(self.slot)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._drop_route_if_unused()

    @staticmethod
    def _drop_route_if_unused() -> None:
        handles = []
        try:
            for slot in range(SLOTS):
                handle = open(LOCK_DIR / f"slot-{slot}.lock", "w")  # noqa: SIM115
                handles.append(handle)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another session runs: it needs the route
            ip("route", "del", "unreachable", SUPERNET, check=False)
        finally:
            for handle in handles:
                handle.close()

    def __enter__(self) -> NetnsLab:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.slot}"

    @property
    def subnet(self) -> str:
        return f"10.214.{self.slot}"

    def vm(self, index: int, **kwargs: Any) -> NetnsTarget:
        """A new VM (prepared and booted) at 10.214.<slot>.(10 + index)."""
        vm = NetnsTarget(self, index, **kwargs)
        self.vms.append(vm)
        vm.prepare()
        vm.boot()
        return vm


class NetnsTarget(SshTarget):
    """An isolated ``SshTarget`` in its own network namespace, on port 22 of its own address."""

    def __init__(self, lab: NetnsLab, index: int, **kwargs: Any) -> None:
        if not 1 <= index <= 200:
            raise ValueError("VM index 1-200")
        self.lab, self.index = lab, index
        slot = lab.slot
        assert slot is not None
        self.ns = f"{PREFIX}{slot}-vm{index}"
        self.host_veth = f"{VETH_PREFIX}{slot}h{index}"
        self.mac = f"02:a1:b2:{slot:02x}:00:{index:02x}"
        kwargs.setdefault("name", f"netns-vm{index}")
        super().__init__(host=f"{lab.subnet}.{10 + index}", port=22, isolated=True, **kwargs)

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().command()]

    # -- the network
    def net_up(self) -> None:
        ip("link", "del", self.host_veth, check=False)
        ip("netns", "add", self.ns)
        ip("netns", "exec", self.ns, "sysctl", "-qw", "net.ipv4.tcp_orphan_retries=1")
        for _ in range(100):  # removing a veth is asynchronous: the old name may linger for a moment
            made = ip(
                "link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns, check=False
            )
            if made.returncode == 0:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(made.stderr)
        ip("link", "set", self.host_veth, "master", self.lab.bridge, "up")
        inside = ("-n", self.ns)
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "link", "set", "eth0", "address", self.mac)
        ip(*inside, "addr", "add", f"{self.host}/24", "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        # while the VM is down its packets vanish (timeouts), instead of "no route" at once
        ip("neigh", "replace", self.host, "lladdr", self.mac, "dev", self.lab.bridge, "nud", "permanent")

    def net_down(self) -> None:
        # the veth explicitly: sockets of killed processes can keep the old namespace (and its veth) alive
        ip("link", "del", self.host_veth, check=False)
        ip("netns", "del", self.ns, check=False)

    def boot(self) -> NetnsTarget:
        if not Path(f"/run/netns/{self.ns}").exists():
            self.net_up()
        self.start()
        return self

    # -- power
    def reboot(
        self,
        down_s: float = 1.0,
        refused_s: float = 0.5,
        blackhole: bool = True,
        hang_s: float = 0.5,
        graceful: bool = False,
    ) -> None:
        if graceful:  # as systemd: every process gets SIGTERM, then the network goes
            self.terminate_commands(include_sshd=True)
            time.sleep(0.3)
            self.kill()
        ip("-n", self.ns, "link", "set", "eth0", "down", check=False)
        self.timeline.append((time.time(), "link down"))
        time.sleep(hang_s)
        self.kill()
        self.net_down()
        self.timeline.append((time.time(), "blackhole"))
        time.sleep(down_s)
        self.net_up()
        self.timeline.append((time.time(), "refusing"))
        time.sleep(refused_s)
        self.start()

    def cut_network(self, seconds: float) -> None:
        """The network fails for a while; the VM and its processes live on (no reboot)."""
        ip("-n", self.ns, "link", "set", "eth0", "down")
        time.sleep(seconds)
        ip("-n", self.ns, "link", "set", "eth0", "up")

    def power_off(self) -> None:
        self.kill()
        ip("-n", self.ns, "link", "set", "eth0", "down", check=False)

    def destroy(self) -> None:
        self.kill()
        self.net_down()
        ip("neigh", "del", self.host, "dev", self.lab.bridge, check=False)
        if self in self.lab.vms:
            self.lab.vms.remove(self)

    def remove(self) -> None:
        self.destroy()
        super().remove()
