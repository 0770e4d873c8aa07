"""A pod's ServiceAccount token, end to end: the API server's ServiceAccount admission adds the
``kube-api-access-*`` projected volume, the controller manager publishes ``kube-root-ca.crt``,
the agent requests a token bound to the pod (TokenRequest) and writes token, CA and namespace
into the pod; the token authenticates as the pod's ServiceAccount until the pod is deleted.

A real server and agent: the ``cluster`` fixture of test_kubelet (its own instance here)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.pod import api
from tests.integration.test_kubelet import (  # noqa: F401 (the fixture)
    KUBECTL_CURRENT,
    Cluster,
    cluster,
    manifest,
    until,
)
from tests.kubeserver import Kubectl

pytestmark = pytest.mark.root

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def cluster_ca(c: Cluster) -> str:
    cfg = yaml.safe_load(c.server.kubeconfig.read_text())
    return base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def token_review(c: Cluster, token: str) -> dict[str, Any]:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    code, out = c.server.json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
    assert code == 201, out
    status: dict[str, Any] = out["status"]
    return status


def as_token(c: Cluster, token: str, home: Path) -> Kubectl:
    """kubectl with nothing but the cluster CA and the bearer token."""
    if not os.access(KUBECTL_CURRENT, os.X_OK):
        pytest.skip(f"kubectl not found at {KUBECTL_CURRENT}")
    ca = home / "ca.crt"
    ca.write_text(cluster_ca(c))
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{c.server.port}",
                    "certificate-authority": str(ca),
                },
            }
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "c",
    }
    path = home / "token.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return Kubectl(KUBECTL_CURRENT, home, path, "1.32")


def wait_namespace_ready(c: Cluster, ns: str) -> None:
    """The controllers' part: the default ServiceAccount and the root CA ConfigMap."""
    until(
        f"default ServiceAccount and kube-root-ca.crt in {ns}",
        lambda: (
            c.server.json("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200
            and c.server.json("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")[0]
            == 200
        ),
    )


def test_the_pod_token_works_from_the_pod_and_dies_with_it(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    c = cluster
    k = c.kubectl()
    wait_namespace_ready(c, "default")
    k.run("apply", "-f", "-", input=json.dumps(manifest("satok")))
    pod = c.wait_running("satok")
    uid = pod["metadata"]["uid"]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    (vol,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol["name"]) == len("kube-api-access-") + 5
    assert vol["projected"]["sources"][0] == {
        "serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}
    }
    assert {"name": vol["name"], "mountPath": MOUNT, "readOnly": True} in spec["containers"][0][
        "volumeMounts"
    ]

    for version in ("1.32", "1.20"):
        text = c.kubectl(version).run("describe", "pod", "satok").stdout
        for want in (
            f"{MOUNT} from {vol['name']} (ro)",
            "Type:                    Projected",
            "TokenExpirationSeconds:  3607",
            "ConfigMapName:           kube-root-ca.crt",
        ):
            assert want in text, (version, want, text)

    def cat(path: str) -> bytes:
        return api.exec_in(uid, c.opts, ["cat", path], stdout=subprocess.PIPE).stdout

    token = cat(f"{MOUNT}/token").decode()
    assert cat(f"{MOUNT}/ca.crt").decode() == cluster_ca(c)
    assert cat(f"{MOUNT}/namespace") == b"default"
    got = claims(token)
    assert got["sub"] == "system:serviceaccount:default:default"
    assert got["kubernetes.io"]["pod"] == {"name": "satok", "uid": uid}
    assert got["kubernetes.io"]["serviceaccount"]["name"] == "default"
    assert got["exp"] - got["iat"] == 3607
    # the agent's copy is on its secret tmpfs, never on its disk
    sources = c.agent.data_dir / "volume-sources" / uid / "secret"
    assert os.path.ismount(sources)
    assert any(f.read_bytes() == token.encode() for f in (sources / vol["name"]).iterdir()), (
        "the token is not on the secret tmpfs"
    )

    review = token_review(c, token)
    assert review["authenticated"] is True
    assert review["user"]["username"] == "system:serviceaccount:default:default"
    assert review["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    who = as_token(c, token, tmp_path)
    out = who.run("auth", "whoami", "-o", "json")
    assert json.loads(out.stdout)["status"]["userInfo"]["username"] == (
        "system:serviceaccount:default:default"
    )
    code, _, _ = c.server.request(
        "GET",
        "/api/v1/namespaces/default/pods",
        headers={"Authorization": f"Bearer {token}"},
        client_cert=False,
    )
    assert code == 403  # known, but the default ServiceAccount may not list pods

    k.run("delete", "pod", "satok")
    assert token_review(c, token)["authenticated"] is False
    code, _, _ = c.server.request(
        "GET",
        "/api/v1/namespaces/default/pods",
        headers={"Authorization": f"Bearer {token}"},
        client_cert=False,
    )
    assert code == 401
    failed = who.run("auth", "whoami", check=False)
    assert failed.returncode != 0 and "Unauthorized" in failed.stderr, failed


def test_no_token_volume_when_automount_is_off(cluster: Cluster) -> None:  # noqa: F811
    c = cluster
    k = c.kubectl()
    wait_namespace_ready(c, "default")
    quiet = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "quiet"},
        "automountServiceAccountToken": False,
    }
    k.run("apply", "-f", "-", input=json.dumps(quiet))
    try:
        for name, extra in (
            ("nomount", {"automountServiceAccountToken": False}),
            ("quiet", {"serviceAccountName": "quiet"}),
        ):
            k.run("apply", "-f", "-", input=json.dumps(manifest(name, **extra)))
            pod = c.wait_running(name)
            assert "volumes" not in pod["spec"], pod["spec"]
            assert "volumeMounts" not in pod["spec"]["containers"][0]
            p = api.exec_in(
                pod["metadata"]["uid"], c.opts, ["test", "-e", MOUNT], stdout=subprocess.PIPE
            )
            assert p.returncode != 0
            k.run("delete", "pod", name)
    finally:
        k.run("delete", "serviceaccount", "quiet", check=False)


def test_a_token_that_cannot_be_had_is_a_failed_mount_until_it_can(
    cluster: Cluster,  # noqa: F811
) -> None:
    c = cluster
    k = c.kubectl()
    wait_namespace_ready(c, "default")
    k.run("apply", "-f", "-", input=json.dumps(manifest("later", serviceAccountName="later")))

    def failed_mount() -> str:
        out = k.run(
            "get", "events", "--field-selector", "involvedObject.name=later", "-o", "json"
        ).stdout
        msgs = [e["message"] for e in json.loads(out)["items"] if e["reason"] == "FailedMount"]
        return msgs[0] if msgs else ""

    msg = until("a FailedMount event", failed_mount)
    assert 'ServiceAccount "default/later"' in msg and "kube-api-access-" in msg, msg
    st = c.pod("later")["status"]
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating", st
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "later"}}
    k.run("apply", "-f", "-", input=json.dumps(sa))
    try:
        pod = c.wait_running("later")
        token = api.exec_in(
            pod["metadata"]["uid"], c.opts, ["cat", f"{MOUNT}/token"], stdout=subprocess.PIPE
        ).stdout.decode()
        assert claims(token)["sub"] == "system:serviceaccount:default:later"
        assert token_review(c, token)["user"]["username"] == ("system:serviceaccount:default:later")
        k.run("delete", "pod", "later")
    finally:
        k.run("delete", "serviceaccount", "later", check=False)


