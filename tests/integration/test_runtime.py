"""corral-oci against the real kernel: namespaces, mounts, cgroups, lifecycle, exit codes.

Every test drives the CLI as a separate process (as podman does) with a state root and cgroups
of its own; the ``runtime`` fixture force-deletes what is left and fails the test on leftovers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral_common import hostsys
from tests.conftest import REPO, Runtime

pytestmark = pytest.mark.root

MiB = 1 << 20


def _mounts(runtime: Runtime) -> list[str]:
    """The host's mount points where this test's runtime could leave one: its state root, its
    temporary directories and the rootfs (other tests, in parallel, mount elsewhere)."""
    own = [str(d) for d in (runtime.root, runtime.tmp, runtime.rootfs)]
    return sorted(
        m.mountpoint
        for m in hostsys.mountinfo()
        if any(m.mountpoint == d or m.mountpoint.startswith(d + "/") for d in own)
    )


def _wait_for(pred, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- isolation


def test_run_true_exits_zero(runtime: Runtime) -> None:
    res = runtime.run("true")
    assert res.rc == 0, res.err
    assert res.err == ""


def test_exit_code_passes_through(runtime: Runtime) -> None:
    assert runtime.run("corral-test", "exit", "3").rc == 3
    assert runtime.run("sh", "-c", "exit 42").rc == 42


def test_process_is_pid_1_with_its_own_hostname(runtime: Runtime) -> None:
    res = runtime.run("sh", "-c", "corral-test hostname; exec corral-test pid")
    assert res.rc == 0, res.err
    hostname, pid = res.out.split()
    assert pid == "1"
    assert hostname == "corral"
    assert os.uname().nodename != "corral"


def test_root_is_the_bundle_rootfs(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "ls", "/")
    assert res.rc == 0, res.err
    seen = set(res.out.split())
    assert seen == {p.name for p in runtime.rootfs.iterdir()}
    # Nothing of the host: /work holds this checkout on the host only.
    res = runtime.run("corral-test", "stat", str(REPO))
    assert res.rc == 1
    assert "No such file or directory" in res.err


def test_root_readonly_and_tmpfs_writable(runtime: Runtime) -> None:
    res = runtime.run("sh", "-c", "touch /x 2>/dev/null && echo wrote; touch /tmp/y && echo tmp")
    assert res.rc == 0, res.err
    assert res.out.split() == ["tmp"]


def test_new_network_namespace_has_only_lo_up(runtime: Runtime) -> None:
    res = runtime.run("sh", "-c", "corral-test netdevs; corral-test ifup lo")
    assert res.rc == 0, res.err
    assert res.out.split() == ["lo", "up"]


def test_mounts_inside_and_host_untouched(runtime: Runtime) -> None:
    before = _mounts(runtime)
    res = runtime.run("corral-test", "mounts")
    assert res.rc == 0, res.err
    inside = res.out.split()
    assert inside[0] == "/"
    for want in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/tmp"):
        assert want in inside
    assert _mounts(runtime) == before


def test_dev_has_default_nodes_and_symlinks(runtime: Runtime) -> None:
    res = runtime.run(
        "sh",
        "-c",
        "for n in null zero full random urandom tty; do corral-test stat /dev/$n; done;"
        "corral-test readlink /dev/fd; corral-test readlink /dev/ptmx;"
        "echo hi > /dev/null && echo null-ok",
    )
    assert res.rc == 0, res.err
    lines = res.out.splitlines()
    assert all("type=c" in line and "mode=00666" in line for line in lines[:6]), lines
    assert lines[6:] == ["/proc/self/fd", "pts/ptmx", "null-ok"]


def test_masked_and_readonly_paths(runtime: Runtime) -> None:
    res = runtime.run(
        "sh",
        "-c",
        "corral-test cat /proc/keys | wc -c; corral-test open-rw /proc/sys/kernel/hostname",
    )
    assert res.rc == 0, res.err
    size, probe = res.out.split()
    assert size == "0"
    assert probe == "EROFS"


# ---------------------------------------------------------------- process


def test_env_cwd_user_groups_umask_rlimit(runtime: Runtime) -> None:
    res = runtime.run(
        "sh",
        "-c",
        "corral-test env FOO; corral-test cwd; corral-test ids; corral-test umask;"
        "corral-test rlimit NOFILE",
        env=["PATH=/bin", "FOO=bar baz"],
        cwd="/home/tester",
        user={"uid": 1000, "gid": 1000, "additionalGids": [2000], "umask": 0o027},
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}],
    )
    assert res.rc == 0, res.err
    assert res.out.splitlines() == [
        "bar baz",
        "/home/tester",
        "uid=1000 gid=1000 euid=1000 egid=1000 groups=2000",
        "0027",
        "512 1000",
    ]


def test_cwd_created_when_missing(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "cwd", cwd="/tmp/new/dir")
    assert res.rc == 0, res.err
    assert res.out.strip() == "/tmp/new/dir"


def test_stdio_passes_through(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("sh", "-c", "cat; echo to-stderr >&2")
    res = runtime.cli("run", "--bundle", str(bundle), cid, input="hello from stdin\n")
    assert res.rc == 0, res.err
    assert res.out == "hello from stdin\n"
    assert res.err == "to-stderr\n"


def test_only_stdio_fds_reach_the_container(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "fds")
    assert res.rc == 0, res.err
    assert res.out.split() == ["0", "1", "2"]


def test_missing_executable_fails_at_create(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("no-such-command")
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "executable file not found in $PATH" in res.err
    assert res.err.startswith(f"corral-oci: create {cid}:")
    assert not (runtime.root / cid).exists()

    cid, bundle = runtime.prepare("/bin/no-such-file")
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "no such file or directory" in res.err.lower()
    assert not (runtime.root / cid).exists()


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_create_start_kill_delete(runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cid, bundle = runtime.prepare("sh", "-c", "echo started > /out/mark; exec corral-test sigwait")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append(
        {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    pid_file = tmp_path / "pid"

    res = runtime.cli("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid)
    assert res.rc == 0, res.err
    st = runtime.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == str(bundle)
    assert st["pid"] == int(pid_file.read_text()) > 0
    # create runs no user code: the process is still the runtime's copy (not sh), waiting
    # on the exec fifo, until start
    assert os.readlink(f"/proc/{st['pid']}/exe") == os.path.realpath(sys.executable)
    assert (runtime.root / cid / "exec.fifo").exists()
    assert not (out / "mark").exists()

    listed = runtime.cli("list", "--format", "json", check=True)
    assert [c["id"] for c in json.loads(listed.out)] == [cid]

    assert runtime.cli("start", cid).rc == 0
    _wait_for(lambda: (out / "mark").exists(), what="the container to run")
    assert runtime.state(cid)["status"] == "running"

    again = runtime.cli("start", cid)
    assert again.rc != 0 and "running" in again.err

    busy = runtime.cli("delete", cid)
    assert busy.rc != 0 and "running" in busy.err

    assert runtime.cli("kill", cid, "KILL").rc == 0
    _wait_for(lambda: runtime.state(cid)["status"] == "stopped", what="stopped")
    assert runtime.state(cid)["pid"] == 0

    assert runtime.cli("delete", cid).rc == 0
    gone = runtime.cli("state", cid)
    assert gone.rc != 0 and "does not exist" in gone.err


def test_delete_force_kills_running_and_accepts_unknown(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    pid = runtime.state(cid)["pid"]
    runtime.cli("start", cid, check=True)
    assert runtime.cli("delete", "--force", cid).rc == 0
    assert not os.path.exists(f"/proc/{pid}") or _zombie_or_gone(pid)
    assert runtime.cli("delete", "--force", "never-existed").rc == 0
    assert runtime.cli("delete", "never-existed").rc != 0


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_run_returns_128_plus_signal(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    proc = subprocess.Popen(
        [*cmd, "run", "--bundle", str(bundle), cid], cwd=REPO, stdin=subprocess.DEVNULL
    )
    try:
        _wait_for(
            lambda: runtime.cli("state", cid).rc == 0 and runtime.state(cid)["status"] == "running",
            what="running",
        )
        runtime.cli("kill", cid, "KILL", check=True)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_forwards_signals(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sigwait")
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    proc = subprocess.Popen(
        [*cmd, "run", "--bundle", str(bundle), cid],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert "SIGTERM" in out or str(int(signal.SIGTERM)) in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_state_errors(runtime: Runtime) -> None:
    res = runtime.cli("state", "nope")
    assert res.rc != 0 and "nope" in res.err
    res = runtime.cli("start", "nope")
    assert res.rc != 0
    res = runtime.cli("kill", "nope")
    assert res.rc != 0
    cid, bundle = runtime.prepare("true")
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    dup = runtime.cli("create", "--bundle", str(bundle), cid)
    assert dup.rc != 0 and "exists" in dup.err
    bad = runtime.cli("create", "--bundle", str(bundle), "bad/id")
    assert bad.rc != 0


def test_bad_config_names_the_field_and_leaves_nothing(runtime: Runtime) -> None:
    spec = runtime.spec("true")
    spec["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    bundle = runtime.bundle(spec)
    cid = runtime.new_id()
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "process.rlimits[0].type" in res.err
    assert not (runtime.root / cid).exists()


def test_bad_rootfs_leaves_nothing(runtime: Runtime, tmp_path: Path) -> None:
    before = _mounts(runtime)
    cid, bundle = runtime.prepare("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(tmp_path / "missing-rootfs")}
    (bundle / "config.json").write_text(json.dumps(spec))
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "missing-rootfs" in res.err
    assert not (runtime.root / cid).exists()
    assert _mounts(runtime) == before


def test_spec_writes_a_loadable_config(runtime: Runtime, tmp_path: Path) -> None:
    from runtime.config import load_spec

    for flag, name in (([], "rootful"), (["--rootless"], "rootless")):
        d = tmp_path / name
        d.mkdir()
        res = runtime.cli("spec", "--bundle", str(d), *flag)
        assert res.rc == 0, res.err
        spec = load_spec(str(d))
        assert spec.process is not None and spec.process.args == ("sh",)
        again = runtime.cli("spec", "--bundle", str(d), *flag)
        assert again.rc != 0 and "exists" in again.err
        raw = json.loads((d / "config.json").read_text())
        kinds = {ns["type"] for ns in raw["linux"]["namespaces"]}
        if name == "rootful":
            assert "user" not in kinds and "network" in kinds
            assert "uidMappings" not in raw["linux"]
        else:
            # A user namespace mapping root to the caller, no network namespace (no one to
            # set it up) and no cgroup resources (no delegation to write them).
            assert "user" in kinds and "network" not in kinds and "cgroup" not in kinds
            mapping = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
            assert raw["linux"]["uidMappings"] == mapping
            assert "resources" not in raw["linux"]
            assert "/sys/fs/cgroup" not in [m["destination"] for m in raw["mounts"]]


# ---------------------------------------------------------------- cgroups


def _cgroup_file(runtime: Runtime, cid: str, controller: str, name: str) -> str:
    paths = json.loads((runtime.root / cid / "state.json").read_text())["cgroup_paths"]
    return Path(paths[controller], name).read_text().strip()


def test_resources_are_written(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare(
        "true",
        resources={
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 40},
        },
    )
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    assert _cgroup_file(runtime, cid, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert _cgroup_file(runtime, cid, "memory", "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert _cgroup_file(runtime, cid, "cpu", "cpu.shares") == "512"
    assert _cgroup_file(runtime, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _cgroup_file(runtime, cid, "cpu", "cpu.cfs_period_us") == "100000"
    assert _cgroup_file(runtime, cid, "pids", "pids.max") == "40"
    pid = runtime.state(cid)["pid"]
    procs = _cgroup_file(runtime, cid, "memory", "cgroup.procs").split()
    assert str(pid) in procs


def test_pids_limit_stops_a_fork_bomb(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "forkbomb", "200", resources={"pids": {"limit": 16}})
    assert res.rc == 0, res.err
    forked = int(res.out.split("forked ")[1].split()[0])
    assert forked < 16
    assert "fail EAGAIN" in res.out


def test_memory_limit_oom_kill_is_reported(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare(
        "corral-test",
        "alloc",
        "256",
        resources={"memory": {"limit": 32 * MiB, "swap": 32 * MiB}},
    )
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    runtime.cli("start", cid, check=True)
    _wait_for(lambda: runtime.state(cid)["status"] == "stopped", what="the OOM kill")
    assert runtime.state(cid)["oomKilled"] is True


def test_pause_and_resume(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    runtime.cli("start", cid, check=True)
    assert runtime.cli("pause", cid).rc == 0
    assert runtime.state(cid)["status"] == "paused"
    assert runtime.cli("resume", cid).rc == 0
    assert runtime.state(cid)["status"] == "running"


def test_delete_removes_cgroups(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true", resources={"pids": {"limit": 10}})
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    paths = json.loads((runtime.root / cid / "state.json").read_text())["cgroup_paths"]
    assert all(os.path.isdir(p) for p in paths.values())
    runtime.cli("delete", "--force", cid, check=True)
    assert not any(os.path.exists(p) for p in paths.values())
