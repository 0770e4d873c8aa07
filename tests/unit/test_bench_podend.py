"""The pod suite ends every runner's latency at the same observable: the app container's
first output (a file it creates in a bind-mounted host directory), seen from outside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import pod, podenv


def _env(tmp_path: Path) -> podenv.PodEnv:
    e = podenv.PodEnv(tmp_path, "t", tmp_path / "image.tar", {})
    os.mkdir(e.marks)
    return e


def test_corral_manifest_marks_through_a_host_path_volume() -> None:
    m = podenv.manifest("p1", "/var/tmp/w/marks")
    (c,) = m["spec"]["containers"]
    assert c["command"] == ["sh", "-c", "touch /marks/p1 && exec sleep 1000000000"]
    assert c["volumeMounts"] == [{"name": "marks", "mountPath": "/marks"}]
    assert m["spec"]["volumes"] == [
        {"name": "marks", "hostPath": {"path": "/var/tmp/w/marks", "type": "Directory"}}
    ]
    assert podenv.manifest("p1")["spec"]["containers"][0]["command"] == podenv.SLEEP


def test_podman_runs_the_same_command_with_the_same_directory(tmp_path: Path) -> None:
    pm = podenv.Podman("podman", tmp_path, "runc", "/cg", {}, "net")
    argv = pm.run_in_pod("p1", False, "/var/tmp/w/marks").argv
    i = argv.index(podenv.PODMAN_IMAGE)
    assert argv[i - 2 : i] == ("-v", "/var/tmp/w/marks:/marks")
    assert list(argv[i + 1 :]) == podenv.app_command("p1", "/var/tmp/w/marks")


def test_the_end_is_the_mark_time_not_when_it_was_seen(tmp_path: Path) -> None:
    e = _env(tmp_path)
    Path(e.mark("a")).write_text("")
    os.utime(e.mark("a"), ns=(0, 1_700_000_000_250_000_000))
    assert pod.mark_time(e.mark("a")) == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert pod.mark_time(e.mark("b")) is None
    started = [pod.Started("a", 1_700_000_000.0)]
    assert pod.wait_marks(e, started, lambda s: None) == [pytest.approx(1_700_000_000.25, abs=1e-6)]


def test_a_pod_that_will_not_mark_fails_the_wait(tmp_path: Path) -> None:
    e = _env(tmp_path)

    def check(s: pod.Started) -> None:
        raise pod.PodStartFailed(f"pod {s.name} did not start")

    with pytest.raises(pod.PodStartFailed, match="pod b did not start"):
        pod.wait_marks(e, [pod.Started("b", 0.0)], check)
