"""The WinRM exchange of a run as text, for golden files: every command the server received, in order, with the
script of ``-EncodedCommand`` decoded, uploads as path, size, SHA-256 and content, and each exit code.

Random parts of temporary names (``aibx-ps-<16 hex>``) become ``<id1>``, ``<id2>``... in order of appearance (an
upload whose content holds one is shown without its SHA-256); the engine's own boot-identity queries (how many
depends on timing) are left out.
"""

from __future__ import annotations

import base64
import hashlib
import re

from aibx import powershell as ps
from tests.support.winrm_server import RemoteCommand, _ps_param

_RANDOM = re.compile(r"aibx-(ps|wu|deprovision)-([0-9a-f]{16})")
_PACKAGE = ("Invoke-AibxScript.ps1", "Install-AibxWindowsUpdates.ps1")


def render_exchange(commands: list[RemoteCommand]) -> str:
    package = {hashlib.sha256(ps.package_script_bytes(n)).digest(): n for n in _PACKAGE}
    out: list[str] = []
    for cmd in commands:
        if cmd.script is not None and "LastBootUpTime" in cmd.script:
            continue
        code = f"  -> exit {cmd.exit_code}"
        if cmd.script is not None and "# aibx: receive a file on stdin" in cmd.script:
            data = b"".join(base64.b64decode(line) for line in cmd.stdin.split() if line)
            digest = hashlib.sha256(data).digest()
            # content that names a temporary file has another hash in every run
            varies = _RANDOM.search(data.decode("utf-8", "replace")) is not None
            checksum = "" if varies else f", sha256 {digest.hex()}"
            out.append(f"upload {_ps_param(cmd.script, 'path')} ({len(data)} bytes{checksum}){code}")
            if digest in package:
                out.append(f"  | aibx/data/{package[digest]}")
            else:
                out += _content(data)
        elif cmd.script is not None:
            head = cmd.command_line.split(" -EncodedCommand ")[0]
            out.append(f"exec {head} -EncodedCommand <the script below>{code}")
            out += [f"  | {line}" for line in cmd.script.split("\n")]
        else:
            out.append(f"exec {cmd.command_line}{code}")
    return _normalize("\n".join(out) + "\n")


def _content(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ["  | (binary)"]
    marks = ["BOM" if text.startswith(ps.BOM) else "no BOM", "CRLF" if "\r\n" in text else "LF"]
    lines = text.removeprefix(ps.BOM).replace("\r\n", "\n").rstrip("\n").split("\n")
    return [f"  ({', '.join(marks)})", *(f"  | {line}" for line in lines)]


def _normalize(text: str) -> str:
    names: dict[str, str] = {}

    def name(m: re.Match[str]) -> str:
        return f"aibx-{m[1]}-" + names.setdefault(m[2], f"<id{len(names) + 1}>")

    return _RANDOM.sub(name, text)
