"""Workload controllers end to end on a three-node cluster on one machine (``corral cluster
up`` through testkit.cluster, ONE cluster for the module), real agents running real pods,
driven by kubectl: a DaemonSet's pod on every node and its rolling update, a StatefulSet's
ordered start and reverse scale-down, Jobs that complete or hit their backoff limit, a CronJob
on the minute, a Deployment's replaced pod, rolling update, undo and foreground deletion, and a
namespace deletion that stops what ran in it.

Each test has a namespace of its own. Orderings and "at every moment" properties are checked
on the pods' watch events (``kubectl get pods -w``): every state the API went through, in
order, not samples. Services and a killed node's rescheduling are in
test_services_cluster_e2e.py."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testkit.cluster import IMAGE, image_dir, leftovers, one_machine_cluster
from tests.integration.test_cluster import Cluster, until

pytestmark = [pytest.mark.root, pytest.mark.network]

NODES = 3
WAIT = 180.0  # seconds: a bound for a condition, never an assertion on speed
IMAGE_V2 = "corral-test:v2"  # the same image under a second name: the "new version"
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"

# A container that stops at once on SIGTERM (sh as pid 1 would ignore it otherwise).
SLEEPER = "trap 'exit 0' TERM; while :; do sleep 1; done"
# ... that is Ready (its readiness probe passes) only 2 s after it starts. The probe allows
# for a loaded machine (a probe slower than its 1 s default timeout three times in a row
# would make a ready pod not ready: no controller's doing, but it would fail the tests).
READY_LATER = f"sleep 2; touch /tmp/ready; {SLEEPER}"
PROBE = {
    "exec": {"command": ["cat", "/tmp/ready"]},
    "periodSeconds": 1,
    "timeoutSeconds": 10,
    "failureThreshold": 30,
}

Pod = dict[str, Any]


def template(labels: dict[str, str], script: str = SLEEPER, image: str = IMAGE) -> Pod:
    container: Pod = {"name": "c", "image": image, "command": ["sh", "-c", script]}
    if script == READY_LATER:
        container["readinessProbe"] = PROBE
    return {
        "metadata": {"labels": labels},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
    }


def is_ready(p: Pod) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (p.get("status") or {}).get("conditions") or []
    )


def ready_since(p: Pod) -> str:
    return next(c["lastTransitionTime"] for c in p["status"]["conditions"] if c["type"] == "Ready")


def live(p: Pod) -> bool:
    return not p["metadata"].get("deletionTimestamp")


def image_of(p: Pod) -> str:
    return str(p["spec"]["containers"][0]["image"])


def stamp(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


class PodWatch:
    """``kubectl get pods -w`` of one namespace: its events in order, and the namespace's pods
    after each (every state the API went through)."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.proc = cluster.k.popen(
            "-n", ns, "get", "pods", "-w", "--output-watch-events", "-o", "json"
        )
        self.events: list[tuple[str, Pod]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buf = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    event, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break  # the rest of this object is still to come
                self.events.append((event["type"], event["object"]))
                buf = buf.lstrip()[end:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        assert "error" not in err.lower(), err

    def states(self) -> Iterator[tuple[str, Pod, dict[str, Pod]]]:
        """(event type, pod, the pods by name after that event), in order."""
        pods: dict[str, Pod] = {}
        for typ, p in list(self.events):
            name = p["metadata"]["name"]
            if typ == "DELETED":
                pods.pop(name, None)
            else:
                pods[name] = p
            yield typ, p, dict(pods)

    def first(self, what: Callable[[str, Pod], bool]) -> int:
        """The index of the first event ``what`` holds for (an AssertionError when none)."""
        for i, (typ, p) in enumerate(list(self.events)):
            if what(typ, p):
                return i
        raise AssertionError("no such event")


class Space:
    """A namespace of the cluster: kubectl in it."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.c = cluster
        self.name = name

    def run(self, *args: str, **kw: Any) -> Any:
        return self.c.k.run("-n", self.name, *args, **kw)

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj))

    def pods(self, selector: str = "") -> list[Pod]:
        return list(self.get("pods", *(["-l", selector] if selector else []))["items"])

    def rollout(self, what: str) -> None:
        self.run("rollout", "status", what, f"--timeout={WAIT:.0f}s", timeout=WAIT + 10)

    def watch(self) -> PodWatch:
        return PodWatch(self.c, self.name)


def pod_cgroups(cluster: Cluster, uid: str) -> list[str]:
    """The cgroup directories of the pod ``uid`` on any node (below the cluster's cgroup)."""
    found = []
    for top in cluster.state.cgroup_paths.values():
        for dirpath, dirnames, _ in os.walk(top):
            found += [os.path.join(dirpath, d) for d in dirnames if d == f"pod{uid}"]
    return found


CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "tick"},
    "spec": {
        "schedule": "* * * * *",
        "jobTemplate": {
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "c", "image": IMAGE, "command": ["sh", "-c", "echo tick"]}
                        ],
                    }
                }
            }
        },
    },
}


