"""The scheduler's view of the cluster (kube-scheduler's cache): a NodeInfo per node kept up to
date incrementally as nodes and assigned pods come and go, pods assumed on a node before their
binding is confirmed, and ``schedule``: filter, sample, score, pick. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .plugins import (
    MAX_SCORE,
    R_NODE_NAME,
    WEIGHTS,
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
    owner_spread_scores,
    resource_score,
    resource_scores,
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
        repr(p.volume_terms),
        repr(p.unbound_terms),
    )


def _static_inputs(info: NodeInfo) -> tuple[object, ...]:
    """What the node-only filters read of a node."""
    return (info.labels, info.taints, info.unschedulable)


def _prefers(info: NodeInfo) -> int:
    return int(any(t.get("effect") == "PreferNoSchedule" for t in info.taints))


class Cache:
    def __init__(self, percentage_of_nodes_to_score: int = 0, *, fast: bool = True) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._order: list[str] = []  # node names, the round-robin order of filtering
        self._pos: dict[str, int] = {}
        self.pod_node: dict[str, str] = {}  # pod key -> node (assigned or assumed)
        self.assumed: set[str] = set()
        self._pending: dict[str, dict[str, PodInfo]] = {}  # node name -> pods before the node
        self._static: dict[tuple[object, ...], _Static] = {}
        self.node_epoch = 0  # bumped on any node change: the static verdicts are stale
        self.anti_affinity_pods = 0
        self.percentage = percentage_of_nodes_to_score
        self._next_start = 0
        self.zone_owner: dict[str, dict[str, int]] = {}  # zone -> owner uid -> pods
        self.owner_nodes: dict[str, dict[str, int]] = {}  # owner uid -> node name -> pods
        self.prefer_no_schedule_nodes = 0  # nodes with a PreferNoSchedule taint
        self.cols = _Columns()
        self.fast = fast  # the vectorized path for pods only resources tell apart
        # Pods that preempted others, waiting for the room on their node: node -> key -> pod.
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}  # for namespaceSelector
        self._nominated_node: dict[str, str] = {}

    # ------------------------------------------------------------ nodes

    def set_node(self, node: dict[str, object]) -> NodeInfo:
        name = str((node.get("metadata") or {}).get("name"))  # type: ignore[union-attr]
        info = self.nodes.get(name)
        if info is None:
            info = NodeInfo(node)
            self.nodes[name] = info
            self._pos[name] = len(self._order)
            self._order.append(name)
            self.cols.ensure(len(self._order))
            self.cols.write(self._pos[name], info)
            for p in self._pending.pop(name, {}).values():
                self._account(info, p, 1)
        else:
            before = _static_inputs(info)
            self.prefer_no_schedule_nodes -= _prefers(info)
            old_zone = _zone(info)
            for p in info.pods.values():
                self._zone_count(old_zone, p, -1)
            info.set_node(node)
            new_zone = _zone(info)
            for p in info.pods.values():
                self._zone_count(new_zone, p, 1)
            self.cols.write(self._pos[name], info)
            if _static_inputs(info) == before:
                # A status update (a heartbeat, allocatable): the node-only verdicts hold.
                self.prefer_no_schedule_nodes += _prefers(info)
                return info
        self.prefer_no_schedule_nodes += _prefers(info)
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
            self.cols.write(i, self.nodes[last])
        self.prefer_no_schedule_nodes -= _prefers(info)
        # Pods still bound to a deleted node wait for it (or for their own deletion).
        self._pending[name] = dict(info.pods)
        for p in info.pods.values():
            self._zone_count(_zone(info), p, -1)
            self._owner_count(name, p, -1)
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

    def _owner_count(self, node: str, p: PodInfo, delta: int) -> None:
        if not p.owner:
            return
        nodes = self.owner_nodes.setdefault(p.owner, {})
        n = nodes.get(node, 0) + delta
        if n > 0:
            nodes[node] = n
        else:
            nodes.pop(node, None)
            if not nodes:
                del self.owner_nodes[p.owner]

    def _account(self, info: NodeInfo, p: PodInfo, delta: int) -> None:
        if delta > 0:
            info.add_pod(p)
        else:
            info.remove_pod(p.key)
        self.cols.write(self._pos[info.name], info)
        self._zone_count(_zone(info), p, delta)
        self._owner_count(info.name, p, delta)
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

    def confirm(self, key: str, uid: str, node: str) -> bool:
        """The binding of an assumed pod came back from the API as assumed: keep what was
        computed for it (True), or False when it is not that pod on that node."""
        if key not in self.assumed or self.pod_node.get(key) != node:
            return False
        info = self.nodes.get(node)
        p = info.pods.get(key) if info is not None else None
        if p is None or p.uid != uid:
            return False
        self.assumed.discard(key)
        return True

    def nominate(self, p: PodInfo, node: str) -> None:
        """``p`` waits for ``node`` (status.nominatedNodeName): pods of lower or equal priority
        are placed as if it were there already, as kube-scheduler does."""
        self.unnominate(p.key)
        self.nominated.setdefault(node, {})[p.key] = p
        self._nominated_node[p.key] = node

    def unnominate(self, key: str) -> None:
        node = self._nominated_node.pop(key, None)
        if node is not None:
            pods = self.nominated.get(node, {})
            pods.pop(key, None)
            if not pods:
                self.nominated.pop(node, None)

    def _with_nominated(self, p: PodInfo, info: NodeInfo) -> NodeInfo:
        waiting = self.nominated.get(info.name)
        if not waiting:
            return info
        extra = [q for q in waiting.values() if q.key != p.key and q.priority >= p.priority]
        if not extra:
            return info
        trial = info.clone()
        for q in extra:
            trial.add_pod(q)
        return trial

    def forget(self, key: str) -> None:
        if key in self.assumed:
            self.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self.nodes.values())

    # ------------------------------------------------------------ scheduling

    def _static_verdicts(self, p: PodInfo) -> _Static:
        """The nodes that pass the node-only filters (in position order) and why the others
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
            pos = np.fromiter((self._pos[i.name] for i in ok), dtype=np.int64, count=len(ok))
            hit = self._static[shape] = _Static(ok, bad, pos)
        return hit

    def schedule(self, p: PodInfo) -> Placement:
        """The node for ``p``: kube-scheduler's findNodesThatFitPod (filtering in node order
        from a rotating start until enough feasible nodes are found) then prioritizeNodes and
        selectHost. Raises FitError with every node's reasons when none fits."""
        num_all = len(self.nodes)
        if num_all == 0:
            raise FitError(p, 0, {})
        if p.node_name and p.node_name in self.nodes:
            # kube's PreFilter result: only the named node is looked at.
            only = self.nodes[p.node_name]
            static_bad = {n: [R_NODE_NAME] for n in self.nodes if n != p.node_name}
            rs = filter_static(p, only)
            if rs:
                static_bad[p.node_name] = rs
            return self._general(p, [] if rs else [only], static_bad)
        st = self._static_verdicts(p)
        if self.fast and self._fast_ok(p):
            placed = self._fast(p, st)
            if placed is not None:
                return placed
        return self._general(p, st.ok, st.bad)

    def _rotate(self, candidates: list[NodeInfo]) -> int:
        """Where in ``candidates`` (in position order) the rotating start falls."""
        start = self._next_start
        lo, hi = 0, len(candidates)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._pos[candidates[mid].name] < start:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(candidates) else 0

    def _advance(self, last_pos: int, start: int) -> int:
        """Nodes looked at from the start through ``last_pos``; the next start follows it."""
        n = len(self.nodes)
        self._next_start = (last_pos + 1) % n
        return (last_pos - start) % n + 1

    def _general(
        self, p: PodInfo, candidates: list[NodeInfo], static_bad: dict[str, list[str]]
    ) -> Placement:
        num_all = len(self.nodes)
        state: CycleState | None = cycle_state(
            p, self.nodes.values(), self.anti_affinity_pods > 0, self.namespace_labels
        )
        want = num_nodes_to_find(num_all, self.percentage)
        feasible: list[NodeInfo] = []
        dyn_bad: dict[str, list[str]] = {}
        n = len(candidates)
        first = self._rotate(candidates) if n else 0
        start = self._next_start
        last = None
        for i in range(n):
            info = candidates[(first + i) % n]
            last = info
            rs = filter_dynamic(p, self._with_nominated(p, info), state)
            if rs:
                dyn_bad[info.name] = rs
                continue
            feasible.append(info)
            if len(feasible) >= want:
                break
        if len(feasible) >= want and last is not None:
            evaluated = self._advance(self._pos[last.name], start)
        else:
            evaluated = num_all  # every node looked at: the start stays
        if not feasible:
            reasons = dict(static_bad)
            reasons.update(dyn_bad)
            raise FitError(p, num_all, reasons)
        if len(feasible) == 1:
            return Placement(feasible[0].name, evaluated, 1)
        zone_counts = None
        if p.owner and self.zone_owner:
            zone_counts = {z: o.get(p.owner, 0) for z, o in self.zone_owner.items()}
        scores = score_nodes(p, feasible, state, zone_counts)
        best = max(range(len(feasible)), key=scores.__getitem__)
        return Placement(feasible[best].name, evaluated, len(feasible))

    # ------------------------------------------------------------ the fast path

    def _fast_ok(self, p: PodInfo) -> bool:
        """Pods that only the resource filters and scores tell apart (most pods): no host
        ports, no topology or pod affinity, no preferred node affinity, no extended
        resources, nothing in the cluster that scores them otherwise."""
        return not (
            p.ports
            or p.spread
            or p.has_pod_affinity
            or p.preferred_terms
            or self.anti_affinity_pods
            or self.prefer_no_schedule_nodes
            or self.nominated
            or (p.owner and self.zone_owner)
            or any(r not in _COLUMNS for r in p.requests)
        )

    def _fast(self, p: PodInfo, st: _Static) -> Placement | None:
        """The same filters and scores as ``_general`` over the node columns at once; None
        when no node fits (``_general`` then says why, node by node)."""
        idx = st.pos
        if not len(idx):
            return None
        n = len(self._order)
        sc = self._verdicts(p, n)
        if len(idx) == n:  # every node passed the node-only filters: whole columns
            feas = np.flatnonzero(sc.ok)
        else:
            feas = idx[sc.ok[idx]]
        if not len(feas):
            return None
        want = num_nodes_to_find(len(self.nodes), self.percentage)
        start = self._next_start
        k = int(np.searchsorted(feas, start))
        if k:
            feas = np.concatenate((feas[k:], feas[:k]))
        sel = feas[:want]
        if len(sel) >= want:
            evaluated = self._advance(int(sel[-1]), start)
        else:
            evaluated = len(self.nodes)  # every node looked at: the start stays
        if len(sel) == 1:
            return Placement(self._order[int(sel[0])], evaluated, 1)
        total = sc.score[sel]
        total += MAX_SCORE * WEIGHTS["TaintToleration"]
        if p.owner:
            counts = np.zeros(len(self._order), dtype=np.int64)
            for name, n in self.owner_nodes.get(p.owner, {}).items():
                counts[self._pos[name]] = n
            total += owner_spread_scores(counts[sel]) * WEIGHTS["SelectorSpread"]
        best = int(sel[int(np.argmax(total))])
        return Placement(self._order[best], evaluated, len(sel))

    def _verdicts(self, p: PodInfo, n: int) -> _Verdicts:
        """Whether each node has room for ``p`` and its resource score: kept per pod shape
        and brought up to date for the nodes written since (a bind changes one node), not
        computed again over every node for every pod."""
        c = self.cols
        key = (p.nz_cpu, p.nz_mem, tuple(sorted(p.requests.items())))
        sc = c.verdicts.get(key)
        if sc is None or sc.n != n:
            ok = c.free_pods[:n] > 0
            for r, want_r in p.requests.items():
                ok &= c.free[_COLUMNS[r], :n] >= want_r
            score = resource_scores(
                p.nz_cpu, p.nz_mem, c.alloc[0, :n], c.alloc[1, :n], c.nz_cpu[:n], c.nz_mem[:n]
            )
            if len(c.verdicts) >= _SHAPES_KEPT:
                c.verdicts.clear()
            sc = c.verdicts[key] = _Verdicts(n, ok, score, set())
            return sc
        if sc.dirty:
            reqs = [(_COLUMNS[r], want_r) for r, want_r in p.requests.items()]
            free, alloc = c.free, c.alloc
            for i in sc.dirty:
                if i >= n:
                    continue
                sc.ok[i] = c.free_pods[i] > 0 and all(free[col, i] >= w for col, w in reqs)
                sc.score[i] = resource_score(
                    p.nz_cpu,
                    p.nz_mem,
                    int(alloc[0, i]),
                    int(alloc[1, i]),
                    int(c.nz_cpu[i]),
                    int(c.nz_mem[i]),
                )
            sc.dirty.clear()
        return sc


