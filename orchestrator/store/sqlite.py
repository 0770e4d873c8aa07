"""The embedded SQLite driver (the default store, as k3s' kine with SQLite).

Layout: ``kv`` holds the current value of every key, ``events`` one row per write (the watch
log and the history that list-at-a-revision reads), ``meta`` the revision counter and the
compacted revision. WAL with ``synchronous=FULL``: a write is acknowledged after its COMMIT
reached the disk, so it survives ``kill -9`` and power loss.

One writer thread owns the only writing connection. Writes queue up while it commits, and it
applies everything queued in one transaction (group commit): each write keeps its own
revision and its own compare (a failed compare changes nothing, so it needs no rollback),
and every write in the batch is acknowledged after the one COMMIT. The event loop never waits
on an fsync. After each commit the writer hands the batch's events to the loop, which wakes
the watchers; a watch from a past revision replays the ``events`` table first.

Reads: ``get`` runs on the loop's thread: from a cache of recently written or read keys, else
one indexed SELECT. The cache is exact: it learns every commit (this process is the only
writer: the flock below) on the loop, in the same callback that acknowledges the writes.
Between a COMMIT and that callback, other connections (a list or a watch replay in the reader
thread) already read the new rows, so the writer marks the keys of a batch as in flight
before its COMMIT and the callback clears the marks once the cache holds the outcome: a key
in flight is read from the database. Lists and watch replays run in a reader thread. A list
at an older revision is the current rows with every later change undone from ``events``
(the rows carry the previous value), so pages of one list are read at one revision until
that revision is compacted. One process owns a database file at a time (an flock on
``<db>.lock``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .base import (
    Compactor,
    Deleted,
    Event,
    EventType,
    KeyValue,
    ListResult,
    check_key,
    encode_continue,
    list_range,
    prefix_end,
)
from .errors import (
    AlreadyExists,
    Conflict,
    Gone,
    InvalidArgument,
    NotFound,
    StoreError,
    Unavailable,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER PRIMARY KEY, key BLOB NOT NULL, type INTEGER NOT NULL, value BLOB,
    create_rev INTEGER NOT NULL, prev_value BLOB, prev_mod_rev INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Revision 1 is the empty store, as in etcd: 0 is left to mean "now" in a watch.
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 0);
"""
ADDED, MODIFIED, DELETED = 0, 1, 2
TYPES = (EventType.ADDED, EventType.MODIFIED, EventType.DELETED)
BATCH = 1000  # writes per transaction at most
REPLAY_CHUNK = 1000  # events per read transaction when a watch catches up
CACHED = 8192  # keys whose current value ``get`` answers without a SELECT


def _event(row: tuple[Any, ...]) -> Event:
    rev, key_b, typ, value, create_rev, prev_value, prev_mod_rev = row
    key = key_b.decode()
    prev = None
    if typ != ADDED:
        prev = KeyValue(key, prev_value, create_rev, prev_mod_rev)
    kv = KeyValue(key, prev_value if typ == DELETED else value, create_rev, rev)
    return Event(TYPES[typ], kv, prev)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass
class _Op:
    kind: str  # create, update, delete, compact, stop
    key: bytes = b""
    value: bytes = b""
    revision: int | None = None
    done: Callable[[Any, BaseException | None], None] | None = None


@dataclass(eq=False)
class _Watcher:
    prefix: bytes
    pending: list[Event | StoreError] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, item: Event | StoreError) -> None:
        self.pending.append(item)
        self.wake.set()

    async def take(self) -> list[Event | StoreError]:
        while not self.pending:
            self.wake.clear()
            await self.wake.wait()
        out, self.pending = self.pending, []
        return out


