"""The ReplicaSet controller (kube-controller-manager's replicaset): keep ``spec.replicas``
pods of the template running, adopting orphans the selector matches and releasing pods it no
longer matches; expectations so a watch that lags never makes it create or delete twice;
status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration).

The ReplicationController controller (kube's replicationmanager) is the same controller over
core/v1 ReplicationControllers, whose selector is a map of labels to equal.
"""

from __future__ import annotations

import logging

from orchestrator.client import ClientError, Conflict, NotFound, Obj, split_key
from orchestrator.client.rest import PODS, REPLICASETS, REPLICATIONCONTROLLERS

from .base import Client, Controller, InformerFactory
from .refs import Expectations, claim, owner_key
from .util import (
    controller_ref,
    deep_copy,
    is_pod_active,
    is_pod_ready,
    labels_of,
    meta,
    omit_zero,
    owner_ref,
    pod_available,
    pod_ready_since,
    selector_matches,
)

__all__ = [
    "ReplicaSetController",
    "ReplicationManager",
    "pod_from_template",
    "rank_for_deletion",
]

log = logging.getLogger("corral.controllers.replicaset")

BURST_REPLICAS = 500  # at most this many creations or deletions per reconcile
SLOW_START_INITIAL_BATCH = 1

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def pod_from_template(owner: Obj, api_version: str, kind: str, prefix: str) -> Obj:
    """A pod of ``owner``'s template, named ``prefix`` + 5 random characters by the API."""
    tmpl = (owner.get("spec") or {}).get("template") or {}
    tmeta = tmpl.get("metadata") or {}
    m: Obj = {
        "generateName": prefix,
        "namespace": meta(owner).get("namespace"),
        "ownerReferences": [owner_ref(owner, api_version, kind)],
    }
    for f in ("labels", "annotations", "finalizers"):
        if tmeta.get(f):
            m[f] = deep_copy({f: tmeta[f]})[f]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": deep_copy(tmpl["spec"])}


def rank_for_deletion(pods: list[Obj], related: dict[str, int] | None = None) -> list[Obj]:
    """The pods in the order they are deleted when scaling down (controller.ActivePods with
    ranks): unscheduled before scheduled, pending before unknown before running, not ready
    before ready, more pods of the set on the same node first, ready for less time first, more
    restarts first, newer first."""
    related = related or {}

    def key(pod: Obj) -> tuple[object, ...]:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        since = pod_ready_since(pod)
        restarts = sum(c.get("restartCount") or 0 for c in status.get("containerStatuses") or [])
        created = meta(pod).get("creationTimestamp") or ""
        return (
            bool(node),
            _PHASE_RANK.get(status.get("phase") or "", 0),
            is_pod_ready(pod),
            -related.get(node, 0) if node else 0,
            -(since.timestamp()) if since else 0.0,
            -restarts,
            _Desc(created),
        )

    return sorted(pods, key=key)


class _Desc:
    """A string ordered backwards (newer timestamps first)."""

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Desc) -> bool:
        return self.s > other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.s == other.s


