"""ResourceQuota on a real ``corral server`` with its controllers (no scheduler: pods stay
Pending, and count): the controller fills status.hard and status.used; the admission refuses
what goes over with kube's words (exceeded quota, must specify, status unknown); concurrent
creates for a quota's last room: exactly one passes (compare-and-swap on the quota); a pod
that finished no longer counts; kubectl's table of quotas (1.32 and 1.20)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_cluster import until
from tests.kubeserver import (
    NO_SCHEDULER,
    Kubectl,
    Server,
    running_server,
)

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("apis-quota"), NO_SCHEDULER) as srv:
        yield srv


def _ns(server: Server, name: str) -> str:
    code, body = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code == 201, body
    return name


def _quota(server: Server, ns: str, name: str, hard: dict[str, str], **spec: Any) -> dict:
    body = {"metadata": {"name": name}, "spec": {"hard": hard, **spec}}
    code, made = server.json("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body)
    assert code == 201, made

    def counted() -> dict | None:
        _, q = server.json("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{name}")
        status = q.get("status") or {}
        return q if set(status.get("hard") or {}) == set(hard) and status.get("used") else None

    return until(f"quota {name} counted", counted)


def _pod(
    name: str,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    **spec: Any,
) -> dict:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": resources}],
            **spec,
        },
    }


def _used(server: Server, ns: str, name: str) -> dict[str, str]:
    _, q = server.json("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{name}")
    return (q.get("status") or {}).get("used") or {}


def test_compute_quota(server: Server) -> None:
    ns = _ns(server, "quota-compute")
    pods = f"/api/v1/namespaces/{ns}/pods"
    _quota(server, ns, "q", {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"})
    code, body = server.json("POST", pods, _pod("p1", {"cpu": "500m"}, {"memory": "512Mi"}))
    assert code == 201, body
    assert _used(server, ns, "q") == {"pods": "1", "requests.cpu": "500m", "limits.memory": "512Mi"}
    code, body = server.json("POST", pods, _pod("p2", {"cpu": "100m"}))
    assert code == 403, body
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods "p2" is forbidden: failed quota: q: must specify limits.memory for: c'
    )
    code, body = server.json("POST", pods, _pod("p2", {"cpu": "600m"}, {"memory": "100Mi"}))
    assert code == 403, body
    assert body["message"] == (
        'pods "p2" is forbidden: exceeded quota: q, requested: requests.cpu=600m, used:'
        " requests.cpu=500m, limited: requests.cpu=1"
    )
    code, body = server.json("POST", pods, _pod("p2", {"cpu": "500m"}, {"memory": "512Mi"}))
    assert code == 201, body
    assert _used(server, ns, "q") == {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}
    code, body = server.json("POST", pods, _pod("p3", {"cpu": "0"}, {"memory": "1"}))
    assert code == 403, body
    assert body["message"] == (  # every resource it goes over, sorted
        'pods "p3" is forbidden: exceeded quota: q, requested: limits.memory=1,pods=1, used:'
        " limits.memory=1Gi,pods=2, limited: limits.memory=1Gi,pods=2"
    )
    # a pod that finished no longer counts: the controller recounts
    code, _, data = server.request(
        "PATCH",
        f"{pods}/p1/status",
        json.dumps({"status": {"phase": "Succeeded"}}).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200, data
    until("p1 no longer counted", lambda: _used(server, ns, "q").get("pods") == "1")
    assert _used(server, ns, "q")["requests.cpu"] == "500m"
    code, body = server.json("POST", pods, _pod("p3", {"cpu": "100m"}, {"memory": "1Mi"}))
    assert code == 201, body


def test_object_counts(server: Server) -> None:
    ns = _ns(server, "quota-counts")
    _quota(server, ns, "q", {"services": "1", "count/deployments.apps": "0", "secrets": "5"})
    svc = {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}
    assert server.json("POST", f"/api/v1/namespaces/{ns}/services", svc)[0] == 201
    code, body = server.json(
        "POST", f"/api/v1/namespaces/{ns}/services", {**svc, "metadata": {"name": "b"}}
    )
    assert code == 403, body
    assert body["message"] == (
        'services "b" is forbidden: exceeded quota: q, requested: services=1, used:'
        " services=1, limited: services=1"
    )
    # an update that makes the Service a NodePort weighs the node ports it adds
    _quota(server, ns, "ports", {"services.nodeports": "0"})
    code, _, data = server.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/services/a",
        json.dumps({"spec": {"type": "NodePort"}}).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 403, data
    assert json.loads(data)["message"] == (
        'services "a" is forbidden: exceeded quota: ports, requested: services.nodeports=1,'
        " used: services.nodeports=0, limited: services.nodeports=0"
    )
    deploy = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    code, body = server.json("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deploy)
    assert code == 403, body
    assert body["message"] == (
        'deployments.apps "d" is forbidden: exceeded quota: q, requested:'
        " count/deployments.apps=1, used: count/deployments.apps=0, limited:"
        " count/deployments.apps=0"
    )


def test_hpas_through_autoscaling_v1_are_counted(kubectl: Kubectl, server: Server) -> None:
    """An HPA made through autoscaling/v1 (stored as v2; kubectl autoscale, 1.32 sending it
    as protobuf) is charged and counted like one made through v2; a create refused for its
    name gives its charge back."""
    ns = _ns(server, f"quota-hpa-{kubectl.version.replace('.', '')}")
    hpas = "count/horizontalpodautoscalers.autoscaling"
    _quota(server, ns, "q", {hpas: "2"})
    deploy = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    assert server.json("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deploy)[0] == 201
    kubectl.run("autoscale", "deployment", "web", "--max=3", "-n", ns)
    assert _used(server, ns, "q") == {hpas: "1"}
    v1 = f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers"
    hpa = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3,
        },
    }
    code, body = server.json("POST", v1, hpa)
    assert code == 409, body  # the name is taken: nothing charged
    assert _used(server, ns, "q") == {hpas: "1"}
    code, body = server.json("POST", v1, {**hpa, "metadata": {"name": "two"}})
    assert code == 201, body
    code, body = server.json("POST", v1, {**hpa, "metadata": {"name": "three"}})
    assert code == 403, body
    assert body["message"] == (
        'horizontalpodautoscalers.autoscaling "three" is forbidden: exceeded quota: q,'
        f" requested: {hpas}=1, used: {hpas}=2, limited: {hpas}=2"
    )


def test_status_unknown_until_counted(server: Server) -> None:
    """A quota the controller has not counted yet refuses what it covers (kube's words)."""
    ns = _ns(server, "quota-unknown")
    body = {"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "5"}}}
    # made and used at once: the controller may not have counted it yet; either answer is
    # kube's, and the same create passes once it has
    assert server.json("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body)[0] == 201
    cm = {"metadata": {"name": "x"}, "data": {}}
    code, got = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", cm)
    if code == 403:
        assert got["message"] == (
            'configmaps "x" is forbidden: status unknown for quota: q, resources: configmaps'
        )
    until(
        "configmap created",
        lambda: server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", cm)[0] in (201, 409),
    )


def test_concurrent_creates_for_the_last_room(server: Server) -> None:
    ns = _ns(server, "quota-race")
    _quota(server, ns, "q", {"pods": "1"})
    codes: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        code, _ = server.json("POST", f"/api/v1/namespaces/{ns}/pods", _pod(f"r{i}"))
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [201] + [403] * 7, codes
    _, lst = server.json("GET", f"/api/v1/namespaces/{ns}/pods")
    assert len(lst["items"]) == 1
    assert _used(server, ns, "q") == {"pods": "1"}


def test_validation(server: Server) -> None:
    ns = _ns(server, "quota-invalid")
    for spec, message in [
        (
            {"hard": {"pods": "-1"}},
            'spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0',
        ),
        ({"hard": {"pods": "1.5"}}, 'spec.hard[pods]: Invalid value: "1500m": must be an integer'),
        (
            {"hard": {"foo": "1"}},
            'spec.hard[foo]: Invalid value: "foo": must be a standard resource for quota',
        ),
        (
            {"hard": {"pods": "1"}, "scopes": ["Bogus"]},
            'spec.scopes: Invalid value: "Bogus": unsupported scope',
        ),
        (
            {"hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]},
            "spec.scopes: Invalid value:"
            ' []core.ResourceQuotaScope{"Terminating", "NotTerminating"}: conflicting scopes',
        ),
        (
            {"hard": {"services": "1"}, "scopes": ["BestEffort"]},
            'spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort"}: unsupported'
            " scope applied to resource",
        ),
    ]:
        code, body = server.json(
            "POST",
            f"/api/v1/namespaces/{ns}/resourcequotas",
            {"metadata": {"name": "q"}, "spec": spec},
        )
        assert code == 422, body
        assert body["message"] == f'ResourceQuota "q" is invalid: {message}', body


def test_scopes(server: Server) -> None:
    ns = _ns(server, "quota-scopes")
    _quota(server, ns, "best-effort", {"pods": "1"}, scopes=["BestEffort"])
    pods = f"/api/v1/namespaces/{ns}/pods"
    assert server.json("POST", pods, _pod("be1"))[0] == 201
    code, body = server.json("POST", pods, _pod("be2"))
    assert code == 403 and "exceeded quota: best-effort" in body["message"], body
    assert server.json("POST", pods, _pod("burst", {"cpu": "10m"}))[0] == 201  # not BestEffort


def test_kubectl_table(kubectl: Kubectl, server: Server) -> None:
    ns = f"quota-kubectl-{kubectl.version.replace('.', '')}"
    _ns(server, ns)
    _quota(server, ns, "q", {"pods": "3", "limits.cpu": "2", "requests.memory": "1Gi"})
    lines = kubectl.run("get", "quota", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"], lines
    assert "pods: 0/3, requests.memory: 0/1Gi" in lines[1], lines
    assert lines[1].rstrip().endswith("limits.cpu: 0/2"), lines
    out = kubectl.run("describe", "quota", "q", "-n", ns).stdout
    assert "pods" in out and "Used" in out and "Hard" in out
    p = kubectl.run("run", "x", "-n", ns, "--image=busybox", "--restart=Never", check=False)
    assert p.returncode == 1
    assert 'pods "x" is forbidden: failed quota: q: must specify limits.cpu for: x' in p.stderr
    # kubectl 1.32 sends this one as protobuf
    out = kubectl.run("create", "quota", "made", "-n", ns, "--hard=cpu=1,pods=2").stdout
    assert out.strip() == "resourcequota/made created"
    got = json.loads(kubectl.run("get", "quota", "made", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["hard"] == {"cpu": "1", "pods": "2"}
    rows = kubectl.run("api-resources", "--api-group=").stdout
    assert any(r.split()[:2] == ["resourcequotas", "quota"] for r in rows.splitlines())
