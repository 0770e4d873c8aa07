"""The kubelet's relist (its PLEG) queues a pod only when the runtime's status of it is not
what its last sync read: a change is never missed (a container that ends, a probe that
fails, a pod gone from the node, a status seen first after an agent restart), a change the
status watch had synced already is not synced again, and an idle running pod is neither
queued nor read by a sync at each relist; every RESYNC seconds every pod is queued. The
runtime is the real one (``runtime.pod.api.NodePods``) over pod directories in run/; the
monitor's writes are played by renames, as csrc/monitor/util.c makes them."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from orchestrator.client import ApiClient
from orchestrator.client.rest import ClientConfig
from orchestrator.kubelet.events import EventRecorder
from orchestrator.kubelet.pods import RESYNC, PodManager
from runtime.pod import api
from runtime.pod.store import PodStore
from testkit.poddirs import monitor_writes
from testkit.poddirs import running_pod as held_running_pod

UID = "0b5e0f6a-1111-2222-3333-444455556666"
OTHER = "0b5e0f6a-1111-2222-3333-777777777777"
WAIT = 60.0  # seconds: a bound for what must come, never a measure of speed


class CountingPods(api.NodePods):
    """The node runtime, counting the status reads asked of it one pod at a time."""

    def __init__(self, opts: api.PodOptions) -> None:
        super().__init__(opts)
        self.reads = 0

    def status(self, ref: str) -> api.PodStatus:
        self.reads += 1
        return super().status(ref)


_HELD: list[Any] = []  # the pods' locks, held as their monitors hold them


def running_pod(root: Path, uid: str, name: str) -> Path:
    """``testkit.poddirs.running_pod``, its lock held until the test ends."""
    pd = held_running_pod(root, uid, name)
    _HELD.append(pd)
    return pd.path


def static(name: str, uid: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "default", "uid": uid}
    return {"metadata": meta, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}


async def queued(mgr: PodManager) -> set[str]:
    """What is queued now, taken off the queue (as workers would, without syncing)."""
    out = set()
    while len(mgr.queue):
        key = await asyncio.wait_for(mgr.queue.get(), WAIT)
        out.add(key)
        mgr.queue.done(key)
    return out


async def sync_reads(mgr: PodManager, uid: str) -> None:
    """What a sync of the pod reads of the runtime (the one status read it acts on)."""
    assert await mgr._runtime_status(uid) is not None


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        runtime = CountingPods(api.PodOptions(root=str(tmp_path / "pods")))
        client = ApiClient(ClientConfig("https://127.0.0.1:9"))  # never reached
        mgr = PodManager(client, runtime, "n", lambda: "127.0.0.1", EventRecorder(client, "n"),
                         tmp_path)  # fmt: skip
        # the pods are static: the relist does not take them for pods the API no longer has
        mgr.static = {"default/web": static("web", UID), "default/db": static("db", OTHER)}
        mgr._resynced = asyncio.get_running_loop().time()  # no full resync unless asked
        try:
            await body(mgr, runtime)
        finally:
            await mgr.stop()
            await client.close()
            while _HELD:
                _HELD.pop().unlock()

    asyncio.run(main())


def test_an_idle_running_pod_is_not_synced_at_each_relist(tmp_path: Path) -> None:
    async def body(mgr: PodManager, runtime: CountingPods) -> None:
        running_pod(tmp_path / "pods", UID, "web")
        await mgr._relist()  # first seen (an agent that starts adopts its pods)
        assert await queued(mgr) == {"default/web"}
        await sync_reads(mgr, UID)
        reads = runtime.reads
        for _ in range(5):  # five relist periods, nothing changing
            await mgr._relist()
            assert await queued(mgr) == set()
        assert runtime.reads == reads
        # The status watch reported a change and the pod's sync read it: the relist that
        # lists the same status does not queue the pod again.
        monitor_writes(tmp_path / "pods" / "run" / UID / "status" / "app", "state=running\n")
        await sync_reads(mgr, UID)
        await mgr._relist()
        assert await queued(mgr) == set()
        # Every RESYNC seconds every pod is synced (a safety net).
        mgr._resynced -= RESYNC
        await mgr._relist()
        assert await queued(mgr) == {"default/web", "default/db"}

    run(tmp_path, body)


def test_a_changed_pod_is_never_missed(tmp_path: Path) -> None:
    async def body(mgr: PodManager, runtime: CountingPods) -> None:
        web = running_pod(tmp_path / "pods", UID, "web")
        db = running_pod(tmp_path / "pods", OTHER, "db")
        await mgr._relist()
        assert await queued(mgr) == {"default/web", "default/db"}
        await sync_reads(mgr, UID)
        await sync_reads(mgr, OTHER)
        await mgr._relist()
        assert await queued(mgr) == set()
        # Its container ended, and nothing else said so (no status watch): queued.
        monitor_writes(web / "status" / "app", "state=terminated\nexit_code=1\n")
        await mgr._relist()
        assert await queued(mgr) == {"default/web"}
        await mgr._relist()  # the relist saw it: once is enough, the sync reads it
        assert await queued(mgr) == set()
        # It restarted (a probe, a restart policy): queued again.
        monitor_writes(web / "status" / "app", "state=running\nrestart_count=1\n")
        await mgr._relist()
        assert await queued(mgr) == {"default/web"}
        # A sync read a status that changed right after: the relist queues the pod again.
        await sync_reads(mgr, UID)
        monitor_writes(web / "status" / "app", "state=running\nrestart_count=1\nready=true\n")
        await mgr._relist()
        assert await queued(mgr) == {"default/web"}
        # Gone from the node without a sync of ours: queued (its sync reports or remakes it).
        shutil.rmtree(db)
        await mgr._relist()
        assert await queued(mgr) == {"default/db"}
        await mgr._relist()
        assert await queued(mgr) == set()

    run(tmp_path, body)


def test_a_pod_being_made_is_never_taken_for_one_the_api_lost(tmp_path: Path) -> None:
    """A make's pod directory before its record is written (prepare/, no name yet) is not a
    runtime pod of some key the API no longer has: neither queued nor removed."""

    async def body(mgr: PodManager, runtime: CountingPods) -> None:
        made = PodStore(tmp_path / "pods").create(UID)
        made.unlock()  # as between the make's steps: nobody holds it for an instant
        await mgr._relist()
        for key in await queued(mgr):
            await mgr.sync(key)
        assert made.path.is_dir()
        assert all(st.uid != UID for sts in mgr._runtime.values() for st in sts)

    run(tmp_path, body)


def test_a_pod_made_while_a_relist_lists_is_queued_when_it_goes(tmp_path: Path) -> None:
    """The relist's listing runs in a thread while syncs make pods: a pod made (and read by
    its sync) after the listing is the node's from then on, so a later relist that no longer
    finds it queues it."""

    async def body(mgr: PodManager, runtime: CountingPods) -> None:
        web = running_pod(tmp_path / "pods", UID, "web")

        def listing_before_the_make() -> list[api.PodStatus]:
            mgr._seen[UID] = api.NodePods.status(runtime, UID)  # its sync, meanwhile
            return []

        runtime.list = listing_before_the_make  # type: ignore[method-assign]
        await mgr._relist()
        del runtime.list
        await queued(mgr)
        shutil.rmtree(web)  # gone without a sync of ours
        await mgr._relist()
        assert "default/web" in await queued(mgr)

    run(tmp_path, body)


def test_a_pod_removed_is_not_stopped_or_looked_up_again_when_it_goes(tmp_path: Path) -> None:
    """The sync after the API's deletion of a pod the kubelet has just removed asks nothing
    more of the runtime for it (each ask of a pod the store does not have lists every pod);
    the runtime's waiting status of a failed pull is still removed by name."""

    async def body(mgr: PodManager, runtime: CountingPods) -> None:
        running_pod(tmp_path / "pods", UID, "web")
        mgr.static = {}
        await mgr._relist()
        assert [st.uid for st in mgr._runtime["default/web"]] == [UID]
        asked: list[tuple[str, tuple[Any, ...]]] = []
        runtime.stop = lambda *a: asked.append(("stop", a))  # type: ignore[method-assign]
        runtime.remove = lambda *a: asked.append(("remove", a))  # type: ignore[method-assign]
        await mgr._remove(UID)  # as the graceful deletion does, once stopped
        assert asked == [("remove", (UID, True))]
        assert await mgr.sync("default/web") is None  # the API's pod is gone
        assert asked == [("remove", (UID, True))]
        mgr._pull_waiting.add("default/db")  # its make failed on its image
        await mgr.sync("default/db")
        assert asked[1:] == [("remove", ("default/db",))]
        await mgr.sync("default/db")  # once
        assert len(asked) == 2

    run(tmp_path, body)
