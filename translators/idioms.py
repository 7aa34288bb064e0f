"""The command lines translations write where the target format has no field for a feature.

Each idiom renders from a few parameters; where the other direction must understand it again (AIB → HCL →
AIB), ``recognise_*`` recovers the parameters and accepts the lines only if rendering them again gives exactly
the same text. So a provisioner is read back as, say, a Shell ``scriptUri`` customizer only when it is
precisely what aibx wrote; anything a user changed stays an ordinary inline step.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from aibx import deprovisioning as deprovision
from aibx import model, powershell
from aibx.plan import redact_uri

HEREDOC_MARK = "AIBX_EOF"
LINUX_DEPROVISION_EXECUTE = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"


def default_deprovision_script(os_type: model.OsType) -> str:
    """AIB's default deprovision script, verbatim from the package data (as ``aibx run`` stages it)."""
    return deprovision.default_script(os_type).decode("utf-8")


# ----------------------------------------------------------------------------------------------- quoting
def sh_quote(text: str) -> str:
    return shlex.quote(text)


def ps_quote(text: str) -> str:
    """A PowerShell single-quoted string (aibx.powershell.quote: typographic single quotes are doubled too)."""
    return powershell.quote(text)


def _ps_unquote(text: str) -> str | None:
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return re.sub("(['\u2018\u2019\u201a\u201b])\\1", r"\1", text[1:-1])
    return None


def _safe_name(uri: str, default: str) -> str:
    try:
        base = PurePosixPath(urlsplit(uri).path).name
    except ValueError:
        base = ""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).strip("._")
    return base or default


# ----------------------------------------------------------------------------------------------- downloads
@dataclass(frozen=True)
class Download:
    """What a download idiom does: fetch ``uri``, check ``sha256`` (if any) and then use ``path``."""

    uri: str
    sha256: str | None
    path: str | None = None  # File: the destination; scripts: None


def linux_download_lines(uri: str, target: str, sha256: str | None) -> list[str]:
    """Fetch ``uri`` to ``target`` with curl (or wget), and verify the checksum before anything uses it."""
    q_target, q_uri = sh_quote(target), sh_quote(uri)
    lines = [f"curl -fsSL --retry 5 -o {q_target} {q_uri} || wget -q -O {q_target} {q_uri}"]
    if sha256:
        lines.append(f"echo {sh_quote(f'{sha256}  {target}')} | sha256sum -c -")
    return lines


def linux_run_script(uri: str, sha256: str | None) -> list[str]:
    """Shell ``scriptUri``: download, verify, run as Packer runs a script (``chmod +x``, then the path)."""
    path = f"/tmp/aibx-{_safe_name(uri, 'script')}"
    q = sh_quote(path)
    return [*linux_download_lines(uri, path, sha256), f"chmod +x {q}", q, f"rm -f {q}"]


def linux_fetch_file(uri: str, destination: str, sha256: str | None) -> list[str]:
    """File ``sourceUri``: download next to the destination, verify, then move into place."""
    partial = destination + ".aibx-download"
    return [*linux_download_lines(uri, partial, sha256), f"mv -f {sh_quote(partial)} {sh_quote(destination)}"]


def windows_download_lines(uri: str, target: str, sha256: str | None) -> list[str]:
    lines = [
        "$ProgressPreference = 'SilentlyContinue'",
        f"Invoke-WebRequest -UseBasicParsing -Uri {ps_quote(uri)} -OutFile {ps_quote(target)} -ErrorAction Stop",
    ]
    if sha256:
        message = f"sha256 checksum of {redact_uri(uri)} does not match"
        lines.append(
            f"if ((Get-FileHash -Algorithm SHA256 -LiteralPath {ps_quote(target)}).Hash -ne {ps_quote(sha256)}) "
            f"{{ Remove-Item -Force -LiteralPath {ps_quote(target)}; throw {ps_quote(message)} }}"
        )
    return lines


def windows_run_script(uri: str, sha256: str | None) -> list[str]:
    name = _safe_name(uri, "script")
    if not name.lower().endswith(".ps1"):
        name += ".ps1"
    path = f"C:\\Windows\\Temp\\aibx-{name}"
    return [
        *windows_download_lines(uri, path, sha256),
        f"& {ps_quote(path)}",
        "$aibxExitCode = $LASTEXITCODE",
        f"Remove-Item -Force -LiteralPath {ps_quote(path)}",
        "exit $aibxExitCode",
    ]


