"""build_plan: every setup step decided in Python from a spec, checked without root."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from runtime import config as cfg
from runtime.errors import ConfigError
from runtime.plan import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    HostInfo,
    OpKind,
    SpawnPlan,
    build_plan,
)

V1_HOST = HostInfo(
    cap_last=40,
    cgroup_mounts=(("memory", "/sys/fs/cgroup/memory/c1"), ("pids", "/sys/fs/cgroup/pids/c1")),
    cgroup_v2=False,
    cgroup_links=(("cpuacct", "cpu,cpuacct"),),
)
V2_HOST = HostInfo(cap_last=40, cgroup_v2=True)


def plan_for(tmp_path: Path, spec: dict[str, Any], host: HostInfo = V1_HOST) -> SpawnPlan:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    return build_plan(cfg.parse_spec(copy.deepcopy(spec)), str(tmp_path), host)


def default() -> dict[str, Any]:
    spec = cfg.default_spec()
    spec["root"] = {"path": "/nonexistent-rootfs", "readonly": True}
    return spec


def test_default_spec_namespaces_and_process(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, default())
    assert plan.clone_flags & CLONE_NEWNS
    assert plan.clone_flags & CLONE_NEWPID
    assert plan.clone_flags & CLONE_NEWNET
    assert plan.new_cgroupns and not plan.new_userns
    assert plan.lo_up
    assert plan.argv == ("sh",)
    assert "HOME=/root" in plan.env
    assert plan.rlimits == ((7, 1024, 1024),)  # RLIMIT_NOFILE
    assert plan.no_new_privs
    assert plan.caps is not None and plan.caps.bounding == plan.caps.effective
    assert plan.caps.bounding & (1 << cfg.CAPABILITIES["CAP_KILL"])
    assert not plan.caps.bounding & (1 << cfg.CAPABILITIES["CAP_SYS_ADMIN"])


def test_mount_order_devices_then_masks_after_pivot(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, default())
    kinds = [(op.kind, op.dest, op.after_pivot) for op in plan.ops]
    dests = [d for k, d, _ in kinds if k is OpKind.MOUNT]
    assert dests.index("/dev") < dests.index("/dev/pts")
    first_node = next(i for i, k in enumerate(kinds) if k[0] is OpKind.MKNOD)
    assert first_node > [d for _, d, _ in kinds].index("/dev")
    nodes = {d for k, d, _ in kinds if k is OpKind.MKNOD}
    assert {
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
        "/dev/random",
        "/dev/urandom",
    } <= nodes
    links = {op.dest: op.source for op in plan.ops if op.kind is OpKind.SYMLINK}
    assert links["/dev/fd"] == "/proc/self/fd" and links["/dev/ptmx"] == "pts/ptmx"
    masks = [op for op in plan.ops if op.kind in (OpKind.MASK, OpKind.READONLY)]
    assert masks and all(op.after_pivot for op in masks)
    assert all(not op.after_pivot for op in plan.ops if op.kind is OpKind.MOUNT)


def test_readonly_paths_before_masked_paths_as_runc(tmp_path: Path) -> None:
    spec = default()
    spec["linux"]["readonlyPaths"] = ["/proc/sys"]
    spec["linux"]["maskedPaths"] = ["/proc/sys/kernel"]
    kinds = [(op.kind, op.dest) for op in plan_for(tmp_path, spec).ops]
    assert kinds[-2:] == [(OpKind.READONLY, "/proc/sys"), (OpKind.MASK, "/proc/sys/kernel")]


def test_no_dev_mount_means_no_default_nodes(tmp_path: Path) -> None:
    spec = default()
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    plan = plan_for(tmp_path, spec)
    assert not [op for op in plan.ops if op.dest.startswith("/dev")]


def test_bind_mounts(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("x")
    spec = default()
    spec["mounts"] = [
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
        {"destination": "/f", "source": str(tmp_path / "file"), "options": ["bind"]},
        {"destination": "/plain", "type": "bind", "source": str(tmp_path / "data")},
    ]
    plan = plan_for(tmp_path, spec)
    data, f, plain = (op for op in plan.ops if op.kind is OpKind.MOUNT)
    assert data.source == str(tmp_path / "data")
    assert data.fstype is None
    assert data.flags & cfg.MS_BIND and data.flags & cfg.MS_REC
    assert not data.flags & cfg.MS_RDONLY and data.remount_ro
    assert f.dest_is_file and f.flags & cfg.MS_BIND and not f.flags & cfg.MS_REC
    assert plain.fstype is None and plain.flags & cfg.MS_BIND


def test_missing_bind_source_names_the_mount(tmp_path: Path) -> None:
    spec = default()
    spec["mounts"] = [{"destination": "/x", "type": "bind", "source": "/no/such/dir"}]
    with pytest.raises(ConfigError) as e:
        plan_for(tmp_path, spec)
    assert e.value.field == "mounts[0].source"
    assert "/no/such/dir" in str(e.value)


def test_dest_is_cleaned(tmp_path: Path) -> None:
    spec = default()
    spec["mounts"] = [{"destination": "/a/../b//c/", "type": "tmpfs", "source": "tmpfs"}]
    plan = plan_for(tmp_path, spec)
    assert [op.dest for op in plan.ops if op.kind is OpKind.MOUNT] == ["/b/c"]


def test_cgroup_mount_v1_and_v2(tmp_path: Path) -> None:
    spec = default()
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] == "cgroup"]
    v1 = [op for op in plan_for(tmp_path, spec, V1_HOST).ops if op.kind is not OpKind.MASK]
    v1 = [op for op in v1 if op.kind is not OpKind.READONLY]
    assert v1[0].fstype == "tmpfs" and v1[0].dest == "/sys/fs/cgroup"
    binds = {op.dest: op.source for op in v1 if op.flags & cfg.MS_BIND}
    assert binds == {
        "/sys/fs/cgroup/memory": "/sys/fs/cgroup/memory/c1",
        "/sys/fs/cgroup/pids": "/sys/fs/cgroup/pids/c1",
    }
    assert any(op.kind is OpKind.SYMLINK and op.dest == "/sys/fs/cgroup/cpuacct" for op in v1)
    assert v1[-1].flags & cfg.MS_REMOUNT and v1[-1].flags & cfg.MS_RDONLY
    v2 = [op for op in plan_for(tmp_path, spec, V2_HOST).ops if op.kind is OpKind.MOUNT]
    assert [(op.dest, op.fstype) for op in v2] == [("/sys/fs/cgroup", "cgroup2")]


def test_cgroup_mount_v2_without_cgroupns_binds_own_cgroup(tmp_path: Path) -> None:
    spec = default()
    spec["mounts"] = [m for m in spec["mounts"] if m["type"] == "cgroup"]
    spec["linux"]["namespaces"] = [
        ns for ns in spec["linux"]["namespaces"] if ns["type"] != "cgroup"
    ]
    host = HostInfo(cap_last=40, cgroup_v2=True, cgroup_mounts=(("", "/sys/fs/cgroup/x/c1"),))
    ops = [op for op in plan_for(tmp_path, spec, host).ops if op.kind is OpKind.MOUNT]
    assert [(op.dest, op.source, op.fstype) for op in ops] == [
        ("/sys/fs/cgroup", "/sys/fs/cgroup/x/c1", None)
    ]
    assert ops[0].flags & cfg.MS_BIND and ops[0].remount_ro
    spec["linux"]["namespaces"].append({"type": "cgroup"})
    ops = [op for op in plan_for(tmp_path, spec, host).ops if op.kind is OpKind.MOUNT]
    assert [(op.dest, op.fstype) for op in ops] == [("/sys/fs/cgroup", "cgroup2")]


def test_user_namespace_maps(tmp_path: Path) -> None:
    spec = cfg.default_spec(rootless=True)
    spec["root"] = {"path": "/nonexistent-rootfs"}
    plan = plan_for(tmp_path, spec)
    assert plan.new_userns
    assert plan.uid_map == f"0 {os.getuid()} 1\n"
    assert not plan.clone_flags & CLONE_NEWNET
    assert not plan.lo_up
    sysfs = next(op for op in plan.ops if op.dest == "/sys")
    assert sysfs.source == "/sys" and sysfs.flags & cfg.MS_BIND


def test_join_namespaces_by_path_user_first(tmp_path: Path) -> None:
    spec = default()
    spec["linux"]["namespaces"] = [
        {"type": "mount"},
        {"type": "uts"},
        {"type": "network", "path": "/proc/1/ns/net"},
        {"type": "user", "path": "/proc/1/ns/user"},
    ]
    plan = plan_for(tmp_path, spec)
    assert [p for p, _ in plan.join] == ["/proc/1/ns/user", "/proc/1/ns/net"]
    assert not plan.clone_flags & CLONE_NEWNET


def _without_mount_ns(**root: Any) -> dict[str, Any]:
    spec = default()
    spec["linux"]["namespaces"] = [{"type": "pid"}, {"type": "uts"}]
    spec["mounts"] = []
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    spec["root"] = {"path": "/nonexistent-rootfs", **root}
    return spec


def test_without_a_mount_namespace_only_chroot(tmp_path: Path) -> None:
    """No mount namespace: the container runs in the caller's, with a chroot and no mount."""
    plan = plan_for(tmp_path, _without_mount_ns())
    assert plan.chroot_only and plan.rootfs == "/nonexistent-rootfs"
    assert plan.ops == ()
    assert not plan.clone_flags & CLONE_NEWNS
    assert not plan_for(tmp_path, default()).chroot_only


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("linux.maskedPaths", {"linux": {"maskedPaths": ["/proc/kcore"]}}),
        ("linux.readonlyPaths", {"linux": {"readonlyPaths": ["/proc/sys"]}}),
        ("mounts", {"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}),
        ("root.readonly", {"root": {"path": "/nonexistent-rootfs", "readonly": True}}),
        ("linux.rootfsPropagation", {"linux": {"rootfsPropagation": "private"}}),
        ("linux.devices", {"linux": {"devices": [{"path": "/dev/x", "type": "p"}]}}),
    ],
)
def test_without_a_mount_namespace_nothing_that_mounts(
    tmp_path: Path, field: str, change: dict[str, Any]
) -> None:
    spec = _without_mount_ns()
    for key, value in change.items():
        if isinstance(value, dict) and key == "linux":
            spec["linux"].update(value)
        else:
            spec[key] = value
    with pytest.raises(ConfigError) as e:
        plan_for(tmp_path, spec)
    assert e.value.field == field
    assert e.value.message.startswith("needs a mount namespace in linux.namespaces")


