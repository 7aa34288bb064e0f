r"""Keeping secrets out of everything aibx writes: console, customization.log, the JSON report, error messages.

Redacted: the literal secrets the run knows (the SSH password, the values of secure template parameters), SAS
signatures (``sig=…`` in any URL query), passwords in URLs (``scheme://user:password@host``), and private key
blocks (``-----BEGIN … PRIVATE KEY-----`` up to the matching END line, also across lines of output).

A known secret is masked in every form output commonly gives it (issue 11):

* line by line: each line of a secret that spans lines (a PEM key, a ``-p`` value with a newline), and each 64- or
  76-column piece of a long one (base64 and PEM wrap there);
* escaped: JSON-escaped, in any mix of escaped and plain characters (``\u0026``, ``\u0027``, ``\u003c`` and
  ``\u003e`` as PowerShell 5.1's ``ConvertTo-Json`` writes them, ``\/``, ``\"``, ``\n``, upper or lower case
  hex), and URL-encoded (``%26`` or ``%2b`` in either case, ``+`` for a space);
* base64: the part of the encoding that depends on the secret alone, whatever the secret's offset in the encoded
  data (0, 1 or 2 bytes into a 3-byte group), in the standard and the URL-safe alphabet (and those escaped as
  above);
* across the cut of an over-long line (``safe_cut``: the line splitter cuts a 64 KiB line where no secret is).

A secret (or a line or piece of one) shorter than ``MIN_SECRET_LENGTH`` characters is not masked inside longer
text: it would mask ordinary words and numbers all over the output.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

MASK = "***"
_PATTERNS_TEXT = (
    # SAS signature, also in a JSON-escaped (\u0026sig=) or URL-encoded (%26sig%3D) URL
    r"(?:(?<=[?&;]sig=)|(?<=\\u0026sig=)|(?<=\\u003fsig=)|(?<=%26sig%3d)|(?<=%3fsig%3d))"
    r"(?:(?!%26|\\u0026)[^&\s\"'<>\\])+"
    r"|(?<=://)[^/@\s:\"']+:[^/@\s\"']+(?=@)"  # user:password@ in a URL
)
_PATTERNS = re.compile(_PATTERNS_TEXT, re.IGNORECASE)
_PATTERNS_BYTES = re.compile(_PATTERNS_TEXT.encode(), re.IGNORECASE)
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
# shorter than this, a "secret" would mask ordinary words and numbers all over the output
MIN_SECRET_LENGTH = 4
WRAP_COLUMNS = (64, 76)  # PEM wraps base64 at 64 columns, MIME (and the base64 command) at 76
# the line splitter looks this far past a cut for a secret it would split (a SAS signature has no known length)
MIN_LOOKAHEAD = 512
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in hex_digits)


def _char_forms(c: str) -> str:
    """A regular expression for one character of a secret: as is, JSON-escaped or URL-encoded."""
    if c.isascii() and c.isalnum():
        return c
    alternatives = [re.escape(c)]
    if c in _JSON_SHORT:
        alternatives.append(re.escape(_JSON_SHORT[c]))
    units = [ord(c)] if ord(c) < 0x10000 else list(divmod(ord(c) - 0x10000, 0x400))
    if len(units) == 2:  # a surrogate pair
        units = [0xD800 + units[0], 0xDC00 + units[1]]
    alternatives.append("".join(r"\\u" + _any_case(f"{u:04x}") for u in units))
    alternatives.append("".join("%" + _any_case(f"{b:02x}") for b in c.encode("utf-8")))
    if c == " ":
        alternatives.append(r"\+")
    return "(?:" + "|".join(alternatives) + ")"


def _encoded(text: str) -> str:
    """A regular expression for ``text`` in any mix of plain, JSON-escaped and URL-encoded characters."""
    return "".join(_char_forms(c) for c in text)


def _base64_forms(text: str) -> list[str]:
    """The parts of the base64 encoding of ``text`` that do not depend on what surrounds it, for each of the three
    offsets it can have in the encoded data, in the standard and URL-safe alphabets."""
    data = text.encode("utf-8")
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        start = -(-8 * offset // 6)  # the first character made of the secret's bits alone
        end = 8 * (offset + len(data)) // 6  # past the last one (the rest also holds what follows)
        stable = encoded[start:end]
        if len(stable) >= MIN_SECRET_LENGTH:
            forms += [stable, stable.replace("+", "-").replace("/", "_")]
    return forms


def _lines(secret: str) -> list[str]:
    """The secret and each of its lines."""
    lines = [line.rstrip("\r") for line in secret.split("\n")] if "\n" in secret else []
    return [p for p in dict.fromkeys([secret, *lines]) if len(p.strip()) >= MIN_SECRET_LENGTH]


def _wrapped(line: str) -> list[str]:
    return [line[i : i + width] for width in WRAP_COLUMNS if len(line) > width for i in range(0, len(line), width)]


def secret_texts(secret: str) -> list[str]:
    """Every text the redactor masks for ``secret`` (each also in its escaped and encoded forms), longest first:
    the secret and each of its lines, each 64- and 76-column piece of those, and their base64 encodings."""
    texts: list[str] = []
    for line in _lines(secret):
        texts += [line, *_wrapped(line), *_base64_forms(line)]
        # the line encoded on its own starts a line of the output, which ``base64`` wraps at 76 columns (PEM at 64)
        alone = base64.b64encode(line.encode("utf-8")).decode("ascii")
        texts += _wrapped(alone)
    return sorted(
        (t for t in dict.fromkeys(texts) if len(t.strip().rstrip("=")) >= MIN_SECRET_LENGTH), key=len, reverse=True
    )


_KEY_LENGTH = 4
_ALNUM_RUN = re.compile(rf"[A-Za-z0-9]{{{_KEY_LENGTH},}}")


def _key(text: str) -> str | None:
    """Four letters or digits every form of ``text`` holds as they are (no encoding changes them), or None."""
    runs = _ALNUM_RUN.findall(text)
    return max(runs, key=len)[:_KEY_LENGTH] if runs else None


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self._literals: re.Pattern[str] | None = None  # every form of every secret, longest first
        self._literal_bytes: re.Pattern[bytes] | None = None
        # a text that holds none of the keys can only hold the forms of _unkeyed: most lines skip the big pattern
        self._keys: frozenset[str] = frozenset()
        self._unkeyed: re.Pattern[str] | None = None
        self.lookahead = MIN_LOOKAHEAD
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH and secret not in self.secrets:
                self.secrets.append(secret)
        if self.secrets:  # longest first, so that no secret is left half-masked
            ordered = sorted(self.secrets, key=len, reverse=True)
            texts = sorted({t for secret in ordered for t in secret_texts(secret)}, key=lambda t: (-len(t), t))
            forms = "|".join(_encoded(t) for t in texts)
            self._literals = re.compile(forms)
            self._literal_bytes = re.compile(forms.encode("utf-8"))
            keys = [_key(t) for t in texts]
            self._keys = frozenset(k for k in keys if k is not None)
            unkeyed = [_encoded(t) for t, k in zip(texts, keys, strict=True) if k is None]
            self._unkeyed = re.compile("|".join(unkeyed)) if unkeyed else None
            # the longest form a secret can take in output: 9 bytes for a character URL-encoded from 3 UTF-8 bytes
            longest = max(len(secret.encode("utf-8")) * 3 for secret in ordered)
            self.lookahead = max(MIN_LOOKAHEAD, longest)

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._literals is not None and self._has_key(text):
            text = self._literals.sub(MASK, text)
        elif self._unkeyed is not None:
            text = self._unkeyed.sub(MASK, text)
        text = _PATTERNS.sub(MASK, text)
        if "PRIVATE KEY-----" in text:
            text = _redact_key_blocks(text)
        return text

    def _has_key(self, text: str) -> bool:
        keys = self._keys
        if len(keys) <= 8:
            return any(k in text for k in keys)
        return any(text[i : i + _KEY_LENGTH] in keys for i in range(len(text) - _KEY_LENGTH + 1))

    def safe_cut(self, data: bytes, at: int) -> int:
        """Where to cut ``data`` near ``at`` so that no secret the redactor knows (in any of its forms, or a
        pattern such as a SAS signature) is split between the two pieces: ``at`` itself, or the start of the
        secret that spans it (its end when it starts the data). Looks ``self.lookahead`` bytes either side."""
        low = max(0, at - self.lookahead)
        window = data[low : at + self.lookahead]
        for pattern in (self._literal_bytes, _PATTERNS_BYTES):
            if pattern is None:
                continue
            for m in pattern.finditer(window):
                start, end = low + m.start(), low + m.end()
                if start < at < end:
                    return start if start > 0 else end
        return at

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