def windows_fetch_file(uri: str, destination: str, sha256: str | None) -> list[str]:
    partial = destination + ".aibx-download"
    return [
        *windows_download_lines(uri, partial, sha256),
        f"Move-Item -Force -LiteralPath {ps_quote(partial)} -Destination {ps_quote(destination)}",
    ]


def _linux_download_params(lines: list[str]) -> tuple[str, str, str | None] | None:
    """(uri, target, sha256) of a linux_download_lines() prefix, or None."""
    words = _quoted_words(lines[0], 7) if lines else None
    if words is None or words[:5] != ["curl", "-fsSL", "--retry", "5", "-o"]:
        return None
    target, uri = words[5], words[6]
    sha = None
    if len(lines) > 1 and lines[1].startswith("echo ") and lines[1].endswith(" | sha256sum -c -"):
        echoed = _quoted_words(lines[1], 2)
        if echoed is None:
            return None
        sha = echoed[1].split("  ", 1)[0]
    return uri, target, sha


# one word as sh_quote (shlex.quote) writes it: safe characters, '…' and "'" pieces
_QUOTED_WORD = re.compile(r"""(?:[\w@%+=:,./-]+|'[^']*'|"'")+""", re.ASCII)
_QUOTED_PIECE = re.compile(r"[\w@%+=:,./-]+|'[^']*'|\"'\"", re.ASCII)


def _unquoted(piece: re.Match[str]) -> str:
    text = piece.group()
    return text[1:-1] if text[0] in "'\"" else text


def _quoted_words(line: str, count: int) -> list[str] | None:
    """The first ``count`` words of ``line`` if it starts with words as sh_quote writes them, separated by single
    spaces; else None. Linear in what it reads (``shlex.split`` of a megabyte line takes many seconds)."""
    words: list[str] = []
    pos = 0
    while len(words) < count:
        m = _QUOTED_WORD.match(line, pos)
        if m is None:
            return None
        words.append("".join(_unquoted(piece) for piece in _QUOTED_PIECE.finditer(m.group())))
        pos = m.end()
        if len(words) < count:
            if line[pos : pos + 1] != " ":
                return None
            pos += 1
    return words


def _windows_download_params(lines: list[str]) -> tuple[str, str, str | None] | None:
    if len(lines) < 2 or lines[0] != "$ProgressPreference = 'SilentlyContinue'":
        return None
    m = re.fullmatch(r"Invoke-WebRequest -UseBasicParsing -Uri ('(?:[^']|'')*') -OutFile ('(?:[^']|'')*') .*", lines[1])
    if not m:
        return None
    uri, target = _ps_unquote(m.group(1)), _ps_unquote(m.group(2))
    sha = None
    if len(lines) > 2:
        h = re.search(r"\)\.Hash -ne '([0-9A-Fa-f]*)'\)", lines[2])
        sha = h.group(1) if h else None
    if uri is None or target is None:
        return None
    return uri, target, sha


def recognise_script_download(lines: list[str], os_type: model.OsType) -> Download | None:
    """The scriptUri idiom, if ``lines`` are exactly one."""
    params = (_windows_download_params if os_type is model.OsType.WINDOWS else _linux_download_params)(lines)
    if params is None:
        return None
    uri, _target, sha = params
    for candidate in (sha, None):
        render = windows_run_script if os_type is model.OsType.WINDOWS else linux_run_script
        if render(uri, candidate) == lines:
            return Download(uri, candidate)
    return None


def recognise_file_download(lines: list[str], os_type: model.OsType) -> Download | None:
    """The File sourceUri idiom, if ``lines`` are exactly one."""
    params = (_windows_download_params if os_type is model.OsType.WINDOWS else _linux_download_params)(lines)
    if params is None:
        return None
    uri, target, sha = params
    if not target.endswith(".aibx-download"):
        return None
    destination = target[: -len(".aibx-download")]
    render = windows_fetch_file if os_type is model.OsType.WINDOWS else linux_fetch_file
    for candidate in (sha, None):
        if render(uri, destination, candidate) == lines:
            return Download(uri, candidate, destination)
    return None


# ----------------------------------------------------------------------------------------------- writing files
def heredoc_mark(text: str) -> str:
    """A heredoc delimiter that does not occur as a line of ``text``."""
    mark, n = HEREDOC_MARK, 1
    lines = set(text.splitlines())
    while mark in lines:
        n += 1
        mark = f"{HEREDOC_MARK}_{n}"
    return mark


