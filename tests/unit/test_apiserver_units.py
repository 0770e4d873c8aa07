"""The API server's pure parts (patches, selectors, tables) and, in process over a real SQLite
store, what the subprocess tests cannot force: a compacted resourceVersion (410), bookmarks
and timeoutSeconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")

from orchestrator.apiserver.app import ApiServer  # noqa: E402
from orchestrator.apiserver.errors import ApiError  # noqa: E402
from orchestrator.apiserver.managedfields import definition, root_type  # noqa: E402
from orchestrator.apiserver.patch import (  # noqa: E402
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from orchestrator.apiserver.resources import by_path  # noqa: E402
from orchestrator.apiserver.selectors import field_selector, label_selector  # noqa: E402
from orchestrator.apiserver.storage import Storage  # noqa: E402
from orchestrator.apiserver.tables import human_duration  # noqa: E402
from orchestrator.store import Backend, KeyValue, open_store  # noqa: E402


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z",
        "c": {"d": "e"},
    }
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_json_patch_rfc6902() -> None:
    doc = {"a": {"b": [1, 2]}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/a/b/0", "value": 0},
            {"op": "move", "from": "/a/b", "path": "/c"},
            {"op": "test", "path": "/c", "value": [0, 2, 3]},
        ],
    )
    assert out == {"a": {}, "c": [0, 2, 3]} and doc == {"a": {"b": [1, 2]}}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/a/b", "value": []}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])


POD = root_type("", "v1", "Pod")
CONTAINER = definition("io.k8s.api.core.v1.Container")
OBJECT_META = definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def test_strategic_merge_keyed_lists_and_directives() -> None:
    live = {
        "metadata": {"finalizers": ["f1"]},
        "spec": {
            "containers": [
                {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]},
                {"name": "b", "image": "y:1"},
            ],
        },
    }
    patch = {
        "metadata": {"finalizers": ["f2"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "x:2", "env": [{"name": "F", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
            ],
        },
    }
    out = strategic_merge_patch(live, patch, POD)
    # with no $setElementOrder the patch's new items come first, as in kube-apiserver
    assert out["spec"]["containers"] == [
        {
            "name": "a",
            "image": "x:2",
            "env": [{"name": "F", "value": "2"}, {"name": "E", "value": "1"}],
        }
    ]
    assert out["metadata"]["finalizers"] == ["f2", "f1"]
    assert live["spec"]["containers"][1]["name"] == "b"  # the live object is untouched
    out = strategic_merge_patch(
        live, {"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}, POD
    )
    assert out["spec"]["containers"] == [{"name": "c", "image": "z"}]
    ports = strategic_merge_patch(
        {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81}]}},
        {"spec": {"ports": [{"port": 80, "name": "web"}]}},
        root_type("", "v1", "Service"),
    )
    assert ports == {"spec": {"ports": [{"port": 80, "name": "web"}, {"port": 81}]}}


SMP_CASES = [
    # lists with no patch strategy are atomic: the patch's list replaces the live one
    (
        "tolerations atomic",
        ("", "v1", "Pod"),
        {"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}},
        {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
        {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
    ),
    (
        "args and envFrom atomic",
        ("", "v1", "Pod"),
        {"spec": {"containers": [{"name": "c", "args": ["a", "b"], "envFrom": [{"prefix": "X"}]}]}},
        {"spec": {"containers": [{"name": "c", "args": ["b"], "envFrom": [{"prefix": "Y"}]}]}},
        {"spec": {"containers": [{"name": "c", "args": ["b"], "envFrom": [{"prefix": "Y"}]}]}},
    ),
    (
        "node images atomic",
        ("", "v1", "Node"),
        {"status": {"images": [{"names": ["a"], "sizeBytes": 1}, {"names": ["b"]}]}},
        {"status": {"images": [{"names": ["a"], "sizeBytes": 2}]}},
        {"status": {"images": [{"names": ["a"], "sizeBytes": 2}]}},
    ),
    (
        "endpointslice ports and endpoints atomic",
        ("discovery.k8s.io", "v1", "EndpointSlice"),
        {"ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}]},
        {"ports": [{"port": 81}], "endpoints": [{"addresses": ["10.0.0.2"]}]},
        {"ports": [{"port": 81}], "endpoints": [{"addresses": ["10.0.0.2"]}]},
    ),
    # keyed lists merge item by item on their merge key
    (
        "env merged by name",
        ("apps", "v1", "Deployment"),
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A"}]}]}}}},
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B"}]}]}}}},
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "env": [{"name": "B"}, {"name": "A"}]}]}
                }
            }
        },
    ),
    (
        "container ports merged by containerPort",
        ("", "v1", "Pod"),
        {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "a"}]}]}},
        {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "b"}]}]}},
        {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "b"}]}]}},
    ),
    (
        "job conditions merged by type (strategy merge on an atomic list)",
        ("batch", "v1", "Job"),
        {"status": {"conditions": [{"type": "Failed", "status": "False"}]}},
        {"status": {"conditions": [{"type": "Failed", "status": "True"}]}},
        {"status": {"conditions": [{"type": "Failed", "status": "True"}]}},
    ),
    # retainKeys: the keys the directive does not name are cleared
    (
        "volume source switched by $retainKeys",
        ("", "v1", "Pod"),
        {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}},
        {
            "spec": {
                "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
                "volumes": [
                    {"$retainKeys": ["hostPath", "name"], "name": "v", "hostPath": {"path": "/x"}}
                ],
            }
        },
        {
            "spec": {
                "volumes": [
                    {"name": "v", "hostPath": {"path": "/x"}},
                    {"name": "w", "emptyDir": {}},
                ]
            }
        },
    ),
    (
        "deployment strategy cleared by $retainKeys",
        ("apps", "v1", "Deployment"),
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
    ),
    # a primitive list with strategy merge is a set
    (
        "finalizers a set",
        ("", "v1", "ConfigMap"),
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}},
        {"metadata": {"finalizers": ["b", "c"]}},
    ),
    # strategy replace: the map is replaced, not merged
    (
        "pdb selector replaced",
        ("policy", "v1", "PodDisruptionBudget"),
        {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
        {"spec": {"selector": {"matchLabels": {"b": "2"}}}},
        {"spec": {"selector": {"matchLabels": {"b": "2"}}}},
    ),
    # maps merge key by key (nodeSelector, labels) and null deletes
    (
        "maps merged",
        ("", "v1", "Pod"),
        {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"x": "1"}}},
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"nodeSelector": {"y": "2"}}},
        {
            "metadata": {"labels": {"b": "2", "c": "3"}},
            "spec": {"nodeSelector": {"x": "1", "y": "2"}},
        },
    ),
    # a field the schema does not have is replaced whole
    (
        "unknown field replaced",
        ("", "v1", "Pod"),
        {"spec": {"extra": {"a": 1, "b": [1]}}},
        {"spec": {"extra": {"c": 2}}},
        {"spec": {"extra": {"c": 2}}},
    ),
]


@pytest.mark.parametrize(
    ("gvk", "live", "patch", "want"),
    [c[1:] for c in SMP_CASES],
    ids=[c[0] for c in SMP_CASES],
)
def test_strategic_merge_follows_the_schema(
    gvk: tuple[str, str, str], live: dict[str, Any], patch: dict[str, Any], want: dict[str, Any]
) -> None:
    before = json.dumps(live, sort_keys=True)
    assert strategic_merge_patch(live, patch, root_type(*gvk)) == want
    assert json.dumps(live, sort_keys=True) == before  # the live object is untouched


POD_GVK = ("", "v1", "Pod")
DEPLOYMENT_GVK = ("apps", "v1", "Deployment")


@pytest.mark.parametrize(
    ("gvk", "patch", "error"),
    [
        (POD_GVK, {"spec": {"containers": [{"image": "x"}]}}, "declared merge key: name"),
        (
            POD_GVK,
            {"spec": {"containers": [{"$patch": "delete", "image": "x"}]}},
            "declared merge key: name",
        ),
        (
            DEPLOYMENT_GVK,
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            "'rollingUpdate' is not retained",
        ),
        (POD_GVK, {"spec": {"containers": [{"name": "c", "$patch": "x"}]}}, "unknown patch type"),
    ],
)
def test_strategic_merge_errors(
    gvk: tuple[str, str, str], patch: dict[str, Any], error: str
) -> None:
    live = {"spec": {"containers": [{"name": "c"}], "strategy": {"type": "Recreate"}}}
    with pytest.raises(PatchError, match=error):
        strategic_merge_patch(live, patch, root_type(*gvk))


def test_selectors() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "d", "labels": {"app": "x", "tier": "web"}},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    for text, want in [
        ("app=x", True),
        ("app==x,tier=web", True),
        ("app!=x", False),
        ("app in (x,y)", True),
        ("app notin (x)", False),
        ("tier", True),
        ("!tier", False),
        ("nope", False),
    ]:
        sel = label_selector(text)
        assert sel is not None and sel(pod) is want, text
    sel = field_selector("spec.nodeName=n1,status.phase!=Failed,metadata.namespace=d", "pods")
    assert sel is not None and sel(pod)
    with pytest.raises(ApiError) as e:
        field_selector("spec.bogus=1", "pods")
    assert e.value.code == 400
    with pytest.raises(ApiError):
        label_selector("a b c")


def test_human_duration() -> None:
    assert [human_duration(s) for s in (5, 119, 150, 600, 3 * 3600 + 60, 49 * 3600)] == [
        "5s",
        "119s",
        "2m30s",
        "10m",
        "3h1m",
        "2d1h",
    ]


async def _serve(tmp: Path, bookmark: float) -> tuple[ApiServer, aiohttp.web.AppRunner, str]:
    from aiohttp import web

    store = open_store(f"sqlite://{tmp}/state.db", compact_interval=0)
    await store.start()
    api = ApiServer(store, require_client_cert=False, bookmark_interval=bookmark)
    await api.start()
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return api, runner, f"http://127.0.0.1:{port}"


def test_watch_gone_bookmarks_and_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        api, runner, url = await _serve(tmp_path, bookmark=0.2)
        try:
            async with aiohttp.ClientSession() as s:
                cms = f"{url}/api/v1/namespaces/default/configmaps"
                revs = []
                for i in range(3):
                    async with s.post(cms, json={"metadata": {"name": f"c{i}"}}) as r:
                        assert r.status == 201
                        revs.append(int((await r.json())["metadata"]["resourceVersion"]))
                await api.store.compact(revs[-1])
                # Older than the compaction: one ERROR event with 410 Expired, then the end.
                async with s.get(f"{cms}?watch=true&resourceVersion={revs[0]}") as r:
                    assert r.status == 200
                    lines = [json.loads(ln) for ln in (await r.read()).splitlines()]
                assert [ev["type"] for ev in lines] == ["ERROR"]
                assert lines[0]["object"]["code"] == 410
                assert lines[0]["object"]["reason"] == "Expired"
                # A list at a compacted revision: 410 too.
                async with s.get(
                    f"{cms}?resourceVersion={revs[0]}&resourceVersionMatch=Exact"
                ) as r:
                    assert r.status == 410
                # Bookmarks when asked for, and the stream ends at timeoutSeconds.
                q = (
                    f"{cms}?watch=true&resourceVersion={revs[-1]}"
                    "&allowWatchBookmarks=true&timeoutSeconds=1"
                )
                async with s.get(q) as r:
                    lines = [json.loads(ln) for ln in (await r.read()).splitlines()]
                assert lines and {ev["type"] for ev in lines} == {"BOOKMARK"}
                assert int(lines[-1]["object"]["metadata"]["resourceVersion"]) >= revs[-1]
                async with s.get(
                    f"{cms}?watch=true&resourceVersion={revs[-1]}&timeoutSeconds=1"
                ) as r:
                    assert await r.read() == b""
        finally:
            await api.close()
            await runner.cleanup()
            await api.store.close()

    asyncio.run(main())


class _LosesFirstUpdate:
    """The store, except that when ``armed`` the next update first loses to another writer:
    a real update of the same key lands between the API server's read and its write."""

    def __init__(self, store: Backend) -> None:
        self._store = store
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        if self.armed:
            self.armed = False
            cur = await self._store.get(key)
            obj = json.loads(cur.value)
            obj["data"]["other"] = "x"
            await self._store.update(key, json.dumps(obj).encode(), cur.mod_rev)
        return await self._store.update(key, value, revision)


