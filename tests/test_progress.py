"""Progress on long steps: byte progress of long uploads (SFTP to a real sshd, and --host local) and downloads
(from a loopback HTTP server), and the "still running" line a CI log gets during a long silent step.

The intervals are settings (``TransferTiming``, ``ProgressTiming``) that the tests set to zero or drive with a
clock of their own: nothing here waits for a period to pass, and no assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aibx.engine.console_view import ConsoleView, ProgressTiming, format_bytes
from aibx.engine.customization_log import CustomizationLog
from aibx.engine.events import Event, EventBus, Output, StepRef, StepStarted, TransferProgress
from aibx.engine.progress import TransferMeter, TransferTiming
from aibx.engine.runner import Runner, RunOptions, RunResult
from aibx.engine.selection import Selection, select
from aibx.engine.transports import ConnectOptions, create_transport, parse_target
from tests.support.plans import linux_plan
from tests.support.sshd import SshTarget
from tests.support.templates import shell

SIZE = 3 * 1024 * 1024 + 12345  # a few SFTP blocks and local copy blocks, and not a round number
EVERY_TIME = TransferTiming(after=0.0, every=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------------------------- the parts
def test_the_meter_is_quiet_for_short_transfers_then_reports_now_and_then() -> None:
    clock = Clock()
    reports: list[tuple[int, int | None, float, bool]] = []
    meter = TransferMeter(lambda *r: reports.append(r), 100, TransferTiming(after=1.0, every=0.5), clock)
    meter.update(10)
    clock.now += 0.9
    meter.update(20)
    assert reports == []  # under a second: nothing
    clock.now += 0.2
    meter.update(30)
    clock.now += 0.2
    meter.update(40)  # 0.2 s after the last report: not yet
    clock.now += 0.4
    meter.update(50)
    meter.finish()
    assert reports == [(30, 100, pytest.approx(1.1), False), (50, 100, pytest.approx(1.7), False),
                       (50, 100, pytest.approx(1.7), True)]  # fmt: skip
    quiet: list[object] = []
    short = TransferMeter(lambda *r: quiet.append(r), 100, TransferTiming(after=1.0, every=0.5), clock)
    short.update(100)
    short.finish()
    assert quiet == []  # a short transfer says nothing, not even that it finished


def ref(index: int = 3, name: str = "install-app") -> StepRef:
    return StepRef(index, 7, name, "Shell", "customize")


def test_a_silent_step_gets_a_still_running_line_when_not_on_a_terminal() -> None:
    clock = Clock()
    out = io.StringIO()
    view = ConsoleView(out, out, status_line=False, timing=ProgressTiming(heartbeat_after=60), clock=clock)
    view(StepStarted("vm", step=ref()))
    clock.now += 59
    view.tick()
    assert "still running" not in out.getvalue()
    clock.now += 1
    view.tick()
    assert out.getvalue().splitlines()[-1] == "[3/7] install-app: still running, 1m00s, no output yet"
    view.tick()  # the line it just wrote resets the silence: one line a minute, not one a tick
    assert out.getvalue().count("still running") == 1
    clock.now += 40
    view(Output("vm", step=ref(), stream="stdout", lines=("unpacking",)))
    clock.now += 59
    view.tick()
    assert out.getvalue().count("still running") == 1
    clock.now += 1
    view.tick()
    assert out.getvalue().splitlines()[-1] == "[3/7] install-app: still running, 2m40s, last output 1m00s ago"


def test_a_stalled_upload_gets_the_still_running_line_too() -> None:
    clock = Clock()
    out = io.StringIO()
    timing = ProgressTiming(heartbeat_after=60, transfer_line_every=10)
    view = ConsoleView(out, out, status_line=False, timing=timing, clock=clock)
    view(StepStarted("vm", step=ref()))
    clock.now += 12
    view(TransferProgress("vm", step=ref(), direction="upload", path="/tmp/big.iso", transferred=100 << 20,
                          total=1 << 30, elapsed=12))  # fmt: skip
    assert out.getvalue().splitlines()[-1] == "upload /tmp/big.iso: 9% of 1.0 GiB, 8.3 MiB/s"
    clock.now += 60  # no byte since
    view.tick()
    assert out.getvalue().splitlines()[-1] == "[3/7] install-app: still running, 1m12s, no output yet"


def test_on_a_terminal_the_status_line_shows_the_silence_and_a_transfer() -> None:
    clock = Clock()
    out = io.StringIO()
    view = ConsoleView(out, out, status_line=True, timing=ProgressTiming(silence_after=10), clock=clock)
    view(StepStarted("vm", step=ref()))
    clock.now += 135
    view.tick()
    status = out.getvalue().rsplit("\r\033[K", 1)[1]
    assert status == "[3/7] install-app  2m15s  no output for 2m15s"
    assert "still running" not in out.getvalue()  # the status line says it: no lines on a terminal
    half = TransferProgress(
        "vm", step=ref(), direction="upload", path="/tmp/big.iso", transferred=512 << 20, total=1 << 30, elapsed=40
    )
    view(half)
    status = out.getvalue().rsplit("\r\033[K", 1)[1]
    assert status == "[3/7] install-app  2m15s  upload 50% of 1.0 GiB, 12.8 MiB/s"
    view(TransferProgress("vm", step=ref(), direction="upload", path="/tmp/big.iso", transferred=1 << 30,
                          total=1 << 30, elapsed=80, finished=True))  # fmt: skip
    assert "uploaded 1.0 GiB to /tmp/big.iso in 1m20s (12.8 MiB/s)\n" in out.getvalue()


def test_not_on_a_terminal_a_long_transfer_gets_a_line_now_and_then() -> None:
    out = io.StringIO()
    view = ConsoleView(out, out, status_line=False, timing=ProgressTiming(transfer_line_every=10))
    for elapsed in (1, 5, 10.5, 15, 21):
        transferred = int(elapsed * (4 << 20))
        view(TransferProgress("vm", step=None, direction="download", path="https://acct.blob.core.windows.net/x.iso",
                              transferred=transferred, total=None, elapsed=elapsed))  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines == [
        "download https://acct.blob.core.windows.net/x.iso: 42.0 MiB, 4.0 MiB/s",
        "download https://acct.blob.core.windows.net/x.iso: 84.0 MiB, 4.0 MiB/s",
    ]


# ----------------------------------------------------------------------------------------------- real runs
def run_plan(
    customize: list[dict],
    host: str,
    connect: ConnectOptions,
    subscribers: list[Callable[[Event], None]],
    *,
    ticking: ConsoleView | None = None,
) -> RunResult:
    plan = linux_plan(customize, allow_local_files=True)  # the big file lives in the test's folder
    runner = Runner(
        # --only: the deprovisioning script is not staged (on --host local it would land in this machine's /tmp)
        select(plan, Selection(only=[step["name"] for step in customize])),
        lambda: create_transport(parse_target(host), connect),
        EventBus(None, subscribers),
        RunOptions(timeout_seconds=60, reconnect_timeout=10, transfer=EVERY_TIME),
        target=host,
    )

    async def main() -> RunResult:
        async def tick() -> None:  # as aibx run's console ticker, a little faster
            while ticking is not None:
                ticking.tick()
                await asyncio.sleep(0.02)

        ticker = asyncio.create_task(tick())
        try:
            return await runner.run()
        finally:
            ticker.cancel()

    return asyncio.run(main())


class Host:
    """Where a test runs: ``local`` (this machine), or a real sshd on loopback; ``folder`` a fresh remote
    directory, ``local_path`` where a remote path is on this machine."""

    def __init__(self, kind: str, tmp_path: Path, make_ssh_target: Callable[..., SshTarget]) -> None:
        if kind == "local":
            self.url, self.connect, self.target = "local", ConnectOptions(), None
            self.folder = str(tmp_path / "remote")
            os.mkdir(self.folder)
        else:
            target = make_ssh_target()
            self.url, self.target = target.url, target
            self.connect = ConnectOptions(identity=str(target.client_key), known_hosts=str(target.known_hosts))
            self.folder = target.remote_dir("progress")

    def local_path(self, remote: str) -> Path:
        return self.target.host_path(remote) if self.target is not None else Path(remote)


@pytest.fixture(params=["local", "ssh"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Host:
    make = request.getfixturevalue("make_ssh_target") if request.param == "ssh" else None
    return Host(request.param, tmp_path, make)  # type: ignore[arg-type]


def test_a_large_upload_reports_its_bytes(host: Host, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    destination = f"{host.folder}/big.bin"
    step = {"type": "File", "name": "copy-big", "sourceUri": source.as_uri(), "destination": destination}
    events: list[Event] = []
    out = io.StringIO()
    log = CustomizationLog(tmp_path / "customization.log")
    view = ConsoleView(out, out, status_line=False, timing=ProgressTiming(transfer_line_every=0))
    result = run_plan([step], host.url, host.connect, [events.append, view, log])
    log.close()
    assert result.exit_code == 0, result.message
    assert host.local_path(destination).read_bytes() == data
    progress = [e for e in events if isinstance(e, TransferProgress) and e.path == destination]
    assert len(progress) >= 3, progress  # some on the way, and the end
    assert all(e.direction == "upload" and e.total == SIZE and e.step and e.step.name == "copy-big" for e in progress)
    assert [e.transferred for e in progress] == sorted(e.transferred for e in progress)
    assert [e.finished for e in progress] == [False] * (len(progress) - 1) + [True]
    assert progress[-1].transferred == SIZE
    text = out.getvalue()
    assert f"upload {destination}: " in text and f"% of {format_bytes(SIZE)}, " in text
    assert f"uploaded {format_bytes(SIZE)} to {destination} in " in text
    assert f"copy-big: uploaded {SIZE} bytes to {destination} in " in (tmp_path / "customization.log").read_text()


def test_a_large_download_reports_its_bytes(content_server, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = content_server.serve("/big.bin", data)
    destination = f"{tmp_path}/big.bin"
    step = {
        "type": "File",
        "name": "fetch-big",
        "sourceUri": url,
        "sha256Checksum": hashlib.sha256(data).hexdigest(),
        "destination": destination,
    }
    events: list[Event] = []
    out = io.StringIO()
    view = ConsoleView(out, out, status_line=False, timing=ProgressTiming(transfer_line_every=0))
    result = run_plan([step], "local", ConnectOptions(), [events.append, view])
    assert result.exit_code == 0, result.message
    assert Path(destination).read_bytes() == data
    downloads = [e for e in events if isinstance(e, TransferProgress) and e.direction == "download"]
    assert downloads and downloads[-1].finished and downloads[-1].transferred == SIZE
    assert all(e.path == url and e.total == SIZE and e.step and e.step.name == "fetch-big" for e in downloads)
    assert f"downloaded {format_bytes(SIZE)} from {url} in " in out.getvalue()


class Watch(io.StringIO):
    """A console stream that creates ``marker`` once the console says the step still runs."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def write(self, text: str) -> int:
        if "still running" in text and not self.marker.exists():
            self.marker.write_text("seen\n")
        return super().write(text)


def test_a_long_silent_step_is_said_to_be_still_running(host: Host, tmp_path: Path) -> None:
    """The step prints a line, then waits in silence until the console has said it still runs (the test's
    stream then creates the file it waits for; it gives up after 20 s rather than hang)."""
    marker = f"{host.folder}/seen"
    wait = f"i=0; while [ ! -e {marker} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; test -e {marker}"
    out = Watch(host.local_path(marker))
    view = ConsoleView(out, out, status_line=False, timing=ProgressTiming(heartbeat_after=0.1))
    result = run_plan([shell("install-app", "echo unpacking", wait)], host.url, host.connect, [view], ticking=view)
    assert result.exit_code == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    heartbeat = next(line for line in lines if "still running" in line)
    assert heartbeat.startswith("[2/3] install-app: still running, ") and " ago" in heartbeat
    assert lines.index("install-app | unpacking") < lines.index(heartbeat)
