"""Remove a directory tree of any depth, never following a symlink.

A tree's depth is chosen by whoever wrote it: an image layer, or a container in its rootfs or a
volume. Python 3.11's ``shutil.rmtree`` recurses once per level (a RecursionError, even with
``ignore_errors``, past about 1000) and holds a descriptor per level. This walks with one
directory open at a time: down by name with O_NOFOLLOW, back up through ``..``, checked to be
the directory it came down from.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["rmtree"]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name: str, dir_fd: int | None) -> int:
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except PermissionError:
        # Not root, and a directory of mode 0 (an image's): make it ours to read, through
        # an O_PATH descriptor (no permission needed, and no symlink followed).
        path = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=dir_fd)  # fmt: skip
        try:
            os.chmod(f"/proc/self/fd/{path}", 0o700)
            return os.open(f"/proc/self/fd/{path}", _DIR)
        finally:
            os.close(path)


def _in(fd: int, op, name: str) -> None:  # type: ignore[no-untyped-def]
    """``op(name, dir_fd=fd)``; a name already gone is fine; a directory we may not write
    (not root) is made writable once."""
    for attempt in (0, 1):
        try:
            op(name, dir_fd=fd)
            return
        except FileNotFoundError:
            return
        except PermissionError:
            if attempt:
                raise
            os.fchmod(fd, 0o700)


def rmtree(
    path: str | os.PathLike[str], *, dir_fd: int | None = None, ignore_errors: bool = False
) -> None:
    """Remove ``path`` (relative to ``dir_fd`` when given) and everything below it; a
    symlink or file is just unlinked, a missing path is not an error. With
    ``ignore_errors``, what cannot be removed stays (as ``shutil.rmtree``'s flag)."""
    try:
        _rmtree(os.fspath(path), dir_fd)
    except OSError:
        if not ignore_errors:
            raise


def _rmtree(path: str, dir_fd: int | None) -> None:
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        _unlink(path, dir_fd)
        return
    fd = _open_dir(path, dir_fd)
    # One entry per level open so far: (dev, ino) of the directory, its name in the level
    # above, and the subdirectories still to remove (None: not listed yet).
    levels: list[tuple[tuple[int, int], str, list[str] | None]] = []
    top = os.fstat(fd)
    levels.append(((top.st_dev, top.st_ino), "", None))
    try:
        while True:
            ident, name, pending = levels[-1]
            if pending is None:
                pending = []
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            pending.append(e.name)
                        else:
                            _in(fd, os.unlink, e.name)
                levels[-1] = (ident, name, pending)
            if pending:
                child = pending.pop()
                try:
                    nfd = _open_dir(child, fd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    _in(fd, os.unlink, child)  # no longer a directory: replaced meanwhile
                    continue
                os.close(fd)
                fd = nfd
                cst = os.fstat(fd)
                levels.append(((cst.st_dev, cst.st_ino), child, None))
                continue
            if len(levels) == 1:
                break
            up = os.open("..", _DIR, dir_fd=fd)
            ust = os.fstat(up)
            os.close(fd)
            fd = up
            levels.pop()
            if (ust.st_dev, ust.st_ino) != levels[-1][0]:
                raise OSError(errno.EXDEV, f"rmtree {path}: {name} was moved meanwhile")
            _in(fd, os.rmdir, name)
    finally:
        os.close(fd)
    try:
        os.rmdir(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _unlink(path: str, dir_fd: int | None) -> None:
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
