"""Abuse of a real ``corral server`` by one client while another keeps working: too many
watches, too many requests in flight (held open by bodies that never finish), a 100 MB body;
and secrets at rest in etcd, key rotation, the audit log's rotation."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.test_apiserver_security import Identity, _kubeconfig, _ok
from tests.kubeserver import CORRAL, Server

NS = "abuse"
WATCH_CAP = 3
WAIT = 30.0  # seconds the server may take to notice a client went away


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("apiserver-limits")
    srv = Server(
        root,
        extra=(
            "--max-requests-inflight",
            "4",
            "--max-mutating-requests-inflight",
            "2",
            "--max-watches-per-user",
            str(WATCH_CAP),
            "--audit-log-path",
            str(root / "audit" / "audit.log"),
            "--audit-log-maxsize",
            "1",
            "--audit-log-maxbackup",
            "2",
        ),
    )
    srv.start()
    try:
        _ok(*srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}}))
        for user in ("alice", "bob"):
            _ok(
                *srv.json(
                    "POST",
                    f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
                    {
                        "metadata": {"name": f"{user}-edit"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "edit",
                        },
                        "subjects": [{"kind": "User", "name": user}],
                    },
                )
            )
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0


@pytest.fixture(scope="module")
def alice(server: Server) -> Identity:
    return Identity(server, _kubeconfig(server, "alice"))


@pytest.fixture(scope="module")
def bob(server: Server) -> Identity:
    return Identity(server, _kubeconfig(server, "bob"))


class RawRequest:
    """A request whose headers are sent and whose body is held back: the server has started
    on it and waits (a slow or hostile client)."""

    def __init__(self, ident: Identity, method: str, path: str, length: int) -> None:
        raw = socket.create_connection(("127.0.0.1", ident.server.port), timeout=60)
        self.sock = ident.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def status(self) -> tuple[int, str]:
        """The status code and what follows the headers read so far."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode()
        return int(line.split()[1]), data.decode(errors="replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _watch(ident: Identity) -> RawRequest:
    req = RawRequest.__new__(RawRequest)
    raw = socket.create_connection(("127.0.0.1", ident.server.port), timeout=60)
    req.sock = ident.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    req.sock.sendall(
        f"GET /api/v1/namespaces/{NS}/configmaps?watch=true HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    return req


def test_watch_cap_per_user_leaves_others_served(alice: Identity, bob: Identity) -> None:
    held = [_watch(alice) for _ in range(WATCH_CAP)]
    try:
        for w in held:
            assert w.status()[0] == 200
        extra = _watch(alice)
        code, text = extra.status()
        extra.close()
        assert code == 429, text
        assert "Retry-After: 1" in text
        assert '"reason":"TooManyRequests"' in text and "alice" in text
        theirs = _watch(bob)
        assert theirs.status()[0] == 200
        theirs.close()
        assert bob.request("GET", f"/api/v1/namespaces/{NS}/configmaps")[0] == 200
        assert alice.request("GET", f"/api/v1/namespaces/{NS}/configmaps")[0] == 200
    finally:
        for w in held:
            w.close()
    deadline = time.monotonic() + WAIT
    while True:  # the slots come back once the server sees the watches gone
        again = _watch(alice)
        code, _ = again.status()
        again.close()
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 200


def test_inflight_limit_refuses_the_flooder_not_the_others(
    server: Server, alice: Identity, bob: Identity
) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    body = json.dumps({"metadata": {"name": "slow"}}).encode()
    slow = RawRequest(alice, "POST", path, len(body))
    try:
        slow.send(body[:5])  # the server now waits for the rest, holding alice's slot
        deadline = time.monotonic() + WAIT
        while True:
            code, headers, status = alice.request("POST", path, {"metadata": {"name": "fast"}})
            if code == 429 or time.monotonic() > deadline:
                break
            # the slow request had not reached the server yet: undo and try again
            server.json("DELETE", f"{path}/fast")
            time.sleep(0.1)
        assert code == 429, status
        assert headers.get("Retry-After") == "1"
        assert status["reason"] == "TooManyRequests"
        code, _, status = bob.request("POST", path, {"metadata": {"name": "bobs"}})
        assert code == 201, status
        code, _ = server.json("POST", path, {"metadata": {"name": "admins"}})
        assert code == 201
        slow.send(body[5:])
        assert slow.status()[0] == 201
    finally:
        slow.close()
    code, _, _ = alice.request("POST", path, {"metadata": {"name": "after"}})
    assert code == 201


def test_huge_body_refused_others_served(alice: Identity, bob: Identity) -> None:
    big = RawRequest(alice, "POST", f"/api/v1/namespaces/{NS}/configmaps", 100 * 1024 * 1024)
    try:
        big.send(b'{"metadata":')
        code, text = big.status()
    finally:
        big.close()
    assert code == 413, text
    assert "RequestEntityTooLarge" in text
    assert bob.request("GET", f"/api/v1/namespaces/{NS}/configmaps")[0] == 200


def test_audit_log_rotates_by_size(server: Server, bob: Identity) -> None:
    import http.client

    audit = server.root / "audit"
    filler = "x" * 6000
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=bob.ctx, timeout=60)
    try:
        for i in range(450):  # ~2.7 MB of request URIs: two rotations at 1 MB
            conn.request("GET", f"/api/v1/namespaces/{NS}/configmaps?labelSelector=a{i}{filler}")
            conn.getresponse().read()
    finally:
        conn.close()
    files = sorted(p.name for p in audit.iterdir())
    backups = [f for f in files if f.startswith("audit-") and f.endswith(".log")]
    assert "audit.log" in files and len(backups) == 2, files
    for name in files:
        assert (audit / name).stat().st_size <= 1024 * 1024
        for line in (audit / name).read_text().splitlines():
            assert json.loads(line)["kind"] == "Event"


# ---------------------------------------------------------------------- at rest: etcd, rotation


def _raw(store_url: str, key: str) -> bytes:
    import asyncio

    from orchestrator.store import open_store

    async def get() -> bytes:
        store = open_store(store_url)
        await store.start()
        try:
            return (await store.get(key)).value
        finally:
            await store.close()

    return asyncio.run(get())


def test_secrets_encrypted_in_etcd(tmp_path: Path) -> None:
    try:
        import aetcd  # noqa: F401
    except ImportError:
        pytest.skip("the etcd extra (aetcd) is not installed")
    from testkit.etcdcluster import EtcdCluster, EtcdMissing

    cluster = EtcdCluster(1)
    try:
        cluster.start()
    except EtcdMissing as e:
        pytest.skip(str(e))
    try:
        srv = Server(tmp_path / "srv", extra=("--datastore-endpoint", cluster.url))
        srv.start()
        try:
            value = "etcd-sees-no-plaintext-0815"
            _ok(
                *srv.json(
                    "POST",
                    "/api/v1/namespaces/default/secrets",
                    {"metadata": {"name": "s"}, "stringData": {"v": value}},
                )
            )
            code, got = srv.json("GET", "/api/v1/namespaces/default/secrets/s")
            assert base64.b64decode(got["data"]["v"]).decode() == value
        finally:
            assert srv.stop() == 0
        stored = _raw(cluster.url, "/registry/secrets/default/s")
        assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert value.encode() not in stored
        assert base64.b64encode(value.encode()) not in stored
    finally:
        cluster.stop()


def test_rotate_key_rewrites_every_secret(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv")
    srv.start()
    value = "rotate-me-please-1234"
    try:
        _ok(
            *srv.json(
                "POST",
                "/api/v1/namespaces/default/secrets",
                {"metadata": {"name": "r"}, "stringData": {"v": value}},
            )
        )
    finally:
        assert srv.stop() == 0
    db = f"sqlite://{srv.data_dir / 'db' / 'state.db'}"
    assert _raw(db, "/registry/secrets/default/r").startswith(b"k8s:enc:aesgcm:v1:key1:")
    p = subprocess.run(
        [CORRAL, "secrets-encrypt", "rotate", "--data-dir", str(srv.data_dir)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "key2" in p.stdout and "1 secret" in p.stdout
    config = yaml.safe_load((srv.data_dir / "cred" / "encryption-config.yaml").read_text())
    keys = config["resources"][0]["providers"][0]["aesgcm"]["keys"]
    assert [k["name"] for k in keys] == ["key2"]
    assert _raw(db, "/registry/secrets/default/r").startswith(b"k8s:enc:aesgcm:v1:key2:")
    srv.start()
    try:
        code, got = srv.json("GET", "/api/v1/namespaces/default/secrets/r")
        assert code == 200 and base64.b64decode(got["data"]["v"]).decode() == value
    finally:
        assert srv.stop() == 0
