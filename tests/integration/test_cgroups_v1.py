"""runtime.cgroups against the real v1 (legacy or hybrid) cgroupfs of this host.

Every cgroup is made below this test process's own cgroup in each hierarchy (a relative
cgroupsPath with a unique name) and removed by the fixture's finalizer, which first kills the
processes the test started, even when an assertion failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from corral_common import hostsys
from runtime.cgroups import (
    DEFAULT_DEVICE_RULES,
    CgroupManager,
    Layout,
    V1Manager,
    detect_layout,
    manager_for,
    parse_mountinfo,
    parse_proc_cgroup,
)
from runtime.config import (
    CPU,
    BlockIO,
    DeviceRule,
    HugepageLimit,
    Memory,
    Pids,
    Resources,
    ThrottleDevice,
)
from runtime.errors import CgroupError

MiB = 1 << 20
ROOT = "/sys/fs/cgroup"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        mounts = parse_mountinfo(hostsys.mountinfo())
        layout = detect_layout(ROOT)
    except OSError as exc:
        return f"cannot inspect cgroups: {exc}"
    if layout is Layout.UNIFIED:
        return "host has a unified cgroup v2 hierarchy, not v1"
    have = set().union(*(m.controllers for m in mounts if m.fstype == "cgroup"))
    missing = {"memory", "pids"} - have
    if missing:
        return f"v1 controllers not mounted: {', '.join(sorted(missing))}"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroup_v1,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]


def _self_cgroup() -> dict[str, str]:
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return parse_proc_cgroup(f.read())


class CgroupSandbox:
    """Managers and child processes made by one test; ``cleanup`` undoes all of it."""

    def __init__(self) -> None:
        self.managers: list[CgroupManager] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def manager(self) -> V1Manager:
        name = f"corral-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        mgr = manager_for(name, name)  # relative: below our own cgroup in every hierarchy
        assert isinstance(mgr, V1Manager)
        self.managers.append(mgr)
        return mgr

    def spawn(self, mgr: CgroupManager, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` already inside ``mgr`` (it joins between fork and exec), so what it
        allocates from exec on is charged to the cgroup."""
        proc = subprocess.Popen(argv, preexec_fn=lambda: mgr.add_pid(os.getpid()))
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        failures: list[str] = []
        for proc in self.procs:
            try:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired) as exc:
                failures.append(f"child {proc.pid}: {exc}")
        for mgr in self.managers:
            try:
                if "freezer" in mgr.paths() and mgr.exists() and mgr.is_frozen():
                    mgr.thaw()
                mgr.destroy()
            except CgroupError as exc:
                failures.append(str(exc))
            left = [d for d in mgr.paths().values() if os.path.isdir(d)]
            if left:
                failures.append(f"cgroups left behind: {left}")
        assert not failures, failures


@pytest.fixture
def sandbox() -> Iterator[CgroupSandbox]:
    box = CgroupSandbox()
    try:
        yield box
    finally:
        box.cleanup()


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name), encoding="ascii") as f:
        return f.read().strip()


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_paths_are_below_our_own_cgroup(sandbox: CgroupSandbox) -> None:
    mgr = sandbox.manager()
    own = _self_cgroup()
    mounts = parse_mountinfo(hostsys.mountinfo())
    for key, directory in mgr.paths().items():
        if key == "":
            mountpoint = os.path.join(ROOT, "unified")
        else:
            mountpoint = next(m.mountpoint for m in mounts if key in m.controllers)
        parent = os.path.normpath(mountpoint + own[key])
        assert os.path.dirname(directory) == parent, (key, directory)
    if detect_layout(ROOT) is Layout.HYBRID:
        assert "" in mgr.paths()


