"""The scheduler loop, as kube-scheduler runs it: informers of nodes and pods feed the cache
(assigned pods) and the scheduling queue (pending pods of our schedulerName); one pod at a time
is placed by the pure algorithm, assumed in the cache, then bound through ``pods/binding``
concurrently (one API call per pod). A failed pod gets the PodScheduled=False condition and a
FailedScheduling event, may preempt lower-priority pods, and waits in the queue for a cluster
event. Several schedulers elect a leader through the ``kube-scheduler`` Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from orchestrator.client import (
    ApiClient,
    ClientError,
    Conflict,
    Informer,
    LeaderElector,
    NotFound,
    strip_managed_fields,
)
from orchestrator.client.events import EventRecorder
from orchestrator.client.rest import (
    NAMESPACES,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    STORAGECLASSES,
    Obj,
)
from orchestrator.client.volumes import SELECTED_NODE, claim_names, find_volume

from .cache import Cache
from .plugins import FitError, PodInfo, pod_info, preempt
from .queue import SchedulingQueue

__all__ = ["DEFAULT_SCHEDULER", "EventRecorder", "Scheduler", "SchedulerConfig"]

log = logging.getLogger("corral.scheduler")

DEFAULT_SCHEDULER = "default-scheduler"
LEASE_NAME = "kube-scheduler"


@dataclass(frozen=True)
class SchedulerConfig:
    scheduler_name: str = DEFAULT_SCHEDULER
    percentage_of_nodes_to_score: int = 0  # 0: kube's adaptive percentage
    parallel_binds: int = 64
    leader_elect: bool = True
    identity: str = field(
        default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _responsible(pod: Obj, name: str) -> bool:
    return ((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER) == name


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    """Run with ``await Scheduler(client, cfg).run()`` (until cancelled)."""

    def __init__(self, client: ApiClient, config: SchedulerConfig | None = None) -> None:
        self.client = client
        self.config = config or SchedulerConfig()
        self.cache = Cache(self.config.percentage_of_nodes_to_score)
        self.queue = SchedulingQueue()
        self.nodes, self.pods, self.namespaces = self._informers()
        self.claims, self.volumes, self.classes = self._volume_informers()
        self.recorder: EventRecorder | None = None
        self._binds: set[asyncio.Task[None]] = set()
        self._bind_slots = asyncio.Semaphore(self.config.parallel_binds)
        self.scheduled = 0  # binds that succeeded
        self.conflicts = 0  # binds refused: the pod was bound by someone else
        self.failed = 0  # attempts where no node fit

    def _informers(self) -> tuple[Informer, Informer, Informer]:
        """Nodes, pods and namespaces, cached without their managedFields (client-go's
        TransformStripManagedFields): the scheduler never reads them, and they are over half
        of the dictionaries of a pod, each one walked by the cyclic collector while cached."""
        return (
            Informer(self.client, NODES, transform=strip_managed_fields),
            Informer(self.client, PODS, transform=strip_managed_fields),
            Informer(self.client, NAMESPACES, transform=strip_managed_fields),
        )

    def _volume_informers(self) -> tuple[Informer, Informer, Informer]:
        """Claims, volumes and storage classes (the VolumeBinding plugin's listers)."""
        return (
            Informer(self.client, PERSISTENTVOLUMECLAIMS, transform=strip_managed_fields),
            Informer(self.client, PERSISTENTVOLUMES, transform=strip_managed_fields),
            Informer(self.client, STORAGECLASSES, transform=strip_managed_fields),
        )

    # ------------------------------------------------------------ informer handlers

    def _on_volume(self, event: str, old: Obj | None, new: Obj | None) -> None:
        """A claim or volume changed (made, bound): pods waiting for it may go on."""
        if (
            event != "MODIFIED"
            or (old or {}).get("spec") != (new or {}).get("spec")
            or ((old or {}).get("status") != (new or {}).get("status"))
        ):
            self.queue.move_all()

    def _on_node(self, event: str, old: Obj | None, new: Obj | None) -> None:
        if event == "DELETED":
            if old is not None:
                self.cache.remove_node(str(old["metadata"]["name"]))
            return
        assert new is not None
        self.cache.set_node(new)
        if event == "ADDED" or _node_changed(old, new):
            self.queue.move_all()

    def _on_namespace(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        name = str((obj.get("metadata") or {}).get("name"))
        if event == "DELETED":
            self.cache.namespace_labels.pop(name, None)
            return
        labels = dict((obj.get("metadata") or {}).get("labels") or {})
        if self.cache.namespace_labels.get(name) != labels:
            self.cache.namespace_labels[name] = labels
            if event == "MODIFIED":
                self.queue.move_all()  # a namespaceSelector may match now

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        node = (obj.get("spec") or {}).get("nodeName")
        if event == "DELETED" or (node and _terminal(obj)):
            self.queue.delete(key)
            self.cache.unnominate(key)
            if self.cache.remove_pod(key) is not None or node:
                self.queue.move_all()  # a pod went away: room for others
            return
        if node:
            self.cache.unnominate(key)
            if key in self.queue:
                self.queue.delete(key)
            if event == "MODIFIED" and self.cache.confirm(key, str(meta.get("uid")), str(node)):
                return  # our own binding: the assumed pod is the pod
            self.cache.add_pod(pod_info(obj), str(node))
            return
        if meta.get("deletionTimestamp") or not _responsible(obj, self.config.scheduler_name):
            self.queue.delete(key)
            self.cache.unnominate(key)
            return
        if self.cache.is_assumed(key):
            return  # being bound by us: the binding's own event comes next
        nominated = (obj.get("status") or {}).get("nominatedNodeName")
        if nominated:
            self.cache.nominate(pod_info(obj), str(nominated))
        if event == "MODIFIED" and old is not None and not _spec_changed(old, obj):
            return  # our own status updates
        self.queue.add(key, int((obj.get("spec") or {}).get("priority") or 0))

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        """Lead (when elected, or at once without election) until cancelled."""
        if not self.config.leader_elect:
            await self._lead()
            return
        elector = LeaderElector(self.client, LEASE_NAME, self.config.identity)
        try:
            await elector.run(self._lead)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(elector.release())

    async def _lead(self) -> None:
        self.cache = Cache(self.config.percentage_of_nodes_to_score)
        self.queue = SchedulingQueue()
        self.nodes, self.pods, self.namespaces = self._informers()
        self.claims, self.volumes, self.classes = self._volume_informers()
        self.recorder = EventRecorder(self.client, DEFAULT_SCHEDULER)
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)
        self.namespaces.add_handler(self._on_namespace)
        self.claims.add_handler(self._on_volume)
        self.volumes.add_handler(self._on_volume)
        volume_informers = (self.claims, self.volumes, self.classes)
        self.namespaces.start()
        self.nodes.start()
        for inf in volume_informers:
            inf.start()
        await self.namespaces.wait_synced()
        await self.nodes.wait_synced()
        for inf in volume_informers:
            await inf.wait_synced()
        self.pods.start()
        try:
            await self.pods.wait_synced()
            log.info(
                "scheduler %s: %d nodes, %d pods",
                self.config.scheduler_name,
                len(self.nodes),
                len(self.pods),
            )
            while True:
                key = await self.queue.pop()
                self._schedule_one(key)
                await asyncio.sleep(0)  # let binds, informers and events run
        finally:
            for t in list(self._binds):
                t.cancel()
            await self.pods.stop()
            await self.nodes.stop()
            await self.namespaces.stop()
            for inf in volume_informers:
                await inf.stop()
            await self.recorder.close()

    def _schedule_one(self, key: str) -> None:
        pod = self.pods.get(key)
        if (
            pod is None
            or (pod.get("spec") or {}).get("nodeName")
            or (pod.get("metadata") or {}).get("deletionTimestamp")
            or not _responsible(pod, self.config.scheduler_name)
        ):
            self.queue.done(key)
            return
        p = pod_info(pod)
        select: list[Obj] = []
        waiting = False
        if claim_names(pod):
            terms, select, waiting, problem = self._volume_binding(pod)
            if problem:
                self._unresolvable(p, problem)
                return
            p.volume_terms = terms
            p.unbound_terms = self._static_candidates(select)
        try:
            placement = self.cache.schedule(p)
        except FitError as err:
            self._failed(p, err)
            return
        except Exception:  # a bug must not stop scheduling: this pod backs off, others go on
            log.exception("scheduling %s", key)
            self.queue.retry(key)
            return
        if select or waiting:
            # kube's VolumeBinding PreBind: the claims that wait for their first consumer get
            # the node chosen (the provisioner makes their volumes there); the pod is bound
            # once they are (their informer's events bring it back)
            self.queue.unschedulable_pod(key)
            if select:
                task = asyncio.create_task(self._select_node(select, placement.node))
                self._binds.add(task)
                task.add_done_callback(self._binds.discard)
            return
        self.cache.assume(p, placement.node)
        task = asyncio.create_task(self._bind(p, placement.node))
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)

    def _volume_binding(self, pod: Obj) -> tuple[tuple[tuple[Obj, ...], ...], list[Obj], bool, str]:
        """The VolumeBinding plugin over the pod's claims: the node terms of the volumes they
        are bound to (or of the node selected for them), the claims that wait for a node to
        be selected, whether any is still being bound, and why the pod cannot be placed at
        all ("" when it can)."""
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        terms: list[tuple[Obj, ...]] = []
        select: list[Obj] = []
        waiting = False
        for name in claim_names(pod):
            claim = self.claims.get(f"{ns}/{name}")
            if claim is None:
                return (), [], False, f'persistentvolumeclaim "{name}" not found'
            meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
            if meta.get("deletionTimestamp"):
                return (), [], False, f'persistentvolumeclaim "{name}" is being deleted'
            volume = spec.get("volumeName")
            if volume and (claim.get("status") or {}).get("phase") == "Bound":
                pv = self.volumes.get(volume)
                if pv is None:
                    return (), [], False, "pvc(s) bound to non-existent pv(s)"
                required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
                if required:
                    terms.append(tuple(required.get("nodeSelectorTerms") or ()))
                continue
            if volume:  # the binder is at it
                waiting = True
                continue
            cls = self.classes.get(spec.get("storageClassName") or "")
            if cls is None or cls.get("volumeBindingMode") != "WaitForFirstConsumer":
                return (), [], False, "pod has unbound immediate PersistentVolumeClaims"
            selected = (meta.get("annotations") or {}).get(SELECTED_NODE)
            if selected:
                field = {"key": "metadata.name", "operator": "In", "values": [selected]}
                terms.append(({"matchFields": [field]},))
                waiting = True
            else:
                select.append(claim)
        return tuple(terms), select, waiting, ""

    def _static_candidates(self, claims: list[Obj]) -> tuple[tuple[Obj, ...], ...]:
        """For each claim (waiting for a node) whose class has no provisioner: the node terms
        of the volumes it could be bound to; a claim with a candidate usable anywhere (or a
        provisioner) adds no constraint, one with no candidate a constraint no node meets."""
        out: list[tuple[Obj, ...]] = []
        for claim in claims:
            name = (claim.get("spec") or {}).get("storageClassName") or ""
            cls = self.classes.get(name) or {}
            if cls.get("provisioner") not in (None, "", "kubernetes.io/no-provisioner"):
                continue
            options: list[Obj] = []
            anywhere = False
            for pv in self.volumes.list():
                if find_volume(claim, [pv]) is not pv:
                    continue
                required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
                if not required:
                    anywhere = True
                    break
                options.extend(required.get("nodeSelectorTerms") or ())
            if not anywhere:
                out.append(tuple(options))
        return tuple(out)

    async def _select_node(self, claims: list[Obj], node: str) -> None:
        for claim in claims:
            meta = claim.get("metadata") or {}
            patch = {"metadata": {"annotations": {SELECTED_NODE: node}}}
            try:
                await self.client.patch(
                    PERSISTENTVOLUMECLAIMS, meta.get("namespace"), meta["name"], patch
                )
            except ClientError as e:
                log.info("select node %s for claim %s: %s", node, meta.get("name"), e)

    def _unresolvable(self, p: PodInfo, problem: str) -> None:
        """A pod the VolumeBinding PreFilter turns away whatever the node (no preemption can
        help): the message kube-scheduler gives."""
        self.failed += 1
        n = len(self.cache.nodes)
        message = (
            f"0/{n} nodes are available: {problem}. preemption: 0/{n} nodes are available:"
            f" {n} Preemption is not helpful for scheduling."
        )
        self.queue.unschedulable_pod(p.key)
        task = asyncio.create_task(self._report_failure(p, message, p.nominated))
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)

    async def _bind(self, p: PodInfo, node: str) -> None:
        async with self._bind_slots:
            try:
                await self.client.bind(p.namespace, p.name, node)
            except Conflict as e:
                # Bound by someone else (another scheduler) or being deleted: the informer
                # will say so and take the pod out of the queue; until then it backs off.
                log.info("bind %s to %s: %s", p.key, node, e.message)
                self.conflicts += 1
                self.cache.forget(p.key)
                self.queue.retry(p.key)
                return
            except NotFound:
                self.cache.forget(p.key)
                self.queue.done(p.key)
                return
            except ClientError as e:
                log.warning("bind %s to %s: %s", p.key, node, e)
                self.cache.forget(p.key)
                self.queue.retry(p.key)
                return
        self.scheduled += 1
        self.queue.done(p.key)
        if self.recorder is not None:
            self.recorder.event(
                p.obj, "Normal", "Scheduled", f"Successfully assigned {p.key} to {node}"
            )

    def _failed(self, p: PodInfo, err: FitError) -> None:
        self.failed += 1
        cand = None
        if err.num_nodes:
            cand = preempt(
                p,
                err,
                self.cache.nodes,
                self.cache.anti_affinity_pods > 0,
                self.cache.namespace_labels,
            )
        message = str(err)
        nominated = p.nominated
        if cand is not None:
            nominated = cand.node
            self.cache.nominate(p, cand.node)
        self.queue.unschedulable_pod(p.key)
        task = asyncio.create_task(self._report_failure(p, message, nominated))
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)
        if cand is not None:
            for v in cand.victims:
                t = asyncio.create_task(self._evict(v, p, cand.node))
                self._binds.add(t)
                t.add_done_callback(self._binds.discard)

    async def _report_failure(self, p: PodInfo, message: str, nominated: str) -> None:
        if self.recorder is not None:
            self.recorder.event(p.obj, "Warning", "FailedScheduling", message)
        status = p.obj.get("status") or {}
        cond = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
        )
        same = (
            cond is not None
            and cond.get("status") == "False"
            and cond.get("message") == message
            and (status.get("nominatedNodeName") or "") == nominated
        )
        if same:
            return
        patch: Obj = {
            "status": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": None,
                        "lastTransitionTime": _now(),
                    }
                ]
            }
        }
        if nominated:
            patch["status"]["nominatedNodeName"] = nominated
        try:
            await self.client.patch(
                PODS, p.namespace, p.name, patch, kind="strategic", sub="status"
            )
        except ClientError as e:
            log.info("status of %s: %s", p.key, e)

    async def _evict(self, victim: PodInfo, by: PodInfo, node: str) -> None:
        """Preemption: the victim is marked (the DisruptionTarget condition, as kube-scheduler
        sets it) and deleted gracefully (its own grace period)."""
        if self.recorder is not None:
            self.recorder.event(
                victim.obj, "Normal", "Preempted", f"Preempted by pod {by.uid} on node {node}"
            )
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": f"{self.config.scheduler_name}: preempting to accommodate a higher"
            " priority pod",
            "lastTransitionTime": _now(),
        }
        with contextlib.suppress(ClientError):
            await self.client.patch(
                PODS,
                victim.namespace,
                victim.name,
                {"status": {"conditions": [condition]}},
                kind="strategic",
                sub="status",
            )
        try:
            await self.client.delete(
                PODS, victim.namespace, victim.name, preconditions={"uid": victim.uid}
            )
        except (NotFound, Conflict):
            pass
        except ClientError as e:
            log.warning("preempt %s for %s: %s", victim.key, by.key, e)

    async def wait_idle(self) -> None:
        """Until every bind and report started so far has finished (tests, benchmarks)."""
        while self._binds:
            await asyncio.gather(*list(self._binds), return_exceptions=True)


def _node_changed(old: Obj | None, new: Obj) -> bool:
    """A change that may let pods fit: not the heartbeat-only status updates."""
    if old is None:
        return True
    o_meta, n_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if o_meta.get("labels") != n_meta.get("labels"):
        return True
    if old.get("spec") != new.get("spec"):
        return True
    o_st, n_st = old.get("status") or {}, new.get("status") or {}
    if o_st.get("allocatable") != n_st.get("allocatable"):
        return True

    def ready(st: Obj) -> object:
        return [c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"]

    return ready(o_st) != ready(n_st)


def _spec_changed(old: Obj, new: Obj) -> bool:
    o_meta, n_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old.get("spec") != new.get("spec") or o_meta.get("labels") != n_meta.get("labels")
