"""Safe layer unpacking into a directory used as an overlayfs lower layer.

Every filesystem operation is relative to a directory fd that was reached component by
component with ``O_NOFOLLOW``: a symlink can be created by a layer, but nothing is ever written
or looked up through one, so an entry can land nowhere but below ``dest``. Names with ``..``
or a leading ``/`` are refused outright, hardlinks must point at an earlier entry of the same
layer, device nodes need root and an explicit allowance, and the sum of file sizes and the
number of entries are capped against decompression bombs (a sparse file counts at its full
size: we never write holes).

OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` a 0:0 character device ``NAME``,
``.wh..wh..opq`` the ``overlay.opaque`` xattr on its directory (``trusted.`` as root,
``user.`` otherwise, for a ``userxattr`` mount). See image-spec layer.md.

tarsafe is not used here: it rejects absolute symlinks and every device node, both legal in
a layer, and its checks are on path strings, so a symlink created by one entry and written
through by a later one passes them; the fd walk below covers all three.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from corral_common.rmtree import rmtree

from .digest import CHUNK, HashingReader, stream_errors
from .errors import FormatError, UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Overlayfs reads these xattrs on lower layers; a layer must not be able to set them.
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# tarfile's stream buffer. Each read it serves (a 512-byte header, a piece of a file) joins
# and slices the whole buffer: at 1 MiB that copying was two thirds of an unpack's CPU time.
TAR_BUFSIZE = 64 << 10
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")
# Directory fds an unpack keeps open for its walks (several unpacks run at once).
_WALKS = 64
# Linux's limits for a path and for one name in it (what runc's and containerd's unpackers
# meet as ENAMETOOLONG).
_PATH_MAX = 4096
_NAME_MAX = 255
_ID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown(2)
_NS_MAX = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """Caps for one layer. ``allow_devices`` is honoured only when running as root."""

    max_bytes: int = 64 << 30
    max_entries: int = 2_000_000
    allow_devices: bool = False

    @property
    def max_stream(self) -> int:
        # Headers, padding and the end-of-archive blocks on top of the file contents.
        return self.max_bytes + 1024 * self.max_entries + (16 << 20)


@dataclass
class UnpackResult:
    diff_id: str
    size: int  # bytes of the uncompressed tar stream
    content_bytes: int
    entries: int


@dataclass
class _State:
    root_fd: int
    layer: str
    limits: Limits
    is_root: bool
    overlay_prefix: str
    # Who owns what this unpack creates (None: not known, a set-group-ID root gives its
    # group): an entry made here that is to be theirs needs no chown.
    owner: tuple[int, int] | None = None
    content_bytes: int = 0
    entries: int = 0
    # Directory entries, with whether this unpack made them, for _finish_dir.
    dirs: list[tuple[tuple[str, ...], tarfile.TarInfo, bool]] = field(default_factory=list)
    # O_PATH fds of the directories walked to lately, by path (oldest first): an entry
    # starts its walk from the deepest of its parents found here instead of opening every
    # component again. Those at or below a removed directory are dropped with it.
    walks: dict[tuple[str, ...], int] = field(default_factory=dict)


def _short(name: str) -> str:
    """A name as an error message quotes it: its start, when it is long."""
    return name if len(name) <= 80 else name[:64] + "..."


def split_name(name: str, layer: str = "") -> tuple[str, ...]:
    """The components of a tar member name; refuses absolute names and ``..``."""
    if name.startswith("/"):
        raise UnsafeLayer(name, "absolute path", layer)
    if "\0" in name:
        raise UnsafeLayer(name, "NUL in name", layer)
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(name, "'..' in path", layer)
    if len(name.encode("utf-8", "surrogateescape")) >= _PATH_MAX:
        raise UnsafeLayer(_short(name), f"path of {_PATH_MAX} bytes or more", layer)
    for p in parts:
        if len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise UnsafeLayer(_short(name), f"a name longer than {_NAME_MAX} bytes", layer)
    return parts


def unpack_layer(
    stream: IO[bytes],
    dest: Path,
    *,
    limits: Limits | None = None,
    layer: str = "",
) -> UnpackResult:
    """Unpack the (decompressed) tar ``stream`` into the existing, empty directory ``dest``.

    Returns the diff_id (sha256 of the stream) for the caller to check against the image
    config; on any error the caller discards ``dest``.
    """
    limits = limits or Limits()
    reader = HashingReader(stream, limit=limits.max_stream)
    is_root = os.geteuid() == 0
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = _State(root_fd, layer, limits, is_root, "trusted." if is_root else "user.")
    try:
        if not os.fstat(root_fd).st_mode & stat.S_ISGID:  # (mkdir passes the bit down)
            st.owner = (os.geteuid(), os.getegid())
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=TAR_BUFSIZE) as tf:  # type: ignore[call-overload]
                for member in tf:
                    st.entries += 1
                    if st.entries > limits.max_entries:
                        raise UnsafeLayer(
                            member.name, f"more than {limits.max_entries} entries", layer
                        )
                    try:
                        _entry(st, tf, member)
                    except OSError as e:
                        # What the kernel refused for this entry (a name too long, an
                        # xattr it rejects, no space): the entry named, one line.
                        reason = e.strerror or str(e)
                        raise UnsafeLayer(member.name, reason, layer) from e
            reader.drain()
        except (tarfile.TarError, ValueError, *stream_errors()) as e:
            raise FormatError(f"layer {layer or '?'}: truncated or corrupt: {e}") from e
        for parts, member, made in reversed(st.dirs):
            _finish_dir(st, parts, member, made)
    finally:
        _forget_walks(st)
        os.close(root_fd)
    return UnpackResult(reader.digest(), reader.count, st.content_bytes, st.entries)


def _entry(st: _State, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    parts = split_name(m.name, st.layer)
    for what, value in (("uid", m.uid), ("gid", m.gid)):
        if not 0 <= value <= _ID_MAX:
            raise UnsafeLayer(m.name, f"{what} {value} is not a user or group id", st.layer)
    if not -_NS_MAX <= m.mtime * 1e9 <= _NS_MAX:  # (NaN fails both) utime takes int64 ns
        raise UnsafeLayer(m.name, f"mtime {m.mtime} is out of range", st.layer)
    if not parts:
        if m.isdir():
            st.dirs.append(((), m, False))
            return
        raise UnsafeLayer(m.name, "non-directory entry for the layer root", st.layer)
    for p in parts[:-1]:
        if p.startswith(WHITEOUT_PREFIX):
            raise UnsafeLayer(m.name, "whiteout name used as a directory", st.layer)
    base = parts[-1]
    pfd = _walk(st, m.name, parts[:-1], create=True)
    if base == OPAQUE:
        _set_opaque(st, pfd, m.name)
    elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        pass  # other AUFS metadata (.wh..wh.plnk and friends): not part of the image
    elif base.startswith(WHITEOUT_PREFIX):
        target = base[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise UnsafeLayer(m.name, "whiteout of nothing", st.layer)
        _replacing(st, pfd, parts[:-1], target, os.mknod, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    else:
        _create(st, tf, m, pfd, parts)


def _walk(st: _State, entry: str, parts: tuple[str, ...], *, create: bool) -> int:
    """An fd for ``parts`` below the root, never following a symlink on the way: each
    component is opened (O_PATH) with O_NOFOLLOW from the one before, or taken from an
    earlier walk (``st.walks``), whose directories no entry has removed since.

    The fd is the walks' (or the root's), not the caller's: valid until the next walk, or
    until a directory that holds it is removed (``_drop_walks_into``); dup it to keep it."""
    walks = st.walks
    k = len(parts)
    while k and parts[:k] not in walks:
        k -= 1
    if k:
        fd = walks[parts[:k]] = walks.pop(parts[:k])  # the most recently used: last
    else:
        fd = st.root_fd
    for i in range(k, len(parts)):
        p = parts[i]
        try:
            nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise UnsafeLayer(
                    entry, f"{'/'.join(parts[: i + 1])} does not exist", st.layer
                ) from None
            os.mkdir(p, 0o755, dir_fd=fd)
            nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
        except (NotADirectoryError, OSError) as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            kind = "a symlink" if _is_symlink(fd, p) else "not a directory"
            where = "/".join(parts[: i + 1])
            raise UnsafeLayer(entry, f"parent {where} is {kind}", st.layer) from None
        walks[parts[: i + 1]] = nfd
        fd = nfd
    while len(walks) > _WALKS:  # the least recently used go (never the one returned)
        oldest = next(iter(walks))
        os.close(walks.pop(oldest))
    return fd


def _forget_walks(st: _State) -> None:
    for fd in st.walks.values():
        os.close(fd)
    st.walks.clear()


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _drop_walks_into(st: _State, path: tuple[str, ...]) -> None:
    """Close the walks' fds of ``path`` and of every directory below it: it is about to go."""
    n = len(path)
    for key in [k for k in st.walks if k[:n] == path]:
        os.close(st.walks.pop(key))


