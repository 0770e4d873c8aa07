"""ResourceQuota as kube does it: what an object uses (its evaluators: pods' compute resources
and count, object counts), which quotas a pod falls under (scopes), the admission check with
kube-apiserver's words, quantities printed as Go prints them, and the kind's validation.

Pure functions over JSON dicts: the API server's admission (orchestrator/apiserver/quota.py)
and the quota controller (orchestrator/controllers/resourcequota.py) share them."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from kubemodel._generated import ResourceQuota
from kubemodel.codec import VALIDATORS
from kubemodel.errors import FieldError, q
from kubemodel.names import qualified_name_problem
from kubemodel.quantity import parse_quantity

__all__ = [
    "Usage",
    "add",
    "check_quota",
    "count_names",
    "format_quantity",
    "object_usage",
    "pod_counts",
    "pod_usage",
    "pretty",
    "quantity_of",
    "quota_matches_pod",
]

Obj = dict[str, Any]
# A usage: resource name -> (value, binary format): Go's Quantity keeps its format through sums.
Usage = dict[str, tuple[Fraction, bool]]

# The names an object count goes under besides count/<resource>[.<group>] (kube's legacy ones).
LEGACY_COUNTS = {
    "pods": "pods",
    "services": "services",
    "replicationcontrollers": "replicationcontrollers",
    "resourcequotas": "resourcequotas",
    "secrets": "secrets",
    "configmaps": "configmaps",
    "persistentvolumeclaims": "persistentvolumeclaims",
}
POD_COMPUTE = ("cpu", "memory", "ephemeral-storage")
# The resources the pod evaluator answers for (hugepages left out).
POD_RESOURCES = frozenset(
    {"pods", "count/pods", "cpu", "memory", "ephemeral-storage"}
    | {f"requests.{r}" for r in POD_COMPUTE}
    | {f"limits.{r}" for r in POD_COMPUTE}
)
# A quota that names one of these makes every container say it (kube's validationSet).
MUST_SPECIFY = ("cpu", "limits.cpu", "limits.memory", "memory", "requests.cpu", "requests.memory")
STANDARD = frozenset(
    {*LEGACY_COUNTS, "services.nodeports", "services.loadbalancers", "requests.storage"}
    | POD_RESOURCES - {"count/pods"}
)
SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort")
_ALL_SCOPES = (*SCOPES, "PriorityClass", "CrossNamespacePodAffinity")
_SI = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BIN = {6: "Ei", 5: "Pi", 4: "Ti", 3: "Gi", 2: "Mi", 1: "Ki"}


# ----------------------------------------------------------------------------- quantities


def quantity_of(text: Any) -> tuple[Fraction, bool]:
    amount = parse_quantity(text)
    return amount.value, str(amount.text).endswith("i")


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """Go's Quantity.String(): canonical, in the quantity's format (a binary one that is not
    a whole multiple of 1Ki is written in decimal, as there)."""
    if value == 0:
        return "0"
    if binary and value.denominator == 1 and abs(value) >= 1024:
        for power, suffix in _BIN.items():
            scale = 1024**power
            if value % scale == 0:
                return f"{value // scale}{suffix}"
    for exponent in sorted(_SI, reverse=True):
        scaled = value / Fraction(10) ** exponent
        if scaled.denominator == 1:
            return f"{scaled.numerator}{_SI[exponent]}"
    nanos = -(-value * 10**9 // 1)  # rounded up to a nano, as Go's parser leaves it
    return f"{nanos}n"


def pretty(usage: Usage, names: list[str] | None = None) -> str:
    """prettyPrint: name=quantity, sorted by name, comma-joined."""
    keys = sorted(usage if names is None else names)
    return ",".join(f"{k}={format_quantity(*usage.get(k, (Fraction(0), False)))}" for k in keys)


def add(a: Usage, b: Usage) -> Usage:
    """quota.Add: the sum keeps the format of ``a``'s quantity where both have one, unless
    that is zero (Go's Quantity.Add takes the other's format then)."""
    out = dict(a)
    for k, (v, binary) in b.items():
        if k in out:
            out[k] = (out[k][0] + v, out[k][1] if out[k][0] else binary)
        else:
            out[k] = (v, binary)
    return out


def _usage_of(resources: Any) -> Usage:
    out: Usage = {}
    if not isinstance(resources, dict):
        return out
    for k, v in resources.items():
        try:
            out[str(k)] = quantity_of(v)
        except FieldError:
            continue
    return out


# ----------------------------------------------------------------------------- usage


def _container_sum(containers: Any, key: str) -> Usage:
    total: Usage = {}
    for c in containers if isinstance(containers, list) else []:
        total = add(total, _usage_of(((c or {}).get("resources") or {}).get(key)))
    return total


def _pod_resources(pod: Obj, key: str) -> Usage:
    """resourcehelper.PodRequests / PodLimits: the containers' sum, at least each init
    container's, plus the pod's overhead."""
    spec = pod.get("spec") or {}
    total = _container_sum(spec.get("containers"), key)
    for init in spec.get("initContainers") or []:
        for name, (v, binary) in _usage_of(((init or {}).get("resources") or {}).get(key)).items():
            if name not in total or total[name][0] < v:
                total[name] = (v, binary)
    return add(total, _usage_of(spec.get("overhead")))


def pod_counts(pod: Obj, now: datetime | None = None) -> bool:
    """Whether a pod counts against quota: not once it finished (Succeeded, Failed) or once
    its deletion's grace period is over (QuotaV1Pod)."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        try:
            at = datetime.fromisoformat(str(deleted).replace("Z", "+00:00"))
        except ValueError:
            return True
        return (now or datetime.now(UTC)).timestamp() <= at.timestamp() + int(grace)
    return True


