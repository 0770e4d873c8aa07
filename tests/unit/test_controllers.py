"""The controllers' logic: ``reconcile(key)`` over a fake client, comparing the recorded
actions (sample-controller's way); no server, no sleeps. The same controllers run against a
real ``corral server`` in tests/integration/test_controllers.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from orchestrator.client.rest import (
    CONFIGMAPS,
    CONTROLLERREVISIONS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    JOBS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
)
from orchestrator.controllers.base import Controller, InformerFactory, Metrics
from orchestrator.controllers.clusterdns import DNS_ADDRESS_ANNOTATION, ClusterDnsController
from orchestrator.controllers.cronjob import CronJobController, Schedule, ScheduleError
from orchestrator.controllers.daemonset import DaemonSetController, node_fits
from orchestrator.controllers.deployment import (
    DeploymentController,
    max_surge,
    max_unavailable,
)
from orchestrator.controllers.endpoints import EndpointsController, EndpointSliceController
from orchestrator.controllers.fake import FakeClient
from orchestrator.controllers.gc import GarbageCollector
from orchestrator.controllers.job import INDEX_ANNOTATION, JobController, format_indexes
from orchestrator.controllers.namespaced import NodeIpamController, ServiceAccountController
from orchestrator.controllers.nodelifecycle import NodeLifecycleController
from orchestrator.controllers.replicaset import (
    ReplicaSetController,
    ReplicationManager,
    rank_for_deletion,
)
from orchestrator.controllers.rootca import DESCRIPTION, RootCAPublisher
from orchestrator.controllers.servicelb import ServiceLBController
from orchestrator.controllers.statefulset import StatefulSetController

C = TypeVar("C", bound=Controller)
READY = {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def template(image: str = "nginx:1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


def rs_obj(name: str = "web", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(),
            **spec,
        },
    }


async def setup(cls: type[C], client: FakeClient) -> tuple[C, InformerFactory]:
    factory = InformerFactory(client)  # type: ignore[arg-type]
    ctrl = cls(client, factory)  # type: ignore[arg-type]
    await factory.relist()
    return ctrl, factory


def pod_names(client: FakeClient) -> list[str]:
    return [p["metadata"]["name"] for p in client.all(PODS)]


def mark_ready(client: FakeClient) -> None:
    """What a kubelet would report: every pod Running and Ready."""
    for p in client.all(PODS):
        client.mutate(PODS, "default", p["metadata"]["name"], status=READY)


# ------------------------------------------------------------------------------ ReplicaSet


def test_replicaset_scales_up_with_owned_generated_pods_and_status() -> None:
    async def body() -> None:
        client = FakeClient()
        rs = client.add(REPLICASETS, rs_obj())
        ctrl, factory = await setup(ReplicaSetController, client)
        await ctrl.reconcile("default/web")
        acts = client.take()
        creates = [a for a in acts if a.verb == "create"]
        assert len(creates) == 3
        for a in creates:
            m = a.body["metadata"]
            assert m["generateName"] == "web-"
            assert len(a.name) == len("web-") + 5
            assert m["labels"] == {"app": "web"}
            assert m["ownerReferences"] == [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web",
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        status = client.stored(REPLICASETS, "default", "web")["status"]  # type: ignore[index]
        assert status == {"replicas": 0, "observedGeneration": 1}  # the cache had no pods yet

    run(body)


def test_replicaset_expectations_stop_a_second_round_before_the_watch_catches_up() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(REPLICASETS, rs_obj())
        ctrl, factory = await setup(ReplicaSetController, client)
        await ctrl.reconcile("default/web")
        assert len(client.take("create")) == 3
        # The cache has not seen the pods: a second reconcile must not create again.
        await ctrl.reconcile("default/web")
        assert client.take("create") == []
        await factory.relist()  # the watch delivers the three pods
        assert ctrl.expectations.satisfied("default/web")
        await ctrl.reconcile("default/web")
        assert client.take("create") == []
        status = client.stored(REPLICASETS, "default", "web")["status"]  # type: ignore[index]
        assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 3
        mark_ready(client)
        await factory.relist()
        await ctrl.reconcile("default/web")
        status = client.stored(REPLICASETS, "default", "web")["status"]  # type: ignore[index]
        assert status["readyReplicas"] == 3 and status["availableReplicas"] == 3

    run(body)


def test_replicaset_scale_down_deletes_unready_and_unscheduled_first() -> None:
    async def body() -> None:
        client = FakeClient()
        rs = client.add(REPLICASETS, rs_obj(replicas=1))
        ref = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": rs["metadata"]["uid"],
            "controller": True,
        }

        def pod(name: str, node: str, ready: bool, created: str) -> None:
            status = READY if ready else {"phase": "Running"}
            spec = {"containers": [{"name": "c", "image": "i"}]}
            if node:
                spec["nodeName"] = node  # type: ignore[assignment]
            client.add(
                PODS,
                {
                    "metadata": {
                        "name": name,
                        "namespace": "default",
                        "labels": {"app": "web"},
                        "ownerReferences": [ref],
                        "creationTimestamp": created,
                    },
                    "spec": spec,
                    "status": status,
                },
            )

        pod("old-ready", "n1", True, "2024-01-01T00:00:00Z")
        pod("new-ready", "n1", True, "2024-01-02T00:00:00Z")
        pod("unready", "n1", False, "2024-01-01T00:00:00Z")
        pod("unscheduled", "", False, "2023-01-01T00:00:00Z")
        ctrl, factory = await setup(ReplicaSetController, client)
        await ctrl.reconcile("default/web")
        deleted = [a.name for a in client.take("delete")]
        assert deleted == ["unscheduled", "unready", "new-ready"]
        assert pod_names(client) == ["old-ready"]

    run(body)


def test_replicaset_adopts_orphans_and_releases_pods_it_no_longer_selects() -> None:
    async def body() -> None:
        client = FakeClient()
        rs = client.add(REPLICASETS, rs_obj(replicas=1))
        client.add(
            PODS,
            {
                "metadata": {"name": "orphan", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        )
        client.add(
            PODS,
            {
                "metadata": {
                    "name": "stray",
                    "labels": {"app": "other"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": "web",
                            "uid": rs["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        )
        ctrl, factory = await setup(ReplicaSetController, client)
        await ctrl.reconcile("default/web")
        acts = client.take()
        assert sorted(repr(a) for a in acts if a.verb != "update_status") == [
            "patch pods default/orphan",
            "patch pods default/stray",
        ]
        orphan = client.stored(PODS, "default", "orphan")
        stray = client.stored(PODS, "default", "stray")
        assert orphan["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]  # type: ignore[index]
        assert stray["metadata"]["ownerReferences"] == []  # type: ignore[index]

    run(body)


def test_replicaset_create_failure_lowers_expectations_and_retries() -> None:
    async def body() -> None:
        from orchestrator.client import ClientError

        client = FakeClient()
        client.add(REPLICASETS, rs_obj(replicas=3))
        ctrl, factory = await setup(ReplicaSetController, client)
        client.fail_next[("create", "pods")] = ClientError(500, "InternalError", "boom")
        with pytest.raises(ClientError):
            await ctrl.reconcile("default/web")
        assert len(client.take("create")) == 1  # the first of the slow-start batch failed
        assert ctrl.expectations.satisfied("default/web")
        await ctrl.reconcile("default/web")
        assert len(client.take("create")) == 3

    run(body)


def test_deletion_ranking_prefers_newer_among_equals() -> None:
    def pod(name: str, created: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": READY}

    pods = [pod("a", "2024-01-01T00:00:00Z"), pod("b", "2024-01-03T00:00:00Z")]
    assert [p["metadata"]["name"] for p in rank_for_deletion(pods)] == ["b", "a"]


# ---------------------------------------------------------------------- ReplicationController


def rc_obj(
    name: str = "web", replicas: int = 2, selector: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": selector or {"app": "web"},
            "template": template(labels={"app": "web", "tier": "front"}),
        },
    }


def bare_pod(
    name: str, labels: dict[str, str], owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels}
    if owner is not None:
        m["ownerReferences"] = [owner]
    return {"metadata": m, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_replicationcontroller_scales_up_and_down_with_v1_owner_references() -> None:
    async def body() -> None:
        client = FakeClient()
        rc = client.add(REPLICATIONCONTROLLERS, rc_obj(replicas=3))
        ctrl, factory = await setup(ReplicationManager, client)
        await ctrl.reconcile("default/web")
        creates = client.take("create")
        assert len(creates) == 3
        for a in creates:
            assert a.body["metadata"]["generateName"] == "web-"
            assert a.body["metadata"]["labels"] == {"app": "web", "tier": "front"}
            assert a.body["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "v1",
                    "kind": "ReplicationController",
                    "name": "web",
                    "uid": rc["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        # Expectations: the cache has not seen them; no second round of creations.
        await ctrl.reconcile("default/web")
        assert client.take("create") == []
        mark_ready(client)
        await factory.relist()
        await ctrl.reconcile("default/web")
        status = client.stored(REPLICATIONCONTROLLERS, "default", "web")["status"]  # type: ignore[index]
        assert status == {
            "replicas": 3,
            "fullyLabeledReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "observedGeneration": 1,
        }
        client.mutate(REPLICATIONCONTROLLERS, "default", "web", spec={**rc["spec"], "replicas": 1})
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert len(client.take("delete")) == 2
        assert len(pod_names(client)) == 1

    run(body)


def test_replicationcontroller_adopts_and_releases_by_its_equality_selector() -> None:
    async def body() -> None:
        client = FakeClient()
        rc = client.add(REPLICATIONCONTROLLERS, rc_obj(replicas=2))
        mine = {
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "name": "web",
            "uid": rc["metadata"]["uid"],
            "controller": True,
        }
        other = {**mine, "apiVersion": "apps/v1", "kind": "ReplicaSet", "uid": "someone-else"}
        client.add(PODS, bare_pod("orphan", {"app": "web", "extra": "x"}))
        client.add(PODS, bare_pod("unlabelled", {"tier": "front"}))
        client.add(PODS, bare_pod("stray", {"app": "other"}, mine))
        client.add(PODS, bare_pod("theirs", {"app": "web"}, other))
        ctrl, factory = await setup(ReplicationManager, client)
        await ctrl.reconcile("default/web")
        acts = [a for a in client.take() if a.verb != "update_status"]
        assert sorted(repr(a) for a in acts if a.verb == "patch") == [
            "patch pods default/orphan",
            "patch pods default/stray",
        ]
        assert len([a for a in acts if a.verb == "create"]) == 1  # orphan + 1 new = 2
        orphan = client.stored(PODS, "default", "orphan")
        assert orphan["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"  # type: ignore[index]
        assert client.stored(PODS, "default", "stray")["metadata"]["ownerReferences"] == []  # type: ignore[index]
        assert "ownerReferences" not in client.stored(PODS, "default", "unlabelled")["metadata"]  # type: ignore[index]
        assert client.stored(PODS, "default", "theirs")["metadata"]["ownerReferences"] == [other]  # type: ignore[index]

    run(body)


def test_replicationcontroller_with_an_empty_selector_adopts_nothing() -> None:
    async def body() -> None:
        client = FakeClient()
        rc = rc_obj(replicas=0)
        rc["spec"]["selector"] = {}
        client.add(REPLICATIONCONTROLLERS, rc)
        client.add(PODS, bare_pod("orphan", {"app": "web"}))
        ctrl, factory = await setup(ReplicationManager, client)
        await ctrl.reconcile("default/web")
        assert client.take("patch") == []

    run(body)


def test_replicationcontroller_pod_events_wake_the_controller_of_the_same_kind_only() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(REPLICASETS, rs_obj(replicas=1))
        client.add(REPLICATIONCONTROLLERS, rc_obj(name="legacy", replicas=1))
        factory = InformerFactory(client)  # type: ignore[arg-type]
        rs = ReplicaSetController(client, factory)  # type: ignore[arg-type]
        rc = ReplicationManager(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        await rc.reconcile("default/legacy")
        await rs.reconcile("default/web")
        await queued(rs)
        await queued(rc)
        await factory.relist()  # the two new pods arrive: each owner hears of its own
        assert await queued(rc) == ["default/legacy"]
        assert await queued(rs) == ["default/web"]
        owners = sorted(p["metadata"]["ownerReferences"][0]["kind"] for p in client.all(PODS))
        assert owners == ["ReplicaSet", "ReplicationController"]

    run(body)


async def queued(c: Controller) -> list[str]:
    """The keys in the controller's queue, taken out."""
    keys = []
    while c.queue.depth:
        key = await c.queue.get()
        c.queue.done(key)
        keys.append(key)
    return keys


