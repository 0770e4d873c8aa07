"""The RuntimeClass admission of pods (kube-apiserver's ``RuntimeClass`` plugin): a pod naming
a ``spec.runtimeClassName`` that does not exist is refused; the class's ``overhead.podFixed``
becomes the pod's ``spec.overhead`` (a pod giving another overhead is refused, and one giving
an overhead without a class); the class's ``scheduling`` is merged into the pod's nodeSelector
(a conflicting value is refused) and tolerations. Worded as kube words them."""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.store import Backend, NotFound

from . import errors

__all__ = ["RuntimeClassAdmission"]

Obj = dict[str, Any]
PREFIX = "/registry/runtimeclasses.node.k8s.io/"


def _forbidden(pod: Obj, message: str) -> errors.ApiError:
    return errors.forbidden("pods", (pod.get("metadata") or {}).get("name") or "", message)


class RuntimeClassAdmission:
    def __init__(self, store: Backend) -> None:
        self.store = store

    async def admit_pod(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("runtimeClassName")
        if not name:
            if spec.get("overhead"):
                raise _forbidden(pod, "pod rejected: Pod Overhead set without corresponding"
                                 " RuntimeClass")  # fmt: skip
            return
        try:
            cls: Obj = msgspec.json.decode((await self.store.get(PREFIX + str(name))).value)
        except NotFound:
            raise _forbidden(pod, f'pod rejected: RuntimeClass "{name}" not found') from None
        fixed = (cls.get("overhead") or {}).get("podFixed")
        if fixed:
            given = spec.get("overhead")
            if given and given != fixed:
                raise _forbidden(pod, "pod rejected: Pod's Overhead doesn't match RuntimeClass's"
                                 " defined Overhead")  # fmt: skip
            spec["overhead"] = dict(fixed)
        scheduling = cls.get("scheduling") or {}
        selector = dict(spec.get("nodeSelector") or {})
        for key, value in (scheduling.get("nodeSelector") or {}).items():
            if key in selector and selector[key] != value:
                raise _forbidden(
                    pod,
                    f"conflict: runtimeClass.scheduling.nodeSelector[{key}] = {value};"
                    f" pod.spec.nodeSelector[{key}] = {selector[key]}",
                )
            selector[key] = value
        if selector:
            spec["nodeSelector"] = selector
        tolerations = list(spec.get("tolerations") or [])
        for tol in scheduling.get("tolerations") or ():
            if tol not in tolerations:  # kube's MergeTolerations: no duplicate
                tolerations.append(tol)
        if tolerations:
            spec["tolerations"] = tolerations
