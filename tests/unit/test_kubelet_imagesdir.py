"""The images directory's scan (orchestrator.kubelet.images): what it imports, and when it
tries an archive again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator.kubelet.images import ImagesDir


class Importer:
    """The import step: records every archive it is given; ``bad`` ones fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bad: set[str] = set()

    async def __call__(self, path: str) -> list[str]:
        self.calls.append(os.path.basename(path))
        if os.path.basename(path) in self.bad:
            raise ValueError(f"{path}: refusing entry 'etc/x': device nodes not allowed")
        return ["sha256:" + "0" * 64]


def test_a_bad_archive_is_tried_again_only_once_it_changed(tmp_path: Path) -> None:
    imp = Importer()
    d = ImagesDir(tmp_path, imp)
    (tmp_path / "good.tar").write_bytes(b"g" * 10)
    (tmp_path / "bad.tar").write_bytes(b"b" * 10)
    (tmp_path / "notes.txt").write_text("not an archive")
    imp.bad.add("bad.tar")

    assert asyncio.run(d.scan()) == ["good.tar"]
    assert sorted(imp.calls) == ["bad.tar", "good.tar"]
    assert "device nodes" in d.errors["bad.tar"]
    for _ in range(3):  # unchanged: neither is read again
        assert asyncio.run(d.scan()) == []
    assert sorted(imp.calls) == ["bad.tar", "good.tar"]

    imp.bad.clear()  # the user replaces the archive
    (tmp_path / "bad.tar").write_bytes(b"B" * 11)
    assert asyncio.run(d.scan()) == ["bad.tar"]
    assert imp.calls.count("bad.tar") == 2 and "bad.tar" not in d.errors
    assert asyncio.run(d.scan()) == []


def test_a_changed_archive_is_imported_again(tmp_path: Path) -> None:
    imp = Importer()
    d = ImagesDir(tmp_path, imp)
    a = tmp_path / "a.tar"
    a.write_bytes(b"1")
    assert asyncio.run(d.scan()) == ["a.tar"]
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert asyncio.run(d.scan()) == ["a.tar"]
    assert imp.calls == ["a.tar", "a.tar"]
