"""Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``): the columns
kube-apiserver prints for the kinds kubectl shows most, NAME and AGE for the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["human_duration", "table"]

Obj = dict[str, Any]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _age(obj: Obj, now: datetime) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _col(name: str, typ: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = _col(
    "Age",
    desc="CreationTimestamp is a timestamp representing the server time when this"
    " object was created.",
)


def _pod_row(p: Obj, now: datetime) -> list[Any]:
    spec, status = p.get("spec") or {}, p.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if (w := state.get("waiting")) and w.get("reason"):
            reason = w["reason"]
        elif (t := state.get("terminated")) and t.get("reason"):
            reason = t["reason"]
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        p["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        _age(p, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{len(gates)}" if gates else "<none>",
    ]


def _deploy_row(d: Obj, now: datetime) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    tmpl = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(d, now),
        ",".join(c.get("name", "") for c in tmpl),
        ",".join(c.get("image", "") for c in tmpl),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>",
    ]


def _replicas_row(r: Obj, now: datetime) -> list[Any]:
    """A ReplicaSet's or a ReplicationController's row (its selector a LabelSelector or, for
    the latter, the labels themselves)."""
    spec, status = r.get("spec") or {}, r.get("status") or {}
    tmpl = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = spec.get("selector") or {}
    if r.get("kind") != "ReplicationController":
        sel = sel.get("matchLabels") or {}
    return [
        r["metadata"]["name"],
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(r, now),
        ",".join(c.get("name", "") for c in tmpl),
        ",".join(c.get("image", "") for c in tmpl),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>",
    ]


def _node_row(n: Obj, now: datetime) -> list[Any]:
    status = n.get("status") or {}
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if cond is None else ("Ready" if cond.get("status") == "True" else "NotReady")
    if (n.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (n.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(t: str) -> str:
        return next((a.get("address") for a in addrs if a.get("type") == t), None) or "<none>"

    return [
        n["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        _age(n, now),
        info.get("kubeletVersion", ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _svc_row(s: Obj, now: datetime) -> list[Any]:
    spec = s.get("spec") or {}
    ports = ",".join(
        (f"{p.get('port')}:{p['nodePort']}" if p.get("nodePort") else f"{p.get('port')}")
        + f"/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    ext = ",".join(spec.get("externalIPs") or []) or (
        "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
    )
    sel = spec.get("selector") or {}
    return [
        s["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ext,
        ports or "<none>",
        _age(s, now),
        ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>",
    ]


def _more(items: list[str], limit: int = 3) -> str:
    """printers.go listWithMoreString: the first three, then ``+ N more...``."""
    shown = ",".join(items[:limit])
    if len(items) > limit:
        return f"{shown} + {len(items) - limit} more..."
    return shown or "<unset>"


def _slice_row(e: Obj, now: datetime) -> list[Any]:
    ports = [
        str(p["port"]) if p.get("port") is not None else p.get("name") or "*"
        for p in e.get("ports") or []
    ]
    addrs = [a for ep in e.get("endpoints") or [] for a in ep.get("addresses") or []]
    return [
        e["metadata"]["name"],
        e.get("addressType", ""),
        _more(ports),
        _more(addrs),
        _age(e, now),
    ]


def _binding_row(b: Obj, now: datetime) -> list[Any]:
    ref = b.get("roleRef") or {}
    kinds: dict[str, list[str]] = {"User": [], "Group": [], "ServiceAccount": []}
    for s in b.get("subjects") or []:
        name = s.get("name", "")
        if s.get("kind") == "ServiceAccount":
            name = f"{s.get('namespace', '')}/{name}"
        kinds.setdefault(s.get("kind", ""), []).append(name)
    return [
        b["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _age(b, now),
        ", ".join(kinds["User"]),
        ", ".join(kinds["Group"]),
        ", ".join(kinds["ServiceAccount"]),
    ]


def _pdb_row(p: Obj, now: datetime) -> list[Any]:
    spec, status = p.get("spec") or {}, p.get("status") or {}
    return [
        p["metadata"]["name"],
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        int(status.get("disruptionsAllowed") or 0),
        _age(p, now),
    ]


_CREATED_AT = (
    [NAME, _col("Created At", "date", desc="Time when this object was created.")],
    lambda o, now: [o["metadata"]["name"], (o.get("metadata") or {}).get("creationTimestamp")],
)
_BINDING = (
    [
        NAME,
        _col("Role", desc="Role references the role being granted."),
        AGE,
        _col("Users", priority=1, desc="Users in the binding."),
        _col("Groups", priority=1, desc="Groups in the binding."),
        _col("ServiceAccounts", priority=1, desc="ServiceAccounts in the binding."),
    ],
    _binding_row,
)

TABLES: dict[str, tuple[list[Obj], Callable[[Obj, datetime], list[Any]]]] = {
    "roles": _CREATED_AT,
    "clusterroles": _CREATED_AT,
    "rolebindings": _BINDING,
    "clusterrolebindings": _BINDING,
    "endpointslices": (
        [
            NAME,
            _col("AddressType", desc="The IP protocol for this slice."),
            _col("Ports", desc="The ports of the endpoints in this slice."),
            _col("Endpoints", desc="The endpoints in this slice."),
            AGE,
        ],
        _slice_row,
    ),
    "poddisruptionbudgets": (
        [
            NAME,
            _col("Min Available", desc="The minimum number of pods that must be available."),
            _col("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
            _col("Allowed Disruptions", "integer", desc="How many pods may be disrupted now."),
            AGE,
        ],
        _pdb_row,
    ),
    "pods": (
        [
            NAME,
            _col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", desc="The aggregate status of the containers in this pod."),
            _col("Restarts", "integer", desc="The number of times the containers have restarted."),
            AGE,
            _col("IP", priority=1, desc="IP address allocated to the pod."),
            _col("Node", priority=1, desc="Name of the node the pod is assigned to."),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "namespaces": (
        [NAME, _col("Status"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("phase", "Active"),
            _age(o, now),
        ],
    ),
    "configmaps": (
        [NAME, _col("Data", "integer"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(o, now),
        ],
    ),
    "secrets": (
        [NAME, _col("Type"), _col("Data", "integer"), AGE],
        lambda o, now: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}),
            _age(o, now),
        ],
    ),
    "deployments": (
        [
            NAME,
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _deploy_row,
    ),
    "nodes": (
        [
            NAME,
            _col("Status"),
            _col("Roles"),
            AGE,
            _col("Version"),
            _col("Internal-IP", priority=1),
            _col("External-IP", priority=1),
            _col("OS-Image", priority=1),
            _col("Kernel-Version", priority=1),
            _col("Container-Runtime", priority=1),
        ],
        _node_row,
    ),
    "services": (
        [
            NAME,
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            AGE,
            _col("Selector", priority=1),
        ],
        _svc_row,
    ),
    "priorityclasses": (
        [
            NAME,
            _col("Value", "integer"),
            _col("Global-Default", "boolean"),
            AGE,
            _col("PreemptionPolicy"),
        ],
        lambda o, now: [
            o["metadata"]["name"],
            o.get("value", 0),
            bool(o.get("globalDefault")),
            _age(o, now),
            o.get("preemptionPolicy") or "PreemptLowerPriority",
        ],
    ),
}
_REPLICAS = (
    [
        NAME,
        _col("Desired", "integer", desc="Replicas is the number of desired replicas."),
        _col("Current", "integer", desc="The most recently observed number of replicas."),
        _col("Ready", "integer", desc="The number of ready replicas."),
        AGE,
        _col("Containers", priority=1, desc="Names of each container in the template."),
        _col("Images", priority=1, desc="Images referenced by each container in the template."),
        _col("Selector", priority=1, desc="Selector is a label query over pods."),
    ],
    _replicas_row,
)
TABLES["replicasets"] = _REPLICAS
TABLES["replicationcontrollers"] = _REPLICAS
_GENERIC: tuple[list[Obj], Callable[[Obj, datetime], list[Any]]] = (
    [NAME, AGE],
    lambda o, now: [o["metadata"]["name"], _age(o, now)],
)


def table(
    resource: str,
    objects: list[Obj],
    resource_version: str,
    continue_: str = "",
    include_object: str = "Metadata",
) -> Obj:
    """A meta.k8s.io/v1 Table of ``objects``; each row carries the object's metadata
    (``includeObject=Metadata``, the default), the whole object (``Object``) or nothing."""
    columns, row_of = TABLES.get(resource, _GENERIC)
    now = datetime.now(UTC)
    rows = []
    for o in objects:
        row: Obj = {"cells": row_of(o, now)}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata") or {},
            }
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version}
    if continue_:
        meta["continue"] = continue_
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    }