class ReplicaSetController(Controller):
    name = "replicaset"
    component = "replicaset-controller"
    workers = 3
    res = REPLICASETS
    kind = "ReplicaSet"

    @staticmethod
    def selector(owner: Obj) -> Obj | None:
        """The owner's pod selector as a metav1.LabelSelector."""
        return (owner.get("spec") or {}).get("selector")  # type: ignore[no-any-return]

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.expectations = Expectations()
        self.sets = factory.informer(self.res)
        self.pods = factory.informer(PODS)
        self.sets.add_handler(self._on_set)
        self.pods.add_handler(self._on_pod)

    def _event(self, rs: Obj, type_: str, reason: str, message: str) -> None:
        self.event(rs, self.res.api_version, self.kind, type_, reason, message)

    # ------------------------------------------------------------ handlers

    def _on_set(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        assert obj is not None
        if event == "DELETED":
            self.expectations.delete(_key(obj))
        self.enqueue(obj)

    def _owner_key(self, pod: Obj) -> str | None:
        return owner_key(pod, self.kind, self.sets)

    def _enqueue_matching(self, pod: Obj) -> None:
        ns = meta(pod).get("namespace") or ""
        for s in self.sets.by_index("namespace", ns):
            if selector_matches(self.selector(s), labels_of(pod)):
                self.enqueue(s)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        pod = new or old
        assert pod is not None
        pod_key = _key(pod)
        if event == "ADDED":
            if meta(pod).get("deletionTimestamp"):
                key = self._owner_key(pod)
                if key:
                    self.expectations.deletion_observed(key, pod_key)
                    self.queue.add(key)
                return
            key = self._owner_key(pod)
            if key:
                self.expectations.creation_observed(key)
                self.queue.add(key)
            elif controller_ref(pod) is None:
                self._enqueue_matching(pod)
            return
        if event == "DELETED":
            key = self._owner_key(pod)
            if key:
                self.expectations.deletion_observed(key, pod_key)
                self.queue.add(key)
            return
        assert old is not None and new is not None
        if meta(new).get("resourceVersion") == meta(old).get("resourceVersion"):
            return
        if meta(new).get("deletionTimestamp") and not meta(old).get("deletionTimestamp"):
            key = self._owner_key(new)
            if key:
                self.expectations.deletion_observed(key, pod_key)
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref is not None and (new_ref is None or new_ref.get("uid") != old_ref.get("uid")):
            old_key = self._owner_key(old)
            if old_key:
                self.queue.add(old_key)
        key = self._owner_key(new)
        if key:
            self.queue.add(key)
        elif new_ref is None and (
            labels_of(new) != labels_of(old) or controller_ref(old) is not None
        ):
            self._enqueue_matching(new)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.delete(key)
            return None
        needs_sync = self.expectations.satisfied(key)
        candidates = [
            p
            for p in self.pods.by_index("namespace", ns or "")
            if is_pod_active(p) or controller_ref(p) is not None
        ]

        async def recheck() -> Obj | None:
            try:
                return await self.client.get(self.res, ns, name)
            except NotFound:
                return None

        owned = await claim(
            self.client,
            rs,
            self.res.api_version,
            self.kind,
            self.selector(rs),
            candidates,
            PODS,
            recheck,
        )
        active = [p for p in owned if is_pod_active(p)]
        error: Exception | None = None
        if needs_sync and not meta(rs).get("deletionTimestamp"):
            try:
                await self._manage(key, rs, active)
            except ClientError as e:
                error = e
        again = await self._update_status(rs, active)
        if error is not None:
            raise error
        return again

    async def _manage(self, key: str, rs: Obj, active: list[Obj]) -> None:
        ns = meta(rs).get("namespace")
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(active) - want
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, n)
            prefix = f"{meta(rs)['name']}-"
            made = 0
            batch = SLOW_START_INITIAL_BATCH
            try:
                while made < n:
                    size = min(batch, n - made)
                    for _ in range(size):
                        pod = pod_from_template(rs, self.res.api_version, self.kind, prefix)
                        try:
                            made_pod = await self.client.create(PODS, ns, pod)
                        except ClientError as e:
                            self._event(rs, "Warning", "FailedCreate", f"Error creating: {e}")
                            raise
                        self._event(
                            rs,
                            "Normal",
                            "SuccessfulCreate",
                            f"Created pod: {meta(made_pod)['name']}",
                        )
                        made += 1
                    batch *= 2
            except ClientError:
                # Those not made will never be observed: expect no more of them.
                self.expectations.creation_observed(key, n - made)
                raise
        elif diff > 0:
            n = min(diff, BURST_REPLICAS)
            nodes: dict[str, int] = {}
            for p in active:
                node = (p.get("spec") or {}).get("nodeName")
                if node:
                    nodes[node] = nodes.get(node, 0) + 1
            victims = rank_for_deletion(active, nodes)[:n]
            self.expectations.expect_deletions(key, {_key(p) for p in victims})
            first_error: ClientError | None = None
            for p in victims:
                try:
                    await self.client.delete(
                        PODS, ns, meta(p)["name"], preconditions={"uid": meta(p)["uid"]}
                    )
                    self._event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {meta(p)['name']}")
                except NotFound:
                    self.expectations.deletion_observed(key, _key(p))
                except ClientError as e:
                    self.expectations.deletion_observed(key, _key(p))
                    first_error = first_error or e
            if first_error is not None:
                raise first_error

    def calculate_status(self, rs: Obj, active: list[Obj]) -> Obj:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = deep_copy(rs.get("status") or {})
        status["replicas"] = len(active)
        status["fullyLabeledReplicas"] = sum(
            1 for p in active if all(labels_of(p).get(k) == v for k, v in tmpl_labels.items())
        )
        status["readyReplicas"] = sum(1 for p in active if is_pod_ready(p))
        status["availableReplicas"] = sum(1 for p in active if pod_available(p, min_ready))
        status["observedGeneration"] = meta(rs).get("generation", 1)
        return omit_zero(status, keep=("replicas",))

    async def _update_status(self, rs: Obj, active: list[Obj]) -> float | None:
        status = self.calculate_status(rs, active)
        ns = meta(rs).get("namespace")
        if status != (rs.get("status") or {}):
            body = deep_copy(rs)
            body["status"] = status
            try:
                await self.client.update_status(self.res, ns, body)
            except Conflict:
                # The cache lags: once more over the current object (as kube's
                # updateReplicaSetStatus does), else the queue retries.
                body = await self.client.get(self.res, ns, meta(rs)["name"])
                if meta(body).get("uid") == meta(rs).get("uid") and body.get("status") != status:
                    body["status"] = status
                    await self.client.update_status(self.res, ns, body)
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        want = int(spec.get("replicas", 1))
        if (
            min_ready > 0
            and status["readyReplicas"] == want
            and status["availableReplicas"] != want
        ):
            return float(min_ready)
        return None


class ReplicationManager(ReplicaSetController):
    """ReplicationControllers: a ReplicaSet whose selector is ``{label: value}`` (defaulted by
    the API from the template's labels)."""

    name = "replicationcontroller"
    component = "replication-controller"
    res = REPLICATIONCONTROLLERS
    kind = "ReplicationController"

    @staticmethod
    def selector(owner: Obj) -> Obj | None:
        labels = (owner.get("spec") or {}).get("selector")
        # An empty one selects nothing (the API refuses it; labels.SelectorFromSet of an
        # empty map would select everything, which a controller must never adopt).
        return {"matchLabels": labels} if labels else None


def _key(obj: Obj) -> str:
    m = meta(obj)
    return f"{m.get('namespace')}/{m.get('name')}"
