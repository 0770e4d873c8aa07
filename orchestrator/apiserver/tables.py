"""Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``): the columns and
cells kube-apiserver 1.32 prints for every kind served (its printers, always with the wide
columns: kubectl shows priority-1 columns only with ``-o wide``), NAME and AGE for any other.

Each ``_<kind>_row`` is a pure function of the object and the time now, so the cases are
tested without a server (tests/unit/test_tables.py)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "TABLES",
    "csr_condition",
    "custom_columns",
    "human_duration",
    "json_path",
    "pod_status",
    "table",
]

Obj = dict[str, Any]
Row = Callable[[Obj, datetime], list[Any]]


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


def _time(ts: Any) -> datetime | None:
    if not ts or not isinstance(ts, str):
        return None
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _since(ts: Any, now: datetime) -> str:
    """translateTimestampSince: ``<unknown>`` for a zero (absent) time."""
    t = _time(ts)
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def _age(obj: Obj, now: datetime) -> str:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: ``k=v`` sorted by key, ``<none>`` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def selector_string(sel: Mapping[str, Any] | None) -> str:
    """A LabelSelector as labels.Selector.String(): requirements sorted by key."""
    reqs: list[tuple[str, str]] = []
    for k, v in (_get(sel, "matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in _get(sel, "matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        text = {
            "In": f"{key} in ({','.join(values)})",
            "NotIn": f"{key} notin ({','.join(values)})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, f"{key} {op}")
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def format_selector(sel: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: ``<none>`` for an empty or absent selector."""
    return selector_string(sel) or "<none>"


