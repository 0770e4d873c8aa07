"""Container create through the host seam, without root: the recording fake host and cgroup
manager (testkit.fakehost) stand in for the kernel, the C spawn is faked at ``_sys.spawn``.
The order of what create makes, and that a failure in the middle undoes exactly that."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from corral_common import hostsys
from runtime import _sys, cgroups, container
from runtime.config import default_spec
from runtime.errors import ContainerError, SpawnError
from runtime.state import StateDir
from testkit.fakehost import RecordingCgroup, RecordingHost

CID = "c1"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[RecordingHost]:
    cg_root = tmp_path / "cgroup"
    cg_root.mkdir()
    fake = RecordingHost(fs_types={str(cg_root): hostsys.CGROUP2_SUPER_MAGIC})
    with hostsys.using(fake):
        yield fake


@pytest.fixture
def cgroup(host: RecordingHost, monkeypatch: pytest.MonkeyPatch) -> RecordingCgroup:
    cg = RecordingCgroup(host, "/fake/cgroup/c1")

    def manager_for(path: str | None, cid: str, **_: Any) -> RecordingCgroup:
        assert cid == CID
        return cg

    monkeypatch.setattr(cgroups, "manager_for", manager_for)
    return cg


Spawn = Callable[..., int]


@pytest.fixture
def spawned(host: RecordingHost, monkeypatch: pytest.MonkeyPatch) -> list[Spawn]:
    """Fake the C spawn: place the process, commit it, return its pid (this test process,
    whose start time /proc knows). A test appends a replacement to change what it does."""
    replacement: list[Spawn] = []

    def spawn(plan: Any, *, start: Any, place: Any, commit: Any = None, **_: Any) -> int:
        host.calls.append(("spawn", plan.rootfs))
        if replacement:
            return replacement[0](plan, place=place, commit=commit)
        pid = os.getpid()
        place(pid)
        if commit is not None:
            commit(pid)
        return pid

    monkeypatch.setattr(_sys, "spawn", spawn)
    return replacement


@pytest.fixture
def opts(tmp_path: Path) -> container.CreateOptions:
    return container.CreateOptions(
        root=str(tmp_path / "state"),
        pid_file=str(tmp_path / "pidfile"),
        cgroup_root=str(tmp_path / "cgroup"),
        new_keyring=False,
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    spec = default_spec()
    spec["process"]["terminal"] = False
    (b / "config.json").write_text(json.dumps(spec))
    return b


def _made(opts: container.CreateOptions) -> list[str]:
    """What create left on disk: the state directory's files and the pid file."""
    sd = Path(opts.root) / CID
    left = sorted(p.name for p in sd.iterdir()) if sd.exists() else []
    assert opts.pid_file is not None
    return left + (["pidfile"] if os.path.exists(opts.pid_file) else [])


def test_create_records_makes_spawns_then_commits(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
) -> None:
    st = container.create(CID, str(bundle), opts)
    sd = os.path.join(opts.root, CID)
    assert host.calls == [
        ("write", f"{sd}/creating.json"),  # recorded before anything is made
        ("cgroup create", cgroup.path),
        ("cgroup apply", cgroup.path),
        ("spawn", str(bundle / "rootfs")),
        ("cgroup add_pid", cgroup.path),
        ("write", f"{sd}/state.json"),  # the commit point
        ("write", opts.pid_file),
    ]
    assert st.pid == os.getpid()
    assert json.loads(Path(sd, "state.json").read_text())["cgroup_paths"] == {"": cgroup.path}
    assert Path(str(opts.pid_file)).read_text() == str(os.getpid())
    assert cgroup.made and _made(opts) == ["creating.json", "exec.fifo", "state.json", "pidfile"]


