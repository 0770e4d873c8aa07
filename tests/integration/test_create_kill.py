"""kill -9 of `corral-oci create` anywhere in its window (issue #24, section 4).

Whatever the moment, afterwards `state`, `list`, a new `create` of the same id and `delete
--force` agree and do not hang, no process of the half-made container is left (an init that
was never recorded dies with its creator), and `delete --force` removes every trace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO, Runtime, leftover_cgroups

if TYPE_CHECKING:
    from runtime.cgroups import CgroupManager

pytestmark = pytest.mark.root

# Spread over create's run (about 50-150 ms here): before the state directory, around the
# spawn, between READY and the commit, after it.
DELAYS_MS = [0, 5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200]


def _procs_naming(text: str) -> set[int]:
    """Processes whose command line holds ``text`` (our own state root: only ours)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if text in cmd and not zombie:
            found.add(int(entry))
    return found


def _kill_create_after(runtime: Runtime, cid: str, bundle: Path, delay: float) -> None:
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    p = subprocess.Popen(
        [*cmd, "create", "--bundle", str(bundle), cid],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def _check_consistent(runtime: Runtime, cid: str) -> None:
    root = str(runtime.root)
    # an init nobody recorded is gone at once (parent-death signal): give the kernel a moment
    deadline = time.monotonic() + 5
    while True:
        state = runtime.cli("state", cid, timeout=10)
        listed = [c["id"] for c in json.loads(runtime.cli("list", "-f", "json").out or "[]")]
        pid = json.loads(state.out)["pid"] if state.rc == 0 else 0
        strays = _procs_naming(root) - {pid}
        if not strays or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not strays, f"processes of a half-made container survive: {strays}"
    if state.rc == 0:
        assert cid in listed
        assert json.loads(state.out)["status"] in ("created", "stopped"), state.out
        again = runtime.cli("create", "--bundle", str(runtime.tmp / cid), cid, timeout=10)
        assert again.rc != 0 and "exists" in again.err, again
    else:
        assert "does not exist" in state.err, state.err
        assert cid not in listed
        # nothing trips a new create of the same id
        runtime.cli("create", "--bundle", str(runtime.tmp / cid), cid, timeout=10, check=True)
        assert runtime.state(cid)["status"] == "created"
    res = runtime.cli("delete", "--force", cid, timeout=10)
    assert res.rc == 0, res.err
    assert not (runtime.root / cid).exists()
    assert not leftover_cgroups(runtime.cgroup_path(cid)), leftover_cgroups(
        runtime.cgroup_path(cid)
    )
    assert not _procs_naming(root)


@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_kill_create_leaves_nothing_to_trip_over(runtime: Runtime, delay_ms: int) -> None:
    cid, bundle = runtime.prepare("true")
    _kill_create_after(runtime, cid, bundle, delay_ms / 1000)
    _check_consistent(runtime, cid)


def _half_made(runtime: Runtime, cid: str) -> CgroupManager:
    """What a create killed after its cgroups but before its commit leaves: the state
    directory with creating.json and the fifo, and the cgroups (returned)."""
    from runtime import cgroups
    from runtime.state import StateDir

    sd = StateDir(str(runtime.root), cid)
    mgr = cgroups.manager_for(runtime.cgroup_path(cid), cid)
    sd.make()
    sd.record_creating(mgr.paths())
    sd.make_fifo()
    mgr.create()
    return mgr


def test_delete_force_undoes_a_half_made_container(runtime: Runtime) -> None:
    """The debris of a create killed after its cgroups but before its commit, made by hand:
    `delete --force` removes the cgroups and what runs in them, state/list ignore it."""
    cid, bundle = runtime.prepare("true")
    mgr = _half_made(runtime, cid)
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        mgr.add_pid(sleeper.pid)
        assert runtime.cli("state", cid).rc != 0
        assert cid not in runtime.cli("list").out
        res = runtime.cli("delete", "--force", cid, timeout=10)
        assert res.rc == 0, res.err
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert not (runtime.root / cid).exists()
    assert not leftover_cgroups(runtime.cgroup_path(cid))


def test_create_of_a_half_made_id_takes_its_place(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true")
    _half_made(runtime, cid)
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    assert runtime.state(cid)["status"] == "created"


def test_the_init_holds_no_lock_of_the_runtime(runtime: Runtime) -> None:
    """The created init keeps no fd of the runtime's but the ones it needs: none that can
    hold the state directory's flock (a fork shares the runtime's open file description, so
    a killed create would leave `delete --force` blocked behind it). It keeps an O_PATH fd
    of the directory, to wait on the fifo, which cannot hold a lock."""
    cid, bundle = runtime.prepare("true")
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    pid = runtime.state(cid)["pid"]
    kept = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) <= 2:
            continue
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            flags = int(next(ln for ln in f if ln.startswith("flags:")).split()[1], 8)
        kept[os.readlink(f"/proc/{pid}/fd/{fd}")] = flags
    state_dir = os.path.realpath(runtime.root / cid)
    # the O_PATH dir fd and corral-exec's sealed memfd, nothing else
    assert set(kept) <= {state_dir} | {k for k in kept if k.startswith("/memfd:corral-exec")}, kept
    assert kept.get(state_dir, 0o10000000) & 0o10000000, kept  # O_PATH
