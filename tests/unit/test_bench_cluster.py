"""The cluster suite's pure parts, without root: the per-pod startup from the API's
timestamps, the watch recorder, and the tables beside the issue's goals (met, missed, not
judged with --quick, failover skipped). Every figure here is made up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

from bench import cli, suites
from bench import cluster as bc
from bench.model import Status, SuiteResult
from testkit.wait import until

CP = bc.ClusterParams(replicas=4, churn=8, wave=4, idle_pause=0, timeout=10, failovers=1)


def _pod(created: str, ready_at: str | None) -> dict[str, Any]:
    conds = (
        [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
    )
    return {"metadata": {"creationTimestamp": created}, "status": {"conditions": conds}}


def test_api_startup_is_creation_to_ready_transition() -> None:
    assert bc.api_startup_s(_pod("2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z")) == 2.0
    assert bc.api_startup_s(_pod("2026-01-01T00:00:00Z", None)) is None
    assert bc.is_ready(_pod("x", "y")) and not bc.is_ready(_pod("x", None))


def _figures(p99: float, server_kib: int, agent_kib: int) -> dict[str, Any]:
    agents = ("node-1", "node-2")
    return {
        "idle_kib": {"server": server_kib, **dict.fromkeys(agents, agent_kib)},
        "startup_total_s": 3.0,
        "startup_watch_s": [0.5, 0.6, 0.7, p99],
        "startup_api_s": [0.0, 1.0, 1.0, 1.0],
        "startup_nodes": 2,
        "churn_s": 4.0,
        "churn_cpu_s": {"server": 0.8, **dict.fromkeys(agents, 0.4)},
        "churn_peak_kib": {"server": 90_000, **dict.fromkeys(agents, 60_000)},
        "churn_pods_per_node": {"node-1": 5, "node-2": 3},
    }


def _rows(table: Any) -> dict[str, tuple[str, ...]]:
    return {r[0]: r[1:] for r in table.rows}


def test_goals_met_and_missed() -> None:
    # 2 s p99 (goal 1 s), 50 000 KiB = 51.2 MB server (goal 100), 45 000 KiB = 46.1 MB agent (40)
    fo = {"lease_s": [12.0, 14.0, 13.0], "bound_s": [13.0, 16.5, 14.0]}
    startup, churn, idle, failover = bc.tables(_figures(2.0, 50_000, 45_000), fo, "", CP)
    assert _rows(startup)["per pod p99 (watch: created -> Ready)"] == (
        "2.000 s",
        "<= 1 s: missed (2.00x)",
    )
    assert _rows(idle)["corral server"] == ("48.8 MiB", "<= 100 MB: met (0.51x)")
    assert _rows(idle)["corral agent (node-1)"][1] == "<= 40 MB: missed (1.15x)"
    rows = _rows(failover)
    # the median and the worst round are shown; the worst is judged
    lease = rows["kill -> the survivor holds the kube-scheduler Lease (median / worst of 3)"]
    assert lease[0] == "13.0 s / 14.0 s" and lease[1].startswith("<= 15 s: met")
    bound = rows["kill -> a pod created after the kill is bound (median / worst of 3)"]
    assert bound[0] == "14.0 s / 16.5 s" and bound[1].startswith("<= 15 s: missed")
    c = _rows(churn)
    assert c["wall"] == ("4.0 s", "2.0 pods/s")
    assert c["server CPU"] == ("0.8 s", "100.0 ms/pod")  # 8 pods in all
    assert c["node-1 CPU (5 pods ran there)"] == ("0.4 s", "80.0 ms/pod")
    assert c["node-2 peak RSS"] == ("58.6 MiB", "")


def test_quick_judges_nothing_and_a_missing_etcd_is_said() -> None:
    startup, _, idle, failover = bc.tables(
        _figures(0.1, 1, 1), None, "etcd not found", CP, judge=False
    )
    cells = [c for t in (startup, idle) for r in t.rows for c in r]
    assert not any("met" in c or "missed" in c for c in cells)
    assert failover.rows == (("failover", "skipped", "etcd not found"),)


def test_a_suite_with_its_goals_needs_no_peer_to_publish() -> None:
    startup, churn, idle, failover = bc.tables(
        _figures(0.1, 1, 1), {"lease_s": [1.0], "bound_s": [1.0]}, "", CP
    )
    rep = SuiteResult("cluster", "", Status.OK, tables=(startup, churn, idle, failover))
    assert cli.missing_peers(_report(rep)) == []
    assert "cluster" in suites.ORDER and suites.select(["cluster"]) == ["cluster"]


def _report(suite: SuiteResult) -> Any:
    from bench.model import Report

    fields = Report.__dataclass_fields__
    kw: dict[str, Any] = {k: None for k in fields}
    kw["suites"] = (suite,)
    return Report(**kw)


def test_the_watch_recorder_waits_for_its_condition() -> None:
    async def main() -> None:
        w = bc.PodWatch()

        async def later() -> None:
            await asyncio.sleep(0.05)
            w.ready["p"] = 1.0
            w.changed.set()

        task = asyncio.create_task(later())
        await w.until("p Ready", lambda: "p" in w.ready, 5)
        await task
        try:
            await w.until("never", lambda: False, 0.1)
        except TimeoutError as e:
            assert "never not reached" in str(e)
        else:
            raise AssertionError("no timeout")

    asyncio.run(main())


def test_the_idle_table_counts_children_and_judges_the_whole_tree() -> None:
    mib = 1024  # KiB
    res = {
        "server": {"tree_kib": 80 * mib, "children": [], "VmRSS": 80 * mib, "RssAnon": 50 * mib,
                   "RssFile": 30 * mib, "Threads": 9},
        # 36 MiB of its own, 4 MiB in a child: 40 MiB = 41.9 MB, over the 40 MB goal
        "node-1": {"tree_kib": 40 * mib, "children": [4242], "VmRSS": 36 * mib,
                   "RssAnon": 24 * mib, "RssFile": 12 * mib, "Threads": 4},
    }  # fmt: skip
    t = bc.idle_table(res, 10.0, judge=True)
    rows = {r[0]: r for r in t.rows}
    assert rows["corral agent (node-1)"][1] == "40.0 MiB"
    assert rows["corral agent (node-1)"][5] == "1"
    assert rows["corral agent (node-1)"][6].startswith("<= 40 MB: missed")
    assert rows["corral server"][6].startswith("<= 100 MB: met")
    assert "not judged" in bc.idle_table(res, 1.0, judge=False).rows[0][6]


def test_a_process_tree_is_read_from_proc() -> None:
    # a child that keeps a grandchild: both are below it, and below this process
    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '30'])"]
    )
    try:
        kids = until("a grandchild", lambda: bc.descendants(child.pid), 10.0, 0.05)
        total, listed = bc.tree_rss_kib(child.pid)
        assert listed == kids and total > bc._rss_kib(child.pid)
        assert child.pid in bc.descendants(os.getpid())
    finally:
        for pid in bc.descendants(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()
