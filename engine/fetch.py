"""Getting a step's script or file onto this machine, checked, before anything reaches the VM.

``ContentFetcher.fetch(content)`` copies a local file or downloads an http(s) URI into a private work directory,
computing the sha256 on the way, and refuses the result if it does not match ``sha256Checksum``. Transient
download errors (connection failures, timeouts, HTTP 408, 429 and 5xx) are retried with exponential backoff, ten
tries in all as AIB does. The URI is only ever shown without its query (SAS tokens live there).

Redirects are followed to https, and to plain http only from an http URI (which was warned about already): a
redirect to any other scheme (ftp:, file:, ...) or from https down to http is refused (``_SchemeKeepingRedirects``).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import itertools
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aibx import __version__
from aibx.engine.progress import TransferMeter
from aibx.plan import Content, redact_uri

CHUNK = 1024 * 1024
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class FetchError(Exception):
    """The content cannot be had; the message names the source without secrets."""


class ChecksumMismatch(FetchError):
    pass


class _Transient(Exception):
    pass


class NameNotFound(FetchError):
    """The URI's host name does not exist (DNS says so for sure): trying again does not help, nothing ran."""


# getaddrinfo's answers that mean "this name does not exist" (not "the resolver could not be asked")
_NO_SUCH_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


class RedirectRefused(FetchError):
    """A redirect to a scheme aibx does not download from, or from https down to plain http."""


class _SchemeKeepingRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to http, https and ftp alike; this one follows https anywhere, and http only when
    the URI the template named was http itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        first = getattr(req, "aibx_first_scheme", urllib.parse.urlsplit(req.full_url).scheme.lower())
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        shown = f"{redact_uri(req.full_url)} redirects ({code}) to {redact_uri(newurl)}"
        if scheme == "http" and first == "https":
            raise RedirectRefused(
                f"{shown}: from https down to plain http, which anyone on the way could read or change; refused "
                "(name the http URI in the template if plain http is acceptable: it is then fetched with a warning)"
            )
        if scheme not in ("https", "http"):
            raise RedirectRefused(f"{shown}: aibx follows redirects only to https (or http from http); refused")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.aibx_first_scheme = first  # type: ignore[attr-defined]
        return new


@dataclass
class FetchPolicy:
    tries: int = 10
    first_delay: float = 1.0  # then doubled after every failure, up to max_delay
    max_delay: float = 30.0
    timeout: float = 30.0  # without a byte from the server

    def delays(self) -> list[float]:
        """The pauses between the tries: ``first_delay``, doubled after every failure, at most ``max_delay``
        (by default 1, 2, 4, 8, 16, 30, 30, 30, 30 s: 2.5 minutes of waiting at most, plus the tries)."""
        out, delay = [], self.first_delay
        for _ in range(self.tries - 1):
            out.append(delay)
            delay = min(delay * 2, self.max_delay)
        return out


