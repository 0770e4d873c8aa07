"""metrics.k8s.io from the kubelets' resource metrics: the kubelet's text, its parsing back,
the rates and the quantities (orchestrator.apiserver.metricsapi, orchestrator.kubelet.server)."""

from __future__ import annotations

import pytest

from orchestrator.apiserver.metricsapi import (
    _duration,
    _rate,
    binary_si,
    parse_resource_metrics,
)
from orchestrator.kubelet.server import resource_metrics_text
from runtime.pod.api import PodUsage, ResourceUse, Usage


def test_the_kubelets_text_parses_back() -> None:
    use = ResourceUse(
        1700000000.25,
        Usage(12_500_000_000, 3 << 30),
        {
            "u1": PodUsage(
                Usage(2_000_000_000, 5 << 20),
                {"app": Usage(1_500_000_000, 4 << 20), 'we"ird\\': Usage(None, 1024)},
            ),
            "u-unknown": PodUsage(Usage(1, 1), {"x": Usage(1, 1)}),
        },
    )
    text = resource_metrics_text(use, {"u1": ("default", "web")})
    assert "# TYPE container_cpu_usage_seconds_total counter" in text
    assert "u-unknown" not in text and 'pod="x"' not in text
    assert "node_cpu_usage_seconds_total 12.5 1700000000250" in text
    s = parse_resource_metrics(text, 0.0)
    assert s.node["cpu_usage_seconds_total"] == (12.5, 1700000000.25)
    assert s.node["memory_working_set_bytes"] == (float(3 << 30), 1700000000.25)
    web = s.containers[("default", "web")]
    assert web["app"]["cpu_usage_seconds_total"] == (1.5, 1700000000.25)
    assert web['we"ird\\'] == {"memory_working_set_bytes": (1024.0, 1700000000.25)}
    assert set(s.containers) == {("default", "web")}


def test_lines_that_do_not_parse_are_skipped() -> None:
    text = (
        "garbage\n"
        'container_cpu_usage_seconds_total{container="a",namespace="n",pod="p"} NaN 1\n'
        'container_cpu_usage_seconds_total{container="a",namespace="n",pod="p} 1 1\n'
        'container_cpu_usage_seconds_total{container="a",pod="p"} 1 1\n'
        "node_memory_working_set_bytes 7\n"
    )
    s = parse_resource_metrics(text, 5.0)
    assert s.containers == {}
    assert s.node == {"memory_working_set_bytes": (7.0, 5.0)}


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        ((1.0, 10.0), (1.5, 11.0), 500_000_000),
        ((1.0, 10.0), (3.0, 10.5), 4_000_000_000),
        ((1.0, 10.0), (0.5, 11.0), None),  # the counter went back: a restart
        ((1.0, 10.0), (1.5, 10.0), None),  # no time between them
        (None, (1.5, 10.0), None),
    ],
)
def test_rate(old: tuple[float, float] | None, new: tuple[float, float], want: int | None) -> None:
    assert _rate(old, new) == want


@pytest.mark.parametrize(
    ("n", "want"),
    [(0, "0"), (1000, "1000"), (1024, "1Ki"), (16654336, "16264Ki"), (3 << 20, "3Mi"),
     (5 << 30, "5Gi"), (1025, "1025")],
)  # fmt: skip
def test_binary_si(n: int, want: str) -> None:
    assert binary_si(n) == want


def test_window_duration() -> None:
    assert _duration(1.0) == "1s"
    assert _duration(1.0042) == "1.004s"
    assert _duration(20.5) == "20.5s"
