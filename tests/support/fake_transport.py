"""A scripted fake VM and its transport, for unit tests of the engine's logic (the Session, the RebootWatcher and
every executor) in milliseconds. It adds to the real-target tests (sshd, the WinRM server, QEMU); it never
replaces them.

A test writes what the VM does with each command it is sent, in order, as ``Reply`` values::

    vm = FakeVM([Reply(stdout=b"hello\\n"), Reply(drop=True, reboot=True), Reply(exit_code=3, stderr=b"no\\n")])
    result = await run_plan(vm, [Exec("echo hello"), Exec("sudo reboot"), Exec("false")])

A reply can exit with a code, print output (at once, or slowly in ``chunks`` with pauses), drop the connection
before the command starts or while it runs, restart the VM (a new boot identity), stay down for some reconnect
attempts, or keep running until it is cancelled (``hang``). Commands the script does not mention (the engine's own
clean-up) exit 0. Every command, upload and reconnect is recorded for the asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aibx.engine.events import Event
from aibx.engine.runner import Runner, RunOptions, RunResult
from aibx.engine.selection import Selection, select
from aibx.engine.transports.base import (
    ConnectError,
    ConnectionLost,
    OutputCallback,
    ProgressCallback,
    RemoteFileError,
    Transport,
)
from aibx.plan import Action, Plan, StepPlan


@dataclass
class Reply:
    """What the fake VM does with one command (or upload, for ``drop`` and ``fail``)."""

    match: str = ""  # the command must contain this text ("" matches any)
    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    chunks: list[tuple[str, bytes, float]] = field(default_factory=list)  # (stream, bytes, pause before) slowly
    drop: bool = False  # the connection drops: before the command starts (started=False) or under it
    started: bool = True
    reboot: bool = False  # the VM restarts (a new boot identity); with drop, the connection drops with it
    down_for: int = 0  # reconnect attempts refused while the VM is down
    hang: bool = False  # runs until it is cancelled (an interrupt, a deadline, a time limit)
    fail: str = ""  # an upload: RemoteFileError with this reason


@dataclass
class FakeVM:
    script: list[Reply] = field(default_factory=list)
    boot: int = 1
    shutting_down: bool | None = None  # what the VM says when asked whether it is going down
    refuse_connect: ConnectError | None = None  # the first connect fails with this
    refuse_reconnect: ConnectError | None = None  # every reconnect fails with this (a changed host key)
    commands: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    reconnects: int = 0
    stopped: list[str] = field(default_factory=list)  # commands cancelled while they ran
    down: int = 0  # reconnect attempts still refused

    def next_reply(self, command: str) -> Reply:
        for index, reply in enumerate(self.script):
            if reply.match in command:
                return self.script.pop(index)
            break  # the script is in order: the first reply that does not match means "not scripted"
        return Reply()

    def restart(self, down_for: int) -> None:
        self.boot += 1
        self.down = down_for

    @property
    def boot_id(self) -> str:
        return f"boot-{self.boot}"


class FakeTransport(Transport):
    service = "the fake VM"

    def __init__(self, vm: FakeVM) -> None:
        self.vm = vm
        self.connected = False

    async def connect(self) -> None:
        if self.vm.refuse_connect is not None:
            raise self.vm.refuse_connect
        self.connected = True

    async def reconnect(self) -> None:
        self.vm.reconnects += 1
        if self.vm.refuse_reconnect is not None:
            raise self.vm.refuse_reconnect
        if self.vm.down > 0:
            self.vm.down -= 1
            raise ConnectError("refused", "fake", "connection refused")
        self.connected = True

    async def boot_identity(self) -> str | None:
        self._check()
        return self.vm.boot_id

    async def shutting_down(self) -> bool | None:
        self._check()
        return self.vm.shutting_down

    def _check(self) -> None:
        if not self.connected:
            raise ConnectionLost("the connection is closed")

    def _drop(self, reply: Reply, started: bool) -> ConnectionLost:
        self.connected = False
        if reply.reboot:
            self.vm.restart(reply.down_for)
        return ConnectionLost("the connection dropped", command_started=started)

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | Path | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> int:
        self._check()
        reply = self.vm.next_reply(command)
        self.vm.commands.append(command)
        if reply.drop and not reply.started:
            raise self._drop(reply, started=False)
        out = on_output or (lambda stream, data: None)
        for stream, data in (("stdout", reply.stdout), ("stderr", reply.stderr)):
            if data:
                out(stream, data)
        for stream, data, pause in reply.chunks:
            await asyncio.sleep(pause)
            out(stream, data)
        if reply.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.vm.stopped.append(command)
                raise
        if reply.drop:
            raise self._drop(reply, started=True)
        if reply.reboot:  # the command restarts the VM and exits (a reboot that takes the connection later)
            self.vm.restart(reply.down_for)
            self.connected = False
        return reply.exit_code

    async def put(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        exclusive: bool = False,
    ) -> None:
        self._check()
        reply = self.vm.next_reply(f"put {remote_path}")
        if reply.drop:
            raise self._drop(reply, started=True)
        if reply.fail:
            raise RemoteFileError(remote_path, reply.fail)
        payload = data if isinstance(data, bytes) else data.read_bytes()
        if on_progress is not None:
            on_progress(len(payload), len(payload))
        self.vm.uploads[remote_path] = payload

    async def get(self, remote_path: str) -> bytes:
        self._check()
        return self.vm.uploads[remote_path]

    async def close(self) -> None:
        self.connected = False


def fast_options(**overrides: float) -> RunOptions:
    """Run options whose waits take milliseconds (the engine's logic is the same)."""
    values: dict[str, float] = {
        "timeout_seconds": 30.0,
        "reconnect_timeout": 5.0,
        "cleanup_timeout": 1.0,
        "reconnect_pause": 0.0,
        "progress_interval": 0.01,
        "down_poll": 0.0,
        "restart_check_interval": 0.0,
    }
    values.update(overrides)
    timeout = values.pop("timeout_seconds")
    return RunOptions(timeout, **values)


def one_step_plan(actions: list[Action], *, kind: str = "Shell", cleanup: list[Action] | None = None) -> Plan:
    step = StepPlan("step", kind, "customize", actions=list(actions), cleanup=list(cleanup or []))
    return Plan(template="fake.json", os_type="Linux", steps=[step])


@dataclass
class FakeRun:
    vm: FakeVM
    result: RunResult
    events: list[Event]

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


async def run_plan(
    vm: FakeVM,
    actions: list[Action] | Plan,
    *,
    options: RunOptions | None = None,
    while_running: Callable[[Runner], None] | None = None,
) -> FakeRun:
    """Run the actions (one step) or the plan on the fake VM; every event is kept."""
    plan = actions if isinstance(actions, Plan) else one_step_plan(actions)
    events: list[Event] = []
    runner = Runner(
        select(plan, Selection()), lambda: FakeTransport(vm), events.append, options or fast_options(), target="fake"
    )
    if while_running is None:
        return FakeRun(vm, await runner.run(), events)
    task = asyncio.ensure_future(runner.run())
    await asyncio.sleep(0)
    while_running(runner)
    return FakeRun(vm, await task, events)
