"""The service proxy of one node: Services and EndpointSlices (informers) -> one nftables table
in the node's network namespace, replaced whole by one ``nft -f`` transaction.

Events only mark the state dirty; one sync loop rebuilds the ruleset from the caches, at most
once per ``min_sync_interval`` (a burst of events is one sync), and again after
``resync_interval`` whatever happens (rules someone flushed come back). A failed apply is retried
with backoff; the kernel keeps the last rules meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.client import ApiClient, Informer
from orchestrator.client.rest import ENDPOINTSLICES, SERVICES
from runtime.network.netns import Netns, in_netns

from .rules import Endpoint, Ruleset, ServicePort, delete_script, ruleset

__all__ = [
    "ProxyError",
    "ServiceProxy",
    "apply_ruleset",
    "forget_unanswered",
    "nft_binary",
    "service_ports",
    "sync_rules",
]

log = logging.getLogger("corral.proxy")

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ProxyError(Exception):
    """A step of the proxy failed: ``step`` names it."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


def nft_binary() -> str:
    """The ``nft`` command (Debian package nftables); ProxyError when there is none."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        raise ProxyError("find nft", "not installed (Debian package nftables)")
    return nft


def apply_ruleset(script: str, netns: str | None = None, step: str = "apply rules") -> None:
    """Run ``nft -f -`` with ``script`` in ``netns`` (a path; None: this namespace): one
    transaction, all or nothing."""
    nft = nft_binary()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [nft, "-f", "-"], input=script, capture_output=True, text=True, check=False
        )

    try:
        res = in_netns(Netns.of(netns), run)
    except OSError as e:
        raise ProxyError(f"nft {step} in {netns or 'this netns'}", e) from None
    if res.returncode != 0:
        # nft quotes the whole offending line (a map of every service): keep its verdict
        errors = [line[:300] for line in res.stderr.splitlines() if "Error:" in line]
        raise ProxyError(
            f"nft {step} in {netns or 'this netns'}",
            "; ".join(errors[:5]) or res.stderr.strip()[-500:],
        )


def conntrack_binary() -> str:
    """The ``conntrack`` command (Debian package conntrack); ProxyError when there is none."""
    tool = shutil.which("conntrack") or shutil.which("conntrack", path="/usr/sbin:/sbin")
    if tool is None:
        raise ProxyError("find conntrack", "not installed (Debian package conntrack)")
    return tool


def forget_unanswered(endpoints: Iterable[tuple[str, str, int]], netns: str | None = None) -> None:
    """Delete the connection tracking entries of ``netns`` (a path; None: this namespace)
    whose DNAT target, one of ``endpoints`` (protocol, address, port) the rules no longer
    hold, never answered: TCP connections still in SYN_SENT, and every UDP one (as kube-proxy
    does for UDP).

    Why TCP too: a client whose SYN went to an endpoint that then died retransmits it with the
    same addresses and ports, and a new connection may reuse the source port of such an
    attempt (the kernel picks a free port among its sockets, not among tracked connections: a
    client looping requests reuses some within hundreds of connections); the kernel matches
    either to the old entry, which keeps its DNAT for its 120 s SYN_SENT timeout, and the rules
    are never asked again: the connection times out though live endpoints are there. Without
    its entry the SYN is a new connection, DNATed by the current rules. Nothing is lost: the
    endpoint never answered it (one that another service still has gets the same DNAT
    again). Established connections keep their entries (a terminating endpoint finishes what
    it serves). SCTP is left to its timeouts."""
    tool = conntrack_binary()
    for proto, ip, port in sorted(set(endpoints)):
        if proto not in ("tcp", "udp"):
            continue
        argv = [tool, "-D", "-p", proto, "--reply-src", ip, "--reply-port-src", str(port)]
        if proto == "tcp":
            argv += ["--state", "SYN_SENT"]

        def run(argv: list[str] = argv) -> subprocess.CompletedProcess[str]:
            return subprocess.run(argv, capture_output=True, text=True, check=False)

        try:
            res = in_netns(Netns.of(netns), run)
        except OSError as e:
            raise ProxyError(f"conntrack delete {proto} {ip}:{port}", e) from None
        # exit status 1 with "0 flow entries have been deleted" when none matched
        if res.returncode != 0 and "flow entries have been deleted" not in res.stderr:
            raise ProxyError(
                f"conntrack delete {proto} {ip}:{port} in {netns or 'this netns'}",
                res.stderr.strip()[-500:],
            )


def sync_rules(new: Ruleset, previous: Ruleset | None, netns: str | None = None) -> None:
    """Make ``new`` the rules of ``netns``: replace the table (``previous`` None: what the
    kernel holds is unknown) or update ``previous`` in place, in one transaction; then forget
    the unanswered connections to the endpoints ``previous`` had and ``new`` has not."""
    script = new.replace_script() if previous is None else new.update_script(previous)
    apply_ruleset(script, netns, "sync")
    if previous is not None:
        gone = previous.endpoints - new.endpoints
        if gone:
            forget_unanswered(gone, netns)


def _ipv4(text: object) -> bool:
    try:
        ipaddress.IPv4Address(str(text))
    except ValueError:
        return False
    return True


def _ready(ep: Obj) -> bool:
    cond = ep.get("conditions") or {}
    # kube: ready unset means ready; a terminating endpoint is not ready
    return cond.get("ready") is not False


def external_addresses(svc: Obj) -> tuple[str, ...]:
    """The addresses outside the cluster a Service answers on (IPv4 only): its
    ``externalIPs``, and for a LoadBalancer its ingress IPs whose ``ipMode`` is VIP (or
    unset), as kube-proxy programs them (a Proxy-mode one is left to the load balancer)."""
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    out = [a for a in spec.get("externalIPs") or [] if isinstance(a, str)]
    if spec.get("type") == "LoadBalancer":
        for ing in (status.get("loadBalancer") or {}).get("ingress") or []:
            if ing.get("ip") and ing.get("ipMode", "VIP") == "VIP":
                out.append(ing["ip"])
    return tuple(a for a in dict.fromkeys(out) if _ipv4(a))


def service_ports(
    services: Iterable[Obj], slices: Iterable[Obj], node_name: str = ""
) -> list[ServicePort]:
    """The service ports to program, each with the ready endpoints its slices list (those
    whose ``nodeName`` is ``node_name`` are its local ones, for the Local traffic policies)."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        m = s.get("metadata") or {}
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        svc_name = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            by_service.setdefault((m.get("namespace", ""), svc_name), []).append(s)
    out: list[ServicePort] = []
    for svc in services:
        m = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        typ = spec.get("type", "ClusterIP")
        cip = spec.get("clusterIP") or ""
        if typ == "ExternalName" or not _ipv4(cip):
            continue  # headless, or an address this proxy cannot program
        ns, name = m.get("namespace", ""), m.get("name", "")
        timeout = 0
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            timeout = int(cfg.get("timeoutSeconds") or 10800)
        externals = external_addresses(svc)
        for p in spec.get("ports") or []:
            proto = p.get("protocol", "TCP")
            port_name = p.get("name") or ""
            eps: set[Endpoint] = set()
            local: set[Endpoint] = set()
            for s in by_service.get((ns, name), []):
                number = None
                for sp in s.get("ports") or []:
                    if (sp.get("name") or "") == port_name and sp.get("protocol", "TCP") == proto:
                        number = sp.get("port")
                if not isinstance(number, int):
                    continue
                for ep in s.get("endpoints") or []:
                    if _ready(ep):
                        here = bool(node_name) and ep.get("nodeName") == node_name
                        for addr in ep.get("addresses") or []:
                            if _ipv4(addr):
                                eps.add(Endpoint(addr, number))
                                if here:
                                    local.add(Endpoint(addr, number))
            node_port = (p.get("nodePort") or 0) if typ in ("NodePort", "LoadBalancer") else 0
            out.append(
                ServicePort(
                    namespace=ns,
                    name=name,
                    port_name=port_name,
                    protocol=proto,
                    cluster_ip=cip,
                    port=int(p.get("port") or 0),
                    node_port=int(node_port),
                    endpoints=tuple(sorted(eps, key=lambda e: (e.ip, e.port))),
                    affinity_timeout=timeout,
                    local_endpoints=tuple(sorted(local, key=lambda e: (e.ip, e.port))),
                    internal_local=spec.get("internalTrafficPolicy") == "Local",
                    external_local=bool(node_port or externals)
                    and spec.get("externalTrafficPolicy") in ("Local", "OnlyLocal"),
                    external_ips=externals,
                )
            )
    return out