def test_patch_that_loses_a_race_reads_again(tmp_path: Path) -> None:
    """Without a resourceVersion, an update that loses its compare-and-swap is made again on
    the newer object (kube-apiserver's GuaranteedUpdate); with one, it is a 409."""

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            racer = _LosesFirstUpdate(store)
            storage = Storage(racer)  # type: ignore[arg-type]
            try:
                await storage.ensure_namespaces()
                cms = by_path("", "v1", "configmaps")
                assert cms is not None
                await storage.create(
                    cms, "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}
                )
                racer.armed = True
                out = await storage.patch(cms, "default", "c", "merge", {"data": {"b": "2"}})
                assert out["data"] == {"a": "1", "b": "2", "other": "x"}
                assert (await storage.get(cms, "default", "c"))["data"] == out["data"]
                racer.armed = True
                rv = out["metadata"]["resourceVersion"]
                with pytest.raises(ApiError) as e:
                    await storage.patch(
                        cms, "default", "c", "merge",
                        {"metadata": {"resourceVersion": rv}, "data": {"d": "4"}},
                    )  # fmt: skip
                assert (e.value.code, e.value.reason) == (409, "Conflict")
                live = await storage.get(cms, "default", "c")
                assert live["data"] == {"a": "1", "b": "2", "other": "x"}
            finally:
                await storage.close()

    asyncio.run(main())


