"""Adoption and release by selector and controller reference (client-go's
ControllerRefManager), and expectations (controller.ControllerExpectations): what a controller
has asked for and not yet seen in its cache, so a slow watch never makes it act twice."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.client import ClientError, NotFound, Obj, ResourceRef

from .base import Client
from .util import controller_ref, labels_of, meta, owner_ref, selector_matches

__all__ = ["Expectations", "claim", "observe_owned_pod", "owner_key"]

EXPECTATIONS_TTL = 300.0  # seconds: an expectation not met by then is given up (client-go's)


@dataclass
class _Expect:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    at: float = field(default_factory=time.monotonic)


class Expectations:
    """Per controller key: how many creations and which deletions are still to be observed."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL) -> None:
        self.ttl = ttl
        self._by_key: dict[str, _Expect] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        if e.adds <= 0 and not e.deletes:
            return True
        return time.monotonic() - e.at > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._by_key[key] = _Expect(adds=n)

    def expect_deletions(self, key: str, pod_keys: set[str]) -> None:
        self._by_key[key] = _Expect(deletes=set(pod_keys))

    def creation_observed(self, key: str, n: int = 1) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= n

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.deletes.discard(pod_key)

    def delete(self, key: str) -> None:
        self._by_key.pop(key, None)


class _Getter(Protocol):
    def get(self, key: str) -> Obj | None: ...


def owner_key(pod: Obj, kind: str, owners: _Getter) -> str | None:
    """The key of the ``kind`` object in ``owners`` that controls ``pod`` (same uid), or None."""
    ref = controller_ref(pod)
    if ref is None or ref.get("kind") != kind:
        return None
    key = f"{meta(pod).get('namespace')}/{ref.get('name')}"
    owner = owners.get(key)
    if owner is None or meta(owner).get("uid") != ref.get("uid"):
        return None
    return key


def observe_owned_pod(
    expectations: Expectations, key: str, event: str, new: Obj | None, pod: Obj
) -> None:
    """Count a watch event of a pod its owner ``key`` expected: an addition, or a deletion
    (the pod gone, or marked for deletion)."""
    if event == "ADDED":
        expectations.creation_observed(key)
    elif event == "DELETED" or (new is not None and meta(new).get("deletionTimestamp")):
        expectations.deletion_observed(key, f"{meta(pod).get('namespace')}/{meta(pod)['name']}")


async def claim(
    client: Client,
    owner: Obj,
    owner_api_version: str,
    owner_kind: str,
    selector: Obj | None,
    candidates: list[Obj],
    child: ResourceRef,
    recheck: Callable[[], Awaitable[Obj | None]],
) -> list[Obj]:
    """The candidates ``owner`` controls once adoption and release are done: orphans its
    selector matches are adopted (after re-reading the owner from the API: never adopt for an
    owner being deleted), owned objects it no longer selects are released."""
    owner_meta = meta(owner)
    uid = owner_meta.get("uid")
    deleting = bool(owner_meta.get("deletionTimestamp"))
    checked: bool | None = None
    claimed: list[Obj] = []
    for obj in candidates:
        ref = controller_ref(obj)
        matches = selector_matches(selector, labels_of(obj))
        m = meta(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                claimed.append(obj)
                continue
            if deleting:
                continue
            refs = [r for r in m.get("ownerReferences") or [] if r.get("uid") != uid]
            patch = {"metadata": {"ownerReferences": refs, "resourceVersion": m["resourceVersion"]}}
            try:
                await client.patch(child, m.get("namespace"), m["name"], patch)
            except NotFound:
                pass
            continue
        if not matches or deleting or m.get("deletionTimestamp"):
            continue
        if checked is None:
            fresh = await recheck()
            checked = (
                fresh is not None
                and meta(fresh).get("uid") == uid
                and not meta(fresh).get("deletionTimestamp")
            )
        if not checked:
            continue
        refs = [*(m.get("ownerReferences") or []), owner_ref(owner, owner_api_version, owner_kind)]
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": m["resourceVersion"]}}
        try:
            adopted = await client.patch(child, m.get("namespace"), m["name"], patch)
        except NotFound:
            continue
        except ClientError:
            raise
        claimed.append(adopted)
    return claimed
