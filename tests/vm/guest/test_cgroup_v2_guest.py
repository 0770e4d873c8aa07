"""corral-oci and the v2 cgroup driver on a unified cgroup2 host.

These run inside the test VM (tests/vm/test_cgroup_v2.py boots it and runs this file there),
where cgroup2 alone is mounted at /sys/fs/cgroup and owns every controller; elsewhere they skip.
The guest is 17-45x slower than the host, so each test does several checks on one container.
The test process sits in a leaf cgroup (/corral-vm.slice/tests.scope) as it would under
systemd; containers made with a relative cgroupsPath go next to it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.cgroups import V2Manager, manager_for, parse_proc_cgroup
from tests.conftest import REPO, Runtime
from tests.vm.guest import why_not_unified_v2

ROOT = "/sys/fs/cgroup"
MiB = 1 << 20


pytestmark = [
    pytest.mark.root,
    pytest.mark.cgroup_v2,
    pytest.mark.skipif(why_not_unified_v2() is not None, reason=why_not_unified_v2() or ""),
]


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _cgroup(runtime: Runtime, cid: str) -> Path:
    paths = json.loads((runtime.root / cid / "state.json").read_text())["cgroup_paths"]
    assert list(paths) == [""], paths  # one cgroup2 directory, no v1 hierarchy
    return Path(paths[""])


def _read(cg: Path, name: str) -> str:
    return (cg / name).read_text().strip()


def _keyed(cg: Path, name: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in _read(cg, name).splitlines())}


def _own_cgroup() -> str:
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return parse_proc_cgroup(f.read())[""]


def _running(runtime: Runtime, *args: str, resources: dict | None = None) -> str:
    cid, bundle = runtime.prepare(*args, resources=resources)
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    return cid


def _block_device() -> tuple[int, int] | None:
    """The VM's scratch virtio disk (or any real disk)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        major, minor = Path(f"/sys/block/{name}/dev").read_text().strip().split(":")
        return int(major), int(minor)
    return None


def test_the_v2_driver_is_chosen_and_relative_paths_go_next_to_our_cgroup() -> None:
    mgr = manager_for("c1", "c1", root=ROOT)
    assert isinstance(mgr, V2Manager)
    own = _own_cgroup()
    # As runc: our own cgroup has processes (us), so it cannot hand controllers to a child.
    parent = os.path.dirname(own) if own != "/" else "/"
    assert mgr.paths() == {"": os.path.normpath(f"{ROOT}{parent}/c1")}


def test_limits_stats_update_and_delete(runtime: Runtime) -> None:
    cpu = _read(Path(ROOT), "cpuset.cpus.effective").split(",")[-1].split("-")[-1]  # the last
    cid = _running(
        runtime,
        "corral-test",
        "sleep",
        "1000",
        resources={
            "memory": {"limit": 64 * MiB, "reservation": 16 * MiB, "swap": 64 * MiB},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": cpu, "mems": "0"},
            "pids": {"limit": 40},
        },
    )
    cg = _cgroup(runtime, cid)
    assert cg.parent == Path(ROOT + os.path.dirname(_own_cgroup()))
    pid = runtime.state(cid)["pid"]
    assert _read(cg, "cgroup.procs").split() == [str(pid)]
    assert _read(cg, "memory.max") == str(64 * MiB)
    assert _read(cg, "memory.low") == str(16 * MiB)
    assert _read(cg, "memory.swap.max") == "0"  # memory+swap == memory: no swap
    assert _read(cg, "cpu.max") == "50000 100000"
    assert _read(cg, "cpu.weight") == "20"  # shares 512 converted as runc does
    assert _read(cg, "pids.max") == "40"
    assert _read(cg, "cpuset.cpus") == cpu and _read(cg, "cpuset.mems") == "0"
    assert f"Cpus_allowed_list:\t{cpu}\n" in Path(f"/proc/{pid}/status").read_text()

    res = runtime.cli("events", "--stats", cid)
    assert res.rc == 0, res.err
    data = json.loads(res.out)["data"]
    assert data["memory"]["usage"]["limit"] == 64 * MiB
    assert data["memory"]["usage"]["usage"] > 0
    assert data["pids"] == {"current": 1, "limit": 40}
    assert data["cpu"]["usage"]["total"] > 0

    res = runtime.cli(
        "update", "--memory", "96m", "--pids-limit", "33", "--cpu-shares", "1024", cid
    )
    assert res.rc == 0, res.err
    assert _read(cg, "memory.max") == str(96 * MiB)
    assert _read(cg, "pids.max") == "33"
    assert _read(cg, "cpu.weight") == "39"

    runtime.cli("delete", "--force", cid, check=True)
    assert not cg.exists()
    assert cg.parent.is_dir()  # our parent: not the container's to remove


