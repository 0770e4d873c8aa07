"""The node's images directory, as k3s' ``agent/images``: every image archive in it is
imported into the node's store at start and whenever one appears (or changes)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["ImagesDir", "is_archive"]

log = logging.getLogger("corral.agent.images")

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar.zstd")
POLL = 2.0  # seconds


def is_archive(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith(".")


class ImagesDir:
    def __init__(
        self,
        path: Path,
        import_path: Callable[[str], Awaitable[list[str]]],
        on_import: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._import = import_path
        self._on_import = on_import  # after a scan that imported something
        self._done: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) imported
        self.errors: dict[str, str] = {}
        # name -> (size, mtime_ns) whose import failed: tried again only once it changes (a
        # bad archive is not unpacked again every POLL, nor its error logged)
        self._failed: dict[str, tuple[int, int]] = {}

    async def scan(self) -> list[str]:
        """Import the archives not imported yet (or changed since); their names."""
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            if not is_archive(e.name) or not e.is_file():
                continue
            st = e.stat()
            mark = (st.st_size, st.st_mtime_ns)
            if mark in (self._done.get(e.name), self._failed.get(e.name)):
                continue
            try:
                ids = await self._import(e.path)
            except Exception as err:  # noqa: BLE001 - one bad archive must not stop the others
                log.warning("images: import %s: %s", e.path, err)
                self.errors[e.name] = str(err)
                self._failed[e.name] = mark
                continue
            self.errors.pop(e.name, None)
            self._failed.pop(e.name, None)
            self._done[e.name] = mark
            log.info("images: imported %s (%s)", e.path, ", ".join(i[:12] for i in ids))
            out.append(e.name)
        if out and self._on_import is not None:
            self._on_import()
        return out

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            await self.scan()