class Workloads(Cluster):
    cron_ns = ""  # the namespace of the CronJob made when the cluster came up


@pytest.fixture(scope="module")
def cluster(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workloads]:
    from runtime.pod.monitor import monitor_path

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    tmp = tmp_path_factory.mktemp("workloads-e2e")
    images = image_dir(rootfs, tmp / "images", IMAGE, IMAGE_V2)
    with one_machine_cluster(tmp, nodes=NODES, images=images) as state:
        c = Workloads(state, tmp / "home")
        # The CronJob's next minute starts now: its test, last of the module, finds its Job
        # made while the others ran (alone, it waits for that minute).
        c.cron_ns = f"cron-{uuid.uuid4().hex[:6]}"
        c.k.run("create", "namespace", c.cron_ns)
        Space(c, c.cron_ns).apply(CRONJOB)
        yield c
    left = leftovers(state)
    assert not left, f"cluster down left: {left}"


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Space]:
    name = f"{request.node.name.removeprefix('test_')[:20].rstrip('_').replace('_', '-')}"
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    cluster.k.run("create", "namespace", name)
    yield Space(cluster, name)
    cluster.k.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_a_daemonset_runs_one_pod_per_node_and_its_rolling_update_replaces_each(
    ns: Space,
) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": template({"app": "agent"}, READY_LATER),
        },
    }
    ns.apply(ds)
    ns.rollout("daemonset/agent")
    old = {p["metadata"]["name"]: p for p in ns.pods("app=agent")}
    nodes = sorted(n.name for n in ns.c.state.nodes)
    assert sorted(p["spec"]["nodeName"] for p in old.values()) == nodes
    assert all(p["status"]["phase"] == "Running" and is_ready(p) for p in old.values())
    st = ns.get("daemonset", "agent")["status"]
    assert st["desiredNumberScheduled"] == st["numberReady"] == st["currentNumberScheduled"] == 3

    watch = ns.watch()
    try:
        # the watch's first list holds the three pods before the rollout starts
        until("the watch listing the pods", lambda: len(watch.events) >= 3, WAIT)
        ns.run("set", "image", "daemonset/agent", f"c={IMAGE_V2}")
        ns.rollout("daemonset/agent")
        until(
            "the old pods gone",
            lambda: not set(old) & {p["metadata"]["name"] for p in ns.pods("app=agent")},
            WAIT,
        )
    finally:
        watch.stop()
    new = ns.pods("app=agent")
    assert sorted(p["spec"]["nodeName"] for p in new) == nodes
    assert all(image_of(p) == IMAGE_V2 and is_ready(p) for p in new)
    # maxUnavailable 1: at every moment, at most one node without a ready pod of the set.
    for typ, p, pods in watch.states():
        ready_nodes = {q["spec"]["nodeName"] for q in pods.values() if live(q) and is_ready(q)}
        if len(pods) >= NODES:  # once the watch has listed them all
            assert len(ready_nodes) >= NODES - 1, (typ, p["metadata"]["name"], sorted(pods))