def _containers(template_spec: Any) -> list[str]:
    """layoutContainerCells: names, images (comma-joined)."""
    cs = _get(template_spec, "containers") or []
    return [",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)]


def _bool_ptr(value: Any) -> str:
    return "<unset>" if value is None else ("True" if value else "False")


def _col(name: str, typ: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME = _col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = _col(
    "Age",
    desc="CreationTimestamp is a timestamp representing the server time when this"
    " object was created.",
)
CONTAINERS = _col("Containers", priority=1, desc="Names of each container in the template.")
IMAGES = _col("Images", priority=1, desc="Images referenced by each container in the template.")
SELECTOR = _col("Selector", priority=1, desc="A label query over pods.")

# ----------------------------------------------------------------------------- pods


def _terminated_reason(t: Mapping[str, Any], prefix: str = "") -> str:
    if t.get("reason"):
        return prefix + t["reason"]
    if t.get("signal"):
        return f"{prefix}Signal:{t['signal']}"
    return f"{prefix}ExitCode:{t.get('exitCode', 0)}"


def _condition_true(conditions: Iterable[Mapping[str, Any]], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def pod_status(p: Obj, now: datetime) -> tuple[str, str, str]:
    """The READY, STATUS and RESTARTS cells of a pod, as kube-apiserver's printPod works them
    out: init containers first (``Init:1/2``, ``Init:CrashLoopBackOff``), then the containers
    from the last (``ContainerCreating``, ``CrashLoopBackOff``, ``Completed``,
    ``ExitCode:1``), ``Terminating`` once deleted; restarts with ``(5m ago)``."""
    spec, status = p.get("spec") or {}, p.get("status") or {}
    conditions = status.get("conditions") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}

    def sidecar(name: Any) -> bool:
        return (init_specs.get(name) or {}).get("restartPolicy") == "Always"

    total = len(spec.get("containers") or []) + sum(1 for n in init_specs if sidecar(n))
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    reason = status.get("reason") or status.get("phase") or ""
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions
    ):
        reason = "SchedulingGated"

    def later(a: datetime | None, cs: Mapping[str, Any]) -> datetime | None:
        t = _time(_get(cs, "lastState", "terminated", "finishedAt"))
        return t if t is not None and (a is None or t > a) else a

    initializing = False
    for i, c in enumerate(status.get("initContainerStatuses") or []):
        restarts += int(c.get("restartCount") or 0)
        last_restart = later(last_restart, c)
        if sidecar(c.get("name")):
            sidecar_restarts += int(c.get("restartCount") or 0)
            last_sidecar_restart = later(last_sidecar_restart, c)
        state = c.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if sidecar(c.get("name")) and c.get("started"):
            ready += 1 if c.get("ready") else 0
            continue
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif wait is not None and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        running = False
        for c in reversed(status.get("containerStatuses") or []):
            restarts += int(c.get("restartCount") or 0)
            last_restart = later(last_restart, c)
            state = c.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None:
                reason = _terminated_reason(term)
            elif c.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    meta = p.get("metadata") or {}
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    shown = str(restarts)
    if restarts and last_restart is not None:
        shown = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{total}", reason, shown


def _pod_row(p: Obj, now: datetime) -> list[Any]:
    spec, status = p.get("spec") or {}, p.get("status") or {}
    ready, reason, restarts = pod_status(p, now)
    ips = status.get("podIPs") or []
    gates = spec.get("readinessGates") or []
    shown_gates = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        shown_gates = f"{true}/{len(gates)}"
    return [
        _name(p),
        ready,
        reason,
        restarts,
        _age(p, now),
        (ips[0].get("ip") if ips else "") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        shown_gates,
    ]


def _pod_conditions(p: Obj) -> list[Obj] | None:
    phase = (p.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [_row_completed("Succeeded", "The pod has completed successfully.")]
    if phase == "Failed":
        return [_row_completed("Failed", "The pod failed.")]
    return None


def _row_completed(reason: str, message: str) -> Obj:
    return {"type": "Completed", "status": "True", "reason": reason, "message": message}


# ------------------------------------------------------------------------ workloads


def _deploy_row(d: Obj, now: datetime) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    tmpl = _get(spec, "template", "spec")
    return [
        _name(d),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(d, now),
        *_containers(tmpl),
        selector_string(spec.get("selector")),
    ]


def _replicas_row(r: Obj, now: datetime) -> list[Any]:
    """A ReplicaSet's or a ReplicationController's row (its selector a LabelSelector or, for
    the latter, the labels themselves)."""
    spec, status = r.get("spec") or {}, r.get("status") or {}
    if r.get("kind") == "ReplicationController":
        sel = format_labels(spec.get("selector"))
    else:
        sel = format_selector(spec.get("selector"))
    return [
        _name(r),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(r, now),
        *_containers(_get(spec, "template", "spec")),
        sel,
    ]


def _daemonset_row(d: Obj, now: datetime) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    tmpl = _get(spec, "template", "spec") or {}
    return [
        _name(d),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        format_labels(tmpl.get("nodeSelector")),
        _age(d, now),
        *_containers(tmpl),
        format_selector(spec.get("selector")),
    ]


def _statefulset_row(s: Obj, now: datetime) -> list[Any]:
    spec, status = s.get("spec") or {}, s.get("status") or {}
    return [
        _name(s),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        _age(s, now),
        *_containers(_get(spec, "template", "spec")),
    ]


def job_status(j: Obj) -> str:
    conditions = _get(j, "status", "conditions") or []
    for kind, shown in (("Complete", "Complete"), ("Failed", "Failed")):
        if _condition_true(conditions, kind):
            return shown
    if _get(j, "metadata", "deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(conditions, kind):
            return kind
    return "Running"


def _job_row(j: Obj, now: datetime) -> list[Any]:
    spec, status = j.get("spec") or {}, j.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _time(status.get("startTime")), _time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or now) - start).total_seconds())
    return [
        _name(j),
        job_status(j),
        completions,
        duration,
        _age(j, now),
        *_containers(_get(spec, "template", "spec")),
        format_selector(spec.get("selector")),
    ]


def _cronjob_row(c: Obj, now: datetime) -> list[Any]:
    spec, status = c.get("spec") or {}, c.get("status") or {}
    job = _get(spec, "jobTemplate", "spec") or {}
    last = status.get("lastScheduleTime")
    return [
        _name(c),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        _bool_ptr(spec.get("suspend")),
        len(status.get("active") or []),
        _since(last, now) if last else "<none>",
        _age(c, now),
        *_containers(_get(job, "template", "spec")),
        format_selector(job.get("selector")),
    ]


def _revision_row(r: Obj, now: datetime) -> list[Any]:
    owner = next(
        (o for o in _get(r, "metadata", "ownerReferences") or [] if o.get("controller")), None
    )
    controller = "<none>"
    if owner is not None:
        api_version = str(owner.get("apiVersion", ""))
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        kind = str(owner.get("kind", ""))
        group_kind = f"{kind}.{group}" if group else kind
        name = str(owner.get("name", ""))
        controller = f"{group_kind.lower()}/{name}" if group_kind else name
    return [_name(r), controller, r.get("revision", 0), _age(r, now)]


# -------------------------------------------------------------------- core, network