def linux_write_file(path: str, content: bytes) -> list[str]:
    """Lines that write ``content`` to ``path``: a quoted heredoc for plain text, base64 otherwise.

    Plain text: UTF-8, ends with a newline, no carriage returns, and no ``{{`` (AIB, which runs Packer, would
    read that as a template)."""
    text = _plain_text(content)
    if text is not None:
        mark = heredoc_mark(text)
        return [f"cat > {sh_quote(path)} <<'{mark}'", *text.split("\n")[:-1], mark]
    encoded = base64.b64encode(content).decode("ascii")
    return [f"echo {encoded} | base64 -d > {sh_quote(path)}"]


def windows_write_file(path: str, content: bytes) -> list[str]:
    encoded = base64.b64encode(content).decode("ascii")
    return [f"[IO.File]::WriteAllBytes({ps_quote(path)}, [Convert]::FromBase64String({ps_quote(encoded)}))"]


def windows_write_text(path: str, text: str, *, bom: bool = False) -> list[str]:
    """Lines that write ``text`` to ``path`` (CRLF line ends, UTF-8; with ``bom`` for scripts that hold more
    than ASCII, as Windows PowerShell 5.1 reads files without one as ANSI).

    Each line of the text is a single-quoted string of its own inside ``@( ... )``, not a here-string: Packer
    1.13 and later indent inline PowerShell lines (it joins them with a newline and a tab inside a try block),
    and a here-string's closing ``'@`` may not be indented."""
    encoding = ", (New-Object System.Text.UTF8Encoding $true)" if bom else ""
    return [
        "$aibxLines = @(",
        *(ps_quote(line) for line in text.splitlines()),
        ")",
        f"[IO.File]::WriteAllLines({ps_quote(path)}, [string[]]$aibxLines{encoding})",
    ]


def _plain_text(content: bytes) -> str | None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\n") or "\r" in text or "{{" in text or "\x00" in text:
        return None
    return text


# ----------------------------------------------------------------------------------------------- deprovision
def stage_deprovision(os_type: model.OsType) -> list[str]:
    """Write AIB's default deprovision script where AIB stages it, before the customizers run."""
    script = default_deprovision_script(os_type)
    if os_type is model.OsType.WINDOWS:
        return windows_write_text(model.WINDOWS_DEPROVISION_PATH, script)
    return linux_write_file(model.LINUX_DEPROVISION_PATH, script.encode("utf-8"))


def run_deprovision(os_type: model.OsType) -> list[str]:
    """Run whatever is at the deprovision path (the default, or a customizer's override), as AIB does last."""
    if os_type is model.OsType.WINDOWS:
        path = model.WINDOWS_DEPROVISION_PATH
        return [
            f"if (Test-Path -LiteralPath {ps_quote(path)}) {{ & {ps_quote(path)} }} "
            f"else {{ Write-Output {ps_quote(deprovision.missing_message(path))} }}"
        ]
    path = model.LINUX_DEPROVISION_PATH
    return [f"if [ -f {path} ]; then sh {path}; else echo {sh_quote(deprovision.missing_message(path))}; fi"]


# ----------------------------------------------------------------------------------------------- Packer → AIB
def shell_exports(env: dict[str, str]) -> list[str]:
    """``export K='v'`` lines, Packer's quoting of environment_vars."""
    return [f"export {k}={sh_quote(v)}" for k, v in env.items()]


def packer_vars(env: dict[str, str]) -> str:
    """Packer's ``{{ .Vars }}``: ``K='v' `` for each variable, sorted by name, single quotes escaped."""
    parts = []
    for k, v in sorted(env.items()):
        escaped = v.replace("'", "'\"'\"'")
        parts.append(f"{k}='{escaped}' ")
    return "".join(parts)


def powershell_env(env: dict[str, str]) -> list[str]:
    """``$env:K="v"`` lines, with Packer's escaping of ``$ " ` '``."""
    out = []
    for k, v in env.items():
        escaped = re.sub(r"([`$\"'])", r"`\1", v)
        out.append(f'$env:{k}="{escaped}"')
    return out


def shell_sleep(seconds: float) -> list[str]:
    return [f"sleep {_seconds(seconds)}"]


def powershell_sleep(seconds: float) -> list[str]:
    return [f"Start-Sleep -Seconds {_seconds(seconds)}"]


def _seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