class _LosesFirstDelete(_LosesFirstUpdate):
    """The store, except that when ``armed`` the next delete first loses to another writer."""

    async def delete(self, key: str, revision: int) -> Any:
        if self.armed:
            self.armed = False
            cur = await self._store.get(key)
            await self._store.update(key, cur.value, cur.mod_rev)
        return await self._store.delete(key, revision)


def test_delete_that_loses_a_race_reads_again(tmp_path: Path) -> None:
    """A DELETE racing another write (a kubelet's status) is made again, as kube-apiserver
    does; a failed precondition stays a 409."""

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            racer = _LosesFirstDelete(store)
            storage = Storage(racer)  # type: ignore[arg-type]
            try:
                await storage.ensure_namespaces()
                cms = by_path("", "v1", "configmaps")
                assert cms is not None
                for name in ("c", "d"):
                    await storage.create(cms, "default", {"metadata": {"name": name}})
                racer.armed = True
                await storage.delete(cms, "default", "c", {})
                with pytest.raises(ApiError) as e:
                    await storage.get(cms, "default", "c")
                assert e.value.code == 404
                racer.armed = True
                with pytest.raises(ApiError) as e:
                    await storage.delete(
                        cms, "default", "d", {"preconditions": {"resourceVersion": "1"}}
                    )
                assert e.value.code == 409 and "Precondition failed" in e.value.message
            finally:
                await storage.close()

    asyncio.run(main())