def test_lifecycle(sandbox: CgroupSandbox) -> None:
    mgr = sandbox.manager()
    mgr.create()
    assert mgr.exists()
    mgr.apply(
        Resources(
            memory=Memory(limit=32 * MiB),
            pids=Pids(10),
            cpu=CPU(shares=512, quota=50000, period=100000),
        )
    )
    paths = mgr.paths()
    assert _read(paths["memory"], "memory.limit_in_bytes") == str(32 * MiB)
    assert _read(paths["pids"], "pids.max") == "10"
    assert _read(paths["cpu"], "cpu.shares") == "512"
    assert _read(paths["cpu"], "cpu.cfs_quota_us") == "50000"
    assert _read(paths["cpu"], "cpu.cfs_period_us") == "100000"

    child = sandbox.spawn(mgr, ["sleep", "30"])
    assert _wait_for(lambda: child.pid in mgr.pids())
    with open(f"/proc/{child.pid}/cgroup", encoding="utf-8") as f:
        where = parse_proc_cgroup(f.read())
    for key, directory in paths.items():
        mountpoint = os.path.join(ROOT, "unified") if key == "" else None
        if mountpoint is not None:
            assert os.path.join(mountpoint, where[""].lstrip("/")) == directory
        else:
            assert directory.endswith(where[key]), (key, directory, where[key])

    mgr.freeze()
    assert _read(paths["freezer"], "freezer.state") == "FROZEN"
    assert mgr.is_frozen()
    mgr.thaw()
    assert _read(paths["freezer"], "freezer.state") == "THAWED"
    assert not mgr.is_frozen()

    stats = mgr.stats()
    assert stats.memory_usage is not None and stats.memory_usage > 0
    assert stats.memory_limit == 32 * MiB
    assert stats.pids_current == 1 and stats.pids_limit == 10
    assert stats.cpu_usage_ns is not None and stats.cpu_usage_ns > 0
    assert stats.oom_kill == 0

    mgr.kill_all(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert _wait_for(lambda: mgr.pids() == [])

    mgr.destroy()
    assert not mgr.exists()
    for directory in paths.values():  # every hierarchy, /sys/fs/cgroup/unified included
        assert not os.path.exists(directory), directory


class _Clock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_destroy_with_a_process_left_fails_naming_the_dir(
    sandbox: CgroupSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy cgroup is retried (with backoff) until DESTROY_TIMEOUT, then destroy fails
    naming the directory; on a clock that moves only when it sleeps, so no real time."""
    from runtime.cgroups import manager

    mgr = sandbox.manager()
    mgr.create()
    sandbox.spawn(mgr, ["sleep", "30"])
    clock = _Clock()
    monkeypatch.setattr(manager, "time", clock)
    with pytest.raises(CgroupError) as info:
        mgr.destroy()
    assert clock.now - 1000.0 == pytest.approx(manager.DESTROY_TIMEOUT)
    assert clock.sleeps > 1  # it did retry
    assert info.value.step.removeprefix("rmdir ") in mgr.paths().values()
    # The fixture kills the sleeper and then destroys the cgroups.


def _swap_active() -> bool:
    with open("/proc/swaps", encoding="ascii") as f:
        return len(f.read().splitlines()) > 1


def test_oom_kill(sandbox: CgroupSandbox) -> None:
    mgr = sandbox.manager()
    mgr.create()
    has_memsw = os.path.exists(os.path.join(mgr.paths()["memory"], "memory.memsw.limit_in_bytes"))
    if not has_memsw and _swap_active():
        pytest.skip("swap is on but memsw accounting is not: the child could swap and survive")
    # memory+swap equal to memory: no swap at all for this cgroup.
    swap = 16 * MiB if has_memsw else None
    mgr.apply(Resources(memory=Memory(limit=16 * MiB, swap=swap)))
    hog = "b = bytearray(64 << 20)\n[b.__setitem__(i, 1) for i in range(0, len(b), 4096)]"
    child = sandbox.spawn(mgr, [sys.executable, "-S", "-c", hog])
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert mgr.oom_killed() >= 1
    assert (mgr.stats().oom_kill or 0) >= 1


def test_memory_and_swap_limits_can_go_up_and_down(sandbox: CgroupSandbox) -> None:
    """The kernel wants limit <= memsw at every step: the write order must follow the change."""
    mgr = sandbox.manager()
    mgr.create()
    mem = mgr.paths()["memory"]
    if not os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")):
        pytest.skip("no memsw (swap accounting) on this kernel")
    for limit, swap in [(32, 64), (16, 16), (64, 128), (8, 8), (-1, -1)]:
        memory = Memory(limit=limit * MiB if limit > 0 else -1, swap=swap * MiB if swap > 0 else -1)
        mgr.apply(Resources(memory=memory))
        if limit > 0:
            assert _read(mem, "memory.limit_in_bytes") == str(limit * MiB)
            assert _read(mem, "memory.memsw.limit_in_bytes") == str(swap * MiB)
        else:
            assert mgr.stats().memory_limit is None


def test_devices_and_cpuset(sandbox: CgroupSandbox) -> None:
    mgr = sandbox.manager()
    mgr.create()
    paths = mgr.paths()
    null_read_only = DeviceRule(allow=True, type="c", major=1, minor=3, access="r")
    rules = (DeviceRule(allow=False), null_read_only, *DEFAULT_DEVICE_RULES)
    cpus = _read(paths["cpuset"], "cpuset.cpus")
    assert cpus  # copied from the parent on create
    first_cpu = cpus.split(",")[0].split("-")[0]
    mgr.apply(Resources(devices=rules, cpu=CPU(cpus=first_cpu)))
    listed = _read(paths["devices"], "devices.list").splitlines()
    assert "a *:* rwm" not in listed
    assert "c *:* m" in listed and "b *:* m" in listed
    assert "c 1:3 rwm" in listed and "c 136:* rwm" in listed and "c 10:200 rwm" in listed
    assert _read(paths["cpuset"], "cpuset.cpus") == first_cpu


def _a_block_device() -> tuple[int, int] | None:
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        return None
    for name in names:
        if name.startswith(("loop", "ram", "zram")):
            continue
        try:
            with open(f"/sys/block/{name}/dev", encoding="ascii") as f:
                major, minor = f.read().strip().split(":")
        except OSError:
            continue
        return int(major), int(minor)
    return None


def test_blkio_throttle(sandbox: CgroupSandbox) -> None:
    device = _a_block_device()
    if device is None:
        pytest.skip("no block device to throttle")
    mgr = sandbox.manager()
    mgr.create()
    major, minor = device
    mgr.apply(
        Resources(block_io=BlockIO(throttle_read_bps_device=(ThrottleDevice(major, minor, MiB),)))
    )
    listed = _read(mgr.paths()["blkio"], "blkio.throttle.read_bps_device")
    assert f"{major}:{minor} {MiB}" in listed.splitlines()


def _hugetlb_only_in_cgroup2() -> str | None:
    """Why the hybrid hugetlb test cannot run here, or None."""
    unified = os.path.join(ROOT, "unified")
    if detect_layout(ROOT) is not Layout.HYBRID:
        return "not a hybrid host"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = parse_mountinfo(f.read())
    if any("hugetlb" in m.controllers for m in mounts if m.fstype == "cgroup"):
        return "hugetlb is a v1 hierarchy here"
    if "hugetlb" not in _read(unified, "cgroup.controllers").split():
        return "the cgroup2 mount has no hugetlb controller"
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        return "no 2 MB huge pages"
    return None


def test_hybrid_hugetlb_goes_through_the_unified_hierarchy(sandbox: CgroupSandbox) -> None:
    """hugetlb only in the cgroup2 mount of a hybrid host: the limit is written there (v2
    knob), and the container's processes are in that cgroup."""
    why = _hugetlb_only_in_cgroup2()
    if why:
        pytest.skip(why)
    mgr = sandbox.manager()
    mgr.create()
    mgr.apply(Resources(hugepage_limits=(HugepageLimit("2MB", 4 * MiB),), pids=Pids(50)))
    leaf = mgr.paths()[""]
    assert _read(leaf, "hugetlb.2MB.max") == str(4 * MiB)
    assert _read(mgr.paths()["pids"], "pids.max") == "50"
    proc = sandbox.spawn(mgr, ["sleep", "60"])
    with open(f"/proc/{proc.pid}/cgroup", encoding="utf-8") as f:
        assert parse_proc_cgroup(f.read())[""] == "/" + os.path.relpath(leaf, f"{ROOT}/unified")
