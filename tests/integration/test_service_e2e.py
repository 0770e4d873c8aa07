"""End to end: a real ``corral server`` (API, scheduler, controllers) and ``corral agent`` with
its service proxy in the node namespace the test made; a Deployment of busybox httpd pods behind
a Service, reached through its ClusterIP and its NodePort from the node's namespace, driven by
kubectl."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from typing import Any

import pytest

from runtime.network.netns import in_netns
from tests.integration.test_kubelet import IMAGE, Cluster, cluster, until  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.network]

SCRIPT = "hostname > /www/index.html; exec httpd -f -p 8080 -h /www"


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "httpd",
                            "image": IMAGE,
                            "command": ["sh", "-c", SCRIPT],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                        }
                    ],
                    "volumes": [{"name": "www", "emptyDir": {}}],
                },
            },
        },
    }


def get(c: Cluster, ip: str, port: int) -> str:
    """One HTTP GET / from the node's network namespace: the pod's hostname, or the error."""

    def run() -> str:
        try:
            with socket.create_connection((ip, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        except OSError as e:
            return f"error: {type(e).__name__}"
        return data.decode(errors="replace").rpartition("\r\n\r\n")[2].strip()

    return in_netns(c.netns.path, run)


def test_deployment_behind_a_service(cluster: Cluster) -> None:  # noqa: F811
    c = cluster
    # the node's uplink: a default route, as a real node has (a route to the ClusterIPs)
    ns = ["nsenter", f"--net={c.netns.path}"]
    subprocess.run(
        [*ns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"], check=True
    )
    for dev in ("lo", "uplink0", "uplink1"):  # lo: a node's own traffic (and TCP resets)
        subprocess.run([*ns, "ip", "link", "set", dev, "up"], check=True)
    subprocess.run([*ns, "ip", "route", "add", "default", "dev", "uplink0"], check=True)
    k = c.kubectl()
    k.run("apply", "-f", "-", input=json.dumps(deployment(3)))
    k.run("expose", "deployment", "web", "--port=80", "--target-port=http", "--type=NodePort")
    svc = json.loads(k.run("get", "service", "web", "-o", "json").stdout)
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    k.run("rollout", "status", "deployment/web", "--timeout=120s")
    pods = json.loads(k.run("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert len(names) == 3

    def every_pod_answers() -> bool:
        seen = {get(c, ip, 80) for _ in range(60)}
        return names <= seen

    until("every pod to answer through the ClusterIP", every_pod_answers)
    answers = [get(c, ip, 80) for _ in range(90)]
    assert set(answers) == names, answers  # no error once the endpoints are in
    node = json.loads(k.run("get", "node", "node-a", "-o", "json").stdout)
    gateway = str(ipaddress.ip_network(node["spec"]["podCIDR"]).network_address + 1)
    assert get(c, gateway, node_port) in names  # the NodePort on a node address

    # no ready endpoint: refused at once, not a timeout
    k.run("scale", "deployment", "web", "--replicas=0")
    until("the refusal", lambda: get(c, ip, 80) == "error: ConnectionRefusedError")
    assert get(c, gateway, node_port) == "error: ConnectionRefusedError"
    k.run("delete", "service", "web")
    k.run("delete", "deployment", "web")

    def rules_gone() -> bool:
        out = subprocess.run(
            [*ns, "nft", "-j", "list", "map", "ip", "corral-proxy", "no-endpoint-services"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return ip not in out

    until("the service's rules to go", rules_gone)
