"""The logic of the pod and density suites, without root: percentiles, /proc parsing, the
start-time definition, interleaving and bursts with fake runners, tables, the report and JSON.
No timing is judged: every figure here is made up."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence

import pytest

from bench import cli, density, memory, pod, podenv, report, stats
from bench.model import Latencies, LatencyCase, Report, Status, SuiteResult, Table, to_json

ROLLUP = """\
00400000-7ffc704b0000 ---p 00000000 00:00 0                              [rollup]
Rss:                 716 kB
Pss:                 385 kB
Pss_Dirty:            72 kB
Pss_Anon:             72 kB
Shared_Clean:          4 kB
Private_Dirty:        72 kB
Swap:                  0 kB
"""

MEMINFO = """\
MemTotal:       24684252 kB
MemFree:        23582564 kB
MemAvailable:   24196928 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_percentile_is_nearest_rank() -> None:
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    values = [float(i) for i in range(1, 101)]
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([float(i) for i in range(20)], 99) == 19.0  # N=20: the max
    p = stats.percentiles([3.0, 1.0, 2.0])
    assert (p.p50, p.p99, p.min, p.max, p.n) == (2.0, 3.0, 1.0, 3.0, 3)


def test_percentile_refuses_nothing_and_bad_q() -> None:
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 0)


def test_smaps_rollup_and_meminfo() -> None:
    assert memory.parse_rollup(ROLLUP) == memory.Rollup(rss_kib=716, pss_kib=385)
    fields = memory.parse_kib_fields(MEMINFO)
    assert fields["HugePages_Total"] == 0 and fields["Hugepagesize"] == 2048
    assert memory.used_kib(MEMINFO) == 24684252 - 24196928
    with pytest.raises(ValueError, match="Pss"):
        memory.parse_rollup("Rss: 1 kB\n")


def test_rfc3339_with_nanoseconds() -> None:
    t = pod.parse_rfc3339("2026-11-25T13:10:38.639975325Z")
    assert t == pytest.approx(1795612238.639975325, abs=1e-6)
    assert pod.parse_rfc3339("1970-01-01T00:00:01Z") == 1.0
    assert pod.parse_rfc3339("1970-01-01T00:00:01.5Z") == 1.5
    with pytest.raises(ValueError):
        pod.parse_rfc3339("2026-11-25T13:10:38+01:00")


def test_all_running_at_is_the_last_start_once_all_run() -> None:
    a, b = "1970-01-01T00:00:02.25Z", "1970-01-01T00:00:01Z"
    assert pod.all_running_at([("Running", a), ("Running", b)]) == 2.25
    assert pod.all_running_at([("Running", a), ("Waiting", None)]) is None
    assert pod.all_running_at([("Running", None)]) is None
    assert pod.all_running_at([]) is None


def test_printed_uid_skips_other_lines() -> None:
    uid = "0123456789abcdef0123456789abcdef"
    assert pod.printed_uid(f"{uid}\n") == uid
    assert pod.printed_uid(f"warning: x\n{uid}\nsome note\n") == uid
    assert pod.printed_uid("corral: pod run p: failed\n") is None


class FakeRunner:
    """Latency ``delay`` per pod; records what it was asked to do."""

    def __init__(self, label: str, delay: float, fail_on: str = "") -> None:
        self.label = label
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[str] = []
        self.removed: list[str] = []
        self.lock = threading.Lock()

    def start(self, name: str, t0: float | None = None) -> pod.Started:
        with self.lock:
            self.calls.append(name)
        if name == self.fail_on:
            raise pod.PodStartFailed(f"{name} failed")
        base = 100.0 if t0 is None else t0
        return pod.Started(name, base, uid=name, end=base + self.delay)

    def wait_running(self, started: Sequence[pod.Started]) -> list[float]:
        return [s.end for s in started if s.end is not None]

    def remove(self, started: pod.Started) -> None:
        with self.lock:
            self.removed.append(started.name)


def test_one_pod_measures_and_removes() -> None:
    r = FakeRunner("a", 0.25)
    assert pod.one_pod(r, "p0") == 0.25
    assert r.removed == ["p0"]


def test_collect_warms_up_then_interleaves() -> None:
    order: list[str] = []
    runners = [FakeRunner("a", 1.0), FakeRunner("b", 2.0)]

    def sample(r: pod.Runner, i: int) -> list[float]:
        order.append(f"{r.label}{i}")
        return [pod.one_pod(r, f"{r.label}{i}")]

    out = pod.collect(runners, rounds=3, warmup=1, sample=sample)
    assert order == ["a0", "b0", "a1", "b1", "b2", "a2", "a3", "b3"]
    assert out == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}  # warm-ups are not kept


def test_burst_measures_from_the_handover_and_removes_all() -> None:
    r = FakeRunner("a", 0.5)
    lat = pod.burst(r, ["x", "y", "z"])
    assert lat == [pytest.approx(0.5)] * 3
    assert sorted(r.removed) == ["x", "y", "z"]


