"""The pods/eviction subresource: delete a pod unless a PodDisruptionBudget forbids it, as
kube-apiserver's eviction REST does (``kubectl drain`` evicts through it).

A pod that is Pending, Succeeded or Failed, or already being deleted, is deleted without
looking at budgets. Otherwise the one budget whose selector matches the pod must allow a
disruption: its status (written by a disruption controller) must have observed the budget's
generation and have ``disruptionsAllowed`` > 0; the eviction decrements it and records the pod
in ``disruptedPods`` before deleting the pod. A refusal is 429 TooManyRequests, which kubectl
drain retries. Two matching budgets are a 500, as in Kubernetes.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .errors import ApiError
from .resources import Resource, by_path
from .selectors import selector_matches
from .storage import Storage, now_rfc3339

__all__ = ["evict", "selector_matches"]

Obj = dict[str, Any]
PDBS = by_path("policy", "v1", "poddisruptionbudgets")
assert PDBS is not None
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
MAX_DISRUPTED_PODS = 2000  # kube-apiserver's bound on status.disruptedPods
RETRIES = 5


def _too_many_requests(message: str, cause: str, retry_after: int) -> ApiError:
    details: Obj = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, "TooManyRequests", message, details)


def _success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


async def evict(storage: Storage, pods: Resource, ns: str, name: str, body: Obj) -> Obj:
    """Evict pod ``ns/name`` as ``body`` (an Eviction) asks; the Status to return (201)."""
    api, kind = body.get("apiVersion"), body.get("kind")
    if api is not None and api not in EVICTION_VERSIONS or kind not in (None, "Eviction"):
        raise errors.bad_request(
            f"the body of the request must be a policy/v1 Eviction, not {kind} in {api}"
        )
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict) or meta.get("name") not in (None, name):
        raise errors.bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    if not isinstance(options, dict):
        raise errors.bad_request("deleteOptions must be an object")
    dry = "All" in (options.get("dryRun") or [])
    for _ in range(RETRIES):
        pod = await storage.get(pods, ns, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Pending", "Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            await storage.delete(pods, ns, name, options, dry_run=dry)
            return _success()
        labels = pod["metadata"].get("labels") or {}
        budgets, _, _ = await storage.list(PDBS, ns)
        budgets = [
            b for b in budgets if selector_matches((b.get("spec") or {}).get("selector"), labels)
        ]
        if not budgets:
            await storage.delete(pods, ns, name, options, dry_run=dry)
            return _success()
        if len(budgets) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource"
                " does not support.",
            )
        pdb = budgets[0]
        status = pdb.get("status") or {}
        pdb_name = pdb["metadata"]["name"]
        if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
            raise _too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                f"The disruption budget {pdb_name} is still being processed by the server.",
                10,
            )
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise errors.forbidden(
                "poddisruptionbudgets", pdb_name, "pdb disruptions allowed is negative", "policy"
            )
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise errors.forbidden(
                "poddisruptionbudgets",
                pdb_name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                "policy",
            )
        if allowed == 0:
            raise _too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                f"The disruption budget {pdb_name} needs {int(status.get('desiredHealthy') or 0)}"
                f" healthy pods and has {int(status.get('currentHealthy') or 0)} currently",
                0,
            )
        new_status = dict(status)
        new_status["disruptionsAllowed"] = allowed - 1
        new_status["disruptedPods"] = {**(status.get("disruptedPods") or {}), name: now_rfc3339()}
        patch = {
            "metadata": {"resourceVersion": pdb["metadata"]["resourceVersion"]},
            "status": new_status,
        }
        try:
            await storage.patch(
                PDBS, ns, pdb_name, "merge", patch, subresource="status", dry_run=dry
            )
        except ApiError as e:
            if e.reason == "Conflict":
                continue  # the budget changed under us: look again
            raise
        await storage.delete(pods, ns, name, options, dry_run=dry)
        return _success()
    raise ApiError(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        {"retryAfterSeconds": 1},
    )
