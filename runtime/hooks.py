"""OCI hooks run by the runtime process: prestart, createRuntime, createContainer, poststart,
poststop (startContainer hooks run inside the container, in the C core).

Each hook gets the container's state JSON on stdin, runs with exactly its own ``env`` and
``args`` (``args[0]`` is argv[0]; ``path`` is what is executed) and is killed after its
``timeout``. createContainer hooks run in the container's mount namespace, before pivot_root,
so host paths still resolve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping

from . import config as cfg
from .errors import CorralError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS = 0x00020000


class HookError(CorralError):
    """A hook failed: it names the hook kind, its index and path."""

    def __init__(self, kind: str, index: int, path: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind} hook #{index} ({path}): {detail}")


def to_json(hooks: tuple[cfg.Hook, ...]) -> list[dict[str, Any]]:
    return [
        {"path": h.path, "args": list(h.args), "env": list(h.env), "timeout": h.timeout}
        for h in hooks
    ]


def from_json(items: object) -> tuple[cfg.Hook, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        cfg.Hook(
            path=str(i["path"]),
            args=tuple(i.get("args") or ()),
            env=tuple(i.get("env") or ()),
            timeout=i.get("timeout"),
        )
        for i in items
        if isinstance(i, dict) and "path" in i
    )


def _join_mount_ns(pid: int) -> Callable[[], None]:
    def enter() -> None:
        from corral_common import hostsys

        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        hostsys.setns(fd, CLONE_NEWNS, f"setns(mount namespace of {pid})")
        os.close(fd)

    return enter


def run(
    kind: str,
    hooks: tuple[cfg.Hook, ...],
    state: Mapping[str, Any],
    *,
    mount_ns_of: int | None = None,
) -> None:
    """Run ``hooks`` in order; the first failure raises HookError."""
    data = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        argv = list(h.args) or [h.path]
        try:
            p = subprocess.Popen(
                argv,
                executable=h.path,
                env=dict(e.split("=", 1) for e in h.env if "=" in e),
                stdin=subprocess.PIPE,
                close_fds=True,
                preexec_fn=_join_mount_ns(mount_ns_of) if mount_ns_of else None,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise HookError(kind, i, h.path, str(e)) from None
        try:
            p.communicate(data, timeout=h.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise HookError(kind, i, h.path, f"timed out after {h.timeout}s") from None
        except BrokenPipeError:
            p.wait()  # the hook need not read its stdin
        if p.returncode != 0:
            raise HookError(kind, i, h.path, f"exit status {p.returncode}")


def run_warn(kind: str, hooks: tuple[cfg.Hook, ...], state: Mapping[str, Any]) -> None:
    """poststart/poststop: a failure is a warning; the remaining hooks still run."""
    for i, h in enumerate(hooks):
        try:
            run(kind, (h,), state)
        except HookError as e:
            print(f"corral: warning: {str(e).replace('#0', f'#{i}', 1)}", file=sys.stderr)
