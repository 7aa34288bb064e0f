"""A command's output as whole lines: Output events for the console and the log, and the last lines of stdout and
stderr for the message of a command that failed or did not end by itself. Memory stays bounded whatever the
output's size."""

from __future__ import annotations

import collections
from collections.abc import Callable

from aibx.engine.events import Event, EventBus, Output, StepRef
from aibx.engine.output import LineSplitter

TAIL_LINES = 10  # stderr lines quoted when a step fails
# What a failing command's stderr says about a VM that cannot run it as asked, and what to do about it
FAILURE_HINTS = (
    (
        ("sudo: a terminal is required", "sudo: a password is required", "sudo: no password was provided"),
        "sudo on the VM asks for a password, and aibx runs commands without a terminal (as AIB does): give the "
        "user passwordless sudo (NOPASSWD) for the build",
    ),
    (
        ("/bin/sh: No such file or directory", "/bin/sh: not found", "/bin/sh: bad interpreter"),
        "the VM has no /bin/sh, which runs inline Shell lines (/bin/sh -e, as AIB does) and aibx's wrapper",
    ),
)


class OutputCollector:
    """Turns a step's output chunks into Output events of whole lines, keeping the last stderr lines for the
    failure message. Memory stays bounded whatever the output's size."""

    def __init__(
        self, emit: Callable[[Event], None], target: str, ref: StepRef, shutdown_marker: str = "", capture: str = ""
    ) -> None:
        self.emit, self.target, self.ref = emit, target, ref
        # stdout lines starting with ``capture`` are kept in ``captured`` instead of being shown (a result line)
        self.capture = capture
        self.captured: list[str] = []
        # long lines are cut where the bus's redactor sees no secret (issue 11: a secret cut in two was unmasked)
        guard = emit.redactor if isinstance(emit, EventBus) else None
        self.splitters = {"stdout": LineSplitter(guard=guard), "stderr": LineSplitter(guard=guard)}
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.last_stdout: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.shutdown_marker = shutdown_marker
        self.saw_shutdown_marker = False

    def feed(self, stream: str, chunk: bytes) -> None:
        self._emit(stream, self.splitters[stream].feed(chunk))

    def flush(self) -> None:
        for stream, splitter in self.splitters.items():
            self._emit(stream, splitter.flush())

    def _emit(self, stream: str, lines: list[str]) -> None:
        if self.capture and stream == "stdout" and lines:
            self.captured += [line for line in lines if line.startswith(self.capture)]
            lines = [line for line in lines if not line.startswith(self.capture)]
        if not lines:
            return
        if self.shutdown_marker and stream == "stderr" and lines[-1] == self.shutdown_marker:
            self.saw_shutdown_marker = True  # the wrapper's last word
        (self.tail if stream == "stderr" else self.last_stdout).extend(lines[-TAIL_LINES:])
        self.emit(Output(self.target, step=self.ref, stream=stream, lines=tuple(lines)))

    def last_lines(self) -> str:
        """The last lines of output and of stderr, for a message about a command that did not end by itself."""
        text = ""
        for lines, what in ((self.last_stdout, "output"), (self.tail, "stderr")):
            if lines:
                text += f"; last lines of {what}:\n" + "\n".join(f"  {line}" for line in lines)
        return text

    def failure_message(self, code: int, valid: tuple[int, ...]) -> str:
        allowed = "" if valid == (0,) else f" (allowed: {', '.join(map(str, valid))})"
        # Windows exit codes are often HRESULTs (-2147023570 is 0x8007052E): the hex form is what to search for
        hresult = f" (0x{code & 0xFFFFFFFF:08X})" if code < 0 or code > 0xFFFF else ""
        text = f"exit code {code}{hresult}{allowed}"
        lines, what = (self.tail, "stderr") if self.tail else (self.last_stdout, "output")
        if lines:
            text += f"; last lines of {what}:\n" + "\n".join(f"  {line}" for line in lines)
        else:
            text += "; it printed nothing (aibx run -v shows each command of inline lines as it runs)"
        for needles, hint in FAILURE_HINTS:
            if any(needle in line for line in self.tail for needle in needles):
                text += f"\nhint: {hint}"
        return text
