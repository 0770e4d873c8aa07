"""A pod's status, derived from the kernel and the monitor's files, never from a stored one:
where its directory is, ``pod.status`` and ``status/<container>`` (written by the monitor),
whether the monitor still holds the pod's lock, whether a container's process is still in the
pod's cgroup."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from runtime.pod.record import ContainerRecord
from runtime.pod.store import PodDir, PodError, PodState, PodStore, read_keyvalues

__all__ = [
    "ContainerStatus",
    "PodStatus",
    "StatusCache",
    "list_statuses",
    "status_of",
    "wait",
    "waiting_status",
]


@dataclass
class ContainerStatus:
    """A container in Kubernetes terms: state Waiting|Running|Terminated with its reason."""

    name: str
    kind: str  # init | app | ephemeral
    image: str
    state: str = "Waiting"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None
    image_id: str = ""  # the image store's id
    container_id: str = ""  # corral://<pod uid>/<name>/<run>: one per run, as a CRI id
    # the previous run (after a restart), from the status file's last_* keys
    last_reason: str = ""
    last_message: str = ""
    last_exit_code: int | None = None
    last_signal: int | None = None
    last_started_at: str | None = None
    last_finished_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        inner: dict[str, Any] = {}
        if self.state == "Running":
            inner = {"startedAt": self.started_at}
        elif self.state == "Terminated":
            inner = {
                "exitCode": self.exit_code,
                "reason": self.reason,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
            }
            if self.signal is not None:
                inner["signal"] = self.signal
        else:
            inner = {"reason": self.reason}
        if self.message:
            inner["message"] = self.message
        return {
            "name": self.name,
            "image": self.image,
            "state": {self.state[0].lower() + self.state[1:]: inner},
            "ready": self.ready,
            "restartCount": self.restart_count,
        }


@dataclass
class PodStatus:
    uid: str
    name: str
    namespace: str
    location: str  # prepare | prepared | run | exited | garbage
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    qos_class: str
    pod_ip: str | None
    host_network: bool
    created: float
    started_at: str | None = None
    finished_at: str | None = None
    monitor_pid: int | None = None
    reason: str = ""
    init_containers: list[ContainerStatus] = field(default_factory=list)
    containers: list[ContainerStatus] = field(default_factory=list)
    ephemeral_containers: list[ContainerStatus] = field(default_factory=list)

    @property
    def all_containers(self) -> list[ContainerStatus]:
        """Init and app containers: the pod's own (not its ephemeral ones)."""
        return self.init_containers + self.containers

    def container(self, name: str) -> ContainerStatus:
        for c in self.all_containers + self.ephemeral_containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "phase": self.phase,
            "qosClass": self.qos_class,
            "podIP": self.pod_ip,
            "startTime": self.started_at,
            "initContainerStatuses": [c.to_json() for c in self.init_containers],
            "containerStatuses": [c.to_json() for c in self.containers],
        }
        if self.ephemeral_containers:
            status["ephemeralContainerStatuses"] = [c.to_json() for c in self.ephemeral_containers]
        if self.reason:
            status["reason"] = self.reason
        return {
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
            "status": status,
            "corral": {
                "location": self.location,
                "monitorPid": self.monitor_pid,
                "created": self.created,
                "finishedAt": self.finished_at,
            },
        }


_STATES = {"waiting": "Waiting", "running": "Running", "terminated": "Terminated"}


def _container_status(pd: PodDir, c: ContainerRecord, has_init: bool) -> ContainerStatus:
    kv = read_keyvalues(f"{pd.path}/status/{c.name}")
    cs = ContainerStatus(c.name, c.kind, c.image, image_id=c.image_id)
    if not kv:
        cs.reason = "PodInitializing" if c.kind == "app" and has_init else "ContainerCreating"
        return cs

    def num(key: str) -> int | None:
        v = kv.get(key, "")
        return int(v) if v.lstrip("-").isdigit() else None

    cs.state = _STATES.get(kv.get("state", ""), "Waiting")
    cs.reason = kv.get("reason", "")
    cs.message = kv.get("message", "")
    cs.exit_code = num("exit_code")
    cs.signal = num("signal")
    cs.restart_count = num("restart_count") or 0
    cs.ready = kv.get("ready") == "true"
    cs.started_at = kv.get("started_at") or None
    cs.finished_at = kv.get("finished_at") or None
    cs.pid = num("pid")
    if cs.state != "Waiting":
        cs.container_id = f"corral://{pd.uid}/{c.name}/{cs.restart_count}"
    cs.last_reason = kv.get("last_reason", "")
    cs.last_message = kv.get("last_message", "")
    cs.last_exit_code = num("last_exit_code")
    cs.last_signal = num("last_signal")
    cs.last_started_at = kv.get("last_started_at") or None
    cs.last_finished_at = kv.get("last_finished_at") or None
    return cs


