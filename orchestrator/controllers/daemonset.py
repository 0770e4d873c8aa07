"""The DaemonSet controller (kube's daemon controller): one pod per node the template may run
on (nodeSelector, required node affinity, taints it tolerates), pinned to its node with
required node affinity on ``metadata.name`` (as Kubernetes >= 1.12 does, the scheduler binds
it); template history in ControllerRevisions (``controller-revision-hash``); RollingUpdate
within maxUnavailable, or OnDelete; status as ``kubectl rollout status`` reads it."""

from __future__ import annotations

import logging

from orchestrator.client import ClientError, NotFound, Obj, split_key
from orchestrator.client.rest import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS

from .base import Client, Controller, InformerFactory
from .history import REVISION_HASH, ensure_revision, trim_history
from .nodelifecycle import tolerates
from .refs import Expectations, claim, observe_owned_pod, owner_key
from .replicaset import pod_from_template
from .util import (
    creation_time,
    deep_copy,
    is_pod_ready,
    labels_of,
    meta,
    omit_zero,
    pod_available,
    resolve_int_or_percent,
)

__all__ = ["DaemonSetController", "node_fits"]

log = logging.getLogger("corral.controllers.daemonset")

TEMPLATE_GENERATION = "pod-template-generation"
# What every daemon pod tolerates (kube's daemon controller adds these).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _expr(e: Obj, value: str | None) -> bool:
    op, vals = e.get("operator"), e.get("values") or []
    if op == "In":
        return value is not None and value in vals
    if op == "NotIn":
        return value is None or value not in vals
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and vals:
        try:
            a, b = int(value), int(vals[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _term(term: Obj, node: Obj) -> bool:
    labels = labels_of(node)
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    return all(_expr(e, labels.get(e.get("key", ""))) for e in exprs) and all(
        _expr(f, meta(node).get("name") if f.get("key") == "metadata.name" else None)
        for f in fields
    )


def node_fits(pod_spec: Obj, node: Obj) -> bool:
    """Whether a daemon pod may run on ``node``: its nodeSelector, required node affinity,
    and the node's NoSchedule/NoExecute taints all tolerated."""
    labels = labels_of(node)
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is not None and not any(_term(t, node) for t in terms):
        return False
    tolerations = (pod_spec.get("tolerations") or []) + DAEMON_TOLERATIONS
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return False
    return True


def _pin(spec: Obj, node: str) -> None:
    """Required node affinity on metadata.name = node (replacing any such term)."""
    affinity = spec.setdefault("affinity", {})
    na = affinity.setdefault("nodeAffinity", {})
    req = na.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    terms = req.get("nodeSelectorTerms") or [{}]
    for t in terms:
        t["matchFields"] = [
            f for f in t.get("matchFields") or [] if f.get("key") != "metadata.name"
        ]
        t["matchFields"].append(pin)
    req["nodeSelectorTerms"] = terms


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.expectations = Expectations()
        self.sets = factory.informer(DAEMONSETS)
        self.pods = factory.informer(PODS)
        self.nodes = factory.informer(NODES)
        self.revisions = factory.informer(CONTROLLERREVISIONS)
        self.sets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)

    def _owner_key(self, pod: Obj) -> str | None:
        return owner_key(pod, "DaemonSet", self.sets)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        pod = new or old
        assert pod is not None
        key = self._owner_key(pod)
        if key is None:
            return
        observe_owned_pod(self.expectations, key, event, new, pod)
        self.queue.add(key)

    def _on_node(self, event: str, old: Obj | None, new: Obj | None) -> None:
        for ds in self.sets.list():
            self.enqueue(ds)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        cached = self.sets.get(key)
        if cached is None:
            self.expectations.delete(key)
            return None
        ds = cached
        spec = ds.get("spec") or {}
        tmpl_spec = (spec.get("template") or {}).get("spec") or {}

        async def recheck() -> Obj | None:
            try:
                return await self.client.get(DAEMONSETS, ns, name)
            except NotFound:
                return None

        pods = await claim(
            self.client,
            ds,
            "apps/v1",
            "DaemonSet",
            spec.get("selector"),
            self.pods.by_index("namespace", ns or ""),
            PODS,
            recheck,
        )
        if meta(ds).get("deletionTimestamp"):
            return None
        h, _, owned = await ensure_revision(self.client, self.revisions, ds, "DaemonSet")
        in_use = {labels_of(p).get(REVISION_HASH) for p in pods}
        await trim_history(self.client, ds, owned, in_use)
        by_node: dict[str, list[Obj]] = {}
        for p in pods:
            if meta(p).get("deletionTimestamp"):
                continue
            node = _pod_node(p)
            if node:
                by_node.setdefault(node, []).append(p)
        nodes = {meta(n)["name"]: n for n in self.nodes.list()}
        wanted = {n for n, node in nodes.items() if node_fits(tmpl_spec, node)}
        min_ready = int(spec.get("minReadySeconds") or 0)
        create: list[str] = []
        delete: list[Obj] = []
        for node in sorted(wanted):
            here = by_node.get(node, [])
            failed = [p for p in here if (p.get("status") or {}).get("phase") == "Failed"]
            delete += failed
            alive = sorted((p for p in here if p not in failed), key=creation_time)
            if not alive:
                create.append(node)
            else:
                delete += alive[1:]  # one per node: the oldest stays
        for node, here in by_node.items():
            if node not in wanted:
                delete += here
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not create:
            delete += self._rolling_victims(ds, h, wanted, by_node, min_ready, delete)
        if self.expectations.satisfied(key):
            await self._apply(key, ds, h, create, delete)
        return await self._status(ds, h, wanted, by_node, min_ready)

    def _rolling_victims(
        self,
        ds: Obj,
        h: str,
        wanted: set[str],
        by_node: dict[str, list[Obj]],
        min_ready: int,
        already: list[Obj],
    ) -> list[Obj]:
        ru = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = max(
            resolve_int_or_percent(ru.get("maxUnavailable", 1), len(wanted), True), 1
        )
        gone = {meta(p)["uid"] for p in already}
        unavailable = 0
        old: list[Obj] = []
        for node in sorted(wanted):
            here = [p for p in by_node.get(node, []) if meta(p)["uid"] not in gone]
            if not here:
                unavailable += 1
                continue
            pod = here[0]
            if not pod_available(pod, min_ready):
                unavailable += 1
            if labels_of(pod).get(REVISION_HASH) != h:
                old.append(pod)
        # Old pods that are down anyway go first, at no cost; then available ones, as long
        # as no more than maxUnavailable nodes are without an available pod.
        victims = [p for p in old if not pod_available(p, min_ready)]
        budget = max_unavailable - unavailable
        for p in old:
            if budget <= 0:
                break
            if pod_available(p, min_ready):
                victims.append(p)
                budget -= 1
        return victims

    async def _apply(self, key: str, ds: Obj, h: str, create: list[str], delete: list[Obj]) -> None:
        ns = meta(ds).get("namespace")
        if create:
            self.expectations.expect_creations(key, len(create))
            made = 0
            try:
                for node in create:
                    pod = pod_from_template(ds, "apps/v1", "DaemonSet", f"{meta(ds)['name']}-")
                    labels = pod["metadata"].setdefault("labels", {})
                    labels[REVISION_HASH] = h
                    labels[TEMPLATE_GENERATION] = str(meta(ds).get("generation", 1))
                    pod["spec"]["tolerations"] = _with_daemon_tolerations(pod["spec"])
                    _pin(pod["spec"], node)
                    await self.client.create(PODS, ns, pod)
                    made += 1
            except ClientError:
                self.expectations.creation_observed(key, len(create) - made)
                raise
        if delete:
            seen: set[str] = set()
            victims = [
                p for p in delete if not (meta(p)["uid"] in seen or seen.add(meta(p)["uid"]))
            ]
            self.expectations.expect_deletions(
                key, {f"{meta(p).get('namespace')}/{meta(p)['name']}" for p in victims}
            )
            for p in victims:
                m = meta(p)
                try:
                    await self.client.delete(
                        PODS, m.get("namespace"), m["name"], preconditions={"uid": m["uid"]}
                    )
                except NotFound:
                    self.expectations.deletion_observed(key, f"{m.get('namespace')}/{m['name']}")

    async def _status(
        self, ds: Obj, h: str, wanted: set[str], by_node: dict[str, list[Obj]], min_ready: int
    ) -> float | None:
        current = [n for n in wanted if by_node.get(n)]
        firsts = [sorted(by_node[n], key=creation_time)[0] for n in current]
        ready = sum(1 for p in firsts if is_pod_ready(p))
        available = sum(1 for p in firsts if pod_available(p, min_ready))
        status = deep_copy(ds.get("status") or {})
        status.update(
            desiredNumberScheduled=len(wanted),
            currentNumberScheduled=len(current),
            numberMisscheduled=sum(1 for n in by_node if n not in wanted),
            numberReady=ready,
            updatedNumberScheduled=sum(1 for p in firsts if labels_of(p).get(REVISION_HASH) == h),
            numberAvailable=available,
            numberUnavailable=len(wanted) - available,
            observedGeneration=meta(ds).get("generation", 1),
        )
        keep = (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberMisscheduled",
            "numberReady",
        )
        status = omit_zero(status, keep=keep)
        if status != (ds.get("status") or {}):
            body = deep_copy(ds)
            body["status"] = status
            await self.client.update_status(DAEMONSETS, meta(ds).get("namespace"), body)
        if min_ready and ready != available:
            return float(min_ready)
        return None


def _with_daemon_tolerations(spec: Obj) -> list[Obj]:
    have = list(spec.get("tolerations") or [])
    for t in DAEMON_TOLERATIONS:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in have):
            have.append(dict(t))
    return have


def _pod_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: bound, or pinned by its matchFields term."""
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        return str(node)
    req = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for t in req.get("nodeSelectorTerms") or []:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and f.get("values"):
                return str(f["values"][0])
    return None
