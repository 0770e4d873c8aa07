"""Unit tests for runtime/config.py: parsing and validating config.json (no root, no network)."""

from __future__ import annotations

import copy
import json
import re
import resource
from pathlib import Path
from typing import Any

import pytest

from runtime.config import (
    CAPABILITIES,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    PROPAGATION_FLAGS,
    RLIMITS,
    DeviceRule,
    IDMapping,
    MountOptions,
    Namespace,
    Rlimit,
    ThrottleDevice,
    WeightDevice,
    default_spec,
    load_spec,
    parse_mount_options,
    parse_process,
    parse_resources,
    parse_spec,
)
from runtime.errors import ConfigError

CID = "0123456789abcdef" * 4
USERDATA = f"/var/lib/containers/storage/overlay-containers/{CID}/userdata"
PODMAN_CAPS = [
    f"CAP_{name}"
    for name in (
        "CHOWN DAC_OVERRIDE FOWNER FSETID KILL NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID"
        " SYS_CHROOT"
    ).split()
]


def podman_config() -> dict[str, Any]:
    """A config.json shaped like the one podman 4.3 writes for `podman run` (root, cgroupfs)."""
    rprivate_bind = ["bind", "rprivate"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0, "umask": 18},
            "args": ["/bin/sh", "-c", "echo hi"],
            "env": [
                "container=podman",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                "HOME=/root",
                f"HOSTNAME={CID[:12]}",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": PODMAN_CAPS,
                "effective": PODMAN_CAPS,
                "permitted": PODMAN_CAPS,
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576},
                {"type": "RLIMIT_NPROC", "hard": 1048576, "soft": 1048576},
            ],
            "oomScoreAdj": 0,
        },
        "root": {"path": "/var/lib/containers/storage/overlay/abc/merged"},
        "hostname": CID[:12],
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/etc/hosts",
                "type": "bind",
                "source": f"{USERDATA}/hosts",
                "options": rprivate_bind,
            },
            {
                "destination": "/etc/hostname",
                "type": "bind",
                "source": f"{USERDATA}/hostname",
                "options": rprivate_bind,
            },
            {
                "destination": "/run/.containerenv",
                "type": "bind",
                "source": f"{USERDATA}/.containerenv",
                "options": rprivate_bind,
            },
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": f"{USERDATA}/shm",
                "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/data",
                "type": "bind",
                "source": "/srv/data",
                "options": ["rbind", "rprivate", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "annotations": {
            "io.container.manager": "libpod",
            "io.kubernetes.cri-o.Created": "2024-01-01T00:00:00.000000000Z",
            "io.kubernetes.cri-o.TTY": "false",
            "io.podman.annotations.autoremove": "TRUE",
            "io.podman.annotations.init": "FALSE",
            "io.podman.annotations.privileged": "FALSE",
            "io.podman.annotations.publish-all": "FALSE",
            "org.opencontainers.image.stopSignal": "15",
        },
        "linux": {
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": 67108864, "swap": 134217728},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                "pids": {"limit": 2048},
            },
            "cgroupsPath": f"/libpod_parent/libpod-{CID}",
            "namespaces": [
                {"type": "pid"},
                {
                    "type": "network",
                    "path": "/run/netns/netns-6d6e2c3a-1b2c-4d5e-8f90-abcdef012345",
                },
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [
                    {
                        "names": ["bdflush", "io_pgetevents", "kexec_file_load"],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 1,
                    },
                    {
                        "names": ["accept", "read", "write", "exit_group"],
                        "action": "SCMP_ACT_ALLOW",
                    },
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                    },
                    {
                        "names": ["socket"],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 22,
                        "args": [
                            {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                            {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"},
                        ],
                    },
                    {
                        "names": ["socket"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}],
                    },
                ],
            },
            "maskedPaths": [
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/fs/selinux",
                "/sys/dev/block",
            ],
            "readonlyPaths": [
                "/proc/asound",
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


def config_error(obj: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_spec(obj)
    return info.value


# ----------------------------------------------------------------------------- tables


def test_capability_table_is_complete() -> None:
    assert len(CAPABILITIES) == 41
    assert sorted(CAPABILITIES.values()) == list(range(41))
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40


def test_rlimit_table_matches_the_kernel() -> None:
    assert len(RLIMITS) == 16
    for name, number in RLIMITS.items():
        if hasattr(resource, name):
            assert getattr(resource, name) == number, name


# ----------------------------------------------------------------------------- default spec


def test_default_spec_round_trips() -> None:
    raw = default_spec()
    spec = parse_spec(json.loads(json.dumps(raw)))
    assert spec.oci_version == "1.0.2"
    assert spec.hostname == "corral"
    assert spec.root is not None and spec.root.path == "rootfs" and spec.root.readonly
    process = spec.process
    assert process is not None
    assert process.args == ("sh",) and process.cwd == "/" and process.terminal
    assert process.user.uid == 0 and process.user.gid == 0
    assert "TERM=xterm" in process.env
    assert process.no_new_privileges
    assert process.rlimits == (Rlimit("RLIMIT_NOFILE", 1024, 1024),)
    caps = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert process.capabilities is not None
    assert process.capabilities.bounding == caps == process.capabilities.permitted
    assert process.capabilities.inheritable == ()
    assert [m.destination for m in spec.mounts] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    linux = spec.linux
    assert linux is not None
    assert [ns.type for ns in linux.namespaces] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert linux.resources is not None
    assert linux.resources.devices == (DeviceRule(allow=False, type="a", access="rwm"),)
    assert "/proc/kcore" in linux.masked_paths and "/proc/sys" in linux.readonly_paths


def test_default_spec_is_a_fresh_dict_each_time() -> None:
    first = default_spec()
    first["process"]["args"].append("-x")
    first["mounts"][3]["options"].append("ro")
    assert default_spec()["process"]["args"] == ["sh"]
    assert "ro" not in default_spec()["mounts"][3]["options"]


# ----------------------------------------------------------------------------- podman config


def test_podman_config_parses() -> None:
    spec = parse_spec(podman_config())
    assert spec.oci_version == "1.0.2-dev"
    assert spec.hostname == CID[:12]
    process = spec.process
    assert process is not None
    assert process.user.umask == 18
    assert process.capabilities is not None and len(process.capabilities.effective) == 11
    assert [r.type for r in process.rlimits] == ["RLIMIT_NOFILE", "RLIMIT_NPROC"]
    assert process.oom_score_adj == 0
    tmp = next(m for m in spec.mounts if m.destination == "/tmp")
    assert parse_mount_options(tmp.options).tmpcopyup
    assert spec.annotations["io.container.manager"] == "libpod"
    linux = spec.linux
    assert linux is not None
    assert linux.cgroups_path == f"/libpod_parent/libpod-{CID}"
    assert linux.sysctl == {"net.ipv4.ping_group_range": "0 0"}
    net = linux.namespace("network")
    assert net is not None and net.path is not None and net.path.startswith("/run/netns/")
    assert linux.namespace("user") is None and linux.namespace("cgroup") is None
    assert len(linux.masked_paths) == 11
    res = linux.resources
    assert res is not None and res.memory is not None and res.cpu is not None
    assert res.memory.limit == 67108864 and res.memory.swap == 134217728
    assert (res.cpu.shares, res.cpu.quota, res.cpu.period) == (512, 50000, 100000)
    assert res.pids is not None and res.pids.limit == 2048
    seccomp = linux.seccomp
    assert seccomp is not None
    assert seccomp.default_action == "SCMP_ACT_ERRNO" and seccomp.default_errno_ret == 38
    assert seccomp.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert seccomp.flags == () and seccomp.listener_path is None
    assert seccomp.syscalls[0].errno_ret == 1
    socket_rule = seccomp.syscalls[3]
    assert [(a.index, a.value, a.op) for a in socket_rule.args] == [
        (0, 16, "SCMP_CMP_EQ"),
        (2, 9, "SCMP_CMP_EQ"),
    ]
    assert seccomp.syscalls[2].args[0].value_two == 0


def test_podman_exec_process_parses() -> None:
    exec_process = {
        "user": {"uid": 0, "gid": 0},
        "args": ["ls", "-l"],
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": PODMAN_CAPS,
            "effective": PODMAN_CAPS,
            "permitted": PODMAN_CAPS,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}],
        "terminal": True,
    }
    process = parse_process(exec_process)
    assert process.args == ("ls", "-l") and process.terminal
    with pytest.raises(ConfigError) as info:
        parse_process({**exec_process, "cwd": "tmp"}, field="exec-process")
    assert info.value.field == "exec-process.cwd"


def test_network_resources_are_parsed() -> None:
    resources = parse_resources(
        {"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}}
    )
    assert resources.network is not None
    assert resources.network.class_id == 1048577
    assert [(p.name, p.priority) for p in resources.network.priorities] == [("eth0", 5)]
    assert parse_resources({"rdma": {}}).network is None  # an empty rdma map asks nothing


def test_podman_update_resources_file() -> None:
    resources = parse_resources(
        {"memory": {"limit": 134217728, "swap": 268435456}, "cpu": {"shares": 256}}
    )
    assert resources.memory is not None and resources.memory.limit == 134217728
    assert resources.cpu is not None and resources.cpu.shares == 256
    with pytest.raises(ConfigError) as info:
        parse_resources({"memory": {"limit": "1G"}})
    assert info.value.field == "memory.limit"
    with pytest.raises(ConfigError) as info:
        parse_resources({"pids": {"limit": "x"}}, field="resources")
    assert info.value.field == "resources.pids.limit"
    with pytest.raises(ConfigError) as info:
        parse_resources([])
    assert "object" in info.value.message


# ----------------------------------------------------------------------------- camelCase names


def test_camel_case_names_map_to_fields() -> None:
    config = default_spec()
    process = config["process"]
    assert isinstance(process, dict)
    process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 10], "umask": 0o22}
    process["consoleSize"] = {"height": 24, "width": 80}
    process["apparmorProfile"] = "corral-default"
    process["selinuxLabel"] = "system_u:system_r:container_t:s0"
    process["oomScoreAdj"] = -500
    process["capabilities"] = {
        "bounding": ["CAP_KILL"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_CHOWN"],
        "permitted": ["CAP_KILL"],
        "ambient": ["CAP_NET_RAW"],
    }
    config["domainname"] = "example.org"
    config["hooks"] = {
        "prestart": [{"path": "/usr/bin/pre"}],
        "createRuntime": [{"path": "/usr/bin/cr", "args": ["cr", "x"], "env": ["A=1"]}],
        "createContainer": [{"path": "/usr/bin/cc"}],
        "startContainer": [{"path": "/usr/bin/sc"}],
        "poststart": [{"path": "/usr/bin/ps", "timeout": 5}],
        "poststop": [{"path": "/usr/bin/pst"}],
    }
    linux = config["linux"]
    assert isinstance(linux, dict)
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    linux["cgroupsPath"] = "system.slice:corral:c1"
    linux["rootfsPropagation"] = "rslave"
    linux["mountLabel"] = "system_u:object_r:container_file_t:s0"
    linux["personality"] = {"domain": "LINUX32"}
    linux["devices"] = [
        {
            "path": "/dev/fuse",
            "type": "c",
            "major": 10,
            "minor": 229,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        },
        {"path": "/dev/myfifo", "type": "p"},
    ]
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "/run/seccomp.sock",
        "listenerMetadata": "meta",
        "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 38,
                "args": [
                    {
                        "index": 0,
                        "value": 0x10000000,
                        "valueTwo": 0x10000000,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
        ],
    }
    linux["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": -1, "access": "mr"},
        ],
        "memory": {
            "limit": 1 << 30,
            "reservation": 1 << 29,
            "swap": -1,
            "kernel": -1,
            "kernelTCP": 1 << 20,
            "swappiness": 60,
            "disableOOMKiller": True,
            "useHierarchy": False,
            "checkBeforeUpdate": True,
        },
        "cpu": {
            "shares": 1024,
            "quota": -1,
            "burst": 1000,
            "period": 100000,
            "realtimeRuntime": 950000,
            "realtimePeriod": 1000000,
            "cpus": "0-3",
            "mems": "0",
            "idle": 1,
        },
        "pids": {"limit": -1},
        "blockIO": {
            "weight": 500,
            "leafWeight": 300,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 100}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 400}],
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
        "unified": {"memory.high": "max"},
    }
    spec = parse_spec(config)

    assert spec.domainname == "example.org"
    p = spec.process
    assert p is not None and p.capabilities is not None
    assert p.user.additional_gids == (5, 10) and p.user.umask == 0o22 and p.user.uid == 1000
    assert p.console_size is not None and (p.console_size.height, p.console_size.width) == (24, 80)
    assert p.apparmor_profile == "corral-default" and p.selinux_label.startswith("system_u")
    assert p.oom_score_adj == -500
    assert p.capabilities.inheritable == ("CAP_CHOWN",) and p.capabilities.ambient == (
        "CAP_NET_RAW",
    )

    hooks = spec.hooks
    assert hooks is not None
    assert hooks.prestart[0].path == "/usr/bin/pre"
    assert hooks.create_runtime[0].args == ("cr", "x") and hooks.create_runtime[0].env == ("A=1",)
    assert hooks.create_container[0].path == "/usr/bin/cc"
    assert hooks.start_container[0].path == "/usr/bin/sc"
    assert hooks.poststart[0].timeout == 5 and hooks.poststop[0].timeout is None

    lx = spec.linux
    assert lx is not None
    assert lx.uid_mappings == (IDMapping(container_id=0, host_id=100000, size=65536),)
    assert lx.gid_mappings[0].host_id == 200000
    assert lx.cgroups_path == "system.slice:corral:c1"
    assert lx.rootfs_propagation == "rslave"
    assert lx.mount_label == "system_u:object_r:container_file_t:s0"
    assert lx.personality == "LINUX32"
    assert lx.devices[0].file_mode == 0o666 and lx.devices[0].major == 10
    assert lx.devices[1].type == "p" and lx.devices[1].major == 0

    sc = lx.seccomp
    assert sc is not None
    assert sc.default_errno_ret == 1 and sc.flags == ("SECCOMP_FILTER_FLAG_LOG",)
    assert sc.listener_path == "/run/seccomp.sock" and sc.listener_metadata == "meta"
    assert sc.syscalls[1].errno_ret == 38 and sc.syscalls[1].args[0].value_two == 0x10000000

    res = lx.resources
    assert res is not None
    assert res.devices[1] == DeviceRule(allow=True, type="c", major=1, minor=None, access="rm")
    mem = res.memory
    assert mem is not None
    assert (mem.limit, mem.reservation, mem.swap, mem.kernel, mem.kernel_tcp) == (
        1 << 30,
        1 << 29,
        -1,
        -1,
        1 << 20,
    )
    assert mem.swappiness == 60
    assert (mem.disable_oom_killer, mem.use_hierarchy, mem.check_before_update) == (
        True,
        False,
        True,
    )
    cpu = res.cpu
    assert cpu is not None
    assert (cpu.shares, cpu.quota, cpu.burst, cpu.period) == (1024, -1, 1000, 100000)
    assert (cpu.realtime_runtime, cpu.realtime_period) == (950000, 1000000)
    assert (cpu.cpus, cpu.mems, cpu.idle) == ("0-3", "0", 1)
    assert res.pids is not None and res.pids.limit == -1
    bio = res.block_io
    assert bio is not None
    assert (bio.weight, bio.leaf_weight) == (500, 300)
    assert bio.weight_device == (WeightDevice(major=8, minor=0, weight=600, leaf_weight=100),)
    assert bio.throttle_read_bps_device == (ThrottleDevice(8, 0, 1000),)
    assert bio.throttle_write_bps_device == (ThrottleDevice(8, 0, 2000),)
    assert bio.throttle_read_iops_device == (ThrottleDevice(8, 16, 300),)
    assert bio.throttle_write_iops_device == (ThrottleDevice(8, 16, 400),)
    assert res.hugepage_limits[0].page_size == "2MB" and res.hugepage_limits[0].limit == 1 << 21
    assert res.unified == {"memory.high": "max"}


