"""POSIX shell commands the Linux customizers share.

Every Linux script runs through one small wrapper (``run_stdin_script``): the script travels on the command's
standard input, the wrapper makes a new private directory with an unpredictable name under /tmp (``mkdir -m 700``:
an exclusive create that never follows or reuses anything already there), writes the script into it, runs it with
no standard input, removes the directory and exits with the script's status. Upload, execution and clean-up
therefore take one SSH channel, one round trip per step, and the same
command works unchanged through the local transport.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence

TEMP_DIR = "/tmp"
INLINE_INTERPRETER = "/bin/sh -e"
INLINE_SHEBANG = f"#!{INLINE_INTERPRETER}"
# The wrapper's own exit code when it cannot create the script file (it exists already, no permission, ...) or
# cannot write all of it (/tmp is full: the partial file is removed, the line before says why).
CANNOT_CREATE_EXIT = 125
# What the wrapper prints on stderr when the script succeeded and the VM is on its way down (``shutdown -r now``,
# ``systemctl reboot``): the runner then waits for the reboot instead of starting the next step on a dying VM.
SHUTDOWN_MARKER = "aibx: the script finished and the VM is shutting down"
# commands by which a script restarts (or stops) a Linux VM
_RESTART_WORDS = re.compile(r"\b(reboot|shutdown|poweroff|halt|kexec|telinit|systemctl|init\s+[06])\b")


def may_restart(lines: Sequence[str]) -> bool:
    """Whether inline lines mention a command that can restart the VM (so the wrapper should watch for it)."""
    return any(_RESTART_WORDS.search(line) for line in lines)


def temp_path(random_part: str, suffix: str) -> str:
    return posixpath.join(TEMP_DIR, f"aibx-{random_part}{suffix}")


def temp_dir(random_part: str) -> str:
    """A step's private directory (made by ``run_stdin_script``): its script and any file it downloads live in it."""
    return posixpath.join(TEMP_DIR, f"aibx-{random_part}")


def inline_script(lines: Sequence[str]) -> bytes:
    """AIB's (Packer's) inline semantics: one script, ``#!/bin/sh -e``, every element on its own line."""
    return "".join(f"{line}\n" for line in (INLINE_SHEBANG, *lines)).encode()


def run_stdin_script(path: str, interpreter: str | None = None, *, watch_shutdown: bool = False) -> str:
    """The command that writes its stdin to ``path``, runs it, removes it and exits with the script's status.

    ``path``'s directory (``temp_dir``) is made first with ``mkdir -m 700``, which fails on anything already there
    (a planted directory, file, fifo or symlink, dangling or not): nothing is written and the wrapper exits 125. In a
    directory only the login user can enter, the script file cannot be raced (a shell's no-clobber still opens a
    fifo or device planted between a check and the open). ``umask 077`` applies in a subshell that becomes ``cat``
    (no extra process), so the script itself runs with the session's own umask, as under AIB and Packer (with 077 a
    ``sudo mkdir -p /opt/app`` would make a directory only root can enter). A file that cannot be written whole (a
    full disk) is removed, never run; the traps remove the directory when the process group is signalled
    (interrupt, timeout) and exit the way a signalled shell would. Without an ``interpreter`` the file is made
    executable and run by its own ``#!`` line (a scriptUri's); with one (inline lines, whose shebang aibx wrote) it
    is run by that interpreter, which saves a process and works on a /tmp mounted noexec.

    ``watch_shutdown`` (a script that may restart the VM): after a successful script the wrapper asks systemd
    whether the VM is going down (``shutdown -r now`` and ``systemctl reboot`` return before the reboot cuts the
    session) and then prints ``SHUTDOWN_MARKER``, so that the runner waits for the reboot instead of starting the
    next step on a dying VM. Without systemd nothing is printed. The question costs a process (a few
    milliseconds), so it is asked only where a restart can come from."""
    f = '"$f"'
    run = f"{interpreter} {f}" if interpreter else f"chmod 700 {f} && {f}"
    watch = (
        f'[ $rc -ne 0 ] || [ "$(systemctl is-system-running 2>/dev/null)" != stopping ] || '
        f"echo {shlex.quote(SHUTDOWN_MARKER)} >&2; "
        if watch_shutdown
        else ""
    )
    d = '"$d"'
    return (
        f"d={shlex.quote(posixpath.dirname(path))}; f={shlex.quote(path)}; "
        f'mkdir -m 700 {d} || {{ echo "aibx: cannot create $d" >&2; exit {CANNOT_CREATE_EXIT}; }}; '
        f"trap 'rm -rf {d}; exit 129' HUP; trap 'rm -rf {d}; exit 130' INT; trap 'rm -rf {d}; exit 143' TERM; "
        f"(umask 077; exec cat >{f}) || {{ rm -rf {d}; "
        f'echo "aibx: cannot write the script to $f (removed it)" >&2; exit {CANNOT_CREATE_EXIT}; }}; '
        f"{run} </dev/null; rc=$?; rm -rf {d}; {watch}exit $rc"
    )


