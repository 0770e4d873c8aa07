"""The registry of suites: what each measures, and whether it can run yet."""

from __future__ import annotations

from dataclasses import dataclass

from .model import Status, SuiteResult

# Suites whose feature has not landed: name -> (description, the issue it needs).
PENDING: dict[str, tuple[str, int]] = {}

# Suites that can run now: name -> description. SPAWN suites share the bundles and runtimes
# of spawn.bench_context; the others set up what they need themselves.
SPAWN: dict[str, str] = {
    "spawn-cli": "`run` of busybox `true` through each runtime's command line, same bundle",
    "spawn-lib": "containers started and waited for through the Python library, in a row",
}
OTHER: dict[str, str] = {
    "image": "import of a multi-layer image tarball vs `podman load` and `umoci unpack`; "
    "re-import; overlay rootfs creation for a small and a large image",
    "pull": "pull of a multi-layer image from a local docker-registry into an empty store vs "
    "`podman pull` and `skopeo copy`; pull again into a store that has it",
    "pod": "pod start latency (manifest to the app container's first output), one after "
    "another and many at once, without and with network, vs podman pods",
    "density": "per-pod monitor memory (RSS, PSS) with many pods running vs conmon; pods "
    "started until the first failure or a cap, time and memory per pod",
    "network": "pod network setup and teardown per pod, pyroute2 already imported, vs the CNI "
    "bridge and host-local plugins",
    "kubelet": "`kubectl apply` to all containers Ready through a real server and agent, one "
    "pod and many at once, vs `corral pod run -d` (no control plane); the agent's memory",
    "store": "store drivers (SQLite, etcd) vs etcd through its client: creates/s, gets/s, list "
    "of 10k keys, watch latency with 100 watchers",
    "control-plane": "`corral server` over SQLite and over etcd vs etcd through its client: "
    "creates/s, gets/s, list of 10k pods, watch latency with 100 and 1000 watchers, idle RSS",
    "proxy": "service proxy: one full sync (build + apply in one nft transaction) of 100 and "
    "1000 services x 10 endpoints vs iptables-restore of kube-proxy's iptables layout; "
    "connection setup through a service vs straight to the pod address",
    "cluster": "the 3-node one-machine cluster: `kubectl apply` of a 100-replica Deployment to "
    "all Ready (p50/p99 per pod), a 1000-pod churn with the server's and agents' CPU and RSS, "
    "idle RSS, failover of two servers on a three-member etcd; against the issue's goals",
    "cluster-idle": "the cluster suite's idle memory alone: the server's and each agent's RSS "
    "(children included) on the 3-node one-machine cluster, nodes Ready, no pod",
    "scheduler": "scheduling throughput as scheduler_perf: N nodes and M pods created through "
    "the API server, pods/s from first create to last bind, with SQLite and with etcd",
}
SUITES: dict[str, str] = {**SPAWN, **OTHER, **{k: v[0] for k, v in PENDING.items()}}
ORDER = (
    "spawn-cli", "spawn-lib", "image", "pull", "pod", "density", "network", "store",
    "control-plane", "scheduler", "kubelet", "proxy", "cluster", "cluster-idle",
)  # fmt: skip
assert set(ORDER) == set(SUITES), "every suite has a place in ORDER"


@dataclass(frozen=True, slots=True)
class Pending:
    name: str
    description: str
    issue: int

    def result(self) -> SuiteResult:
        return SuiteResult(
            name=self.name,
            description=self.description,
            status=Status.UNAVAILABLE,
            reason=f"needs issue #{self.issue}",
        )


def pending(name: str) -> Pending:
    description, issue = PENDING[name]
    return Pending(name, description, issue)


def select(names: list[str]) -> list[str]:
    """The suites to run, in the registry's order; all of them when none is named."""
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ValueError(f"unknown suite(s): {', '.join(unknown)} (known: {', '.join(ORDER)})")
    wanted = set(names) if names else set(ORDER)
    return [n for n in ORDER if n in wanted]
