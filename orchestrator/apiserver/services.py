"""Services: defaults, ClusterIP and NodePort allocation, and the ``kubernetes`` service.

Allocation state lives in the store, one key per allocated address or port
(``/registry/ranges/serviceips/<ip>``, ``/registry/ranges/servicenodeports/<port>``, as
kube-apiserver's IPAddress objects), created with create-if-absent: two creates racing for one
address, in one process or in several API servers over one etcd, cannot both win. The key holds
the owning service's uid. A service takes its keys before it is written and gives back the ones
it took when its write fails; a deleted service releases its keys (only those it owns). A crash
between the two leaves a key without a service: ``repair`` (at start and then periodically)
deletes keys found orphaned on two passes in a row (compare-and-swap on their revision), and
re-creates the keys of services that lack them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from orchestrator.store import AlreadyExists, Backend, Conflict, NotFound

from . import errors
from .resources import by_path

__all__ = [
    "IP_PREFIX",
    "LEASE_PREFIX",
    "PORT_PREFIX",
    "Allocation",
    "ApiServerLeases",
    "ServiceAllocator",
    "leave",
    "maintain",
    "parse_port_range",
]

log = logging.getLogger("corral.apiserver.services")

Obj = dict[str, Any]
IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"
TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
ALLOCATE_TRIES = 64
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds (kube's DefaultClientIPServiceAffinitySeconds)
# The API servers' leases behind the ``kubernetes`` endpoints (kube-apiserver's
# --endpoint-reconciler-type=lease: a 15 s TTL, reconciled every 10 s).
LEASE_PREFIX = "/registry/masterleases/"
LEASE_TTL = 15.0
LEASE_RENEW = 10.0


def parse_port_range(text: str) -> tuple[int, int]:
    """``30000-32767`` (or one port) -> (first, last); ValueError naming the problem."""
    lo, sep, hi = text.strip().partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 30000-32767") from None
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"{text!r}: ports must be 1-65535, first <= last")
    return first, last


def _needs_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: Obj) -> bool:
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True)


def _go_strings(values: list[str]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


@dataclass
class Allocation:
    """Keys one write took (to give back when the write fails) and keys it no longer needs
    (to release once it succeeded)."""

    taken: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_INDEX = 10  # the cluster DNS's default address: the 10th of the service CIDR (as k3s)


def cluster_dns_ip(net: ipaddress.IPv4Network, requested: str = "") -> str:
    """The cluster DNS Service's clusterIP: ``requested`` (``--cluster-dns``), checked to be a
    host address of ``net`` other than the kubernetes service's, or the 10th address."""
    if not requested:
        if net.num_addresses <= DNS_INDEX + 1:
            raise ValueError(f"--service-cidr {net}: too small for the cluster DNS's 10th address")
        return str(net.network_address + DNS_INDEX)
    try:
        addr = ipaddress.IPv4Address(requested)
    except ValueError as e:
        raise ValueError(f"--cluster-dns {requested}: {e}") from None
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise ValueError(f"--cluster-dns {requested}: not a host address of the service CIDR {net}")
    if addr == net.network_address + 1:
        raise ValueError(f"--cluster-dns {requested}: the kubernetes service's address")
    return str(addr)


