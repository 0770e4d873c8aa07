"""Static pods: a real server and agent; pods written into the agent's manifest directory
(its default, DATA_DIR/pod-manifests) run without the API and are mirrored into it. Deleting
the mirror makes it again and leaves the pod running; editing the file restarts the pod with
the new spec; a bad file is logged and changes nothing; removing the file stops the pod and
deletes the mirror."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_kubelet import (
    IMAGE,
    NODE,
    Cluster,
    cluster_context,
    until,
)

pytestmark = pytest.mark.root

MIRROR = "kubernetes.io/config.mirror"


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_context(rootfs, tmp_path_factory.mktemp("static")) as c:
        yield c


def static(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
                    "env": [{"name": "VALUE", "value": value}],
                }
            ],
        },
    }


def runtime_pod(c: Cluster, name: str) -> Any:
    found = [st for st in c.runtime_pods() if st.name == name and st.location == "run"]
    return found[0] if len(found) == 1 else None


def mirror_running(c: Cluster, name: str, hash_: str | None = None) -> dict[str, Any] | None:
    p = c.pod(name)
    ann = (p.get("metadata") or {}).get("annotations") or {}
    st = p.get("status") or {}
    if MIRROR not in ann or (hash_ is not None and ann[MIRROR] != hash_):
        return None
    if p["metadata"].get("deletionTimestamp") or st.get("phase") != "Running":
        return None
    if not all(cs.get("ready") for cs in st.get("containerStatuses") or [{}]):
        return None
    return p


def test_static_pod_lifecycle(cluster: Cluster) -> None:
    c = cluster
    manifests = c.agent.data_dir / "pod-manifests"
    assert manifests.is_dir()  # the agent made its default directory
    name = f"web-{NODE}"
    path = manifests / "web.yaml"
    path.write_text(yaml.safe_dump(static("web", "one")))

    # Run by the kubelet, mirrored into the API, its status reported there.
    mirror = until("the mirror pod to be Running", lambda: mirror_running(c, name))
    ann = mirror["metadata"]["annotations"]
    assert ann["kubernetes.io/config.source"] == "file"
    assert ann[MIRROR] == ann["kubernetes.io/config.hash"]
    code, node = c.server.json("GET", f"/api/v1/nodes/{NODE}")
    assert code == 200
    (owner,) = mirror["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", NODE, node["metadata"]["uid"])
    assert mirror["spec"]["nodeName"] == NODE
    assert mirror["metadata"]["labels"] == {"app": "web"}
    rt = runtime_pod(c, name)
    assert rt is not None and rt.uid == ann["kubernetes.io/config.hash"]
    pid = rt.containers[0].pid
    assert pid

    # Deleting the mirror makes it again; the pod runs on, the same process.
    k = c.kubectl()
    k.run("delete", "pod", name, "--wait=false")
    again = until(
        "a new mirror pod",
        lambda: (
            (p := mirror_running(c, name))
            and p["metadata"]["uid"] != mirror["metadata"]["uid"]
            and p
        ),
    )
    assert again["metadata"]["annotations"][MIRROR] == ann[MIRROR]
    rt = runtime_pod(c, name)
    assert rt is not None and rt.uid == ann[MIRROR] and rt.containers[0].pid == pid
    assert rt.containers[0].restart_count == 0

    # An agent killed and started again adopts the static pod: the same process runs on.
    c.agent.kill()
    c.agent.start()
    until("the mirror pod after the restart", lambda: mirror_running(c, name, ann[MIRROR]))
    time.sleep(2)  # a few relists and looks at the directory
    rt = runtime_pod(c, name)
    assert rt is not None and rt.containers[0].pid == pid
    assert rt.containers[0].restart_count == 0

    # A bad file is logged, naming it, and changes nothing.
    bad = manifests / "bad.yaml"
    bad.write_text("kind: Pod\napiVersion: v1\nspec: [not, a, spec\n")
    wrong = manifests / "wrong.json"
    wrong.write_text(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}))
    until("the agent to log the bad files", lambda: str(bad) in c.agent.log.read_text())
    log = c.agent.log.read_text()
    assert f"static pod {wrong}: kind 'Service' apiVersion 'v1': expected a v1 Pod" in log
    time.sleep(2)  # a few looks at the directory: nothing else may change
    assert runtime_pod(c, name).containers[0].pid == pid
    assert mirror_running(c, name, ann[MIRROR])["metadata"]["uid"] == again["metadata"]["uid"]
    # An edit that breaks the file keeps the pod as it was.
    path.write_text("kind: Pod\n  oops: [\n")
    until(
        "the agent to log the broken edit",
        lambda: "keeps its last good version" in c.agent.log.read_text(),
    )
    time.sleep(2)
    assert runtime_pod(c, name).containers[0].pid == pid
    bad.unlink()
    wrong.unlink()

    # Editing the file restarts the pod with the new spec, under a new hash.
    path.write_text(yaml.safe_dump(static("web", "two")))
    edited = until(
        "the mirror of the edited pod",
        lambda: (
            (p := mirror_running(c, name))
            and p["metadata"]["annotations"][MIRROR] != ann[MIRROR]
            and p
        ),
    )
    new_hash = edited["metadata"]["annotations"][MIRROR]
    assert edited["spec"]["containers"][0]["env"] == [{"name": "VALUE", "value": "two"}]
    rt = until("the new pod to run alone", lambda: runtime_pod(c, name))
    assert rt.uid == new_hash
    out = c.kubectl().run("exec", name, "--", "sh", "-c", "echo $VALUE").stdout
    assert out.strip() == "two"

    # Removing the file stops the pod and deletes the mirror.
    path.unlink()
    until("the mirror pod to be gone", lambda: not c.pod(name))
    until(
        "the pod to be gone from the node",
        lambda: not any(st.name == name for st in c.runtime_pods()),
    )
