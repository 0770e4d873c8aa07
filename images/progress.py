"""Progress of a long store operation (import, save), reported to an optional callback.

The store calls ``progress(Progress(...))`` now and then: at the start, as layer bytes pass and
after each layer. What to show, and whether to show anything, is the caller's business (the
CLI draws a bar when stdout is a terminal); nothing here writes to a terminal.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True, slots=True)
class Progress:
    done: int  # layer bytes processed so far
    total: int  # layer bytes in all
    layer: int  # layers finished
    layers: int  # layers in all


ProgressFn = Callable[[Progress], None]


class Meter:
    """Counts bytes and layers and calls ``fn`` (if any) on every change; layers unpacked in
    threads report through one meter, so a change and its report are made under a lock."""

    def __init__(self, fn: ProgressFn | None, total: int, layers: int) -> None:
        self.fn = fn
        self.total = total
        self.layers = layers
        self.done = 0
        self.layer = 0
        self._lock = threading.Lock()
        self._emit()

    def _emit(self) -> None:
        if self.fn is not None:
            self.fn(Progress(min(self.done, self.total), self.total, self.layer, self.layers))

    def add(self, n: int) -> None:
        if n:
            with self._lock:
                self.done += n
                self._emit()

    def layer_done(self, skipped: int = 0) -> None:
        """One more layer finished; ``skipped`` bytes of it were not read (already stored)."""
        with self._lock:
            self.done += skipped
            self.layer += 1
            self._emit()


class CountingReader(io.RawIOBase):
    """Reads through ``inner``, telling ``meter`` how many bytes passed."""

    def __init__(self, inner: IO[bytes], meter: Meter) -> None:
        self.inner = inner
        self.meter = meter
        self.count = 0  # bytes read through it so far

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(b)  # type: ignore[attr-defined]  # (into the caller's buffer)
        self.count += n
        self.meter.add(n)
        return n
