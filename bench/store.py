"""Suite store: the store drivers side by side with etcd driven straight through its client.

Runners: the SQLite driver (a database on disk under /var/tmp: WAL, synchronous=FULL, so each
group commit pays its fsync), the etcd driver, and ``aetcd`` talking to the same etcd with no
driver in between (plain puts, gets, a prefix range, a prefix watch: the ceiling a driver can
reach). etcd is Debian's etcd-server, one member started here on 127.0.0.1 with its data on
tmpfs when there is one (as the tests; on disk its fsyncs would dominate) and stopped after.

Cases: creates/s and gets/s with ``IN_FLIGHT`` operations at once (one asyncio loop), the
time to list ``list_keys`` keys under one prefix (median of ``runs``), and watch latency with
``watchers`` watchers of one prefix: for each of ``events`` sequential writes, the time from
the start of the write to each watcher receiving its event (p50, p99 over all of them).
``--quick`` only proves the harness runs; nothing here is judged.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .model import Status, SuiteResult, Table
from .stats import percentiles

IN_FLIGHT = 32
VALUE = b"x" * 200


@dataclass(frozen=True, slots=True)
class StoreParams:
    ops: int  # creates, then as many gets
    list_keys: int
    runs: int  # lists timed
    watchers: int
    events: int


FULL = StoreParams(ops=5000, list_keys=10_000, runs=5, watchers=100, events=200)
QUICK = StoreParams(ops=20, list_keys=10, runs=1, watchers=3, events=3)


class Ops(Protocol):
    label: str

    async def create(self, key: str, value: bytes) -> None: ...
    async def get(self, key: str) -> None: ...
    async def count(self, prefix: str) -> int: ...
    async def watch(self, prefix: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        """Set ``ready`` once watching, then call ``seen(key)`` for every event, forever."""

    async def close(self) -> None: ...


class DriverOps:
    def __init__(self, label: str, store: Any) -> None:
        self.label, self.store = label, store

    async def create(self, key: str, value: bytes) -> None:
        await self.store.create(key, value)

    async def get(self, key: str) -> None:
        await self.store.get(key)

    async def count(self, prefix: str) -> int:
        return len((await self.store.list(prefix)).items)

    async def watch(self, prefix: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        rev = await self.store.current_revision()
        it = self.store.watch(prefix, rev)
        ready.set()
        async for ev in it:
            seen(ev.kv.key)

    async def close(self) -> None:
        await self.store.close()


class AetcdOps:
    """The same operations straight through aetcd (a put is a plain put, no compare)."""

    def __init__(self, client: Any) -> None:
        self.label, self.client = "etcd direct (aetcd)", client

    async def create(self, key: str, value: bytes) -> None:
        await self.client.put(key.encode(), value)

    async def get(self, key: str) -> None:
        await self.client.get(key.encode())

    async def count(self, prefix: str) -> int:
        return len(list(await self.client.get_prefix(prefix.encode())))

    async def watch(self, prefix: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        w = await self.client.watch_prefix(prefix.encode())
        ready.set()
        try:
            async for ev in w:
                seen(ev.kv.key.decode())
        finally:
            await w.cancel()

    async def close(self) -> None:
        await self.client.close()


async def _bounded(n: int, fn: Callable[[int], Awaitable[None]]) -> float:
    """Run fn(0..n-1) with IN_FLIGHT at once; the wall time."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(IN_FLIGHT, n))))
    return time.perf_counter() - t0


async def measure(ops: Ops, p: StoreParams) -> dict[str, float]:
    """Every case for one runner; keys go under a prefix of its own."""
    base = f"/registry/bench{time.monotonic_ns()}/"
    out: dict[str, float] = {}
    wall = await _bounded(p.ops, lambda i: ops.create(f"{base}c/{i}", VALUE))
    out["creates_per_s"] = p.ops / wall
    wall = await _bounded(p.ops, lambda i: ops.get(f"{base}c/{i}"))
    out["gets_per_s"] = p.ops / wall
    await _bounded(p.list_keys, lambda i: ops.create(f"{base}l/{i:06d}", VALUE))
    times = []
    for _ in range(p.runs):
        t0 = time.perf_counter()
        n = await ops.count(f"{base}l/")
        times.append(time.perf_counter() - t0)
        if n != p.list_keys:
            raise ValueError(f"{ops.label}: listed {n} keys, wrote {p.list_keys}")
    out["list_s"] = percentiles(times).p50
    lat = await watch_latencies(ops, f"{base}w/", p.watchers, p.events)
    pc = percentiles(lat)
    out["watch_p50_s"], out["watch_p99_s"] = pc.p50, pc.p99
    return out


