"""Small controllers: the ``default`` ServiceAccount of every namespace (kube's
serviceaccounts-controller) and the node IPAM (kube's nodeipam range allocator: a podCIDR per
Node out of the cluster CIDR)."""

from __future__ import annotations

import ipaddress
import logging

from orchestrator.client import AlreadyExists, NotFound, Obj
from orchestrator.client.rest import NAMESPACES, NODES, SERVICEACCOUNTS

from .base import Client, Controller, InformerFactory
from .util import meta

__all__ = ["NodeIpamController", "ServiceAccountController", "check_cluster_cidr"]

log = logging.getLogger("corral.controllers")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ServiceAccountController(Controller):
    name = "serviceaccount"
    workers = 1
    account = "default"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.namespaces = factory.informer(NAMESPACES)
        self.accounts = factory.informer(SERVICEACCOUNTS)
        self.namespaces.add_handler(self.enqueue_handler)
        self.accounts.add_handler(self._on_account)

    def _on_account(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if event == "DELETED" and obj is not None and meta(obj).get("name") == self.account:
            self.queue.add(str(meta(obj).get("namespace")))

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or meta(ns).get("deletionTimestamp"):
            return None
        if self.accounts.get(f"{key}/{self.account}") is not None:
            return None
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": self.account, "namespace": key},
        }
        try:
            await self.client.create(SERVICEACCOUNTS, key, body)
        except AlreadyExists:
            pass
        except NotFound:  # the namespace went meanwhile
            pass
        return None


def node_mask(cluster: IPNetwork) -> int:
    """The size of each node's range: /24 of an IPv4 cluster CIDR, /64 of IPv6 (kube's
    --node-cidr-mask-size defaults)."""
    mask = 24 if cluster.version == 4 else 64
    if cluster.prefixlen > mask:
        raise ValueError(f"cluster CIDR {cluster} is smaller than one node's /{mask}")
    return mask


def check_cluster_cidr(cidr: str) -> tuple[IPNetwork, int]:
    """The cluster CIDR and the node mask, or ValueError saying what is wrong."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise ValueError(f"{cidr!r} is not a CIDR: {e}") from None
    return net, node_mask(net)


class NodeIpamController(Controller):
    name = "nodeipam"
    workers = 1  # one allocator: two workers would hand out one range twice

    def __init__(self, client: Client, factory: InformerFactory, cluster_cidr: str) -> None:
        super().__init__(client, factory)
        self.cluster, self.mask = check_cluster_cidr(cluster_cidr)
        self.nodes = factory.informer(NODES)
        self.nodes.add_handler(self.enqueue_handler)
        self._assigned: dict[str, str] = {}  # node -> CIDR given, until the cache shows it

    def _used(self) -> set[str]:
        used = set()
        for n in self.nodes.list():
            spec = n.get("spec") or {}
            used.update(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        for node, cidr in list(self._assigned.items()):
            cached = self.nodes.get(node)
            if cached is None or (cached.get("spec") or {}).get("podCIDR"):
                del self._assigned[node]
            else:
                used.add(cidr)
        return used

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return None
        used = self._used()
        if key in self._assigned:
            cidr = self._assigned[key]
        else:
            cidr = next(
                (str(s) for s in self.cluster.subnets(new_prefix=self.mask) if str(s) not in used),
                "",
            )
            if not cidr:
                raise RuntimeError(f"node IPAM: no /{self.mask} left in {self.cluster} for {key}")
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        self._assigned[key] = cidr
        try:
            await self.client.patch(NODES, None, key, patch)
        except NotFound:
            self._assigned.pop(key, None)
            return None
        log.info("node IPAM: %s gets %s", key, cidr)
        return None