# ----------------------------------------------------------------------------- accepted forms


def test_lenient_forms_are_accepted() -> None:
    config = default_spec()
    config["x-vendor-extension"] = {"anything": [1, 2]}
    config["windows"] = {"layerFolders": []}
    config["annotations"] = None  # JSON null is treated as absent, as Go does
    config["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    config["mounts"].append(
        {"destination": "/a/../b//c/", "type": "bind", "source": "/x", "options": ["rbind"]}
    )
    config["linux"]["resources"]["devices"].append({"allow": True, "type": "b", "major": -1})
    config["linux"]["sysctl"] = {
        "kernel.shmmax": "1",
        "fs.mqueue.msg_max": "10",
        "net.core.somaxconn": "4096",
    }
    spec = parse_spec(config)
    assert spec.annotations == {}
    assert spec.mounts[-2].destination == "/data"
    assert spec.mounts[-1].destination == "/b/c"
    rule = spec.linux.resources.devices[-1]
    assert (rule.type, rule.major, rule.minor, rule.access) == ("b", None, None, "rwm")


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.0.0-rc5+dev.1"])
def test_ocI_versions_accepted(version: str) -> None:
    config = default_spec()
    config["ociVersion"] = version
    assert parse_spec(config).oci_version == version


@pytest.mark.parametrize(
    "version",
    ["01.0.0", "1.0", "1.0.0.0", "1.0.0-", "1.0.0+", "1.0.0-a..b", "1.0.0+a+b", "1.0.0-é",
     "\u0661.0.0", "1.0.0\n", " 1.0.0", "1..0"],
)  # fmt: skip
def test_versions_that_are_not_semver(version: str) -> None:
    config = default_spec()
    config["ociVersion"] = version
    with pytest.raises(ConfigError, match="SemVer"):
        parse_spec(config)


