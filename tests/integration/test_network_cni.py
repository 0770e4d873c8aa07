"""The CNI backend with Debian's containernetworking-plugins (bridge, host-local, portmap,
loopback), run inside a node namespace the test makes, on pods that are namespaces it makes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from runtime.network import CniError, OwnedNetns, in_netns
from runtime.network.cni import CniBackend, CniNetwork
from tests.integration.test_network import echo, echo_server, links, ping

pytestmark = [pytest.mark.root, pytest.mark.network]

PLUGINS = "/usr/lib/cni"


def conflist(tmp: Path, *, portmap: bool) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = [
        {"type": "loopback"},
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "dataDir": str(tmp / "ipam"),
                "ranges": [[{"subnet": "10.77.0.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
    ]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {"cniVersion": "1.0.0", "name": "corral-test", "plugins": plugins}


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    for p in ("bridge", "host-local", "portmap", "loopback"):
        if not os.access(f"{PLUGINS}/{p}", os.X_OK):
            pytest.skip(f"CNI plugin {p} missing (apt-get install containernetworking-plugins)")
    host_links = links(None)
    with ExitStack() as s:
        yield s
    assert links(None) == host_links


def nat_rules(ns: Any) -> list[str]:
    out = in_netns(ns, lambda: subprocess.run(["iptables-save", "-t", "nat"], capture_output=True))
    return [ln for ln in out.stdout.decode().splitlines() if ln.startswith("-A") and "CNI-DN" in ln]


def test_cni_pod_to_pod_hostport_and_clean_delete(stack: ExitStack, tmp_path: Path) -> None:
    node = stack.enter_context(OwnedNetns())
    a, b = stack.enter_context(OwnedNetns()), stack.enter_context(OwnedNetns())
    net = CniNetwork.from_conflist(conflist(tmp_path, portmap=True))
    cni = CniBackend(net, (PLUGINS,), tmp_path / "cache", node_netns=node.ns)
    added: dict[str, Any] = {}
    try:
        ports = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
        ra = cni.add("pod-a", a.ns, capability_args=ports)
        added["pod-a"] = a.ns
        rb = cni.add("pod-b", b.ns)
        added["pod-b"] = b.ns
        assert ra.ip is not None and rb.ip is not None and ra.ip != rb.ip
        assert links(a.ns) == {"lo", "eth0"}
        # pod to pod
        srv = echo_server(b.ns, 7000)
        try:
            assert echo(a.ns, rb.ip, 7000, "cni") == f"cni from {ra.ip}"
        finally:
            srv.close()
        assert ping(b.ns, ra.ip)
        # portmap's hostPort, from the node to its bridge address
        srv = echo_server(a.ns, 80)
        try:
            gw = ra.raw["ips"][0]["gateway"]
            assert echo(node.ns, gw, 8080, "hp").startswith("hp from ")
        finally:
            srv.close()
        assert nat_rules(node.ns)
        # DEL in reverse order with the cached result: nothing of the pod is left
        cni.delete("pod-a", a.ns)
        del added["pod-a"]
        assert links(a.ns) == {"lo"}
        assert nat_rules(node.ns) == []
        assert str(ra.ip) not in os.listdir(tmp_path / "ipam" / "corral-test")
        assert cni.cached("pod-a") is None
    finally:
        for cid, ns in added.items():
            cni.delete(cid, ns)
    assert not [n for n in links(node.ns) if n.startswith("veth")]
    assert [f for f in os.listdir(tmp_path / "ipam" / "corral-test") if f[0].isdigit()] == []


def test_cni_check_and_errors(stack: ExitStack, tmp_path: Path) -> None:
    node = stack.enter_context(OwnedNetns())
    a = stack.enter_context(OwnedNetns())
    # portmap 1.1.1's CHECK fails on hosts with ip6tables but no IPv6 mapping: check without it
    cni = CniBackend(
        CniNetwork.from_conflist(conflist(tmp_path, portmap=False)),
        (PLUGINS,),
        tmp_path / "cache",
        node_netns=node.ns,
    )
    cni.add("pod-a", a.ns)
    try:
        cni.check("pod-a", a.ns)
        with pytest.raises(CniError) as err:
            CniBackend(
                CniNetwork.from_conflist({"name": "x", "plugins": [{"type": "no-such-plugin"}]}),
                (PLUGINS,),
                tmp_path / "cache",
                node.ns,
            ).add("pod-b", a.ns)
        assert err.value.code == 7
    finally:
        cni.delete("pod-a", a.ns)
    assert links(a.ns) == {"lo"}