def _node_row(n: Obj, now: datetime) -> list[Any]:
    status = n.get("status") or {}
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = ["Unknown" if cond is None else "Ready" if cond.get("status") == "True" else "NotReady"]
    if _get(n, "spec", "unschedulable"):
        state.append("SchedulingDisabled")
    roles = set()
    for k, v in (_get(n, "metadata", "labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k != "node-role.kubernetes.io/":
            roles.add(k.removeprefix("node-role.kubernetes.io/"))
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []

    def addr(t: str) -> str:
        return next((a.get("address") for a in addrs if a.get("type") == t), None) or "<none>"

    return [
        _name(n),
        ",".join(state),
        ",".join(sorted(roles)) or "<none>",
        _age(n, now),
        info.get("kubeletVersion", ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _external_ip(s: Obj) -> str:
    spec = s.get("spec") or {}
    external = spec.get("externalIPs") or []
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        lb = sorted(
            {
                i.get("ip") or i.get("hostname")
                for i in _get(s, "status", "loadBalancer", "ingress") or []
                if i.get("ip") or i.get("hostname")
            }
        )
        return ",".join([*lb, *external]) or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _svc_row(s: Obj, now: datetime) -> list[Any]:
    spec = s.get("spec") or {}
    ports = ",".join(
        (f"{p.get('port')}:{p['nodePort']}" if p.get("nodePort") else f"{p.get('port')}")
        + f"/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        _name(s),
        spec.get("type", ""),
        ips[0] if ips else "<none>",
        _external_ip(s),
        ports or "<none>",
        _age(s, now),
        format_labels(spec.get("selector")),
    ]


def _host_port(ip: str, port: Any) -> str:
    try:
        v6 = ipaddress.ip_address(ip).version == 6
    except ValueError:
        v6 = ":" in ip
    return f"[{ip}]:{port}" if v6 else f"{ip}:{port}"


def format_endpoints(e: Obj) -> str:
    """printers.go formatEndpoints: the first three ``ip:port``, then ``+ N more...``."""
    subsets = e.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count, more, limit = 0, False, 3
    for ss in subsets:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        for port in ss.get("ports") or [None]:
            count += len(addrs)
            for ip in addrs:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(ip if port is None else _host_port(ip, port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


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
        _name(e),
        e.get("addressType", ""),
        _more(ports),
        _more(addrs),
        _age(e, now),
    ]


def _event_row(e: Obj, now: datetime) -> list[Any]:
    first = _since(e.get("firstTimestamp"), now)
    if not _time(e.get("firstTimestamp")):
        first = _since(e.get("eventTime"), now)
    last = _since(e.get("lastTimestamp"), now) if _time(e.get("lastTimestamp")) else first
    count = e.get("count") or 0
    if e.get("series"):
        last = _since(e["series"].get("lastObservedTime"), now)
        count = e["series"].get("count") or 0
    elif count == 0:
        count = 1  # a singleton event of the events.k8s.io API
    obj = e.get("involvedObject") or {}
    target = str(obj.get("kind", "")).lower()
    if obj.get("name"):
        target = f"{target}/{obj['name']}"
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent") or ""
    host = source.get("host") or e.get("reportingInstance") or ""
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        target,
        obj.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        str(e.get("message", "")).strip(),
        first,
        count,
        _name(e),
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
        _name(b),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _age(b, now),
        ", ".join(kinds["User"]),
        ", ".join(kinds["Group"]),
        ", ".join(kinds["ServiceAccount"]),
    ]


def _pdb_row(p: Obj, now: datetime) -> list[Any]:
    spec, status = p.get("spec") or {}, p.get("status") or {}
    return [
        _name(p),
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        int(status.get("disruptionsAllowed") or 0),
        _age(p, now),
    ]


_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def _access_modes(modes: Any) -> str:
    """GetAccessModesAsString: each mode once, in kube's order."""
    given = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODES if mode in given)


def _pv_row(pv: Obj, now: datetime) -> list[Any]:
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace') or ''}/{ref.get('name') or ''}" if ref else ""
    phase = status.get("phase") or ""
    if _get(pv, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    return [
        _name(pv),
        str((spec.get("capacity") or {}).get("storage") or "0"),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        phase,
        claim,
        spec.get("storageClassName") or "",
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason") or "",
        _age(pv, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _pvc_row(pvc: Obj, now: datetime) -> list[Any]:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    phase = status.get("phase") or ""
    if _get(pvc, "metadata", "deletionTimestamp"):
        phase = "Terminating"
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = str((status.get("capacity") or {}).get("storage") or "0")
    annotations = _get(pvc, "metadata", "annotations") or {}
    cls = annotations.get("volume.beta.kubernetes.io/storage-class") or spec.get("storageClassName")
    return [
        _name(pvc),
        phase,
        spec.get("volumeName") or "",
        capacity,
        modes,
        cls or "",
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _storage_class_row(sc: Obj, now: datetime) -> list[Any]:
    annotations = _get(sc, "metadata", "annotations") or {}
    default = "true" in (
        annotations.get("storageclass.kubernetes.io/is-default-class"),
        annotations.get("storageclass.beta.kubernetes.io/is-default-class"),
    )
    return [
        _name(sc) + (" (default)" if default else ""),
        sc.get("provisioner") or "",
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion")),
        _age(sc, now),
    ]


def _hpa_metrics(specs: list[Obj], statuses: list[Obj]) -> str:
    """kube's formatHPAMetrics: ``cpu: 45%/50%`` per metric, two at most, then "+ N more"."""
    if not specs:
        return "<none>"
    out = []
    for i, spec in enumerate(specs):
        typ = spec.get("type")
        st = statuses[i] if i < len(statuses) else {}
        key = {"External": "external", "Pods": "pods", "Object": "object", "Resource": "resource",
               "ContainerResource": "containerResource"}.get(str(typ))  # fmt: skip
        src, cur = (spec.get(key) or {}, (st.get(key) or {}).get("current")) if key else ({}, None)
        target = src.get("target") or {}
        current = cur or {}
        if typ in ("External", "Object"):
            if target.get("averageValue") is not None:
                now = current.get("averageValue") if cur is not None else None
                out.append(f"{now or '<unknown>'}/{target['averageValue']} (avg)")
            else:
                now = current.get("value") if cur is not None else None
                out.append(f"{now or '<unknown>'}/{target.get('value')}")
        elif typ == "Pods":
            out.append(f"{current.get('averageValue') or '<unknown>'}/{target.get('averageValue')}")
        elif typ in ("Resource", "ContainerResource"):
            name = src.get("name", "")
            if target.get("averageValue") is not None:
                out.append(
                    f"{name}: {current.get('averageValue') or '<unknown>'}/{target['averageValue']}"
                )
            else:
                util = current.get("averageUtilization")
                now = f"{util}%" if util is not None else "<unknown>"
                want = target.get("averageUtilization")
                out.append(f"{name}: {now}/{f'{want}%' if want is not None else '<auto>'}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return f"{', '.join(out[:2])} + {len(out) - 2} more..."
    return ", ".join(out)


def _hpa_row(h: Obj, now: datetime) -> list[Any]:
    spec, status = h.get("spec") or {}, h.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [
        _name(h),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
        low if low is not None else "<unset>",
        int(spec.get("maxReplicas") or 0),
        int(status.get("currentReplicas") or 0),
        _age(h, now),
    ]


def _created_at(o: Obj, now: datetime) -> list[Any]:
    t = _time(_get(o, "metadata", "creationTimestamp"))
    return [_name(o), t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None]


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
_CREATED_AT = (
    [NAME, _col("Created At", "date", desc="Time when this object was created.")],
    _created_at,
)
_REPLICAS = (
    [
        NAME,
        _col("Desired", "integer", desc="Replicas is the number of desired replicas."),
        _col("Current", "integer", desc="The most recently observed number of replicas."),
        _col("Ready", "integer", desc="The number of ready replicas."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    _replicas_row,
)

# resource -> (column definitions, row of an object)
TABLES: dict[str, tuple[list[Obj], Row]] = {
    "pods": (
        [
            NAME,
            _col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", desc="The aggregate status of the containers in this pod."),
            _col(
                "Restarts",
                desc="The number of times the containers in this pod have been restarted and"
                " when the last container in this pod has restarted.",
            ),
            AGE,
            _col("IP", priority=1, desc="IP address allocated to the pod."),
            _col("Node", priority=1, desc="Name of the node the pod is assigned to."),
            _col("Nominated Node", priority=1, desc="Name of the node the pod is nominated to."),
            _col("Readiness Gates", priority=1, desc="The readiness gates of the pod."),
        ],
        _pod_row,
    ),
    "namespaces": (
        [NAME, _col("Status", desc="The status of the namespace"), AGE],
        lambda o, now: [_name(o), _get(o, "status", "phase") or "", _age(o, now)],
    ),
    "nodes": (
        [
            NAME,
            _col("Status", desc="The status of the node"),
            _col("Roles", desc="The roles of the node"),
            AGE,
            _col("Version", desc="Kubelet Version reported by the node."),
            _col("Internal-IP", priority=1, desc="The node's internal address."),
            _col("External-IP", priority=1, desc="The node's external address."),
            _col("OS-Image", priority=1, desc="OS Image reported by the node."),
            _col("Kernel-Version", priority=1, desc="Kernel Version reported by the node."),
            _col("Container-Runtime", priority=1, desc="ContainerRuntime Version of the node."),
        ],
        _node_row,
    ),
    "configmaps": (
        [NAME, _col("Data", "integer", desc="The number of entries in data and binaryData."), AGE],
        lambda o, now: [
            _name(o),
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(o, now),
        ],
    ),
    "secrets": (
        [
            NAME,
            _col("Type", desc="Used to facilitate programmatic handling of secret data."),
            _col("Data", "integer", desc="The number of entries in data."),
            AGE,
        ],
        lambda o, now: [_name(o), o.get("type", ""), len(o.get("data") or {}), _age(o, now)],
    ),
    "services": (
        [
            NAME,
            _col("Type", desc="How the service is exposed."),
            _col("Cluster-IP", desc="The IP address of the service."),
            _col("External-IP", desc="IP addresses for which nodes accept traffic too."),
            _col("Port(s)", desc="The ports exposed by this service."),
            AGE,
            _col("Selector", priority=1, desc="Pods with these labels get the traffic."),
        ],
        _svc_row,
    ),
    "events": (
        [
            _col("Last Seen", desc="The time at which the most recent occurrence was recorded."),
            _col("Type", desc="Type of this event (Normal, Warning)."),
            _col("Reason", desc="A short, machine understandable string for the transition."),
            _col("Object", desc="The object that this event is about."),
            _col("Subobject", priority=1, desc="The part of the object this event is about."),
            _col("Source", priority=1, desc="The component reporting this event."),
            _col("Message", desc="A human-readable description of the status of this operation."),
            _col("First Seen", priority=1, desc="The time this event was first recorded."),
            _col("Count", priority=1, desc="The number of times this event has occurred."),
            {**NAME, "priority": 1},
        ],
        _event_row,
    ),
    "serviceaccounts": (
        [NAME, _col("Secrets", "integer", desc="The secrets of this service account."), AGE],
        lambda o, now: [_name(o), len(o.get("secrets") or []), _age(o, now)],
    ),
    "endpoints": (
        [NAME, _col("Endpoints", desc="The endpoints of the subsets."), AGE],
        lambda o, now: [_name(o), format_endpoints(o), _age(o, now)],
    ),
    "replicationcontrollers": _REPLICAS,
    "replicasets": _REPLICAS,
    "deployments": (
        [
            NAME,
            _col("Ready", desc="Number of the pod with ready state."),
            _col("Up-to-date", "integer", desc="Total number of updated pods."),
            _col("Available", "integer", desc="Total number of available pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        _deploy_row,
    ),
    "daemonsets": (
        [
            NAME,
            _col("Desired", "integer", desc="The number of nodes that should run the pod."),
            _col("Current", "integer", desc="The number of nodes running at least one pod."),
            _col("Ready", "integer", desc="The number of nodes with a ready pod."),
            _col("Up-to-date", "integer", desc="The number of nodes with the updated pod."),
            _col("Available", "integer", desc="The number of nodes with an available pod."),
            _col("Node Selector", desc="The node labels the pod must match to run there."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        _daemonset_row,
    ),
    "statefulsets": (
        [
            NAME,
            _col("Ready", desc="Number of the pod with ready state."),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        _statefulset_row,
    ),
    "jobs": (
        [
            NAME,
            _col("Status", desc="Status of the job."),
            _col("Completions", desc="The number of pods which reached phase Succeeded."),
            _col("Duration", desc="Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        _job_row,
    ),
    "cronjobs": (
        [
            NAME,
            _col("Schedule", desc="The schedule in Cron format."),
            _col("Timezone", desc="The time zone name for the given schedule."),
            _col("Suspend", "boolean", desc="Whether to suspend subsequent executions."),
            _col("Active", "integer", desc="The number of running jobs."),
            _col("Last Schedule", desc="When the job was last successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        _cronjob_row,
    ),
    "controllerrevisions": (
        [
            NAME,
            _col("Controller", desc="Controller of the object"),
            _col("Revision", "integer", desc="The revision represented by the state data."),
            AGE,
        ],
        _revision_row,
    ),
    "leases": (
        [NAME, _col("Holder", desc="The identity of the holder of the current lease."), AGE],
        lambda o, now: [_name(o), _get(o, "spec", "holderIdentity") or "", _age(o, now)],
    ),
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
    "horizontalpodautoscalers": (
        [
            NAME,
            _col("Reference", desc="The reference to the object the autoscaler scales."),
            _col("Targets", desc="The current and target values of the metrics."),
            _col("MinPods", desc="The lower limit for the number of pods."),
            _col("MaxPods", "integer", desc="The upper limit for the number of pods."),
            _col("Replicas", "integer", desc="The number of replicas now."),
            AGE,
        ],
        _hpa_row,
    ),
    "roles": _CREATED_AT,
    "clusterroles": _CREATED_AT,
    "rolebindings": _BINDING,
    "clusterrolebindings": _BINDING,
    "persistentvolumes": (
        [
            NAME,
            _col(
                "Capacity",
                desc="capacity is the description of the persistent volume's"
                " resources and capacity.",
            ),
            _col("Access Modes", desc="accessModes contains all ways the volume can be mounted."),
            _col(
                "Reclaim Policy",
                desc="persistentVolumeReclaimPolicy defines what happens to"
                " a persistent volume when released from its claim.",
            ),
            _col(
                "Status",
                desc="phase indicates if a volume is available, bound to a claim,"
                " or released by a claim.",
            ),
            _col(
                "Claim",
                desc="claimRef is part of a bi-directional binding between"
                " PersistentVolume and PersistentVolumeClaim.",
            ),
            _col("StorageClass", desc="StorageClass of the pv"),
            _col("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
            _col(
                "Reason",
                desc="reason is a brief CamelCase string that describes any failure"
                " and is meant for machine parsing and tidy display in the CLI.",
            ),
            AGE,
            _col(
                "VolumeMode",
                priority=1,
                desc="volumeMode defines if a volume is intended to"
                " be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],  # fmt: skip
        _pv_row,
    ),
    "persistentvolumeclaims": (
        [
            NAME,
            _col("Status", desc="phase represents the current phase of PersistentVolumeClaim."),
            _col(
                "Volume",
                desc="volumeName is the binding reference to the PersistentVolume"
                " backing this claim.",
            ),
            _col(
                "Capacity",
                desc="capacity represents the actual resources of the underlying volume.",
            ),
            _col(
                "Access Modes",
                desc="accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            _col("StorageClass", desc="StorageClass of the pvc"),
            _col("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"),
            AGE,
            _col(
                "VolumeMode",
                priority=1,
                desc="volumeMode defines what type of volume is required by the claim.",
            ),
        ],  # fmt: skip
        _pvc_row,
    ),
    "storageclasses": (
        [
            NAME,
            _col("Provisioner", desc="provisioner indicates the type of the provisioner."),
            _col(
                "ReclaimPolicy",
                desc="reclaimPolicy controls the reclaimPolicy for"
                " dynamically provisioned PersistentVolumes of this storage class.",
            ),
            _col(
                "VolumeBindingMode",
                desc="volumeBindingMode indicates how"
                " PersistentVolumeClaims should be provisioned and bound.",
            ),
            _col(
                "AllowVolumeExpansion",
                desc="allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            AGE,
        ],  # fmt: skip
        _storage_class_row,
    ),
    "priorityclasses": (
        [
            NAME,
            _col("Value", "integer", desc="The integer value of this priority class."),
            _col("Global-Default", "boolean", desc="Whether this is the default priority."),
            AGE,
            _col("PreemptionPolicy", desc="The policy for preempting lower priority pods."),
        ],
        lambda o, now: [
            _name(o),
            o.get("value", 0),
            bool(o.get("globalDefault")),
            _age(o, now),
            o.get("preemptionPolicy") or "PreemptLowerPriority",
        ],
    ),
}
TABLES["customresourcedefinitions"] = _CREATED_AT
_GENERIC: tuple[list[Obj], Row] = ([NAME, AGE], lambda o, now: [_name(o), _age(o, now)])


_JSONPATH_STEP = re.compile(
    r"""\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]"""
)


def json_path(obj: Any, path: str) -> list[Any]:
    """The values at a printer column's jsonPath (``.spec.replicas``, ``.items[0].x``,
    ``.status.conditions[?(@.type=="Ready")].status``, ``[*]``); [] when there is none."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.lstrip("$")
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _JSONPATH_STEP.match(path, pos)
        if m is None:
            return []
        pos = m.end()
        field, index, key, want = m.groups()
        out: list[Any] = []
        for v in values:
            if field is not None:
                if isinstance(v, dict) and field in v:
                    out.append(v[field])
            elif index is not None:
                if isinstance(v, list):
                    if index == "*":
                        out.extend(v)
                    elif int(index) < len(v):
                        out.append(v[int(index)])
            elif isinstance(v, list):
                for item in v:
                    found = item
                    for part in key.split("."):
                        found = found.get(part) if isinstance(found, dict) else None
                    if found is not None and str(found) == want:
                        out.append(item)
        values = out
    return values


def _custom_cell(obj: Obj, col: Obj) -> Any:
    found = [v for v in json_path(obj, str(col.get("jsonPath") or "")) if v is not None]
    if not found:
        return None
    if len(found) > 1:
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in found)
    value = found[0]
    if col.get("type") in ("string", "date") and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"))
    return value


def custom_columns(res: Any) -> tuple[list[Obj], Row]:
    """A custom resource's table: NAME, then its CRD's additionalPrinterColumns (AGE when it
    declares none), as apiextensions-apiserver's table convertor."""
    declared = list(res.custom.columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    columns = [NAME] + [
        _col(
            str(c["name"]),
            str(c.get("type") or "string"),
            int(c.get("priority") or 0),
            str(c.get("format") or ""),
            str(c.get("description") or ""),
        )
        for c in declared
    ]

    def row(o: Obj, now: datetime) -> list[Any]:
        return [_name(o), *(_custom_cell(o, c) for c in declared)]

    return columns, row


def table(
    resource: str,
    objects: list[Obj],
    resource_version: str,
    continue_: str = "",
    include_object: str = "Metadata",
    res: Any = None,
) -> Obj:
    """A meta.k8s.io/v1 Table of ``objects``; each row carries the object's metadata
    (``includeObject=Metadata``, the default), the whole object (``Object``) or nothing.
    ``res``: the resource, for a custom one's columns."""
    if res is not None and res.custom is not None:
        columns, row_of = custom_columns(res)
    else:
        columns, row_of = TABLES.get(resource, _GENERIC)
    now = datetime.now(UTC)
    rows = []
    for o in objects:
        row: Obj = {"cells": row_of(o, now)}
        if resource == "pods" and (conditions := _pod_conditions(o)):
            row["conditions"] = conditions
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


# ----------------------------------------------------------------- networking.k8s.io


def format_ingress_hosts(rules: Any) -> str:
    """formatHosts: the first four rule hosts, "*" when none names one."""
    rules = rules if isinstance(rules, list) else []
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 4:
            more = True
        host = _get(rule, "host")
        if not more and host:
            hosts.append(str(host))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 4} more..." if more else text


def _ingress_address(ing: Obj) -> str:
    """ingressLoadBalancerStatusStringer (wide): the IPs, else hostnames, sorted, unique."""
    found = set()
    for point in _get(ing, "status", "loadBalancer", "ingress") or []:
        value = _get(point, "ip") or _get(point, "hostname")
        if value:
            found.add(str(value))
    return ",".join(sorted(found))


def _ingress_row(ing: Obj, now: datetime) -> list[Any]:
    return [
        _name(ing),
        _get(ing, "spec", "ingressClassName") or "<none>",
        format_ingress_hosts(_get(ing, "spec", "rules")),
        _ingress_address(ing),
        "80, 443" if _get(ing, "spec", "tls") else "80",
        _age(ing, now),
    ]


def _ingress_class_row(c: Obj, now: datetime) -> list[Any]:
    params = _get(c, "spec", "parameters")
    shown = "<none>"
    if isinstance(params, Mapping):
        shown = str(params.get("kind") or "")
        if params.get("apiGroup") is not None:
            shown += "." + str(params["apiGroup"])
        shown += "/" + str(params.get("name") or "")
    return [_name(c), _get(c, "spec", "controller") or "", shown, _age(c, now)]


TABLES.update(
    {
        "ingresses": (
            [
                NAME,
                _col(
                    "Class",
                    desc="The name of the IngressClass resource that should be used for"
                    " additional configuration",
                ),
                _col(
                    "Hosts",
                    desc="Hosts that incoming requests are matched against before the ingress rule",
                ),
                _col(
                    "Address",
                    desc="Address is a list containing ingress points for the load-balancer",
                ),
                _col("Ports", desc="Ports of TLS configurations that open"),
                AGE,
            ],
            _ingress_row,
        ),
        "networkpolicies": (
            [
                NAME,
                _col(
                    "Pod-Selector",
                    # extensions/v1beta1 NetworkPolicySpec's, as kubectl's printer cites it
                    desc="Selects the pods to which this NetworkPolicy object applies.  The array"
                    " of ingress rules is applied to any pods selected by this field. Multiple"
                    " network policies can select the same set of pods.  In this case, the"
                    " ingress rules for each are combined additively. This field is NOT optional"
                    " and follows standard label selector semantics. An empty podSelector"
                    " matches all pods in this namespace.",
                ),
                AGE,
            ],
            lambda np, now: [
                _name(np),
                format_selector(_get(np, "spec", "podSelector")),
                _age(np, now),
            ],
        ),
        "ingressclasses": (
            [
                NAME,
                _col("Controller", desc="Controller that is responsible for handling this class"),
                _col("Parameters", desc="A reference to a resource with additional parameters"),
                AGE,
            ],
            _ingress_class_row,
        ),
    }
)


# ----------------------------------------------------------------------------- quota


def _quota_row(rq: Obj, now: datetime) -> list[Any]:
    """printResourceQuota: "<resource>: used/hard" for each hard resource, sorted, the
    limits.* ones in LIMIT, the others in REQUEST; a missing quantity is "0"."""
    hard_spec = _get(rq, "spec", "hard") or {}
    used = _get(rq, "status", "used") or {}
    hard = _get(rq, "status", "hard") or {}
    request: list[str] = []
    limit: list[str] = []
    for name in sorted(hard_spec):
        pieces = str(name).split(".")
        column = limit if len(pieces) > 1 and pieces[0] == "limits" else request
        column.append(f"{name}: {used.get(name, '0')}/{hard.get(name, '0')}")
    return [_name(rq), _age(rq, now), ", ".join(request), ", ".join(limit)]


TABLES.update(
    {
        "resourcequotas": (
            [
                NAME,
                AGE,
                _col(
                    "Request",
                    desc="Request represents a minimum amount of cpu/memory that a container"
                    " may consume.",
                ),
                _col(
                    "Limit",
                    desc="Limits control the maximum amount of cpu/memory that a container may"
                    " use independent of contention on the node.",
                ),
            ],
            _quota_row,
        ),
        "limitranges": _CREATED_AT,
    }
)


# ----------------------------------------------------------------------------- certificates


def csr_condition(csr: Obj) -> str:
    """extractCSRStatus: Denied, else Approved, else Pending; then ",Failed", ",Issued"."""
    kinds = {c.get("type") for c in _get(csr, "status", "conditions") or () if isinstance(c, dict)}
    shown = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        shown += ",Failed"
    if _get(csr, "status", "certificate"):
        shown += ",Issued"
    return shown


def _csr_row(csr: Obj, now: datetime) -> list[Any]:
    seconds = _get(csr, "spec", "expirationSeconds")
    return [
        _name(csr),
        _age(csr, now),
        _get(csr, "spec", "signerName") or "<none>",
        _get(csr, "spec", "username") or "",
        "<none>" if seconds is None else human_duration(float(seconds)),
        csr_condition(csr),
    ]


TABLES["certificatesigningrequests"] = (
    [
        NAME,
        AGE,
        _col(
            "SignerName",
            desc="Requested signer for the request. It is a qualified name in the"
            " form: `scope-hostname.io/name`.",
        ),  # fmt: skip
        _col("Requestor", desc="Base64-encoded PKCS#10 CSR data"),
        _col(
            "RequestedDuration",
            desc="expirationSeconds is the requested duration of validity"
            " of the issued certificate.",
        ),  # fmt: skip
        _col("Condition", desc="Conditions applied to the request, such as approval or denial."),
    ],
    _csr_row,
)


# ----------------------------------------------------------------------------- node.k8s.io

TABLES["runtimeclasses"] = (
    [NAME, _col("Handler", desc="Handler is the name of the underlying runtime"), AGE],
    lambda c, now: [_name(c), c.get("handler") or "", _age(c, now)],
)


# ---------------------------------------------------------------- admissionregistration.k8s.io

for _kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
    TABLES[_kind] = (
        [NAME, _col("Webhooks", "integer", desc="Webhooks indicates the number of webhooks"), AGE],
        lambda c, now: [_name(c), len(c.get("webhooks") or ()), _age(c, now)],
    )
