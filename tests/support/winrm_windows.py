"""What a Windows VM does with the commands aibx sends, played on the WinRM test server (winrm_server.py).

There is no PowerShell here, so the *effects* of aibx's own scripts are played by Python, keyed by the exact
command lines aibx sends (whose text the golden files check):

* ``Invoke-AibxScript.ps1`` (``-File <runner> -ScriptPath <script> [-RunAs User|System -TaskName T
  -TimeoutSeconds N]``): both files must have been uploaded first; an elevated run registers its scheduled task
  and removes it when it ends by itself (the wrapper's ``finally``), not when it is killed. What the customer's
  script "does" is a *behaviour* a test registers for a piece of its text (``on_script``).
* The deprovision launcher (``-File aibx-deprovision-<id>.ps1``): AIB's warning when
  ``c:\\DeprovisioningScript.ps1`` is gone, else the behaviour registered for that script's text (``sysprep()``
  plays AIB's default Sysprep script against the VM's ``image_state``).
* The clean-up scripts (``Remove-Item -LiteralPath ...``, ``DeleteTask('...')``) and the Sysprep diagnostics.

``WindowsVm.leftovers()`` lists what is still there afterwards: aibx's temporary files and scheduled tasks.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.winrm_server import RemoteCommand, Reply, WinRMHost

RUNNER_COMMAND = re.compile(
    r"^powershell\.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File (?P<runner>\S+) "
    r"-ScriptPath (?P<script>\S+)(?: -RunAs (?P<run_as>\S+) -TaskName (?P<task>\S+) -TimeoutSeconds (?P<timeout>\d+))?$"
)
LAUNCHER_COMMAND = re.compile(
    r"^powershell\.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File (?P<launcher>\S+aibx-deprovision-\S+)$"
)
DEPROVISION_PATH = "c:\\DeprovisioningScript.ps1"
SYSPREP_DONE = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
MISSING_FILE_EXIT = -196608  # powershell.exe: "The argument '...' to the -File parameter does not exist."


@dataclass
class ScriptRun:
    """One run of a customer's script through aibx's runner."""

    path: str
    text: str  # the script as uploaded (BOM and CRLF removed)
    run_as: str  # "None", "User" or "System"
    task: str | None
    timeout_seconds: int | None
    command: RemoteCommand

    @property
    def identity(self) -> str:
        """What whoami says: SYSTEM, or the host's (first) user."""
        host = self.command.host
        return "nt authority\\system" if self.run_as == "System" else f"{host.computer_name}\\{next(iter(host.users))}"


Behaviour = Callable[[RemoteCommand, ScriptRun], "Reply | int"]


