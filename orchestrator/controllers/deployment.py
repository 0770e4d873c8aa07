"""The Deployment controller (kube-controller-manager's deployment): a ReplicaSet per pod
template (named and labelled by the template's hash), rolled over with RollingUpdate
(maxSurge rounded up, maxUnavailable rounded down) or Recreate; proportional scaling; revision
annotations and history cleanup; pause; progressDeadlineSeconds with the Progressing and
Available conditions; status counts as ``kubectl rollout status`` reads them.

``kubectl rollout undo`` patches the template from an old ReplicaSet (client side) and
``rollout restart`` stamps a template annotation: both are template changes handled here.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta

from orchestrator.client import AlreadyExists, NotFound, Obj, parse_time, split_key
from orchestrator.client.rest import DEPLOYMENTS, PODS, REPLICASETS

from .base import Client, Controller, InformerFactory
from .refs import claim
from .util import (
    controller_ref,
    creation_time,
    deep_copy,
    format_time,
    get_condition,
    labels_of,
    meta,
    now,
    omit_zero,
    owner_ref,
    remove_condition,
    resolve_int_or_percent,
    selector_matches,
    set_condition,
)

__all__ = ["DeploymentController", "max_surge", "max_unavailable", "template_hash"]

log = logging.getLogger("corral.controllers.deployment")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations never copied to its ReplicaSets (and back on rollback).
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
NO_DEADLINE = 2**31 - 1
_SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


# ------------------------------------------------------------------------------ pure helpers


def template_hash(template: Obj, collision_count: int | None) -> str:
    """A stable hash of a pod template (and the collision count), encoded with the alphabet
    of generated names, as the controller's pod-template-hash."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for b in data:  # FNV-1a, 32 bits
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_CHARS[ord(c) % len(_SAFE_CHARS)] for c in str(h))


def _without_hash(template: Obj) -> Obj:
    t = deep_copy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return _without_hash(a) == _without_hash(b)


def _replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas", 1))