def test_hostname_without_linux_section_is_fine() -> None:
    spec = parse_spec({"ociVersion": "1.0.2", "hostname": "h", "root": {"path": "r"}})
    assert spec.hostname == "h" and spec.linux is None and spec.process is None


def test_empty_strings_mean_unset() -> None:
    config = default_spec()
    config["hostname"] = ""
    config["linux"]["namespaces"] = [{"type": "mount", "path": ""}]
    config["linux"]["cgroupsPath"] = ""
    spec = parse_spec(config)
    assert spec.hostname is None
    assert spec.linux is not None and spec.linux.namespaces == (Namespace("mount"),)
    assert spec.linux.cgroups_path is None


def test_user_namespace_with_a_path_needs_no_mappings() -> None:
    config = default_spec()
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    assert parse_spec(config).linux.namespace("user").path == "/proc/1/ns/user"


# ----------------------------------------------------------------------------- validation rules

DEL = object()  # an edit that removes the key


def edit(config: dict[str, Any], path: str, value: object) -> None:
    """Set a JSON path such as ``process.rlimits[0].soft``; ``[+]`` appends; DEL removes."""
    steps = re.findall(r"\[(\+|\d+)\]|([^.\[\]]+)", path)
    node: Any = config
    for index, key in steps[:-1]:
        node = node[int(index)] if index else node[key]
    index, key = steps[-1]
    if index == "+":
        node.append(value)
    elif value is DEL:
        del node[int(index) if index else key]
    else:
        node[int(index) if index else key] = value


