"""scheduling.k8s.io/v1 PriorityClass: the built-in classes, their validation, and the Priority
admission of pods (kube-apiserver's ``Priority`` plugin): ``spec.priority`` and
``spec.preemptionPolicy`` are set from ``spec.priorityClassName``, or from the global default
class, or 0."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from orchestrator.store import Backend, NotFound

from . import errors

__all__ = ["BUILTIN", "PriorityAdmission", "validate_class"]

Obj = dict[str, Any]
HIGHEST_USER_DEFINABLE = 1_000_000_000
BUILTIN: dict[str, int] = {
    "system-node-critical": 2_000_001_000,
    "system-cluster-critical": 2_000_000_000,
}
DEFAULT_POLICY = "PreemptLowerPriority"
PREFIX = "/registry/priorityclasses.scheduling.k8s.io/"
CACHE_SECONDS = 1.0  # the global default is looked up at most this often


def builtin_classes() -> list[Obj]:
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "Used for system critical pods that must not be moved from their"
            " current node."
            if name == "system-node-critical"
            else "Used for system critical pods that must run in the cluster, but can be"
            " moved to another node if necessary.",
            "preemptionPolicy": DEFAULT_POLICY,
        }
        for name, value in BUILTIN.items()
    ]


def validate_class(obj: Obj) -> None:
    """kube's PriorityClass validation: user classes stay at or below 1e9, the ``system-``
    prefix is reserved for the built-ins."""
    name = (obj.get("metadata") or {}).get("name") or ""
    value = obj.get("value")
    if name in BUILTIN:
        if value != BUILTIN[name]:
            raise errors.forbidden(
                "priorityclasses",
                name,
                f"{name} is a system priority class: its value is {BUILTIN[name]}",
                "scheduling.k8s.io",
            )
        return
    if name.startswith("system-"):
        raise errors.invalid(
            "PriorityClass",
            name,
            "metadata.name",
            "priority class names with 'system-' prefix are reserved",
            "scheduling.k8s.io",
        )
    if isinstance(value, int) and value > HIGHEST_USER_DEFINABLE:
        raise errors.invalid(
            "PriorityClass",
            name,
            "value",
            f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}",
            "scheduling.k8s.io",
        )


class PriorityAdmission:
    def __init__(self, store: Backend) -> None:
        self.store = store
        self._default: tuple[float, Obj | None] = (0.0, None)

    def forget(self) -> None:
        """A class was written: look the default up again."""
        self._default = (0.0, None)

    async def global_default(self, exclude: str = "") -> Obj | None:
        at, cls = self._default
        if not exclude and time.monotonic() - at < CACHE_SECONDS:
            return cls
        best: Obj | None = None
        for kv in (await self.store.list(PREFIX)).items:
            c = msgspec.json.decode(kv.value)
            if c.get("globalDefault") and (c.get("metadata") or {}).get("name") != exclude:
                if best is None or int(c.get("value") or 0) < int(best.get("value") or 0):
                    best = c
        if not exclude:
            self._default = (time.monotonic(), best)
        return best

    async def check_class(self, obj: Obj) -> None:
        validate_class(obj)
        if obj.get("globalDefault"):
            name = (obj.get("metadata") or {}).get("name") or ""
            other = await self.global_default(exclude=name)
            if other is not None:
                raise errors.invalid(
                    "PriorityClass",
                    name,
                    "globalDefault",
                    f"PriorityClass {other['metadata']['name']} is already marked as default."
                    " Only one default can exist",
                    "scheduling.k8s.io",
                )

    async def admit_pod(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("priorityClassName") or ""
        cls: Obj | None
        if name:
            try:
                kv = await self.store.get(PREFIX + name)
                cls = msgspec.json.decode(kv.value)
            except NotFound:
                raise errors.forbidden(
                    "pods",
                    (pod.get("metadata") or {}).get("name") or "",
                    f"no PriorityClass with name {name} was found",
                ) from None
        else:
            cls = await self.global_default()
            if cls is not None:
                spec["priorityClassName"] = cls["metadata"]["name"]
        value = int(cls.get("value") or 0) if cls else 0
        given = spec.get("priority")
        if given is not None and given != value:
            raise errors.forbidden(
                "pods",
                (pod.get("metadata") or {}).get("name") or "",
                f"the integer value of priority ({given}) must not be provided in pod spec;"
                " priority admission controller computed"
                f" {value} from the given PriorityClass name",
            )
        spec["priority"] = value
        if spec.get("preemptionPolicy") is None:
            spec["preemptionPolicy"] = (cls or {}).get("preemptionPolicy") or DEFAULT_POLICY
