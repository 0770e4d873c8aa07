"""A pod's ``imagePullSecrets`` as registry credentials, as the kubelet reads them.

Each secret named in ``spec.imagePullSecrets`` (of the pod's namespace) is read from the
agent's per-object watch of it (``PodManager._source``); one of type
``kubernetes.io/dockerconfigjson`` (its ``.dockerconfigjson``: ``{"auths": {...}}``) or
``kubernetes.io/dockercfg`` (``.dockercfg``: the old flat map) adds its entries to the pod's
``Keyring``. A secret that is missing, of another type, or malformed is left out and named,
so the pull goes on without it (the kubelet warns with ``FailedToRetrieveImagePullSecret``).
The keyring lives in memory for the pod's create; nothing of it is written on the node.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from orchestrator.client import Obj
from runtime.pod import api

__all__ = ["DOCKERCFG", "DOCKERCONFIGJSON", "keyring_of", "pull_secret_keys", "secret_credentials"]

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
_DATA_KEY = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}

Lookup = Callable[[str, str, str], Obj | None]  # (kind, namespace, name) -> the object


def _names(pod: Obj) -> list[str]:
    out: list[str] = []
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        name = (ref or {}).get("name") if isinstance(ref, dict) else None
        if name and name not in out:
            out.append(name)
    return out


def pull_secret_keys(pod: Obj) -> list[str]:
    """``secret/<ns>/<name>`` of each of the pod's image pull secrets (watched per object)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    return [f"secret/{ns}/{name}" for name in _names(pod)]


def secret_credentials(secret: Obj) -> dict[str, api.Credentials]:
    """The registry credentials of a pull secret, by registry location; a ``ValueError``
    saying why when it holds none (wrong type, no data, malformed)."""
    kind = secret.get("type") or "Opaque"
    key = _DATA_KEY.get(kind)
    if key is None:
        raise ValueError(f"type {kind} is not {DOCKERCONFIGJSON} or {DOCKERCFG}")
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        raise ValueError(f"no {key} in its data")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"data[{key}] is not base64") from e
    return api.docker_config(data, key, legacy=kind == DOCKERCFG)


def keyring_of(pod: Obj, lookup: Lookup) -> tuple[api.Keyring, list[str]]:
    """The pod's keyring, and ``name: why`` for each pull secret left out of it."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    keyring = api.Keyring()
    failed: list[str] = []
    for name in _names(pod):
        secret = lookup("secret", ns, name)
        if secret is None:
            failed.append(f'{name}: secret "{name}" not found')
            continue
        try:
            keyring.add(secret_credentials(secret))
        except ValueError as e:
            failed.append(f"{name}: {e}")
    return keyring, failed
