"""A pod calls the Kubernetes API from inside itself with its ServiceAccount token, as
in-cluster clients do, on a two-node cluster on one machine (``corral cluster up`` through
testkit.cluster, ONE cluster for the module).

The pod's program is the ``kubernetes`` Python client's ``load_incluster_config``: it finds
the API through ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` (the kubelet's service
variables), reads the projected token and CA, and connects to the ``kubernetes`` Service's
ClusterIP, which the node's proxy DNATs to the address the server advertises (the LAN bridge's,
where the server listens on a socket made in the LAN namespace); TLS is checked against the
cluster CA for the ClusterIP. kubectl in the pod (client-go's ``rest.InClusterConfig``) does
the same. Its ServiceAccount may read pods (a Role) and nothing else: the
secrets list is refused with 403. Once the pod is deleted, its token is refused with 401.

The pod runs this machine's Python with the client (testkit.pyimage: an image of the
interpreter, its standard library and shared libraries, and the modules the client imports)."""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.network.netns import in_netns
from testkit.cluster import image_dir, leftovers, one_machine_cluster
from testkit.pyimage import PYTHON, PYTHON_ENV, python_rootfs
from tests.integration.test_cluster import Cluster, until
from tests.kubeserver import KUBECTL_CURRENT

pytestmark = [pytest.mark.root, pytest.mark.network]

IMAGE = "corral-incluster:latest"
NS = "incluster"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# In the pod: the in-cluster configuration, its own pod read (allowed), the secrets listed
# (refused), then it waits to be deleted.
PROGRAM = """
import os, time
from kubernetes import client, config
config.load_incluster_config()
api = client.CoreV1Api()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
print("HOST", api.api_client.configuration.host, flush=True)
me = api.read_namespaced_pod(os.environ["HOSTNAME"], ns)
print("UID", me.metadata.uid, flush=True)
print("PODS", len(api.list_namespaced_pod(ns).items), flush=True)
try:
    api.list_namespaced_secret(ns)
    print("SECRETS listed", flush=True)
except client.ApiException as e:
    print("SECRETS", e.status, flush=True)
print("DONE", flush=True)
while True:
    time.sleep(1)
"""


def python_image(rootfs: Path, dest: Path) -> Path:
    """An images directory with the test rootfs, Python and the kubernetes client, and
    kubectl (static: client-go's in-cluster configuration when it has no kubeconfig)."""
    # the client's API classes and models, and pydantic's parts, are imported on first use
    client = ("kubernetes.client", "kubernetes.config")
    tree = python_rootfs(rootfs, dest / "rootfs", client, whole=("kubernetes.client", "pydantic"))
    shutil.copy(os.path.realpath(KUBECTL_CURRENT), tree / "bin" / "kubectl")
    return image_dir(tree, dest / "images", IMAGE, Env=PYTHON_ENV)


def reader_objects() -> list[dict[str, Any]]:
    """The namespace, a ServiceAccount that may read pods there, and a Service (its link
    variables)."""
    meta = {"name": "reader", "namespace": NS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web-x", "namespace": NS},
            "spec": {
                "selector": {"app": "none"},
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
        },
    ]


def client_pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "reader",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": [PYTHON, "-c", PROGRAM],
                }
            ],
            **spec,
        },
    }


class InCluster(Cluster):
    def ca(self) -> str:
        cfg = yaml.safe_load(self.state.kubeconfig.read_text())
        data = cfg["clusters"][0]["cluster"]["certificate-authority-data"]
        return base64.b64decode(data).decode()

    def exec(self, pod: str, *argv: str) -> str:
        return self.k.run("exec", pod, "--", *argv).stdout

    def env(self, pod: str) -> dict[str, str]:
        lines = self.exec(pod, "env").splitlines()
        return dict(ln.split("=", 1) for ln in lines if "=" in ln)

    def advertised(self) -> tuple[str, int]:
        ep = self.get("endpoints", "kubernetes", "-n", "default")
        (subset,) = ep["subsets"]
        (addr,) = subset["addresses"]
        return addr["ip"], subset["ports"][0]["port"]