def test_a_statefulset_starts_its_pods_in_order_and_scales_down_in_reverse(ns: Space) -> None:
    ns.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 80}]},
        }
    )
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "template": template({"app": "db"}, READY_LATER),
        },
    }
    watch = ns.watch()
    try:
        ns.apply(sts)
        until(
            "three ready pods",
            lambda: ns.get("statefulset", "db")["status"].get("readyReplicas") == 3,
            WAIT,
        )
        pods = {p["metadata"]["name"]: p for p in ns.pods("app=db")}
        assert sorted(pods) == ["db-0", "db-1", "db-2"]
        for i in (1, 2):
            before, after = pods[f"db-{i - 1}"], pods[f"db-{i}"]
            # db-i made only once db-(i-1) was Ready: in the events, and by the API's clock
            ready = watch.first(lambda t, p, n=f"db-{i - 1}": p["metadata"]["name"] == n
                                and is_ready(p))  # fmt: skip
            made = watch.first(lambda t, p, n=f"db-{i}": p["metadata"]["name"] == n)
            assert ready < made, (i, ready, made)
            assert stamp(after["metadata"]["creationTimestamp"]) >= stamp(ready_since(before))
        # Stable network identity: db-0's FQDN in its hosts file, and in the cluster DNS
        # through the headless Service, as db-1 resolves it.
        ip = pods["db-0"]["status"]["podIP"]
        hosts = ns.run("exec", "db-0", "--", "cat", "/etc/hosts").stdout
        assert f"{ip}\tdb-0.db.{ns.name}.svc.cluster.local\tdb-0\n" in hosts, hosts
        fqdn = f"db-0.db.{ns.name}.svc.cluster.local"  # busybox searches only dotless names
        until(
            f"{fqdn} resolved from db-1",
            lambda: f"Address: {ip}" in ns.run("exec", "db-1", "--", "nslookup", fqdn,
                                               check=False).stdout.replace("\t", " "),
            WAIT,
        )  # fmt: skip
        scaled = len(watch.events)
        ns.run("scale", "statefulset", "db", "--replicas=0")
        until("no pod left", lambda: not ns.pods("app=db"), WAIT)
    finally:
        watch.stop()
    # Scale-down: db-2 deleted first; db-(i-1) marked for deletion only once db-i is gone.
    marked: dict[str, int] = {}
    gone: dict[str, int] = {}
    for i, (typ, p) in enumerate(watch.events[scaled:], scaled):
        name = p["metadata"]["name"]
        if typ == "DELETED":
            gone.setdefault(name, i)
        elif not live(p):
            marked.setdefault(name, i)
    assert sorted(gone) == ["db-0", "db-1", "db-2"]
    assert sorted(gone, key=gone.__getitem__) == ["db-2", "db-1", "db-0"]
    for i in (1, 2):
        lower = f"db-{i - 1}"
        assert marked.get(lower, gone[lower]) > gone[f"db-{i}"], (marked, gone)


def job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": IMAGE, "command": ["sh", "-c", script]}],
                }
            },
        },
    }


def exit_code(p: Pod) -> int | None:
    for s in (p.get("status") or {}).get("containerStatuses") or []:
        if term := (s.get("state") or {}).get("terminated"):
            return int(term["exitCode"])
    return None


