"""LimitRange on a real ``corral server``: containers get its defaults (and the pod kube's
annotation), a pod over its max or under its min is refused with kube's words, LimitRange
validation and kubectl's table (1.32 and 1.20); with a quota, the defaults are what counts."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
    with running_server(tmp_path_factory.mktemp("apis-limits"), NO_SCHEDULER) as srv:
        yield srv


RANGE = {
    "apiVersion": "v1",
    "kind": "LimitRange",
    "metadata": {"name": "lr"},
    "spec": {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                "max": {"cpu": "1"},
                "min": {"cpu": "50m"},
            }
        ]
    },
}


def test_defaults_and_refusals(kubectl: Kubectl, server: Server) -> None:
    ns = f"limits-v{kubectl.version.replace('.', '')}"
    kubectl.run("create", "namespace", ns)
    kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(RANGE))
    lines = kubectl.run("get", "limitranges", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "AT"]
    assert lines[1].split()[0] == "lr"
    kubectl.run("describe", "limits", "lr", "-n", ns)
    kubectl.run("run", "web", "-n", ns, "--image=busybox", "--restart=Never")
    pod = json.loads(kubectl.run("get", "pod", "web", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    }
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for"
        " container web"
    )
    assert pod["status"]["qosClass"] == "Burstable"
    big = {"name": "big", "image": "busybox", "resources": {"limits": {"cpu": "2"}}}
    p = kubectl.run(
        "run", "big", "-n", ns, "--image=busybox", "--restart=Never", "--overrides",
        json.dumps({"spec": {"containers": [big]}}), check=False,
    )  # fmt: skip
    assert p.returncode == 1
    assert (
        'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in p.stderr
    ), p.stderr
    small = {
        "metadata": {"name": "small"},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}
            ]
        },
    }
    code, body = server.json("POST", f"/api/v1/namespaces/{ns}/pods", small)
    assert code == 403, body
    assert body["message"] == (
        'pods "small" is forbidden: minimum cpu usage per Container is 50m, but request is 10m'
    )


def test_validation(server: Server) -> None:
    code, _ = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": "limits-bad"}})
    bad = json.loads(json.dumps(RANGE))
    bad["spec"]["limits"][0]["min"] = {"cpu": "2"}
    code, body = server.json("POST", "/api/v1/namespaces/limits-bad/limitranges", bad)
    assert code == 422, body
    assert body["message"] == (
        'LimitRange "lr" is invalid: spec.limits[0].min[cpu]: Invalid value: "2": min value'
        " 2 is greater than max value 1"
    )


def test_quota_counts_the_defaults(server: Server) -> None:
    """LimitRanger runs before the quota admission: a quota on limits.cpu takes a pod that
    names none, with the range's default."""
    ns = "limits-quota"
    assert server.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
    assert server.json("POST", f"/api/v1/namespaces/{ns}/limitranges", RANGE)[0] == 201
    quota = {"metadata": {"name": "q"}, "spec": {"hard": {"limits.cpu": "1"}}}
    assert server.json("POST", f"/api/v1/namespaces/{ns}/resourcequotas", quota)[0] == 201

    def counted() -> bool:
        _, q = server.json("GET", f"/api/v1/namespaces/{ns}/resourcequotas/q")
        return bool((q.get("status") or {}).get("used"))

    until("quota counted", counted)
    pod = {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert server.json("POST", f"/api/v1/namespaces/{ns}/pods", pod)[0] == 201
    assert (
        server.json("POST", f"/api/v1/namespaces/{ns}/pods", {**pod, "metadata": {"name": "b"}})[0]
        == 201
    )
    code, body = server.json(
        "POST", f"/api/v1/namespaces/{ns}/pods", {**pod, "metadata": {"name": "c"}}
    )
    assert code == 403, body
    assert body["message"] == (
        'pods "c" is forbidden: exceeded quota: q, requested: limits.cpu=500m, used:'
        " limits.cpu=1, limited: limits.cpu=1"
    )