def https_get(
    host: str, port: int, path: str, token: str, ca: str, netns: str | None = None
) -> int:
    """The status of one GET with a bearer token, the server checked against ``ca`` for
    ``host`` (from ``netns`` when given)."""
    ctx = ssl.create_default_context(cadata=ca)

    def connect() -> socket.socket:
        return socket.create_connection((host, port), timeout=10)

    raw = in_netns(netns, connect) if netns else connect()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1])


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InCluster]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    try:
        import kubernetes  # noqa: F401 - the pod's client, from this interpreter's packages
    except ImportError:
        pytest.skip("the kubernetes Python client is not installed")
    if not os.access(KUBECTL_CURRENT, os.X_OK):
        pytest.skip(f"kubectl not found at {KUBECTL_CURRENT}")
    tmp = tmp_path_factory.mktemp("incluster")
    images = python_image(rootfs, tmp / "image")
    with one_machine_cluster(tmp, nodes=2, images=images) as state:
        c = InCluster(state, tmp / "home")
        for obj in reader_objects():
            c.apply(obj)
        c.k.run("config", "set-context", "--current", f"--namespace={NS}")  # the tests' own
        yield c
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


def test_the_server_advertises_its_lan_address_with_a_certificate_for_it(
    cluster: InCluster,
) -> None:
    c = cluster
    lan = str(ipaddress.IPv4Network(c.state.lan_cidr).network_address + 1)
    host, port = c.advertised()
    assert host == lan
    svc = c.get("service", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == "10.43.0.1"
    assert svc["spec"]["ports"][0]["targetPort"] == port
    (eps,) = c.get(
        "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"
    )["items"]
    assert eps["endpoints"][0]["addresses"] == [lan]
    # reachable from the LAN (not from the machine's namespace), TLS checked for that address
    assert https_get(host, port, "/api", "", c.ca(), c.state.lan_netns) == 401


def test_a_pod_calls_the_api_with_its_token_until_it_is_deleted(cluster: InCluster) -> None:
    c = cluster
    c.apply(client_pod("caller", "node-2"))
    pod = c.running("caller")
    log = c.logs_until("caller", lambda out: "DONE" in out or "Traceback" in out)
    got = dict(ln.split(" ", 1) for ln in log.splitlines() if " " in ln)
    assert got.get("HOST") == "https://10.43.0.1:443", log
    assert got.get("UID") == pod["metadata"]["uid"], log
    assert int(got["PODS"]) >= 1, log
    assert got.get("SECRETS") == "403", log  # RBAC: the reader may not list secrets

    env = c.env("caller")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.43.0.1:443"
    web_ip = c.get("service", "web-x")["spec"]["clusterIP"]
    assert env["WEB_X_SERVICE_HOST"] == web_ip
    assert env["WEB_X_SERVICE_PORT_HTTP"] == "8080"
    assert env["WEB_X_PORT_8080_TCP_ADDR"] == web_ip

    # kubectl in the pod: client-go's rest.InClusterConfig (no kubeconfig there)
    got_uid = c.exec("caller", "kubectl", "get", "pod", "caller", "-o", "jsonpath={.metadata.uid}")
    assert got_uid == pod["metadata"]["uid"]
    denied = c.k.run("exec", "caller", "--", "kubectl", "get", "secrets", check=False)
    assert denied.returncode != 0
    assert 'User "system:serviceaccount:incluster:reader" cannot list resource "secrets"' in (
        denied.stderr
    ), denied.stderr

    token = c.exec("caller", "cat", f"{MOUNT}/token")
    path = f"/api/v1/namespaces/{NS}/pods/caller"
    host, port = c.advertised()
    assert https_get(host, port, path, token, c.ca(), c.state.lan_netns) == 200
    c.k.run("delete", "pod", "caller")
    until("the pod gone", lambda: not c.get("pods")["items"])
    assert https_get(host, port, path, token, c.ca(), c.state.lan_netns) == 401
    local = int(c.state.server_url.rpartition(":")[2])
    assert https_get("127.0.0.1", local, path, token, c.ca()) == 401


def test_without_service_links_only_the_kubernetes_service(cluster: InCluster) -> None:
    c = cluster
    c.apply(client_pod("nolinks", "node-1", enableServiceLinks=False))
    c.running("nolinks")
    log = c.logs_until("nolinks", lambda out: "DONE" in out or "Traceback" in out)
    assert "SECRETS 403" in log, log  # the API reached all the same
    env = c.env("nolinks")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert not any(k.startswith("WEB_X_") for k in env), env
    c.k.run("delete", "pod", "nolinks")
    until("the pod gone", lambda: not c.get("pods")["items"])
