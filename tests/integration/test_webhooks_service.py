"""An admission webhook referred to by its Service (clientConfig.service) on a real
``corral server`` and ``corral agent`` (the cluster of test_kubelet.py): the API server, on
the host, has no route to the pod; it reaches the Service's endpoint through the kubelet of
the pod's node, which checks the pod's certificate for ``<service>.<namespace>.svc`` against
the configuration's caBundle, as kube-apiserver does. The webhook server is this test's,
listening in the pod's network namespace (a socket made there)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.network.netns import in_netns
from tests.integration import test_kubelet
from tests.integration.test_apis_webhooks import VWC, Config, Hooks, _cert, _configmap, _pem
from tests.integration.test_kubelet import Cluster, manifest
from tests.kubeserver import temp_namespace

pytestmark = [pytest.mark.root, pytest.mark.network]

cluster = test_kubelet.cluster  # the module's server and agent, as test_kubelet's
PORT = 8443


@pytest.fixture(scope="module")
def pod_hooks(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    """A pod ``whpod`` (it sleeps) whose network namespace the webhook server listens in, on
    PORT; a selector-less Service ``whsvc`` (443 -> PORT) whose Endpoints name the pod."""
    k = cluster.kubectl()
    k.run("apply", "-f", "-", input=json.dumps(manifest("whpod")))
    pod = cluster.wait_running("whpod")
    st = next(s for s in cluster.runtime_pods() if s.name == "whpod")
    pid = next(c.pid for c in st.all_containers if c.pid)

    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", PORT))
        s.listen(16)
        return s

    sock = in_netns(f"/proc/{pid}/ns/net", listen)
    hooks = Hooks(tmp_path_factory.mktemp("pod-webhook"), sock, dns=("whsvc.default.svc",))
    ip = pod["status"]["podIP"]
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "whsvc"},
            "spec": {"ports": [{"port": 443, "targetPort": PORT, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "whsvc"},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": ip,
                            "targetRef": {"kind": "Pod", "name": "whpod", "namespace": "default"},
                        }  # fmt: skip
                    ],
                    "ports": [{"port": PORT, "protocol": "TCP"}],
                }
            ],
        },
    ]
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    try:
        yield hooks
    finally:
        hooks.close()
        k.run("delete", "service,endpoints", "whsvc", "--ignore-not-found")
        k.run("delete", "pod", "whpod", "--wait=false", "--ignore-not-found")


def _service_hook(name: str, path: str, ca: str, ns: str, **over: Any) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": {
            "service": {"namespace": "default", "name": "whsvc", "path": path},
            "caBundle": ca,
        },
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
    }
    hook.update(over)
    return hook


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_service_webhook_through_the_kubelet(
    cluster: Cluster, pod_hooks: Hooks, version: str
) -> None:
    server = cluster.server
    with temp_namespace(server, "whs") as ns:
        hook = _service_hook("svc-deny.corral.test", "/deny", pod_hooks.ca_bundle, ns)
        with Config(server, VWC, hook):
            before = len(pod_hooks.reviews)
            p = cluster.kubectl(version).run("create", "configmap", "x", "-n", ns, check=False)
            assert p.returncode != 0
            assert (
                'admission webhook "svc-deny.corral.test" denied the request: configmaps are'
                " refused here" in p.stderr
            ), p.stderr
            assert pod_hooks.reviews[before][0] == "/deny?timeout=10s"
        ok = _service_hook("svc-ok.corral.test", "/ok", pod_hooks.ca_bundle, ns)
        with Config(server, VWC, ok):
            code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("y"))
            assert code == 201, out


def test_service_webhook_certificate_checked(cluster: Cluster, pod_hooks: Hooks) -> None:
    """Another CA's bundle: the pod's certificate does not check (Fail: refused)."""
    server = cluster.server
    _, other = _cert("another-ca", ca=True)
    wrong = base64.b64encode(_pem(other)).decode()
    with temp_namespace(server, "whs") as ns:
        hook = _service_hook("svc-ca.corral.test", "/ok", wrong, ns)
        with Config(server, VWC, hook):
            code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("z"))
            assert code == 500, out
            assert out["message"].startswith(
                'Internal error occurred: failed calling webhook "svc-ca.corral.test": failed to'
                ' call webhook: Post "https://whsvc.default.svc:443/ok?timeout=10s": tls: failed'
                " to verify certificate: x509: "
            ), out["message"]


def test_service_without_endpoints(cluster: Cluster, pod_hooks: Hooks) -> None:
    server = cluster.server
    with temp_namespace(server, "whs") as ns:
        hook = _service_hook("svc-none.corral.test", "/ok", pod_hooks.ca_bundle, ns)
        hook["clientConfig"]["service"]["name"] = "nosuch"
        with Config(server, VWC, hook):
            code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("n"))
            assert code == 500, out
            assert 'failed calling webhook "svc-none.corral.test"' in out["message"]
            assert "https://nosuch.default.svc:443/ok?timeout=10s" in out["message"]


@pytest.mark.parametrize("version", ["1.32", "1.20"])
def test_connect_sent_for_exec(cluster: Cluster, pod_hooks: Hooks, version: str) -> None:
    """``kubectl exec`` is a CONNECT of pods/exec, its PodExecOptions the object."""
    hook = _service_hook("exec.corral.test", "/deny", pod_hooks.ca_bundle, "default")
    hook["rules"] = [
        {
            "operations": ["CONNECT"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods/exec"],
        }
    ]
    k = cluster.kubectl(version)
    with Config(cluster.server, VWC, hook):
        before = len(pod_hooks.reviews)
        p = k.run("exec", "whpod", "--", "echo", "hi", check=False)
        assert p.returncode != 0 and "hi" not in p.stdout
        assert 'admission webhook "exec.corral.test" denied the request' in p.stderr, p.stderr
        req = pod_hooks.reviews[before][1]["request"]
        assert (req["operation"], req["subResource"], req["name"]) == ("CONNECT", "exec", "whpod")
        assert req["kind"] == {"group": "", "version": "v1", "kind": "PodExecOptions"}
        assert req["object"]["command"] == ["echo", "hi"] and req["object"]["container"] == "app"
    assert k.run("exec", "whpod", "--", "echo", "hi").stdout == "hi\n"


def test_connect_sent_for_port_forward(cluster: Cluster, pod_hooks: Hooks) -> None:
    hook = _service_hook("pf.corral.test", "/deny", pod_hooks.ca_bundle, "default")
    hook["rules"] = [
        {
            "operations": ["CONNECT"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods/portforward"],
        }
    ]
    with Config(cluster.server, VWC, hook):
        before = len(pod_hooks.reviews)
        # refused at the upgrade: kubectl ends at once (it would forward until killed)
        p = cluster.kubectl().run("port-forward", "whpod", ":80", check=False, timeout=60)
        assert p.returncode != 0
        assert 'admission webhook "pf.corral.test" denied the request' in p.stderr, p.stderr
        req = pod_hooks.reviews[before][1]["request"]
        assert (req["operation"], req["subResource"]) == ("CONNECT", "portforward")
        assert req["object"]["kind"] == "PodPortForwardOptions"
