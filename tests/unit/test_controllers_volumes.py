"""The persistent volume controllers over the fake client: binding (matching rules, pre-bound
volumes, WaitForFirstConsumer), provisioning by the local-path provisioner, Released and
Delete, and the protection finalizers; and find_volume's matching rules."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.client.rest import (
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
)
from orchestrator.client.volumes import (
    LOCAL_PATH_ROOT_ANNOTATION,
    SELECTED_NODE,
    STORAGE_PROVISIONER,
    claim_names,
    find_volume,
    quantity_bytes,
    volume_fits_node,
)
from orchestrator.controllers.base import InformerFactory
from orchestrator.controllers.fake import FakeClient
from orchestrator.controllers.volumes import LocalPathProvisioner, PersistentVolumeController


def claim(name: str = "data", size: str = "1Gi", cls: str = "", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": cls,
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def volume(name: str, size: str = "1Gi", cls: str = "", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": size},
            "hostPath": {"path": f"/data/{name}"},
            "storageClassName": cls,
            "persistentVolumeReclaimPolicy": "Retain",
            **spec,
        },
        "status": {"phase": "Available"},
    }


LOCAL_PATH = {
    "metadata": {"name": "local-path"},
    "provisioner": "corral.io/local-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer",
}


def on_node(node: str) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                  "values": [node]}]}  # fmt: skip
    return {"required": {"nodeSelectorTerms": [term]}}


def test_find_volume_rules() -> None:
    c = claim(size="2Gi", selector={"matchLabels": {"tier": "fast"}})
    fits = volume("fits", "3Gi", labels=None)
    fits["metadata"]["labels"] = {"tier": "fast"}
    bigger = volume("bigger", "10Gi")
    bigger["metadata"]["labels"] = {"tier": "fast"}
    small = volume("small", "1Gi")
    small["metadata"]["labels"] = {"tier": "fast"}
    unlabelled = volume("unlabelled", "2Gi")
    rwx = volume("rwx", "2Gi", accessModes=["ReadWriteMany"])
    rwx["metadata"]["labels"] = {"tier": "fast"}
    other_class = volume("other", "2Gi", cls="gold")
    other_class["metadata"]["labels"] = {"tier": "fast"}
    taken = volume("taken", "2Gi", claimRef={"namespace": "default", "name": "x", "uid": "u"})
    taken["metadata"]["labels"] = {"tier": "fast"}
    pool = [bigger, small, unlabelled, rwx, other_class, taken, fits]
    for v in pool:
        v["spec"].pop("labels", None)
    assert find_volume(c, pool) is fits  # the smallest that fits every rule
    assert find_volume(c, [bigger, small]) is bigger
    assert find_volume(c, [small, unlabelled, rwx, other_class, taken]) is None
    # pre-bound to the claim: taken whatever its size or class
    pre = volume("pre", "1Mi", cls="x", claimRef={"namespace": "default", "name": "data"})
    assert find_volume(c, [fits, pre]) is pre
    # a node given: only volumes usable there
    pinned = volume("pinned", "3Gi", nodeAffinity=on_node("n2"))
    assert find_volume(claim(), [pinned], ("n1", {"kubernetes.io/hostname": "n1"})) is None
    assert find_volume(claim(), [pinned], ("n2", {"kubernetes.io/hostname": "n2"})) is pinned
    assert volume_fits_node(volume("free"), "any", {})


def test_helpers() -> None:
    assert quantity_bytes("1Gi") == 2**30 and quantity_bytes("500M") == 5e8
    assert quantity_bytes("1Gi") > quantity_bytes("1000Mi")
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "c1"}},
                {"name": "b", "emptyDir": {}},
                {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
            ]
        },
    }
    assert claim_names(pod) == ["c1", "p-e"]


async def _setup(client: FakeClient) -> tuple[PersistentVolumeController, InformerFactory]:
    factory = InformerFactory(client)  # type: ignore[arg-type]
    ctrl = PersistentVolumeController(client, factory)  # type: ignore[arg-type]
    await factory.relist()
    return ctrl, factory


def test_binds_a_claim_to_the_smallest_matching_volume() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(PERSISTENTVOLUMECLAIMS, claim(size="2Gi"))
        client.add(PERSISTENTVOLUMES, volume("big", "5Gi"))
        client.add(PERSISTENTVOLUMES, volume("right", "2Gi"))
        client.add(PERSISTENTVOLUMES, volume("small", "1Gi"))
        ctrl, factory = await _setup(client)
        await ctrl.reconcile("claim:default/data")
        acts = [repr(a) for a in client.take()]
        # the volume first, then the claim (kube's order: a crash leaves a volume pointing
        # at its claim, which the next round completes)
        assert acts == [
            "update persistentvolumes right",
            "update_status persistentvolumes/status right",
            "update persistentvolumeclaims default/data",
            "update_status persistentvolumeclaims/status default/data",
        ]
        pv = client.stored(PERSISTENTVOLUMES, None, "right")
        assert pv is not None
        assert pv["spec"]["claimRef"]["uid"] == "uid-data"
        assert pv["status"]["phase"] == "Bound"
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "data")
        assert c is not None
        assert c["spec"]["volumeName"] == "right"
        assert c["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        assert c["status"] == {
            "phase": "Bound",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "2Gi"},
        }
        # level-triggered: once the caches see it, nothing more to do
        await factory.relist()
        await ctrl.reconcile("claim:default/data")
        await ctrl.reconcile("volume:right")
        assert client.take() == []

    asyncio.run(body())


def test_wait_for_first_consumer_then_provision_and_bind() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(STORAGECLASSES, LOCAL_PATH)
        client.add(PERSISTENTVOLUMECLAIMS, claim(cls="local-path"))
        node = {
            "metadata": {
                "name": "n1",
                "labels": {"kubernetes.io/hostname": "n1"},
                "annotations": {LOCAL_PATH_ROOT_ANNOTATION: "/var/lib/corral/storage"},
            }
        }
        client.add(NODES, node)
        ctrl, factory = await _setup(client)
        prov = LocalPathProvisioner(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("claim:default/data")
        await prov.reconcile("default/data")
        assert client.take() == []  # no consumer yet: nothing is made
        # the scheduler picked n1 for the claim's first pod
        client.mutate(PERSISTENTVOLUMECLAIMS, "default", "data",
                      metadata={"annotations": {SELECTED_NODE: "n1"}})  # fmt: skip
        await factory.relist()
        await ctrl.reconcile("claim:default/data")
        acts = client.take()
        assert [repr(a) for a in acts] == ["patch persistentvolumeclaims default/data"]
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "data")
        assert c is not None
        assert c["metadata"]["annotations"][STORAGE_PROVISIONER] == "corral.io/local-path"
        await factory.relist()
        await prov.reconcile("default/data")
        (create,) = client.take()
        assert repr(create) == "create persistentvolumes pvc-uid-data"
        pv = create.body
        assert pv["spec"]["hostPath"] == {
            "path": "/var/lib/corral/storage/pvc-uid-data",
            "type": "DirectoryOrCreate",
        }
        assert pv["spec"]["nodeAffinity"] == on_node("n1")
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["spec"]["claimRef"]["uid"] == "uid-data"
        assert pv["spec"]["capacity"] == {"storage": "1Gi"}
        await factory.relist()
        await prov.reconcile("default/data")
        assert client.take() == []  # made once
        await ctrl.reconcile("claim:default/data")
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "data")
        assert c is not None and c["status"]["phase"] == "Bound"
        assert c["spec"]["volumeName"] == "pvc-uid-data"

    asyncio.run(body())


def test_released_volume_deleted_or_retained() -> None:
    async def body() -> None:
        client = FakeClient()
        ref = {"namespace": "default", "name": "gone", "uid": "uid-gone"}
        client.add(PERSISTENTVOLUMES, volume("del", persistentVolumeReclaimPolicy="Delete",
                                             claimRef=ref))  # fmt: skip
        client.add(PERSISTENTVOLUMES, volume("keep", claimRef=ref))
        client.add(PERSISTENTVOLUMES, volume("pre", claimRef={"namespace": "default",
                                                              "name": "later"}))  # fmt: skip
        ctrl, _ = await _setup(client)
        await ctrl.reconcile("volume:del")
        await ctrl.reconcile("volume:keep")
        await ctrl.reconcile("volume:pre")
        acts = [repr(a) for a in client.take()]
        assert acts == [
            "update_status persistentvolumes/status del",
            "delete persistentvolumes del",
            "update_status persistentvolumes/status keep",
        ]
        keep = client.stored(PERSISTENTVOLUMES, None, "keep")
        assert keep is not None and keep["status"]["phase"] == "Released"

    asyncio.run(body())


def test_protection_finalizers() -> None:
    async def body() -> None:
        client = FakeClient()
        c = claim()
        c["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
        c["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        client.add(PERSISTENTVOLUMECLAIMS, c)
        pod = {
            "metadata": {"name": "user", "namespace": "default"},
            "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
            "status": {"phase": "Running"},
        }
        client.add(PODS, pod)
        pv = volume("pv1", claimRef={"namespace": "default", "name": "data", "uid": "uid-data"})
        pv["status"] = {"phase": "Bound"}
        pv["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
        pv["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        client.add(PERSISTENTVOLUMES, pv)
        ctrl, factory = await _setup(client)
        await ctrl.reconcile("claim:default/data")
        await ctrl.reconcile("volume:pv1")
        assert client.take() == []  # a running pod uses the claim; the volume is Bound to it
        client.mutate(PODS, "default", "user", status={"phase": "Succeeded"})
        await factory.relist()
        await ctrl.reconcile("claim:default/data")
        (patch,) = client.take()
        assert repr(patch) == "update persistentvolumeclaims default/data"
        assert "finalizers" not in patch.body["metadata"]
        assert client.stored(PERSISTENTVOLUMECLAIMS, "default", "data") is None
        await factory.relist()
        await ctrl.reconcile("volume:pv1")
        assert [repr(a) for a in client.take()] == ["update persistentvolumes pv1"]
        assert client.stored(PERSISTENTVOLUMES, None, "pv1") is None

    asyncio.run(body())


def test_statefulset_claims_made_before_their_pods_and_kept_or_owned() -> None:
    from orchestrator.client.rest import STATEFULSETS
    from orchestrator.controllers.statefulset import StatefulSetController

    template = {
        "metadata": {"name": "state", "labels": {"tier": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    sts = {
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{"name": "c", "image": "db"}],
                    "volumes": [{"name": "state", "emptyDir": {}}, {"name": "x", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [template],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                     "whenScaled": "Delete"},
        },
    }  # fmt: skip

    async def body() -> None:
        client = FakeClient()
        client.add(STATEFULSETS, sts)
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = StatefulSetController(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("default/db")
        made = [repr(a) for a in client.take("create") if "revision" not in a.resource]
        assert made == [
            "create persistentvolumeclaims default/state-db-0",
            "create pods default/db-0",
            "create persistentvolumeclaims default/state-db-1",
            "create pods default/db-1",
        ]
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "state-db-1")
        assert c is not None
        assert c["metadata"]["labels"] == {"tier": "db", "app": "db"}
        assert "ownerReferences" not in c["metadata"]  # whenDeleted Retain
        assert c["spec"] == template["spec"]
        p = client.stored(PODS, "default", "db-1")
        assert p is not None
        assert p["spec"]["volumes"] == [
            {"name": "x", "emptyDir": {}},
            {"name": "state", "persistentVolumeClaim": {"claimName": "state-db-1"}},
        ]
        await factory.relist()
        await ctrl.reconcile("default/db")
        assert client.take("create") == []  # the claims are there: made once
        client.mutate(STATEFULSETS, "default", "db", spec={"replicas": 1})
        await factory.relist()
        await ctrl.reconcile("default/db")
        acts = [repr(a) for a in client.take() if "statefulsets" not in a.resource]
        assert acts == [
            "patch persistentvolumeclaims default/state-db-1",
            "delete pods default/db-1",
        ]
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "state-db-1")
        assert c is not None
        assert [r["name"] for r in c["metadata"]["ownerReferences"]] == ["db-1"]  # whenScaled

    asyncio.run(body())


def test_statefulset_claims_owned_by_the_set_when_deleted_delete() -> None:
    from orchestrator.client.rest import STATEFULSETS
    from orchestrator.controllers.statefulset import StatefulSetController

    sts = {
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "c", "image": "db"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "s"}, "spec": {}}],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
        },
    }  # fmt: skip

    async def body() -> None:
        client = FakeClient()
        made = client.add(STATEFULSETS, sts)
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = StatefulSetController(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("default/db")
        c = client.stored(PERSISTENTVOLUMECLAIMS, "default", "s-db-0")
        assert c is not None
        (ref,) = c["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("StatefulSet", made["metadata"]["uid"])

    asyncio.run(body())