def test_object_cache_follows_the_watch_after_one_list(tmp_path: Path) -> None:
    """The authorizers' copy of a resource (RBAC kinds, pods): listed once, then kept by the
    watch cache's events (creates, updates, deletes), not by listing again."""
    from orchestrator.apiserver.objcache import ObjectCache
    from orchestrator.apiserver.watchcache import WatchCache

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            await storage.ensure_namespaces()
            cms = by_path("", "v1", "configmaps")
            assert cms is not None
            lists = 0
            real_list = storage.list

            async def counting_list(*args: Any, **kw: Any) -> Any:
                nonlocal lists
                lists += 1
                return await real_list(*args, **kw)

            storage.list = counting_list  # type: ignore[method-assign]
            cache = WatchCache(store, cms.key_prefix(None))
            objects = ObjectCache(storage, cache, cms)
            await objects.start()

            async def until(cond: Any) -> None:
                for _ in range(200):
                    if cond():
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the cache has {objects.objects}")

            try:
                await storage.create(cms, "default", {"metadata": {"name": "a"}, "data": {}})
                await until(lambda: ("default", "a") in objects.objects)
                await storage.patch(cms, "default", "a", "merge", {"data": {"k": "v"}})
                await until(lambda: objects.objects[("default", "a")].get("data") == {"k": "v"})
                await storage.delete(cms, "default", "a", {})
                await until(lambda: ("default", "a") not in objects.objects)
                assert lists == 1
            finally:
                await objects.close()
                await cache.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("server", "patch_items", "order", "want"),
    [
        # another writer's EXTRA stays after the client's items (kubectl set env, then apply
        # of the file without B)
        ("A B C EXTRA", [{"name": "B", "$patch": "delete"}], "A C", "A C EXTRA"),
        # the client moves C first: its items follow its order
        ("A B C", [], "C A B", "C A B"),
        # a new item from the client goes where its order puts it
        ("A C", [{"name": "B", "value": "b"}], "A B C", "A B C"),
        # a server-only item that came first stays first
        ("X A C", [], "A C", "X A C"),
        # interleaved: X was between A and C on the server and stays there
        ("A X C", [], "A C", "A X C"),
    ],
)
def test_set_element_order_places_the_items_as_kube_apiserver_does(
    server: str, patch_items: list[dict[str, str]], order: str, want: str
) -> None:
    live = {"env": [{"name": n, "value": n.lower()} for n in server.split()]}
    patch = {
        "$setElementOrder/env": [{"name": n} for n in order.split()],
        "env": patch_items,
    }
    out = strategic_merge_patch(live, patch, CONTAINER)
    assert " ".join(e["name"] for e in out["env"]) == want


