"""ps, events, update and features through the corral-oci CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Runtime

pytestmark = pytest.mark.root

MiB = 1 << 20


def _running(runtime: Runtime, *args: str) -> str:
    cid, bundle = runtime.prepare(*args)
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    return cid


def _cgroup(runtime: Runtime, cid: str, controller: str) -> Path:
    paths = json.loads((runtime.root / cid / "state.json").read_text())["cgroup_paths"]
    return Path(paths[controller])


def test_ps_lists_the_container_processes(runtime: Runtime) -> None:
    cid = _running(runtime, "sh", "-c", "corral-test sleep 1000 & exec corral-test sleep 1000")
    pid = runtime.state(cid)["pid"]
    res = runtime.cli("ps", "--format", "json", cid)
    assert res.rc == 0, res.err
    pids = json.loads(res.out)
    assert pid in pids
    assert len(pids) == 2
    table = runtime.cli("ps", cid)
    assert table.rc == 0, table.err
    lines = table.out.splitlines()
    assert "PID" in lines[0].split()
    assert len(lines) == 3 and all("corral-test sleep" in line for line in lines[1:])


def test_events_stats_shape(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    res = runtime.cli("events", "--stats", cid)
    assert res.rc == 0, res.err
    ev = json.loads(res.out)
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["pids"]["current"] == 1
    assert ev["data"]["memory"]["usage"]["usage"] > 0
    assert ev["data"]["cpu"]["usage"]["total"] > 0


def test_events_stream_ends_when_the_container_exits(runtime: Runtime) -> None:
    cid = _running(
        runtime, "corral-test", "sleep", "3"
    )  # running when events starts, even when loaded
    res = runtime.cli("events", "--interval", "200ms", cid, timeout=30)
    assert res.rc == 0, res.err
    events = [json.loads(line) for line in res.out.splitlines()]
    assert events and all(e["type"] == "stats" for e in events)


def test_update_flags_and_resources_file(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    res = runtime.cli("update", "--memory", "96m", "--pids-limit", "33", "--cpu-shares", "256", cid)
    assert res.rc == 0, res.err
    assert (_cgroup(runtime, cid, "memory") / "memory.limit_in_bytes").read_text().strip() == str(
        96 * MiB
    )
    assert (_cgroup(runtime, cid, "pids") / "pids.max").read_text().strip() == "33"
    assert (_cgroup(runtime, cid, "cpu") / "cpu.shares").read_text().strip() == "256"

    f = runtime.tmp / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 44}, "cpu": {"quota": 20000, "period": 100000}}))
    res = runtime.cli("update", "--resources", str(f), cid)
    assert res.rc == 0, res.err
    assert (_cgroup(runtime, cid, "pids") / "pids.max").read_text().strip() == "44"
    assert (_cgroup(runtime, cid, "cpu") / "cpu.cfs_quota_us").read_text().strip() == "20000"

    f.write_text(json.dumps({"pids": {"limit": "many"}}))
    bad = runtime.cli("update", "--resources", str(f), cid)
    assert bad.rc != 0 and "pids.limit" in bad.err


def test_update_enforced_inside(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    runtime.cli("update", "--pids-limit", "5", cid, check=True)
    res = runtime.cli("exec", cid, "corral-test", "forkbomb", "50")
    assert res.rc == 0, res.err
    assert "fail EAGAIN" in res.out
    assert int(res.out.split("forked ")[1].split()[0]) < 5


def test_features_document(runtime: Runtime) -> None:
    res = runtime.cli("features")
    assert res.rc == 0, res.err
    doc = json.loads(res.out)
    assert doc["ociVersionMin"] == "1.0.0"
    assert "pid" in doc["linux"]["namespaces"]
    assert "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]
    assert "rbind" in doc["mountOptions"]
    assert doc["linux"]["cgroup"]["systemd"] is False


def test_stopped_container_has_no_processes(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true")
    runtime.cli("run", "--keep", "--bundle", str(bundle), cid, check=True)
    # As runc: not an error, just no processes.
    res = runtime.cli("ps", "--format", "json", cid)
    assert res.rc == 0 and json.loads(res.out) == []
    assert os.path.isdir(runtime.root / cid)