class ServiceAllocator:
    def __init__(
        self,
        store: Backend,
        cidr: str = "10.43.0.0/16",
        node_port_range: tuple[int, int] = (30000, 32767),
        cluster_dns: str = "",
    ) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise ValueError(f"--service-cidr {cidr}: {e}") from None
        if not isinstance(net, ipaddress.IPv4Network) or net.num_addresses < 4:
            raise ValueError(f"--service-cidr {cidr}: need an IPv4 network of at least /30")
        if net.prefixlen < 12:
            raise ValueError(f"--service-cidr {cidr}: at most 2^20 addresses (a /12 or longer)")
        self.store = store
        self.net = net
        self.node_ports = node_port_range
        self._first = int(net.network_address) + 1  # reserved for the kubernetes service
        self._last = int(net.broadcast_address) - 1
        self.cluster_dns_ip = cluster_dns_ip(net, cluster_dns)
        self._suspects: dict[str, int] = {}  # orphan key -> its revision, seen last pass

    @property
    def kubernetes_ip(self) -> str:
        return str(ipaddress.IPv4Address(self._first))

    # ------------------------------------------------------------------ defaults

    @staticmethod
    def default(svc: Obj) -> None:
        """kube-apiserver's defaults for a Service (as its SetDefaults_Service)."""
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["sessionAffinity"] == "ClientIP":
            cfg = spec.setdefault("sessionAffinityConfig", {})
            if isinstance(cfg, dict):
                cip = cfg.setdefault("clientIP", {})
                if isinstance(cip, dict):
                    cip.setdefault("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if port.get("targetPort") in (None, 0, ""):
                    port["targetPort"] = port.get("port")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        ips = spec.get("clusterIPs")
        if not spec.get("clusterIP") and isinstance(ips, list) and ips:
            spec["clusterIP"] = ips[0]

    def _validate(self, svc: Obj) -> None:
        name = svc["metadata"]["name"]
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            return  # the model names the error

        def bad(path: str, message: str) -> errors.ApiError:
            return errors.invalid("Service", name, path, message)

        typ = spec.get("type")
        if typ not in TYPES:
            raise bad(
                "spec.type",
                f'Unsupported value: "{typ}": supported values: '
                + ", ".join(f'"{t}"' for t in TYPES),
            )
        ips = spec.get("clusterIPs")
        if isinstance(ips, list) and ips and ips[0] != spec.get("clusterIP"):
            raise bad(
                "spec.clusterIPs",
                f"Invalid value: {_go_strings(ips)}: must match clusterIP when set",
            )
        if isinstance(ips, list) and len(ips) > 1:
            raise bad(
                "spec.clusterIPs",
                f"Invalid value: {_go_strings(ips)}: only one (IPv4) address is supported",
            )
        cip = spec.get("clusterIP")
        if typ == "ExternalName":
            if cip:
                raise bad(
                    "spec.clusterIP", f'Invalid value: "{cip}": must be empty for ExternalName'
                )
            if not spec.get("externalName"):
                raise bad("spec.externalName", "Required value")
            return
        if cip == "None" and _needs_node_ports(spec):
            raise bad(
                "spec.clusterIP", f"Invalid value: \"None\": may not be set to 'None' for {typ}"
            )
        ports = spec.get("ports")
        if not ports and cip != "None":
            raise bad("spec.ports", "Required value")
        seen: set[tuple[Any, Any]] = set()
        seen_node: set[tuple[Any, Any]] = set()
        for i, port in enumerate(ports or []):
            if not isinstance(port, dict):
                continue
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise bad(
                    f"spec.ports[{i}].port",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            proto = port.get("protocol")
            if proto not in ("TCP", "UDP", "SCTP"):
                raise bad(
                    f"spec.ports[{i}].protocol",
                    f'Unsupported value: "{proto}": supported values: "SCTP", "TCP", "UDP"',
                )
            if (number, proto) in seen:
                raise bad(f"spec.ports[{i}]", f"Duplicate value: {number}/{proto}")
            seen.add((number, proto))
            if len(ports) > 1 and not port.get("name"):
                raise bad(f"spec.ports[{i}].name", "Required value")
            if port.get("nodePort") and (port["nodePort"], proto) in seen_node:
                raise bad(f"spec.ports[{i}].nodePort", f"Duplicate value: {port['nodePort']}")
            if port.get("nodePort"):
                seen_node.add((port["nodePort"], proto))
            if port.get("nodePort") and not _needs_node_ports(spec):
                raise bad(
                    f"spec.ports[{i}].nodePort",
                    f"Forbidden: may not be used when `type` is '{typ}'",
                )
        if cip and cip != "None":
            try:
                ipaddress.IPv4Address(cip)
            except ValueError:
                raise bad(
                    "spec.clusterIPs[0]",
                    f'Invalid value: "{cip}": must be a valid IP address, (e.g. 10.9.8.7)',
                ) from None

    # ------------------------------------------------------------------ the keys

    @staticmethod
    def _ip_key(ip: str) -> str:
        return IP_PREFIX + ip

    @staticmethod
    def _port_key(proto: str, port: int) -> str:
        # kube keeps one port space for TCP, UDP and SCTP alike
        return PORT_PREFIX + str(port)

    async def _take(self, key: str, uid: str) -> bool:
        try:
            await self.store.create(key, msgspec.json.encode({"uid": uid}))
        except AlreadyExists:
            return False
        return True

    async def _owner(self, key: str) -> str | None:
        try:
            kv = await self.store.get(key)
        except NotFound:
            return None
        return str(msgspec.json.decode(kv.value).get("uid", ""))

    async def release(self, keys: Iterable[str], uid: str) -> None:
        """Give back ``keys`` owned by ``uid`` (compare-and-swap: a key someone else took
        since stays theirs)."""
        for key in keys:
            for _ in range(3):
                try:
                    kv = await self.store.get(key)
                except NotFound:
                    break
                if msgspec.json.decode(kv.value).get("uid") != uid:
                    break
                try:
                    await self.store.delete(key, kv.mod_rev)
                    break
                except NotFound:
                    break
                except Conflict:
                    continue

    async def _used(self, prefix: str) -> set[str]:
        page = await self.store.list(prefix)
        return {kv.key[len(prefix) :] for kv in page.items}

    async def _allocate_ip(
        self, namespace: str, name: str, ip: str | None, uid: str, dry_run: bool
    ) -> str:
        if ip == self.cluster_dns_ip and (namespace, name) != (DNS_NAMESPACE, DNS_SERVICE):
            raise errors.invalid(
                "Service",
                name,
                "spec.clusterIPs",
                f"Invalid value: {_go_strings([ip])}: failed to allocate IP {ip}: provided IP is"
                f" reserved for the cluster DNS ({DNS_NAMESPACE}/{DNS_SERVICE}, the servers'"
                " --cluster-dns)",
            )
        if ip:
            addr = ipaddress.IPv4Address(ip)
            if addr not in self.net or int(addr) in (
                int(self.net.network_address),
                int(self.net.broadcast_address),
            ):
                raise errors.invalid(
                    "Service",
                    name,
                    "spec.clusterIPs",
                    f"Invalid value: {_go_strings([ip])}: failed to allocate IP {ip}: the"
                    f" provided IP ({ip}) is not in the valid range. The range of valid IPs"
                    f" is {self.net}",
                )
            owner = await self._owner(self._ip_key(ip))
            if (owner is not None and owner != uid) or (
                not dry_run and owner is None and not await self._take(self._ip_key(ip), uid)
            ):
                raise errors.invalid(
                    "Service",
                    name,
                    "spec.clusterIPs",
                    f"Invalid value: {_go_strings([ip])}: failed to allocate IP {ip}: provided"
                    " IP is already allocated",
                )
            return ip
        size = self._last - self._first  # .1 is the kubernetes service's, not handed out
        for _ in range(ALLOCATE_TRIES):
            used = await self._used(IP_PREFIX)
            start = random.randrange(size)
            for i in range(size):
                cand = str(ipaddress.IPv4Address(self._first + 1 + (start + i) % size))
                if cand not in used and cand != self.cluster_dns_ip:
                    break
            else:
                break
            if dry_run or await self._take(self._ip_key(cand), uid):
                return cand
        raise errors.ApiError(
            500,
            "InternalError",
            f"Internal error occurred: failed to allocate a serviceIP: range is full ({self.net})",
        )

    async def _allocate_port(
        self, name: str, index: int, proto: str, port: int | None, uid: str, dry_run: bool
    ) -> int:
        first, last = self.node_ports
        if port:
            path = f"spec.ports[{index}].nodePort"
            if not first <= port <= last:
                raise errors.invalid(
                    "Service",
                    name,
                    path,
                    f"Invalid value: {port}: provided port is not in the valid range. The"
                    f" range of valid ports is {first}-{last}",
                )
            key = self._port_key(proto, port)
            owner = await self._owner(key)
            if (owner is not None and owner != uid) or (
                not dry_run and owner is None and not await self._take(key, uid)
            ):
                raise errors.invalid(
                    "Service",
                    name,
                    path,
                    f"Invalid value: {port}: provided port is already allocated",
                )
            return port
        size = last - first + 1
        for _ in range(ALLOCATE_TRIES):
            used = await self._used(PORT_PREFIX)
            start = random.randrange(size)
            for i in range(size):
                cand = first + (start + i) % size
                if str(cand) not in used:
                    break
            else:
                break
            if dry_run or await self._take(self._port_key(proto, cand), uid):
                return cand
        raise errors.ApiError(
            500,
            "InternalError",
            f"Internal error occurred: failed to allocate a nodePort: range is full"
            f" ({first}-{last})",
        )

    def keys_of(self, svc: Obj) -> set[str]:
        """The allocation keys ``svc`` holds."""
        spec = svc.get("spec") or {}
        keys = set()
        cip = spec.get("clusterIP")
        if cip and cip != "None":
            keys.add(self._ip_key(cip))
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                keys.add(self._port_key(port.get("protocol", "TCP"), port["nodePort"]))
        return keys

    # ------------------------------------------------------------------ create / update

    async def on_create(self, svc: Obj, dry_run: bool) -> Allocation:
        """Default, validate and allocate ``svc`` (metadata with name and uid) in place."""
        self.default(svc)
        self._validate(svc)
        return await self._fill(svc, None, dry_run)

    async def on_update(self, old: Obj, new: Obj, dry_run: bool) -> Allocation:
        """``new`` replaces ``old``: allocated values the update leaves out are kept, the
        clusterIP may not change, a type that needs node ports gets them, what is no longer
        used is released after the write."""
        self.default(new)
        ospec, nspec = old.get("spec") or {}, new.get("spec")
        name = old["metadata"]["name"]
        if not isinstance(nspec, dict):
            return Allocation()
        if _needs_ip(ospec) and nspec.get("type") != "ExternalName":
            oip = ospec.get("clusterIP")
            nip = nspec.get("clusterIP")
            if not nip:  # left out: kept (kube's patchAllocatedValues)
                nspec["clusterIP"] = oip
                nspec["clusterIPs"] = list(ospec.get("clusterIPs") or [oip])
            elif nip != oip:
                raise errors.invalid(
                    "Service", name, "spec.clusterIP", f'Invalid value: "{nip}": field is immutable'
                )
        elif ospec.get("clusterIP") == "None" and nspec.get("clusterIP") not in (None, "None"):
            raise errors.invalid(
                "Service",
                name,
                "spec.clusterIP",
                f'Invalid value: "{nspec.get("clusterIP")}": field is immutable',
            )
        elif ospec.get("clusterIP") == "None":
            nspec["clusterIP"] = "None"
        if nspec.get("type") == "ExternalName":
            for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if f == "clusterIP" and nspec.get(f) not in (None, ospec.get(f)):
                    continue  # refused by validation
                nspec.pop(f, None)
            nspec.pop("internalTrafficPolicy", None)
        if _needs_node_ports(nspec):
            held = {
                (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                for p in ospec.get("ports") or []
                if p.get("nodePort")
            }
            for p in nspec.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    kept = held.get((p.get("port"), p.get("protocol", "TCP")))
                    if kept:
                        p["nodePort"] = kept
        else:
            for p in nspec.get("ports") or []:
                if isinstance(p, dict) and p.get("nodePort") and not _needs_node_ports(ospec):
                    continue  # refused by validation
                if isinstance(p, dict):
                    p.pop("nodePort", None)
        self._validate(new)
        alloc = await self._fill(new, old, dry_run)
        alloc.dropped = sorted(self.keys_of(old) - self.keys_of(new))
        return alloc

    async def _fill(self, svc: Obj, old: Obj | None, dry_run: bool) -> Allocation:
        spec = svc.get("spec")
        alloc = Allocation()
        if not isinstance(spec, dict):
            return alloc
        meta = svc["metadata"]
        name, uid = meta["name"], meta["uid"]
        held = self.keys_of(old) if old is not None else set()
        try:
            if _needs_ip(spec):
                ip = spec.get("clusterIP") or None
                if ip is None or self._ip_key(ip) not in held:
                    ip = await self._allocate_ip(meta.get("namespace", ""), name, ip, uid, dry_run)
                    if not dry_run:
                        alloc.taken.append(self._ip_key(ip))
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            if spec.get("type") != "ExternalName":
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                if spec.get("clusterIP") == "None":
                    spec["clusterIPs"] = ["None"]
            if _needs_node_ports(spec):
                for i, port in enumerate(spec.get("ports") or []):
                    proto = port.get("protocol", "TCP")
                    want = port.get("nodePort") or None
                    if want and self._port_key(proto, want) in held:
                        continue
                    got = await self._allocate_port(name, i, proto, want, uid, dry_run)
                    if not dry_run:
                        alloc.taken.append(self._port_key(proto, got))
                    port["nodePort"] = got
        except BaseException:
            await self.release(alloc.taken, uid)
            raise
        return alloc

    # ------------------------------------------------------------------ repair

    async def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every allocation key: key -> (revision, owner uid)."""
        out: dict[str, tuple[int, str]] = {}
        for prefix in (IP_PREFIX, PORT_PREFIX):
            page = await self.store.list(prefix)
            for kv in page.items:
                out[kv.key] = (kv.mod_rev, str(msgspec.json.decode(kv.value).get("uid", "")))
        return out

    async def reconcile(self, keys: dict[str, tuple[int, str]], services: list[Obj]) -> None:
        """One repair pass: ``keys`` from ``snapshot``, then ``services`` listed after it.
        A key no service holds is deleted when the previous pass found it orphaned at the
        same revision (a create in flight takes far less than a pass interval); a service
        whose key is missing gets it back."""
        held: dict[str, str] = {}
        for svc in services:
            uid = svc["metadata"].get("uid", "")
            for key in self.keys_of(svc):
                held[key] = uid
        suspects: dict[str, int] = {}
        for key, (rev, owner) in keys.items():
            if held.get(key) == owner:
                continue
            if self._suspects.get(key) == rev:
                with contextlib.suppress(NotFound, Conflict):
                    await self.store.delete(key, rev)
                    log.info("released %s: no service holds it", key)
            else:
                suspects[key] = rev
        self._suspects = suspects
        for key, uid in held.items():
            if key not in keys and await self._take(key, uid):
                log.info("re-created %s for its service", key)


# ---------------------------------------------------------------------- the server's loop

KUBERNETES_MANAGED_BY = "kube-apiserver"  # not the endpointslice controller's to remove


def _kubernetes_objects(ip: str, servers: list[tuple[str, int]]) -> tuple[Obj, Obj, list[Obj]]:
    """The ``kubernetes`` Service in ``default`` at ``ip``:443, its Endpoints and
    EndpointSlices pointing at the live API servers ``servers`` (address, port), as
    kube-apiserver's lease endpoint reconciler: one Endpoints subset and one slice per port
    (servers normally share one; the first slice is ``kubernetes``, others
    ``kubernetes-<port>``); the Service's targetPort is the lowest port."""
    ports = sorted({p for _, p in servers})
    by_port = {p: sorted({h for h, q in servers if q == p}) for p in ports}
    svc = {
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": ports[0]}],
            "sessionAffinity": "None",
        },
    }
    endpoints = {
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": h} for h in by_port[p]],
                "ports": [{"name": "https", "port": p, "protocol": "TCP"}],
            }
            for p in ports
        ],
    }
    slices = [
        {
            "metadata": {
                "name": "kubernetes" if i == 0 else f"kubernetes-{p}",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": KUBERNETES_MANAGED_BY,
                },
            },
            "addressType": "IPv6" if ":" in by_port[p][0] else "IPv4",
            "endpoints": [{"addresses": [h], "conditions": {"ready": True}} for h in by_port[p]],
            "ports": [{"name": "https", "port": p, "protocol": "TCP"}],
        }
        for i, p in enumerate(ports)
    ]
    return svc, endpoints, slices


