"""What the kubelet asks of the API per pod, against a real API server (no agent: the pod
manager and the event recorder are driven directly, through a real client whose requests are
recorded): a status already written is not written again while the watch has not brought it
back, but is when another writer changed it meanwhile; events are all written, in the order
recorded, one request at a time, a repeat counted on its Event; a configMap no pod reads any
more stays watched a while, so the next pod reading it waits for no list; a pod to be made
while MAKING are being made waits without holding a worker, and is queued when one ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.client import ApiClient, load_kubeconfig
from orchestrator.client.rest import CONFIGMAPS, EVENTS, PODS
from orchestrator.kubelet.events import EventRecorder
from orchestrator.kubelet.pods import MAKING, SOURCE_IDLE, ImagePullError, PodManager
from orchestrator.kubelet.podstatus import api_status
from runtime.pod import api
from runtime.pod.api import ContainerStatus, PodStatus
from tests.kubeserver import Server, api_only_server, temp_namespace

pytestmark = pytest.mark.root

NODE = "status-node"


class RecordingClient(ApiClient):
    """A real client that keeps each request's method and path, and the most requests it
    had in flight at once."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sent: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        self.sent.append((method, path))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().request(method, path, body, **kw)
        finally:
            self.in_flight -= 1

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for m, p in self.sent if m == method and p.endswith(suffix))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("status-writes")) as srv:
        yield srv


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "status") as name:
        yield name


def run(server: Server, tmp: Path, fn: Any) -> Any:
    async def main() -> Any:
        async with RecordingClient(load_kubeconfig(server.kubeconfig)) as c:
            opts = api.PodOptions(root=str(tmp / "pods"), image_root=str(tmp / "store"))
            runtime = api.NodePods(opts)
            mgr = PodManager(c, runtime, NODE, lambda: "127.0.0.1", EventRecorder(c, NODE), tmp)
            try:
                return await fn(c, mgr)
            finally:
                await mgr.stop()

    return asyncio.run(main())


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
    }


def _running(pod: dict[str, Any]) -> dict[str, Any]:
    """The status the node reports for ``pod`` with its container running and ready."""
    app = ContainerStatus("app", "app", "busybox", state="Running", ready=True)
    app.image_id, app.started_at = "sha256:" + "a" * 64, "2026-01-01T00:00:00Z"
    st = PodStatus(
        uid=pod["metadata"]["uid"],
        name=pod["metadata"]["name"],
        namespace=pod["metadata"]["namespace"],
        location="run",
        phase="Running",
        qos_class="BestEffort",
        pod_ip="10.42.0.9",
        host_network=False,
        created=0.0,
        containers=[app],
    )
    return api_status(pod, st, "127.0.0.1", "2026-01-01T00:00:01Z")


def test_a_status_is_not_written_again_while_the_watch_lags(
    server: Server, ns: str, tmp_path: Path
) -> None:
    async def body(c: RecordingClient, mgr: PodManager) -> None:
        seen = await c.create(PODS, ns, _pod("web"))  # what the informer holds: Pending
        key = f"{ns}/web"
        running = _running(seen)
        await mgr._write_status(key, seen, running)
        # The pod's worker runs again before the watch brings the write back: the pod it
        # sees is still the one written over, which says Pending.
        await mgr._write_status(key, seen, running)
        assert c.count("PATCH", "/pods/web/status") == 1
        now = await c.get(PODS, ns, "web")
        assert now["status"]["phase"] == "Running"
        # Once the watch has it, the same status is not written either.
        await mgr._write_status(key, now, running)
        assert c.count("PATCH", "/pods/web/status") == 1

    run(server, tmp_path, body)


def test_a_status_another_writer_changed_is_written_again(
    server: Server, ns: str, tmp_path: Path
) -> None:
    async def body(c: RecordingClient, mgr: PodManager) -> None:
        seen = await c.create(PODS, ns, _pod("web"))
        key = f"{ns}/web"
        running = _running(seen)
        await mgr._write_status(key, seen, running)
        # Someone else set the phase back (the pod seen has moved on from the one written
        # over): the node's status goes back in.
        other = await c.patch(PODS, ns, "web", {"status": {"phase": "Pending"}}, sub="status")
        before = c.count("PATCH", "/pods/web/status")
        await mgr._write_status(key, other, running)
        assert c.count("PATCH", "/pods/web/status") == before + 1
        assert (await c.get(PODS, ns, "web"))["status"]["phase"] == "Running"

    run(server, tmp_path, body)


