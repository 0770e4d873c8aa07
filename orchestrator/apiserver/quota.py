"""The ResourceQuota admission (kube-apiserver's plugin): a create in a namespace with quotas
is refused when it would take a quota over its ``hard``; when admitted, each quota it counts
against is charged first (status.used), written with compare-and-swap on the quota's
revision, as kube does: two creates racing for a quota's last room cannot both pass (the
loser reads the quota again and is refused). The quota controller recounts status.used.

A charge is made before the object is written (kube's admission runs before its storage too),
so a write that then fails (the name taken, the store refusing) would leave the quota charged
for an object that does not exist until the controller's next recount (60 s): the caller
gives the charge back with ``release``."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import msgspec

from kubemodel.errors import FieldError
from kubemodel.quota import (
    Refused,
    Usage,
    check_quota,
    encode_usage,
    object_usage,
    quantity_of,
)
from orchestrator.store import Backend, Conflict, KeyValue, NotFound

from . import errors
from .resources import Resource, by_path

__all__ = ["Charge", "QuotaAdmission"]

Obj = dict[str, Any]
# What an admission charged: (the quota's store key, the amount added to each resource used).
Charge = list[tuple[str, dict[str, Fraction]]]
QUOTAS = by_path("", "v1", "resourcequotas")
assert QUOTAS is not None
RETRIES = 10


class QuotaAdmission:
    def __init__(self, store: Backend) -> None:
        self.store = store

    async def admit(
        self, res: Resource, ns: str | None, obj: Obj, dry_run: bool, old: Obj | None = None
    ) -> Charge:
        """Charge the quotas of ``ns`` for ``obj`` (about to be created, or to replace ``old``:
        what it uses more than that, as kube weighs a Service's update), or raise a 403.
        What was charged, for ``release`` if the write fails."""
        if not res.namespaced or ns is None or res.stored_group is not None:
            return []
        delta = object_usage(res.name, res.group, obj)
        if old is not None:
            before = object_usage(res.name, res.group, old)
            delta = {
                k: (v - before.get(k, (0, b))[0], b)
                for k, (v, b) in delta.items()
                if v > before.get(k, (0, b))[0]
            }
        if not delta:
            return []
        name = (obj.get("metadata") or {}).get("name") or ""
        for _ in range(RETRIES):
            page = await self.store.list(QUOTAS.key_prefix(ns))
            if not page.items:
                return []
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
                return []
            charged: Charge = []
            try:
                for kv, quota, used in charges:
                    status = quota.get("status") or {}
                    before = _used(status)
                    quota["status"] = {**status, "used": encode_usage(used, list(used))}
                    await self.store.update(kv.key, msgspec.json.encode(quota), kv.mod_rev)
                    added = {r: v - before.get(r, Fraction(0)) for r, (v, _) in used.items()}
                    charged.append((kv.key, {r: v for r, v in added.items() if v > 0}))
                return charged
            except (Conflict, NotFound):
                # a quota changed (another create charged it): what this attempt charged of
                # the others is given back, and they are weighed again
                await self.release(charged)
                continue
        raise errors.ApiError(
            409, "Conflict", f"the quotas of namespace {ns} changed too often: try again"
        )

    async def release(self, charge: Charge) -> None:
        """Give back what ``admit`` charged (the object it was for was not written): each
        quota's status.used less that amount (never below zero), compare-and-swap."""
        for key, amounts in charge:
            if not amounts:
                continue
            for _ in range(RETRIES):
                try:
                    kv = await self.store.get(key)
                except NotFound:
                    break  # the quota is gone: nothing to give back
                quota = msgspec.json.decode(kv.value)
                status = quota.get("status") or {}
                used: Usage = {}
                for r, v in (status.get("used") or {}).items():
                    try:
                        used[r] = quantity_of(v)
                    except FieldError:
                        continue
                for r, v in amounts.items():
                    if r in used:
                        used[r] = (max(used[r][0] - v, Fraction(0)), used[r][1])
                quota["status"] = {**status, "used": encode_usage(used, list(used))}
                try:
                    await self.store.update(key, msgspec.json.encode(quota), kv.mod_rev)
                    break
                except Conflict:
                    continue  # charged or recounted meanwhile: read it again
                except NotFound:
                    break


def _used(status: Obj) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for r, v in (status.get("used") or {}).items():
        try:
            out[r] = quantity_of(v)[0]
        except FieldError:
            continue
    return out