# ------------------------------------------------------------------------------ Deployment


def deploy_obj(replicas: int = 4, **strategy: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(),
            "strategy": strategy
            or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
    }


def test_fenceposts_round_surge_up_and_unavailable_down() -> None:
    d = deploy_obj(
        10, type="RollingUpdate", rollingUpdate={"maxSurge": "25%", "maxUnavailable": "25%"}
    )
    assert (max_surge(d), max_unavailable(d)) == (3, 2)
    d = deploy_obj(3, type="RollingUpdate", rollingUpdate={"maxSurge": 0, "maxUnavailable": 0})
    assert (max_surge(d), max_unavailable(d)) == (0, 1)
    d = deploy_obj(
        1, type="RollingUpdate", rollingUpdate={"maxSurge": "10%", "maxUnavailable": "10%"}
    )
    assert (max_surge(d), max_unavailable(d)) == (1, 0)


class Cluster:
    """The deployment and replica set controllers over one fake client, with a kubelet that
    makes every pod ready: enough to walk a rollout step by step."""

    def __init__(self) -> None:
        self.client = FakeClient()

    async def start(self) -> None:
        self.factory = InformerFactory(self.client)  # type: ignore[arg-type]
        self.deploy = DeploymentController(self.client, self.factory)  # type: ignore[arg-type]
        self.rs = ReplicaSetController(self.client, self.factory)  # type: ignore[arg-type]
        await self.factory.relist()

    async def step(self, ready: bool = True) -> None:
        """One round: deployment, then every replica set, then the kubelet."""
        await self.factory.relist()
        await self.deploy.reconcile("default/web")
        await self.factory.relist()
        for rs in self.client.all(REPLICASETS):
            await self.rs.reconcile(f"default/{rs['metadata']['name']}")
        if ready:
            mark_ready(self.client)
        await self.factory.relist()
        for rs in self.client.all(REPLICASETS):
            await self.rs.reconcile(f"default/{rs['metadata']['name']}")

    def sizes(self) -> dict[str, int]:
        return {
            r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"]
            for r in self.client.all(REPLICASETS)
        }

    def ready_pods(self) -> int:
        return sum(
            1
            for p in self.client.all(PODS)
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" for c in (p.get("status") or {}).get("conditions", []))
        )

    def status(self) -> dict[str, Any]:
        return self.client.stored(DEPLOYMENTS, "default", "web")["status"]  # type: ignore[index,no-any-return]


