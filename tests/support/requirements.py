"""Tests that need a real program (sshd, packer, ip, qemu) skip without it on a developer's machine, but in CI
(CI=true), where .ci/run installs everything, a missing program is a failure: nothing is skipped silently."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)


def missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str | None = None) -> str:
    path = find_program(name)
    if path is None:
        missing(f"{name} not found; install the Debian package {package or name}")
    return path  # type: ignore[return-value]


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        missing(f"needs root: {why}")
