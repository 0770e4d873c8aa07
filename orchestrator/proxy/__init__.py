"""The service proxy of a node (as kube-proxy in its nftables mode): ClusterIPs and NodePorts
DNATed to ready endpoints, from the cluster's Services and EndpointSlices. It reaches the
cluster through orchestrator.client only; the agent runs it next to the kubelet."""

from .proxy import (
    ProxyError,
    ServiceProxy,
    apply_ruleset,
    forget_unanswered,
    service_ports,
    sync_rules,
)
from .rules import TABLE, Endpoint, Ruleset, ServicePort, build_ruleset, delete_script, ruleset

__all__ = [
    "TABLE",
    "Endpoint",
    "ProxyError",
    "Ruleset",
    "ServicePort",
    "ServiceProxy",
    "apply_ruleset",
    "build_ruleset",
    "delete_script",
    "forget_unanswered",
    "ruleset",
    "service_ports",
    "sync_rules",
]
