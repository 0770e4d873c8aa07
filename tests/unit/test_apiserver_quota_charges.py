"""The quota admission's charges over a real store: an HPA created through autoscaling/v1
(stored as v2) is charged like one created through v2; a create whose write fails (the name
taken, the store refusing) gives its charge back instead of leaving the quota over-counted
until the controller's recount; a charge that loses a compare-and-swap on one of two quotas
gives back what it charged of the other before it weighs them again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from orchestrator.apiserver.converted import Converted  # noqa: E402
from orchestrator.apiserver.errors import ApiError  # noqa: E402
from orchestrator.apiserver.resources import by_path  # noqa: E402
from orchestrator.apiserver.storage import Storage  # noqa: E402
from orchestrator.store import Backend, KeyValue, open_store  # noqa: E402

QUOTAS = by_path("", "v1", "resourcequotas")
CMS = by_path("", "v1", "configmaps")
HPA_V1 = by_path("autoscaling", "v1", "horizontalpodautoscalers")
HPA_V2 = by_path("autoscaling", "v2", "horizontalpodautoscalers")
HPAS = "count/horizontalpodautoscalers.autoscaling"


class _Refusing:
    """The store, except that when ``armed`` the next create of a key under ``prefix`` fails
    (a disk full, a lost etcd leader) and the next update of a quota first loses to another
    writer."""

    def __init__(self, store: Backend) -> None:
        self._store = store
        self.fail_create = ""
        self.lose_quota_update = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create(self, key: str, value: bytes) -> KeyValue:
        if self.fail_create and key.startswith(self.fail_create):
            self.fail_create = ""
            raise OSError(28, "No space left on device")
        return await self._store.create(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        if self.lose_quota_update and "/resourcequotas/" in key and key.endswith("/q2"):
            self.lose_quota_update -= 1
            cur = await self._store.get(key)
            await self._store.update(key, cur.value, cur.mod_rev)
        return await self._store.update(key, value, revision)


def _run(tmp_path: Path, body: Callable[[Storage, _Refusing], Awaitable[None]]) -> None:
    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            racer = _Refusing(store)
            storage = Storage(racer)  # type: ignore[arg-type]
            try:
                await storage.ensure_namespaces()
                await body(storage, racer)
            finally:
                await storage.close()

    asyncio.run(main())


async def _quota(storage: Storage, name: str, hard: dict[str, str]) -> None:
    """A quota counted (status as the controller writes it: nothing used yet)."""
    assert QUOTAS is not None
    made = await storage.create(
        QUOTAS, "default", {"metadata": {"name": name}, "spec": {"hard": hard}}
    )
    made["status"] = {"hard": hard, "used": {k: "0" for k in hard}}
    await storage.update(QUOTAS, "default", name, made, subresource="status")


async def _used(storage: Storage, name: str = "q") -> dict[str, str]:
    assert QUOTAS is not None
    return (await storage.get(QUOTAS, "default", name))["status"]["used"]


def _hpa(name: str, v1: bool) -> dict[str, Any]:
    ref = {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"}
    spec: dict[str, Any] = {"scaleTargetRef": ref, "maxReplicas": 3}
    if v1:
        spec["targetCPUUtilizationPercentage"] = 50
    return {"metadata": {"name": name}, "spec": spec}


def test_an_autoscaling_v1_hpa_is_charged(tmp_path: Path) -> None:
    async def body(storage: Storage, _: _Refusing) -> None:
        assert HPA_V1 is not None and HPA_V2 is not None
        await _quota(storage, "q", {HPAS: "2"})
        converted = Converted(storage)
        await converted.create(HPA_V1, "default", _hpa("one", True))
        assert await _used(storage) == {HPAS: "1"}
        await storage.create(HPA_V2, "default", _hpa("two", False))
        assert await _used(storage) == {HPAS: "2"}
        with pytest.raises(ApiError) as e:
            await converted.create(HPA_V1, "default", _hpa("three", True))
        assert e.value.code == 403
        assert "exceeded quota: q" in e.value.message
        # a name taken, through v1: refused, and nothing charged
        await storage.delete(QUOTAS, "default", "q", {})
        await _quota(storage, "q2", {HPAS: "5"})
        with pytest.raises(ApiError) as e:
            await converted.create(HPA_V1, "default", _hpa("one", True))
        assert e.value.reason == "AlreadyExists"
        assert await _used(storage, "q2") == {HPAS: "0"}

    _run(tmp_path, body)


def test_a_create_that_is_not_written_gives_its_charge_back(tmp_path: Path) -> None:
    async def body(storage: Storage, racer: _Refusing) -> None:
        assert CMS is not None
        await _quota(storage, "q", {"configmaps": "3", "count/configmaps": "3"})
        cm = {"metadata": {"name": "a"}, "data": {"k": "v"}}
        await storage.create(CMS, "default", cm)
        assert await _used(storage) == {"configmaps": "1", "count/configmaps": "1"}
        with pytest.raises(ApiError) as e:  # the name is taken
            await storage.create(CMS, "default", cm)
        assert e.value.reason == "AlreadyExists"
        assert await _used(storage) == {"configmaps": "1", "count/configmaps": "1"}
        racer.fail_create = "/registry/configmaps/"
        with pytest.raises(OSError):  # the store fails the write
            await storage.create(CMS, "default", {**cm, "metadata": {"name": "b"}})
        assert await _used(storage) == {"configmaps": "1", "count/configmaps": "1"}
        # the room given back is there: two more fit
        for name in ("b", "c"):
            await storage.create(CMS, "default", {**cm, "metadata": {"name": name}})
        assert await _used(storage) == {"configmaps": "3", "count/configmaps": "3"}

    _run(tmp_path, body)


def test_a_charge_that_loses_a_race_on_one_quota_is_not_made_twice_on_another(
    tmp_path: Path,
) -> None:
    async def body(storage: Storage, racer: _Refusing) -> None:
        assert CMS is not None
        await _quota(storage, "q1", {"count/configmaps": "5"})
        await _quota(storage, "q2", {"count/configmaps": "5"})
        racer.lose_quota_update = 1  # q1 charged, then q2's write loses: weighed again
        await storage.create(CMS, "default", {"metadata": {"name": "a"}})
        assert await _used(storage, "q1") == {"count/configmaps": "1"}
        assert await _used(storage, "q2") == {"count/configmaps": "1"}

    _run(tmp_path, body)
