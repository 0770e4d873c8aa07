"""The kubelet's volume sources of a pod on the real kernel: dropping them unmounts the secret
tmpfs and reads the host's mount table once (it grows with the node's pods), and never
deletes through a mount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_common import hostsys
from orchestrator.kubelet import volumes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    b = tmp_path / "sources" / "pod-uid"
    b.mkdir(parents=True)
    yield b
    for mp in hostsys.mounts_under(tmp_path):  # whatever a failing test left
        hostsys.umount(mp)


def test_dropping_a_pods_sources_unmounts_its_secret_tmpfs_with_one_read(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = volumes._secret_tmpfs(base)
    volumes._secret_tmpfs(base)  # made once: found mounted the second time
    (secret / "token").write_text("t\n")
    (base / "configmap").mkdir()
    assert hostsys.mounts_under(base) == [str(secret)]
    reads: list[int] = []
    real = hostsys.mountinfo

    def counted(pid: int | str = "self", contains: str | None = None) -> list[hostsys.MountInfo]:
        reads.append(1)
        return real(pid, contains)

    monkeypatch.setattr(hostsys.RealHost, "mountinfo", staticmethod(counted))
    volumes.drop_sources(base)
    assert len(reads) == 1
    assert not base.exists() and hostsys.mounts_under(base.parent) == []


def test_a_mount_the_kubelet_did_not_make_is_unmounted_before_the_delete(base: Path) -> None:
    other = base / "configmap" / "bound"
    other.mkdir(parents=True)
    hostsys.mount("tmpfs", other, "tmpfs", 0, "size=1m")
    volumes._secret_tmpfs(base)
    volumes.drop_sources(base)
    assert not base.exists() and hostsys.mounts_under(base.parent) == []


def test_a_sync_that_only_compares_makes_and_mounts_nothing(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare_volumes(write=False)`` (every sync of a running pod) answers what a write
    answers, from no directory, mount or mount-table read."""
    secrets = {"s": {"data": {"k": "dg=="}}, "c": {"data": {"a": "b"}}}

    def lookup(kind: str, ns: str, name: str) -> dict | None:
        return secrets.get(name)

    pod = {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {
            "volumes": [
                {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "cm", "configMap": {"name": "c"}},
            ]
        },
    }
    fresh = base / "fresh"
    calls: list[str] = []
    for name in ("mount", "ismount"):
        real = getattr(hostsys if name == "mount" else os.path, name)
        monkeypatch.setattr(
            hostsys if name == "mount" else os.path,
            name,
            lambda *a, _r=real, _n=name, **k: (calls.append(_n), _r(*a, **k))[1],
        )
    looked = volumes.prepare_volumes(lookup, pod, fresh, write=False)
    assert calls == [] and not fresh.exists()
    made = volumes.prepare_volumes(lookup, pod, fresh, write=True)
    assert calls and hostsys.mounts_under(fresh) == [str(fresh / "secret")]
    assert looked == made
    volumes.drop_sources(fresh)
