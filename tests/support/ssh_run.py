"""aibx run against the test sshd, as a user runs it: the recorded run, and waiting for files the VM writes."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.cli import RecordedRun
from tests.support.sshd import SshTarget

ROOT = Path(__file__).resolve().parent.parent


class Run(RecordedRun):
    """One `aibx run` against an SSH target."""

    def __init__(self, tmp_path: Path, target: SshTarget, template: Path, *extra: str, auth: bool = True) -> None:
        keys = ["-i", target.client_key, "--known-hosts", target.known_hosts] if auth else []
        super().__init__(tmp_path, template, "--host", target.url, *keys, *extra)


def wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text().strip()
