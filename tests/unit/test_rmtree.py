"""corral_common.rmtree: any depth, no symlink followed, shutil.rmtree's contract otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral_common.rmtree import rmtree


def _deep(top: Path, levels: int, outside: Path) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            os.symlink(str(outside), "out", dir_fd=fd)
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def test_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    """Python 3.11's shutil.rmtree raises RecursionError here, even with ignore_errors."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    top = tmp_path / "top"
    top.mkdir()
    _deep(top, 3000, outside)
    for i in range(300):
        (top / f"wide{i}").mkdir()
    rmtree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "k"


def test_files_symlinks_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.symlink(str(tmp_path / "d"), tmp_path / "link")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in").write_text("i")
    rmtree(tmp_path / "link")  # the link goes, not what it points at
    assert (tmp_path / "d" / "in").exists() and not (tmp_path / "link").is_symlink()
    rmtree(tmp_path / "f")
    rmtree(tmp_path / "missing")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rmtree("d", dir_fd=dfd)
    finally:
        os.close(dfd)
    assert os.listdir(tmp_path) == []


def test_errors_raise_unless_ignored(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        rmtree(Path("/proc/1"))  # procfs removes nothing
    rmtree(Path("/proc/1"), ignore_errors=True)
