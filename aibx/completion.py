"""Shell completion for aibx: bash and zsh scripts generated from the argparse parser by shtab, so verbs,
options and their choices complete as they are defined, and template paths complete as files.

Imported only when completion is asked for (``aibx --print-completion``, ``aibx --install-completion``), so
the start of every other command does not pay for it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

SHELLS = ("bash", "zsh")
_FILE_METAVARS = {"PATH", "TEMPLATE", "FILE", "KEY", "FILE|DIR"}
_DIR_METAVARS = {"DIR"}


def script(shell: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The completion script for ``shell`` ("bash" or "zsh")."""
    import shtab

    if parser is None:
        from aibx.cli import build_parser

        parser = build_parser()
    _mark_paths(parser, shtab)
    return shtab.complete(parser, shell=shell)


def _mark_paths(parser: argparse.ArgumentParser, shtab: Any) -> None:
    """Arguments that name files or folders complete as such."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, shtab)
        elif action.metavar in _FILE_METAVARS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.metavar in _DIR_METAVARS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]


def detect_shell() -> str | None:
    name = Path(os.environ.get("SHELL", "")).name
    return name if name in SHELLS else None


def install_path(shell: str) -> Path:
    """Where ``shell`` finds a user's completion for aibx: bash-completion loads
    $XDG_DATA_HOME/bash-completion/completions/aibx on demand; zsh loads _aibx from a folder in $fpath."""
    if shell == "bash":
        data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return Path(data) / "bash-completion" / "completions" / "aibx"
    return Path(os.path.expanduser("~/.zfunc")) / "_aibx"


def install(shell: str, parser: argparse.ArgumentParser | None = None) -> tuple[Path, str]:
    """Write the script where ``shell`` loads it from; (the file written, what the user still has to do)."""
    path = install_path(shell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(shell, parser), encoding="utf-8")
    if shell == "bash":
        return path, "open a new shell (bash-completion, installed by most distributions, loads it)"
    return path, f"add to ~/.zshrc, before compinit: fpath=({path.parent} $fpath); autoload -Uz compinit; compinit"


def run(parser: argparse.ArgumentParser, option: str, shell: str | None) -> None:
    """--print-completion SHELL, or --install-completion [SHELL]; exits."""
    if option == "--print-completion":
        print(script(str(shell), parser), end="")
        parser.exit(0)
    shell = shell or detect_shell()
    if shell is None:
        parser.exit(
            2,
            f"aibx: cannot tell your shell from SHELL={os.environ.get('SHELL', '')!r}; "
            f"name it: aibx --install-completion {{{','.join(SHELLS)}}}\n",
        )
    path, hint = install(shell, parser)
    print(f"aibx: {shell} completion written to {path}; {hint}")
    parser.exit(0)
