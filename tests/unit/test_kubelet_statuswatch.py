"""The kubelet learns that a running pod's status changed from the runtime's status watch:
a status file its monitor rewrites queues the pod's sync (with no relist, no recheck), once
the pod is watched; a pod no longer watched is not queued. The runtime is the real one
(``runtime.pod.api.NodePods``) over a pod directory in run/; the monitor's writes are played
by renames, as csrc/monitor/util.c makes them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.client import ApiClient
from orchestrator.client.rest import ClientConfig
from orchestrator.kubelet.events import EventRecorder
from orchestrator.kubelet.pods import FIRST_STATUS_HOLD, PodManager
from runtime.pod import api
from runtime.pod.store import PodState, PodStore
from testkit.poddirs import monitor_writes

WAIT = 60.0  # seconds: a bound for what must come, never a measure of speed
UID = "0b5e0f6a-1111-2222-3333-444455556666"
OTHER = "0b5e0f6a-1111-2222-3333-777777777777"
KEY = "default/web"


def running_pod(root: Path, uid: str) -> Path:
    store = PodStore(root)
    pd = store.create(uid)
    pd.move(PodState.RUNNING)
    pd.unlock()
    (pd.path / "status").mkdir()
    return pd.path


async def next_key(mgr: PodManager) -> str | None:
    try:
        return await asyncio.wait_for(mgr.queue.get(), WAIT)
    except TimeoutError:
        return None


def test_a_status_change_queues_the_pods_sync(tmp_path: Path) -> None:
    async def main() -> None:
        path = running_pod(tmp_path / "pods", UID)
        other = running_pod(tmp_path / "pods", OTHER)  # not watched
        runtime = api.NodePods(api.PodOptions(root=str(tmp_path / "pods")))
        client = ApiClient(ClientConfig("https://127.0.0.1:9"))  # never reached
        mgr = PodManager(client, runtime, "n", lambda: "127.0.0.1", EventRecorder(client, "n"),
                         tmp_path)  # fmt: skip
        try:
            await mgr.watch_statuses()
            assert await mgr._watch(KEY, UID)
            monitor_writes(path / "status" / "app", "state=running\nready=true\n")
            assert await next_key(mgr) == KEY
            mgr.queue.done(KEY)
            monitor_writes(path / "pod.status", "phase=Running\n")
            assert await next_key(mgr) == KEY
            mgr.queue.done(KEY)
            monitor_writes(other / "status" / "app", "state=running\n")  # not ours to sync
            mgr.queue.add("marker")
            assert await next_key(mgr) == "marker"
            mgr.queue.done("marker")
            await mgr._remove(UID)  # gone from the node: not watched any more
            assert UID not in mgr._watched and not path.exists()
        finally:
            await mgr.stop()
            runtime.status_watch().close()
            await client.close()

    asyncio.run(main())


def _starting(uid: str, *states: str) -> api.PodStatus:
    return api.PodStatus(
        uid=uid,
        name="web",
        namespace="default",
        location="run",
        phase="Running",
        qos_class="BestEffort",
        pod_ip="10.42.0.9",
        host_network=False,
        created=0.0,
        containers=[
            api.ContainerStatus(f"c{i}", "app", "busybox", state=s) for i, s in enumerate(states)
        ],
    )


def test_the_first_status_waits_for_a_container_to_start(tmp_path: Path) -> None:
    """A pod this agent has just started, its containers all being created and its status
    watched, has its first status held (the watch says when a container starts), at most
    FIRST_STATUS_HOLD; any other pod's status is written at once."""

    async def main() -> None:
        runtime = api.NodePods(api.PodOptions(root=str(tmp_path / "pods")))
        client = ApiClient(ClientConfig("https://127.0.0.1:9"))  # never reached
        mgr = PodManager(client, runtime, "n", lambda: "127.0.0.1", EventRecorder(client, "n"),
                         tmp_path)  # fmt: skip
        loop = asyncio.get_running_loop()
        creating = _starting(UID, "Waiting", "Waiting")
        try:
            assert mgr._first_status_hold(KEY, creating) is None  # not started here
            mgr._watched[UID] = KEY
            mgr._started[UID] = loop.time()
            held = mgr._first_status_hold(KEY, creating)
            assert held is not None and 0 < held <= FIRST_STATUS_HOLD
            assert mgr._first_status_hold(KEY, _starting(UID, "Waiting", "Running")) is None
            assert UID not in mgr._started  # held once only: written from now on
            assert mgr._first_status_hold(KEY, creating) is None
            mgr._started[UID] = loop.time() - FIRST_STATUS_HOLD  # held long enough
            assert mgr._first_status_hold(KEY, creating) is None
            mgr._started[UID] = loop.time()
            mgr._reported[KEY] = {"phase": "Pending"}  # it has a status already
            assert mgr._first_status_hold(KEY, creating) is None
            del mgr._reported[KEY]
            mgr._started[UID] = loop.time()
            del mgr._watched[UID]  # no status watch to say when: written now
            assert mgr._first_status_hold(KEY, creating) is None
        finally:
            await mgr.stop()
            await client.close()

    asyncio.run(main())
