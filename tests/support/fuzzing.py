"""The harness of the fuzz tests (tests/test_fuzz_*.py): budgets, a per-example watchdog, a memory-growth probe.

* **Budgets.** Each fuzz test is parametrized with ``BUDGETS``: a ``sample`` in the normal suite and a ``full``
  run marked ``fuzz``, left out of the normal suite by pytest's addopts (``pytest -m fuzz`` runs only the full
  runs; together they generate more than 10,000 inputs, in about 3 minutes). ``AIBX_FUZZ_EXAMPLES=N``
  overrides the number of examples of every run, for a long local session.
* **Hangs and memory bombs.** ``fuzz()`` runs each example under a watchdog: SIGALRM after
  ``HANG_SECONDS`` raises ``ExampleHung`` (a BaseException, so no ``except Exception`` in the code under test
  swallows it), and the address space may grow by at most ``MEMORY_BOMB_MB`` (RLIMIT_AS), so a runaway
  allocation fails with MemoryError, the same way every time, instead of taking the machine's memory. Both
  thresholds are orders of magnitude above what an example needs (milliseconds, kilobytes): they catch a hang
  or a runaway allocation, never mere slowness, so a loaded machine does not make them flaky. pytest-timeout's
  own SIGALRM timer is saved and restored around each example.
* **Memory growth.** ``traced_growth()`` runs a workload in rounds under tracemalloc and reports how much the
  traced memory grew in each round after a warm-up, for tests that fail only on clear, steady growth.

Examples are run through hypothesis, so a failure is shrunk and printed as the smallest input that fails.
"""

from __future__ import annotations

import functools
import gc
import os
import resource
import signal
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning

HANG_SECONDS = 60.0
MEMORY_BOMB_MB = 512


def _examples(default: int) -> int:
    override = os.environ.get("AIBX_FUZZ_EXAMPLES", "")
    return int(override) if override.isdigit() and int(override) > 0 else default


def budgets(sample: int, full: int) -> pytest.MarkDecorator:
    """Parametrize a test with ``budget``: ``sample`` examples in the normal suite, ``full`` under -m fuzz."""
    return pytest.mark.parametrize(
        "budget",
        [
            pytest.param(_examples(sample), id="sample"),
            pytest.param(_examples(full), id="full", marks=[pytest.mark.fuzz, pytest.mark.timeout(900)]),
        ],
    )


class ExampleHung(BaseException):
    """An example ran past the watchdog: the code under test hangs (or loops for what is effectively ever)."""


@contextmanager
def watchdog(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise ExampleHung in the main thread if the block runs longer than ``seconds``; restores any SIGALRM
    timer (pytest-timeout's) that was running, minus the time spent here."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise ExampleHung(f"no result after {seconds:g} s: a hang")

    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            remaining = max(previous_delay - (time.monotonic() - start), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


@contextmanager
def memory_limit(extra_mb: int = MEMORY_BOMB_MB) -> Iterator[None]:
    """Let the address space grow by at most ``extra_mb`` inside the block; an allocation past it is a
    MemoryError, reported as a failed assertion."""
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    except MemoryError:
        raise AssertionError(f"one example tried to take more than {extra_mb} MB: a memory bomb") from None
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def guarded(check: Callable[..., None]) -> Callable[..., None]:
    """``check`` run under the watchdog and the memory limit."""

    @functools.wraps(check)
    def run(**kwargs: Any) -> None:
        with watchdog(), memory_limit():
            check(**kwargs)

    return run


def fuzz(budget: int, check: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> None:
    """Run ``check(**drawn)`` on ``budget`` examples drawn from ``strategies``, each under the watchdog.
    Hypothesis keys its example database by ``check``'s source, so each check replays its own failures."""
    test = settings(
        max_examples=budget,
        deadline=None,  # time is bounded by the watchdog: a hang fails, slowness does not
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )(given(**strategies)(guarded(check)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HypothesisWarning)  # "overly large repr" of a megabyte string
        test()


def traced_growth(step: Callable[[int], None], *, rounds: int, per_round: int, warmup: int) -> list[int]:
    """Call ``step(i)`` for i = 0, 1, ...: ``warmup`` calls, then ``rounds`` rounds of ``per_round`` calls;
    return the growth of tracemalloc's traced memory (bytes, after a full collection) over each round."""
    i = 0
    tracemalloc.start()
    try:
        for _ in range(warmup):
            step(i)
            i += 1
        gc.collect()
        last = tracemalloc.get_traced_memory()[0]
        growth = []
        for _ in range(rounds):
            for _ in range(per_round):
                step(i)
                i += 1
            gc.collect()
            now = tracemalloc.get_traced_memory()[0]
            growth.append(now - last)
            last = now
        return growth
    finally:
        tracemalloc.stop()
