"""Looking at and adjusting a live container: ps, stats and events, update, and `features`.

Output shapes follow runc: `events` prints one JSON object per line ({"type": "stats" | "oom",
"id": ..., "data": ...}); `features` prints the runtime-spec features document.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import cgroups
from . import config as cfg
from .errors import ConfigError, InvalidState
from .state import DEFAULT_ROOT, ContainerState, StateDir, Status


def _live(cid: str, root: str) -> tuple[ContainerState, cgroups.CgroupManager]:
    from .container import _manager, status_of

    sd = StateDir(root, cid)
    st = sd.load()
    if status_of(sd, st) is Status.STOPPED:
        raise InvalidState(cid, f"container {cid} is not running")
    mgr = _manager(st)
    if mgr is None:
        raise InvalidState(cid, f"container {cid} has no cgroup")
    return st, mgr


def processes(cid: str, root: str = DEFAULT_ROOT) -> list[int]:
    """Pids (as the host sees them) of every process in the container's cgroup.

    A stopped container is not an error (as runc): it has no processes left, unless its init
    died and left others behind in the cgroup (no pid namespace of its own)."""
    from .container import _manager

    st = StateDir(root, cid).load()
    mgr = _manager(st)
    if mgr is None or not mgr.exists():
        return []
    return sorted(mgr.pids())


def stats(cid: str, root: str = DEFAULT_ROOT) -> dict[str, Any]:
    """The container's cgroup counters in runc's `events --stats` data shape."""
    _, mgr = _live(cid, root)
    return stats_data(mgr.stats())


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def stats_data(s: cgroups.Stats) -> dict[str, Any]:
    return {
        "cpu": {
            "usage": _drop_none(
                {"total": s.cpu_usage_ns, "kernel": s.cpu_system_ns, "user": s.cpu_user_ns}
            ),
            "throttling": _drop_none(
                {
                    "throttledPeriods": s.cpu_throttled_periods,
                    "throttledTime": s.cpu_throttled_ns,
                }
            ),
        },
        "memory": _drop_none(
            {
                "usage": _drop_none(
                    {"usage": s.memory_usage, "max": s.memory_max_usage, "limit": s.memory_limit}
                ),
                "swap": _drop_none({"usage": s.swap_usage}),
                "cache": s.memory_cache,
            }
        ),
        "pids": _drop_none({"current": s.pids_current, "limit": s.pids_limit}),
    }


def events(
    cid: str,
    root: str = DEFAULT_ROOT,
    interval: float = 5.0,
    *,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[dict[str, Any]]:
    """Stats every ``interval`` seconds and an "oom" event for each new OOM kill, until the
    container stops (or ``stop()`` says so)."""
    from .container import _alive

    st, mgr = _live(cid, root)
    ooms = mgr.oom_killed()
    next_stats = time.monotonic()
    pidfd = os.pidfd_open(st.pid)
    try:
        while not stop():
            now = time.monotonic()
            if now >= next_stats:
                yield {"type": "stats", "id": cid, "data": stats_data(mgr.stats())}
                next_stats = now + interval
            count = mgr.oom_killed()
            if count > ooms:
                ooms = count
                yield {"type": "oom", "id": cid}
            ready, _, _ = select.select([pidfd], [], [], min(0.2, max(0.0, next_stats - now)))
            if ready or not _alive(st):
                return
    finally:
        os.close(pidfd)


_SUFFIXES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, what: str) -> int:
    """ "64m", "1G", "512k", "1024" or "-1" (unlimited), as runc's update flags take them."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    for suffix in ("kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib"):
        if t.endswith(suffix):
            t = t[: -len(suffix)] + suffix[0]
            break
    unit = t[-1:] if t[-1:] in _SUFFIXES and not t[-1:].isdigit() else ""
    number = t[: -len(unit)] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(what, f"invalid size {text!r}") from None
    if value < 0:
        raise ConfigError(what, f"invalid size {text!r}")
    return int(value * _SUFFIXES[unit])


def update(cid: str, resources: cfg.Resources, root: str = DEFAULT_ROOT) -> None:
    """Apply new resource limits to a running (or created, or paused) container."""
    sd = StateDir(root, cid)
    with sd.locked():
        _, mgr = _live(cid, root)
        mgr.apply(resources)


def resources_from_flags(flags: dict[str, str | None]) -> cfg.Resources:
    """The resources object runc's `update` builds from its flags (only those given)."""
    obj: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        obj.setdefault(section, {})[key] = value

    def number(name: str, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(name, f"invalid number {text!r}") from None

    for flag, (section, key) in {
        "memory": ("memory", "limit"),
        "memory_reservation": ("memory", "reservation"),
        "memory_swap": ("memory", "swap"),
    }.items():
        if flags.get(flag) is not None:
            put(section, key, parse_bytes(str(flags[flag]), "--" + flag.replace("_", "-")))
    for flag, (section, key) in {
        "cpu_shares": ("cpu", "shares"),
        "cpu_quota": ("cpu", "quota"),
        "cpu_period": ("cpu", "period"),
        "cpu_rt_runtime": ("cpu", "realtimeRuntime"),
        "cpu_rt_period": ("cpu", "realtimePeriod"),
        "pids_limit": ("pids", "limit"),
        "blkio_weight": ("blockIO", "weight"),
    }.items():
        if flags.get(flag) is not None:
            put(section, key, number("--" + flag.replace("_", "-"), str(flags[flag])))
    for flag, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if flags.get(flag) is not None:
            put("cpu", key, flags[flag])
    return cfg.parse_resources(obj)


def load_resources(path: str) -> cfg.Resources:
    """`update --resources FILE` ("-" for stdin): a LinuxResources JSON object."""
    try:
        if path == "-":
            import sys

            text = cfg.read_json_bytes(sys.stdin.buffer, "resources")
        else:
            with open(path, "rb") as f:
                text = cfg.read_json_bytes(f, "resources")
        obj = json.loads(text)
    except OSError as e:
        raise ConfigError("resources", f"read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError("resources", f"{path}: invalid JSON: {e}") from None
    return cfg.parse_resources(obj)


def features(version: str) -> dict[str, Any]:
    """The runtime-spec `features` document: what this build and host support."""
    from . import plan

    seccomp: dict[str, Any] = {"enabled": False}
    try:
        from . import seccomp as sc  # present when built with libseccomp

        describe = getattr(sc, "features", None)
        if callable(describe):
            seccomp = describe()
    except ImportError:
        pass
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ],
        "mountOptions": sorted({*cfg._MOUNT_FLAG_WORDS, *cfg.PROPAGATION_FLAGS, "tmpcopyup"}),
        "linux": {
            "namespaces": sorted(plan.NS_FLAGS),
            "capabilities": sorted(cfg.CAPABILITIES, key=lambda c: cfg.CAPABILITIES[c]),
            "cgroup": {
                "v1": True,
                "v2": True,
                "systemd": False,
                "systemdUser": False,
                "rdma": False,
            },
            "seccomp": seccomp,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "io.github.corral.version": version,
        },
    }
