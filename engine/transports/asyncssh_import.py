"""asyncssh, imported without the slow part of its start.

On import, asyncssh looks for liboqs (post-quantum key exchange) with ``ctypes.util.find_library``, which on Linux
runs ``ldconfig -p`` and then, for a library that is not installed, ``gcc`` and ``ld`` (about 40 ms of CPU in child
processes, far more on a busy machine): a fixed cost of every ``aibx run`` over SSH. During that import only, the
search looks at the library directories themselves (``LD_LIBRARY_PATH``, /usr/local/lib, /usr/lib, /lib and their
multiarch and lib64 variants), so an installed liboqs is still found. Elsewhere than Linux nothing changes.
Modules of aibx import asyncssh from here: ``from aibx.engine.transports.asyncssh_import import asyncssh``.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys
from collections.abc import Iterator


def _library_dirs() -> Iterator[str]:
    yield from (d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d)
    for base in ("/usr/local/lib", "/usr/lib", "/lib"):
        yield base
        yield from sorted(glob.glob(f"{base}/*-linux-gnu*"))
        yield f"{base}64"


def find_library_in_dirs(name: str) -> str | None:
    """The path of a shared object ``lib<name>.so*`` (``<name>.so*`` for a name that starts with lib) in the
    library directories, the versioned name first, or None."""
    stem = name if name.startswith("lib") else f"lib{name}"
    for folder in _library_dirs():
        for path in sorted(glob.glob(os.path.join(glob.escape(folder), f"{stem}.so*")), key=len, reverse=True):
            if _is_shared_object(path):  # not a linker script such as libc.so
                return path
    return None


def _is_shared_object(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _import() -> None:
    if "asyncssh" in sys.modules or not sys.platform.startswith("linux"):
        return
    saved = ctypes.util.find_library
    ctypes.util.find_library = find_library_in_dirs
    try:
        import asyncssh  # noqa: F401
    finally:
        ctypes.util.find_library = saved


_import()

import asyncssh as asyncssh  # noqa: E402  (after _import; the alias re-exports it)