def test_create_fsyncs_nothing(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing a create writes outlives a crash of the machine in any use: state.json and the
    # creating record describe processes and cgroups that die with it (a state emptied by
    # one reads as none: tests/unit/test_state.py), the pid file is for the caller, now (as
    # runc's). Every one is still written atomically (temp file, rename).
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    container.create(CID, str(bundle), opts)
    assert synced == []
    assert json.loads(Path(opts.root, CID, "state.json").read_text())["id"] == CID


def test_a_failing_cgroup_apply_undoes_the_cgroup_and_the_state(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
) -> None:
    host.fail("cgroup apply", err=errno.EINVAL)
    with pytest.raises(hostsys.HostError) as info:
        container.create(CID, str(bundle), opts)
    assert info.value.step == f"cgroup apply {cgroup.path}"
    assert host.calls[1:] == [
        ("cgroup create", cgroup.path),
        ("cgroup apply failed", cgroup.path),
        ("cgroup kill_all", cgroup.path),
        ("cgroup destroy", cgroup.path),
    ]  # and nothing spawned
    assert not cgroup.made and not Path(opts.root, CID).exists() and _made(opts) == []


def test_a_failing_commit_leaves_no_state_and_no_pid_file(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
) -> None:
    host.fail("write", "state.json", errno.ENOSPC)
    with pytest.raises(hostsys.HostError) as info:
        container.create(CID, str(bundle), opts)
    assert info.value.errno == errno.ENOSPC
    sd = os.path.join(opts.root, CID)
    assert host.calls[3:] == [
        ("spawn", str(bundle / "rootfs")),
        ("cgroup add_pid", cgroup.path),
        ("write failed", f"{sd}/state.json"),
        ("cgroup kill_all", cgroup.path),
        ("cgroup destroy", cgroup.path),
    ]
    assert _made(opts) == []  # no pid file naming a process that is gone


def test_a_failing_spawn_undoes_in_reverse_order(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
) -> None:
    def fail_after_place(plan: Any, *, place: Any, commit: Any) -> int:
        place(4242)
        raise SpawnError("pivot_root(/x)", errno.EINVAL)

    spawned.append(fail_after_place)
    with pytest.raises(SpawnError, match=r"pivot_root\(/x\): Invalid argument"):
        container.create(CID, str(bundle), opts)
    made = [c for c in host.calls if c[0] in ("cgroup create", "cgroup add_pid")]
    undone = host.calls[host.calls.index(("cgroup add_pid", cgroup.path)) + 1 :]
    assert made == [("cgroup create", cgroup.path), ("cgroup add_pid", cgroup.path)]
    assert undone == [("cgroup kill_all", cgroup.path), ("cgroup destroy", cgroup.path)]
    assert not cgroup.made and _made(opts) == []


def test_a_half_made_container_is_reaped_by_the_next_create(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
) -> None:
    """A create killed after its record (here: the cgroup was made, then the process died)
    is undone by the next create of the same id, from the record alone."""
    sd = Path(opts.root, CID)
    sd.mkdir(parents=True)
    (sd / "creating.json").write_text(json.dumps({"cgroup_paths": cgroup.paths()}))
    cgroup.made = True
    reopened: list[dict[str, str]] = []

    def from_paths(paths: dict[str, str], **_: Any) -> RecordingCgroup:
        reopened.append(paths)
        return cgroup

    monkey = pytest.MonkeyPatch()
    monkey.setattr(cgroups, "manager_from_paths", from_paths)
    try:
        container.create(CID, str(bundle), opts)
    finally:
        monkey.undo()
    assert reopened == [{"": cgroup.path}]
    assert host.calls[:3] == [
        ("cgroup kill_all", cgroup.path),
        ("cgroup destroy", cgroup.path),
        ("write", f"{sd}/creating.json"),
    ]


def test_a_create_that_waited_leaves_what_the_other_create_committed(
    host: RecordingHost,
    cgroup: RecordingCgroup,
    spawned: list[Spawn],
    opts: container.CreateOptions,
    bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A half-made id whose create is still at work: the next create waits for its lock, and
    when that create has committed meanwhile, kills and removes nothing of it."""
    sd = Path(opts.root, CID)
    sd.mkdir(parents=True)
    (sd / "creating.json").write_text(json.dumps({"cgroup_paths": cgroup.paths()}))
    cgroup.made = True
    monkeypatch.setattr(cgroups, "manager_from_paths", lambda paths, **_: cgroup)
    locked = StateDir.locked

    @contextmanager
    def committed_while_waiting(self: StateDir) -> Iterator[None]:
        (sd / "state.json").write_text("{}")  # the other create commits, then unlocks
        with locked(self):
            yield

    monkeypatch.setattr(StateDir, "locked", committed_while_waiting)
    with pytest.raises(ContainerError, match="container with id exists"):
        container.create(CID, str(bundle), opts)
    assert host.calls == [] and cgroup.made
    assert sorted(p.name for p in sd.iterdir()) == ["creating.json", "state.json"]
