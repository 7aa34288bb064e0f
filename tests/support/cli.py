"""Running the aibx command in the test process, capturing what it prints."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

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


class RecordedRun:
    """One ``aibx run TEMPLATE ARGS...``, with its log and JSON report kept for the assertions."""

    def __init__(self, tmp_path: Path, template: Path, *args: str | Path) -> None:
        self.log = tmp_path / "customization.log"
        self.report_path = tmp_path / "report.json"
        self.result = invoke("run", template, "--log", self.log, "--report", self.report_path, *args)

    @property
    def code(self) -> int:
        return self.result.code

    @property
    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    def outcomes(self) -> dict[str, str]:
        return {s["name"]: s["outcome"] for s in self.report["steps"]}

    def step(self, name: str) -> dict:
        return next(s for s in self.report["steps"] if s["name"] == name)

    def everything(self) -> str:
        """All aibx wrote: console, log and report."""
        report = self.report_path.read_text() if self.report_path.exists() else ""
        log = self.log.read_text() if self.log.exists() else ""
        return self.result.text + log + report


def aibx_command() -> list[str]:
    """The installed ``aibx`` next to this interpreter, or ``python -m aibx`` (for benchmarks and subprocesses)."""
    installed = shutil.which("aibx", path=str(Path(sys.executable).parent))
    return [installed] if installed else [sys.executable, "-m", "aibx"]
