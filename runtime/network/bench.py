"""Pod network setup time, for the benchmarks (needs root).

:func:`pod_network_cycle` builds a throwaway node namespace with its bridge and firewall base
(untimed), imports pyroute2 (untimed: its import cost is not per pod), then times
:meth:`NodeNetwork.setup_pod` and :meth:`NodeNetwork.teardown_pod` for one pod in a fresh
namespace, ``rounds`` times. Everything is made in namespaces it creates and removed again.
"""

from __future__ import annotations

import ipaddress
import tempfile
import time
from pathlib import Path

from runtime.network.config import NetworkConfig, PortMapping
from runtime.network.netns import OwnedNetns
from runtime.network.node import NodeNetwork


def pod_network_cycle(rounds: int = 1, host_port: bool = False) -> dict[str, list[float]]:
    """Seconds per round for ``setup`` and ``teardown`` (and their ``total``) of one pod's
    network; ``host_port`` adds one hostPort mapping (a firewall update each way)."""
    import pyroute2  # noqa: F401  (paid once, outside the timing)

    out: dict[str, list[float]] = {"setup": [], "teardown": [], "total": []}
    ports = [PortMapping(18080, 80)] if host_port else []
    with tempfile.TemporaryDirectory(prefix="corral-netbench-") as d, OwnedNetns() as node_ns:
        cfg = NetworkConfig(pod_cidr=ipaddress.IPv4Network("10.250.0.0/24"), state_dir=Path(d))
        node = NodeNetwork(cfg, node_ns.ns)
        node.ensure()
        try:
            for i in range(rounds):
                with OwnedNetns() as pod_ns:
                    t0 = time.perf_counter()
                    node.setup_pod(f"bench-{i}", pod_ns.ns, ports)
                    t1 = time.perf_counter()
                    node.teardown_pod(f"bench-{i}")
                    t2 = time.perf_counter()
                out["setup"].append(t1 - t0)
                out["teardown"].append(t2 - t1)
                out["total"].append(t2 - t0)
        finally:
            node.gc([])
            node.destroy()
    return out


if __name__ == "__main__":
    import statistics

    for hp in (False, True):
        res = pod_network_cycle(20, host_port=hp)
        print(
            f"hostPort={hp}: "
            + ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in res.items())
        )
