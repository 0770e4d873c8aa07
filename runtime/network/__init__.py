"""Pod networking: a node bridge with a veth per pod, on-disk IPAM, hostPort DNAT, host-gw routes
between nodes, and a CNI plugin backend as the alternative.

Importing this package is cheap: pyroute2 is imported only when a netlink socket is first opened
(:mod:`runtime.network.netlink`), so CLI commands that do not touch the network never pay for it.

Typical use by the pod code::

    from runtime import network

    node = network.NodeNetwork(network.load_config("/etc/corral/network.yaml"))
    pod = node.setup_pod(pod_id, f"/proc/{pid}/ns/net", ports=[network.PortMapping(8080, 80)])
    network.write_pod_files(pod_dir / "etc", hostname, pod.ip, node.config.dns)
    ...
    node.teardown_pod(pod_id)
    node.gc(live_pod_ids)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral_common.lazy import lazy_names

if TYPE_CHECKING:
    from runtime.network.config import (
        DnsConfig,
        NetworkConfig,
        PeerNode,
        PortMapping,
        load_config,
        parse_config,
    )
    from runtime.network.errors import (
        CniError,
        FirewallError,
        HostPortConflict,
        IpamExhausted,
        NetlinkError,
        NetworkConfigError,
        NetworkError,
    )
    from runtime.network.files import (
        host_resolv,
        hosts_content,
        pod_dns,
        resolv_conf_content,
        write_pod_files,
    )
    from runtime.network.ipam import Ipam
    from runtime.network.netns import Netns, OwnedNetns, in_netns, lo_up
    from runtime.network.node import (
        GcReport,
        NodeNetwork,
        PodNetwork,
        node_network,
        veth_name,
    )

# Each name and its module, imported at the name's first use (PEP 562): a process that needs
# one of them (the agent's service proxy: the namespaces) holds none of the others (the config
# model, the node network, IPAM; issues #15, #20: the idle agent's memory).
_WHERE = {
    "DnsConfig": "config",
    "NetworkConfig": "config",
    "PeerNode": "config",
    "PortMapping": "config",
    "load_config": "config",
    "parse_config": "config",
    "CniError": "errors",
    "FirewallError": "errors",
    "HostPortConflict": "errors",
    "IpamExhausted": "errors",
    "NetlinkError": "errors",
    "NetworkConfigError": "errors",
    "NetworkError": "errors",
    "host_resolv": "files",
    "hosts_content": "files",
    "pod_dns": "files",
    "resolv_conf_content": "files",
    "write_pod_files": "files",
    "Ipam": "ipam",
    "Netns": "netns",
    "OwnedNetns": "netns",
    "in_netns": "netns",
    "lo_up": "netns",
    "GcReport": "node",
    "NodeNetwork": "node",
    "PodNetwork": "node",
    "node_network": "node",
    "veth_name": "node",
}


__getattr__ = lazy_names(__name__, _WHERE, globals())


__all__ = [
    "CniError",
    "DnsConfig",
    "FirewallError",
    "GcReport",
    "HostPortConflict",
    "Ipam",
    "IpamExhausted",
    "NetlinkError",
    "Netns",
    "NetworkConfig",
    "NetworkConfigError",
    "NetworkError",
    "NodeNetwork",
    "node_network",
    "OwnedNetns",
    "PeerNode",
    "PodNetwork",
    "PortMapping",
    "hosts_content",
    "in_netns",
    "lo_up",
    "load_config",
    "parse_config",
    "host_resolv",
    "pod_dns",
    "resolv_conf_content",
    "veth_name",
    "write_pod_files",
]
