"""Transports: one module per way of reaching a VM, behind ``base.Transport``.

``parse_target("aibxtest@vm:2222")`` reads what the user typed after ``--host`` (the one URL parser);
``create_transport`` picks the transport for its scheme from ``DESCRIPTORS``. Adding a way to reach a VM is one
descriptor there (and its module): its URL schemes, the OSes it serves, its typed options (``options.py``), its own
command-line flags and how they become those options, and the check that refuses settings which cannot work. The
descriptors are data, so the command line reads them without importing the transports (pywinrm, asyncssh).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aibx.engine.transports.base import Transport
from aibx.engine.transports.options import (
    SshOptions,
    WinRMOptions,
    WinRMTarget,
    check_winrm,
    ssh_options,
    winrm_options,
)

_Options = TypeVar("_Options")


@dataclass(frozen=True)
class TransportDescriptor:
    """One way of reaching a VM, as the command line sees it."""

    name: str
    schemes: tuple[str, ...]  # what --host may start with (scheme://); "local" is the word local
    factory: str  # "module:callable" taking (Target, ConnectOptions) and returning the Transport
    serves: tuple[str, ...]  # the OSes whose templates it runs: "linux", "windows"
    options: type | None = None  # its typed options, one of ConnectOptions.transport (options.py)
    # how the values of its flags (by options field name) and the template's OS ("linux", "windows") become them
    make_options: Callable[[Mapping[str, object], str], object] | None = None
    # its own command-line flags: (flag, the argparse dest, the options field it sets)
    flags: tuple[tuple[str, str, str], ...] = ()
    files: tuple[str, ...] = ()  # those of its flags that name a file that must exist
    alone: bool = False  # cannot be one of several hosts
    wrong_os: str = ""  # why it cannot run a template of an OS it does not serve ({host}: the target as typed)
    # refuses settings that cannot work (raises aibx.errors.InvalidSettings), without connecting or creating it
    check: Callable[[Target, ConnectOptions], None] | None = None

    def options_from(self, flags: Mapping[str, object], os_name: str) -> object | None:
        """This transport's options from the values of the command line's flags (by argparse dest)."""
        if self.make_options is None:
            return None
        return self.make_options({field: flags.get(dest) for _, dest, field in self.flags}, os_name)


def _check_winrm(target: Target, options: ConnectOptions) -> None:
    endpoint = WinRMTarget.from_target(target.scheme, target.host, target.port, target.user)
    check_winrm(endpoint, options.of(WinRMOptions), options.password)


DESCRIPTORS: tuple[TransportDescriptor, ...] = (
    TransportDescriptor(
        "ssh",
        ("ssh",),
        "aibx.engine.transports.ssh:SshTransport",
        ("linux", "windows"),
        options=SshOptions,
        make_options=ssh_options,
    ),
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
        options=WinRMOptions,
        make_options=winrm_options,
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
        check=_check_winrm,
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
    password: str | None = None  # from --password-env (read by options.read_password); never from the command line
    password_env: str | None = None  # the name of that variable, for hints
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    accept_new_host_key: bool = False  # trust an unknown host key on first use and record it
    ssh_config: list[str] | None = None  # None: ~/.ssh/config
    connect_timeout: float = 30.0  # each connection attempt: TCP, handshake and authentication
    keepalive_interval: float = 10.0  # a dead peer (a VM reset, a cut network) is noticed after
    keepalive_count_max: int = 3  # interval * count_max seconds, whatever runs
    stop_grace: float = 3.0  # after asking a remote process to stop, before killing it
    transport: tuple[object, ...] = ()  # each transport's own typed options (SshOptions, WinRMOptions, ...)

    def of(self, kind: type[_Options]) -> _Options:
        """The options of type ``kind`` among ``transport``, or its defaults."""
        return next((o for o in self.transport if isinstance(o, kind)), None) or kind()


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