def test_burst_failure_removes_the_started_ones_and_raises() -> None:
    r = FakeRunner("a", 0.5, fail_on="y")
    with pytest.raises(pod.PodStartFailed, match="y failed"):
        pod.burst(r, ["x", "y", "z"])
    assert sorted(r.removed) == ["x", "z"]


def test_manifest_is_one_sleeping_busybox_container() -> None:
    m = podenv.manifest("p1")
    assert m["metadata"]["name"] == "p1"
    (c,) = m["spec"]["containers"]
    assert c["image"] == podenv.IMAGE and c["command"][0] == "sleep"


def test_podman_cgroup_parent_is_below_every_own_cgroup() -> None:
    own = {"memory": "/a/b", "cpu": "/", "name=systemd": "/", "": "/"}
    assert podenv.podman_cgroup_parent(own) == "/a/b"
    assert podenv.podman_cgroup_parent({"memory": "/a/b", "cpu": "/a"}) == "/a/b"
    assert podenv.podman_cgroup_parent({"memory": "/a/b", "cpu": "/c"}) is None
    assert podenv.podman_cgroup_parent({"cpu": "/", "": "/"}) == "/"


def test_checkpoints_cover_the_density_and_the_cap() -> None:
    assert density.checkpoints(500, 50) == list(range(50, 501, 50))
    assert density.checkpoints(3, 2) == [1, 2, 3]
    assert density.checkpoints(25, 7, count=10) == [
        2,
        4,
        6,
        7,
        8,
        10,
        12,
        14,
        16,
        18,
        20,
        22,
        24,
        25,
    ]


def test_memory_and_ramp_rows() -> None:
    per = [memory.Rollup(700, 380), memory.Rollup(720, 400), memory.Rollup(704, 390)]
    row = density.memory_row("m", per, node_delta_kib=3 * 2048, pods=3)
    assert row == ("m", "3", "704", "700", "720", "390", "380", "400", "2.00")
    assert density.memory_row("m", [], 0, 0)[1] == "0"
    c = density.Checkpoint(
        pods=2, latencies_s=(0.1, 0.3), monitors=tuple(per[:2]), node_delta_kib=1024,
        elapsed_s=4.2,
    )  # fmt: skip
    assert density.ramp_row(c) == ("2", "2", "100", "300", "710", "390", "0.50", "4")
    assert len(density.ramp_row(c)) == len(density.RAMP_COLUMNS)
    assert len(row) == len(density.MEMORY_COLUMNS)


def _pod_suite() -> SuiteResult:
    lc = LatencyCase(
        "3 pods one after another",
        1,
        (
            Latencies("corral (library)", (0.1, 0.2, 0.3)),
            Latencies("podman (runc)", (0.2, 0.4, 0.6)),
            Latencies("podman (crun)", (), "crun refuses hybrid cgroup hosts"),
        ),
        ("a note",),
    )
    table = Table("memory", ("process", "N"), (("monitor", "3"),), ("n",), {"x": [1, 2]})
    return SuiteResult("pod", "pods", Status.OK, latencies=(lc,), tables=(table,))


def test_latency_ratios_and_rendering() -> None:
    suite = _pod_suite()
    assert report.latency_ratios(suite.latencies[0])[0] == ("podman (runc)", 0.5, 0.5)
    assert math.isnan(report.latency_ratios(suite.latencies[0])[1][1])
    text = "\n".join(report.render_suite(suite, {}))
    assert "| corral (library) | 3 | 200 | 300 | 100 | 300 | — | — |" in text
    assert "| podman (runc) | 3 | 400 | 600 | 200 | 600 | 0.50× | 0.50× |" in text
    assert "not run: crun refuses hybrid cgroup hosts" in text
    assert "| monitor | 3 |" in text and "_a note_" in text


def test_overview_and_json_carry_latencies_and_tables() -> None:
    rep = Report(quick=True, started="", machine={}, versions={}, params={}, suites=(_pod_suite(),))
    text = report.render(rep)
    assert (
        "| pod | 3 pods one after another (p50) | corral (library) / podman (runc) | 0.50× |"
        in text
    )
    assert "corral (library) / podman (crun) (not run) | n/a |" in text
    assert "| pod | memory | (table below) |" in text
    back = json.loads(json.dumps(to_json(rep), allow_nan=False))
    runners = back["suites"][0]["latencies"][0]["runners"]
    assert runners[0]["percentiles_s"] == {"p50": 0.2, "p99": 0.3, "min": 0.1, "max": 0.3, "n": 3}
    assert runners[2]["skipped"] and "percentiles_s" not in runners[2]
    assert back["suites"][0]["tables"][0]["data"] == {"x": [1, 2]}


def test_pod_parameters_have_quick_and_full_defaults() -> None:
    quick = cli._params(cli.parse_args(["--quick"]))
    full = cli._params(cli.parse_args(["--pods", "7", "--max-pods", "40"]))
    assert quick["pods"] < full["pods"] and quick["max_pods"] < 10
    assert (full["pods"], full["burst"], full["density"], full["max_pods"]) == (7, 20, 50, 40)
    with pytest.raises(SystemExit):
        cli._params(cli.parse_args(["--burst", "0"]))
