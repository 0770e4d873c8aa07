"""Static pods: the pods of a manifest directory (the kubelet's ``staticPodPath``, k3s'
``agent/pod-manifests``), run by this node without the API.

Every file of the directory not starting with ``.`` holds one Pod (YAML or JSON). Each is
defaulted as the kubelet's file source does: named ``<name>-<node>``, namespace ``default``
unless given, bound to this node, a uid that is the hash of the file's path, the node's name
and the pod (so an edit is a new pod), the annotations ``kubernetes.io/config.hash`` (that
uid), ``kubernetes.io/config.source: file`` and ``kubernetes.io/config.seen``, and a toleration
of every NoExecute taint. The directory is looked at every ``CHECK`` seconds; a file that
cannot be read as a pod is logged once, naming the file and what is wrong, and changes
nothing: a pod it held before keeps its last good version.

A static pod refers to nothing of the API (no configMap, secret, service account token or
pull secret): its node may not read them for it (the node authorizer), so such a file is
refused. The pod manager (``orchestrator.kubelet.pods``) runs these pods and keeps their
mirror pods in the API."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.client import Obj, meta_key

__all__ = [
    "CHECK",
    "CONFIG_HASH",
    "CONFIG_MIRROR",
    "CONFIG_SOURCE",
    "ManifestDir",
    "StaticPodError",
    "is_mirror",
    "mirror_of",
    "static_pod",
]

log = logging.getLogger("corral.agent.static")

CHECK = 1.0  # seconds between looks at the directory (the kubelet's fileCheckFrequency is 20 s)
CONFIG_HASH = "kubernetes.io/config.hash"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
CONFIG_SOURCE = "kubernetes.io/config.source"
CONFIG_SEEN = "kubernetes.io/config.seen"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_API_VOLUMES = ("configMap", "secret")


class StaticPodError(Exception):
    """A manifest file that is not a static pod this node can run."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"static pod {path}: {message}")


def is_mirror(pod: Obj | None) -> bool:
    return CONFIG_MIRROR in (((pod or {}).get("metadata") or {}).get("annotations") or {})


def _api_references(spec: Obj) -> str | None:
    """What of the API the spec refers to (a static pod may not), or None."""
    if spec.get("serviceAccountName") or spec.get("serviceAccount"):
        return "spec.serviceAccountName"
    if spec.get("imagePullSecrets"):
        return "spec.imagePullSecrets"
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        for kind in _API_VOLUMES:
            if v.get(kind) is not None:
                return f"volume {v.get('name')!r} ({kind})"
        for src in (v.get("projected") or {}).get("sources") or []:
            if isinstance(src, dict) and set(src) & {"configMap", "secret", "serviceAccountToken"}:
                return f"volume {v.get('name')!r} (projected from the API)"
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            for env in c.get("env") or []:
                ref = (env or {}).get("valueFrom") or {}
                if ref.get("secretKeyRef") or ref.get("configMapKeyRef"):
                    return f"container {c.get('name')!r} env {env.get('name')!r}"
            if c.get("envFrom"):
                return f"container {c.get('name')!r} envFrom"
    return None


def static_pod(path: Path, text: str, node: str) -> Obj:
    """The pod of one manifest file, defaulted as the kubelet's file source does;
    StaticPodError naming the file and the problem."""
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except (ValueError, Exception) as e:  # noqa: BLE001 - yaml's errors are not ValueErrors
        raise StaticPodError(path, f"not YAML or JSON: {e}") from None
    if not isinstance(doc, dict):
        raise StaticPodError(path, "not an object")
    if doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
        raise StaticPodError(
            path,
            f"kind {doc.get('kind')!r} apiVersion {doc.get('apiVersion')!r}: expected a v1 Pod",
        )
    meta = doc.get("metadata")
    spec = doc.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise StaticPodError(path, "no metadata or spec")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise StaticPodError(path, "metadata.name is required")
    full = f"{name}-{node}"
    if len(full) > 253 or not _NAME.match(full):
        raise StaticPodError(path, f"name {full!r} is not a valid pod name")
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str) or not _NAME.match(ns):
        raise StaticPodError(path, f"namespace {ns!r} is not valid")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise StaticPodError(path, "spec.containers: at least one container is required")
    if not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers):
        raise StaticPodError(path, "spec.containers: each needs a name and an image")
    refs = _api_references(spec)
    if refs is not None:
        raise StaticPodError(path, f"{refs}: a static pod may not refer to API objects")
    pod = copy.deepcopy(doc)
    pod.pop("status", None)
    hasher = hashlib.md5(usedforsecurity=False)
    hasher.update(f"host:{node}\nfile:{path}\n".encode())
    hasher.update(json.dumps(pod, sort_keys=True).encode())
    uid = hasher.hexdigest()
    meta = pod["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "generateName", "ownerReferences"):
        meta.pop(k, None)
    meta.update(name=full, namespace=ns, uid=uid)
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        CONFIG_HASH: uid,
        CONFIG_SOURCE: "file",
        CONFIG_SEEN: datetime.now(UTC).isoformat(),
    }
    spec = pod["spec"]
    spec["nodeName"] = node
    tolerations = list(spec.get("tolerations") or [])
    tolerations.append({"operator": "Exists", "effect": "NoExecute"})
    spec["tolerations"] = tolerations
    return pod


