"""Reading the CRI logs the monitor writes: ``logs/<container>/<N>.log`` (N = restart count),
rotated to ``N.log.1`` (newest) .. ``N.log.K``. Each line is
``<RFC3339Nano> <stdout|stderr> <F|P> <text>``; ``P`` lines are parts of one longer line.
Only ``\n`` ends a line: a ``\r`` (a terminal's ``\r\n``) is text, kept as podman keeps it.

``read_log`` gives a finished run's text lines; ``LogFollower`` tails every container's
current run, across rotations and restarts, the way ``kubectl logs -f`` prints them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LogFollower", "LogLine", "parse_line", "read_log", "run_files", "runs"]

_RUN = re.compile(r"^(\d+)\.log$")


@dataclass(frozen=True, slots=True)
class LogLine:
    container: str
    time: str
    stream: str
    text: str  # without the newline


def parse_line(raw: str) -> tuple[str, str, bool, str] | None:
    """(time, stream, partial, text) of one CRI log line, None if it is not one."""
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[2] not in ("F", "P"):
        return None
    text = parts[3] if len(parts) == 4 else ""
    return parts[0], parts[1], parts[2] == "P", text


def runs(log_dir: Path) -> list[int]:
    """The run numbers that have a log, ascending."""
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m[1]) for n in names if (m := _RUN.match(n)))


def run_files(log_dir: Path, run: int) -> list[Path]:
    """One run's files, oldest first: N.log.K .. N.log.1, N.log."""
    rotated = []
    for p in log_dir.glob(f"{run}.log.*"):
        suffix = p.name.rsplit(".", 1)[1]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [log_dir / f"{run}.log"]


class _Joiner:
    """Joins partial (P) lines per stream."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.partial: dict[str, list[str]] = {}

    def feed(self, raw: str) -> LogLine | None:
        parsed = parse_line(raw)
        if parsed is None:
            return None
        time, stream, partial, text = parsed
        if partial:
            self.partial.setdefault(stream, []).append(text)
            return None
        text = "".join(self.partial.pop(stream, [])) + text
        return LogLine(self.container, time, stream, text)

    def flush(self) -> list[LogLine]:
        out = [LogLine(self.container, "", s, "".join(t)) for s, t in self.partial.items() if t]
        self.partial.clear()
        return out


def read_log(log_dir: Path, run: int, container: str = "") -> list[LogLine]:
    joiner = _Joiner(container)
    out = []
    for p in run_files(log_dir, run):
        try:
            with open(p, errors="replace", newline="\n") as f:
                for raw in f:
                    line = joiner.feed(raw)
                    if line is not None:
                        out.append(line)
        except FileNotFoundError:
            continue
    return out + joiner.flush()


@dataclass
class _Tail:
    container: str
    log_dir: Path
    run: int
    joiner: _Joiner
    f: object | None = None  # an open text file
    ino: int = 0
    buf: str = ""
    history: bool = True  # print what the run already wrote

    def _open(self) -> bool:
        path = self.log_dir / f"{self.run}.log"
        try:
            f = open(path, errors="replace", newline="\n")  # noqa: SIM115 - kept open
        except FileNotFoundError:
            return False
        self.f = f
        self.ino = os.fstat(f.fileno()).st_ino
        return True

    def _drain(self) -> list[LogLine]:
        out: list[LogLine] = []
        if self.f is None:
            return out
        data = self.f.read()  # type: ignore[attr-defined]
        if not data:
            return out
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        for raw in lines:
            line = self.joiner.feed(raw)
            if line is not None:
                out.append(line)
        return out

    def _close(self) -> None:
        if self.f is not None:
            self.f.close()  # type: ignore[attr-defined]
            self.f = None

    def poll(self) -> list[LogLine]:
        out: list[LogLine] = []
        if self.f is None and not self._open():
            return out
        out += self._drain()
        path = self.log_dir / f"{self.run}.log"
        try:
            rotated = os.stat(path).st_ino != self.ino
        except FileNotFoundError:
            rotated = True
        if rotated:  # the monitor renamed it to N.log.1: we have drained it, go on
            if path.exists():
                self._close()
                self._open()
                out += self._drain()
        nxt = self.log_dir / f"{self.run + 1}.log"
        if nxt.exists():  # a restart: finish this run, follow the next
            out += self._drain()
            self._close()
            self.run += 1
            self.buf = ""
            if self._open():
                out += self._drain()
        return out


@dataclass
class LogFollower:
    """Tails the logs of ``containers`` (names) under ``logs_dir``: each ``poll()`` returns
    the lines written since the last one. ``from_start``: begin with the current run's
    existing lines (else only new ones)."""

    logs_dir: Path
    containers: list[str]
    from_start: bool = True
    tails: dict[str, _Tail] = field(default_factory=dict)

    def poll(self) -> list[LogLine]:
        out: list[LogLine] = []
        for name in self.containers:
            tail = self.tails.get(name)
            log_dir = self.logs_dir / name
            if tail is None:
                existing = runs(log_dir)
                if not existing:
                    continue
                tail = _Tail(name, log_dir, existing[-1], _Joiner(name))
                self.tails[name] = tail
                if tail._open() and not self.from_start:
                    tail.f.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
                if self.from_start:
                    # the run's rotated files first, then the live one
                    for p in run_files(log_dir, tail.run)[:-1]:
                        with open(p, errors="replace", newline="\n") as f:
                            for raw in f:
                                line = tail.joiner.feed(raw)
                                if line is not None:
                                    out.append(line)
            out += tail.poll()
        return out

    def close(self) -> None:
        for t in self.tails.values():
            t._close()

    def lines(self) -> Iterator[LogLine]:
        yield from self.poll()