@dataclass
class SyncStats:
    syncs: int = 0
    failures: int = 0
    last_duration: float = 0.0


class ServiceProxy:
    """Programs the node's nftables from the cluster's Services and EndpointSlices."""

    def __init__(
        self,
        client: ApiClient,
        netns: str | None = None,
        *,
        node_name: str = "",
        pod_cidr: str | None = None,
        min_sync_interval: float = 0.2,
        resync_interval: float = 60.0,
        services: Informer | None = None,
    ) -> None:
        self.client = client
        self.netns = netns
        self.node_name = node_name  # whose endpoints are local (the Local traffic policies)
        self.pod_cidr = pod_cidr
        self.min_sync_interval = min_sync_interval
        self.resync_interval = resync_interval
        self.slices = Informer(client, ENDPOINTSLICES)
        # Every Service, from ``services`` when the caller shares its informer (the agent's pod
        # manager's: one list and watch fewer), which its owner starts and stops.
        self.services = services if services is not None else Informer(client, SERVICES)
        self._owned = [self.slices] if services is not None else [self.services, self.slices]
        self.stats = SyncStats()
        self._dirty = asyncio.Event()
        self._applied: Ruleset | None = None  # what the kernel holds, as far as known
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    def _changed(self, _ev: str, _old: Obj | None, _new: Obj | None) -> None:
        self._dirty.set()

    def start(self) -> None:
        """Start the informers and the sync task, which programs the rules once the first
        lists are in and keeps them current until ``stop`` (``synced`` is set after the first
        sync). ProxyError when ``nft`` or ``conntrack`` is missing."""
        nft_binary()
        conntrack_binary()
        for inf in (self.services, self.slices):
            inf.add_handler(self._changed)
        for inf in self._owned:
            inf.start()
        self._task = asyncio.create_task(self._run(), name="proxy-sync")

    async def stop(self, *, remove_rules: bool = False) -> None:
        """Stop syncing. The rules stay (services keep working while the agent restarts),
        unless ``remove_rules``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for inf in self._owned:
            await inf.stop()
        if remove_rules:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                None, apply_ruleset, delete_script(), self.netns, "delete rules"
            )

    def ruleset(self) -> Ruleset:
        ports = service_ports(self.services.list(), self.slices.list(), self.node_name)
        return ruleset(ports, self.pod_cidr)

    async def sync(self, force: bool = False) -> None:
        """Build the ruleset from the caches and apply it, unless it is what was applied
        (``force``: apply anyway). The first sync replaces the table; later ones update it in
        place (one transaction either way), keeping session affinity entries."""
        self._dirty.clear()
        start = time.monotonic()
        new = self.ruleset()
        if force or new != self._applied:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, sync_rules, new, self._applied, self.netns)
            except ProxyError:
                self._applied = None  # not known any more: the next sync replaces the table
                raise
            self._applied = new
        self.stats.syncs += 1
        self.stats.last_duration = time.monotonic() - start

    async def _run(self) -> None:
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
        backoff = self.min_sync_interval
        periodic = False
        while True:
            try:
                await self.sync(force=periodic)
                self.synced.set()
                backoff = self.min_sync_interval
            except (ProxyError, ValueError, OSError) as e:
                self.stats.failures += 1
                log.error("service proxy: %s (retrying in %.1fs)", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                periodic = False
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.resync_interval)
            periodic = not self._dirty.is_set()  # re-applied even if unchanged
            await asyncio.sleep(self.min_sync_interval)  # coalesce a burst of events