def test_set_element_order_of_a_primitive_list() -> None:
    # the client's a, b in its order; x (the server's alone) was before a on the server
    live = {"finalizers": ["b", "x", "a"]}
    out = strategic_merge_patch(
        live, {"$setElementOrder/finalizers": ["a", "b"], "finalizers": ["a", "b"]}, OBJECT_META
    )
    assert out["finalizers"] == ["x", "a", "b"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"a":1, "a" :2}',  # one key spelled with a blank before its colon
        b'{"a":{"b":1,"b" :2}}',
        b'{"x": [{"y":1},{"y":1,\n"y"\t: 3}]}',
        b'{"k":"v\\\\\\":","k" :1}',  # a value ending in backslash-quote-colon, then k again
        b'{"a\\"":1, "b" : "x\\":", "c": ["\\\\", {"d\\\\":1}]}',  # quotes escaped, no dup
        b'{"a":"\\\\"}',
        b'{"metadata":{"name":"x"},"spec":{"containers":[{"name":"a","image":"b"}]}}',
        b"[]",
    ],
)
def test_duplicate_fields_with_the_decoded_body_as_without(raw: bytes) -> None:
    """The body reader passes the decoded body so that a body without repeated keys is not
    parsed a second time: the keys it spells out are counted (blanks before a colon, escaped
    quotes and colons in strings), and the answer is the one of the full parse."""
    import msgspec

    from orchestrator.apiserver.fields import duplicates

    assert duplicates(raw, msgspec.json.decode(raw)) == duplicates(raw)


