"""The node's own object: its Node (registered once, status kept current) and its Lease in
``kube-node-lease`` (renewed every 10 s), as the kubelet keeps them.

Capacity is the host's (cpu, memory, ephemeral storage of the data directory, 110 pods) and
allocatable the same (no reservations, as k3s' default). Conditions Ready, MemoryPressure (the
eviction manager's), DiskPressure and PIDPressure carry heartbeat times; a condition keeps its
lastTransitionTime while its status does not change."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.client import (
    AlreadyExists,
    ApiClient,
    ClientError,
    Conflict,
    Informer,
    NotFound,
    Obj,
    micro_time,
)
from orchestrator.client.rest import LEASES, NODES

__all__ = ["HostFacts", "NodeAgent", "NodeSpec", "host_facts", "node_ip_for"]

log = logging.getLogger("corral.agent.node")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40  # seconds, the kubelet's default
LEASE_RENEW = 10.0  # seconds
STATUS_UPDATE = 60.0  # seconds between status reports when nothing changed
MAX_PODS = 110
DISK_EVICTION = 0.10  # nodefs.available < 10%: DiskPressure
PID_RESERVE = 0.10  # fewer than 10% of pid_max left: PIDPressure

_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def _now() -> str:
    return micro_time()[:19] + "Z"  # metav1.Time: seconds


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return "Linux"


def arch() -> str:
    m = platform.machine()
    return _ARCH.get(m, m)


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory: int  # bytes
    storage: int  # bytes of the filesystem holding the data directory
    os_image: str
    kernel: str
    arch: str
    machine_id: str
    boot_id: str
    storage_available_ratio: float
    pids_available_ratio: float


def host_facts(data_dir: Path) -> HostFacts:
    mem = _meminfo()
    try:
        st = os.statvfs(data_dir)
        storage, ratio = st.f_frsize * st.f_blocks, st.f_bavail / max(st.f_blocks, 1)
    except OSError:
        storage, ratio = 0, 1.0
    pid_max = int(_read("/proc/sys/kernel/pid_max") or 32768)
    try:
        nprocs = sum(1 for d in os.listdir("/proc") if d.isdigit())
    except OSError:
        nprocs = 0
    return HostFacts(
        cpus=len(os.sched_getaffinity(0)),
        memory=mem.get("MemTotal", 0),
        storage=storage,
        os_image=_os_image(),
        kernel=os.uname().release,
        arch=arch(),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        storage_available_ratio=ratio,
        pids_available_ratio=1 - nprocs / max(pid_max, 1),
    )


def node_ip_for(server: str) -> str:
    """The local address this host reaches ``server`` from (the kubelet's default node IP is
    its default route's; the server's route is the one that matters to a cluster)."""
    host = urlsplit(server).hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@dataclass(frozen=True)
class NodeSpec:
    """What the agent was told about its node."""

    name: str
    node_ip: str
    data_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Obj, ...] = ()
    kubelet_port: int = 10250
    kubelet_version: str = "v0.0.0"
    runtime_version: str = "corral://0.0.0"
    control_plane: bool = False


def parse_taint(text: str) -> Obj:
    """``key=value:Effect`` or ``key:Effect``, as ``--node-taint`` takes it."""
    kv, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(
            f"invalid taint {text!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
        )
    key, _, value = kv.partition("=")
    if not key:
        raise ValueError(f"invalid taint {text!r}: no key")
    out: Obj = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


# A condition's transition to its good (True) or bad (False) state: the kubelet's event.
_TRANSITION_EVENTS = {
    "MemoryPressure": {True: "NodeHasSufficientMemory", False: "NodeHasInsufficientMemory"},
    "DiskPressure": {True: "NodeHasNoDiskPressure", False: "NodeHasDiskPressure"},
    "PIDPressure": {True: "NodeHasSufficientPID", False: "NodeHasInsufficientPID"},
    "Ready": {True: "NodeReady", False: "NodeNotReady"},
}


class NodeAgent:
    """Registers the Node, keeps its status and renews its Lease."""

    def __init__(
        self,
        client: ApiClient,
        spec: NodeSpec,
        on_pod_cidr: Callable[[str], None] | None = None,
        nodes: Informer | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.on_pod_cidr = on_pod_cidr  # called when spec.podCIDR is set or changes
        # An informer of every Node that run() shares (its owner starts and stops it: the
        # agent's pod network's), rather than watching this Node alone.
        self.nodes = nodes
        self.uid = ""
        self.pod_cidr = ""
        self._conditions: dict[str, Obj] = {}
        self._lease_rv = ""
        self.images: list[Obj] = []
        self.network_ready = True  # False: Ready is False (NetworkPluginNotReady)
        self.memory_pressure = False  # the eviction manager's (orchestrator.kubelet.eviction)
        self.annotations: dict[str, str] = {}  # set on the Node at registration
        self.changed = asyncio.Event()  # set when something the status shows changed
        # Records a node Event (reason, message): the kubelet's on a condition's transition.
        self.on_event: Callable[[str, str], None] | None = None
        self._unschedulable = False  # spec.unschedulable last seen (the kubelet starts at false)

    # ----------------------------------------------------------------- the object

    def labels(self) -> dict[str, str]:
        a = arch()
        out = {
            "kubernetes.io/hostname": self.spec.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": a,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": a,
            "node.kubernetes.io/instance-type": "corral",
        }
        if self.spec.control_plane:  # as k3s labels its servers
            out["node-role.kubernetes.io/control-plane"] = "true"
            out["node-role.kubernetes.io/master"] = "true"
        out.update(self.spec.labels)
        return out

    def _condition(self, typ: str, ok: bool, reason: str, message: str, now: str) -> Obj:
        """``ok`` means the good state: Ready True, the pressures False."""
        status = ("True" if ok else "False") if typ == "Ready" else ("False" if ok else "True")
        old = self._conditions.get(typ)
        since = old["lastTransitionTime"] if old and old["status"] == status else now
        cond = {
            "type": typ,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }
        self._conditions[typ] = cond
        # The kubelet's node status events: a pressure condition's first value counts as a
        # transition (from Unknown), Ready's does not (its setter records changes only).
        if self.on_event is not None and (
            (old is None and typ != "Ready") or (old is not None and old["status"] != status)
        ):
            event = _TRANSITION_EVENTS[typ][ok]
            self.on_event(event, f"Node {self.spec.name} status is now: {event}")
        return cond

    def _ready_condition(self, now: str) -> Obj:
        if self.network_ready:
            return self._condition(
                "Ready", True, "KubeletReady", "kubelet is posting ready status", now
            )
        return self._condition(
            "Ready",
            False,
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false"
            " reason:NetworkPluginNotReady message:the node has no podCIDR yet",
            now,
        )

    def status(self) -> Obj:
        h = host_facts(self.spec.data_dir)
        now = _now()
        mem_ok = not self.memory_pressure
        disk_ok = h.storage_available_ratio >= DISK_EVICTION
        pid_ok = h.pids_available_ratio >= PID_RESERVE
        conditions = [
            self._condition(
                "MemoryPressure",
                mem_ok,
                "KubeletHasSufficientMemory" if mem_ok else "KubeletHasInsufficientMemory",
                "kubelet has sufficient memory available"
                if mem_ok
                else "kubelet has insufficient memory available",
                now,
            ),
            self._condition(
                "DiskPressure",
                disk_ok,
                "KubeletHasNoDiskPressure" if disk_ok else "KubeletHasDiskPressure",
                "kubelet has no disk pressure" if disk_ok else "kubelet has disk pressure",
                now,
            ),
            self._condition(
                "PIDPressure",
                pid_ok,
                "KubeletHasSufficientPID" if pid_ok else "KubeletHasInsufficientPID",
                "kubelet has sufficient PID available"
                if pid_ok
                else "kubelet has insufficient PID available",
                now,
            ),
            self._ready_condition(now),
        ]
        capacity = {
            "cpu": str(h.cpus),
            "memory": f"{h.memory // 1024}Ki",
            "ephemeral-storage": f"{h.storage // 1024}Ki",
            "pods": str(MAX_PODS),
        }
        return {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.spec.node_ip},
                {"type": "Hostname", "address": self.spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.spec.kubelet_port}},
            "nodeInfo": {
                "machineID": h.machine_id,
                "systemUUID": h.machine_id,
                "bootID": h.boot_id,
                "kernelVersion": h.kernel,
                "osImage": h.os_image,
                "containerRuntimeVersion": self.spec.runtime_version,
                "kubeletVersion": self.spec.kubelet_version,
                "kubeProxyVersion": self.spec.kubelet_version,
                "operatingSystem": "linux",
                "architecture": h.arch,
            },
            "images": self.images,
        }

    # ----------------------------------------------------------------- registration

    async def register(self) -> Obj:
        """Create the Node, or take over the one of this name (labels ours added); then its
        status. Returns the Node."""
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.spec.name,
                "labels": self.labels(),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", **self.annotations},
            },
            "spec": {"taints": list(self.spec.taints)} if self.spec.taints else {},
        }
        try:
            node = await self.client.create(NODES, None, body)
            log.info("registered node %s", self.spec.name)
        except AlreadyExists:
            meta: Obj = {"labels": self.labels()}
            if self.annotations:
                meta["annotations"] = self.annotations
            node = await self.client.patch(NODES, None, self.spec.name, {"metadata": meta})
            log.info("node %s already registered: taking it over", self.spec.name)
        self.uid = node["metadata"]["uid"]
        return await self.update_status()

    async def update_status(self) -> Obj:
        node = await self.client.patch(
            NODES, None, self.spec.name, {"status": self.status()}, sub="status"
        )
        self.seen(node)
        return node

    def seen(self, node: Obj | None) -> None:
        """The Node as the API has it now (our writes, and a watch of it): a podCIDR given
        to it is taken."""
        spec = (node or {}).get("spec") or {}
        if node is not None and bool(spec.get("unschedulable")) != self._unschedulable:
            self._unschedulable = not self._unschedulable  # cordon, uncordon: the kubelet's event
            event = "NodeNotSchedulable" if self._unschedulable else "NodeSchedulable"
            if self.on_event is not None:
                self.on_event(event, f"Node {self.spec.name} status is now: {event}")
        cidr = spec.get("podCIDR") or ""
        if cidr and cidr != self.pod_cidr:
            self.pod_cidr = cidr
            if self.on_pod_cidr is not None:
                self.on_pod_cidr(cidr)

    async def renew_lease(self) -> None:
        now = micro_time()
        spec = {
            "holderIdentity": self.spec.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": now,
        }
        body: Obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.spec.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.spec.name, "uid": self.uid}
                ],
            },
            "spec": spec,
        }
        if self._lease_rv:
            body["metadata"]["resourceVersion"] = self._lease_rv
            try:
                out = await self.client.update(LEASES, LEASE_NAMESPACE, body)
                self._lease_rv = out["metadata"]["resourceVersion"]
                return
            except (Conflict, NotFound):
                self._lease_rv = ""
        try:
            current = await self.client.get(LEASES, LEASE_NAMESPACE, self.spec.name)
        except NotFound:
            out = await self.client.create(LEASES, LEASE_NAMESPACE, body)
            self._lease_rv = out["metadata"]["resourceVersion"]
            return
        current_spec: dict[str, Any] = dict(current.get("spec") or {})
        current_spec.update(spec)
        current["spec"] = current_spec
        out = await self.client.update(LEASES, LEASE_NAMESPACE, current)
        self._lease_rv = out["metadata"]["resourceVersion"]

    async def run(self) -> None:
        """Renew the Lease every 10 s and report status every minute (or when asked); watch
        the Node for what others set in it (spec.podCIDR): in the shared informer of every
        Node, else alone."""
        if self.nodes is not None:
            self.nodes.add_handler(self._seen_in_all)
            await self._beat()
            return
        watch = Informer(self.client, NODES, field_selector=f"metadata.name={self.spec.name}")
        watch.add_handler(lambda _ev, _old, new: self.seen(new))
        watch.start()
        try:
            await self._beat()
        finally:
            await watch.stop()

    def _seen_in_all(self, _ev: str, _old: Obj | None, new: Obj | None) -> None:
        if new is not None and new["metadata"].get("name") == self.spec.name:
            self.seen(new)

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        next_status = loop.time() + STATUS_UPDATE
        while True:
            try:
                await self.renew_lease()
                if loop.time() >= next_status or self.changed.is_set():
                    self.changed.clear()
                    await self.update_status()
                    next_status = loop.time() + STATUS_UPDATE
            except ClientError as e:
                log.warning("node %s: %s", self.spec.name, e)
            try:
                await asyncio.wait_for(self.changed.wait(), LEASE_RENEW)
            except TimeoutError:
                pass
