"""The agent's configuration and the parsers of its options (``--node-taint``,
``--eviction-hard``, ``--eviction-pressure-transition-period``): what ``corral agent`` checks
before it starts the agent, importing nothing heavier than the standard library (the rest of
the package imports aiohttp and the node runtime)."""

from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from corral_common import defaults

__all__ = [
    "DEFAULT_CLUSTER_CIDR",
    "DEFAULT_DATA_DIR",
    "DEFAULT_EVICTION_HARD",
    "TRANSITION",
    "AgentConfig",
    "Threshold",
    "parse_duration",
    "parse_taint",
    "parse_thresholds",
]

DEFAULT_DATA_DIR = Path(defaults.AGENT_DATA_DIR)
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_EVICTION_HARD = "memory.available<100Mi"  # the kubelet's default for memory
TRANSITION = 300.0  # --eviction-pressure-transition-period, the kubelet's 5m

SIGNALS = ("memory.available",)
KNOWN_SIGNALS = (
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "pid.available",
    "allocatableMemory.available",
)


@dataclass(frozen=True)
class Threshold:
    """``signal < quantity``: bytes, or a fraction of capacity (``percentage``)."""

    signal: str
    quantity: int | None = None
    percentage: float | None = None
    text: str = ""  # the value as written ("100Mi", "10%")

    def __str__(self) -> str:
        return f"{self.signal}<{self.text}"

    def bytes_of(self, capacity: int) -> int:
        if self.quantity is not None:
            return self.quantity
        assert self.percentage is not None
        return math.ceil(capacity * self.percentage)


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """``signal<value[,signal<value...]`` as the kubelet's ``--eviction-hard`` takes it; the
    value a quantity (``100Mi``) or a percentage (``5%``). ValueError names what is wrong.
    Only ``memory.available`` is acted on here: another signal is refused, not ignored."""
    from kubemodel.quantity import parse_quantity

    out: dict[str, Threshold] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        signal, op, value = part.partition("<")
        signal, value = signal.strip(), value.strip()
        if not op or not signal or not value:
            raise ValueError(f"invalid eviction threshold {part!r}: expected signal<quantity")
        if signal not in KNOWN_SIGNALS:
            raise ValueError(f"invalid eviction threshold {part!r}: unknown signal {signal!r}")
        if signal not in SIGNALS:
            raise ValueError(
                f"eviction threshold {part!r}: signal {signal!r} is not supported"
                f" (supported: {', '.join(SIGNALS)})"
            )
        if signal in out:
            raise ValueError(f"eviction threshold {part!r}: {signal} given twice")
        if value.endswith("%"):
            try:
                pct = float(value[:-1])
            except ValueError:
                pct = math.nan
            if not 0 <= pct <= 100:  # NaN fails too
                raise ValueError(
                    f"invalid eviction threshold {part!r}: a percentage from 0% to 100%"
                )
            out[signal] = Threshold(signal, percentage=pct / 100, text=value)
            continue
        try:
            amount = parse_quantity(value, signal)
        except ValueError as e:
            raise ValueError(f"invalid eviction threshold {part!r}: {e}") from None
        if amount.value < 0:
            raise ValueError(f"invalid eviction threshold {part!r}: negative")
        out[signal] = Threshold(signal, quantity=amount.ceil(), text=value)
    return tuple(out.values())


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``5m0s``, ``30s``, ``1h``, ``0``) in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m0s, 1h")
    return total


def parse_taint(text: str) -> dict[str, str]:
    """``key=value:Effect`` or ``key:Effect``, as ``--node-taint`` takes it."""
    kv, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(
            f"invalid taint {text!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
        )
    key, _, value = kv.partition("=")
    if not key:
        raise ValueError(f"invalid taint {text!r}: no key")
    out: dict[str, str] = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out


@dataclass(frozen=True)
class AgentConfig:
    server: str
    token: str
    data_dir: Path = DEFAULT_DATA_DIR
    fallback_servers: tuple[str, ...] = ()  # more servers of the cluster, in order of preference
    node_name: str = ""
    node_ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    kubelet_port: int = 10250
    node_netns: str | None = None
    images_dir: Path | None = None
    # Pod addresses until the Node has a spec.podCIDR; None: wait for it (NotReady until then).
    pod_cidr: str | None = None
    cgroup_parent: str | None = None  # None: the runtime's default (/kubepods)
    control_plane: bool = False  # a server's own agent (node-role labels, as k3s)
    registries_conf: Path | None = None  # image pulls' registries.conf; None: the runtime's
    cluster_cidr: str | None = DEFAULT_CLUSTER_CIDR  # pod traffic leaving it is masqueraded
    cluster_dns: bool = True  # serve the cluster DNS on the pods' gateway (kube-dns's endpoint)
    cluster_dns_ip: str = ""  # ClusterFirst pods' nameserver; "": kube-system/kube-dns's clusterIP
    cluster_domain: str = "cluster.local"
    dns_upstream: tuple[str, ...] | None = None  # None: the host's resolv.conf nameservers
    disable_proxy: bool = False  # run no service proxy (orchestrator.proxy) on this node
    disable_network_policy: bool = False  # enforce no NetworkPolicy (orchestrator.netpol)
    # --eviction-hard (orchestrator.kubelet.eviction): memory.available<100Mi by default
    eviction_hard: tuple[Threshold, ...] = field(
        default_factory=lambda: parse_thresholds(DEFAULT_EVICTION_HARD)
    )
    eviction_transition: float = TRANSITION  # --eviction-pressure-transition-period, seconds
    pod_manifests: Path | None = None  # static pods (--pod-manifests); None: DATA_DIR/pod-manifests

    @property
    def name(self) -> str:
        return (self.node_name or socket.gethostname()).lower()
