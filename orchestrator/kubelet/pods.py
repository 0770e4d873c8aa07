"""The node's pods: an informer on the pods bound to this node, a work queue keyed by pod
(client-go's guarantees: one worker per pod at a time), and a level-triggered ``sync(key)``
that compares the API's pod with what the node runtime reports and acts: create and start,
stop and remove, report status. A relist of the runtime every second (the kubelet's PLEG)
queues the pods whose runtime status differs from what their last sync (or relist) saw: a
change the runtime's status watch already had synced is not synced again, and an idle pod
not at all; every RESYNC seconds every pod is synced (the kubelet's periodic sync), a safety
net for a change nothing reported.

Pods run under their own monitors: the agent may die and come back; the runtime's pod
directories are named by the API's uid, so a restarted agent finds its pods there and only
reports them (nothing is started twice)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.client import (
    AlreadyExists,
    ApiClient,
    ClientError,
    Conflict,
    Informer,
    NotFound,
    Obj,
    ShutDown,
    WorkQueue,
    meta_key,
)
from orchestrator.client.rest import (
    CONFIGMAPS,
    PODS,
    RUNTIMECLASSES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
)
from runtime.pod import api

from .claims import (
    CLAIM_RETRY,
    LOCAL_PATH_DIR,
    ClaimError,
    claim_volumes,
    read_only_claims,
    with_claims,
    with_read_only,
)
from .envvars import service_env, with_service_env
from .events import EventRecorder
from .podstatus import api_status, now, waiting_status
from .pullsecrets import keyring_of, pull_secret_keys
from .staticpods import CONFIG_MIRROR, CONFIG_SOURCE, is_mirror, mirror_of
from .volumes import (
    KINDS,
    PreparedVolumes,
    Tokens,
    VolumeError,
    drop_sources,
    prepare_volumes,
    sources_of,
    token_sources,
)

__all__ = ["PodManager", "make_failure"]

log = logging.getLogger("corral.agent.pods")

T = TypeVar("T")

RELIST = 1.0  # seconds between runtime relists (the kubelet's PLEG period)
RESYNC = 60.0  # seconds between syncs of every pod (the kubelet's --sync-frequency)
IMAGE_BACKOFF = 10.0  # first ImagePullBackOff delay; doubles up to IMAGE_BACKOFF_MAX
IMAGE_BACKOFF_MAX = 300.0
INVALID_IMAGE_NAME = "InvalidImageName"
SOURCE_SYNC_WAIT = 10.0  # seconds to wait for the first list of a configMap or secret
# seconds a configMap or secret no pod reads any more stays watched (as the kubelet's
# watch-based manager keeps an unused one a while): the next pod that reads it (the
# kube-root-ca.crt of every pod, a Deployment's next pod) waits for no list
SOURCE_IDLE = 60.0
MAKING = 16  # pods being made (created and started) at once
# workers (and threads): those not making a pod sync the others at once (a pod whose container
# just started is reported Ready without waiting for a make to end)
WORKERS = MAKING + 8
STARTING_RECHECK = 0.1  # seconds: a pod whose containers are being made is looked at again
# (only one whose status changes the runtime's status watch does not report)
# seconds: a pod just started by this agent, whose containers are all being created, has its
# first status written when one of them starts (the runtime's status watch says so) or after
# this long, whichever comes first: one status write for a pod that starts at once, not one
# saying "being created" and another "running" a moment later
FIRST_STATUS_HOLD = 1.0
TOKEN_REFRESH = 0.8  # a ServiceAccount token is requested again after this part of its life
TOKEN_MAX_AGE = 24 * 3600.0  # or after this many seconds, whatever its lifetime


# What the API's pod holds that the node has no part in: the scheduler's fields (it bound the
# pod here already), the API server's bookkeeping, the service account (its token reaches
# the pod as a projected volume the agent writes), and the image pull secrets (the kubelet reads
# them and hands the runtime their credentials, in memory, not the names). Everything else goes
# to the node runtime, which refuses, naming the field, what it does not implement.
_SCHEDULING = (
    "nodeName",
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulerName",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "topologySpreadConstraints",
    "schedulingGates",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "enableServiceLinks",  # the kubelet's: the containers' env has the services already
)
_META = ("name", "namespace", "uid", "labels", "annotations")


def watched_of(pod: Obj) -> list[str]:
    """The configMaps and secrets the pod reads: its volumes' and its image pull secrets."""
    return sources_of(pod) + pull_secret_keys(pod)


def _has_api_volumes(pod: Obj) -> bool:
    return any(
        v.get(k) is not None for v in (pod.get("spec") or {}).get("volumes") or [] for k in KINDS
    )


def _same_but_status(a: Obj, b: Obj) -> bool:
    def strip(o: Obj) -> Obj:
        meta = {
            k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")
        }
        return {"metadata": meta, "spec": o.get("spec")}

    return strip(a) == strip(b)


