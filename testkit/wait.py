"""Waiting for a condition in tests: a generous bound that fails the test when it is passed,
never a measurement of speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["until"]


def until(what: str, cond: Callable[[], Any], timeout: float = 120.0, interval: float = 0.1) -> Any:
    """The first true value of ``cond()``, polled every ``interval`` seconds; an
    AssertionError naming ``what`` (and the last value) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(interval)
