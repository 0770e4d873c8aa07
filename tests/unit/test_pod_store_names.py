"""The pod name index (``<root>/names/<namespace>_<name>``): released by every removal
(``rm``, ``gc``, a failed create), and a stale entry never blocks a new pod of that name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.pod import api
from runtime.pod.manifest import parse_pod
from runtime.pod.prepare import PodOptions
from runtime.pod.record import PodRecord
from runtime.pod.store import AlreadyExists, PodState, PodStore


def entries(store: PodStore) -> list[str]:
    names = store.root / "names"
    return sorted(n for n in os.listdir(names) if n != ".lock") if names.is_dir() else []


def made(store: PodStore, uid: str, name: str, namespace: str = "default") -> None:
    """A pod directory with its record and its name claimed, as ``api.create`` makes them."""
    store.claim_name(namespace, name, uid)
    pd = store.create(uid)
    pd.write_record(PodRecord(uid=uid, name=name, namespace=namespace, created=1.0))
    pd.move(PodState.PREPARED)
    pd.unlock()


def opts(tmp_path: Path) -> PodOptions:
    # a cgroup parent nobody uses: gc's leaked-cgroup sweep finds nothing of anybody's
    return PodOptions(
        root=str(tmp_path / "pods"),
        image_root=str(tmp_path / "images"),
        cgroup_parent=f"corral-unit-{os.getpid()}-nothing-here",
        network=False,
    )


def test_remove_releases_the_name(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    made(store, "aaaa", "web")
    made(store, "bbbb", "db", "other")
    assert entries(store) == ["default_web", "other_db"]
    store.get("aaaa").remove()
    assert entries(store) == ["other_db"]
    made(store, "cccc", "web")  # the name is free again
    assert (store.root / "names" / "default_web").read_text() == "cccc\n"


def test_api_remove_and_gc_release_the_name(tmp_path: Path) -> None:
    o = opts(tmp_path)
    store = PodStore(o.root)
    made(store, "aaaa", "web")
    made(store, "bbbb", "db")
    assert api.remove("web", o) == "aaaa"
    assert entries(store) == ["default_db"]
    pd = store.get("bbbb")
    assert pd.try_lock()
    pd.move(PodState.EXITED)
    pd.unlock()
    res = api.gc(o)
    assert res.removed == ["bbbb"] and not res.errors
    assert entries(store) == []


def test_a_failed_create_releases_the_name(tmp_path: Path) -> None:
    o = opts(tmp_path)
    store = PodStore(o.root)
    raw = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "nosuch:1"}]},
    }
    with pytest.raises(api.PodError, match="nosuch:1"):
        api.create(parse_pod(raw), o, raw)
    assert entries(store) == []
    assert all(not os.listdir(store.root / s.value) for s in PodState)


def test_a_stale_entry_does_not_block_a_new_pod(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    store.ensure()
    (store.root / "names").mkdir(mode=0o700)
    # left by a pod removed by hand, or by a corral from before names were released
    (store.root / "names" / "default_web").write_text("0123abcd\n")
    made(store, "aaaa", "web")
    assert (store.root / "names" / "default_web").read_text() == "aaaa\n"
    with pytest.raises(AlreadyExists, match="aaaa"):
        made(store, "bbbb", "web")  # a live holder still blocks


# ----------------------------------------------------------------------------- find by name


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The uids whose pod.json is read from now on."""
    from runtime.pod import store as store_mod

    reads: list[str] = []
    real = store_mod.PodDir.record

    def record(self: store_mod.PodDir) -> PodRecord | None:
        reads.append(self.uid)
        return real(self)

    monkeypatch.setattr(store_mod.PodDir, "record", record)
    return reads


def test_a_name_is_found_through_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PodStore(tmp_path / "pods")
    for i in range(5):
        made(store, f"{i}" * 8, f"pod{i}")
    made(store, "dddd", "web", "other")
    reads = counting_reads(monkeypatch)
    assert store.find("default/pod3").uid == "3" * 8
    assert store.find("pod3").uid == "3" * 8
    assert store.find("other/web").uid == "dddd"
    assert set(reads) == {"3" * 8, "dddd"}  # the holders only, never every pod's record
    reads.clear()
    # what finds nothing (the kubelet asking for a pod not made yet, by uid or by name)
    # reads no record at all
    with pytest.raises(api.PodError, match="no such pod"):
        store.find("0b5e0f6a-1111-2222-3333-444455556666")
    with pytest.raises(api.PodError, match="no such pod"):
        store.find("default/nope")
    assert reads == []


def test_an_exited_pod_is_found_by_name_without_its_entry(tmp_path: Path) -> None:
    store = PodStore(tmp_path / "pods")
    made(store, "aaaa", "web")
    store.get("aaaa").move(PodState.EXITED)
    (store.root / "names" / "default_web").unlink()  # taken over, then released
    assert store.find("web").uid == "aaaa"
    made(store, "bbbb", "web")  # a live pod of the name wins over the exited one
    assert store.find("default/web").uid == "bbbb"
    assert store.find("web").uid == "bbbb"
    pd = store.get("bbbb")
    pd.move(PodState.EXITED)
    rec = pd.record()
    assert rec is not None
    pd.write_record(PodRecord(uid="bbbb", name="web", namespace="default", created=0.5))
    assert store.find("web").uid == "aaaa"  # both exited: the newest


def test_a_namespaced_name_lists_only_the_exited_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kubelet asks for namespace/name of every pod gone from the API: with many pods on
    # the node, listing the live ones for it was most of what such a lookup cost.
    store = PodStore(tmp_path / "pods")
    for i in range(5):
        made(store, f"{i}" * 8, f"pod{i}")
    made(store, "eeee", "old")
    store.get("eeee").move(PodState.EXITED)
    listed: list[str] = []
    real = os.listdir

    def listdir(path: str | os.PathLike[str]) -> list[str]:
        listed.append(os.path.basename(os.fspath(path)))
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(api.PodError, match="no such pod"):
        store.find("default/nope")
    assert store.find("default/pod2").uid == "2" * 8
    assert store.find("default/old").uid == "eeee"
    assert set(listed) <= {"exited", "garbage"}


def test_ensure_of_a_made_store_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ensure`` (asked by every create and start) makes no directory once the store is
    there, and makes a missing one again."""
    store = PodStore(tmp_path / "pods")
    store.ensure()
    made: list[str] = []
    real = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: (made.append(str(p)), real(p, *a, **k))[1])
    store.ensure()
    assert made == []
    os.rmdir(store.root / "garbage")
    store.ensure()
    assert str(store.root / "garbage") in made
    assert all((store.root / s.value).is_dir() for s in PodState)