def node_manifest(
    pod: Obj,
    volumes: PreparedVolumes,
    env: dict[str, str] | None = None,
    claims: dict[str, Obj] | None = None,
    handler: str | None = None,
) -> Obj:
    """The pod as the node runtime gets it: without what the node has no part in; its
    API-fed volumes as the runtime's local-source volumes, with their annotations; its
    claims' volumes as the hostPath volumes ``claims`` resolved them to; the services'
    variables ``env`` in every container's environment; the runtime ``handler`` of its
    RuntimeClass as its ``runtimeClassName`` (the runtime's name for the OCI runtime)."""
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k in _META}
    meta["annotations"] = {**(meta.get("annotations") or {}), **volumes.annotations}
    spec = {k: v for k, v in (pod.get("spec") or {}).items() if k not in _SCHEDULING}
    if handler:
        spec["runtimeClassName"] = handler
    else:
        spec.pop("runtimeClassName", None)
    if spec.get("containers"):
        spec["containers"] = [_without_hooks(c) for c in spec["containers"]]
    for kind in ("initContainers", "containers"):
        if spec.get(kind):
            spec[kind] = [with_service_env(c, env or {}) for c in spec[kind]]
    if spec.get("volumes"):
        spec["volumes"] = [volumes.volumes.get(v.get("name"), v) for v in spec["volumes"]]
        spec = with_claims(spec, claims or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _kubelet_hook(container: Obj) -> Obj | None:
    """The container's preStop handler when the kubelet runs it (``exec`` or ``sleep``, and no
    other lifecycle handler), else None."""
    lifecycle = container.get("lifecycle")
    if not isinstance(lifecycle, dict) or set(lifecycle) != {"preStop"}:
        return None
    handler = lifecycle["preStop"]
    if not isinstance(handler, dict) or len(handler) != 1:
        return None
    if isinstance((handler.get("exec") or {}).get("command"), list):
        return handler
    if isinstance((handler.get("sleep") or {}).get("seconds"), int):
        return handler
    return None


def _without_hooks(container: Obj) -> Obj:
    """The container as the runtime gets it: without a preStop hook the kubelet runs itself
    (any other lifecycle handler stays, and the runtime refuses it, naming the field)."""
    if _kubelet_hook(container) is None:
        return container
    return {k: v for k, v in container.items() if k != "lifecycle"}


def _epoch(rfc3339: Any) -> float | None:
    if not isinstance(rfc3339, str):
        return None
    try:
        return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ImagePullError(Exception):
    def __init__(self, reason: str, image: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.image = image
        self.message = message


class NoRuntimeClass(api.PodError):
    """The pod's RuntimeClass is not there (admission checked it; it went since)."""

    def __init__(self, pod: str, name: str) -> None:
        super().__init__(pod, f'runtimeclass.node.k8s.io "{name}" not found')


def failure_message(e: Exception) -> str:
    """The event's message for a pod that could not be made: a sandbox the runtime could not
    make is said as the kubelet says it (FailedCreatePodSandBox)."""
    if isinstance(e, NoRuntimeClass):
        return f"Failed to create pod sandbox: {e.message}"
    if isinstance(e, api.NoRuntimeHandler):
        return f"Failed to create pod sandbox: rpc error: code = Unknown desc = {e.message}"
    return str(e)


def make_failure(e: Exception, failures: int) -> tuple[str, str, float]:
    """A pod that could not be made: its event's reason, its containers' waiting reason and
    when to try again (``failures`` before this one). A claim not ready yet is tried again
    every CLAIM_RETRY seconds (kube's pod worker backOffPeriod: it may bind any moment),
    other failures after a delay doubling from 2 s up to 2 minutes."""
    if isinstance(e, ClaimError):
        return "FailedMount", "ContainerCreating", CLAIM_RETRY
    if isinstance(e, (NoRuntimeClass, api.NoRuntimeHandler)):
        event, reason = "FailedCreatePodSandBox", "ContainerCreating"
    elif isinstance(e, VolumeError):
        event, reason = "FailedMount", "ContainerCreating"
    elif isinstance(e, api.ManifestError):
        event, reason = "Failed", "CreateContainerConfigError"
    else:  # the runtime could not make it (a hostPath, a mount, the monitor)
        event, reason = "Failed", "CreateContainerError"
    return event, reason, min(2.0 * 2**failures, 120.0)


class PodManager:
    def __init__(
        self,
        client: ApiClient,
        runtime: api.PodRuntime,
        node_name: str,
        host_ip: Callable[[], str],
        events: EventRecorder,
        data_dir: Path,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.node_name = node_name
        self.host_ip = host_ip
        self.events = events
        self.sources = data_dir / "volume-sources"
        self.local_path_root = data_dir / LOCAL_PATH_DIR
        self.informer = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.informer.add_index("uid", lambda o: [o["metadata"].get("uid", "")])
        self.informer.add_index("source", watched_of)
        # Every Service: the containers' service variables (as the kubelet's service lister).
        self.services = Informer(client, SERVICES)
        # The configMaps and secrets the pods mount or pull with, each watched alone by its
        # name (the kubelet's watch-based manager; the node authorizer allows no wider list):
        # "configmap/<ns>/<name>" -> its informer.
        self._sources: dict[str, Informer] = {}
        self._unused: dict[str, float] = {}  # key of _sources -> loop time no pod read it
        self._stopping: set[asyncio.Task[None]] = set()
        self._digests: dict[str, dict[str, str]] = {}  # uid -> volume -> source digest
        # uid -> ephemeral container -> (waiting reason, message) of its failed add
        self._ephemeral_failed: dict[str, dict[str, tuple[str, str]]] = {}
        self.queue = WorkQueue("pods", base_delay=0.5, max_delay=60.0)
        self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, "kubelet-pod")
        self._making = 0  # pods being made (at most MAKING)
        self._to_make: dict[str, None] = {}  # keys waiting for a make to end, in order
        self._runtime: dict[str, list[api.PodStatus]] = {}  # key -> runtime pods of that name
        # uid -> the runtime status the pod's last sync read, or the last relist listed
        self._seen: dict[str, api.PodStatus] = {}
        self._resynced = 0.0  # loop time every pod was last queued (RESYNC)
        # a pod went (from the API or the node): the relist sweeps the volume sources left
        self._sweep_due = True
        # uid -> key of the running pods whose status changes the runtime reports (its
        # StatusWatch): their sync runs when a container starts, gets ready or ends
        self._watched: dict[str, str] = {}
        self._status_watch: api.StatusWatch | None = None
        self._reported: dict[str, Obj] = {}  # key -> the status last written
        # key -> the resourceVersion of the pod that status was written over
        self._written_over: dict[str, str | None] = {}
        self._pull_failures: dict[str, int] = {}
        # keys whose make failed on its image: the runtime keeps a waiting status of it
        # (``NodePods``), removed by name when the pod goes (no other pod gone is asked for)
        self._pull_waiting: set[str] = set()
        self._backoff_until: dict[str, tuple[float, str]] = {}  # key -> (loop time, image)
        self._container_runs: dict[tuple[str, str], tuple[int, str]] = {}
        self._started: dict[str, float] = {}  # uid -> loop time this agent started the pod
        # (pod uid, audience, expirationSeconds) -> (token, refresh after, expiry): epoch seconds
        self._tokens: dict[tuple[str, str, int], tuple[str, float, float]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        # key -> (uid, message, done) of an eviction asked for; key -> uid of the pod evicted
        self._evicting: dict[str, tuple[str, str, asyncio.Future[None]]] = {}
        self._evicted: dict[str, str] = {}
        # uids this agent deleted for good, and when: a sync that read the pod before the
        # watch brought the deletion has nothing left to do (the API has it no more: a node
        # may not even ask); forgotten after a RESYNC period
        self._deleted: dict[str, float] = {}
        self.static: dict[str, Obj] = {}  # key -> static pod (set_static)
        self._static_grace: dict[str, int] = {}  # key -> grace of a static pod removed/edited
        self.node_uid = ""  # the Node's uid: mirror pods are owned by it

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the pod workers' threads (the runtime blocks)."""
        return await self._call(fn, *args)

    def get(self, key: str) -> Obj | None:
        """The pod ``key`` this node runs: a static pod, else the API's (not a mirror pod)."""
        static = self.static.get(key)
        if static is not None:
            return static
        pod = self.informer.get(key)
        return None if is_mirror(pod) else pod

    def all(self) -> list[Obj]:
        """Every pod this node runs, as ``get`` gives each (the kubelet's ``/pods``)."""
        pods = list(self.static.values())
        pods += [p for p in self.informer.list() if not is_mirror(p)]
        return pods

    def set_static(self, pods: dict[str, Obj], changed: set[str] | None = None) -> None:
        """The static pods (key -> pod, ``orchestrator.kubelet.staticpods``) are now ``pods``;
        the keys whose pod came, went or changed are synced."""
        if changed is None:
            changed = set(pods) | set(self.static)
        for key in changed:
            old = self.static.get(key)
            if old is not None:
                grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                self._static_grace[key] = grace if isinstance(grace, int) else 30
        self.static = dict(pods)
        for key in changed:
            self.queue.add(key)

    async def _mirror(self, key: str, pod: Obj, mirror: Obj | None) -> None:
        """Keep the static pod's mirror in the API: made when missing; deleted (to be made
        again) when it is being deleted or mirrors another version of the pod."""
        if mirror is not None:
            mhash = (mirror["metadata"].get("annotations") or {}).get(CONFIG_MIRROR)
            if not mirror["metadata"].get("deletionTimestamp") and mhash == pod["metadata"]["uid"]:
                return
            await self._delete_mirror(key, mirror)
            return  # made again when the API says it is gone
        if not self.node_uid:
            self.queue.add_after(key, RELIST)  # made once the Node is known
            return
        try:
            await self.client.create(
                PODS, pod["metadata"]["namespace"], mirror_of(pod, self.node_uid)
            )
            log.info("mirror pod %s made", key)
        except AlreadyExists:
            pass
        except ClientError as e:
            log.warning("static pod %s: mirror pod not made: %s", key, e)
            self.queue.add_after(key, RELIST)  # tried again (the API may be down a while)
        self._reported.pop(key, None)

    async def _delete_mirror(self, key: str, mirror: Obj) -> None:
        await self._delete_for_good(f"mirror pod {key}", mirror)

    async def _delete_for_good(self, what: str, pod: Obj) -> None:
        """Delete ``pod`` from the API at once (gracePeriodSeconds=0), only if it is still the
        same pod (uid precondition): gone already, or replaced by a new pod of the same name
        (409), is done too."""
        meta = pod["metadata"]
        try:
            await self.client.delete(
                PODS,
                meta["namespace"],
                meta["name"],
                grace_period=0,
                preconditions={"uid": meta["uid"]},
            )
            log.info("%s deleted", what)
        except (NotFound, Conflict):
            pass
        self._deleted[meta["uid"]] = asyncio.get_running_loop().time()

    def pod_by_uid(self, uid: str) -> Obj | None:
        found = self.informer.by_index("uid", uid)
        return found[0] if found else None

    async def evict(self, key: str, uid: str, message: str, wait: float) -> None:
        """Evict the pod (by its worker, as any change to it): killed at once, reported
        Failed/Evicted with ``message``, removed from the node. Waits (``wait`` seconds at
        most) for it to be done."""
        done = asyncio.get_running_loop().create_future()
        self._evicting[key] = (uid, message, done)
        self.queue.add(key)
        try:
            await asyncio.wait_for(asyncio.shield(done), wait)
        except TimeoutError:
            log.warning("pod %s: eviction not done after %ss", key, wait)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---------------------------------------------------------------- running

    async def start(self) -> None:
        """Finish what an earlier agent left half done, then watch, relist and work."""
        await self._call(self.runtime.gc, True)
        await self.watch_statuses()
        self.services.start()
        self.informer.add_handler(self._on_event)
        self.informer.start()
        await self.informer.wait_synced()
        await self._relist()
        self._tasks.append(asyncio.create_task(self._relist_loop(), name="kubelet-pleg"))
        for i in range(WORKERS):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"kubelet-pods-{i}"))

    async def watch_statuses(self) -> None:
        """Sync a running pod as soon as the runtime reports that its status changed (its
        ``status_watch``, read on the event loop), not only at the next relist."""
        if self._status_watch is None:
            self._status_watch = await self._call(self.runtime.status_watch)
            asyncio.get_running_loop().add_reader(self._status_watch.fileno(), self._on_status)

    def _on_status(self) -> None:
        """The runtime says these pods' status changed (a container started, got ready,
        ended): sync them now."""
        assert self._status_watch is not None
        for uid in self._status_watch.read():
            key = self._watched.get(uid)
            if key is not None:
                self.queue.add(key)

    async def _watch(self, key: str, uid: str) -> bool:
        """Have the runtime report the running pod's status changes (once per pod); True
        when it does from now on (a status read after this sees every later change)."""
        if uid in self._watched:
            return True
        try:
            await self._call(self.runtime.watch_status, uid)
        except api.PodError as e:
            log.debug("pod %s: status not watched: %s", key, e)
            return False
        self._watched[uid] = key
        return True

    def _on_event(self, event: str, old: Obj | None, new: Obj | None) -> None:
        """Queue the pod, unless the change is only its status (ours, mostly: the pod's
        worker wrote it)."""
        if (
            event == "MODIFIED"
            and old is not None
            and new is not None
            and _same_but_status(old, new)
        ):
            return
        self.queue.add(meta_key(new or old or {}))

    def _source_handler(self, kind: str) -> Callable[[str, Obj | None, Obj | None], None]:
        def handle(event: str, old: Obj | None, new: Obj | None) -> None:
            if event == "ADDED" and not self.informer.has_synced:
                return
            key = f"{kind}/{meta_key(new or old or {})}"
            for pod in self.informer.by_index("source", key):
                self.queue.add(meta_key(pod))

        return handle

    def _source(self, key: str) -> Informer:
        """The informer of one configMap or secret (``kind/ns/name``), started if new."""
        inf = self._sources.get(key)
        if inf is None:
            kind, ns, name = key.split("/", 2)
            res = CONFIGMAPS if kind == "configmap" else SECRETS
            inf = Informer(self.client, res, ns, field_selector=f"metadata.name={name}")
            inf.add_handler(self._source_handler(kind))
            inf.start()
            self._sources[key] = inf
        return inf

    async def _sources_synced(self, pod: Obj) -> None:
        """Watch what the pod's volumes and image pulls read, and wait (a while) for the
        first list of each: a lookup before it would call a present object missing."""
        for key in watched_of(pod):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._source(key).wait_synced(), SOURCE_SYNC_WAIT)

    def _prune_sources(self) -> None:
        """Stop watching the objects no pod of this node has read for SOURCE_IDLE seconds."""
        # by the informer's index of what each pod reads: no walk through every pod (this
        # runs for every pod that goes)
        used = {key for key in self._sources if self.informer.by_index("source", key)}
        now = asyncio.get_running_loop().time()
        for key in list(self._unused):
            if key in used:
                del self._unused[key]
        for key in self._sources.keys() - used:
            if now - self._unused.setdefault(key, now) < SOURCE_IDLE:
                continue
            del self._unused[key]
            task = asyncio.create_task(self._sources.pop(key).stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _lookup(self, kind: str, ns: str, name: str) -> Obj | None:
        inf = self._sources.get(f"{kind}/{ns}/{name}")
        return inf.get(f"{ns}/{name}") if inf is not None else None

    async def stop(self) -> None:
        if self._status_watch is not None:
            asyncio.get_running_loop().remove_reader(self._status_watch.fileno())
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.informer.stop()
        await self.services.stop()
        for inf in list(self._sources.values()):
            await inf.stop()
        self._sources.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        await self.events.flush()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(RELIST)
            try:
                await self._relist()
            except Exception:
                log.exception("relisting the node's pods")

    async def _relist(self) -> None:
        """Queue the pods whose runtime status is not what their last sync saw, those the
        runtime no longer has and those the API no longer has; every RESYNC seconds, all."""
        before = dict(self._seen)
        # "none": a pod the runtime could not create (its image), kept there for its back-off;
        # no name: a pod being made (by a sync: its record is not written yet), never taken
        # for a runtime pod the API no longer has (an agent's crash mid-make is collected by
        # the runtime's gc when it starts again)
        statuses = [
            s for s in await self._call(self.runtime.list) if s.location != "none" and s.name
        ]
        by_key: dict[str, list[api.PodStatus]] = {}
        seen: dict[str, api.PodStatus] = {}
        for st in statuses:
            key = f"{st.namespace}/{st.name}"
            by_key.setdefault(key, []).append(st)
            seen[st.uid] = st
            # a sync that ran meanwhile may have read a newer status: then this one differs
            # from it and the pod is synced once more (never a change missed)
            if self._seen.get(st.uid) != st:
                self.queue.add(key)
        for uid in self._seen.keys() - seen.keys():
            if self._seen[uid] is not before.get(uid):  # made, and read by its sync, meanwhile
                st = seen[uid] = self._seen[uid]
                # a pod of the node from now on: queued when a later relist misses it
                by_key.setdefault(f"{st.namespace}/{st.name}", []).append(st)
            else:
                log.debug("runtime pod %s is gone", uid)
                self._sweep_due = True
        for uid in self._watched.keys() - seen.keys():  # collected without a sync of ours
            del self._watched[uid]
            if self._status_watch is not None:
                self._status_watch.discard(uid)
        for key in self._runtime.keys() - by_key.keys():
            self.queue.add(key)
        for key in by_key.keys() - set(self.informer.keys()) - self.static.keys():
            self.queue.add(key)  # a runtime pod the API (or the manifests) no longer has
        self._runtime, self._seen = by_key, seen
        now = asyncio.get_running_loop().time()
        if now - self._resynced >= RESYNC:
            self._resynced = now
            self._deleted = {u: t for u, t in self._deleted.items() if now - t < RESYNC}
            for key in {*self.informer.keys(), *self.static, *by_key}:
                self.queue.add(key)
            self._sweep_due = True
        if self._sweep_due:  # a pod went: its sources may be left (or no longer read)
            self._sweep_due = False
            self._prune_sources()
            await self._sweep_sources()

    async def _sweep_sources(self) -> None:
        """Drop the volume sources of pods neither the API nor the runtime has (a pod
        deleted for good before it was made: no sync saw its uid again)."""
        try:
            dirs = await self._call(os.listdir, self.sources)
        except FileNotFoundError:
            return
        known = set(self._seen) | {p["metadata"].get("uid") for p in self.informer.list()}
        known |= {p["metadata"]["uid"] for p in self.static.values()}
        for uid in dirs:
            if uid not in known:
                log.info("volume sources of gone pod %s dropped", uid)
                await self._drop_pod_sources(uid)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                delay = await self.sync(key)
                self.queue.forget(key)
                if delay is not None:
                    self.queue.add_after(key, delay)
            except asyncio.CancelledError:
                raise
            except ClientError as e:
                log.info("pod %s: %s; retrying", key, e)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("pod %s: sync failed; retrying", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    # ---------------------------------------------------------------- one pod

    async def sync(self, key: str) -> float | None:
        """Make the node match the API (or its manifest directory) for pod ``key``; a delay
        to look again after, or None."""
        pod = self.informer.get(key)
        static = self.static.get(key)
        if static is not None:
            await self._mirror(key, static, pod)
            # the status it has is its mirror's (what was last reported)
            pod = {**static, "status": (pod or {}).get("status") or {}}
        elif is_mirror(pod):
            assert pod is not None  # its static pod is gone (the file removed): so is it
            await self._delete_mirror(key, pod)
            pod = None
        uid = (pod or {}).get("metadata", {}).get("uid")
        for st in self._runtime.get(key, []):
            if st.uid != uid:  # deleted from the API, or replaced by a pod of the same name
                # (a static pod removed or edited stops with its grace period)
                why = "gone from the API" if uid is None else f"the API's pod is {uid}"
                await self._kill(st.uid, self._static_grace.pop(key, 0), f"{key}: {why}")
                await self._remove(st.uid)
        if pod is None:
            self._forget(key)
            self._sweep_due = True  # what a make of it wrote before it went
            self._evicted.pop(key, None)
            if key in self._pull_waiting:  # what the runtime keeps of a failed pull
                self._pull_waiting.discard(key)
                with contextlib.suppress(api.PodError):
                    await self._call(self.runtime.remove, key)
            return None
        st = await self._runtime_status(uid)
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            return await self._terminate(key, pod, st)
        asked = self._evicting.pop(key, None)
        if asked is not None:
            try:
                if asked[0] == uid:
                    await self._evict(key, pod, st, asked[1])
            finally:
                if not asked[2].done():
                    asked[2].set_result(None)
        if self._evicted.get(key) == uid:
            return None  # Failed for good; its runtime pod is gone
        if st is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return None  # it ran here and finished; its runtime pod was collected
            loop = asyncio.get_running_loop()
            until, image = self._backoff_until.get(key, (0.0, ""))
            if loop.time() < until:
                msg = f'Back-off pulling image "{image}"'
                if (
                    self._reported.get(key, {})
                    .get("containerStatuses", [{}])[0]
                    .get("state", {})
                    .get("waiting", {})
                    .get("reason")
                    != "ImagePullBackOff"
                ):
                    self.events.pod(pod, "BackOff", msg, warning=True)
                status = waiting_status(pod, self.host_ip(), "ImagePullBackOff", msg)
                await self._write_status(key, pod, status)
                return until - loop.time()
            if self._making >= MAKING:  # no worker waits: queued again when a make ends
                self._to_make[key] = None
                return None
            try:
                st = await self._make_one(key, pod)
            except ImagePullError as e:
                n = self._pull_failures.get(key, 0)
                self._pull_failures[key] = n + 1
                delay = min(IMAGE_BACKOFF * 2**n, IMAGE_BACKOFF_MAX)
                status = waiting_status(pod, self.host_ip(), e.reason, e.message)
                await self._write_status(key, pod, status)
                if e.reason == INVALID_IMAGE_NAME:  # no pull to back off from: said as it is
                    return delay
                self._backoff_until[key] = (loop.time() + delay, e.image)
                return 1.0  # then ImagePullBackOff until the back-off is over
            except (VolumeError, api.ManifestError, api.PodError) as e:
                n = self._pull_failures.get(key, 0)
                event, reason, delay = make_failure(e, n)
                message = failure_message(e)
                self.events.pod(pod, event, message, warning=True)
                await self._write_status(
                    key, pod, waiting_status(pod, self.host_ip(), reason, message)
                )
                if not isinstance(e, ClaimError):
                    self._pull_failures[key] = n + 1
                return delay
            if st is None:
                return 1.0
        elif st.location == "prepared":  # an agent died between create and start
            await self._call(self.runtime.start, st.uid)
            await self._watch(key, st.uid)
            st = await self._runtime_status(uid)
            if st is None:
                return 1.0
        elif st.location == "run" and st.uid not in self._watched:  # an earlier agent's
            if await self._watch(key, st.uid):
                st = await self._runtime_status(uid)  # what changed before the watch
                if st is None:
                    return 1.0
        self._pull_failures.pop(key, None)
        self._backoff_until.pop(key, None)
        if st.location == "run" and st.phase in ("Pending", "Running"):
            if await self._add_ephemeral(pod, st):
                st = await self._runtime_status(uid) or st
        if st.location == "run" and _has_api_volumes(pod):
            await self._sources_synced(pod)
            await self._refresh_volumes(pod, st.uid)
        self._container_events(pod, st)
        hold = self._first_status_hold(key, st)
        if hold is not None:
            return hold  # the status watch queues it sooner when a container starts
        failed = self._ephemeral_failed.get(st.uid)
        await self._write_status(key, pod, api_status(pod, st, self.host_ip(), failed=failed))
        if st.location == "run" and st.phase == "Pending" and st.uid not in self._watched:
            return STARTING_RECHECK  # its containers are being made: look again soon
        if st.location == "run":
            return self._token_due(st.uid)  # its tokens renewed in time
        return None

    async def _add_ephemeral(self, pod: Obj, st: api.PodStatus) -> bool:
        """Start the ephemeral containers of the pod's spec that the runtime has not got
        (``kubectl debug``): each with the services' variables and the pod's pull secrets, as
        the pod's own containers. One that cannot be made is a warning event and stays
        Waiting in the status; the next sync tries again. True when one was added."""
        have = {c.name for c in st.ephemeral_containers}
        wanted = [
            ec
            for ec in (pod.get("spec") or {}).get("ephemeralContainers") or []
            if ec.get("name") not in have
        ]
        if not wanted:
            return False
        env = await self._service_env(pod)
        keyring, _ = keyring_of(pod, self._lookup)
        read_only = read_only_claims(pod.get("spec") or {})  # (the runtime has their paths)
        failed = self._ephemeral_failed.setdefault(st.uid, {})
        added = False
        for ec in wanted:
            name = str(ec.get("name"))
            try:
                await self._call(
                    self.runtime.add_ephemeral_container,
                    st.uid,
                    with_read_only(with_service_env(ec, env), read_only),
                    keyring if keyring else None,
                )
            except (api.PodError, api.ManifestError) as e:
                if isinstance(e, api.ImagePullError):
                    reason, message = e.reason, e.message
                elif isinstance(e, api.ManifestError):
                    reason, message = "CreateContainerConfigError", str(e)
                else:
                    reason, message = "CreateContainerError", str(e)
                log.info("pod %s: ephemeral container %s: %s", meta_key(pod), name, message)
                if failed.get(name) != (reason, message):  # once per failure, not per sync
                    self.events.pod(pod, "Failed", f"Error: {message}", name, warning=True)
                failed[name] = (reason, message)
                continue
            failed.pop(name, None)
            added = True
            self.events.pod(pod, "Created", f"Created container {name}", name)
            self.events.pod(pod, "Started", f"Started container {name}", name)
        return added

    def _first_status_hold(self, key: str, st: api.PodStatus) -> float | None:
        """Seconds to wait before the first status of a pod this agent has just started, while
        all its containers are being created and the runtime's status watch reports their
        start (FIRST_STATUS_HOLD); None: write it now."""
        started = self._started.get(st.uid)
        if started is None:
            return None
        left = started + FIRST_STATUS_HOLD - asyncio.get_running_loop().time()
        if (
            left > 0
            and key not in self._reported
            and st.location == "run"
            and st.uid in self._watched
            and st.phase not in ("Succeeded", "Failed")
            and all(c.state == "Waiting" and not c.restart_count for c in st.all_containers)
        ):
            return left
        del self._started[st.uid]
        return None

    async def _refresh_volumes(self, pod: Obj, uid: str) -> None:
        """Bring the pod's API-fed volumes to what the API holds now."""
        had = self._digests.get(uid, {})
        base = self.sources / uid
        try:
            tokens = await self._pod_tokens(pod)
            now = await self._call(prepare_volumes, self._lookup, pod, base, False, tokens)
            changed = [v for v, d in now.digests.items() if had.get(v) != d]
            if not changed:
                return
            now = await self._call(prepare_volumes, self._lookup, pod, base, True, tokens)
            for volume in changed:
                if await self._call(self.runtime.refresh_volume, uid, volume, now.volumes[volume]):
                    log.info("pod %s: volume %s updated", meta_key(pod), volume)
        except (VolumeError, api.PodError) as e:
            log.info("pod %s: volumes not updated: %s", meta_key(pod), e)
            return
        self._digests[uid] = now.digests

    async def _pod_tokens(self, pod: Obj) -> Tokens:
        """The ServiceAccount tokens the pod's volumes hold, bound to the pod (the kubelet's
        token manager): cached per pod, audience and lifetime, requested again (TokenRequest)
        once 80% of the lifetime (or a day) has passed. A failed request keeps a cached token
        that is still valid; without one, VolumeError naming the volume."""
        meta = pod["metadata"]
        ns, uid = meta.get("namespace") or "default", meta["uid"]
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        out: dict[tuple[str, int], str] = {}
        for want in token_sources(pod):
            if (want.audience, want.seconds) in out:
                continue
            key = (uid, want.audience, want.seconds)
            cached = self._tokens.get(key)
            now = time.time()
            if cached is not None and now < cached[1]:
                out[(want.audience, want.seconds)] = cached[0]
                continue
            body = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": [want.audience] if want.audience else [],
                    "expirationSeconds": want.seconds,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": meta["name"],
                        "uid": uid,
                    },
                },
            }
            try:
                got = await self.client.create(SERVICEACCOUNTS, ns, body, sub="token", name=account)
                status = got.get("status") or {}
                token = status.get("token")
                expiry = _epoch(status.get("expirationTimestamp"))
                if not isinstance(token, str) or not token or expiry is None:
                    raise ValueError(f"the answer has no token or expiry: {status!r}")
            except (ClientError, ValueError) as e:
                if cached is not None and now < cached[2]:
                    log.info("pod %s: token not renewed (%s); the old one serves", meta_key(pod), e)
                    out[(want.audience, want.seconds)] = cached[0]
                    continue
                raise VolumeError(
                    want.volume, f'token of ServiceAccount "{ns}/{account}": {e}'
                ) from None
            refresh = now + min((expiry - now) * TOKEN_REFRESH, TOKEN_MAX_AGE)
            self._tokens[key] = (token, refresh, expiry)
            out[(want.audience, want.seconds)] = token
        return out

    def _token_due(self, uid: str) -> float | None:
        """Seconds until one of the pod's tokens is to be renewed (None: it has none)."""
        due = [t[1] for k, t in self._tokens.items() if k[0] == uid]
        return max(min(due) - time.time(), 1.0) if due else None

    async def _runtime_status(self, uid: str | None) -> api.PodStatus | None:
        """The pod's runtime status, now; what the relist compares with from now on (the
        sync reading it acts on it: the relist need not queue that change again)."""
        if not uid:
            return None
        try:
            st = await self._call(self.runtime.status, uid)
        except api.PodError:
            return None
        if st.location == "none":
            return None  # never created (see _relist)
        self._seen[st.uid] = st
        return st

    async def _make_one(self, key: str, pod: Obj) -> api.PodStatus | None:
        """``_make``, counted among the MAKING; when it ends, the pod that waited longest for
        it is queued."""
        self._making += 1
        self._to_make.pop(key, None)
        try:
            return await self._make(key, pod)
        finally:
            self._making -= 1
            if self._to_make:
                waited = next(iter(self._to_make))
                del self._to_make[waited]
                self.queue.add(waited)

    async def _make(self, key: str, pod: Obj) -> api.PodStatus | None:
        """Resolve images, write volume sources, create and start the pod."""
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        # its claims first: a pod whose claim is missing or not bound waits (FailedMount)
        claims = await claim_volumes(self.client, pod, self.local_path_root)
        # The ServiceAccount tokens are asked for meanwhile (a round trip to the API server).
        asked = asyncio.ensure_future(self._pod_tokens(pod))
        try:
            pulling, keyring = await self._images_and_secrets(pod)
        except BaseException:
            asked.cancel()
            await asyncio.gather(asked, return_exceptions=True)
            raise
        tokens = await asked
        volumes = await self._call(
            prepare_volumes, self._lookup, pod, self.sources / meta["uid"], True, tokens
        )
        self._digests[meta["uid"]] = volumes.digests
        # decoded once: the Kubernetes model is what pod.json keeps, the runtime's pod is
        # what create and start act on (neither decodes the manifest again)
        handler = await self._runtime_handler(pod)
        env = await self._service_env(pod)
        kube = api.decode_pod(node_manifest(pod, volumes, env, claims, handler))
        rpod = api.from_kube(kube)
        # A failed create leaves nothing, a failed start tears the pod down (runtime.pod).
        started = time.monotonic()
        try:
            uid = await self._call(
                self.runtime.create, rpod, kube, None, keyring if keyring else None
            )
        except api.ImagePullError as e:
            self._pull_waiting.add(key)
            if e.reason != "ImagePullBackOff":
                self.events.pod(pod, "Failed", e.message, e.container, warning=True)
                self.events.pod(pod, "Failed", f"Error: {e.reason}", e.container, warning=True)
            raise ImagePullError(e.reason, e.image, e.message) from e
        took = time.monotonic() - started
        for name, image in pulling:
            self.events.pod(
                pod, "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s', name
            )
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            self.events.pod(pod, "Created", f"Created container {c['name']}", c["name"])
        await self._call(self.runtime.start, uid, rpod)
        self._started[uid] = asyncio.get_running_loop().time()
        log.info("pod %s (%s) started", key, uid)
        await self._watch(key, uid)
        return await self._runtime_status(uid)

    async def _runtime_handler(self, pod: Obj) -> str | None:
        """The handler of the pod's RuntimeClass (None: it names none)."""
        name = (pod.get("spec") or {}).get("runtimeClassName")
        if not name:
            return None
        try:
            rc = await self.client.get(RUNTIMECLASSES, None, name)
        except NotFound:
            raise NoRuntimeClass(pod["metadata"].get("name", ""), name) from None
        return str(rc.get("handler") or "")

    async def _images_and_secrets(self, pod: Obj) -> tuple[list[tuple[str, str]], api.Keyring]:
        """The images the runtime is to pull (container, image), the others being on the node
        (or ImagePullError by the pull policy); the pod's sources read; its pull secrets'
        keyring."""
        spec = pod.get("spec") or {}
        pulling: list[tuple[str, str]] = []  # (container, image) the runtime will pull
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            image, policy = c.get("image", ""), c.get("imagePullPolicy") or "IfNotPresent"
            try:
                # A pod of the API names images, never files of this host: a tarball path
                # (corral pod run's local images) is refused as an invalid name.
                present = await self._call(self.runtime.image_id, image)
            except api.InvalidImageReference:
                msg = (
                    f'Failed to apply default image tag "{image}": couldn\'t parse image name'
                    f' "{image}": invalid reference format'
                )
                self.events.pod(pod, "InspectFailed", msg, c.get("name"), warning=True)
                raise ImagePullError(INVALID_IMAGE_NAME, image, msg) from None
            if present is None and policy == "Never":
                msg = f'Container image "{image}" is not present with pull policy of Never'
                self.events.pod(pod, "ErrImageNeverPull", msg, c.get("name"), warning=True)
                raise ImagePullError("ErrImageNeverPull", image, msg)
            if present is not None and policy != "Always":
                self.events.pod(
                    pod,
                    "Pulled",
                    f'Container image "{image}" already present on machine',
                    c.get("name"),
                )
                continue
            # The runtime pulls it (runtime.pod.imagepull: registries.conf, auth, back-off).
            self.events.pod(pod, "Pulling", f'Pulling image "{image}"', c.get("name"))
            pulling.append((c.get("name", ""), image))
        await self._sources_synced(pod)
        # The pod's pull secrets, in memory for this create only; one that cannot be read is
        # left out (the pull goes on without it), as the kubelet does.
        keyring, failed = keyring_of(pod, self._lookup)
        if pulling and failed:
            self.events.pod(
                pod,
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({'; '.join(failed)});"
                " attempting to pull the image may not succeed.",
                warning=True,
            )
        return pulling, keyring

    async def _service_env(self, pod: Obj) -> dict[str, str]:
        """The services' variables for ``pod``, once the Services were listed (else the
        pod could miss KUBERNETES_SERVICE_HOST): a config error, retried, until then. A
        static pod runs without the API: it gets what is known (as the kubelet)."""
        annotations = pod["metadata"].get("annotations") or {}
        static = annotations.get(CONFIG_SOURCE, "api") != "api"
        try:
            if not static:
                await asyncio.wait_for(self.services.wait_synced(), SOURCE_SYNC_WAIT)
        except TimeoutError:
            raise api.ManifestError(
                "spec.containers.env", "services have not yet been read at least once"
            ) from None
        spec = pod.get("spec") or {}
        links = spec.get("enableServiceLinks")
        return service_env(
            self.services.list(), pod["metadata"].get("namespace", ""), links is not False
        )

    def _container_events(self, pod: Obj, st: api.PodStatus) -> None:
        """Started, BackOff and Unhealthy events from what the runtime reports, once each."""
        for cs in st.all_containers:
            k = (st.uid, cs.name)
            mark = (cs.restart_count, cs.state + cs.reason)
            old = self._container_runs.get(k)
            if old == mark:
                continue
            self._container_runs[k] = mark
            if cs.state == "Running" and (
                old is None or old[0] != cs.restart_count or not old[1].startswith("Running")
            ):
                if cs.restart_count and old is not None:
                    self.events.pod(pod, "Created", f"Created container {cs.name}", cs.name)
                self.events.pod(pod, "Started", f"Started container {cs.name}", cs.name)
            if cs.last_message.startswith(("Liveness probe failed", "Startup probe failed")) and (
                old is None or old[0] != cs.restart_count
            ):
                self.events.pod(pod, "Unhealthy", cs.last_message, cs.name, warning=True)
                self.events.pod(
                    pod,
                    "Killing",
                    f"Container {cs.name} failed liveness probe, will be restarted",
                    cs.name,
                )
            if cs.state == "Waiting" and cs.reason == "CrashLoopBackOff":
                self.events.pod(
                    pod,
                    "BackOff",
                    f"Back-off restarting failed container {cs.name} in pod"
                    f" {st.name}_{st.namespace}({st.uid})",
                    cs.name,
                    warning=True,
                )

    async def _terminate(self, key: str, pod: Obj, st: api.PodStatus | None) -> float | None:
        """Graceful deletion: stop with the pod's grace period, remove it from the node, then
        delete it for good (gracePeriodSeconds=0, uid precondition), as the kubelet does."""
        meta = pod["metadata"]
        if meta["uid"] in self._deleted:
            return None  # done: its deletion is on its way to the watch
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if st is not None:
            if st.location in ("run", "prepared", "prepare"):
                running = [cs.name for cs in st.containers if cs.state == "Running"]
                for name in running:
                    self.events.pod(pod, "Killing", f"Stopping container {name}", name)
                spent = await self._pre_stop(pod, st.uid, running, int(grace))
                # what the hooks left of the grace period; at least 2 s more after a hook
                # that used it all (the kubelet's one-time extension)
                left = max(int(grace) - spent, 2) if spent else int(grace)
                await self._kill(st.uid, left, f"{key}: deleted")
                done = await self._runtime_status(st.uid)
                if done is not None:
                    await self._write_status(key, pod, api_status(pod, done, self.host_ip()))
            await self._remove(st.uid)
        else:  # never made (its image, a volume): what was written for it goes
            await self._drop_pod_sources(meta["uid"])
        await self._delete_for_good(f"pod {key}", pod)
        return None

    async def _evict(self, key: str, pod: Obj, st: api.PodStatus | None, message: str) -> None:
        """Kill the pod at once (a hard eviction has no grace period), report it Failed with
        reason Evicted, record the event, and remove it from the node (its memory with it)."""
        self._evicted[key] = pod["metadata"]["uid"]
        done = None
        if st is not None:
            for cs in st.containers:
                if cs.state == "Running":
                    self.events.pod(pod, "Killing", f"Stopping container {cs.name}", cs.name)
            await self._kill(st.uid, 0, f"{key}: evicted")
            done = await self._runtime_status(st.uid)
        status = (
            api_status(pod, done, self.host_ip())
            if done is not None
            else dict(pod.get("status") or {})
        )
        stamp = now()
        conditions = [
            c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": message,
                "lastTransitionTime": stamp,
                "lastProbeTime": None,
            }
        )
        status.update(phase="Failed", reason="Evicted", message=message, conditions=conditions)
        await self._write_status(key, pod, status)
        self.events.pod(pod, "Evicted", message, warning=True)
        if st is not None:
            await self._remove(st.uid)
        log.info("pod %s evicted", key)

    async def _pre_stop(self, pod: Obj, uid: str, running: list[str], grace: int) -> int:
        """Run the preStop hooks of the ``running`` containers, together, before any signal;
        each is bounded by the grace period. Returns the whole seconds they took (0: none)."""
        hooks = {
            c["name"]: h
            for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") in running and (h := _kubelet_hook(c)) is not None
        }
        if not hooks or grace <= 0:
            return 0
        start = time.monotonic()

        async def run(name: str, handler: Obj) -> None:
            if "sleep" in handler:
                await asyncio.sleep(min(float(handler["sleep"]["seconds"]), grace))
                return
            cmd = [str(a) for a in handler["exec"]["command"]]
            try:
                res = await asyncio.wait_for(
                    self._call(self._exec_quiet, uid, cmd, name), timeout=grace
                )
            except TimeoutError:
                message = f"did not finish in the grace period ({grace} s)"
            except api.PodError as e:
                message = str(e)
            else:
                if res.returncode == 0:
                    return
                message = f"exit code {res.returncode}: {res.stderr.decode(errors='replace')}"
            self.events.pod(
                pod,
                "FailedPreStopHook",
                f"PreStopHook failed: {' '.join(cmd)}: {message.strip()[:500]}",
                name,
                warning=True,
            )

        await asyncio.gather(*(run(n, h) for n, h in hooks.items()))
        return max(1, round(time.monotonic() - start))

    def _exec_quiet(
        self, uid: str, cmd: list[str], container: str
    ) -> subprocess.CompletedProcess[bytes]:
        return self.runtime.exec(
            uid, cmd, container, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    async def _kill(self, uid: str, grace: int, why: str) -> None:
        log.info("stopping runtime pod %s (grace %d s): %s", uid, grace, why)
        try:
            await self._call(self.runtime.stop, uid, grace)
        except api.PodError as e:
            log.info("stop %s: %s", uid, e)

    async def _remove(self, uid: str) -> None:
        try:
            await self._call(self.runtime.remove, uid, True)
        except api.PodError as e:
            log.info("remove %s: %s", uid, e)
        await self._drop_pod_sources(uid)
        self._seen.pop(uid, None)
        self._ephemeral_failed.pop(uid, None)
        # nor is it one of its name's runtime pods any more (until a relist finds it again,
        # if the remove failed): the sync after the API's deletion asks nothing of it
        for key, sts in list(self._runtime.items()):
            if any(st.uid == uid for st in sts):
                rest = [st for st in sts if st.uid != uid]
                if rest:
                    self._runtime[key] = rest
                else:
                    del self._runtime[key]
        self._started.pop(uid, None)
        if self._watched.pop(uid, None) is not None and self._status_watch is not None:
            self._status_watch.discard(uid)
        for k in [k for k in self._container_runs if k[0] == uid]:
            del self._container_runs[k]

    async def _drop_pod_sources(self, uid: str) -> None:
        """The pod's volume sources (its secret tmpfs unmounted), digests and tokens."""
        await self._call(drop_sources, self.sources / uid)
        self._digests.pop(uid, None)
        for t in [t for t in self._tokens if t[0] == uid]:
            del self._tokens[t]

    def _forget(self, key: str) -> None:
        self._prune_sources()
        self._reported.pop(key, None)
        self._written_over.pop(key, None)
        self._to_make.pop(key, None)
        self._pull_failures.pop(key, None)
        self._backoff_until.pop(key, None)

    async def _write_status(self, key: str, pod: Obj, status: Obj) -> None:
        """Patch the pod's status to ``status``, unless it is what was last written and the
        API has it: its phase says so, or the pod seen is still the one that write was made
        over (the watch has not brought the write back yet: writing it again would carry
        nothing new)."""
        meta = pod["metadata"]
        if self._reported.get(key) == status and (
            (pod.get("status") or {}).get("phase") == status["phase"]
            or (
                meta.get("resourceVersion") is not None
                and meta.get("resourceVersion") == self._written_over.get(key)
            )
        ):
            return
        try:
            await self.client.patch(
                PODS,
                meta["namespace"],
                meta["name"],
                {"status": status},
                sub="status",
            )
        except NotFound:
            return
        self._reported[key] = status
        self._written_over[key] = meta.get("resourceVersion")
