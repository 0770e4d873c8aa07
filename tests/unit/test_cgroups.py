"""Unit tests for runtime.cgroups: fake hierarchies in tmp_path, no root, no real cgroupfs.

A fake cgroupfs is plain directories whose knob files are pre-created; since a plain mkdir does
not make knob files, ``kernel()`` plays the kernel's part for a new cgroup directory.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from runtime.cgroups import (
    DEFAULT_DEVICE_RULES,
    SYSTEMD_REFUSED,
    CgroupMount,
    Layout,
    Stats,
    V1Manager,
    V2Manager,
    detect_layout,
    manager_for,
    manager_from_paths,
    parse_mountinfo,
    parse_proc_cgroup,
    statfs_type,
    v1_hierarchies,
)
from runtime.cgroups import controllers as ctl
from runtime.cgroups import layout as layout_mod
from runtime.cgroups import manager as manager_mod
from runtime.cgroups.prime import own_procs_file
from runtime.config import (
    CPU,
    BlockIO,
    DeviceRule,
    HugepageLimit,
    InterfacePriority,
    Memory,
    Network,
    Pids,
    Resources,
    ThrottleDevice,
    WeightDevice,
)
from runtime.errors import CgroupError

MiB = 1 << 20

# What this host's /proc/self/cgroup looks like: memory sits elsewhere than the rest.
SELF_CGROUP = {
    "name=systemd": "/",
    "pids": "/",
    "blkio": "/",
    "freezer": "/",
    "devices": "/",
    "memory": "/process_api/1cb96bb3",
    "cpuset": "/",
    "cpu": "/",
    "cpuacct": "/",
    "": "/",
}

# Knob files of a v1 cgroup directory, per hierarchy directory name.
V1_FILES: dict[str, dict[str, str]] = {
    "cpu,cpuacct": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 4500\n",
        "cpuacct.usage": "123456789",
        "cpuacct.usage_user": "100000000",
        "cpuacct.usage_sys": "23456789",
        "cpuacct.stat": "user 10\nsystem 2\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.usage_in_bytes": "4096000",
        "memory.max_usage_in_bytes": "8192000",
        "memory.memsw.usage_in_bytes": "4096000",
        "memory.kmem.limit_in_bytes": "",
        "memory.kmem.tcp.limit_in_bytes": "",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.use_hierarchy": "1",
        "memory.stat": "cache 1000\nrss 2000\ninactive_file 500\ntotal_cache 3000\n"
        "total_rss 4000\ntotal_inactive_file 1500\n",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {
        "blkio.weight": "",
        "blkio.leaf_weight": "",
        "blkio.weight_device": "",
        "blkio.leaf_weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
    },
    "pids": {"pids.max": "max", "pids.current": "3"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": ""},
    "systemd": {},
    "unified": {},
}

V2_FILES: dict[str, str] = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids",
    "cgroup.subtree_control": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 1\nfrozen 0\n",
    "cgroup.kill": "",
    "memory.max": "max",
    "memory.low": "0",
    "memory.swap.max": "max",
    "memory.current": "5000000",
    "memory.peak": "6000000",
    "memory.swap.current": "100",
    "memory.stat": "anon 100\nfile 4000\ninactive_file 3000\n",
    "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    "cpu.weight": "100",
    "cpu.max": "max 100000",
    "cpu.max.burst": "0",
    "cpu.idle": "0",
    "cpu.stat": "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n"
    "nr_periods 9\nnr_throttled 2\nthrottled_usec 70\n",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "io.weight": "default 100",
    "io.max": "",
    "pids.max": "max",
    "pids.current": "2",
    "hugetlb.2MB.max": "max",
    "memory.high": "max",
}


def kernel(directory: str | Path, files: dict[str, str]) -> None:
    """Play the kernel: make ``directory`` a cgroup with these knob files."""
    os.makedirs(directory, exist_ok=True)
    for name, content in files.items():
        Path(directory, name).write_text(content)
    Path(directory, "cgroup.procs").touch()


def unkernel(directory: str | Path) -> None:
    """Play the kernel on rmdir: knob files vanish with the directory."""
    for root, _dirs, files in os.walk(directory):
        for name in files:
            os.unlink(os.path.join(root, name))


def read(path: str | Path) -> str:
    return Path(path).read_text()


def fake_v1_root(
    tmp_path: Path, *, hybrid: bool = True, without: tuple[str, ...] = ("hugetlb",)
) -> Path:
    """A fake v1 root: cpu,cpuacct co-mounted (with symlinks), systemd, unified if hybrid."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, files in V1_FILES.items():
        if name in without or (name == "unified" and not hybrid):
            continue
        top = dict(files)
        if name == "cpuset":
            top = {"cpuset.cpus": "0-3", "cpuset.mems": "0"}
        kernel(root / name, top)
    os.symlink("cpu,cpuacct", root / "cpu")
    os.symlink("cpu,cpuacct", root / "cpuacct")
    return root


def v1_manager(root: Path, path: str | None = "c1") -> V1Manager:
    mgr = manager_for(path, "cid", root=str(root), layout=Layout.HYBRID, self_cgroup=SELF_CGROUP)
    assert isinstance(mgr, V1Manager)
    return mgr


def created_v1(root: Path) -> V1Manager:
    """A created manager whose directories have their knob files, as the kernel would make."""
    mgr = v1_manager(root)
    for key, directory in mgr.paths().items():
        hier = "unified" if key == "" else Path(directory).relative_to(root).parts[0]
        kernel(directory, V1_FILES[hier])
    mgr.create()
    return mgr


# ============================================================================ layout


def _fake_fs(types: dict[str, int]):
    def fs_type(path: str) -> int:
        if path not in types:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return types[path]

    return fs_type


def test_detect_layout_unified(tmp_path: Path) -> None:
    fs = _fake_fs({str(tmp_path): layout_mod.CGROUP2_SUPER_MAGIC})
    assert detect_layout(str(tmp_path), fs) is Layout.UNIFIED


def test_detect_layout_hybrid(tmp_path: Path) -> None:
    fs = _fake_fs(
        {
            str(tmp_path): layout_mod.TMPFS_MAGIC,
            str(tmp_path / "unified"): layout_mod.CGROUP2_SUPER_MAGIC,
        }
    )
    assert detect_layout(str(tmp_path), fs) is Layout.HYBRID