def _status_int(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def _rolling(d: Obj) -> Obj | None:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {"maxSurge": "25%", "maxUnavailable": "25%"}


def _fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) against spec.replicas: surge rounded up, unavailable down;
    both 0 would never progress, so unavailable becomes 1 (deploymentutil.ResolveFenceposts)."""
    ru = _rolling(d)
    if ru is None:
        return 0, 0
    total = _replicas(d)
    surge = resolve_int_or_percent(ru.get("maxSurge", "25%"), total, True)
    unavailable = resolve_int_or_percent(ru.get("maxUnavailable", "25%"), total, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if _rolling(d) is not None else 0


def max_unavailable(d: Obj) -> int:
    if _rolling(d) is None or _replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], _replicas(d))


def revision_of(rs: Obj) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _annotation_int(rs: Obj, name: str) -> int | None:
    v = (meta(rs).get("annotations") or {}).get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _available(rs: Obj | None) -> int:
    """The available pods of a ReplicaSet as far as scaling down may count on them: never more
    than its spec asks for (its status may not have caught up with a scale-down yet, and the
    pods it is deleting must not be counted as available)."""
    if rs is None:
        return 0
    return max(min(_status_int(rs, "availableReplicas"), _replicas(rs)), 0)


def _by_creation(rss: list[Obj], newest_first: bool = False) -> list[Obj]:
    return sorted(
        rss, key=lambda r: (creation_time(r), meta(r).get("name", "")), reverse=newest_first
    )


def _active(rss: list[Obj]) -> list[Obj]:
    return [r for r in rss if _replicas(r) > 0]


def _sum(rss: list[Obj], f: str) -> int:
    return sum(_status_int(r, f) for r in rss)


def deployment_complete(d: Obj, status: Obj) -> bool:
    n = _replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == n
        and int(status.get("replicas") or 0) == n
        and int(status.get("availableReplicas") or 0) == n
        and int(status.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 0)
    )


def _progress_deadline(d: Obj) -> int | None:
    v = (d.get("spec") or {}).get("progressDeadlineSeconds", 600)
    if v is None or int(v) == NO_DEADLINE:
        return None
    return int(v)


def _condition(typ: str, status: str, reason: str, message: str) -> Obj:
    t = format_time()
    return {
        "type": typ,
        "status": status,
        "lastUpdateTime": t,
        "lastTransitionTime": t,
        "reason": reason,
        "message": message,
    }


# ------------------------------------------------------------------------------ controller


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"
    workers = 3

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.deployments = factory.informer(DEPLOYMENTS)
        self.sets = factory.informer(REPLICASETS)
        self.pods = factory.informer(PODS)
        self.deployments.add_handler(self.enqueue_handler)
        self.sets.add_handler(self._on_set)
        self.pods.add_handler(self._on_pod)

    # ------------------------------------------------------------ handlers

    def _owner(self, obj: Obj, kind: str, informer_name: str) -> Obj | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != kind:
            return None
        inf = self.deployments if informer_name == "deployments" else self.sets
        owner = inf.get(f"{meta(obj).get('namespace')}/{ref.get('name')}")
        if owner is None or meta(owner).get("uid") != ref.get("uid"):
            return None
        return owner

    def _on_set(self, event: str, old: Obj | None, new: Obj | None) -> None:
        rs = new or old
        assert rs is not None
        d = self._owner(rs, "Deployment", "deployments")
        if d is not None:
            self.enqueue(d)
        if old is not None and new is not None:
            old_d = self._owner(old, "Deployment", "deployments")
            if old_d is not None and old_d is not d:
                self.enqueue(old_d)
        if d is None and controller_ref(rs) is None:
            ns = meta(rs).get("namespace") or ""
            for dep in self.deployments.by_index("namespace", ns):
                if selector_matches((dep.get("spec") or {}).get("selector"), labels_of(rs)):
                    self.enqueue(dep)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        # Only Recreate waits on pods: a deleted pod of an old ReplicaSet may unblock it.
        if event != "DELETED" or old is None:
            return
        rs = self._owner(old, "ReplicaSet", "replicasets")
        if rs is None:
            return
        d = self._owner(rs, "Deployment", "deployments")
        if d is not None and ((d.get("spec") or {}).get("strategy") or {}).get("type") == (
            "Recreate"
        ):
            self.enqueue(d)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        cached = self.deployments.get(key)
        if cached is None:
            return None
        d = deep_copy(cached)
        spec = d.get("spec") or {}
        rss = await self._claim_sets(d)
        if meta(d).get("deletionTimestamp"):
            await self._sync_status_only(d, rss)
            return None
        await self._check_paused(d)
        if spec.get("paused"):
            await self._sync(d, rss)
            return None
        if self._is_scaling_event(d, rss):
            await self._sync(d, rss)
            return None
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return await self._rollout_recreate(d, rss)
        return await self._rollout_rolling(d, rss)

    async def _claim_sets(self, d: Obj) -> list[Obj]:
        ns, name = meta(d).get("namespace"), meta(d)["name"]

        async def recheck() -> Obj | None:
            try:
                return await self.client.get(DEPLOYMENTS, ns, name)
            except NotFound:
                return None

        candidates = self.sets.by_index("namespace", ns or "")
        return await claim(
            self.client,
            d,
            "apps/v1",
            "Deployment",
            (d.get("spec") or {}).get("selector"),
            candidates,
            REPLICASETS,
            recheck,
        )

    async def _check_paused(self, d: Obj) -> None:
        if _progress_deadline(d) is None:
            return
        status = d.setdefault("status", {})
        cond = get_condition(status, "Progressing")
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused and (cond is None or cond.get("reason") != "DeploymentPaused"):
            set_condition(
                status,
                _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"),
            )
        elif not paused and cond is not None and cond.get("reason") == "DeploymentPaused":
            set_condition(
                status,
                _condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"),
            )
        else:
            return
        await self._write_status(d, status)

    def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs, old_rss = self._find_new(d, rss)
        for rs in _active([*old_rss, *([new_rs] if new_rs else [])]):
            desired = _annotation_int(rs, DESIRED_REPLICAS)
            if desired is not None and desired != _replicas(d):
                return True
        return False

    # ------------------------------------------------------------ replica sets

    def _find_new(self, d: Obj, rss: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = (d.get("spec") or {}).get("template") or {}
        new_rs = None
        for rs in _by_creation(rss):
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                new_rs = rs
                break
        old = [r for r in rss if new_rs is None or meta(r)["uid"] != meta(new_rs)["uid"]]
        return new_rs, old

    def _rs_annotations(self, d: Obj, rs_annotations: dict[str, str], revision: int) -> Obj:
        # The replica annotations are the scaler's (set when the set is made or scaled).
        out = {
            k: v
            for k, v in rs_annotations.items()
            if k not in SKIPPED_ANNOTATIONS
            or k in (REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS)
        }
        for k, v in (meta(d).get("annotations") or {}).items():
            if k not in SKIPPED_ANNOTATIONS:
                out[k] = v
        old_rev = rs_annotations.get(REVISION)
        if old_rev and int(old_rev) < revision:
            history = [h for h in (rs_annotations.get(REVISION_HISTORY) or "").split(",") if h]
            out[REVISION_HISTORY] = ",".join([*history, old_rev])
        out[REVISION] = str(revision)
        if not rs_annotations:
            out[DESIRED_REPLICAS] = str(_replicas(d))
            out[MAX_REPLICAS] = str(_replicas(d) + max_surge(d))
        return out

    async def _get_all(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj]]:
        """The new ReplicaSet (made when ``create``; its revision brought up to date) and the
        old ones; the deployment's revision annotation follows the new one."""
        new_rs, old_rss = self._find_new(d, rss)
        max_old = max((revision_of(r) for r in old_rss), default=0)
        revision = max_old + 1
        ns = meta(d).get("namespace")
        if new_rs is not None:
            rs_ann = meta(new_rs).get("annotations") or {}
            keep = max(revision_of(new_rs), 0)
            if revision_of(new_rs) >= revision:
                revision = keep
            want = self._rs_annotations(d, rs_ann, revision)
            min_ready = (d.get("spec") or {}).get("minReadySeconds", 0)
            if want != rs_ann or (new_rs.get("spec") or {}).get("minReadySeconds", 0) != min_ready:
                body = deep_copy(new_rs)
                body["metadata"]["annotations"] = want
                body["spec"]["minReadySeconds"] = min_ready
                new_rs = await self.client.update(REPLICASETS, ns, body)
        elif create:
            new_rs = await self._create_new(d, rss, old_rss, revision)
            if new_rs is not None and _progress_deadline(d) is not None:
                status = deep_copy(d.get("status") or {})
                msg = f'Created new replica set "{meta(new_rs)["name"]}"'
                set_condition(
                    status, _condition("Progressing", "True", "NewReplicaSetCreated", msg)
                )
                await self._write_status(d, status)
        if new_rs is not None:
            if (
                _progress_deadline(d) is not None
                and get_condition(d.get("status"), "Progressing") is None
            ):
                status = deep_copy(d.get("status") or {})
                msg = f'Found new replica set "{meta(new_rs)["name"]}"'
                set_condition(status, _condition("Progressing", "True", "FoundNewReplicaSet", msg))
                await self._write_status(d, status)
            await self._set_revision(d, revision_of(new_rs))
        return new_rs, old_rss

    async def _create_new(
        self, d: Obj, rss: list[Obj], old_rss: list[Obj], revision: int
    ) -> Obj | None:
        spec = d.get("spec") or {}
        ns = meta(d).get("namespace")
        collisions = (d.get("status") or {}).get("collisionCount")
        h = template_hash(spec.get("template") or {}, collisions)
        template = deep_copy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = deep_copy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        labels = dict(template["metadata"]["labels"])
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta(d)['name']}-{h}",
                "namespace": ns,
                "labels": labels,
                "annotations": self._rs_annotations(d, {}, revision),
                "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        rs["spec"]["replicas"] = self._new_rs_replicas(d, rss, None)
        try:
            made = await self.client.create(REPLICASETS, ns, rs)
            if _replicas(made) > 0:
                self._scaled(d, made, 0, _replicas(made))
            return made
        except AlreadyExists:
            try:
                existing = await self.client.get(REPLICASETS, ns, rs["metadata"]["name"])
            except NotFound:
                raise
            ref = controller_ref(existing)
            if (
                ref is not None
                and ref.get("uid") == meta(d).get("uid")
                and equal_ignore_hash(
                    (existing.get("spec") or {}).get("template") or {}, spec.get("template") or {}
                )
            ):
                return existing  # ours: the cache had not seen it yet
            status = d.setdefault("status", {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            await self._write_status(d, status)
            raise

    def _new_rs_replicas(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
        """How many replicas the new ReplicaSet may have now (deploymentutil.NewRSNewReplicas)."""
        want = _replicas(d)
        if _rolling(d) is None:
            return want
        current = sum(_replicas(r) for r in all_rss)
        max_total = want + max_surge(d)
        have = _replicas(new_rs)
        if current >= max_total:
            return have
        up = min(max_total - current, max(want - have, 0))
        return have + up

    async def _set_revision(self, d: Obj, revision: int) -> None:
        ann = meta(d).get("annotations") or {}
        if ann.get(REVISION) == str(revision):
            return
        patch = {"metadata": {"annotations": {REVISION: str(revision)}}}
        out = await self.client.patch(DEPLOYMENTS, meta(d).get("namespace"), meta(d)["name"], patch)
        d["metadata"]["annotations"] = (out.get("metadata") or {}).get("annotations") or {}
        d["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]

    async def _scale_rs(self, rs: Obj, size: int, d: Obj) -> tuple[bool, Obj]:
        ann = meta(rs).get("annotations") or {}
        desired, maximum = str(_replicas(d)), str(_replicas(d) + max_surge(d))
        if (
            _replicas(rs) == size
            and ann.get(DESIRED_REPLICAS) == desired
            and ann.get(MAX_REPLICAS) == maximum
        ):
            return False, rs
        body = deep_copy(rs)
        body["spec"]["replicas"] = size
        anns = body["metadata"].setdefault("annotations", {})
        anns[DESIRED_REPLICAS] = desired
        anns[MAX_REPLICAS] = maximum
        out = await self.client.update(REPLICASETS, meta(rs).get("namespace"), body)
        log.info("deployment %s: scaled %s to %d", meta(d)["name"], meta(rs)["name"], size)
        if _replicas(rs) != size:
            self._scaled(d, rs, _replicas(rs), size)
        return _replicas(rs) != size, out

    def _scaled(self, d: Obj, rs: Obj, old: int, new: int) -> None:
        """The deployment controller's ScalingReplicaSet event (its wording since 1.28)."""
        how = "up" if new > old else "down"
        message = f"Scaled {how} replica set {meta(rs)['name']} to {new} from {old}"
        self.event(d, "apps/v1", "Deployment", "Normal", "ScalingReplicaSet", message)

    # ------------------------------------------------------------ strategies

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> float | None:
        new_rs, old_rss = await self._get_all(d, rss, True)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        # Scale up the new ReplicaSet as far as maxSurge lets it.
        if new_rs is not None and _replicas(new_rs) != _replicas(d):
            if _replicas(new_rs) > _replicas(d):
                scaled, new_rs = await self._scale_rs(new_rs, _replicas(d), d)
            else:
                target = self._new_rs_replicas(d, all_rss, new_rs)
                scaled, new_rs = await self._scale_rs(new_rs, target, d)
            if scaled:
                return await self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        if await self._scale_down_old(d, all_rss, old_rss, new_rs):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        status = self._calculate_status(d, all_rss, new_rs)
        if deployment_complete(d, status):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    async def _scale_down_old(
        self, d: Obj, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj | None
    ) -> bool:
        old_count = sum(_replicas(r) for r in old_rss)
        if old_count == 0:
            return False
        all_count = sum(_replicas(r) for r in all_rss)
        min_available = _replicas(d) - max_unavailable(d)
        new_unavailable = _replicas(new_rs) - _available(new_rs)
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return False
        # First the old pods that are not available anyway: deleting them costs nothing.
        cleaned = 0
        old_rss = _by_creation(old_rss)
        updated: list[Obj] = []
        for rs in old_rss:
            if cleaned >= max_down:
                updated.append(rs)
                continue
            unhealthy = _replicas(rs) - _available(rs)
            if _replicas(rs) == 0 or unhealthy <= 0:
                updated.append(rs)
                continue
            down = min(max_down - cleaned, unhealthy)
            _, rs = await self._scale_rs(rs, _replicas(rs) - down, d)
            cleaned += down
            updated.append(rs)
        # Then available ones, as long as minAvailable stays available.
        all_after = [*updated, *([new_rs] if new_rs else [])]
        available = sum(_available(r) for r in all_after)
        scaled = 0
        if available > min_available:
            total_down = available - min_available
            for rs in updated:
                if scaled >= total_down:
                    break
                if _replicas(rs) == 0:
                    continue
                down = min(_replicas(rs), total_down - scaled)
                await self._scale_rs(rs, _replicas(rs) - down, d)
                scaled += down
        return cleaned + scaled > 0

    async def _rollout_recreate(self, d: Obj, rss: list[Obj]) -> float | None:
        new_rs, old_rss = await self._get_all(d, rss, False)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        scaled = False
        for rs in _active(old_rss):
            changed, _ = await self._scale_rs(rs, 0, d)
            scaled = scaled or changed
        if scaled:
            return await self._sync_rollout_status(d, all_rss, new_rs)
        old_uids = {meta(r)["uid"] for r in old_rss}
        for pod in self.pods.by_index("namespace", meta(d).get("namespace") or ""):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") in old_uids:
                phase = (pod.get("status") or {}).get("phase")
                if phase not in ("Failed", "Succeeded"):
                    return await self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, old_rss = await self._get_all(d, rss, True)
        if new_rs is not None and _replicas(new_rs) != _replicas(d):
            _, new_rs = await self._scale_rs(new_rs, _replicas(d), d)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        if deployment_complete(d, self._calculate_status(d, all_rss, new_rs)):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    async def _sync(self, d: Obj, rss: list[Obj]) -> None:
        """A scaling event or a paused deployment: scale (proportionally), no rollout."""
        new_rs, old_rss = await self._get_all(d, rss, False)
        await self._scale(d, new_rs, old_rss)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old_rss)
        all_rss = [*old_rss, *([new_rs] if new_rs else [])]
        status = self._calculate_status(d, all_rss, new_rs)
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        want = _replicas(d)
        old_newest = _by_creation(old_rss, newest_first=True)
        active = _active([*old_newest, *([new_rs] if new_rs else [])])
        only: Obj | None = None
        if len(active) == 1:
            only = active[0]
        elif not active and (new_rs is not None or old_newest):
            only = new_rs if new_rs is not None else old_newest[0]
        if only is not None:
            if _replicas(only) != want:
                await self._scale_rs(only, want, d)
            return
        if (
            new_rs is not None
            and _annotation_int(new_rs, DESIRED_REPLICAS) == want
            and _status_int(new_rs, "availableReplicas") == want
            and _replicas(new_rs) == want
        ):
            for rs in _active(old_rss):
                await self._scale_rs(rs, 0, d)
            return
        if _rolling(d) is None:
            return
        allowed = want + max_surge(d) if want > 0 else 0
        to_add = allowed - sum(_replicas(r) for r in active)
        if to_add > 0:  # bigger first, newer first among equals
            active.sort(key=lambda r: (-_replicas(r), -creation_time(r)))
        elif to_add < 0:  # bigger first, older first among equals
            active.sort(key=lambda r: (-_replicas(r), creation_time(r)))
        sizes: list[int] = []
        added = 0
        for rs in active:
            if to_add != 0:
                p = self._proportion(rs, d, to_add, added)
                sizes.append(_replicas(rs) + p)
                added += p
            else:
                sizes.append(_replicas(rs))
        if to_add != 0 and active:
            sizes[0] = max(sizes[0] + to_add - added, 0)
        for rs, size in zip(active, sizes, strict=True):
            await self._scale_rs(rs, size, d)

    def _proportion(self, rs: Obj, d: Obj, to_add: int, added: int) -> int:
        if _replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if _replicas(d) == 0:
            fraction = -_replicas(rs)
        else:
            total = _replicas(d) + max_surge(d)
            annotated = _annotation_int(rs, MAX_REPLICAS)
            if annotated is None or annotated == 0:
                annotated = _status_int(d, "replicas") or 1
            size = _replicas(rs) * total / annotated
            fraction = int(math.floor(abs(size) + 0.5)) * (1 if size >= 0 else -1) - _replicas(rs)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete old ReplicaSets beyond revisionHistoryLimit (oldest revisions first), only
        those scaled to nothing."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        if limit is None:
            return
        alive = [r for r in old_rss if not meta(r).get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda r: (revision_of(r), creation_time(r)))
        for rs in alive[:diff]:
            st = rs.get("status") or {}
            if (
                int(st.get("replicas") or 0) != 0
                or _replicas(rs) != 0
                or int(meta(rs).get("generation") or 0) > int(st.get("observedGeneration") or 0)
            ):
                continue
            try:
                await self.client.delete(
                    REPLICASETS,
                    meta(rs).get("namespace"),
                    meta(rs)["name"],
                    preconditions={"uid": meta(rs)["uid"]},
                )
            except NotFound:
                pass

    # ------------------------------------------------------------ status

    def _calculate_status(self, d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> Obj:
        available = _sum(all_rss, "availableReplicas")
        total = sum(_replicas(r) for r in all_rss)
        old = d.get("status") or {}
        status: Obj = {
            "observedGeneration": int(meta(d).get("generation") or 0),
            "replicas": _sum(all_rss, "replicas"),
            "updatedReplicas": _status_int(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": _sum(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
        }
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = deep_copy(old["conditions"])
        if available >= _replicas(d) - max_unavailable(d):
            cond = _condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            cond = _condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        set_condition(status, cond)
        return omit_zero(status)

    async def _sync_status_only(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss = self._find_new(d, rss)
        status = self._calculate_status(d, [*old_rss, *([new_rs] if new_rs else [])], new_rs)
        if status != (d.get("status") or {}):
            await self._write_status(d, status)

    async def _sync_rollout_status(
        self, d: Obj, all_rss: list[Obj], new_rs: Obj | None
    ) -> float | None:
        status = self._calculate_status(d, all_rss, new_rs)
        deadline = _progress_deadline(d)
        rs_name = meta(new_rs)["name"] if new_rs else None
        if deadline is None:
            remove_condition(status, "Progressing")
        else:
            current = get_condition(status, "Progressing")
            complete = (
                int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                and current is not None
                and current.get("reason") == "NewReplicaSetAvailable"
            )
            if not complete:
                if deployment_complete(d, status):
                    msg = (
                        f'ReplicaSet "{rs_name}" has successfully progressed.'
                        if rs_name
                        else f'Deployment "{meta(d)["name"]}" has successfully progressed.'
                    )
                    set_condition(
                        status, _condition("Progressing", "True", "NewReplicaSetAvailable", msg)
                    )
                elif self._progressing(d, status):
                    msg = (
                        f'ReplicaSet "{rs_name}" is progressing.'
                        if rs_name
                        else f'Deployment "{meta(d)["name"]}" is progressing.'
                    )
                    cond = _condition("Progressing", "True", "ReplicaSetUpdated", msg)
                    if current is not None and current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    remove_condition(status, "Progressing")
                    set_condition(status, cond)
                elif self._timed_out(d, status):
                    msg = (
                        f'ReplicaSet "{rs_name}" has timed out progressing.'
                        if rs_name
                        else f'Deployment "{meta(d)["name"]}" has timed out progressing.'
                    )
                    set_condition(
                        status, _condition("Progressing", "False", "ProgressDeadlineExceeded", msg)
                    )
        if status != (d.get("status") or {}):
            await self._write_status(d, status)
        return self._requeue_stuck(d, status)

    def _progressing(self, d: Obj, new: Obj) -> bool:
        old = d.get("status") or {}

        def n(s: Obj, f: str) -> int:
            return int(s.get(f) or 0)

        return (
            n(new, "updatedReplicas") > n(old, "updatedReplicas")
            or n(new, "replicas") - n(new, "updatedReplicas")
            < n(old, "replicas") - n(old, "updatedReplicas")
            or n(new, "readyReplicas") > n(old, "readyReplicas")
            or n(new, "availableReplicas") > n(old, "availableReplicas")
        )

    def _timed_out(self, d: Obj, status: Obj) -> bool:
        deadline = _progress_deadline(d)
        cond = get_condition(status, "Progressing")
        if deadline is None or cond is None:
            return False
        if cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        since = parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + timedelta(seconds=deadline) < now()

    def _requeue_stuck(self, d: Obj, status: Obj) -> float | None:
        """When to look again so a stalled rollout is marked ProgressDeadlineExceeded."""
        deadline = _progress_deadline(d)
        cond = get_condition(status, "Progressing")
        if deadline is None or cond is None:
            return None
        if deployment_complete(d, status) or cond.get("reason") == "ProgressDeadlineExceeded":
            return None
        since = parse_time(cond.get("lastUpdateTime"))
        if since is None:
            return None
        after = (since + timedelta(seconds=deadline) - now()).total_seconds()
        return max(after, 1.0)

    async def _write_status(self, d: Obj, status: Obj) -> None:
        body = deep_copy(d)
        body["status"] = status
        out = await self.client.update_status(DEPLOYMENTS, meta(d).get("namespace"), body)
        d["status"] = out.get("status") or {}
        d["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
