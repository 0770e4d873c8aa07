"""What the cluster DNS answers, from Services and EndpointSlices (the Kubernetes DNS
specification, as CoreDNS's kubernetes plugin serves it), as a pure lookup:

* ``<svc>.<ns>.svc.<domain>`` A: the Service's ClusterIP; a headless Service (clusterIP None):
  the addresses of its ready endpoints; an ExternalName Service: a CNAME to its externalName;
* ``<hostname>.<svc>.<ns>.svc.<domain>`` A: a headless Service's endpoint with that hostname;
* ``_<port>._<proto>.<svc>.<ns>.svc.<domain>`` SRV for each named port: the Service's name as
  target (a ClusterIP Service), or one record per ready endpoint (headless), whose addresses go
  in the additional section;
* ``a-b-c-d.<ns>.pod.<domain>`` A: a.b.c.d;
* any other name in the domain: NXDOMAIN; a known name asked for another type (AAAA): no data.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Records", "build_records"]

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Srv:
    port: int
    target: str  # an absolute name, with its trailing dot


@dataclass
class Answer:
    """``found``: the name exists (NXDOMAIN otherwise)."""

    found: bool
    a: list[str] = field(default_factory=list)
    cname: str | None = None
    srv: list[Srv] = field(default_factory=list)
    additional: dict[str, list[str]] = field(default_factory=dict)  # name -> A


@dataclass
class _Name:
    a: list[str] = field(default_factory=list)
    cname: str | None = None
    srv: list[Srv] = field(default_factory=list)


def _ready(ep: Obj) -> bool:
    ready = (ep.get("conditions") or {}).get("ready")
    return ready is None or bool(ready)


def _ipv4(addresses: Iterable[Any]) -> list[str]:
    out = []
    for a in addresses:
        try:
            out.append(str(ipaddress.IPv4Address(str(a))))
        except ValueError:
            continue
    return out


class Records:
    """Every name of the cluster's zone, lowercased, absolute (trailing dot)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain.strip(".").lower()
        self.zone = self.domain + "."
        self.names: dict[str, _Name] = {}
        self.parents: set[str] = {self.zone}  # empty non-terminals: svc.<zone>, <ns>.svc.<zone>

    def _name(self, fqdn: str) -> _Name:
        fqdn = fqdn.lower()
        found = self.names.get(fqdn)
        if found is None:
            found = self.names[fqdn] = _Name()
            parent = fqdn.partition(".")[2]
            while parent != self.zone and parent not in self.parents and self.in_zone(parent):
                self.parents.add(parent)
                parent = parent.partition(".")[2]
        return found

    def in_zone(self, qname: str) -> bool:
        q = qname.lower()
        return q == self.zone or q.endswith("." + self.zone)

    def lookup(self, qname: str) -> Answer:
        q = qname.lower()
        if not q.endswith("."):
            q += "."
        if not self.in_zone(q):
            return Answer(False)
        pod = self._pod(q)
        if pod is not None:
            return Answer(True, a=[pod])
        name = self.names.get(q)
        if name is None:
            # An empty non-terminal (<ns>.svc.<domain>, svc.<domain>, the zone) exists.
            return Answer(q in self.parents)
        ans = Answer(True, a=list(name.a), cname=name.cname, srv=list(name.srv))
        for s in name.srv:
            target = self.names.get(s.target)
            if target is not None and target.a:
                ans.additional[s.target] = list(target.a)
        return ans

    def _pod(self, q: str) -> str | None:
        """``a-b-c-d.<ns>.pod.<zone>``."""
        parts = q[: -len(self.zone) - 1].split(".")
        if len(parts) != 3 or parts[2] != "pod":
            return None
        try:
            return str(ipaddress.IPv4Address(parts[0].replace("-", ".")))
        except ValueError:
            return None


def build_records(domain: str, services: Iterable[Obj], slices: Iterable[Obj]) -> Records:
    """The zone from the Services and their EndpointSlices (label kubernetes.io/service-name)."""
    recs = Records(domain)
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc and s.get("addressType", "IPv4") == "IPv4":
            by_service.setdefault((meta.get("namespace", ""), svc), []).append(s)
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        base = f"{name}.{ns}.svc.{recs.zone}"
        entry = recs._name(base)
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                entry.cname = str(spec["externalName"]).rstrip(".") + "."
            continue
        cluster_ip = spec.get("clusterIP")
        headless = cluster_ip == "None"
        # ready endpoints: (address, hostname or None) and the slices' named ports
        endpoints: list[tuple[str, str | None]] = []
        ports: dict[tuple[str, str], int] = {}
        for sl in by_service.get((ns, name), []):
            for p in sl.get("ports") or []:
                if p.get("name") and p.get("port"):
                    ports[(p["name"], str(p.get("protocol") or "TCP").lower())] = int(p["port"])
            for ep in sl.get("endpoints") or []:
                if not _ready(ep):
                    continue
                for addr in _ipv4(ep.get("addresses") or []):
                    endpoints.append((addr, ep.get("hostname")))
        if headless:
            entry.a = sorted({addr for addr, _ in endpoints}, key=ipaddress.IPv4Address)
            targets = []
            for addr, hostname in sorted(endpoints):
                label = hostname or addr.replace(".", "-")
                target = f"{label}.{base}"
                t = recs._name(target)
                if addr not in t.a:
                    t.a.append(addr)
                targets.append(target)
            for (pname, proto), port in sorted(ports.items()):
                srv = recs._name(f"_{pname}._{proto}.{base}")
                srv.srv = [Srv(port, t) for t in sorted(set(targets))]
        else:
            entry.a = _ipv4([cluster_ip] if cluster_ip else [])
            for p in spec.get("ports") or []:
                if p.get("name") and p.get("port"):
                    proto = str(p.get("protocol") or "TCP").lower()
                    recs._name(f"_{p['name']}._{proto}.{base}").srv = [Srv(int(p["port"]), base)]
    return recs
