"""Many hosts at once: the list of targets, running one ``Runner`` per host in one event loop with at most
``parallel`` at a time, the summary table and the fleet's exit code.

The exit code of a fleet is its worst host's, worst first (``SEVERITY``):

    130 interrupted > 70 internal error > 4 timed out > 3 cannot connect > 2 invalid input > 1 a step failed > 0

An interrupt is what the user asked for and ends every host; an internal error is a bug in aibx; a timeout means a
VM hung (in AIB the build would hang until its timeout); a host that cannot be reached says nothing about the
template; a failed step does. Any code other than 0 means at least one host did not succeed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aibx.durations import format_seconds
from aibx.engine.events import Outcome
from aibx.engine.runner import Runner, RunResult
from aibx.engine.transports import Target, TargetError, parse_target
from aibx.exitcodes import ExitCode

SEVERITY: tuple[int, ...] = (
    ExitCode.INTERRUPTED,
    ExitCode.INTERNAL,
    ExitCode.TIMEOUT,
    ExitCode.CONNECT,
    ExitCode.USAGE,
    ExitCode.FAILED,
    ExitCode.OK,
)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open files (RLIMIT_NOFILE) to the hard limit, as a big fleet may need more than the
    usual 1024 (each running host holds a connection, its log and a few more); returns (soft, hard) after."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def worst_exit_code(codes: Iterable[int]) -> int:
    """The fleet's exit code: the worst of its hosts' by ``SEVERITY`` (0 for no hosts); an unknown code ranks
    just below an internal error."""
    rank = {code: i for i, code in enumerate(SEVERITY)}
    worst = int(ExitCode.OK)
    for code in codes:
        if rank.get(code, 1.5) < rank.get(worst, 1.5):
            worst = code
    return worst


class HostListError(ValueError):
    """A host list that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class HostEntry:
    text: str  # as the user wrote it: shown before every line of the host's output
    target: Target
    origin: str  # "--host" or "FILE:LINE"


def parse_host_text(text: str, origin: str) -> HostEntry:
    try:
        return HostEntry(text, parse_target(text), origin)
    except TargetError as exc:
        raise HostListError(f"{origin}: {exc}") from None


def read_hosts_file(path: str) -> list[HostEntry]:
    """One target per line; blank lines and ``#`` comments (whole lines, or after the target) are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HostListError(f"--hosts-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HostListError(f"--hosts-file {path}: not a UTF-8 text file") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        text = re.sub(r"(^|\s)#.*$", "", line).strip()
        if text:
            entries.append(parse_host_text(text, f"{path}:{number}"))
    if not entries:
        raise HostListError(f"--hosts-file {path}: no hosts in it (one target per line, # starts a comment)")
    return entries


def check_unique(entries: list[HostEntry]) -> None:
    """The same VM twice would run the template twice on it at the same time."""
    seen: dict[Target, HostEntry] = {}
    for entry in entries:
        first = seen.setdefault(entry.target, entry)
        if first is not entry:
            raise HostListError(f"{entry.origin}: {entry.text} is listed twice (first at {first.origin})")


def file_safe(text: str) -> str:
    """A host as a file name part: ``azureuser@10.0.0.4:22`` -> ``azureuser@10.0.0.4_22``."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", text.removeprefix("ssh://")).strip("._") or "host"
    return safe[:100]


def per_host_paths(base: str, entries: list[HostEntry]) -> list[Path]:
    """``customization.log`` -> ``customization-<host>.log`` for each host, all different."""
    path = Path(base)
    taken: set[str] = set()
    out = []
    for entry in entries:
        name = file_safe(entry.text)
        candidate, n = name, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate.lower())
        out.append(path.with_name(f"{path.stem}-{candidate}{path.suffix}"))
    return out


@dataclass
class HostRun:
    entry: HostEntry
    log_path: Path | None = None
    result: RunResult | None = None
    started: float | None = None
    ended: float | None = None
    runner: Runner | None = None

    @property
    def exit_code(self) -> int:
        return self.result.exit_code if self.result else int(ExitCode.INTERRUPTED)


class Fleet:
    """Runs ``make_runner(host)`` for every host, at most ``parallel`` at a time, in the running event loop."""

    def __init__(self, hosts: list[HostRun], parallel: int, make_runner: Callable[[HostRun], Runner]) -> None:
        self.hosts = hosts
        self.parallel = max(1, parallel)
        self.make_runner = make_runner
        self.interrupted = False
        self.on_internal_error: Callable[[HostRun, BaseException], None] = lambda host, exc: None
        # called when a host's run has ended, whichever way (its files are closed there)
        self.on_host_done: Callable[[HostRun], None] = lambda host: None

    def interrupt(self) -> None:
        """Ctrl-C: every running host stops its step; hosts not started yet never start."""
        self.interrupted = True
        for host in self.hosts:
            if host.runner is not None:
                host.runner.interrupt()

    async def run(self) -> int:
        slots = asyncio.Semaphore(self.parallel)

        async def one(host: HostRun) -> None:
            async with slots:
                if self.interrupted:
                    host.result = RunResult(Outcome.INTERRUPTED, int(ExitCode.INTERRUPTED), "interrupted before start")
                    return
                host.started = time.time()
                try:
                    host.runner = runner = self.make_runner(host)
                    host.result = await runner.run()
                except Exception as exc:  # a bug in aibx: this host ends, the others go on
                    host.result = RunResult(
                        Outcome.FAILED, int(ExitCode.INTERNAL), f"internal error: {type(exc).__name__}: {exc}"
                    )
                    self.on_internal_error(host, exc)
                finally:
                    host.ended = time.time()
                    self.on_host_done(host)

        await asyncio.gather(*(one(h) for h in self.hosts))
        return worst_exit_code(h.exit_code for h in self.hosts)


def summary_table(hosts: list[HostRun]) -> str:
    """One line per host: outcome, steps that succeeded, reboots, time, exit code, and why it failed."""
    rows = [("host", "outcome", "steps ok", "reboots", "time", "exit", "")]
    for host in hosts:
        result = host.result
        if result is None:
            rows.append((host.entry.text, "not run", "-", "-", "-", str(host.exit_code), ""))
            continue
        ran = [s for s in result.steps if s.outcome not in (Outcome.SKIPPED,)]
        ok = sum(s.outcome is Outcome.SUCCEEDED for s in ran)
        took = _compact_seconds(host.ended - host.started) if host.started and host.ended else "-"
        message = re.sub(r"; last lines of \w+:$", "", result.message.splitlines()[0]) if result.message else ""
        rows.append(
            (
                host.entry.text,
                result.outcome.value,
                f"{ok}/{len(ran)}",
                str(result.reboots),
                took,
                str(result.exit_code),
                message,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) if i in (0, 1) else row[i].rjust(widths[i]) for i in range(6)]
        lines.append("  ".join(cells) + (f"  {row[6]}" if row[6] else ""))
    return "\n".join(lines) + "\n"


def _compact_seconds(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else format_seconds(seconds)


def outcome_counts(hosts: list[HostRun]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for host in hosts:
        key = host.result.outcome.value if host.result else "not run"
        counts[key] = counts.get(key, 0) + 1
    return counts
