"""What the API server fetches from kubelets, through a real ``corral server`` and ``corral
agent`` (the cluster of test_kubelet.py, its fixture): the ``proxy`` subresources
(``pods/proxy`` and ``services/proxy`` reach a pod's HTTP server through its node's kubelet,
``nodes/proxy`` the kubelet's own API; kubectl of both versions with ``get --raw``, and raw
requests for the other methods, headers and bodies), and ``metrics.k8s.io`` from the
kubelets' resource metrics (``kubectl top``)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration import test_kubelet
from tests.integration.test_kubelet import IMAGE, NODE, Cluster, manifest

pytestmark = pytest.mark.root

cluster = test_kubelet.cluster  # the module's server and agent, as test_kubelet's
both = pytest.mark.parametrize("version", ["1.32", "1.20"])

# A CGI script that prints what it was asked: method, query, headers (HTTP_*), then the body
ECHO_CGI = (
    "#!/bin/sh\n"
    'printf "Content-Type: text/plain\\r\\nX-From-Pod: yes\\r\\n\\r\\n"\n'
    'echo "METHOD=$REQUEST_METHOD"\n'
    'echo "QUERY=$QUERY_STRING"\n'
    'echo "URI=$REQUEST_URI"\n'
    "env | grep ^HTTP_ | sort\n"
    "echo BODY\n"
    'head -c "${CONTENT_LENGTH:-0}"\n'
)


def _apply(cluster: Cluster, *objs: dict[str, object]) -> None:
    k = cluster.kubectl()
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> dict[str, object]:
    """A pod ``pxweb`` serving HTTP on 8080 (declared) with /cgi-bin/echo, and a
    selector-less Service ``pxsvc`` (80 -> 8080, named ``http``) whose Endpoints name the pod;
    the pod as the API has it once it runs."""
    script = (
        "mkdir -p /www/cgi-bin && echo hello-through-proxy > /www/index.html && "
        f"printf '%s' '{ECHO_CGI}' > /www/cgi-bin/echo && chmod +x /www/cgi-bin/echo && "
        "exec httpd -f -p 8080 -h /www"
    )
    container = {
        "name": "http",
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "ports": [{"containerPort": 8080}],
        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
    }
    _apply(
        cluster,
        manifest("pxweb", containers=[container], volumes=[{"name": "www", "emptyDir": {}}]),
    )
    pod = cluster.wait_running("pxweb")
    ip = pod["status"]["podIP"]
    _apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "pxsvc"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "pxsvc"},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": ip,
                            "targetRef": {"kind": "Pod", "namespace": "default", "name": "pxweb"},
                        }
                    ],
                    "ports": [{"name": "http", "port": 8080}],
                }
            ],
        },
    )
    return pod


POD = "/api/v1/namespaces/default/pods"
SVC = "/api/v1/namespaces/default/services"


@both
def test_get_raw_through_pod_service_and_node_proxy(
    cluster: Cluster, web: dict[str, object], version: str
) -> None:
    k = cluster.kubectl(version)
    for path in (
        f"{POD}/pxweb:8080/proxy/",
        f"{POD}/pxweb/proxy/",  # the first declared container port
        f"{POD}/http:pxweb:8080/proxy/index.html",
        f"{SVC}/pxsvc:80/proxy/",  # the service port 80 is the one named "http"
        f"{SVC}/pxsvc:http/proxy/",
        f"{SVC}/http:pxsvc:http/proxy/",
    ):
        p = k.run("get", "--raw", path)
        assert p.stdout == "hello-through-proxy\n", (path, p)
    assert k.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout == "ok"
    pods = json.loads(k.run("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/pods").stdout)
    assert pods["kind"] == "PodList"
    assert "pxweb" in [p["metadata"]["name"] for p in pods["items"]]


@both
def test_kubectl_proxy_to_a_service(cluster: Cluster, web: dict[str, object], version: str) -> None:
    """``kubectl proxy`` (the API on a local port without credentials) then a plain HTTP
    client to the service's proxy path, as a browser would go."""
    proc = cluster.kubectl(version).popen("proxy", "--port=0", "--address=127.0.0.1")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{m[1]}{SVC}/pxsvc:http/proxy/"
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.status == 200 and r.read() == b"hello-through-proxy\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_method_query_headers_and_body_pass_through(
    cluster: Cluster, web: dict[str, object]
) -> None:
    code, headers, body = cluster.server.request(
        "POST",
        f"{POD}/pxweb:8080/proxy/cgi-bin/echo?a=1&b=two%20words",
        body=b"the-body=42",
        headers={"Content-Type": "text/plain", "X-Custom": "kept", "Connection": "close"},
    )
    assert code == 200, body
    text = body.decode()
    assert headers.get("X-From-Pod") == "yes"
    assert "METHOD=POST\n" in text
    assert "QUERY=a=1&b=two%20words\n" in text
    assert "URI=/cgi-bin/echo?a=1&b=two%20words\n" in text
    assert "HTTP_X_CUSTOM=kept\n" in text
    assert text.endswith("BODY\nthe-body=42")
    assert f"HTTP_X_FORWARDED_URI={POD}/pxweb:8080/proxy/cgi-bin/echo" in text
    assert "HTTP_X_FORWARDED_FOR=127.0.0.1\n" in text
    # the caller's credentials stay with the API server (the client certificate is the
    # one it authenticates with: a bearer token beside it is not looked at)
    code, _, body = cluster.server.request(
        "GET",
        f"{POD}/pxweb:8080/proxy/cgi-bin/echo",
        headers={"Authorization": "Bearer not-for-the-pod"},
    )
    assert code == 200, body
    assert "METHOD=GET\n" in body.decode() and "HTTP_AUTHORIZATION" not in body.decode()
    # what the API server tells the kubelet for a webhook's TLS stays with the kubelet
    code, _, body = cluster.server.request(
        "GET",
        f"{POD}/pxweb:8080/proxy/cgi-bin/echo",
        headers={"X-Corral-Verify-Name": "x.y.svc", "X-Corral-Verify-Ca": ""},
    )
    assert code == 200, body
    assert "HTTP_X_CORRAL_VERIFY" not in body.decode(), body
    # the same through the service, with a body larger than one read (busybox's CGI gets
    # the body of a POST only)
    code, _, body = cluster.server.request(
        "POST", f"{SVC}/pxsvc:80/proxy/cgi-bin/echo?via=svc", body=b"x" * 300000
    )
    assert code == 200, body
    text = body.decode()
    assert "METHOD=POST\n" in text and "QUERY=via=svc\n" in text
    assert text.endswith("BODY\n" + "x" * 300000)
    code, _, body = cluster.server.request("PUT", f"{SVC}/pxsvc:80/proxy/cgi-bin/echo")
    assert code == 200 and "METHOD=PUT\n" in body.decode(), body


