"""The API server's ServiceAccount admission of a new pod (the rules; the end to end test is
tests/integration/test_kubelet_satoken.py)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from orchestrator.apiserver.serviceaccount import MOUNT_PATH, admit_pod, token_volume_source

Obj = dict[str, Any]


def admitted(pod: Obj, accounts: dict[str, Obj] | None = None) -> Obj:
    pod = copy.deepcopy(pod)
    asked: list[tuple[str, str]] = []

    async def lookup(ns: str, name: str) -> Obj | None:
        asked.append((ns, name))
        return (accounts or {}).get(name)

    asyncio.run(admit_pod(pod, lookup))
    pod["asked"] = asked
    return pod


def pod(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "a", "image": "i"}], **spec},
    }


def test_default_account_and_the_token_volume_in_every_container() -> None:
    p = admitted(
        pod(
            initContainers=[{"name": "i", "image": "i"}],
            containers=[{"name": "a", "image": "i"}, {"name": "b", "image": "i"}],
            volumes=[{"name": "data", "emptyDir": {}}],
        )
    )
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    assert p["asked"] == [("ns", "default")]
    assert spec["volumes"][0] == {"name": "data", "emptyDir": {}}
    vol = spec["volumes"][1]
    name = vol["name"]
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5
    ns_ref = {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
    ca = {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert vol["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": ca},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": ns_ref}]}},
        ],
    }
    assert vol["projected"] == token_volume_source()
    mount = {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
    for c in spec["initContainers"] + spec["containers"]:
        assert c["volumeMounts"] == [mount]


def test_the_deprecated_field_names_the_account() -> None:
    p = admitted(pod(serviceAccount="robot"))
    assert p["spec"]["serviceAccountName"] == "robot" and p["spec"]["serviceAccount"] == "robot"
    assert p["asked"] == [("ns", "robot")]


def test_automount_off_on_the_pod_or_the_account() -> None:
    p = admitted(pod(automountServiceAccountToken=False))
    assert "volumes" not in p["spec"] and "volumeMounts" not in p["spec"]["containers"][0]
    assert p["spec"]["serviceAccountName"] == "default" and p["asked"] == []
    quiet = {"quiet": {"automountServiceAccountToken": False}}
    p = admitted(pod(serviceAccountName="quiet"), quiet)
    assert "volumes" not in p["spec"]
    p = admitted(pod(serviceAccountName="quiet", automountServiceAccountToken=True), quiet)
    assert len(p["spec"]["volumes"]) == 1  # the pod's word wins


def test_a_container_mounting_the_path_itself_keeps_its_mount() -> None:
    own = {"name": "mine", "mountPath": MOUNT_PATH}
    p = admitted(
        pod(
            containers=[{"name": "a", "image": "i", "volumeMounts": [own]}],
            volumes=[{"name": "mine", "emptyDir": {}}],
        )
    )
    assert p["spec"]["containers"][0]["volumeMounts"] == [own]
    assert p["spec"]["volumes"] == [{"name": "mine", "emptyDir": {}}]  # none needs it
    p = admitted(
        pod(containers=[{"name": "a", "image": "i", "volumeMounts": [own]}, {"name": "b"}])
    )
    (vol,) = p["spec"]["volumes"]
    assert p["spec"]["containers"][1]["volumeMounts"][0]["name"] == vol["name"]


def test_an_existing_token_volume_is_reused_and_mirror_pods_left_alone() -> None:
    have = {"name": "kube-api-access-abcde", "projected": token_volume_source()}
    p = admitted(pod(volumes=[have]))
    assert p["spec"]["volumes"] == [have]
    assert p["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-abcde"
    mirror = pod()
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    p = admitted(mirror)
    assert p["spec"] == mirror["spec"]
