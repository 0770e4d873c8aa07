"""A pod's API status from what the node runtime reports, as the kubelet's status manager
builds it: phase, the four conditions (lastTransitionTime kept while a condition's status
holds), containerStatuses with state, lastState, restartCount, ready, started, image, imageID
and containerID, podIP(s), hostIP(s), qosClass, startTime. Pure functions of their inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.pod.api import ContainerStatus, PodStatus

__all__ = ["api_status", "now", "waiting_status"]

Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(t: str | None) -> str | None:
    """RFC3339Nano from the monitor -> metav1.Time (seconds)."""
    if not t:
        return None
    return t[:19] + "Z" if len(t) >= 19 else t


def _image_id(cs: ContainerStatus) -> str:
    return f"sha256:{cs.image_id}" if cs.image_id and ":" not in cs.image_id else cs.image_id


def _state(cs: ContainerStatus) -> Obj:
    if cs.state == "Running":
        return {"running": {"startedAt": _time(cs.started_at)}}
    if cs.state == "Terminated":
        inner: Obj = {
            "exitCode": cs.exit_code if cs.exit_code is not None else 0,
            "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error"),
            "startedAt": _time(cs.started_at),
            "finishedAt": _time(cs.finished_at),
            "containerID": cs.container_id,
        }
        if cs.signal is not None:
            inner["signal"] = cs.signal
        if cs.message:
            inner["message"] = cs.message
        return {"terminated": inner}
    inner = {"reason": cs.reason or "ContainerCreating"}
    if cs.message:
        inner["message"] = cs.message
    return {"waiting": inner}


def _last_state(cs: ContainerStatus, uid: str) -> Obj:
    if not cs.last_reason and cs.last_exit_code is None:
        return {}
    inner: Obj = {
        "exitCode": cs.last_exit_code if cs.last_exit_code is not None else 0,
        "reason": cs.last_reason or "Error",
        "startedAt": _time(cs.last_started_at),
        "finishedAt": _time(cs.last_finished_at),
        "containerID": f"corral://{uid}/{cs.name}/{max(cs.restart_count - 1, 0)}",
    }
    if cs.last_signal is not None:
        inner["signal"] = cs.last_signal
    if cs.last_message:
        inner["message"] = cs.last_message
    return {"terminated": inner}


def container_json(cs: ContainerStatus, uid: str) -> Obj:
    out: Obj = {
        "name": cs.name,
        "state": _state(cs),
        "lastState": _last_state(cs, uid),
        "ready": cs.ready,
        "restartCount": cs.restart_count,
        "image": cs.image,
        "imageID": _image_id(cs),
        "started": cs.state == "Running",
    }
    if cs.container_id:
        out["containerID"] = cs.container_id
    return out


def ephemeral_statuses(
    pod: Obj, st: PodStatus, failed: dict[str, tuple[str, str]] | None = None
) -> list[Obj]:
    """``ephemeralContainerStatuses``: one per ephemeral container of the spec, as the
    kubelet reports them (a container's status without ``started``; Waiting until the
    runtime has it: ContainerCreating, or the reason and message in ``failed``)."""
    have = {c.name: c for c in st.ephemeral_containers}
    out = []
    for ec in (pod.get("spec") or {}).get("ephemeralContainers") or []:
        cs = have.get(ec.get("name"))
        if cs is None:
            reason, message = (failed or {}).get(ec.get("name"), ("ContainerCreating", ""))
            waiting = {"reason": reason, **({"message": message} if message else {})}
            out.append(
                {
                    "name": ec.get("name"),
                    "state": {"waiting": waiting},
                    "lastState": {},
                    "ready": False,
                    "restartCount": 0,
                    "image": ec.get("image"),
                    "imageID": "",
                }
            )
            continue
        js = container_json(cs, st.uid)
        js.pop("started", None)
        js["ready"] = False  # never: it has no probes and serves nothing
        out.append(js)
    return out


def _conditions(old: list[Obj], values: dict[str, tuple[bool, str]], stamp: str) -> list[Obj]:
    before = {c.get("type"): c for c in old}
    out = []
    for typ in (
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ):
        if typ not in values:
            continue
        ok, reason = values[typ]
        status = "True" if ok else "False"
        prev = before.get(typ)
        since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else stamp
        cond: Obj = {
            "type": typ,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since,
        }
        if reason:
            cond["reason"] = reason
        out.append(cond)
    return out


def api_status(
    pod: Obj,
    st: PodStatus,
    host_ip: str,
    stamp: str | None = None,
    failed: dict[str, tuple[str, str]] | None = None,
) -> Obj:
    """The pod's ``status`` as this node reports it from the runtime's ``st`` (``failed``:
    the ephemeral containers that could not be added, their waiting reason and message)."""
    stamp = stamp or now()
    old = pod.get("status") or {}
    phase = st.phase
    inits = [container_json(c, st.uid) for c in st.init_containers]
    apps = [container_json(c, st.uid) for c in st.containers]
    initialized = all(c.state == "Terminated" and c.exit_code == 0 for c in st.init_containers)
    all_ready = bool(st.containers) and all(c.ready for c in st.containers)
    done = phase in ("Succeeded", "Failed")
    not_ready = "PodCompleted" if done else "ContainersNotReady"
    values = {
        "PodReadyToStartContainers": (st.location == "run" and not done, ""),
        "Initialized": (initialized, "" if initialized else "ContainersNotInitialized"),
        "Ready": (all_ready and not done, "" if all_ready and not done else not_ready),
        "ContainersReady": (all_ready and not done, "" if all_ready and not done else not_ready),
        "PodScheduled": (True, ""),
    }
    out: Obj = {
        "phase": phase,
        "conditions": _conditions(old.get("conditions") or [], values, stamp),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "qosClass": st.qos_class,
        "startTime": old.get("startTime") or _time(st.started_at) or stamp,
        "containerStatuses": apps,
    }
    if inits:
        out["initContainerStatuses"] = inits
    ephemeral = ephemeral_statuses(pod, st, failed)
    if ephemeral:
        out["ephemeralContainerStatuses"] = ephemeral
    if st.pod_ip:
        out["podIP"] = st.pod_ip
        out["podIPs"] = [{"ip": st.pod_ip}]
    if st.reason:
        out["reason"] = st.reason
    if phase == "Unknown":
        out["message"] = "the pod's monitor on this node is gone"
    return out


def waiting_status(
    pod: Obj, host_ip: str, reason: str, message: str, stamp: str | None = None
) -> Obj:
    """The status of a pod the node could not make yet (every container waiting with
    ``reason``: ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...)."""
    stamp = stamp or now()
    old = pod.get("status") or {}
    spec = pod.get("spec") or {}

    def waiting(c: Obj) -> Obj:
        return {
            "name": c.get("name"),
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": {},
            "ready": False,
            "restartCount": 0,
            "image": c.get("image", ""),
            "imageID": "",
            "started": False,
        }

    has_init = bool(spec.get("initContainers"))
    values = {
        "Initialized": (not has_init, "ContainersNotInitialized" if has_init else ""),
        "Ready": (False, "ContainersNotReady"),
        "ContainersReady": (False, "ContainersNotReady"),
        "PodScheduled": (True, ""),
    }
    out: Obj = {
        "phase": "Pending",
        "conditions": _conditions(old.get("conditions") or [], values, stamp),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or stamp,
        "containerStatuses": [waiting(c) for c in spec.get("containers") or []],
    }
    if has_init:
        out["initContainerStatuses"] = [waiting(c) for c in spec.get("initContainers") or []]
    if old.get("qosClass"):
        out["qosClass"] = old["qosClass"]
    return out
