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


def for_packer_166(text: str) -> str:
    """HCL aibx wrote, as Packer 1.6.6 can check it: without the ``packer {}`` block (required_plugins came in
    1.7) and windows-update provisioners (a plugin 1.6.6 does not have)."""
    out: list[str] = []
    depth = 0
    for line in text.split("\n"):
        if depth:
            depth += line.count("{") - line.count("}")
            continue
        if line.startswith("packer {") or line.strip() == 'provisioner "windows-update" {':
            depth = line.count("{") - line.count("}")
            continue
        out.append(line)
    return "\n".join(out)


def variable_args(text: str) -> list[str]:
    """``-var`` arguments with a plausible value for each variable of ``text`` that has no default (what a
    user passes to ``packer build``)."""
    import hcl2

    out: list[str] = []
    for var in hcl2.loads(text).get("variable", []):
        for quoted, spec in var.items():
            name = quoted.strip('"')
            if "default" in spec:
                continue
            kind = str(spec.get("type", "string"))
            if "bool" in kind:
                value = "true"
            elif "number" in kind:
                value = "1"
            elif "list" in kind:
                value = '["x"]'
            elif "version" in name.lower():
                value = "1.0.0"
            elif "subscription" in name.lower():
                value = "00000000-0000-0000-0000-000000000000"
            else:
                value = "x1"
            out += ["-var", f"{name}={value}"]
    return out


def packer_validate(text: str, folder: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    """``packer validate`` (1.6.6) of HCL aibx wrote, with a value for every variable without a default."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.pkr.hcl").write_text(for_packer_166(text))
    return run_packer(["validate", *variable_args(text), "t.pkr.hcl"], folder, scratch)
