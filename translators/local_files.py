"""Reading the local files a configuration or template names (scripts, files to upload, ``file:`` sources).

Files outside the configuration's folder are read only when the user allows it (``outside_folder``). Only regular
files are read: a path such as ``/dev/zero`` or a named pipe would never end (or block), and a
folder is the caller's business. Every problem, a name too long or holding a NUL byte included, is a
``LocalFileError`` with a reason fit for a report, never an exception from the operating system.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class LocalFileError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "not a valid file name" if "null" in str(exc) else str(exc)


def is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder; False for anything that cannot be looked at."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def outside_folder(path: Path, folder: Path) -> str | None:
    """Why ``path`` is not inside ``folder`` once symlinks and ``..`` are resolved, or None when it is. A
    configuration from someone else could otherwise name ``~/.ssh/id_ed25519`` and have it copied into the
    translation: such a file is read only with ``--allow-local-files``."""
    try:
        base, real = os.path.realpath(folder), os.path.realpath(path)
        inside = os.path.commonpath([base, real]) == base
    except (OSError, ValueError):
        return "cannot be resolved"
    return None if inside else f"is outside the configuration's folder {base}"


def read_local_file(path: Path) -> bytes:
    """The content of the regular file at ``path``, or LocalFileError."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise LocalFileError("is a folder")
        if not stat.S_ISREG(mode):
            raise LocalFileError("is not a regular file (a device, a pipe or a socket)")
        return Path(path).read_bytes()
    except (OSError, ValueError) as exc:
        raise LocalFileError(_reason(exc)) from None