def _monitor_lost(pd: PodDir) -> bool:
    """A run/ pod whose lock is free. Looking takes the lock for an instant: never while a
    start is between the rename to run/ and its monitor's lock, which that would make fail."""
    with pd.store.no_start_in_window() as quiet:
        if not quiet or pd.is_locked():
            return False
    pd.refresh()
    return pd.state is PodState.RUNNING


def status_of(pd: PodDir) -> PodStatus:
    """The pod's status as the kernel and its monitor's files say now."""
    rec = pd.record_or_blank()
    kv = read_keyvalues(f"{pd.path}/pod.status")
    phase = kv.get("phase") or "Pending"
    reason = ""
    lost = pd.state is PodState.RUNNING and _monitor_lost(pd)
    if lost:
        phase, reason = "Unknown", "MonitorLost"
    if pd.state is PodState.EXITED and phase in ("Pending", "Running"):
        phase = "Failed"
    st = PodStatus(
        uid=pd.uid,
        name=rec.name,
        namespace=rec.namespace,
        location=pd.state.value,
        phase=phase,
        qos_class=rec.qos,
        pod_ip=rec.pod_ip,
        host_network=rec.host_network,
        created=rec.created,
        started_at=kv.get("started_at") or None,
        finished_at=kv.get("finished_at") or None,
        monitor_pid=int(kv["monitor_pid"]) if kv.get("monitor_pid", "").isdigit() else None,
        reason=reason,
    )
    for c in rec.containers:
        cs = _container_status(pd, c, rec.has_init)
        if lost or pd.state in (PodState.EXITED, PodState.GARBAGE):
            _unmonitored(cs, pd.uid)
        {"init": st.init_containers, "ephemeral": st.ephemeral_containers}.get(
            c.kind, st.containers
        ).append(cs)
    return st


def waiting_status(pod: Any, uid: str, error: Any, created: float | None = None) -> PodStatus:
    """The status of ``pod`` (a ``runtime.pod.manifest.Pod``) that could not be created
    because a container's image could not be had (``error``, a
    ``runtime.pod.imagepull.ImagePullError``): Pending, that container Waiting with the
    error's reason and message (ErrImagePull, ImagePullBackOff, ErrImageNeverPull,
    InvalidImageName), the others Waiting to be created. It has no pod directory
    (``location`` "none"): nothing of it exists on the host."""
    from runtime.pod.qos import pod_qos

    st = PodStatus(
        uid=uid,
        name=pod.name,
        namespace=pod.namespace,
        location="none",
        phase="Pending",
        qos_class=pod_qos(pod).value,
        pod_ip=None,
        host_network=pod.spec.host_network,
        created=time.time() if created is None else created,
    )
    has_init = bool(pod.spec.init_containers)
    for c in pod.all_containers:
        kind = "init" if c in pod.spec.init_containers else "app"
        cs = ContainerStatus(c.name, kind, c.image)
        if c.name == error.container:
            cs.reason, cs.message = error.reason, error.message
        else:
            cs.reason = "PodInitializing" if kind == "app" and has_init else "ContainerCreating"
        (st.init_containers if kind == "init" else st.containers).append(cs)
    return st


def _in_pod_cgroup(pid: int, uid: str) -> bool:
    """The kernel's word that ``pid`` is a live process (not a zombie) of pod ``uid`` (not a
    reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/pod{uid}/" in f.read()
    except (OSError, IndexError):
        return False


def _unmonitored(cs: ContainerStatus, uid: str) -> None:
    """A container whose monitor is gone (or whose pod finished): its status file says what
    the monitor last saw. Nobody probes it, so it is not ready; a container the file calls
    running is running only if the kernel still has its process in the pod's cgroup, else
    its state is unknown, which the kubelet reports as terminated, ContainerStatusUnknown."""
    cs.ready = False
    if cs.state == "Running" and not (cs.pid and _in_pod_cgroup(cs.pid, uid)):
        cs.state, cs.reason = "Terminated", "ContainerStatusUnknown"
        cs.exit_code, cs.signal = 137, None
        cs.message = "the container could not be located: the pod's monitor is gone"
        cs.pid = None


def list_statuses(store: PodStore) -> list[PodStatus]:
    """Every pod's status, oldest first; a pod whose record cannot be read is left out."""
    out = []
    for pd in store.list():
        with contextlib.suppress(PodError, FileNotFoundError):
            out.append(status_of(pd))
    return sorted(out, key=lambda s: s.created)


