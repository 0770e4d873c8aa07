"""``kubectl debug`` end to end: a real ``corral server`` and ``corral agent`` on a netns node
(the cluster of test_kubelet.py, its fixture). kubectl 1.32 PATCHes the pod's
``ephemeralcontainers`` subresource, waits for the container's ``ephemeralContainerStatuses``
to be running and attaches; the kubelet starts it in the running pod (the target's PID
namespace with ``--target``). Also: ``--copy-to`` and ``node/NAME``, which need nothing more
than pods, and kubectl 1.20, which speaks the older form of the subresource."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.integration import test_kubelet
from tests.integration.test_kubelet import IMAGE, NODE, Cluster, alive, manifest, until
from tests.integration.test_kubelet_exec import Terminal, _apply

pytestmark = [pytest.mark.root, pytest.mark.network]

cluster = test_kubelet.cluster  # the module's server and agent, as test_kubelet's

# the image is on the node (the agent's images directory), never pulled from a registry
DEBUG = ["--image", IMAGE, "--image-pull-policy", "IfNotPresent"]
EC = "/api/v1/namespaces/default/pods/{}/ephemeralcontainers"
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


def _ephemeral(cluster: Cluster, pod: str, name: str) -> dict[str, Any]:
    st = cluster.pod(pod).get("status") or {}
    for cs in st.get("ephemeralContainerStatuses") or []:
        if cs["name"] == name:
            return cs
    return {}


def _state(cluster: Cluster, pod: str, name: str) -> str:
    return next(iter(_ephemeral(cluster, pod, name).get("state") or {"": 0}))


def _runtime_pid(cluster: Cluster, pod: str, name: str) -> int | None:
    for st in cluster.runtime_pods():
        if st.name == pod:
            for c in st.ephemeral_containers:
                if c.name == name:
                    if c.pid:
                        cluster.pids.add(c.pid)
                    return c.pid
    return None


@pytest.fixture(scope="module")
def target(cluster: Cluster) -> str:
    """A running pod ``dbg`` whose container ``app`` runs LOOP."""
    _apply(cluster, manifest("dbg", LOOP))
    cluster.wait_running("dbg")
    return "dbg"


def test_debug_it_targets_a_container_and_sees_its_processes(cluster: Cluster, target: str) -> None:
    """``kubectl debug -it --target``: a shell on a terminal, in the target's PID namespace
    (``ps`` shows the app's loop), then its status: terminated, exit code, never restarted,
    not ready, image, imageID, containerID."""
    k = cluster.kubectl()
    args = ["debug", "-it", target, *DEBUG, "--target", "app", "-c", "shell", "--", "sh"]
    term = Terminal(k, args, 30, 100)
    try:
        term.expect(b"If you don't see a command prompt")
        term.type(b"ps -o pid,args; echo do''ne\n")
        term.expect(b"done")
        assert b"while true; do sleep 0.2; done" in term.out, term.out
        term.type(b"exit 4\n")
        term.finish()
    finally:
        term.close()
    until("the debugger to end", lambda: _state(cluster, target, "shell") == "terminated")
    cs = _ephemeral(cluster, target, "shell")
    assert cs["state"]["terminated"]["exitCode"] == 4, cs
    assert (cs["restartCount"], cs["ready"], cs["image"]) == (0, False, IMAGE), cs
    assert cs["imageID"] and cs["containerID"].startswith("corral://"), cs
    assert "started" not in cs
    pod = cluster.pod(target)
    (spec,) = [c for c in pod["spec"]["ephemeralContainers"] if c["name"] == "shell"]
    assert (spec["targetContainerName"], spec["stdin"], spec["tty"]) == ("app", True, True)
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    time.sleep(2)  # never restarted: still terminated, restartCount 0
    assert _ephemeral(cluster, target, "shell")["restartCount"] == 0
    assert _state(cluster, target, "shell") == "terminated"
    events = k.run("get", "events", "--field-selector", f"involvedObject.name={target}").stdout
    assert (
        "spec.ephemeralContainers{shell}"
        in k.run(
            "get", "events", "-o", "json", "--field-selector", f"involvedObject.name={target}"
        ).stdout
    ), events


def test_a_second_ephemeral_container_logs_and_exec(cluster: Cluster, target: str) -> None:
    """Another one, without attaching: running next to the first; ``kubectl logs -c`` and
    ``kubectl exec -c`` reach it; ``kubectl attach -i`` a third one."""
    k = cluster.kubectl()
    script = "echo second-says-hi; " + LOOP
    k.run("debug", target, *DEBUG, "-c", "second", "--", "sh", "-c", script)
    until("the second to run", lambda: _state(cluster, target, "second") == "running")
    until(
        "its log",
        lambda: "second-says-hi" in k.run("logs", target, "-c", "second", check=False).stdout,
    )
    assert k.run("exec", target, "-c", "second", "--", "echo", "in-it").stdout == "in-it\n"
    # kubectl attach -i to one that reads its stdin (debug -i, not attached by kubectl debug)
    k.run("debug", target, *DEBUG, "-i", "--attach=false", "-c", "third", "--", "sh", "-c",
          "read l; echo got-$l")  # fmt: skip
    until("the third to run", lambda: _state(cluster, target, "third") == "running")
    p = k.run("attach", target, "-c", "third", "-i", input="hello\n", timeout=90)
    assert "got-hello" in p.stdout, p
    until("the third to end", lambda: _state(cluster, target, "third") == "terminated")
    names = [c["name"] for c in cluster.pod(target)["spec"]["ephemeralContainers"]]
    assert names[-2:] == ["second", "third"] and len(names) == len(set(names))


def test_changes_and_removals_and_forbidden_fields_are_refused(
    cluster: Cluster, target: str
) -> None:
    """As kube-apiserver refuses them (422, its messages), through every patch kind; the
    pod's own update path refuses a change of them too."""
    k = cluster.kubectl()
    k.run("debug", target, *DEBUG, "-c", "keep", "--", "sh", "-c", LOOP)
    path = EC.format(target)
    pod = cluster.pod(target)
    ecs = pod["spec"]["ephemeralContainers"]
    changed = [{**c, "image": "other:1"} if c["name"] == "keep" else c for c in ecs]
    del pod["metadata"]["resourceVersion"]  # unconditional: the kubelet writes its status
    code, body = cluster.server.json(
        "PUT", path, {**pod, "spec": {**pod["spec"], "ephemeralContainers": changed}}
    )
    assert code == 422, body
    assert 'existing ephemeral containers "keep" may not be changed' in body["message"]
    merge = {"spec": {"ephemeralContainers": [c for c in ecs if c["name"] != "keep"]}}
    code, body = cluster.server.json(
        "PATCH",
        path,
        json.dumps(merge).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert code == 422, body
    assert body["message"] == (
        f'Pod "{target}" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral'
        ' containers "keep" may not be removed\n'
    )
    bad = {"name": "bad", "image": IMAGE, "readinessProbe": {"exec": {"command": ["true"]}}}
    code, body = cluster.server.json(
        "PATCH",
        path,
        json.dumps({"spec": {"ephemeralContainers": [bad]}}).encode(),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert code == 422, body
    assert body["message"] == (
        f'Pod "{target}" is invalid: spec.ephemeralContainers[0].readinessProbe: Forbidden:'
        " cannot be set for an Ephemeral Container"
    )
    code, body = cluster.server.json(
        "PATCH",
        f"/api/v1/namespaces/default/pods/{target}",
        json.dumps({"spec": {"ephemeralContainers": [{"name": "x", "image": IMAGE}]}}).encode(),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert code == 422 and "pod updates may not change fields" in body["message"], body
    p = k.run("debug", target, *DEBUG, "-c", "app", "--", "true", check=False)
    assert p.returncode != 0
    assert re.search(  # at the end of the list kubectl sends
        r'The Pod "dbg" is invalid: spec\.ephemeralContainers\[\d+\]\.name: Duplicate value: "app"',
        p.stderr,
    ), p.stderr


def test_an_agent_restart_adopts_a_pod_with_an_ephemeral_container(cluster: Cluster) -> None:
    """kill -9 of the agent: the pod and its debugger run on, the new agent reports them as
    they are (same container, no restart, nothing added twice) and adds a new one; the pod's
    deletion stops the debugger with it."""
    k = cluster.kubectl()
    _apply(cluster, manifest("adopt", LOOP))
    cluster.wait_running("adopt")
    k.run("debug", "adopt", *DEBUG, "-c", "d1", "--target", "app", "--", "sh", "-c", LOOP)
    until("d1 to run", lambda: _state(cluster, "adopt", "d1") == "running")
    pid = until("its pid", lambda: _runtime_pid(cluster, "adopt", "d1"))
    before = _ephemeral(cluster, "adopt", "d1")
    cluster.agent.kill()
    assert alive(pid)
    cluster.agent.start()
    k.run("debug", "adopt", *DEBUG, "-c", "d2", "--", "sh", "-c", LOOP)
    until("d2 to run", lambda: _state(cluster, "adopt", "d2") == "running")
    after = _ephemeral(cluster, "adopt", "d1")
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert _runtime_pid(cluster, "adopt", "d1") == pid
    pids = [pid, until("d2's pid", lambda: _runtime_pid(cluster, "adopt", "d2"))]
    k.run("delete", "pod", "adopt", "--wait=true", "--timeout=120s", timeout=150)
    until("the debuggers to be gone", lambda: not any(alive(p) for p in pids))


def test_debug_copy_to(cluster: Cluster, target: str) -> None:
    """``--copy-to``: a new pod, a copy of the target with the debugger as a container of its
    own (``--same-node``: this cluster has no scheduler; kube's copy would be scheduled)."""
    k = cluster.kubectl()
    k.run("debug", target, *DEBUG, "--copy-to", "dbg-copy", "--same-node", "--share-processes",
          "-c", "dbgc", "--", "sh", "-c", LOOP)  # fmt: skip
    pod = cluster.wait_running("dbg-copy")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "dbgc"]
    assert pod["spec"]["shareProcessNamespace"] is True
    ps = k.run("exec", "dbg-copy", "-c", "dbgc", "--", "ps", "-o", "args").stdout
    assert ps.count("while true") >= 2, ps  # the app's loop and its own, one namespace
    k.run("delete", "pod", "dbg-copy", "--wait=true", "--timeout=120s", timeout=150)


def test_debug_node(cluster: Cluster) -> None:
    """``kubectl debug node/NAME``: a pod on the node with hostNetwork, hostPID and hostIPC
    and the node's / at /host, as kube runs it."""
    k = cluster.kubectl()
    out = k.run("debug", f"node/{NODE}", *DEBUG, "--", "sh", "-c", LOOP).stdout
    name = out.split("Creating debugging pod ")[1].split()[0]
    pod = cluster.wait_running(name)
    spec = pod["spec"]
    assert (spec["hostPID"], spec["hostIPC"], spec["hostNetwork"]) == (True, True, True)
    c = spec["containers"][0]["name"]
    got = k.run("exec", name, "-c", c, "--", "sh", "-c", "cat /host/etc/hostname; echo $$").stdout
    assert got.split()[0] == open("/etc/hostname").read().split()[0], got
    assert int(got.split()[1]) > 1  # the host's pid namespace: not pid 1 of its own
    k.run("delete", "pod", name, "--wait=true", "--timeout=120s", timeout=150)


def test_kubectl_120_debug(cluster: Cluster, target: str) -> None:
    """kubectl 1.20 GETs the subresource as an ``EphemeralContainers`` object and PUTs one
    back (the 1.16-1.22 form); a 1.32 server serves a Pod there and refuses that kind, as
    kube-apiserver 1.32 does: no container is added, kubectl says why."""
    k = cluster.kubectl("1.20")
    before = cluster.pod(target)["spec"].get("ephemeralContainers") or []
    p = k.run("alpha", "debug", target, *DEBUG, "-c", "old", "--", "true", check=False)
    assert p.returncode != 0, p
    assert "EphemeralContainers" in p.stderr, p.stderr
    assert (cluster.pod(target)["spec"].get("ephemeralContainers") or []) == before


def test_an_ephemeral_container_that_cannot_be_made_says_why(cluster: Cluster, target: str) -> None:
    """An image the node does not have with pull policy Never: Waiting, ErrImageNeverPull
    with the kubelet's message, in its status; the pod runs on."""
    k = cluster.kubectl()
    k.run("debug", target, "--image", "nowhere:1", "--image-pull-policy", "Never", "-c", "nope")

    def waiting() -> dict[str, Any]:
        return (_ephemeral(cluster, target, "nope").get("state") or {}).get("waiting") or {}

    until("ErrImageNeverPull", lambda: waiting().get("reason") == "ErrImageNeverPull")
    assert "nowhere:1" in waiting()["message"], waiting()
    assert cluster.pod(target)["status"]["phase"] == "Running"
