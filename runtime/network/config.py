"""The node network model: plain frozen dataclasses, parsed and validated once at the edge.

A node config (a dict, or a JSON/YAML file of the same shape)::

    name: corral                  # network name; its IPAM state is <stateDir>/<name>/
    bridge: corral0
    podCIDR: 10.88.1.0/24         # this node's slice; the gateway is its first address
    clusterCIDR: 10.88.0.0/16     # optional: what outbound masquerade leaves alone
    nodeAddress: 192.168.50.1     # optional: this node's address on the node network
    masquerade: false             # outbound NAT for pod traffic leaving the cluster CIDR
    firewall: auto                # auto | nftables | iptables
    mtu: 1500
    stateDir: /var/lib/corral/network
    dns: {nameservers: [10.96.0.10], searches: [example.com], options: [ndots:5],
          clusterDomain: cluster.local}  # a cluster's DNS: ClusterFirst pods search
                                         # <ns>.svc.<domain> svc.<domain> <domain> first
    peers:                        # host-gw: other nodes' pod CIDRs via their node addresses
      - {name: node-b, podCIDR: 10.88.2.0/24, address: 192.168.50.2}
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral_common.defaults import NETWORK_STATE_DIR
from corral_common.textcache import ParsedByText
from runtime.network.errors import NetworkConfigError

DEFAULT_STATE_DIR = Path(os.environ.get("CORRAL_NETWORK_DIR", NETWORK_STATE_DIR))
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PROTOCOLS = ("tcp", "udp", "sctp")
FIREWALLS = ("auto", "nftables", "iptables")


@dataclass(frozen=True)
class PortMapping:
    """A pod's ``ports[]`` entry with a hostPort: node port -> pod ip:container_port."""

    host_port: int
    container_port: int
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        for what, port in (("hostPort", self.host_port), ("containerPort", self.container_port)):
            if not 0 < port < 65536:
                raise NetworkConfigError(what, f"{port} is not a port number")
        if self.protocol not in PROTOCOLS:
            raise NetworkConfigError("protocol", f"{self.protocol!r} is not one of {PROTOCOLS}")

    @classmethod
    def from_k8s(cls, port: Mapping[str, Any]) -> PortMapping | None:
        """A Kubernetes container port ({containerPort, hostPort, protocol}); None without
        hostPort. hostIP other than 0.0.0.0 is not supported."""
        if not port.get("hostPort"):
            return None
        if port.get("hostIP") not in (None, "", "0.0.0.0"):
            raise NetworkConfigError("hostIP", "only 0.0.0.0 (all node addresses) is supported")
        return cls(
            int(port["hostPort"]),
            int(port.get("containerPort") or port["hostPort"]),
            str(port.get("protocol", "TCP")).lower(),
        )


@dataclass(frozen=True)
class PeerNode:
    name: str
    pod_cidr: ipaddress.IPv4Network
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    cluster_domain: str = ""  # set: the nameservers are a cluster's DNS (Kubernetes ClusterFirst)


