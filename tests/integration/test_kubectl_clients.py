"""Commands a Kubernetes user runs, as kubectl 1.32 and 1.20 print them against kube-apiserver
1.32, on a real ``corral server``: what the wider matrix of ``get``/``describe``/``apply``
found different from a real cluster (what is already covered lives in test_apiserver*.py,
test_kubectl_tables.py and the cluster e2e modules)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_cluster import until
from tests.kubeserver import (
    KUBECTL_VERSIONS,
    NO_SCHEDULER,
    Kubectl,
    Server,
    api_only_server,
    kubectl_for,
    running_server,
)

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("kubectl-clients")) as srv:
        yield srv


def _namespace(kubectl: Kubectl, prefix: str) -> str:
    ns = f"{prefix}-v{kubectl.version.replace('.', '')}"
    kubectl.run("create", "namespace", ns)
    return ns


def test_describe_service_with_an_unnamed_port(kubectl: Kubectl) -> None:
    """kube-apiserver names an EndpointSlice's unnamed port "" (SetDefaults_EndpointPort):
    kubectl 1.32's ``describe service`` dereferences that name for each slice port and
    panicked (nil pointer, exit 2) on a slice whose port had none."""
    ns = _namespace(kubectl, "svc-unnamed")
    objs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.42.0.7"]}],
        },
    ]
    kubectl.run(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
    )
    p = kubectl.run("describe", "service", "web", "-n", ns, check=False)
    assert p.returncode == 0, p.stderr
    assert "panic" not in p.stderr
    lines = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    if kubectl.version == "1.32":  # from the slices; 1.20 reads the Endpoints (none here)
        assert lines["Endpoints"].strip() == "10.42.0.7:8080", p.stdout
    else:
        assert lines["Endpoints"].strip() == "<none>", p.stdout
    got = json.loads(kubectl.run("get", "endpointslice", "web-x1", "-n", ns, "-o", "json").stdout)
    assert got["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]


@pytest.fixture(scope="module")
def pyapi(server: Server) -> Any:
    """The ``kubernetes`` Python client on ``server``'s kubeconfig."""
    from kubernetes import config

    return config.new_client_from_config(str(server.kubeconfig))


def test_python_client_discovery(pyapi: Any) -> None:
    """The Python client's discovery calls ask for /api/, /apis/, /apis/<group>/ and
    /api/v1/, /apis/<group>/<version>/ (a trailing slash each): kube-apiserver answers them
    as without the slash; they were 404."""
    from kubernetes import client

    assert client.CoreApi(pyapi).get_api_versions().versions == ["v1"]
    groups = {g.name: g for g in client.ApisApi(pyapi).get_api_versions().groups}
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    assert client.AppsApi(pyapi).get_api_group().name == "apps"
    pods = next(
        r for r in client.CoreV1Api(pyapi).get_api_resources().resources if r.name == "pods"
    )
    assert pods.kind == "Pod" and pods.namespaced and "po" in pods.short_names
    deploy = {r.name for r in client.AppsV1Api(pyapi).get_api_resources().resources}
    assert {"deployments", "deployments/scale"} <= deploy


