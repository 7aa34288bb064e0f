"""Keeping secrets out of everything aibx writes: console, customization.log, the JSON report, error messages.

Redacted: the literal secrets the run knows (the SSH password, the values of secure template parameters), SAS
signatures (``sig=…`` in any URL query), passwords in URLs (``scheme://user:password@host``), and private key
blocks (``-----BEGIN … PRIVATE KEY-----`` up to the matching END line, also across lines of output).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_PATTERNS = re.compile(
    r"(?<=[?&;]sig=)[^&\s\"'<>]+"  # SAS signature
    r"|(?<=://)[^/@\s:\"']+:[^/@\s\"']+(?=@)",  # user:password@ in a URL
    re.IGNORECASE,
)
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# shorter than this, a "secret" would mask ordinary words and numbers all over the output
MIN_SECRET_LENGTH = 4


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self._literals: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH and secret not in self.secrets:
                self.secrets.append(secret)
        if self.secrets:  # longest first, so that no secret is left half-masked
            ordered = sorted(self.secrets, key=len, reverse=True)
            self._literals = re.compile("|".join(re.escape(s) for s in ordered))

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._literals is not None:
            text = self._literals.sub(MASK, text)
        text = _PATTERNS.sub(MASK, text)
        if "PRIVATE KEY-----" in text:
            text = _redact_key_blocks(text)
        return text

    def lines(self) -> LineRedactor:
        """A redactor for one stream of output lines, which remembers being inside a private key block."""
        return LineRedactor(self)


class LineRedactor:
    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.in_key = False

    def __call__(self, line: str) -> str:
        if self.in_key:
            if _KEY_END.search(line):
                self.in_key = False
            return MASK
        begin = _KEY_BEGIN.search(line)
        if begin and not _KEY_END.search(line, begin.end()):
            self.in_key = True
            return self.redactor.redact(line[: begin.start()]) + MASK
        return self.redactor.redact(line)


def _redact_key_blocks(text: str) -> str:
    out: list[str] = []
    pos = 0
    while (begin := _KEY_BEGIN.search(text, pos)) is not None:
        out += [text[pos : begin.start()], MASK]
        end = _KEY_END.search(text, begin.end())
        pos = end.end() if end else len(text)
    out.append(text[pos:])
    return "".join(out)


def redact_tree(value: object, redact: Redactor) -> object:
    """A copy of JSON-like data with every string redacted (before serialization, so escaping cannot hide one)."""
    if isinstance(value, str):
        return redact.redact(value)
    if isinstance(value, dict):
        return {redact_tree(k, redact): redact_tree(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v, redact) for v in value]
    return value
