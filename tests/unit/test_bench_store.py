"""The store suite's harness, without root or etcd: every case runs on the SQLite driver with
tiny N, the counts are checked, and the table lays out skipped runners."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import store as bs
from orchestrator.store import open_store

TINY = bs.StoreParams(ops=10, list_keys=7, runs=2, watchers=3, events=4)


def test_measure_runs_every_case_on_the_sqlite_driver(tmp_path: Path) -> None:
    async def main() -> dict[str, float]:
        s = open_store(f"sqlite://{tmp_path}/db", compact_interval=0)
        await s.start()
        ops = bs.DriverOps("sqlite driver", s)
        try:
            lat = await bs.watch_latencies(ops, "/registry/w/", 3, 4)
            assert len(lat) == 12 and all(x > 0 for x in lat)
            return await bs.measure(ops, TINY)
        finally:
            await ops.close()

    out = asyncio.run(main())
    assert set(out) == {key for _, key, _, _ in bs.ROWS}
    assert all(v > 0 for v in out.values())


def test_table_marks_skipped_runners() -> None:
    res = {"sqlite driver": {key: 0.5 for _, key, _, _ in bs.ROWS}}
    t = bs.table(res, {"etcd driver": "etcd not found"}, TINY)
    assert t.columns == ("operation", "sqlite driver", "etcd driver")
    assert t.rows[0] == ("creates/s", "0", "-") and t.rows[2] == ("list (ms)", "500.0", "-")
    assert "etcd driver: etcd not found" in t.notes
