"""One conformance suite for every store driver: SQLite (a file in a temporary directory) and
a real etcd (Debian's etcd-server, one member shared by the session; each test writes under a
prefix of its own). Then what only one driver has: kill -9 of a SQLite writer, and a
three-member etcd losing the member the client talks to in the middle of a write loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.store import (
    AlreadyExists,
    Backend,
    Conflict,
    EventType,
    Gone,
    InvalidArgument,
    NotFound,
    Unavailable,
    open_store,
)
from testkit.etcdcluster import EtcdCluster, EtcdMissing, tmp_base

REPO = Path(__file__).resolve().parents[2]
Body = Callable[[Backend, str], Awaitable[None]]


def _etcd(size: int) -> Iterator[EtcdCluster]:
    """A started cluster of ``size`` members, stopped afterwards; skips where aetcd or
    etcd-server is missing."""
    try:
        import aetcd  # noqa: F401
    except ImportError:
        pytest.skip("the etcd extra (aetcd) is not installed")
    cluster = EtcdCluster(size)
    try:
        cluster.start()
    except EtcdMissing as e:
        pytest.skip(str(e))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def etcd1() -> Iterator[EtcdCluster]:
    yield from _etcd(1)


@pytest.fixture
def db_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_base()
    if base is None:
        yield tmp_path_factory.mktemp("store")
        return
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="corral-store-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, db_dir: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{db_dir}/state.db"
    return request.getfixturevalue("etcd1").url


def run(url: str, body: Body, **opts: float) -> None:
    """``body(store, prefix)`` on a started store, with a fresh key prefix; closed after."""

    async def main() -> None:
        store = open_store(url, **opts)
        await store.start()
        try:
            await asyncio.wait_for(body(store, f"/registry/t{uuid.uuid4().hex[:8]}/"), 60)
        finally:
            await store.close()

    asyncio.run(main())


def test_crud_and_compare_and_swap(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        k = p + "ns/a"
        a = await s.create(k, b"v1")
        assert (a.key, a.value, a.create_rev) == (k, b"v1", a.mod_rev)
        assert await s.get(k) == a
        assert await s.current_revision() >= a.mod_rev
        with pytest.raises(AlreadyExists) as exc:
            await s.create(k, b"other")
        assert exc.value.key == k
        b = await s.update(k, b"v2", a.mod_rev)
        assert b.mod_rev > a.mod_rev and b.create_rev == a.create_rev and b.value == b"v2"
        with pytest.raises(Conflict) as conflict:
            await s.update(k, b"v3", a.mod_rev)
        assert conflict.value.current == b and conflict.value.key == k
        assert (await s.get(k)).value == b"v2"  # the loser changed nothing
        with pytest.raises(NotFound):
            await s.update(p + "ns/missing", b"x", 1)
        with pytest.raises(Conflict):
            await s.delete(k, a.mod_rev)
        d = await s.delete(k, b.mod_rev)
        assert d.prev == b and d.revision > b.mod_rev
        with pytest.raises(NotFound):
            await s.get(k)
        with pytest.raises(NotFound):
            await s.delete(k)
        again = await s.create(k, b"v4")  # a new object: a new create revision
        assert again.create_rev > d.revision
        assert (await s.delete(k)).prev == again  # no revision: unconditional

    run(store_url, body)


def test_list_pages_read_at_the_first_pages_revision(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        keys = [f"{p}ns/k{i:02d}" for i in range(25)]
        for k in keys:
            await s.create(k, k.encode())
        await s.create(p[:-1] + "x/sibling", b"no")  # same leading bytes, another prefix
        first = await s.list(p, limit=10)
        assert [kv.key for kv in first.items] == keys[:10] and first.continue_token
        # Changes after the first page must not show on the later pages.
        await s.delete(keys[15])
        await s.create(p + "ns/k12a", b"new")
        kv13 = await s.get(keys[13])
        await s.update(keys[13], b"changed", kv13.mod_rev)
        seen = list(first.items)
        page = first
        while page.continue_token:
            page = await s.list(p, limit=10, continue_token=page.continue_token)
            assert page.revision == first.revision
            seen.extend(page.items)
        assert [kv.key for kv in seen] == keys
        assert all(kv.value == kv.key.encode() for kv in seen)
        now = await s.list(p)
        assert now.continue_token is None and now.revision > first.revision
        names = [kv.key for kv in now.items]
        assert p + "ns/k12a" in names and keys[15] not in names and len(names) == 25

    run(store_url, body)


def test_list_at_a_past_revision_then_gone_once_compacted(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        a = await s.create(p + "a", b"a1")
        b = await s.create(p + "b", b"b1")
        then = b.mod_rev
        await s.update(p + "a", b"a2", a.mod_rev)
        await s.delete(p + "b")
        await s.create(p + "c", b"c1")
        past = await s.list(p, revision=then)
        assert past.items == (a, b) and past.revision == then
        assert [kv.value for kv in (await s.list(p)).items] == [b"a2", b"c1"]
        later = await s.list(p, revision=then - 1)
        assert later.items == (a,)
        await s.compact(await s.current_revision())
        with pytest.raises(Gone):
            await s.list(p, revision=then)
        page = await s.list(p, limit=1)
        assert page.continue_token is not None
        await s.create(p + "d", b"d1")
        await s.compact(await s.current_revision())
        with pytest.raises(Gone):
            await s.list(p, limit=1, continue_token=page.continue_token)
        with pytest.raises(InvalidArgument):
            await s.list(p, continue_token="not a token")
        with pytest.raises(InvalidArgument):  # a token from another prefix
            await s.list(p + "zz/", continue_token=page.continue_token)

    run(store_url, body)


def test_watch_replays_in_order_then_goes_live(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        start = await s.current_revision()
        a = await s.create(p + "ns/a", b"1")
        await s.create(p[:-1] + "other/a", b"sibling")  # outside the prefix
        a2 = await s.update(p + "ns/a", b"2", a.mod_rev)
        await s.create(p + "ns/b", b"b")
        events = []
        w = s.watch(p, start)
        async for ev in w:
            events.append(ev)
            if len(events) == 3:  # the past is replayed: now write live ones
                await s.delete(p + "ns/a", a2.mod_rev)
                await s.create(p[:-1] + "other/b", b"sibling")
                await s.create(p + "ns/c", b"c")
            if len(events) == 5:
                break
        await w.aclose()  # type: ignore[attr-defined]
        assert [(e.type, e.kv.key) for e in events] == [
            (EventType.ADDED, p + "ns/a"),
            (EventType.MODIFIED, p + "ns/a"),
            (EventType.ADDED, p + "ns/b"),
            (EventType.DELETED, p + "ns/a"),
            (EventType.ADDED, p + "ns/c"),
        ]
        revs = [e.revision for e in events]
        assert revs == sorted(revs) and len(set(revs)) == 5
        assert events[0].kv == a and events[0].prev is None
        assert events[1].kv == a2 and events[1].prev == a
        deleted = events[3]
        assert deleted.prev == a2 and deleted.kv.value == b"2"
        # From the middle: only what came after that revision.
        w = s.watch(p, events[1].revision)
        assert [await anext(w) for _ in range(3)] == events[2:]  # type: ignore[arg-type]
        await w.aclose()  # type: ignore[attr-defined]

    run(store_url, body)


def test_watch_below_the_compacted_revision_is_gone(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        first = await s.create(p + "a", b"1")
        await s.update(p + "a", b"2", first.mod_rev)
        second = await s.create(p + "b", b"1")
        await s.compact(second.mod_rev)
        await s.compact(first.mod_rev)  # older than what is compacted: no error, no change
        with pytest.raises(Gone):
            await anext(s.watch(p, first.mod_rev - 1))  # type: ignore[arg-type]
        # From the compacted revision on, history is still there.
        w = s.watch(p, second.mod_rev - 1)
        ev = await anext(w)  # type: ignore[arg-type]
        assert ev.kv.key == p + "b" and ev.type is EventType.ADDED
        await w.aclose()  # type: ignore[attr-defined]

    run(store_url, body)


def test_periodic_compaction(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        first = await s.create(p + "a", b"0")
        kv = first
        for _ in range(200):  # compaction runs every 0.1 s; it needs two ticks
            kv = await s.update(p + "a", str(kv.mod_rev).encode(), kv.mod_rev)
            try:
                await s.list(p, revision=first.mod_rev)
            except Gone:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("nothing was compacted")

    run(store_url, body, compact_interval=0.1)


def test_concurrent_creators_of_one_key_exactly_one_wins(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        key = p + "ns/contested"
        results = await asyncio.gather(
            *(s.create(key, str(i).encode()) for i in range(30)), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, AlreadyExists)]
        assert len(winners) == 1 and len(losers) == 29
        assert await s.get(key) == winners[0]

    run(store_url, body)


def test_concurrent_compare_and_swap_loses_no_update(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        key = p + "counter"
        await s.create(key, b"0")
        conflicts = 0

        async def incr(times: int) -> None:
            nonlocal conflicts
            for _ in range(times):
                while True:
                    cur = await s.get(key)
                    try:
                        await s.update(key, str(int(cur.value) + 1).encode(), cur.mod_rev)
                        break
                    except Conflict:
                        conflicts += 1

        await asyncio.gather(*(incr(15) for _ in range(8)))
        assert int((await s.get(key)).value) == 8 * 15
        assert conflicts > 0  # the updaters did race

    run(store_url, body)


def test_bad_input_is_refused() -> None:
    for url in ("sqlite://relative/db", "sqlite:///dir/", "nosuch://x", "etcd://h:notaport"):
        with pytest.raises(InvalidArgument):
            open_store(url)


def test_bad_keys_are_refused(store_url: str) -> None:
    async def body(s: Backend, p: str) -> None:
        for key in ("", p + "a\0b", p + "\udc80"):
            with pytest.raises(InvalidArgument):
                await s.create(key, b"x")
        with pytest.raises(InvalidArgument):
            await s.list(p, revision=await s.current_revision() + 1000)
        assert (await s.list(p)).items == ()

    run(store_url, body)


# --- SQLite only ------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from orchestrator.store import open_store

    async def main():
        s = open_store(sys.argv[1])
        await s.start()
        i = 0
        while True:
            # Several writes in flight, so they go through group commit together.
            keys = [f"/registry/pods/ns/p{i + j}" for j in range(8)]
            i += 8
            done = await asyncio.gather(*(s.create(k, k.encode()) for k in keys))
            for kv in done:
                sys.stdout.write(f"{kv.key} {kv.mod_rev}\\n")
            sys.stdout.flush()

    asyncio.run(main())
    """
)