def test_dot_segments_stay_with_the_pod(cluster: Cluster, web: dict[str, object]) -> None:
    """``..`` in the proxied path goes to the pod as it is: it never climbs out of the
    kubelet's pod proxy to the kubelet's own API (``/pods``, ``/healthz``, ``/exec``)."""
    for tail in ("../../../../../../pods", "%2E%2E/%2e%2e/../../../../../../healthz"):
        code, _, body = cluster.server.request("GET", f"{POD}/pxweb:8080/proxy/{tail}")
        assert b"PodList" not in body and body != b"ok", (tail, code, body)


def test_errors_are_kubes(cluster: Cluster, web: dict[str, object]) -> None:
    srv = cluster.server
    code, body = srv.json("GET", f"{POD}/nope/proxy/")
    assert code == 404 and body["message"] == 'pods "nope" not found', body
    code, body = srv.json("GET", f"{POD}/a:pxweb:8080:9/proxy/")
    assert code == 400 and body["message"] == "invalid pod request 'a:pxweb:8080:9'", body
    code, body = srv.json("GET", f"{POD}/ftp:pxweb:8080/proxy/")
    assert code == 400, body
    code, body = srv.json("GET", f"{POD}/pxweb:8081/proxy/")  # nothing listens there
    assert code == 503 and body["reason"] == "ServiceUnavailable", body
    assert body["message"].startswith("error trying to reach service: "), body
    code, body = srv.json("GET", f"{SVC}/pxsvc:81/proxy/")
    assert code == 503, body
    assert body["message"] == 'no service port 81 found for service "pxsvc"', body
    # no port named: the endpoints' unnamed port, which pxsvc has not
    code, body = srv.json("GET", f"{SVC}/pxsvc/proxy/")
    assert code == 503, body
    assert body["message"] == 'no endpoints available for service "pxsvc"', body
    code, body = srv.json("GET", f"{SVC}/nosvc/proxy/")
    assert code == 404 and body["reason"] == "NotFound", body
    code, body = srv.json("GET", "/api/v1/nodes/no-such-node/proxy/healthz")
    assert code == 404 and body["reason"] == "NotFound", body


