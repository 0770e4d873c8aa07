"""The environment the kubelet gives every container about the cluster's services: the
``kubernetes`` service of the ``default`` namespace always (in-cluster clients find the API
server through ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``), and, unless the pod
sets ``enableServiceLinks: false``, every service of the pod's namespace, docker-link style::

    <NAME>_SERVICE_HOST=<clusterIP>           <NAME>_SERVICE_PORT=<first port>
    <NAME>_SERVICE_PORT_<PORTNAME>=<port>     (each named port)
    <NAME>_PORT=<proto>://<clusterIP>:<first port>
    <NAME>_PORT_<port>_<PROTO>=<proto>://<clusterIP>:<port>       (each port, with
    ..._PROTO=<proto>  ..._PORT=<port>  ..._ADDR=<clusterIP>)

``<NAME>`` is the service name (a DNS label) upper-cased with ``-`` as ``_``; port names
likewise. Services without a cluster IP (headless, ExternalName) give
nothing. A service of the pod's namespace named like a master service wins over it. The
container's own ``env`` comes first and wins over these (its ``$(VAR)`` references may name
them). As the kubelet's ``getServiceEnvVarMap`` and ``envvars.FromServices``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MASTER_NAMESPACE", "from_services", "service_env", "with_service_env"]

Obj = dict[str, Any]
MASTER_NAMESPACE = "default"  # the kubelet's --master-service-namespace
MASTER_SERVICES = frozenset({"kubernetes"})


def _var_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _has_ip(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def from_services(services: Iterable[Obj]) -> list[tuple[str, str]]:
    """The variables of ``services``, in the kubelet's order, per service."""
    out: list[tuple[str, str]] = []
    for svc in services:
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if not _has_ip(svc) or not ports:
            continue
        ip = str(spec["clusterIP"])
        prefix = _var_name(str(svc["metadata"]["name"]))
        out.append((f"{prefix}_SERVICE_HOST", ip))
        out.append((f"{prefix}_SERVICE_PORT", str(ports[0].get("port"))))
        for p in ports:
            if p.get("name"):
                out.append((f"{prefix}_SERVICE_PORT_{_var_name(str(p['name']))}", str(p["port"])))
        for i, p in enumerate(ports):
            proto = str(p.get("protocol") or "TCP")
            url = f"{proto.lower()}://{ip}:{p.get('port')}"
            if i == 0:
                out.append((f"{prefix}_PORT", url))
            base = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
            out += [
                (base, url),
                (f"{base}_PROTO", proto.lower()),
                (f"{base}_PORT", str(p.get("port"))),
                (f"{base}_ADDR", ip),
            ]
    return out


def service_env(
    services: Iterable[Obj],
    namespace: str,
    enable_service_links: bool = True,
    master_namespace: str = MASTER_NAMESPACE,
) -> dict[str, str]:
    """The service variables a pod in ``namespace`` gets."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _has_ip(svc):
            continue
        meta = svc.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace", "")
        if ns == master_namespace and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    return dict(from_services(chosen[k] for k in sorted(chosen)))


def with_service_env(container: Obj, env: dict[str, str]) -> Obj:
    """``container`` with the service variables before its own ``env`` (its own win, and
    its ``$(VAR)`` references see them)."""
    if not env:
        return container
    own = list(container.get("env") or [])
    return {**container, "env": [{"name": k, "value": v} for k, v in env.items()] + own}
