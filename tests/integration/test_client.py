"""orchestrator.client against a real ``corral server``: the REST verbs and their errors,
pods/binding as a compare-and-swap, informers that follow every change (across a server
restart), and leader election through a Lease."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.client import (
    AlreadyExists,
    ApiClient,
    ClientError,
    Conflict,
    Informer,
    LeaderElector,
    NotFound,
    load_kubeconfig,
    meta_key,
    strip_managed_fields,
)
from orchestrator.client.rest import CONFIGMAPS, LEASES, NAMESPACES, PODS
from tests.kubeserver import API_ONLY, Server

pytestmark = pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="no openssl")

NS = "client-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("client"), extra=API_ONLY)
    srv.start()
    try:
        code, _ = srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert code == 201
        yield srv
    finally:
        srv.stop()


def run(server: Server, fn: Any) -> Any:
    async def main() -> Any:
        async with ApiClient(load_kubeconfig(server.kubeconfig)) as c:
            return await fn(c)

    return asyncio.run(main())


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def test_verbs_and_typed_errors(server: Server) -> None:
    async def body(c: ApiClient) -> None:
        cm = {"metadata": {"name": "v1"}, "data": {"a": "1"}}
        made = await c.create(CONFIGMAPS, NS, cm)
        assert made["metadata"]["uid"]
        with pytest.raises(AlreadyExists):
            await c.create(CONFIGMAPS, NS, cm)
        got = await c.get(CONFIGMAPS, NS, "v1")
        assert got["data"] == {"a": "1"}
        stale = dict(got)
        got["data"] = {"a": "2"}
        await c.update(CONFIGMAPS, NS, got)
        with pytest.raises(Conflict):  # the resourceVersion it carries is gone
            await c.update(CONFIGMAPS, NS, {**stale, "data": {"a": "3"}})
        patched = await c.patch(CONFIGMAPS, NS, "v1", {"data": {"b": "x"}})
        assert patched["data"] == {"a": "2", "b": "x"}
        await c.delete(CONFIGMAPS, NS, "v1")
        with pytest.raises(NotFound):
            await c.get(CONFIGMAPS, NS, "v1")
        with pytest.raises(ClientError) as e:
            await c.create(CONFIGMAPS, NS, {"metadata": {"name": "Not_A_Name"}})
        assert e.value.code == 422

    run(server, body)


def test_list_all_pages(server: Server) -> None:
    async def body(c: ApiClient) -> None:
        await asyncio.gather(
            *(
                c.create(CONFIGMAPS, NS, {"metadata": {"name": f"page-{i}", "labels": {"p": "1"}}})
                for i in range(23)
            )
        )
        items, rv = await c.list_all(CONFIGMAPS, NS, label_selector="p=1", page=5)
        assert sorted(i["metadata"]["name"] for i in items) == sorted(
            f"page-{i}" for i in range(23)
        )
        assert int(rv) > 0

    run(server, body)


def test_binding_is_compare_and_swap(server: Server) -> None:
    async def body(c: ApiClient) -> None:
        await c.create(PODS, NS, _pod("bind-1"))
        await c.bind(NS, "bind-1", "node-a")
        pod = await c.get(PODS, NS, "bind-1")
        assert pod["spec"]["nodeName"] == "node-a"
        conds = {x["type"]: x["status"] for x in pod["status"]["conditions"]}
        assert conds["PodScheduled"] == "True"
        with pytest.raises(Conflict) as e:
            await c.bind(NS, "bind-1", "node-b")
        assert 'already assigned to node "node-a"' in e.value.message
        assert (await c.get(PODS, NS, "bind-1"))["spec"]["nodeName"] == "node-a"
        with pytest.raises(NotFound):
            await c.bind(NS, "no-such-pod", "node-a")

        # Two schedulers racing on the same pods: each pod is bound exactly once.
        names = [f"race-{i}" for i in range(10)]
        await asyncio.gather(*(c.create(PODS, NS, _pod(n)) for n in names))

        async def bind(name: str, node: str) -> str | None:
            try:
                await c.bind(NS, name, node)
                return node
            except Conflict:
                return None

        results = await asyncio.gather(
            *(bind(n, node) for n in names for node in ("node-a", "node-b"))
        )
        for i, name in enumerate(names):
            won = [r for r in results[2 * i : 2 * i + 2] if r]
            assert len(won) == 1, (name, results)
            assert (await c.get(PODS, NS, name))["spec"]["nodeName"] == won[0]

    run(server, body)


def test_binding_refused_verbs_and_bad_body(server: Server) -> None:
    code, _ = server.json("POST", f"/api/v1/namespaces/{NS}/pods", _pod("bind-bad"))
    assert code == 201
    code, body = server.json(
        "POST", f"/api/v1/namespaces/{NS}/pods/bind-bad/binding", {"target": {}}
    )
    assert code == 422, body
    code, _ = server.json("GET", f"/api/v1/namespaces/{NS}/pods/bind-bad/binding")
    assert code == 405
    code, body = server.json("GET", f"/api/v1/namespaces/{NS}/pods/bind-bad")
    assert "nodeName" not in body["spec"]


def test_informer_follows_changes_across_restart(server: Server) -> None:
    events: list[tuple[str, str]] = []

    async def body(c: ApiClient) -> None:
        await c.create(CONFIGMAPS, NS, {"metadata": {"name": "inf-0", "labels": {"i": "1"}}})
        inf = Informer(c, CONFIGMAPS, NS, label_selector="i=1", retry_delay=0.2)
        inf.add_handler(lambda ev, old, new: events.append((ev, meta_key(new or old or {}))))
        inf.start()
        try:
            await asyncio.wait_for(inf.wait_synced(), 30)
            assert inf.keys() == [f"{NS}/inf-0"]
            await c.create(CONFIGMAPS, NS, {"metadata": {"name": "inf-1", "labels": {"i": "1"}}})
            await c.patch(CONFIGMAPS, NS, "inf-1", {"data": {"k": "v"}})
            await c.delete(CONFIGMAPS, NS, "inf-0")
            await _until(lambda: len(events) >= 4)
            assert events == [
                ("ADDED", f"{NS}/inf-0"),
                ("ADDED", f"{NS}/inf-1"),
                ("MODIFIED", f"{NS}/inf-1"),
                ("DELETED", f"{NS}/inf-0"),
            ]
            # The server goes away and comes back: changes made meanwhile still arrive.
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await c.create(CONFIGMAPS, NS, {"metadata": {"name": "inf-2", "labels": {"i": "1"}}})
            await _until(lambda: inf.get(f"{NS}/inf-2") is not None)
            assert sorted(inf.keys()) == [f"{NS}/inf-1", f"{NS}/inf-2"]
            assert inf.get(f"{NS}/inf-1")["data"] == {"k": "v"}  # type: ignore[index]
        finally:
            await inf.stop()

    run(server, body)


def test_informer_transform_strips_managed_fields(server: Server) -> None:
    """The listed and the watched objects are transformed before the cache and the handlers
    see them; an update sent from a stripped object leaves the server's managedFields."""
    seen: list[dict[str, Any]] = []

    async def body(c: ApiClient) -> None:
        made = await c.create(CONFIGMAPS, NS, {"metadata": {"name": "tr-0", "labels": {"t": "1"}}})
        assert made["metadata"]["managedFields"]
        inf = Informer(c, CONFIGMAPS, NS, label_selector="t=1", transform=strip_managed_fields)
        inf.add_handler(lambda ev, old, new: seen.append(new or old or {}))
        inf.start()
        try:
            await asyncio.wait_for(inf.wait_synced(), 30)
            await c.create(CONFIGMAPS, NS, {"metadata": {"name": "tr-1", "labels": {"t": "1"}}})
            await _until(lambda: inf.get(f"{NS}/tr-1") is not None)
            cached = inf.get(f"{NS}/tr-0")
            assert cached is not None and "managedFields" not in cached["metadata"]
            assert cached["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
            assert [o["metadata"]["name"] for o in seen] == ["tr-0", "tr-1"]
            assert all("managedFields" not in o["metadata"] for o in seen)
            sent = {**cached, "data": {"k": "v"}}
            out = await c.update(CONFIGMAPS, NS, sent)
            assert out["metadata"]["managedFields"][0]["manager"] == "corral"
            assert "f:data" in out["metadata"]["managedFields"][0]["fieldsV1"]
            await _until(lambda: (inf.get(f"{NS}/tr-0") or {}).get("data") == {"k": "v"})
            assert "managedFields" not in inf.get(f"{NS}/tr-0")["metadata"]  # type: ignore[index]
        finally:
            await inf.stop()

    run(server, body)


def test_leader_election_hands_over(server: Server) -> None:
    async def body(c: ApiClient) -> None:
        a = LeaderElector(c, "test-lock", "a", namespace=NS, lease_duration=2, retry_period=0.2)
        b = LeaderElector(c, "test-lock", "b", namespace=NS, lease_duration=2, retry_period=0.2)
        assert await a.try_acquire()
        assert not await b.try_acquire()  # a renewed it just now
        assert await a.try_acquire()  # renewing is fine
        lease = await c.get(LEASES, NS, "test-lock")
        assert lease["spec"]["holderIdentity"] == "a"
        await a.release()
        assert await b.try_acquire()
        lease = await c.get(LEASES, NS, "test-lock")
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1

        # run(): a leads while renewing; when its lease is taken over, lead() is cancelled.
        led: list[str] = []

        async def lead() -> None:
            led.append("b")
            await asyncio.Event().wait()

        task = asyncio.create_task(b.run(lead))
        await asyncio.wait_for(b.leading.wait(), 10)
        assert led == ["b"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # b stopped renewing: after lease_duration a takes over.
        for _ in range(100):
            if await a.try_acquire():
                break
            await asyncio.sleep(0.1)
        assert (await c.get(LEASES, NS, "test-lock"))["spec"]["holderIdentity"] == "a"

    run(server, body)


def test_namespaces_listed(server: Server) -> None:
    async def body(c: ApiClient) -> list[str]:
        items, _ = await c.list_all(NAMESPACES)
        return [i["metadata"]["name"] for i in items]

    assert NS in run(server, body)


async def _until(cond: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


class _Relay:
    """A TCP relay on a free loopback port to the server: a second URL of the same server,
    which ``cut`` makes unreachable (its connections reset, its port refusing)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        async def conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.port)
            self.writers += [w, uw]
            await asyncio.gather(pipe(r, uw), pipe(ur, w))

        self.server = await asyncio.start_server(conn, "127.0.0.1", 0)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()  # RST to the client, as a server killed with SIGKILL
        await self.server.wait_closed()


def test_several_servers_fail_over_in_order(server: Server) -> None:
    """A client of two URLs uses the first until it cannot be reached, then the second: a
    request is sent again there, an informer's broken watch resumes there and misses nothing."""
    events: list[tuple[str, str]] = []

    async def main() -> None:
        relay = _Relay(server.port)
        first = await relay.start()
        cfg = load_kubeconfig(server.kubeconfig)
        direct = cfg.server
        async with ApiClient(replace(cfg, server=first, fallbacks=(direct,))) as c:
            assert c.server == first
            await c.create(CONFIGMAPS, NS, {"metadata": {"name": "fo-0", "labels": {"f": "1"}}})
            assert c.server == first  # no reason to move
            inf = Informer(c, CONFIGMAPS, NS, label_selector="f=1", retry_delay=0.2)
            inf.add_handler(lambda ev, old, new: events.append((ev, meta_key(new or old or {}))))
            inf.start()
            try:
                await asyncio.wait_for(inf.wait_synced(), 30)
                await relay.cut()
                # refused at the first URL: made through the second
                await c.create(CONFIGMAPS, NS, {"metadata": {"name": "fo-1", "labels": {"f": "1"}}})
                assert c.server == direct
                await c.patch(CONFIGMAPS, NS, "fo-0", {"data": {"k": "v"}})
                await _until(lambda: len(events) >= 3)
                assert events == [
                    ("ADDED", f"{NS}/fo-0"),
                    ("ADDED", f"{NS}/fo-1"),
                    ("MODIFIED", f"{NS}/fo-0"),
                ]
            finally:
                await inf.stop()
        # every server unreachable: one error naming the last one tried
        async with ApiClient(replace(cfg, server=first, fallbacks=(first,))) as c:
            with pytest.raises(ClientError) as e:
                await c.get(CONFIGMAPS, NS, "fo-0")
            assert e.value.reason == "Unreachable" and first in str(e.value)

    asyncio.run(main())


def test_an_agent_joins_through_the_first_server_it_reaches(server: Server, tmp_path: Path) -> None:
    """Join with a server that refuses connections first: the credentials come from the next
    one, which leads the client's order; the one that refused stays as a fallback."""
    from orchestrator.kubelet.join import JoinError, credentials
    from testkit.net import free_port

    dead = f"https://127.0.0.1:{free_port()}"
    live = f"https://127.0.0.1:{server.port}"
    token = (server.data_dir / "token").read_text().strip()

    async def main() -> None:
        cfg = await credentials(dead, token, "join-fo", "127.0.0.1", tmp_path, (live,))
        assert cfg.server == live and cfg.fallbacks == (dead,)
        async with ApiClient(cfg) as c:
            assert (await c.request("GET", "/version"))["gitVersion"]
        with pytest.raises(JoinError) as e:  # none reachable: the last one tried is named
            await credentials(dead, token, "join-fo2", "127.0.0.1", tmp_path / "x", ())
        assert dead in str(e.value) and "cannot connect" in str(e.value)

    asyncio.run(main())
