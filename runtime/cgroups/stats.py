"""The counters ``CgroupManager.stats()`` reads (its own module: only `events` needs it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a cgroup's counters. None means the host does not provide the value;
    for the limits it also means "unlimited"."""

    memory_usage: int | None = None  # bytes
    memory_max_usage: int | None = None
    memory_limit: int | None = None
    swap_usage: int | None = None
    memory_cache: int | None = None  # page cache bytes
    cpu_usage_ns: int | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_ns: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    oom_kill: int | None = None
