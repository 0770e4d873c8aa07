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
    # page cache not used lately (reclaimed first): usage minus this is the working set
    memory_inactive_file: int | None = None
    cpu_usage_ns: int | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_ns: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    oom_kill: int | None = None

    @property
    def memory_working_set(self) -> int | None:
        """Usage less the inactive page cache, as cAdvisor and the kubelet count it."""
        if self.memory_usage is None:
            return None
        return max(self.memory_usage - (self.memory_inactive_file or 0), 0)
