"""Probe hosts that are names, resolved when the pod starts, as the kubelet resolves them.

The monitor connects to IP addresses only (it resolves no names; ``localhost`` is 127.0.0.1).
``resolve_probe_hosts(pod)`` returns the pod with every ``httpGet.host`` and ``tcpSocket.host``
that is a name replaced by its address, looked up with ``getaddrinfo`` (so ``/etc/hosts``
and the node's resolver, in the namespaces of the process starting the pod), an IPv4
address preferred. A name that does not resolve fails the start, naming the field:
``spec.containers[0].readinessProbe.tcpSocket.host: cannot resolve 'db.example': ...``.
The name is resolved once, at start: a probe does not follow later changes of the address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Callable

from runtime.pod.manifest import (
    Container,
    ExecAction,
    HTTPGetAction,
    ManifestError,
    Pod,
    Probe,
)

__all__ = ["resolve_probe_hosts"]

Resolver = Callable[[str], str]

_PROBES = (
    ("startupProbe", "startup_probe"),
    ("livenessProbe", "liveness_probe"),
    ("readinessProbe", "readiness_probe"),
)


def getaddrinfo_resolver(host: str) -> str:
    """The first IPv4 address of ``host``, else its first IPv6 address; OSError if none."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    for family in (socket.AF_INET, socket.AF_INET6):
        for fam, _, _, _, addr in infos:
            if fam == family:
                return str(addr[0])
    raise OSError(f"no IPv4 or IPv6 address for {host!r}")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"  # the monitor's own alias for 127.0.0.1
    return True


def _resolved(probe: Probe, where: str, resolve: Resolver) -> Probe:
    h = probe.handler
    if isinstance(h, ExecAction) or h.host is None or _is_address(h.host):
        return probe
    field = f"{where}.{'httpGet' if isinstance(h, HTTPGetAction) else 'tcpSocket'}.host"
    try:
        address = resolve(h.host)
    except (OSError, UnicodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ManifestError(field, f"cannot resolve {h.host!r}: {why}") from None
    return dataclasses.replace(probe, handler=dataclasses.replace(h, host=address))


def _container(c: Container, where: str, resolve: Resolver) -> Container:
    changes = {}
    for key, attr in _PROBES:
        probe = getattr(c, attr)
        if probe is not None:
            new = _resolved(probe, f"{where}.{key}", resolve)
            if new is not probe:
                changes[attr] = new
    return dataclasses.replace(c, **changes) if changes else c


def resolve_probe_hosts(pod: Pod, resolve: Resolver = getaddrinfo_resolver) -> Pod:
    """``pod`` with its probe hosts resolved (the same object when none is a name)."""
    containers = tuple(
        _container(c, f"spec.containers[{i}]", resolve) for i, c in enumerate(pod.spec.containers)
    )
    if all(a is b for a, b in zip(containers, pod.spec.containers, strict=True)):
        return pod
    return dataclasses.replace(pod, spec=dataclasses.replace(pod.spec, containers=containers))