def test_sysctl_rlimits_user(tmp_path: Path) -> None:
    spec = default()
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o77}
    spec["process"]["env"] = ["A=1"]
    plan = plan_for(tmp_path, spec)
    assert plan.sysctls == (("/proc/sys/net/ipv4/ip_forward", "1"),)
    assert (plan.uid, plan.gid, plan.groups, plan.umask) == (1000, 100, (5, 6), 0o77)
    assert plan.env[0] == "A=1" and any(e.startswith("PATH=") for e in plan.env)
    assert "HOME=/" in plan.env


def test_read_write_bind_keeps_its_flags_for_a_remount(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    spec = default()
    spec["mounts"] = [
        {
            "destination": "/v",
            "type": "bind",
            "source": "data",
            "options": ["rw", "rprivate", "nosuid", "nodev", "noexec", "rbind"],
        },
        {"destination": "/p", "type": "bind", "source": "data", "options": ["rbind", "rw"]},
    ]
    v, p = (op for op in plan_for(tmp_path, spec).ops if op.kind is OpKind.MOUNT)
    assert not v.remount_ro
    assert v.remount_flags == cfg.MS_NOSUID | cfg.MS_NODEV | cfg.MS_NOEXEC
    assert not p.remount_ro and p.remount_flags == 0  # nothing to remount


MOUNTINFO = """\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 254:0 /x /var/lib/c rw,relatime - ext4 /dev/vda rw
41 27 0:50 / /var/lib/c\\040d/merged rw,relatime shared:7 - overlay overlay rw
"""


@pytest.mark.parametrize(
    ("rootfs", "prop", "parent"),
    [
        ("/var/lib/c/r", "shared", None),  # its own mount, private, stays so
        ("/var/lib/c/r", "rshared", "/var/lib/c"),  # rshared makes every mount shared
        ("/var/lib/c d/merged", "shared", "/var/lib/c d/merged"),  # shared on the host
        ("/srv/r", "shared", "/"),  # under / itself, shared now
        ("/srv/r", "rslave", None),  # nothing shared: no step
    ],
)
def test_shared_rootfs_parent_is_made_private(
    tmp_path: Path, rootfs: str, prop: str, parent: str | None
) -> None:
    spec = default()
    spec["root"] = {"path": rootfs}
    spec["linux"]["rootfsPropagation"] = prop
    plan = build_plan(cfg.parse_spec(spec), str(tmp_path), V1_HOST, mountinfo=MOUNTINFO)
    assert plan.root_propagation == cfg.PROPAGATION_FLAGS[prop]  # as runc's prepareRoot
    assert plan.rootfs_parent == parent


@pytest.mark.parametrize("prop", ["unbindable", "runbindable"])
def test_unbindable_rootfs_keeps_root_rslave_for_the_bind(tmp_path: Path, prop: str) -> None:
    spec = default()
    spec["linux"]["rootfsPropagation"] = prop
    plan = plan_for(tmp_path, spec)
    assert plan.root_propagation == cfg.MS_SLAVE | cfg.MS_REC
    assert plan.rootfs_propagation == cfg.PROPAGATION_FLAGS[prop]


def test_default_root_propagation_is_rslave(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, default())
    assert plan.root_propagation == cfg.MS_SLAVE | cfg.MS_REC and plan.rootfs_parent is None
