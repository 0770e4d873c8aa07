"""Pods' status changes as they happen (inotify), so that a caller learns at once that a
pod's monitor rewrote ``pod.status`` or ``status/<container>`` (a container started, became
ready, exited) instead of reading every pod's status again and again.

One inotify instance for any number of pods: ``add(uid, pod_dir)`` watches the pod
directory (``pod.status`` is renamed into it; its ``status/`` directory is made there) and
``status/``; ``fileno()`` becomes readable when something changed, and ``read()`` says which
pods. A watch follows its directory through renames (run/ -> exited/) and ends when it is
removed. The monitor writes a status file to a temporary name and renames it: the rename
(IN_MOVED_TO) is the change, seen once the new content is there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading

__all__ = ["StatusWatch"]

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_Q_OVERFLOW = 0x00004000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
STATUS_DIR = "status"
_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, step: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{step}: {os.strerror(e)}")
    return ret


class StatusWatch:
    """The status changes of the pods added, from one inotify fd (thread-safe)."""

    def __init__(self) -> None:
        self._fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self._mu = threading.Lock()
        self._pods: dict[int, tuple[str, bool]] = {}  # wd -> (uid, is the status/ directory)
        self._wds: dict[str, list[int]] = {}  # uid -> its watches
        self._changed: set[str] = set()  # found while adding (status/ made before its watch)
        self._paths: dict[int, str] = {}  # wd of a pod directory -> its path when added

    def fileno(self) -> int:
        return self._fd

    def _watch(self, path: str, mask: int) -> int:
        return _check(
            _libc.inotify_add_watch(self._fd, os.fsencode(path), mask | IN_ONLYDIR),
            f"inotify_add_watch {path}",
        )

    def add(self, uid: str, pod_dir: str | os.PathLike[str]) -> None:
        """Watch pod ``uid`` whose directory is ``pod_dir`` (again: nothing new). OSError
        when the directory is not there."""
        with self._mu:
            if uid in self._wds:
                return
            wd = self._watch(os.fspath(pod_dir), IN_MOVED_TO | IN_CREATE)
            self._pods[wd] = (uid, False)
            self._paths[wd] = os.fspath(pod_dir)
            self._wds[uid] = [wd]
            self._add_status_dir(uid, os.path.join(pod_dir, STATUS_DIR))

    def _add_status_dir(self, uid: str, path: str) -> None:
        try:
            wd = self._watch(path, IN_MOVED_TO)
        except FileNotFoundError:
            return  # its monitor makes it: the pod directory's watch sees it come
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            return
        if wd not in self._pods:
            self._pods[wd] = (uid, True)
            self._wds[uid].append(wd)
        # what its monitor wrote there before the watch was not seen: say it changed
        self._changed.add(uid)

    def discard(self, uid: str) -> None:
        """Stop watching pod ``uid``."""
        with self._mu:
            for wd in self._wds.pop(uid, []):
                self._pods.pop(wd, None)
                self._paths.pop(wd, None)
                _libc.inotify_rm_watch(self._fd, wd)  # gone already (EINVAL): the same

    def read(self) -> set[str]:
        """The uids of the pods whose status changed since the last read (none: empty)."""
        buf = b""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                break
            buf += chunk
        with self._mu:
            out, self._changed = self._changed, set()
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, _, n = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size : off + _EVENT.size + n].rstrip(b"\0")
                off += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:  # events were lost: every pod may have changed
                    out.update(self._wds)
                    continue
                found = self._pods.get(wd)
                if found is None:
                    continue
                uid, is_status = found
                if mask & IN_IGNORED:  # its directory is gone
                    self._pods.pop(wd, None)
                    self._paths.pop(wd, None)
                    wds = self._wds.get(uid)
                    if wds is not None and wd in wds:
                        wds.remove(wd)
                    continue
                if name.startswith(b"."):
                    continue  # a temporary file of the monitor's
                if not is_status and mask & IN_CREATE:
                    if name == STATUS_DIR.encode():
                        pod_dir = self._dir_of(wd)
                        if pod_dir is not None:
                            self._add_status_dir(uid, os.path.join(pod_dir, STATUS_DIR))
                    continue
                out.add(uid)
            out |= self._changed  # status/ directories watched just now
            self._changed = set()
            return out

    def _dir_of(self, wd: int) -> str | None:
        """The path the pod directory of watch ``wd`` was added with (a pod is added once it
        runs: it stays in run/ while it runs)."""
        return self._paths.get(wd)

    def close(self) -> None:
        with self._mu:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._pods.clear()
            self._wds.clear()
            self._paths.clear()