def test_deployment_rolling_update_step_by_step() -> None:
    async def body() -> None:
        c = Cluster()
        c.client.add(DEPLOYMENTS, deploy_obj(4))
        await c.start()
        for _ in range(3):
            await c.step()
        rss = c.client.all(REPLICASETS)
        assert len(rss) == 1
        rs = rss[0]
        h = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{h}"
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"  # type: ignore[index]
        st = c.status()
        assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (4, 4, 4)
        conds = {x["type"]: x for x in st["conditions"]}
        assert conds["Available"]["status"] == "True"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"

        # A new image: surge 1, unavailable 1 means 5 pods at most and 3 ready at least.
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        c.client.take()
        await c.factory.relist()
        await c.deploy.reconcile("default/web")
        # The new set made at 1 (4 + maxSurge 1 = 5 pods at most), the old one down by 1
        # (4 - maxUnavailable 1 = 3 available at least; the new pod is not available yet).
        assert c.sizes() == {"nginx:1": 3, "nginx:2": 1}
        history = []
        for _ in range(10):
            await c.step()
            history.append(c.sizes())
            total = sum(c.sizes().values())
            assert total <= 4 + 1 + 1  # the one created before this step's scale-down
            assert c.ready_pods() >= 3
        assert c.sizes() == {"nginx:1": 0, "nginx:2": 4}
        st = c.status()
        assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (4, 4, 4)
        assert {x["type"]: x["reason"] for x in st["conditions"]}["Progressing"] == (
            "NewReplicaSetAvailable"
        )
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"  # type: ignore[index]

    run(body)


