"""What every executor gets (a ``StepRun``), and the registry that finds the executor of an action by its type.

An executor is ``async def execute(run: StepRun, action: SomeAction) -> int | None`` (the exit code the step
reports, or None), registered with ``@executes(SomeAction)``. It raises ``StepFailed`` to end the step; the
session raises ``Interrupted`` and ``DeadlineExceeded``, which the runner turns into the step's outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aibx.engine.events import StepRef
from aibx.engine.reboots import RebootWatcher
from aibx.engine.session import Session, StepResult
from aibx.plan import Action, Content

A = TypeVar("A", bound=Action)
Executor = Callable[["StepRun", Any], Awaitable["int | None"]]
_EXECUTORS: dict[type, Executor] = {}  # an Action type -> its executor


@dataclass
class StepRun:
    """One step under way: the session, the reboot watcher, the step and its result so far."""

    session: Session
    reboots: RebootWatcher
    ref: StepRef
    result: StepResult
    fetched: dict[Content, Path] = field(default_factory=dict)  # checked scripts and files, downloaded first

    def stdin(self, content: Content | None) -> bytes | Path | None:
        if content is None:
            return None
        return self.payload(content)

    def payload(self, content: Content) -> bytes | Path:
        return content.data if content.data is not None else self.fetched[content]


def executes(kind: type[A]) -> Callable[[Callable[[StepRun, A], Awaitable[int | None]]], Executor]:
    """Register the decorated coroutine as the executor of ``kind`` actions."""

    def register(function: Callable[[StepRun, A], Awaitable[int | None]]) -> Executor:
        _EXECUTORS[kind] = function
        return function

    return register


def executor_for(action: Action) -> Executor | None:
    return _EXECUTORS.get(type(action))