def test_memory_max_oom_kill_is_reported(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare(
        "corral-test", "alloc", "256", resources={"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}
    )
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    cg = _cgroup(runtime, cid)
    runtime.cli("start", cid, check=True)
    _wait_for(lambda: runtime.state(cid)["status"] == "stopped", "the OOM kill")
    assert _keyed(cg, "memory.events")["oom_kill"] >= 1
    assert runtime.state(cid)["oomKilled"] is True


def _lines(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> Iterator[str]:
    """``proc``'s stdout lines as they come; AssertionError when none comes in time."""
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode()
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "no output in time"
        chunk = os.read(fd, 65536)
        assert chunk, "the stream ended"
        buf += chunk


def test_events_streams_the_oom_kill(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare(
        "sh",
        "-c",
        "corral-test alloc 256; exec corral-test sleep 1000",
        resources={"memory": {"limit": 32 * MiB, "swap": 32 * MiB}},
    )
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    events = subprocess.Popen(
        [*cmd, "events", "--interval", "500ms", cid], stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        lines = _lines(events)
        # The first stats line means the OOM count is taken: only now may the OOM come.
        assert json.loads(next(lines))["type"] == "stats"
        runtime.cli("start", cid, check=True)
        kinds = set()
        while "oom" not in kinds:
            kinds.add(json.loads(next(lines))["type"])
    finally:
        events.kill()
        events.wait()
    assert runtime.state(cid)["status"] == "running"  # the shell lives on: only alloc died


def test_pids_max_stops_a_fork_bomb(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "forkbomb", "200", resources={"pids": {"limit": 16}})
    assert res.rc == 0, res.err
    forked = int(res.out.split("forked ")[1].split()[0])
    assert forked < 16
    assert "fail EAGAIN" in res.out


def test_cpu_max_throttles_a_busy_loop(runtime: Runtime) -> None:
    cid = _running(
        runtime,
        "sh",
        "-c",
        "while :; do :; done",
        resources={"cpu": {"quota": 5000, "period": 100000}},
    )
    cg = _cgroup(runtime, cid)
    _wait_for(lambda: _keyed(cg, "cpu.stat").get("nr_throttled", 0) > 0, "cpu.max throttling")
    res = runtime.cli("events", "--stats", cid)
    assert res.rc == 0, res.err
    assert json.loads(res.out)["data"]["cpu"]["throttling"]["throttledPeriods"] > 0


def test_io_weight_and_max(runtime: Runtime) -> None:
    device = _block_device()
    if device is None:
        pytest.skip("no block device in this VM: io.max needs one")
    major, minor = device
    cid = _running(
        runtime,
        "corral-test",
        "sleep",
        "1000",
        resources={
            "blockIO": {
                "weight": 500,
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": MiB}],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}],
            }
        },
    )
    cg = _cgroup(runtime, cid)
    if (cg / "io.bfq.weight").exists():
        assert _read(cg, "io.bfq.weight").splitlines()[0] == "default 500"
    else:
        # blkio weight [10, 1000] to io.weight [1, 10000] as runc: 1 + (500 - 10) * 9999 // 990
        assert _read(cg, "io.weight").splitlines()[0] == "default 4950"
    limits = _read(cg, "io.max").splitlines()
    assert f"{major}:{minor} rbps={MiB} wbps=max riops=max wiops=100" in limits


def test_pause_and_resume_use_cgroup_freeze(runtime: Runtime) -> None:
    cid = _running(runtime, "sh", "-c", "corral-test sleep 1000 & exec corral-test sleep 1000")
    cg = _cgroup(runtime, cid)
    assert runtime.cli("pause", cid).rc == 0
    assert runtime.state(cid)["status"] == "paused"
    assert _read(cg, "cgroup.freeze") == "1"
    assert _keyed(cg, "cgroup.events")["frozen"] == 1
    assert runtime.cli("resume", cid).rc == 0
    assert runtime.state(cid)["status"] == "running"
    assert _keyed(cg, "cgroup.events")["frozen"] == 0
    # A paused container can be force-deleted too: cgroup.kill, then the cgroup goes.
    assert runtime.cli("pause", cid).rc == 0
    runtime.cli("delete", "--force", cid, check=True)
    assert not cg.exists()


def test_cgroup_namespace_and_cgroup2_mount_inside(runtime: Runtime) -> None:
    res = runtime.run(
        "sh",
        "-c",
        "corral-test cgroup; echo --; cat /sys/fs/cgroup/cgroup.controllers; echo --; "
        "cat /sys/fs/cgroup/cgroup.procs; echo --; cat /proc/self/mounts",
        resources={"pids": {"limit": 20}},
    )
    assert res.rc == 0, res.err
    own, controllers, procs, mounts = res.out.split("--\n")
    assert own.strip() == "0::/"  # the container's cgroup is its namespace's root
    assert {"memory", "pids"} <= set(controllers.split())
    assert "1" in procs.split()  # the container's init, by its own pid namespace's number
    assert any(line.split()[1:3] == ["/sys/fs/cgroup", "cgroup2"] for line in mounts.splitlines())


def test_without_a_cgroup_namespace_the_mount_shows_only_the_container(runtime: Runtime) -> None:
    cid = runtime.new_id()
    spec = runtime.spec("sh", "-c", "cat /proc/self/cgroup; echo --; ls /sys/fs/cgroup")
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "cgroup"]
    spec["linux"]["cgroupsPath"] = runtime.cgroup_path(cid)
    res = runtime.cli("run", "--bundle", str(runtime.bundle(spec, cid)), cid)
    assert res.rc == 0, res.err
    own, listing = res.out.split("--\n")
    assert own.strip().startswith("0::/") and own.strip().endswith(cid)
    # Not the hierarchy's root (which has no cgroup.type) with our slice in it: the
    # container's own cgroup, as runc's bind mount shows it.
    names = listing.split()
    assert "corral-vm.slice" not in names and "cgroup.type" in names, listing
