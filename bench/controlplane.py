"""Suite control-plane: a real ``corral server`` driven over HTTPS, side by side with etcd.

Runners: ``corral server`` started here with its embedded SQLite store (on disk under /var/tmp:
WAL, synchronous=FULL, so each group commit pays its fsync), the same server over one Debian
``etcd-server`` member (``--datastore-endpoint etcd://...``), and ``aetcd`` sending the same
operations straight to that etcd (plain puts, gets, a prefix range, a prefix watch, with the
bytes the server stores: the ceiling a server over etcd can reach). etcd's data is on tmpfs
when there is one (as the tests; on disk its fsyncs would dominate).

The clients run in this process, on one asyncio loop, over HTTPS with the admin client
certificate and keep-alive connections (``IN_FLIGHT`` of them for creates and gets), through
a lean HTTP/1.1 client (what the harness costs runs on the server's cores too). Cases:
the server's RSS once it is ready and idle; ConfigMap creates/s and gets/s with ``IN_FLIGHT``
requests at once; Pod creates/s (``pods`` of them), then the time to list them all (median of
``list_runs``); watch latency with each ``(watchers, writes)`` of ``watch``: the watchers watch
one namespace's ConfigMaps, one write at a time is made, and for each watcher the time from
the write's response to the watcher reading the event (an event read before the response
counts as 0: over etcd the server often fans the event out before it answers the write),
and the time from the start of the write; and the server's RSS after all that. Ratios are
Corral over etcd direct of the time one operation takes (or of the RSS): below 1x means
Corral is faster or smaller.
``--quick`` only proves the harness runs; nothing here is judged.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from .model import Status, SuiteResult, Table
from .stats import percentiles

IN_FLIGHT = 32
OPENING = 64  # connections being opened at once (1000 watchers do not all knock at once)
NS = "bench"
WARM = "bench-warm"
CM_DATA = "x" * 200
SQLITE = "corral server (SQLite)"
OVER_ETCD = "corral server (etcd)"
DIRECT = "etcd direct (aetcd)"
NAMES = {SQLITE: "SQLite server", OVER_ETCD: "server over etcd"}
GOALS = {"creates_cm_per_s": 2000.0, "watch_p99_s": 0.050, "idle_rss_kib": 100 * 1024.0}


@dataclass(frozen=True, slots=True)
class Params:
    creates: int  # ConfigMaps created, then read back one by one
    pods: int  # Pods created, then listed
    list_runs: int
    watch: tuple[tuple[int, int], ...]  # (watchers, sequential writes)
    settle: float  # seconds between "ready" and the idle RSS reading
    warmup: int  # times IN_FLIGHT creates and gets, untimed


FULL = Params(
    creates=5000, pods=10_000, list_runs=5, watch=((100, 200), (1000, 50)), settle=2.0, warmup=10
)
QUICK = Params(creates=20, pods=10, list_runs=1, watch=((3, 3), (5, 2)), settle=0.2, warmup=1)


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": CM_DATA}}  # fmt: skip


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "i": name}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox:1.36",
                    "command": ["sleep", "infinity"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ]
        },
    }


class Ops(Protocol):
    label: str

    async def create(self, ns: str, kind: str, name: str) -> None:
        """Create the ConfigMap (``kind`` "cm") or Pod ("pod") ``name`` in ``ns``; return
        once the write is acknowledged."""

    async def get(self, ns: str, name: str) -> None:
        """Read the ConfigMap ``name``."""

    async def count_pods(self, ns: str) -> int:
        """List every Pod of ``ns``; how many there were."""

    async def watch(self, ns: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        """Watch the ConfigMaps of ``ns`` (a namespace that gets no other writes): set
        ``ready`` once no later write can be missed, then ``seen(name)`` for every event."""

    async def close(self) -> None: ...


class _Event(msgspec.Struct):
    object: _Object


class _Object(msgspec.Struct):
    metadata: _Meta


class _Meta(msgspec.Struct):
    name: str


_watch_event = msgspec.json.Decoder(_Event)


class _Conn:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1 for these requests (a
    lean client: what it costs runs on the same two cores as the server)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, ssl: Any) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl, limit=1 << 20)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)

    async def head(self) -> tuple[int, dict[bytes, bytes]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    async def chunk(self) -> bytes:
        """The next chunk of a chunked body (b"" at its end)."""
        size = int((await self.reader.readline()).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self.send(method, path, body)
        status, headers = await self.head()
        if headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while part := await self.chunk():
                parts.append(part)
            await self.reader.readuntil(b"\r\n")  # the (empty) trailer
            return status, b"".join(parts)
        return status, await self.reader.readexactly(int(headers.get(b"content-length", b"0")))

    def close(self) -> None:
        self.writer.close()


class WatchStream(asyncio.Protocol):
    """One watch's response, parsed as it arrives (status line, headers, chunks, one event
    per line), with no task switch per event: 1000 of them in one process must not add up
    to more than the server's own fan-out."""

    def __init__(self, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        self.ready, self.seen = ready, seen
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = 0
        self._buf = b""
        self._line = b""

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        if not self.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            self.status = int(buf.split(b" ", 2)[1])
            buf = buf[end + 4 :]
            if self.status != 200:
                self._end()
                return
            self.ready.set()  # the watch runs from its resourceVersion: nothing is missed
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                self._end()
                return
            if len(buf) < eol + 2 + size + 2:
                break
            *lines, self._line = (self._line + buf[eol + 2 : eol + 2 + size]).split(b"\n")
            for line in lines:
                if line.strip():
                    self.seen(_watch_event.decode(line).object.metadata.name)
            pos = eol + 2 + size + 2
        self._buf = buf[pos:]

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()


class ApiOps:
    """The operations as Kubernetes API requests to a ``corral server``: a pool of
    keep-alive connections for requests, a connection of its own for each watch."""

    def __init__(self, label: str, base_url: str, ssl: Any) -> None:
        self.label, self.ssl = label, ssl
        host, _, port = base_url.removeprefix("https://").rpartition(":")
        self.host, self.port = host, int(port)
        self._idle: list[_Conn] = []
        self._all: list[_Conn] = []
        self._opening = asyncio.Semaphore(OPENING)
        self.sample: dict[str, bytes] = {}  # kind -> a created object, as the server stores it

    async def _open(self) -> _Conn:
        async with self._opening:
            conn = await _Conn.open(self.host, self.port, self.ssl)
        self._all.append(conn)
        return conn

    async def _request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = self._idle.pop() if self._idle else None
        if conn is not None and conn.reader.at_eof():  # the server closed it while idle
            conn.close()
            conn = None
        if conn is None:
            conn = await self._open()
        try:
            out = await conn.request(method, path, body)
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)
        return out

    @staticmethod
    def _path(ns: str, kind: str) -> str:
        return f"/api/v1/namespaces/{ns}/{'pods' if kind == 'pod' else 'configmaps'}"

    async def setup(self, *namespaces: str) -> None:
        for ns in namespaces:
            body = msgspec.json.encode({"metadata": {"name": ns}})
            status, _ = await self._request("POST", "/api/v1/namespaces", body)
            if status != 201:
                raise ValueError(f"{self.label}: create namespace {ns}: {status}")

    async def create(self, ns: str, kind: str, name: str) -> None:
        body = msgspec.json.encode(pod(name) if kind == "pod" else configmap(name))
        status, data = await self._request("POST", self._path(ns, kind), body)
        if status != 201:
            raise ValueError(f"{self.label}: create {kind} {ns}: {status} {data[:300]!r}")
        if kind not in self.sample:
            obj = msgspec.json.decode(data)
            obj["metadata"].pop("resourceVersion", None)
            self.sample[kind] = msgspec.json.encode(obj)

    async def get(self, ns: str, name: str) -> None:
        status, _ = await self._request("GET", f"{self._path(ns, 'cm')}/{name}")
        if status != 200:
            raise ValueError(f"{self.label}: get {name}: {status}")

    async def count_pods(self, ns: str) -> int:
        status, data = await self._request("GET", self._path(ns, "pod"))
        if status != 200:
            raise ValueError(f"{self.label}: list pods: {status}")
        return len(msgspec.json.decode(data)["items"])

    async def watch(self, ns: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        status, data = await self._request("GET", self._path(ns, "cm") + "?limit=1")
        if status != 200:
            raise ValueError(f"{self.label}: watch {ns}: list: {status}")
        rv = msgspec.json.decode(data)["metadata"]["resourceVersion"]
        loop = asyncio.get_running_loop()
        stream = WatchStream(ready, seen)
        async with self._opening:
            transport, _ = await loop.create_connection(
                lambda: stream, self.host, self.port, ssl=self.ssl
            )
        try:
            path = f"{self._path(ns, 'cm')}?watch=1&resourceVersion={rv}"
            transport.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await stream.ended
        finally:
            transport.close()
        if stream.status != 200:
            raise ValueError(f"{self.label}: watch {ns}: {stream.status}")
        raise ValueError(f"{self.label}: watch {ns}: the server ended it")

    async def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all, self._idle = [], []


class EtcdOps:
    """The same operations straight through aetcd: a create is a plain put of the bytes the
    server stores for that kind, a get a range of one key, a list a prefix range. Its keys
    are those of namespaces named ``prefix`` + the namespace, so that it never meets the
    keys a server left in the same etcd."""

    def __init__(self, client: Any, samples: dict[str, bytes], prefix: str = "direct-") -> None:
        self.label, self.client, self.samples = DIRECT, client, samples
        self.prefix = prefix

    def _key(self, ns: str, kind: str, name: str = "") -> bytes:
        res = "pods" if kind == "pod" else "configmaps"
        return f"/registry/{res}/{self.prefix}{ns}/{name}".encode()

    async def create(self, ns: str, kind: str, name: str) -> None:
        await self.client.put(self._key(ns, kind, name), self.samples[kind])

    async def get(self, ns: str, name: str) -> None:
        await self.client.get(self._key(ns, "cm", name))

    async def count_pods(self, ns: str) -> int:
        return len(list(await self.client.get_prefix(self._key(ns, "pod"))))

    async def watch(self, ns: str, ready: asyncio.Event, seen: Callable[[str], None]) -> None:
        w = await self.client.watch_prefix(self._key(ns, "cm"))
        ready.set()
        try:
            async for ev in w:
                seen(ev.kv.key.decode().rsplit("/", 1)[1])
        finally:
            await w.cancel()

    async def close(self) -> None:
        await self.client.close()


def _no_cpu() -> float:
    return 0.0


async def bounded(
    n: int, fn: Callable[[int], Awaitable[None]], in_flight: int = IN_FLIGHT
) -> float:
    """Run fn(0..n-1) with ``in_flight`` at once; the wall time."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(in_flight, n))))
    return time.perf_counter() - t0


async def watch_latencies(
    ops: Ops, ns: str, watchers: int, writes: int, cpu: Callable[[], float] = _no_cpu
) -> tuple[list[float], list[float], float]:
    """``writes`` writes one after another into ``ns``; for each, the time from its response
    until each watcher read its event (0 for an event read before the response), and the
    time from the start of the write. Also the server's CPU time from the first write to the
    last event (``cpu()``: so far, seconds)."""
    arrived: dict[str, list[float]] = {}
    done: dict[str, asyncio.Event] = {}

    def seen(name: str) -> None:
        times = arrived.get(name)
        if times is None:
            return  # not one of ours
        times.append(time.perf_counter())
        if len(times) == watchers:
            done[name].set()

    readies = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(ops.watch(ns, r, seen)) for r in readies]
    out: list[float] = []
    from_start: list[float] = []
    try:
        all_ready = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
        await asyncio.wait([all_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if not all_ready.done():  # a watch ended (or failed) before every watcher was ready
            all_ready.cancel()
            for t in tasks:
                if t.done():
                    t.result()
            raise ValueError(f"{ops.label}: a watch ended before the writes")
        c0 = cpu()
        for i in range(writes):
            name = f"w{i}"
            arrived[name], done[name] = [], asyncio.Event()
            sent = time.perf_counter()
            await ops.create(ns, "cm", name)
            acked = time.perf_counter()
            await asyncio.wait_for(done[name].wait(), 60)
            out += [max(0.0, t - acked) for t in arrived[name]]
            from_start += [t - sent for t in arrived[name]]
        used = cpu() - c0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if len(out) != watchers * writes:
        raise ValueError(f"{ops.label}: {len(out)} events seen, {watchers * writes} due")
    return out, from_start, used


def watch_ns(watchers: int) -> str:
    return f"bench-w{watchers}"


async def measure(ops: Ops, p: Params, cpu: Callable[[], float] = _no_cpu) -> dict[str, float]:
    """Every case for one runner (the bench namespace and one per watch case exist).
    ``cpu()`` is the CPU time the server has used so far (seconds): each case also gets the
    server's CPU time per operation (per event delivered, for a watch)."""
    out: dict[str, float] = {}
    # Untimed warm-up (connections, caches, first calls): half ConfigMaps, half Pods.
    n = p.warmup * IN_FLIGHT
    await bounded(n, lambda j: ops.create(WARM, ("cm", "pod")[j % 2], f"w{j}"))
    await bounded(n, lambda j: ops.get(WARM, f"w{j - j % 2}"))
    c0 = cpu()
    wall = await bounded(p.creates, lambda i: ops.create(NS, "cm", f"cm-{i}"))
    c1 = cpu()
    out["creates_cm_per_s"], out["cpu_create_cm_s"] = p.creates / wall, (c1 - c0) / p.creates
    wall = await bounded(p.creates, lambda i: ops.get(NS, f"cm-{i}"))
    c2 = cpu()
    out["gets_per_s"], out["cpu_get_s"] = p.creates / wall, (c2 - c1) / p.creates
    wall = await bounded(p.pods, lambda i: ops.create(NS, "pod", f"pod-{i:05d}"))
    c3 = cpu()
    out["creates_pod_per_s"], out["cpu_create_pod_s"] = p.pods / wall, (c3 - c2) / p.pods
    times = []
    for _ in range(p.list_runs):
        t0 = time.perf_counter()
        n = await ops.count_pods(NS)
        times.append(time.perf_counter() - t0)
        if n != p.pods:
            raise ValueError(f"{ops.label}: listed {n} pods, created {p.pods}")
    c4 = cpu()
    out["list_s"], out["cpu_list_s"] = percentiles(times).p50, (c4 - c3) / p.list_runs
    for watchers, writes in p.watch:
        lat, lat_start, used = await watch_latencies(ops, watch_ns(watchers), watchers, writes, cpu)
        pc = percentiles(lat)
        out[f"watch{watchers}_p50_s"], out[f"watch{watchers}_p99_s"] = pc.p50, pc.p99
        pc = percentiles(lat_start)
        out[f"watch{watchers}_start_p50_s"] = pc.p50
        out[f"watch{watchers}_start_p99_s"] = pc.p99
        out[f"cpu_watch{watchers}_s"] = used / (watchers * writes)
    return out


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    key: str
    scale: float
    fmt: str
    rate: bool  # a throughput: the ratio of times per operation is the inverse


def rows(p: Params) -> list[Row]:
    out = [
        Row("server RSS idle after start (MiB)", "idle_rss_kib", 1 / 1024, "{:.1f}", False),
        Row("ConfigMap creates/s", "creates_cm_per_s", 1.0, "{:.0f}", True),
        Row("ConfigMap gets/s", "gets_per_s", 1.0, "{:.0f}", True),
        Row("Pod creates/s", "creates_pod_per_s", 1.0, "{:.0f}", True),
        Row(f"list of {p.pods} pods (ms)", "list_s", 1e3, "{:.1f}", False),
    ]
    for watchers, _ in p.watch:
        for q in ("p50", "p99"):
            out.append(
                Row(f"watch {q}, {watchers} watchers (ms)", f"watch{watchers}_{q}_s", 1e3,
                    "{:.2f}", False)
            )  # fmt: skip
        for q in ("p50", "p99"):
            out.append(
                Row(f"watch {q} from the write's start, {watchers} watchers (ms)",
                    f"watch{watchers}_start_{q}_s", 1e3, "{:.2f}", False)
            )  # fmt: skip
    out.append(Row("server RSS after the run (MiB)", "rss_kib", 1 / 1024, "{:.1f}", False))
    us = 1e6
    out += [
        Row("server CPU per ConfigMap create (µs)", "cpu_create_cm_s", us, "{:.0f}", False),
        Row("server CPU per ConfigMap get (µs)", "cpu_get_s", us, "{:.0f}", False),
        Row("server CPU per Pod create (µs)", "cpu_create_pod_s", us, "{:.0f}", False),
        Row(f"server CPU per list of {p.pods} pods (ms)", "cpu_list_s", 1e3, "{:.1f}", False),
    ]
    for watchers, _ in p.watch:
        out.append(
            Row(f"server CPU per watch event, {watchers} watchers (µs)",
                f"cpu_watch{watchers}_s", us, "{:.0f}", False)
        )  # fmt: skip
    return out


def ratio(value: float, peer: float, rate: bool) -> float:
    """Corral/peer of the time per operation (or of the size): NaN when either is missing
    or zero."""
    if not value or not peer or math.isnan(value) or math.isnan(peer):
        return math.nan
    return peer / value if rate else value / peer


def goal_notes(results: dict[str, dict[str, float]], p: Params) -> list[str]:
    """The issue's goals for the SQLite server, and whether this run met them."""
    r = results.get(SQLITE)
    if r is None:
        return []
    out = []
    checks = [("ConfigMap creates/s", r["creates_cm_per_s"], ">= 2000",
               r["creates_cm_per_s"] >= GOALS["creates_cm_per_s"])]  # fmt: skip
    for w, _ in p.watch:
        p99 = r[f"watch{w}_p99_s"]
        checks.append((f"watch p99 (ms), {w} watchers", p99 * 1e3, "<= 50",
                       p99 <= GOALS["watch_p99_s"]))  # fmt: skip
    idle = r["idle_rss_kib"]
    checks.append(("idle RSS (MiB)", idle / 1024, "<= 100", idle <= GOALS["idle_rss_kib"]))
    for what, value, goal, ok in checks:
        out.append(f"goal {what} {goal}: {value:.1f}, {'met' if ok else 'missed'}")
    return out


def table(
    results: dict[str, dict[str, float]], skipped: dict[str, str], p: Params, quick: bool
) -> Table:
    labels = [x for x in (SQLITE, OVER_ETCD, DIRECT) if x in results or x in skipped]
    servers = [x for x in (SQLITE, OVER_ETCD) if x in labels]
    ratio_cols = [f"{NAMES[x]} / etcd direct" for x in servers]
    out_rows = []
    for row in rows(p):
        cells = [row.title]
        for label in labels:
            if label in skipped:
                cells.append("not run")
            else:
                v = results[label].get(row.key, math.nan)
                cells.append("-" if math.isnan(v) else row.fmt.format(v * row.scale))
        for label in servers:
            x = math.nan
            if label in results and DIRECT in results:
                x = ratio(results[label].get(row.key, math.nan),
                          results[DIRECT].get(row.key, math.nan), row.rate)  # fmt: skip
            cells.append("n/a" if math.isnan(x) else f"{x:.2f}×")
        out_rows.append(tuple(cells))
    watch = "; ".join(f"{w} watchers x {n} writes" for w, n in p.watch)
    notes = [
        f"{IN_FLIGHT} requests in flight for creates and gets ({p.creates} ConfigMaps, "
        f"{p.pods} Pods); list of every Pod of the namespace (median of {p.list_runs}); "
        f"watch: {watch}, each write made after the previous one was seen by every watcher",
        "HTTPS with the admin client certificate, keep-alive connections, all clients in one "
        "process; SQLite on disk (synchronous=FULL); etcd 1 member with its data on tmpfs",
        "ratios: Corral / etcd direct of the time per operation (creates, gets: the inverse "
        "of the rates), of the list time, of the latency and of the RSS (etcd direct's RSS "
        "is the etcd member's: when it started, and after all three runs): below 1× Corral "
        "is faster or smaller",
        "server CPU: user + system time of the server process (every thread) during the case, "
        "per operation (per event delivered to one watcher, from the first write on, for a "
        "watch); over etcd it leaves "
        "out etcd's own; for etcd direct it is the etcd member's. Less disturbed than the "
        "rates by whatever else the machine runs",
    ]
    if not quick:
        notes += goal_notes(results, p)
    notes += [f"{label}: not run: {why}" for label, why in skipped.items()]
    return Table(
        title="API server operations",
        columns=("operation", *labels, *ratio_cols),
        rows=tuple(out_rows),
        notes=tuple(notes),
        data={"results": results, "skipped": skipped},
    )


# ----------------------------------------------------------------------------- running it


def _progress(label: str, out: dict[str, float]) -> None:
    figures = ", ".join(f"{k} {v:.4g}" for k, v in out.items())
    print(f"bench: control-plane: {label}: {figures}", file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """User + system time of every thread of ``pid`` so far (seconds)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


async def _server_run(label: str, root: Path, extra: tuple[str, ...], p: Params) -> tuple[
    dict[str, float], dict[str, bytes]
]:  # fmt: skip
    from testkit.kubeserver import Server

    # The watch cases hold up to 1000 watches as one user: lift the per-user cap (an abuse
    # guard that kube-apiserver does not have).
    srv = Server(root, extra=("--max-watches-per-user", "0", *extra))
    await asyncio.to_thread(srv.start)
    try:
        assert srv.proc is not None
        await asyncio.sleep(p.settle)
        idle = rss_kib(srv.proc.pid)
        ops = ApiOps(label, f"https://127.0.0.1:{srv.port}", srv.ssl_context())
        try:
            await ops.setup(NS, WARM, *(watch_ns(w) for w, _ in p.watch))
            pid = srv.proc.pid
            out = await measure(ops, p, lambda: cpu_s(pid))
        finally:
            await ops.close()
        out["idle_rss_kib"], out["rss_kib"] = idle, rss_kib(srv.proc.pid)
        _progress(label, out)
        return out, ops.sample
    finally:
        await asyncio.to_thread(srv.stop)


async def _run_all(p: Params) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    samples = {"cm": msgspec.json.encode(configmap("x")), "pod": msgspec.json.encode(pod("x"))}
    d = Path(tempfile.mkdtemp(prefix="cbc-", dir="/var/tmp"))
    try:
        results[SQLITE], got = await _server_run(SQLITE, d / "sqlite", (), p)
        samples.update(got)
        try:
            import aetcd

            from testkit.etcdcluster import EtcdCluster, EtcdMissing
        except ImportError as e:
            skipped[OVER_ETCD] = skipped[DIRECT] = f"not installed: {e}"
            return results, skipped
        cluster = EtcdCluster(1)
        try:
            await asyncio.to_thread(cluster.start)
        except EtcdMissing as e:
            skipped[OVER_ETCD] = skipped[DIRECT] = str(e)
            return results, skipped
        try:
            m = cluster.members[0]
            assert m.proc is not None
            await asyncio.sleep(p.settle)
            idle = rss_kib(m.proc.pid)  # before the server's run fills it
            extra = ("--datastore-endpoint", cluster.url)
            results[OVER_ETCD], _ = await _server_run(OVER_ETCD, d / "etcd", extra, p)
            client = aetcd.Client(
                host="127.0.0.1",
                port=m.client_port,
                options={"grpc.max_receive_message_length": 64 << 20},
            )
            direct = EtcdOps(client, samples)
            try:
                pid = m.proc.pid
                out = await measure(direct, p, lambda: cpu_s(pid))
            finally:
                await direct.close()
            out["idle_rss_kib"], out["rss_kib"] = idle, rss_kib(m.proc.pid)
            _progress(DIRECT, out)
            results[DIRECT] = out
        finally:
            await asyncio.to_thread(cluster.stop)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return results, skipped


def control_plane_suite(quick: bool) -> SuiteResult:
    import uvloop

    from .suites import SUITES

    p = QUICK if quick else FULL
    try:
        # The clients on the server's loop (uvloop): less of the harness in the figures.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results, skipped = runner.run(_run_all(p))
    except (RuntimeError, asyncio.IncompleteReadError) as e:  # a server that did not start
        return SuiteResult("control-plane", SUITES["control-plane"], Status.FAILED, str(e))
    t = table(results, skipped, p, quick)
    return SuiteResult("control-plane", SUITES["control-plane"], Status.OK, tables=(t,))
