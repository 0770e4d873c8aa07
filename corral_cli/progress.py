"""A one-line progress bar for ``corral image import`` and ``save``: bytes and layers.

Drawn on stdout only when stdout is a terminal, at most ten times a second, and erased at the
end; otherwise nothing is written (a pipe or a file sees only the command's normal output).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from images.progress import Progress, ProgressFn

WIDTH = 24
INTERVAL = 0.1


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"


def line(label: str, p: Progress) -> str:
    """``import [#######.........]  12.0MB/30.0MB  layers 1/3``"""
    frac = p.done / p.total if p.total else (p.layer / p.layers if p.layers else 1.0)
    filled = int(round(frac * WIDTH))
    bar = "#" * filled + "." * (WIDTH - filled)
    return f"{label} [{bar}] {human(p.done)}/{human(p.total)}  layers {p.layer}/{p.layers}"


class Bar:
    def __init__(self, label: str, out: TextIO) -> None:
        self.label = label
        self.out = out
        self.last = 0.0
        self.width = 0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.layer == p.layers and p.done >= p.total
        if not final and now - self.last < INTERVAL:
            return
        self.last = now
        text = line(self.label, p)
        self.out.write("\r" + text.ljust(self.width))
        self.out.flush()
        self.width = len(text)

    def erase(self) -> None:
        if self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()


@contextmanager
def bar(label: str, out: TextIO | None = None) -> Iterator[ProgressFn | None]:
    """A progress callback drawing on ``out`` (stdout) when it is a terminal, else None."""
    stream = out or sys.stdout
    try:
        tty = os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        tty = False
    if not tty:
        yield None
        return
    b = Bar(label, stream)
    try:
        yield b
    finally:
        b.erase()