@dataclass
class WindowsVm:
    host: WinRMHost
    behaviours: list[tuple[str, Behaviour]] = field(default_factory=list)
    runs: list[ScriptRun] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)  # scheduled tasks registered and not deleted
    tasks_seen: list[str] = field(default_factory=list)
    image_state: str = "IMAGE_STATE_COMPLETE"
    panther_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.host.on(lambda c: RUNNER_COMMAND.match(c.command_line) is not None, self._run_script)
        self.host.on(lambda c: LAUNCHER_COMMAND.match(c.command_line) is not None, self._deprovision)
        self.host.on("Remove-Item -Force -LiteralPath", self._cleanup)
        self.host.on("# aibx: Sysprep's image state", self._sysprep_diagnostics)

    def on_script(self, text: str, behaviour: Behaviour | Reply | int) -> None:
        """What a customer's script does when its text contains ``text`` (the first match wins)."""
        if isinstance(behaviour, (Reply, int)):
            fixed = behaviour
            self.behaviours.append((text, lambda cmd, run: fixed))
        else:
            self.behaviours.append((text, behaviour))

    def leftovers(self) -> list[str]:
        files = [p for p in self.host.files if p.startswith("c:\\windows\\temp\\aibx-")]
        return sorted(files) + sorted(f"task {t}" for t in self.tasks)

    def file_text(self, path: str) -> str | None:
        data = self.host.file(path)
        return None if data is None else data.decode("utf-8-sig").replace("\r\n", "\n")

    # -- the runner
    def _run_script(self, cmd: RemoteCommand) -> Reply | int:
        m = RUNNER_COMMAND.match(cmd.command_line)
        assert m is not None
        missing = [p for p in (m["runner"], m["script"]) if self.host.file(p) is None]
        if missing:
            return Reply(
                stderr=f"The argument '{missing[0]}' to the -File parameter does not exist.\r\n",
                exit_code=MISSING_FILE_EXIT,
            )
        text = self.file_text(m["script"]) or ""
        run_as = m["run_as"] or "None"
        if run_as not in ("User", "System"):
            assert run_as == "None", run_as
        run = ScriptRun(m["script"], text, run_as, m["task"], int(m["timeout"]) if m["timeout"] else None, command=cmd)
        with self.lock:
            self.runs.append(run)
            if run.task:
                self.tasks.add(run.task)
                self.tasks_seen.append(run.task)
        behaviour = next((b for t, b in self.behaviours if t in text), None)
        if behaviour is None:
            return Reply(stderr=f"test VM: no behaviour for the script {text[:80]!r}\r\n", exit_code=1)
        result = behaviour(cmd, run)
        if run.task and not cmd.terminated.is_set():  # the wrapper's finally deletes its task
            with self.lock:
                self.tasks.discard(run.task)
        return result

    # -- deprovisioning
    def _deprovision(self, cmd: RemoteCommand) -> Reply | int:
        m = LAUNCHER_COMMAND.match(cmd.command_line)
        assert m is not None
        if self.host.file(m["launcher"]) is None:
            return Reply(stderr="launcher not uploaded\r\n", exit_code=MISSING_FILE_EXIT)
        script = self.file_text(DEPROVISION_PATH)
        if script is None:
            return Reply(f"aibx: {DEPROVISION_PATH} is missing\r\n", exit_code=197)
        behaviour = next((b for t, b in self.behaviours if t in script), None)
        if behaviour is None:
            return Reply(stderr="test VM: no behaviour for the deprovisioning script\r\n", exit_code=1)
        return behaviour(cmd, ScriptRun(DEPROVISION_PATH, script, "None", None, None, command=cmd))

    def sysprep(self, reaches_after: float | None, interval: float = 0.05) -> Behaviour:
        """AIB's default script: the guest agent services, Sysprep, then ImageState every ``interval`` until it is
        IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE (after ``reaches_after`` seconds; None: never)."""

        def play(cmd: RemoteCommand, run: ScriptRun) -> int:
            for service in ("RdAgent", "WindowsAzureTelemetryService", "WindowsAzureGuestAgent"):
                cmd.stdout(f">>> Waiting for GA Service ({service}) to start ...\r\n")
            cmd.stdout(">>> Sysprepping VM ...\r\n")
            self.image_state = "IMAGE_STATE_UNDEPLOYABLE"
            started = time.monotonic()
            while not cmd.terminated.is_set():
                if reaches_after is not None and time.monotonic() - started >= reaches_after:
                    self.image_state = SYSPREP_DONE
                cmd.stdout(self.image_state + "\r\n")
                if self.image_state == SYSPREP_DONE:
                    cmd.stdout(">>> Sysprep complete ...\r\n")
                    return 0
                cmd.terminated.wait(interval)
            return 1

        return play

    def _sysprep_diagnostics(self, cmd: RemoteCommand) -> Reply:
        log = "C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log"
        text = f"aibx: ImageState is {self.image_state}\r\n"
        if self.panther_errors:
            text += f"aibx: the end of {log}:\r\n" + "".join(f"  {line}\r\n" for line in self.panther_errors)
        return Reply(text)

    # -- clean-up
    def _cleanup(self, cmd: RemoteCommand) -> int:
        script = cmd.script or ""
        for task in re.findall(r"DeleteTask\('((?:[^']|'')*)', 0\)", script):
            with self.lock:
                self.tasks.discard(task.replace("''", "'"))
        line = next(ln for ln in script.split("\n") if ln.startswith("Remove-Item"))
        for path in re.findall(r"'((?:[^']|'')*)'", line):
            self.host.files.pop(path.replace("''", "'").lower(), None)
        return 0


# ----------------------------------------------------------------------------------------------- Windows Update
def round_line(
    status: str,
    installed: list[str] = (),  # type: ignore[assignment]
    reboot: bool = False,
    *,
    found: int | None = None,
    failed: list[tuple[str, str]] = (),  # type: ignore[assignment]
    message: str | None = None,
    more: bool = False,
) -> str:
    """What Install-AibxWindowsUpdates.ps1 prints for one round: progress lines and its AIBX-WU-RESULT line."""
    updates = [
        {"id": f"id-{kb}", "kb": kb, "title": f"Update {kb}", "result": "installed", "hresult": ""} for kb in installed
    ]
    updates += [
        {"id": f"id-{kb}", "kb": kb, "title": f"Update {kb}", "result": "install-failed", "hresult": hresult}
        for kb, hresult in failed
    ]
    result = {
        "status": status,
        "found": len(updates) if found is None else found,
        "selected": len(updates),
        "skipped": 0,
        "installed": len(installed),
        "failed": len(failed),
        "rebootRequired": reboot,
        "more": more,
        "updates": updates,
        "message": message
        if message is not None
        else (f"installed {len(installed)}" if updates else "no applicable updates left"),
    }
    progress = "aibx-wu: searching: BrowseOnly=0 and IsInstalled=0\r\n"
    progress += "".join(f"aibx-wu:   install  {u['kb']} {u['title']}\r\n" for u in updates)
    return progress + f"AIBX-WU-RESULT {json.dumps(result)}\r\n"


def update_rounds(rounds_by_boot: dict[int, list[str]]) -> Behaviour:
    """A WindowsUpdate behaviour: on each boot of the VM, the next of that boot's round outputs."""

    def play(cmd: RemoteCommand, run: ScriptRun) -> Reply:
        assert run.run_as == "System", "Windows Update runs as SYSTEM"
        queue = rounds_by_boot.get(cmd.host.boot_count)
        if not queue:
            return Reply(
                stderr=f"test VM: no Windows Update round left for boot {cmd.host.boot_count}\r\n", exit_code=1
            )
        out = queue.pop(0)
        return Reply(out, exit_code=1 if '"status": "error"' in out else 0)

    return play
