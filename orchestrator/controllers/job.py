"""The Job controller (kube's job controller and its ttl-after-finished controller): pods of
the template until ``completions`` succeed (``parallelism`` at a time; Indexed mode gives each
pod a completion index), failure once ``backoffLimit`` pod failures are counted or
``activeDeadlineSeconds`` has passed, suspension, and deletion of a finished job
``ttlSecondsAfterFinished`` later.

Counts come from the job's pods (failed pods are kept, as Kubernetes keeps them), not from
pod finalizers."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from orchestrator.client import ClientError, NotFound, Obj, parse_time, split_key
from orchestrator.client.rest import JOBS, PODS

from .base import Client, Controller, InformerFactory
from .refs import Expectations, claim, observe_owned_pod, owner_key
from .replicaset import pod_from_template, rank_for_deletion
from .util import deep_copy, format_time, get_condition, is_pod_ready, meta, now

__all__ = ["JobController", "format_indexes"]

log = logging.getLogger("corral.controllers.job")

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def format_indexes(indexes: set[int]) -> str:
    """``{0, 1, 2, 4}`` as ``"0-2,4"`` (status.completedIndexes)."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _index(pod: Obj) -> int | None:
    v = (meta(pod).get("annotations") or {}).get(INDEX_ANNOTATION)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _finished(job: Obj) -> Obj | None:
    for typ in ("Complete", "Failed"):
        c = get_condition(job.get("status"), typ)
        if c is not None and c.get("status") == "True":
            return c
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


