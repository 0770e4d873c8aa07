"""The ResourceQuota admission (kube-apiserver's plugin): a create in a namespace with quotas
is refused when it would take a quota over its ``hard``; when admitted, each quota it counts
against is charged first (status.used), written with compare-and-swap on the quota's
revision, as kube does: two creates racing for a quota's last room cannot both pass (the
loser reads the quota again and is refused). The quota controller recounts status.used."""

from __future__ import annotations

from typing import Any

import msgspec

from kubemodel.quota import Refused, Usage, check_quota, encode_usage, object_usage
from orchestrator.store import Backend, Conflict, KeyValue, NotFound

from . import errors
from .resources import Resource, by_path

__all__ = ["QuotaAdmission"]

Obj = dict[str, Any]
QUOTAS = by_path("", "v1", "resourcequotas")
assert QUOTAS is not None
RETRIES = 10


class QuotaAdmission:
    def __init__(self, store: Backend) -> None:
        self.store = store

    async def admit(
        self, res: Resource, ns: str | None, obj: Obj, dry_run: bool, old: Obj | None = None
    ) -> None:
        """Charge the quotas of ``ns`` for ``obj`` (about to be created, or to replace ``old``:
        what it uses more than that, as kube weighs a Service's update), or raise a 403."""
        if not res.namespaced or ns is None or res.stored_group is not None:
            return
        delta = object_usage(res.name, res.group, obj)
        if old is not None:
            before = object_usage(res.name, res.group, old)
            delta = {
                k: (v - before.get(k, (0, b))[0], b)
                for k, (v, b) in delta.items()
                if v > before.get(k, (0, b))[0]
            }
        if not delta:
            return
        name = (obj.get("metadata") or {}).get("name") or ""
        for _ in range(RETRIES):
            page = await self.store.list(QUOTAS.key_prefix(ns))
            if not page.items:
                return
            charges: list[tuple[KeyValue, Obj, Usage]] = []
            for kv in page.items:
                quota = msgspec.json.decode(kv.value)
                try:
                    used = check_quota(quota, res.name, res.group, obj, delta)
                except Refused as e:
                    raise errors.forbidden(res.name, name, str(e), res.group) from None
                if used is not None:
                    charges.append((kv, quota, used))
            if dry_run or not charges:
                return
            try:
                for kv, quota, used in charges:
                    status = quota.get("status") or {}
                    quota["status"] = {**status, "used": encode_usage(used, list(used))}
                    await self.store.update(kv.key, msgspec.json.encode(quota), kv.mod_rev)
                return
            except (Conflict, NotFound):
                continue  # a quota changed (another create charged it): weigh them again
        raise errors.ApiError(
            409, "Conflict", f"the quotas of namespace {ns} changed too often: try again"
        )
