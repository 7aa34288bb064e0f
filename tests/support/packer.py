"""Running the real Packer (Debian's 1.6.6) from tests: no phoning home, a private HOME and cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.requirements import require_program

if TYPE_CHECKING:
    from tests.support.sshd import SshTarget


def packer_env(home: Path) -> dict[str, str]:
    (home / "home").mkdir(parents=True, exist_ok=True)
    (home / "cache").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKR_VAR_", "PACKER_"))}
    env.update(CHECKPOINT_DISABLE="1", HOME=str(home / "home"), PACKER_CACHE_DIR=str(home / "cache"))
    return env


def run_packer(args: list[str], cwd: Path, scratch: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``packer ARGS`` in ``cwd``; ``scratch`` holds Packer's HOME and cache."""
    packer = require_program("packer")
    return subprocess.run(
        [packer, *args],
        cwd=cwd,
        env=packer_env(scratch),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def null_ssh_source(target: SshTarget, ssh_timeout: str = "60s") -> str:
    """A ``source "null" "vm"`` block whose SSH communicator logs in to ``target`` with its client key (Packer
    cannot check host keys: it does not)."""
    return f"""
source "null" "vm" {{
  communicator         = "ssh"
  ssh_host             = "{target.host}"
  ssh_port             = {target.port}
  ssh_username         = "{target.user}"
  ssh_private_key_file = "{target.client_key}"
  ssh_timeout          = "{ssh_timeout}"
}}
"""
