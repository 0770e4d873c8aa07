"""networking.k8s.io/v1 Ingress and IngressClass on a real ``corral server``, through kubectl
1.32 and 1.20 and the Python client: discovery, create (``kubectl create ingress``), tables,
validation as kube-apiserver words it, the default class admission, the immutable
controller. No ingress controller runs: status stays empty, as on a cluster without one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubeserver import Kubectl, Server, api_only_server

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apis-networking")) as srv:
        yield srv


def _namespace(kubectl: Kubectl, prefix: str) -> str:
    ns = f"{prefix}-v{kubectl.version.replace('.', '')}"
    kubectl.run("create", "namespace", ns)
    return ns


def _ingress(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_api_resources(kubectl: Kubectl) -> None:
    out = kubectl.run("api-resources", "--api-group=networking.k8s.io").stdout
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert rows["ingresses"][1:] == ["ing", "networking.k8s.io/v1", "true", "Ingress"]
    assert rows["ingressclasses"][1:] == ["networking.k8s.io/v1", "false", "IngressClass"]
    explained = kubectl.run("explain", "ingress.spec.rules.http.paths.pathType").stdout
    assert "pathType" in explained


def test_create_ingress_and_table(kubectl: Kubectl) -> None:
    ns = _namespace(kubectl, "ing-create")
    out = kubectl.run(
        "create",
        "ingress",
        "web",
        "-n",
        ns,
        "--class=nginx",
        "--rule=foo.example.com/bar=svc1:8080,tls=my-cert",
        "--rule=bar.example.com/*=svc2:http",
    ).stdout
    assert out.strip() == "ingress.networking.k8s.io/web created"
    got = json.loads(kubectl.run("get", "ingress", "web", "-n", ns, "-o", "json").stdout)
    paths = [r["http"]["paths"][0] for r in got["spec"]["rules"]]
    assert paths[0] == {
        "path": "/bar",
        "pathType": "Exact",
        "backend": {"service": {"name": "svc1", "port": {"number": 8080}}},
    }
    assert paths[1]["pathType"] == "Prefix" and paths[1]["path"] == "/"
    assert paths[1]["backend"]["service"]["port"] == {"name": "http"}
    assert got["spec"]["tls"] == [{"hosts": ["foo.example.com"], "secretName": "my-cert"}]
    assert got["metadata"]["generation"] == 1
    assert got["status"] == {"loadBalancer": {}}  # as kube writes it: no controller here
    lines = kubectl.run("get", "ing", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    cells = lines[1].split()
    assert cells[:3] == ["web", "nginx", "foo.example.com,bar.example.com"]
    assert lines[1].split("   ")[0] == "web"
    assert "80, 443" in lines[1]
    kubectl.run("describe", "ingress", "web", "-n", ns)
    kubectl.run("delete", "ingress", "web", "-n", ns)


def test_ingress_validation(kubectl: Kubectl) -> None:
    ns = _namespace(kubectl, "ing-invalid")
    cases = [
        (
            _ingress("a"),
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or"
            " `rules` must be specified",
        ),
        (
            _ingress(
                "b",
                rules=[
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "foo",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "s", "port": {"number": 80}}},
                                }
                            ]
                        }
                    }
                ],
            ),
            'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path',
        ),
        (
            _ingress(
                "c",
                rules=[
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Regex",
                                    "backend": {"service": {"name": "s", "port": {"number": 80}}},
                                }
                            ]
                        }
                    }
                ],
            ),
            'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported'
            ' values: "Exact", "ImplementationSpecific", "Prefix"',
        ),
        (
            _ingress("d", defaultBackend={"service": {"name": "s"}}),
            "spec.defaultBackend: Required value: port name or number is required",
        ),
        (
            _ingress("e", rules=[{"host": "10.0.0.1"}]),
            'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
        ),
    ]
    for body, message in cases:
        p = kubectl.run("create", "-n", ns, "-f", "-", input=body, check=False)
        assert p.returncode == 1, p.stdout
        assert message in p.stderr, p.stderr
    body = json.loads(
        _ingress("f", defaultBackend={"service": {"name": "s", "port": {"number": 80}}})
    )
    body["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "x"}
    body["spec"]["ingressClassName"] = "y"
    p = kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(body), check=False)
    assert 'annotations.kubernetes.io/ingress.class: Invalid value: "x": can not be set' in p.stderr


def test_ingress_class_default_and_immutable(server: Server, kubectl: Kubectl) -> None:
    v = kubectl.version.replace(".", "")
    ns = _namespace(kubectl, "ing-class")
    classes = [f"old-{v}", f"new-{v}"]
    for name in classes:
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {
                "name": name,
                "annotations": {
                    "ingressclass.kubernetes.io/is-default-class": str(name == classes[1]).lower()
                },
            },
            "spec": {
                "controller": "example.com/ingress",
                "parameters": {"kind": "Params", "apiGroup": "example.com", "name": "p"},
            },
        }
        kubectl.run("create", "-f", "-", input=json.dumps(body))
    try:
        lines = kubectl.run("get", "ingressclass", classes[1]).stdout.splitlines()
        assert lines[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
        assert lines[1].split()[:3] == [classes[1], "example.com/ingress", "Params.example.com/p"]
        got = json.loads(kubectl.run("get", "ingressclass", classes[1], "-o", "json").stdout)
        assert got["spec"]["parameters"]["scope"] == "Cluster"  # defaulted
        body = _ingress("x", defaultBackend={"service": {"name": "s", "port": {"number": 80}}})
        kubectl.run("create", "-n", ns, "-f", "-", input=body)
        got = json.loads(kubectl.run("get", "ingress", "x", "-n", ns, "-o", "json").stdout)
        assert got["spec"]["ingressClassName"] == classes[1]  # the default
        p = kubectl.run(
            "patch",
            "ingressclass",
            classes[0],
            "--type=merge",
            "-p",
            '{"spec":{"controller":"example.com/other"}}',
            check=False,
        )
        assert p.returncode == 1
        assert 'spec.controller: Invalid value: "example.com/other": field is immutable' in (
            p.stderr
        )
        p = kubectl.run(
            "create",
            "-f",
            "-",
            check=False,
            input=json.dumps(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "IngressClass",
                    "metadata": {"name": f"bad-{v}"},
                    "spec": {"controller": "nodomain"},
                }
            ),
        )
        assert 'spec.controller: Invalid value: "nodomain": must be a domain-prefixed path' in (
            p.stderr
        )
    finally:
        for name in classes:
            kubectl.run("delete", "ingressclass", name, check=False)


def test_python_client(server: Server) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(str(server.kubeconfig))
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "ing-python"}})
    net = client.NetworkingV1Api(api)
    ing = client.V1Ingress(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1IngressSpec(
            rules=[
                client.V1IngressRule(
                    host="py.example.com",
                    http=client.V1HTTPIngressRuleValue(
                        paths=[
                            client.V1HTTPIngressPath(
                                path="/",
                                path_type="Prefix",
                                backend=client.V1IngressBackend(
                                    service=client.V1IngressServiceBackend(
                                        name="web", port=client.V1ServiceBackendPort(number=80)
                                    )
                                ),
                            )
                        ]
                    ),
                )
            ]
        ),
    )
    made = net.create_namespaced_ingress("ing-python", ing)
    assert made.spec.rules[0].host == "py.example.com"
    items = net.list_namespaced_ingress("ing-python").items
    assert [i.metadata.name for i in items] == ["py"]
    status = net.read_namespaced_ingress_status("py", "ing-python")
    assert not (
        status.status and status.status.load_balancer and status.status.load_balancer.ingress
    )
    net.delete_namespaced_ingress("py", "ing-python")
    assert isinstance(net.list_ingress_class().items, list)


# ------------------------------------------------------------------------ NetworkPolicy


def _netpol(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_network_policy_apply_get_describe(kubectl: Kubectl) -> None:
    """kubectl apply, the table (NAME POD-SELECTOR AGE), describe; kube's defaulting: the
    policy types from which rule lists are there, protocol TCP."""
    rows = {
        ln.split()[0]: ln.split()
        for ln in kubectl.run("api-resources", "--api-group=networking.k8s.io").stdout.splitlines()
    }
    explained = kubectl.run("explain", "networkpolicy.spec.ingress.from.ipBlock").stdout
    assert "except" in explained and "cidr" in explained
    assert rows["networkpolicies"][1:] == [
        "netpol",
        "networking.k8s.io/v1",
        "true",
        "NetworkPolicy",
    ]
    ns = _namespace(kubectl, "netpol-get")
    body = _netpol(
        "web",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[
            {
                "from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": [{"port": 80}, {"port": "http", "protocol": "UDP"}],
            }
        ],
        egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
    )
    out = kubectl.run("apply", "-n", ns, "-f", "-", input=body).stdout
    assert out.strip() == "networkpolicy.networking.k8s.io/web created"
    kubectl.run("apply", "-n", ns, "-f", "-", input=_netpol("deny", podSelector={}))
    got = json.loads(kubectl.run("get", "netpol", "web", "-n", ns, "-o", "json").stdout)
    spec = got["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0]["ports"] == [
        {"port": 80, "protocol": "TCP"},
        {"port": "http", "protocol": "UDP"},
    ]
    assert got["metadata"]["generation"] == 1
    deny = json.loads(kubectl.run("get", "netpol", "deny", "-n", ns, "-o", "json").stdout)
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # no podSelector, no spec: Go's zero values, every pod (kubectl 1.20 itself requires the
    # field, as the OpenAPI schema says: --validate=false)
    for name, body in (("bare", _netpol("bare")), ("nospec", _netpol("nospec"))):
        doc = json.loads(body)
        doc["spec"].pop("podSelector", None)
        if name == "nospec":
            del doc["spec"]
        kubectl.run("create", "--validate=false", "-n", ns, "-f", "-", input=json.dumps(doc))
        got = json.loads(kubectl.run("get", "netpol", name, "-n", ns, "-o", "json").stdout)
        assert got["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}, name
        kubectl.run("delete", "netpol", name, "-n", ns)
    lines = kubectl.run("get", "networkpolicies", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert [ln.split()[:2] for ln in lines[1:]] == [["deny", "<none>"], ["web", "app=web"]]
    described = kubectl.run("describe", "netpol", "web", "-n", ns).stdout
    assert "PodSelector:" in described and "app=web" in described
    assert "10.0.0.0/8" in described and "10.1.0.0/16" in described
    kubectl.run("delete", "netpol", "web", "deny", "-n", ns)


def test_network_policy_validation(kubectl: Kubectl) -> None:
    ns = _namespace(kubectl, "netpol-invalid")
    cases = [
        (
            _netpol("a", podSelector={}, policyTypes=["Sideways"]),
            'spec.policyTypes[0]: Unsupported value: "Sideways": supported values: "Ingress",'
            ' "Egress"',
        ),
        (
            _netpol("b", podSelector={}, ingress=[{"ports": [{"protocol": "ICMP"}]}]),
            'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values:'
            ' "TCP", "UDP", "SCTP"',
        ),
        (
            _netpol("c", podSelector={}, ingress=[{"ports": [{"port": 0}]}]),
            "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535,"
            " inclusive",
        ),
        (
            _netpol("d", podSelector={}, egress=[{"ports": [{"port": 90, "endPort": 80}]}]),
            "spec.egress[0].ports[0].endPort: Invalid value: 90: must be greater than or equal"
            " to `port`",
        ),
        (
            _netpol("e", podSelector={}, egress=[{"ports": [{"port": "dns", "endPort": 80}]}]),
            "spec.egress[0].ports[0].endPort: Invalid value: 80: may not be specified when"
            " `port` is non-numeric",
        ),
        (
            _netpol("f", podSelector={}, ingress=[{"ports": [{"port": "Not_A_Name"}]}]),
            'spec.ingress[0].ports[0].port: Invalid value: "Not_A_Name"',
        ),
        (
            _netpol("g", podSelector={}, ingress=[{"from": [{}]}]),
            "spec.ingress[0].from[0]: Required value: must specify a peer",
        ),
        (
            _netpol(
                "h",
                podSelector={},
                ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}],
            ),
            "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer",
        ),
        (
            _netpol("i", podSelector={}, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0/8"}}]}]),
            'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0/8": must be a valid'
            " CIDR value",
        ),
        (
            _netpol(
                "j",
                podSelector={},
                egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}],
            ),
            'spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "10.0.0.0/16": must be a'
            " strict subset of `cidr`",
        ),
        (
            _netpol("k", podSelector={"matchExpressions": [{"key": "a", "operator": "Gt"}]}),
            'spec.podSelector.matchExpressions[0].operator: Invalid value: "Gt": not a valid'
            " selector operator",
        ),
    ]
    for body, message in cases:
        p = kubectl.run("create", "-n", ns, "-f", "-", input=body, check=False)
        assert p.returncode == 1, p.stdout
        assert message in p.stderr, p.stderr
