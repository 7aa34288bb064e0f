"""One executor per plan action, found by the action's type (``executor_for``).

Adding an action: a frozen dataclass in ``aibx.plan``, a module here with ``@executes(TheAction)``, and its import
below (which registers it).
"""

from aibx.engine.executors import restart, run_command, upload, windows_update
from aibx.engine.executors.base import StepRun, executes, executor_for

__all__ = ["StepRun", "executes", "executor_for", "restart", "run_command", "upload", "windows_update"]
