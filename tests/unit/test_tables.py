"""The pure row functions of orchestrator/apiserver/tables.py: the cells kube-apiserver 1.32's
printers give for each case (pod STATUS reasons, job status and completions, selectors,
endpoints, events, placeholders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.apiserver.tables import (
    TABLES,
    format_endpoints,
    human_duration,
    job_status,
    pod_status,
    selector_string,
    table,
)

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def ago(seconds: int) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (302, "5m2s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 7 * 60 + 5, "3h7m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (53 * 3600, "2d5h"),
        (48 * 3600, "2d"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def cs(name: str, state: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": 0, "state": state, **kw}


def pod(
    statuses: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    phase: str = "Pending",
    containers: int = 1,
    init_specs: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}"} for i in range(containers)]}
    if init is not None:
        spec["initContainers"] = init_specs or [{"name": c["name"]} for c in init]
    st: dict[str, Any] = {"phase": phase, "containerStatuses": statuses, **status}
    if init is not None:
        st["initContainerStatuses"] = init
    return {"metadata": {"name": "p", "creationTimestamp": ago(60)}, "spec": spec, "status": st}


RUNNING = {"running": {"startedAt": ago(10)}}
WAIT_INIT = {"waiting": {"reason": "PodInitializing"}}
DONE = {"terminated": {"exitCode": 0, "reason": "Completed"}}


@pytest.mark.parametrize(
    ("obj", "cells"),
    [
        (pod([]), ("0/1", "Pending", "0")),
        (
            pod([cs("c0", {"waiting": {"reason": "ContainerCreating"}})]),
            ("0/1", "ContainerCreating", "0"),
        ),
        (pod([cs("c0", {"waiting": {"reason": "ErrImagePull"}})]), ("0/1", "ErrImagePull", "0")),
        (
            pod(
                [
                    cs(
                        "c0",
                        {"waiting": {"reason": "CrashLoopBackOff"}},
                        restartCount=4,
                        lastState={"terminated": {"exitCode": 1, "finishedAt": ago(302)}},
                    )
                ],
                phase="Running",
            ),
            ("0/1", "CrashLoopBackOff", "4 (5m2s ago)"),
        ),
        (pod([cs("c0", RUNNING, ready=True)], phase="Running"), ("1/1", "Running", "0")),
        (pod([cs("c0", RUNNING)], phase="Running"), ("0/1", "Running", "0")),
        (pod([cs("c0", DONE)], phase="Succeeded"), ("0/1", "Completed", "0")),
        (
            pod([cs("c0", {"terminated": {"exitCode": 2}})], phase="Failed"),
            ("0/1", "ExitCode:2", "0"),
        ),
        (
            pod([cs("c0", {"terminated": {"exitCode": 0, "signal": 9}})], phase="Failed"),
            ("0/1", "Signal:9", "0"),
        ),
        (  # one container done, another still running and ready: Running again
            pod(
                [cs("c0", RUNNING, ready=True), cs("c1", DONE)],
                phase="Running",
                containers=2,
                conditions=[{"type": "Ready", "status": "True"}],
            ),
            ("1/2", "Running", "0"),
        ),
        (
            pod([cs("c0", RUNNING, ready=True), cs("c1", DONE)], phase="Running", containers=2),
            ("1/2", "NotReady", "0"),
        ),
        (
            pod([cs("c0", WAIT_INIT)], init=[cs("i0", RUNNING)]),
            ("0/1", "Init:0/1", "0"),
        ),
        (
            pod([cs("c0", WAIT_INIT)], init=[cs("i0", DONE), cs("i1", WAIT_INIT)]),
            ("0/1", "Init:1/2", "0"),
        ),
        (
            pod(
                [cs("c0", WAIT_INIT)],
                init=[cs("i0", {"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=3)],
            ),
            ("0/1", "Init:CrashLoopBackOff", "3"),
        ),
        (
            pod([cs("c0", WAIT_INIT)], init=[cs("i0", {"terminated": {"exitCode": 7}})]),
            ("0/1", "Init:ExitCode:7", "0"),
        ),
        (
            pod(
                [cs("c0", WAIT_INIT)],
                init=[cs("i0", {"terminated": {"exitCode": 1, "reason": "Error"}})],
            ),
            ("0/1", "Init:Error", "0"),
        ),
        (  # a sidecar (restartable init container) counts among the containers
            pod(
                [cs("c0", RUNNING, ready=True)],
                init=[cs("side", RUNNING, ready=True, started=True, restartCount=2)],
                init_specs=[{"name": "side", "restartPolicy": "Always"}],
                phase="Running",
                conditions=[{"type": "Initialized", "status": "True"}],
            ),
            ("2/2", "Running", "2"),
        ),
        (
            pod([], conditions=[{"type": "PodScheduled", "reason": "SchedulingGated"}]),
            ("0/1", "SchedulingGated", "0"),
        ),
        (pod([], reason="Evicted", phase="Failed"), ("0/1", "Evicted", "0")),
    ],
)
def test_pod_status(obj: dict[str, Any], cells: tuple[str, str, str]) -> None:
    assert pod_status(obj, NOW) == cells


def test_pod_terminating_and_unknown() -> None:
    p = pod([cs("c0", RUNNING, ready=True)], phase="Running")
    p["metadata"]["deletionTimestamp"] = ago(1)
    assert pod_status(p, NOW)[1] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert pod_status(p, NOW)[1] == "Unknown"
    done = pod([cs("c0", DONE)], phase="Succeeded")
    done["metadata"]["deletionTimestamp"] = ago(1)
    assert pod_status(done, NOW)[1] == "Completed"  # a finished pod is not Terminating


def row(resource: str, obj: dict[str, Any]) -> list[Any]:
    obj.setdefault("metadata", {}).setdefault("name", "x")
    obj["metadata"].setdefault("creationTimestamp", ago(90))
    columns, row_of = TABLES[resource]
    cells = row_of(obj, NOW)
    assert len(cells) == len(columns)
    return cells


def test_pod_row_wide_cells() -> None:
    p = pod([cs("c0", RUNNING, ready=True)], phase="Running")
    p["spec"]["readinessGates"] = [{"conditionType": "a"}, {"conditionType": "b"}]
    p["status"]["conditions"] = [{"type": "a", "status": "True"}]
    assert row("pods", p)[4:] == ["60s", "<none>", "<none>", "<none>", "1/2"]
    p["status"]["podIPs"] = [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]
    p["spec"]["nodeName"] = "n1"
    assert row("pods", p)[5:7] == ["fd00::1", "n1"]


@pytest.mark.parametrize(
    ("selector", "shown"),
    [
        (None, ""),
        ({}, ""),
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        (
            {
                "matchLabels": {"tier": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "zone", "operator": "NotIn", "values": ["x"]},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "old", "operator": "DoesNotExist"},
                ],
            },
            "env in (dev,prod),gpu,!old,tier=web,zone notin (x)",
        ),
    ],
)
def test_selector_string(selector: Any, shown: str) -> None:
    assert selector_string(selector) == shown


def test_job_cells() -> None:
    job: dict[str, Any] = {"spec": {"completions": 3}, "status": {"succeeded": 1}}
    assert row("jobs", job)[1:4] == ["Running", "1/3", ""]
    job["status"].update(startTime=ago(125))
    assert row("jobs", job)[3] == "2m5s"
    job["status"].update(completionTime=ago(5))
    assert row("jobs", job)[3] == "2m"
    assert row("jobs", {"spec": {"parallelism": 4}, "status": {}})[2] == "0/1 of 4"
    assert row("jobs", {"spec": {"parallelism": 1}, "status": {}})[2] == "0/1"
    assert row("jobs", {"spec": {}})[5:] == ["", "", "<none>"]
    for conds, shown in [
        ([{"type": "Complete", "status": "True"}], "Complete"),
        ([{"type": "Failed", "status": "True"}], "Failed"),
        ([{"type": "Complete", "status": "False"}], "Running"),
        ([{"type": "Suspended", "status": "True"}], "Suspended"),
        ([{"type": "FailureTarget", "status": "True"}], "FailureTarget"),
        ([{"type": "SuccessCriteriaMet", "status": "True"}], "SuccessCriteriaMet"),
    ]:
        assert job_status({"status": {"conditions": conds}}) == shown
    assert job_status({"metadata": {"deletionTimestamp": ago(1)}}) == "Terminating"


def test_cronjob_cells() -> None:
    cj = {"spec": {"schedule": "*/5 * * * *", "suspend": True}, "status": {}}
    assert row("cronjobs", cj)[1:7] == ["*/5 * * * *", "<none>", "True", 0, "<none>", "90s"]
    cj = {"spec": {"schedule": "@daily"}, "status": {"lastScheduleTime": ago(3 * 86400 + 7200)}}
    assert row("cronjobs", cj)[3:6] == ["<unset>", 0, "3d2h"]


def test_workload_cells() -> None:
    tmpl = {"spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "j"}]}}
    ds = {"spec": {"template": tmpl, "selector": {"matchLabels": {"app": "d"}}}, "status": {}}
    assert row("daemonsets", ds)[1:] == [0, 0, 0, 0, 0, "<none>", "90s", "a,b", "i:1,j", "app=d"]
    sts = {"spec": {"replicas": 3, "template": tmpl}, "status": {"readyReplicas": 1}}
    assert row("statefulsets", sts)[1:] == ["1/3", "90s", "a,b", "i:1,j"]
    deploy = {"spec": {"replicas": 2, "template": tmpl}, "status": {}}
    assert row("deployments", deploy)[1:] == ["0/2", 0, 0, "90s", "a,b", "i:1,j", ""]
    rc = {"kind": "ReplicationController", "spec": {"replicas": 2, "selector": {"app": "r"}}}
    assert row("replicationcontrollers", rc)[-1] == "app=r"
    assert row("replicasets", {"spec": {}})[-1] == "<none>"


def test_controller_revision_cells() -> None:
    def owner(api_version: str, kind: str, controller: bool = True) -> dict[str, Any]:
        ref = {"apiVersion": api_version, "kind": kind, "name": "o", "uid": "u"}
        return {"metadata": {"ownerReferences": [{**ref, "controller": controller}]}}

    assert row("controllerrevisions", {"revision": 2})[1:3] == ["<none>", 2]
    assert row("controllerrevisions", owner("apps/v1", "StatefulSet"))[1] == "statefulset.apps/o"
    assert row("controllerrevisions", owner("v1", "Pod"))[1] == "pod/o"
    assert row("controllerrevisions", owner("apps/v1", "DaemonSet", False))[1] == "<none>"


def test_event_cells() -> None:
    ev: dict[str, Any] = {
        "involvedObject": {"kind": "Pod", "name": "web"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting\n",
        "firstTimestamp": ago(7200),
        "lastTimestamp": ago(30),
        "count": 12,
        "source": {"component": "kubelet"},
    }
    assert row("events", ev) == [
        "30s",
        "Warning",
        "BackOff",
        "pod/web",
        "",
        "kubelet",
        "Back-off restarting",
        "120m",
        12,
        "x",
    ]
    # an events.k8s.io event: eventTime, series, reporting controller and instance
    ev2 = {
        "involvedObject": {"kind": "Node"},
        "eventTime": ago(600),
        "series": {"count": 3, "lastObservedTime": ago(5)},
        "reportingComponent": "sched",
        "reportingInstance": "h1",
    }
    cells = row("events", ev2)
    assert [cells[0], cells[3], cells[7]] == ["5s", "node", "10m"]
    assert row("events", ev2)[5] == "sched, h1"
    assert row("events", ev2)[8] == 3
    assert row("events", {"involvedObject": {}})[0] == "<unknown>"
    assert row("events", {"involvedObject": {}})[8] == 1


def test_endpoints_and_services() -> None:
    assert format_endpoints({}) == "<none>"
    ep = {
        "subsets": [
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}]},
        ]
    }
    assert format_endpoints(ep) == "[fd00::1]:80,10.0.0.1,10.0.0.2 + 1 more..."
    svc = {"spec": {"type": "ClusterIP", "clusterIPs": ["10.43.0.9"], "ports": []}}
    assert row("services", svc)[1:5] == ["ClusterIP", "10.43.0.9", "<none>", "<none>"]
    svc = {"spec": {"type": "ExternalName", "externalName": "db.example"}}
    assert row("services", svc)[2:4] == ["<none>", "db.example"]
    lb = {
        "spec": {"type": "LoadBalancer", "externalIPs": ["1.1.1.1"], "ports": []},
        "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "9.9.9.9"}]}},
    }
    assert row("services", lb)[3] == "9.9.9.9,lb.example,1.1.1.1"


def test_node_cells() -> None:
    node = {
        "metadata": {
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}
        },
        "spec": {"unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    assert row("nodes", node)[1:3] == ["NotReady,SchedulingDisabled", "control-plane,edge"]
    assert row("nodes", {})[1:] == [
        "Unknown",
        "<none>",
        "90s",
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


def test_misc_cells() -> None:
    assert row("serviceaccounts", {"secrets": [{"name": "a"}]})[1] == 1
    assert row("leases", {"spec": {}})[1] == ""
    assert row("roles", {})[1] == ago(90)
    t = table("pods", [pod([cs("c0", DONE)], phase="Succeeded")], "7")
    assert t["rows"][0]["conditions"][0]["type"] == "Completed"
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert "conditions" not in table("pods", [pod([])], "7")["rows"][0]
    assert table("unknownthings", [{"metadata": {"name": "u"}}], "1")["rows"][0]["cells"][0] == "u"