class Recorded:
    """A recorder standing in for orchestrator.client.events.EventRecorder: what was recorded,
    as (kind, name, type, reason, message)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        assert obj["apiVersion"] in ("apps/v1", "batch/v1", "v1"), obj.get("apiVersion")
        self.events.append((obj["kind"], obj["metadata"]["name"], type_, reason, message))


def test_deployment_and_replicaset_events_as_kube_controller_manager_words_them() -> None:
    """``kubectl describe deployment`` lists ScalingReplicaSet events, ``describe rs`` the
    pods created and deleted (SuccessfulCreate, SuccessfulDelete); a new set made at its size
    is a scale up from 0."""

    async def body() -> None:
        c = Cluster()
        c.client.add(DEPLOYMENTS, deploy_obj(2))
        await c.start()
        c.deploy.recorder = deploy_events = Recorded()  # type: ignore[assignment]
        c.rs.recorder = rs_events = Recorded()  # type: ignore[assignment]
        for _ in range(3):
            await c.step()
        (rs,) = c.client.all(REPLICASETS)
        name = rs["metadata"]["name"]
        assert deploy_events.events == [
            (
                "Deployment",
                "web",
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} to 2 from 0",
            )
        ]
        pods = sorted(pod_names(c.client))
        assert sorted(rs_events.events) == [
            ("ReplicaSet", name, "Normal", "SuccessfulCreate", f"Created pod: {p}") for p in pods
        ]
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["replicas"] = 1  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        rs_events.events.clear()
        await c.step()
        assert deploy_events.events[-1] == (
            "Deployment",
            "web",
            "Normal",
            "ScalingReplicaSet",
            f"Scaled down replica set {name} to 1 from 2",
        )
        (gone,) = set(pods) - set(pod_names(c.client))
        assert rs_events.events == [
            ("ReplicaSet", name, "Normal", "SuccessfulDelete", f"Deleted pod: {gone}")
        ]

    run(body)


def test_deployment_recreate_scales_old_to_zero_before_new() -> None:
    async def body() -> None:
        c = Cluster()
        c.client.add(DEPLOYMENTS, deploy_obj(2, type="Recreate"))
        await c.start()
        for _ in range(2):
            await c.step()
        assert c.sizes() == {"nginx:1": 2}
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        await c.factory.relist()
        await c.deploy.reconcile("default/web")
        assert c.sizes() == {"nginx:1": 0}  # no new ReplicaSet while old pods run
        await c.step()  # the old pods go
        assert c.sizes() == {"nginx:1": 0}
        await c.step()
        assert c.sizes() == {"nginx:1": 0, "nginx:2": 2}

    run(body)


def test_deployment_scaling_is_proportional_during_a_rollout() -> None:
    async def body() -> None:
        c = Cluster()
        c.client.add(
            DEPLOYMENTS,
            deploy_obj(
                10, type="RollingUpdate", rollingUpdate={"maxSurge": 3, "maxUnavailable": 2}
            ),
        )
        await c.start()
        for _ in range(3):
            await c.step()
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        await c.factory.relist()
        await c.deploy.reconcile("default/web")
        await c.factory.relist()
        await c.deploy.reconcile("default/web")
        assert c.sizes() == {"nginx:1": 8, "nginx:2": 5}
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["replicas"] = 20  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        await c.factory.relist()
        await c.deploy.reconcile("default/web")
        # 23 allowed (20 + surge 3), 10 to add: spread as 8:5 of the last max-replicas (13).
        assert c.sizes() == {"nginx:1": 14, "nginx:2": 9}

    run(body)


def test_deployment_revision_history_limit_deletes_oldest_scaled_down() -> None:
    async def body() -> None:
        c = Cluster()
        obj = deploy_obj(1)
        obj["spec"]["revisionHistoryLimit"] = 1
        c.client.add(DEPLOYMENTS, obj)
        await c.start()
        for image in ("nginx:2", "nginx:3"):
            for _ in range(4):
                await c.step()
            d = c.client.stored(DEPLOYMENTS, "default", "web")
            d["spec"]["template"]["spec"]["containers"][0]["image"] = image  # type: ignore[index]
            await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        for _ in range(5):
            await c.step()
        assert c.sizes() == {"nginx:2": 0, "nginx:3": 1}

    run(body)


def test_deployment_paused_makes_no_new_replicaset_and_resume_does() -> None:
    async def body() -> None:
        c = Cluster()
        c.client.add(DEPLOYMENTS, deploy_obj(2))
        await c.start()
        for _ in range(3):
            await c.step()
        d = c.client.stored(DEPLOYMENTS, "default", "web")
        d["spec"]["paused"] = True  # type: ignore[index]
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"  # type: ignore[index]
        await c.client.update(DEPLOYMENTS, "default", d)  # type: ignore[arg-type]
        await c.step()
        assert c.sizes() == {"nginx:1": 2}
        conds = {x["type"]: x for x in c.status()["conditions"]}
        assert conds["Progressing"]["reason"] == "DeploymentPaused"
        await c.client.patch(DEPLOYMENTS, "default", "web", {"spec": {"paused": False}})
        for _ in range(5):
            await c.step()
        assert c.sizes() == {"nginx:1": 0, "nginx:2": 2}

    run(body)


def test_deployment_progress_deadline_exceeded() -> None:
    async def body() -> None:
        c = Cluster()
        obj = deploy_obj(1)
        obj["spec"]["progressDeadlineSeconds"] = 5
        c.client.add(DEPLOYMENTS, obj)
        await c.start()
        await c.step(ready=False)
        await c.factory.relist()
        await c.deploy.reconcile("default/web")  # sees the pod made: that was progress
        st = c.status()
        cond = {x["type"]: x for x in st["conditions"]}["Progressing"]
        assert cond["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
        # Nothing progresses (no pod gets ready); the deadline passes.
        c.client.mutate(
            DEPLOYMENTS,
            "default",
            "web",
            status={
                "conditions": [
                    {**cond, "lastUpdateTime": "2020-01-01T00:00:00Z"},
                    *[x for x in st["conditions"] if x["type"] != "Progressing"],
                ]
            },
        )
        await c.factory.relist()
        again = await c.deploy.reconcile("default/web")
        cond = {x["type"]: x for x in c.status()["conditions"]}["Progressing"]
        assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
        assert again is None

    run(body)


# ------------------------------------------------------------------------------ garbage collector


def owned_by(owner: dict[str, Any], kind: str, block: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": block,
        }
    ]


async def gc_setup(client: FakeClient) -> tuple[GarbageCollector, InformerFactory]:
    factory = InformerFactory(client)  # type: ignore[arg-type]
    gc = GarbageCollector(client, factory, (PODS, REPLICASETS, DEPLOYMENTS, CONTROLLERREVISIONS))  # type: ignore[arg-type]
    client.unserved.add(CONTROLLERREVISIONS)
    await gc.prepare()
    await factory.relist()
    return gc, factory


async def drain(gc: GarbageCollector, factory: InformerFactory, rounds: int = 6) -> None:
    """Reconcile whatever the handlers queued, relisting between rounds (no watch here)."""
    for _ in range(rounds):
        await factory.relist()
        while gc.queue.depth:
            key = await gc.queue.get()
            try:
                await gc.reconcile(key)
            finally:
                gc.queue.done(key)


def test_gc_watches_only_served_kinds() -> None:
    async def body() -> None:
        gc, _ = await gc_setup(FakeClient())
        assert CONTROLLERREVISIONS not in gc.resources and PODS in gc.resources

    run(body)


def test_gc_background_deletes_dependents_of_a_gone_owner_and_keeps_solid_ones() -> None:
    async def body() -> None:
        client = FakeClient()
        rs = client.add(REPLICASETS, rs_obj())
        gone = {"metadata": {"name": "gone", "uid": "0000-gone"}}
        client.add(
            PODS,
            {"metadata": {"name": "orphaned", "ownerReferences": owned_by(gone, "ReplicaSet")}},
        )
        client.add(
            PODS, {"metadata": {"name": "kept", "ownerReferences": owned_by(rs, "ReplicaSet")}}
        )
        both = owned_by(rs, "ReplicaSet") + [
            {**owned_by(gone, "ReplicaSet")[0], "controller": False}
        ]
        client.add(PODS, {"metadata": {"name": "two-owners", "ownerReferences": both}})
        gc, factory = await gc_setup(client)
        await drain(gc, factory)
        acts = client.take()
        assert sorted(repr(a) for a in acts) == [
            "delete pods default/orphaned",
            "patch pods default/two-owners",
        ]
        assert [a.options for a in acts if a.verb == "delete"][0]["propagationPolicy"] == (
            "Background"
        )
        refs = client.stored(PODS, "default", "two-owners")["metadata"]["ownerReferences"]  # type: ignore[index]
        assert [r["name"] for r in refs] == ["web"]

    run(body)


def test_gc_foreground_deletes_dependents_then_lifts_the_finalizer() -> None:
    async def body() -> None:
        client = FakeClient()
        d = client.add(DEPLOYMENTS, deploy_obj(1))
        rs = client.add(
            REPLICASETS,
            rs_obj("web-1")
            | {"metadata": {"name": "web-1", "ownerReferences": owned_by(d, "Deployment")}},
        )
        client.add(
            PODS, {"metadata": {"name": "web-1-a", "ownerReferences": owned_by(rs, "ReplicaSet")}}
        )
        gc, factory = await gc_setup(client)
        await client.delete(DEPLOYMENTS, "default", "web", propagation="Foreground")
        client.take()
        await drain(gc, factory, rounds=1)
        # The deployment waits; its replica set goes in the foreground too (it blocks).
        assert client.stored(DEPLOYMENTS, "default", "web") is not None
        acts = client.take()
        assert {(repr(a), a.options.get("propagationPolicy")) for a in acts} == {
            ("delete replicasets default/web-1", "Foreground")
        }
        await drain(gc, factory)
        assert client.all(PODS) == [] and client.all(REPLICASETS) == []
        assert client.stored(DEPLOYMENTS, "default", "web") is None
        acts = client.take()
        assert "patch deployments default/web" in [repr(a) for a in acts]
        # A pod has no dependents: deleted in the background even for a foreground owner.
        assert {
            a.options.get("propagationPolicy")
            for a in acts
            if a.verb == "delete" and a.resource == "pods"
        } == {"Background"}

    run(body)


def test_gc_orphan_removes_references_then_the_finalizer() -> None:
    async def body() -> None:
        client = FakeClient()
        rs = client.add(REPLICASETS, rs_obj())
        client.add(PODS, {"metadata": {"name": "p", "ownerReferences": owned_by(rs, "ReplicaSet")}})
        gc, factory = await gc_setup(client)
        await client.delete(REPLICASETS, "default", "web", propagation="Orphan")
        client.take()
        await drain(gc, factory)
        assert [repr(a) for a in client.take()] == [
            "patch pods default/p",
            "patch replicasets default/web",
        ]
        assert client.stored(REPLICASETS, "default", "web") is None
        assert client.stored(PODS, "default", "p")["metadata"]["ownerReferences"] == []  # type: ignore[index]

    run(body)


# ------------------------------------------------------------------------------ small ones


def test_serviceaccount_default_in_every_active_namespace() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(NAMESPACES, {"metadata": {"name": "a"}})
        client.add(NAMESPACES, {"metadata": {"name": "b"}})
        client.add(
            NAMESPACES, {"metadata": {"name": "going", "deletionTimestamp": "2024-01-01T00:00:00Z"}}
        )
        client.add(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": "b"}})
        ctrl, factory = await setup(ServiceAccountController, client)
        for ns in ("a", "b", "going"):
            await ctrl.reconcile(ns)
        assert [repr(a) for a in client.take()] == ["create serviceaccounts a/default"]

    run(body)


def test_root_ca_published_in_every_active_namespace_and_set_back() -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    async def body() -> None:
        client = FakeClient()
        for name in ("a", "b", "c"):
            client.add(NAMESPACES, {"metadata": {"name": name}})
        client.add(
            NAMESPACES, {"metadata": {"name": "going", "deletionTimestamp": "2024-01-01T00:00:00Z"}}
        )
        good = {"annotations": {"kubernetes.io/description": DESCRIPTION}}
        client.add(
            CONFIGMAPS,
            {"metadata": {"name": "kube-root-ca.crt", "namespace": "b", **good},
             "data": {"ca.crt": ca}},
        )  # fmt: skip
        client.add(
            CONFIGMAPS,
            {"metadata": {"name": "kube-root-ca.crt", "namespace": "c", **good},
             "data": {"ca.crt": "not it", "extra": "x"}},
        )  # fmt: skip
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = RootCAPublisher(client, factory, ca)  # type: ignore[arg-type]
        await factory.relist()
        for ns in ("a", "b", "c", "going", "gone"):
            await ctrl.reconcile(ns)
        assert [repr(a) for a in client.take()] == [
            "create configmaps a/kube-root-ca.crt",
            "update configmaps c/kube-root-ca.crt",
        ]
        for ns in ("a", "b", "c"):
            cm = client.stored(CONFIGMAPS, ns, "kube-root-ca.crt")
            assert cm is not None and cm["data"] == {"ca.crt": ca}
            assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION
        with pytest.raises(ValueError, match="no cluster CA"):
            RootCAPublisher(client, factory, "")  # type: ignore[arg-type]

    run(body)


def test_node_ipam_gives_each_node_a_free_24() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(NODES, {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.42.0.0/24"}})
        client.add(NODES, {"metadata": {"name": "n2"}})
        client.add(NODES, {"metadata": {"name": "n3"}})
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeIpamController(client, factory, "10.42.0.0/16")  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("n2")
        await ctrl.reconcile("n3")  # before the cache has seen n2's: still not the same one
        await ctrl.reconcile("n1")
        got = {n["metadata"]["name"]: n["spec"] for n in client.all(NODES)}
        assert got["n2"] == {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}
        assert got["n3"] == {"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]}
        assert len(client.take()) == 2
        with pytest.raises(ValueError, match="smaller than one node"):
            NodeIpamController(client, factory, "10.0.0.0/25")  # type: ignore[arg-type]

    run(body)


def test_node_ipam_full_cluster_waits_for_a_release() -> None:
    """A /23 holds two /24s: the third node is named once and not retried (no backoff loop
    over a full range), until a node goes and releases its range, which it then gets."""

    async def body() -> None:
        client = FakeClient()
        for n in ("n1", "n2", "n3"):
            client.add(NODES, {"metadata": {"name": n}})
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeIpamController(client, factory, "10.9.0.0/23")  # type: ignore[arg-type]
        await factory.relist()
        for n in ("n1", "n2", "n3"):
            assert await ctrl.reconcile(n) is None  # no retry for n3: it waits
        await factory.relist()
        got = {n["metadata"]["name"]: n.get("spec", {}).get("podCIDR") for n in client.all(NODES)}
        assert got == {"n1": "10.9.0.0/24", "n2": "10.9.1.0/24", "n3": None}
        while len(ctrl.queue):  # the relist's events: nothing to do
            key = await ctrl.queue.get()
            await ctrl.reconcile(key)
            ctrl.queue.done(key)
        assert client.all(NODES)[2].get("spec", {}).get("podCIDR") is None
        await client.delete(NODES, None, "n1")
        await factory.relist()  # n1 gone: its range is free, n3 is looked at again
        key = await ctrl.queue.get()
        assert key == "n3"
        await ctrl.reconcile(key)
        assert client.stored(NODES, None, "n3")["spec"]["podCIDR"] == "10.9.0.0/24"  # type: ignore[index]

    run(body)


def dns_node(name: str, address: str | None, ready: str = "True") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if address is not None:
        meta["annotations"] = {DNS_ADDRESS_ANNOTATION: address}
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def test_cluster_dns_endpoints_are_the_nodes_dns_servers() -> None:
    """kube-system/kube-dns gets one endpoint per node whose agent serves the DNS (its
    annotation), with nodeName (for internalTrafficPolicy Local) and ready as the Node is; a
    node going away or turning NotReady changes the slice."""

    async def body() -> None:
        client = FakeClient()
        client.add(SERVICES, {"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                              "spec": {"clusterIP": "10.43.0.10"}})  # fmt: skip
        client.add(NODES, dns_node("n1", "10.42.0.1"))
        client.add(NODES, dns_node("n2", "10.42.1.1"))
        client.add(NODES, dns_node("n3", None))  # --disable-cluster-dns: no endpoint
        ctrl, factory = await setup(ClusterDnsController, client)
        await ctrl.reconcile("kube-system/kube-dns")
        (sl,) = client.all(ENDPOINTSLICES, "kube-system")
        assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
        assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"
        assert {(p["name"], p["protocol"], p["port"]) for p in sl["ports"]} == {
            ("dns", "UDP", 53), ("dns-tcp", "TCP", 53),
        }  # fmt: skip
        assert [(e["nodeName"], e["addresses"], e["conditions"]["ready"])
                for e in sl["endpoints"]] == [("n1", ["10.42.0.1"], True),
                                               ("n2", ["10.42.1.1"], True)]  # fmt: skip
        client.take()
        await factory.relist()
        await ctrl.reconcile("kube-system/kube-dns")
        assert client.take() == []  # unchanged: no write
        client.mutate(NODES, None, "n2", status=dns_node("n2", None, "Unknown")["status"])
        await client.delete(NODES, None, "n1")
        await factory.relist()
        await ctrl.reconcile("kube-system/kube-dns")
        (sl,) = client.all(ENDPOINTSLICES, "kube-system")
        assert [(e["nodeName"], e["conditions"]["ready"]) for e in sl["endpoints"]] == [
            ("n2", False)
        ]
        await client.delete(SERVICES, "kube-system", "kube-dns")
        await factory.relist()
        await ctrl.reconcile("kube-system/kube-dns")
        assert client.all(ENDPOINTSLICES, "kube-system") == []

    run(body)


def svc_obj(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": 9000, "targetPort": 9100, "protocol": "TCP"},
            ],
            **spec,
        },
    }


def backend(name: str, ip: str, ready: bool, http_port: int | None = 8080) -> dict[str, Any]:
    ports = [{"name": "http", "containerPort": http_port}] if http_port else []
    return {
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": ports}]},
        "status": {"podIP": ip, **(READY if ready else {"phase": "Running"})},
    }


def test_endpoints_ready_and_not_ready_addresses_with_named_ports() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(SERVICES, svc_obj())
        client.add(PODS, backend("a", "10.42.0.5", True))
        client.add(PODS, backend("b", "10.42.0.4", False))
        client.add(PODS, backend("c", "10.42.0.6", True, http_port=None))
        client.add(PODS, {**backend("noip", "", True), "status": READY})
        ctrl, factory = await setup(EndpointsController, client)
        await ctrl.reconcile("default/web")
        ep = client.stored(ENDPOINTS, "default", "web")
        assert ep is not None
        assert ep["metadata"]["labels"] == {"tier": "front"}
        subsets = ep["subsets"]
        by_ports = {tuple(p["port"] for p in s["ports"]): s for s in subsets}
        both = by_ports[(8080, 9100)]
        assert [a["ip"] for a in both["addresses"]] == ["10.42.0.5"]
        assert [a["ip"] for a in both["notReadyAddresses"]] == ["10.42.0.4"]
        assert both["addresses"][0]["targetRef"]["name"] == "a"
        assert both["addresses"][0]["nodeName"] == "n1"
        assert both["ports"][0] == {"name": "http", "port": 8080, "protocol": "TCP"}
        assert [a["ip"] for a in by_ports[(9100,)]["addresses"]] == ["10.42.0.6"]
        client.take()
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert client.take() == []  # nothing changed: no write
        await client.delete(SERVICES, "default", "web")
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert client.stored(ENDPOINTS, "default", "web") is None

    run(body)


def test_endpointslices_per_port_set_owned_by_the_service() -> None:
    async def body() -> None:
        client = FakeClient()
        svc = client.add(SERVICES, svc_obj())
        client.add(PODS, backend("a", "10.42.0.5", True))
        client.add(PODS, backend("b", "10.42.0.4", False))
        ctrl, factory = await setup(EndpointSliceController, client)
        await ctrl.reconcile("default/web")
        slices = client.all(ENDPOINTSLICES)
        assert len(slices) == 1
        s = slices[0]
        assert s["metadata"]["name"].startswith("web-")
        assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
        assert s["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
        assert s["addressType"] == "IPv4"
        eps = {e["targetRef"]["name"]: e for e in s["endpoints"]}
        assert eps["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert eps["b"]["conditions"]["ready"] is False
        client.take()
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert client.take() == []
        client.mutate(PODS, "default", "b", status=READY)
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert [repr(a) for a in client.take()] == [
            f"update endpointslices default/{s['metadata']['name']}"
        ]

    run(body)


def test_an_unnamed_port_is_named_empty_in_a_slice_and_unnamed_in_endpoints() -> None:
    """As kube-apiserver defaults them: EndpointSlice ports always carry a name ("" when the
    service port has none; kubectl 1.32's describe service dereferences it), Endpoints ports
    omit it. The slice matches what the server stores, so a second reconcile writes nothing."""

    async def body() -> None:
        client = FakeClient()
        client.add(SERVICES, svc_obj(ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP"}]))
        client.add(PODS, backend("a", "10.42.0.5", True))
        for kind in (EndpointsController, EndpointSliceController):
            ctrl, factory = await setup(kind, client)
            await ctrl.reconcile("default/web")
            client.take()
            await factory.relist()
            await ctrl.reconcile("default/web")
            assert client.take() == [], kind
        (s,) = client.all(ENDPOINTSLICES)
        assert s["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
        ep = client.stored(ENDPOINTS, "default", "web")
        assert ep["subsets"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]

    run(body)


# ------------------------------------------------------------------------------ node lifecycle


def node_obj(name: str, ready: str = "True", heartbeat: str | None = None) -> dict[str, Any]:
    beat = heartbeat or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "metadata": {"name": name, "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "lastHeartbeatTime": beat,
                    "reason": "KubeletReady",
                }
            ]
        },
    }


def pod_on(name: str, node: str, tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": name}, "spec": spec, "status": READY}


def test_node_without_heartbeat_goes_unknown_tainted_and_its_pods_evicted() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(NODES, node_obj("n1", heartbeat="2020-01-01T00:00:00Z"))
        client.add(PODS, pod_on("intolerant", "n1", []))
        unreachable = {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
        }
        client.add(PODS, pod_on("patient", "n1", [{**unreachable, "tolerationSeconds": 300}]))
        client.add(PODS, pod_on("forever", "n1", [unreachable]))
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeLifecycleController(client, factory, grace=40)  # type: ignore[arg-type]
        await factory.relist()
        again = await ctrl.reconcile("node/n1")
        node = client.stored(NODES, None, "n1")
        assert node is not None
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
        assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
            ("node.kubernetes.io/unreachable", "NoSchedule"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
        }
        deleted = [a.name for a in client.actions if a.verb == "delete"]
        assert deleted == ["intolerant"]
        assert again is not None and 290 < again <= 300  # the patient pod's turn
        # Pods on the node were marked not ready (Endpoints drop them).
        patient = client.stored(PODS, "default", "patient")
        assert {c["type"]: c["status"] for c in patient["status"]["conditions"]}["Ready"] == "False"  # type: ignore[index]

    run(body)


def test_node_ready_false_gets_not_ready_taints_and_ready_again_loses_them() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(NODES, node_obj("n1", ready="False"))
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeLifecycleController(client, factory, grace=40)  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("node/n1")
        node = client.stored(NODES, None, "n1")
        assert {t["key"] for t in node["spec"]["taints"]} == {"node.kubernetes.io/not-ready"}  # type: ignore[index]
        client.mutate(NODES, None, "n1", status=node_obj("n1")["status"])
        await factory.relist()
        await ctrl.reconcile("node/n1")
        assert not client.stored(NODES, None, "n1")["spec"].get("taints")  # type: ignore[index]

    run(body)


def test_node_under_memory_pressure_is_tainted_no_schedule_while_it_lasts() -> None:
    async def body() -> None:
        client = FakeClient()
        node = node_obj("n1")
        node["spec"]["taints"] = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
        pressure = {
            "type": "MemoryPressure",
            "status": "True",
            "reason": "KubeletHasInsufficientMemory",
        }
        node["status"]["conditions"].append(pressure)
        client.add(NODES, node)
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeLifecycleController(client, factory, grace=40)  # type: ignore[arg-type]
        await factory.relist()
        await ctrl.reconcile("node/n1")
        stored = client.stored(NODES, None, "n1")
        assert stored is not None
        assert {(t["key"], t["effect"]) for t in stored["spec"]["taints"]} == {
            ("dedicated", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        }
        status = node_obj("n1")["status"]
        status["conditions"].append({**pressure, "status": "False"})
        client.mutate(NODES, None, "n1", status=status)
        await factory.relist()
        await ctrl.reconcile("node/n1")
        stored = client.stored(NODES, None, "n1")
        assert stored is not None
        assert [t["key"] for t in stored["spec"]["taints"]] == ["dedicated"]

    run(body)


def test_pod_on_a_node_that_does_not_exist_is_deleted_at_once() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(PODS, pod_on("stray", "gone"))
        factory = InformerFactory(client)  # type: ignore[arg-type]
        ctrl = NodeLifecycleController(client, factory, grace=0.05)  # type: ignore[arg-type]
        await factory.relist()
        assert ctrl.queue.depth == 0  # quarantined first: its node may be registering
        key = await asyncio.wait_for(ctrl.queue.get(), 5)
        assert key == "pod/default/stray"
        await ctrl.reconcile(key)
        acts = client.take()
        assert [(repr(a), a.options.get("gracePeriodSeconds")) for a in acts] == [
            ("delete pods default/stray", 0)
        ]

    run(body)


# ------------------------------------------------------------------------------ Job


def job_obj(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "pi", "namespace": "default"},
        "spec": {
            "parallelism": 2,
            "completions": 3,
            "backoffLimit": 1,
            "selector": {"matchLabels": {"job": "pi"}},
            "template": {
                "metadata": {"labels": {"job": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
            },
            **spec,
        },
    }


def finish(client: FakeClient, phase: str) -> None:
    """What a kubelet would report: every running pod ends with ``phase``."""
    for p in client.all(PODS):
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            client.mutate(PODS, "default", p["metadata"]["name"], status={"phase": phase})


async def job_round(ctrl: JobController, factory: InformerFactory) -> None:
    await factory.relist()
    await ctrl.reconcile("default/pi")
    await factory.relist()


def test_job_runs_parallelism_pods_until_completions_succeed() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(JOBS, job_obj())
        ctrl, factory = await setup(JobController, client)
        await job_round(ctrl, factory)
        assert len(client.take("create")) == 2
        finish(client, "Succeeded")
        await job_round(ctrl, factory)
        assert len(client.take("create")) == 1  # 3 - 2 succeeded
        finish(client, "Succeeded")
        await job_round(ctrl, factory)
        assert client.take("create") == []
        st = client.stored(JOBS, "default", "pi")["status"]  # type: ignore[index]
        assert st["succeeded"] == 3 and "active" not in st and st["completionTime"]
        assert [c["type"] for c in st["conditions"]] == ["Complete"]

    run(body)


def test_job_fails_when_backoff_limit_is_passed() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(JOBS, job_obj())
        ctrl, factory = await setup(JobController, client)
        await job_round(ctrl, factory)
        finish(client, "Failed")  # 2 failures > backoffLimit 1
        await job_round(ctrl, factory)
        st = client.stored(JOBS, "default", "pi")["status"]  # type: ignore[index]
        cond = {c["type"]: c for c in st["conditions"]}["Failed"]
        assert (cond["status"], cond["reason"]) == ("True", "BackoffLimitExceeded")
        assert st["failed"] == 2
        client.take()
        await job_round(ctrl, factory)
        assert client.take("create") == []  # a failed job makes no more pods

    run(body)


def test_job_events_as_the_job_controller_words_them() -> None:
    """SuccessfulCreate per pod, then Completed once (or the failure's reason, a Warning)."""

    async def body() -> None:
        for outcome, last in (
            ("Succeeded", ("Normal", "Completed", "Job completed")),
            (
                "Failed",
                ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            ),
        ):
            client = FakeClient()
            client.add(JOBS, job_obj(parallelism=1, completions=1, backoffLimit=0))
            ctrl, factory = await setup(JobController, client)
            ctrl.recorder = events = Recorded()  # type: ignore[assignment]
            await job_round(ctrl, factory)
            (pod,) = pod_names(client)
            finish(client, outcome)
            await job_round(ctrl, factory)
            await job_round(ctrl, factory)
            assert events.events == [
                ("Job", "pi", "Normal", "SuccessfulCreate", f"Created pod: {pod}"),
                ("Job", "pi", *last),
            ], outcome

    run(body)


def test_job_one_failure_within_backoff_limit_is_replaced() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(JOBS, job_obj(parallelism=1, completions=1, backoffLimit=3))
        ctrl, factory = await setup(JobController, client)
        await job_round(ctrl, factory)
        finish(client, "Failed")
        client.take()
        await factory.relist()
        again = await ctrl.reconcile("default/pi")
        assert client.take("create") == []  # the replacement waits its backoff (10 s)
        assert again is not None and 0 < again <= 10
        assert client.stored(JOBS, "default", "pi")["status"]["failed"] == 1  # type: ignore[index]
        ctrl.failure_backoff = 0.0  # (as if the 10 s had passed)
        await job_round(ctrl, factory)
        assert len(client.take("create")) == 1

    run(body)


def test_job_indexed_mode_gives_each_pod_an_index() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(JOBS, job_obj(completionMode="Indexed", parallelism=3, completions=3))
        ctrl, factory = await setup(JobController, client)
        await job_round(ctrl, factory)
        pods = client.all(PODS)
        indexes = sorted(p["metadata"]["annotations"][INDEX_ANNOTATION] for p in pods)
        assert indexes == ["0", "1", "2"]
        for p in pods:
            i = p["metadata"]["annotations"][INDEX_ANNOTATION]
            assert p["metadata"]["name"].startswith(f"pi-{i}-")
            assert {"name": "JOB_COMPLETION_INDEX", "value": i} in p["spec"]["containers"][0]["env"]
        client.mutate(PODS, "default", pods[0]["metadata"]["name"], status={"phase": "Succeeded"})
        client.mutate(PODS, "default", pods[2]["metadata"]["name"], status={"phase": "Succeeded"})
        await job_round(ctrl, factory)
        st = client.stored(JOBS, "default", "pi")["status"]  # type: ignore[index]
        done = {
            pods[0]["metadata"]["annotations"][INDEX_ANNOTATION],
            pods[2]["metadata"]["annotations"][INDEX_ANNOTATION],
        }
        assert st["completedIndexes"] == format_indexes({int(i) for i in done})
        assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"

    run(body)


def test_job_deadline_and_ttl_after_finished() -> None:
    async def body() -> None:
        client = FakeClient()
        obj = job_obj(activeDeadlineSeconds=10, ttlSecondsAfterFinished=0)
        obj["status"] = {"startTime": "2020-01-01T00:00:00Z"}
        client.add(JOBS, obj)
        ctrl, factory = await setup(JobController, client)
        await job_round(ctrl, factory)
        st = client.stored(JOBS, "default", "pi")["status"]  # type: ignore[index]
        assert {c["type"]: c["reason"] for c in st["conditions"]}["Failed"] == "DeadlineExceeded"
        assert client.take("create") == []
        await job_round(ctrl, factory)  # finished, ttl 0: deleted
        assert client.stored(JOBS, "default", "pi") is None

    run(body)


# ------------------------------------------------------------------------------ CronJob


def test_cron_schedules_parse_and_step() -> None:
    t = datetime(2024, 1, 1, 10, 17, tzinfo=UTC)  # a Monday
    cases = {
        "*/15 * * * *": datetime(2024, 1, 1, 10, 30, tzinfo=UTC),
        "@hourly": datetime(2024, 1, 1, 11, 0, tzinfo=UTC),
        "@weekly": datetime(2024, 1, 7, 0, 0, tzinfo=UTC),
        "0 9 * * mon-fri": datetime(2024, 1, 2, 9, 0, tzinfo=UTC),
        "30 2 1 jan *": datetime(2025, 1, 1, 2, 30, tzinfo=UTC),
        "0 0 13 * 5": datetime(2024, 1, 5, 0, 0, tzinfo=UTC),  # the 13th or a Friday
        "TZ=Asia/Kolkata 0 9 * * *": datetime(2024, 1, 2, 3, 30, tzinfo=UTC),
    }
    for text, want in cases.items():
        assert Schedule.parse(text).next_after(t) == want, text
    last, n = Schedule.parse("*/5 * * * *").last_between(t - timedelta(hours=1, minutes=17), t)
    assert (last, n) == (datetime(2024, 1, 1, 10, 15, tzinfo=UTC), 15)
    for bad in ("* * * *", "61 * * * *", "* * * foo *", "*/0 * * * *", "TZ=Nowhere/City * * * * *"):
        with pytest.raises(ScheduleError):
            Schedule.parse(bad)


def cronjob_obj(policy: str = "Allow") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "tick",
            "namespace": "default",
            "creationTimestamp": "2020-01-01T00:00:00Z",
        },
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": policy,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": job_obj()["spec"]},
        },
    }


