"""The scheduler's pure part, as kube-scheduler's framework plugins: what a pod asks for
(``PodInfo``), what a node holds (``NodeInfo``, kept up to date incrementally), filters that say
why a node is unfit, and scores that rank the nodes left. No I/O here: everything is a function
of the pod and the nodes, so the tests call it with plain dictionaries.

Reasons are worded as kube-scheduler words them, so ``kubectl describe pod`` reads the same.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubemodel.errors import FieldError
from kubemodel.quantity import parse_quantity
from orchestrator.client.labels import label_selector_matches, requirement_matches

__all__ = [
    "CycleState",
    "FitError",
    "NodeInfo",
    "PodInfo",
    "cycle_state",
    "filter_node",
    "fit_message",
    "num_nodes_to_find",
    "owner_spread_scores",
    "pod_info",
    "resource_scores",
    "score_nodes",
    "select_victims",
]

Obj = dict[str, Any]

MAX_SCORE = 100
# Default weights of kube-scheduler's score plugins (the default profile).
WEIGHTS = {
    "NodeResourcesFit": 1,
    "NodeResourcesBalancedAllocation": 1,
    "InterPodAffinity": 2,
    "NodeAffinity": 2,
    "PodTopologySpread": 2,
    "TaintToleration": 3,
    "SelectorSpread": 1,
}
# What a container without requests counts for when scoring (kube's non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
ZONE_BETA = "failure-domain.beta.kubernetes.io/zone"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"

# Filter reasons, as kube-scheduler words them.
R_NODE_NAME = "node(s) didn't match the requested node name"
R_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
R_VOLUME_AFFINITY = "node(s) had volume node affinity conflict"
R_NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
R_UNSCHEDULABLE = "node(s) were unschedulable"
R_PORTS = "node(s) didn't have free ports for the requested pod ports"
R_TOO_MANY_PODS = "Too many pods"
R_SPREAD = "node(s) didn't match pod topology spread constraints"
R_SPREAD_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
R_POD_AFFINITY = "node(s) didn't match pod affinity rules"
R_POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
R_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
R_NOT_HELPFUL = "Preemption is not helpful for scheduling"
R_NO_VICTIMS = "No preemption victims found for incoming pod"
# Failures that removing pods cannot cure (kube's UnschedulableAndUnresolvable).
UNRESOLVABLE = frozenset(
    {
        R_NODE_NAME,
        R_AFFINITY,
        R_VOLUME_AFFINITY,
        R_NO_VOLUME,
        R_UNSCHEDULABLE,
        R_SPREAD_LABEL,
        R_POD_AFFINITY,
    }
)


def _untolerated(key: str, value: str) -> str:
    return f"node(s) had untolerated taint {{{key}: {value}}}"


def _insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


# ---------------------------------------------------------------- quantities


def _milli(v: Any) -> int:
    return _quantity(v, True) if isinstance(v, str | int | float) else 0


def _whole(v: Any) -> int:
    return _quantity(v, False) if isinstance(v, str | int | float) else 0


@functools.lru_cache(maxsize=4096)  # pods repeat the same few quantities
def _quantity(v: str | int | float, milli: bool) -> int:
    try:
        a = parse_quantity(v)
    except FieldError:
        return 0
    return a.milli() if milli else a.ceil()


def _amounts(resources: Mapping[str, Any] | None) -> dict[str, int]:
    """cpu in millicores, everything else in whole units."""
    out: dict[str, int] = {}
    for name, v in (resources or {}).items():
        out[name] = _milli(v) if name == "cpu" else _whole(v)
    return out


def _add_into(acc: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        acc[k] = acc.get(k, 0) + v


def _max_into(acc: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        if v > acc.get(k, 0):
            acc[k] = v


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """What the pod takes on a node, as Kubernetes counts it: the larger of the app containers'
    sum and the largest init container (sidecars, restartPolicy Always, run beside both), plus
    the pod overhead."""
    apps: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add_into(apps, _amounts((c.get("resources") or {}).get("requests")))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        req = _amounts((c.get("resources") or {}).get("requests"))
        if c.get("restartPolicy") == "Always":
            _add_into(sidecars, req)
            _max_into(init_peak, sidecars)
        else:
            during = dict(sidecars)
            _add_into(during, req)
            _max_into(init_peak, during)
    total = dict(apps)
    _add_into(total, sidecars)
    _max_into(total, init_peak)
    _add_into(total, _amounts(spec.get("overhead")))
    out = {k: total.pop(k) for k in _FIRST if total.get(k)}  # then the rest, sorted
    out.update((k, total[k]) for k in sorted(total) if total[k])
    return out


_FIRST = ("cpu", "memory", "ephemeral-storage")


def _non_zero(spec: Mapping[str, Any]) -> tuple[int, int]:
    """cpu and memory for scoring: a container that asks for none counts as 100m / 200Mi."""
    cpu = mem = 0
    for c in spec.get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += _milli(req["cpu"]) if "cpu" in req else DEFAULT_MILLI_CPU
        mem += _whole(req["memory"]) if "memory" in req else DEFAULT_MEMORY
    return cpu, mem


# ---------------------------------------------------------------- pods


@dataclass(slots=True, eq=False)
class PodInfo:
    """What scheduling needs of one pod, computed once from its object."""

    key: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    priority: int
    requests: dict[str, int]  # cpu in millicores, others whole
    nz_cpu: int
    nz_mem: int
    ports: tuple[tuple[str, str, int], ...]  # (hostIP, protocol, hostPort)
    tolerations: tuple[Obj, ...]
    node_name: str  # spec.nodeName (set for assigned pods)
    node_selector: dict[str, str]
    required_terms: tuple[Obj, ...] | None  # requiredDuringScheduling... nodeSelectorTerms
    preferred_terms: tuple[Obj, ...]
    spread: tuple[Obj, ...]  # topologySpreadConstraints
    affinity: tuple[Obj, ...]  # required pod affinity terms
    anti_affinity: tuple[Obj, ...]  # required pod anti-affinity terms
    preferred_affinity: tuple[Obj, ...]  # weighted terms
    preferred_anti_affinity: tuple[Obj, ...]
    owner: str  # the controller's uid ("" when none)
    preemption_never: bool
    terminating: bool  # metadata.deletionTimestamp is set
    nominated: str  # status.nominatedNodeName
    obj: Obj = field(repr=False)
    # VolumeBinding: for each claim whose volume is pinned (its nodeAffinity, or the node
    # selected for it), the node selector terms one of which a node must match
    volume_terms: tuple[tuple[Obj, ...], ...] = ()
    # for each unbound claim that waits for its first consumer and has no provisioner: the
    # node terms of the volumes it could be bound to (one must match; none: no node fits)
    unbound_terms: tuple[tuple[Obj, ...], ...] = ()

    @property
    def has_pod_affinity(self) -> bool:
        return bool(
            self.affinity
            or self.anti_affinity
            or self.preferred_affinity
            or self.preferred_anti_affinity
        )


def pod_info(pod: Obj) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ports: list[tuple[str, str, int]] = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for p in c.get("ports") or []:
            hp = p.get("hostPort")
            if hp:
                ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(hp)))
    aff = spec.get("affinity") or {}
    na = aff.get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    pa = aff.get("podAffinity") or {}
    paa = aff.get("podAntiAffinity") or {}
    owner = ""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            owner = str(ref.get("uid") or "")
            break
    nz_cpu, nz_mem = _non_zero(spec)
    ns = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    return PodInfo(
        key=f"{ns}/{name}",
        namespace=ns,
        name=name,
        uid=str(meta.get("uid") or ""),
        labels=dict(meta.get("labels") or {}),
        priority=int(spec.get("priority") or 0),
        requests=pod_requests(spec),
        nz_cpu=nz_cpu,
        nz_mem=nz_mem,
        ports=tuple(ports),
        tolerations=tuple(spec.get("tolerations") or ()),
        node_name=str(spec.get("nodeName") or ""),
        node_selector=dict(spec.get("nodeSelector") or {}),
        required_terms=tuple(req.get("nodeSelectorTerms") or ()) if req else None,
        preferred_terms=tuple(na.get("preferredDuringSchedulingIgnoredDuringExecution") or ()),
        spread=tuple(spec.get("topologySpreadConstraints") or ()),
        affinity=tuple(pa.get("requiredDuringSchedulingIgnoredDuringExecution") or ()),
        anti_affinity=tuple(paa.get("requiredDuringSchedulingIgnoredDuringExecution") or ()),
        preferred_affinity=tuple(pa.get("preferredDuringSchedulingIgnoredDuringExecution") or ()),
        preferred_anti_affinity=tuple(
            paa.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        ),
        owner=owner,
        preemption_never=spec.get("preemptionPolicy") == "Never",
        terminating=bool(meta.get("deletionTimestamp")),
        nominated=str((pod.get("status") or {}).get("nominatedNodeName") or ""),
        obj=pod,
    )


# ---------------------------------------------------------------- nodes


def _ready_taint(node: Obj, taints: Sequence[Obj]) -> Obj | None:
    """A node whose Ready condition is not True is treated as the node lifecycle controller
    taints it (not-ready for False or absent, unreachable for Unknown), unless it already is."""
    ready = None
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c.get("status")
    if ready == "True":
        return None
    key = TAINT_UNREACHABLE if ready == "Unknown" else TAINT_NOT_READY
    if any(t.get("key") in (TAINT_NOT_READY, TAINT_UNREACHABLE) for t in taints):
        return None
    return {"key": key, "effect": "NoSchedule"}


class NodeInfo:
    """One node and the pods on it, with running sums kept as pods come and go."""

    __slots__ = (
        "name",
        "node",
        "labels",
        "allocatable",
        "max_pods",
        "taints",
        "unschedulable",
        "requested",
        "nz_cpu",
        "nz_mem",
        "pods",
        "ports",
        "owners",
        "anti_affinity_pods",
        "affinity_pods",
        "generation",
    )

    def __init__(self, node: Obj) -> None:
        self.requested: dict[str, int] = {}
        self.nz_cpu = 0
        self.nz_mem = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: Counter[tuple[str, str, int]] = Counter()
        self.owners: Counter[str] = Counter()
        self.anti_affinity_pods = 0  # pods with required anti-affinity terms
        self.affinity_pods = 0  # pods with any pod (anti-)affinity
        self.generation = 0
        self.set_node(node)

    def set_node(self, node: Obj) -> None:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.name: str = str(meta.get("name") or "")
        self.node = node
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = _amounts(alloc)
        self.max_pods = self.allocatable.pop("pods", 110) if "pods" in alloc else 110
        taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
        extra = _ready_taint(node, taints)
        if extra is not None:
            taints.append(extra)
        self.taints: tuple[Obj, ...] = tuple(taints)
        self.unschedulable = bool(spec.get("unschedulable"))
        self.generation += 1

    def add_pod(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove_pod(p.key)
        self.pods[p.key] = p
        _add_into(self.requested, p.requests)
        self.nz_cpu += p.nz_cpu
        self.nz_mem += p.nz_mem
        for port in p.ports:
            self.ports[port] += 1
        if p.owner:
            self.owners[p.owner] += 1
        if p.anti_affinity:
            self.anti_affinity_pods += 1
        if p.has_pod_affinity:
            self.affinity_pods += 1
        self.generation += 1

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) - v
        self.nz_cpu -= p.nz_cpu
        self.nz_mem -= p.nz_mem
        for port in p.ports:
            self.ports[port] -= 1
            if self.ports[port] <= 0:
                del self.ports[port]
        if p.owner:
            self.owners[p.owner] -= 1
            if self.owners[p.owner] <= 0:
                del self.owners[p.owner]
        if p.anti_affinity:
            self.anti_affinity_pods -= 1
        if p.has_pod_affinity:
            self.affinity_pods -= 1
        self.generation += 1
        return p

    def clone(self) -> NodeInfo:
        """A copy whose pods can be added and removed without touching this one."""
        c = NodeInfo.__new__(NodeInfo)
        for s in NodeInfo.__slots__:
            setattr(c, s, getattr(self, s))
        c.requested = dict(self.requested)
        c.pods = dict(self.pods)
        c.ports = Counter(self.ports)
        c.owners = Counter(self.owners)
        return c


# ---------------------------------------------------------------- selectors


def node_selector_term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its matchExpressions (labels) and matchFields (metadata.name)
    hold; an empty term matches nothing, as in Kubernetes."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for e in exprs:
        if not requirement_matches(e, node.labels.get(e.get("key", ""))):
            return False
    for f in fields:
        if f.get("key") != "metadata.name" or not requirement_matches(f, node.name):
            return False
    return True


def node_affinity_fits(p: PodInfo, node: NodeInfo) -> bool:
    for k, v in p.node_selector.items():
        if node.labels.get(k) != v:
            return False
    if p.required_terms is not None:
        return any(node_selector_term_matches(t, node) for t in p.required_terms)
    return True


def tolerates(tol: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """corev1 Toleration.ToleratesTaint."""
    eff = tol.get("effect") or ""
    if eff and eff != taint.get("effect"):
        return False
    key = tol.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(
    p: PodInfo, node: NodeInfo, effects: Iterable[str] = ("NoSchedule", "NoExecute")
) -> Obj | None:
    eff = tuple(effects)
    for t in node.taints:
        if t.get("effect") in eff and not any(tolerates(tol, t) for tol in p.tolerations):
            return t
    return None


def _ports_conflict(want: tuple[str, str, int], have: Iterable[tuple[str, str, int]]) -> bool:
    ip, proto, port = want
    for hip, hproto, hport in have:
        if hport == port and hproto == proto and (ip == hip or "0.0.0.0" in (ip, hip)):
            return True
    return False


# ---------------------------------------------------------------- filters


def fit_resources(p: PodInfo, node: NodeInfo) -> list[str]:
    """NodeResourcesFit: every resource that does not fit, and the pod count."""
    out: list[str] = []
    if len(node.pods) + 1 > node.max_pods:
        out.append(R_TOO_MANY_PODS)
    if not p.requests:
        return out
    req = node.requested
    alloc = node.allocatable
    for name, want in p.requests.items():  # cpu, memory, ephemeral-storage, then the rest
        if want > alloc.get(name, 0) - req.get(name, 0):
            out.append(_insufficient(name))
    return out


def filter_static(p: PodInfo, node: NodeInfo) -> list[str]:
    """The filters that depend on the node object only, not on the pods on it: node name,
    unschedulable, node affinity/selector, taints (NoSchedule, NoExecute; the not-ready taint
    of a node that is not Ready). Kube-scheduler's order: the first failure is the reason."""
    if p.node_name and p.node_name != node.name:
        return [R_NODE_NAME]
    if node.unschedulable and not any(
        tolerates(tol, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"})
        for tol in p.tolerations
    ):
        return [R_UNSCHEDULABLE]
    if not node_affinity_fits(p, node):
        return [R_AFFINITY]
    for terms in p.volume_terms:
        if not any(node_selector_term_matches(t, node) for t in terms):
            return [R_VOLUME_AFFINITY]
    for terms in p.unbound_terms:
        if not any(node_selector_term_matches(t, node) for t in terms):
            return [R_NO_VOLUME]
    t = untolerated_taint(p, node)
    if t is not None:
        return [_untolerated(str(t.get("key") or ""), str(t.get("value") or ""))]
    return []


def filter_dynamic(p: PodInfo, node: NodeInfo, state: CycleState | None) -> list[str]:
    """The filters that depend on the pods on the node: ports, resources, topology spread and
    inter-pod affinity."""
    if p.ports and node.ports and any(_ports_conflict(w, node.ports) for w in p.ports):
        return [R_PORTS]
    fit = fit_resources(p, node)
    if fit:
        return fit
    if state is not None:
        r = state.filter(node)
        if r:
            return [r]
    return []


def filter_node(p: PodInfo, node: NodeInfo, state: CycleState | None = None) -> list[str]:
    """Why ``node`` cannot take ``p`` (empty: it can)."""
    return filter_static(p, node) or filter_dynamic(p, node, state)


# ---------------------------------------------------------------- topology state


def _term_matches(
    term: Mapping[str, Any],
    owner_ns: str,
    target: PodInfo,
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> bool:
    """A pod affinity term against a pod: its namespaces (the listed ones and those whose
    labels match namespaceSelector, {} meaning all; neither: the term owner's own), then
    its labelSelector."""
    names = term.get("namespaces") or []
    sel = term.get("namespaceSelector")
    if not names and sel is None:
        in_ns = target.namespace == owner_ns
    else:
        in_ns = target.namespace in names or (
            sel is not None
            and label_selector_matches(sel, (ns_labels or {}).get(target.namespace, {}))
        )
    return in_ns and label_selector_matches(term.get("labelSelector"), target.labels)


def _weighted(term: Mapping[str, Any]) -> tuple[int, Obj]:
    return int(term.get("weight") or 0), term.get("podAffinityTerm") or {}


@dataclass
class CycleState:
    """What topology spread and inter-pod affinity computed once per pod from all nodes
    (kube-scheduler's PreFilter): counts per topology domain."""

    pod: PodInfo
    # Per DoNotSchedule/ScheduleAnyway constraint: counts of matching pods per domain value,
    # over the nodes eligible for it.
    hard_spread: list[tuple[Obj, dict[str, int], bool]] = field(default_factory=list)
    soft_spread: list[tuple[Obj, dict[str, int], bool]] = field(default_factory=list)
    # (topologyKey, value) -> count of pods matching each required affinity term (all terms).
    affinity_counts: list[dict[str, int]] = field(default_factory=list)
    affinity_none_exists: bool = False
    anti_counts: list[dict[str, int]] = field(default_factory=list)
    # (topologyKey, value) pairs forbidden by existing pods' required anti-affinity.
    existing_anti: set[tuple[str, str]] = field(default_factory=set)
    # Preferred inter-pod affinity: (topologyKey, value) -> weight.
    preferred: dict[tuple[str, str], int] = field(default_factory=dict)

    def filter(self, node: NodeInfo) -> str:
        labels = node.labels
        if self.existing_anti:
            for key, value in labels.items():
                if (key, value) in self.existing_anti:
                    return R_EXISTING_ANTI
        for i, term in enumerate(self.pod.affinity):
            key = term.get("topologyKey", "")
            if key not in labels:
                return R_POD_AFFINITY
            if not self.affinity_none_exists and not self.affinity_counts[i].get(labels[key]):
                return R_POD_AFFINITY
        for i, term in enumerate(self.pod.anti_affinity):
            key = term.get("topologyKey", "")
            if key in labels and self.anti_counts[i].get(labels[key]):
                return R_POD_ANTI_AFFINITY
        for c, counts, self_match in self.hard_spread:
            key = c.get("topologyKey", "")
            if key not in labels:
                return R_SPREAD_LABEL
            lowest = min(counts.values()) if counts else 0
            min_domains = int(c.get("minDomains") or 1)
            if len(counts) < min_domains:
                lowest = 0
            skew = counts.get(labels[key], 0) + (1 if self_match else 0) - lowest
            if skew > int(c.get("maxSkew") or 1):
                return R_SPREAD
        return ""


def _spread_selector_matches(c: Mapping[str, Any], p: PodInfo, target: PodInfo) -> bool:
    sel = c.get("labelSelector")
    labels = target.labels
    keys = c.get("matchLabelKeys") or []
    if keys:
        extra = {k: p.labels[k] for k in keys if k in p.labels}
        if any(labels.get(k) != v for k, v in extra.items()):
            return False
    return label_selector_matches(sel, labels)


def cycle_state(
    p: PodInfo,
    nodes: Iterable[NodeInfo],
    any_anti: bool,
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> CycleState | None:
    """The topology counts ``p`` needs, from every node; None when it needs none (the common
    case: no spread constraints, no pod affinity, no existing pod with anti-affinity)."""
    if not (p.spread or p.has_pod_affinity or any_anti):
        return None
    st = CycleState(p)
    nodes = list(nodes)
    for c in p.spread:
        counts: dict[str, int] = {}
        key = c.get("topologyKey", "")
        for n in nodes:
            if key not in n.labels:
                continue
            if c.get("nodeAffinityPolicy", "Honor") == "Honor" and not node_affinity_fits(p, n):
                continue
            if c.get("nodeTaintsPolicy") == "Honor" and untolerated_taint(p, n, ("NoSchedule",)):
                continue
            v = n.labels[key]
            counts[v] = counts.get(v, 0) + sum(
                1
                for q in n.pods.values()
                if q.namespace == p.namespace and _spread_selector_matches(c, p, q)
            )
        self_match = _spread_selector_matches(c, p, p)
        if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule":
            st.hard_spread.append((c, counts, self_match))
        else:
            st.soft_spread.append((c, counts, self_match))
    st.affinity_counts = [{} for _ in p.affinity]
    st.anti_counts = [{} for _ in p.anti_affinity]
    matched_any = False
    for n in nodes:
        if not n.pods or not (p.has_pod_affinity or n.affinity_pods):
            continue  # nothing on it that inter-pod affinity looks at
        for q in n.pods.values():
            for i, term in enumerate(p.affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, p.namespace, q, ns_labels):
                    st.affinity_counts[i][n.labels[key]] = (
                        st.affinity_counts[i].get(n.labels[key], 0) + 1
                    )
                    matched_any = True
            for i, term in enumerate(p.anti_affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, p.namespace, q, ns_labels):
                    st.anti_counts[i][n.labels[key]] = st.anti_counts[i].get(n.labels[key], 0) + 1
            for term in q.anti_affinity:
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, q.namespace, p, ns_labels):
                    st.existing_anti.add((key, n.labels[key]))
            for w, term in map(_weighted, p.preferred_affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, p.namespace, q, ns_labels):
                    k = (key, n.labels[key])
                    st.preferred[k] = st.preferred.get(k, 0) + w
            for w, term in map(_weighted, p.preferred_anti_affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, p.namespace, q, ns_labels):
                    k = (key, n.labels[key])
                    st.preferred[k] = st.preferred.get(k, 0) - w
            # Symmetry: existing pods' preferred terms that the incoming pod matches.
            for w, term in map(_weighted, q.preferred_affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, q.namespace, p, ns_labels):
                    k = (key, n.labels[key])
                    st.preferred[k] = st.preferred.get(k, 0) + w
            for w, term in map(_weighted, q.preferred_anti_affinity):
                key = term.get("topologyKey", "")
                if key in n.labels and _term_matches(term, q.namespace, p, ns_labels):
                    k = (key, n.labels[key])
                    st.preferred[k] = st.preferred.get(k, 0) - w
    # The first pod of a group that asks to be with its own kind: no pod matches yet, and the
    # pod matches its own terms: it may go anywhere the topology keys exist.
    if p.affinity and not matched_any:
        st.affinity_none_exists = all(
            _term_matches(t, p.namespace, p, ns_labels) for t in p.affinity
        )
    return st


# ---------------------------------------------------------------- scores


def resource_scores(
    cpu: int,
    mem: int,
    cpu_cap: np.ndarray,
    mem_cap: np.ndarray,
    cpu_used: np.ndarray,
    mem_used: np.ndarray,
) -> np.ndarray:
    """NodeResourcesFit (least allocated) + NodeResourcesBalancedAllocation, weighted, for
    many nodes at once: cpu and memory as the pod's non-zero requests add to each node's.

    Least allocated: per resource ``(capacity - requested) * 100 / capacity`` (0 when over),
    the mean of cpu and memory. Balanced: ``(1 - std) * 100`` of the two used fractions
    (capped at 1), the std of two values being half their difference."""
    rc = cpu_used + cpu
    rm = mem_used + mem
    ok_c = (cpu_cap > 0) & (rc <= cpu_cap)
    ok_m = (mem_cap > 0) & (rm <= mem_cap)
    safe_c = np.maximum(cpu_cap, 1)
    safe_m = np.maximum(mem_cap, 1)
    least_c = np.where(ok_c, (cpu_cap - rc) * MAX_SCORE // safe_c, 0)
    least_m = np.where(ok_m, (mem_cap - rm) * MAX_SCORE // safe_m, 0)
    least = (least_c + least_m) // 2
    f1 = np.minimum(1.0, rc / safe_c)
    f2 = np.minimum(1.0, rm / safe_m)
    balanced = ((1 - np.abs(f1 - f2) / 2) * MAX_SCORE).astype(np.int64)
    balanced = np.where((cpu_cap > 0) & (mem_cap > 0), balanced, 0)
    return (
        least * WEIGHTS["NodeResourcesFit"] + balanced * WEIGHTS["NodeResourcesBalancedAllocation"]
    )


def resource_score(
    cpu: int, mem: int, cpu_cap: int, mem_cap: int, cpu_used: int, mem_used: int
) -> int:
    """``resource_scores`` of one node, in Python numbers: the same operations on the same
    float64 values, so the same score."""
    rc = cpu_used + cpu
    rm = mem_used + mem
    safe_c = max(cpu_cap, 1)
    safe_m = max(mem_cap, 1)
    least_c = (cpu_cap - rc) * MAX_SCORE // safe_c if 0 < cpu_cap and rc <= cpu_cap else 0
    least_m = (mem_cap - rm) * MAX_SCORE // safe_m if 0 < mem_cap and rm <= mem_cap else 0
    least = (least_c + least_m) // 2
    balanced = 0
    if cpu_cap > 0 and mem_cap > 0:
        f1 = min(1.0, float(rc) / float(safe_c))
        f2 = min(1.0, float(rm) / float(safe_m))
        balanced = int((1 - abs(f1 - f2) / 2) * MAX_SCORE)
    return (
        least * WEIGHTS["NodeResourcesFit"] + balanced * WEIGHTS["NodeResourcesBalancedAllocation"]
    )


def _resource_scores(p: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
    def col(values: Iterable[int]) -> np.ndarray:
        return np.fromiter(values, dtype=np.int64, count=len(nodes))

    out = resource_scores(
        p.nz_cpu,
        p.nz_mem,
        col(n.allocatable.get("cpu", 0) for n in nodes),
        col(n.allocatable.get("memory", 0) for n in nodes),
        col(n.nz_cpu for n in nodes),
        col(n.nz_mem for n in nodes),
    )
    return [int(x) for x in out]


def _preferred_node_affinity(p: PodInfo, n: NodeInfo) -> int:
    s = 0
    for t in p.preferred_terms:
        if node_selector_term_matches(t.get("preference") or {}, n):
            s += int(t.get("weight") or 0)
    return s


def _intolerable_prefer_no_schedule(p: PodInfo, n: NodeInfo) -> int:
    tols = [
        t for t in p.tolerations if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"
    ]
    return sum(
        1
        for t in n.taints
        if t.get("effect") == "PreferNoSchedule" and not any(tolerates(x, t) for x in tols)
    )


def _normalize(raw: list[int], reverse: bool = False) -> list[int]:
    """Scale to 0..MAX_SCORE by the highest (kube's DefaultNormalizeScore)."""
    top = max(raw) if raw else 0
    if top == 0:
        return [MAX_SCORE if reverse else 0 for _ in raw]
    if reverse:
        return [MAX_SCORE - MAX_SCORE * s // top for s in raw]
    return [MAX_SCORE * s // top for s in raw]


def _min_max(raw: list[int]) -> list[int]:
    lo, hi = min(raw), max(raw)
    if hi == lo:
        return [0 for _ in raw]
    return [MAX_SCORE * (s - lo) // (hi - lo) for s in raw]


def score_nodes(
    p: PodInfo,
    nodes: Sequence[NodeInfo],
    state: CycleState | None = None,
    zone_counts: Mapping[str, int] | None = None,
) -> list[int]:
    """The weighted sum of every score plugin for each node (same order as ``nodes``)."""
    totals = _resource_scores(p, nodes)
    if p.preferred_terms:
        raw = [_preferred_node_affinity(p, n) for n in nodes]
        for i, s in enumerate(_normalize(raw)):
            totals[i] += s * WEIGHTS["NodeAffinity"]
    if any(t.get("effect") == "PreferNoSchedule" for n in nodes for t in n.taints):
        raw = [_intolerable_prefer_no_schedule(p, n) for n in nodes]
        for i, s in enumerate(_normalize(raw, reverse=True)):
            totals[i] += s * WEIGHTS["TaintToleration"]
    else:
        for i in range(len(totals)):
            totals[i] += MAX_SCORE * WEIGHTS["TaintToleration"]
    if p.owner and not p.spread:
        for i, s in enumerate(_owner_spread(p, nodes, zone_counts)):
            totals[i] += s * WEIGHTS["SelectorSpread"]
    if state is not None and state.soft_spread:
        raw = []
        for n in nodes:
            s = 0
            for c, counts, _ in state.soft_spread:
                key = c.get("topologyKey", "")
                if key in n.labels:
                    s += counts.get(n.labels[key], 0)
            raw.append(s)
        for i, s in enumerate(_normalize(raw, reverse=True)):
            totals[i] += s * WEIGHTS["PodTopologySpread"]
    if state is not None and state.preferred:
        raw = [sum(state.preferred.get((k, v), 0) for k, v in n.labels.items()) for n in nodes]
        for i, s in enumerate(_min_max(raw)):
            totals[i] += s * WEIGHTS["InterPodAffinity"]
    return totals


def owner_spread_scores(counts: np.ndarray) -> np.ndarray:
    """SelectorSpread per node: fewer pods of the same owner scores higher."""
    top = int(counts.max()) if len(counts) else 0
    if top == 0:
        return np.full(len(counts), MAX_SCORE, dtype=np.int64)
    return (MAX_SCORE * (top - counts) / top).astype(np.int64)


def _owner_spread(
    p: PodInfo, nodes: Sequence[NodeInfo], zone_counts: Mapping[str, int] | None
) -> list[int]:
    """SelectorSpread: fewer pods of the same owner on the node (and in its zone, weighted
    2/3 when nodes have zones) scores higher."""
    counts = np.fromiter((n.owners.get(p.owner, 0) for n in nodes), np.int64, len(nodes))
    node_scores = owner_spread_scores(counts)
    if not zone_counts:
        return [int(s) for s in node_scores]
    ztop = max(zone_counts.values())
    out = []
    for n, s in zip(nodes, node_scores, strict=True):
        z = n.labels.get(ZONE) or n.labels.get(ZONE_BETA)
        if z is None:
            out.append(int(s))
            continue
        zs = MAX_SCORE if ztop == 0 else MAX_SCORE * (ztop - zone_counts.get(z, 0)) // ztop
        out.append(int(s) // 3 + zs * 2 // 3)
    return out


# ---------------------------------------------------------------- sampling and messages


def num_nodes_to_find(num_all: int, percentage: int = 0) -> int:
    """kube-scheduler's numFeasibleNodesToFind: every node up to 100; above, an adaptive
    percentage (50% minus 1% per 125 nodes, at least 5%), and never fewer than 100."""
    min_feasible = 100
    if num_all < min_feasible:
        return num_all
    pct = percentage
    if pct <= 0:
        pct = max(5, 50 - num_all // 125)
    if pct >= 100:
        return num_all
    return max(min_feasible, num_all * pct // 100)


class FitError(Exception):
    """No node fits: the reasons per node, and what preemption said."""

    def __init__(self, pod: PodInfo, num_nodes: int, reasons: Mapping[str, Sequence[str]]):
        self.pod = pod
        self.num_nodes = num_nodes
        self.reasons = dict(reasons)  # node -> reasons
        self.post_filter = ""
        super().__init__(pod.key)

    def __str__(self) -> str:
        return fit_message(self.num_nodes, self.reasons, self.post_filter)


def _histogram(reasons: Mapping[str, Sequence[str]]) -> str:
    counts: Counter[str] = Counter()
    for rs in reasons.values():
        for r in rs:
            counts[r] += 1
    return ", ".join(sorted(f"{v} {k}" for k, v in counts.items()))


def fit_message(num_nodes: int, reasons: Mapping[str, Sequence[str]], post_filter: str = "") -> str:
    """``0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {k: v}.
    preemption: ...`` as kube-scheduler's FitError words it (reasons counted, sorted as text)."""
    if num_nodes == 0:
        return "no nodes available to schedule pods"
    msg = f"0/{num_nodes} nodes are available:"
    hist = _histogram(reasons)
    if hist:
        msg += f" {hist}."
    if post_filter:
        msg += f" {post_filter}."
    return msg


# ---------------------------------------------------------------- preemption


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]

    def key(self) -> tuple[int, int, int]:
        # kube's pickOneNodeForPreemption order, shortened: the lowest highest-victim priority,
        # then the smallest sum of priorities, then the fewest victims.
        top = max((v.priority for v in self.victims), default=-(2**31))
        return (top, sum(v.priority for v in self.victims), len(self.victims))


def select_victims(
    p: PodInfo,
    node: NodeInfo,
    all_nodes: Sequence[NodeInfo],
    any_anti: bool,
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[PodInfo] | None:
    """The fewest lower-priority pods to remove from ``node`` so that ``p`` fits there (kube's
    SelectVictimsOnNode: remove every lower-priority pod, then give back as many as still let
    the pod fit, highest priority first); None when even removing all of them is not enough."""
    lower = [q for q in node.pods.values() if q.priority < p.priority]
    if not lower:
        return None
    trial = node.clone()
    for q in lower:
        trial.remove_pod(q.key)

    def fits() -> bool:
        others = [trial if n.name == trial.name else n for n in all_nodes]
        return not filter_node(p, trial, cycle_state(p, others, any_anti, ns_labels))

    if not fits():
        return None
    victims: list[PodInfo] = []
    for q in sorted(lower, key=lambda q: -q.priority):
        trial.add_pod(q)
        if not fits():
            trial.remove_pod(q.key)
            victims.append(q)
    return victims


def preempt(
    p: PodInfo,
    err: FitError,
    nodes: Mapping[str, NodeInfo],
    any_anti: bool,
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Candidate | None:
    """Pick a node where evicting lower-priority pods lets ``p`` fit; set ``err.post_filter``
    to kube's wording when none is found."""
    n_all = err.num_nodes
    if p.preemption_never:
        err.post_filter = "preemption: not eligible due to preemptionPolicy=Never"
        return None
    waiting_on = nodes.get(p.nominated) if p.nominated else None
    if waiting_on is not None and any(
        q.terminating and q.priority < p.priority for q in waiting_on.pods.values()
    ):
        # Its victims are still going: no more are taken (kube's PodEligibleToPreemptOthers).
        err.post_filter = "preemption: not eligible due to a terminating pod on the nominated node"
        return None
    post: dict[str, list[str]] = {}
    best: Candidate | None = None
    values = list(nodes.values())
    # kube's dry run stops once it has max(10% of the nodes, 100) candidates.
    enough = max(n_all // 10, 100)
    found = 0
    for name, rs in err.reasons.items():
        if found >= enough:
            break
        if any(r in UNRESOLVABLE or r.startswith("node(s) had untolerated taint") for r in rs):
            post[name] = [R_NOT_HELPFUL]
            continue
        node = nodes.get(name)
        victims = select_victims(p, node, values, any_anti, ns_labels) if node is not None else None
        if not victims:
            post[name] = [R_NO_VICTIMS]
            continue
        found += 1
        cand = Candidate(name, victims)
        if best is None or cand.key() < best.key():
            best = cand
    if best is None:
        err.post_filter = "preemption: " + fit_message(n_all, post)
    return best
