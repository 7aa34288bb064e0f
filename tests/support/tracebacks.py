"""debug_tracebacks for the fuzz tests: AIBX_DEBUG-style tracebacks of an unexpected exception."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def debug_tracebacks() -> Iterator[None]:
    """AIBX_DEBUG=1: the CLI re-raises a crash instead of exiting 70, so hypothesis shows the traceback."""
    old = os.environ.get("AIBX_DEBUG")
    os.environ["AIBX_DEBUG"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["AIBX_DEBUG"]
        else:
            os.environ["AIBX_DEBUG"] = old
