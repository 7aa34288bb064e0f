"""Files a verb will write (a report, a log), checked before anything runs: a folder in the way or a folder that is
not there is invalid input (exit 2) at once, not an error after the work is done."""

from __future__ import annotations

import os


def output_path_problem(path: str, example: str) -> str:
    """Why aibx could not write a file at ``path`` (checked before anything runs), or ""."""
    if os.path.isdir(path):
        return f"is a folder; name a file in it, such as {os.path.join(path, example)}"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return "its folder does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder} (permission denied)"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "cannot write it (permission denied)"
    return ""
