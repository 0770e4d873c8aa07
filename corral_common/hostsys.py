"""The host operations the Python side makes itself: one place for them, one seam over them.

The C core (``runtime._corral``) does what must happen between clone() and execve(); what
Python does to the host directly is here: mount(2), umount2(2), the new mount API for long
overlay lower lists, setns(2), unshare(2), statfs(2), openat2(2), prctl(2) (through
python-prctl), /proc/self/mountinfo and atomic file writes. ctypes and prctl are loaded on
the first call that needs them, so importing this module costs a command nothing.

Every failure raises ``HostError``: an OSError (errno, strerror) that also carries the step
(``mount tmpfs on /x``) and the path; each layer translates it once into its own error.

``Host`` is the seam: the operations the lifecycle code makes through ``host()``, with
``RealHost`` doing them. ``using(fake)`` swaps in another implementation (tests use the
recording fake in ``testkit.fakehost``) for the code running inside the ``with``.
"""

from __future__ import annotations

import _thread
import errno as _errno
import os
from collections import namedtuple
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from typing import Any, NamedTuple, Protocol

# mount(2) flags and umount2(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_BIND, MS_REC = 0x1000, 0x4000
MNT_DETACH = 2
# namespace types of setns(2) and unshare(2)
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS, RESOLVE_BENEATH = 0x02, 0x08
# filesystem magic numbers (statfs f_type)
CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC = 0x63677270, 0x0027E0EB, 0x01021994

# Syscall numbers 428..437 are the same on every architecture.
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT, SYS_OPENAT2 = 429, 430, 431, 432, 437
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100
# The legacy mount(2) data argument is one page; longer option strings go through the new
# mount API, one ``lowerdir+`` per layer (Linux >= 6.8).
MAX_MOUNT_DATA = 4095


class HostError(OSError):
    """A host operation failed: ``step`` names it and its object, ``path`` is the path.

    Like OSError's own, an instance is also of the errno's class (FileNotFoundError for
    ENOENT, PermissionError for EACCES, ...), so ``except FileNotFoundError`` catches it."""

    def __new__(cls, step: str, err: int, path: str | None = None, detail: str = "") -> HostError:
        if cls is HostError:
            kind = type(OSError(err, ""))
            if kind is not OSError:
                cls = _errno_classes.get(kind) or _errno_class(kind)
        # OSError takes errno and strerror in __new__ (as __new__ is overridden here)
        return super().__new__(cls, err, detail or (os.strerror(err) if err else "failed"))

    def __init__(self, step: str, err: int, path: str | None = None, detail: str = "") -> None:
        self.step = step
        self.path = path

    def __str__(self) -> str:
        return f"{self.step}: {self.strerror}"

    def __reduce__(self) -> Any:  # OSError's would lose step and path
        return (HostError, (self.step, self.errno, self.path, self.strerror))


_errno_classes: dict[type[OSError], type[HostError]] = {}


def _errno_class(kind: type[OSError]) -> type[HostError]:
    cls = type(f"HostError.{kind.__name__}", (HostError, kind), {"__module__": __name__})
    _errno_classes[kind] = cls
    return cls


# ============================================================================ libc


_libc: Any = None


def _c() -> Any:
    """libc through ctypes, loaded once, on the first call that needs it (ctypes costs an
    import a few ms, which commands that never mount must not pay)."""
    global _libc
    if _libc is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.statfs.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        lib.syncfs.argtypes = [ctypes.c_int]
        lib.syscall.restype = ctypes.c_long
        _libc = lib
    return _libc


def preload() -> None:
    """Load libc now: before a fork whose child calls in here and must not pay for it."""
    _c()


M_ARENA_MAX = -8  # malloc.h


def malloc_arena_max(n: int) -> None:
    """mallopt(M_ARENA_MAX, n): glibc gives each thread that allocates while another holds
    the main arena an arena of its own (up to 8 per core), and an arena keeps what it grew to;
    a process whose threads seldom allocate at once does with ``n``. Call it before the
    threads start (an arena made already stays)."""
    if _c().mallopt(M_ARENA_MAX, n) != 1:
        raise HostError(f"mallopt(M_ARENA_MAX, {n})", _errno.EINVAL)