def test_a_job_completes_with_real_pods_and_a_failing_one_hits_its_backoff_limit(
    ns: Space,
) -> None:
    watch = ns.watch()
    try:
        ns.apply(job("ok", "sleep 2; exit 0", completions=3, parallelism=2))
        ns.apply(job("bad", "exit 3", backoffLimit=1))
        ns.run("wait", "--for=condition=complete", "job/ok", f"--timeout={WAIT:.0f}s",
               timeout=WAIT + 10)  # fmt: skip
        ns.run("wait", "--for=condition=failed", "job/bad", f"--timeout={WAIT:.0f}s",
               timeout=WAIT + 10)  # fmt: skip
    finally:
        watch.stop()
    ok = ns.get("job", "ok")
    assert ok["status"]["succeeded"] == 3 and not ok["status"].get("failed")
    pods = ns.pods("job-name=ok")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Succeeded" and exit_code(p) == 0 for p in pods)
    # parallelism 2: never more than two of its pods running at once (and two at some point)
    running = [
        sum(1 for q in pods.values()
            if q["metadata"].get("labels", {}).get("job-name") == "ok"
            and live(q) and (q.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        for _, _, pods in watch.states()
    ]  # fmt: skip
    assert max(running) == 2, running

    bad = ns.get("job", "bad")
    failed = [c for c in bad["status"]["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["status"] == "True"
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    assert bad["status"]["failed"] == 2  # backoffLimit 1: the first failure retried once
    pods = ns.pods("job-name=bad")
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Failed" and exit_code(p) == 3 for p in pods)


def deployment(name: str, replicas: int, script: str = SLEEPER, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template({"app": name}, script),
            **spec,
        },
    }


def test_a_deployment_replaces_a_deleted_pod_rolls_out_keeping_pods_ready_and_undoes(
    ns: Space,
) -> None:
    surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    ns.apply(deployment("web", 3, READY_LATER, strategy=surge))
    ns.rollout("deployment/web")
    first = {p["metadata"]["name"] for p in ns.pods("app=web")}
    assert len(first) == 3
    victim = sorted(first)[0]
    ns.run("delete", "pod", victim, "--wait=false")
    until(
        "a replacement pod, ready",
        lambda: (
            len(ready := [p for p in ns.pods("app=web") if live(p) and is_ready(p)]) == 3
            and victim not in {p["metadata"]["name"] for p in ready}
        ),
        WAIT,
    )

    watch = ns.watch()
    try:
        # the watch's first list holds the three pods before the rollout starts
        until("the watch listing the pods", lambda: len(watch.events) >= 3, WAIT)
        ns.run("set", "image", "deployment/web", f"c={IMAGE_V2}")
        ns.rollout("deployment/web")
        until(
            "only new pods",
            lambda: {image_of(p) for p in ns.pods("app=web")} == {IMAGE_V2},
            WAIT,
        )
    finally:
        watch.stop()
    # maxUnavailable 1: at least 2 of 3 pods Ready (and not being deleted) at every moment.
    listed = False
    for typ, p, pods in watch.states():
        listed = listed or len(pods) >= 3
        ready = sorted(n for n, q in pods.items() if live(q) and is_ready(q))
        if listed:
            assert len(ready) >= 2, (typ, p["metadata"]["name"], ready)
    images = {
        image_of({"spec": r["spec"]["template"]["spec"]}): r["spec"]["replicas"]
        for r in ns.get("replicasets")["items"]
    }
    assert images == {IMAGE: 0, IMAGE_V2: 3}

    ns.run("rollout", "undo", "deployment/web")
    ns.rollout("deployment/web")
    until("only old-image pods", lambda: {image_of(p) for p in ns.pods("app=web")} == {IMAGE}, WAIT)
    pods = ns.pods("app=web")
    assert len(pods) == 3 and all(is_ready(p) for p in pods)
    d = ns.get("deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert image_of({"spec": d["spec"]["template"]["spec"]}) == IMAGE


# A container that spins, bounded by its CPU limit (a tenth of a core): far above its request
SPIN = "trap 'exit 0' TERM; while :; do :; done"


def test_an_autoscaler_scales_a_busy_deployment_up_to_its_maximum(ns: Space) -> None:
    """An autoscaling/v2 HPA reads the pods' CPU from metrics.k8s.io (the kubelets' resource
    metrics), finds them far above 50% of their request and scales the Deployment up to its
    maximum, with kube's status, conditions, table and event."""
    dep = deployment("busy", 1, SPIN)
    dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "20m"},
        "limits": {"cpu": "100m"},
    }
    ns.apply(dep)
    ns.rollout("deployment/busy")
    ns.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "busy"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "busy"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        }
    )

    def scaled() -> Any:
        hpa = ns.get("hpa", "busy")
        st = hpa.get("status") or {}
        d = ns.get("deployment", "busy")
        return hpa if st.get("desiredReplicas") == 3 and d["spec"]["replicas"] == 3 else None

    hpa = until("the autoscaler to scale busy to 3", scaled, WAIT)
    conditions = {c["type"]: c for c in hpa["status"]["conditions"]}
    assert conditions["AbleToScale"]["status"] == "True", conditions
    assert conditions["ScalingActive"]["reason"] == "ValidMetricFound", conditions
    metric = hpa["status"]["currentMetrics"][0]["resource"]
    assert metric["name"] == "cpu" and metric["current"]["averageUtilization"] > 50, metric
    ns.rollout("deployment/busy")
    # NAME REFERENCE TARGETS ("cpu: 515%/50%") MINPODS MAXPODS REPLICAS AGE; REPLICAS is the
    # target's at the autoscaler's last sync (every 15 s)
    row = until(
        "kubectl get hpa to show 3 replicas",
        lambda: (
            (r := ns.run("get", "hpa", "busy", "--no-headers").stdout.split())[6:7] == ["3"] and r
        ),
        WAIT,
    )
    assert row[:2] == ["busy", "Deployment/busy"] and row[4:6] == ["1", "3"], row
    assert row[2] == "cpu:" and row[3].endswith("%/50%") and int(row[3].split("%")[0]) > 50, row
    events = ns.run("describe", "hpa", "busy").stdout
    assert "SuccessfulRescale" in events and "New size: 3" in events, events
    ns.run("delete", "hpa", "busy")
    ns.run("delete", "deployment", "busy")


