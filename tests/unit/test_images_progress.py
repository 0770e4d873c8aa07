"""Progress callbacks of Store.import_path and Store.save, and the CLI's bar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from corral_cli import progress as cli_progress
from images.progress import Progress
from images.store import Store
from testkit.imagebuild import Entry, docker_files, oci_files, tar_entries, write_tar

LAYERS = [
    tar_entries([Entry("a", data=b"a" * 300_000)]),
    tar_entries([Entry("b", data=b"b" * 200_000)]),
    tar_entries([Entry("c", data=b"c" * 100)]),
]


def _check(events: list[Progress], layers: int) -> None:
    assert events, "no progress reported"
    first, last = events[0], events[-1]
    assert (first.done, first.layer, first.layers) == (0, 0, layers)
    assert last.done == last.total > 0 and last.layer == last.layers == layers
    assert all(
        b.done >= a.done and b.layer >= a.layer for a, b in zip(events, events[1:], strict=False)
    )
    assert all(e.done <= e.total for e in events)


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_import_reports_bytes_and_layers(tmp_path: Path, fmt: str) -> None:
    if fmt == "oci":
        files, _ = oci_files(LAYERS, ref_name="p:1", compression="gzip")
    else:
        files, _ = docker_files(LAYERS, repo_tags=["p:1"])
    src = write_tar(tmp_path / "src.tar", files)
    store = Store(tmp_path / "store")
    events: list[Progress] = []
    store.import_path(src, progress=events.append)
    _check(events, 3)
    # again: every layer is stored already, and still the count reaches the end
    again: list[Progress] = []
    store.import_path(src, progress=again.append)
    _check(again, 3)
    assert len(again) <= 4  # the start and one per layer: nothing was read


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_reports_bytes_and_layers(tmp_path: Path, fmt: str) -> None:
    files, _ = oci_files(LAYERS, ref_name="p:1", compression="gzip")
    store = Store(tmp_path / "store")
    store.import_path(write_tar(tmp_path / "src.tar", files))
    events: list[Progress] = []
    store.save("p:1", tmp_path / "out.tar", fmt, progress=events.append)
    _check(events, 3)
    if fmt == "docker-archive":  # uncompressed tars are written
        assert events[-1].total == sum(len(t) for t in LAYERS)


def test_bar_line_and_quiet_when_not_a_terminal() -> None:
    text = cli_progress.line("import", Progress(500_000, 1_000_000, 1, 3))
    assert text.startswith("import [" + "#" * 12 + "." * 12 + "]")
    assert text.endswith("500.0kB/1.0MB  layers 1/3")
    with cli_progress.bar("import", io.StringIO()) as cb:
        assert cb is None
    out = io.StringIO()
    b = cli_progress.Bar("save", out)
    b(Progress(0, 10, 0, 1))
    b(Progress(10, 10, 1, 1))
    b.erase()
    assert "layers 1/1" in out.getvalue() and out.getvalue().endswith("\r")
