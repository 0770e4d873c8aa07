"""The v2 driver's handling of cgroups that have processes in them (found in the test VM).

The kernel lets no cgroup with processes (other than the root) enable domain controllers for
its children, and enabling only the threaded ones turns it into a thread root, whose domain
children refuse every process with EOPNOTSUPP. Fake hierarchies as in test_cgroups.py: the
root has no cgroup.type file, every other cgroup has one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cgroups import Layout, manager_for
from runtime.config import Memory, Pids, Resources
from runtime.errors import CgroupError

HAVE = "cpuset cpu io memory pids"


def cgroup(path: Path, *, root: bool = False, procs: str = "", enabled: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.controllers").write_text(HAVE)
    (path / "cgroup.subtree_control").write_text(enabled)
    (path / "cgroup.procs").write_text(procs)
    if not root:
        (path / "cgroup.type").write_text("domain\n")
    return path


def test_a_cgroup_with_processes_is_not_asked_to_enable_controllers(tmp_path: Path) -> None:
    root = cgroup(tmp_path, root=True, procs="1\n")
    busy = cgroup(root / "busy", procs="42\n")
    mgr = manager_for("/busy/c1", "c1", root=str(root), layout=Layout.UNIFIED)
    mgr.create()
    # The root (mixable: it may have processes) enables everything, the busy one nothing.
    assert (root / "cgroup.subtree_control").read_text() == " ".join("+" + c for c in HAVE.split())
    assert (busy / "cgroup.subtree_control").read_text() == ""
    assert (busy / "c1").is_dir()


def test_an_empty_parent_enables_controllers(tmp_path: Path) -> None:
    root = cgroup(tmp_path, root=True)
    slice_ = cgroup(root / "corral.slice")
    cgroup(slice_ / "tests.scope", procs="42\n")
    own = {"": "/corral.slice/tests.scope"}
    mgr = manager_for("c1", "c1", root=str(root), layout=Layout.UNIFIED, self_cgroup=own)
    assert mgr.paths() == {"": str(slice_ / "c1")}  # next to our own cgroup
    mgr.create()
    assert (slice_ / "cgroup.subtree_control").read_text().split() == [
        "+" + c for c in HAVE.split()
    ]


def test_a_missing_controller_under_a_busy_parent_says_why(tmp_path: Path) -> None:
    root = cgroup(tmp_path, root=True)
    busy = cgroup(root / "busy", procs="42\n")
    mgr = manager_for("/busy/c1", "c1", root=str(root), layout=Layout.UNIFIED)
    mgr.create()
    leaf = cgroup(busy / "c1")
    (leaf / "cgroup.controllers").write_text("")
    mgr.apply(Resources())  # asking nothing is fine
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(memory=Memory(limit=1 << 20), pids=Pids(5)))
    assert info.value.detail.startswith("memory controller not available: ")
    assert f"{busy} has processes in it" in info.value.detail
