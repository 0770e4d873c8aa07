"""What an idle agent holds (issues #15, #20: its memory): a real ``corral agent`` started with
Python's ``-X importtime`` (PYTHONPROFILEIMPORTTIME), which logs every module the process
imports, when it imports it. Ready, with no pod, it has not imported the servers it runs on
demand (the kubelet's HTTPS server and streaming code, the cluster DNS), nor the libraries
only other paths need; the first pod that looks a name up and whose logs are read starts them,
and gets its answers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_kubelet import NODE, Cluster, cluster_context, manifest, until

pytestmark = pytest.mark.root

DNS_ANNOTATION = "corral.dev/cluster-dns-address"

# Started at the first use (orchestrator.kubelet.port, the agent's ClusterDnsOnNode).
ON_DEMAND = (
    "aiohttp.web",
    "orchestrator.kubelet.server",
    "orchestrator.kubelet.streaming",
    "orchestrator.dns",
    "dns.message",
)
# Loaded by the first pod (or static pod manifest): the Kubernetes types and their validation
# (kubemodel's names load at the first one asked for), the pod manifest (runtime.pod.api's
# names of it are lazy, its error apart in runtime.pod.errors), the OCI config model its
# containers' bundles are written with (runtime.pod.bundle).
ON_FIRST_POD = (
    "kubemodel._generated",
    "kubemodel.pod",
    "kubemodel.codec",
    "runtime.pod.manifest",
    "runtime.pod.bundle",
    "runtime.config",
)
# Never on the idle agent: pyroute2 and YAML are the node network child's; frozenlist's
# compiled module is skipped for its Python twin (corral_cli.agent_main); the version is read
# from the dist-info directory's name (corral_common.version); click and the commands'
# modules are the command's that parsed the options, which the agent's process replaced
# (corral_cli.agent_main); runtime.network's names load one module at a time (the proxy's
# namespaces without the config model and the node network); the registries' configuration
# (TOML) and the pull secrets' keyring are a pull's (runtime.pod.imagepull).
NEVER_IDLE = (
    "images.regconf",
    "images.keyring",
    "tomllib",
    "pyroute2",
    "yaml",
    "frozenlist._frozenlist",
    "runtime.network.netlink",
    "importlib.metadata",
    "click",
    "corral_cli.main",
    "corral_cli.agent_cmd",
    "corral_cli.server_cmd",
    "corral_cli.image_cmd",
    "corral_cli.cluster_cmd",
    "corral_cli.pod_cmd",
    "runtime.network.config",
    "runtime.network.node",
)
# Loaded with the first NetworkPolicy: its enforcement, which watches every pod and namespace.
ON_FIRST_POLICY = ("orchestrator.netpol", "orchestrator.netpol.rules")

# Libraries the idle agent does not map: shutil's archive formats (bz2, lzma) are kept out
# while the agent imports its modules (their failed imports are logged too: the maps tell),
# and an image archive is opened as what its first bytes say (images.sources).
NEVER_MAPPED = ("libbz2", "liblzma")


def mapped(pid: int) -> set[str]:
    """The files a process maps (their names, e.g. ``libssl.so.3``)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[5].rpartition("/")[2] for line in lines if len(line.split()) > 5}


def imported_by_each(log: Path) -> list[set[str]]:
    """The modules each interpreter logged as imported so far (``import time: ... | name``),
    in the order they ran: ``corral agent`` parses its options, then starts itself again as
    the agent (corral_cli.agent_main); each interpreter logs its imports after a header line
    of its own."""
    out: list[set[str]] = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name == "imported package":
                out.append(set())  # an interpreter's first line
            elif out:
                out[-1].add(name)
    return out


def imported(log: Path) -> set[str]:
    """The modules the agent's own process imported so far."""
    return imported_by_each(log)[-1]


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    saved = os.environ.get("PYTHONPROFILEIMPORTTIME")
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"  # the server's and the agent's start
    try:
        ctx = cluster_context(rootfs, tmp_path_factory.mktemp("idle"))
        c = ctx.__enter__()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPROFILEIMPORTTIME", None)
        else:
            os.environ["PYTHONPROFILEIMPORTTIME"] = saved
    try:
        yield c
    finally:
        ctx.__exit__(None, None, None)


def test_an_idle_agent_runs_without_its_on_demand_servers(cluster: Cluster) -> None:
    mods = imported(cluster.agent.log)
    # the log does list what the agent imported, frozenlist's Python twin among it
    assert "orchestrator.kubelet.agent" in mods and "orchestrator.kubelet.port" in mods
    assert "aiohttp" in mods and "frozenlist" in mods
    assert "corral_cli.agent_main" in mods
    command, _agent = imported_by_each(cluster.agent.log)
    # the command that checked the options used the configuration's module alone
    assert "click" in command and "orchestrator.kubelet.config" in command
    for name in ("aiohttp", "orchestrator.kubelet.agent", "orchestrator.client", "runtime.pod"):
        assert name not in command, name
    for name in (*ON_DEMAND, *ON_FIRST_POD, *NEVER_IDLE, *ON_FIRST_POLICY):
        assert name not in mods, name
    assert cluster.agent.proc is not None
    libs = mapped(cluster.agent.proc.pid)
    assert any(lib.startswith("libssl") for lib in libs), libs  # the maps are read
    for lib in NEVER_MAPPED:
        assert not any(name.startswith(lib) for name in libs), lib


def test_the_first_lookup_and_log_read_start_the_dns_and_the_kubelet_server(
    cluster: Cluster,
) -> None:
    k = cluster.kubectl()
    node = json.loads(k.run("get", "node", NODE, "-o", "json").stdout)
    dns = node["metadata"]["annotations"][DNS_ANNOTATION]  # the DNS is bound and published
    name = "looker"
    script = (
        "trap 'exit 0' TERM;"
        f" until nslookup kubernetes.default.svc.cluster.local {dns}; do sleep 0.5; done;"
        " echo LOOKED-UP; while true; do sleep 0.2; done"
    )
    k.run("apply", "-f", "-", input=json.dumps(manifest(name, script)))
    try:
        cluster.wait_running(name)
        until("the pod's lookup", lambda: "LOOKED-UP" in k.run("logs", name).stdout)
        out = k.run("logs", name).stdout
        cluster_ip = json.loads(k.run("get", "service", "kubernetes", "-o", "json").stdout)["spec"][
            "clusterIP"
        ]
        assert cluster_ip in out, out  # answered from the Services the DNS server listed
        mods = imported(cluster.agent.log)
        for mod in (*ON_DEMAND, *ON_FIRST_POD):
            assert mod in mods, mod
    finally:
        k.run("delete", "pod", name, "--wait=false", check=False)


def test_the_first_network_policy_loads_its_enforcement(cluster: Cluster) -> None:
    k = cluster.kubectl()
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "first"},
        "spec": {"podSelector": {"matchLabels": {"app": "none"}}},
    }
    k.run("apply", "-f", "-", input=json.dumps(policy))
    try:
        until(
            "the policy enforcement loaded",
            lambda: all(m in imported(cluster.agent.log) for m in ON_FIRST_POLICY),
        )
    finally:
        k.run("delete", "networkpolicy", "first", "--ignore-not-found", check=False)
