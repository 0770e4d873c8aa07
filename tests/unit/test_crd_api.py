"""CustomResourceDefinitions through the API server in this process (no root, a SQLite store
in a temporary directory): what the kubectl tests (tests/integration/test_apiserver_crd.py)
do not reach: a CRD written by another server (straight into the store) is served, a CRD
update takes effect, creates are refused while a CRD terminates, a namespace's deletion takes
its custom resources, the default AGE column, names clashing."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.apiserver import crd
from orchestrator.apiserver.resources import by_path
from tests.unit.test_apiserver_units import _serve

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GROUP = "unit.example.com"
SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"size": {"type": "string"}, "count": {"type": "integer"}},
        }
    },
}


def _crd(plural: str = "gadgets", kind: str = "Gadget", **names: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, **names},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": copy.deepcopy(SCHEMA)},
                }
            ],
        },
    }


Req = Callable[..., Awaitable[tuple[int, Any]]]


def _run(
    tmp: Path, body: Callable[[Any, Req], Awaitable[None]], url_out: list[str] | None = None
) -> None:
    async def main() -> None:
        api, runner, url = await _serve(tmp, 60)
        if url_out is not None:
            url_out.append(url)
        try:
            async with aiohttp.ClientSession() as s:

                async def req(
                    method: str,
                    path: str,
                    obj: Any = None,
                    ctype: str = "application/json",
                    **kw: Any,
                ) -> tuple[int, Any]:
                    data = json.dumps(obj) if obj is not None else None
                    headers = {"Content-Type": ctype, **kw.get("headers", {})}
                    async with s.request(method, url + path, data=data, headers=headers) as r:
                        text = await r.text()
                        return r.status, json.loads(text) if text else None

                await body(api, req)
        finally:
            await runner.cleanup()
            await api.close()
            await api.store.close()
            crd.sync([])  # (the table of served resources is the process's)

    asyncio.run(main())


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):  # a generous bound (a loaded machine), not a timing assertion
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def test_crd_written_by_another_server_is_served(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        code, made = await req("POST", CRDS, _crd())
        assert code == 201
        # another server over the same etcd writes a second CRD: this one serves it too
        other = copy.deepcopy(made)
        other["metadata"] = {"name": f"widgets.{GROUP}", "uid": "u", "finalizers": [crd.FINALIZER]}
        other["spec"]["names"] = {**other["spec"]["names"], "plural": "widgets", "kind": "Widget",
                                  "singular": "widget", "listKind": "WidgetList"}  # fmt: skip
        other["status"]["acceptedNames"] = other["spec"]["names"]
        key = f"/registry/customresourcedefinitions.apiextensions.k8s.io/widgets.{GROUP}"
        await api.store.create(key, json.dumps(other).encode())

        async def served() -> bool:
            code, _ = await req("GET", f"/apis/{GROUP}/v1/namespaces/default/widgets")
            return code == 200

        await _eventually(served, "the CRD written to the store served")

    _run(tmp_path, body)


def test_update_takes_effect_and_terminating_refuses_creates(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        code, made = await req("POST", CRDS, _crd())
        assert code == 201
        base = f"/apis/{GROUP}/v1/namespaces/default/gadgets"
        code, obj = await req(
            "POST", base, {"metadata": {"name": "g"}, "spec": {"size": "S", "x": 1}}
        )
        assert code == 201 and obj["spec"] == {"size": "S"}, obj
        assert obj["kind"] == "Gadget" and obj["apiVersion"] == f"{GROUP}/v1"
        # a changed schema: x is known now, a second version is served
        schema = made["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schema["properties"]["spec"]["properties"]["x"] = {"type": "integer"}
        made["spec"]["versions"].append(
            {**made["spec"]["versions"][0], "name": "v2", "storage": False}
        )
        code, made = await req("PUT", f"{CRDS}/gadgets.{GROUP}", made)
        assert code == 200, made
        assert made["metadata"]["generation"] == 2
        code, err = await req(
            "POST", base, {"metadata": {"name": "i"}, "spec": {"x": "a", "size": 1}}
        )
        assert code == 422
        assert err["message"] == (
            'Gadget.unit.example.com "i" is invalid: [spec.size: Invalid value: "integer":'
            ' spec.size in body must be of type string: "integer", spec.x: Invalid value:'
            ' "string": spec.x in body must be of type integer: "string"]'
        )
        assert [c["field"] for c in err["details"]["causes"]] == ["spec.size", "spec.x"]
        code, obj = await req("POST", base, {"metadata": {"name": "h"}, "spec": {"x": 1}})
        assert code == 201 and obj["spec"] == {"x": 1}, obj
        code, doc = await req("GET", f"/apis/{GROUP}")
        assert [v["version"] for v in doc["versions"]] == ["v2", "v1"]
        # the default table: NAME, AGE
        code, table = await req(
            "GET", base, headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"}
        )
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
        # a finalizer holds one custom resource: the CRD terminates, creates are refused
        code, _ = await req("PATCH", f"{base}/g", {"metadata": {"finalizers": ["x/y"]}},
                            "application/merge-patch+json")  # fmt: skip
        assert code == 200
        code, gone = await req("DELETE", f"{CRDS}/gadgets.{GROUP}")
        assert code == 200 and gone["metadata"]["deletionTimestamp"]

        async def terminating() -> bool:
            code, obj = await req("GET", f"{CRDS}/gadgets.{GROUP}")
            types = [c["type"] for c in obj["status"]["conditions"]]
            return "Terminating" in types

        await _eventually(terminating, "the Terminating condition")
        code, err = await req("POST", base, {"metadata": {"name": "late"}})
        assert code == 405, err
        assert (
            err["message"] == "create not allowed while custom resource definition is terminating"
        )

        async def h_deleted() -> bool:
            return (await req("GET", f"{base}/h"))[0] == 404

        await _eventually(h_deleted, "h deleted")  # (g waits for its finalizer)
        code, _ = await req("GET", f"{base}/g")
        assert code == 200
        code, _ = await req("PATCH", f"{base}/g", {"metadata": {"finalizers": None}},
                            "application/merge-patch+json")  # fmt: skip
        assert code == 200

        async def gone_for_good() -> bool:  # (no longer served: a moment after the delete)
            code, _ = await req("GET", f"{CRDS}/gadgets.{GROUP}")
            return code == 404 and by_path(GROUP, "v1", "gadgets") is None

        await _eventually(gone_for_good, "the CRD deleted")
        code, _ = await req("GET", f"/apis/{GROUP}")
        assert code == 404
        page = await api.store.list(f"/registry/{GROUP}/")
        assert list(page.items) == []

    _run(tmp_path, body)


def test_namespace_deletion_takes_custom_resources(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        assert (await req("POST", CRDS, _crd()))[0] == 201
        assert (await req("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}}))[0] == 201
        base = f"/apis/{GROUP}/v1/namespaces/team/gadgets"
        assert (await req("POST", base, {"metadata": {"name": "g"}}))[0] == 201
        assert (await req("DELETE", "/api/v1/namespaces/team"))[0] == 200

        async def gone() -> bool:
            return (await req("GET", "/api/v1/namespaces/team"))[0] == 404

        await _eventually(gone, "the namespace deleted")
        assert list((await api.store.list(f"/registry/{GROUP}/gadgets/team/")).items) == []

    _run(tmp_path, body)


def test_names_clash_not_established(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        assert (await req("POST", CRDS, _crd(shortNames=["gd"])))[0] == 201
        code, other = await req("POST", CRDS, _crd("things", "Thing", shortNames=["gd"]))
        assert code == 201
        conds = {c["type"]: c for c in other["status"]["conditions"]}
        assert conds["NamesAccepted"]["status"] == "False"
        assert conds["NamesAccepted"]["message"] == '"gd" is already in use'
        assert conds["Established"]["status"] == "False"
        code, _ = await req("GET", f"/apis/{GROUP}/v1/things")
        assert code == 404
        # the CRD holding the name goes: the other's names are accepted, it is served
        assert (await req("DELETE", f"{CRDS}/gadgets.{GROUP}"))[0] == 200

        async def things_served() -> bool:
            return (await req("GET", f"/apis/{GROUP}/v1/things"))[0] == 200

        await _eventually(things_served, "things served once gadgets went")
        code, other = await req("GET", f"{CRDS}/things.{GROUP}")
        conds = {c["type"]: c["status"] for c in other["status"]["conditions"]}
        assert conds == {"NamesAccepted": "True", "Established": "True"}
        code, first = await req("GET", f"{CRDS}/things.{GROUP}")
        first["spec"]["scope"] = "Cluster"
        code, err = await req("PUT", f"{CRDS}/things.{GROUP}", first)
        assert code == 422
        assert err["message"].endswith('spec.scope: Invalid value: "Cluster": field is immutable')
        code, err = await req("POST", CRDS, {**_crd("bad", "Bad"), "metadata": {"name": "x"}})
        assert code == 422
        assert err["message"] == (
            'CustomResourceDefinition.apiextensions.k8s.io "x" is invalid: metadata.name:'
            ' Invalid value: "x": must be spec.names.plural+"."+spec.group'
        )

    _run(tmp_path, body)


def test_watches_of_two_versions_each_see_their_own(tmp_path: Path) -> None:
    """One stored event, two watchers in different versions: each gets its apiVersion (the
    frames encoded once per event are kept apart per version)."""

    async def body(api: Any, req: Req) -> None:
        made = _crd()
        made["spec"]["versions"].append(
            {**made["spec"]["versions"][0], "name": "v2", "storage": False}
        )
        assert (await req("POST", CRDS, made))[0] == 201
        code, listed = await req("GET", f"/apis/{GROUP}/v1/gadgets")
        rv = listed["metadata"]["resourceVersion"]
        async with aiohttp.ClientSession() as s:
            url = api_url[0]

            async def watch(version: str) -> list[Any]:
                path = f"{url}/apis/{GROUP}/{version}/gadgets?watch=1&resourceVersion={rv}"
                async with s.get(path + "&timeoutSeconds=3") as r:
                    return [json.loads(line) for line in (await r.read()).splitlines()]

            watches = [asyncio.ensure_future(watch(v)) for v in ("v1", "v2", "v1", "v2")]
            # (each watch starts at rv: it sees the create whenever it subscribed)
            base = f"/apis/{GROUP}/v2/namespaces/default/gadgets"
            assert (await req("POST", base, {"metadata": {"name": "g"}}))[0] == 201
            seen = [[e["object"]["apiVersion"] for e in await w] for w in watches]
        assert seen == [[f"{GROUP}/{v}"] for v in ("v1", "v2", "v1", "v2")]

    api_url: list[str] = []
    _run(tmp_path, body, api_url)


def test_metadata_checked_as_any_objects(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        assert (await req("POST", CRDS, _crd()))[0] == 201
        base = f"/apis/{GROUP}/v1/namespaces/default/gadgets"
        code, obj = await req("POST", base, {"metadata": {"name": "a", "bogus": 1}})
        assert code == 201 and "bogus" not in obj["metadata"], obj  # pruned (Warn)
        code, err = await req(
            "POST", base + "?fieldValidation=Strict", {"metadata": {"name": "b", "bogus": 1}}
        )
        assert code == 400
        assert err["message"].endswith('strict decoding error: unknown field "metadata.bogus"')
        code, err = await req("POST", base, {"metadata": {"name": "B"}})
        assert code == 422 and 'metadata.name: Invalid value: "B"' in err["message"]

    _run(tmp_path, body)


def test_scale_follows_the_crd_paths(tmp_path: Path) -> None:
    async def body(api: Any, req: Req) -> None:
        made = _crd()
        version = made["spec"]["versions"][0]
        version["schema"]["openAPIV3Schema"]["properties"]["status"] = {
            "type": "object",
            "properties": {"seen": {"type": "integer"}, "sel": {"type": "string"}},
        }
        version["subresources"] = {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.count",
                "statusReplicasPath": ".status.seen",
                "labelSelectorPath": ".status.sel",
            },
        }
        assert (await req("POST", CRDS, made))[0] == 201
        base = f"/apis/{GROUP}/v1/namespaces/default/gadgets"
        assert (await req("POST", base, {"metadata": {"name": "g"}, "spec": {"count": 2}}))[
            0
        ] == 201
        code, _ = await req(
            "PATCH", f"{base}/g/status", {"status": {"seen": 1, "sel": "app=g"}},
            "application/merge-patch+json",
        )  # fmt: skip
        assert code == 200
        code, scale = await req("GET", f"{base}/g/scale")
        assert (scale["spec"], scale["status"]) == (
            {"replicas": 2},
            {"replicas": 1, "selector": "app=g"},
        )
        scale["spec"]["replicas"] = 7
        code, scale = await req("PUT", f"{base}/g/scale", scale)
        assert code == 200 and scale["spec"]["replicas"] == 7, scale
        code, obj = await req("GET", f"{base}/g")
        assert obj["spec"] == {"count": 7} and obj["metadata"]["generation"] == 2

    _run(tmp_path, body)
