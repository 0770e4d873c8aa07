"""On-disk container state: no daemon is needed to know what exists.

A container is a directory ``<root>/<id>`` holding ``state.json`` (written atomically: temp
file, rename; not fsync'd, see ``StateDir.save``) and, between create and start, the
``exec.fifo`` its process waits on. The status is derived, never stored: the process's
liveness (pid plus its start time, so a reused pid is not mistaken for the container),
the fifo's existence and the freezer say what it is now.
"""

from __future__ import annotations

import errno
import fcntl
import os
from stat import S_ISDIR, S_ISREG

from corral_common.defaults import OCI_STATE_ROOT

from . import _jsonfast as json
from .errors import AlreadyExists, ConfigError, NotFound, SysError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import ClassVar

# Plain classes, no enum or dataclass: every lifecycle command imports this module, and enum
# and dataclasses (with re, which both import) cost some milliseconds of each start.

DEFAULT_ROOT = OCI_STATE_ROOT
STATE_FILE = "state.json"
FIFO = "exec.fifo"
# A container's directory and its files are opened without following a symlink: one planted
# in the state root (root/ID -> /etc) is no container, and nothing is read, locked or
# removed through it.
_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CREATING_FILE = "creating.json"  # written first by create; stale once state.json exists

_ID_PUNCT = frozenset("_+-.")


class Status(str):
    """A container's status: one of the five constants below, each equal to its OCI name
    (``str(Status.RUNNING) == "running"``), compared with ``is``."""

    __slots__ = ()

    CREATING: ClassVar[Status]
    CREATED: ClassVar[Status]
    RUNNING: ClassVar[Status]
    PAUSED: ClassVar[Status]
    STOPPED: ClassVar[Status]

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Status.{self.upper()}"

    @property
    def can_start(self) -> bool:
        return self is Status.CREATED

    @property
    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    @property
    def can_delete(self) -> bool:
        return self in (Status.STOPPED, Status.CREATED)

    @property
    def can_pause(self) -> bool:
        return self is Status.RUNNING


Status.CREATING = Status("creating")
Status.CREATED = Status("created")
Status.RUNNING = Status("running")
Status.PAUSED = Status("paused")
Status.STOPPED = Status("stopped")

_STATE_FIELDS = (
    "id", "bundle", "rootfs", "pid", "pid_start", "created", "oci_version", "owner",
    "annotations", "cgroup_paths", "config",
)  # fmt: skip


