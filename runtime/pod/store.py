"""Pods on disk, rkt style: a directory per pod whose parent says its state.

``<root>/<state>/<uid>`` with state ``prepare`` (a ``corral`` process is preparing it and holds
its lock), ``prepared`` (ready to start, nobody holds it), ``run`` (its monitor was started and
holds the lock while it lives), ``exited`` (torn down; logs and status kept) and ``garbage``
(being removed). Every state change is a ``rename(2)`` of the directory; the lock is
``flock(LOCK_EX)`` on an ``O_DIRECTORY`` fd of the pod directory, so it follows the directory.

``<root>/lock`` orders start-up against garbage collection: a start holds it shared from the
rename into ``run/`` until its monitor holds the pod's lock, ``gc`` holds it exclusively, so
``gc`` never takes a pod that is between its starter and its monitor for a lost one.

No daemon knows anything the directories do not say: every query reads them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from corral_common import hostsys
from corral_common.defaults import POD_ROOT
from corral_common.rmtree import rmtree
from runtime.errors import CorralError
from runtime.pod import record as _record
from runtime.pod.record import PodRecord

__all__ = [
    "DEFAULT_ROOT",
    "AlreadyExists",
    "InvalidState",
    "NotFound",
    "PodDir",
    "PodError",
    "PodState",
    "PodStore",
    "new_uid",
    "read_keyvalues",
    "write_atomic",
]

DEFAULT_ROOT = POD_ROOT
_UID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class PodError(CorralError):
    """A pod operation failed; ``pod`` names the pod (name or uid) when one is concerned."""

    def __init__(self, pod: str, message: str) -> None:
        self.pod = pod
        self.message = message
        super().__init__(f"{pod}: {message}" if pod else message)


class NotFound(PodError):
    def __init__(self, pod: str) -> None:
        super().__init__(pod, "no such pod")


class AlreadyExists(PodError):
    pass


class InvalidState(PodError):
    pass


class PodState(StrEnum):
    """Where a pod directory lives; the values are the directory names."""

    PREPARING = "prepare"
    PREPARED = "prepared"
    RUNNING = "run"
    EXITED = "exited"
    GARBAGE = "garbage"

    @property
    def can_start(self) -> bool:
        return self is PodState.PREPARED

    @property
    def can_stop(self) -> bool:
        return self is PodState.RUNNING

    @property
    def can_remove(self) -> bool:
        """Without force: only pods that hold nothing any more (or never started)."""
        return self in (PodState.PREPARED, PodState.EXITED, PodState.GARBAGE)


_ORDER = (
    PodState.PREPARING,
    PodState.PREPARED,
    PodState.RUNNING,
    PodState.EXITED,
    PodState.GARBAGE,
)


def new_uid() -> str:
    return os.urandom(16).hex()


def write_atomic(
    path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644, *, durable: bool = True
) -> None:
    """``hostsys.write_atomic`` (through the host seam); pod files default to 0644.

    ``durable=False`` (no fsync) for what a machine crash makes meaningless anyway: the files
    of a running pod (its bundles, its monitor's configuration, its network files), which
    are made again when it starts again; the agent's death (kill -9) never loses a write
    either way, only the machine's."""
    hostsys.host().write_atomic(path, data, mode, durable=durable)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A small file's bytes, with plain reads: a third of what a file object costs, for the
    files a status reads (pod.json, the monitor's status files) several times per pod."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_keyvalues(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``key=value`` file (the monitor's status files); {} when it does not exist."""
    try:
        text = read_bytes(path).decode(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value
    return out


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


# seconds: a wait for a pod's lock on its holder's pidfd looks at the lock at least this
# often (a holder that passed the lock on without exiting)
HOLDER_RECHECK = 1.0


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``, or None (gone, or no pidfds here)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


@dataclass
class PodDir:
    """One pod directory as it was found. ``fd`` is set while this process holds its lock."""

    store: PodStore
    uid: str
    state: PodState
    fd: int | None = None
    # (state, its path): built once per state (pathlib's joins cost microseconds, and a status
    # asks for the path several times)
    _path: tuple[PodState, Path] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def path(self) -> Path:
        cached = self._path
        if cached is None or cached[0] is not self.state:
            cached = self._path = (self.state, self.store.root / self.state.value / self.uid)
        return cached[1]

    def __str__(self) -> str:
        return str(self.path)

    # -- the record ------------------------------------------------------------------------

    def record(self) -> PodRecord | None:
        """pod.json (``runtime.pod.record``), or None while it is not written yet."""
        try:
            return _record.read(self.path, self.uid)
        except _record.RecordError as e:
            raise PodError(self.uid, str(e)) from None

    def record_or_blank(self) -> PodRecord:
        """pod.json, or a blank record (only the uid) while it is not written yet."""
        return self.record() or PodRecord.blank(self.uid)

    def write_record(self, record: PodRecord, durable: bool = True) -> None:
        _record.write(self.path, record, durable)

    @property
    def name(self) -> str:
        return self.record_or_blank().name

    # -- the lock --------------------------------------------------------------------------

    def _open(self) -> int:
        for _ in range(3):
            try:
                return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                self.refresh()  # renamed meanwhile: NotFound when it is gone
        raise NotFound(self.uid)

    def try_lock(self) -> bool:
        """Take the pod's lock without waiting; False when somebody holds it."""
        if self.fd is not None:
            return True
        fd = self._open()
        if not _try_lock(fd):
            os.close(fd)
            return False
        self.fd = fd
        self.refresh()
        return True

    def wait_lock(
        self, timeout: float | None = None, interval: float = 0.05, holder: int | None = None
    ) -> bool:
        """Take the pod's lock, waiting up to ``timeout`` seconds (None: forever), looking
        again every ``interval`` seconds. ``holder``: the pid of the process that holds it
        (the pod's monitor): slept on through a pidfd until it exits (its lock goes with it:
        no look every ``interval`` meanwhile), then looked at every ``interval`` (someone
        else may hold it, or the pid was another's), and at least every HOLDER_RECHECK."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = _pidfd(holder) if holder else None
        try:
            while not self.try_lock():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                if pidfd is None:
                    time.sleep(interval)
                    continue
                wait = HOLDER_RECHECK if deadline is None else min(HOLDER_RECHECK, deadline - now)
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if poller.poll(max(int(wait * 1000), 1)):  # it exited
                    os.close(pidfd)
                    pidfd = None
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return True

    def is_locked(self) -> bool:
        """Somebody (maybe us) holds the lock."""
        if self.fd is not None:
            return True
        try:
            fd = self._open()
        except NotFound:
            return False
        try:
            return not _try_lock(fd)
        finally:
            os.close(fd)  # closing drops a lock we took just to look

    def unlock(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def refresh(self) -> None:
        """Find the directory again (another process may have renamed it)."""
        found = self.store.get(self.uid)
        self.state = found.state

    # -- transitions -----------------------------------------------------------------------

    def move(self, to: PodState) -> None:
        """Rename the directory into ``to``'s parent."""
        src = self.path
        dest = self.store.root / to.value / self.uid
        try:
            os.rename(src, dest)
        except FileNotFoundError:
            raise InvalidState(self.uid, f"{src} vanished (another process moved it)") from None
        except OSError as e:
            raise PodError(self.uid, f"rename {src} -> {dest}: {e.strerror}") from None
        self.state = to

    def remove(self) -> None:
        """Move to garbage/ (if not there yet), delete the directory and release the pod's
        name: every removal (``rm``, ``gc``, a failed create or start) goes through here."""
        try:
            rec = self.record_or_blank()
        except PodError:
            rec = PodRecord.blank(self.uid)
        from runtime.pod.prepare import umount_all

        if self.state is not PodState.GARBAGE:
            self.move(PodState.GARBAGE)
        # Never delete through a mount left below (a hostPath or subPath bind would take
        # host files with it): unmount it first, or keep the directory and say so (umount_all
        # returns only when its last read of the mounts found none left below).
        try:
            umount_all(self.path)
        except OSError as e:
            raise PodError(self.uid, f"remove: {e}") from e
        rmtree(self.path, ignore_errors=True)  # volumes and upper dirs: any depth
        self.unlock()
        if rec.name:
            self.store.release_name(rec.namespace, rec.name, self.uid)


class PodStore:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root).absolute()

    def ensure(self) -> None:
        # the state directories are made in order: the last one there means all are (one
        # stat instead of six mkdirs: a create, a start and the gc lock ask for it)
        if os.path.isdir(self.root / _ORDER[-1].value):
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for state in _ORDER:
            (self.root / state.value).mkdir(mode=0o700, exist_ok=True)

    @contextmanager
    def gc_lock(self, exclusive: bool) -> Iterator[None]:
        """Shared by a starting pod, exclusive for garbage collection."""
        self.ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def no_start_in_window(self) -> Iterator[bool]:
        """Yields True while this process holds the gc lock exclusively, so that no pod is
        between its starter and its monitor (when the pod's lock is free by design); False,
        at once, when a start (or a gc) holds it. For readers: a pod lock probed under it
        (``PodDir.is_locked``) can never be the one a starting monitor is about to take."""
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # no store: nothing is starting
            yield True
            return
        try:
            yield _try_lock(fd)
        finally:
            os.close(fd)

    def create(self, uid: str) -> PodDir:
        """A new, locked ``prepare/<uid>`` directory."""
        if not _UID.match(uid):
            raise PodError(uid, "invalid pod uid: must be 1-64 letters, digits or '-'")
        self.ensure()
        root = str(self.root)
        for state in _ORDER:
            if os.path.exists(f"{root}/{state.value}/{uid}"):
                raise AlreadyExists(uid, f"a pod with uid {uid} exists ({state.value}/)")
        try:
            os.mkdir(f"{root}/{PodState.PREPARING.value}/{uid}", 0o700)
        except FileExistsError:
            raise AlreadyExists(uid, f"a pod with uid {uid} exists") from None
        pod = PodDir(self, uid, PodState.PREPARING)
        fd = pod._open()
        _try_lock(fd)  # new and ours: nobody else can hold it yet
        pod.fd = fd
        return pod

    # Names: ``names/<namespace>_<name>`` holds the uid of the pod that has the name ('_' is
    # in neither a namespace nor a pod name). Claims are serialized by ``names/.lock``, so two
    # pods of one name can never both start; an entry whose pod is exited or gone is stale and
    # is taken over. One file read instead of every pod's record per create.

    @contextmanager
    def _names_locked(self) -> Iterator[Path]:
        names = self.root / "names"
        names.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(names / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield names
        finally:
            os.close(fd)

    def claim_name(self, namespace: str, name: str, uid: str) -> None:
        """Record that pod ``uid`` holds ``namespace/name``; AlreadyExists naming the holder
        when a live pod (not exited) has it."""
        self.ensure()
        with self._names_locked() as names:
            entry = names / f"{namespace}_{name}"
            try:
                holder = entry.read_text().strip()
            except FileNotFoundError:
                holder = ""
            if holder and holder != uid:
                try:
                    state = self.get(holder).state
                except NotFound:
                    state = None
                if state is not None and state not in (PodState.EXITED, PodState.GARBAGE):
                    raise AlreadyExists(
                        name, f"a pod of that name exists ({holder}, {state.value})"
                    )
            # not fsync'd (it is written under the names lock): a claim matters while its pod
            # is live, and a machine crash leaves none live
            write_atomic(entry, uid + "\n", 0o600, durable=False)

    def release_name(self, namespace: str, name: str, uid: str) -> None:
        """Forget ``namespace/name`` if pod ``uid`` still holds it."""
        with self._names_locked() as names:
            entry = names / f"{namespace}_{name}"
            try:
                if entry.read_text().strip() == uid:
                    entry.unlink()
            except FileNotFoundError:
                pass

    def get(self, uid: str) -> PodDir:
        """The pod with exactly this uid, wherever it is."""
        if _UID.match(uid):
            root = str(self.root)
            # A rename between two listings could hide it once: look twice.
            for _ in range(2):
                for state in _ORDER:
                    if os.path.isdir(f"{root}/{state.value}/{uid}"):
                        return PodDir(self, uid, state)
        raise NotFound(uid)

    def list(self, states: tuple[PodState, ...] = _ORDER) -> list[PodDir]:
        out: dict[str, PodDir] = {}
        for state in states:
            try:
                names = sorted(os.listdir(self.root / state.value))
            except FileNotFoundError:
                continue
            for name in names:
                if _UID.match(name) and name not in out:
                    out[name] = PodDir(self, name, state)
        return list(out.values())

    def find(self, ref: str) -> PodDir:
        """A pod by uid, uid prefix, name or namespace/name. Among pods of one name, a live
        one (not exited) wins, else the newest; an ambiguous uid prefix is an error.

        A name is looked up in ``names/`` (every live pod holds its entry: ``claim_name``)
        and among the exited pods' records: never every pod's record, so a lookup that finds
        nothing (the kubelet asking for a pod it has not made yet) costs a few listings."""
        if _UID.match(ref):  # a whole uid, as the kubelet names its pods: no listing
            with contextlib.suppress(NotFound):
                return self.get(ref)
        namespace, slash, name = ref.rpartition("/")
        if slash and namespace:  # no uid has a slash: only a name lookup can find it
            pods = candidates = self._maybe_named(namespace, name)
        else:
            pods = self.list()
            for p in pods:
                if p.uid == ref:
                    return p
            candidates = self._named(pods, namespace, name)
        by_name = []
        for p in candidates:
            rec = p.record_or_blank()
            if rec.name == name and (not namespace or rec.namespace == namespace):
                by_name.append((p, rec))
        if by_name:
            live = [x for x in by_name if x[0].state not in (PodState.EXITED, PodState.GARBAGE)]
            pick = live or by_name
            return max(pick, key=lambda x: x[1].created)[0]
        prefixed = [p for p in pods if p.uid.startswith(ref)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise PodError(ref, f"ambiguous: {len(prefixed)} pods have a uid starting with it")
        raise NotFound(ref)

    def _maybe_named(self, namespace: str, name: str) -> list[PodDir]:
        """What ``_named`` would pick from every pod, without listing the live ones: the
        holders of the name's ``names/`` entry, and the exited pods."""
        try:
            entry = (self.root / "names" / f"{namespace}_{name}").read_text().strip()
        except FileNotFoundError:
            if not (self.root / "names").is_dir():
                return self.list()
            entry = ""
        except OSError:
            entry = ""
        holders = []
        if entry:
            with contextlib.suppress(NotFound):
                holders.append(self.get(entry))
        done = self.list((PodState.EXITED, PodState.GARBAGE))
        return holders + [p for p in done if p.uid != entry]

    def _named(self, pods: list[PodDir], namespace: str, name: str) -> list[PodDir]:
        """The pods of ``pods`` that may be named ``namespace/name`` (any namespace when
        empty): the live holders of its ``names/`` entries and every exited pod (whose entry
        may have been taken over). Without a ``names/`` directory, all of them."""
        try:
            entries = os.listdir(self.root / "names")
        except FileNotFoundError:
            return pods
        if namespace:
            wanted = [f"{namespace}_{name}"] if f"{namespace}_{name}" in entries else []
        else:
            wanted = [e for e in entries if e.partition("_")[2] == name]
        holders = set()
        for entry in wanted:
            with contextlib.suppress(OSError):
                holders.add((self.root / "names" / entry).read_text().strip())
        return [
            p for p in pods if p.uid in holders or p.state in (PodState.EXITED, PodState.GARBAGE)
        ]
