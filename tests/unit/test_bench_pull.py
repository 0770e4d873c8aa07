"""The pull suite without root or a registry: what each runner runs (the same reference, a
destination of its own, plain HTTP allowed), and its report: ratios against podman and
skopeo, the peers a machine lacks named so that RESULTS.md is not built without them."""

from __future__ import annotations

from pathlib import Path

from bench import cli, pull, report, stats, suites
from bench.model import CaseResult, Report, RunnerResult, Sample

REF = "127.0.0.1:5999/bench/pull:1"


def tools(tmp_path: Path, podman: str | None = "/usr/bin/podman",
          skopeo: str | None = "/usr/bin/skopeo") -> pull.PullTools:  # fmt: skip
    return pull.PullTools(
        tmp_path, str(tmp_path / "out"), {}, REF, tmp_path / "registries.conf", podman, skopeo
    )


def test_every_runner_pulls_the_same_reference_into_its_own_destination(
    tmp_path: Path,
) -> None:
    t = tools(tmp_path)
    corral = t.corral_pull(tmp_path / "store").argv
    assert corral[0].endswith("/corral") and corral[1:5] == (
        "image", "--store", str(tmp_path / "store"), "pull",
    )  # fmt: skip
    assert REF in corral and "--tls-verify=false" in corral
    assert corral[corral.index("--registries-conf") + 1] == str(tmp_path / "registries.conf")
    podman = t.podman_pull(tmp_path / "p").argv
    assert podman[:5] == ("/usr/bin/podman", "--root", f"{tmp_path}/p/root", "--runroot",
                          f"{tmp_path}/p/run")  # fmt: skip
    assert podman[-4:] == ("pull", "-q", "--tls-verify=false", REF)
    skopeo = t.skopeo_copy(tmp_path / "l").argv
    assert skopeo[-2:] == (f"docker://{REF}", f"oci:{tmp_path}/l:bench")
    assert "--src-tls-verify=false" in skopeo
    assert t.missing() == []


def _runner(label: str, walls: list[float]) -> RunnerResult:
    return RunnerResult(label, tuple(Sample(w, w / 2, 2048) for w in walls))


def _case(*runners: RunnerResult) -> CaseResult:
    return CaseResult("pull of a 3-layer image", 1, 1, runners, stats.ratios(runners))


def _report(*cases: CaseResult, notes: list[str]) -> Report:
    suite = pull.suite_result(list(cases), notes, suites.SUITES["pull"])
    return Report(False, "2026-01-01T00:00:00Z", {}, {}, {"runs": 2}, (suite,))


def test_the_report_has_ratios_against_podman_and_skopeo(tmp_path: Path) -> None:
    case = _case(
        _runner(pull.LABELS["corral"], [0.2, 0.4]),
        _runner(pull.LABELS["podman"], [0.4, 0.8]),
        _runner(pull.LABELS["skopeo"], [0.1, 0.2]),
    )
    rep = _report(case, notes=tools(tmp_path).missing())
    assert [(r.peer, r.wall) for r in case.ratios] == [
        ("podman pull", 0.5), ("skopeo copy (to oci:)", 2.0),
    ]  # fmt: skip
    text = report.render(rep)
    assert "| pull | pull of a 3-layer image | corral image pull / podman pull | 0.50× |" in text
    assert "corral image pull / skopeo copy (to oci:) | 2.00×" in text
    assert cli.missing_peers(rep) == []


def test_a_machine_without_the_peers_names_them(tmp_path: Path) -> None:
    t = tools(tmp_path, podman=None, skopeo=None)
    rep = _report(_case(_runner(pull.LABELS["corral"], [0.2])), notes=t.missing())
    assert cli.missing_peers(rep) == [
        "pull: podman is not installed: not measured.",
        "pull: skopeo is not installed: not measured.",
        "pull: pull of a 3-layer image: no peer ran",
    ]


def test_the_suite_is_registered_after_image() -> None:
    assert "pull" in suites.OTHER and "pull" not in suites.PENDING
    assert suites.ORDER.index("pull") == suites.ORDER.index("image") + 1
    assert suites.select(["pull", "image"]) == ["image", "pull"]
