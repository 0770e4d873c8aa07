"""The controllers in a real ``corral server``, driven by kubectl 1.32 and 1.20: deployments
rolled out, scaled, rolled back and restarted; pods replaced; foreground and orphan deletion;
namespaces emptied.

No kubelet runs here: ``FakeKubelet`` (a test device, nothing more) plays the part of the
nodes by marking every pod Running and Ready through ``pods/status``, so the controllers see
what they would see on a cluster.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.wait import until as wait_until
from tests.kubeserver import CORRAL, KUBECTL_120, KUBECTL_CURRENT, Kubectl, Server

WAIT = 90.0  # seconds a condition may take before the test fails (not a measurement)


class FakeKubelet:
    """A test device: every pod not being deleted is made Running and Ready (through the
    status subresource, as a kubelet reports). ``hold`` pauses it (pods stay as they are)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stop_event = threading.Event()
        self.hold = threading.Event()
        self.errors: list[str] = []
        self.next_ip = 10
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stop_event.wait(0.2):
            if self.hold.is_set():
                continue
            try:
                self.sweep()
            except Exception as e:  # the server going away at the end
                self.errors.append(str(e))

    def sweep(self) -> None:
        code, body = self.server.json("GET", "/api/v1/pods")
        if code != 200:
            return
        for pod in body["items"]:
            m = pod["metadata"]
            if m.get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue  # finished (a test said so): left as it is
            conds = (pod.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                continue
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.next_ip += 1
            ip = f"10.42.{self.next_ip // 250}.{self.next_ip % 250 + 2}"
            patch = {
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                }
            }
            self.server.request(
                "PATCH",
                f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/status",
                json.dumps(patch).encode(),
                {"Content-Type": "application/merge-patch+json"},
            )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("controllers"))
    srv.start()
    kubelet = FakeKubelet(srv)
    kubelet.start()
    srv.kubelet = kubelet  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        kubelet.stop()
        rc = srv.stop()
    assert rc == 0, f"corral server did not stop cleanly on SIGTERM: {rc}"


@pytest.fixture(scope="module", params=["1.32", "1.20"])
def kubectl(
    request: pytest.FixtureRequest, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    binary = KUBECTL_CURRENT if request.param == "1.32" else KUBECTL_120
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {request.param} not found at {binary} (scripts/setup.sh)")
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    k = Kubectl(binary, home, server.kubeconfig, request.param)
    return k


@pytest.fixture
def ns(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t{abs(hash((request.node.name, kubectl.version))) % 10**8}"
    kubectl.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def until(what: str, cond: Callable[[], Any]) -> Any:
    return wait_until(what, cond, WAIT, 0.2)


def deployment(name: str, replicas: int, image: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
                **spec,
            },
        }
    )


def get(k: Kubectl, ns: str, *what: str) -> Any:
    return json.loads(k.run("-n", ns, "get", *what, "-o", "json").stdout)


