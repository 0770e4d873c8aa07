"""The node's pod network in a cluster (as flannel's host-gw): the bridge from this Node's
``spec.podCIDR`` (given by the node IPAM controller), a route to every other Node's podCIDR via
that node's address, masquerade for pod traffic leaving the cluster CIDR, the cluster DNS
Service's address (the kubelet's --cluster-dns) as the ClusterFirst pods' nameserver. All of it
is the node network file the runtime reads (``network.json`` in the data directory, the same
format as a static one) and ``runtime.pod.api.ensure_network``, which applies it in the node's
network namespace.

The peers come from an informer on the Nodes: a node that appears, gets its podCIDR, changes
its address or goes away changes the file, and the routes follow."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corral_common import hostsys
from orchestrator.client import ApiClient, Informer, Obj
from orchestrator.client.rest import NODES

__all__ = ["NetworkSync", "gateway_of", "network_doc", "node_network_ip", "peers_of"]

log = logging.getLogger("corral.agent.network")

CLUSTER_DOMAIN = "cluster.local"


def node_network_ip(node: Obj) -> str | None:
    """The address other nodes route this node's podCIDR to: its first IPv4 InternalIP that is
    not loopback (a node whose kubelet is reached over 127.0.0.1 has no place in host-gw)."""
    candidates = [
        a.get("address")
        for a in (node.get("status") or {}).get("addresses") or []
        if a.get("type") == "InternalIP"
    ]
    for c in candidates:
        try:
            ip = ipaddress.IPv4Address(str(c))
        except ValueError:
            continue
        if not ip.is_loopback and not ip.is_unspecified:
            return str(ip)
    return None


def peers_of(nodes: Iterable[Obj], self_name: str, pod_cidr: str | None) -> list[dict[str, str]]:
    """host-gw peers: every other Node with a podCIDR and an address, sorted by name. A node
    whose podCIDR overlaps ours (or an earlier peer's) is left out: a route to it would be
    wrong."""
    own = ipaddress.IPv4Network(pod_cidr) if pod_cidr else None
    taken: list[ipaddress.IPv4Network] = [own] if own is not None else []
    out = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        cidr = (node.get("spec") or {}).get("podCIDR")
        address = node_network_ip(node)
        if name == self_name or not cidr or address is None:
            continue
        try:
            net = ipaddress.IPv4Network(cidr)
        except ValueError:
            continue
        if any(net.overlaps(t) for t in taken):
            log.warning("node %s: podCIDR %s overlaps another node's: no route", name, cidr)
            continue
        taken.append(net)
        out.append({"name": name, "podCIDR": str(net), "address": address})
    return out


def gateway_of(pod_cidr: str) -> str:
    """The bridge's address: the first host of the pod CIDR (runtime.network's gateway)."""
    return str(ipaddress.IPv4Network(pod_cidr).network_address + 1)


def network_doc(
    data_dir: Path,
    pod_cidr: str,
    cluster_cidr: str | None,
    peers: list[dict[str, str]],
    dns: str | None,
    cluster_domain: str = CLUSTER_DOMAIN,
) -> dict[str, Any]:
    """The node network file's content; ``dns``: the cluster DNS's address (None: pods get
    the node's resolver)."""
    doc: dict[str, Any] = {
        "name": "corral",
        "podCIDR": str(ipaddress.IPv4Network(pod_cidr, strict=False)),
        "stateDir": str(data_dir / "network"),
        "peers": peers,
    }
    if cluster_cidr:
        doc["clusterCIDR"] = cluster_cidr
        doc["masquerade"] = True
    if dns:
        doc["dns"] = {
            "nameservers": [dns],
            "options": ["ndots:5"],
            "clusterDomain": cluster_domain,
        }
    return doc


class NetworkSync:
    """Keeps ``network.json`` and the node network (through ``ensure``, a blocking call run
    in an executor) in step with the Nodes."""

    def __init__(
        self,
        client: ApiClient,
        node_name: str,
        data_dir: Path,
        ensure: Any,
        cluster_cidr: str | None,
        dns: str | None,
        pod_cidr: str | None = None,
        cluster_domain: str = CLUSTER_DOMAIN,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.data_dir = data_dir
        self.ensure = ensure
        self.cluster_cidr = cluster_cidr
        self.dns = dns  # the ClusterFirst pods' nameserver, or None
        self.pod_cidr = pod_cidr  # a fallback until the Node has spec.podCIDR, or None
        self.cluster_domain = cluster_domain
        self.path = data_dir / "network.json"
        self.informer = Informer(client, NODES)
        self.ready = asyncio.Event()  # the network is set up from a pod CIDR
        self.applied = asyncio.Event()  # set after each change is applied
        self._written = ""
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def set_pod_cidr(self, cidr: str) -> None:
        """This Node's spec.podCIDR (from the node agent's watch of it)."""
        if cidr != self.pod_cidr:
            self.pod_cidr = cidr
            self._kick.set()

    def doc(self) -> dict[str, Any] | None:
        if not self.pod_cidr:
            return None
        peers = peers_of(self.informer.list(), self.node_name, self.pod_cidr)
        return network_doc(
            self.data_dir, self.pod_cidr, self.cluster_cidr, peers, self.dns, self.cluster_domain
        )

    def write(self) -> bool:
        """Write the file if it changed; True if it did."""
        doc = self.doc()
        if doc is None:
            return False
        text = json.dumps(doc, indent=1)
        if text == self._written:
            return False
        hostsys.write_atomic(self.path, text.encode(), 0o644)
        self._written = text
        return True

    async def start(self) -> None:
        self.informer.add_handler(lambda *_: self._kick.set())
        self.informer.start()
        await self.informer.wait_synced()
        if self.pod_cidr:  # the fallback, until the Node has its own
            await self._apply()
        self._task = asyncio.create_task(self._run(), name="kubelet-network")

    async def _apply(self) -> None:
        doc = self.doc()
        if self.write() and doc is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.ensure)
            routes = [f"{p['podCIDR']} via {p['address']}" for p in doc["peers"]]
            log.info(
                "node %s: pod network %s, routes: %s",
                self.node_name,
                self.pod_cidr,
                ", ".join(routes) or "none (no other node)",
            )
            self.applied.set()
        if doc is not None:
            self.ready.set()

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self._apply()
            except Exception as e:  # noqa: BLE001 - kept trying: the next change retries
                log.error("node %s: pod network not set up: %s", self.node_name, e)
                self._written = ""
                await asyncio.sleep(2)
                self._kick.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.informer.stop()
