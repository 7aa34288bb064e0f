"""The person at the terminal during ``aibx run --step`` and ``--on-error ask``: the questions, and reading the
answers from standard input without blocking the run's event loop (an interrupt or the build deadline ends the
wait). Face side, beside the pipeline: the engine only knows the ``Pilot`` protocol (aibx.engine.session)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from aibx.engine.console_view import ConsoleView
from aibx.engine.events import StepRef

BEFORE_STEP = {"": "run", "r": "run", "run": "run", "s": "skip", "skip": "skip", "q": "abort", "a": "abort"}
AFTER_FAILURE = {
    "r": "retry",
    "retry": "retry",
    "s": "skip",
    "skip": "skip",
    "a": "abort",
    "abort": "abort",
    "q": "abort",
    "p": "pause",
    "pause": "pause",
}


def terminal_problem(step_through: bool, on_error: str, hosts: int, stdin: TextIO | None = None) -> str:
    """Why --step / --on-error ask cannot be used here, or "": they need a terminal, and one host."""
    wanted = [name for name, given in (("--step", step_through), ("--on-error ask", on_error == "ask")) if given]
    if not wanted:
        return ""
    stream = stdin or sys.stdin
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return f"{' and '.join(wanted)} ask on a terminal, and standard input is not one (nothing was run)"
    if hosts > 1:
        return f"{' and '.join(wanted)} ask about one host at a time: give a single --host"
    return ""


class TerminalPilot:
    def __init__(
        self,
        target: str,
        views: Sequence[ConsoleView],
        *,
        step_through: bool,
        ask_on_error: bool,
        stdin: TextIO | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.target = target
        self.views = views
        self.step_through = step_through
        self.ask_on_error = ask_on_error
        self.stdin = stdin or sys.stdin
        self.out = out or sys.stderr

    async def before_step(self, ref: StepRef) -> str:
        if not self.step_through:
            return "run"
        question = f"--step: next is [{ref.index}/{ref.total}] {ref.name}. Enter runs it, s skips it, q aborts: "
        return await self._ask(question, BEFORE_STEP)

    async def after_failure(self, ref: StepRef, message: str) -> str:
        if not self.ask_on_error:
            return "abort"
        while True:
            first_line = message.splitlines()[0] if message else ""
            question = (
                f"step {ref.name!r} failed ({first_line}). [r]etry it, [s]kip it and go on, [a]bort, "
                "or [p]ause to inspect the VM: "
            )
            choice = await self._ask(question, AFTER_FAILURE)
            if choice != "pause":
                return choice
            where = "this machine" if self.target == "local" else self.target
            await self._ask(
                f"paused: {where} is as the step left it (aibx's temporary files removed); look around, then "
                "press Enter to choose: ",
                None,
            )

    async def _ask(self, question: str, choices: dict[str, str] | None) -> str:
        for view in self.views:
            view.hold(True)
        try:
            while True:
                self.out.write(question)
                self.out.flush()
                line = await self._read_line()
                if line is None:  # end of input: nobody to answer
                    self.out.write("\n")
                    return "abort"
                key = line.strip().lower()
                if choices is None:
                    return ""
                if key in choices:
                    return choices[key]
                self.out.write(f"answer one of: {', '.join(sorted({k for k in choices if k}))}\n")
        finally:
            for view in self.views:
                view.hold(False)

    async def _read_line(self) -> str | None:
        """One line of standard input, read as it becomes readable (the event loop keeps running: the clock, an
        interrupt, the deadline). None at the end of input."""
        loop = asyncio.get_running_loop()
        fd = self.stdin.fileno()
        done: asyncio.Future[str | None] = loop.create_future()
        buffer = bytearray()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if done.done():
                return
            if not data:
                done.set_result(buffer.decode(errors="replace") if buffer else None)
                return
            buffer.extend(data)
            if b"\n" in buffer:
                done.set_result(buffer.split(b"\n", 1)[0].decode(errors="replace"))

        loop.add_reader(fd, readable)
        try:
            return await done
        finally:
            loop.remove_reader(fd)
