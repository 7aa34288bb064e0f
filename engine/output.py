"""Turning a stream of output chunks into lines of text, with bounded memory."""

from __future__ import annotations

from typing import Protocol

MAX_LINE = 64 * 1024  # a longer "line" (binary data, a progress bar without newlines) is cut into pieces


class CutGuard(Protocol):
    """Where a long line may be cut without splitting a secret (aibx/redaction.py's Redactor is one)."""

    lookahead: int

    def safe_cut(self, data: bytes, at: int) -> int: ...


class LineSplitter:
    """``feed(chunk)`` returns the complete lines the chunk finished; ``flush()`` the rest.

    Bytes are decoded as UTF-8 (invalid sequences replaced). As on a terminal, a carriage return starts the line
    again: only the text after the last ``\\r`` of a line is kept (progress bars), and CRLF endings are removed.

    A line longer than ``max_line`` bytes is cut into pieces; with a ``guard``, each cut is moved to where it splits
    no secret (a secret cut in two would be masked in neither piece): the splitter then keeps up to
    ``guard.lookahead`` bytes more before cutting, so memory stays bounded."""

    def __init__(self, max_line: int = MAX_LINE, guard: CutGuard | None = None) -> None:
        self.max_line = max_line
        self.guard = guard
        self.lookahead = min(guard.lookahead, max_line) if guard is not None else 0
        self.partial = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        self.partial += chunk
        if b"\n" not in chunk and len(self.partial) < self.max_line + self.lookahead:
            return []
        *complete, rest = bytes(self.partial).split(b"\n")
        lines = [_text(line) for line in complete]
        while len(rest) >= self.max_line + self.lookahead:
            rest = self._cut(rest, lines)
        self.partial = bytearray(rest)
        return lines

    def flush(self) -> list[str]:
        if not self.partial:
            return []
        rest = bytes(self.partial)
        lines: list[str] = []
        while len(rest) > self.max_line:
            rest = self._cut(rest, lines)
        self.partial.clear()
        return [*lines, _text(rest)] if rest else lines

    def _cut(self, rest: bytes, lines: list[str]) -> bytes:
        """Cut one piece off the front of ``rest`` into ``lines``; return what is left."""
        cut = self.max_line if self.guard is None else self.guard.safe_cut(rest, self.max_line)
        lines.append(_text(rest[:cut]))
        return rest[cut:]


def _text(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b"\r" in raw:
        raw = raw.rsplit(b"\r", 1)[1] or raw.replace(b"\r", b"")
    return raw.decode("utf-8", errors="replace")