def seccomp(**extra: object) -> dict[str, object]:
    return {"defaultAction": "SCMP_ACT_ALLOW", **extra}


def one_call(**call: object) -> dict[str, object]:
    return seccomp(syscalls=[{"names": ["x"], "action": "SCMP_ACT_ALLOW", **call}])


def cmp_arg(**arg: object) -> dict[str, object]:
    return one_call(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **arg}])


def idmap(host: int, size: int = 1) -> list[dict[str, int]]:
    return [{"containerID": 0, "hostID": host, "size": size}]


USERNS = {"type": "user"}
NO_NAMESPACES: list[object] = []
R = "linux.resources"
P = "process"

# (test id, edits to the default spec, the error's field, a word of its message)
RULES: list[tuple[str, dict[str, object], str, str]] = [
    # ociVersion
    ("version missing", {"ociVersion": DEL}, "ociVersion", "required"),
    ("version 2.x", {"ociVersion": "2.0.0"}, "ociVersion", "unsupported"),
    ("version not semver", {"ociVersion": "latest"}, "ociVersion", "SemVer"),
    ("version not string", {"ociVersion": 1}, "ociVersion", "string"),
    # process
    ("process not object", {P: []}, P, "object"),
    ("args empty", {f"{P}.args": []}, f"{P}.args", "empty"),
    ("args missing", {f"{P}.args": DEL}, f"{P}.args", "required"),
    ("args not list", {f"{P}.args": "sh"}, f"{P}.args", "array"),
    ("arg not string", {f"{P}.args[+]": 1}, f"{P}.args[1]", "string"),
    ("arg with NUL", {f"{P}.args[+]": "a\0b"}, f"{P}.args[1]", "NUL"),
    ("cwd relative", {f"{P}.cwd": "tmp"}, f"{P}.cwd", "absolute"),
    ("cwd missing", {f"{P}.cwd": DEL}, f"{P}.cwd", "required"),
    ("env without =", {f"{P}.env[+]": "FOO"}, f"{P}.env[2]", "="),
    ("env empty name", {f"{P}.env[+]": "=x"}, f"{P}.env[2]", "name"),
    ("terminal not bool", {f"{P}.terminal": "yes"}, f"{P}.terminal", "true"),
    ("nnp not bool", {f"{P}.noNewPrivileges": 1}, f"{P}.noNewPrivileges", "true"),
    ("uid negative", {f"{P}.user.uid": -1}, f"{P}.user.uid", "4294967295"),
    ("uid too big", {f"{P}.user.uid": 2**32}, f"{P}.user.uid", "4294967295"),
    ("uid bool", {f"{P}.user.uid": True}, f"{P}.user.uid", "integer"),
    ("gid float", {f"{P}.user.gid": 1.0}, f"{P}.user.gid", "integer"),
    (
        "gids entry",
        {f"{P}.user.additionalGids": [1, "x"]},
        f"{P}.user.additionalGids[1]",
        "integer",
    ),
    ("oomScoreAdj range", {f"{P}.oomScoreAdj": 1001}, f"{P}.oomScoreAdj", "-1000"),
    (
        "consoleSize width",
        {f"{P}.consoleSize": {"height": 2}},
        f"{P}.consoleSize.width",
        "required",
    ),
    ("apparmor type", {f"{P}.apparmorProfile": 1}, f"{P}.apparmorProfile", "string"),
    # rlimits
    ("rlimit unknown", {f"{P}.rlimits[0].type": "RLIMIT_FOO"}, f"{P}.rlimits[0].type", "unknown"),
    (
        "rlimit duplicate",
        {f"{P}.rlimits[+]": {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}},
        f"{P}.rlimits[1].type",
        "duplicate rlimit RLIMIT_NOFILE",
    ),
    ("rlimit soft > hard", {f"{P}.rlimits[0].soft": 2048}, f"{P}.rlimits[0].soft", "greater"),
    ("rlimit hard negative", {f"{P}.rlimits[0].hard": -1}, f"{P}.rlimits[0].hard", "integer"),
    ("rlimit soft missing", {f"{P}.rlimits[0].soft": DEL}, f"{P}.rlimits[0].soft", "required"),
    # capabilities
    (
        "cap unknown",
        {f"{P}.capabilities.bounding[+]": "CAP_FOO"},
        f"{P}.capabilities.bounding[3]",
        "unknown capability",
    ),
    (
        "cap lower case",
        {f"{P}.capabilities.effective[0]": "cap_kill"},
        f"{P}.capabilities.effective[0]",
        "unknown capability",
    ),
    (
        "caps not list",
        {f"{P}.capabilities.ambient": "CAP_KILL"},
        f"{P}.capabilities.ambient",
        "array",
    ),
    # root
    ("root not object", {"root": "rootfs"}, "root", "object"),
    ("root path missing", {"root.path": DEL}, "root.path", "required"),
    ("root path empty", {"root.path": ""}, "root.path", "empty"),
    ("root path type", {"root.path": 5}, "root.path", "string"),
    ("root readonly type", {"root.readonly": "true"}, "root.readonly", "true"),
    # hostname
    ("hostname needs uts", {"linux.namespaces": [{"type": "mount"}]}, "hostname", "UTS"),
    (
        "domainname needs uts",
        {"hostname": DEL, "domainname": "d", "linux.namespaces": NO_NAMESPACES},
        "domainname",
        "UTS",
    ),
    ("hostname type", {"hostname": 5}, "hostname", "string"),
    # Strings the kernel gets as C strings: a NUL would silently cut them short there.
    ("hostname NUL", {"hostname": "a\0b"}, "hostname", "NUL"),
    ("domainname NUL", {"domainname": "a\0b"}, "domainname", "NUL"),
    ("hostname too long", {"hostname": "h" * 65}, "hostname", "64 bytes"),
    ("domainname too long", {"domainname": "\u00e9" * 33}, "domainname", "64 bytes"),
    (
        "mount source NUL",
        {
            "mounts[+]": {
                "destination": "/m",
                "type": "bind",
                "source": "/a\0b",
                "options": ["bind"],
            }
        },
        "mounts[7].source",
        "NUL",
    ),
    ("mount type NUL", {"mounts[0].type": "pr\0oc"}, "mounts[0].type", "NUL"),
    ("mount option NUL", {"mounts[1].options[+]": "mode=1\x00777"}, "mounts[1].options[4]", "NUL"),
    (
        "sysctl value NUL",
        {"linux.sysctl": {"net.ipv4.ip_forward": "1\0"}},
        'linux.sysctl["net.ipv4.ip_forward"]',
        "NUL",
    ),
    (
        "sysctl key NUL",
        {"linux.sysctl": {"net.ipv4.ip_\0forward": "1"}},
        'linux.sysctl["net.ipv4.ip_\\u0000forward"]',
        "NUL",
    ),
    (
        "hook arg NUL",
        {"hooks": {"prestart": [{"path": "/x", "args": ["x", "a\0b"]}]}},
        "hooks.prestart[0].args[1]",
        "NUL",
    ),
    (
        "device major past 32 bits",
        {"linux.devices": [{"path": "/dev/x", "type": "c", "major": 2**32, "minor": 1}]},
        "linux.devices[0].major",
        "4294967295",
    ),
    (
        "device minor past 32 bits",
        {"linux.devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 2**40}]},
        "linux.devices[0].minor",
        "4294967295",
    ),
    # mounts
    ("mounts not list", {"mounts": {}}, "mounts", "array"),
    ("mount not object", {"mounts[+]": "x"}, "mounts[7]", "object"),
    ("destination missing", {"mounts[0].destination": DEL}, "mounts[0].destination", "required"),
    ("destination empty", {"mounts[0].destination": ""}, "mounts[0].destination", "empty"),
    ("options not list", {"mounts[1].options": "nosuid"}, "mounts[1].options", "array"),
    ("option not string", {"mounts[1].options[+]": 1}, "mounts[1].options[4]", "string"),
    (
        "idmap container IDs overlap",
        {
            "mounts[0].uidMappings": [
                *idmap(1000, 10),
                {"containerID": 5, "hostID": 9000, "size": 1},
            ]
        },
        "mounts[0].uidMappings[1]",
        "container IDs overlap those of mounts[0].uidMappings[0]",
    ),
    (
        "idmap host IDs overlap",
        {
            "mounts[0].gidMappings": [
                {"containerID": 100, "hostID": 1005, "size": 1},
                *idmap(1000, 10),
            ]
        },
        "mounts[0].gidMappings[1]",
        "host IDs overlap those of mounts[0].gidMappings[0]",
    ),
    (
        "idmap too many lines",
        {
            "mounts[0].uidMappings": [
                {"containerID": i, "hostID": 1000 + i, "size": 1} for i in range(341)
            ]
        },
        "mounts[0].uidMappings",
        "more than 340",
    ),
    (
        "mount idmap size",
        {"mounts[0].uidMappings": idmap(1, 0)},
        "mounts[0].uidMappings[0].size",
        "at least 1",
    ),
    # hooks
    (
        "hook relative",
        {"hooks": {"prestart": [{"path": "bin/x"}]}},
        "hooks.prestart[0].path",
        "absolute",
    ),
    (
        "hook timeout zero",
        {"hooks": {"poststop": [{"path": "/x", "timeout": 0}]}},
        "hooks.poststop[0].timeout",
        "positive",
    ),
    (
        "hooks not list",
        {"hooks": {"createRuntime": {"path": "/x"}}},
        "hooks.createRuntime",
        "array",
    ),
    # annotations
    ("annotation value", {"annotations": {"a": 1}}, 'annotations["a"]', "string"),
    ("annotations type", {"annotations": ["a"]}, "annotations", "object"),
    ("annotation empty key", {"annotations": {"": "x"}}, "annotations", "empty"),
    # linux: namespaces and id mappings
    ("linux not object", {"linux": "x"}, "linux", "object"),
    (
        "namespace unknown",
        {"linux.namespaces[0].type": "foo"},
        "linux.namespaces[0].type",
        'unknown namespace type "foo"',
    ),
    (
        "namespace duplicate",
        {"linux.namespaces[+]": {"type": "pid"}},
        "linux.namespaces[6].type",
        "duplicate",
    ),
    (
        "namespace relative path",
        {"linux.namespaces[1].path": "run/netns/x"},
        "linux.namespaces[1].path",
        "absolute",
    ),
    ("namespace type missing", {"linux.namespaces[+]": {}}, "linux.namespaces[6].type", "required"),
    (
        "uidMappings without userns",
        {"linux.uidMappings": idmap(1000)},
        "linux.uidMappings",
        "user namespace",
    ),
    (
        "gidMappings without userns",
        {"linux.gidMappings": idmap(1000)},
        "linux.gidMappings",
        "user namespace",
    ),
    (
        "userns without mappings",
        {"linux.namespaces[+]": USERNS},
        "linux.namespaces[6]",
        "uidMappings",
    ),
    (
        "mapping overflow",
        {
            "linux.namespaces[+]": USERNS,
            "linux.uidMappings": idmap(2**32 - 1, 2),
            "linux.gidMappings": idmap(0),
        },
        "linux.uidMappings[0].size",
        "4294967295",
    ),
    (
        "mapping field missing",
        {"linux.namespaces[+]": USERNS, "linux.uidMappings": [{"containerID": 0, "size": 2}]},
        "linux.uidMappings[0].hostID",
        "required",
    ),
    # linux: misc
    (
        "rootfsPropagation",
        {"linux.rootfsPropagation": "bogus"},
        "linux.rootfsPropagation",
        "unknown propagation",
    ),
    (
        "maskedPaths relative",
        {"linux.maskedPaths[0]": "proc/kcore"},
        "linux.maskedPaths[0]",
        "absolute",
    ),
    ("readonlyPaths type", {"linux.readonlyPaths[+]": 1}, "linux.readonlyPaths[5]", "string"),
    ("cgroupsPath type", {"linux.cgroupsPath": ["a"]}, "linux.cgroupsPath", "string"),
    (
        "personality domain",
        {"linux.personality": {"domain": "WIN"}},
        "linux.personality.domain",
        "unknown personality",
    ),
    # linux.devices
    (
        "device type",
        {"linux.devices": [{"path": "/dev/x", "type": "x", "major": 1, "minor": 1}]},
        "linux.devices[0].type",
        "unknown device type",
    ),
    (
        "device path",
        {"linux.devices": [{"path": "dev/x", "type": "c", "major": 1, "minor": 1}]},
        "linux.devices[0].path",
        "absolute",
    ),
    (
        "device major missing",
        {"linux.devices": [{"path": "/dev/x", "type": "c", "minor": 1}]},
        "linux.devices[0].major",
        "required",
    ),
    (
        "device fileMode",
        {"linux.devices": [{"path": "/dev/x", "type": "p", "fileMode": -1}]},
        "linux.devices[0].fileMode",
        "integer",
    ),
    # sysctl
    (
        "sysctl net needs netns",
        {"linux.namespaces": [{"type": "uts"}], "linux.sysctl": {"net.ipv4.ip_forward": "1"}},
        'linux.sysctl["net.ipv4.ip_forward"]',
        "network namespace",
    ),
    (
        "sysctl ipc needs ipcns",
        {"linux.namespaces": [{"type": "uts"}], "linux.sysctl": {"kernel.shmmax": "1"}},
        'linux.sysctl["kernel.shmmax"]',
        "ipc namespace",
    ),
    (
        "sysctl host-wide",
        {"linux.sysctl": {"vm.swappiness": "0"}},
        'linux.sysctl["vm.swappiness"]',
        "not allowed",
    ),
    (
        "sysctl hostname",
        {"linux.sysctl": {"kernel.hostname": "h"}},
        'linux.sysctl["kernel.hostname"]',
        "hostname",
    ),
    (
        "sysctl value type",
        {"linux.sysctl": {"kernel.shmmax": 1}},
        'linux.sysctl["kernel.shmmax"]',
        "string",
    ),
    # linux.resources
    ("resources type", {R: []}, R, "object"),
    (
        "rule type",
        {f"{R}.devices[+]": {"allow": True, "type": "x"}},
        f"{R}.devices[1].type",
        "unknown device type",
    ),
    ("rule access", {f"{R}.devices[0].access": "rwx"}, f"{R}.devices[0].access", "rwm"),
    ("rule allow missing", {f"{R}.devices[0].allow": DEL}, f"{R}.devices[0].allow", "required"),
    ("rule allow type", {f"{R}.devices[0].allow": "no"}, f"{R}.devices[0].allow", "true"),
    ("rule major", {f"{R}.devices[0].major": -2}, f"{R}.devices[0].major", "-1"),
    ("memory limit -2", {f"{R}.memory": {"limit": -2}}, f"{R}.memory.limit", "-1"),
    ("memory limit string", {f"{R}.memory": {"limit": "1G"}}, f"{R}.memory.limit", "integer"),
    ("memory limit int64", {f"{R}.memory": {"limit": 2**63}}, f"{R}.memory.limit", "64-bit"),
    (
        "memory swap < limit",
        {f"{R}.memory": {"limit": 200, "swap": 100}},
        f"{R}.memory.swap",
        "lower",
    ),
    ("swappiness", {f"{R}.memory": {"swappiness": 101}}, f"{R}.memory.swappiness", "100"),
    (
        "disableOOMKiller type",
        {f"{R}.memory": {"disableOOMKiller": 1}},
        f"{R}.memory.disableOOMKiller",
        "true",
    ),
    ("cpu shares", {f"{R}.cpu": {"shares": -1}}, f"{R}.cpu.shares", "integer"),
    ("cpu quota", {f"{R}.cpu": {"quota": -5}}, f"{R}.cpu.quota", "-1"),
    (
        "cpu period uint64",
        {f"{R}.cpu": {"period": 2**64}},
        f"{R}.cpu.period",
        "18446744073709551615",
    ),
    ("cpu cpus type", {f"{R}.cpu": {"cpus": 3}}, f"{R}.cpu.cpus", "string"),
    ("cpu idle", {f"{R}.cpu": {"idle": 2}}, f"{R}.cpu.idle", "0 or 1"),
    ("pids limit", {f"{R}.pids": {}}, f"{R}.pids.limit", "required"),
    ("blkio weight", {f"{R}.blockIO": {"weight": 5}}, f"{R}.blockIO.weight", "10"),
    (
        "blkio iops rate",
        {f"{R}.blockIO": {"throttleReadIOPSDevice": [{"major": 8, "minor": 0}]}},
        f"{R}.blockIO.throttleReadIOPSDevice[0].rate",
        "required",
    ),
    (
        "blkio weight device",
        {f"{R}.blockIO": {"weightDevice": [{"major": 8, "weight": 100}]}},
        f"{R}.blockIO.weightDevice[0].minor",
        "required",
    ),
    (
        "hugepage size",
        {f"{R}.hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
        f"{R}.hugepageLimits[0].pageSize",
        "page size",
    ),
    (
        "network priority",
        {f"{R}.network": {"priorities": [{"name": "eth0", "priority": -1}]}},
        f"{R}.network.priorities[0].priority",
        "between 0",
    ),
    (
        "network interface name",
        {f"{R}.network": {"priorities": [{"name": "a b", "priority": 1}]}},
        f"{R}.network.priorities[0].name",
        "interface name",
    ),
    (
        "rdma",
        {f"{R}.rdma": {"mlx5_1": {"hcaHandles": 3}}},
        f"{R}.rdma",
        "not supported",
    ),
    (
        "unified slash",
        {f"{R}.unified": {"../memory.max": "1"}},
        f'{R}.unified["../memory.max"]',
        "slashes",
    ),
    # linux.seccomp
    ("seccomp action missing", {"linux.seccomp": {}}, "linux.seccomp.defaultAction", "required"),
    (
        "seccomp action unknown",
        {"linux.seccomp": seccomp(defaultAction="SCMP_ACT_FOO")},
        "linux.seccomp.defaultAction",
        "unknown seccomp action",
    ),
    (
        "seccomp default notify",
        {"linux.seccomp": seccomp(defaultAction="SCMP_ACT_NOTIFY")},
        "linux.seccomp.defaultAction",
        "default",
    ),
    (
        "seccomp arch",
        {"linux.seccomp": seccomp(architectures=["SCMP_ARCH_Z80"])},
        "linux.seccomp.architectures[0]",
        "architecture",
    ),
    (
        "seccomp flag",
        {"linux.seccomp": seccomp(flags=["SECCOMP_FILTER_FLAG_FOO"])},
        "linux.seccomp.flags[0]",
        "flag",
    ),
    (
        "seccomp names empty",
        {"linux.seccomp": one_call(names=[])},
        "linux.seccomp.syscalls[0].names",
        "at least one",
    ),
    (
        "seccomp call action",
        {"linux.seccomp": one_call(action="ALLOW")},
        "linux.seccomp.syscalls[0].action",
        "unknown seccomp action",
    ),
    (
        "seccomp op",
        {"linux.seccomp": cmp_arg(op="EQ")},
        "linux.seccomp.syscalls[0].args[0].op",
        "operator",
    ),
    (
        "seccomp arg index",
        {"linux.seccomp": cmp_arg(index=6)},
        "linux.seccomp.syscalls[0].args[0].index",
        "between 0 and 5",
    ),
    (
        "seccomp arg value",
        {"linux.seccomp": cmp_arg(value=-1)},
        "linux.seccomp.syscalls[0].args[0].value",
        "integer",
    ),
    (
        "seccomp notify listener",
        {"linux.seccomp": one_call(action="SCMP_ACT_NOTIFY")},
        "linux.seccomp.syscalls[0].action",
        "listenerPath",
    ),
    (
        "seccomp errnoRet",
        {"linux.seccomp": one_call(action="SCMP_ACT_ERRNO", errnoRet=-1)},
        "linux.seccomp.syscalls[0].errnoRet",
        "integer",
    ),
]


@pytest.mark.parametrize(
    ("edits", "field", "word"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_validation_rule(edits: dict[str, object], field: str, word: str) -> None:
    config = default_spec()
    for path, value in edits.items():
        edit(config, path, value if value is DEL else copy.deepcopy(value))
    err = config_error(config)
    assert err.field == field, err
    assert word in err.message, err
    assert str(err) == f"{field}: {err.message}"


def test_config_must_be_an_object() -> None:
    err = config_error([1, 2])
    assert err.field == "" and "object" in err.message


# ----------------------------------------------------------------------------- load_spec


def write_bundle(tmp_path: Path, config: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_config_or_process_file_without_end_is_not_read_to_the_end(tmp_path: Path) -> None:
    """config.json -> /dev/zero was read until memory ran out (runc stops at the first
    byte); exec's --process and update's --resources files the same."""
    from runtime.manage import load_resources

    (tmp_path / "config.json").symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="config.json: larger than 64 MiB"):
        load_spec(tmp_path)
    with pytest.raises(ConfigError, match="resources: larger than 64 MiB"):
        load_resources("/dev/zero")


def test_load_spec_resolves_root_and_bind_sources(tmp_path: Path) -> None:
    config = default_spec()
    config["mounts"].append({"destination": "/data", "source": "vol", "options": ["rbind"]})
    config["mounts"].append({"destination": "/abs", "source": "/srv", "type": "bind"})
    spec = load_spec(write_bundle(tmp_path, config))
    assert spec.root is not None and spec.root.path == str(tmp_path / "rootfs")
    assert spec.mounts[-2].source == str(tmp_path / "vol")
    assert spec.mounts[-1].source == "/srv"
    assert spec.mounts[0].source == "proc"  # not a bind mount: left alone


def test_load_spec_keeps_an_absolute_root(tmp_path: Path) -> None:
    config = copy.deepcopy(podman_config())
    spec = load_spec(str(write_bundle(tmp_path, config)))
    assert spec.root is not None and spec.root.path == config["root"]["path"]


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec(tmp_path)
    assert info.value.field == "config.json"
    assert info.value.message == f"open {tmp_path / 'config.json'}: No such file or directory"


@pytest.mark.parametrize("text", ["{", '{"ociVersion": NaN}', "", "\xff"])
def test_load_spec_invalid_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_spec(tmp_path)
    assert info.value.field == "config.json"
    assert info.value.message.startswith("invalid JSON: ")


def test_load_spec_needs_an_object_and_a_root(tmp_path: Path) -> None:
    write_bundle(tmp_path, ["not", "an", "object"])
    with pytest.raises(ConfigError) as info:
        load_spec(tmp_path)
    assert info.value.field == "config.json"
    config = default_spec()
    del config["root"]
    write_bundle(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        load_spec(tmp_path)
    assert info.value.field == "root"


def test_load_spec_reports_field_errors(tmp_path: Path) -> None:
    config = default_spec()
    config["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS"
    with pytest.raises(ConfigError) as info:
        load_spec(write_bundle(tmp_path, config))
    assert info.value.field == "process.rlimits[0].type"


# ----------------------------------------------------------------------------- mount options


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), MountOptions()),
        (("defaults",), MountOptions()),
        (
            ("nosuid", "noexec", "strictatime", "mode=755", "size=65536k"),
            MountOptions(flags=MS_NOSUID | MS_NOEXEC | MS_STRICTATIME, data="mode=755,size=65536k"),
        ),
        (
            ("nosuid", "noexec", "nodev", "ro"),
            MountOptions(flags=MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, readonly=True),
        ),
        (
            ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
            MountOptions(
                flags=MS_NOSUID | MS_NOEXEC, data="newinstance,ptmxmode=0666,mode=0620,gid=5"
            ),
        ),
        (
            ("bind", "rprivate"),
            MountOptions(flags=MS_BIND, propagation=(MS_PRIVATE | MS_REC,), bind=True),
        ),
        (
            ("bind", "rprivate", "nosuid", "noexec", "nodev"),
            MountOptions(
                flags=MS_BIND | MS_NOSUID | MS_NOEXEC | MS_NODEV,
                propagation=(MS_PRIVATE | MS_REC,),
                bind=True,
            ),
        ),
        (
            ("rbind", "rprivate", "ro"),
            MountOptions(
                flags=MS_BIND | MS_REC | MS_RDONLY,
                propagation=(MS_PRIVATE | MS_REC,),
                bind=True,
                recursive_bind=True,
                readonly=True,
            ),
        ),
        (
            ("rw", "rprivate", "nosuid", "nodev", "tmpcopyup", "size=65536k"),
            MountOptions(
                flags=MS_NOSUID | MS_NODEV,
                propagation=(MS_PRIVATE | MS_REC,),
                data="size=65536k",
                tmpcopyup=True,
            ),
        ),
        (
            ("rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"),
            MountOptions(
                flags=MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY,
                propagation=(MS_PRIVATE | MS_REC,),
                readonly=True,
            ),
        ),
        (("ro", "rw", "noexec", "exec", "suid"), MountOptions()),
        (
            ("shared", "rslave", "unbindable"),
            MountOptions(
                propagation=(MS_SHARED, MS_SLAVE | MS_REC, PROPAGATION_FLAGS["unbindable"])
            ),
        ),
    ],
    ids=[
        "empty",
        "defaults",
        "dev-tmpfs",
        "sysfs",
        "devpts",
        "bind",
        "shm",
        "volume-ro",
        "tmpfs-tmpcopyup",
        "cgroup",
        "cleared",
        "propagation-order",
    ],
)
def test_parse_mount_options(options: tuple[str, ...], expected: MountOptions) -> None:
    assert parse_mount_options(options) == expected


def test_default_spec_mount_options() -> None:
    spec = parse_spec(default_spec())
    dev = parse_mount_options(spec.mounts[1].options)
    assert dev.flags == MS_NOSUID | MS_STRICTATIME and dev.data == "mode=755,size=65536k"
    assert parse_mount_options(spec.mounts[5].options).readonly
