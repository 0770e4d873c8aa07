"""Endpoints and EndpointSlices of Services with a selector (kube's endpoints and
endpointslice controllers): the pods the selector matches that have an IP, ready ones as
``addresses`` and the others as ``notReadyAddresses`` (slices: the ``ready`` condition), ports
resolved by number or by container port name, each with a targetRef to its pod."""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.client import AlreadyExists, Informer, NotFound, Obj, split_key
from orchestrator.client.rest import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES

from .base import Client, Controller, InformerFactory
from .util import deep_copy, is_pod_ready, labels_of, meta, owner_ref

__all__ = ["EndpointSliceController", "EndpointsController", "service_backends"]

log = logging.getLogger("corral.controllers.endpoints")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100


def _selects(svc: Obj, pod: Obj) -> bool:
    sel = (svc.get("spec") or {}).get("selector") or {}
    if not sel:
        return False
    labels = labels_of(pod)
    return all(labels.get(k) == v for k, v in sel.items())


def _target_port(svc_port: Obj, pod: Obj) -> int | None:
    """The pod's port a service port targets: a number, or a container port's name."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = svc_port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return int(p["containerPort"])
    return None


def service_backends(
    svc: Obj, pods: list[Obj]
) -> list[tuple[Obj, bool, tuple[tuple[Any, ...], ...]]]:
    """(pod, ready, ports) of each pod ``svc`` selects that has an IP; ports as
    (name, port, protocol, appProtocol) tuples in the service's order."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    out = []
    for pod in pods:
        m = meta(pod)
        status = pod.get("status") or {}
        if not status.get("podIP") or not _selects(svc, pod):
            continue
        if m.get("deletionTimestamp") and not publish:
            continue
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            port = _target_port(sp, pod)
            if port is not None:
                ports.append(
                    (sp.get("name", ""), port, sp.get("protocol", "TCP"), sp.get("appProtocol"))
                )
        out.append((pod, publish or is_pod_ready(pod), tuple(ports)))
    return out


def _port_dict(name: str, port: int, protocol: str, app: str | None, sliced: bool = False) -> Obj:
    """An Endpoints port (no name when unnamed) or, ``sliced``, an EndpointSlice port: its
    name is always there, "" when unnamed, as the API server defaults it (kubectl 1.32's
    ``describe service`` dereferences it)."""
    d: Obj = {"port": port, "protocol": protocol}
    if name or sliced:
        d["name"] = name
    if app:
        d["appProtocol"] = app
    return d


def _target_ref(pod: Obj) -> Obj:
    m = meta(pod)
    return {"kind": "Pod", "namespace": m.get("namespace"), "name": m["name"], "uid": m["uid"]}


class _ServiceController(Controller):
    """Services and the pods they select, keyed by service."""

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.services = factory.informer(SERVICES)
        self.pods = factory.informer(PODS)
        self.services.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        for pod in (old, new):
            if pod is None:
                continue
            for svc in self.services.by_index("namespace", meta(pod).get("namespace") or ""):
                if _selects(svc, pod):
                    self.enqueue(svc)

    def _labels(self, svc: Obj) -> dict[str, str]:
        labels = dict(labels_of(svc))
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        return labels


class EndpointsController(_ServiceController):
    name = "endpoints"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.endpoints: Informer = factory.informer(ENDPOINTS)
        self.endpoints.add_handler(self._on_endpoints)

    def _on_endpoints(self, event: str, old: Obj | None, new: Obj | None) -> None:
        if event == "DELETED" and old is not None:
            self.enqueue(old)

    def subsets(self, svc: Obj, pods: list[Obj]) -> list[Obj]:
        groups: dict[tuple[tuple[Any, ...], ...], Obj] = {}
        for pod, ready, ports in service_backends(svc, pods):
            if not ports and (svc.get("spec") or {}).get("ports"):
                continue  # a pod that serves none of the ports is no endpoint
            addr: Obj = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                addr["nodeName"] = node
            spec = pod.get("spec") or {}
            if spec.get("hostname") and spec.get("subdomain") == meta(svc)["name"]:
                addr["hostname"] = spec["hostname"]
            subset = groups.setdefault(ports, {})
            subset.setdefault("addresses" if ready else "notReadyAddresses", []).append(addr)
        out = []
        for ports, subset in sorted(groups.items()):
            for field in ("addresses", "notReadyAddresses"):
                if field in subset:
                    subset[field].sort(key=lambda a: (a["ip"], a["targetRef"]["uid"]))
            if ports:
                subset["ports"] = [_port_dict(*p) for p in ports]
            out.append(subset)
        return out

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        if svc is None:
            try:
                await self.client.delete(ENDPOINTS, ns, name)
            except NotFound:
                pass
            return None
        spec = svc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return None  # endpoints of a service without selector are the user's
        subsets = self.subsets(svc, self.pods.by_index("namespace", ns or ""))
        labels = self._labels(svc)
        current = self.endpoints.get(key)
        if (
            current is not None
            and (current.get("subsets") or []) == subsets
            and dict(labels_of(current)) == labels
        ):
            return None
        body: Obj = (
            deep_copy(current)
            if current is not None
            else {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns},
            }
        )
        body["metadata"]["labels"] = labels
        if subsets:
            body["subsets"] = subsets
        else:
            body.pop("subsets", None)
        if current is None:
            try:
                await self.client.create(ENDPOINTS, ns, body)
            except AlreadyExists:
                self.queue.add(key)  # the cache lags: look again over the one that exists
        else:
            await self.client.update(ENDPOINTS, ns, body)
        return None


