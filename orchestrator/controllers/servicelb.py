"""The service load balancer (as k3s' ServiceLB): a Service of type LoadBalancer is given the
addresses of the cluster's Ready nodes as its ``status.loadBalancer.ingress`` (each node's
ExternalIP, else its InternalIP; ``ipMode: VIP``), and every node's service proxy answers on
those addresses at the Service's ports (orchestrator.proxy: they are programmed as the
Service's external addresses). Where k3s runs a pod per node holding each port, a port
(protocol and number) of a load balancer is one Service's here: the oldest one's (then by
namespace and name). A later Service that asks for a port taken stays without an address
(``<pending>``) until the port is free, with a warning event, as k3s' svclb pods stay Pending.

A Service with a ``spec.loadBalancerClass`` is another implementation's: left alone. A
Service that stops being a LoadBalancer has its ingress removed. ``--disable-controller
servicelb`` (k3s: ``--disable servicelb``) turns it off."""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.client import Conflict, NotFound, Obj
from orchestrator.client.rest import NODES, SERVICES

from .base import Client, Controller, InformerFactory
from .util import get_condition

__all__ = ["ServiceLBController", "node_addresses", "port_owners"]

log = logging.getLogger("corral.controllers.servicelb")


def _is_ours(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def node_addresses(nodes: list[Obj]) -> list[str]:
    """The address of each Ready node (its ExternalIP, else InternalIP), sorted."""
    out = set()
    for node in nodes:
        if (node.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if (get_condition(node.get("status"), "Ready") or {}).get("status") != "True":
            continue
        addresses = (node.get("status") or {}).get("addresses") or []
        for kind in ("ExternalIP", "InternalIP"):
            found = [a.get("address") for a in addresses if a.get("type") == kind]
            if found and found[0]:
                out.add(str(found[0]))
                break
    return sorted(out, key=lambda a: tuple(int(x) if x.isdigit() else 0 for x in a.split(".")))


def _ports(svc: Obj) -> list[tuple[str, int]]:
    return [
        (str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
        for p in (svc.get("spec") or {}).get("ports") or []
    ]


def _age_key(svc: Obj) -> tuple[str, str, str]:
    m = svc.get("metadata") or {}
    return (str(m.get("creationTimestamp") or ""), m.get("namespace") or "", m.get("name") or "")


def port_owners(services: list[Obj]) -> dict[tuple[str, int], str]:
    """(protocol, port) -> the key (ns/name) of the load balancer Service that has it: the
    oldest of those asking for it (a Service whose ports are not all its own has none)."""
    owners: dict[tuple[str, int], str] = {}
    for svc in sorted((s for s in services if _is_ours(s)), key=_age_key):
        m = svc["metadata"]
        key = f"{m.get('namespace')}/{m.get('name')}"
        ports = _ports(svc)
        if any(p in owners for p in ports):
            continue
        for p in ports:
            owners[p] = key
    return owners


class ServiceLBController(Controller):
    name = "servicelb"
    component = "service-lb-controller"
    workers = 1

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.nodes = factory.informer(NODES)
        self.services = factory.informer(SERVICES)
        self.services.add_handler(self._service_changed)
        self.nodes.add_handler(self._node_changed)
        self._warned: dict[str, str] = {}  # key -> the Service that holds its port

    def _service_changed(self, _ev: str, old: Obj | None, new: Obj | None) -> None:
        if (old is not None and _is_ours(old)) or (new is not None and _is_ours(new)):
            self._all()  # a port taken or freed may concern every load balancer
        elif new is not None and ((new.get("status") or {}).get("loadBalancer") or {}).get(
            "ingress"
        ):
            m = new["metadata"]
            self.queue.add(f"{m.get('namespace')}/{m.get('name')}")

    def _node_changed(self, _ev: str, old: Obj | None, new: Obj | None) -> None:
        before = node_addresses([old]) if old is not None else []
        after = node_addresses([new]) if new is not None else []
        if before != after:
            self._all()

    def _all(self) -> None:
        for svc in self.services.list():
            if _is_ours(svc):
                m = svc["metadata"]
                self.queue.add(f"{m.get('namespace')}/{m.get('name')}")

    async def reconcile(self, key: str) -> float | None:
        svc = self.services.get(key)
        if svc is None:
            self._warned.pop(key, None)
            return None
        spec, status = svc.get("spec") or {}, svc.get("status") or {}
        current = (status.get("loadBalancer") or {}).get("ingress") or []
        if spec.get("loadBalancerClass"):
            return None  # another load balancer's
        want: list[dict[str, Any]] = []
        if _is_ours(svc):
            owners = port_owners(self.services.list())
            taken = [owners[p] for p in _ports(svc) if owners.get(p, key) != key]
            if taken:
                if self._warned.get(key) != taken[0]:
                    self._warned[key] = taken[0]
                    self.event(
                        svc,
                        "v1",
                        "Service",
                        "Warning",
                        "PortInUse",
                        f"a port of this load balancer is in use by service {taken[0]}",
                    )
            else:
                self._warned.pop(key, None)
                want = [{"ip": ip, "ipMode": "VIP"} for ip in node_addresses(self.nodes.list())]
        elif not current:
            return None
        if current == want:
            return None
        body = dict(svc)
        body["status"] = {**status, "loadBalancer": {"ingress": want} if want else {}}
        try:
            await self.client.update_status(SERVICES, svc["metadata"].get("namespace"), body)
        except (Conflict, NotFound):
            return 0.1  # changed or gone meanwhile: again from the cache
        log.info("service %s: load balancer ingress %s", key, [i["ip"] for i in want] or "none")
        return None