def _compute(requests: Usage, limits: Usage) -> Usage:
    """podComputeUsageHelper."""
    out: Usage = {"pods": (Fraction(1), False)}
    for r in POD_COMPUTE:
        if r in requests:
            out[r] = requests[r]
            out[f"requests.{r}"] = requests[r]
        if r in limits:
            out[f"limits.{r}"] = limits[r]
    return out


def pod_usage(pod: Obj, now: datetime | None = None) -> Usage:
    """What a pod uses (nothing once it no longer counts)."""
    if not pod_counts(pod, now):
        return {}
    usage = _compute(_pod_resources(pod, "requests"), _pod_resources(pod, "limits"))
    usage["count/pods"] = (Fraction(1), False)
    return usage


def count_names(resource: str, group: str) -> list[str]:
    names = [f"count/{resource}.{group}" if group else f"count/{resource}"]
    if not group and resource in LEGACY_COUNTS:
        names.append(LEGACY_COUNTS[resource])
    return names


def object_usage(resource: str, group: str, obj: Obj, now: datetime | None = None) -> Usage:
    """What an object of ``resource`` in ``group`` uses of quota."""
    if not group and resource == "pods":
        return pod_usage(obj, now)
    one = (Fraction(1), False)
    usage: Usage = {name: one for name in count_names(resource, group)}
    if not group and resource == "services":
        spec = obj.get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        ports = len(spec.get("ports") or [])
        if kind == "LoadBalancer":
            usage["services.loadbalancers"] = one
        if kind in ("NodePort", "LoadBalancer"):
            usage["services.nodeports"] = (Fraction(ports), False)
        else:
            usage["services.nodeports"] = (Fraction(0), False)
        usage.setdefault("services.loadbalancers", (Fraction(0), False))
    if not group and resource == "persistentvolumeclaims":
        usage.update(_claim_usage(obj))
    return usage


def _claim_usage(claim: Obj) -> Usage:
    """The PersistentVolumeClaim evaluator: requests.storage, and both per storage class
    (<class>.storageclass.storage.k8s.io/persistentvolumeclaims and /requests.storage)."""
    spec = claim.get("spec") or {}
    storage = _usage_of((spec.get("resources") or {}).get("requests")).get("storage")
    usage: Usage = {}
    if storage is not None:
        usage["requests.storage"] = storage
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    klass = spec.get("storageClassName")
    if klass is None:
        klass = annotations.get("volume.beta.kubernetes.io/storage-class")
    if klass:
        prefix = f"{klass}.storageclass.storage.k8s.io/"
        usage[prefix + "persistentvolumeclaims"] = (Fraction(1), False)
        if storage is not None:
            usage[prefix + "requests.storage"] = storage
    return usage


# ----------------------------------------------------------------------------- scopes


