"""Where a customizer's script or file comes from: ``scriptUri`` / ``sourceUri`` as plan ``Content``.

https and http URIs are fetched by aibx (or by the VM with ``--fetch-on-target``); ``file:`` URIs name a file on the
machine running aibx, relative to the template's folder (``file:scripts/a.sh``). A template may come from someone
else, and whatever a ``file:`` URI names is copied onto the VM, so by default it must stay inside the template's
folder once symlinks and ``..`` are resolved; absolute paths (``file:///srv/a.sh``) and paths leading out of the
folder need ``--allow-local-files`` (``allow_local_files``). Other schemes (ftp:, data:, ...) are refused.
Resolving reads nothing but the file system's links.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aibx.plan import Content, redact_uri

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# characters RFC 3986 does not allow anywhere in a URI (white space is refused with its own message)
_NOT_IN_URIS = set('"<>\\^`{|}')


@dataclass
class Source:
    content: Content | None = None
    remote: bool = False  # http(s): the VM may download it itself (--fetch-on-target)
    blocked: str | None = None
    note: str | None = None


ALLOW_LOCAL_FILES_FLAG = "--allow-local-files"


def resolve(
    uri: str, sha256: str | None, base_dir: str | None, *, script: bool = False, allow_local_files: bool = False
) -> Source:
    """``base_dir`` None: the template has no folder of its own (it came from standard input), so no ``file:`` URI
    is read without ``allow_local_files`` (and with it, a relative one is read from the working directory)."""
    if any(c.isspace() for c in uri):
        return Source(blocked=f"{redact_uri(uri)!r} contains white space; percent-encode it")
    if any(c in _NOT_IN_URIS or ord(c) < 0x20 or c == "\x7f" for c in uri):
        return Source(blocked=f"{redact_uri(uri)!r} contains a character a URI cannot hold as is; percent-encode it")
    try:
        parts = urlsplit(uri)
    except ValueError:
        return Source(blocked="not a valid URI")
    checksum = sha256 or None
    if checksum is not None and not _HEX64.fullmatch(checksum):
        return Source(blocked="sha256Checksum is not 64 hexadecimal digits")
    scheme = parts.scheme.lower()
    if scheme in ("https", "http"):
        note = None
        if scheme == "http":
            note = f"{redact_uri(uri)} is fetched over plain http: anyone on the way can read or change it"
        return Source(Content(uri=uri, sha256=checksum, normalize_newlines=script), remote=True, note=note)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return Source(blocked=f"file URI names another host ({parts.netloc}); aibx reads local files only")
        path = unquote(parts.path)
        if not path:
            return Source(blocked="file URI without a path")
        absolute = os.path.isabs(path)
        if base_dir is None and not allow_local_files:
            return Source(
                blocked=f"{uri!r}: the template came from standard input, so it has no folder of its own and its "
                f"file: URIs could name any file here; they are read only with {ALLOW_LOCAL_FILES_FLAG}"
            )
        if not absolute:
            path = os.path.join(base_dir, path) if base_dir not in (None, "", ".") else path
        if not allow_local_files:
            problem = _outside_template_folder(path, absolute, base_dir)
            if problem:
                return Source(blocked=f"{uri!r} {problem}")
        return Source(Content(local_path=path, sha256=checksum, normalize_newlines=script))
    if not scheme:
        return Source(blocked=f"{uri!r} is not a URI; write https://…, or file:PATH for a local file")
    return Source(blocked=f"aibx cannot fetch {scheme}: URIs (https, http and file are supported)")


def _outside_template_folder(path: str, absolute: bool, base_dir: str | None) -> str | None:
    """Why a ``file:`` path may not be read without ``--allow-local-files``, or None when it stays in the
    template's folder (after resolving symlinks and ``..``)."""
    hint = (
        f"; whatever it names is copied onto the VM, so aibx reads only files in the template's folder unless "
        f"{ALLOW_LOCAL_FILES_FLAG} is given"
    )
    if absolute:
        return "is an absolute path on this machine" + hint
    folder = os.path.realpath(base_dir or ".")
    real = os.path.realpath(path)
    if os.path.commonpath([folder, real]) != folder:
        return f"leads out of the template's folder (to {real})" + hint
    return None