@dataclass(frozen=True)
class NetworkConfig:
    pod_cidr: ipaddress.IPv4Network
    name: str = "corral"
    bridge: str = "corral0"
    cluster_cidr: ipaddress.IPv4Network | None = None
    node_address: ipaddress.IPv4Address | None = None
    masquerade: bool = False
    firewall: str = "auto"
    mtu: int = 1500
    state_dir: Path = DEFAULT_STATE_DIR
    dns: DnsConfig = field(default_factory=DnsConfig)
    peers: tuple[PeerNode, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise NetworkConfigError("name", f"{self.name!r} is not a valid network name")
        if not _IFNAME.match(self.bridge):
            raise NetworkConfigError("bridge", f"{self.bridge!r} is not a valid interface name")
        if self.pod_cidr.num_addresses < 4:
            raise NetworkConfigError("podCIDR", f"{self.pod_cidr} is too small")
        if self.firewall not in FIREWALLS:
            raise NetworkConfigError("firewall", f"{self.firewall!r} is not one of {FIREWALLS}")
        if not 68 <= self.mtu <= 65535:
            raise NetworkConfigError("mtu", f"{self.mtu} is out of range")
        for i, p in enumerate(self.peers):
            if p.pod_cidr.overlaps(self.pod_cidr):
                raise NetworkConfigError(f"peers[{i}].podCIDR", f"overlaps {self.pod_cidr}")

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        """The bridge's address: the first host of the pod CIDR."""
        return ipaddress.IPv4Interface(
            f"{self.pod_cidr.network_address + 1}/{self.pod_cidr.prefixlen}"
        )

    @property
    def directory(self) -> Path:
        return self.state_dir / self.name


def _net(value: Any, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as e:
        raise NetworkConfigError(where, str(e)) from None


def _addr(value: Any, where: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError as e:
        raise NetworkConfigError(where, str(e)) from None


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NetworkConfigError(where, "must be a list of strings")
    return tuple(value)


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def _domain(value: Any, where: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not _DOMAIN.match(value):
        raise NetworkConfigError(where, f"{value!r} is not a DNS domain")
    return value


KNOWN = {
    "name", "bridge", "podCIDR", "clusterCIDR", "nodeAddress", "masquerade", "firewall", "mtu",
    "stateDir", "dns", "peers",
}  # fmt: skip


def parse_config(data: Mapping[str, Any]) -> NetworkConfig:
    """A node config from its dict form (keys as in the module docstring)."""
    if not isinstance(data, Mapping):
        raise NetworkConfigError("", "a node network config must be a mapping")
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise NetworkConfigError(unknown[0], "unknown field")
    if "podCIDR" not in data:
        raise NetworkConfigError("podCIDR", "required")
    peers = []
    for i, p in enumerate(data.get("peers") or []):
        where = f"peers[{i}]"
        if not isinstance(p, Mapping):
            raise NetworkConfigError(where, "must be a mapping")
        for key in ("podCIDR", "address"):
            if key not in p:
                raise NetworkConfigError(f"{where}.{key}", "required")
        peers.append(
            PeerNode(
                name=str(p.get("name", f"peer{i}")),
                pod_cidr=_net(p["podCIDR"], f"{where}.podCIDR"),
                address=_addr(p["address"], f"{where}.address"),
            )
        )
    dns = data.get("dns") or {}
    if not isinstance(dns, Mapping):
        raise NetworkConfigError("dns", "must be a mapping")
    kwargs: dict[str, Any] = {}
    for key, attr in (("name", "name"), ("bridge", "bridge"), ("firewall", "firewall")):
        if key in data:
            kwargs[attr] = str(data[key])
    if "mtu" in data:
        kwargs["mtu"] = int(data["mtu"])
    if "masquerade" in data:
        if not isinstance(data["masquerade"], bool):
            raise NetworkConfigError("masquerade", "must be true or false")
        kwargs["masquerade"] = data["masquerade"]
    if "stateDir" in data:
        kwargs["state_dir"] = Path(str(data["stateDir"]))
    if data.get("clusterCIDR"):
        kwargs["cluster_cidr"] = _net(data["clusterCIDR"], "clusterCIDR")
    if data.get("nodeAddress"):
        kwargs["node_address"] = _addr(data["nodeAddress"], "nodeAddress")
    return NetworkConfig(
        pod_cidr=_net(data["podCIDR"], "podCIDR"),
        dns=DnsConfig(
            nameservers=_strs(dns.get("nameservers"), "dns.nameservers"),
            searches=_strs(dns.get("searches"), "dns.searches"),
            options=_strs(dns.get("options"), "dns.options"),
            cluster_domain=_domain(dns.get("clusterDomain"), "dns.clusterDomain"),
        ),
        peers=tuple(peers),
        **kwargs,
    )


def load_config(path: str | os.PathLike[str]) -> NetworkConfig:
    """A node config from a JSON or YAML file (parsed again only when its text changed)."""
    return _PARSED.get(os.fspath(path), Path(path).read_text())


def _parse_text(text: str, path: str) -> NetworkConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise NetworkConfigError(path, f"not JSON or YAML: {e}") from None
    return parse_config(data)


_PARSED: ParsedByText[NetworkConfig] = ParsedByText(lambda text, path: _parse_text(text, path))
