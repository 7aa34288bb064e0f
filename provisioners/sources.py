"""Where a customizer's script or file comes from: ``scriptUri`` / ``sourceUri`` as plan ``Content``.

https and http URIs are fetched by aibx (or by the VM with ``--fetch-on-target``); ``file:`` URIs name a file on the
machine running aibx, relative to the template's folder unless absolute (``file:scripts/a.sh``,
``file:///srv/a.sh``). Resolving is pure: nothing is read here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aibx.plan import Content, redact_uri

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass
class Source:
    content: Content | None = None
    remote: bool = False  # http(s): the VM may download it itself (--fetch-on-target)
    blocked: str | None = None
    note: str | None = None


def resolve(uri: str, sha256: str | None, base_dir: str, *, script: bool = False) -> Source:
    if any(c.isspace() for c in uri):
        return Source(blocked=f"{redact_uri(uri)!r} contains white space; percent-encode it")
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
        if not os.path.isabs(path):
            path = os.path.join(base_dir, path) if base_dir not in ("", ".") else path
        return Source(Content(local_path=path, sha256=checksum, normalize_newlines=script))
    if not scheme:
        return Source(blocked=f"{uri!r} is not a URI; write https://…, or file:PATH for a local file")
    return Source(blocked=f"aibx cannot fetch {scheme}: URIs (https, http and file are supported)")
