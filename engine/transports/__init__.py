"""Transports: one module per way of reaching a VM, behind ``base.Transport``.

``parse_target("aibxtest@vm:2222")`` reads what the user typed after ``--host``; ``create_transport`` picks the
transport for its scheme from ``DESCRIPTORS``. Adding a way to reach a VM is one descriptor there (and its module):
its URL schemes, the OSes it serves, its own command-line flags and how they become its options. The descriptors
are data, so the command line reads them without importing the transports (pywinrm, asyncssh) themselves.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from aibx.engine.transports.base import Transport


@dataclass(frozen=True)
class TransportDescriptor:
    """One way of reaching a VM, as the command line sees it."""

    name: str
    schemes: tuple[str, ...]  # what --host may start with (scheme://); "local" is the word local
    factory: str  # "module:callable" taking (Target, ConnectOptions) and returning the Transport
    serves: tuple[str, ...]  # the OSes whose templates it runs: "linux", "windows"
    # its own command-line flags: (flag, the argparse dest, the ConnectOptions.extra key)
    flags: tuple[tuple[str, str, str], ...] = ()
    files: tuple[str, ...] = ()  # those of its flags that name a file that must exist
    alone: bool = False  # cannot be one of several hosts
    wrong_os: str = ""  # why it cannot run a template of an OS it does not serve ({host}: the target as typed)


DESCRIPTORS: tuple[TransportDescriptor, ...] = (
    TransportDescriptor("ssh", ("ssh",), "aibx.engine.transports.ssh:SshTransport", ("linux", "windows")),
    TransportDescriptor(
        "local",
        ("local",),
        "aibx.engine.transports.local:LocalTransport",
        ("linux",),
        alone=True,
        wrong_os="local runs Linux customizers (use winrm://, winrms:// or ssh:// to a Windows VM)",
    ),
    TransportDescriptor(
        "winrm",
        ("winrm", "winrms"),
        "aibx.engine.transports.winrm:transport_for_target",
        ("windows",),
        flags=(
            ("--winrm-auth", "winrm_auth", "auth"),
            ("--winrm-ca", "winrm_ca", "ca_file"),
            ("--winrm-client-cert", "winrm_client_cert", "client_cert"),
            ("--winrm-client-key", "winrm_client_key", "client_key"),
            ("--insecure-skip-tls-verify", "insecure_skip_tls_verify", "insecure_skip_tls_verify"),
            ("--allow-unencrypted", "allow_unencrypted", "allow_unencrypted"),
        ),
        files=("--winrm-ca", "--winrm-client-cert", "--winrm-client-key"),
        wrong_os="{host} is a WinRM target, for Windows VMs (use ssh:// for Linux)",
    ),
)
# scheme -> "module:callable"; a target without a scheme is ssh, the word "local" is this machine
SCHEMES: dict[str, str] = {scheme: d.factory for d in DESCRIPTORS for scheme in d.schemes}


def descriptor(scheme: str) -> TransportDescriptor:
    return next(d for d in DESCRIPTORS if scheme in d.schemes)


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


# user:password@ in what was typed after --host (the password must not be echoed in the error either)
_PASSWORD_IN_TARGET = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^@/\s]*:[^@/\s]*@")


def parse_target(text: str) -> Target:
    text = text.strip()
    if text == "local":
        return Target("local")
    if _PASSWORD_IN_TARGET.match(text):
        raise TargetError(
            "a password in a target is not accepted (it would show in process lists and logs): write user@host and "
            "pass the password with --password-env VAR"
        )
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
    factory: Callable[[Target, ConnectOptions], Transport] = getattr(importlib.import_module(module_name), factory_name)
    return factory(target, options)
