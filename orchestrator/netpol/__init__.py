"""NetworkPolicy enforcement on a node (as k3s's embedded kube-router network policy
controller): nftables rules in the node's network namespace from the cluster's
NetworkPolicies, pods and namespaces. The agent loads it when the first NetworkPolicy
appears."""

from .controller import PolicyEnforcer
from .rules import TABLE, PodInfo, delete_script, pod_info, ruleset

__all__ = ["TABLE", "PodInfo", "PolicyEnforcer", "delete_script", "pod_info", "ruleset"]
