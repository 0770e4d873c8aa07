"""``corral server --datastore-endpoint etcd://...`` over a real three-member etcd (Debian's
etcd-server, started here on free loopback ports), driven with kubectl: create, get, and a
``kubectl get -w`` that sees every change, in order, while the etcd member the server talks
to is killed (SIGKILL) in the middle of a write loop."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from testkit.etcdcluster import EtcdCluster, EtcdMissing
from tests.kubeserver import KUBECTL_CURRENT, Kubectl, Server

pytest.importorskip("aetcd")  # the etcd driver's client (the `etcd` extra)

NS = "overetcd"
WRITES = 40
KILL_AT = 15  # the member is killed once this many writes were acknowledged
WAIT = 90.0  # seconds the whole write loop, or the watch catching up, may take


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    c = EtcdCluster(3)
    try:
        c.start()
    except EtcdMissing as e:
        pytest.skip(str(e))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def server(cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("over-etcd"), extra=("--datastore-endpoint", cluster.url))
    srv.start()
    try:
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0, f"corral server did not stop cleanly on SIGTERM: {rc}"


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    if not os.access(KUBECTL_CURRENT, os.X_OK):
        pytest.skip(f"kubectl not found at {KUBECTL_CURRENT}")
    k = Kubectl(KUBECTL_CURRENT, tmp_path_factory.mktemp("home"), server.kubeconfig, "1.32")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    k.run("create", "-f", "-", input=json.dumps(namespace))  # JSON: no protobuf body
    return k


def _cm(name: str, v: int) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": str(v)}}
    )


def test_kubectl_create_get_over_etcd(kubectl: Kubectl, cluster: EtcdCluster) -> None:
    kubectl.run("create", "-n", NS, "-f", "-", input=_cm("first", 7))
    got = json.loads(kubectl.run("get", "configmap", "first", "-n", NS, "-o", "json").stdout)
    assert got["data"] == {"v": "7"} and got["metadata"]["uid"]
    out = kubectl.run("get", "configmaps", "-n", NS).stdout
    assert "first" in out and "DATA" in out
    # It is in etcd, under the key kube-apiserver would use, at the revision kubectl saw.
    import asyncio

    import aetcd

    async def read() -> tuple[bytes, int]:
        m = cluster.members[1]
        async with aetcd.Client(host="127.0.0.1", port=m.client_port) as c:
            r = await c.get(f"/registry/configmaps/{NS}/first".encode())
            assert r is not None
            return r.value, r.mod_revision

    value, rev = asyncio.run(read())
    assert json.loads(value)["data"] == {"v": "7"}
    assert str(rev) == got["metadata"]["resourceVersion"]
    dup = kubectl.run("create", "-n", NS, "-f", "-", input=_cm("first", 7), check=False)
    assert dup.returncode != 0 and "AlreadyExists" in dup.stderr


def test_watch_sees_every_change_across_an_etcd_member_kill(
    kubectl: Kubectl, server: Server, cluster: EtcdCluster
) -> None:
    """A write loop (each value retried until acknowledged: a write cut by the kill has an
    unknown outcome, and writing the same value again changes nothing) while ``kubectl get
    -w`` watches; the first member (the one the server's gRPC channel picked) is killed
    after KILL_AT acknowledged writes. The watch must show v = 0..WRITES, each once, in
    order, with the resourceVersions the writes were acknowledged with."""
    kubectl.run("create", "-n", NS, "-f", "-", input=_cm("c", 0))
    watcher = kubectl.popen(
        "get", "configmaps", "c", "-n", NS, "-w", "--output-watch-events", "-o",
        'jsonpath={.type} {.object.metadata.resourceVersion} {.object.data.v}{"\\n"}',
    )  # fmt: skip
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.append(line.strip())
            if line.split()[-1:] == [str(WRITES)]:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    acked: dict[int, str] = {}  # v -> resourceVersion of its acknowledged write
    try:
        deadline = time.monotonic() + WAIT
        while not lines and time.monotonic() < deadline:  # the initial ADDED: watching
            time.sleep(0.05)
        for v in range(1, WRITES + 1):
            if v == KILL_AT + 1:
                cluster.kill(0)
            while True:
                assert time.monotonic() < deadline, f"writes not acknowledged: {acked}"
                try:
                    code, body = server.json(
                        "PATCH",
                        f"/api/v1/namespaces/{NS}/configmaps/c",
                        {"data": {"v": str(v)}},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                except OSError:
                    code, body = 0, None
                if code == 200:
                    acked[v] = body["metadata"]["resourceVersion"]
                    break
                time.sleep(0.1)
        assert done.wait(WAIT), f"the watch stopped at {lines[-3:]}"
    finally:
        watcher.kill()
        watcher.wait()
        stderr = watcher.stderr.read() if watcher.stderr else ""
        cluster.restart(0)
    events = [ln.split() for ln in lines if ln]
    assert events[0][0] == "ADDED" and events[0][2] == "0", (events, stderr)
    assert [e[0] for e in events[1:]] == ["MODIFIED"] * WRITES, (events, stderr)
    assert [int(e[2]) for e in events[1:]] == list(range(1, WRITES + 1)), events
    rvs = [int(e[1]) for e in events]
    assert rvs == sorted(set(rvs)), f"not in order: {rvs}"
    assert {int(e[2]): e[1] for e in events[1:]} == acked
    # The server kept serving reads and writes through the failover.
    got = json.loads(kubectl.run("get", "configmap", "c", "-n", NS, "-o", "json").stdout)
    assert got["data"] == {"v": str(WRITES)}


def test_two_servers_never_allocate_one_address_twice(
    cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Service creates spread over two API servers over one etcd, at once: every clusterIP
    and nodePort distinct (the allocation keys are created only if absent, in etcd)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.kubeserver import API_ONLY

    flags = ("--service-cidr", "10.97.0.0/26", "--service-node-port-range", "32000-32099")
    servers = [
        Server(
            tmp_path_factory.mktemp(f"alloc{i}"),
            extra=(*API_ONLY, "--datastore-endpoint", cluster.url, *flags),
        )
        for i in range(2)
    ]
    for s in servers:
        s.start()
    try:
        code, _ = servers[0].json("POST", "/api/v1/namespaces", {"metadata": {"name": "alloc"}})
        assert code == 201

        def create(i: int) -> tuple[int, object]:
            body = {
                "metadata": {"name": f"s{i}"},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]},
            }
            return servers[i % 2].json("POST", "/api/v1/namespaces/alloc/services", body)

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(create, range(50)))
        assert all(code == 201 for code, _ in results), results
        code, items = servers[1].json("GET", "/api/v1/namespaces/alloc/services")
        ips = [s["spec"]["clusterIP"] for s in items["items"]]
        ports = [s["spec"]["ports"][0]["nodePort"] for s in items["items"]]
        assert len(ips) == 50 and len(set(ips)) == 50 and len(set(ports)) == 50
    finally:
        for s in servers:
            s.stop()


def test_an_object_too_large_for_etcd_is_refused_and_not_stored(server: Server) -> None:
    """A Deployment whose encoding passes the API server's 3 MiB body limit but not etcd's
    request limit (1.5 MiB by default): etcd refuses the write, and kube-apiserver passes its
    error on as it is (500, "etcdserver: request is too large", no reason; ours named the
    store key, as an InternalError, with a traceback in the log). Nothing is stored, and the
    server serves on."""
    ns = "toolarge"
    assert server.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    labels = {"app": "big"}
    container = {"name": "c", "image": "b"}
    dep = {
        "metadata": {"name": "big"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    code, _, raw = server.request("POST", path, dep)
    assert code == 201, raw
    container["env"] = [{"name": "E", "value": "x" * 2_000_000}]
    for method, where, body in (("POST", path, {**dep, "metadata": {"name": "big2"}}),
                                ("PUT", f"{path}/big", dep)):  # fmt: skip
        code, _, raw = server.request(method, where, body)
        status = json.loads(raw)
        assert (code, status["kind"], status["code"]) == (500, "Status", 500), status
        assert status["message"] == "etcdserver: request is too large", status
        assert "reason" not in status, status
    code, deps = server.json("GET", path)  # (the controllers here write to it: no equality)
    assert [d["metadata"]["name"] for d in deps["items"]] == ["big"]
    assert "env" not in deps["items"][0]["spec"]["template"]["spec"]["containers"][0]
