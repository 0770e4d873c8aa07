"""The scheduler's view of the cluster (kube-scheduler's cache): a NodeInfo per node kept up to
date incrementally as nodes and assigned pods come and go, pods assumed on a node before their
binding is confirmed, and ``schedule``: filter, sample, score, pick. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .plugins import (
    R_NODE_NAME,
    ZONE,
    ZONE_BETA,
    CycleState,
    FitError,
    NodeInfo,
    PodInfo,
    cycle_state,
    filter_dynamic,
    filter_static,
    num_nodes_to_find,
    score_nodes,
)

__all__ = ["Cache", "Placement"]


@dataclass(frozen=True)
class Placement:
    node: str
    evaluated: int  # nodes filtered
    feasible: int  # nodes that passed (and were scored)


def _shape(p: PodInfo) -> tuple[object, ...]:
    """What the node-only filters depend on: pods of one shape share their verdicts."""
    return (
        p.node_name,
        tuple(sorted(p.node_selector.items())),
        repr(p.required_terms),
        repr(p.tolerations),
    )


class Cache:
    def __init__(self, percentage_of_nodes_to_score: int = 0) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[str] = []  # node names, the round-robin order of filtering
        self._pos: dict[str, int] = {}
        self.pod_node: dict[str, str] = {}  # pod key -> node (assigned or assumed)
        self.assumed: set[str] = set()
        self._pending: dict[str, dict[str, PodInfo]] = {}  # node name -> pods before the node
        self._static: dict[tuple[object, ...], tuple[list[NodeInfo], dict[str, list[str]]]] = {}
        self.node_epoch = 0  # bumped on any node change: the static verdicts are stale
        self.anti_affinity_pods = 0
        self.percentage = percentage_of_nodes_to_score
        self._next_start = 0
        self.zone_owner: dict[str, dict[str, int]] = {}  # zone -> owner uid -> pods

    # ------------------------------------------------------------ nodes

    def set_node(self, node: dict[str, object]) -> NodeInfo:
        name = str((node.get("metadata") or {}).get("name"))  # type: ignore[union-attr]
        info = self.nodes.get(name)
        if info is None:
            info = NodeInfo(node)
            self.nodes[name] = info
            self._pos[name] = len(self._order)
            self._order.append(name)
            for p in self._pending.pop(name, {}).values():
                self._account(info, p, 1)
        else:
            old_zone = _zone(info)
            for p in info.pods.values():
                self._zone_count(old_zone, p, -1)
            info.set_node(node)
            new_zone = _zone(info)
            for p in info.pods.values():
                self._zone_count(new_zone, p, 1)
        self._static.clear()
        self.node_epoch += 1
        return info

    def remove_node(self, name: str) -> None:
        info = self.nodes.pop(name, None)
        if info is None:
            return
        i = self._pos.pop(name)
        last = self._order.pop()
        if last != name:
            self._order[i] = last
            self._pos[last] = i
        # Pods still bound to a deleted node wait for it (or for their own deletion).
        self._pending[name] = dict(info.pods)
        for p in info.pods.values():
            self._zone_count(_zone(info), p, -1)
            if p.anti_affinity:
                self.anti_affinity_pods -= 1
        self._static.clear()
        self.node_epoch += 1

    # ------------------------------------------------------------ pods

    def _zone_count(self, zone: str | None, p: PodInfo, delta: int) -> None:
        if zone is None or not p.owner:
            return
        owners = self.zone_owner.setdefault(zone, {})
        n = owners.get(p.owner, 0) + delta
        if n > 0:
            owners[p.owner] = n
        else:
            owners.pop(p.owner, None)

    def _account(self, info: NodeInfo, p: PodInfo, delta: int) -> None:
        if delta > 0:
            info.add_pod(p)
        else:
            info.remove_pod(p.key)
        self._zone_count(_zone(info), p, delta)
        if p.anti_affinity:
            self.anti_affinity_pods += delta

    def add_pod(self, p: PodInfo, node: str) -> None:
        """A pod on ``node`` (assigned, or confirmed after assume): replaces what was known."""
        self.remove_pod(p.key)
        self.pod_node[p.key] = node
        info = self.nodes.get(node)
        if info is None:
            self._pending.setdefault(node, {})[p.key] = p
        else:
            self._account(info, p, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        node = self.pod_node.pop(key, None)
        self.assumed.discard(key)
        if node is None:
            return None
        info = self.nodes.get(node)
        if info is None:
            return self._pending.get(node, {}).pop(key, None)
        p = info.pods.get(key)
        if p is not None:
            self._account(info, p, -1)
        return p

    def assume(self, p: PodInfo, node: str) -> None:
        self.add_pod(p, node)
        self.assumed.add(p.key)

    def forget(self, key: str) -> None:
        if key in self.assumed:
            self.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self.nodes.values())

    # ------------------------------------------------------------ scheduling

    def _static_verdicts(self, p: PodInfo) -> tuple[list[NodeInfo], dict[str, list[str]]]:
        """The nodes that pass the node-only filters (in round-robin order) and why the others
        fail, computed once per pod shape until a node changes."""
        shape = _shape(p)
        hit = self._static.get(shape)
        if hit is None:
            ok: list[NodeInfo] = []
            bad: dict[str, list[str]] = {}
            for name in self._order:
                info = self.nodes[name]
                rs = filter_static(p, info)
                if rs:
                    bad[name] = rs
                else:
                    ok.append(info)
            if len(self._static) > 256:
                self._static.clear()
            hit = self._static[shape] = (ok, bad)
        return hit

    def schedule(self, p: PodInfo) -> Placement:
        """The node for ``p``: kube-scheduler's findNodesThatFitPod (filtering from a rotating
        start until enough feasible nodes are found) then prioritizeNodes and selectHost.
        Raises FitError with every node's reasons when none fits."""
        num_all = len(self.nodes)
        if num_all == 0:
            raise FitError(p, 0, {})
        if p.node_name and p.node_name in self.nodes:
            # kube's PreFilter result: only the named node is looked at.
            only = self.nodes[p.node_name]
            static_bad = {n: [R_NODE_NAME] for n in self.nodes if n != p.node_name}
            rs = filter_static(p, only)
            candidates = [] if rs else [only]
            if rs:
                static_bad[p.node_name] = rs
        else:
            candidates, static_bad = self._static_verdicts(p)
        state: CycleState | None = cycle_state(p, self.nodes.values(), self.anti_affinity_pods > 0)
        want = num_nodes_to_find(num_all, self.percentage)
        feasible: list[NodeInfo] = []
        dyn_bad: dict[str, list[str]] = {}
        n = len(candidates)
        start = self._next_start % n if n else 0
        evaluated = 0
        for i in range(n):
            info = candidates[(start + i) % n]
            evaluated += 1
            rs = filter_dynamic(p, info, state)
            if rs:
                dyn_bad[info.name] = rs
                continue
            feasible.append(info)
            if len(feasible) >= want:
                break
        self._next_start = (start + evaluated) if n else 0
        if not feasible:
            reasons = dict(static_bad)
            reasons.update(dyn_bad)
            raise FitError(p, num_all, reasons)
        if len(feasible) == 1:
            return Placement(feasible[0].name, evaluated + len(static_bad), 1)
        zone_counts = None
        if p.owner and self.zone_owner:
            zone_counts = {z: o.get(p.owner, 0) for z, o in self.zone_owner.items()}
        scores = score_nodes(p, feasible, state, zone_counts)
        best = max(range(len(feasible)), key=scores.__getitem__)
        return Placement(feasible[best].name, evaluated + len(static_bad), len(feasible))


def _zone(info: NodeInfo) -> str | None:
    return info.labels.get(ZONE) or info.labels.get(ZONE_BETA)
