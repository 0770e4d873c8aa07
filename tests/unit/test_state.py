"""On-disk state: atomic writes, ids, statuses, listing; no root needed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import container
from runtime.errors import AlreadyExists, ConfigError, InvalidState, NotFound
from runtime.state import (
    ContainerState,
    StateDir,
    Status,
    list_ids,
    process_start_time,
    validate_id,
    write_atomic,
)


def _state(cid: str = "c1") -> ContainerState:
    return ContainerState(
        id=cid,
        bundle="/b",
        rootfs="/b/rootfs",
        pid=os.getpid(),
        pid_start=process_start_time(os.getpid()) or 0,
        created="2026-01-01T00:00:00Z",
        oci_version="1.0.2",
        owner="",
        annotations={"a": "b"},
        cgroup_paths={"pids": "/sys/fs/cgroup/pids/c1"},
        config={},
    )


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    write_atomic(str(p), b"one", 0o640)
    write_atomic(str(p), b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in tmp_path.iterdir()] == ["f"]  # no temp file left behind


def test_write_atomic_mode(tmp_path: Path) -> None:
    p = tmp_path / "f"
    write_atomic(str(p), b"x", 0o640)
    assert p.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "x" * 1025, "\x00", "c1\n", "a:b"])
def test_bad_ids(cid: str) -> None:
    with pytest.raises(ConfigError):
        validate_id(cid)


@pytest.mark.parametrize("cid", ["c1", "my-container_2.0", "a+b", "0123456789abcdef" * 4, "é1"])
def test_good_ids(cid: str) -> None:
    validate_id(cid)


def test_state_round_trip_and_listing(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    sd = StateDir(root, "c1")
    sd.make()
    with pytest.raises(AlreadyExists):
        sd.make()
    st = _state()
    sd.save(st)
    assert sd.load() == st
    sd.make_fifo()
    assert os.stat(sd.fifo).st_mode & 0o777 == 0o622
    assert list_ids(root) == ["c1"]
    sd.remove()
    assert list_ids(root) == []
    with pytest.raises(NotFound):
        sd.load()


def test_corrupt_state_is_an_error_naming_the_container(tmp_path: Path) -> None:
    sd = StateDir(str(tmp_path), "c2")
    sd.make()
    Path(sd.path, "state.json").write_text("{not json")
    with pytest.raises(Exception) as e:
        sd.load()
    assert "c2" in str(e.value)


def test_a_state_emptied_by_a_machine_crash_reads_as_none(tmp_path: Path) -> None:
    """state.json is not fsync'd: a crash of the machine can leave it empty, dated before
    the boot. That is no container (its processes and cgroups died with the machine):
    delete --force and a new create of the id clear the directory; an empty state of this
    boot (which no writer leaves: the rename is atomic) is still reported as corrupt."""
    root = str(tmp_path)
    sd = StateDir(root, "c3")
    sd.make()
    state_file = Path(sd.path, "state.json")
    state_file.write_text("")
    with pytest.raises(Exception, match="corrupt state") as e:
        sd.load()
    assert not isinstance(e.value, NotFound) and sd.exists() and list_ids(root) == ["c3"]
    os.utime(state_file, (1_000_000, 1_000_000))  # written long before this boot
    assert not sd.exists() and sd.half_made() and list_ids(root) == []
    with pytest.raises(NotFound):
        sd.load()
    with pytest.raises(NotFound):
        container.delete("c3", root=root)
    container.delete("c3", force=True, root=root)
    assert not os.path.exists(sd.path)
    sd.make()  # cut short rather than emptied: the same
    state_file.write_text('{"id": "c3", "bun')
    os.utime(state_file, (1_000_000, 1_000_000))
    with pytest.raises(NotFound):
        sd.load()
    container.delete("c3", force=True, root=root)
    assert not os.path.exists(sd.path)


def test_process_start_time_of_a_missing_pid() -> None:
    mine = process_start_time(os.getpid())
    assert mine is not None and mine > 0
    assert process_start_time(1 << 30) is None


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that stands for whoever got a dead container's pid."""
    p = subprocess.Popen(["sleep", "1000"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _saved(root: Path, pid: int, pid_start: int) -> None:
    sd = StateDir(str(root), "c1")
    sd.make()
    st = _state()
    st.pid, st.pid_start, st.cgroup_paths = pid, pid_start, {}
    sd.save(st)


def test_a_live_pid_with_its_recorded_start_time_is_running(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    _saved(tmp_path, stranger.pid, process_start_time(stranger.pid) or 0)
    st = container.state("c1", root=str(tmp_path))
    assert (st["status"], st["pid"]) == ("running", stranger.pid)


def test_a_reused_pid_is_a_stopped_container_and_is_never_signalled(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    """The container's process died and its pid went to another process (same pid, another
    start time): the container is stopped, and neither kill nor delete --force touches the
    stranger."""
    start = process_start_time(stranger.pid)
    assert start
    _saved(tmp_path, stranger.pid, start - 1)
    st = container.state("c1", root=str(tmp_path))
    assert (st["status"], st["pid"]) == ("stopped", 0)
    with pytest.raises(InvalidState):
        container.kill("c1", "KILL", root=str(tmp_path))
    container.delete("c1", force=True, root=str(tmp_path))
    assert stranger.poll() is None, "the stranger was killed"
    assert list_ids(str(tmp_path)) == []


def test_status_rules() -> None:
    assert Status.CREATED.can_start and not Status.RUNNING.can_start
    assert Status.STOPPED.can_delete and not Status.RUNNING.can_delete
    assert Status.RUNNING.can_pause and not Status.PAUSED.can_pause
    assert not Status.STOPPED.can_kill


def test_remove_takes_files_fifo_and_stray_directories(tmp_path: Path) -> None:
    sd = StateDir(str(tmp_path), "c1")
    sd.make()
    sd.save(_state())
    sd.make_fifo()
    os.makedirs(os.path.join(sd.path, "stray", "deeper"))
    sd.remove()
    assert not os.path.exists(sd.path)
    sd.remove()  # already gone: nothing to do


def test_write_atomic_failure_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers never see a part: a write that fails before its rename leaves the old file."""
    p = tmp_path / "state.json"
    write_atomic(str(p), b"old")

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        write_atomic(str(p), b"new and longer")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_a_creating_record_is_not_fsynced_and_a_torn_one_reads_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It names cgroups, which a machine crash removes with it: no fsync (two per create),
    # and what a crash leaves of the file (nothing, or an empty one) is no record.
    sd = StateDir(str(tmp_path), "c1")
    sd.make()
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    sd.record_creating({"memory": "/sys/fs/cgroup/memory/c1"})
    assert synced == []
    assert sd.creating_record() == {"memory": "/sys/fs/cgroup/memory/c1"}
    (tmp_path / "c1" / "creating.json").write_bytes(b"")
    assert sd.creating_record() is None
    (tmp_path / "c1" / "creating.json").unlink()
    assert sd.creating_record() is None


def test_status_is_its_oci_name_and_one_object_per_status() -> None:
    names = ["creating", "created", "running", "paused", "stopped"]
    statuses = [Status.CREATING, Status.CREATED, Status.RUNNING, Status.PAUSED, Status.STOPPED]
    for name, status in zip(names, statuses, strict=True):
        assert str(status) == f"{status}" == name and status == name
        assert repr(status) == f"Status.{name.upper()}"
    assert len({id(s) for s in statuses}) == 5


def test_container_state_compares_by_value_and_survives_its_json(tmp_path: Path) -> None:
    st = _state()
    assert st == _state() and st != _state("c2") and st != "c1"
    assert ContainerState.from_json(st.to_json()) == st
    assert repr(st).startswith("ContainerState(id='c1', bundle='/b'")
    bare = ContainerState("c1", "/b", "/r", 1, 2, "t", "1.0.2")
    assert (bare.owner, bare.annotations, bare.cgroup_paths, bare.config) == ("", {}, {}, {})
    assert bare.annotations is not ContainerState("c2", "/b", "/r", 1, 2, "t", "1").annotations


def test_create_options_are_read_only_and_compare_by_value() -> None:
    opts = container.CreateOptions(root="/r", pid_file="/p")
    assert opts == container.CreateOptions("/r", "/p") != container.CreateOptions()
    assert hash(opts) == hash(container.CreateOptions("/r", "/p"))
    assert container.CreateOptions().root == container.DEFAULT_ROOT
    assert (opts.new_keyring, opts.preserve_fds, opts.cgroup_root) == (True, 0, "/sys/fs/cgroup")
    with pytest.raises(AttributeError):
        opts.root = "/x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del opts.root  # type: ignore[misc]
    assert "pid_file='/p'" in repr(opts)