async def watch_latencies(ops: Ops, prefix: str, watchers: int, events: int) -> list[float]:
    """Sequential writes; for each, the time until each watcher got it."""
    started: dict[str, float] = {}
    arrived: list[float] = []
    pending: dict[str, int] = {}
    done: dict[str, asyncio.Event] = {}

    def seen(key: str) -> None:
        arrived.append(time.perf_counter() - started[key])
        pending[key] -= 1
        if pending[key] == 0:
            done[key].set()

    readies = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(ops.watch(prefix, r, seen)) for r in readies]
    try:
        await asyncio.gather(*(r.wait() for r in readies))
        for i in range(events):
            key = f"{prefix}{i}"
            pending[key], done[key] = watchers, asyncio.Event()
            started[key] = time.perf_counter()
            await ops.create(key, VALUE)
            await asyncio.wait_for(done[key].wait(), 30)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if len(arrived) != watchers * events:
        raise ValueError(f"{ops.label}: {len(arrived)} events seen, {watchers * events} due")
    return arrived


ROWS = (
    ("creates/s", "creates_per_s", 1.0, "{:.0f}"),
    ("gets/s", "gets_per_s", 1.0, "{:.0f}"),
    ("list (ms)", "list_s", 1e3, "{:.1f}"),
    ("watch p50 (ms)", "watch_p50_s", 1e3, "{:.2f}"),
    ("watch p99 (ms)", "watch_p99_s", 1e3, "{:.2f}"),
)


def table(results: dict[str, dict[str, float]], skipped: dict[str, str], p: StoreParams) -> Table:
    labels = list(results) + list(skipped)
    rows = []
    for title, key, scale, fmt in ROWS:
        row = [title]
        for label in labels:
            row.append(fmt.format(results[label][key] * scale) if label in results else "-")
        rows.append(tuple(row))
    notes = [
        f"{IN_FLIGHT} operations in flight for creates and gets ({p.ops} each); list of "
        f"{p.list_keys} keys (median of {p.runs}); watch: {p.watchers} watchers, "
        f"{p.events} sequential writes of {len(VALUE)}-byte values",
        "SQLite on disk (synchronous=FULL); etcd 1 member with its data on tmpfs",
    ]
    notes += [f"{label}: {why}" for label, why in skipped.items()]
    return Table(
        title="store operations",
        columns=("operation", *labels),
        rows=tuple(rows),
        notes=tuple(notes),
        data={"results": results, "skipped": skipped},
    )


async def _run_all(p: StoreParams) -> Table:
    from orchestrator.store import open_store

    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    d = tempfile.mkdtemp(prefix="cbs-", dir="/var/tmp")
    try:
        store = open_store(f"sqlite://{d}/state.db", compact_interval=0)
        await store.start()
        ops = DriverOps("sqlite driver", store)
        try:
            results[ops.label] = await measure(ops, p)
        finally:
            await ops.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    try:
        import aetcd

        from testkit.etcdcluster import EtcdCluster, EtcdMissing
    except ImportError as e:
        skipped["etcd driver"] = skipped["etcd direct (aetcd)"] = f"not installed: {e}"
        return table(results, skipped, p)
    cluster = EtcdCluster(1)
    try:
        cluster.start()
    except EtcdMissing as e:
        skipped["etcd driver"] = skipped["etcd direct (aetcd)"] = str(e)
        return table(results, skipped, p)
    try:
        store = open_store(cluster.url, compact_interval=0)
        await store.start()
        ops = DriverOps("etcd driver", store)
        try:
            results[ops.label] = await measure(ops, p)
        finally:
            await ops.close()
        m = cluster.members[0]
        direct = AetcdOps(aetcd.Client(host="127.0.0.1", port=m.client_port))
        try:
            results[direct.label] = await measure(direct, p)
        finally:
            await direct.close()
    finally:
        cluster.stop()
    return table(results, skipped, p)


def store_suite(quick: bool) -> SuiteResult:
    from .suites import SUITES

    t = asyncio.run(_run_all(QUICK if quick else FULL))
    return SuiteResult("store", SUITES["store"], Status.OK, tables=(t,))
