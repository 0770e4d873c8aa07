"""``runtime.pod.status.StatusCache`` (what ``NodePods.list`` lists with, for the kubelet's
relist): a pod whose files did not change is not read again, every change is seen (also one
within the same tick of the kernel's clock as the read before), and a monitor that died is
seen at once. The monitor's writes are played by renames, as csrc/monitor/util.c makes them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime.pod import status as status_mod
from runtime.pod.status import RACY, StatusCache
from runtime.pod.store import PodDir, PodState, PodStore
from testkit.poddirs import monitor_writes, running_pod

UID = "0b5e0f6a-1111-2222-3333-444455556666"
OTHER = "0b5e0f6a-1111-2222-3333-777777777777"


def age(pd: PodDir, mtime: float | None = None) -> None:
    """The pod's directories last changed ``mtime`` (default: long enough ago to be sure)."""
    t = time.time() - 10 * RACY if mtime is None else mtime
    for d in (pd.path, pd.path / "status"):
        os.utime(d, (t, t))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The uids whose status is read (``status_of``) from now on."""
    out: list[str] = []
    real = status_mod.status_of

    def status_of(pd: PodDir) -> status_mod.PodStatus:
        out.append(pd.uid)
        return real(pd)

    monkeypatch.setattr(status_mod, "status_of", status_of)
    return out


@pytest.fixture
def pods(tmp_path: Path) -> list[PodDir]:
    made: list[PodDir] = []
    yield made
    for pd in made:
        pd.unlock()


def test_an_unchanged_pod_is_not_read_again(
    tmp_path: Path, reads: list[str], pods: list[PodDir]
) -> None:
    root = tmp_path / "pods"
    pods += [running_pod(root, UID, "web"), running_pod(root, OTHER, "db")]
    for pd in pods:
        age(pd)
    cache = StatusCache(PodStore(root))
    first = cache.list()
    assert [s.name for s in first] == ["web", "db"] and sorted(reads) == sorted([UID, OTHER])
    reads.clear()
    for _ in range(3):
        again = cache.list()
        assert again == first
        assert reads == []
    # what is listed is what a read says
    assert again == status_mod.list_statuses(PodStore(root))


def test_every_change_is_seen(tmp_path: Path, reads: list[str], pods: list[PodDir]) -> None:
    root = tmp_path / "pods"
    pods += [running_pod(root, UID, "web"), running_pod(root, OTHER, "db")]
    for pd in pods:
        age(pd)
    cache = StatusCache(PodStore(root))
    cache.list()
    reads.clear()
    web = pods[0]
    monitor_writes(web.path / "status" / "app", "state=running\nready=false\n")
    (st, _) = cache.list()
    assert not st.containers[0].ready and reads == [UID]
    monitor_writes(web.path / "pod.status", "phase=Failed\n")
    assert cache.list()[0].phase == "Failed"
    # a change within the clock's tick of the read before it: mtimes unchanged
    t = time.time() - RACY / 2
    age(web, t)
    assert cache.list()[0].phase == "Failed"
    monitor_writes(web.path / "pod.status", "phase=Succeeded\n")
    age(web, t)
    assert cache.list()[0].phase == "Succeeded"
    # the directory moved (the pod finished)
    age(web)
    cache.list()
    web.move(PodState.EXITED)
    assert {s.name: s.location for s in cache.list()} == {"web": "exited", "db": "run"}


def test_a_monitor_that_died_is_seen_at_once(
    tmp_path: Path, reads: list[str], pods: list[PodDir]
) -> None:
    root = tmp_path / "pods"
    pods.append(running_pod(root, UID, "web"))
    age(pods[0])
    cache = StatusCache(PodStore(root))
    assert cache.list()[0].phase == "Running"
    pods[0].unlock()  # the monitor's lock is free: it died
    (st,) = cache.list()
    assert (st.phase, st.reason) == ("Unknown", "MonitorLost")
    assert st.containers[0].reason == "ContainerStatusUnknown"
    reads.clear()
    cache.list()
    assert reads == [UID]  # a lost monitor's pod is read every time (the kernel's word)


def test_a_finished_pods_running_container_is_looked_for_every_time(
    tmp_path: Path, reads: list[str], pods: list[PodDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exited pod whose status file still says running (its monitor died first): the
    kernel says whether the process still runs, at every listing."""
    root = tmp_path / "pods"
    pd = running_pod(root, UID, "web")
    pods.append(pd)
    monitor_writes(pd.path / "status" / "app", "state=running\npid=4321\n")
    pd.move(PodState.EXITED)
    age(pd)
    alive = {4321}
    monkeypatch.setattr(status_mod, "_in_pod_cgroup", lambda pid, uid: pid in alive)
    cache = StatusCache(PodStore(root))
    assert cache.list()[0].containers[0].state == "Running"
    alive.clear()
    cs = cache.list()[0].containers[0]
    assert (cs.state, cs.reason) == ("Terminated", "ContainerStatusUnknown")


def test_node_pods_lists_through_it(tmp_path: Path, reads: list[str], pods: list[PodDir]) -> None:
    from runtime.pod import api

    root = tmp_path / "pods"
    pods.append(running_pod(root, UID, "web"))
    age(pods[0])
    node = api.NodePods(api.PodOptions(root=str(root), cgroup_parent="corral-unit-nothing-here"))
    assert [s.uid for s in node.list()] == [UID]
    assert [s.uid for s in node.list()] == [UID]
    assert reads == [UID]
    # the node's memory alone reads no pod; with the pods, the running ones (none has a
    # cgroup here: no figure)
    assert node.memory_use(False).pods == {} and reads == [UID]
    assert node.memory_use().pods == {} and reads == [UID]


def test_a_pod_removed_while_listed_is_left_out(
    tmp_path: Path, pods: list[PodDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    root = tmp_path / "pods"
    pods += [running_pod(root, UID, "web"), running_pod(root, OTHER, "db")]
    for pd in pods:
        age(pd)
    store = PodStore(root)
    cache = StatusCache(store)
    assert len(cache.list()) == 2
    listed = store.list()
    shutil.rmtree(pods[0].path)  # removed after the listing, before its stamp and probe
    monkeypatch.setattr(store, "list", lambda: listed)
    assert [s.name for s in cache.list()] == ["db"]


def test_the_locks_are_probed_under_one_hold_of_the_gc_lock(
    tmp_path: Path, pods: list[PodDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pods"
    pods += [running_pod(root, UID, "web"), running_pod(root, OTHER, "db")]
    for pd in pods:
        age(pd)
    store = PodStore(root)
    cache = StatusCache(store)
    cache.list()
    holds = []
    real = PodStore.no_start_in_window

    def counted(self: PodStore):  # type: ignore[no-untyped-def]
        holds.append(1)
        return real(self)

    monkeypatch.setattr(PodStore, "no_start_in_window", counted)
    cache.list()
    assert holds == [1]
    # a start in its window (the gc lock held shared): no probe, as _monitor_lost
    with store.gc_lock(exclusive=False):
        pods[0].unlock()
        assert cache.list()[0].phase == "Running"
    (st, _) = cache.list()
    assert st.reason == "MonitorLost"
