"""The cluster DNS's endpoints: the ``kube-system/kube-dns`` Service (made by the API server)
selects no pod; each agent serves the cluster DNS itself, on its pods' gateway, and names that
address on its Node (annotation ``corral.dev/cluster-dns-address``). This controller keeps one
EndpointSlice of the Service with one endpoint per such Node: its address, ``nodeName``, and
ready as long as the Node is Ready (a killed agent's node turns NotReady; a deleted Node's
endpoint goes). The Service's internalTrafficPolicy Local makes each node's proxy send its own
pods' queries to its own DNS server."""

from __future__ import annotations

import ipaddress
import logging

from orchestrator.client import AlreadyExists, Conflict, NotFound, Obj
from orchestrator.client.rest import ENDPOINTSLICES, NODES, SERVICES

from .base import Client, Controller, InformerFactory
from .util import get_condition

__all__ = ["ClusterDnsController", "DNS_ADDRESS_ANNOTATION", "dns_endpoints", "dns_slice"]

log = logging.getLogger("corral.controllers.clusterdns")

NAMESPACE = "kube-system"
SERVICE = "kube-dns"
KEY = f"{NAMESPACE}/{SERVICE}"
SLICE = "kube-dns-nodes"
DNS_ADDRESS_ANNOTATION = "corral.dev/cluster-dns-address"
MANAGED_BY = "cluster-dns-controller.corral.dev"  # a label value: no slash
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
PORTS = (
    {"name": "dns", "port": 53, "protocol": "UDP"},
    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
)


def _address(node: Obj) -> str | None:
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(DNS_ADDRESS_ANNOTATION)
    try:
        return str(ipaddress.IPv4Address(str(text)))
    except ValueError:
        return None


def dns_endpoints(nodes: list[Obj]) -> list[Obj]:
    """One endpoint per Node that serves the cluster DNS, sorted by node name."""
    out = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        address = _address(node)
        if address is None or (node.get("metadata") or {}).get("deletionTimestamp"):
            continue
        cond = get_condition(node.get("status"), "Ready") or {}
        ready = cond.get("status") == "True"
        out.append(
            {
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": node["metadata"]["name"],
            }
        )
    return out


def dns_slice(service: Obj, nodes: list[Obj]) -> Obj:
    """The EndpointSlice of ``service`` (kube-dns) for ``nodes``."""
    m = service["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": SLICE,
            "namespace": NAMESPACE,
            "labels": {SERVICE_NAME_LABEL: SERVICE, MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": m["name"],
                    "uid": m["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": dns_endpoints(nodes),
        "ports": [dict(p) for p in PORTS],
    }


class ClusterDnsController(Controller):
    name = "clusterdns"
    workers = 1  # one key

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.nodes = factory.informer(NODES)
        self.services = factory.informer(SERVICES)
        self.slices = factory.informer(ENDPOINTSLICES)
        for inf in (self.nodes, self.services, self.slices):
            inf.add_handler(self._changed)

    def _changed(self, _ev: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        m = obj.get("metadata") or {}
        if m.get("namespace") and m.get("namespace") != NAMESPACE:
            return
        if (
            not m.get("namespace")
            and _address(obj) is None
            and (old is None or _address(old) is None)
        ):
            return  # a Node that serves no cluster DNS (and did not): not in the slice
        if obj.get("addressType") is not None and m.get("name") != SLICE:
            return
        self.queue.add(KEY)

    async def reconcile(self, key: str) -> float | None:
        if key != KEY:
            return None
        service = self.services.get(KEY)
        current = self.slices.get(f"{NAMESPACE}/{SLICE}")
        if service is None or (service.get("spec") or {}).get("selector"):
            # gone, or given a selector (its pods are its endpoints): the slice is not ours
            if current is not None and _ours(current):
                try:
                    await self.client.delete(ENDPOINTSLICES, NAMESPACE, SLICE)
                except NotFound:
                    pass
            return None
        want = dns_slice(service, self.nodes.list())
        if current is None:
            try:
                await self.client.create(ENDPOINTSLICES, NAMESPACE, want)
            except AlreadyExists:
                return 0.1  # made meanwhile: look again once the cache has it
            log.info("cluster DNS: %d node endpoint(s)", len(want["endpoints"]))
            return None
        if not _ours(current):
            log.warning("cluster DNS: %s/%s is not this controller's: left alone", NAMESPACE, SLICE)
            return None
        same = all(current.get(k) == want[k] for k in ("endpoints", "ports", "addressType")) and (
            current["metadata"].get("ownerReferences") == want["metadata"]["ownerReferences"]
        )
        if same:
            return None
        body = dict(want)
        body["metadata"] = {
            **current["metadata"],
            "labels": want["metadata"]["labels"],
            "ownerReferences": want["metadata"]["ownerReferences"],
        }
        try:
            await self.client.update(ENDPOINTSLICES, NAMESPACE, body)
        except (Conflict, NotFound):
            return 0.1  # changed or gone meanwhile: again from the cache
        log.info("cluster DNS: %d node endpoint(s)", len(want["endpoints"]))
        return None


def _ours(slice_: Obj) -> bool:
    labels = (slice_.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)