def test_cronjob_makes_the_job_of_the_latest_minute_and_honours_forbid() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(CRONJOBS, cronjob_obj("Forbid"))
        ctrl, factory = await setup(CronJobController, client)
        ctrl.recorder = events = Recorded()  # type: ignore[assignment]
        again = await ctrl.reconcile("default/tick")
        assert again is not None and 0 < again <= 61
        made = client.take("create")
        assert len(made) == 1
        assert events.events == [
            ("CronJob", "tick", "Normal", "SuccessfulCreate", f"Created job {made[0].name}")
        ]
        minute = int(datetime.now(UTC).timestamp() // 60)
        assert made[0].name in (f"tick-{minute}", f"tick-{minute - 1}")
        assert made[0].body["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        st = client.stored(CRONJOBS, "default", "tick")["status"]  # type: ignore[index]
        assert st["active"][0]["name"] == made[0].name and st["lastScheduleTime"]
        # The next minute comes while that job still runs: Forbid makes none.
        client.mutate(
            CRONJOBS, "default", "tick", status={"lastScheduleTime": "2020-01-01T00:00:00Z"}
        )
        await factory.relist()
        await ctrl.reconcile("default/tick")
        assert client.take("create") == []

    run(body)


def test_cronjob_replace_deletes_the_running_job_and_history_is_trimmed() -> None:
    async def body() -> None:
        client = FakeClient()
        cj = client.add(CRONJOBS, cronjob_obj("Replace"))
        ref = [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": "tick",
                "uid": cj["metadata"]["uid"],
                "controller": True,
            }
        ]
        done = {"conditions": [{"type": "Complete", "status": "True"}]}
        for i, status in enumerate([done, done, {}]):
            client.add(
                JOBS,
                {
                    "metadata": {
                        "name": f"tick-{i}",
                        "ownerReferences": ref,
                        "creationTimestamp": f"2020-01-0{i + 1}T00:00:00Z",
                    },
                    "spec": job_obj()["spec"],
                    "status": status,
                },
            )
        ctrl, factory = await setup(CronJobController, client)
        await ctrl.reconcile("default/tick")
        deleted = sorted(a.name for a in client.actions if a.verb == "delete")
        assert deleted == ["tick-0", "tick-2"]  # the older finished one, the running one
        assert len([a for a in client.actions if a.verb == "create"]) == 1

    run(body)


# ------------------------------------------------------------------------------ DaemonSet


def ds_obj(image: str = "agent:1") -> dict[str, Any]:
    return {
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "nodeSelector": {"role": "worker"},
                    "containers": [{"name": "c", "image": image}],
                },
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
    }


