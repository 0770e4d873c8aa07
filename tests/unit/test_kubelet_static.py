"""Static pod manifests: the kubelet file source's defaulting, what a static pod may not
refer to, and the manifest directory's scans (a bad edit keeps the last good pod)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.kubelet.staticpods import (
    CONFIG_HASH,
    CONFIG_MIRROR,
    ManifestDir,
    StaticPodError,
    mirror_of,
    static_pod,
)


def doc(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
    }


def test_defaults_as_the_kubelets_file_source(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    pod = static_pod(path, json.dumps(doc()), "node-a")
    meta = pod["metadata"]
    assert (meta["name"], meta["namespace"]) == ("web-node-a", "default")
    assert len(meta["uid"]) == 32 and meta["annotations"][CONFIG_HASH] == meta["uid"]
    assert meta["annotations"]["kubernetes.io/config.source"] == "file"
    assert pod["spec"]["nodeName"] == "node-a"
    assert {"operator": "Exists", "effect": "NoExecute"} in pod["spec"]["tolerations"]
    # the same file gives the same uid; an edit, another node or another file a new one
    assert static_pod(path, json.dumps(doc()), "node-a")["metadata"]["uid"] == meta["uid"]
    edited = doc()
    edited["spec"]["containers"][0]["image"] = "busybox:2"
    assert static_pod(path, json.dumps(edited), "node-a")["metadata"]["uid"] != meta["uid"]
    assert static_pod(path, json.dumps(doc()), "node-b")["metadata"]["uid"] != meta["uid"]
    assert (
        static_pod(tmp_path / "x.yaml", json.dumps(doc()), "node-a")["metadata"]["uid"]
        != (meta["uid"])
    )
    mirror = mirror_of(pod, "node-uid")
    assert mirror["metadata"]["annotations"][CONFIG_MIRROR] == meta["uid"]
    assert "uid" not in mirror["metadata"]
    assert mirror["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "node-a",
            "uid": "node-uid",
            "controller": True,
        }
    ]
    ns = static_pod(path, "kind: Pod\napiVersion: v1\nmetadata: {name: a, namespace: kube-system}\n"
                    "spec: {containers: [{name: c, image: i}]}\n", "n")  # fmt: skip
    assert ns["metadata"]["namespace"] == "kube-system"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("kind: Pod\n  x: [", "not YAML or JSON"),
        ("- a\n- b\n", "not an object"),
        (json.dumps({**doc(), "kind": "Deployment"}), "expected a v1 Pod"),
        (json.dumps({**doc(), "metadata": {}}), "metadata.name is required"),
        (json.dumps(doc("Bad_Name")), "is not a valid pod name"),
        (json.dumps(doc(containers=[])), "at least one container"),
        (json.dumps(doc(serviceAccountName="x")), "spec.serviceAccountName"),
        (
            json.dumps(doc(volumes=[{"name": "s", "secret": {"secretName": "x"}}])),
            "volume 's' (secret): a static pod may not refer to API objects",
        ),
        (json.dumps(doc(imagePullSecrets=[{"name": "r"}])), "spec.imagePullSecrets"),
    ],
)
def test_bad_manifests_name_the_file_and_the_problem(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.yaml"
    with pytest.raises(StaticPodError) as e:
        static_pod(path, text, "node-a")
    assert str(e.value).startswith(f"static pod {path}: ")
    assert says in str(e.value)


def test_the_directory_scan(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[set[str]] = []
    d = ManifestDir(tmp_path, "n", seen.append)
    d.scan()  # empty: nothing changes
    assert d.pods == {} and seen == []
    (tmp_path / "web.yaml").write_text(json.dumps(doc("web")))
    (tmp_path / ".hidden.yaml").write_text(json.dumps(doc("hidden")))
    (tmp_path / "db.json").write_text(json.dumps(doc("db")))
    d.scan()
    assert set(d.pods) == {"default/web-n", "default/db-n"} and seen == [set(d.pods)]
    uid = d.pods["default/web-n"]["metadata"]["uid"]
    d.scan()  # unchanged files: nothing
    assert len(seen) == 1
    # a broken edit keeps the last good pod, logged once
    caplog.set_level(logging.ERROR, "corral.agent.static")
    (tmp_path / "web.yaml").write_text("kind: [")
    d.scan()
    d.scan()
    assert d.pods["default/web-n"]["metadata"]["uid"] == uid and len(seen) == 1
    kept = [r.getMessage() for r in caplog.records if "keeps its last good" in r.getMessage()]
    assert len(kept) == 1, kept
    assert kept[0].startswith(f"static pod {tmp_path / 'web.yaml'}: not YAML or JSON: ")
    assert kept[0].endswith("; pod default/web-n keeps its last good version")
    # a second file defining the same pod is ignored
    (tmp_path / "zz-web.json").write_text(json.dumps(doc("web", hostname="x")))
    d.scan()
    assert d.pods["default/web-n"]["metadata"]["uid"] == uid and len(seen) == 1
    assert any("is defined by another file already" in r.getMessage() for r in caplog.records)
    os.unlink(tmp_path / "zz-web.json")
    # an edit that is good: the pod changes; a removed file: it goes
    (tmp_path / "web.yaml").write_text(json.dumps(doc("web", hostname="h")))
    d.scan()
    assert d.pods["default/web-n"]["metadata"]["uid"] != uid and seen[-1] == {"default/web-n"}
    os.unlink(tmp_path / "db.json")
    d.scan()
    assert set(d.pods) == {"default/web-n"} and seen[-1] == {"default/db-n"}
