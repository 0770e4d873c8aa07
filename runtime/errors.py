"""The runtime's exception tree.

Every error carries the object it concerns and, where a system call failed, the step
that failed and its errno, so the CLI can print one line such as
``corral-oci: create c1: pivot_root(/var/lib/x): Invalid argument``.
"""

from __future__ import annotations

import errno as _errno
import os


class CorralError(Exception):
    """Base of every error the runtime raises on purpose."""


class ConfigError(CorralError):
    """config.json (or a resources file) is invalid; ``field`` is a JSON path like process.args."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class SysError(CorralError):
    """A system call failed; ``step`` names the call and its object, e.g. ``mount(/proc)``."""

    def __init__(self, step: str, err: int, detail: str = "") -> None:
        self.step = step
        self.errno = err
        self.detail = detail
        text = detail or (os.strerror(err) if err else "failed")
        super().__init__(f"{step}: {text}")

    @classmethod
    def from_oserror(cls, step: str, exc: OSError) -> SysError:
        return cls(step, exc.errno or _errno.EIO)


class SpawnError(SysError):
    """The container process failed while it was being set up (before its execve)."""


class CgroupError(SysError):
    """A cgroup operation failed."""


class ContainerError(CorralError):
    """An operation on a container failed; ``cid`` names the container."""

    def __init__(self, cid: str, message: str) -> None:
        self.cid = cid
        super().__init__(message)


class NotFound(ContainerError):
    def __init__(self, cid: str) -> None:
        super().__init__(cid, f"container does not exist: {cid}")


class AlreadyExists(ContainerError):
    def __init__(self, cid: str) -> None:
        super().__init__(cid, f"container with id exists: {cid}")


class InvalidState(ContainerError):
    def __init__(self, cid: str, message: str) -> None:
        super().__init__(cid, message)