class ContentFetcher:
    def __init__(
        self,
        workdir: Path,
        policy: FetchPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        start_meter: Callable[[str], TransferMeter] | None = None,
    ) -> None:
        self.workdir = workdir
        self.policy = policy or FetchPolicy()
        self.on_retry = on_retry or (lambda message: None)
        self.on_warning = on_warning or (lambda message: None)
        # given a URI as it may be shown, the meter its download reports its progress to
        self.start_meter = start_meter
        self._done: dict[Content, Path] = {}
        self._names = itertools.count()  # fetches may run at the same time (SharedFetcher): each its own file
        self._cancel = threading.Event()

    async def fetch(self, content: Content) -> Path:
        if content in self._done:
            return self._done[content]
        target = self.workdir / f"content-{next(self._names)}"
        if content.local_path is not None:
            digest = await asyncio.to_thread(self._copy_local, Path(content.local_path), target)
            where = content.local_path
        elif content.uri is not None:
            if not content.uri.lower().startswith(("https:", "http:")):
                # urllib would read file:, ftp: and data: too; what reaches here was checked by provisioners/sources
                raise FetchError(f"{redact_uri(content.uri)}: aibx downloads only https and http URIs")
            digest = await self._download(content.uri, target)
            where = redact_uri(content.uri)
            if content.uri.lower().startswith("http:"):
                self.on_warning(f"{where} was fetched over plain http: anyone on the way could read or change it")
        else:
            raise FetchError("nothing to fetch")
        if content.sha256 and digest != content.sha256.lower():
            target.unlink(missing_ok=True)
            raise ChecksumMismatch(f"sha256 mismatch for {where}: expected {content.sha256.lower()}, got {digest}")
        if not content.sha256:
            self.on_warning(f"{where} has no sha256Checksum: its content was not checked")
        if content.normalize_newlines:
            await asyncio.to_thread(_crlf_to_lf, target)
        self._done[content] = target
        return target

    def cancel(self) -> None:
        """Stop downloads that are under way in worker threads (at their next chunk)."""
        self._cancel.set()

    # ------------------------------------------------------------------------------------------ local files
    @staticmethod
    def _copy_local(source: Path, target: Path) -> str:
        try:
            with source.open("rb") as src, target.open("xb") as dst:
                return _copy_hashing(src, dst)
        except FileNotFoundError:
            raise FetchError(f"{source}: no such file") from None
        except IsADirectoryError:
            raise FetchError(f"{source} is a directory") from None
        except OSError as exc:
            raise FetchError(f"{source}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------------------------------------ downloads
    async def _download(self, uri: str, target: Path) -> str:
        shown = redact_uri(uri)
        delays = self.policy.delays()
        meter = self.start_meter(shown) if self.start_meter is not None else None
        progress = None
        if meter is not None:
            loop = asyncio.get_running_loop()

            def progress(done: int, total: int | None) -> None:  # in the worker thread
                loop.call_soon_threadsafe(meter.update, done, total)

        for attempt in range(1, self.policy.tries + 1):
            try:
                digest = await asyncio.to_thread(self._download_once, uri, target, progress)
                if meter is not None:  # the worker's last update is in: it was scheduled before the result
                    meter.finish()
                return digest
            except _Transient as exc:
                if attempt == self.policy.tries:
                    raise FetchError(f"cannot download {shown} after {attempt} tries: {exc}") from None
                delay = delays[attempt - 1]
                self.on_retry(
                    f"download of {shown} failed ({exc}); try {attempt + 1} of {self.policy.tries} in {delay:g} s"
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _download_once(self, uri: str, target: Path, progress: Callable[[int, int | None], None] | None = None) -> str:
        request = urllib.request.Request(uri, headers={"User-Agent": f"aibx/{__version__}"})
        try:
            opener = urllib.request.build_opener(_SchemeKeepingRedirects())  # proxies as the environment says now
            with opener.open(request, timeout=self.policy.timeout) as response, target.open("wb") as dst:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                on_chunk = (lambda done: progress(done, total)) if progress is not None else None
                return _copy_hashing(response, dst, self._cancel, on_chunk)
        except urllib.error.HTTPError as exc:
            text = f"HTTP {exc.code} {exc.reason}"
            if exc.code in TRANSIENT_HTTP:
                raise _Transient(text) from None
            hint = "; the SAS token may have expired or lack read permission" if exc.code in (401, 403) else ""
            raise FetchError(f"cannot download {redact_uri(uri)}: {text}{hint}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, socket.gaierror):
                host = urllib.parse.urlsplit(uri).hostname or "?"
                if reason.errno in _NO_SUCH_NAME:
                    raise NameNotFound(
                        f"cannot download {redact_uri(uri)}: cannot resolve the host name {host}: it does not exist "
                        f"({reason.strerror}); check the spelling, or your DNS"
                    ) from None
                raise _Transient(f"cannot resolve the host name {host} ({reason.strerror})") from None
            if isinstance(reason, OSError) and reason.strerror:
                if "CERTIFICATE_VERIFY_FAILED" in str(reason):
                    raise FetchError(f"cannot download {redact_uri(uri)}: TLS certificate not trusted") from None
                raise _Transient(reason.strerror) from None
            raise _Transient(str(reason)) from None
        except TimeoutError:
            raise _Transient(f"no data for {self.policy.timeout:g} s") from None
        except (ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected) as exc:
            raise _Transient(type(exc).__name__) from None
        except ValueError as exc:
            raise FetchError(f"cannot download {redact_uri(uri)}: {exc}") from None


class _Reads(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Writes(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _copy_hashing(
    src: _Reads, dst: _Writes, cancel: threading.Event | None = None, on_chunk: Callable[[int], None] | None = None
) -> str:
    digest = hashlib.sha256()
    done = 0
    while chunk := src.read(CHUNK):
        if cancel is not None and cancel.is_set():
            raise FetchError("cancelled")
        digest.update(chunk)
        dst.write(chunk)
        if on_chunk is not None:
            done += len(chunk)
            on_chunk(done)
    return digest.hexdigest()


def _crlf_to_lf(path: Path) -> None:
    """Rewrite CRLF line endings as LF, streaming (a CR at a chunk's end waits for the next chunk)."""
    temp = path.with_suffix(".lf")
    with path.open("rb") as src, temp.open("wb") as dst:
        carry = b""
        while chunk := src.read(CHUNK):
            data = carry + chunk
            carry = b"\r" if data.endswith(b"\r") else b""
            dst.write(data[: len(data) - len(carry)].replace(b"\r\n", b"\n"))
        dst.write(carry)
    shutil.move(temp, path)


class SharedFetcher:
    """One fetch of each script or file for many runs at once (a fleet): the first run that asks starts it, the
    others wait for the same result (or the same error). Files live in ``workdir``, which the caller removes."""

    def __init__(self, fetcher: ContentFetcher) -> None:
        self.fetcher = fetcher
        self._tasks: dict[Content, asyncio.Future[Path]] = {}

    async def fetch(self, content: Content) -> Path:
        task = self._tasks.get(content)
        if task is None:
            task = self._tasks[content] = asyncio.ensure_future(self.fetcher.fetch(content))
        return await asyncio.shield(task)  # one run giving up (its deadline) does not stop it for the others

    def cancel(self) -> None:
        self.fetcher.cancel()
