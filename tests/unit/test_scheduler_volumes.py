"""The scheduler's VolumeBinding: a pod's claims decide where it may go (its bound volumes'
node affinity, the node selected for a claim that waits for its first consumer), which claims
wait for a node, and why a pod cannot be placed at all (claim missing, unbound Immediate)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.scheduler.cache import Cache
from orchestrator.scheduler.plugins import R_VOLUME_AFFINITY, FitError, pod_info
from orchestrator.scheduler.scheduler import Scheduler


def _node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod(*claims: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {
            "containers": [{"name": "c", "image": "x"}],
            "volumes": [
                {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                for i, c in enumerate(claims)
            ],
        },
    }


def _claim(name: str, cls: str, volume: str = "", **ann: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": ann},
        "spec": {"storageClassName": cls, **({"volumeName": volume} if volume else {})},
        "status": {"phase": "Bound" if volume else "Pending"},
    }


def _affinity(node: str) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                  "values": [node]}]}  # fmt: skip
    return {"required": {"nodeSelectorTerms": [term]}}


def _scheduler() -> Scheduler:
    sched = Scheduler(None)  # type: ignore[arg-type]  # no API: the informers are filled here
    sched.classes._put({"metadata": {"name": "wffc"}, "volumeBindingMode": "WaitForFirstConsumer"})
    sched.classes._put({"metadata": {"name": "now"}, "volumeBindingMode": "Immediate"})
    sched.volumes._put({"metadata": {"name": "pv-n2"}, "spec": {"nodeAffinity": _affinity("n2")}})
    sched.volumes._put({"metadata": {"name": "pv-any"}, "spec": {}})
    return sched


def test_volume_binding_verdicts() -> None:
    async def body() -> None:
        s = _scheduler()
        assert s._volume_binding(_pod("missing"))[3] == 'persistentvolumeclaim "missing" not found'
        s.claims._put(_claim("imm", "now"))
        assert s._volume_binding(_pod("imm"))[3] == (
            "pod has unbound immediate PersistentVolumeClaims"
        )
        s.claims._put(_claim("bound", "now", "pv-n2"))
        s.claims._put(_claim("free", "now", "pv-any"))
        terms, select, waiting, problem = s._volume_binding(_pod("bound", "free"))
        assert (problem, select, waiting) == ("", [], False)
        assert terms == (tuple(_affinity("n2")["required"]["nodeSelectorTerms"]),)
        s.claims._put(_claim("first", "wffc"))
        terms, select, waiting, problem = s._volume_binding(_pod("first"))
        assert [c["metadata"]["name"] for c in select] == ["first"] and not waiting
        s.claims._put(_claim("chosen", "wffc", **{"volume.kubernetes.io/selected-node": "n1"}))
        terms, select, waiting, problem = s._volume_binding(_pod("chosen"))
        assert waiting and select == []
        assert terms[0][0]["matchFields"][0]["values"] == ["n1"]

    asyncio.run(body())


def test_volume_affinity_filters_nodes() -> None:
    cache = Cache()
    for n in ("n1", "n2", "n3"):
        cache.set_node(_node(n))
    p = pod_info(_pod("bound"))
    p.volume_terms = (tuple(_affinity("n2")["required"]["nodeSelectorTerms"]),)
    assert cache.schedule(p).node == "n2"
    p = pod_info(_pod("bound"))
    p.volume_terms = (tuple(_affinity("elsewhere")["required"]["nodeSelectorTerms"]),)
    try:
        cache.schedule(p)
    except FitError as e:
        assert str(e) == f"0/3 nodes are available: 3 {R_VOLUME_AFFINITY}."
    else:
        raise AssertionError("scheduled against its volume's node affinity")


def test_static_local_volumes_decide_the_node() -> None:
    """A claim of a class without a provisioner (local volumes made by hand), waiting for its
    first consumer: only nodes where a volume it could take is usable fit."""

    async def body() -> None:
        s = _scheduler()
        s.classes._put(
            {
                "metadata": {"name": "local"},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        )
        claim = _claim("c", "local")
        claim["spec"].update(
            accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "1Gi"}}
        )
        s.claims._put(claim)

        def local(name: str, node: str, size: str) -> dict[str, Any]:
            return {
                "metadata": {"name": name},
                "spec": {
                    "storageClassName": "local",
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": size},
                    "local": {"path": "/mnt/disk"},
                    "nodeAffinity": _affinity(node),
                },
            }

        s.volumes._put(local("small-on-n1", "n1", "100Mi"))
        s.volumes._put(local("on-n3", "n3", "5Gi"))
        _, select, _, problem = s._volume_binding(_pod("c"))
        assert problem == "" and len(select) == 1
        p = pod_info(_pod("c"))
        p.unbound_terms = s._static_candidates(select)
        cache = Cache()
        for n in ("n1", "n2", "n3"):
            cache.set_node(_node(n))
        assert cache.schedule(p).node == "n3"  # the one node with a volume big enough
        s.volumes._drop("on-n3")
        p = pod_info(_pod("c"))
        p.unbound_terms = s._static_candidates(select)
        try:
            cache.schedule(p)
        except FitError as e:
            assert str(e) == (
                "0/3 nodes are available: 3 node(s) didn't find available persistent volumes"
                " to bind."
            )
        else:
            raise AssertionError("scheduled with no volume to bind")

    asyncio.run(body())
