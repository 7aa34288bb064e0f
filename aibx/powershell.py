"""PowerShell text: quoting, ``-EncodedCommand``, and aibx's scripts shipped as package data (aibx/data/*.ps1).

Shipped scripts are UTF-8 with a byte-order mark and CRLF line endings: Windows PowerShell 5.1 reads a BOM-less
script in the ANSI code page, so a BOM is what makes any non-ASCII character survive there; PowerShell 7 accepts
both. Tests enforce the encoding, the line endings and a parse without errors.
"""

from __future__ import annotations

import base64
import re
from functools import cache
from importlib import resources

BOM = "\ufeff"
# Windows PowerShell 5.1; "powershell.exe" is on PATH in every Windows shell (cmd.exe, PowerShell, OpenSSH)
POWERSHELL = "powershell.exe"
POWERSHELL_FLAGS = "-NoProfile -NonInteractive -ExecutionPolicy Bypass"
# cmd.exe's limit for one command line, which WinRM's cmd shell enforces
MAX_COMMAND_LINE = 8191

# PowerShell treats these as single quotes too (about_Quoting_Rules); each must be doubled inside '...'
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

# A Windows VM's boot identity, as every transport to Windows asks for it (WinRM, SSH): LastBootUpTime in UTC,
# ISO 8601; the runner compares it before and after a restart
BOOT_IDENTITY_SCRIPT = (
    "$ProgressPreference = 'SilentlyContinue'\n"
    "(Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o')"
)


def quote(text: str) -> str:
    """A single-quoted PowerShell string literal with ``text`` verbatim (nothing is expanded)."""
    return "'" + re.sub(f"([{_SINGLE_QUOTES}])", r"\1\1", text) + "'"


def encode_command(script: str) -> str:
    """The base64 of UTF-16LE that ``-EncodedCommand`` takes."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def encoded_command_line(script: str, executable: str = POWERSHELL) -> str:
    """``powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ...``: a command line
    that means the same in cmd.exe, PowerShell and a POSIX shell (no quoting involved)."""
    line = f"{executable} {POWERSHELL_FLAGS} -EncodedCommand {encode_command(script)}"
    if len(line) > MAX_COMMAND_LINE:
        raise ValueError(f"encoded PowerShell command is {len(line)} characters; cmd.exe allows {MAX_COMMAND_LINE}")
    return line


def decode_command(encoded: str) -> str:
    return base64.b64decode(encoded).decode("utf-16-le")


@cache
def package_script_bytes(name: str) -> bytes:
    """A shipped script exactly as stored (BOM and CRLF included): what gets uploaded to the VM."""
    return (resources.files("aibx") / "data" / name).read_bytes()


def package_script_text(name: str) -> str:
    """A shipped script as text, without the BOM, with LF line endings."""
    text = package_script_bytes(name).decode("utf-8")
    return text.removeprefix(BOM).replace("\r\n", "\n")


def compact(script: str) -> str:
    """The script for ``-EncodedCommand``: the first line (an ``# aibx: ...`` marker) kept, other comment lines,
    blank lines and indentation dropped, to stay under cmd.exe's command-line limit. Only for aibx's own scripts
    (no here-strings, no block comments)."""
    lines = script.split("\n")
    kept = [lines[0]] + [ln.strip() for ln in lines[1:] if ln.strip() and not ln.strip().startswith("#")]
    return "\n".join(kept)


def fill(template: str, **values: str) -> str:
    """Replace ``'__AIBX_NAME__'`` placeholders (single-quoted in the template) by quoted values."""
    for name, value in values.items():
        token = f"'__AIBX_{name.upper()}__'"
        if token not in template:
            raise KeyError(f"placeholder {token} not in the script")
        template = template.replace(token, quote(value))
    return template
