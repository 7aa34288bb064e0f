"""Terminal styling for human output: colour only on a terminal, and never when NO_COLOR is set."""

from __future__ import annotations

import os
import sys
from typing import TextIO

_CODES = {"red": "31", "yellow": "33", "green": "32", "blue": "34", "cyan": "36", "dim": "2", "bold": "1"}


COLOR_OFF = False  # --no-color


def use_color(stream: TextIO) -> bool:
    if COLOR_OFF or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class Style:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.enabled = use_color(stream or sys.stdout)

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"
