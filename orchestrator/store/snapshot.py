"""Snapshots of the embedded SQLite store: saved while the server runs, restored while it is
stopped (``corral snapshot save|restore|ls``; etcd has ``etcdctl snapshot save`` for this).

``save`` copies the database with SQLite's online backup in one step, inside one read
transaction: a consistent store at one revision, whatever the server writes meanwhile (WAL
readers do not block the writer). The copy is checked (``integrity_check``, the store's
tables) before it is renamed into place, fsynced.

``restore`` takes the database's lock (the server holds it while it runs, so a running server
is refused), checks the snapshot the same way, keeps the current database beside it
(``state.db.before-restore-<time>``: nothing is lost by a restore), and installs a copy of the
snapshot whose revision is moved past the newest revision the old database reached and marked
compacted there, with a wide margin (as ``etcdutl snapshot restore --bump-revision
--mark-compacted``): a client
that watched or listed before the restore gets 410 Gone and lists again, instead of waiting
for revisions the store has already handed out for other writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Snapshot", "SnapshotError", "list_snapshots", "restore", "save"]

TABLES = {"kv", "events", "meta"}
SUFFIX = ".db"
# How far a restore moves the revision past the newest one known (the replaced database's, or
# the snapshot's when there is none): a client may have seen revisions of a database that is
# gone, so the margin is wide (etcdutl's --bump-revision advice), and int64 has room for it.
BUMP = 1_000_000


class SnapshotError(Exception):
    """A snapshot could not be saved or restored: ``step`` names what failed."""

    def __init__(self, step: str, message: object) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass(frozen=True)
class Snapshot:
    path: Path
    revision: int
    keys: int
    size: int


def _check(path: Path, step: str) -> Snapshot:
    """A snapshot's revision and key count, after SQLite's integrity check."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise SnapshotError(step, f"{path}: {e}") from None
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise SnapshotError(step, f"{path}: integrity check failed: {ok}")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not TABLES <= names:
            raise SnapshotError(step, f"{path}: not a corral store (tables {sorted(names)})")
        rev = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
        keys = conn.execute("SELECT count(*) FROM kv").fetchone()[0]
    except sqlite3.Error as e:
        raise SnapshotError(step, f"{path}: {e}") from None
    finally:
        conn.close()
    if rev is None:
        raise SnapshotError(step, f"{path}: no revision in its meta table")
    return Snapshot(path, int(rev[0]), int(keys), path.stat().st_size)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_db(src: sqlite3.Connection, dest: Path) -> None:
    """``src`` (one read transaction, so one revision) into a new file ``dest``."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    out = sqlite3.connect(dest)
    try:
        src.backup(out, pages=-1)  # all pages in one step: a single consistent read
        out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        out.close()
    fd = os.open(dest, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(db: Path, dest: Path) -> Snapshot:
    """Copy the store at ``db`` (the server may be running) to ``dest``, atomically."""
    step = f"save snapshot of {db}"
    if not db.is_file():
        raise SnapshotError(step, "no such database (is the datastore etcd? use etcdctl)")
    if dest.exists():
        raise SnapshotError(step, f"{dest} exists already")
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        src = sqlite3.connect(db, timeout=30)
        try:
            _copy_db(src, part)
        finally:
            src.close()
        snap = _check(part, step)
        os.chmod(part, 0o600)
        os.rename(part, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as e:
        with contextlib.suppress(OSError):
            part.unlink()
        raise SnapshotError(step, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return Snapshot(dest, snap.revision, snap.keys, snap.size)


def list_snapshots(directory: Path) -> list[Snapshot]:
    """The snapshots saved in ``directory``, oldest first (unreadable ones left out)."""
    out: list[Snapshot] = []
    if not directory.is_dir():
        return out
    for p in sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime):
        with contextlib.suppress(SnapshotError, OSError):
            out.append(_check(p, "list"))
    return out


def _revision(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def restore(snapshot: Path, db: Path) -> tuple[Snapshot, Path | None]:
    """Replace the store at ``db`` (its server stopped) with ``snapshot``; the snapshot as
    installed (its revision moved on) and where the old database was kept (None if none)."""
    step = f"restore {snapshot} into {db}"
    snap = _check(snapshot, step)
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(str(db) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SnapshotError(step, "the store is in use: stop the server first") from None
        bump = max(_revision(db), snap.revision) + BUMP
        part = db.with_name(db.name + ".restore.part")
        kept = _install(snapshot, db, part, bump)
    except sqlite3.Error as e:
        raise SnapshotError(step, e) from None
    finally:
        os.close(lock)
    return Snapshot(db, bump, snap.keys, db.stat().st_size), kept


def _install(snapshot: Path, db: Path, part: Path, revision: int) -> Path | None:
    """Copy ``snapshot`` to ``part`` at ``revision`` (compacted there), keep ``db`` aside,
    rename ``part`` to ``db``. On failure ``db`` is as it was and ``part`` is gone."""
    kept: Path | None = None
    try:
        src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        try:
            _copy_db(src, part)
        finally:
            src.close()
        conn = sqlite3.connect(part)
        try:
            with conn:
                conn.execute("DELETE FROM events")
                conn.execute("UPDATE meta SET value=? WHERE name='revision'", (revision,))
                conn.execute("UPDATE meta SET value=? WHERE name='compacted'", (revision,))
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.chmod(part, 0o600)
        if db.exists():
            # The old database, its WAL checkpointed into it, is kept beside the new one.
            old = sqlite3.connect(db, timeout=30)
            try:
                busy = old.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                old.close()
            if busy:
                raise sqlite3.OperationalError(f"{db}: its WAL could not be checkpointed")
            kept = db.with_name(f"{db.name}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}")
            os.rename(db, kept)
        for extra in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(db) + extra)
        os.rename(part, db)
        _fsync_dir(db.parent)
    except BaseException:
        if kept is not None and not db.exists():
            os.rename(kept, db)
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return kept