def test_watch_cache_previous_values_are_the_stored_ones(tmp_path: Path) -> None:
    """A MODIFIED or DELETED event carries the object before it (selective watches judge
    both): taken from the window's last event of that key when the revisions agree, decoded
    from the store's event otherwise (its key trimmed from a window of one, a recreate)."""
    from orchestrator.apiserver.storage import decode_value
    from orchestrator.apiserver.watchcache import CacheEvent, WatchCache

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            cache = WatchCache(store, "/registry/t/", window=1)
            seen: list[CacheEvent] = []
            real_add = cache._add

            def add(ev: CacheEvent) -> None:
                seen.append(ev)
                real_add(ev)

            cache._add = add  # type: ignore[method-assign]
            sub = await cache.subscribe(await store.current_revision())
            try:
                a1 = await store.create("/registry/t/a", b'{"v":1}')
                a2 = await store.update("/registry/t/a", b'{"v":2}', a1.mod_rev)
                await store.create("/registry/t/b", b'{"v":1}')  # trims a from the window
                a3 = await store.update("/registry/t/a", b'{"v":3}', a2.mod_rev)
                d = await store.delete("/registry/t/a")
                await store.create("/registry/t/a", b'{"v":4}')
                got: list[CacheEvent] = []
                while len(got) < 6:
                    got += await sub.take(5.0)
                assert list(cache._latest) == ["/registry/t/a"]  # no more than the window
            finally:
                sub.close()
                await cache.close()
            assert [e.type for e in got] == [
                "ADDED",
                "MODIFIED",
                "ADDED",
                "MODIFIED",
                "DELETED",
                "ADDED",
            ]
            assert got[1].prev is got[0].obj  # reused
            assert got[1].prev == decode_value(a1)
            assert got[3].prev == decode_value(a2)  # decoded again: a was trimmed
            assert got[4].prev == decode_value(a3) and got[4].prev is got[3].obj
            assert got[5].prev is None
            assert d.prev == a3 and seen == got

    asyncio.run(main())


def test_create_copies_the_body_unless_the_caller_gives_it_up(tmp_path: Path) -> None:
    """Storage.create leaves the caller's body as it was (the server's own writers reuse
    theirs); with ``owned`` (a request's body, decoded for that create alone) it is filled
    in place instead of copied, and the stored object is the same either way."""

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            try:
                await storage.ensure_namespaces()
                cms = by_path("", "v1", "configmaps")
                assert cms is not None
                body = {"metadata": {"name": "kept", "labels": {"a": "b"}}, "data": {"k": "v"}}
                given = json.loads(json.dumps(body))
                kept = await storage.create(cms, "default", body)
                assert body == given
                owned = json.loads(json.dumps(given))
                owned["metadata"]["name"] = "owned"
                made = await storage.create(cms, "default", owned, owned=True)
                assert owned["metadata"].get("uid")  # filled in place, not copied
                for obj in (kept, made):
                    meta = obj["metadata"]
                    for f in ("name", "uid", "creationTimestamp", "resourceVersion"):
                        meta.pop(f)
                    obj["metadata"]["managedFields"] = None
                assert kept == made
            finally:
                await storage.close()

    asyncio.run(main())