def mirror_of(pod: Obj, node_uid: str) -> Obj:
    """The mirror pod the API gets of static ``pod``: its spec, labels and annotations, marked
    ``kubernetes.io/config.mirror`` (the hash), owned by the Node."""
    meta = pod["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[CONFIG_MIRROR] = annotations[CONFIG_HASH]
    out_meta: Obj = {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": pod["spec"]["nodeName"],
                "uid": node_uid,
                "controller": True,
            }
        ],
    }
    if meta.get("labels"):
        out_meta["labels"] = meta["labels"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": out_meta, "spec": pod["spec"]}


@dataclass
class _File:
    stamp: tuple[int, int, int]  # (inode, size, mtime_ns): read again when it changes
    pod: Obj | None  # its last good pod


class ManifestDir:
    """The static pods of ``path``: ``pods`` (key -> pod) after each ``scan``; ``changed`` is
    called with the keys whose pod came, went or changed."""

    def __init__(self, path: Path, node: str, changed: Callable[[set[str]], None]) -> None:
        self.path = path
        self.node = node
        self.changed = changed
        self.pods: dict[str, Obj] = {}
        self._files: dict[str, _File] = {}
        self._duplicates: set[tuple[str, tuple[int, int, int]]] = set()  # logged already

    def scan(self) -> None:
        try:
            names = sorted(n for n in os.listdir(self.path) if not n.startswith("."))
        except FileNotFoundError:
            names = []
        except OSError as e:
            log.error("static pods: cannot read %s: %s", self.path, e)
            return
        files: dict[str, _File] = {}
        for name in names:
            p = self.path / name
            try:
                st = p.stat()
            except OSError:
                continue
            if not p.is_file():
                continue
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            old = self._files.get(name)
            if old is not None and old.stamp == stamp:
                files[name] = old
                continue
            pod = old.pod if old is not None else None
            try:
                pod = static_pod(p, p.read_text(), self.node)
            except (OSError, UnicodeDecodeError) as e:
                log.error("static pod %s: cannot read it: %s", p, e)
            except StaticPodError as e:
                if pod is not None:
                    log.error("%s; pod %s keeps its last good version", e, meta_key(pod))
                else:
                    log.error("%s; ignored", e)
            files[name] = _File(stamp, pod)
        self._files = files
        pods: dict[str, Obj] = {}
        for name, f in files.items():
            if f.pod is None:
                continue
            key = meta_key(f.pod)
            if key in pods:
                if (name, f.stamp) not in self._duplicates:
                    self._duplicates.add((name, f.stamp))
                    log.error(
                        "static pod %s: %s is defined by another file already; ignored",
                        self.path / name,
                        key,
                    )
                continue
            pods[key] = f.pod
        changed = {
            k
            for k in pods.keys() | self.pods.keys()
            if (pods.get(k) or {}).get("metadata", {}).get("uid")
            != (self.pods.get(k) or {}).get("metadata", {}).get("uid")
        }
        self.pods = pods
        if changed:
            log.info("static pods: %s changed", ", ".join(sorted(changed)))
            self.changed(changed)

    async def run(self, interval: float = CHECK) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.scan()
            except Exception:
                log.exception("static pods: scanning %s", self.path)