@pytest.mark.parametrize("unified_magic", [None, layout_mod.TMPFS_MAGIC])
def test_detect_layout_legacy(tmp_path: Path, unified_magic: int | None) -> None:
    types = {str(tmp_path): layout_mod.TMPFS_MAGIC}
    if unified_magic is not None:  # a plain directory named unified, not a cgroup2 mount
        types[str(tmp_path / "unified")] = unified_magic
    assert detect_layout(str(tmp_path), _fake_fs(types)) is Layout.LEGACY


def test_statfs_type_reads_real_magic() -> None:
    assert statfs_type("/proc") == 0x9FA0  # PROC_SUPER_MAGIC
    with pytest.raises(FileNotFoundError):
        statfs_type("/nonexistent/corral")


def test_fs_magic_finds_the_mount_by_device_number(tmp_path: Path) -> None:
    st = os.stat(tmp_path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    line = f"40 31 {dev} / /somewhere rw,relatime shared:9 - {{}} cgroup2 rw\n"
    other = "30 1 0:999 / /elsewhere rw - tmpfs tmpfs rw\n"
    assert layout_mod.fs_magic(str(tmp_path), other + line.format("cgroup2")) == (
        layout_mod.CGROUP2_SUPER_MAGIC
    )
    # A type detect_layout does not ask about, or no such device listed: statfs decides.
    real = statfs_type(str(tmp_path))
    assert layout_mod.fs_magic(str(tmp_path), line.format("ext4")) == real
    assert layout_mod.fs_magic(str(tmp_path), other) == real
    with pytest.raises(FileNotFoundError):
        layout_mod.fs_magic("/nonexistent/corral", "")


def test_detect_layout_takes_mounts_read_already(tmp_path: Path) -> None:
    # create reads mountinfo once and answers the layout and the hierarchies from it.
    from corral_common import hostsys

    st = os.stat(tmp_path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for fstype, layout in (("cgroup2", Layout.UNIFIED), ("ext4", Layout.LEGACY)):
        line = f"40 31 {dev} / /somewhere rw,relatime shared:9 - {fstype} x rw\n"
        mounts = hostsys.parse_mountinfo(line)
        assert detect_layout(str(tmp_path), mountinfo=mounts) is layout
    # An injected fs_type still decides alone.
    cg2 = layout_mod.CGROUP2_SUPER_MAGIC
    assert detect_layout(str(tmp_path), lambda p: cg2, mounts) is Layout.UNIFIED


def test_parse_proc_cgroup_hybrid_host() -> None:
    text = (
        "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
        "4:memory:/process_api/1cb96bb3\n3:cpuset:/\n2:cpu,cpuacct:/user.slice\n"
        "1:net_cls,net_prio:/\n0::/init.scope\n"
    )
    got = parse_proc_cgroup(text)
    assert got["memory"] == "/process_api/1cb96bb3"
    assert got["cpu"] == got["cpuacct"] == "/user.slice"
    assert got["net_cls"] == got["net_prio"] == "/"
    assert got["name=systemd"] == "/"
    assert got[""] == "/init.scope"
    assert len(got) == 12


def test_parse_proc_cgroup_unified() -> None:
    assert parse_proc_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") == {
        "": "/user.slice/user-0.slice/session-1.scope"
    }


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 22 0:32 /docker/abc /mnt/my\040cg rw,relatime - cgroup cgroup rw,memory
"""  # noqa: E501


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mountpoint for m in mounts] == [
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/cpuset",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
        "/mnt/my cg",
    ]
    assert mounts[0].controllers == {"cpu", "cpuacct"}
    assert mounts[1].controllers == {"cpuset"}
    assert mounts[3].controllers == {"name=systemd"}
    assert mounts[4] == CgroupMount("cgroup2", "/sys/fs/cgroup/unified", "/", frozenset())
    assert mounts[5].root == "/docker/abc"


def test_v1_hierarchies_from_mountinfo() -> None:
    found = v1_hierarchies("/sys/fs/cgroup", MOUNTINFO)
    # Only mounts under the root; the second memory mount elsewhere is ignored.
    assert [sorted(m.controllers) for m in found] == [
        ["cpu", "cpuacct"],
        ["cpuset"],
        ["memory"],
        ["name=systemd"],
    ]


def test_v1_hierarchies_scan_fallback(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    found = {m.mountpoint: m.controllers for m in v1_hierarchies(str(root), "")}
    assert found[str(root / "cpu,cpuacct")] == {"cpu", "cpuacct"}
    assert found[str(root / "systemd")] == {"name=systemd"}
    assert str(root / "cpu") not in found  # symlink to the co-mount
    assert str(root / "unified") not in found
    assert len(found) == 8


# ============================================================================ paths


def test_relative_path_goes_under_own_cgroup_per_controller(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    paths = v1_manager(root, "pods/c1").paths()
    assert paths["memory"] == f"{root}/memory/process_api/1cb96bb3/pods/c1"
    assert paths["cpu"] == paths["cpuacct"] == f"{root}/cpu,cpuacct/pods/c1"
    assert paths["pids"] == f"{root}/pids/pods/c1"
    assert paths["name=systemd"] == f"{root}/systemd/pods/c1"
    assert paths[""] == f"{root}/unified/pods/c1"
    assert "hugetlb" not in paths
    assert set(paths) == {
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
        "name=systemd", "",
    }  # fmt: skip


def test_absolute_path_is_used_exactly(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    paths = v1_manager(root, "/libpod_parent/libpod-abc").paths()
    assert paths["memory"] == f"{root}/memory/libpod_parent/libpod-abc"
    assert paths[""] == f"{root}/unified/libpod_parent/libpod-abc"


def test_absent_path_uses_container_id(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    mgr = manager_for(None, "ctr-7", root=str(root), layout=Layout.HYBRID, self_cgroup=SELF_CGROUP)
    assert mgr.paths()["memory"] == f"{root}/memory/process_api/1cb96bb3/ctr-7"
    assert mgr.paths()["devices"] == f"{root}/devices/ctr-7"


def test_legacy_has_no_unified_dir(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, hybrid=False)
    mgr = manager_for("c1", "cid", root=str(root), layout=Layout.LEGACY, self_cgroup=SELF_CGROUP)
    assert "" not in mgr.paths()


def test_unified_paths(tmp_path: Path) -> None:
    own = {"": "/user.slice/session-1.scope"}
    rel = manager_for("c1", "cid", root=str(tmp_path), layout=Layout.UNIFIED, self_cgroup=own)
    assert isinstance(rel, V2Manager)
    # Next to our own cgroup (below its parent), as runc does: ours has a process in it.
    assert rel.paths() == {"": f"{tmp_path}/user.slice/c1"}
    top = manager_for("c1", "cid", root=str(tmp_path), layout=Layout.UNIFIED, self_cgroup={"": "/"})
    assert top.paths() == {"": f"{tmp_path}/c1"}
    absolute = manager_for("/machine/c1", "cid", root=str(tmp_path), layout=Layout.UNIFIED)
    assert absolute.paths() == {"": f"{tmp_path}/machine/c1"}


def test_mount_showing_a_subtree(tmp_path: Path) -> None:
    """Inside a container the mount's root is the container's cgroup: strip it from our own."""
    mountinfo = f"50 22 0:32 /docker/abc {tmp_path}/memory rw - cgroup cgroup rw,memory\n"
    mgr = manager_for(
        "c1",
        "cid",
        root=str(tmp_path),
        layout=Layout.LEGACY,
        self_cgroup={"memory": "/docker/abc/sub"},
        mountinfo=mountinfo,
    )
    assert mgr.paths() == {"memory": f"{tmp_path}/memory/sub/c1"}


@pytest.mark.parametrize("path", ["system.slice:corral:abc", "machine.slice:libpod:ID"])
def test_systemd_path_rejected(tmp_path: Path, path: str) -> None:
    with pytest.raises(CgroupError) as info:
        manager_for(path, "cid", root=str(tmp_path), layout=Layout.LEGACY, self_cgroup={})
    assert info.value.step == "cgroupsPath"
    assert info.value.detail == SYSTEMD_REFUSED
    assert info.value.detail == (
        "systemd cgroup driver is not supported (no systemd on this host); use a cgroupfs path"
    )


@pytest.mark.parametrize("path", ["../escape", "/a/../../b", "/"])
def test_bad_paths_rejected(tmp_path: Path, path: str) -> None:
    with pytest.raises(CgroupError) as info:
        manager_for(path, "cid", root=str(tmp_path), layout=Layout.LEGACY, self_cgroup={})
    assert info.value.step == "cgroupsPath"


def test_manager_from_paths_round_trip(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    v1 = v1_manager(root, "c1")
    again = manager_from_paths(v1.paths(), root=str(root))
    assert isinstance(again, V1Manager)
    assert again.paths() == v1.paths()
    v2 = manager_for("c1", "cid", root=str(tmp_path), layout=Layout.UNIFIED, self_cgroup={"": "/"})
    again2 = manager_from_paths(v2.paths(), root=str(tmp_path))
    assert isinstance(again2, V2Manager)
    assert again2.paths() == v2.paths()
    with pytest.raises(CgroupError):
        manager_from_paths(v1.paths(), root=str(tmp_path), layout=Layout.UNIFIED)


# ============================================================================ v1 controllers


def test_memory_v1_raise_writes_memsw_first() -> None:
    mem = Memory(limit=64 * MiB, swap=128 * MiB)
    assert ctl.memory_v1(mem, current_limit=32 * MiB, has_memsw=True) == [
        ("memory.memsw.limit_in_bytes", str(128 * MiB)),
        ("memory.limit_in_bytes", str(64 * MiB)),
    ]


def test_memory_v1_lower_writes_memory_first() -> None:
    mem = Memory(limit=16 * MiB, swap=32 * MiB)
    assert ctl.memory_v1(mem, current_limit=64 * MiB, has_memsw=True) == [
        ("memory.limit_in_bytes", str(16 * MiB)),
        ("memory.memsw.limit_in_bytes", str(32 * MiB)),
    ]


def test_memory_v1_unlimited() -> None:
    # limit -1 with swap unset: swap becomes unlimited too, written first.
    assert ctl.memory_v1(Memory(limit=-1), current_limit=MiB, has_memsw=True) == [
        ("memory.memsw.limit_in_bytes", "-1"),
        ("memory.limit_in_bytes", "-1"),
    ]
    assert ctl.memory_v1(Memory(limit=-1), has_memsw=False) == [("memory.limit_in_bytes", "-1")]


def test_memory_v1_without_memsw() -> None:
    with pytest.raises(CgroupError) as info:
        ctl.memory_v1(Memory(limit=MiB, swap=2 * MiB), has_memsw=False)
    assert "memsw" in str(info.value)
    # Unlimited swap is what we have anyway.
    assert ctl.memory_v1(Memory(limit=MiB, swap=-1), has_memsw=False) == [
        ("memory.limit_in_bytes", str(MiB))
    ]


def test_memory_v1_other_knobs() -> None:
    mem = Memory(
        reservation=MiB,
        kernel=2 * MiB,
        kernel_tcp=3 * MiB,
        swappiness=10,
        disable_oom_killer=True,
        use_hierarchy=True,
    )
    assert ctl.memory_v1(mem) == [
        ("memory.soft_limit_in_bytes", str(MiB)),
        ("memory.kmem.limit_in_bytes", str(2 * MiB)),
        ("memory.kmem.tcp.limit_in_bytes", str(3 * MiB)),
        ("memory.swappiness", "10"),
        ("memory.oom_control", "1"),
        ("memory.use_hierarchy", "1"),
    ]
    with pytest.raises(CgroupError):
        ctl.memory_v1(Memory(swappiness=101))
    assert ctl.memory_v1(None) == [] and ctl.memory_v1(Memory()) == []


def test_cpu_v1_period_before_quota() -> None:
    cpu = CPU(
        shares=512,
        quota=50000,
        period=100000,
        burst=1000,
        realtime_runtime=950,
        realtime_period=1000,
        idle=0,
    )
    assert ctl.cpu_v1(cpu) == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_burst_us", "1000"),
        ("cpu.cfs_quota_us", "50000"),
        ("cpu.rt_period_us", "1000"),
        ("cpu.rt_runtime_us", "950"),
        ("cpu.idle", "0"),
    ]
    assert ctl.cpu_v1(CPU(quota=-1)) == [("cpu.cfs_quota_us", "-1")]


def test_cpuset() -> None:
    assert ctl.cpuset(CPU(cpus="0-1", mems="0")) == [("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]
    assert ctl.cpuset(CPU(shares=2)) == []


@pytest.mark.parametrize(("limit", "value"), [(10, "10"), (-1, "max"), (0, "max")])
def test_pids(limit: int, value: str) -> None:
    assert ctl.pids(Pids(limit)) == [("pids.max", value)]


def test_devices_v1_order_and_format() -> None:
    rules = (
        DeviceRule(allow=False, access="rwm"),
        DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm"),
        DeviceRule(allow=True, type="c", major=136, minor=None, access="rwm"),
        DeviceRule(allow=False, type="b", major=8, minor=0, access="w"),
        DeviceRule(allow=True, type="c", major=None, minor=None, access="m"),
    )
    assert ctl.devices_v1(rules) == [
        ("devices.deny", "a"),
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "b 8:0 w"),
        ("devices.allow", "c *:* m"),
    ]
    assert ctl.devices_v1(()) == []
    with pytest.raises(CgroupError):
        ctl.device_rule(DeviceRule(allow=True, type="x"))
    with pytest.raises(CgroupError):
        ctl.device_rule(DeviceRule(allow=True, type="c", access="rwx"))


def test_default_device_rules() -> None:
    assert [ctl.device_rule(r) for r in DEFAULT_DEVICE_RULES] == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
        "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",
    ]  # fmt: skip
    assert all(r.allow for r in DEFAULT_DEVICE_RULES)


def test_blkio_v1() -> None:
    bio = BlockIO(
        weight=500,
        leaf_weight=300,
        weight_device=(WeightDevice(8, 0, weight=200, leaf_weight=100),),
        throttle_read_bps_device=(ThrottleDevice(8, 0, 1048576),),
        throttle_write_iops_device=(ThrottleDevice(8, 16, 300),),
    )
    assert ctl.blkio_v1(bio) == [
        ("blkio.weight", "500"),
        ("blkio.leaf_weight", "300"),
        ("blkio.weight_device", "8:0 200"),
        ("blkio.leaf_weight_device", "8:0 100"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_iops_device", "8:16 300"),
    ]
    assert ctl.blkio_v1(BlockIO(weight=500), bfq=True) == [("blkio.bfq.weight", "500")]


def test_blkio_v1_leaf_weight_without_cfq() -> None:
    """BFQ-only kernels have no leaf weights: refused naming the field and the file."""
    assert ctl.blkio_v1(BlockIO(weight=500), bfq=True, leaf=False) == [("blkio.bfq.weight", "500")]
    with pytest.raises(CgroupError) as info:
        ctl.blkio_v1(BlockIO(weight=500, leaf_weight=300), bfq=True, leaf=False)
    assert info.value.step == "apply linux.resources.blockIO.leafWeight"
    assert info.value.detail.startswith("blkio.leaf_weight does not exist on this kernel")
    with pytest.raises(CgroupError) as info:
        ctl.blkio_v1(BlockIO(weight_device=(WeightDevice(8, 0, leaf_weight=100),)), leaf=False)
    assert info.value.step == "apply linux.resources.blockIO.weightDevice[0].leafWeight"
    assert "blkio.leaf_weight_device" in info.value.detail


def test_blkio_v1_weight_without_cfq_or_bfq() -> None:
    """A kernel with neither scheduler's weight file: a weight is refused naming the field
    and the files; throttles still apply."""
    with pytest.raises(CgroupError) as info:
        ctl.blkio_v1(BlockIO(weight=500), leaf=False, weights=False)
    assert info.value.step == "apply linux.resources.blockIO.weight"
    assert info.value.detail.startswith("blkio.weight does not exist on this kernel")
    with pytest.raises(CgroupError) as info:
        ctl.blkio_v1(BlockIO(weight_device=(WeightDevice(8, 0, weight=100),)), weights=False)
    assert info.value.step == "apply linux.resources.blockIO.weightDevice[0].weight"
    throttle = BlockIO(throttle_read_bps_device=(ThrottleDevice(8, 0, 1024),))
    assert ctl.blkio_v1(throttle, weights=False) == [("blkio.throttle.read_bps_device", "8:0 1024")]


def test_v1_leaf_weight_refused_before_any_write(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    blkio = mgr.paths()["blkio"]
    os.unlink(f"{blkio}/blkio.leaf_weight")  # a BFQ-only kernel
    with pytest.raises(CgroupError, match="leafWeight"):
        mgr.apply(Resources(pids=Pids(9), block_io=BlockIO(leaf_weight=300)))
    assert read(f"{mgr.paths()['pids']}/pids.max") == "max"


def test_hugetlb() -> None:
    limits = (HugepageLimit("2MB", 4 * MiB), HugepageLimit("1GB", -1))
    assert ctl.hugetlb_v1(limits[:1]) == [("hugetlb.2MB.limit_in_bytes", str(4 * MiB))]
    assert ctl.hugetlb_v2(limits) == [("hugetlb.2MB.max", str(4 * MiB)), ("hugetlb.1GB.max", "max")]
    with pytest.raises(CgroupError):
        ctl.hugetlb_v1((HugepageLimit("../x", 1),))


# ============================================================================ v2 controllers


@pytest.mark.parametrize(
    ("shares", "weight"), [(2, 1), (1024, 39), (512, 20), (262144, 10000), (1, 1), (0, 0)]
)
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert ctl.shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (500, 4950), (1000, 10000), (0, 0)])
def test_blkio_weight_to_io_weight(blkio: int, io: int) -> None:
    assert ctl.blkio_weight_to_io_weight(blkio) == io


def test_memory_v2_swap_math() -> None:
    assert ctl.memory_v2(Memory(limit=32 * MiB, swap=64 * MiB, reservation=16 * MiB)) == [
        ("memory.swap.max", str(32 * MiB)),
        ("memory.max", str(32 * MiB)),
        ("memory.low", str(16 * MiB)),
    ]
    assert ctl.memory_v2(Memory(limit=32 * MiB, swap=-1)) == [
        ("memory.swap.max", "max"),
        ("memory.max", str(32 * MiB)),
    ]
    assert ctl.memory_v2(Memory(limit=32 * MiB, swap=32 * MiB)) == [
        ("memory.swap.max", "0"),
        ("memory.max", str(32 * MiB)),
    ]
    assert ctl.memory_v2(Memory(limit=-1)) == [("memory.swap.max", "max"), ("memory.max", "max")]
    assert ctl.memory_v2(Memory(limit=32 * MiB)) == [("memory.max", str(32 * MiB))]
    # Ignored on v2: kernel memory, swappiness, oom killer switch.
    assert ctl.memory_v2(Memory(kernel=1, swappiness=0, disable_oom_killer=True)) == []


def test_memory_v2_swap_errors() -> None:
    with pytest.raises(CgroupError, match="without memory limit"):
        ctl.memory_v2(Memory(swap=64 * MiB))
    with pytest.raises(CgroupError, match=">= memory limit"):
        ctl.memory_v2(Memory(limit=64 * MiB, swap=32 * MiB))
    with pytest.raises(CgroupError, match="swap accounting"):
        ctl.memory_v2(Memory(limit=32 * MiB, swap=64 * MiB), has_swap=False)
    # Without swap accounting "max" and "0" are simply skipped.
    assert ctl.memory_v2(Memory(limit=MiB, swap=-1), has_swap=False) == [("memory.max", str(MiB))]
    assert ctl.memory_v2(Memory(limit=MiB, swap=MiB), has_swap=False) == [("memory.max", str(MiB))]


@pytest.mark.parametrize(
    ("cpu", "value"),
    [
        (CPU(quota=50000, period=100000), "50000 100000"),
        (CPU(period=100000), "max 100000"),
        (CPU(quota=-1, period=200000), "max 200000"),
        (CPU(quota=50000), "50000"),
        (CPU(quota=-1), "max"),
    ],
)
def test_cpu_v2_max_forms(cpu: CPU, value: str) -> None:
    assert ctl.cpu_v2(cpu) == [("cpu.max", value)]


def test_cpu_v2_weight_idle_burst() -> None:
    assert ctl.cpu_v2(CPU(shares=1024, burst=500, quota=1000, period=10000)) == [
        ("cpu.weight", "39"),
        ("cpu.max", "1000 10000"),
        ("cpu.max.burst", "500"),
    ]
    assert ctl.cpu_v2(CPU(shares=1024, idle=1)) == [("cpu.idle", "1")]
    with pytest.raises(CgroupError, match="realtime"):
        ctl.cpu_v2(CPU(realtime_runtime=100))


def test_io_v2() -> None:
    bio = BlockIO(
        weight=500,
        weight_device=(WeightDevice(8, 0, weight=1000),),
        throttle_read_bps_device=(ThrottleDevice(8, 0, 100),),
        throttle_write_bps_device=(ThrottleDevice(8, 0, 200),),
        throttle_read_iops_device=(ThrottleDevice(8, 0, 10), ThrottleDevice(253, 1, 5)),
        throttle_write_iops_device=(ThrottleDevice(8, 0, 20),),
    )
    assert ctl.io_v2(bio) == [
        ("io.weight", "4950"),
        ("io.weight", "8:0 10000"),
        ("io.max", "8:0 rbps=100 wbps=200 riops=10 wiops=20"),
        ("io.max", "253:1 riops=5"),
    ]
    assert ctl.io_v2(BlockIO(weight=500), bfq=True) == [("io.bfq.weight", "500")]


def test_unified_v2_names() -> None:
    assert ctl.unified_v2({"memory.high": "1000", "pids.max": "5"}) == [
        ("memory.high", "1000"),
        ("pids.max", "5"),
    ]
    for bad in ("../memory.max", "a/b", ""):
        with pytest.raises(CgroupError):
            ctl.unified_v2({bad: "1"})


# =========================================================================== v1 driver on a fake fs


def test_v1_create_makes_dirs(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, without=("hugetlb", "cpuset"))
    mgr = v1_manager(root, "pods/c1")
    assert not mgr.exists()
    mgr.create()
    for directory in set(mgr.paths().values()):
        assert os.path.isdir(directory)
    assert mgr.exists()
    mgr.create()  # idempotent


def test_v1_create_copies_cpuset_from_parent(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    mgr = v1_manager(root, "pods/c1")
    # A new v1 cpuset cgroup starts with empty cpus and mems (the fake kernel makes them).
    cpuset = root / "cpuset"
    kernel(cpuset / "pods", {"cpuset.cpus": "", "cpuset.mems": ""})
    kernel(cpuset / "pods/c1", {"cpuset.cpus": "", "cpuset.mems": ""})
    mgr.create()
    assert read(cpuset / "pods/cpuset.cpus") == "0-3"
    assert read(cpuset / "pods/c1/cpuset.cpus") == "0-3"
    assert read(cpuset / "pods/c1/cpuset.mems") == "0"


def test_v1_apply_writes_files(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    mgr = created_v1(root)
    paths = mgr.paths()
    mgr.apply(
        Resources(
            memory=Memory(limit=32 * MiB, swap=64 * MiB, swappiness=0),
            cpu=CPU(shares=512, quota=50000, period=100000, cpus="1", mems="0"),
            pids=Pids(10),
            block_io=BlockIO(weight=300),
            devices=(DeviceRule(allow=False), *DEFAULT_DEVICE_RULES),
        )
    )
    mem = paths["memory"]
    assert read(f"{mem}/memory.limit_in_bytes") == str(32 * MiB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(64 * MiB)
    assert read(f"{mem}/memory.swappiness") == "0"
    cpu = paths["cpu"]
    assert read(f"{cpu}/cpu.shares") == "512"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{paths['cpuset']}/cpuset.cpus") == "1"
    assert read(f"{paths['pids']}/pids.max") == "10"
    assert read(f"{paths['blkio']}/blkio.weight") == "300"
    assert read(f"{paths['devices']}/devices.allow") == "c 10:200 rwm"  # the last rule
    assert read(f"{paths['devices']}/devices.deny") == "a *:* rwm"


def test_v1_missing_controller(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)  # no hugetlb hierarchy
    mgr = created_v1(root)
    mgr.apply(Resources(pids=Pids(5)))  # not asked: fine
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(pids=Pids(7), hugepage_limits=(HugepageLimit("2MB", MiB),)))
    assert info.value.detail == "hugetlb controller not available"
    assert read(f"{mgr.paths()['pids']}/pids.max") == "5"  # nothing written before the check


def test_network_controllers() -> None:
    net = Network(class_id=0x100001, priorities=(InterfacePriority("eth0", 5),))
    assert ctl.net_cls(net) == [("net_cls.classid", "1048577")]
    assert ctl.net_prio(net) == [("net_prio.ifpriomap", "eth0 5")]
    assert ctl.net_cls(Network(class_id=0)) == []  # 0 is unset
    assert ctl.net_cls(None) == ctl.net_prio(None) == []


def test_v1_network_without_net_cls_is_refused(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))  # no net_cls or net_prio hierarchy
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(pids=Pids(7), network=Network(class_id=1)))
    assert info.value.step == "apply linux.resources.network.classID"
    assert info.value.detail == "net_cls controller not available"
    assert read(f"{mgr.paths()['pids']}/pids.max") == "max"  # nothing written before the check
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(network=Network(priorities=(InterfacePriority("lo", 1),))))
    assert info.value.step == "apply linux.resources.network.priorities"
    assert info.value.detail == "net_prio controller not available"


def test_v1_network_when_mounted(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    files = {"net_cls.classid": "0", "net_prio.ifpriomap": ""}
    kernel(root / "net_cls,net_prio", files)
    mgr = v1_manager(root)
    leaf = mgr.paths()["net_cls"]
    assert mgr.paths()["net_prio"] == leaf
    kernel(leaf, files)
    mgr.apply(Resources(network=Network(0x100001, (InterfacePriority("lo", 3),))))
    assert read(f"{leaf}/net_cls.classid") == "1048577"
    assert read(f"{leaf}/net_prio.ifpriomap") == "lo 3"


def test_v1_hugetlb_when_mounted(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, without=())
    mgr = v1_manager(root)
    hugetlb = mgr.paths()["hugetlb"]
    kernel(hugetlb, V1_FILES["hugetlb"])
    mgr.apply(Resources(hugepage_limits=(HugepageLimit("2MB", 4 * MiB),)))
    assert read(f"{hugetlb}/hugetlb.2MB.limit_in_bytes") == str(4 * MiB)


def test_hybrid_applies_hugetlb_through_the_unified_hierarchy(tmp_path: Path) -> None:
    """A hybrid host whose v1 hierarchies lack hugetlb but whose cgroup2 mount has it (hugetlb
    not bound to v1): the limit goes to the container's cgroup2 directory, with the v2 knob,
    after hugetlb (alone) is enabled from the mount's root down."""
    root = fake_v1_root(tmp_path)  # no hugetlb hierarchy
    kernel(root / "unified", {"cgroup.controllers": "hugetlb", "cgroup.subtree_control": ""})
    mgr = created_v1(root)
    leaf = mgr.paths()[""]
    kernel(leaf, {"cgroup.controllers": "hugetlb", "hugetlb.2MB.max": "max"})
    mgr.apply(Resources(pids=Pids(9), hugepage_limits=(HugepageLimit("2MB", 4 * MiB),)))
    assert read(root / "unified/cgroup.subtree_control") == "+hugetlb"
    assert read(f"{leaf}/hugetlb.2MB.max") == str(4 * MiB)
    assert read(f"{mgr.paths()['pids']}/pids.max") == "9"  # v1 limits still go to v1


def test_hybrid_without_the_controller_in_cgroup2_either(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    kernel(root / "unified", {"cgroup.controllers": "misc", "cgroup.subtree_control": ""})
    mgr = created_v1(root)
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(pids=Pids(9), hugepage_limits=(HugepageLimit("2MB", MiB),)))
    assert info.value.step == "apply linux.resources.hugepageLimits"
    assert info.value.detail == "hugetlb controller not available"
    assert read(root / "unified/cgroup.subtree_control") == ""
    assert read(f"{mgr.paths()['pids']}/pids.max") == "max"  # nothing written


def test_v1_no_memsw_file(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    mgr = created_v1(root)
    os.unlink(f"{mgr.paths()['memory']}/memory.memsw.limit_in_bytes")
    with pytest.raises(CgroupError, match="memsw"):
        mgr.apply(Resources(memory=Memory(limit=MiB, swap=2 * MiB)))
    mgr.apply(Resources(memory=Memory(limit=MiB)))
    assert read(f"{mgr.paths()['memory']}/memory.limit_in_bytes") == str(MiB)


def test_v1_write_error_names_the_file(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    mgr = created_v1(root)
    knob = f"{mgr.paths()['pids']}/pids.max"
    os.unlink(knob)
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(pids=Pids(3)))
    assert info.value.step == f"write {knob}"
    assert info.value.errno == errno.ENOENT


def test_v1_rejects_unified(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    with pytest.raises(CgroupError, match="cgroup v2"):
        mgr.apply(Resources(unified={"memory.high": "1"}))


def test_v1_shares_clamped_by_kernel(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    cpu = mgr.paths()["cpu"]
    real_write = manager_mod.write_all

    def clamping_write(directory: str, writes: list[tuple[str, str]]) -> None:
        real_write(directory, writes)
        if directory == cpu:
            Path(cpu, "cpu.shares").write_text("262144")

    manager_mod.write_all = clamping_write  # type: ignore[assignment]
    try:
        with pytest.raises(CgroupError, match="maximum allowed cpu-shares is 262144"):
            mgr.apply(Resources(cpu=CPU(shares=500000)))
    finally:
        manager_mod.write_all = real_write


def test_v1_add_pid_joins_every_hierarchy(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    mgr.add_pid(4242)
    for directory in set(mgr.paths().values()):
        assert read(f"{directory}/cgroup.procs") == "4242"
    assert f"{tmp_path}/cgroup/unified/c1" in mgr.paths().values()


def test_v1_pids_recursive(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    pids_dir = mgr.paths()["pids"]
    Path(pids_dir, "cgroup.procs").write_text("10\n11\n")
    kernel(f"{pids_dir}/nested/deeper", {})
    Path(pids_dir, "nested/deeper/cgroup.procs").write_text("12\n")
    assert mgr.pids() == [10, 11, 12]


def test_v1_freeze_thaw(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    state = f"{mgr.paths()['freezer']}/freezer.state"
    assert not mgr.is_frozen()
    mgr.freeze()
    assert read(state) == "FROZEN" and mgr.is_frozen()
    mgr.thaw()
    assert read(state) == "THAWED" and not mgr.is_frozen()


def test_v1_kill_all_freezes_signals_thaws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    Path(mgr.paths()["pids"], "cgroup.procs").write_text("100\n101\n")
    state = f"{mgr.paths()['freezer']}/freezer.state"
    seen: list[tuple[int, int, str]] = []
    monkeypatch.setattr(manager_mod, "_kill", lambda pid, sig: seen.append((pid, sig, read(state))))
    mgr.kill_all(signal.SIGTERM)
    assert seen == [(100, signal.SIGTERM, "FROZEN"), (101, signal.SIGTERM, "FROZEN")]
    assert read(state) == "THAWED"


def test_v1_stats_and_oom(tmp_path: Path) -> None:
    mgr = created_v1(fake_v1_root(tmp_path))
    Path(mgr.paths()["memory"], "memory.memsw.usage_in_bytes").write_text("5096000")
    Path(mgr.paths()["pids"], "pids.max").write_text("10")
    assert mgr.stats() == Stats(
        memory_usage=4096000,
        memory_max_usage=8192000,
        memory_limit=None,  # the v1 "unlimited" value
        swap_usage=1000000,
        memory_cache=3000,
        memory_inactive_file=1500,  # the hierarchy's (total_), as the cache
        cpu_usage_ns=123456789,
        cpu_user_ns=100000000,
        cpu_system_ns=23456789,
        cpu_throttled_periods=3,
        cpu_throttled_ns=4500,
        pids_current=3,
        pids_limit=10,
        oom_kill=2,
    )
    assert mgr.oom_killed() == 2
    assert mgr.stats().memory_working_set == 4096000 - 1500


def test_v1_destroy_removes_created_dirs_deepest_first(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, without=("hugetlb", "cpuset"))
    kernel(root / "memory/process_api/1cb96bb3", {})  # our own memory cgroup exists already
    mgr = v1_manager(root, "pods/c1")
    mgr.create()
    os.makedirs(f"{mgr.paths()['pids']}/nested/deeper")  # a cgroup the container made
    os.rmdir(mgr.paths()["devices"])  # already gone: fine
    mgr.destroy()
    assert not mgr.exists()
    for top in ("pids", "cpu,cpuacct", "systemd", "unified"):
        assert not (root / top / "pods").exists()
    assert not (root / "memory/process_api/1cb96bb3/pods").exists()
    assert (root / "memory/process_api/1cb96bb3").is_dir()  # not ours: kept
    mgr.destroy()  # idempotent


def test_destroy_keeps_shared_parent(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, without=("hugetlb", "cpuset"))
    mgr = v1_manager(root, "pods/c1")
    mgr.create()
    os.mkdir(root / "pids/pods/c2")  # a sibling container
    mgr.destroy()
    assert not (root / "pids/pods/c1").exists()
    assert (root / "pids/pods/c2").is_dir()


def test_destroy_busy_raises_naming_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "DESTROY_TIMEOUT", 0.05)
    mgr = created_v1(fake_v1_root(tmp_path))  # knob files left in place: rmdir fails
    with pytest.raises(CgroupError) as info:
        mgr.destroy()
    assert info.value.step.startswith("rmdir ")
    assert info.value.step[len("rmdir ") :] in mgr.paths().values()
    assert "still in use" in info.value.detail
    for directory in mgr.paths().values():
        unkernel(directory)
    mgr.destroy()
    assert not mgr.exists()


def test_reopened_manager_destroys(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path, without=("hugetlb", "cpuset"))
    mgr = v1_manager(root)
    mgr.create()
    manager_from_paths(mgr.paths(), root=str(root)).destroy()
    assert not mgr.exists()


# =========================================================================== v2 driver on a fake fs


def fake_v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup2"
    have = "cpuset cpu io memory hugetlb pids"
    kernel(root, {"cgroup.controllers": have, "cgroup.subtree_control": "cpu"})
    on = "cpu io memory hugetlb pids cpuset"
    kernel(root / "user.slice", {"cgroup.controllers": have, "cgroup.subtree_control": on})
    return root


def v2_manager(root: Path, path: str = "c1") -> V2Manager:
    mgr = manager_for(
        path,
        "cid",
        root=str(root),
        layout=Layout.UNIFIED,
        self_cgroup={"": "/user.slice/session-1.scope"},
    )
    assert isinstance(mgr, V2Manager)
    return mgr


def test_v2_create_enables_controllers_from_the_root(tmp_path: Path) -> None:
    root = fake_v2_root(tmp_path)
    mgr = v2_manager(root)
    mgr.create()
    assert os.path.isdir(root / "user.slice/c1")
    # root: cpu was already on, the rest enabled in one write
    assert read(root / "cgroup.subtree_control") == "+cpuset +io +memory +hugetlb +pids"
    # user.slice: all already on, untouched
    assert read(root / "user.slice/cgroup.subtree_control") == "cpu io memory hugetlb pids cpuset"


def test_v2_apply(tmp_path: Path) -> None:
    root = fake_v2_root(tmp_path)
    mgr = v2_manager(root)
    leaf = mgr.paths()[""]
    kernel(leaf, V2_FILES)
    mgr.apply(
        Resources(
            memory=Memory(limit=32 * MiB, swap=48 * MiB, reservation=8 * MiB),
            cpu=CPU(shares=512, quota=-1, period=100000, cpus="0", mems="0"),
            pids=Pids(-1),
            block_io=BlockIO(weight=1000, throttle_write_bps_device=(ThrottleDevice(8, 0, 42),)),
            hugepage_limits=(HugepageLimit("2MB", 2 * MiB),),
            devices=(DeviceRule(allow=False),),  # skipped on v2: no error
            unified={"memory.high": "30000000", "cpu.weight": "77"},
        )
    )
    assert read(f"{leaf}/memory.max") == str(32 * MiB)
    assert read(f"{leaf}/memory.swap.max") == str(16 * MiB)
    assert read(f"{leaf}/memory.low") == str(8 * MiB)
    assert read(f"{leaf}/cpu.max") == "max 100000"
    assert read(f"{leaf}/cpu.weight") == "77"  # unified wins, written last
    assert read(f"{leaf}/memory.high") == "30000000"
    assert read(f"{leaf}/cpuset.cpus") == "0"
    assert read(f"{leaf}/pids.max") == "max"
    assert read(f"{leaf}/io.weight") == "10000"
    assert read(f"{leaf}/io.max") == "8:0 wbps=42"
    assert read(f"{leaf}/hugetlb.2MB.max") == str(2 * MiB)
    assert not os.path.exists(f"{leaf}/devices.deny")


def test_v2_missing_controller(tmp_path: Path) -> None:
    mgr = v2_manager(fake_v2_root(tmp_path))
    leaf = mgr.paths()[""]
    kernel(leaf, {**V2_FILES, "cgroup.controllers": "cpu memory pids"})
    mgr.apply(Resources(pids=Pids(3)))
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(hugepage_limits=(HugepageLimit("2MB", MiB),)))
    assert info.value.detail == "hugetlb controller not available"


def test_v2_refuses_network(tmp_path: Path) -> None:
    mgr = v2_manager(fake_v2_root(tmp_path))
    kernel(mgr.paths()[""], V2_FILES)
    with pytest.raises(CgroupError) as info:
        mgr.apply(Resources(network=Network(class_id=1)))
    assert info.value.step == "apply linux.resources.network.classID"
    assert info.value.errno == errno.EOPNOTSUPP


def test_v2_check_before_update(tmp_path: Path) -> None:
    mgr = v2_manager(fake_v2_root(tmp_path))
    leaf = mgr.paths()[""]
    kernel(leaf, V2_FILES)  # memory.current is 5000000
    with pytest.raises(CgroupError, match="below current usage"):
        mgr.apply(Resources(memory=Memory(limit=MiB, check_before_update=True)))
    mgr.apply(Resources(memory=Memory(limit=MiB)))
    assert read(f"{leaf}/memory.max") == str(MiB)


def test_v2_freeze_kill_stats(tmp_path: Path) -> None:
    mgr = v2_manager(fake_v2_root(tmp_path))
    leaf = mgr.paths()[""]
    kernel(leaf, {**V2_FILES, "cgroup.events": "populated 1\nfrozen 1\n"})
    mgr.freeze()
    assert read(f"{leaf}/cgroup.freeze") == "1"
    assert mgr.is_frozen()
    mgr.kill_all(signal.SIGKILL)
    assert read(f"{leaf}/cgroup.kill") == "1"
    assert mgr.stats() == Stats(
        memory_usage=5000000,
        memory_max_usage=6000000,
        memory_limit=None,
        swap_usage=100,
        memory_cache=4000,
        memory_inactive_file=3000,
        cpu_usage_ns=2000000,
        cpu_user_ns=1500000,
        cpu_system_ns=500000,
        cpu_throttled_periods=2,
        cpu_throttled_ns=70000,
        pids_current=2,
        pids_limit=None,
        oom_kill=1,
    )
    assert mgr.stats().memory_working_set == 5000000 - 3000
    assert mgr.oom_killed() == 1


def test_v2_destroy(tmp_path: Path) -> None:
    root = fake_v2_root(tmp_path)
    mgr = v2_manager(root, "pods/c1")
    kernel(root / "user.slice/pods", {"cgroup.controllers": "cpu", "cgroup.subtree_control": ""})
    mgr.create()
    os.makedirs(f"{mgr.paths()['']}/inner")
    mgr.destroy()
    assert not mgr.exists()
    assert (root / "user.slice/pods").is_dir()  # existed before: not ours


# ----------------------------------------------------------------------------- prime_attach


def test_own_procs_file_only_where_this_process_is_listed(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)  # hybrid: cgroup2 at root/unified
    kernel(root / "unified/user/me", {"cgroup.procs": "7\n42\n"})
    kernel(root / "pids/user/me", {"cgroup.procs": "42\n"})
    self_cgroup = "9:pids:/user/me\n0::/user/me\n"
    found = own_procs_file(str(root), self_cgroup=self_cgroup, pid=42, mountinfo="")
    assert found == str(root / "unified/user/me/cgroup.procs")
    # Not listed in cgroup2: the first v1 hierarchy (blkio here), if it lists it.
    kernel(root / "unified/user/me", {"cgroup.procs": "7\n"})
    kernel(root / "blkio/user/me", {"cgroup.procs": "42\n"})
    self_cgroup = "7:blkio:/user/me\n0::/user/me\n"
    found = own_procs_file(str(root), self_cgroup=self_cgroup, pid=42, mountinfo="")
    assert found == str(root / "blkio/user/me/cgroup.procs")
    # Listed nowhere (say the mount shows another subtree): never a place to move to.
    assert own_procs_file(str(root), self_cgroup=self_cgroup, pid=43, mountinfo="") is None


def test_read_optional_takes_a_removed_cgroup_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """cgroup v1 answers ENODEV for the files of a cgroup being removed (a container that
    restarts while `corral ps` reads it): the same as a missing file, not an error."""
    import builtins
    import errno

    from runtime.cgroups import fs

    def dying(*args: object, **kw: object) -> object:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(builtins, "open", dying)
    assert fs.read_optional("/sys/fs/cgroup/memory/x/memory.oom_control") is None
    monkeypatch.setattr(
        builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "x"))
    )
    with pytest.raises(CgroupError):
        fs.read_optional("/sys/fs/cgroup/memory/x/memory.oom_control")


@pytest.mark.parametrize(
    "paths",
    [{"": "/"}, {"pids": "/proc"}, {"pids": "/sys/fs/cgroup/pids/../../.."}, {"memory": "x/y"}],
    ids=["a-mount-point", "v1-mount-point", "dotdot", "relative"],
)
def test_saved_paths_that_are_no_container_cgroup_are_refused(paths: dict[str, str]) -> None:
    """A state file names the cgroups `delete` kills every process of and removes: one
    naming a hierarchy's root (a mount point) would have killed the host's processes."""
    with pytest.raises(CgroupError, match="not a container's cgroup"):
        manager_from_paths(paths)