def test_delete_answers_a_status_or_the_object(
    server: Server, pyapi: Any, kubectl: Kubectl
) -> None:
    """kube-apiserver answers a DELETE with a Success Status naming what went (its details'
    kind is the resource, its uid the object's), except for the kinds it returns the deleted
    object of (pods, services, serviceaccounts, namespaces) and for an object still there
    (finalizers); we answered with the object each time. The Python client (37) gives the body
    as a dict (for those kinds, the typed object: its OpenAPI says which); kubectl's --wait
    takes the uid from either."""
    from kubernetes import client

    ns = _namespace(kubectl, "delete-status")
    core, apps = client.CoreV1Api(pyapi), client.AppsV1Api(pyapi)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    assert core.delete_namespaced_config_map("cm", ns) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "cm", "kind": "configmaps", "uid": cm.metadata.uid},
    }
    sa = core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    got = core.delete_namespaced_service_account("robot", ns)  # the object: a V1ServiceAccount
    assert (got.kind, got.metadata.uid) == ("ServiceAccount", sa.metadata.uid)
    body = {
        "metadata": {"name": "d", "finalizers": ["example.com/hold"]},
        "spec": {
            "selector": {"matchLabels": {"a": "d"}},
            "template": {
                "metadata": {"labels": {"a": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    apps.create_namespaced_deployment(ns, body)
    held = apps.delete_namespaced_deployment("d", ns)
    assert held["kind"] == "Deployment" and held["metadata"]["deletionTimestamp"], held
    apps.patch_namespaced_deployment("d", ns, [{"op": "remove", "path": "/metadata/finalizers"}])
    del body["metadata"]["finalizers"]
    uid = apps.create_namespaced_deployment(ns, body).metadata.uid
    got = apps.delete_namespaced_deployment("d", ns)
    assert got["details"] == {"name": "d", "group": "apps", "kind": "deployments", "uid": uid}
    kubectl.run("create", "configmap", "w", "-n", ns)
    p = kubectl.run("delete", "configmap", "w", "-n", ns, "--wait")
    assert p.stdout == 'configmap "w" deleted\n', p.stdout + p.stderr


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with its controllers (no scheduler, no node: pods stay Pending)."""
    with running_server(tmp_path_factory.mktemp("kubectl-clients-ctl"), NO_SCHEDULER) as srv:
        yield srv


def _events_table(text: str) -> list[list[str]]:
    """The rows under ``Events:`` in kubectl describe's output (Type, Reason, Age, From,
    Message), without the header and its underline."""
    rows = text.split("\nEvents:", 1)[1].splitlines()[3:]
    return [r.split(None, 4) for r in rows if r.strip()]


@pytest.mark.parametrize("version", list(KUBECTL_VERSIONS))
def test_controller_events_in_describe(
    controlled: Server, tmp_path_factory: pytest.TempPathFactory, version: str
) -> None:
    """``kubectl describe deployment`` lists the deployment controller's ScalingReplicaSet
    events, ``describe rs`` the replicaset controller's SuccessfulCreate per pod, kubectl
    1.32's ``events --for`` the same, ``describe job`` the job controller's: our controllers
    recorded none ("Events: <none>")."""
    k = kubectl_for(version, controlled, tmp_path_factory)
    ns = _namespace(k, "events")
    k.run("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2", "-n", ns)

    def described() -> list[list[str]] | None:
        rows = _events_table(k.run("describe", "deployment", "web", "-n", ns).stdout)
        return rows or None

    rows = until("the deployment's events", described)
    rs = k.run("get", "rs", "-n", ns, "-o", "jsonpath={.items[0].metadata.name}").stdout
    assert [r[:2] + r[3:] for r in rows] == [
        [
            "Normal",
            "ScalingReplicaSet",
            "deployment-controller",
            f"Scaled up replica set {rs} to 2 from 0",
        ]
    ], rows
    pods = k.run("get", "pods", "-n", ns, "-o", "name").stdout.replace("pod/", "").split()

    def created() -> list[list[str]] | None:
        rows = _events_table(k.run("describe", "rs", rs, "-n", ns).stdout)
        return rows if len(rows) == 2 else None

    rows = until("the replica set's events", created)
    assert sorted(r[:2] + r[3:] for r in rows) == [
        ["Normal", "SuccessfulCreate", "replicaset-controller", f"Created pod: {p}"]
        for p in sorted(pods)
    ], rows
    if version == "1.32":
        out = k.run("events", "--for", "deployment/web", "-n", ns).stdout
        assert "ScalingReplicaSet" in out and f"Scaled up replica set {rs}" in out, out
    k.run("create", "job", "once", "--image=busybox", "-n", ns, "--", "true")

    def job_events() -> list[list[str]] | None:
        rows = _events_table(k.run("describe", "job", "once", "-n", ns).stdout)
        return rows or None

    rows = until("the job's events", job_events)
    pod = k.run("get", "pods", "-n", ns, "-l", "job-name=once", "-o", "name").stdout.strip()
    assert [r[:2] + r[3:] for r in rows] == [
        ["Normal", "SuccessfulCreate", "job-controller", f"Created pod: {pod[4:]}"]
    ], rows


def test_health_endpoints_verbose(kubectl: Kubectl) -> None:
    """``kubectl get --raw '/readyz?verbose'``: one line per check and "readyz check passed",
    as kube-apiserver prints them (we printed "ok"); one check by its path; an excluded one;
    an unknown one is 404."""
    out = kubectl.run("get", "--raw", "/readyz?verbose").stdout.splitlines()
    assert out[0] == "[+]ping ok" and out[-1] == "readyz check passed", out
    assert {"[+]etcd ok", "[+]etcd-readiness ok", "[+]shutdown ok"} <= set(out), out
    out = kubectl.run("get", "--raw", "/livez?verbose&exclude=etcd").stdout.splitlines()
    assert out == ["[+]ping ok", "[+]log ok", "[+]etcd excluded: ok", "livez check passed"]
    assert kubectl.run("get", "--raw", "/healthz").stdout == "ok"
    assert kubectl.run("get", "--raw", "/livez/etcd").stdout == "ok"
    p = kubectl.run("get", "--raw", "/readyz/nosuch", check=False)
    assert p.returncode == 1 and "(NotFound)" in p.stderr, p.stderr


def test_debug_adds_an_ephemeral_container(server: Server, kubectl: Kubectl) -> None:
    """kubectl 1.32's debug PATCHes pods/ephemeralcontainers (strategic merge): the pod gets
    the container (no node runs it here: tests/integration/test_kubectl_debug.py does).
    kube-apiserver's 404 for a path it lacks carries ``"details":{}``; kubectl 1.32's debug
    reads details.name from it to say ephemeral containers are disabled (it panicked on a
    404 without it, when this subresource was not served)."""
    code, _, body = server.request("GET", "/api/v1/nosuch")
    assert code == 404 and json.loads(body)["details"] == {}, body
    if kubectl.version != "1.32":
        return  # 1.20's debug is "alpha debug": the older form (test_kubectl_debug.py)
    ns = _namespace(kubectl, "debug")
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    code, _ = server.json("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    assert code == 201
    p = kubectl.run("debug", "p", "-n", ns, "--image=busybox", "--profile=general", "-c", "d")
    assert "panic" not in p.stderr, p.stderr
    code, got = server.json("GET", f"/api/v1/namespaces/{ns}/pods/p/ephemeralcontainers")
    assert code == 200 and got["kind"] == "Pod", got
    (ec,) = got["spec"]["ephemeralContainers"]
    assert (ec["name"], ec["image"]) == ("d", "busybox"), ec
    assert ec["securityContext"]["capabilities"]["add"] == ["SYS_PTRACE"]  # --profile=general


def test_autoscale_makes_an_hpa_served_in_both_versions(server: Server, kubectl: Kubectl) -> None:
    """``kubectl autoscale`` posts autoscaling/v1 (protobuf from 1.32): stored as v2 with the
    CPU target as a Resource metric; each version reads and patches the same object, v2's
    other metrics riding in v1's annotation, as kube converts them."""
    ns = _namespace(kubectl, "hpa")
    kubectl.run("create", "deployment", "web", "--image=busybox", "-n", ns)
    out = kubectl.run("autoscale", "deployment", "web", "--max=4", "--cpu-percent=60", "-n", ns)
    assert "horizontalpodautoscaler.autoscaling/web autoscaled" in out.stdout, out
    base = f"/namespaces/{ns}/horizontalpodautoscalers"
    code, v2 = server.json("GET", f"/apis/autoscaling/v2{base}/web")
    assert code == 200 and v2["apiVersion"] == "autoscaling/v2", v2
    assert v2["spec"]["minReplicas"] == 1 and v2["spec"]["maxReplicas"] == 4
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]  # fmt: skip
    code, v1 = server.json("GET", f"/apis/autoscaling/v1{base}/web")
    assert code == 200 and v1["spec"]["targetCPUUtilizationPercentage"] == 60, v1
    code, patched = server.json(
        "PATCH",
        f"/apis/autoscaling/v1{base}/web",
        {"spec": {"targetCPUUtilizationPercentage": 75}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200 and patched["spec"]["targetCPUUtilizationPercentage"] == 75, patched
    v2 = server.json("GET", f"/apis/autoscaling/v2{base}/web")[1]
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 75
    memory = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "100Mi"}}}  # fmt: skip
    v2["spec"]["metrics"].append(memory)
    code, body = server.json("PUT", f"/apis/autoscaling/v2{base}/web", v2)
    assert code == 200, body
    v1 = server.json("GET", f"/apis/autoscaling/v1{base}/web")[1]
    assert json.loads(v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}
    ]
    listed = server.json("GET", f"/apis/autoscaling/v1{base}")[1]
    assert [i["apiVersion"] for i in listed["items"]] == ["autoscaling/v1"], listed
    row = kubectl.run("get", "hpa", "web", "-n", ns, "--no-headers").stdout.split()
    assert row[:3] == ["web", "Deployment/web", "cpu:"] and row[3] == "<unknown>/75%,", row
    kubectl.run("delete", "namespace", ns, "--wait=false")


def test_apply_prune_without_an_allowlist(kubectl: Kubectl) -> None:
    """``kubectl apply --prune -l`` with kubectl's default list of kinds to prune (it walks
    PersistentVolumes, PersistentVolumeClaims and Ingresses too: each must be served)."""
    if kubectl.version == "1.20":
        pytest.skip("kubectl 1.20's list has batch/v1beta1 CronJob, which no 1.25+ API serves")
    ns = _namespace(kubectl, "prune")

    def items(*names: str) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": n, "namespace": ns, "labels": {"app": "pruned"}},
             "data": {"k": n}} for n in names
        ]})  # fmt: skip

    kubectl.run("apply", "-n", ns, "-l", "app=pruned", "--prune", "-f", "-", input=items("a", "b"))
    out = kubectl.run("apply", "-n", ns, "-l", "app=pruned", "--prune", "-f", "-", input=items("a"))
    assert "configmap/b pruned" in out.stdout, out
    left = kubectl.run("get", "configmaps", "-n", ns, "-l", "app=pruned", "-o", "name").stdout
    assert left.split() == ["configmap/a"], left
    kubectl.run("delete", "namespace", ns, "--wait=false")
