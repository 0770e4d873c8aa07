"""ServiceAccount admission of a new pod (kube-apiserver's ``ServiceAccount`` plugin).

* ``spec.serviceAccountName`` defaults to ``default`` (from the deprecated
  ``spec.serviceAccount`` when only that is set); ``spec.serviceAccount`` is set the same.
* Unless ``automountServiceAccountToken`` is false (the pod's, else its ServiceAccount's), every
  container and init container that mounts nothing at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` gets the token volume there, read-only: a
  projected volume ``kube-api-access-<5 random>`` of a bound ServiceAccount token (``token``),
  the cluster CA (``ca.crt`` from the ``kube-root-ca.crt`` ConfigMap) and the namespace.

Mirror pods are left alone. Unlike kube-apiserver, a pod whose ServiceAccount does not exist
(yet) is admitted: its kubelet cannot get a token for it and reports FailedMount until the
ServiceAccount is there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubemodel.names import random_name

__all__ = ["MOUNT_PATH", "VOLUME_PREFIX", "admit_pod", "token_volume_source"]

Obj = dict[str, Any]
Lookup = Callable[[str, str], Awaitable[Obj | None]]  # (namespace, name) -> ServiceAccount

DEFAULT_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# One hour and 7 s: the 7 s tell a token volume this plugin made (kube's marker for legacy
# token extension) from one a user wrote.
TOKEN_SECONDS = 3607
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # kube's generated-name alphabet


def token_volume_source() -> Obj:
    """The projected volume source of the token volume."""
    return {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
            {
                "configMap": {
                    "name": ROOT_CA_CONFIGMAP,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _volume_name(taken: set[str]) -> str:
    while True:
        name = VOLUME_PREFIX + random_name(_NAME_CHARS, 5)
        if name not in taken:
            return name


async def admit_pod(pod: Obj, lookup: Lookup) -> None:
    """Default the pod's ServiceAccount and mount its token volume (in place). Malformed
    fields are left for validation to name."""
    spec = pod.get("spec")
    meta = pod.get("metadata") or {}
    if not isinstance(spec, dict):
        return
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_ACCOUNT
    if not isinstance(name, str):
        return
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        account = await lookup(str(meta.get("namespace") or ""), name)
        automount = (account or {}).get("automountServiceAccountToken")
    if automount is False:
        return
    volumes = spec.get("volumes")
    if volumes is not None and not isinstance(volumes, list):
        return
    existing = next(
        (
            v["name"]
            for v in _dicts(volumes)
            if isinstance(v.get("name"), str) and v["name"].startswith(VOLUME_PREFIX)
        ),
        None,
    )
    volume = existing or _volume_name({str(v.get("name")) for v in _dicts(volumes)})
    needed = False
    for kind in ("initContainers", "containers"):
        for c in _dicts(spec.get(kind)):
            mounts = c.get("volumeMounts")
            if mounts is not None and not isinstance(mounts, list):
                continue
            if any(m.get("mountPath") == MOUNT_PATH for m in _dicts(mounts)):
                continue
            mount = {"name": volume, "readOnly": True, "mountPath": MOUNT_PATH}
            c["volumeMounts"] = [*(mounts or []), mount]
            needed = True
    if needed and existing is None:
        spec["volumes"] = [*(volumes or []), {"name": volume, "projected": token_volume_source()}]
