"""``corral snapshot save|ls|restore`` on a real ``corral server`` over its embedded SQLite
store: a snapshot taken while a client writes is a consistent prefix of those writes; a restore
needs the server stopped, keeps the database it replaces, and makes older resourceVersions
410 Gone; bad snapshots are refused with the store untouched."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeserver import API_ONLY, CORRAL, Server

NS = "default"


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CORRAL, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "srv", extra=API_ONLY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def configmap(srv: Server, name: str) -> None:
    code, body = srv.json(
        "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": name}}
    )
    assert code == 201, body


def names(srv: Server) -> set[str]:
    code, body = srv.json("GET", f"/api/v1/namespaces/{NS}/configmaps")
    assert code == 200, body
    return {i["metadata"]["name"] for i in body["items"] if i["metadata"]["name"].startswith("w-")}


def test_a_snapshot_saved_during_writes_restores_a_prefix_of_them(server: Server) -> None:
    acked: list[str] = []
    stop = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            i = 0
            while not stop.is_set():
                name = f"w-{i:05d}"
                configmap(server, name)
                acked.append(name)
                i += 1
        except BaseException as e:  # reported by the test
            failure.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(acked) < 20:
            time.sleep(0.05)
        before = len(acked)
        saved = corral("snapshot", "save", "--data-dir", str(server.data_dir), "--name", "s1")
        after = len(acked)
        time.sleep(0.5)  # more writes after the snapshot: the restore drops them
    finally:
        stop.set()
        t.join()
    assert not failure, failure
    assert saved.returncode == 0, saved.stderr
    snap = server.data_dir / "db" / "snapshots" / "s1.db"
    assert snap.is_file() and f"{snap} (revision " in saved.stdout
    listed = corral("snapshot", "ls", "--data-dir", str(server.data_dir))
    assert str(snap) in listed.stdout
    total = len(acked)
    code, body = server.json("GET", f"/api/v1/namespaces/{NS}/configmaps")
    old_rv = body["metadata"]["resourceVersion"]

    refused = corral("snapshot", "restore", "--data-dir", str(server.data_dir), str(snap))
    assert refused.returncode != 0 and "stop the server first" in refused.stderr
    assert len(names(server)) == total  # the running server's store is untouched

    assert server.stop() == 0
    restored = corral("snapshot", "restore", "--data-dir", str(server.data_dir), str(snap))
    assert restored.returncode == 0, restored.stderr
    kept = Path(restored.stdout.split("kept as ")[1].strip())
    server.start()

    got = sorted(names(server))
    # a prefix of the sequential writes: everything acknowledged before the save, nothing
    # the writer had not sent when it ended, no gap
    assert got == [f"w-{i:05d}" for i in range(len(got))]
    assert before <= len(got) <= after + 1
    assert len(got) < total
    # the old database is kept whole
    db = sqlite3.connect(kept)
    try:
        rows = db.execute(
            "SELECT count(*) FROM kv WHERE key >= ? AND key < ?",
            (b"/registry/configmaps/default/w-", b"/registry/configmaps/default/w.."),
        ).fetchone()[0]
    finally:
        db.close()
    assert rows == total
    # a client that watched before the restore is told to list again
    code, _, data = server.request(
        "GET",
        f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={old_rv}&timeoutSeconds=2",
    )
    if code == 200:
        first = json.loads(data.splitlines()[0])
        assert first["type"] == "ERROR" and first["object"]["code"] == 410, first
    else:
        assert code == 410, data
    # and writes go on after the restore, at revisions past every old one
    configmap(server, "w-after")
    code, body = server.json("GET", f"/api/v1/namespaces/{NS}/configmaps/w-after")
    assert int(body["metadata"]["resourceVersion"]) > int(old_rv)


def test_bad_snapshots_are_refused_and_the_store_is_untouched(
    server: Server, tmp_path: Path
) -> None:
    configmap(server, "w-keep")
    assert server.stop() == 0
    db = server.data_dir / "db" / "state.db"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    for bad, says in ((garbage, "not a database"), (other, "not a corral store")):
        out = corral("snapshot", "restore", "--data-dir", str(server.data_dir), str(bad))
        assert out.returncode != 0 and says in out.stderr, out.stderr
        assert "restore" in out.stderr and str(bad) in out.stderr
    assert not list(db.parent.glob("*.part")) and not list(db.parent.glob("*before-restore*"))
    server.start()
    assert names(server) == {"w-keep"}
    # a name that is not a file name, and a store that is not there
    out = corral("snapshot", "save", "--data-dir", str(server.data_dir), "--name", "../x")
    assert out.returncode != 0 and "../x" in out.stderr
    out = corral("snapshot", "save", "--data-dir", str(tmp_path / "nothing"))
    assert out.returncode != 0 and "no such database" in out.stderr
