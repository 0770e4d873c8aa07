"""High availability over etcd: a three-member Debian etcd-server cluster with two
``corral server`` processes on it, each running the scheduler and the controller manager
behind their Leases. Killing (SIGKILL) the server that leads hands both Leases to the other,
which goes on scheduling and reconciling; killing an etcd member loses no acknowledged write;
no pod is ever bound twice (there the nodes are API objects: the scheduler and the controllers
need no kubelet). A real ``corral agent`` given both servers moves to the other when the one it
talks to is killed: it keeps renewing its Lease, writes its pods' status there, runs new pods."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.kubeagent import Agent
from testkit.kubeserver import lease_holder, read_token, servers_on_etcd
from testkit.net import free_port
from testkit.wait import until
from tests.kubeserver import KUBECTL_CURRENT, Kubectl, Server

NS = "default"
WAIT = 120.0  # seconds a condition may take (Leases expire after 15 s): never a measurement
LEASES = ("kube-scheduler", "kube-controller-manager")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Any, list[Server]]]:
    from testkit.etcdcluster import EtcdMissing

    try:
        with servers_on_etcd(tmp_path) as (etcd, servers):
            yield etcd, servers
    except EtcdMissing as e:
        pytest.skip(str(e))


def owner(servers: list[Server], identity: str) -> Server | None:
    for s in servers:
        if s.proc is not None and f"_{s.proc.pid}_" in identity:
            return s
    return None


def make_node(srv: Server, name: str) -> None:
    code, made = srv.json(
        "POST",
        "/api/v1/nodes",
        {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}},
    )
    assert code == 201, made
    alloc = {"cpu": "8", "memory": "32Gi", "pods": "110"}

    def ready() -> bool:
        code, node = srv.json("GET", f"/api/v1/nodes/{name}")
        node["status"] = {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Test"}],
        }
        code, out = srv.json("PUT", f"/api/v1/nodes/{name}/status", node)
        return code == 200  # 409: a controller (node IPAM) wrote it meanwhile: again

    until(f"node {name} Ready", ready, WAIT)


def pods(srv: Server) -> list[dict[str, Any]]:
    code, body = srv.json("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dweb")
    assert code == 200, body
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def all_bound(srv: Server, n: int) -> bool:
    ps = pods(srv)
    return len(ps) == n and all((p.get("spec") or {}).get("nodeName") for p in ps)


def scheduled_events(srv: Server) -> dict[str, int]:
    code, body = srv.json("GET", f"/api/v1/namespaces/{NS}/events")
    out: dict[str, int] = {}
    for e in body["items"]:
        if e.get("reason") == "Scheduled":
            uid = e["involvedObject"].get("uid", "")
            out[uid] = out.get(uid, 0) + int(e.get("count") or 1)
    return out


def test_leader_killed_and_an_etcd_member_killed(
    cluster: tuple[Any, list[Server]], tmp_path: Path
) -> None:
    etcd, servers = cluster
    a = servers[0]
    for n in ("n1", "n2"):
        make_node(a, n)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "x:1"}]},
            },
        },
    }
    code, body = a.json("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment)
    assert code == 201, body
    until("3 pods made and bound", lambda: all_bound(a, 3), WAIT)

    leaders = {name: until(f"the {name} Lease held", lambda n=name: lease_holder(a, n), WAIT)
               for name in LEASES}  # fmt: skip
    victim = owner(servers, leaders["kube-controller-manager"])
    assert victim is not None, leaders
    survivor = next(s for s in servers if s is not victim)

    # A client writes to the survivor the whole time; every acknowledged write must stay.
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            name = f"ha-{i:05d}"
            code, body = survivor.json(
                "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": name}}
            )
            if code == 201:
                acked.append(name)
            else:
                errors.append(f"{code} {body}")  # refused, not lost: allowed
                time.sleep(0.1)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        victim.kill()  # SIGKILL: its Leases are not given up, they must expire
        etcd.kill(0)  # and an etcd member crashes (two of three keep the quorum)
        code, body = survivor.json(
            "PATCH",
            f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale",
            {"spec": {"replicas": 5}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200, body
        # the survivor takes both Leases and reconciles and schedules the new pods
        for name in LEASES:
            until(
                f"the survivor to hold {name}",
                lambda n=name: owner(servers, lease_holder(survivor, n)) is survivor,
                WAIT,
            )
        until("5 pods made and bound", lambda: all_bound(survivor, 5), WAIT)
        etcd.restart(0)
        time.sleep(1)
    finally:
        stop.set()
        t.join()
    assert acked, errors
    code, body = survivor.json("GET", f"/api/v1/namespaces/{NS}/configmaps")
    have = {i["metadata"]["name"] for i in body["items"]}
    assert set(acked) <= have, sorted(set(acked) - have)[:5]
    # no pod bound twice: one Scheduled event each, and the binding never changed
    events = scheduled_events(survivor)
    assert all(events.get(p["metadata"]["uid"]) == 1 for p in pods(survivor)), events
    # kubectl keeps working against the surviving server
    if os.access(KUBECTL_CURRENT, os.X_OK) and shutil.which(KUBECTL_CURRENT):
        home = tmp_path / "home"
        home.mkdir()
        k = Kubectl(KUBECTL_CURRENT, home, survivor.kubeconfig, "1.32")
        out = json.loads(k.run("get", "deployment", "web", "-o", "json").stdout)
        assert out["spec"]["replicas"] == 5


def test_servers_with_one_token_share_the_cluster_keys(
    cluster: tuple[Any, list[Server]], tmp_path: Path
) -> None:
    """The second server took the CA, the ServiceAccount key and the secrets keys from the
    datastore: a client of one is a client of the other, a secret written through one is read
    through the other, a token one signs the other accepts."""
    _, (a, b) = cluster
    for rel in ("tls/server-ca.crt", "tls/server-ca.key", "tls/service-account.key",
                "cred/encryption-config.yaml"):  # fmt: skip
        assert (a.data_dir / rel).read_bytes() == (b.data_dir / rel).read_bytes(), rel
    assert (a.data_dir / "token").read_text() == (b.data_dir / "token").read_text()
    assert (a.data_dir / "tls/serving.crt").read_bytes() != (
        b.data_dir / "tls/serving.crt"
    ).read_bytes()  # each its own serving certificate, signed by the shared CA
    code, body = a.json(
        "POST",
        f"/api/v1/namespaces/{NS}/secrets",
        {"metadata": {"name": "shared"}, "stringData": {"k": "v"}},
    )
    assert code == 201, body
    code, body = b.json("GET", f"/api/v1/namespaces/{NS}/secrets/shared")
    assert code == 200 and body["data"] == {"k": "dg=="}, body
    code, body = a.json(
        "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "robot"}}
    )
    assert code in (201, 409), body
    code, tr = a.json(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/robot/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert code == 201, tr
    code, who = b.json(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {tr['status']['token']}"},
        client_cert=False,
    )
    assert code == 201, who
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:robot"
    # the first server's admin kubeconfig, pointed at the second, is trusted both ways
    if os.access(KUBECTL_CURRENT, os.X_OK):
        home = tmp_path / "home"
        home.mkdir()
        k = Kubectl(KUBECTL_CURRENT, home, a.kubeconfig, "1.32")
        out = k.run("--server", f"https://127.0.0.1:{b.port}", "get", "secret", "shared")
        assert "shared" in out.stdout


# ============================================================================ an agent of both


def peer_ports(pid: int) -> set[int]:
    """The remote ports of the established TCP connections of process ``pid`` (ss(8))."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    return {
        int(cols[3].rpartition(":")[2])
        for line in out.splitlines()
        if f"pid={pid}," in line and len(cols := line.split()) >= 4
    }