class JobController(Controller):
    name = "job"
    component = "job-controller"
    workers = 3
    failure_backoff = 10.0  # seconds (kube's DefaultJobPodFailureBackOff)
    max_failure_backoff = 360.0

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.expectations = Expectations()
        self.jobs = factory.informer(JOBS)
        self.pods = factory.informer(PODS)
        self.jobs.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._on_pod)

    def _owner_key(self, pod: Obj) -> str | None:
        return owner_key(pod, "Job", self.jobs)

    def _on_pod(self, event: str, old: Obj | None, new: Obj | None) -> None:
        pod = new or old
        assert pod is not None
        key = self._owner_key(pod)
        if key is None:
            return
        observe_owned_pod(self.expectations, key, event, new, pod)
        self.queue.add(key)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        cached = self.jobs.get(key)
        if cached is None:
            self.expectations.delete(key)
            return None
        job = deep_copy(cached)
        spec = job.get("spec") or {}
        at = now()
        done = _finished(job)
        if done is not None:
            return await self._ttl(job, done, at)

        async def recheck() -> Obj | None:
            try:
                return await self.client.get(JOBS, ns, name)
            except NotFound:
                return None

        candidates = self.pods.by_index("namespace", ns or "")
        pods = await claim(
            self.client, job, "batch/v1", "Job", spec.get("selector"), candidates, PODS, recheck
        )
        active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")]
        active = [p for p in active if not meta(p).get("deletionTimestamp")]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        failed = sum(1 for p in pods if _phase(p) == "Failed")
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            failed += sum(
                c.get("restartCount") or 0
                for p in pods
                for c in (p.get("status") or {}).get("containerStatuses") or []
            )
        indexed = spec.get("completionMode") == "Indexed"
        status = deep_copy(job.get("status") or {})
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = format_time(at)
        completions = spec.get("completions")
        done_indexes = {i for p in succeeded if (i := _index(p)) is not None}
        if indexed and completions is not None:
            done_indexes = {i for i in done_indexes if 0 <= i < int(completions)}

        failure: tuple[str, str] | None = None
        if failed > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        requeue: float | None = None
        if failure is None and deadline is not None and start is not None and not suspended:
            left = (start + timedelta(seconds=int(deadline)) - at).total_seconds()
            if left <= 0:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                requeue = left

        complete = False
        if failure is None:
            if indexed:
                complete = completions is not None and len(done_indexes) >= int(completions)
            elif completions is not None:
                complete = len(succeeded) >= int(completions)
            else:
                complete = bool(succeeded) and not active

        if failure is not None or complete or suspended:
            await self._delete_pods(key, active)
            active = []
        elif self.expectations.satisfied(key):
            wait = self._backoff_left(pods, at)
            if wait > 0:  # new pods after failures wait: 10 s, 20 s, 40 s ... (kube's)
                requeue = wait if requeue is None else min(requeue, wait)
            else:
                await self._manage(key, job, active, succeeded, done_indexes)

        status["active"] = len(active)
        status["succeeded"] = len(succeeded)
        status["failed"] = failed
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        if indexed:
            status["completedIndexes"] = format_indexes(done_indexes)
        stamp = format_time(at)
        had = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        if failure is not None and "Failed" not in had:
            self.event(job, "batch/v1", "Job", "Warning", failure[0], failure[1])
        elif failure is None and complete and "Complete" not in had:
            self.event(job, "batch/v1", "Job", "Normal", "Completed", "Job completed")
        if failure is not None:
            status["conditions"] = [
                *[c for c in status.get("conditions") or [] if c.get("type") != "Failed"],
                _cond("Failed", failure[0], failure[1], stamp),
            ]
        elif complete:
            status["completionTime"] = stamp
            status["conditions"] = [
                *[c for c in status.get("conditions") or [] if c.get("type") != "Complete"],
                _cond("Complete", "", "", stamp),
            ]
        suspended_cond = get_condition(status, "Suspended")
        if suspended and (suspended_cond is None or suspended_cond.get("status") != "True"):
            status["conditions"] = [
                *[c for c in status.get("conditions") or [] if c.get("type") != "Suspended"],
                _cond("Suspended", "JobSuspended", "Job suspended", stamp),
            ]
        elif not suspended and suspended_cond is not None and suspended_cond["status"] == "True":
            status["conditions"] = [
                *[c for c in status.get("conditions") or [] if c.get("type") != "Suspended"],
                {**_cond("Suspended", "JobResumed", "Job resumed", stamp), "status": "False"},
            ]
        status = {k: v for k, v in status.items() if v not in (0, None) or k == "ready"}
        if status != (job.get("status") or {}):
            job["status"] = status
            await self.client.update_status(JOBS, ns, job)
        if failure is not None or complete:
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None:
                return float(ttl)
        return requeue

    def _backoff_left(self, pods: list[Obj], at: datetime) -> float:
        """Seconds before pods may be made again after ``n`` failed ones:
        failure_backoff * 2**(n-1) (at most max_failure_backoff) since the last failure."""
        failed = [p for p in pods if _phase(p) == "Failed"]
        if not failed or self.failure_backoff <= 0:
            return 0.0
        delay = min(self.failure_backoff * 2 ** (len(failed) - 1), self.max_failure_backoff)
        last = max(_failed_at(p) for p in failed)
        return max((last + timedelta(seconds=delay) - at).total_seconds(), 0.0)

    async def _manage(
        self, key: str, job: Obj, active: list[Obj], succeeded: list[Obj], done: set[int]
    ) -> None:
        spec = job.get("spec") or {}
        ns = meta(job).get("namespace")
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed" and completions is not None:
            running = {i for p in active if (i := _index(p)) is not None}
            todo = [i for i in range(int(completions)) if i not in done and i not in running]
            want_new = min(max(parallelism - len(active), 0), len(todo))
            extra = max(len(active) - parallelism, 0)
            new_indexes: list[int | None] = list(todo[:want_new])
        else:
            if completions is None:
                want = 0 if succeeded else parallelism
            else:
                want = min(parallelism, max(int(completions) - len(succeeded), 0))
            want_new = max(want - len(active), 0)
            extra = max(len(active) - want, 0)
            new_indexes = [None] * want_new
        if extra:
            victims = rank_for_deletion(active)[:extra]
            await self._delete_pods(key, victims)
            return
        if not new_indexes:
            return
        self.expectations.expect_creations(key, len(new_indexes))
        made = 0
        try:
            for index in new_indexes:
                pod = await self.client.create(PODS, ns, self._pod(job, index))
                made += 1
                self.event(
                    job,
                    "batch/v1",
                    "Job",
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {meta(pod)['name']}",
                )
        except ClientError:
            self.expectations.creation_observed(key, len(new_indexes) - made)
            raise

    def _pod(self, job: Obj, index: int | None) -> Obj:
        name = meta(job)["name"]
        prefix = f"{name}-" if index is None else f"{name}-{index}-"
        pod = pod_from_template(job, "batch/v1", "Job", prefix)
        if index is not None:
            m = pod["metadata"]
            m.setdefault("annotations", {})[INDEX_ANNOTATION] = str(index)
            m.setdefault("labels", {})[INDEX_LABEL] = str(index)
            pod["spec"].setdefault("hostname", f"{name}-{index}")
            for c in pod["spec"].get("containers") or []:
                env = [e for e in c.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
                env.append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
                c["env"] = env
        return pod

    async def _delete_pods(self, key: str, pods: list[Obj]) -> None:
        if not pods:
            return
        keys = {f"{meta(p).get('namespace')}/{meta(p)['name']}" for p in pods}
        self.expectations.expect_deletions(key, keys)
        for p in pods:
            m = meta(p)
            try:
                await self.client.delete(
                    PODS, m.get("namespace"), m["name"], preconditions={"uid": m["uid"]}
                )
            except NotFound:
                self.expectations.deletion_observed(key, f"{m.get('namespace')}/{m['name']}")

    async def _ttl(self, job: Obj, done: Obj, at: datetime) -> float | None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        status = job.get("status") or {}
        finished = parse_time(status.get("completionTime") or done.get("lastTransitionTime"))
        if finished is None:
            return None
        left = (finished + timedelta(seconds=int(ttl)) - at).total_seconds()
        if left > 0:
            return left
        m = meta(job)
        log.info("job %s/%s: finished %ss ago: deleting it", m.get("namespace"), m["name"], ttl)
        try:
            await self.client.delete(
                JOBS,
                m.get("namespace"),
                m["name"],
                propagation="Background",
                preconditions={"uid": m["uid"]},
            )
        except NotFound:
            pass
        return None


def _failed_at(pod: Obj) -> datetime:
    """When a failed pod ended: its containers' finishedAt, else its Ready condition's last
    change, else its creation."""
    status = pod.get("status") or {}
    times = [
        parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for c in status.get("containerStatuses") or []
    ]
    found = [t for t in times if t is not None]
    if found:
        return max(found)
    ready = get_condition(status, "Ready")
    t = parse_time((ready or {}).get("lastTransitionTime")) or parse_time(
        meta(pod).get("creationTimestamp")
    )
    return t or now()


def _cond(typ: str, reason: str, message: str, stamp: str) -> Obj:
    c: Obj = {
        "type": typ,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c
