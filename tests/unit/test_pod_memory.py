"""``runtime.pod.memory``: the cgroup mounts, layout and own cgroup it needs for every look
of the eviction manager (every 2 s) are read once per LAYOUT_TTL, not at each look (each read
parses all of mountinfo, which grows with the node's pods)."""

from __future__ import annotations

import pytest

from runtime.pod import memory
from runtime.pod.prepare import PodOptions


def test_the_cgroup_view_is_read_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import cgroups

    reads = []
    real = cgroups.read_mounts

    def read_mounts():  # type: ignore[no-untyped-def]
        reads.append(1)
        return real()

    monkeypatch.setattr(cgroups, "read_mounts", read_mounts)
    monkeypatch.setattr(memory, "_layout", [])
    opts = PodOptions(cgroup_parent="corral-unit-nothing-here")
    first = memory.memory_use(opts, [])
    assert first.capacity > 0 and first.pods == {}
    memory.memory_use(opts, [])
    assert len(reads) == 1
    mounts, _, _ = memory._cgroup_view()
    assert all(m.fstype in ("cgroup", "cgroup2") for m in mounts)
    memory._layout[0] -= memory.LAYOUT_TTL  # as if LAYOUT_TTL seconds had passed
    memory.memory_use(opts, [])
    assert len(reads) == 2
