"""Unit tests for runtime/pod/qos.py: the kubelet's QoS class, cgroup names, oom_score_adj and
cgroup values for a pod (no root)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.pod.manifest import Pod, parse_pod
from runtime.pod.qos import (
    BEST_EFFORT_OOM_SCORE_ADJ,
    GUARANTEED_OOM_SCORE_ADJ,
    CgroupValues,
    QOSClass,
    container_cgroup_values,
    container_oom_score_adj,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    oom_score_adj,
    pod_cgroup_name,
    pod_cgroup_path,
    pod_cgroup_values,
    pod_qos,
    qos_cgroup_parent,
)

GUARANTEED = QOSClass.GUARANTEED
BURSTABLE = QOSClass.BURSTABLE
BEST_EFFORT = QOSClass.BEST_EFFORT
GiB = 2**30


def res(
    cpu: str | None = None,
    memory: str | None = None,
    cpu_limit: str | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """A container's resources block from requests and limits (None: not set)."""
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v is not None}
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def make_pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> Pod:
    """A pod whose containers have these resources blocks, in order."""

    def container(prefix: str, i: int, resources: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"{prefix}{i}", "image": "busybox", "resources": resources}

    return parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "containers": [container("c", i, r) for i, r in enumerate(containers)],
                "initContainers": [container("i", i, r) for i, r in enumerate(init)],
            },
        }
    )


# ============================================================================= QoS class

FULL = res("1", "1Gi", "1", "1Gi")

QOS_CASES: list[tuple[str, Pod, QOSClass]] = [
    ("nothing", make_pod({}), BEST_EFFORT),
    ("nothing in two", make_pod({}, {}), BEST_EFFORT),
    ("zero limits count as unset", make_pod(res(cpu_limit="0", memory_limit="0")), BEST_EFFORT),
    ("zero requests count as unset", make_pod(res(cpu="0", memory="0")), BEST_EFFORT),
    ("requests equal limits", make_pod(FULL), GUARANTEED),
    (
        "limits only: requests default to them",
        make_pod(res(cpu_limit="2", memory_limit="1G")),
        GUARANTEED,
    ),
    ("equal values written differently", make_pod(res("1000m", "1024Mi", "1", "1Gi")), GUARANTEED),
    (
        "two guaranteed containers",
        make_pod(FULL, res(cpu_limit="500m", memory_limit="64Mi")),
        GUARANTEED,
    ),
    ("guaranteed with a guaranteed init", make_pod(FULL, init=(FULL,)), GUARANTEED),
    ("cpu limit only", make_pod(res(cpu_limit="1")), BURSTABLE),
    ("memory limit only", make_pod(res(memory_limit="1Gi")), BURSTABLE),
    ("requests only", make_pod(res("1", "1Gi")), BURSTABLE),
    ("cpu request below limit", make_pod(res("500m", "1Gi", "1", "1Gi")), BURSTABLE),
    ("memory request below limit", make_pod(res("1", "512Mi", "1", "1Gi")), BURSTABLE),
    ("one container without resources", make_pod(FULL, {}), BURSTABLE),
    ("a best-effort init container", make_pod(FULL, init=({},)), BURSTABLE),
    ("a burstable init container", make_pod({}, init=(res(cpu="100m"),)), BURSTABLE),
    ("zero cpu limit is no limit", make_pod(res("0", "1Gi", "0", "1Gi")), BURSTABLE),
]


@pytest.mark.parametrize(("pod", "qos"), [c[1:] for c in QOS_CASES], ids=[c[0] for c in QOS_CASES])
def test_pod_qos(pod: Pod, qos: QOSClass) -> None:
    assert pod_qos(pod) is qos


def test_qos_class_values_are_the_kubernetes_names() -> None:
    assert [q.value for q in QOSClass] == ["Guaranteed", "Burstable", "BestEffort"]


# ============================================================================= cgroup names

UID = "4c3a1f0e-9b1d-4d8e-a1c2-3f5e6d7c8b9a"


@pytest.mark.parametrize(
    ("qos", "parent", "path"),
    [
        (GUARANTEED, "kubepods", f"kubepods/pod{UID}"),
        (BURSTABLE, "kubepods/burstable", f"kubepods/burstable/pod{UID}"),
        (BEST_EFFORT, "kubepods/besteffort", f"kubepods/besteffort/pod{UID}"),
    ],
)
def test_cgroupfs_names(qos: QOSClass, parent: str, path: str) -> None:
    assert qos_cgroup_parent(qos) == parent
    assert pod_cgroup_path(qos, UID) == path
    assert pod_cgroup_name(UID) == f"pod{UID}"


