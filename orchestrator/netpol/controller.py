"""The NetworkPolicy enforcement of one node: the cluster's NetworkPolicies, pods, namespaces
(and the Nodes' cluster DNS addresses) -> one nftables table in the node's network namespace,
replaced whole by one ``nft -f`` transaction (orchestrator.netpol.rules).

As the service proxy: events only mark the state dirty; one loop rebuilds the script from the
caches, at most once per ``min_sync_interval``, again after ``resync_interval`` whatever
happens (rules someone flushed come back), and retries a failed apply with backoff. With no
NetworkPolicy left the table goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from orchestrator.client import ApiClient, Informer
from orchestrator.client.rest import NAMESPACES, PODS
from orchestrator.proxy.proxy import ProxyError, apply_ruleset, nft_binary
from runtime.network.errors import NetworkError

from .rules import delete_script, dns_pods, pod_info, ruleset

__all__ = ["PolicyEnforcer", "slim_namespace", "slim_pod"]

log = logging.getLogger("corral.netpol")

Obj = dict[str, Any]
BRIDGE_NF_CALL = "net.bridge.bridge-nf-call-iptables"


def _meta(obj: Obj, labels: bool = True) -> Obj:
    meta = obj.get("metadata") or {}
    out = {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta}
    if labels and meta.get("labels"):
        out["labels"] = meta["labels"]
    return out


def slim_pod(pod: Obj) -> Obj:
    """What the rules read of a pod (the cache holds every pod of the cluster)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = [
        {"ports": c["ports"]}
        for key in ("initContainers", "containers")
        for c in spec.get(key) or ()
        if c.get("ports")
    ]
    slim_spec = {k: spec[k] for k in ("nodeName", "hostNetwork") if k in spec}
    if containers:
        slim_spec["containers"] = containers
    slim_status = {k: status[k] for k in ("podIP", "phase") if k in status}
    return {"metadata": _meta(pod), "spec": slim_spec, "status": slim_status}


def slim_namespace(ns: Obj) -> Obj:
    return {"metadata": _meta(ns)}


class PolicyEnforcer:
    """Programs the node's NetworkPolicy table. ``client``: one that may list and watch pods
    and namespaces cluster-wide (the agent's controller credentials); ``policies`` and
    ``nodes``: informers the caller owns, started, and stops after this."""

    def __init__(
        self,
        client: ApiClient,
        node_name: str,
        policies: Informer,
        nodes: Informer | None = None,
        netns: str | None = None,
        *,
        min_sync_interval: float = 0.2,
        resync_interval: float = 60.0,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.netns = netns
        self.policies = policies
        self.nodes = nodes
        self.pods = Informer(client, PODS, transform=slim_pod)
        self.namespaces = Informer(client, NAMESPACES, transform=slim_namespace)
        self.min_sync_interval = min_sync_interval
        self.resync_interval = resync_interval
        self.syncs = 0
        self.failures = 0
        self.last_duration = 0.0
        self._applied: str | None = None  # the script the kernel holds, as far as known
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        watched = [self.policies, self.pods, self.namespaces]
        if self.nodes is not None:
            watched.append(self.nodes)
        for inf in watched:  # any change of any of them: a sync
            inf.add_handler(self._changed)

    def _changed(self, _ev: str, _old: Obj | None, _new: Obj | None) -> None:
        self._dirty.set()

    def start(self) -> None:
        """Start the informers and the sync loop; ProxyError when ``nft`` is missing."""
        nft_binary()
        self.pods.start()
        self.namespaces.start()
        self._task = asyncio.create_task(self._run(), name="netpol-sync")

    async def stop(self, *, remove_rules: bool = False) -> None:
        """Stop syncing. The rules stay (the pods stay isolated while the agent restarts),
        unless ``remove_rules``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.pods.stop()
        await self.namespaces.stop()
        if remove_rules:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, apply_ruleset, delete_script(), self.netns, "delete policy rules"
            )
            self._applied = None

    def script(self) -> str:
        policies = self.policies.list()
        if not policies:
            return delete_script()
        pods = [p for p in map(pod_info, self.pods.list()) if p is not None]
        if self.nodes is not None:
            pods += dns_pods(self.nodes.list())
        namespaces = {
            n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in self.namespaces.list()
        }
        return ruleset(policies, pods, namespaces, self.node_name)

    def _prepare(self) -> None:
        """Bridged traffic through the ip family's hooks (see orchestrator.netpol.rules),
        in the node's namespace only."""
        from runtime.network.netns import read_sysctl, write_sysctl

        if read_sysctl(self.netns, BRIDGE_NF_CALL).strip() != "1":
            write_sysctl(self.netns, BRIDGE_NF_CALL, "1")

    async def sync(self, force: bool = False) -> None:
        self._dirty.clear()
        start = time.monotonic()
        script = self.script()
        if force or script != self._applied:
            loop = asyncio.get_running_loop()
            try:
                if script != delete_script():
                    await loop.run_in_executor(None, self._prepare)
                await loop.run_in_executor(None, apply_ruleset, script, self.netns, "netpol sync")
            except BaseException:
                self._applied = None
                raise
            self._applied = script
        self.syncs += 1
        self.last_duration = time.monotonic() - start

    async def _run(self) -> None:
        waits = [self.policies.wait_synced(), self.pods.wait_synced()]
        waits.append(self.namespaces.wait_synced())
        if self.nodes is not None:
            waits.append(self.nodes.wait_synced())
        await asyncio.gather(*waits)
        backoff = self.min_sync_interval
        periodic = False
        while True:
            try:
                await self.sync(force=periodic)
                self.synced.set()
                backoff = self.min_sync_interval
            except (ProxyError, NetworkError, ValueError, OSError) as e:
                self.failures += 1
                log.error("network policy: %s (retrying in %.1fs)", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                periodic = False
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.resync_interval)
            periodic = not self._dirty.is_set()
            await asyncio.sleep(self.min_sync_interval)
