"""The scheduler suite's report, and its harness against a real server at tiny N (no root,
no etcd): every row is filled, skipped runners are laid out, the ratios are against the goal
and kube-scheduler's floor."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import scheduler as bsch
from bench import suites
from testkit.kubeserver import NO_SCHEDULER, Server

TINY = bsch.SchedParams(sizes=((3, 7),), timeout=60.0)


def test_table_rows_ratios_and_skipped() -> None:
    res = {
        bsch.label("sqlite", 3, 7): {
            "pods_per_s": 500.0,
            "creates_per_s": 800.0,
            "wall_s": 0.014,
            "scheduler_cpu_s": 0.01,
            "server_cpu_s": 0.02,
        }
    }
    t = bsch.table(res, {bsch.label("etcd", 3, 7): "etcd not found"}, TINY)
    assert t.columns == ("", "sqlite 3 nodes / 7 pods", "etcd 3 nodes / 7 pods")
    rows = {r[0]: r[1:] for r in t.rows}
    assert rows["pods/s (create to bind)"] == ("500", "-")
    assert rows["vs goal 1000 pods/s"] == ("0.50x", "-")
    assert rows["vs kube-scheduler CI floor 680 pods/s"] == ("0.74x", "-")
    assert rows["API server CPU (s)"] == ("0.0", "-")
    assert "etcd 3 nodes / 7 pods: etcd not found" in t.notes
    assert set(t.data["results"]) == set(res)


def test_suite_is_registered() -> None:
    assert "scheduler" in suites.ORDER and "scheduler" in suites.SUITES
    assert suites.select(["scheduler"]) == ["scheduler"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "srv", extra=NO_SCHEDULER)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(tmp_path / "srv", ignore_errors=True)


def test_measure_binds_every_pod(server: Server) -> None:
    assert server.proc is not None
    out = asyncio.run(bsch.measure(server.kubeconfig, 3, 7, 60.0, server.proc.pid))
    assert set(out) == {key for _, key, _ in bsch.ROWS}
    assert out["pods_per_s"] > 0 and out["wall_s"] > 0
    code, body = server.json("GET", f"/api/v1/namespaces/{bsch.NS}/pods")
    assert code == 200
    pods = body["items"]
    assert len(pods) == 8  # the warm-up pod and the 7 timed
    assert all(p["spec"].get("nodeName", "").startswith("node-") for p in pods)
