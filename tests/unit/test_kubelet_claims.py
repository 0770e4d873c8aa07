"""The kubelet's persistentVolumeClaim volumes: claim -> volume -> hostPath (read-only mounts
where the claim source says so), the FailedMount reasons, the local-path directory made 0777,
and the sweep of the directories no volume names."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from orchestrator.client.rest import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES
from orchestrator.controllers.fake import FakeClient
from orchestrator.kubelet.claims import (
    CLAIM_RETRY,
    ClaimError,
    LocalPathSweeper,
    claim_volumes,
    read_only_claims,
    with_claims,
    with_read_only,
)
from orchestrator.kubelet.pods import make_failure
from orchestrator.kubelet.volumes import VolumeError


def _pod(read_only: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "c1",
                                                          "readOnly": read_only}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }  # fmt: skip


def _bound(client: FakeClient, root: Path, provisioned: bool = True) -> Path:
    client.add(
        PERSISTENTVOLUMECLAIMS,
        {
            "metadata": {"name": "c1", "namespace": "default"},
            "spec": {"volumeName": "pvc-1"},
            "status": {"phase": "Bound"},
        },
    )
    ann = {"pv.kubernetes.io/provisioned-by": "corral.io/local-path"} if provisioned else {}
    path = root / "pvc-1"
    client.add(
        PERSISTENTVOLUMES,
        {
            "metadata": {"name": "pvc-1", "annotations": ann},
            "spec": {"hostPath": {"path": str(path), "type": "DirectoryOrCreate"}},
        },
    )
    return path


def test_claim_resolved_to_host_path(tmp_path: Path) -> None:
    client = FakeClient()
    path = _bound(client, tmp_path)
    claims = asyncio.run(claim_volumes(client, _pod(), tmp_path))
    assert claims == {
        "data": {"name": "data", "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o777  # made for its first pod
    spec = with_claims(_pod()["spec"], claims)
    assert spec["volumes"][0] == claims["data"] and spec["volumes"][1]["emptyDir"] == {}
    assert "readOnly" not in spec["containers"][0]["volumeMounts"][0]
    spec = _pod(read_only=True)["spec"]
    spec["ephemeralContainers"] = [{"name": "d", "image": "i", "volumeMounts": [
        {"name": "data", "mountPath": "/d"}]}]  # fmt: skip
    ro = with_claims(spec, claims)
    assert ro["containers"][0]["volumeMounts"] == [
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert ro["ephemeralContainers"][0]["volumeMounts"][0]["readOnly"] is True
    assert read_only_claims(spec) == {"data"}
    assert with_read_only(spec["ephemeralContainers"][0], {"data"})["volumeMounts"] == [
        {"name": "data", "mountPath": "/d", "readOnly": True}
    ]


def test_static_volume_not_made(tmp_path: Path) -> None:
    client = FakeClient()
    path = _bound(client, tmp_path, provisioned=False)
    asyncio.run(claim_volumes(client, _pod(), tmp_path))
    assert not path.exists()  # an admin's hostPath volume: the runtime's DirectoryOrCreate


def test_claim_missing_or_unbound(tmp_path: Path) -> None:
    """kube's kubelet words (its volume manager reports the populator's error at once, and
    the pod's sync is tried again after its backOffPeriod, not after a growing delay)."""
    client = FakeClient()
    with pytest.raises(ClaimError) as e:
        asyncio.run(claim_volumes(client, _pod(), tmp_path))
    assert str(e.value) == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[],"
        " failed to process volumes=[data]: error processing PVC default/c1: failed to fetch"
        ' PVC from API server: persistentvolumeclaims "c1" not found'
    )
    client.add(PERSISTENTVOLUMECLAIMS, {"metadata": {"name": "c1", "namespace": "default"},
                                        "spec": {}, "status": {"phase": "Pending"}})  # fmt: skip
    with pytest.raises(ClaimError) as e:
        asyncio.run(claim_volumes(client, _pod(), tmp_path))
    assert str(e.value) == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[],"
        " failed to process volumes=[data]: error processing PVC default/c1: PVC default/c1 has"
        ' non-bound phase ("Pending") or empty pvc.Spec.VolumeName ("")'
    )
    assert isinstance(e.value, VolumeError) and CLAIM_RETRY == 10.0


def test_a_pod_waiting_for_its_claim_is_tried_again_every_10_seconds() -> None:
    """Not after a delay growing with its failures, as other failures are (a claim bound
    late would leave its pod waiting up to 2 minutes)."""
    claim = ClaimError({"data": "error processing PVC default/c1: ..."})
    for failures in (0, 3, 10):
        assert make_failure(claim, failures) == ("FailedMount", "ContainerCreating", 10.0)
    volume = VolumeError("cfg", 'configmap "x" not found')
    assert make_failure(volume, 0) == ("FailedMount", "ContainerCreating", 2.0)
    assert make_failure(volume, 3) == ("FailedMount", "ContainerCreating", 16.0)
    assert make_failure(volume, 10) == ("FailedMount", "ContainerCreating", 120.0)


def test_sweep_removes_the_directories_of_volumes_gone(tmp_path: Path) -> None:
    client = FakeClient()
    _bound(client, tmp_path)
    client.add(PERSISTENTVOLUMES, {"metadata": {"name": "pvc-gone"}, "spec": {}})
    for name in ("pvc-1", "pvc-gone", "pvc-unknown"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "f").write_text("x")

    async def body() -> list[list[str]]:
        sweeper = LocalPathSweeper(client, tmp_path)
        out = [sweeper.sweep()]  # not listed yet: nothing is removed
        await sweeper.informer.relist()
        out.append(sweeper.sweep())  # every volume is there
        await client.delete(PERSISTENTVOLUMES, None, "pvc-gone")
        await sweeper.informer.relist()
        out.append(sweeper.sweep())
        return out

    # a directory whose volume this agent never saw is left alone
    assert asyncio.run(body()) == [[], [], ["pvc-gone"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pvc-1", "pvc-unknown"]
