"""The audit log: one audit.k8s.io/v1 Event (level Metadata, stage ResponseComplete) per
request, as JSON lines, to ``--audit-log-path``, rotated by size as kube-apiserver rotates it
(``--audit-log-maxsize`` megabytes, ``--audit-log-maxbackup`` old files kept, named
``<name>-<UTC time>.<ext>``). ``-`` writes to standard output."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

__all__ = ["AuditLog", "timestamp"]

log = logging.getLogger("corral.apiserver")
MEGABYTE = 1024 * 1024


def timestamp(t: datetime | None = None) -> str:
    """RFC 3339 with microseconds, as audit events carry (``MicroTime``)."""
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, path: str, max_size_mb: int = 0, max_backups: int = 0) -> None:
        self.path = path
        self.max_bytes = max_size_mb * MEGABYTE
        self.max_backups = max_backups
        self._file: BinaryIO | None = None
        self._size = 0
        self._encoder = msgspec.json.Encoder()
        if path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        p = Path(self.path)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        os.rename(p, p.with_name(f"{p.stem}-{stamp}{p.suffix}"))
        if self.max_backups > 0:
            backups = sorted(p.parent.glob(f"{p.stem}-*{p.suffix}"))
            for old in backups[: -self.max_backups]:
                old.unlink(missing_ok=True)
        self._open()

    def write(self, event: dict[str, Any]) -> None:
        line = self._encoder.encode(event) + b"\n"
        if self.path == "-":
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            return
        try:
            if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(line)
            self._size += len(line)
        except OSError as e:
            log.error("audit log %s: %s", self.path, e)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
