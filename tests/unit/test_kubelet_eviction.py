"""The eviction manager's pure parts: --eviction-hard as the kubelet parses it, the memory
pressure ranking, the kubelet's message, durations."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.kubelet.eviction import (
    Candidate,
    Threshold,
    eviction_message,
    parse_duration,
    parse_thresholds,
    pod_memory_request,
    rank_memory_pressure,
)

MI = 1024 * 1024


def test_thresholds_quantities_and_percentages() -> None:
    (t,) = parse_thresholds("memory.available<100Mi")
    assert t == Threshold("memory.available", quantity=100 * MI, text="100Mi")
    assert t.bytes_of(8 << 30) == 100 * MI
    (p,) = parse_thresholds(" memory.available < 5% ")
    assert p.percentage == pytest.approx(0.05) and p.quantity is None
    assert p.bytes_of(1000) == 50
    (d,) = parse_thresholds("memory.available<1G")
    assert d.quantity == 10**9
    assert parse_thresholds("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("memory.available>100Mi", "expected signal<quantity"),
        ("memory.available<", "expected signal<quantity"),
        ("memory.avail<1Gi", "unknown signal 'memory.avail'"),
        ("nodefs.available<10%", "'nodefs.available' is not supported"),
        ("memory.available<150%", "a percentage from 0% to 100%"),
        ("memory.available<x%", "a percentage from 0% to 100%"),
        ("memory.available<100MB", "invalid quantity"),
        ("memory.available<-1Mi", "negative"),
        ("memory.available<1Mi,memory.available<2Mi", "given twice"),
    ],
)
def test_bad_thresholds_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace("%", "%")):
        parse_thresholds(text)


def test_durations() -> None:
    assert parse_duration("5m0s") == 300
    assert parse_duration("30s") == 30
    assert parse_duration("1h2m") == 3720
    assert parse_duration("0") == 0
    assert parse_duration("1500ms") == 1.5
    for bad in ("", "5", "5x", "m5", "5m 0s"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def pod(requests: list[str | None], inits: list[str] = (), overhead: str | None = None) -> Any:  # type: ignore[assignment]
    def c(name: str, mem: str | None) -> dict[str, Any]:
        return {
            "name": name,
            "resources": {"requests": {"memory": mem}} if mem else {},
        }

    spec: dict[str, Any] = {"containers": [c(f"c{i}", r) for i, r in enumerate(requests)]}
    if inits:
        spec["initContainers"] = [c(f"i{i}", r) for i, r in enumerate(inits)]
    if overhead:
        spec["overhead"] = {"memory": overhead}
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


def test_pod_memory_request_is_the_kubelets() -> None:
    assert pod_memory_request(pod([None])) == 0
    assert pod_memory_request(pod(["64Mi", "32Mi"])) == 96 * MI
    assert pod_memory_request(pod(["64Mi"], inits=["128Mi", "1Mi"])) == 128 * MI
    assert pod_memory_request(pod(["64Mi"], overhead="10Mi")) == 74 * MI


def test_ranking_over_request_first_then_priority_then_usage_over_request() -> None:
    guaranteed = Candidate("d/guaranteed", "g", 0, request=64 * MI, usage=10 * MI)
    idle_besteffort = Candidate("d/idle", "i", 0, request=0, usage=1 * MI)
    hog = Candidate("d/hog", "h", 0, request=0, usage=200 * MI)
    burstable_over = Candidate("d/burst", "b", 0, request=50 * MI, usage=120 * MI)
    important_hog = Candidate("d/important", "x", 1000, request=0, usage=300 * MI)
    order = rank_memory_pressure([guaranteed, idle_besteffort, important_hog, burstable_over, hog])
    assert [c.key for c in order] == [
        "d/hog",  # over request, priority 0, 200Mi over
        "d/burst",  # 70Mi over
        "d/idle",  # 1Mi over
        "d/important",  # over request but a higher priority
        "d/guaranteed",  # within its request: last
    ]


def test_message_names_the_threshold_and_the_containers_over_their_request() -> None:
    p = pod([None, "64Mi"])
    (t,) = parse_thresholds("memory.available<100Mi")
    msg = eviction_message(p, t, 50 * MI, {"c0": 150 * MI, "c1": 10 * MI})
    assert msg == (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
        "Container c0 was using 153600Ki, request is 0, has larger consumption of memory. "
    )


# ----------------------------------------------------------------------------- one look


class FakeRuntime:
    """memory_use as the runtime answers it: the node's figures, each pod's only when asked
    (``pods``); the calls recorded."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.calls: list[bool] = []

    def memory_use(self, pods: bool = True) -> Any:
        from runtime.pod.memory import MemoryUse, PodMemory

        self.calls.append(pods)
        per_pod = {"u1": PodMemory(30 * MI, {"c0": 30 * MI})} if pods else {}
        return MemoryUse(1024 * MI, 1024 * MI - self.available, "", per_pod)


class FakePods:
    def __init__(self) -> None:
        self.evicted: list[str] = []

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def pod_by_uid(self, uid: str) -> Any:
        p = pod([None])
        p["metadata"]["uid"] = uid
        return p

    async def evict(self, key: str, uid: str, message: str, wait: float) -> None:
        self.evicted.append(uid)


class FakeNode:
    def __init__(self) -> None:
        import asyncio

        self.memory_pressure = False
        self.changed = asyncio.Event()


def test_each_look_reads_the_pods_only_under_the_threshold() -> None:
    import asyncio

    from orchestrator.kubelet.eviction import EvictionManager

    async def main() -> None:
        runtime, pods, node = FakeRuntime(available=500 * MI), FakePods(), FakeNode()
        mgr = EvictionManager(runtime, parse_thresholds("memory.available<100Mi"), pods, node)  # type: ignore[arg-type]
        assert await mgr.synchronize() is None
        assert runtime.calls == [False] and not node.memory_pressure
        runtime.available = 50 * MI
        victim = await mgr.synchronize()
        assert victim is not None and victim.uid == "u1" and pods.evicted == ["u1"]
        assert runtime.calls == [False, False, True] and node.memory_pressure

    asyncio.run(main())
