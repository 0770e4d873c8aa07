"""Persistent volumes end to end on a two-node cluster on one machine (testkit.cluster, ONE
cluster for the module), driven by kubectl as a k3s user would: a claim of the default class
``local-path`` (WaitForFirstConsumer) gets its volume on the node its first pod was scheduled
to, a directory in that agent's data dir; a file written by one pod is read by the next on the
same claim (which the scheduler sends to the same node); a read-only claim mount refuses
writes; deleting the claim deletes the volume and its directory; a StatefulSet's
volumeClaimTemplates give each pod its claim, kept when the set scales down; a pod whose claim
is missing stays Pending, and one sent to a node directly waits there with FailedMount."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.cluster import IMAGE, image_dir, leftovers, one_machine_cluster
from tests.integration.test_cluster import Cluster, until

pytestmark = [pytest.mark.root, pytest.mark.network]

WAIT = 180.0  # seconds: a bound for a condition, never an assertion on speed


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tmp = tmp_path_factory.mktemp("storage-e2e")
    images = image_dir(rootfs, tmp / "images", IMAGE)
    with one_machine_cluster(tmp, nodes=2, images=images) as state:
        yield Cluster(state, tmp / "home")
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


class Space:
    def __init__(self, cluster: Cluster, name: str) -> None:
        self.c = cluster
        self.name = name

    def run(self, *args: str, **kw: Any) -> Any:
        return self.c.k.run("-n", self.name, *args, **kw)

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj))

    def finished(self, name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            p = self.get("pod", name)
            return p if p["status"].get("phase") in ("Succeeded", "Failed") else None

        try:
            return until(f"pod {name} finished", done, WAIT)
        except AssertionError:
            raise AssertionError(json.dumps(self.get("pod", name)["status"])) from None

    def events(self, name: str) -> list[dict[str, Any]]:
        return list(self.get("events", "--field-selector", f"involvedObject.name={name}")["items"])


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Space]:
    name = request.node.name.removeprefix("test_")[:20].rstrip("_").replace("_", "-")
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    cluster.k.run("create", "namespace", name)
    yield Space(cluster, name)
    cluster.k.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def claim(name: str, size: str = "64Mi") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def pod(name: str, claim_name: str, script: str, read_only: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [
                {
                    "name": "data",
                    "persistentVolumeClaim": {"claimName": claim_name, "readOnly": read_only},
                }
            ],
        },
    }


def node_dir(cluster: Cluster, node: str) -> Path:
    return Path(next(n.data_dir for n in cluster.state.nodes if n.name == node))


def test_a_claim_keeps_its_data_across_pods_and_goes_with_its_volume(ns: Space) -> None:
    c = ns.c
    ns.apply(claim("data"))
    pvc = ns.get("pvc", "data")
    assert pvc["spec"]["storageClassName"] == "local-path"
    # WaitForFirstConsumer: no volume before a pod uses the claim
    assert pvc["status"]["phase"] == "Pending"
    until(
        "the WaitForFirstConsumer event",
        lambda: any(e["reason"] == "WaitForFirstConsumer" for e in ns.events("data")),
        WAIT,
    )
    ns.apply(pod("writer", "data", "echo kept > /data/f && echo written"))
    writer = ns.finished("writer")
    assert writer["status"]["phase"] == "Succeeded", writer["status"]
    node = writer["spec"]["nodeName"]
    pvc = ns.get("pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    pv_name = pvc["spec"]["volumeName"]
    assert pv_name == f"pvc-{pvc['metadata']['uid']}"
    pv = c.get("pv", pv_name)
    where = node_dir(c, node) / "storage" / pv_name
    assert pv["spec"]["hostPath"]["path"] == str(where)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "values"
    ] == [node]
    assert (where / "f").read_text() == "kept\n"
    header = c.k.run("get", "pv", pv_name).stdout.splitlines()
    assert header[0].split()[:8] == [
        "NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM",
    ]  # fmt: skip
    assert header[1].split()[1:6] == ["64Mi", "RWO", "Delete", "Bound", f"{ns.name}/data"]
    row = ns.run("get", "pvc", "data").stdout.splitlines()[1].split()
    assert row[:6] == ["data", "Bound", pv_name, "64Mi", "RWO", "local-path"]

    ns.run("delete", "pod", "writer")
    # the next pod on the claim goes where its volume is, and reads what the first wrote
    ns.apply(pod("reader", "data", "cat /data/f"))
    reader = ns.finished("reader")
    assert reader["status"]["phase"] == "Succeeded", reader["status"]
    assert reader["spec"]["nodeName"] == node
    assert ns.run("logs", "reader").stdout == "kept\n"
    # readOnly in the claim's volume source: the mount refuses writes
    ns.apply(
        pod(
            "ro",
            "data",
            "(echo x > /data/g) 2>/dev/null && echo wrote || echo refused",
            read_only=True,
        )
    )
    assert ns.finished("ro")["status"]["phase"] == "Succeeded"
    assert ns.run("logs", "ro").stdout == "refused\n"
    assert not (where / "g").exists()

    # the claim is held while a pod that is not finished uses it (pvc-protection)
    ns.apply(pod("holder", "data", "sleep 3600"))
    until("holder running", lambda: ns.get("pod", "holder")["status"].get("phase") == "Running")
    ns.run("delete", "pvc", "data", "--wait=false")
    assert ns.get("pvc", "data")["metadata"]["deletionTimestamp"]
    assert "kubernetes.io/pvc-protection" in ns.get("pvc", "data")["metadata"]["finalizers"]
    assert c.get("pv", pv_name)["status"]["phase"] == "Bound"
    ns.run("delete", "pod", "holder", "reader", "ro")
    # then the claim goes, its Delete volume too, and the agent removes the directory
    until(
        "the claim gone",
        lambda: not ns.run("get", "pvc", "data", "--ignore-not-found", "-o", "name").stdout,
        WAIT,
    )
    until(
        "the volume gone",
        lambda: not c.k.run("get", "pv", pv_name, "--ignore-not-found", "-o", "name").stdout,
        WAIT,
    )
    until("the directory removed", lambda: not where.exists(), WAIT)


def test_a_statefulset_claim_per_pod_kept_on_scale_down(ns: Space) -> None:
    c = ns.c
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "c",
                            "image": IMAGE,
                            "command": [
                                "sh",
                                "-c",
                                "hostname >> /var/db/who; trap 'exit 0' TERM;"
                                " while :; do sleep 1; done",
                            ],  # fmt: skip
                            "volumeMounts": [{"name": "state", "mountPath": "/var/db"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "state", "labels": {"tier": "db"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "32Mi"}},
                    },
                }
            ],
        },
    }
    ns.apply(sts)
    ns.run("rollout", "status", "statefulset/db", f"--timeout={WAIT:.0f}s", timeout=WAIT + 10)
    claims = {p["metadata"]["name"]: p for p in ns.get("pvc")["items"]}
    assert sorted(claims) == ["state-db-0", "state-db-1"]
    for name, pvc in claims.items():
        assert pvc["status"]["phase"] == "Bound"
        assert pvc["metadata"]["labels"] == {"app": "db", "tier": "db"}
        p = ns.get("pod", name.removeprefix("state-"))
        assert p["spec"]["volumes"][0] == {
            "name": "state",
            "persistentVolumeClaim": {"claimName": name},
        }
        where = Path(c.get("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
        assert where.parent == node_dir(c, p["spec"]["nodeName"]) / "storage"
        assert (where / "who").read_text() == f"{p['metadata']['name']}\n"
    ns.run("scale", "statefulset/db", "--replicas=1")
    until("db-1 gone", lambda: len(ns.get("pods")["items"]) == 1, WAIT)
    # Retain (the default policy): the claim of the removed pod stays, and so does its data
    assert sorted(p["metadata"]["name"] for p in ns.get("pvc")["items"]) == [
        "state-db-0",
        "state-db-1",
    ]
    ns.run("scale", "statefulset/db", "--replicas=2")
    ns.run("rollout", "status", "statefulset/db", f"--timeout={WAIT:.0f}s", timeout=WAIT + 10)
    pvc = ns.get("pvc", "state-db-1")
    where = Path(c.get("pv", pvc["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    assert (where / "who").read_text() == "db-1\ndb-1\n"  # the same volume again
    ns.run("delete", "statefulset", "db")
    until("the set's pods gone", lambda: not ns.get("pods")["items"], WAIT)
    ns.run("delete", "pvc", "--all")
    until("the directories removed", lambda: not where.exists(), WAIT)


def test_a_pod_whose_claim_is_missing_waits(ns: Space) -> None:
    ns.apply(pod("lost", "nope", "true"))

    def failed_scheduling() -> str:
        for e in ns.events("lost"):
            if e["reason"] == "FailedScheduling":
                return str(e["message"])
        return ""

    message = until("FailedScheduling", failed_scheduling, WAIT)
    assert message == (
        '0/2 nodes are available: persistentvolumeclaim "nope" not found. preemption: 0/2 nodes'
        " are available: 2 Preemption is not helpful for scheduling."
    )
    assert ns.get("pod", "lost")["status"]["phase"] == "Pending"
    # sent to a node directly: the kubelet waits for the claim (FailedMount)
    direct = pod("direct", "nope", "true")
    direct["spec"]["nodeName"] = ns.c.state.nodes[0].name
    ns.apply(direct)

    def failed_mount() -> str:
        for e in ns.events("direct"):
            if e["reason"] == "FailedMount":
                return str(e["message"])
        return ""

    assert 'persistentvolumeclaims "nope" not found' in until("FailedMount", failed_mount, WAIT)
    st = ns.get("pod", "direct")["status"]
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    # the claim made, the pods go on
    ns.apply(claim("nope"))
    assert ns.finished("lost")["status"]["phase"] == "Succeeded"


def test_volumes_made_by_hand_bind_and_are_retained(ns: Space, tmp_path: Path) -> None:
    c = ns.c
    suffix = ns.name[-6:]
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "motd").write_text("hello\n")
    disk = tmp_path / "disk"
    disk.mkdir()
    target = c.state.nodes[1].name
    c.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": f"local-{suffix}"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [target]}
    ]}]}}  # fmt: skip
    for name, spec in (
        (f"manual-{suffix}", {"hostPath": {"path": str(shared)}, "storageClassName": "manual"}),
        (
            f"disk-{suffix}",
            {
                "local": {"path": str(disk)},
                "storageClassName": f"local-{suffix}",
                "nodeAffinity": affinity,
            },
        ),  # fmt: skip
    ):
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                         **spec},
            }
        )  # fmt: skip
    try:
        manual = claim("manual")
        manual["spec"]["storageClassName"] = "manual"
        ns.apply(manual)
        # Immediate (no such class: no provisioner, no waiting): bound at once, no pod needed
        until("manual bound", lambda: ns.get("pvc", "manual")["status"]["phase"] == "Bound")
        assert ns.get("pvc", "manual")["spec"]["volumeName"] == f"manual-{suffix}"
        ns.apply(pod("motd", "manual", "cat /data/motd"))
        assert ns.finished("motd")["status"]["phase"] == "Succeeded"
        assert ns.run("logs", "motd").stdout == "hello\n"
        local = claim("local")
        local["spec"]["storageClassName"] = f"local-{suffix}"
        ns.apply(local)
        ns.apply(pod("on-disk", "local", "echo mine > /data/f"))
        done = ns.finished("on-disk")
        assert done["status"]["phase"] == "Succeeded"
        assert done["spec"]["nodeName"] == target  # where its volume is
        assert (disk / "f").read_text() == "mine\n"
        # Retain: the claim deleted, the volume is Released and stays, its files too
        ns.run("delete", "pod", "motd", "on-disk")
        ns.run("delete", "pvc", "manual", "local")
        until(
            "released",
            lambda: c.get("pv", f"manual-{suffix}")["status"]["phase"] == "Released",
            WAIT,
        )
        assert (shared / "motd").exists() and (disk / "f").exists()
    finally:
        c.k.run("delete", "pv", f"manual-{suffix}", f"disk-{suffix}", "--ignore-not-found",
                "--wait=false")  # fmt: skip
        c.k.run("delete", "sc", f"local-{suffix}", "--ignore-not-found")
    until(
        "the volumes deleted (pv-protection let go)",
        lambda: (
            not c.k.run(
                "get",
                "pv",
                f"manual-{suffix}",
                f"disk-{suffix}",
                "--ignore-not-found",
                "-o",
                "name",
            ).stdout
        ),  # fmt: skip
        WAIT,
    )
