"""Node lifecycle (kube's nodelifecycle controller, its NoExecute taint manager and the pod
garbage collector's orphan sweep):

- a node whose kubelet has not renewed its Lease (``kube-node-lease/<node>``) nor posted its
  Ready condition for ``grace`` seconds gets its conditions set to Unknown and its pods marked
  not ready;
- Ready Unknown means the ``node.kubernetes.io/unreachable`` taints (NoSchedule and
  NoExecute), Ready False the ``node.kubernetes.io/not-ready`` ones; Ready True neither;
- MemoryPressure, DiskPressure and PIDPressure True mean the NoSchedule taints
  ``node.kubernetes.io/memory-pressure`` (``disk-pressure``, ``pid-pressure``) while they last
  (TaintNodesByCondition);
- a pod on a node with a NoExecute taint it does not tolerate is deleted at once, one that
  tolerates it for ``tolerationSeconds`` is deleted when they have passed since the taint;
- a pod bound to a node that still does not exist after the grace period is deleted (its
  controller replaces it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from orchestrator.client import NotFound, Obj, parse_time, split_key
from orchestrator.client.rest import LEASES, NODES, PODS

from .base import Client, Controller, InformerFactory
from .util import deep_copy, format_time, get_condition, meta, now

__all__ = ["NodeLifecycleController", "tolerates"]

log = logging.getLogger("corral.controllers.nodelifecycle")

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
# condition True -> its NoSchedule taint (kube's nodeConditionToTaintKeyStatusMap)
PRESSURE_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
}
NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration matches one taint (v1.Toleration.ToleratesTaint)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return key != "" and (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_delay(pod: Obj, taints: list[Obj], at: datetime) -> float | None:
    """Seconds until ``pod`` must go from a node with NoExecute ``taints``: 0 when one is
    not tolerated, None when all are tolerated forever."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    delay: float | None = None
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return 0.0
        bounded = [
            t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None
        ]
        if not bounded:
            continue
        added = parse_time(taint.get("timeAdded")) or at
        left = (added + timedelta(seconds=max(0, min(bounded))) - at).total_seconds()
        delay = left if delay is None else min(delay, left)
    return None if delay is None else max(delay, 0.0)


