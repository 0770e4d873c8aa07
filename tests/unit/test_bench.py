"""The pure parts of bench/: statistics, pairing, the suite registry, rendering, JSON.

No root, no containers, and no timing is judged: the samples here are made up.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import cli, host, report, stats, suites
from bench.model import CaseResult, Report, RunnerResult, Sample, Status, SuiteResult, to_json


def _runner(
    label: str, walls: list[float], cpu_scale: float = 0.5, rss: int = 1024
) -> RunnerResult:
    return RunnerResult(label, tuple(Sample(w, w * cpu_scale, rss) for w in walls))


def test_summarize_median_min_max() -> None:
    s = stats.summarize([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.min, s.max, s.n) == (2.5, 1.0, 10.0, 4)


def test_summarize_refuses_nothing() -> None:
    with pytest.raises(ValueError):
        stats.summarize([])


def test_rounds_alternate_direction() -> None:
    assert stats.interleaved_rounds(["a", "b", "c"], 3) == [
        ["a", "b", "c"],
        ["c", "b", "a"],
        ["a", "b", "c"],
    ]
    assert stats.interleaved_rounds(["a"], 0) == []


def test_pair_ratios_are_per_round() -> None:
    assert stats.pair_ratios([2.0, 6.0], [1.0, 2.0]) == [2.0, 3.0]


def test_pair_ratios_skip_zero_peers_and_refuse_unpaired() -> None:
    assert stats.pair_ratios([1.0, 4.0], [0.0, 2.0]) == [2.0]
    with pytest.raises(ValueError):
        stats.pair_ratios([1.0], [1.0, 2.0])


def test_ratio_is_median_of_pairs_not_ratio_of_medians() -> None:
    # Pairs: 1/1, 10/2, 3/3 -> ratios 1, 5, 1: median 1; medians would give 3/2.
    base = _runner("corral", [1.0, 10.0, 3.0])
    peer = _runner("crun", [1.0, 2.0, 3.0], rss=2048)
    r = stats.ratio(base, peer)
    assert r.peer == "crun"
    assert r.wall == 1.0
    assert r.cpu == 1.0
    assert r.rss == 0.5
    assert r.pairs == 3


def test_ratios_compare_first_runner_with_each_other() -> None:
    rs = stats.ratios([_runner("a", [2.0]), _runner("b", [1.0]), _runner("c", [4.0])])
    assert [(x.peer, x.wall) for x in rs] == [("b", 2.0), ("c", 0.5)]
    assert stats.ratios([]) == ()


def test_ratio_without_usable_pairs_is_nan() -> None:
    r = stats.ratio(_runner("a", [1.0]), _runner("b", [0.0]))
    assert math.isnan(r.wall) and r.pairs == 0


def test_loop_sample_totals_times_and_keeps_peak_rss() -> None:
    s = stats.loop_sample([Sample(1.0, 0.5, 100), Sample(2.0, 0.25, 300)])
    assert s == Sample(3.0, 0.75, 300)


def test_select_keeps_registry_order_and_rejects_unknown() -> None:
    assert suites.select([]) == list(suites.ORDER)
    assert suites.select(["network", "spawn-cli"]) == ["spawn-cli", "network"]
    with pytest.raises(ValueError, match="nope"):
        suites.select(["nope"])


def test_pending_suites_name_their_issue() -> None:
    r = suites.Pending("future", "a feature to come", 5).result()
    assert r.status is Status.UNAVAILABLE
    assert r.reason == "needs issue #5"
    for landed in ("image", "network", "pod", "density"):
        assert landed not in suites.PENDING and landed in suites.OTHER
    assert set(suites.ORDER) == set(suites.SUITES)


def _report(quick: bool = False) -> Report:
    runners = (_runner("corral-oci", [0.1, 0.12]), _runner("crun (mnt-ns)", [0.01, 0.012]))
    case = CaseResult(
        title="run `true`",
        warmup=3,
        runs_per_sample=1,
        runners=runners,
        ratios=stats.ratios(runners),
    )
    loop_runners = (_runner("corral (library)", [2.0]), _runner("runc", [4.0]))
    loop = CaseResult(
        title="100 in a row",
        warmup=1,
        runs_per_sample=100,
        runners=loop_runners,
        ratios=stats.ratios(loop_runners),
        notes=("timed as a whole",),
    )
    return Report(
        quick=quick,
        started="2026-01-01T00:00:00Z",
        machine={"cores": "2", "kernel": "6.1", "cgroup layout": "hybrid"},
        versions={"corral": "abc", "runc": "1.1.5", "crun": "1.8.1", "python": "3.11"},
        params={"runs": 2, "warmup": 3, "loop": 100, "loop_runs": 1},
        suites=(
            SuiteResult("spawn-cli", "cli", Status.OK, cases=(case,)),
            SuiteResult("spawn-lib", "lib", Status.OK, cases=(loop,)),
            suites.Pending("pod", "pods", 5).result(),
            SuiteResult("broken", "", Status.FAILED, reason="runc exited 1"),
        ),
        footnotes={"crun (mnt-ns)": "run in a private mount namespace"},
    )


def test_render_has_machine_versions_figures_ratios_and_gaps() -> None:
    text = report.render(_report())
    assert "| cores | 2 |" in text
    assert "| crun | 1.8.1 |" in text
    assert "Parameters: runs = 2, warmup = 3, loop = 100, loop_runs = 1." in text
    # corral-oci: median wall 110 ms; crun pairs 10x each.
    assert "| corral-oci | 110 | 100 | 120 |" in text
    assert "| crun (mnt-ns) [1] | 11.0 | 10.0 | 12.0 |" in text
    assert "10.00×" in text
    # A loop shows the time per run; the library is half of runc.
    assert "| corral (library) | 2,000 | 2,000 | 2,000 | 20.0 |" in text
    assert "0.50×" in text
    assert "**Not available yet** (needs issue #5)." in text
    assert "| pod | not available yet (needs issue #5) |" in text
    assert "**failed**: runc exited 1" in text
    assert "1. **crun (mnt-ns)**: run in a private mount namespace" in text
    assert "--quick" not in text.splitlines()[0]


def test_render_quick_says_so() -> None:
    assert "--quick" in report.render(_report(quick=True)).splitlines()[0]


def test_formatting() -> None:
    assert report.fmt_ms(0.0123) == "12.3"
    assert report.fmt_ms(12.3456) == "12,346"
    assert report.fmt_ms(float("nan")) == "n/a"
    assert report.fmt_mib(2048) == "2.0"
    assert report.fmt_ratio(1.234) == "1.23×"


def test_json_is_strict_and_complete() -> None:
    rep = _report()
    nan_case = CaseResult(
        title="x",
        warmup=0,
        runs_per_sample=1,
        runners=(_runner("a", [1.0]), _runner("b", [0.0])),
        ratios=stats.ratios((_runner("a", [1.0]), _runner("b", [0.0]))),
    )
    data = to_json(rep)
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    cli_case = back["suites"][0]["cases"][0]
    assert cli_case["runners"][0]["wall_s"]["median"] == pytest.approx(0.11)
    assert cli_case["runners"][0]["samples"][0] == {
        "wall_s": 0.1,
        "cpu_s": 0.05,
        "maxrss_kib": 1024,
    }
    assert cli_case["ratios"][0]["peer"] == "crun (mnt-ns)"
    assert back["suites"][2]["status"] == "unavailable"
    nan_report = Report(
        quick=True,
        started="",
        machine={},
        versions={},
        params={},
        suites=(SuiteResult("s", "", Status.OK, cases=(nan_case,)),),
    )
    nan_json = json.dumps(to_json(nan_report), allow_nan=False)
    assert json.loads(nan_json)["suites"][0]["cases"][0]["ratios"][0]["wall"] is None


def test_parse_cgroup_files_and_own_dir() -> None:
    own = host.parse_proc_cgroup("4:memory:/a/b\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/u\n")
    assert own == {"memory": "/a/b", "cpu": "/", "cpuacct": "/", "name=systemd": "/", "": "/u"}
    mounts = host.parse_cgroup_mounts(
        "30 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "33 25 0:30 /x /mnt/other rw - cgroup cgroup rw,memory\n"
        "40 25 0:31 / /tmp rw - tmpfs tmpfs rw\n"
    )
    assert [m.mountpoint for m in mounts] == [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/unified",
        "/mnt/other",
    ]
    assert host.own_dir(mounts[0], own) == "/sys/fs/cgroup/memory/a/b"
    assert host.own_dir(mounts[1], own) == "/sys/fs/cgroup/cpu,cpuacct"
    assert host.own_dir(mounts[2], own) == "/sys/fs/cgroup/unified/u"
    assert host.own_dir(mounts[3], own) is None  # our cgroup is not below that mount's root


def test_quick_never_writes_bench_results() -> None:
    args = cli.parse_args(["--quick"])
    assert cli._out_dir(args) is None
    assert cli._params(args) == cli.QUICK
    with pytest.raises(SystemExit):
        cli._out_dir(cli.parse_args(["--quick", "--out", cli.BENCH_DIR]))
    assert cli._out_dir(cli.parse_args([])) == cli.BENCH_DIR
    assert cli._params(cli.parse_args(["-n", "5"]))["runs"] == 5
