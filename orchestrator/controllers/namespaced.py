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


def _cidrs(node: Obj | None) -> list[str]:
    spec = (node or {}).get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class NodeIpamController(Controller):
    """A podCIDR for each Node from the cluster CIDR (kube-controller-manager's range
    allocator). The ranges in use are counted from the Node cache as it changes, and the next
    free one is found from a cursor, so a node costs the same with 5 nodes or 5000. When the
    cluster CIDR is full, the nodes that wait are named once and looked at again only when a
    range is released."""

    name = "nodeipam"
    workers = 1  # one allocator: two workers would hand out one range twice

    def __init__(self, client: Client, factory: InformerFactory, cluster_cidr: str) -> None:
        super().__init__(client, factory)
        self.cluster, self.mask = check_cluster_cidr(cluster_cidr)
        bits = self.cluster.max_prefixlen
        self._size = 1 << (bits - self.mask)  # addresses per node range
        self._count = 1 << (self.mask - self.cluster.prefixlen)  # node ranges in the cluster
        self._cursor = 0  # where the search for a free range starts
        self._in_use: dict[str, int] = {}  # CIDR -> nodes of the cache that hold it
        self._assigned: dict[str, str] = {}  # node -> CIDR given, until the cache shows it
        self._starved: set[str] = set()  # nodes waiting for a range to be released
        self.nodes = factory.informer(NODES)
        self.nodes.add_handler(self._node_changed)

    def _node_changed(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if event == "DELETED":  # the informer hands the last state as ``new``: it is gone
            old, new = obj, None
        released = False
        for cidr in _cidrs(old):
            n = self._in_use.get(cidr, 0) - 1
            if n > 0:
                self._in_use[cidr] = n
            else:
                self._in_use.pop(cidr, None)
                released = True
        for cidr in _cidrs(new):
            self._in_use[cidr] = self._in_use.get(cidr, 0) + 1
        if obj is None:
            return
        name = obj["metadata"]["name"]
        if new is None or _cidrs(new):
            self._assigned.pop(name, None)
            self._starved.discard(name)
        if released and self._starved:
            for waiting in sorted(self._starved):
                self.queue.add(waiting)
            self._starved.clear()
        self.enqueue_handler(event, old, obj)

    def _range(self, i: int) -> str:
        first = int(self.cluster.network_address) + i * self._size
        return str(ipaddress.ip_network((first, self.mask)))

    def _free_range(self) -> str:
        pending = set(self._assigned.values())
        for k in range(self._count):
            i = (self._cursor + k) % self._count
            cidr = self._range(i)
            if cidr not in self._in_use and cidr not in pending:
                self._cursor = (i + 1) % self._count
                return cidr
        return ""

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None or _cidrs(node):
            return None
        cidr = self._assigned.get(key) or self._free_range()
        if not cidr:
            if key not in self._starved:
                log.warning(
                    "node IPAM: no /%d left in %s for %s: it waits for a node to go",
                    self.mask,
                    self.cluster,
                    key,
                )
                self._starved.add(key)
            return None
        patch = {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}
        self._assigned[key] = cidr
        try:
            await self.client.patch(NODES, None, key, patch)
        except NotFound:
            self._assigned.pop(key, None)
            return None
        log.info("node IPAM: %s gets %s", key, cidr)
        return None
