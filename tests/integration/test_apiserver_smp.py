"""Strategic merge patches on a real ``corral server`` from real kubectl (1.32 and 1.20): each
list merges or is replaced as the schema's patch strategy says (tolerations and args are
atomic, containers and env merge by name, volumes merge by name and switch their source by
``$retainKeys``, a Deployment's strategy drops the keys it no longer retains), as
kube-apiserver does for ``kubectl patch --type strategic`` and client-side ``kubectl apply``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.kubeserver import (
    KUBECTL_VERSIONS,
    Kubectl,
    Server,
    api_only_server,
    temp_namespace,
)

VERSIONS = KUBECTL_VERSIONS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apiserver-smp")) as srv:
        yield srv


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "smp") as name:
        yield name


def _deployment(
    strategy: dict[str, Any],
    volume: dict[str, Any],
    tolerations: list[str],
    env: list[str],
    args: list[str],
) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "strategy": strategy,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx:1.21",
                                "args": args,
                                "env": [{"name": n, "value": n.lower()} for n in env],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "tolerations": [{"key": k, "operator": "Exists"} for k in tolerations],
                        "volumes": [{"name": "data", **volume}],
                    },
                },
            },
        }
    )


def _get(kubectl: Kubectl, ns: str) -> dict[str, Any]:
    out = json.loads(kubectl.run("-n", ns, "get", "deployment", "web", "-o", "json").stdout)
    assert isinstance(out, dict)
    return out


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def test_kubectl_patch_strategic_follows_the_schema(kubectl: Kubectl, ns: str) -> None:
    kubectl.run(
        "-n",
        ns,
        "create",
        "-f",
        "-",
        input=_deployment({"type": "RollingUpdate"}, {"emptyDir": {}}, ["a", "b"], ["A"], ["one"]),
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "tolerations": [{"key": "c", "operator": "Exists"}],
                    "containers": [
                        {"name": "app", "args": ["two"], "env": [{"name": "B", "value": "b"}]}
                    ],
                    "volumes": [
                        {
                            "$retainKeys": ["hostPath", "name"],
                            "name": "data",
                            "hostPath": {"path": "/tmp/data"},
                        }
                    ],
                }
            }
        }
    }
    kubectl.run(
        "-n", ns, "patch", "deployment", "web", "--type", "strategic", "-p", json.dumps(patch)
    )
    spec = _pod_spec(_get(kubectl, ns))
    # tolerations and args are atomic: replaced whole
    assert [t["key"] for t in spec["tolerations"]] == ["c"]
    (app,) = spec["containers"]
    assert app["args"] == ["two"]
    # env merges by name: the patch's new item first, as kube-apiserver puts it
    assert [(e["name"], e["value"]) for e in app["env"]] == [("B", "b"), ("A", "a")]
    assert app["image"] == "nginx:1.21"  # the container itself merged, not replaced
    # the volume merged by name; $retainKeys dropped its old source
    (volume,) = spec["volumes"]
    assert volume["name"] == "data" and "emptyDir" not in volume
    assert volume["hostPath"]["path"] == "/tmp/data"

    # a list item without its merge key is refused, and nothing changes
    bad = {"spec": {"template": {"spec": {"containers": [{"image": "busybox"}]}}}}
    p = kubectl.run(
        "-n",
        ns,
        "patch",
        "deployment",
        "web",
        "--type",
        "strategic",
        "-p",
        json.dumps(bad),
        check=False,
    )
    assert p.returncode != 0
    assert (
        "Error from server: map: map[image:busybox] does not contain declared merge key: name"
        in (p.stderr)
    )
    assert _pod_spec(_get(kubectl, ns))["containers"] == spec["containers"]


def test_kubectl_apply_of_an_edited_deployment(kubectl: Kubectl, ns: str) -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    first = _deployment(rolling, {"emptyDir": {}}, ["a"], ["A", "B"], ["one", "two"])
    kubectl.run("-n", ns, "apply", "-f", "-", input=first)
    # another writer adds an env variable the file does not list: apply keeps it
    kubectl.run(
        "-n",
        ns,
        "patch",
        "deployment",
        "web",
        "--type",
        "strategic",
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "app", "env": [{"name": "X"}]}]}}
                }
            }
        ),
    )
    edited = _deployment(
        {"type": "Recreate"}, {"hostPath": {"path": "/tmp/data"}}, ["b"], ["A", "C"], ["two"]
    )
    kubectl.run("-n", ns, "apply", "-f", "-", input=edited)
    obj = _get(kubectl, ns)
    # the strategy keeps only what it retains: rollingUpdate is gone with RollingUpdate
    assert obj["spec"]["strategy"] == {"type": "Recreate"}
    spec = _pod_spec(obj)
    (volume,) = spec["volumes"]
    assert volume["name"] == "data" and "emptyDir" not in volume
    assert volume["hostPath"]["path"] == "/tmp/data"
    assert [t["key"] for t in spec["tolerations"]] == ["b"]
    (app,) = spec["containers"]
    assert app["args"] == ["two"]
    # B (applied before, no longer listed) is removed; X (another writer's) stays
    assert sorted(e["name"] for e in app["env"]) == ["A", "C", "X"]
    assert [e["name"] for e in app["env"] if e["name"] != "X"] == ["A", "C"]
