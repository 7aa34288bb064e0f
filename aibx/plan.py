"""A plan: what each step of a template will do on the VM, as data.

Provisioners compile model steps into ``StepPlan``s without touching the network; ``aibx plan`` prints them and
``aibx run`` hands them to the engine. Commands are the exact strings a transport runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import urlsplit, urlunsplit

from aibx.jsonc import JsonPath


def redact_uri(uri: str) -> str:
    """Drop the query (SAS tokens live there) and any user:password from a URI, for display."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<invalid URI>"
    if not parts.query and "@" not in parts.netloc:
        return uri
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))


@dataclass(frozen=True)
class Content:
    """Bytes known now, a local file, or a URI that aibx fetches and checks against ``sha256`` before the
    step runs (nothing reaches the VM if the checksum does not match)."""

    data: bytes | None = None
    uri: str | None = None
    local_path: str | None = None
    sha256: str | None = None
    # a script for a POSIX shell: CRLF line endings become LF after the checksum is checked, as Packer's shell
    # provisioner (and so AIB) does
    normalize_newlines: bool = False

    def describe(self) -> str:
        if self.data is not None:
            return f"{len(self.data)} bytes (sha256 {hashlib.sha256(self.data).hexdigest()[:12]}…)"
        where = redact_uri(self.uri) if self.uri else str(self.local_path)
        return where + (f" (sha256 {self.sha256})" if self.sha256 else " (no checksum)")

    @property
    def needs_fetch(self) -> bool:
        """The bytes come from a file or a URI and must be read (and checked) before the step runs."""
        return self.data is None


@dataclass(frozen=True)
class Exec:
    """Run ``command`` on the VM; success is an exit code in ``valid_exit_codes``."""

    command: str
    stdin: Content | None = None
    valid_exit_codes: tuple[int, ...] = (0,)
    description: str = ""
    # exit codes that still count as success but mean something the user should know: (code, warning)
    warn_exit_codes: tuple[tuple[int, str], ...] = ()
    # a stderr line by which the command says it succeeded and the VM is going down: the runner waits for the
    # reboot before the next step (see aibx.provisioners.posix.SHUTDOWN_MARKER)
    shutdown_marker: str = ""
    # the command's own time limit inside the build timeout (None: the build timeout only). When it runs out the
    # command is stopped and the step fails as timed out with ``timeout_message``, where "{limit}" becomes the limit
    # and ``timeout_name`` (without "{limit}" in it: "<timeout_message> within <limit> (<timeout_name>)")
    timeout_seconds: float | None = None
    timeout_message: str = ""
    timeout_name: str = ""  # where the limit comes from, e.g. "--deprovision-timeout"
    # when set, a restart during the command (or announced by it) fails the step with this message once the VM is
    # back: a Packer shell provisioner without expect_disconnect (model.ShellStep.expect_disconnect False)
    restart_fails: str = ""


@dataclass(frozen=True)
class Upload:
    """Write ``content`` to ``remote_path``; the parent directory must already exist."""

    remote_path: str
    content: Content
    mode: int | None = None
    description: str = ""
    # one of aibx's own temporary files (a step's script, aibx's runner): created exclusively, never through
    # anything already at the path (a planted file, symlink or junction fails the step)
    temporary: bool = False


@dataclass(frozen=True)
class Restart:
    """Restart the VM with ``command``, wait for a new boot, then until ``check_command`` succeeds."""

    command: str
    check_command: str | None
    timeout_seconds: float
    description: str = ""


@dataclass(frozen=True)
class WindowsUpdate:
    """Search, download and install updates, restarting as needed, until none is left or the limit is hit."""

    search_criteria: str
    filters: tuple[str, ...]
    update_limit: int
    description: str = ""
    # one round (search, filter, download, install); its last stdout line "AIBX-WU-RESULT {json}" tells the
    # engine what to do next (see aibx.provisioners.windows_update.next_move)
    command: str = ""
    max_rounds: int = 10


Action = Union[Exec, Upload, Restart, WindowsUpdate]  # noqa: UP007