def test_discovery_lists_the_proxy_subresources(cluster: Cluster) -> None:
    code, body = cluster.server.json("GET", "/api/v1")
    assert code == 200
    subs = {r["name"]: r for r in body["resources"]}
    for name, kind in (
        ("pods/proxy", "PodProxyOptions"),
        ("services/proxy", "ServiceProxyOptions"),
        ("nodes/proxy", "NodeProxyOptions"),
    ):
        assert subs[name]["kind"] == kind
        assert sorted(subs[name]["verbs"]) == ["create", "delete", "get", "patch", "update"]


# ============================================================================= kubectl top

BUSY = "trap 'exit 0' TERM; while :; do :; done"  # CPU time for sure within any window


def _cpu_nanocores(q: str) -> int:
    assert q.endswith("n"), q
    return int(q[:-1])


def _mem_bytes(q: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(q[:-2]) * units[q[-2:]] if q[-2:] in units else int(q)


@pytest.fixture(scope="module")
def busy(cluster: Cluster) -> Iterator[str]:
    """A pod ``pxbusy`` (label app=busy): one container spinning, one asleep."""
    containers = [
        {"name": "spin", "image": IMAGE, "command": ["sh", "-c", BUSY]},
        {
            "name": "idle",
            "image": IMAGE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        },
    ]
    pod = manifest("pxbusy", containers=containers)
    pod["metadata"]["labels"] = {"app": "busy"}
    _apply(cluster, pod)
    cluster.wait_running("pxbusy")
    yield "pxbusy"
    cluster.kubectl().run("delete", "pod", "pxbusy", "--wait=false", check=False)


def test_metrics_api_has_the_nodes_and_pods_usage(cluster: Cluster, busy: str) -> None:
    srv = cluster.server
    code, body = srv.json("GET", "/apis/metrics.k8s.io/v1beta1")
    assert code == 200, body
    assert {r["name"]: r["kind"] for r in body["resources"]} == {
        "nodes": "NodeMetrics",
        "pods": "PodMetrics",
    }
    code, node = srv.json("GET", f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE}")
    assert code == 200, node
    assert node["kind"] == "NodeMetrics" and node["metadata"]["name"] == NODE
    assert _cpu_nanocores(node["usage"]["cpu"]) > 0
    assert _mem_bytes(node["usage"]["memory"]) > 0
    assert node["window"].endswith("s")
    code, pod = srv.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/pxbusy")
    assert code == 200, pod
    usage = {c["name"]: c["usage"] for c in pod["containers"]}
    assert set(usage) == {"spin", "idle"}, pod
    assert _cpu_nanocores(usage["spin"]["cpu"]) > 0
    assert _mem_bytes(usage["spin"]["memory"]) > 0
    assert pod["metadata"]["labels"] == {"app": "busy"}
    code, listed = srv.json(
        "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dbusy"
    )
    assert code == 200 and listed["kind"] == "PodMetricsList", listed
    assert [p["metadata"]["name"] for p in listed["items"]] == ["pxbusy"]
    code, missing = srv.json("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope")
    assert code == 404, missing
    assert missing["message"] == 'podmetrics.metrics.k8s.io "default/nope" not found', missing


@both
def test_kubectl_top(cluster: Cluster, busy: str, version: str) -> None:
    k = cluster.kubectl(version)
    rows = [ln.split() for ln in k.run("top", "node").stdout.splitlines()]
    assert rows[0][:3] == ["NAME", "CPU(cores)", "CPU%"] or rows[0][:2] == ["NAME", "CPU(cores)"]
    assert [r[0] for r in rows[1:]] == [NODE], rows
    rows = [ln.split() for ln in k.run("top", "pod", "-l", "app=busy").stdout.splitlines()]
    assert rows[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"], rows
    assert rows[1][0] == "pxbusy" and rows[1][1].endswith("m") and int(rows[1][1][:-1]) > 0
    rows = [ln.split() for ln in k.run("top", "pod", "pxbusy", "--containers").stdout.splitlines()]
    assert sorted(r[1] for r in rows[1:]) == ["idle", "spin"], rows
