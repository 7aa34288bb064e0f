"""Running the aibx command in the test process, capturing what it prints."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from aibx.cli import main


@dataclass
class Completed:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def invoke(*args: str) -> Completed:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Completed(code, out.getvalue(), err.getvalue())
