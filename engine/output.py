"""Turning a stream of output chunks into lines of text, with bounded memory."""

from __future__ import annotations

MAX_LINE = 64 * 1024  # a longer "line" (binary data, a progress bar without newlines) is cut into pieces


class LineSplitter:
    """``feed(chunk)`` returns the complete lines the chunk finished; ``flush()`` the rest.

    Bytes are decoded as UTF-8 (invalid sequences replaced). As on a terminal, a carriage return starts the line
    again: only the text after the last ``\\r`` of a line is kept (progress bars), and CRLF endings are removed."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.partial = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        self.partial += chunk
        if b"\n" not in chunk and len(self.partial) < self.max_line:
            return []
        *complete, rest = bytes(self.partial).split(b"\n")
        lines = [_text(line) for line in complete]
        while len(rest) >= self.max_line:
            lines.append(_text(rest[: self.max_line]))
            rest = rest[self.max_line :]
        self.partial = bytearray(rest)
        return lines

    def flush(self) -> list[str]:
        if not self.partial:
            return []
        line = _text(bytes(self.partial))
        self.partial.clear()
        return [line]


def _text(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b"\r" in raw:
        raw = raw.rsplit(b"\r", 1)[1] or raw.replace(b"\r", b"")
    return raw.decode("utf-8", errors="replace")
