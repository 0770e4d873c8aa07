"""The control-plane suite without root or etcd: its arithmetic (ratios of times per operation,
goals), the table with a runner that did not run (which keeps RESULTS.md as it was), and
every case measured through a real ``corral server`` with tiny N."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench import cli
from bench import controlplane as cp
from bench.model import Report, Status, SuiteResult
from testkit.kubeserver import Server

TINY = cp.Params(creates=6, pods=5, list_runs=2, watch=((2, 3), (4, 2)), settle=0, warmup=1)


def _figures(scale: float) -> dict[str, float]:
    return {row.key: scale for row in cp.rows(TINY)}


def test_ratios_are_of_the_time_per_operation() -> None:
    assert cp.ratio(1000.0, 4000.0, rate=True) == 4.0  # 4x fewer creates/s: 4x the time
    assert cp.ratio(0.5, 0.25, rate=False) == 2.0  # twice the latency
    assert math.isnan(cp.ratio(0.0, 1.0, rate=True))
    assert math.isnan(cp.ratio(1.0, math.nan, rate=False))


def test_rows_follow_the_watch_cases() -> None:
    keys = [row.key for row in cp.rows(TINY)]
    assert keys[:5] == ["idle_rss_kib", "creates_cm_per_s", "gets_per_s", "creates_pod_per_s",
                        "list_s"]  # fmt: skip
    assert keys[5:13] == ["watch2_p50_s", "watch2_p99_s", "watch2_start_p50_s",
                          "watch2_start_p99_s", "watch4_p50_s", "watch4_p99_s",
                          "watch4_start_p50_s", "watch4_start_p99_s"]  # fmt: skip
    assert keys[13:] == ["rss_kib", "cpu_create_cm_s", "cpu_get_s", "cpu_create_pod_s",
                        "cpu_list_s", "cpu_watch2_s", "cpu_watch4_s"]  # fmt: skip
    assert [r.rate for r in cp.rows(TINY)][1:4] == [True, True, True]


def test_table_with_every_runner() -> None:
    res = {cp.SQLITE: _figures(2.0), cp.OVER_ETCD: _figures(4.0), cp.DIRECT: _figures(1.0)}
    t = cp.table(res, {}, TINY, quick=False)
    ratios = ("SQLite server / etcd direct", "server over etcd / etcd direct")
    assert t.columns == ("operation", cp.SQLITE, cp.OVER_ETCD, cp.DIRECT, *ratios)
    by_title = {r[0]: r[1:] for r in t.rows}
    # a rate twice etcd's is half the time per operation; a latency twice etcd's, twice
    assert by_title["ConfigMap creates/s"] == ("2", "4", "1", "0.50×", "0.25×")
    assert by_title["watch p99, 4 watchers (ms)"] == ("2000.00", "4000.00", "1000.00", "2.00×",
                                                      "4.00×")  # fmt: skip
    assert by_title["server RSS idle after start (MiB)"][:3] == ("0.0", "0.0", "0.0")
    goals = [n for n in t.notes if n.startswith("goal")]
    assert goals == [
        "goal ConfigMap creates/s >= 2000: 2.0, missed",
        "goal watch p99 (ms), 2 watchers <= 50: 2000.0, missed",
        "goal watch p99 (ms), 4 watchers <= 50: 2000.0, missed",
        "goal idle RSS (MiB) <= 100: 0.0, met",
    ]
    assert not [n for n in cp.table(res, {}, TINY, quick=True).notes if n.startswith("goal")]


def test_a_runner_not_run_keeps_results_unpublished() -> None:
    res = {cp.SQLITE: _figures(3000.0)}
    why = "/usr/bin/etcd not found (apt-get install etcd-server)"
    t = cp.table(res, {cp.OVER_ETCD: why, cp.DIRECT: why}, TINY, quick=False)
    assert t.columns[1:4] == (cp.SQLITE, cp.OVER_ETCD, cp.DIRECT)
    assert t.rows[1] == ("ConfigMap creates/s", "3000", "not run", "not run", "n/a", "n/a")
    assert f"{cp.DIRECT}: not run: {why}" in t.notes
    rep = Report(False, "2026-01-01T00:00:00Z", {}, {}, {},
                 (SuiteResult("control-plane", "cp", Status.OK, tables=(t,)),))  # fmt: skip
    missing = cli.missing_peers(rep)
    assert "control-plane: API server operations: ConfigMap creates/s did not run" in missing


def test_every_case_through_a_real_server(tmp_path: Path) -> None:
    """The harness against a real ``corral server`` (SQLite): the counts it checks hold, every
    figure is there, and a watch sees each write once per watcher."""
    srv = Server(tmp_path / "srv")
    srv.start()

    async def main() -> tuple[dict[str, float], list[float]]:
        ops = cp.ApiOps(cp.SQLITE, f"https://127.0.0.1:{srv.port}", srv.ssl_context())
        try:
            await ops.setup(cp.NS, cp.WARM, "w", *(cp.watch_ns(w) for w, _ in TINY.watch))
            lat, lat_start, _ = await cp.watch_latencies(ops, "w", 3, 4)
            assert len(lat_start) == 12 and all(x > 0 for x in lat_start)
            assert srv.proc is not None
            pid = srv.proc.pid
            return await cp.measure(ops, TINY, lambda: cp.cpu_s(pid)), lat
        finally:
            await ops.close()

    try:
        out, lat = asyncio.run(main())
    finally:
        assert srv.stop() == 0
    assert len(lat) == 12 and all(x >= 0 for x in lat)
    assert set(out) == {r.key for r in cp.rows(TINY)} - {"idle_rss_kib", "rss_kib"}
    assert out["creates_cm_per_s"] > 0 and out["list_s"] > 0
    assert all(out[k] >= 0 for k in out if k.startswith("cpu_"))


def test_a_failed_write_fails_the_case_instead_of_hanging(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv")
    srv.start()

    async def main() -> None:
        ops = cp.ApiOps(cp.SQLITE, f"https://127.0.0.1:{srv.port}", srv.ssl_context())
        try:  # the namespace does not exist: watching it works, writing into it does not
            await cp.watch_latencies(ops, "missing", 2, 1)
        finally:
            await ops.close()

    try:
        with pytest.raises(ValueError, match="create cm missing: 404"):
            asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        srv.stop()
