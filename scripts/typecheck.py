"""Type-check the package as it installs: mypy over every module of ``aibx``, with the ``package-dir`` mapping of
pyproject.toml resolved (``engine/`` is ``aibx.engine``, and so on), strict about unused ``# type: ignore``.

The folders are linked into a temporary tree shaped like the installed package, mypy checks it there, and every
path in its messages is mapped back to the file in this checkout. Exit status: mypy's (0: no errors).

    python scripts/typecheck.py            (the README's test command runs it)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs() -> dict[str, str]:
    """``[tool.setuptools] package-dir`` of pyproject.toml: package -> folder."""
    text = (ROOT / "pyproject.toml").read_text()
    line = re.search(r"^package-dir\s*=\s*\{(.*)\}\s*$", text, re.MULTILINE)
    if line is None:
        raise SystemExit("scripts/typecheck.py: no package-dir in pyproject.toml")
    return dict(re.findall(r'"([\w.]+)"\s*=\s*"([\w./-]+)"', line.group(1)))


def link_tree(tree: Path) -> dict[str, str]:
    """Link every package folder where it installs; returns installed path prefix -> checkout path prefix."""
    mapping = package_dirs()
    back: dict[str, str] = {}
    for package in sorted(mapping, key=len):
        folder = ROOT / mapping[package]
        installed = tree / package.replace(".", "/")
        installed.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry.name == "__pycache__" or (installed / entry.name).exists():
                continue
            if entry.is_dir() and f"{package}.{entry.name}" in mapping:
                continue  # mapped on its own (a sub-package from another folder)
            os.symlink(entry, installed / entry.name)
        back[package.replace(".", "/") + "/"] = mapping[package].rstrip("/") + "/"
    return back


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aibx-typecheck-") as folder:
        tree = Path(folder)
        back = link_tree(tree)
        command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "aibx"]
        done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    prefixes = sorted(back, key=len, reverse=True)
    for line in (done.stdout + done.stderr).splitlines():
        for prefix in prefixes:
            if line.startswith(prefix):
                line = back[prefix] + line[len(prefix) :]
                break
        print(line)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