def lease_renewed(srv: Server, node: str) -> str:
    code, body = srv.json(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    )
    return str((body.get("spec") or {}).get("renewTime") or "") if code == 200 else ""


def node_pods(srv: Server, app: str) -> list[dict[str, Any]]:
    code, body = srv.json("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")
    assert code == 200, body
    return list(body["items"])


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def web(name: str, replicas: int) -> dict[str, Any]:
    from testkit.cluster import IMAGE

    script = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {"name": "app", "image": IMAGE, "command": ["sh", "-c", script]}
                    ],
                },
            },
        },
    }


@pytest.fixture
def agent_of_both(
    cluster: tuple[Any, list[Server]], rootfs: Path, tmp_path: Path
) -> Iterator[tuple[Agent, list[Server]]]:
    """A ``corral agent`` joined with ``--server A --server B``, its pods in a network
    namespace of its own; on the way out its pods are deleted through a server still up and
    whatever is left is removed."""
    from orchestrator.kubelet.agent import AgentConfig, pod_options
    from runtime.pod import api
    from runtime.pod.monitor import monitor_path
    from runtime.pod.prepare import mounts_under
    from testkit.cluster import image_dir
    from testkit.netns import node_netns
    from tests.conftest import leftover_cgroups

    try:
        monitor_path()
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")
    _, servers = cluster
    a, b = servers
    tag = f"cha{uuid.uuid4().hex[:6]}"
    netns = node_netns()
    agent = Agent(
        f"https://127.0.0.1:{a.port}",
        a.data_dir / "token",
        tmp_path / "agent",
        f"ha-{tag}",
        netns.path,
        tag,
        extra=("--server", f"https://127.0.0.1:{b.port}", "--kubelet-port", str(free_port())),
    )
    image_dir(rootfs, agent.images_dir)
    opts = pod_options(
        AgentConfig(server="", token="", data_dir=agent.data_dir, node_netns=netns.path),
        agent.data_dir / "network.json",
    )
    try:
        agent.start()
        yield agent, servers
    finally:
        try:
            alive = [s for s in servers if s.proc is not None and s.proc.poll() is None]
            if alive and agent.proc is not None and agent.proc.poll() is None:
                for d in ("web-before", "web-after"):
                    alive[0].json("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{d}")
                try:
                    until("the agent's pods gone", lambda: not api.list_pods(opts), WAIT)
                except AssertionError:
                    pass  # removed by force below
            agent.kill()
            for st in api.list_pods(opts):
                api.remove(st.uid, opts, force=True)
            api.gc(opts)
        finally:
            for mp in mounts_under(tmp_path):
                subprocess.run(["umount", "-l", mp], check=False)
            for path in sorted(leftover_cgroups(tag), key=len, reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            netns.close()


@pytest.mark.root
def test_an_agent_of_both_servers_moves_on_when_its_server_is_killed(
    agent_of_both: tuple[Agent, list[Server]],
) -> None:
    agent, (a, b) = agent_of_both
    node = agent.name
    assert agent.proc is not None

    def node_ready(srv: Server) -> bool:
        code, n = srv.json("GET", f"/api/v1/nodes/{node}")
        conds = (n.get("status") or {}).get("conditions") or [] if code == 200 else []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    until(f"node {node} Ready", lambda: node_ready(a), WAIT)
    # the agent talks to the first server it was given, only to it
    ports = peer_ports(agent.proc.pid)
    assert a.port in ports and b.port not in ports, (ports, a.port, b.port)
    code, body = a.json("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", web("web-before", 1))
    assert code == 201, body
    until("the first pod Ready", lambda: [p for p in node_pods(a, "web-before") if ready(p)], WAIT)

    renewed = lease_renewed(b, node)
    a.kill()  # SIGKILL: every connection to it is reset, its port refuses
    # the Lease goes on being renewed, through the other server
    until("the node's Lease renewed after the kill", lambda: lease_renewed(b, node) > renewed, WAIT)
    until("the agent connected to the other server",
          lambda: b.port in peer_ports(agent.proc.pid), WAIT)  # fmt: skip
    assert node_ready(b)
    # a new Deployment's pods start on the node, their status written through the other server
    code, body = b.json("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", web("web-after", 2))
    assert code == 201, body

    def started() -> bool:
        ps = node_pods(b, "web-after")
        return len(ps) == 2 and all(ready(p) and p["spec"].get("nodeName") == node for p in ps)

    until("the new Deployment's pods Ready on the node", started, WAIT)
    # a deletion: the agent stops the pod and reports it through the other server
    (before,) = node_pods(b, "web-before")
    code, body = b.json("DELETE", f"/api/v1/namespaces/{NS}/pods/{before['metadata']['name']}")
    assert code == 200, body
    until(
        "the old pod replaced by a Ready one",
        lambda: [p for p in node_pods(b, "web-before")
                 if p["metadata"]["uid"] != before["metadata"]["uid"] and ready(p)],
        WAIT,
    )  # fmt: skip


def kubernetes_endpoints(srv: Server) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The API servers the ``kubernetes`` Endpoints and its EndpointSlices name."""
    code, ep = srv.json("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert code == 200, ep
    subsets = [
        (a["ip"], p["port"])
        for s in ep.get("subsets") or []
        for a in s["addresses"]
        for p in s["ports"]
    ]
    code, body = srv.json(
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
        "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
    )
    assert code == 200, body
    slices = [
        (a, p["port"])
        for s in body["items"]
        for e in s["endpoints"]
        for a in e["addresses"]
        for p in s["ports"]
    ]
    return sorted(subsets), sorted(slices)


def test_the_kubernetes_endpoints_list_the_live_servers(
    cluster: tuple[Any, list[Server]], tmp_path: Path
) -> None:
    """Each server renews a lease; the ``kubernetes`` endpoints (the proxy's DNAT targets for
    in-cluster clients) name every live server: one that stops leaves them, one that dies
    drops out when its lease expires."""
    etcd, servers = cluster
    a, b = servers
    both = [("127.0.0.1", a.port), ("127.0.0.1", b.port)]
    until("both servers in the endpoints", lambda: kubernetes_endpoints(a) == (sorted(both),) * 2)
    b.stop()  # SIGTERM: it removes itself
    alone = [("127.0.0.1", a.port)]
    until("the stopped server out", lambda: kubernetes_endpoints(a) == (alone, alone), WAIT)
    code, svc = a.json("GET", "/api/v1/namespaces/default/services/kubernetes")
    assert svc["spec"]["ports"][0]["targetPort"] == a.port
    token = read_token(a)
    extra = ("--datastore-endpoint", etcd.url, "--node-monitor-grace-period", "3600")
    c = Server(tmp_path / "s3", extra=(*extra, "--token", token))
    c.start()
    servers.append(c)  # the fixture stops it
    three = sorted([*alone, ("127.0.0.1", c.port)])
    until("the new server in", lambda: kubernetes_endpoints(a) == (three, three), WAIT)
    c.kill()  # SIGKILL: nothing removes it but its lease's expiry
    until("the dead server out", lambda: kubernetes_endpoints(a) == (alone, alone), WAIT)


def test_a_webhook_configuration_made_on_one_server_is_in_force_on_the_other(
    cluster: tuple[Any, list[Server]], tmp_path: Path
) -> None:
    """The servers keep the webhook configurations from a watch of the shared etcd: one
    made through the first server refuses a request through the second soon after."""
    from tests.integration.test_apis_webhooks import VWC, Hooks

    _, (s1, s2) = cluster
    hooks = Hooks(tmp_path / "webhook")
    try:
        hook = {
            "name": "ha.corral.test",
            "clientConfig": {"url": hooks.url("/deny"), "caBundle": hooks.ca_bundle},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["configmaps"],
                }
            ],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }
        body = {"metadata": {"name": "ha"}, "webhooks": [hook]}
        code, out = s1.json("POST", VWC, body)
        assert code == 201, out
        n = iter(range(10**6))

        def refused() -> bool:
            cm = {"metadata": {"name": f"cm-{next(n)}"}}
            code, out = s2.json("POST", "/api/v1/namespaces/default/configmaps", cm)
            return code == 403 and 'admission webhook "ha.corral.test"' in out["message"]

        until("the second server to call the webhook", refused, timeout=60)
        code, out = s2.json("DELETE", f"{VWC}/ha")
        assert code == 200, out
        code, out = s1.json("GET", f"{VWC}/ha")
        assert code == 404, out

        def allowed() -> bool:
            cm = {"metadata": {"name": f"cm-{next(n)}"}}
            return s1.json("POST", "/api/v1/namespaces/default/configmaps", cm)[0] == 201

        until("the first server to stop calling it", allowed, timeout=60)
    finally:
        hooks.close()