def test_foreground_deletion_of_a_deployment_removes_its_replicasets_and_pods_first(
    ns: Space,
) -> None:
    ns.apply(deployment("fg", 2))
    ns.rollout("deployment/fg")
    uids = [p["metadata"]["uid"] for p in ns.pods("app=fg")]
    assert len(uids) == 2 and all(pod_cgroups(ns.c, u) for u in uids)
    # kubectl waits until the Deployment is gone: by then, foreground means, its replica
    # set and pods are gone too (the pods stopped by their kubelets).
    ns.run("delete", "deployment", "fg", "--cascade=foreground", f"--timeout={WAIT:.0f}s",
           timeout=WAIT + 10)  # fmt: skip
    assert ns.get("replicasets")["items"] == []
    assert ns.pods() == []
    until("the pods' cgroups removed", lambda: not any(pod_cgroups(ns.c, u) for u in uids), WAIT)


def test_a_namespace_deletion_empties_it_and_stops_its_pods(cluster: Cluster) -> None:
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    cluster.k.run("create", "namespace", name)
    space = Space(cluster, name)
    space.apply(deployment("web", 2))
    space.apply(job("once", "exec sleep 1000", parallelism=1))
    space.run("create", "configmap", "settings", "--from-literal=a=b")
    space.rollout("deployment/web")
    until(
        "the job's pod running",
        lambda: any(p["status"].get("phase") == "Running" for p in space.pods("job-name=once")),
        WAIT,
    )
    uids = [p["metadata"]["uid"] for p in space.pods()]
    assert len(uids) == 3 and all(pod_cgroups(cluster, u) for u in uids)
    cluster.k.run("delete", "namespace", name, f"--timeout={WAIT:.0f}s", timeout=WAIT + 10)
    assert cluster.k.run("get", "namespace", name, check=False).returncode != 0
    for kind in ("deployments", "replicasets", "jobs", "pods", "configmaps"):
        p = space.run("get", kind, "-o", "json", check=False)
        assert p.returncode != 0 or not json.loads(p.stdout)["items"], kind
    until("the pods stopped on their nodes",
          lambda: not any(pod_cgroups(cluster, u) for u in uids), WAIT)  # fmt: skip


def test_a_cronjob_makes_a_job_on_the_minute_that_runs_to_completion(cluster: Workloads) -> None:
    space = Space(cluster, cluster.cron_ns)

    def done() -> list[dict[str, Any]]:
        return [
            j for j in space.get("jobs")["items"]
            if any(c["type"] == "Complete" and c["status"] == "True"
                   for c in (j.get("status") or {}).get("conditions") or [])
        ]  # fmt: skip

    jobs = until("a completed Job of the CronJob", done, 60 + WAIT)
    j = jobs[0]
    ref = j["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("CronJob", "tick", True)
    scheduled = stamp(
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    )
    assert scheduled.second == 0 and scheduled.microsecond == 0  # on the minute
    assert j["metadata"]["name"] == f"tick-{int(scheduled.timestamp()) // 60}"
    pods = space.pods(f"job-name={j['metadata']['name']}")
    assert [(p["status"]["phase"], exit_code(p)) for p in pods] == [("Succeeded", 0)]
    assert space.run("logs", pods[0]["metadata"]["name"]).stdout.strip() == "tick"
    cj = space.get("cronjob", "tick")
    assert stamp(cj["status"]["lastScheduleTime"]) >= scheduled
    space.run("delete", "cronjob", "tick")
    cluster.k.run("delete", "namespace", space.name, "--wait=false")
