"""The Vagrant cluster without Vagrant: the Vagrantfile's node table against the provisioning
script, the scripts' syntax, ``vagrant validate`` where Debian's vagrant is installed, and the
provisioning steps that need no network run inside the test VM."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.network import parse_config
from tests.conftest import REPO
from tests.vm.conftest import Runner

VAGRANTFILE = REPO / "Vagrantfile"
PROVISION = REPO / "scripts" / "vagrant-provision.sh"

_NODE = re.compile(
    r'\{ name: "(?P<name>[^"]+)", role: "(?P<role>[^"]+)", ip: "(?P<ip>[^"]+)", '
    r'pod_cidr: "(?P<pod_cidr>[^"]+)", cgroup: "(?P<cgroup>v[12])" \}'
)


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ip: str
    pod_cidr: str
    cgroup: str


def vagrant_nodes() -> tuple[list[Node], str]:
    text = VAGRANTFILE.read_text()
    table = text[text.index("NODES = [") : text.index("].freeze")]
    nodes = [Node(**m.groupdict()) for m in _NODE.finditer(table)]
    assert len(nodes) == table.count("{ name:"), "a NODES line the test cannot read"
    cluster = re.search(r'^CLUSTER_CIDR = "([^"]+)"', text, re.M)
    assert cluster is not None
    return nodes, cluster.group(1)


def provision_args(node: Node, nodes: list[Node], cluster_cidr: str) -> list[str]:
    """What the Vagrantfile passes to the script for ``node``."""
    args = ["--self", node.name, "--role", node.role, "--cgroup", node.cgroup]
    args += ["--cluster-cidr", cluster_cidr]
    for n in nodes:
        args += ["--node", f"{n.name}={n.ip}={n.pod_cidr}"]
    return args


def test_the_vagrantfile_passes_what_this_test_assumes() -> None:
    text = VAGRANTFILE.read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    for option in ('"--self", node[:name]', '"--role", node[:role]', '"--cgroup", node[:cgroup]'):
        assert option in text
    assert '"--cluster-cidr", CLUSTER_CIDR' in text
    assert '"--node", "#{n[:name]}=#{n[:ip]}=#{n[:pod_cidr]}"' in text
    assert 'path: "scripts/vagrant-provision.sh"' in text


def test_one_control_plane_two_workers_one_of_them_on_cgroup_v1() -> None:
    nodes, cluster_cidr = vagrant_nodes()
    assert [n.role for n in nodes] == ["control-plane", "worker", "worker"]
    assert len({n.name for n in nodes}) == len({n.ip for n in nodes}) == 3
    network = ipaddress.ip_network(f"{nodes[0].ip}/24", strict=False)
    assert all(ipaddress.ip_address(n.ip) in network for n in nodes)
    cluster = ipaddress.ip_network(cluster_cidr)
    slices = [ipaddress.ip_network(n.pod_cidr) for n in nodes]
    assert all(s.subnet_of(cluster) for s in slices)
    assert not any(a.overlaps(b) for i, a in enumerate(slices) for b in slices[i + 1 :])
    assert [n.cgroup for n in nodes if n.role == "worker"].count("v1") == 1


def test_each_node_gets_its_slice_and_routes_to_the_others() -> None:
    nodes, cluster_cidr = vagrant_nodes()
    for node in nodes:
        res = subprocess.run(
            ["bash", str(PROVISION), "--print-network-config"]
            + provision_args(node, nodes, cluster_cidr),
            capture_output=True,
            text=True,
            check=True,
        )
        import yaml

        config = parse_config(yaml.safe_load(res.stdout))
        assert str(config.pod_cidr) == node.pod_cidr
        assert str(config.node_address) == node.ip
        assert str(config.cluster_cidr) == cluster_cidr
        others = {(n.name, n.pod_cidr, n.ip) for n in nodes if n != node}
        assert {(p.name, str(p.pod_cidr), str(p.address)) for p in config.peers} == others


def test_the_provision_script_refuses_bad_arguments() -> None:
    nodes, cluster_cidr = vagrant_nodes()
    args = provision_args(nodes[0], nodes, cluster_cidr)
    for bad in (["--cgroup", "v3"], ["--self", "nobody"], ["--frobnicate"]):
        res = subprocess.run(
            ["bash", str(PROVISION), "--print-network-config", *args, *bad],
            capture_output=True,
            text=True,
        )
        assert res.returncode != 0 and "vagrant-provision:" in res.stderr, (bad, res.stderr)


@pytest.mark.parametrize(
    "script", ["setup.sh", "test.sh", "demo.sh", "vagrant-provision.sh", "../.ci/run"]
)
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def test_vagrant_validate(tmp_path: Path) -> None:
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant not installed (Debian's vagrant package)")
    env = {
        **os.environ,
        "VAGRANT_CWD": str(REPO),
        "VAGRANT_HOME": str(tmp_path / "home"),  # no ~/.vagrant.d
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),  # no .vagrant/ in the checkout
        "VAGRANT_CHECKPOINT_DISABLE": "1",
    }
    res = subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


@pytest.mark.root
def test_provisioning_inside_the_vm(vm: Runner) -> None:
    """The steps that need no network, as root on a VM (its own /etc, network and cgroups):
    hosts, network config, the node bridge and host-gw routes, the example container, and the
    example pod with an address from the node's slice. The VM's root is an overlay, which
    cannot hold overlay upper dirs: the image and pod store goes on a tmpfs."""
    nodes, cluster_cidr = vagrant_nodes()
    node = nodes[1]
    args = " ".join(provision_args(node, nodes, cluster_cidr))
    script = f"""set -e
mkdir -p /var/lib/corral && mount -t tmpfs tmpfs /var/lib/corral
modprobe dummy
ip link add eth1 type dummy
ip addr add {node.ip}/24 dev eth1
ip link set eth1 up
CORRAL_PROVISION_SETUP=0 bash scripts/vagrant-provision.sh {args}
bash scripts/vagrant-provision.sh --check --cgroup v2
echo "== hosts"; cat /etc/hosts
echo "== links"; readlink /usr/local/bin/corral-oci
echo "== bridge"; ip -4 -o addr show dev corral0
echo "== routes"; ip -4 route show proto 199
"""
    res = vm(["/bin/sh", "-c", script], cwd=str(REPO), timeout=600)
    report = f"exit {res.rc}\n{res.out}\n{res.err}"
    assert res.rc == 0, report
    out = res.out
    for n in nodes:
        assert f"{n.ip}\t{n.name} # corral-cluster" in out, report
    assert out.split("== links\n")[1].startswith(f"{REPO}/.venv/bin/corral-oci"), report
    bridge = out.split("== bridge\n")[1].split("== routes\n")[0]
    gateway = ipaddress.ip_network(node.pod_cidr).network_address + 1
    assert f"inet {gateway}/24" in bridge, report
    routes = out.split("== routes\n")[1]
    for n in nodes:
        if n != node:
            assert f"{n.pod_cidr} via {n.ip} dev eth1" in routes, report
    assert "hello from corral" in out, report  # the example container
    assert "[client] hello from hello" in out, report  # the example pod, fetched over HTTP
    prefix = node.pod_cidr.rsplit(".", 1)[0] + "."
    assert f"pod hello: phase Succeeded, IP {prefix}" in out, report