def test_bind_sets_the_node_and_keeps_the_rest_of_the_pod(tmp_path: Path) -> None:
    """pods/binding writes spec.nodeName, the binding's annotations and the PodScheduled
    condition over the stored pod and leaves every other field as it was stored (the spec
    is not decoded in full for it); a bound pod is not bound again, a gone one is a 404."""

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            try:
                await storage.ensure_namespaces()
                pods = by_path("", "v1", "pods")
                assert pods is not None
                await storage.create(
                    pods,
                    "default",
                    {
                        "metadata": {"name": "p", "annotations": {"a": "1"}},
                        "spec": {
                            "containers": [
                                {"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}]}
                            ],
                            "tolerations": [{"key": "k", "operator": "Exists"}],
                        },
                    },
                )
                before = await storage.get(pods, "default", "p")
                binding = {"metadata": {"name": "p", "annotations": {"b": "2"}}}
                await storage.bind(pods, "default", "p", {**binding, "target": {"name": "n1"}})
                after = await storage.get(pods, "default", "p")
                assert list(after["spec"]) == [*before["spec"], "nodeName"]
                assert after["spec"] == {**before["spec"], "nodeName": "n1"}
                assert after["metadata"]["annotations"] == {"a": "1", "b": "2"}
                for f in ("annotations", "resourceVersion"):
                    before["metadata"].pop(f)
                    after["metadata"].pop(f)
                assert after["metadata"] == before["metadata"]
                conds = after["status"].pop("conditions")
                assert [(c["type"], c["status"]) for c in conds] == [("PodScheduled", "True")]
                assert after["status"] == before["status"]
                assert set(after) == set(before)
                with pytest.raises(ApiError) as e:
                    await storage.bind(pods, "default", "p", {"target": {"name": "n2"}})
                assert e.value.code == 409 and 'already assigned to node "n1"' in e.value.message
                with pytest.raises(ApiError) as e:
                    await storage.bind(pods, "default", "gone", {"target": {"name": "n2"}})
                assert e.value.code == 404
                await storage.create(
                    pods,
                    "default",
                    {
                        "metadata": {"name": "q", "finalizers": ["example.com/hold"]},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                )
                await storage.delete(pods, "default", "q", {})  # held by its finalizer
                with pytest.raises(ApiError) as e:
                    await storage.bind(pods, "default", "q", {"target": {"name": "n1"}})
                assert e.value.code == 409 and "is being deleted" in e.value.message
            finally:
                await storage.close()

    asyncio.run(main())


@pytest.mark.parametrize("raw", [bytes(16), b"\xff" * 16, bytes(range(16)), b"\x5a" * 16])
def test_new_uids_are_the_uuid4_of_their_bytes(raw: bytes) -> None:
    """An object's uid is ``str(uuid.UUID(bytes=..., version=4))`` of 16 random bytes, as
    uuid.uuid4() gives it, spelled out without the UUID object."""
    import uuid

    from orchestrator.apiserver.storage import _new_uid, _uuid4_text

    assert _uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))
    made = _new_uid()
    assert uuid.UUID(made).version == 4 and str(uuid.UUID(made)) == made


def test_a_watch_that_does_not_keep_up_is_ended(tmp_path: Path) -> None:
    """A watch whose client reads slowly (or not at all) queued every event without bound
    (each kept alive past the cache's window). Past ``backlog`` queued events it is ended,
    as kube's cacher ends a watcher that does not keep up: the queue is dropped, the watch
    takes Closed, ``on_overflow`` (the connection's abort) is called and the cache forgets
    it; a watch that keeps up is not touched."""
    from orchestrator.apiserver.watchcache import Closed, WatchCache

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            cache = WatchCache(store, "/registry/t/", backlog=3)
            start = await store.current_revision()
            slow = await cache.subscribe(start)
            quick = await cache.subscribe(start)
            dropped: list[bool] = []
            slow.on_overflow = lambda: dropped.append(True)
            try:
                seen = 0
                for i in range(5):
                    await store.create(f"/registry/t/{i}", b"{}")
                    while seen <= i:
                        seen += len(await quick.take(5.0))
                assert dropped == [True]
                with pytest.raises(Closed):
                    await slow.take(5.0)
                assert cache._subscribers == {quick}
            finally:
                slow.close()
                quick.close()
                await cache.close()

    # (the bound only keeps a hang, the cache's task dead, from hanging the suite)
    asyncio.run(asyncio.wait_for(main(), 60))
