"""``runtime.pod.statuswatch.StatusWatch``: a pod's status files rewritten the way its monitor
writes them (a temporary file renamed over the status file) are reported by pod, once; the
monitor's temporary files are not; a pod discarded or removed is not reported any more.
Real inotify on a temporary directory (the monitor's side is played by renames)."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.pod.statuswatch import StatusWatch

WAIT = 60.0  # seconds: a bound for an event that must come, never a measure of speed


@pytest.fixture
def watch() -> Iterator[StatusWatch]:
    w = StatusWatch()
    yield w
    w.close()


def monitor_writes(path: Path, text: str) -> None:
    """As csrc/monitor/util.c's write_atomic: ``.<name>.tmp``, then renamed over ``name``."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, path)


def changed(w: StatusWatch) -> set[str]:
    """What the watch reports once its fd is readable (nothing if it never becomes so)."""
    ready, _, _ = select.select([w.fileno()], [], [], WAIT)
    return w.read() if ready else set()


def quiet(w: StatusWatch) -> set[str]:
    """What the watch has now, without waiting."""
    return w.read()


def pod_dir(tmp_path: Path, uid: str, status: bool = True) -> Path:
    d = tmp_path / "run" / uid
    (d / "status").mkdir(parents=True) if status else d.mkdir(parents=True)
    return d


def test_a_rewritten_status_file_reports_its_pod(watch: StatusWatch, tmp_path: Path) -> None:
    a, b = pod_dir(tmp_path, "a"), pod_dir(tmp_path, "b")
    watch.add("a", a)
    watch.add("b", b)
    assert watch.read() == {"a", "b"}  # what came before the watch: looked at once
    monitor_writes(a / "status" / "main", "state=running\nready=true\n")
    assert changed(watch) == {"a"}
    monitor_writes(b / "pod.status", "phase=Running\n")
    monitor_writes(a / "status" / "side", "state=running\n")
    got = changed(watch)
    got |= quiet(watch)
    assert got == {"a", "b"}
    assert quiet(watch) == set()


def test_temporary_files_are_not_changes(watch: StatusWatch, tmp_path: Path) -> None:
    a = pod_dir(tmp_path, "a")
    watch.add("a", a)
    watch.read()
    (a / "status" / ".main.tmp").write_text("state=running\n")
    (a / ".pod.status.tmp").write_text("phase=Running\n")
    monitor_writes(a / "status" / "main", "state=running\n")  # the one change
    assert changed(watch) == {"a"}
    assert quiet(watch) == set()


def test_a_status_directory_made_after_the_watch_is_watched(
    watch: StatusWatch, tmp_path: Path
) -> None:
    a = pod_dir(tmp_path, "a", status=False)
    watch.add("a", a)
    assert watch.read() == set()
    (a / "status").mkdir()
    assert changed(watch) == {"a"}  # made: what is in it is to be read
    monitor_writes(a / "status" / "main", "state=running\n")
    assert changed(watch) == {"a"}


def test_the_watch_follows_the_pod_directory_when_it_moves(
    watch: StatusWatch, tmp_path: Path
) -> None:
    a = pod_dir(tmp_path, "a")
    watch.add("a", a)
    watch.read()
    (tmp_path / "exited").mkdir()
    moved = tmp_path / "exited" / "a"
    os.rename(a, moved)
    monitor_writes(moved / "status" / "main", "state=terminated\nexit_code=0\n")
    assert changed(watch) == {"a"}


def test_a_discarded_or_removed_pod_is_not_reported(watch: StatusWatch, tmp_path: Path) -> None:
    a, b, c = pod_dir(tmp_path, "a"), pod_dir(tmp_path, "b"), pod_dir(tmp_path, "c")
    for uid, d in (("a", a), ("b", b), ("c", c)):
        watch.add(uid, d)
    watch.read()
    watch.discard("a")
    monitor_writes(a / "status" / "main", "state=running\n")
    (b / "status").rmdir()
    b.rmdir()
    monitor_writes(c / "status" / "main", "state=running\n")  # the one that counts
    assert changed(watch) == {"c"}
    assert quiet(watch) == set()


def test_adding_a_missing_pod_directory_fails(watch: StatusWatch, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        watch.add("gone", tmp_path / "gone")
