"""Transports: one module per way of reaching a VM, behind ``base.Transport``.

``parse_target("aibxtest@vm:2222")`` reads what the user typed after ``--host``; ``create_transport`` picks the
class for its scheme from ``SCHEMES``. Adding a way to reach a VM is one entry there (and its module).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field

from aibx.engine.transports.base import Transport

# scheme -> "module:callable" that takes (Target, ConnectOptions) and returns the Transport; a target without a
# scheme is ssh, the word "local" is this machine
SCHEMES: dict[str, str] = {
    "ssh": "aibx.engine.transports.ssh:SshTransport",
    "local": "aibx.engine.transports.local:LocalTransport",
    "winrm": "aibx.engine.transports.winrm:transport_for_target",
    "winrms": "aibx.engine.transports.winrm:transport_for_target",
}

_TARGET = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?"
    r"(?:(?P<user>[^@/\s]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\s\[\]]+)"
    r"(?::(?P<port>\d{1,5}))?/?$"
)


class TargetError(ValueError):
    """What the user wrote after --host is not a target aibx understands."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str | None = None
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.scheme == "local":
            return "local"
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{user}{host}{port}"


@dataclass
class ConnectOptions:
    """How to reach and trust the VM; each transport uses the fields that apply to it."""

    identity: str | None = None  # private key file (-i)
    password: str | None = None  # from --password-env; never from the command line
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    accept_new_host_key: bool = False  # trust an unknown host key on first use and record it
    ssh_config: list[str] | None = None  # None: ~/.ssh/config
    connect_timeout: float = 30.0  # each connection attempt: TCP, handshake and authentication
    keepalive_interval: float = 10.0  # a dead peer (a VM reset, a cut network) is noticed after
    keepalive_count_max: int = 3  # interval * count_max seconds, whatever runs
    stop_grace: float = 3.0  # after asking a remote process to stop, before killing it
    remote_os: str = "linux"  # "linux" or "windows": how to ask the VM for its boot identity
    extra: dict[str, object] = field(default_factory=dict)  # scheme-specific settings (winrm: WinRMOptions fields)


def parse_target(text: str) -> Target:
    text = text.strip()
    if text == "local":
        return Target("local")
    m = _TARGET.match(text)
    if not m:
        raise TargetError(f"{text!r} is not a target; write local, host, user@host, user@host:port or ssh://…")
    scheme = (m.group("scheme") or "ssh").lower()
    if scheme not in SCHEMES or scheme == "local":
        known = ", ".join(f"{s}://" for s in SCHEMES if s != "local")
        raise TargetError(f"{text!r}: unknown scheme {scheme}:// (known: {known}, and the word local)")
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise TargetError(f"{text!r}: port {port} is out of range")
    host = m.group("host").strip("[]")
    return Target(scheme, host=host, user=m.group("user"), port=port)


def create_transport(target: Target, options: ConnectOptions) -> Transport:
    module_name, _, factory_name = SCHEMES[target.scheme].partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(target, options)  # type: ignore[no-any-return]
