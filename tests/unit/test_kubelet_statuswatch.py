"""The kubelet learns that a running pod's status changed from the runtime's status watch:
a status file its monitor rewrites queues the pod's sync (with no relist, no recheck), once
the pod is watched; a pod no longer watched is not queued. The runtime is the real one
(``runtime.pod.api.NodePods``) over a pod directory in run/; the monitor's writes are played
by renames, as csrc/monitor/util.c makes them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator.client import ApiClient
from orchestrator.client.rest import ClientConfig
from orchestrator.kubelet.events import EventRecorder
from orchestrator.kubelet.pods import PodManager
from runtime.pod import api
from runtime.pod.store import PodState, PodStore

WAIT = 60.0  # seconds: a bound for what must come, never a measure of speed
UID = "0b5e0f6a-1111-2222-3333-444455556666"
OTHER = "0b5e0f6a-1111-2222-3333-777777777777"
KEY = "default/web"


def monitor_writes(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, path)


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