class EndpointSliceController(_ServiceController):
    name = "endpointslice"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.slices = factory.informer(ENDPOINTSLICES)
        self.slices.add_index("service", _slice_service)
        self.slices.add_handler(self._on_slice)

    def _on_slice(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None or labels_of(obj).get(MANAGED_BY_LABEL) != MANAGED_BY:
            return
        svc = labels_of(obj).get(SERVICE_NAME_LABEL)
        if svc:
            self.queue.add(f"{meta(obj).get('namespace')}/{svc}")

    def desired(self, svc: Obj, pods: list[Obj]) -> list[tuple[list[Obj], list[Obj]]]:
        """(ports, endpoints) of each slice the service should have."""
        groups: dict[tuple[tuple[Any, ...], ...], list[Obj]] = {}
        for pod, ready, ports in service_backends(svc, pods):
            spec = pod.get("spec") or {}
            terminating = bool(meta(pod).get("deletionTimestamp"))
            ep: Obj = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {
                    "ready": ready and not terminating,
                    "serving": is_pod_ready(pod),
                    "terminating": terminating,
                },
                "targetRef": _target_ref(pod),
            }
            if spec.get("nodeName"):
                ep["nodeName"] = spec["nodeName"]
            if spec.get("hostname") and spec.get("subdomain") == meta(svc)["name"]:
                ep["hostname"] = spec["hostname"]
            groups.setdefault(ports, []).append(ep)
        out = []
        for ports, eps in sorted(groups.items()):
            eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
            port_list = [_port_dict(*p, sliced=True) for p in ports]
            for i in range(0, len(eps), MAX_ENDPOINTS_PER_SLICE):
                out.append((port_list, eps[i : i + MAX_ENDPOINTS_PER_SLICE]))
        if not out:  # a placeholder: the service has a slice, with no endpoint in it
            out.append(([], []))
        return out

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        existing = [
            s
            for s in self.slices.by_index("service", key)
            if labels_of(s).get(MANAGED_BY_LABEL) == MANAGED_BY
        ]
        if svc is None:
            return None  # its slices are owned by it: the garbage collector takes them
        spec = svc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return None
        want = self.desired(svc, self.pods.by_index("namespace", ns or ""))
        labels = {**self._labels(svc), SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
        unused = sorted(existing, key=lambda s: meta(s)["name"])
        for ports, eps in want:
            match = next((s for s in unused if (s.get("ports") or []) == ports), None)
            if match is not None:
                unused.remove(match)
                if (match.get("endpoints") or []) == eps and dict(labels_of(match)) == labels:
                    continue
                body = deep_copy(match)
                body["endpoints"] = eps
                body["metadata"]["labels"] = labels
                await self.client.update(ENDPOINTSLICES, ns, body)
                continue
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "generateName": f"{name}-",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [owner_ref(svc, "v1", "Service")],
                },
                "addressType": "IPv6" if ":" in str(spec.get("clusterIP") or "") else "IPv4",
                "endpoints": eps,
                "ports": ports,
            }
            await self.client.create(ENDPOINTSLICES, ns, body)
        for s in unused:
            try:
                await self.client.delete(ENDPOINTSLICES, ns, meta(s)["name"])
            except NotFound:
                pass
        return None


def _slice_service(obj: Obj) -> list[str]:
    svc = labels_of(obj).get(SERVICE_NAME_LABEL)
    return [f"{meta(obj).get('namespace')}/{svc}"] if svc else []
