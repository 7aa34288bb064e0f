"""aibx run on a real pseudo-terminal (Python's pty module): what a person at the keyboard sees and types."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


class TerminalRun:
    """``python -m aibx ARGS`` with a pty as its standard input, output and error."""

    def __init__(self, args: Sequence[str | Path], cwd: Path) -> None:
        import pty

        self.master, slave = pty.openpty()
        env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "TERM": "xterm"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aibx", *map(str, args)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.seen += data.decode(errors="replace")
        return bool(data)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until the output so far matches ``pattern``; the output after the match is kept for the next."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.seen)
            if match:
                return match
            if time.monotonic() > deadline or (not self._read(0.2) and self.proc.poll() is not None):
                if re.search(pattern, self.seen):
                    continue
                raise AssertionError(f"{pattern!r} never appeared; the terminal showed:\n{self.seen}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0.05):
            pass
        code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code