def live_pods(k: Kubectl, ns: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["pods"] + (["-l", selector] if selector else [])
    return [p for p in get(k, ns, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def images_of_rs(k: Kubectl, ns: str) -> dict[str, int]:
    return {
        r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"]
        for r in get(k, ns, "replicasets")["items"]
    }


def test_deployment_rolls_out_and_replaces_a_deleted_pod(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run("-n", ns, "create", "-f", "-", input=deployment("web", 3, "nginx:1"))
    out = k.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s").stdout
    assert 'deployment "web" successfully rolled out' in out
    d = get(k, ns, "deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"]) == (3, 3, 3)
    assert st["availableReplicas"] == 3 and st["observedGeneration"] == d["metadata"]["generation"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    rs = get(k, ns, "replicasets")["items"]
    assert len(rs) == 1
    h = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"web-{h}"
    pods = live_pods(k, ns, "app=web")
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["name"].startswith(f"web-{h}-")
        assert len(p["metadata"]["name"]) == len(f"web-{h}-") + 5
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["name"] == f"web-{h}"
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True

    victim = pods[0]["metadata"]["name"]
    k.run("-n", ns, "delete", "pod", victim, "--wait=false")
    until(
        "a replacement pod",
        lambda: (
            (names := {p["metadata"]["name"] for p in live_pods(k, ns, "app=web")})
            and victim not in names
            and len(names) == 3
        ),
    )
    k.run("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")


def test_scale_update_history_undo_restart(server: Server, kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run(
        "-n",
        ns,
        "create",
        "-f",
        "-",
        input=deployment(
            "app",
            4,
            "nginx:1",
            strategy={
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
            },
        ),
    )
    k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")
    k.run("-n", ns, "scale", "deployment/app", "--replicas=5")
    until("5 pods", lambda: len(live_pods(k, ns, "app=app")) == 5)
    k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")

    # A rolling update: sampled all along, never fewer than replicas - maxUnavailable ready.
    k.run("-n", ns, "set", "image", "deployment/app", "app=nginx:2")
    low = 5
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pods = live_pods(k, ns, "app=app")
        ready = sum(
            1
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        )
        low = min(low, ready)
        d = get(k, ns, "deployment", "app")
        st = d["status"]
        if (
            st.get("updatedReplicas") == 5
            and st.get("replicas") == 5
            and st.get("availableReplicas") == 5
            and st.get("observedGeneration") == d["metadata"]["generation"]
        ):
            break
        time.sleep(0.1)
    assert low >= 4, f"only {low} ready pods during the rolling update (maxUnavailable 1)"
    k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")
    assert images_of_rs(k, ns) == {"nginx:1": 0, "nginx:2": 5}

    history = k.run("-n", ns, "rollout", "history", "deployment/app").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    # undo: kubectl patches the template from revision 1's ReplicaSet (client side).
    k.run("-n", ns, "rollout", "undo", "deployment/app")
    k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")
    d = get(k, ns, "deployment", "app")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert images_of_rs(k, ns) == {"nginx:1": 5, "nginx:2": 0}
    history = k.run("-n", ns, "rollout", "history", "deployment/app").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]

    # pause: template changes wait; resume rolls them out.
    k.run("-n", ns, "rollout", "pause", "deployment/app")
    k.run("-n", ns, "set", "image", "deployment/app", "app=nginx:3")
    until(
        "the Progressing condition to say paused",
        lambda: any(
            c.get("reason") == "DeploymentPaused"
            for c in get(k, ns, "deployment", "app")["status"].get("conditions", [])
        ),
    )
    assert "nginx:3" not in images_of_rs(k, ns)
    k.run("-n", ns, "rollout", "resume", "deployment/app")
    k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")
    assert images_of_rs(k, ns)["nginx:3"] == 5

    if k.version != "1.20":  # rollout restart came with kubectl 1.15 but is tested once here
        before = {r["metadata"]["name"] for r in get(k, ns, "replicasets")["items"]}
        k.run("-n", ns, "rollout", "restart", "deployment/app")
        k.run("-n", ns, "rollout", "status", "deployment/app", "--timeout=90s")
        after = {r["metadata"]["name"] for r in get(k, ns, "replicasets")["items"]}
        assert len(after - before) == 1
        tmpl = get(k, ns, "deployment", "app")["spec"]["template"]["metadata"]
        assert "kubectl.kubernetes.io/restartedAt" in tmpl["annotations"]


def test_recreate_and_history_limit(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run(
        "-n",
        ns,
        "create",
        "-f",
        "-",
        input=deployment("rc", 2, "nginx:1", strategy={"type": "Recreate"}, revisionHistoryLimit=1),
    )
    k.run("-n", ns, "rollout", "status", "deployment/rc", "--timeout=90s")
    for image in ("nginx:2", "nginx:3"):
        k.run("-n", ns, "set", "image", "deployment/rc", f"app={image}")
        k.run("-n", ns, "rollout", "status", "deployment/rc", "--timeout=90s")
    until(
        "history trimmed to 1 old set", lambda: images_of_rs(k, ns) == {"nginx:2": 0, "nginx:3": 2}
    )


def test_foreground_deletion_removes_replicasets_and_pods_first(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run("-n", ns, "create", "-f", "-", input=deployment("fg", 2, "nginx:1"))
    k.run("-n", ns, "rollout", "status", "deployment/fg", "--timeout=90s")
    k.run("-n", ns, "delete", "deployment", "fg", "--cascade=foreground", "--wait=false")
    # The owner stays (with its finalizer) until its dependents are gone.
    d = k.run("-n", ns, "get", "deployment", "fg", "-o", "json", check=False)
    if d.returncode == 0:
        meta = json.loads(d.stdout)["metadata"]
        assert "foregroundDeletion" in meta.get("finalizers", [])
        assert meta.get("deletionTimestamp")
    until(
        "the deployment, its replica sets and pods gone",
        lambda: (
            not get(k, ns, "deployments")["items"]
            and not get(k, ns, "replicasets")["items"]
            and not get(k, ns, "pods")["items"]
        ),
    )


def test_background_and_orphan_deletion(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run("-n", ns, "create", "-f", "-", input=deployment("bg", 1, "nginx:1"))
    k.run("-n", ns, "create", "-f", "-", input=deployment("or", 1, "nginx:1"))
    k.run("-n", ns, "rollout", "status", "deployment/bg", "--timeout=90s")
    k.run("-n", ns, "rollout", "status", "deployment/or", "--timeout=90s")
    cascade = "--cascade=orphan" if k.version != "1.20" else "--cascade=false"
    k.run("-n", ns, "delete", "deployment", "or", cascade)
    k.run("-n", ns, "delete", "deployment", "bg")
    until(
        "bg's replica set and pods collected",
        lambda: (
            not live_pods(k, ns, "app=bg")
            and not [
                r
                for r in get(k, ns, "replicasets")["items"]
                if r["metadata"]["name"].startswith("bg-")
            ]
        ),
    )
    rss = [r for r in get(k, ns, "replicasets")["items"] if r["metadata"]["name"].startswith("or-")]
    assert len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences")
    assert len(live_pods(k, ns, "app=or")) == 1


def test_replicaset_adopts_orphan_pod_and_releases_relabelled(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose", "labels": {"app": "rs"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1"}]},
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(pod))
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": pod | {"metadata": {"labels": {"app": "rs"}}},
        },
    }
    del rs["spec"]["template"]["apiVersion"], rs["spec"]["template"]["kind"]  # type: ignore[attr-defined]
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(rs))
    until(
        "the ReplicaSet ready with the adopted pod",
        lambda: get(k, ns, "replicaset", "rs")["status"].get("readyReplicas") == 2,
    )
    loose = get(k, ns, "pod", "loose")
    assert loose["metadata"]["ownerReferences"][0]["name"] == "rs"
    assert len(live_pods(k, ns, "app=rs")) == 2  # one made, one adopted
    k.run("-n", ns, "label", "pod", "loose", "app=gone", "--overwrite")
    until(
        "loose released", lambda: not get(k, ns, "pod", "loose")["metadata"].get("ownerReferences")
    )
    until("a replacement", lambda: len(live_pods(k, ns, "app=rs")) == 2)


def test_replicationcontroller_defaults_adopts_scales_and_is_collected(
    kubectl: Kubectl, ns: str
) -> None:
    k = kubectl
    labels = {"app": "legacy", "tier": "front"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "labels": {**labels, "extra": "yes"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1"}]},
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(pod))
    # An RC without a selector and without labels: both are the template's labels.
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1"}]},
            },
        },
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(rc))
    made = get(k, ns, "rc", "legacy")
    assert made["spec"]["selector"] == labels and made["metadata"]["labels"] == labels
    until(
        "3 ready replicas, the stray pod adopted",
        lambda: get(k, ns, "replicationcontroller", "legacy")["status"].get("readyReplicas") == 3,
    )
    ref = get(k, ns, "pod", "stray")["metadata"]["ownerReferences"][0]
    assert (ref["apiVersion"], ref["kind"]) == ("v1", "ReplicationController")
    assert ref["name"] == "legacy"
    assert len(live_pods(k, ns, "app=legacy")) == 3  # two made, one adopted
    st = get(k, ns, "rc", "legacy")["status"]
    assert (st["replicas"], st["fullyLabeledReplicas"], st["availableReplicas"]) == (3, 3, 3)

    out = k.run("-n", ns, "get", "rc", "-o", "wide").stdout.splitlines()
    assert out[0].split() == [
        "NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"
    ]  # fmt: skip
    row = out[1].split()
    assert row[:4] == ["legacy", "3", "3", "3"]
    assert row[5:] == ["app", "nginx:1", "app=legacy,tier=front"]
    assert "rc" in k.run("api-resources", "--api-group=").stdout.split()

    k.run("-n", ns, "scale", "rc", "legacy", "--replicas=1")
    until("scaled down to one pod", lambda: len(live_pods(k, ns, "app=legacy")) == 1)
    scale = json.loads(
        k.run("get", "--raw", f"/api/v1/namespaces/{ns}/replicationcontrollers/legacy/scale").stdout
    )
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"]["selector"] == "app=legacy,tier=front"

    bad = json.loads(json.dumps(rc))
    bad["metadata"]["name"] = "bad"
    bad["spec"]["selector"] = {"app": "other"}
    p = k.run("-n", ns, "create", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0 and "spec.template.metadata.labels" in p.stderr

    k.run("-n", ns, "delete", "rc", "legacy", "--wait=false")
    until("its pods collected", lambda: not live_pods(k, ns, "app=legacy"))


def test_namespace_deletion_empties_it(kubectl: Kubectl) -> None:
    k = kubectl
    name = f"gone{kubectl.version.replace('.', '')}"
    k.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    k.run("-n", name, "create", "-f", "-", input=deployment("x", 2, "nginx:1"))
    k.run("-n", name, "rollout", "status", "deployment/x", "--timeout=90s")
    k.run("delete", "namespace", name, "--wait=false")
    until(
        "the namespace gone",
        lambda: k.run("get", "namespace", name, check=False).returncode != 0,
    )
    for kind in ("deployments", "replicasets", "pods"):
        p = k.run("-n", name, "get", kind, "-o", "json", check=False)
        assert p.returncode != 0 or not json.loads(p.stdout)["items"]


def test_disabled_controller_manager_makes_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    srv = Server(tmp_path_factory.mktemp("noctl"), extra=("--disable-controller-manager",))
    srv.start()
    try:
        code, _ = srv.json(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            json.loads(deployment("d", 1, "nginx:1")),
        )
        assert code == 201
        time.sleep(2)  # nothing is expected to happen: give the (absent) controllers a chance
        code, body = srv.json("GET", "/apis/apps/v1/namespaces/default/replicasets")
        assert code == 200 and body["items"] == []
        code, body = srv.json("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
        assert "kube-controller-manager" not in [i["metadata"]["name"] for i in body["items"]]
    finally:
        assert srv.stop() == 0


def test_default_serviceaccount_and_node_pod_cidr(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    until(
        "the default ServiceAccount",
        lambda: k.run("-n", ns, "get", "serviceaccount", "default", check=False).returncode == 0,
    )
    node = f"node-{ns}"
    k.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
    )
    try:
        spec = until(
            "a podCIDR",
            lambda: (
                json.loads(k.run("get", "node", node, "-o", "json").stdout)["spec"].get("podCIDR")
                and json.loads(k.run("get", "node", node, "-o", "json").stdout)["spec"]
            ),
        )
        assert spec["podCIDR"].startswith("10.42.") and spec["podCIDR"].endswith("/24")
        assert spec["podCIDRs"] == [spec["podCIDR"]]
        others = [
            n["spec"].get("podCIDR")
            for n in json.loads(k.run("get", "nodes", "-o", "json").stdout)["items"]
            if n["metadata"]["name"] != node
        ]
        assert spec["podCIDR"] not in others
    finally:
        k.run("delete", "node", node)


def test_root_ca_configmap_in_every_namespace_made_again_and_set_back(
    server: Server, kubectl: Kubectl, ns: str
) -> None:
    k = kubectl
    cfg = yaml.safe_load(server.kubeconfig.read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()

    def data() -> dict[str, str] | None:
        got = k.run("-n", ns, "get", "configmap", "kube-root-ca.crt", "-o", "json", check=False)
        return json.loads(got.stdout)["data"] if got.returncode == 0 else None

    assert until("kube-root-ca.crt", data) == {"ca.crt": ca}
    for other in ("default", "kube-system"):
        got = k.run("-n", other, "get", "configmap", "kube-root-ca.crt", "-o", "json")
        assert json.loads(got.stdout)["data"] == {"ca.crt": ca}
    k.run("-n", ns, "delete", "configmap", "kube-root-ca.crt")
    until("kube-root-ca.crt made again", data)
    patch = json.dumps({"data": {"ca.crt": "tampered", "more": "x"}})
    k.run("-n", ns, "patch", "configmap", "kube-root-ca.crt", "--type=merge", "-p", patch)
    until("kube-root-ca.crt set back", lambda: data() == {"ca.crt": ca})


def test_endpoints_and_slices_follow_ready_pods(server: Server, kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    k.run("-n", ns, "create", "-f", "-", input=deployment("svc", 2, "nginx:1"))
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "selector": {"app": "svc"},
            "ports": [{"name": "web", "port": 80, "targetPort": 8080}],
        },
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(svc))
    k.run("-n", ns, "rollout", "status", "deployment/svc", "--timeout=90s")

    def ready_ips() -> set[str]:
        p = k.run("-n", ns, "get", "endpoints", "svc", "-o", "json", check=False)
        if p.returncode != 0:
            return set()
        subsets = json.loads(p.stdout).get("subsets") or []
        return {a["ip"] for s in subsets for a in s.get("addresses", [])}

    pods = {p["status"]["podIP"]: p["metadata"]["name"] for p in live_pods(k, ns, "app=svc")}
    until("both pods as endpoints", lambda: ready_ips() == set(pods))
    ep = json.loads(k.run("-n", ns, "get", "endpoints", "svc", "-o", "json").stdout)
    subset = ep["subsets"][0]
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert {a["targetRef"]["name"] for a in subset["addresses"]} == set(pods.values())

    def slice_ready() -> dict[str, bool]:
        items = get(k, ns, "endpointslices", "-l", "kubernetes.io/service-name=svc")["items"]
        return {
            e["addresses"][0]: e["conditions"]["ready"]
            for s in items
            for e in s.get("endpoints") or []
        }

    until("both pods in the slice, ready", lambda: slice_ready() == dict.fromkeys(pods, True))

    # A pod that stops being ready moves to notReadyAddresses (the fake kubelet held).
    server.kubelet.hold.set()  # type: ignore[attr-defined]
    try:
        ip, name = next(iter(pods.items()))
        code, _, _ = server.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}).encode(),
            {"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200
        until(
            "the pod not ready in Endpoints",
            lambda: ip not in ready_ips() and len(ready_ips()) == 1,
        )
        ep = json.loads(k.run("-n", ns, "get", "endpoints", "svc", "-o", "json").stdout)
        assert [a["ip"] for a in ep["subsets"][0]["notReadyAddresses"]] == [ip]
        until("the slice says not ready", lambda: slice_ready().get(ip) is False)
    finally:
        server.kubelet.hold.clear()  # type: ignore[attr-defined]
    k.run("-n", ns, "delete", "service", "svc")
    until(
        "endpoints and slices gone with the service",
        lambda: (
            k.run("-n", ns, "get", "endpoints", "svc", check=False).returncode != 0
            and not get(k, ns, "endpointslices")["items"]
        ),
    )


def test_unreachable_node_is_tainted_and_its_pods_replaced(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A node that never renews its Lease: Ready Unknown after the grace period, the
    unreachable taints, its pod evicted after the (shortened) default toleration and replaced
    by its ReplicaSet; once the node object is deleted, its pods go too."""
    srv = Server(
        tmp_path_factory.mktemp("nodes"),
        extra=(
            "--node-monitor-grace-period",
            "3",
            "--default-unreachable-toleration-seconds",
            "2",
        ),
    )
    srv.start()
    try:
        code, _ = srv.json("POST", "/api/v1/nodes", {"metadata": {"name": "n1"}})
        assert code == 201
        code, _ = srv.json(
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            json.loads(deployment("d", 1, "nginx:1")),
        )
        assert code == 201

        def pods() -> list[dict[str, Any]]:
            return srv.json("GET", "/api/v1/namespaces/default/pods")[1]["items"]

        first = until("the pod", lambda: pods())[0]
        tol = {t["key"]: t for t in first["spec"]["tolerations"]}
        assert tol["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 2
        assert tol["node.kubernetes.io/not-ready"]["tolerationSeconds"] == 300
        name = first["metadata"]["name"]
        code, _ = srv.json(
            "POST",
            f"/api/v1/namespaces/default/pods/{name}/binding",
            {"metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}},
        )
        assert code == 201
        node = until(
            "the node unreachable",
            lambda: (
                (n := srv.json("GET", "/api/v1/nodes/n1")[1])
                and {t["key"] + ":" + t["effect"] for t in n["spec"].get("taints", [])}
                == {
                    "node.kubernetes.io/unreachable:NoSchedule",
                    "node.kubernetes.io/unreachable:NoExecute",
                }
                and n
            ),
        )
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        assert ready["status"] == "Unknown"
        until(
            "the pod evicted and a replacement made",
            lambda: (
                (ps := pods())
                and any(
                    p["metadata"]["name"] == name and p["metadata"].get("deletionTimestamp")
                    for p in ps
                )
                and any(
                    p["metadata"]["name"] != name and not p["metadata"].get("deletionTimestamp")
                    for p in ps
                )
            ),
        )
        code, _ = srv.json("DELETE", "/api/v1/nodes/n1")
        assert code == 200
        until(
            "the evicted pod gone with its node",
            lambda: name not in {p["metadata"]["name"] for p in pods()},
        )
    finally:
        assert srv.stop() == 0


def end_pod(server: Server, ns: str, name: str, phase: str) -> None:
    """A pod's containers exit (what its kubelet would report)."""
    code, _, body = server.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{name}/status",
        json.dumps(
            {"status": {"phase": phase, "conditions": [{"type": "Ready", "status": "False"}]}}
        ).encode(),
        {"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200, body


def test_job_completes_and_one_fails_at_its_backoff_limit(
    server: Server, kubectl: Kubectl, ns: str
) -> None:
    k = kubectl
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "twice"},
        "spec": {
            "completions": 2,
            "parallelism": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(job))
    for _ in range(2):
        pod = until(
            "a running pod of the job",
            lambda: [
                p
                for p in live_pods(k, ns, "job-name=twice")
                if p.get("status", {}).get("phase") == "Running"
            ],
        )
        assert len(pod) == 1  # parallelism 1
        assert pod[0]["metadata"]["ownerReferences"][0]["kind"] == "Job"
        end_pod(server, ns, pod[0]["metadata"]["name"], "Succeeded")
    k.run("-n", ns, "wait", "--for=condition=complete", "job/twice", "--timeout=90s")
    st = get(k, ns, "job", "twice")["status"]
    assert st["succeeded"] == 2 and st["completionTime"]

    job["metadata"]["name"] = "doomed"
    job["spec"] |= {"completions": 1, "backoffLimit": 1}
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(job))
    for _ in range(2):
        pod = until(
            "a running pod of the job",
            lambda: [
                p
                for p in live_pods(k, ns, "job-name=doomed")
                if p.get("status", {}).get("phase") == "Running"
            ],
        )
        end_pod(server, ns, pod[0]["metadata"]["name"], "Failed")
    k.run("-n", ns, "wait", "--for=condition=failed", "job/doomed", "--timeout=90s")
    st = get(k, ns, "job", "doomed")["status"]
    assert st["failed"] == 2
    cond = {c["type"]: c for c in st["conditions"]}["Failed"]
    assert cond["reason"] == "BackoffLimitExceeded"
    assert not [
        p for p in live_pods(k, ns, "job-name=doomed") if p["status"].get("phase") == "Running"
    ]


def test_cronjob_starts_a_job_on_the_minute(server: Server) -> None:
    """Once (not per kubectl): the schedule's next minute is up to a minute away."""
    ns = "default"
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                }
            },
        },
    }
    code, body = server.json("POST", f"/apis/batch/v1/namespaces/{ns}/cronjobs", cj)
    assert code == 201, body
    try:

        def jobs() -> list[dict[str, Any]]:
            return server.json("GET", f"/apis/batch/v1/namespaces/{ns}/jobs")[1]["items"]

        job = until(
            "the first job",
            lambda: [j for j in jobs() if j["metadata"]["name"].startswith("tick-")],
        )[0]
        minute = int(job["metadata"]["name"].rsplit("-", 1)[1])
        assert minute * 60 == int(
            datetime.fromisoformat(
                job["metadata"]["annotations"][
                    "batch.kubernetes.io/cronjob-scheduled-timestamp"
                ].replace("Z", "+00:00")
            ).timestamp()
        )
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        st = until(
            "the cronjob's status",
            lambda: (
                server.json("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick")[1]
                .get("status", {})
                .get("active")
            ),
        )
        assert st[0]["name"] == job["metadata"]["name"]
    finally:
        server.json("DELETE", f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick")


def test_leader_lease_and_metrics(server: Server) -> None:
    lease = until(
        "the controller manager's Lease",
        lambda: (
            (
                r := server.json(
                    "GET",
                    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
                )
            )[0]
            == 200
            and r[1]
        ),
    )
    assert lease["spec"]["holderIdentity"]

    def counts() -> dict[str, float]:
        code, _, body = server.request("GET", "/metrics")
        assert code == 200
        return {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith("controller_reconcile_duration_seconds_count")
        }

    # Every namespace is reconciled at least once by the service account controller.
    got = until("reconciles counted", lambda: counts().get("serviceaccount") and counts())
    assert {"replicaset", "deployment", "garbagecollector", "job", "nodelifecycle"} <= set(got)
    text = server.request("GET", "/metrics")[2].decode()
    assert 'workqueue_depth{name="deployment"}' in text
    assert "# TYPE controller_reconcile_duration_seconds histogram" in text
    code, _, _ = server.request("GET", "/metrics", client_cert=False)
    assert code == 401


def test_unknown_controller_name_refused_at_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(tmp_path_factory.mktemp("badctl"), extra=("--disable-controller", "nosuch"))
    with pytest.raises(RuntimeError, match="unknown: nosuch"):
        srv.start()
    srv.kill()


def test_disable_packaged_components(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``--disable servicelb --disable local-storage`` (k3s' names): no servicelb or
    local-path-provisioner controller runs and no local-path StorageClass is made; the
    module's server (nothing disabled) has all three. ``traefik`` is accepted (nothing to
    disable); an unknown name is a usage error."""

    def queues(srv: Server) -> set[str]:
        def names() -> set[str] | None:
            text = srv.request("GET", "/metrics")[2].decode()
            got = set(re.findall(r'workqueue_depth\{name="([^"]+)"\}', text))
            return got if "deployment" in got else None

        return until("the controllers' queues", names)

    def classes(srv: Server) -> list[str]:
        body = srv.json("GET", "/apis/storage.k8s.io/v1/storageclasses")[1]
        return [c["metadata"]["name"] for c in body["items"]]

    assert {"servicelb", "local-path-provisioner"} <= queues(server)
    assert "local-path" in classes(server)
    extra = ("--disable", "servicelb", "--disable", "local-storage", "--disable", "traefik")
    srv = Server(tmp_path_factory.mktemp("disable"), extra=extra)
    srv.start()
    try:
        got = queues(srv)
        assert "servicelb" not in got and "local-path-provisioner" not in got, got
        assert "persistentvolume-binder" in got
        assert classes(srv) == []
        assert "nothing to disable" in srv.log.read_text()
    finally:
        assert srv.stop() == 0
    bad = subprocess.run([CORRAL, "server", "--disable", "coredns-nope"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "'coredns-nope' is not one of" in bad.stderr, bad.stderr


def test_daemonset_one_pod_per_node_and_rolling_update(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    nodes = [f"{ns}-a", f"{ns}-b", f"{ns}-other"]
    for n in nodes:
        role = "other" if n.endswith("other") else ns
        k.run(
            "create",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": n, "labels": {"role": role}},
                }
            ),
        )
    try:
        ds = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"role": ns},
                        "containers": [{"name": "c", "image": "agent:1"}],
                    },
                },
            },
        }
        k.run("-n", ns, "create", "-f", "-", input=json.dumps(ds))
        k.run("-n", ns, "rollout", "status", "daemonset/agent", "--timeout=90s")

        def pinned() -> dict[str, str]:
            out = {}
            for p in live_pods(k, ns, "app=agent"):
                terms = p["spec"]["affinity"]["nodeAffinity"][
                    "requiredDuringSchedulingIgnoredDuringExecution"
                ]["nodeSelectorTerms"]
                out[terms[0]["matchFields"][0]["values"][0]] = p["spec"]["containers"][0]["image"]
            return out

        assert pinned() == {nodes[0]: "agent:1", nodes[1]: "agent:1"}
        st = get(k, ns, "daemonset", "agent")["status"]
        assert st["desiredNumberScheduled"] == 2 and st["numberReady"] == 2
        k.run("-n", ns, "set", "image", "daemonset/agent", "c=agent:2")
        k.run("-n", ns, "rollout", "status", "daemonset/agent", "--timeout=90s")
        until("both pods replaced", lambda: pinned() == {nodes[0]: "agent:2", nodes[1]: "agent:2"})
        history = k.run("-n", ns, "rollout", "history", "daemonset/agent").stdout
        assert [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()] == ["1", "2"]
    finally:
        for n in nodes:
            k.run("delete", "node", n, check=False)


def test_statefulset_ordered_stable_names_and_rolling_update(kubectl: Kubectl, ns: str) -> None:
    k = kubectl
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "db:1"}]},
            },
        },
    }
    k.run("-n", ns, "create", "-f", "-", input=json.dumps(sts))

    def ready(p: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])
        )

    # Sampled while they come up: db-N never exists before db-(N-1) is ready.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pods = {p["metadata"]["name"]: p for p in live_pods(k, ns, "app=db")}
        for n in range(1, 3):
            if f"db-{n}" in pods:
                assert f"db-{n - 1}" in pods and ready(pods[f"db-{n - 1}"]), sorted(pods)
        if len(pods) == 3 and all(ready(p) for p in pods.values()):
            break
        time.sleep(0.05)
    k.run("-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")
    pods = {p["metadata"]["name"]: p for p in live_pods(k, ns, "app=db")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    assert pods["db-1"]["spec"]["hostname"] == "db-1" and pods["db-1"]["spec"]["subdomain"] == "db"

    k.run("-n", ns, "set", "image", "statefulset/db", "c=db:2")
    k.run("-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")
    until(
        "every pod at the new image",
        lambda: (
            sorted(p["spec"]["containers"][0]["image"] for p in live_pods(k, ns, "app=db"))
            == ["db:2"] * 3
        ),
    )
    st = get(k, ns, "statefulset", "db")["status"]
    assert st["currentRevision"] == st["updateRevision"] and st["updatedReplicas"] == 3

    k.run("-n", ns, "scale", "statefulset/db", "--replicas=1")
    until(
        "scaled down to db-0",
        lambda: [p["metadata"]["name"] for p in live_pods(k, ns, "app=db")] == ["db-0"],
    )


def test_collector_takes_other_kinds_owned_by_a_deleted_owner(
    server: Server, kubectl: Kubectl, ns: str
) -> None:
    k = kubectl
    k.run("-n", ns, "create", "-f", "-", input=deployment("own", 0, "nginx:1"))
    uid = get(k, ns, "deployment", "own")["metadata"]["uid"]
    ref = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "own", "uid": uid}]
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "ownerReferences": ref},
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r", "ownerReferences": ref},
        "rules": [],
    }
    keep = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}}
    for obj in (cm, role, keep):
        k.run("-n", ns, "create", "-f", "-", input=json.dumps(obj))
    k.run("-n", ns, "delete", "deployment", "own")
    until(
        "the owned ConfigMap and Role collected",
        lambda: (
            k.run("-n", ns, "get", "configmap", "cfg", check=False).returncode != 0
            and k.run("-n", ns, "get", "role", "r", check=False).returncode != 0
        ),
    )
    assert k.run("-n", ns, "get", "configmap", "mine", check=False).returncode == 0


def test_a_pod_bound_to_a_node_with_a_noexecute_taint_is_evicted(tmp_path: Path) -> None:
    """The taint manager's other half: a node tainted NoExecute (here by its administrator)
    gets a pod that does not tolerate it: the pod is evicted as soon as it is bound, not at
    the node's next periodic check (an hour away here)."""
    server = Server(tmp_path / "srv", extra=("--node-monitor-grace-period", "3600"))
    server.start()
    try:
        node = "drained"
        taint = {"key": "example.com/drain", "effect": "NoExecute"}
        code, _ = server.json(
            "POST", "/api/v1/nodes", {"metadata": {"name": node}, "spec": {"taints": [taint]}}
        )
        assert code == 201
        # settled: the node IPAM's write of its podCIDR (a node change re-checks the node)
        until(
            "the node's podCIDR",
            lambda: server.json("GET", f"/api/v1/nodes/{node}")[1]["spec"].get("podCIDR"),
        )
        code, body = server.json(
            "POST",
            "/api/v1/namespaces/default/pods",
            {
                "metadata": {"name": "p"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            },
        )
        assert code == 201, body
        until(
            "the pod evicted",
            lambda: bool(
                server.json("GET", "/api/v1/namespaces/default/pods/p")[1]["metadata"].get(
                    "deletionTimestamp"
                )
            ),
        )
    finally:
        assert server.stop() == 0