class ApiServerLeases:
    """kube-apiserver's lease endpoint reconciler: each API server keeps a lease key
    (``/registry/masterleases/<address>:<port>``, its expiry inside) renewed every
    ``LEASE_RENEW`` seconds; the ``kubernetes`` endpoints list the servers whose lease is live.
    A server that stops removes its lease; one that dies drops out when its lease expires."""

    def __init__(self, store: Backend, host: str, port: int, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.host, self.port, self.ttl = host, port, ttl
        self.key = f"{LEASE_PREFIX}{host}:{port}"

    async def renew(self) -> None:
        value = msgspec.json.encode(
            {"address": self.host, "port": self.port, "expires": time.time() + self.ttl}
        )
        try:
            kv = await self.store.get(self.key)
        except NotFound:
            with contextlib.suppress(AlreadyExists):  # another pass of ours: the next renews
                await self.store.create(self.key, value)
            return
        with contextlib.suppress(Conflict, NotFound):
            await self.store.update(self.key, value, kv.mod_rev)

    async def live(self, with_self: bool = True) -> list[tuple[str, int]]:
        """The servers with a live lease (this one too unless ``with_self`` is false);
        expired leases are deleted."""
        now = time.time()
        out = {(self.host, self.port)} if with_self else set()
        page = await self.store.list(LEASE_PREFIX)
        for kv in page.items:
            try:
                lease = msgspec.json.decode(kv.value)
                host, port, expires = str(lease["address"]), int(lease["port"]), lease["expires"]
            except (msgspec.DecodeError, KeyError, TypeError, ValueError):
                host, port, expires = "", 0, 0.0
            if kv.key == self.key:
                continue
            if float(expires) > now and host:
                out.add((host, port))
            else:
                with contextlib.suppress(Conflict, NotFound):
                    await self.store.delete(kv.key, kv.mod_rev)
        return sorted(out)

    async def release(self) -> None:
        with contextlib.suppress(NotFound):
            await self.store.delete(self.key)


def kube_dns_service(ip: str) -> Obj:
    """The cluster DNS Service (k3s' ``kube-system/kube-dns``) at ``ip``. It selects no pod:
    its endpoints are every node's own DNS server (the agent serves one on its pods' gateway),
    kept by the controller manager's cluster-dns controller, and internalTrafficPolicy Local
    sends each pod's queries to its own node's."""
    return {
        "metadata": {
            "name": DNS_SERVICE,
            "namespace": DNS_NAMESPACE,
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "internalTrafficPolicy": "Local",
        },
    }


async def _ensure_kube_dns(storage: Any, res: Any, ip: str) -> None:
    """Create the cluster DNS Service, or bring its fields back; an error that says why when
    its address is another service's or it already has another one."""
    want = kube_dns_service(ip)
    try:
        cur = await storage.get(res, DNS_NAMESPACE, DNS_SERVICE)
    except errors.ApiError as e:
        if e.code != 404:
            raise
        cur = None
    if cur is not None and (cur.get("spec") or {}).get("clusterIP") != ip:
        log.error(
            "cluster DNS: %s/%s has clusterIP %s, not --cluster-dns %s: pods are told %s;"
            " delete the Service to move it",
            DNS_NAMESPACE,
            DNS_SERVICE,
            (cur.get("spec") or {}).get("clusterIP"),
            ip,
            ip,
        )
        return
    try:
        await _ensure(storage, res, want)
    except errors.ApiError as e:
        log.error("cluster DNS: cannot make %s/%s at %s: %s", DNS_NAMESPACE, DNS_SERVICE, ip, e)


async def reconcile_kubernetes(
    storage: Any, leases: ApiServerLeases, leaving: bool = False
) -> None:
    """Renew this server's lease and bring the ``kubernetes`` Service, Endpoints and
    EndpointSlices to the live servers; ``leaving``: drop the lease and this server from
    them (kube-apiserver's RemoveEndpoints at shutdown), when others are left to list."""
    services = by_path("", "v1", "services")
    endpoints = by_path("", "v1", "endpoints")
    slices = by_path("discovery.k8s.io", "v1", "endpointslices")
    assert services is not None and endpoints is not None and slices is not None
    if leaving:
        await leases.release()
        live = await leases.live(with_self=False)
        if not live:
            return  # the last server: the endpoints keep naming it until one starts
    else:
        await leases.renew()
        live = await leases.live()
    svc, eps, wanted = _kubernetes_objects(storage.services.kubernetes_ip, live)
    await _ensure(storage, services, svc)
    await _ensure(storage, endpoints, eps)
    for obj in wanted:
        await _ensure(storage, slices, obj)
    names = {o["metadata"]["name"] for o in wanted}
    items, _, _ = await storage.list(slices, "default")
    for item in items:
        meta = item["metadata"]
        labels = meta.get("labels") or {}
        if (
            labels.get("kubernetes.io/service-name") == "kubernetes"
            and labels.get("endpointslice.kubernetes.io/managed-by") == KUBERNETES_MANAGED_BY
            and meta["name"] not in names
        ):
            with contextlib.suppress(errors.ApiError):
                await storage.delete(slices, "default", meta["name"], {})


async def leave(storage: Any, server_address: str) -> None:
    """A stopping server leaves the ``kubernetes`` endpoints (see reconcile_kubernetes)."""
    host, port = _split(server_address)
    leases = ApiServerLeases(storage.services.store, host, port)
    await reconcile_kubernetes(storage, leases, leaving=True)


def _split(server_address: str) -> tuple[str, int]:
    host, _, port_text = server_address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(port_text)


async def maintain(
    storage: Any,
    server_address: str,
    interval: float = 60.0,
    lease_interval: float = LEASE_RENEW,
) -> None:
    """The ``kubernetes`` service and its endpoints and the cluster DNS Service kept as they
    should be every ``lease_interval`` seconds (this server's lease renewed), the allocation
    keys repaired every ``interval`` seconds (``storage``: the API's Storage)."""
    services = by_path("", "v1", "services")
    assert services is not None
    host, port = _split(server_address)
    allocator: ServiceAllocator = storage.services
    leases = ApiServerLeases(allocator.store, host, port)
    next_repair = 0.0
    while True:
        try:
            await reconcile_kubernetes(storage, leases)
            await _ensure_kube_dns(storage, services, allocator.cluster_dns_ip)
            if time.monotonic() >= next_repair:
                next_repair = time.monotonic() + interval
                keys = await allocator.snapshot()
                items, _, _ = await storage.list(services, None)
                await allocator.reconcile(keys, items)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the next pass tries again
            log.warning("services: maintenance pass failed: %s", e)
        await asyncio.sleep(lease_interval)


async def _ensure(storage: Any, res: Any, want: Obj) -> None:
    """Create ``want`` or bring the fields it sets back (the rest of the object is kept).
    ApiError when the create is refused."""
    name, ns = want["metadata"]["name"], want["metadata"].get("namespace", "default")
    try:
        cur = await storage.get(res, ns, name)
    except errors.ApiError as e:
        if e.code != 404:
            raise
        try:
            await storage.create(res, ns, copy.deepcopy(want))
        except errors.ApiError as e:
            if e.code != 409:  # made meanwhile: the next pass looks at it
                raise
            return
        log.info("created %s %s/%s", res.name, ns, name)
        return
    body = copy.deepcopy(cur)
    for k, v in want.items():
        if k == "metadata":
            body["metadata"].setdefault("labels", {}).update(v.get("labels") or {})
        elif k == "spec":
            body["spec"].update(v)
        else:
            body[k] = v
    if body != cur:
        await storage.update(res, ns, name, body)
