"""Each transport's own settings, typed, and the checks on them: data the command line reads without importing the
transports themselves (asyncssh, pywinrm). A descriptor in ``engine/transports/__init__.py`` names its options type,
how its command-line flags become it, and the check that refuses settings which cannot work."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aibx import errors
from aibx.engine.transports.base import TransportError


def read_password(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The password in the environment variable ``name`` (--password-env), or None when it is not set: the one
    place aibx reads it."""
    return (os.environ if environ is None else environ).get(name)


# ----------------------------------------------------------------------------------------------- ssh
@dataclass(frozen=True)
class SshOptions:
    windows: bool = False  # the VM runs Windows (OpenSSH for Windows): its boot identity comes from PowerShell


def ssh_options(flags: Mapping[str, object], os_name: str) -> SshOptions:
    return SshOptions(windows=os_name == "windows")


# ----------------------------------------------------------------------------------------------- winrm
WINRM_SCHEMES = ("winrm", "winrms")
DEFAULT_PORTS = {"winrm": 5985, "winrms": 5986}
AUTH_METHODS = ("ntlm", "kerberos", "credssp", "basic", "certificate")
DEFAULT_AUTH = "ntlm"
# WinRM's default MaxEnvelopeSizekb is 500 on current Windows and 150 on WinRM 2.0; 150 KiB works everywhere
DEFAULT_MAX_ENVELOPE_SIZE = 153600


class WinRMConfigError(TransportError, errors.InvalidSettings):
    """The target or the options cannot work (a usage error, exit code 2): a target that is not WinRM, Basic over
    plain HTTP, an auth method without its password or whose library is not installed."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class WinRMTarget:
    """A WinRM endpoint, resolved from the ``transports.Target`` that ``parse_target`` read (the one URL parser)."""

    scheme: str
    host: str
    port: int
    user: str | None = None

    @classmethod
    def from_target(cls, scheme: str, host: str | None, port: int | None, user: str | None) -> WinRMTarget:
        if scheme not in WINRM_SCHEMES:
            raise WinRMConfigError(f"not a WinRM target: {scheme}://{host or ''}", "write winrm://[user@]host[:port]")
        return cls(scheme, host or "", port or DEFAULT_PORTS[scheme], unquote(user or "") or None)

    @property
    def https(self) -> bool:
        return self.scheme == "winrms"

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}/wsman"

    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


@dataclass(frozen=True)
class WinRMOptions:
    auth: str = DEFAULT_AUTH
    ca_file: str | None = None  # PEM bundle to verify the VM's certificate (winrms)
    insecure_skip_tls_verify: bool = False
    allow_unencrypted: bool = False  # Basic over plain HTTP
    client_cert: str | None = None  # certificate auth: PEM certificate and key
    client_key: str | None = None
    connect_timeout: float = 30.0  # TCP + TLS + authentication
    receive_timeout: int = 5  # seconds one Receive may wait on the VM (WS-Man OperationTimeout)
    read_timeout: float = 60.0  # no answer to a request for this long: the connection is dead
    max_envelope_size: int = DEFAULT_MAX_ENVELOPE_SIZE
    codepage: int = 65001  # UTF-8 output from the shell


def winrm_options(flags: Mapping[str, object], os_name: str) -> WinRMOptions:
    """--winrm-auth, --winrm-ca, ... (by ``WinRMOptions`` field name; a flag not given is None or False)."""

    def text(name: str) -> str | None:
        value = flags.get(name)
        return str(value) if value else None

    return WinRMOptions(
        auth=text("auth") or DEFAULT_AUTH,
        ca_file=text("ca_file"),
        insecure_skip_tls_verify=bool(flags.get("insecure_skip_tls_verify")),
        allow_unencrypted=bool(flags.get("allow_unencrypted")),
        client_cert=text("client_cert"),
        client_key=text("client_key"),
    )


def check_winrm(target: WinRMTarget, options: WinRMOptions, password: str | None) -> str:
    """Settings that cannot work raise ``WinRMConfigError``; the auth method (lower case) when they can."""
    auth = options.auth.lower()
    if auth not in AUTH_METHODS:
        raise WinRMConfigError(f"unknown WinRM auth {options.auth!r}", f"use one of {', '.join(AUTH_METHODS)}")
    if auth == "basic" and not target.https and not options.allow_unencrypted:
        raise WinRMConfigError(
            "Basic authentication over plain HTTP would send the password and everything else unencrypted",
            "use winrms:// (HTTPS), or --winrm-auth ntlm (encrypts the messages), "
            "or --allow-unencrypted for a throw-away test VM",
        )
    if auth == "certificate":
        if not target.https:
            raise WinRMConfigError("certificate authentication needs HTTPS", "use winrms://")
        if not (options.client_cert and options.client_key):
            raise WinRMConfigError("certificate authentication needs a client certificate and its key")
    else:
        _check_auth_library(auth)
        if auth != "kerberos" and not target.user:
            raise WinRMConfigError(
                f"{auth} authentication needs a user name", f"write {target.scheme}://USER@{target.host}"
            )
        if auth != "kerberos" and password is None:
            raise WinRMConfigError(
                f"{auth} authentication needs a password", "pass --password-env VAR (the variable's name)"
            )
    if options.insecure_skip_tls_verify and options.ca_file:
        raise WinRMConfigError("a CA file and skipping certificate verification contradict each other")
    if options.ca_file and not Path(options.ca_file).is_file():
        raise WinRMConfigError(f"CA file not found: {options.ca_file}")
    if options.receive_timeout < 1 or options.read_timeout <= options.receive_timeout:
        raise WinRMConfigError("read_timeout must exceed receive_timeout, which must be at least 1 s")
    return auth


def _check_auth_library(auth: str) -> None:
    if auth == "kerberos":
        from winrm.transport import HAVE_KERBEROS

        if not HAVE_KERBEROS:
            raise WinRMConfigError(
                "Kerberos authentication needs pywinrm's kerberos support",
                "pip install 'pywinrm[kerberos]' and get a ticket with kinit",
            )
    elif auth == "credssp":
        from winrm.transport import HAVE_CREDSSP

        if not HAVE_CREDSSP:
            raise WinRMConfigError(
                "CredSSP authentication needs pywinrm's credssp support", "pip install 'pywinrm[credssp]'"
            )
