"""Service allocation in a real ``corral server``, driven by kubectl 1.32 and 1.20: clusterIPs
from --service-cidr and nodePorts from --service-node-port-range, requested values honoured or
refused with kube-apiserver's words, released on delete, kept on update, never handed out twice
(parallel creates), kept over a restart; the ``kubernetes`` service."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.kubeserver import API_ONLY, KUBECTL_120, KUBECTL_CURRENT, Kubectl, Server

VERSIONS = {"1.32": KUBECTL_CURRENT, "1.20": KUBECTL_120}
CIDR = "10.96.0.0/24"  # small, so that the tests see it fill and wrap
NET = ipaddress.ip_network(CIDR)
PORTS = (31000, 31999)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("services"),
        extra=(
            *API_ONLY,
            "--service-cidr",
            CIDR,
            "--service-node-port-range",
            f"{PORTS[0]}-{PORTS[1]}",
        ),
    )
    srv.start()
    try:
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0


@pytest.fixture(scope="module", params=list(VERSIONS))
def kubectl(
    request: pytest.FixtureRequest, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    binary = VERSIONS[request.param]
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {request.param} not found at {binary} (scripts/setup.sh)")
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    return Kubectl(binary, home, server.kubeconfig, request.param)


def _ns(k: Kubectl, name: str) -> str:
    ns = f"{name}-v{k.version.replace('.', '')}"
    k.run("create", "namespace", ns)
    return ns


def _svc(k: Kubectl, ns: str, name: str) -> dict[str, Any]:
    return json.loads(k.run("-n", ns, "get", "service", name, "-o", "json").stdout)


def _body(name: str, typ: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": typ,
            "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": 8080}],
            **spec,
        },
    }


def test_kubectl_create_allocates(kubectl: Kubectl) -> None:
    k = kubectl
    ns = _ns(k, "alloc")
    k.run("-n", ns, "create", "service", "clusterip", "cip", "--tcp=80:8080")
    k.run("-n", ns, "create", "service", "nodeport", "np", "--tcp=80:8080,443:8443")
    k.run("-n", ns, "create", "service", "clusterip", "headless", "--clusterip=None")
    k.run("-n", ns, "create", "service", "externalname", "ext", "--external-name=db.example")
    k.run("-n", ns, "create", "deployment", "web", "--image=nginx", "--port=80")
    k.run("-n", ns, "expose", "deployment", "web", "--port=81", "--target-port=80")
    ips = set()
    for name in ("cip", "np", "web"):
        spec = _svc(k, ns, name)["spec"]
        ip = ipaddress.ip_address(spec["clusterIP"])
        assert ip in NET and ip not in (NET.network_address, NET.network_address + 1)
        assert ip != NET.broadcast_address
        assert spec["clusterIPs"] == [spec["clusterIP"]]
        assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
        assert spec["sessionAffinity"] == "None"
        ips.add(ip)
    assert len(ips) == 3
    np = _svc(k, ns, "np")["spec"]
    node_ports = [p["nodePort"] for p in np["ports"]]
    assert len(set(node_ports)) == 2 and all(PORTS[0] <= p <= PORTS[1] for p in node_ports)
    assert np["externalTrafficPolicy"] == "Cluster"
    assert all("nodePort" not in p for p in _svc(k, ns, "cip")["spec"]["ports"])
    headless = _svc(k, ns, "headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["clusterIPs"] == ["None"]
    ext = _svc(k, ns, "ext")["spec"]
    assert "clusterIP" not in ext and "clusterIPs" not in ext
    row = k.run("-n", ns, "get", "service", "np", "--no-headers").stdout.split()
    assert row[1] == "NodePort" and row[2] == np["clusterIP"]
    assert f"80:{node_ports[0]}/TCP" in row[4]


def test_requested_values_honoured_or_refused(kubectl: Kubectl) -> None:
    k = kubectl
    ns = _ns(k, "req")
    # an address and a port no service holds now (other tests of this server get random ones)
    services = json.loads(k.run("get", "services", "-A", "-o", "json").stdout)["items"]
    used = {p.get("nodePort") for s in services for p in s["spec"].get("ports") or ()}
    ips = {s["spec"].get("clusterIP") for s in services}
    want = next(ip for i in range(200 + (k.version == "1.20"), 4000, 2)
                if (ip := str(NET.network_address + i)) not in ips)  # fmt: skip
    port = next(p for p in range(PORTS[0] + 500 + (k.version == "1.20"), PORTS[1], 2)
                if p not in used)  # fmt: skip
    k.run("-n", ns, "create", "service", "nodeport", "a", "--tcp=80", f"--node-port={port}")
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(_body("b", clusterIP=want)))
    assert _svc(k, ns, "b")["spec"]["clusterIP"] == want
    assert _svc(k, ns, "a")["spec"]["ports"][0]["nodePort"] == port
    taken = k.run(
        "-n", ns, "create", "-f", "-", input=json.dumps(_body("c", clusterIP=want)), check=False
    )
    assert taken.returncode != 0
    assert (
        f'The Service "c" is invalid: spec.clusterIPs: Invalid value: []string{{"{want}"}}:'
        f" failed to allocate IP {want}: provided IP is already allocated"
    ) in taken.stderr
    outside = k.run(
        "-n",
        ns,
        "create",
        "-f",
        "-",
        input=json.dumps(_body("d", clusterIP="10.0.0.5")),
        check=False,
    )
    assert "the provided IP (10.0.0.5) is not in the valid range" in outside.stderr
    assert f"The range of valid IPs is {CIDR}" in outside.stderr
    dup = k.run(
        "-n",
        ns,
        "create",
        "service",
        "nodeport",
        "e",
        "--tcp=80",
        f"--node-port={port}",
        check=False,
    )
    assert dup.returncode != 0
    assert (
        f"spec.ports[0].nodePort: Invalid value: {port}: provided port is already allocated"
        in dup.stderr
    )
    # nothing was kept of the refused creates: the services do not exist
    for name in ("c", "d", "e"):
        assert k.run("-n", ns, "get", "service", name, check=False).returncode != 0
    # delete releases: the address and the port can be had again
    k.run("-n", ns, "delete", "service", "b", "a")
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(_body("c", clusterIP=want)))
    k.run("-n", ns, "create", "service", "nodeport", "e", "--tcp=80", f"--node-port={port}")
    assert _svc(k, ns, "c")["spec"]["clusterIP"] == want


def test_update_keeps_and_type_change_allocates(kubectl: Kubectl) -> None:
    k = kubectl
    ns = _ns(k, "upd")
    k.run("-n", ns, "create", "service", "clusterip", "s", "--tcp=80:8080")
    before = _svc(k, ns, "s")["spec"]
    ip = before["clusterIP"]
    # a replace without clusterIP keeps the allocated one
    body = _body("s")
    body["spec"]["ports"] = [{"name": "80-8080", "port": 80, "targetPort": 8080}]
    k.run("-n", ns, "replace", "-f", "-", input=json.dumps(body))
    assert _svc(k, ns, "s")["spec"]["clusterIP"] == ip
    other = str(NET.network_address + 250)
    bad = k.run(
        "-n",
        ns,
        "patch",
        "service",
        "s",
        "-p",
        json.dumps({"spec": {"clusterIP": other, "clusterIPs": [other]}}),
        check=False,
    )
    assert bad.returncode != 0 and "spec.clusterIP: Invalid value" in bad.stderr
    assert "field is immutable" in bad.stderr
    # ClusterIP -> NodePort: node ports allocated, the address kept
    k.run("-n", ns, "patch", "service", "s", "-p", '{"spec":{"type":"NodePort"}}')
    spec = _svc(k, ns, "s")["spec"]
    assert spec["clusterIP"] == ip
    port = spec["ports"][0]["nodePort"]
    assert PORTS[0] <= port <= PORTS[1]
    # NodePort -> ClusterIP: the port is released (another service may request it)
    k.run("-n", ns, "patch", "service", "s", "-p", '{"spec":{"type":"ClusterIP"}}')
    assert "nodePort" not in _svc(k, ns, "s")["spec"]["ports"][0]
    k.run("-n", ns, "create", "service", "nodeport", "t", "--tcp=80", f"--node-port={port}")
    # -> ExternalName: the address is released
    k.run(
        "-n", ns, "patch", "service", "s", "--type=merge", "-p",
        '{"spec":{"type":"ExternalName","externalName":"x.example","clusterIP":null,"clusterIPs":null}}',
    )  # fmt: skip
    assert "clusterIP" not in _svc(k, ns, "s")["spec"]
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(_body("u", clusterIP=ip)))


def test_kubernetes_service(server: Server) -> None:
    code, svc = server.json("GET", "/api/v1/namespaces/default/services/kubernetes")
    assert code == 200, svc
    assert svc["spec"]["clusterIP"] == str(NET.network_address + 1)
    assert svc["spec"]["ports"][0]["port"] == 443
    assert svc["spec"]["ports"][0]["targetPort"] == server.port
    code, ep = server.json("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert code == 200
    assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
    assert ep["subsets"][0]["ports"][0]["port"] == server.port
    code, eps = server.json(
        "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
    )
    assert code == 200 and eps["endpoints"][0]["addresses"] == ["127.0.0.1"]


def test_kube_dns_service(kubectl: Kubectl) -> None:
    """The server makes kube-system/kube-dns at the service CIDR's 10th address (k3s' cluster
    DNS Service: no selector, internalTrafficPolicy Local), and no other service gets it."""
    k = kubectl
    dns_ip = str(NET.network_address + 10)
    rows = k.run("get", "svc", "-n", "kube-system", "--no-headers").stdout.splitlines()
    row = next(r.split() for r in rows if r.split()[0] == "kube-dns")
    assert row[1:3] == ["ClusterIP", dns_ip]
    assert sorted(row[4].split(",")) == ["53/TCP", "53/UDP"]
    svc = json.loads(k.run("get", "svc", "-n", "kube-system", "kube-dns", "-o", "json").stdout)
    assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert "selector" not in svc["spec"]
    assert {(p["name"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        ("dns", "UDP"),
        ("dns-tcp", "TCP"),
    }
    ns = _ns(k, "dnsip")
    taken = k.run(
        "-n", ns, "create", "-f", "-", input=json.dumps(_body("x", clusterIP=dns_ip)), check=False
    )
    assert taken.returncode != 0
    assert (
        f'spec.clusterIPs: Invalid value: []string{{"{dns_ip}"}}: failed to allocate IP {dns_ip}:'
        " provided IP is reserved for the cluster DNS (kube-system/kube-dns"
    ) in taken.stderr


def test_a_cluster_dns_outside_the_service_cidr_stops_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    srv = Server(tmp_path_factory.mktemp("baddns"), extra=(*API_ONLY, "--cluster-dns", "10.0.0.10"))
    with pytest.raises(RuntimeError, match="did not start"):
        srv.start()
    assert (
        "--cluster-dns 10.0.0.10: not a host address of the service CIDR 10.43.0.0/16"
        in srv.log.read_text()
    )


def test_parallel_creates_never_share(server: Server) -> None:
    code, _ = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": "par"}})
    assert code == 201

    def create(i: int) -> tuple[int, Any]:
        return server.json("POST", "/api/v1/namespaces/par/services", _body(f"s{i}", "NodePort"))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, range(60)))
    assert all(code == 201 for code, _ in results), [b for c, b in results if c != 201][:3]
    code, items = server.json("GET", "/api/v1/services")
    ips = [
        s["spec"]["clusterIP"]
        for s in items["items"]
        if s["spec"].get("clusterIP") not in (None, "None")
    ]
    ports = [
        p["nodePort"]
        for s in items["items"]
        for p in s["spec"].get("ports") or []
        if p.get("nodePort")
    ]
    assert len(ips) == len(set(ips)) and len(ports) == len(set(ports))
    # every address of the /24 but the network and the broadcast (.1: kubernetes): then full
    free = 254 - len(ips)
    for i in range(free):
        code, body = server.json("POST", "/api/v1/namespaces/par/services", _body(f"f{i}"))
        assert code == 201, body
    code, body = server.json("POST", "/api/v1/namespaces/par/services", _body("full"))
    assert code == 500 and "range is full" in body["message"], body
    server.json("DELETE", "/api/v1/namespaces/par/services/f0")
    code, body = server.json("POST", "/api/v1/namespaces/par/services", _body("full"))
    assert code == 201, body
    names = [f"s{i}" for i in range(60)] + [f"f{i}" for i in range(1, free)] + ["full"]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda n: server.json("DELETE", f"/api/v1/namespaces/par/services/{n}")[0], names
            )
        )
    assert set(codes) == {200}


def test_restart_keeps_allocations(server: Server) -> None:
    server.json("POST", "/api/v1/namespaces", {"metadata": {"name": "rs"}})
    code, svc = server.json("POST", "/api/v1/namespaces/rs/services", _body("keep", "NodePort"))
    assert code == 201, svc
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    assert server.stop() == 0
    server.start()
    code, body = server.json("POST", "/api/v1/namespaces/rs/services", _body("again", clusterIP=ip))
    assert code == 422 and "provided IP is already allocated" in body["message"]
    again = _body("again2", "NodePort")
    again["spec"]["ports"][0]["nodePort"] = port
    code, body = server.json("POST", "/api/v1/namespaces/rs/services", again)
    assert code == 422 and "provided port is already allocated" in body["message"]