def _qos_best_effort(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = (c or {}).get("resources") or {}
        for key in ("requests", "limits"):
            if any(k in ("cpu", "memory") for k in res.get(key) or {}):
                return False
    return True


def _scope_matches(scope: str, pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "BestEffort":
        return _qos_best_effort(pod)
    if scope == "NotBestEffort":
        return not _qos_best_effort(pod)
    return False


def _scopes(quota: Obj) -> list[str]:
    spec = quota.get("spec") or {}
    scopes = list(spec.get("scopes") or [])
    for term in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        if term.get("operator") in ("Exists", None):
            scopes.append(str(term.get("scopeName")))
    return scopes


def quota_matches_pod(quota: Obj, pod: Obj) -> bool:
    """A pod falls under a quota when it matches every one of the quota's scopes."""
    return all(_scope_matches(s, pod) for s in _scopes(quota))


def quota_covers(quota: Obj, resource: str, group: str, obj: Obj) -> bool:
    """Whether ``obj`` is counted by ``quota`` at all (scoped quotas count pods only)."""
    if not group and resource == "pods":
        return quota_matches_pod(quota, obj)
    return not _scopes(quota)


# ----------------------------------------------------------------------------- admission


class Refused(Exception):
    """What the quota admission refuses, in kube-apiserver's words (a 403)."""


def check_quota(quota: Obj, resource: str, group: str, obj: Obj, delta: Usage) -> Usage | None:
    """The quota's new status.used if it admits ``obj`` (whose usage is ``delta``), None when
    it does not constrain it; Refused (with kube's message) when it does not admit it."""
    name = (quota.get("metadata") or {}).get("name", "")
    hard_spec = (quota.get("spec") or {}).get("hard") or {}
    status = quota.get("status") or {}
    if not quota_covers(quota, resource, group, obj):
        return None
    is_pod = not group and resource == "pods"
    names = set(count_names(resource, group))
    if is_pod:
        names |= POD_RESOURCES
    elif not group and resource == "services":
        names |= {"services.loadbalancers", "services.nodeports"}
    elif not group and resource == "persistentvolumeclaims":
        names |= set(delta)
    interesting = sorted(r for r in hard_spec if r in names)
    if not interesting:
        return None
    hard = _usage_of(status.get("hard"))
    used = _usage_of(status.get("used"))
    missing = [r for r in interesting if r not in hard or r not in used]
    if missing:
        raise Refused(f"status unknown for quota: {name}, resources: {','.join(missing)}")
    if is_pod:
        _constraints(name, obj, [r for r in interesting if r in MUST_SPECIFY])
    requested = {r: delta[r] for r in interesting if r in delta}
    if not requested:
        return None
    new_used = add(used, requested)
    exceeded = [r for r in sorted(requested) if new_used[r][0] > hard[r][0]]
    if exceeded:
        raise Refused(
            f"exceeded quota: {name}, requested: {pretty(requested, exceeded)}, used:"
            f" {pretty(used, exceeded)}, limited: {pretty(hard, exceeded)}"
        )
    return new_used


def _constraints(name: str, pod: Obj, required: list[str]) -> None:
    """The pod evaluator's Constraints: each container names what the quota limits."""
    if not required:
        return
    missing: dict[str, list[str]] = {}
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = (c or {}).get("resources") or {}
        have = _compute(_usage_of(res.get("requests")), _usage_of(res.get("limits")))
        for r in required:
            if r not in have:
                missing.setdefault(r, []).append(str((c or {}).get("name", "")))
    if missing:
        parts = [f"{r} for: {','.join(sorted(set(missing[r])))}" for r in sorted(missing)]
        raise Refused(f"failed quota: {name}: must specify {'; '.join(parts)}")


def encode_usage(usage: Usage, names: list[str]) -> dict[str, str]:
    """status.used for ``names`` (zero where nothing is used)."""
    return {r: format_quantity(*usage.get(r, (Fraction(0), False))) for r in sorted(names)}


# ----------------------------------------------------------------------------- validation

_INTEGER_PREFIXES = ("count/", "services.")


def _is_integer_resource(name: str) -> bool:
    return name in LEGACY_COUNTS or name.startswith(_INTEGER_PREFIXES)


def _check_resources(resources: dict[str, Any] | None, where: str) -> None:
    for k, v in (resources or {}).items():
        path = f"{where}[{k}]"
        problem = qualified_name_problem(k)
        if problem:
            raise FieldError(path, f"Invalid value: {q(k)}: {problem}")
        if (
            "/" not in k
            and k not in STANDARD
            and not k.startswith(("hugepages-", "requests.hugepages-"))
        ):
            raise FieldError(path, f"Invalid value: {q(k)}: must be a standard resource for quota")
        value, binary = quantity_of(v)
        shown = q(format_quantity(value, binary))
        if value < 0:
            raise FieldError(path, f"Invalid value: {shown}: must be greater than or equal to 0")
        if _is_integer_resource(k) and value.denominator != 1:
            raise FieldError(path, f"Invalid value: {shown}: must be an integer")


def _go_scopes(scopes: list[str]) -> str:
    return "[]core.ResourceQuotaScope{" + ", ".join(q(s) for s in scopes) + "}"


def _validate_quota(rq: ResourceQuota) -> None:
    from kubemodel.pod import validate_meta

    validate_meta(rq.metadata, True)
    spec = rq.spec
    hard = {k: str(v) for k, v in ((spec.hard if spec else None) or {}).items()}
    _check_resources(hard, "spec.hard")
    scopes = list((spec.scopes if spec else None) or [])
    for s in scopes:
        if s not in _ALL_SCOPES:
            raise FieldError("spec.scopes", f"Invalid value: {q(s)}: unsupported scope")
    for a, b in (("Terminating", "NotTerminating"), ("BestEffort", "NotBestEffort")):
        if a in scopes and b in scopes:
            raise FieldError(
                "spec.scopes", f"Invalid value: {_go_scopes(scopes)}: conflicting scopes"
            )
    for s in scopes:
        allowed = {"pods", "count/pods"} if s == "BestEffort" else POD_RESOURCES
        if s in SCOPES and any(k not in allowed for k in hard):
            raise FieldError(
                "spec.scopes",
                f"Invalid value: {_go_scopes(scopes)}: unsupported scope applied to resource",
            )
    status = rq.status
    if status is not None:
        _check_resources({k: str(v) for k, v in (status.hard or {}).items()}, "status.hard")
        _check_resources({k: str(v) for k, v in (status.used or {}).items()}, "status.used")


VALIDATORS.update({ResourceQuota: _validate_quota})