class ContainerState:
    """What state.json holds: everything later commands need to find and judge the container.

    A record with the fields of ``_STATE_FIELDS``, compared by value."""

    __slots__ = _STATE_FIELDS

    def __init__(
        self,
        id: str,
        bundle: str,
        rootfs: str,
        pid: int,
        pid_start: int,  # /proc/<pid>/stat field 22, to detect pid reuse
        created: str,  # RFC 3339
        oci_version: str,
        owner: str = "",
        annotations: dict[str, str] | None = None,
        cgroup_paths: dict[str, str] | None = None,
        config: dict[str, object] | None = None,  # what later commands need
    ) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.pid = pid
        self.pid_start = pid_start
        self.created = created
        self.oci_version = oci_version
        self.owner = owner
        self.annotations: dict[str, str] = {} if annotations is None else annotations
        self.cgroup_paths: dict[str, str] = {} if cgroup_paths is None else cgroup_paths
        self.config: dict[str, object] = {} if config is None else config

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in _STATE_FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ContainerState)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in _STATE_FIELDS)
        return f"ContainerState({fields})"

    def to_json(self) -> str:
        return json.dumps({f: getattr(self, f) for f in _STATE_FIELDS}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContainerState:
        data = json.loads(text)
        return cls(**data)


def validate_id(cid: str) -> None:
    # Letters and digits (Unicode's, as a regex's \w) and _ + - . : no regex to compile.
    if (
        not cid
        or cid in (".", "..")
        or len(cid) > 1024
        or not all(c.isalnum() or c in _ID_PUNCT for c in cid)
    ):
        raise ConfigError("id", f"invalid container id {cid!r}: use letters, digits, _ + - .")


def write_atomic(path: str, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Write ``path`` so that readers see the old content or the new one, never a part
    (``corral_common.hostsys.write_atomic``, through the host seam)."""
    from corral_common import hostsys  # only commands that write pay for its import

    hostsys.host().write_atomic(path, data, mode, durable=durable)


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateDir:
    """The directory of one container under the state root."""

    def __init__(self, root: str, cid: str) -> None:
        validate_id(cid)
        self.root = root
        self.id = cid
        self.path = os.path.join(root, cid)

    @property
    def fifo(self) -> str:
        return os.path.join(self.path, FIFO)

    def exists(self) -> bool:
        """A state was committed, and not lost in a crash of the machine (``save``)."""
        return _committed(os.path.join(self.path, STATE_FILE))

    def make(self) -> None:
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise AlreadyExists(self.id) from None

    def make_fifo(self) -> None:
        os.mkfifo(self.fifo, 0o622)
        # mkfifo honours the umask; the container user, whoever it is, must be able to write.
        os.chmod(self.fifo, 0o622)

    def load(self) -> ContainerState:
        path = os.path.join(self.path, STATE_FILE)
        try:
            text = _read_nofollow(self.path, STATE_FILE)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(self.id) from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise NotFound(self.id) from None  # a symlink planted in the state root
        try:
            return ContainerState.from_json(text)
        except (ValueError, TypeError) as e:
            try:
                lost = _before_boot(os.stat(path).st_mtime)
            except OSError:
                lost = True
            if lost:  # emptied by a crash of the machine: no container of this boot
                raise NotFound(self.id) from None
            raise SysError(
                f"read state of {self.id}", errno.EINVAL, f"corrupt state: {e}"
            ) from None

    def save(self, st: ContainerState) -> None:
        """Commit ``st``: atomically (readers, and the writer's death at any point, see the
        old state or the new one), but not fsync'd, like runc's and crun's. Durability buys
        nothing here: a state describes processes and kernel objects that a crash of the
        machine takes with it. What such a crash can leave is a state.json empty or cut
        short (written before the boot): that reads as no state (``exists``, ``load``), so
        ``delete --force`` and a new ``create`` of the id remove the directory, as they do
        for a create that never committed."""
        write_atomic(os.path.join(self.path, STATE_FILE), st.to_json().encode(), durable=False)

    def record_creating(self, cgroup_paths: dict[str, str]) -> None:
        """Before `create` makes anything: what a half-made container holds, so that a
        create killed before it committed the state can be undone by whoever comes next.

        Not fsync'd: it protects against the death of the create, which the page cache
        outlives; a machine crash takes the cgroups it names with it, and a record lost or
        emptied by one reads as none (``creating_record``)."""
        rec = {"cgroup_paths": cgroup_paths}
        path = os.path.join(self.path, CREATING_FILE)
        write_atomic(path, json.dumps(rec).encode(), durable=False)

    def creating_record(self) -> dict[str, str] | None:
        """The cgroup paths of a half-made container, or None when none were recorded."""
        try:
            paths = json.loads(_read_nofollow(self.path, CREATING_FILE)).get("cgroup_paths")
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(paths, dict):
            return None
        return {str(k): str(v) for k, v in paths.items()}

    def half_made(self) -> bool:
        """The directory exists but no state was ever committed in it."""
        try:
            is_dir = S_ISDIR(os.lstat(self.path).st_mode)
        except OSError:
            return False
        return is_dir and not self.exists()

    def remove(self) -> None:
        """Remove the directory and what it holds (files only, normally), ignoring errors;
        a symlink in its place is removed, never what it points at."""
        try:
            fd = os.open(self.path, _DIR_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            return
        try:
            for name in os.listdir(fd):
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                except OSError:
                    # Not a plain file (a directory planted in the state dir: any depth).
                    from corral_common.rmtree import rmtree

                    rmtree(name, dir_fd=fd, ignore_errors=True)
        finally:
            os.close(fd)
        try:
            os.rmdir(self.path)
        except OSError:
            pass

    def locked(self) -> _Locked:
        """Serialise operations on one container (create/start/kill/delete)."""
        return _Locked(self)


class _Locked:
    """``with``: the container's directory flock'd (NotFound when the directory is not
    there). A class, not contextlib.contextmanager: contextlib is not imported by the hot
    commands."""

    def __init__(self, sd: StateDir) -> None:
        self.sd = sd
        self.fd = -1

    def __enter__(self) -> None:
        try:
            fd = os.open(self.sd.path, _DIR_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(self.sd.id) from None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise NotFound(self.sd.id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        fd, self.fd = self.fd, -1
        try:
            # A process spawned while we held the lock shares this open file description
            # until it execs; unlock explicitly so its copy of the fd does not keep the lock.
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if _committed(os.path.join(root, n, STATE_FILE)))


def _committed(state_file: str) -> bool:
    """``state_file`` holds a committed state: not one of a previous boot whose content a
    crash of the machine lost (empty or cut short: read only for a file of a previous boot).
    Neither it nor its directory may be a symlink."""
    try:
        if not S_ISDIR(os.lstat(os.path.dirname(state_file)).st_mode):
            return False
        st = os.lstat(state_file)
    except OSError:
        return False
    if not S_ISREG(st.st_mode):
        return False
    if not _before_boot(st.st_mtime):
        return True
    try:
        json.loads(_read_nofollow(os.path.dirname(state_file), os.path.basename(state_file)))
    except (OSError, ValueError):
        return False
    return True


def _read_nofollow(directory: str, name: str) -> str:
    """The text of ``directory/name``, neither of them followed if a symlink (ELOOP, or
    ENOTDIR for a symlink to a file in the directory's place)."""
    dfd = os.open(directory, _DIR_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
    with open(fd, closefd=True) as f:
        return f.read()


_boot_time: float | None = None


def _before_boot(mtime: float) -> bool:
    """Whether a file last written at ``mtime`` was written before this boot of the machine
    (btime of /proc/stat, in whole seconds: a file of the boot's first second counts as
    this boot's)."""
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    _boot_time = float(line.split()[1])
                    break
            else:
                return False
    return mtime < _boot_time