def test_sqlite_kill_9_of_a_writer_loses_no_acknowledged_write(tmp_path: Path) -> None:
    # On disk, not tmpfs: each COMMIT waits for its fsync, as in production.
    url = f"sqlite://{tmp_path}/state.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, cwd=REPO, text=True
    )
    acked: dict[str, int] = {}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            key, rev = line.split()
            acked[key] = int(rev)
            if len(acked) >= 2000:
                break
        os.kill(child.pid, signal.SIGKILL)
        for line in child.stdout:  # acknowledged before the kill, still in the pipe
            key, rev = line.split()
            acked[key] = int(rev)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    async def body(s: Backend, _: str) -> None:
        stored = {kv.key: kv.mod_rev for kv in (await s.list("/registry/pods/")).items}
        missing = [k for k, rev in acked.items() if stored.get(k) != rev]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        # The counter went on from where it was: nothing is reused.
        assert await s.current_revision() >= max(stored.values())
        kv = await s.create("/registry/pods/ns/after", b"x")
        assert kv.mod_rev > max(stored.values())

    run(url, body)


def test_sqlite_is_wal_with_synchronous_full_and_owned_by_one_process(db_dir: Path) -> None:
    from orchestrator.store import sqlite

    url = f"sqlite://{db_dir}/state.db"

    async def body(s: Backend, _: str) -> None:
        assert isinstance(s, sqlite.SQLiteBackend)
        conn = sqlite._connect(s.path)  # the settings every connection of the driver gets
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        finally:
            conn.close()
        other = open_store(url)
        with pytest.raises(Unavailable, match="in use by another process"):
            await other.start()
        await other.close()

    run(url, body)


