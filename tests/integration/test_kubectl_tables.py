"""What ``kubectl get`` prints for every kind ``corral server`` serves: the header line and a
row of each, read as kubectl 1.32 and 1.20 print them for kube-apiserver 1.32 (its server-side
Table columns: names, ``-o wide`` columns, placeholders, pod STATUS reasons)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.kubeserver import KUBECTL_VERSIONS, Kubectl, Server, api_only_server

VERSIONS = KUBECTL_VERSIONS
AGE = re.compile(r"^\d+s$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("kubectl-tables")) as srv:
        yield srv


def _ago(seconds: int, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return (now - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cells(out: str) -> list[dict[str, str]]:
    """kubectl's aligned columns as {HEADER: cell}, cut where each header starts (cells may
    be empty or hold spaces, so splitting on blanks would not do)."""
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {n: ln[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for ln in lines[1:]
    ]


def _create(server: Server, path: str, obj: dict[str, Any], status: Any = None) -> None:
    code, made = server.json("POST", path, obj)
    assert code == 201, made["message"]
    if status is not None:
        made["status"] = status
        code, got = server.json("PUT", f"{path}/{made['metadata']['name']}/status", made)
        assert code == 200, got


def _ns(kubectl: Kubectl, server: Server, name: str) -> str:
    ns = f"{name}-v{kubectl.version.replace('.', '')}"
    code, _ = server.json("GET", f"/api/v1/namespaces/{ns}")
    if code == 404:
        kubectl.run("create", "namespace", ns)
    return ns


def _get(kubectl: Kubectl, ns: str, *args: str) -> tuple[str, list[dict[str, str]]]:
    out = kubectl.run("get", *args, "-n", ns).stdout
    return out.splitlines()[0].split(), _cells(out)


TEMPLATE = {
    "metadata": {"labels": {"app": "w"}},
    "spec": {
        "containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}],
        "nodeSelector": {"disk": "ssd"},
    },
}
SELECTOR = {"matchLabels": {"app": "w"}}


def test_workload_tables(kubectl: Kubectl, server: Server) -> None:
    ns = _ns(kubectl, server, "wl")
    apps = f"/apis/apps/v1/namespaces/{ns}"
    batch = f"/apis/batch/v1/namespaces/{ns}"
    _create(
        server,
        f"{apps}/daemonsets",
        {"metadata": {"name": "ds"}, "spec": {"selector": SELECTOR, "template": TEMPLATE}},
        {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
            "numberMisscheduled": 0,
        },
    )
    header, rows = _get(kubectl, ns, "daemonsets", "-o", "wide")
    assert (
        header
        == (
            "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE CONTAINERS IMAGES"
            " SELECTOR"
        ).split()
    )
    row = rows[0]
    assert AGE.match(row.pop("AGE"))
    assert row == {
        "NAME": "ds",
        "DESIRED": "3",
        "CURRENT": "2",
        "READY": "1",
        "UP-TO-DATE": "2",
        "AVAILABLE": "1",
        "NODE SELECTOR": "disk=ssd",
        "CONTAINERS": "a,b",
        "IMAGES": "nginx:1,busybox",
        "SELECTOR": "app=w",
    }

    _create(
        server,
        f"{apps}/statefulsets",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 3,
                "serviceName": "db",
                "selector": SELECTOR,
                "template": TEMPLATE,
            },
        },
        {"replicas": 2, "readyReplicas": 2},
    )
    header, rows = _get(kubectl, ns, "statefulsets")
    assert header == ["NAME", "READY", "AGE"]
    assert rows[0]["READY"] == "2/3"

    now = datetime.now(UTC)
    _create(
        server,
        f"{batch}/jobs",
        {
            "metadata": {"name": "done"},
            "spec": {
                "completions": 2,
                "template": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}},
            },
        },
        {
            "succeeded": 2,
            "startTime": _ago(302, now),
            "completionTime": _ago(0, now),
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"},
            ],
        },
    )
    _create(
        server,
        f"{batch}/jobs",
        {
            "metadata": {"name": "many"},
            "spec": {
                "parallelism": 3,
                "template": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}},
            },
        },
    )
    header, rows = _get(kubectl, ns, "jobs", "-o", "wide")
    # kubectl 1.20 against kube-apiserver 1.32 shows the same columns: the server decides
    assert header == "NAME STATUS COMPLETIONS DURATION AGE CONTAINERS IMAGES SELECTOR".split()
    done, many = rows
    assert (done["NAME"], done["STATUS"], done["COMPLETIONS"]) == ("done", "Complete", "2/2")
    assert done["DURATION"] == "5m2s"
    assert done["SELECTOR"].startswith("batch.kubernetes.io/controller-uid=")
    assert (many["STATUS"], many["COMPLETIONS"], many["DURATION"]) == ("Running", "0/1 of 3", "")

    _create(
        server,
        f"{batch}/cronjobs",
        {
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "timeZone": "Etc/UTC",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            **TEMPLATE,
                            "spec": {**TEMPLATE["spec"], "restartPolicy": "OnFailure"},
                        }
                    }
                },
            },
        },
        {"lastScheduleTime": _ago(3 * 3600 + 120), "active": [{"name": "x", "namespace": ns}]},
    )
    header, rows = _get(kubectl, ns, "cronjobs")
    assert header == "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE".split()
    row = rows[0]
    assert AGE.match(row.pop("AGE"))
    assert row == {
        "NAME": "nightly",
        "SCHEDULE": "0 3 * * *",
        "TIMEZONE": "Etc/UTC",
        "SUSPEND": "False",
        "ACTIVE": "1",
        "LAST SCHEDULE": "3h2m",
    }

    _create(
        server,
        f"{apps}/controllerrevisions",
        {
            "metadata": {
                "name": "ds-5d8f",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "DaemonSet",
                        "name": "ds",
                        "uid": "0b9a8c4e-1111-4222-8333-444455556666",
                        "controller": True,
                    }
                ],
            },
            "revision": 4,
            "data": {},
        },
    )
    header, rows = _get(kubectl, ns, "controllerrevisions")
    assert header == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert (rows[0]["CONTROLLER"], rows[0]["REVISION"]) == ("daemonset.apps/ds", "4")

    _create(
        server,
        f"{apps}/replicasets",
        {
            "metadata": {"name": "web-1"},
            "spec": {"replicas": 3, "selector": SELECTOR, "template": TEMPLATE},
        },
        {"replicas": 2, "readyReplicas": 1},
    )
    header, rows = _get(kubectl, ns, "replicasets", "-o", "wide")
    assert header == "NAME DESIRED CURRENT READY AGE CONTAINERS IMAGES SELECTOR".split()
    assert [rows[0][k] for k in ("DESIRED", "CURRENT", "READY", "IMAGES")] == [
        "3",
        "2",
        "1",
        "nginx:1,busybox",
    ]
    _create(
        server,
        f"{apps}/deployments",
        {"metadata": {"name": "web"}, "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    )
    header, rows = _get(kubectl, ns, "deployments", "-o", "wide")
    assert header == "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR".split()
    assert [rows[0][k] for k in ("READY", "UP-TO-DATE", "AVAILABLE", "SELECTOR")] == [
        "0/1",
        "0",
        "0",
        "app=w",
    ]


def _pod(name: str, status: dict[str, Any], init: int = 0, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if init:
        spec["initContainers"] = [{"name": f"i{n}", "image": "busybox"} for n in range(init)]
    return {"metadata": {"name": name, **meta}, "spec": spec}, status


def _cs(name: str, state: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "nginx",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
        **kw,
    }


def test_pod_status_column(kubectl: Kubectl, server: Server) -> None:
    ns = _ns(kubectl, server, "pods")
    waiting = {"waiting": {"reason": "PodInitializing"}}
    cases = {
        "creating": ("ContainerCreating", [_cs("c", {"waiting": {"reason": "ContainerCreating"}})]),
        "pull": ("ErrImagePull", [_cs("c", {"waiting": {"reason": "ErrImagePull"}})]),
        "crash": (
            "CrashLoopBackOff",
            [
                _cs(
                    "c",
                    {"waiting": {"reason": "CrashLoopBackOff"}},
                    restartCount=5,
                    lastState={"terminated": {"exitCode": 1, "finishedAt": _ago(3 * 3600 + 20)}},
                )
            ],
        ),
        "done": ("Completed", [_cs("c", {"terminated": {"exitCode": 0, "reason": "Completed"}})]),
        "exit": ("ExitCode:3", [_cs("c", {"terminated": {"exitCode": 3}})]),
    }
    for name, (_, statuses) in cases.items():
        phase = "Succeeded" if name == "done" else "Pending"
        _create(
            server,
            f"/api/v1/namespaces/{ns}/pods",
            {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            {"phase": phase, "containerStatuses": statuses},
        )
    _create(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "init"},
            "spec": {
                "initContainers": [
                    {"name": "i0", "image": "busybox"},
                    {"name": "i1", "image": "busybox"},
                ],
                "containers": [{"name": "c", "image": "nginx"}],
            },
        },
        {
            "phase": "Pending",
            "initContainerStatuses": [
                _cs("i0", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
                _cs("i1", {"running": {"startedAt": _ago(3)}}),
            ],
            "containerStatuses": [_cs("c", waiting)],
        },
    )
    _create(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "up"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
        },
        {
            "phase": "Running",
            "podIP": "10.1.2.3",
            "podIPs": [{"ip": "10.1.2.3"}],
            "containerStatuses": [_cs("c", {"running": {"startedAt": _ago(9)}}, ready=True)],
        },
    )
    _create(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "bye", "finalizers": ["example.com/hold"]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        },
    )
    code, _ = server.json("DELETE", f"/api/v1/namespaces/{ns}/pods/bye")
    assert code == 200
    header, rows = _get(kubectl, ns, "pods", "-o", "wide")
    assert header == "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES".split()
    by_name = {r["NAME"]: r for r in rows}
    for name, (reason, _) in cases.items():
        assert by_name[name]["STATUS"] == reason, by_name[name]
    assert by_name["crash"]["RESTARTS"] == "5 (3h ago)"
    assert by_name["init"]["STATUS"] == "Init:1/2"
    assert by_name["bye"]["STATUS"] == "Terminating"
    up = by_name["up"]
    assert AGE.match(up.pop("AGE"))
    assert up == {
        "NAME": "up",
        "READY": "1/1",
        "STATUS": "Running",
        "RESTARTS": "0",
        "IP": "10.1.2.3",
        "NODE": "n1",
        "NOMINATED NODE": "<none>",
        "READINESS GATES": "<none>",
    }
    code, pod = server.json("GET", f"/api/v1/namespaces/{ns}/pods/bye")
    pod["metadata"]["finalizers"] = []
    assert server.json("PUT", f"/api/v1/namespaces/{ns}/pods/bye", pod)[0] == 200


def test_core_tables(kubectl: Kubectl, server: Server) -> None:
    ns = _ns(kubectl, server, "core")
    core = f"/api/v1/namespaces/{ns}"
    _create(
        server,
        f"{core}/events",
        {
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns, "fieldPath": "x"},
            "reason": "Pulled",
            "message": "  Pulled image  ",
            "type": "Normal",
            "count": 4,
            "firstTimestamp": _ago(3600 * 50),
            "lastTimestamp": _ago(15 * 60),
            "source": {"component": "kubelet", "host": "n1"},
        },
    )
    header, rows = _get(kubectl, ns, "events")
    assert " ".join(header) == "LAST SEEN TYPE REASON OBJECT MESSAGE"
    assert rows[0] == {
        "LAST SEEN": "15m",
        "TYPE": "Normal",
        "REASON": "Pulled",
        "OBJECT": "pod/web",
        "MESSAGE": "Pulled image",
    }
    header, rows = _get(kubectl, ns, "events", "-o", "wide")
    assert " ".join(header) == (
        "LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE FIRST SEEN COUNT NAME"
    )
    assert [rows[0][k] for k in ("SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME")] == [
        "x",
        "kubelet, n1",
        "2d2h",
        "4",
        "web.1",
    ]
    _create(server, f"{core}/serviceaccounts", {"metadata": {"name": "robot"}})
    header, rows = _get(kubectl, ns, "serviceaccounts", "robot")
    assert header == ["NAME", "SECRETS", "AGE"] and rows[0]["SECRETS"] == "0"
    _create(
        server,
        f"{core}/endpoints",
        {
            "metadata": {"name": "web"},
            "subsets": [
                {
                    "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 4)],
                    "ports": [{"port": 80}, {"name": "b", "port": 81}],
                }
            ],
        },
    )
    _create(server, f"{core}/endpoints", {"metadata": {"name": "empty"}})
    header, rows = _get(kubectl, ns, "endpoints")
    assert header == ["NAME", "ENDPOINTS", "AGE"]
    assert {r["NAME"]: r["ENDPOINTS"] for r in rows} == {
        "empty": "<none>",
        "web": "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more...",
    }
    _create(
        server,
        f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
        {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "node-a_1234"}},
    )
    header, rows = _get(kubectl, ns, "leases")
    assert header == ["NAME", "HOLDER", "AGE"] and rows[0]["HOLDER"] == "node-a_1234"
    _create(
        server,
        f"{core}/services",
        {
            "metadata": {"name": "lb"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "w"},
                "ports": [
                    {"name": "h", "port": 80},
                    {"name": "d", "port": 53, "protocol": "UDP"},
                ],
            },
        },
    )
    header, rows = _get(kubectl, ns, "services", "-o", "wide")
    assert header == "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR".split()
    row = rows[0]
    assert (row["TYPE"], row["EXTERNAL-IP"], row["SELECTOR"]) == (
        "LoadBalancer",
        "<pending>",
        "app=w",
    )
    assert re.fullmatch(r"80:\d+/TCP,53:\d+/UDP", row["PORT(S)"]), row
    _create(
        server,
        f"{core}/replicationcontrollers",
        {
            "metadata": {"name": "rc"},
            "spec": {"replicas": 2, "selector": {"app": "w"}, "template": TEMPLATE},
        },
    )
    header, rows = _get(kubectl, ns, "rc", "-o", "wide")
    assert header == "NAME DESIRED CURRENT READY AGE CONTAINERS IMAGES SELECTOR".split()
    assert [rows[0][k] for k in ("DESIRED", "CURRENT", "READY", "SELECTOR")] == [
        "2",
        "0",
        "0",
        "app=w",
    ]


def test_kubectl_events_sorted(kubectl: Kubectl, server: Server) -> None:
    """``kubectl events`` (1.32) sorts client-side by last timestamp, from the events' JSON."""
    if kubectl.version != "1.32":
        pytest.skip("kubectl events is new in 1.26")
    ns = _ns(kubectl, server, "evs")
    for name, ago in (("new", 60), ("old", 7200)):
        _create(
            server,
            f"/api/v1/namespaces/{ns}/events",
            {
                "metadata": {"name": name},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
                "reason": "Seen",
                "message": name,
                "type": "Warning",
                "firstTimestamp": _ago(ago),
                "lastTimestamp": _ago(ago),
            },
        )
    out = kubectl.run("events", "-n", ns).stdout
    assert [r["OBJECT"] for r in _cells(out)] == ["Pod/old", "Pod/new"], out
    json.loads(kubectl.run("get", "events", "-n", ns, "-o", "json").stdout)