class SQLiteBackend:
    def __init__(self, path: str, *, compact_interval: float = 300.0) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-read")
        self._read_conn: sqlite3.Connection | None = None  # used by the reader thread only
        self._loop_conn: sqlite3.Connection | None = None  # used on the loop's thread only
        self._lock_fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revision = 0  # the last revision whose commit the loop has seen
        self._watchers: set[_Watcher] = set()
        # key -> its current KeyValue, oldest first; on the loop's thread only
        self._cache: OrderedDict[bytes, KeyValue] = OrderedDict()
        # key -> batches writing it whose commit the loop has not seen yet (see above)
        self._inflight: dict[bytes, int] = {}
        self._inflight_lock = threading.Lock()
        self._closed = False
        self._compactor = Compactor(self, compact_interval)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open)
        self._writer = threading.Thread(
            target=self._write_loop, args=(_connect(self.path),), name="store-write", daemon=True
        )
        self._writer.start()
        self._compactor.start()

    def _open(self) -> None:
        parent = os.path.dirname(self.path) or "."
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise Unavailable(self.url, f"open {e.filename}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Unavailable(self.url, "in use by another process (flock on .lock)") from None
        self._lock_fd = fd
        try:
            conn = _connect(self.path)
            conn.executescript(SCHEMA)
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                raise Unavailable(self.url, f"journal_mode is {mode}, not wal")
            self._loop_conn = conn
            self._read_conn = _connect(self.path)
            self._revision = self._meta(conn, "revision")
        except sqlite3.Error as e:
            self._release()
            raise Unavailable(self.url, f"open: {e}") from None
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        for conn in (self._loop_conn, self._read_conn):
            if conn is not None:
                conn.close()
        self._loop_conn = self._read_conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._compactor.stop()
        if self._writer is not None:
            self._queue.put(_Op("stop"))
            await asyncio.to_thread(self._writer.join)
        for w in list(self._watchers):
            w.push(Unavailable(self.url, "store closed"))
        self._reader.shutdown(wait=True)
        self._release()
        self._cache.clear()

    async def __aenter__(self) -> SQLiteBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the writer thread -----------------------------------------------------------------

    @staticmethod
    def _meta(conn: sqlite3.Connection, name: str) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()[0])

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            rev = self._meta(conn, "revision")
            stop = False
            while not stop:
                ops = [self._queue.get()]
                while len(ops) < BATCH:
                    try:
                        ops.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if ops[-1].kind == "stop":
                    ops.pop()
                    stop = True
                rev = self._apply_batch(conn, ops, rev)
        finally:
            conn.close()

    def _apply_batch(self, conn: sqlite3.Connection, ops: list[_Op], rev: int) -> int:
        """One transaction for every op; each op's result is delivered after the COMMIT."""
        if not ops:
            return rev
        start = rev
        results: list[tuple[_Op, Any, BaseException | None]] = []
        events: list[Event] = []
        rows: list[tuple[Any, ...]] = []  # the batch's rows of `events`, inserted at once
        written: list[bytes] = []  # keys of the writes applied
        marked: list[bytes] = []  # keys marked in flight, cleared by _committed
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                try:
                    result, event = self._apply(conn, op, rev + 1, rows)
                except StoreError as e:
                    results.append((op, None, e))
                    continue
                if event is not None:
                    rev += 1
                    events.append(event)
                    written.append(op.key)
                results.append((op, result, None))
            if rows:
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            if rev != start:
                conn.execute("UPDATE meta SET value=? WHERE name='revision'", (rev,))
            with self._inflight_lock:  # before the COMMIT makes the rows visible
                inflight = self._inflight
                for key in written:
                    inflight[key] = inflight.get(key, 0) + 1
            marked = written
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = Unavailable(self.url, f"write: {e}")
            results = [(op, None, err) for op in ops]
            events = []
            rev = self._meta(conn, "revision")
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, results, events, rev, marked)
        return rev

    def _apply(
        self, conn: sqlite3.Connection, op: _Op, rev: int, rows: list[tuple[Any, ...]]
    ) -> tuple[Any, Event | None]:
        """Apply one op at revision ``rev``; its row of ``events`` goes to ``rows``."""
        key = op.key.decode() if op.key else ""
        if op.kind == "compact":
            if rows:  # the batch's earlier events first: compaction may remove them
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                rows.clear()
            return self._apply_compact(conn, op.revision or 0, rev - 1), None
        if op.kind == "create":
            cur = conn.execute(
                "INSERT INTO kv VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (op.key, op.value, rev, rev),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(key)
            rows.append((rev, op.key, ADDED, op.value, rev, None, None))
            kv = KeyValue(key, op.value, rev, rev)
            return kv, Event(EventType.ADDED, kv, None)
        row = conn.execute(
            "SELECT value, create_rev, mod_rev FROM kv WHERE key=?", (op.key,)
        ).fetchone()
        if row is None:
            raise NotFound(key)
        prev = KeyValue(key, row[0], row[1], row[2])
        if op.revision is not None and prev.mod_rev != op.revision:
            raise Conflict(key, op.revision, prev)
        if op.kind == "update":
            conn.execute("UPDATE kv SET value=?, mod_rev=? WHERE key=?", (op.value, rev, op.key))
            rows.append(
                (rev, op.key, MODIFIED, op.value, prev.create_rev, prev.value, prev.mod_rev)
            )
            kv = KeyValue(key, op.value, prev.create_rev, rev)
            return kv, Event(EventType.MODIFIED, kv, prev)
        conn.execute("DELETE FROM kv WHERE key=?", (op.key,))
        rows.append((rev, op.key, DELETED, None, prev.create_rev, prev.value, prev.mod_rev))
        gone = KeyValue(key, prev.value, prev.create_rev, rev)
        return Deleted(rev, prev), Event(EventType.DELETED, gone, prev)

    def _apply_compact(self, conn: sqlite3.Connection, target: int, current: int) -> int:
        if target > current:
            raise InvalidArgument(self.url, f"compact {target}: beyond revision {current}")
        compacted = self._meta(conn, "compacted")
        if target <= compacted:
            return compacted
        conn.execute("DELETE FROM events WHERE rev < ?", (target,))
        conn.execute("UPDATE meta SET value=? WHERE name='compacted'", (target,))
        return target

    # --- on the loop -----------------------------------------------------------------------

    def _committed(
        self,
        results: list[tuple[_Op, Any, BaseException | None]],
        events: list[Event],
        rev: int,
        marked: list[bytes],
    ) -> None:
        self._revision = max(self._revision, rev)
        cache = self._cache
        keys = [ev.kv.key.encode() for ev in events]
        for key, ev in zip(keys, events, strict=True):  # before any write is acknowledged
            if ev.type is EventType.DELETED:
                cache.pop(key, None)  # a later value, if any, is read again
            else:
                self._remember(key, ev.kv)
        # The cache holds this batch's outcome (none when it failed): get may answer again.
        with self._inflight_lock:
            inflight = self._inflight
            for key in marked:
                n = inflight[key] - 1
                if n:
                    inflight[key] = n
                else:
                    del inflight[key]
        for op, result, err in results:
            if op.done is not None:
                op.done(result, err)
        if events and self._watchers:
            for w in self._watchers:
                for key, ev in zip(keys, events, strict=True):
                    if key.startswith(w.prefix):
                        w.push(ev)

    def _remember(self, key: bytes, kv: KeyValue) -> None:
        cache = self._cache
        known = cache.get(key)
        if known is not None and known.mod_rev > kv.mod_rev:
            return  # a get read a later commit (in flight) than the one being delivered
        cache[key] = kv
        cache.move_to_end(key)
        if len(cache) > CACHED:
            cache.popitem(last=False)

    async def _write(self, op: _Op) -> Any:
        if self._closed or self._writer is None:
            raise Unavailable(self.url, "store is not open")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()

        def done(result: Any, err: BaseException | None) -> None:
            if fut.done():  # the caller went away; the write is applied all the same
                return
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(result)

        op.done = done
        self._queue.put(op)
        return await fut

    async def create(self, key: str, value: bytes) -> KeyValue:
        result: KeyValue = await self._write(_Op("create", check_key(key), bytes(value)))
        return result

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        result: KeyValue = await self._write(_Op("update", check_key(key), bytes(value), revision))
        return result

    async def delete(self, key: str, revision: int | None = None) -> Deleted:
        result: Deleted = await self._write(_Op("delete", check_key(key), revision=revision))
        return result

    async def compact(self, revision: int) -> None:
        await self._write(_Op("compact", revision=revision))

    async def current_revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> KeyValue:
        k = check_key(key)
        if self._loop_conn is None:
            raise Unavailable(self.url, "store is not open")
        if k not in self._inflight:
            cached = self._cache.get(k)
            if cached is not None:
                return cached
        try:
            row = self._loop_conn.execute(
                "SELECT value, create_rev, mod_rev FROM kv WHERE key=?", (k,)
            ).fetchone()
        except sqlite3.Error as e:
            raise Unavailable(key, f"read: {e}") from None
        if row is None:
            raise NotFound(key)
        kv = KeyValue(key, row[0], row[1], row[2])
        self._remember(k, kv)
        return kv

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn`` in the reader thread, inside one read transaction (one snapshot)."""
        if self._closed or self._read_conn is None:
            raise Unavailable(self.url, "store is not open")
        conn = self._read_conn

        def run() -> Any:
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise Unavailable(self.url, f"read: {e}") from None

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    async def list(
        self, prefix: str, *, limit: int = 0, continue_token: str | None = None, revision: int = 0
    ) -> ListResult:
        p, start, revision = list_range(prefix, limit, continue_token, revision)
        end = prefix_end(p)

        def read(conn: sqlite3.Connection) -> ListResult:
            current = self._meta(conn, "revision")
            at = revision or current
            if at > current:
                raise InvalidArgument(prefix, f"revision {at} is in the future ({current})")
            compacted = self._meta(conn, "compacted")
            if at < compacted:
                raise Gone(prefix, at, compacted)
            rows = self._rows_at(conn, start, end, at, current, limit)
            token = None
            if limit and len(rows) > limit:
                rows = rows[:limit]
                token = encode_continue(at, rows[-1].key + "\0")
            return ListResult(tuple(rows), at, token)

        result: ListResult = await self._read(read)
        return result

    @staticmethod
    def _rows_at(
        conn: sqlite3.Connection, start: bytes, end: bytes, at: int, current: int, limit: int
    ) -> list[KeyValue]:
        """Up to ``limit + 1`` keys in [start, end) as they were at revision ``at``."""
        changed: dict[bytes, tuple[Any, ...]] = {}
        if at < current:
            # The first change of each key after `at` holds its value at `at`.
            for row in conn.execute(
                "SELECT key, type, create_rev, prev_value, prev_mod_rev FROM events "
                "WHERE rev > ? AND key >= ? AND key < ? ORDER BY rev",
                (at, start, end),
            ):
                changed.setdefault(row[0], row)
        sql = "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ?"
        args: tuple[Any, ...] = (start, end)
        if limit:
            # At most len(changed) of these rows are replaced or dropped below.
            sql += " ORDER BY key LIMIT ?"
            args += (limit + 1 + len(changed),)
        out: dict[bytes, KeyValue] = {}
        for k, v, c, m in conn.execute(sql, args):
            if k not in changed:
                out[k] = KeyValue(k.decode(), v, c, m)
        for k, (_, typ, c, pv, pm) in changed.items():
            if typ != ADDED:  # the key existed at `at`, with the value before the change
                out[k] = KeyValue(k.decode(), pv, c, pm)
        keys = sorted(out)
        if limit:
            keys = keys[: limit + 1]
        return [out[k] for k in keys]

    async def watch(self, prefix: str, revision: int = 0) -> AsyncIterator[Event]:
        p = check_key(prefix)
        if self._closed:
            raise Unavailable(self.url, "store is not open")
        w = _Watcher(p)
        self._watchers.add(w)  # before the replay: nothing committed from now on is missed
        try:
            last = revision if revision > 0 else self._revision
            if revision > 0:
                while True:
                    chunk = await self._read(lambda c, after=last: self._replay(c, p, after))
                    for ev in chunk:
                        yield ev
                        last = ev.revision
                    if len(chunk) < REPLAY_CHUNK:
                        break
            while True:
                for item in await w.take():
                    if isinstance(item, StoreError):
                        raise item
                    if item.revision > last:
                        yield item
                        last = item.revision
        finally:
            self._watchers.discard(w)

    def _replay(self, conn: sqlite3.Connection, prefix: bytes, after: int) -> list[Event]:
        compacted = self._meta(conn, "compacted")
        if after + 1 < compacted:
            raise Gone(prefix.decode(), after, compacted)
        current = self._meta(conn, "revision")
        if after > current:
            raise InvalidArgument(prefix.decode(), f"revision {after} is in the future")
        rows = conn.execute(
            "SELECT * FROM events WHERE rev > ? AND key >= ? AND key < ? ORDER BY rev LIMIT ?",
            (after, prefix, prefix_end(prefix), REPLAY_CHUNK),
        ).fetchall()
        return [_event(r) for r in rows]
