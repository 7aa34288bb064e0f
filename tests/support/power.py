"""``PowerWatcher``: the "hardware" of simulated VMs. The power shims inside a target (``reboot``, ``shutdown -r``,
``systemctl reboot``, ...) only append a request to ``<target>/power.request``; this thread, in the test process,
reads the requests and carries them out: ``target.reboot(**reboot_args)`` or ``target.power_off()``.

Like a real OS it lets the command that asked return first (``delay``), then the machine goes down. One watcher
serves any number of targets; each target's reboot runs in its own thread, so a fleet reboots in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol


class PowerControlled(Protocol):
    name: str
    power_request: Any  # Path

    def reboot(self, **kwargs: Any) -> None: ...

    def power_off(self) -> None: ...


class PowerWatcher(threading.Thread):
    def __init__(
        self,
        targets: Iterable[PowerControlled],
        reboot_args: dict[str, Any] | None = None,
        *,
        poll: float = 0.05,
        delay: float = 0.3,
    ) -> None:
        super().__init__(daemon=True, name="aibx-power-watcher")
        self.targets = list(targets)
        self.reboot_args = reboot_args or {}
        self.poll, self.delay = poll, delay
        self.requests: list[tuple[str, str]] = []  # (target name, request line)
        self.errors: list[str] = []
        self._stopping = threading.Event()
        self._busy: dict[str, threading.Thread] = {}
        self._read: dict[str, int] = {}  # per target: how much of its power.request has been carried out

    def __enter__(self) -> PowerWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> None:
        while not self._stopping.wait(self.poll):
            for target in self.targets:
                if target.name in self._busy and self._busy[target.name].is_alive():
                    continue  # going down already: requests wait for the next boot
                # read on from where the last request ended, never truncating: a request appended while the
                # file was being emptied would be lost, and the test would wait for a reboot that never comes
                seen = self._read.get(target.name, 0)
                try:
                    with open(target.power_request, "rb") as f:
                        f.seek(seen)
                        chunk = f.read()
                except OSError:
                    continue
                chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only
                if not chunk:
                    continue
                self._read[target.name] = seen + len(chunk)
                lines = [line for line in chunk.decode(errors="replace").splitlines() if line.strip()]
                if not lines:
                    continue
                self.requests += [(target.name, line) for line in lines]
                action = lines[0].split()[0]
                worker = threading.Thread(target=self._carry_out, args=(target, action), daemon=True)
                self._busy[target.name] = worker
                worker.start()

    def _carry_out(self, target: PowerControlled, action: str) -> None:
        time.sleep(self.delay)  # the command that asked gets to return first, as on a real machine
        if self._stopping.is_set():
            return
        try:
            if action == "reboot":
                target.reboot(**self.reboot_args)
            else:
                target.power_off()
        except Exception as exc:  # a test asserts on these; a crashed thread would say nothing
            self.errors.append(f"{target.name}: {action}: {exc!r}")

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        for worker in self._busy.values():
            worker.join(timeout=30)