def _remove(
    st: _State, pfd: int, where: tuple[str, ...], name: str, keep_dir: bool = False
) -> bool:
    """Remove ``name`` from ``pfd`` (the directory ``where``) if present; returns True if a
    directory was kept."""
    try:
        info = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode):
        if keep_dir:
            return True
        _drop_walks_into(st, (*where, name))
        rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)
    return False


def _replacing(
    st: _State,
    pfd: int,
    where: tuple[str, ...],
    name: str,
    make: Callable[..., _T],
    *args: Any,
) -> _T:
    """``make(name, *args, dir_fd=pfd)``, which creates ``name``, after removing what is
    there, if anything: tried first (a layer rarely names a path twice), again after the
    removal when the name is taken."""
    try:
        return make(name, *args, dir_fd=pfd)
    except FileExistsError:
        _remove(st, pfd, where, name)
        return make(name, *args, dir_fd=pfd)


def _proc(pfd: int, name: str) -> str:
    # For calls without dir_fd support: the magic link names the directory we hold, and
    # the last component is never followed (follow_symlinks=False at every call site).
    return f"/proc/self/fd/{pfd}/{name}"


def _set_opaque(st: _State, pfd: int, entry: str) -> None:
    fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.setxattr(fd, st.overlay_prefix + "overlay.opaque", b"y")
    except OSError as e:
        raise UnsafeLayer(entry, f"cannot mark directory opaque: {e.strerror}", st.layer) from e
    finally:
        os.close(fd)