def _errno_now() -> int:
    import ctypes

    return ctypes.get_errno() or _errno.EIO


def _path(p: str | os.PathLike[str] | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


# ============================================================================ mounts


def mount(
    source: str | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
    *,
    step: str | None = None,
) -> None:
    """mount(2); ``step`` names it in the error (default ``mount <fstype> on <target>``)."""
    t = os.fspath(target)
    ret = _c().mount(_path(source), os.fsencode(t), _path(fstype), flags, _path(data))
    if ret != 0:
        what = fstype or ("bind" if flags & MS_BIND else "")
        raise HostError(step or f"mount {what} on {t}".replace("  ", " "), _errno_now(), t)


def umount(target: str | os.PathLike[str]) -> bool:
    """Unmount ``target``; a busy mount is detached lazily. False when it was not a mount
    point (EINVAL, ENOENT): unmounting is idempotent."""
    t = os.fspath(target)
    raw = os.fsencode(t)
    if _c().umount2(raw, 0) == 0:
        return True
    err = _errno_now()
    if err == _errno.EBUSY:
        if _c().umount2(raw, MNT_DETACH) == 0:
            return True
        err = _errno_now()
    if err in (_errno.EINVAL, _errno.ENOENT):
        return False
    raise HostError(f"umount {t}", err, t)


def bind_fd(fd: int, target: str | os.PathLike[str], recursive: bool = False) -> None:
    """Bind-mount what ``fd`` is open on (through ``/proc/self/fd/N``) onto ``target``."""
    t = os.fspath(target)
    flags = MS_BIND | (MS_REC if recursive else 0)
    mount(f"/proc/self/fd/{fd}", t, None, flags, step=f"bind mount on {t}")


def _syscall(step: str, nr: int, *args: object) -> int:
    ret = _c().syscall(nr, *args)
    if ret < 0:
        raise HostError(step, _errno_now())
    return int(ret)


def mount_overlay(
    lowers: Sequence[str | os.PathLike[str]],
    upper: str | os.PathLike[str],
    work: str | os.PathLike[str],
    target: str | os.PathLike[str],
) -> None:
    """Mount an overlay of ``lowers`` (topmost first) on ``target``. The paths must not
    hold ``,`` ``:`` or ``\\`` (the caller checks). A lower list longer than one page of
    mount data goes through fsopen/fsconfig/fsmount/move_mount."""
    t = os.fspath(target)
    lowerdir = ":".join(os.fspath(p) for p in lowers)
    data = f"lowerdir={lowerdir},upperdir={os.fspath(upper)},workdir={os.fspath(work)}"
    if len(data) <= MAX_MOUNT_DATA:
        mount("overlay", t, "overlay", 0, data, step=f"mount overlay on {t}")
        return
    fs = _syscall("fsopen(overlay)", SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    try:
        opts = [(b"lowerdir+", p) for p in lowers] + [(b"upperdir", upper), (b"workdir", work)]
        for key, p in opts:
            _syscall(f"fsconfig({key.decode()}={os.fspath(p)})", SYS_FSCONFIG, fs,
                     _FSCONFIG_SET_STRING, key, os.fsencode(p), 0)  # fmt: skip
        _syscall("fsconfig(create)", SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0)
        mnt = _syscall("fsmount(overlay)", SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0)
    finally:
        os.close(fs)
    try:
        _syscall(f"move_mount({t})", SYS_MOVE_MOUNT, mnt, b"", _AT_FDCWD, os.fsencode(t),
                 _MOVE_MOUNT_F_EMPTY_PATH)  # fmt: skip
    finally:
        os.close(mnt)


# ============================================================================ mountinfo


if TYPE_CHECKING:

    class MountInfo(NamedTuple):
        """One line of /proc/<pid>/mountinfo, escapes (``\\040`` ...) decoded."""

        mount_id: int
        parent_id: int
        dev: str  # "major:minor", the same for every mount of one filesystem
        root: str  # the mount's root inside its filesystem
        mountpoint: str
        options: str  # per-mount options (rw,nosuid,...)
        optional: tuple[str, ...]  # shared:N, master:N, propagate_from:N, unbindable
        fstype: str
        source: str
        super_options: str  # per-superblock options (for cgroup v1: the controllers)

        @property
        def shared(self) -> bool: ...

else:
    # The same record at run time: a collections.namedtuple (immutable, at a sixth of a frozen
    # dataclass's cost to define), as typing.NamedTuple makes, without importing typing.
    _MOUNTINFO_FIELDS = (
        "mount_id", "parent_id", "dev", "root", "mountpoint", "options", "optional", "fstype",
        "source", "super_options",
    )  # fmt: skip

    class MountInfo(namedtuple("MountInfo", _MOUNTINFO_FIELDS)):
        """One line of /proc/<pid>/mountinfo, escapes (``\\040`` ...) decoded."""

        __slots__ = ()

        @property
        def shared(self) -> bool:
            return any(f.startswith("shared:") for f in self.optional)


def unescape(field: str) -> str:
    """A mountinfo field: the kernel writes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Every well-formed line of mountinfo ``text``, in mount order (others are skipped)."""
    out: list[MountInfo] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        out.append(
            MountInfo(
                mount_id=mount_id,
                parent_id=parent_id,
                dev=fields[2],
                root=unescape(fields[3]),
                mountpoint=unescape(fields[4]),
                options=fields[5],
                optional=tuple(fields[6:sep]),
                fstype=fields[sep + 1],
                source=unescape(fields[sep + 2]),
                super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
            )
        )
    return out


def read_mountinfo(pid: int | str = "self") -> str:
    """The text of /proc/<pid>/mountinfo."""
    path = f"/proc/{pid}/mountinfo"
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise HostError(f"read {path}", e.errno or _errno.EIO, path) from None


def escape(path: str) -> str:
    """``path`` as mountinfo writes it (space, tab, newline and backslash as ``\\ooo``)."""
    if not any(c in path for c in " \t\n\\"):
        return path
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def mountinfo(pid: int | str = "self", contains: str | None = None) -> list[MountInfo]:
    """The mounts of /proc/<pid>/mountinfo, parsed. ``contains`` is a hint that the caller
    needs only the lines with that text in them (an escaped mount point prefix, a file system
    type): on a node with many pods, parsing every line was most of the cost of asking about
    a few. Callers still check what they get: a line may come that does not match."""
    text = read_mountinfo(pid)
    if contains is not None:
        text = "\n".join(line for line in text.split("\n") if contains in line)
    return parse_mountinfo(text)


def mounts_under(
    path: str | os.PathLike[str], mounts: Sequence[MountInfo] | None = None
) -> list[str]:
    """Mount points at or below ``path`` (in ``mounts``, default this mount namespace's),
    deepest first, each once."""
    top = os.fspath(path).rstrip("/") or "/"
    prefix = top.rstrip("/") + "/"
    if mounts is None:
        mounts = host().mountinfo(contains=escape(top))
    points = {
        m.mountpoint for m in mounts if m.mountpoint.startswith(prefix) or m.mountpoint == top
    }
    return sorted(points, key=lambda p: (p.count("/"), len(p), p), reverse=True)


def umount_all(path: str | os.PathLike[str]) -> None:
    """Unmount everything at or below ``path``, deepest first, again while mounts are
    stacked. A mount that fails is left (with what is below it) and the others go on; the
    first failure is raised at the end, or HostError(EBUSY) if something stays mounted."""
    h = host()
    hint = escape(os.fspath(path).rstrip("/") or "/")
    failed: dict[str, HostError] = {}
    for _ in range(8):
        points = [p for p in mounts_under(path, h.mountinfo(contains=hint)) if p not in failed]
        if not points:
            if not failed:
                return  # that read found nothing left: no need to read mountinfo again
            break
        for mp in points:
            try:
                h.umount(mp)
            except HostError as e:
                failed[mp] = e
    if failed:
        raise next(iter(failed.values()))
    left = mounts_under(path, h.mountinfo(contains=hint))
    if left:
        raise HostError(f"umount {left[0]}", _errno.EBUSY, left[0], "still mounted")


# ============================================================================ namespaces


def setns(fd: int, nstype: int, step: str | None = None) -> None:
    """setns(2) for the calling thread."""
    if _c().setns(fd, nstype) != 0:
        raise HostError(step or f"setns(fd {fd})", _errno_now())


def unshare(flags: int, step: str | None = None) -> None:
    """unshare(2) for the calling thread."""
    if _c().unshare(flags) != 0:
        raise HostError(step or f"unshare({flags:#x})", _errno_now())


# ============================================================================ files


def statfs_type(path: str | os.PathLike[str]) -> int:
    """f_type of statfs(2) on ``path`` (the filesystem magic number)."""
    import ctypes

    p = os.fspath(path)
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _c().statfs(os.fsencode(p), buf) != 0:
        raise HostError(f"statfs {p}", _errno_now(), p)
    # f_type is the first member: a long on the 64-bit ABIs and on i386/arm.
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def syncfs(path: str | os.PathLike[str]) -> None:
    """syncfs(2) on the filesystem holding ``path``: every file written there so far, data and
    metadata, is on disk when it returns (one call instead of an fsync per file)."""
    p = os.fspath(path)
    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _c().syncfs(fd) != 0:
            raise HostError(f"syncfs {p}", _errno_now(), p)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync(2) of a directory: the entries renamed into it so far are on disk."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise HostError(f"fsync {p}", e.errno or _errno.EIO, p) from None


OPENAT2_RETRIES = 32


def open_beneath(dirfd: int, path: str, flags: int = os.O_PATH) -> int:
    """openat2(dirfd, path, flags | O_CLOEXEC, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): an fd
    for ``path`` that lies below ``dirfd``. Symlinks are followed while they stay below it;
    leaving it raises HostError(EXDEV)."""
    return _openat2(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)


def open_no_magiclinks(path: str, flags: int = os.O_PATH) -> int:
    """openat2(AT_FDCWD, path, flags | O_CLOEXEC, RESOLVE_NO_MAGICLINKS): symlinks are
    followed, but not a process's magic links (``/proc/<pid>/exe``, ``fd/N``, ``root``,
    ``cwd``, reached directly or through ``/proc/self``, ``/dev/stdin``, ...), which name
    whatever the opening process holds: HostError(ELOOP)."""
    return _openat2(-100, path, flags, RESOLVE_NO_MAGICLINKS)  # AT_FDCWD


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    import ctypes

    class OpenHow(ctypes.Structure):
        _fields_ = [
            ("flags", ctypes.c_uint64),
            ("mode", ctypes.c_uint64),
            ("resolve", ctypes.c_uint64),
        ]

    how = OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    # EAGAIN: a rename or mount elsewhere on the system raced the lookup (the kernel cannot
    # prove the walk stayed beneath); the kernel asks to try again, as runc's and crun's
    # openat2 users do, a bounded number of times.
    for _ in range(OPENAT2_RETRIES):
        fd = _c().syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = _errno_now()
        if err != _errno.EAGAIN:
            break
    raise HostError(f"openat2({path})", err, path)


def write_atomic(
    path: str | os.PathLike[str], data: str | bytes, mode: int = 0o600, *, durable: bool = True
) -> None:
    """Write ``path`` so that readers, and the disk after a crash, hold the old content or the
    new one, never a part: a temporary file in the same directory, written and fsync'd, with
    ``mode`` (not the umask's), renamed over ``path``, then the directory fsync'd.

    ``durable=False`` leaves out both fsyncs: readers, and the writer's death at any point,
    still see the old content or the new one, but after a machine crash the file may be
    missing or empty. Only for records that mean nothing after a reboot (what a create has
    made in cgroupfs so far), whose readers take a missing or unreadable file as no record."""
    p = os.fspath(path)
    raw = data.encode() if isinstance(data, str) else data
    d = os.path.dirname(p) or "."
    # one temporary name per process and thread: concurrent writers never share one
    tmp = os.path.join(d, f".{os.path.basename(p)}.tmp{os.getpid()}.{_thread.get_ident()}")
    step = f"write {p}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except OSError as e:
        raise HostError(step, e.errno or _errno.EIO, p) from None
    try:
        try:
            if os.fstat(fd).st_mode & 0o7777 != mode:
                os.fchmod(fd, mode)
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, HostError):
            raise HostError(step, e.errno or _errno.EIO, p) from None
        raise
    if durable:
        fsync_dir(d)


# ============================================================================ prctl


def set_child_subreaper(on: bool = True) -> None:
    """PR_SET_CHILD_SUBREAPER: orphans below this process are re-parented to it."""
    import prctl

    try:
        prctl.set_child_subreaper(on)
    except OSError as e:
        raise HostError("prctl(PR_SET_CHILD_SUBREAPER)", e.errno or _errno.EINVAL) from None


def set_pdeathsig(sig: int) -> None:
    """PR_SET_PDEATHSIG: ``sig`` is sent to this process when its parent thread exits."""
    import prctl

    try:
        prctl.set_pdeathsig(sig)
    except OSError as e:
        raise HostError("prctl(PR_SET_PDEATHSIG)", e.errno or _errno.EINVAL) from None


def set_name(name: str) -> None:
    """PR_SET_NAME: the calling thread's name (/proc/self/comm, 15 bytes)."""
    import prctl

    try:
        prctl.set_name(name)
    except OSError as e:
        raise HostError(f"prctl(PR_SET_NAME, {name})", e.errno or _errno.EINVAL) from None


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE: off, /proc/<pid> is root's and nobody may ptrace this process."""
    import prctl

    try:
        prctl.set_dumpable(on)
    except OSError as e:
        raise HostError("prctl(PR_SET_DUMPABLE)", e.errno or _errno.EINVAL) from None


# ============================================================================ the seam


if TYPE_CHECKING:

    class Host(Protocol):
        """The host operations lifecycle code makes through ``host()`` (see the module doc)."""

        def mount(
            self,
            source: str | None,
            target: str | os.PathLike[str],
            fstype: str | None,
            flags: int = 0,
            data: str | None = None,
            *,
            step: str | None = None,
        ) -> None: ...

        def bind_fd(
            self, fd: int, target: str | os.PathLike[str], recursive: bool = False
        ) -> None: ...

        def mount_overlay(
            self,
            lowers: Sequence[str | os.PathLike[str]],
            upper: str | os.PathLike[str],
            work: str | os.PathLike[str],
            target: str | os.PathLike[str],
        ) -> None: ...

        def umount(self, target: str | os.PathLike[str]) -> bool: ...

        def mountinfo(
            self, pid: int | str = "self", contains: str | None = None
        ) -> list[MountInfo]: ...

        def statfs_type(self, path: str | os.PathLike[str]) -> int: ...

        def write_atomic(
            self,
            path: str | os.PathLike[str],
            data: str | bytes,
            mode: int = 0o600,
            *,
            durable: bool = True,
        ) -> None: ...


class RealHost:
    """The host itself."""

    mount = staticmethod(mount)
    bind_fd = staticmethod(bind_fd)
    mount_overlay = staticmethod(mount_overlay)
    umount = staticmethod(umount)
    mountinfo = staticmethod(mountinfo)
    statfs_type = staticmethod(statfs_type)
    write_atomic = staticmethod(write_atomic)


_host: Host = RealHost()


def host() -> Host:
    """The Host in use: the real one unless a test swapped it (``using``)."""
    return _host


class using:  # noqa: N801  (used as a function: ``with using(fake):``)
    """Make ``h`` the Host for the code inside the ``with`` (process-wide: tests only). A
    class, not contextlib.contextmanager: contextlib is not imported by the hot commands."""

    def __init__(self, h: Host) -> None:
        self.h = h
        self.previous: Host | None = None

    def __enter__(self) -> Host:
        global _host
        self.previous, _host = _host, self.h
        return self.h

    def __exit__(self, *exc: object) -> None:
        global _host
        assert self.previous is not None
        _host = self.previous
