"""The LimitRanger admission (kube-apiserver's): a pod created in a namespace with
LimitRanges gets their default requests and limits, then is refused (403, kube's words) if
it breaks their min, max or maxLimitRequestRatio (kubemodel.limits)."""

from __future__ import annotations

from typing import Any

import msgspec

from kubemodel.limits import default_pod, pod_limit_problems
from orchestrator.store import Backend

from . import errors
from .resources import by_path

__all__ = ["LimitRanger"]

Obj = dict[str, Any]
LIMITRANGES = by_path("", "v1", "limitranges")
assert LIMITRANGES is not None


class LimitRanger:
    def __init__(self, store: Backend) -> None:
        self.store = store

    async def admit_pod(self, pod: Obj, ns: str) -> None:
        page = await self.store.list(LIMITRANGES.key_prefix(ns))
        if not page.items:
            return
        ranges = [msgspec.json.decode(kv.value) for kv in page.items]
        default_pod(pod, ranges)
        problem = pod_limit_problems(pod, ranges)
        if problem:
            name = (pod.get("metadata") or {}).get("name") or ""
            raise errors.forbidden("pods", name, problem)