def test_events_are_all_written_in_order_one_at_a_time(
    server: Server, ns: str, tmp_path: Path
) -> None:
    async def body(c: RecordingClient, mgr: PodManager) -> list[dict[str, Any]]:
        pod = await c.create(PODS, ns, _pod("web"))
        reasons = [f"Step{i}" for i in range(20)]
        for r in reasons:
            mgr.events.pod(pod, r, f"{r} of the pod", "app")
        mgr.events.pod(pod, "Step3", "Step3 of the pod", "app")  # a repeat: counted
        await mgr.events.flush()
        assert c.most_in_flight == 1
        posts = [p for m, p in c.sent if m == "POST" and p.endswith("/events")]
        assert len(posts) == len(reasons)
        events = (await c.list(EVENTS, ns))["items"]
        by_reason = {e["reason"]: e for e in events}
        assert sorted(by_reason) == sorted(reasons)
        assert by_reason["Step3"]["count"] == 2
        assert all(e["involvedObject"]["uid"] == pod["metadata"]["uid"] for e in events)
        return events

    events = run(server, tmp_path, body)
    # Written in the order recorded: the API's resourceVersions follow it.
    made = sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))
    order = [e["reason"] for e in made if e["reason"] != "Step3"]
    assert order == [f"Step{i}" for i in range(20) if i != 3]


def test_a_config_map_no_pod_reads_stays_watched_a_while(
    server: Server, ns: str, tmp_path: Path
) -> None:
    async def body(c: RecordingClient, mgr: PodManager) -> None:
        await c.create(CONFIGMAPS, ns, {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
        pod = _pod("web")
        pod["metadata"]["namespace"] = ns
        pod["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "cfg"}}]
        key = f"configmap/{ns}/cfg"
        await mgr._sources_synced(pod)
        assert mgr._lookup("configmap", ns, "cfg") is not None
        assert c.count("GET", "/configmaps") == 1  # its list
        mgr._prune_sources()  # no pod of the node reads it now (the pod went)
        await mgr._sources_synced(pod)  # the next pod reading it
        assert c.count("GET", "/configmaps") == 1
        assert mgr._lookup("configmap", ns, "cfg") is not None
        mgr._prune_sources()
        mgr._unused[key] -= SOURCE_IDLE  # unread that long: no longer watched
        mgr._prune_sources()
        assert key not in mgr._sources
        await asyncio.gather(*mgr._stopping)
        await mgr._sources_synced(pod)  # listed again
        assert c.count("GET", "/configmaps") == 2

    run(server, tmp_path, body)


def test_a_pod_waiting_to_be_made_holds_no_worker(server: Server, ns: str, tmp_path: Path) -> None:
    async def body(c: RecordingClient, mgr: PodManager) -> None:
        mgr.informer.start()
        await mgr.informer.wait_synced()
        await c.create(PODS, ns, _pod("web"))
        key = f"{ns}/web"
        for _ in range(600):
            if mgr.informer.get(key) is not None:
                break
            await asyncio.sleep(0.05)
        mgr._making = MAKING  # as many pods as there may be are being made
        assert await asyncio.wait_for(mgr.sync(key), 10) is None  # the worker is free again
        assert list(mgr._to_make) == [key]
        assert not (tmp_path / "pods").exists() or not api.list_pods(mgr.runtime.opts)
        while len(mgr.queue):  # what the informer queued meanwhile
            mgr.queue.done(await mgr.queue.get())
        # One of them ends (here: its image is not on the node and may not be pulled).
        mgr._making = MAKING - 1
        other = _pod("other")
        other["metadata"].update(namespace=ns, uid="0b5e0f6a-1111-2222-3333-444455556666")
        other["spec"]["containers"][0].update(image="absent.invalid/x:1", imagePullPolicy="Never")
        with pytest.raises(ImagePullError):
            await mgr._make_one(f"{ns}/other", other)
        assert mgr._making == MAKING - 1 and not mgr._to_make
        assert await asyncio.wait_for(mgr.queue.get(), 10) == key  # its turn

    run(server, tmp_path, body)