def _committed(path: str, key: str) -> bytes | None:
    """The value of ``key`` as another connection sees the database (None: absent), once
    every commit in flight has reached it: what a list in the reader thread would read."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM kv WHERE key=?", (key.encode(),)).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


def _wait_committed(path: str, key: str, want: bytes | None) -> None:
    """Block the loop (no callback of the store runs meanwhile) until the writer thread has
    committed ``want`` for ``key``."""
    import time

    deadline = time.monotonic() + 30
    while _committed(path, key) != want:
        assert time.monotonic() < deadline, f"{key} never became {want!r}"
        time.sleep(0.002)


def test_sqlite_get_never_answers_older_than_a_commit(db_dir: Path) -> None:
    """The SQLite driver answers ``get`` from a cache of recent keys: once a write is in the
    database (where a list or a watch replay in the reader thread reads it), even before the
    loop has heard of the commit, ``get`` answers the new value or absence, never the one
    it cached before; a transaction that failed leaves the cached value right."""
    import sqlite3

    url = f"sqlite://{db_dir}/state.db"

    async def body(s: Backend, p: str) -> None:
        path = str(db_dir / "state.db")
        k = p + "ns/a"
        a = await s.create(k, b"v1")
        assert (await s.get(k)).value == b"v1"  # cached now
        # An update committed by the writer thread, its acknowledgement not yet run.
        upd = asyncio.ensure_future(s.update(k, b"v2", a.mod_rev))
        await asyncio.sleep(0)  # the write is queued
        _wait_committed(path, k, b"v2")
        got = await s.get(k)
        assert got.value == b"v2", "get answered a value older than the database's"
        b = await upd
        assert await s.get(k) == b
        # A delete likewise.
        gone = asyncio.ensure_future(s.delete(k, b.mod_rev))
        await asyncio.sleep(0)
        _wait_committed(path, k, None)
        with pytest.raises(NotFound):
            await s.get(k)
        await gone
        with pytest.raises(NotFound):
            await s.get(k)
        # A transaction that fails (a trigger aborts it) changes neither the database nor
        # what get answers.
        c = await s.create(k, b"v3")
        assert (await s.get(k)).value == b"v3"
        conn = sqlite3.connect(path)
        conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON kv WHEN NEW.value = x'626f6f6d'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        conn.close()
        with pytest.raises(Unavailable):
            await s.update(k, b"boom", c.mod_rev)
        assert await s.get(k) == c
        assert _committed(path, k) == b"v3"
        d = await s.update(k, b"v4", c.mod_rev)
        assert await s.get(k) == d
        # A transaction that fails after its writes were applied, when it records their
        # events: every write of it is answered (none waits for ever), get stays right.
        conn = sqlite3.connect(path)
        conn.execute(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON events WHEN NEW.value = x'626f6f6d32'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        conn.close()
        with pytest.raises(Unavailable):
            await s.update(k, b"boom2", d.mod_rev)
        assert await s.get(k) == d
        e = await s.update(k, b"v5", d.mod_rev)
        assert await s.get(k) == e

    run(url, body)


def test_sqlite_get_cache_is_bounded_and_reads_evicted_keys_again(db_dir: Path) -> None:
    from orchestrator.store import sqlite

    url = f"sqlite://{db_dir}/state.db"

    async def body(s: Backend, p: str) -> None:
        assert isinstance(s, sqlite.SQLiteBackend)
        n = sqlite.CACHED + 10
        made = {}
        for i in range(0, n, 500):
            kvs = await asyncio.gather(
                *(s.create(f"{p}ns/k{j}", b"x%d" % j) for j in range(i, min(i + 500, n)))
            )
            made.update((kv.key, kv) for kv in kvs)
        assert len(s._cache) == sqlite.CACHED
        selects: list[str] = []
        assert s._loop_conn is not None
        s._loop_conn.set_trace_callback(selects.append)
        assert await s.get(f"{p}ns/k{n - 1}") == made[f"{p}ns/k{n - 1}"]
        assert selects == []  # answered by the cache: its commit was acknowledged
        assert await s.get(f"{p}ns/k0") == made[f"{p}ns/k0"]  # evicted: read again
        assert len(selects) == 1
        assert await s.get(f"{p}ns/k0") == made[f"{p}ns/k0"]  # and remembered
        assert len(selects) == 1

    run(url, body)


# --- etcd only ----------------------------------------------------------------------------


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    yield from _etcd(3)


def test_etcd_member_killed_mid_run_loses_nothing_and_the_watch_resumes(
    etcd3: EtcdCluster,
) -> None:
    """The driver is connected to the first endpoint (pick_first): that member dies."""
    # The http:// form, as `--datastore-endpoint` takes it.
    url = ",".join(f"http://{m.endpoint}" for m in etcd3.members)

    async def body(s: Backend, p: str) -> None:
        start = await s.current_revision()
        seen: list[tuple[int, str]] = []
        acked: dict[str, int] = {}
        unknown = 0

        async def watcher() -> None:
            async for ev in s.watch(p, start):
                seen.append((ev.revision, ev.kv.key))

        task = asyncio.create_task(watcher())

        async def writer(w: int) -> None:
            nonlocal unknown
            for i in range(100):
                key = f"{p}w{w}-{i:03d}"
                if len(acked) == 150:
                    etcd3.kill(0)  # with writes in flight on its connection
                while key not in acked:
                    try:
                        acked[key] = (await s.create(key, b"x")).mod_rev
                    except Unavailable:
                        unknown += 1  # the outcome is unknown: read before trying again
                        try:
                            acked[key] = (await s.get(key)).mod_rev
                        except (NotFound, Unavailable):
                            pass

        await asyncio.gather(*(writer(w) for w in range(4)))
        for _ in range(400):
            if len(seen) >= len(acked):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        stored = {kv.key: kv.mod_rev for kv in (await s.list(p)).items}
        assert stored == acked
        revs = [r for r, _ in seen]
        assert revs == sorted(set(revs)), "the watch went back or repeated itself"
        assert dict((k, r) for r, k in seen) == acked, "the watch missed an event"

    run(url, body)