@dataclass
class _Static:
    ok: list[NodeInfo]
    bad: dict[str, list[str]]
    pos: np.ndarray  # the positions of ``ok``


_COLUMNS = {"cpu": 0, "memory": 1, "ephemeral-storage": 2}
_SHAPES_KEPT = 8  # pod shapes whose verdicts over every node are kept up to date


@dataclass
class _Verdicts:
    """For one pod shape, over the first ``n`` node positions: room (``ok``) and resource
    score; ``dirty``: positions written since, to be computed again."""

    n: int
    ok: np.ndarray
    score: np.ndarray
    dirty: set[int]


class _Columns:
    """One row per node position: the numbers the resource filters and scores read."""

    def __init__(self, size: int = 1024) -> None:
        self.alloc = np.zeros((3, size), dtype=np.int64)
        self.free = np.zeros((3, size), dtype=np.int64)  # allocatable - requested
        self.nz_cpu = np.zeros(size, dtype=np.int64)
        self.nz_mem = np.zeros(size, dtype=np.int64)
        self.free_pods = np.zeros(size, dtype=np.int64)  # max pods - pods
        self.verdicts: dict[tuple[object, ...], _Verdicts] = {}  # by pod shape

    def ensure(self, n: int) -> None:
        size = self.free_pods.shape[0]
        if n <= size:
            return
        self.verdicts.clear()
        new = max(n, size * 2)
        self.alloc = np.pad(self.alloc, ((0, 0), (0, new - size)))
        self.free = np.pad(self.free, ((0, 0), (0, new - size)))
        for name in ("nz_cpu", "nz_mem", "free_pods"):
            setattr(self, name, np.pad(getattr(self, name), (0, new - size)))

    def write(self, i: int, info: NodeInfo) -> None:
        alloc, req = info.allocatable, info.requested
        for r, col in _COLUMNS.items():
            a = alloc.get(r, 0)
            self.alloc[col, i] = a
            self.free[col, i] = a - req.get(r, 0)
        self.nz_cpu[i] = info.nz_cpu
        self.nz_mem[i] = info.nz_mem
        self.free_pods[i] = info.max_pods - len(info.pods)
        for v in self.verdicts.values():
            v.dirty.add(i)


def _zone(info: NodeInfo) -> str | None:
    return info.labels.get(ZONE) or info.labels.get(ZONE_BETA)