# A directory whose mtime is less than this many seconds before the moment it is looked at
# may change again within the same tick of the kernel's (coarse) clock, mtime unchanged: its
# pod's status is read again at the next listing (git's "racily clean" entries).
RACY = 1.0

# (the pod's location, its directory's inode and mtime, its status/ directory's)
_Stamp = tuple[str, int, int, int, int]


def _stamp(pd: PodDir, now: float) -> _Stamp | None:
    """What changes whenever a file its status is read from changes: the monitor and the
    runtime write ``pod.status``, ``pod.json`` and ``status/<container>`` by renames into
    the pod directory and ``status/``, which set those directories' mtimes. None: too recent
    to tell (``RACY``), or not there."""
    path = str(pd.path)
    try:
        d = os.stat(path)
    except OSError:
        return None
    try:
        s = os.stat(path + "/status")
        sino, smtime = s.st_ino, s.st_mtime_ns
    except OSError:
        sino, smtime = 0, 0
    if now - max(d.st_mtime_ns, smtime) / 1e9 < RACY:
        return None
    return (pd.state.value, d.st_ino, d.st_mtime_ns, sino, smtime)


class StatusCache:
    """``list_statuses`` for a caller that lists again and again (the kubelet's relist, its
    eviction manager), in a fraction of the reads: a pod whose files have not changed since
    its status was read last (``_stamp``: two stats) is not read again, only its lock is
    probed (a monitor that died is seen at once). A status that the kernel may change
    without a file changing (a lost monitor's, an exited pod's with a running container:
    ``_unmonitored``) is read at every listing. The statuses listed are shared: callers do
    not modify them. Thread-safe."""

    def __init__(self, store: PodStore) -> None:
        self.store = store
        self._known: dict[str, tuple[_Stamp, PodStatus]] = {}

    def list(self) -> list[PodStatus]:
        """Every pod's status, oldest first, as ``list_statuses``."""
        known: dict[str, tuple[_Stamp, PodStatus]] = {}
        out = []
        now = time.time()
        old = self._known
        pods = self.store.list()
        # before any read: a change during one is seen at the next listing
        stamps = {pd.uid: _stamp(pd, now) for pd in pods}
        unchanged = {
            pd.uid for pd in pods if stamps[pd.uid] is not None and _same(old, pd.uid, stamps)
        }
        free = self._unlocked(
            [pd for pd in pods if pd.uid in unchanged and pd.state is PodState.RUNNING]
        )
        for pd in pods:
            stamp = stamps[pd.uid]
            if pd.uid in unchanged and pd.uid not in free:
                st = old[pd.uid][1]
            else:
                try:  # (a pod removed meanwhile is left out, as by list_statuses)
                    st = status_of(pd)
                except (PodError, FileNotFoundError):
                    continue
                if stamp is None or not _stable(st):
                    out.append(st)
                    continue
            known[pd.uid] = (stamp, st)
            out.append(st)
        self._known = known
        return sorted(out, key=lambda s: s.created)

    def _unlocked(self, pods: list[PodDir]) -> set[str]:
        """The uids of the run/ pods whose lock nobody holds (their monitor may have died:
        ``status_of`` looks again), probed under one hold of the store's gc lock (as
        ``_monitor_lost`` probes one pod): none while a start is in its window."""
        if not pods:
            return set()
        with self.store.no_start_in_window() as quiet:
            if not quiet:
                return set()
            return {pd.uid for pd in pods if not pd.is_locked()}


def _same(old: dict[str, tuple[_Stamp, PodStatus]], uid: str, stamps: dict[str, Any]) -> bool:
    had = old.get(uid)
    return had is not None and had[0] == stamps[uid]


def _stable(st: PodStatus) -> bool:
    """The status stays what it is until a file of the pod changes: not a lost monitor's
    (whose running containers are looked for in the kernel), nor a finished pod's whose
    container the status file calls running."""
    if st.reason == "MonitorLost":
        return False
    if st.location in ("exited", "garbage"):
        return all(c.state != "Running" for c in st.all_containers)
    return True


def wait(pd: PodDir, timeout: float | None = None, interval: float = 0.1) -> bool:
    """Wait until the pod has finished (it is in exited/); False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pd.refresh()
        if pd.state in (PodState.EXITED, PodState.GARBAGE):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)