def test_node_fits_selector_affinity_and_taints() -> None:
    node = {"metadata": {"name": "n1", "labels": {"role": "worker", "zone": "a"}}, "spec": {}}
    assert node_fits({"nodeSelector": {"role": "worker"}}, node)
    assert not node_fits({"nodeSelector": {"role": "db"}}, node)
    aff = lambda expr: {  # noqa: E731
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [expr]}
            }
        }
    }
    assert node_fits(
        aff({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}), node
    )
    assert not node_fits(
        aff({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), node
    )
    tainted = {**node, "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}}
    assert not node_fits({}, tainted)
    assert node_fits({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}, tainted)
    cordoned = {
        **node,
        "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
    }
    assert node_fits({}, cordoned)  # daemon pods tolerate it


def test_daemonset_one_pinned_pod_per_fitting_node_then_rolls_one_at_a_time() -> None:
    async def body() -> None:
        client = FakeClient()
        for name, labels in (
            ("n1", {"role": "worker"}),
            ("n2", {"role": "worker"}),
            ("db", {"role": "db"}),
        ):
            client.add(NODES, {"metadata": {"name": name, "labels": labels}, "spec": {}})
        client.add(DAEMONSETS, ds_obj())
        ctrl, factory = await setup(DaemonSetController, client)
        await ctrl.reconcile("default/agent")
        pods = client.all(PODS)
        pins = sorted(
            p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                "nodeSelectorTerms"
            ][0]["matchFields"][0]["values"][0]
            for p in pods
        )
        assert pins == ["n1", "n2"]
        assert all("nodeName" not in p["spec"] for p in pods)  # the scheduler binds them
        revs = client.all(CONTROLLERREVISIONS)
        assert len(revs) == 1 and revs[0]["revision"] == 1
        h = revs[0]["metadata"]["labels"]["controller-revision-hash"]
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {h}
        mark_ready(client)
        await factory.relist()
        await ctrl.reconcile("default/agent")
        st = client.stored(DAEMONSETS, "default", "agent")["status"]  # type: ignore[index]
        assert (st["desiredNumberScheduled"], st["numberReady"], st["updatedNumberScheduled"]) == (
            2,
            2,
            2,
        )

        client.mutate(
            DAEMONSETS, "default", "agent", spec={"template": ds_obj("agent:2")["spec"]["template"]}
        )
        client.take()
        await factory.relist()
        await ctrl.reconcile("default/agent")
        assert len(client.take("delete")) == 1  # maxUnavailable 1
        assert len(client.all(CONTROLLERREVISIONS)) == 2
        for _ in range(4):
            await factory.relist()
            await ctrl.reconcile("default/agent")
            mark_ready(client)
        images = sorted(p["spec"]["containers"][0]["image"] for p in client.all(PODS))
        assert images == ["agent:2", "agent:2"]

    run(body)


# ------------------------------------------------------------------------------ StatefulSet


def sts_obj(replicas: int = 3, image: str = "db:1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


async def sts_round(
    ctrl: StatefulSetController, factory: InformerFactory, ready: bool = True
) -> None:
    await factory.relist()
    await ctrl.reconcile("default/db")
    if ready:
        mark_ready(ctrl.client)  # type: ignore[arg-type]


def test_statefulset_makes_pods_in_order_and_removes_them_in_reverse() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(STATEFULSETS, sts_obj())
        ctrl, factory = await setup(StatefulSetController, client)
        await sts_round(ctrl, factory, ready=False)
        await sts_round(ctrl, factory, ready=False)
        assert pod_names(client) == ["db-0"]  # db-1 waits for db-0 to be ready
        p = client.stored(PODS, "default", "db-0")
        assert p["spec"]["hostname"] == "db-0" and p["spec"]["subdomain"] == "db"  # type: ignore[index]
        assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"  # type: ignore[index]
        mark_ready(client)
        for _ in range(3):
            await sts_round(ctrl, factory)
        assert pod_names(client) == ["db-0", "db-1", "db-2"]
        order = [a.name for a in client.actions if a.verb == "create" and a.resource == "pods"]
        assert order == ["db-0", "db-1", "db-2"]
        client.mutate(STATEFULSETS, "default", "db", spec={"replicas": 1})
        client.take()
        for _ in range(3):
            await sts_round(ctrl, factory)
        deleted = [a.name for a in client.take("delete") if a.resource == "pods"]
        assert deleted == ["db-2", "db-1"]

    run(body)


def test_statefulset_partitioned_rolling_update_from_the_top() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(
            STATEFULSETS,
            sts_obj(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        )
        ctrl, factory = await setup(StatefulSetController, client)
        for _ in range(4):
            await sts_round(ctrl, factory)
        client.mutate(
            STATEFULSETS,
            "default",
            "db",
            spec={"template": sts_obj(image="db:2")["spec"]["template"]},
        )
        client.take()
        for _ in range(6):
            await sts_round(ctrl, factory)
        deleted = [a.name for a in client.take("delete") if a.resource == "pods"]
        assert deleted == ["db-2", "db-1"]  # db-0 is below the partition
        images = {
            p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in client.all(PODS)
        }
        assert images == {"db-0": "db:1", "db-1": "db:2", "db-2": "db:2"}
        st = client.stored(STATEFULSETS, "default", "db")["status"]  # type: ignore[index]
        assert st["updatedReplicas"] == 2 and st["currentRevision"] != st["updateRevision"]
        # db-0 deleted by hand comes back at the current revision (below the partition).
        await client.delete(PODS, "default", "db-0")
        await sts_round(ctrl, factory)
        assert client.stored(PODS, "default", "db-0")["spec"]["containers"][0]["image"] == "db:1"  # type: ignore[index]

    run(body)


# ------------------------------------------------------------------------------ framework


def test_worker_retries_failures_with_backoff_forgets_success_and_counts() -> None:
    class Flaky(Controller):
        name = "flaky"

        def __init__(self) -> None:
            super().__init__(FakeClient(), InformerFactory(FakeClient()))  # type: ignore[arg-type]
            self.calls: list[str] = []

        async def reconcile(self, key: str) -> float | None:
            self.calls.append(key)
            if len(self.calls) == 1:
                raise RuntimeError("first time fails")
            return 0.01 if len(self.calls) == 2 else None

    async def body() -> None:
        c = Flaky()
        metrics = Metrics()
        c.metrics = metrics
        metrics.register(c)
        c.queue.add("a")
        await c.process_one()  # fails: retried with backoff
        assert c.queue.num_requeues("a") == 1 and metrics.errors["flaky"] == 1
        await asyncio.wait_for(c.process_one(), 5)  # succeeds, asks to be looked at again
        assert c.queue.num_requeues("a") == 0
        await asyncio.wait_for(c.process_one(), 5)
        assert c.calls == ["a", "a", "a"]
        text = metrics.render()
        assert 'controller_reconcile_duration_seconds_count{controller="flaky"} 3' in text
        assert 'workqueue_retries_total{name="flaky"} 1' in text
        assert 'controller_reconcile_errors_total{controller="flaky"} 1' in text

    run(body)


# ------------------------------------------------------------------------------ ServiceLB


def lb_node(name: str, ip: str, ready: str = "True", external: str = "") -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": ip}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": ready}], "addresses": addresses},
    }