def _node_index(pod: Obj) -> Iterable[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return (node,) if node else ()


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory, grace: float = 40.0) -> None:
        super().__init__(client, factory)
        self.grace = grace
        self.nodes = factory.informer(NODES)
        self.leases = factory.informer(LEASES)
        self.pods = factory.informer(PODS)
        self.pods.add_index("node", _node_index)
        self.nodes.add_handler(self._on_node)
        self.leases.add_handler(self._on_lease)
        self.pods.add_handler(self._on_pod)

    # ------------------------------------------------------------ handlers

    def _on_node(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        assert obj is not None
        name = meta(obj)["name"]
        self.queue.add(f"node/{name}")
        if event == "DELETED":
            for pod in self.pods.by_index("node", name):
                self._check_orphan_later(pod)

    def _on_lease(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is not None and meta(obj).get("namespace") == LEASE_NAMESPACE:
            self.queue.add(f"node/{meta(obj)['name']}")

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        if event == "DELETED" or new is None:
            return
        node = (new.get("spec") or {}).get("nodeName")
        if not node:
            return
        known = self.nodes.get(node)
        if known is None:
            self._check_orphan_later(new)
        elif old is None or (old.get("spec") or {}).get("nodeName") != node:
            # a pod bound to a node: only a NoExecute taint there has anything to do with it
            # (the node's own checks run on its timer); every bind of a busy cluster would
            # otherwise re-check its node
            taints = (known.get("spec") or {}).get("taints") or ()
            if any(t.get("effect") == "NoExecute" for t in taints):
                self.queue.add(f"node/{node}")

    def _check_orphan_later(self, pod: Obj) -> None:
        """A pod on a node not known: looked at again after a quarantine (the grace period,
        as kube's pod GC waits 40 s), in case its node is just registering."""
        self.queue.add_after(f"pod/{meta(pod).get('namespace')}/{meta(pod)['name']}", self.grace)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        kind, _, rest = key.partition("/")
        if kind == "pod":
            await self._orphan_pod(rest)
            return None
        return await self._node(rest)

    async def _orphan_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or self.nodes.get(node) is not None:
            return
        try:
            await self.client.get(NODES, None, node)
            return  # the cache lags: the node exists
        except NotFound:
            pass
        ns, name = split_key(key)
        log.info("pod %s: node %s is gone: deleting it", key, node)
        try:
            await self.client.delete(
                PODS, ns, name, grace_period=0, preconditions={"uid": meta(pod)["uid"]}
            )
        except NotFound:
            pass

    def _heartbeat(self, node: Obj) -> datetime:
        times = [parse_time(meta(node).get("creationTimestamp"))]
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{meta(node)['name']}")
        if lease is not None:
            times.append(parse_time((lease.get("spec") or {}).get("renewTime")))
        ready = get_condition(node.get("status"), "Ready")
        if ready is not None:
            times.append(parse_time(ready.get("lastHeartbeatTime")))
        return max((t for t in times if t is not None), default=now())

    async def _node(self, name: str) -> float | None:
        node = self.nodes.get(name)
        if node is None:
            return None
        at = now()
        elapsed = (at - self._heartbeat(node)).total_seconds()
        ready = get_condition(node.get("status"), "Ready")
        ready_status = ready.get("status") if ready else None
        if elapsed > self.grace and ready_status != "Unknown":
            node = await self._mark_unknown(node, at)
            ready_status = "Unknown"
            await self._mark_pods_not_ready(name)
        taints = await self._taint(node, ready_status, at)
        delay = await self._evict(name, taints, at)
        if ready_status != "Unknown":
            left = max(self.grace - elapsed, 0.0) + 1.0
            delay = left if delay is None else min(delay, left)
        return delay

    async def _mark_unknown(self, node: Obj, at: datetime) -> Obj:
        body = deep_copy(node)
        status = body.setdefault("status", {})
        conds = {c["type"]: c for c in status.get("conditions") or []}
        stamp = format_time(at)
        for typ in NODE_CONDITIONS:
            c = conds.get(typ)
            if c is None:
                conds[typ] = {
                    "type": typ,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": meta(node).get("creationTimestamp"),
                    "lastTransitionTime": stamp,
                }
            elif c.get("status") != "Unknown":
                c.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=stamp,
                )
        status["conditions"] = list(conds.values())
        log.info(
            "node %s: no heartbeat for %ss: conditions Unknown", meta(node)["name"], self.grace
        )
        return await self.client.update_status(NODES, None, body)

    async def _mark_pods_not_ready(self, node: str) -> None:
        for pod in self.pods.by_index("node", node):
            conds = (pod.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                continue
            new = [
                {**c, "status": "False", "lastTransitionTime": format_time()}
                if c.get("type") == "Ready"
                else c
                for c in conds
            ]
            m = meta(pod)
            try:
                await self.client.patch(
                    PODS,
                    m.get("namespace"),
                    m["name"],
                    {"status": {"conditions": new}},
                    sub="status",
                )
            except NotFound:
                pass

    async def _taint(self, node: Obj, ready: str | None, at: datetime) -> list[Obj]:
        """Put the taints the Ready condition calls for; the node's taints after."""
        taints = (node.get("spec") or {}).get("taints") or []
        want_key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(ready or "")
        managed = (UNREACHABLE, NOT_READY, *PRESSURE_TAINTS.values())
        kept = [t for t in taints if t.get("key") not in managed]
        mine = [t for t in taints if t.get("key") == want_key] if want_key else []
        if want_key:
            effects = {t.get("effect") for t in mine}
            if "NoSchedule" not in effects:
                mine.append({"key": want_key, "effect": "NoSchedule"})
            if "NoExecute" not in effects:
                mine.append({"key": want_key, "effect": "NoExecute", "timeAdded": format_time(at)})
        for typ, key in PRESSURE_TAINTS.items():
            cond = get_condition(node.get("status"), typ)
            if cond is not None and cond.get("status") == "True":
                had = [t for t in taints if t.get("key") == key and t.get("effect") == "NoSchedule"]
                mine.append(had[0] if had else {"key": key, "effect": "NoSchedule"})
        new = kept + mine
        if new == taints:
            return list(taints)
        m = meta(node)
        patch = {
            "spec": {"taints": new or None},
            "metadata": {"resourceVersion": m["resourceVersion"]},
        }
        log.info("node %s: taints %s", m["name"], [f"{t['key']}:{t['effect']}" for t in mine])
        updated = await self.client.patch(NODES, None, m["name"], patch)
        return list((updated.get("spec") or {}).get("taints") or [])

    async def _evict(self, name: str, node_taints: list[Obj], at: datetime) -> float | None:
        taints = [t for t in node_taints if t.get("effect") == "NoExecute"]
        if not taints:
            return None
        soonest: float | None = None
        for pod in self.pods.by_index("node", name):
            m = meta(pod)
            if m.get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            delay = eviction_delay(pod, taints, at)
            if delay is None:
                continue
            if delay > 0:
                soonest = delay if soonest is None else min(soonest, delay)
                continue
            log.info(
                "node %s: evicting pod %s/%s (NoExecute taint)", name, m.get("namespace"), m["name"]
            )
            try:
                await self.client.delete(
                    PODS, m.get("namespace"), m["name"], preconditions={"uid": m["uid"]}
                )
            except NotFound:
                pass
        return soonest