@dataclass(frozen=True)
class KeptFile:
    """A file a step leaves on the VM for a later step (the staged deprovisioning script). After every step in
    which the VM restarted, the runner runs ``check_command`` (exit 0: still there, 1: gone) and, the first time
    it is gone, warns with ``lost_message``: a reboot took it (a /tmp cleared at boot)."""

    path: str
    check_command: str
    lost_message: str


@dataclass
class StepPlan:
    name: str
    kind: str  # Shell, PowerShell, File, WindowsRestart, WindowsUpdate, Deprovision, ...
    phase: str  # "stage", "customize", "validate" or "deprovision"
    actions: list[Action] = field(default_factory=list)
    # run after the actions whatever happened; a failure here is a warning, not a step failure
    cleanup: list[Action] = field(default_factory=list)
    # run only when an action did not end by itself (interrupted, timed out, connection lost), after the remote
    # process was stopped: removes what the happy path removes itself (one round trip per step stays possible)
    on_interrupt: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # why this step cannot run (unresolved values, unsupported on this OS); the runner refuses it
    blocked: list[str] = field(default_factory=list)
    path: JsonPath = ()
    # files this step leaves for later steps, checked after every reboot (see KeptFile)
    keeps: list[KeptFile] = field(default_factory=list)

    def fetched_contents(self) -> list[Content]:
        """The scripts and files of this step that are fetched (and checked) before anything runs."""
        out = []
        for action in self.actions:
            content = (
                action.stdin if isinstance(action, Exec) else action.content if isinstance(action, Upload) else None
            )
            if content is not None and content.needs_fetch:
                out.append(content)
        return out


@dataclass
class Plan:
    template: str
    os_type: str
    steps: list[StepPlan] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- as data
def content_as_dict(content: Content) -> dict[str, object]:
    out: dict[str, object] = {}
    if content.data is not None:
        out["bytes"] = len(content.data)
        out["sha256"] = hashlib.sha256(content.data).hexdigest()
        out["text"] = content.data.decode("utf-8", errors="replace")
    else:
        if content.uri is not None:
            out["uri"] = redact_uri(content.uri)
        if content.local_path is not None:
            out["file"] = content.local_path
        out["sha256"] = content.sha256
    if content.normalize_newlines:
        out["normalizeNewlines"] = True
    return out


def action_as_dict(action: Action) -> dict[str, object]:
    if isinstance(action, Exec):
        out: dict[str, object] = {"type": "exec", "command": action.command}
        if action.stdin is not None:
            out["stdin"] = content_as_dict(action.stdin)
        out["validExitCodes"] = list(action.valid_exit_codes)
        if action.warn_exit_codes:
            out["warnExitCodes"] = {str(code): text for code, text in action.warn_exit_codes}
        if action.timeout_seconds is not None:
            out["timeoutSeconds"] = action.timeout_seconds
    elif isinstance(action, Upload):
        out = {"type": "upload", "path": action.remote_path, "content": content_as_dict(action.content)}
        if action.mode is not None:
            out["mode"] = f"{action.mode:04o}"
    elif isinstance(action, Restart):
        out = {
            "type": "restart",
            "command": action.command,
            "checkCommand": action.check_command,
            "timeoutSeconds": action.timeout_seconds,
        }
    else:
        out = {
            "type": "windowsUpdate",
            "searchCriteria": action.search_criteria,
            "filters": list(action.filters),
            "updateLimit": action.update_limit,
            "command": action.command,
            "maxRounds": action.max_rounds,
        }
    if action.description:
        out["description"] = action.description
    return out


def step_as_dict(step: StepPlan) -> dict[str, object]:
    from aibx.diagnostics import format_path

    return {
        "name": step.name,
        "type": step.kind,
        "phase": step.phase,
        "path": format_path(step.path) or None,
        "actions": [action_as_dict(a) for a in step.actions],
        "onInterrupt": [action_as_dict(a) for a in step.on_interrupt],
        "cleanup": [action_as_dict(a) for a in step.cleanup],
        "notes": list(step.notes),
        "blocked": list(step.blocked),
    }