@pytest.mark.parametrize(
    ("qos", "parent", "leaf"),
    [
        (GUARANTEED, "kubepods.slice", "kubepods-pod"),
        (BURSTABLE, "kubepods.slice/kubepods-burstable.slice", "kubepods-burstable-pod"),
        (BEST_EFFORT, "kubepods.slice/kubepods-besteffort.slice", "kubepods-besteffort-pod"),
    ],
)
def test_systemd_names(qos: QOSClass, parent: str, leaf: str) -> None:
    assert qos_cgroup_parent(qos, systemd=True) == parent
    uid = UID.replace("-", "_")
    assert pod_cgroup_path(qos, UID, systemd=True) == f"{parent}/{leaf}{uid}.slice"


# ============================================================================= oom_score_adj

CAPACITY = 4 * GiB


@pytest.mark.parametrize(
    ("memory_request", "capacity", "expected"),
    [
        (0, CAPACITY, 999),  # 1000 would tie BestEffort
        (1, CAPACITY, 999),  # (1000 * 1) // capacity == 0
        (CAPACITY // 10, CAPACITY, 901),  # 1000*429496729 // 4294967296 == 99: truncation
        (CAPACITY // 2, CAPACITY, 500),
        (CAPACITY, CAPACITY, 2),  # 0, raised to the floor
        (2 * CAPACITY, CAPACITY, 2),  # negative, raised to the floor
        (997, 1000, 3),
        (998, 1000, 2),
        (999, 1000, 2),  # 1 -> 2
        (1, 3, 667),  # 1000 - 333: Go's integer division
        (2, 3, 334),  # 1000 - 666
        (1, 1000, 999),
        (2, 1000, 998),
        (100 * 2**20, 8 * GiB, 988),  # 1000 - 12 (12.2 truncated)
    ],
)
def test_burstable_oom_score_adj(memory_request: int, capacity: int, expected: int) -> None:
    assert oom_score_adj(BURSTABLE, memory_request, capacity) == expected


def test_guaranteed_and_best_effort_oom_score_adj() -> None:
    assert GUARANTEED_OOM_SCORE_ADJ == -998 and BEST_EFFORT_OOM_SCORE_ADJ == 1000
    assert oom_score_adj(GUARANTEED, GiB, CAPACITY) == -998
    assert oom_score_adj(GUARANTEED, 0, CAPACITY) == -998
    assert oom_score_adj(BEST_EFFORT, 0, CAPACITY) == 1000
    assert oom_score_adj(BEST_EFFORT, GiB, CAPACITY) == 1000


def test_burstable_range_over_all_requests() -> None:
    for request in range(0, 1200):
        assert 2 <= oom_score_adj(BURSTABLE, request, 1000) <= 999


def test_oom_score_adj_needs_a_capacity() -> None:
    with pytest.raises(ValueError, match="memory capacity must be positive"):
        oom_score_adj(BURSTABLE, 1, 0)
    assert oom_score_adj(GUARANTEED, 1, 0) == -998  # the capacity is not used


def test_container_oom_score_adj() -> None:
    pod = make_pod(res(memory="1Gi"), res(cpu="1"), res(memory_limit="2Gi"), {})
    assert pod_qos(pod) is BURSTABLE
    adj = [container_oom_score_adj(pod, c, CAPACITY) for c in pod.spec.containers]
    # 1Gi of 4Gi -> 750; no memory request -> 999; the 2Gi limit is also the request -> 500.
    assert adj == [750, 999, 500, 999]
    guaranteed = make_pod(FULL)
    assert container_oom_score_adj(guaranteed, guaranteed.spec.containers[0], CAPACITY) == -998
    best = make_pod({})
    assert container_oom_score_adj(best, best.spec.containers[0], CAPACITY) == 1000


def test_container_oom_score_adj_rounds_fractional_bytes_up() -> None:
    pod = make_pod(res(memory="1500m"))  # 1.5 bytes -> 2, as Quantity.Value()
    assert container_oom_score_adj(pod, pod.spec.containers[0], 1000) == 998


# ============================================================================= cgroup values


@pytest.mark.parametrize(
    ("milli", "shares"),
    [
        (0, 2),
        (1, 2),
        (2, 2),
        (3, 3),
        (10, 10),
        (100, 102),
        (250, 256),
        (500, 512),
        (1000, 1024),
        (1500, 1536),
        (2000, 2048),
        (256000, 262144),
        (300000, 262144),  # MaxShares
    ],
)
def test_milli_cpu_to_shares(milli: int, shares: int) -> None:
    assert milli_cpu_to_shares(milli) == shares


@pytest.mark.parametrize(
    ("milli", "quota"),
    [
        (0, 0),  # no limit
        (1, 1000),  # 100, raised to 1 ms
        (9, 1000),
        (10, 1000),
        (11, 1100),
        (250, 25000),
        (500, 50000),
        (1000, 100000),
        (2500, 250000),
    ],
)
def test_milli_cpu_to_quota(milli: int, quota: int) -> None:
    assert milli_cpu_to_quota(milli) == quota


def test_milli_cpu_to_quota_other_period() -> None:
    assert milli_cpu_to_quota(500, period=50000) == 25000
    assert milli_cpu_to_quota(5, period=50000) == 1000


@pytest.mark.parametrize(
    ("resources", "values"),
    [
        ({}, CgroupValues(cpu_shares=2)),
        (res(cpu="250m"), CgroupValues(cpu_shares=256)),
        (res(cpu_limit="1"), CgroupValues(1024, 100000, 100000)),  # request from the limit
        (res(cpu="100m", cpu_limit="500m"), CgroupValues(102, 50000, 100000)),
        (res(memory_limit="128Mi"), CgroupValues(2, memory_limit=128 * 2**20)),
        (res(memory="64Mi"), CgroupValues(cpu_shares=2)),  # a request sets no limit
        (res(cpu="0.0001", cpu_limit="0.0001"), CgroupValues(2, 1000, 100000)),  # 1m
        (res(memory_limit="1500m"), CgroupValues(2, memory_limit=2)),
        (FULL, CgroupValues(1024, 100000, 100000, GiB)),
    ],
)
def test_container_cgroup_values(resources: dict[str, Any], values: CgroupValues) -> None:
    pod = make_pod(resources)
    assert container_cgroup_values(pod.spec.containers[0]) == values


def test_pod_cgroup_values_best_effort() -> None:
    assert pod_cgroup_values(make_pod({}, {})) == CgroupValues(cpu_shares=2)


def test_pod_cgroup_values_guaranteed_sums_containers() -> None:
    pod = make_pod(FULL, res(cpu_limit="500m", memory_limit="512Mi"))
    assert pod_cgroup_values(pod) == CgroupValues(1536, 150000, 100000, GiB + 512 * 2**20)


def test_pod_cgroup_values_burstable() -> None:
    # Every app container has limits: quota and memory limit are set.
    pod = make_pod(res("100m", "64Mi", "1", "1Gi"), res(cpu_limit="1", memory_limit="1Gi"))
    assert pod_cgroup_values(pod) == CgroupValues(1126, 200000, 100000, 2 * GiB)
    # One container without a cpu limit: no pod quota; memory limit still set.
    pod = make_pod(res("100m", "64Mi", "1", "1Gi"), res(cpu="200m", memory_limit="1Gi"))
    assert pod_cgroup_values(pod) == CgroupValues(307, None, None, 2 * GiB)
    # One container without a memory limit: no pod memory limit.
    pod = make_pod(res("100m", "64Mi", "1", "1Gi"), res(cpu_limit="1"))
    assert pod_cgroup_values(pod) == CgroupValues(1126, 200000, 100000, None)
    # Only requests: shares only.
    pod = make_pod(res("1", "1Gi"))
    assert pod_cgroup_values(pod) == CgroupValues(cpu_shares=1024)


def _with_overhead(pod: Pod, **overhead: str) -> Pod:
    from dataclasses import replace

    from runtime.pod.manifest import parse_pod as parse

    over = parse({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "o"},
                  "spec": {"containers": [{"name": "c", "image": "busybox"}],
                           "overhead": overhead}}).spec.overhead  # fmt: skip
    return replace(pod, spec=replace(pod.spec, overhead=over))


def test_pod_cgroup_values_count_the_overhead() -> None:
    """kube's ResourceConfigForPod: the overhead is added to the cpu request (shares) and to
    the limits that are set, never makes a limit of its own, and leaves the QoS class."""
    pod = _with_overhead(make_pod(FULL), cpu="250m", memory="128Mi")
    assert pod_qos(pod) is GUARANTEED
    assert pod_cgroup_values(pod) == CgroupValues(1280, 125000, 100000, GiB + 128 * 2**20)
    pod = _with_overhead(make_pod(res("100m", "64Mi")), cpu="250m", memory="128Mi")
    assert pod_cgroup_values(pod) == CgroupValues(358, None, None, None)
    pod = _with_overhead(make_pod({}), cpu="250m", **{"ephemeral-storage": "1Gi"})
    assert pod_cgroup_values(pod) == CgroupValues(cpu_shares=2)  # BestEffort stays it


def test_pod_cgroup_values_init_containers_take_the_max() -> None:
    # Init containers run alone: the pod needs max(sum of app containers, largest init).
    big_init = res(cpu_limit="4", memory_limit="4Gi")
    pod = make_pod(FULL, FULL, init=(big_init, res(cpu_limit="1", memory_limit="1Gi")))
    assert pod_qos(pod) is GUARANTEED
    assert pod_cgroup_values(pod) == CgroupValues(4096, 400000, 100000, 4 * GiB)
    small_init = res(cpu_limit="100m", memory_limit="64Mi")
    pod = make_pod(FULL, FULL, init=(small_init,))
    assert pod_cgroup_values(pod) == CgroupValues(2048, 200000, 100000, 2 * GiB)