def lb_svc(name: str, port: int, created: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {
            "type": "LoadBalancer",
            "ports": [{"port": port, "protocol": "TCP"}],
            "clusterIP": "10.43.0.20",
            **spec,
        },
    }


def ingress(client: FakeClient, name: str) -> list[str]:
    svc = client.stored(SERVICES, "default", name) or {}
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            or []]  # fmt: skip


def test_servicelb_gives_ready_node_addresses_and_one_service_a_port() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(NODES, lb_node("n1", "192.168.1.11"))
        client.add(NODES, lb_node("n2", "192.168.1.12", external="203.0.113.2"))
        client.add(NODES, lb_node("n3", "192.168.1.13", ready="Unknown"))
        client.add(SERVICES, lb_svc("web", 80, "2026-01-01T00:00:00Z"))
        client.add(SERVICES, lb_svc("late", 80, "2026-01-02T00:00:00Z"))
        client.add(SERVICES, lb_svc("other", 443, "2026-01-03T00:00:00Z"))
        client.add(SERVICES, lb_svc("theirs", 8443, "2026-01-01T00:00:00Z",
                                    loadBalancerClass="example.com/lb"))  # fmt: skip
        ctrl, factory = await setup(ServiceLBController, client)
        for name in ("web", "late", "other", "theirs"):
            await ctrl.reconcile(f"default/{name}")
        assert ingress(client, "web") == ["192.168.1.11", "203.0.113.2"]
        assert ingress(client, "other") == ["192.168.1.11", "203.0.113.2"]
        assert ingress(client, "late") == []  # port 80 is web's
        assert ingress(client, "theirs") == []  # another implementation's
        svc = client.stored(SERVICES, "default", "web") or {}
        assert svc["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"
        client.take()
        await factory.relist()
        await ctrl.reconcile("default/web")
        assert client.take() == []  # unchanged: no write
        # web stops being a load balancer: its ingress goes, and late gets port 80
        client.mutate(SERVICES, "default", "web", spec={"type": "ClusterIP",
                                                        "ports": [{"port": 80}]})  # fmt: skip
        client.mutate(NODES, None, "n3", status=lb_node("n3", "192.168.1.13")["status"])
        await factory.relist()
        await ctrl.reconcile("default/web")
        await ctrl.reconcile("default/late")
        assert ingress(client, "web") == []
        assert ingress(client, "late") == ["192.168.1.11", "192.168.1.13", "203.0.113.2"]

    run(body)


def test_external_addresses_of_a_service() -> None:
    from orchestrator.proxy.proxy import external_addresses

    svc = lb_svc("web", 80, "", externalIPs=["198.51.100.7", "not-an-ip", "fd00::1"])
    svc["status"] = {"loadBalancer": {"ingress": [
        {"ip": "192.168.1.11", "ipMode": "VIP"}, {"ip": "192.168.1.12", "ipMode": "Proxy"},
        {"hostname": "lb.example.com"}, {"ip": "192.168.1.13"}, {"ip": "198.51.100.7"},
    ]}}  # fmt: skip
    assert external_addresses(svc) == ("198.51.100.7", "192.168.1.11", "192.168.1.13")
    svc["spec"]["type"] = "ClusterIP"  # a stale ingress of a former load balancer: not used
    assert external_addresses(svc) == ("198.51.100.7",)
