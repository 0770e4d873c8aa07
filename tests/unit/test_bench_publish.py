"""What bench/RESULTS.md may be built from: every peer ran, a clean commit; and the notes
that state a measurement say what was measured. No root, no containers: reports are made up."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench import cli, host, image, stats
from bench.model import (
    CaseResult,
    Latencies,
    LatencyCase,
    Report,
    RunnerResult,
    Sample,
    Status,
    SuiteResult,
    Table,
    from_json,
)

REV = "0123456789abcdef0123456789abcdef01234567"


def _runner(label: str, walls: list[float]) -> RunnerResult:
    return RunnerResult(label, tuple(Sample(w, w / 2, 1024) for w in walls))


def _case(*labels: str) -> CaseResult:
    runners = tuple(_runner(label, [0.1, 0.2]) for label in labels)
    return CaseResult("run `true`", 1, 1, runners, stats.ratios(runners))


def _report(*suites: SuiteResult) -> Report:
    return Report(
        quick=False,
        started="2026-01-01T00:00:00Z",
        machine={"cores": "2"},
        versions={"corral": REV},
        params={"runs": 2},
        suites=suites,
    )


def _complete() -> Report:
    lat = LatencyCase(
        "pods", 0, (Latencies("corral", (0.1, 0.2)), Latencies("podman (runc)", (0.3, 0.4)))
    )
    return _report(
        SuiteResult("spawn-cli", "cli", Status.OK, cases=(_case("corral-oci", "runc", "crun"),)),
        SuiteResult("pod", "pods", Status.OK, latencies=(lat,)),
        SuiteResult("future", "to come", Status.UNAVAILABLE, reason="needs issue #9"),
    )


def test_a_complete_report_misses_nothing() -> None:
    assert cli.missing_peers(_complete()) == []


def test_every_kind_of_missing_peer_is_named() -> None:
    lat = LatencyCase(
        "pods", 0, (Latencies("corral", (0.1,)), Latencies("podman", (), "podman is not installed"))
    )
    table = Table("memory", ("runtime", "MiB"), (("corral", "1"), ("podman", "not run: no podman")))
    rep = _report(
        SuiteResult("spawn-cli", "cli", Status.OK, cases=(_case("corral-oci"),)),
        SuiteResult(
            "image",
            "img",
            Status.OK,
            "umoci is not installed: not measured.",
            cases=(_case("corral", "podman load"),),
        ),  # fmt: skip
        SuiteResult("pod", "pods", Status.OK, latencies=(lat,)),
        SuiteResult("density", "d", Status.OK, tables=(table,)),
        SuiteResult("network", "net", Status.SKIPPED, "needs root"),
        SuiteResult("broken", "b", Status.FAILED, "runc exited 1"),
    )
    missing = cli.missing_peers(rep)
    assert missing == [
        "spawn-cli: run `true`: no peer ran",
        "image: umoci is not installed: not measured.",
        "pod: pods: podman did not run (podman is not installed)",
        "density: memory: podman did not run",
        "network: skipped (needs root)",
        "broken: failed (runc exited 1)",
    ]


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cli, "BENCH_DIR", str(tmp_path))
    monkeypatch.setattr(cli.suites, "select", lambda names: ["spawn-cli"])
    return tmp_path


def test_a_full_run_with_a_missing_peer_writes_no_results(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = _report(SuiteResult("spawn-cli", "cli", Status.OK, cases=(_case("corral-oci"),)))
    monkeypatch.setattr(cli.host, "tree_state", lambda: (REV, []))
    monkeypatch.setattr(cli, "run", lambda names, params, quick: rep)
    assert cli.main([]) == 1
    assert list(bench_dir.iterdir()) == []


def test_a_full_run_with_every_peer_writes_results_naming_the_commit(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.host, "tree_state", lambda: (REV, []))
    monkeypatch.setattr(cli, "run", lambda names, params, quick: _complete())
    assert cli.main([]) == 0
    assert sorted(p.name for p in bench_dir.iterdir()) == ["RESULTS.md", "results.json"]
    assert f"| corral | {REV} |" in (bench_dir / "RESULTS.md").read_text()


def test_some_suites_replace_theirs_and_keep_the_others_with_their_run(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full run, then one suite alone: results.json and RESULTS.md hold the new figures
    of that suite and the first run's of the other, which says when it was measured."""
    monkeypatch.setattr(cli.host, "tree_state", lambda: (REV, []))
    first = replace(_complete(), suites=tuple(
        replace(s, started="2026-01-01T00:00:00Z", commit=REV) for s in _complete().suites
    ))  # fmt: skip
    monkeypatch.setattr(cli, "run", lambda names, params, quick: first)
    assert cli.main([]) == 0
    again = SuiteResult(
        "spawn-cli", "cli", Status.OK, cases=(_case("corral-oci", "runc", "crun"),),
        started="2026-02-02T00:00:00Z", commit="f" * 40,
    )  # fmt: skip
    second = replace(first, started="2026-02-02T00:00:00Z", suites=(again,))
    monkeypatch.setattr(cli, "run", lambda names, params, quick: second)
    assert cli.main(["spawn-cli"]) == 0
    data = json.loads((bench_dir / "results.json").read_text())
    assert [(s["name"], s["started"]) for s in data["suites"]] == [
        ("spawn-cli", "2026-02-02T00:00:00Z"),
        ("pod", "2026-01-01T00:00:00Z"),
    ]  # the unknown "future" suite is not kept; the order is the registry's
    md = (bench_dir / "RESULTS.md").read_text()
    assert "Kept from earlier runs (each names its own start and commit below): pod." in md
    assert f"_Measured in an earlier run: started 2026-01-01T00:00:00Z, commit {REV}._" in md
    assert from_json(data).suites[0] == again  # the JSON form reads back whole


def test_a_dirty_tree_refuses_before_running(
    bench_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = []
    monkeypatch.setattr(cli.host, "tree_state", lambda: (REV, ["runtime/container.py"]))
    monkeypatch.setattr(cli, "run", lambda *a: ran.append(a) or _complete())
    assert cli.main([]) == 2
    assert ran == [] and list(bench_dir.iterdir()) == []
    # elsewhere (--out) it runs, and the report says what it was built from
    assert cli.main(["--out", str(bench_dir / "elsewhere")]) == 0
    assert ran


def test_dirty_paths_leave_out_the_outputs() -> None:
    porcelain = " M bench/RESULTS.md\n M bench/results.json\nM  csrc/spawn.c\nR  a.py -> b.py\n"
    assert host.dirty_paths(porcelain) == ["csrc/spawn.c", "b.py"]
    assert host.describe_rev(REV, []) == REV
    assert (
        host.describe_rev(REV, ["csrc/spawn.c"]) == f"{REV} plus uncommitted changes (csrc/spawn.c)"
    )


def test_tree_state_of_this_checkout() -> None:
    rev, dirty = host.tree_state()
    assert len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)
    assert isinstance(dirty, list)


def test_reimport_note_says_what_was_measured() -> None:
    assert image.reimport_note(0, 5).endswith(": no layer data was written again.")
    grown = image.reimport_note(4096, 4)
    assert "grew by 4096 bytes over 4 re-imports (1,024 bytes each)" in grown
    assert "no layer data" not in grown