def test_a_pod_never_made_leaves_no_token_behind(cluster: Cluster) -> None:  # noqa: F811
    """The token is written before the runtime fails to make the pod (its image): deleting the
    pod takes the token's tmpfs with it."""
    c = cluster
    k = c.kubectl()
    wait_namespace_ready(c, "default")
    m = manifest("unmade", containers=[{"name": "app", "image": "no-such-image:2.0"}])
    k.run("apply", "-f", "-", input=json.dumps(m))
    uid = until("the pod", lambda: c.pod("unmade").get("metadata", {}).get("uid"))
    sources = c.agent.data_dir / "volume-sources" / uid
    until(
        "ErrImagePull",
        lambda: (
            ((c.pod("unmade").get("status") or {}).get("containerStatuses") or [{}])[0]
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
        ),
    )
    assert os.path.ismount(sources / "secret"), "the token volume was not written"
    k.run("delete", "pod", "unmade")
    assert not sources.exists(), "the volume sources outlived the pod"
    # deleted for good at once (no graceful deletion for the agent to see): the relist's sweep
    m["metadata"]["name"] = "unmade2"
    k.run("apply", "-f", "-", input=json.dumps(m))
    uid = until("the pod", lambda: c.pod("unmade2").get("metadata", {}).get("uid"))
    sources = c.agent.data_dir / "volume-sources" / uid
    until("the token written", lambda: os.path.ismount(sources / "secret"))
    k.run("delete", "pod", "unmade2", "--grace-period=0", "--force")
    until("the sources of the pod deleted for good dropped", lambda: not sources.exists())


def test_a_renewed_token_reaches_the_running_pod(cluster: Cluster) -> None:  # noqa: F811
    """A new token goes into the running pod's volume in place (the path a renewal at 80% of
    the lifetime takes): a restarted agent has no cached token, requests one and projects the
    volume again; the container is not restarted."""
    c = cluster
    k = c.kubectl()
    wait_namespace_ready(c, "default")
    k.run("apply", "-f", "-", input=json.dumps(manifest("renew")))
    uid = c.wait_running("renew")["metadata"]["uid"]

    def token() -> str:
        out = api.exec_in(uid, c.opts, ["cat", f"{MOUNT}/token"], stdout=subprocess.PIPE)
        return out.stdout.decode()

    def container() -> tuple[int | None, int]:
        (st,) = [p for p in c.runtime_pods() if p.uid == uid]
        return st.containers[0].pid, st.containers[0].restart_count

    first, before = token(), container()
    c.agent.kill()
    c.agent.start()
    second = until("a new token in the pod", lambda: (t := token()) != first and t)
    assert claims(second)["kubernetes.io"]["pod"] == {"name": "renew", "uid": uid}
    assert claims(second)["jti"] != claims(first)["jti"]
    assert token_review(c, second)["authenticated"] is True
    assert container() == before, "the container was started again"
    k.run("delete", "pod", "renew")
    assert token_review(c, second)["authenticated"] is False
