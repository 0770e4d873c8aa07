"""The cluster DNS (as CoreDNS's kubernetes plugin): ``<svc>.<ns>.svc.<domain>`` and the rest
of the Kubernetes DNS specification, from Services and EndpointSlices read through
orchestrator.client. The agent runs one per node, on its pods' gateway address: the endpoint of
the kube-system/kube-dns Service on that node, which pods reach at its ClusterIP."""

from .records import Answer, Records, build_records
from .server import ClusterDns, host_nameservers, respond

__all__ = ["Answer", "ClusterDns", "Records", "build_records", "host_nameservers", "respond"]
