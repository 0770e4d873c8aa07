"""Pod prepare and teardown through the host seam, without root: mounts go to the recording
fake host's table, the pod cgroup is a recording fake manager, images and files are real
(a store in a temporary directory). What prepare makes, in order; what teardown undoes, in
order; and that a step failing in the middle leaves, after teardown, nothing it made."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral_common import hostsys
from images.store import Store
from runtime import cgroups
from runtime.pod.manifest import parse_pod
from runtime.pod.prepare import PodOptions, PrepareError, prepare, teardown
from runtime.pod.record import PodRecord
from runtime.pod.store import PodDir, PodStore
from testkit.fakehost import RecordingCgroup, RecordingHost
from testkit.imagebuild import Entry, docker_files, tar_entries, write_tar

IMAGE = "example.com/app:1"
MOUNTS = ("mount", "bind", "overlay", "umount", "cgroup create", "cgroup destroy")


@dataclass
class Env:
    host: RecordingHost
    cgroups: dict[str, RecordingCgroup]
    opts: PodOptions
    store: Store
    hostdir: Path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    fake = RecordingHost()
    made: dict[str, RecordingCgroup] = {}

    def manager_for(path: str, name: str, **_: Any) -> RecordingCgroup:
        return made.setdefault(path, RecordingCgroup(fake, path))

    def manager_from_paths(paths: dict[str, str], **_: Any) -> RecordingCgroup:
        return made[paths[""]]

    monkeypatch.setattr(cgroups, "manager_for", manager_for)
    monkeypatch.setattr(cgroups, "manager_from_paths", manager_from_paths)
    store = Store(tmp_path / "images")
    layer = tar_entries([Entry("bin", "dir"), Entry("bin/sh", data=b"#!fake\n", mode=0o755)])
    files, _ = docker_files([layer], repo_tags=[IMAGE])
    store.import_path(write_tar(tmp_path / "image.tar", files))
    opts = PodOptions(root=str(tmp_path / "pods"), image_root=str(store.root), network=False)
    with hostsys.using(fake):
        yield Env(fake, made, opts, store, tmp_path / "host")


def _pod(env: Env, host_type: str = "DirectoryOrCreate") -> Any:
    return parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": name, "image": IMAGE, "volumeMounts": [{"name": v, "mountPath": "/v"}]}
                    for name, v in (("c1", "mem"), ("c2", "host"))
                ],
                "volumes": [
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    {
                        "name": "host",
                        "hostPath": {"path": str(env.hostdir), "type": host_type},
                    },
                ],
            },
        }
    )


def _prepare(env: Env, host_type: str = "DirectoryOrCreate") -> PodDir:
    pd = PodStore(env.opts.root).create("pod1")
    record = PodRecord(
        uid=pd.uid, name="p", namespace="default", created=0.0, options=env.opts.to_json()
    )
    pd.write_record(record)
    # as runtime.pod.lifecycle.create does: prepare writes the record as it makes things
    pd.write_record(prepare(pd, _pod(env, host_type), env.opts, record))
    return pd


def _expected_made(pd: PodDir, cg: str, upto: int = 5) -> list[tuple[str, str]]:
    p = pd.path
    return [
        ("cgroup create", cg),
        ("mount", f"{p}/shm"),
        ("mount", f"{p}/volumes/mem"),
        ("bind", f"{p}/volumes/host"),
        ("overlay", f"{p}/containers/c1/rootfs"),
        ("overlay", f"{p}/containers/c2/rootfs"),
    ][: upto + 1]


def test_prepare_makes_in_order_and_teardown_undoes_everything(env: Env) -> None:
    pd = _prepare(env)
    (cg,) = env.cgroups
    assert env.host.ops(*MOUNTS) == _expected_made(pd, cg)
    img = env.store.get(IMAGE)
    assert env.store.users(img) == [pd.uid]
    assert len(env.host.mounted()) == 5

    env.host.calls.clear()
    teardown(pd)
    p = pd.path
    assert env.host.ops(*MOUNTS) == [
        ("cgroup destroy", cg),
        # deepest first, then (at one depth) the longer path first
        ("umount", f"{p}/containers/c2/rootfs"),
        ("umount", f"{p}/containers/c1/rootfs"),
        ("umount", f"{p}/volumes/host"),
        ("umount", f"{p}/volumes/mem"),
        ("umount", f"{p}/shm"),
    ]
    assert env.host.mounted() == []
    assert env.store.users(img) == []
    for gone in ("shm", "volumes", "containers/c1/rootfs", "containers/c2/overlay"):
        assert not (p / gone).exists(), gone
    assert (p / "pod.json").exists()  # the record stays (logs, status too)
    assert env.hostdir.is_dir()  # a hostPath is the host's: never removed

    env.host.calls.clear()
    teardown(pd)  # idempotent: nothing left to undo
    assert env.host.ops(*MOUNTS) == []


def test_an_untyped_host_path_is_mounted_from_what_was_opened(env: Env) -> None:
    """Without a type there is no check, but the path is opened once (never through a magic
    link) and that fd is what is bound on the pod's volume, as for a typed one: a symlink
    swapped after the look cannot change what the containers get."""
    env.hostdir.mkdir()
    pd = _prepare(env, "")
    (cg,) = env.cgroups
    assert env.host.ops(*MOUNTS) == _expected_made(pd, cg)
    (bound,) = [m for m in env.host.table if m.mountpoint == f"{pd.path}/volumes/host"]
    assert bound.source == str(env.hostdir)  # the fd's path: what was opened


@pytest.mark.parametrize(
    ("op", "where", "step", "made"),
    [
        ("mount", "volumes/mem", "volume mem: mount tmpfs on", 1),
        ("bind", "volumes/host", "volume host: bind mount on", 2),
        ("overlay", "c2/rootfs", "mount rootfs(", 4),
    ],
)
def test_a_step_failing_in_the_middle_is_undone_exactly(
    env: Env, op: str, where: str, step: str, made: int
) -> None:
    env.host.fail(op, where, errno.ENOSPC)
    with pytest.raises(PrepareError) as info:
        _prepare(env)
    assert step in str(info.value) and "No space left on device" in str(info.value)
    pd = PodStore(env.opts.root).get("pod1")
    (cg,) = env.cgroups
    assert env.host.ops(*MOUNTS[:4], "cgroup create") == _expected_made(pd, cg, made)

    env.host.calls.clear()
    teardown(pd)
    made_mounts = [t for o, t in _expected_made(pd, cg, made) if o != "cgroup create"]
    undone = [t for o, t in env.host.ops("umount")]
    assert sorted(undone) == sorted(made_mounts)  # exactly what was made, nothing else
    assert env.host.ops("cgroup destroy") == [("cgroup destroy", cg)]
    assert env.host.mounted() == []
    assert env.store.users(env.store.get(IMAGE)) == []


def test_a_failing_umount_does_not_stop_teardown(env: Env) -> None:
    pd = _prepare(env)
    env.host.fail("umount", "volumes/mem", errno.EPERM)
    with pytest.raises(Exception, match=r"umount .*volumes/mem: Operation not permitted"):
        teardown(pd)
    assert env.host.ops("cgroup destroy")  # the steps after it ran all the same
    assert env.store.users(env.store.get(IMAGE)) == []
    assert env.host.mounted() == [f"{pd.path}/volumes/mem"]  # the one that failed stays,
    assert (pd.path / "volumes" / "mem").is_dir()  # and so does what it covers
    teardown(pd)  # a later teardown finishes the job
    assert env.host.mounted() == []


def test_removing_a_pod_reads_the_mounts_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """PodDir.remove after a teardown: one read of the mount table (it grows with the node's
    pods) proves nothing is left below. (That what is left is unmounted before the directory
    goes: tests/integration/test_pod_subpath.py, on real mounts, which follow the rename.)"""
    reads: list[int] = []
    table = env.host.mountinfo

    def counted(pid: int | str = "self", contains: str | None = None) -> list[hostsys.MountInfo]:
        reads.append(1)
        return table(pid, contains)

    monkeypatch.setattr(env.host, "mountinfo", counted)
    pd = _prepare(env)
    teardown(pd)
    reads.clear()
    pd.remove()
    assert len(reads) == 1 and not pd.path.exists()


def test_prepare_writes_the_record_twice_and_the_cgroup_before_it_is_made(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pod.json is written once with the images and the cgroup (durable, before the image
    references and the cgroup are made) and once with the volumes: not once per step."""
    written: list[tuple[PodRecord, bool, int]] = []
    real = PodDir.write_record

    def counted(self: PodDir, record: PodRecord, durable: bool = True) -> None:
        made = len(env.host.ops("cgroup create"))
        written.append((record, durable, made))
        real(self, record, durable)

    monkeypatch.setattr(PodDir, "write_record", counted)
    pd = PodStore(env.opts.root).create("pod1")
    record = PodRecord(
        uid=pd.uid, name="p", namespace="default", created=0.0, options=env.opts.to_json()
    )
    prepare(pd, _pod(env), env.opts, record)
    assert len(written) == 2
    first, durable, made = written[0]
    assert durable and made == 0 and first.images and first.cgroup is not None
    assert env.store.users(env.store.get(IMAGE)) == [pd.uid]
    assert written[1][0].volumes and written[1][0].cgroup == first.cgroup
    teardown(pd)
