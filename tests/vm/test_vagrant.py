"""The Vagrant cluster without Vagrant: the Vagrantfile's node table against the provisioning
script (each node's service, its command line parsed by ``corral`` itself), the scripts'
syntax, ``vagrant validate`` where Debian's vagrant is installed, and the control plane's
provisioning, which needs no network, run inside the test VM up to the README's example
Deployment and Service."""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from tests.conftest import REPO
from tests.vm.conftest import Runner

VAGRANTFILE = REPO / "Vagrantfile"
PROVISION = REPO / "scripts" / "vagrant-provision.sh"

_NODE = re.compile(
    r'\{ name: "(?P<name>[^"]+)", role: "(?P<role>[^"]+)", ip: "(?P<ip>[^"]+)", '
    r'cgroup: "(?P<cgroup>v[12])" \}'
)


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ip: str
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
        args += ["--node", f"{n.name}={n.ip}"]
    return args


def unit(node: Node, nodes: list[Node], cluster_cidr: str) -> str:
    res = subprocess.run(
        ["bash", str(PROVISION), "--print-unit", *provision_args(node, nodes, cluster_cidr)],
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout


def test_the_vagrantfile_passes_what_this_test_assumes() -> None:
    text = VAGRANTFILE.read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    for option in ('"--self", node[:name]', '"--role", node[:role]', '"--cgroup", node[:cgroup]'):
        assert option in text
    assert '"--cluster-cidr", CLUSTER_CIDR' in text
    assert '"--node", "#{n[:name]}=#{n[:ip]}"' in text
    assert 'path: "scripts/vagrant-provision.sh"' in text
    # The token and the kubeconfig come out of the control plane; workers join with it.
    assert '"bash #{PROVISION} --print-token"' in text
    assert '"bash #{PROVISION} --print-kubeconfig --role control-plane "' in text
    assert '"bash #{PROVISION} --join /tmp/corral-token --role worker "' in text
    assert '"bash #{PROVISION} --check-cluster --nodes #{NODES.size}"' in text


def test_one_control_plane_first_two_workers_one_of_them_on_cgroup_v1() -> None:
    nodes, cluster_cidr = vagrant_nodes()
    assert [n.role for n in nodes] == ["control-plane", "worker", "worker"]
    assert len({n.name for n in nodes}) == len({n.ip for n in nodes}) == 3
    network = ipaddress.ip_network(f"{nodes[0].ip}/24", strict=False)
    assert all(ipaddress.ip_address(n.ip) in network for n in nodes)
    # Room for a /24 per node (the server's node IPAM), and apart from the nodes' network.
    cluster = ipaddress.ip_network(cluster_cidr)
    assert cluster.prefixlen <= 22 and not cluster.overlaps(network)
    assert [n.cgroup for n in nodes if n.role == "worker"].count("v1") == 1


def _exec_start(text: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_each_node_runs_the_server_or_an_agent_joined_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each node's unit, and its command line parsed by corral's own command (an option that
    does not exist, or a bad value, fails here); an agent's token comes from the environment
    file, as CORRAL_TOKEN."""
    from corral_cli.main import cli

    monkeypatch.setenv("CORRAL_TOKEN", "K10" + "0" * 64 + "::server:secret")

    nodes, cluster_cidr = vagrant_nodes()
    cp = nodes[0]
    for node in nodes:
        text = unit(node, nodes, cluster_cidr)
        argv = _exec_start(text)
        assert argv[0].endswith("/.venv/bin/corral"), argv
        command = cli.get_command(click.Context(cli), argv[1])
        assert command is not None, argv
        ctx = command.make_context(argv[1], argv[2:])
        params = ctx.params
        assert params["cluster_cidr"] == cluster_cidr
        if node.role == "control-plane":
            assert argv[1] == "server"
            assert params["bind_address"] == node.ip  # the certificate names it; agents reach it
            assert not params["disable_agent"]  # its own agent: pods run on corral-cp too
            assert str(params["write_kubeconfig"]) == "/etc/corral/corral.yaml"
            assert "EnvironmentFile" not in text
        else:
            assert argv[1] == "agent"
            url = f"https://{cp.ip}:{params_port(cp, nodes, cluster_cidr)}"
            assert params["server"] == (url,)  # --server: one or more servers
            assert params["node_name"] == node.name and params["node_ip"] == node.ip
            # The token is not on the command line: the environment file --join writes.
            assert "--token" not in argv and params["token"].endswith("::server:secret")
            assert "EnvironmentFile=/etc/corral/agent.env" in text
            assert "ConditionPathExists=/etc/corral/agent.env" in text


def params_port(cp: Node, nodes: list[Node], cluster_cidr: str) -> int:
    from corral_cli.main import cli

    argv = _exec_start(unit(cp, nodes, cluster_cidr))
    server = cli.get_command(click.Context(cli), "server")
    assert server is not None
    return int(server.make_context("server", argv[2:]).params["https_listen_port"])


def test_the_provision_script_refuses_bad_arguments() -> None:
    nodes, cluster_cidr = vagrant_nodes()
    args = provision_args(nodes[0], nodes, cluster_cidr)
    for bad in (["--cgroup", "v3"], ["--self", "nobody"], ["--frobnicate"], ["--nodes", "x"]):
        res = subprocess.run(
            ["bash", str(PROVISION), "--print-unit", *args, *bad],
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
    """The control plane's provisioning, which needs no network, as root on a VM (its own
    /etc, network and cgroups, no systemd): hosts, links, the busybox archive for its agent,
    ``corral server`` on the node's address with its own agent, the token and the kubeconfig
    for the host (read back by kubectl), a worker's --join refused here; then --check and
    --check-cluster: the node Ready, the README's example Deployment and Service running, a
    client pod fetching http://web (the ClusterIP), the NodePort answering on the node's
    address. The VM's root is an overlay, which cannot hold overlay upper dirs:
    /var/lib/corral goes on a tmpfs."""
    nodes, cluster_cidr = vagrant_nodes()
    cp = nodes[0]
    args = shlex.join(provision_args(cp, nodes, cluster_cidr))
    nodes_args = " ".join(f"--node {n.name}={n.ip}" for n in nodes)
    script = f"""set -e
mkdir -p /var/lib/corral && mount -t tmpfs tmpfs /var/lib/corral
modprobe dummy
ip link add eth1 type dummy
ip addr add {cp.ip}/24 dev eth1
ip link set eth1 up
hostname {cp.name}
CORRAL_PROVISION_SETUP=0 bash scripts/vagrant-provision.sh {args}
echo "== hosts"; cat /etc/hosts
echo "== links"; readlink /usr/local/bin/corral
echo "== token"; bash scripts/vagrant-provision.sh --print-token > /tmp/token; cat /tmp/token
echo "== kubeconfig"
bash scripts/vagrant-provision.sh --print-kubeconfig --role control-plane --self {cp.name} \
    {nodes_args} > /tmp/host-kubeconfig
grep 'server:' /tmp/host-kubeconfig
KUBECONFIG=/tmp/host-kubeconfig kubectl get --raw /readyz; echo
echo "== join"
bash scripts/vagrant-provision.sh --join /tmp/token --role control-plane --self {cp.name} \
    {nodes_args} && exit 3
bash scripts/vagrant-provision.sh --join /tmp/missing --role worker --self {nodes[1].name} \
    {nodes_args} && exit 4
echo "== check"
bash scripts/vagrant-provision.sh --check --cgroup v2
echo "== check-cluster"
bash scripts/vagrant-provision.sh --check-cluster --nodes 1
echo "== cgroups"; ls /sys/fs/cgroup/kubepods/burstable
"""
    res = vm(["/bin/sh", "-c", script], cwd=str(REPO), timeout=900)
    report = f"exit {res.rc}\n{res.out}\n{res.err}"
    assert res.rc == 0, report
    out = res.out
    for n in nodes:
        assert f"{n.ip}\t{n.name} # corral-cluster" in out, report
    assert out.split("== links\n")[1].startswith(f"{REPO}/.venv/bin/corral"), report
    token = out.split("== token\n")[1].split("\n")[0]
    assert re.fullmatch(r"K10[0-9a-f]{64}::server:\S+", token), report
    kubeconfig = out.split("== kubeconfig\n")[1].split("== join\n")[0]
    assert f"server: https://{cp.ip}:6443" in kubeconfig and "ok" in kubeconfig, report
    assert "--join is for workers" in res.err, report
    assert "--join /tmp/missing: no token there" in res.err, report
    assert "hello from corral" in out, report  # the example container
    cluster = out.split("== check-cluster\n")[1]
    assert re.search(rf"^{cp.name}\s+Ready", cluster, re.M), report
    assert 'deployment "web" successfully rolled out' in cluster, report
    web = re.findall(r"^(web-\S+)\s+1/1\s+Running", cluster, re.M)
    assert len(web) == 3, report
    client = re.search(r"web-client: hello from (web-\S+)", cluster)
    assert client is not None and client.group(1) in web, report
    # the example Service's NodePort answers on the node's address, with one of the pods
    nodeport = re.search(rf"http://{re.escape(cp.ip)}:30080: hello from (web-\S+)", cluster)
    assert nodeport is not None and nodeport.group(1) in web, report
    # The example's pods are Burstable (requests below limits): in the kubelet's QoS tree.
    assert len(re.findall(r"^pod[0-9a-f-]{36}$", out.split("== cgroups\n")[1], re.M)) >= 3