def _create(
    st: _State, tf: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: tuple[str, ...]
) -> None:
    base = parts[-1]
    if m.isdir():
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
            made = True
        except FileExistsError:
            made = not _remove(st, pfd, parts[:-1], base, keep_dir=True)
            if made:
                os.mkdir(base, 0o700, dir_fd=pfd)
        st.dirs.append((parts, m, made))
        return
    if m.isreg():
        if m.size > st.limits.max_bytes - st.content_bytes:
            raise UnsafeLayer(
                m.name,
                f"file of {m.size} bytes passes the layer limit of {st.limits.max_bytes} bytes",
                st.layer,
            )
        st.content_bytes += m.size
        fd = _replacing(st, pfd, parts[:-1], base, os.open, _NEW_FILE, 0o600)
        try:
            src = tf.extractfile(m)
            assert src is not None
            while chunk := src.read(CHUNK):
                _write_all(fd, chunk)
            _attrs_fd(st, fd, m, made=True)
        finally:
            os.close(fd)
        return
    if m.issym():
        try:
            os.symlink(m.linkname, base, dir_fd=pfd)
        except FileExistsError:
            _remove(st, pfd, parts[:-1], base)
            os.symlink(m.linkname, base, dir_fd=pfd)
        _attrs_link(st, pfd, base, m)
        return
    if m.islnk():
        tparts = split_name(m.linkname, st.layer)
        if not tparts:
            raise UnsafeLayer(m.name, "hardlink to the layer root", st.layer)
        # The target's walk may retire the parent's fd, and removing what the link
        # replaces may drop the target's: both are held by copies (hardlinks are few).
        pfd = os.dup(pfd)
        try:
            tfd = os.dup(_walk(st, m.name, tparts[:-1], create=False))
        except BaseException:
            os.close(pfd)
            raise
        try:
            try:
                tst = os.stat(tparts[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise UnsafeLayer(
                    m.name, f"hardlink target {m.linkname} is not in this layer", st.layer
                ) from None
            if stat.S_ISDIR(tst.st_mode):
                raise UnsafeLayer(m.name, "hardlink to a directory", st.layer)
            if tparts == parts:
                return  # a link to itself: nothing to do
            _remove(st, pfd, parts[:-1], base)
            os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
            os.close(pfd)
        return
    if m.ischr() or m.isblk():
        if not (st.limits.allow_devices and st.is_root):
            why = "device nodes not allowed" if st.is_root else "device node needs root"
            raise UnsafeLayer(m.name, why, st.layer)
        _remove(st, pfd, parts[:-1], base)
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        _attrs_path(st, pfd, base, m)
        return
    if m.isfifo():
        _remove(st, pfd, parts[:-1], base)
        os.mkfifo(base, 0o600, dir_fd=pfd)
        _attrs_path(st, pfd, base, m)
        return
    raise UnsafeLayer(m.name, f"unsupported tar entry type {m.type!r}", st.layer)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _xattrs(m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for k, v in m.pax_headers.items():
        if not k.startswith("SCHILY.xattr."):
            continue
        name = k[len("SCHILY.xattr.") :]
        if name.startswith(_FORBIDDEN_XATTR_PREFIXES):
            continue
        out.append((name, v.encode("utf-8", "surrogateescape")))
    return out


def _tolerable(st: _State, e: OSError) -> bool:
    # Unprivileged unpacks (tests) cannot chown or set trusted./security. xattrs.
    return not st.is_root and e.errno in (errno.EPERM, errno.EACCES) or e.errno == errno.ENOTSUP


def _attrs_fd(st: _State, fd: int, m: tarfile.TarInfo, made: bool) -> None:
    """Owner, xattrs, mode and mtime of an open entry; ``made``: created by this unpack
    (owned by ``st.owner``, so no chown when that is the owner it is to have)."""
    try:
        if not (made and (m.uid, m.gid) == st.owner):
            os.fchown(fd, m.uid, m.gid)
    except OSError as e:
        if not _tolerable(st, e):
            raise
    for name, value in _xattrs(m):
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            if not _tolerable(st, e):
                raise OSError(e.errno, f"xattr {_short(name)}: {e.strerror}") from e
    os.fchmod(fd, m.mode & 0o7777)
    os.utime(fd, ns=(int(m.mtime * 1e9), int(m.mtime * 1e9)))


def _attrs_path(st: _State, pfd: int, base: str, m: tarfile.TarInfo) -> None:
    """As ``_attrs_fd``, by name, for a node just made (a device, a fifo)."""
    try:
        if (m.uid, m.gid) != st.owner:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        if not _tolerable(st, e):
            raise
    for name, value in _xattrs(m):
        try:
            os.setxattr(_proc(pfd, base), name, value, follow_symlinks=False)
        except OSError as e:
            if not _tolerable(st, e):
                raise OSError(e.errno, f"xattr {_short(name)}: {e.strerror}") from e
    os.chmod(_proc(pfd, base), m.mode & 0o7777, follow_symlinks=True)
    t = int(m.mtime * 1e9)
    os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)


def _attrs_link(st: _State, pfd: int, base: str, m: tarfile.TarInfo) -> None:
    """As ``_attrs_path``, for a symlink just made (no mode: a symlink's is ignored)."""
    try:
        if (m.uid, m.gid) != st.owner:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        if not _tolerable(st, e):
            raise
    for name, value in _xattrs(m):
        try:
            os.setxattr(_proc(pfd, base), name, value, follow_symlinks=False)
        except OSError as e:
            if not _tolerable(st, e) and e.errno != errno.EPERM:
                raise OSError(e.errno, f"xattr {_short(name)}: {e.strerror}") from e
    t = int(m.mtime * 1e9)
    os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)


def _finish_dir(st: _State, parts: tuple[str, ...], m: tarfile.TarInfo, made: bool) -> None:
    """Directory owner, mode, xattrs and mtime, applied last (children change mtimes)."""
    try:
        pfd = _walk(st, m.name, parts, create=False)
    except UnsafeLayer:
        return  # replaced by a later entry of the layer
    fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _attrs_fd(st, fd, m, made)
    finally:
        os.close(fd)