def remove_files(*paths: str) -> str:
    return "rm -f " + " ".join(shlex.quote(p) for p in paths)


def remove_dir(path: str) -> str:
    return "rm -rf " + shlex.quote(path)


def _heredoc_value(name: str, value: str) -> str:
    """``name=VALUE`` read from a quoted here-document, so the value never appears in a process's argv."""
    return f"{name}=$(cat <<'AIBX_END'\n{value}\nAIBX_END\n)"


def download_commands(url: str, sha256: str | None, dest_var: str) -> list[str]:
    """Lines of a POSIX script that download ``url`` into the file named by ``$dest_var`` on the VM, with curl or
    wget (10 tries, as AIB), and check its sha256. The URL is read from a here-document, not the command line."""
    # redirects as aibx's own fetcher follows them: to https, or to http only from an http URL (curl)
    allowed = "=https" if url.lower().startswith("https:") else "=http,https"
    lines = [
        _heredoc_value("url", url),
        "if command -v curl >/dev/null 2>&1; then",
        f'  printf \'url = "%s"\\n\' "$url" | curl --config - -fsSL --proto {allowed} --proto-redir {allowed} '
        f'--retry 10 --retry-connrefused -o "${dest_var}"',
        "elif command -v wget >/dev/null 2>&1; then",
        f'  printf \'%s\\n\' "$url" | wget -q --tries=10 -O "${dest_var}" -i -',
        "else",
        '  echo "aibx: neither curl nor wget is installed on the VM" >&2; exit 127',
        "fi",
    ]
    if sha256:
        expected = sha256.lower()
        lines += [
            f'actual=$(sha256sum "${dest_var}" | cut -d" " -f1)',
            f'if [ "$actual" != {expected} ]; then',
            f'  echo "aibx: sha256 mismatch: expected {expected}, got $actual" >&2; exit 1',
            "fi",
        ]
    return lines


def fetch_and_run_script(url: str, sha256: str | None, fetched_path: str) -> bytes:
    """The script (run by ``run_stdin_script``) for a Shell scriptUri that the VM downloads itself."""
    lines = [
        "#!/bin/sh -e",
        f"s={shlex.quote(fetched_path)}",
        "trap 'rm -f \"$s\"' EXIT",
        '(umask 077; set -C; : >"$s")',  # private and new; the script itself keeps the session's umask
        *download_commands(url, sha256, "s"),
        "sed -i 's/\\r$//' \"$s\"",
        'chmod 700 "$s"',
        '"$s" </dev/null',
    ]
    return "".join(f"{line}\n" for line in lines).encode()


def fetch_to_file_script(url: str, sha256: str | None, destination: str, part_path: str) -> bytes:
    """The script for a File customizer that the VM downloads itself: checked, then moved into place."""
    lines = [
        "#!/bin/sh -e",
        f"dest={shlex.quote(destination)}",
        f"part={shlex.quote(part_path)}",
        'dir=$(dirname "$dest")',
        'if [ ! -d "$dir" ]; then echo "aibx: $dest: parent directory $dir does not exist" >&2; exit 1; fi',
        'if [ -d "$dest" ]; then echo "aibx: $dest is a directory; destination must name the file" >&2; exit 1; fi',
        "trap 'rm -f \"$part\"' EXIT",
        "umask 022",
        'set -C; : >"$part"; set +C',  # a new file: never one planted there (or a symlink) before
        *download_commands(url, sha256, "part"),
        'mv -f "$part" "$dest"',
    ]
    return "".join(f"{line}\n" for line in lines).encode()
