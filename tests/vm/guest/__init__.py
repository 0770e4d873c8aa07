"""Tests that run inside the test VMs (tests/vm/test_cgroup_v2.py, tests/vm/test_arm64.py)."""

from __future__ import annotations

import os
from pathlib import Path

NEEDED_CONTROLLERS = {"cpu", "cpuset", "io", "memory", "pids"}


def why_not_unified_v2(root: str = "/sys/fs/cgroup") -> str | None:
    """Why this host cannot run the cgroup v2 guest tests (None: it can): they need root and a
    unified cgroup2 hierarchy with every controller they use."""
    from runtime.cgroups import Layout, detect_layout

    if os.geteuid() != 0:
        return "needs root"
    try:
        layout = detect_layout(root)
    except OSError as exc:
        return f"cannot inspect cgroups: {exc}"
    if layout is not Layout.UNIFIED:
        return (
            f"needs a unified cgroup v2 host, this one is {layout.value} "
            "(tests/vm/test_cgroup_v2.py runs these inside a VM)"
        )
    have = set(Path(root, "cgroup.controllers").read_text().split())
    if NEEDED_CONTROLLERS - have:
        return f"cgroup2 controllers missing: {', '.join(sorted(NEEDED_CONTROLLERS - have))}"
    return None
