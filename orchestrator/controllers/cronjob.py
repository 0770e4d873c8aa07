"""The CronJob controller (kube's cronjob controller v2): a Job per schedule time (named
``<cronjob>-<minutes since the epoch>``), honouring startingDeadlineSeconds, suspend and the
concurrencyPolicy (Allow, Forbid, Replace), and keeping successfulJobsHistoryLimit /
failedJobsHistoryLimit finished jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.client import AlreadyExists, NotFound, Obj, parse_time, split_key
from orchestrator.client.rest import CRONJOBS, JOBS

from .base import Client, Controller, InformerFactory
from .util import controller_ref, deep_copy, format_time, get_condition, meta, now, owner_ref

__all__ = ["CronJobController", "Schedule", "ScheduleError"]

log = logging.getLogger("corral.controllers.cronjob")

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
DAYS = "sun mon tue wed thu fri sat".split()
SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100


class ScheduleError(ValueError):
    pass


def _field(
    text: str, lo: int, hi: int, names: list[str] | None, what: str
) -> tuple[set[int], bool]:
    """One cron field as the set of values it allows, and whether it was ``*``/``?``."""
    out: set[int] = set()
    star = text in ("*", "?")

    def value(v: str) -> int:
        if names and v.lower() in names:
            return names.index(v.lower()) + (lo if lo == 1 else 0)
        try:
            n = int(v)
        except ValueError:
            raise ScheduleError(f"{what}: {v!r} is not a number") from None
        return n

    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            try:
                step = int(step_s)
            except ValueError:
                raise ScheduleError(f"{what}: bad step {step_s!r}") from None
            if step <= 0:
                raise ScheduleError(f"{what}: step must be positive")
        if rng in ("*", "?"):
            a, b = lo, hi
        elif "-" in rng:
            x, _, y = rng.partition("-")
            a, b = value(x), value(y)
        else:
            a = value(rng)
            b = hi if step_s else a
        if what == "day of week" and b == 7:  # 7 is Sunday too
            out.add(0)
            b = 6 if a <= 6 else a
        if a < lo or b > hi or a > b:
            raise ScheduleError(f"{what}: {part!r} is out of range {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return out, star


@dataclass(frozen=True)
class Schedule:
    """A standard five-field cron schedule (or a macro such as @hourly), in a time zone."""

    minutes: frozenset[int]
    hours: frozenset[int]
    dom: frozenset[int]
    months: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool
    tz: ZoneInfo | None = None

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> Schedule:
        text = text.strip()
        tz_name = time_zone
        if text.startswith(("TZ=", "CRON_TZ=")):
            head, _, text = text.partition(" ")
            tz_name = head.split("=", 1)[1]
        tz = None
        if tz_name:
            try:
                tz = ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ScheduleError(f"unknown time zone {tz_name!r}") from None
        text = MACROS.get(text.lower(), text)
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
        mi, _ = _field(fields[0], 0, 59, None, "minute")
        ho, _ = _field(fields[1], 0, 23, None, "hour")
        dm, dm_star = _field(fields[2], 1, 31, None, "day of month")
        mo, _ = _field(fields[3], 1, 12, MONTHS, "month")
        dw, dw_star = _field(fields[4], 0, 7, DAYS, "day of week")
        return cls(
            frozenset(mi), frozenset(ho), frozenset(dm), frozenset(mo), frozenset(dw),
            dm_star, dw_star, tz,
        )  # fmt: skip

    def _day_ok(self, local: datetime) -> bool:
        if local.month not in self.months:
            return False
        dom_ok = local.day in self.dom
        dow_ok = (local.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:  # robfig/cron: either one unrestricted: both
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def matches(self, t: datetime) -> bool:
        local = t.astimezone(self.tz or UTC)
        return self._day_ok(local) and local.hour in self.hours and local.minute in self.minutes

    def next_after(self, t: datetime, limit_days: int = 366 * 5) -> datetime | None:
        """The first schedule time strictly after ``t`` (whole days and hours that cannot
        match are skipped)."""
        c = t.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = c + timedelta(days=limit_days)
        while c <= end:
            local = c.astimezone(self.tz or UTC)
            if not self._day_ok(local):
                c += timedelta(minutes=24 * 60 - local.hour * 60 - local.minute)
            elif local.hour not in self.hours:
                c += timedelta(minutes=60 - local.minute)
            elif local.minute in self.minutes:
                return c
            else:
                c += timedelta(minutes=1)
        return None

    def at_or_before(self, t: datetime, limit_days: int = 366 * 5) -> datetime | None:
        """The last schedule time at or before ``t``."""
        c = t.astimezone(UTC).replace(second=0, microsecond=0)
        end = c - timedelta(days=limit_days)
        while c >= end:
            local = c.astimezone(self.tz or UTC)
            if not self._day_ok(local):
                c -= timedelta(minutes=local.hour * 60 + local.minute + 1)
            elif local.hour not in self.hours:
                c -= timedelta(minutes=local.minute + 1)
            elif local.minute in self.minutes:
                return c
            else:
                c -= timedelta(minutes=1)
        return None

    def last_between(self, earliest: datetime, latest: datetime) -> tuple[datetime | None, int]:
        """The most recent schedule time in (earliest, latest], and how many there were
        (counted up to MAX_MISSED + 1)."""
        found = self.at_or_before(latest)
        if found is None or found <= earliest:
            return None, 0
        count = 0
        t = self.next_after(earliest)
        while t is not None and t <= latest and count <= MAX_MISSED:
            count += 1
            t = self.next_after(t)
        return found, count


def _finished_type(job: Obj) -> str | None:
    for typ in ("Complete", "Failed"):
        c = get_condition(job.get("status"), typ)
        if c is not None and c.get("status") == "True":
            return typ
    return None


class CronJobController(Controller):
    name = "cronjob"
    component = "cronjob-controller"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.cronjobs = factory.informer(CRONJOBS)
        self.jobs = factory.informer(JOBS)
        self.cronjobs.add_handler(self.enqueue_handler)
        self.jobs.add_handler(self._on_job)

    def _on_job(self, event: str, old: Obj | None, new: Obj | None) -> None:
        job = new or old
        assert job is not None
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{meta(job).get('namespace')}/{ref.get('name')}")

    async def reconcile(self, key: str) -> float | None:
        ns, name = split_key(key)
        cached = self.cronjobs.get(key)
        if cached is None or meta(cached).get("deletionTimestamp"):
            return None
        cj = deep_copy(cached)
        spec = cj.get("spec") or {}
        uid = meta(cj)["uid"]
        jobs = [
            j
            for j in self.jobs.by_index("namespace", ns or "")
            if (controller_ref(j) or {}).get("uid") == uid
        ]
        status = deep_copy(cj.get("status") or {})
        by_uid = {meta(j)["uid"]: j for j in jobs}
        # Active: the jobs we made that are not finished (and still exist).
        active = [
            r
            for r in status.get("active") or []
            if r.get("uid") in by_uid and not _finished_type(by_uid[r["uid"]])
        ]
        listed = {r.get("uid") for r in active}
        for j in jobs:
            if not _finished_type(j) and meta(j)["uid"] not in listed:
                active.append(_ref(j))
        done = [j for j in jobs if _finished_type(j) == "Complete"]
        if done:
            latest = max((j.get("status") or {}).get("completionTime") or "" for j in done)
            if latest:
                status["lastSuccessfulTime"] = latest
        await self._history(jobs, spec)

        try:
            schedule = Schedule.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
        except ScheduleError as e:
            log.warning("cronjob %s: unparseable schedule: %s", key, e)
            await self._write(cj, status, active)
            return None
        at = now()
        requeue: float | None = None
        if not spec.get("suspend"):
            earliest = (
                parse_time(status.get("lastScheduleTime"))
                or parse_time(meta(cj).get("creationTimestamp"))
                or at
            )
            deadline = spec.get("startingDeadlineSeconds")
            if deadline is not None:
                earliest = max(earliest, at - timedelta(seconds=int(deadline)))
            scheduled, missed = schedule.last_between(earliest, at)
            if missed > MAX_MISSED:
                log.warning("cronjob %s: %d start times missed", key, missed)
            if scheduled is not None:
                active = await self._start(cj, spec, scheduled, active, status)
            nxt = schedule.next_after(at)
            if nxt is not None:
                requeue = max((nxt - at).total_seconds(), 0.0) + 0.1
        await self._write(cj, status, active)
        return requeue

    async def _start(
        self, cj: Obj, spec: Obj, scheduled: datetime, active: list[Obj], status: Obj
    ) -> list[Obj]:
        ns = meta(cj).get("namespace")
        policy = spec.get("concurrencyPolicy", "Allow")
        if active and policy == "Forbid":
            return active
        if active and policy == "Replace":
            for ref in active:
                try:
                    await self.client.delete(JOBS, ns, ref["name"], propagation="Background")
                except NotFound:
                    pass
            active = []
        template = spec.get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        name = f"{meta(cj)['name']}-{int(scheduled.timestamp() // 60)}"
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {
                    **(tmeta.get("annotations") or {}),
                    SCHEDULED_AT: format_time(scheduled),
                },
                "ownerReferences": [owner_ref(cj, "batch/v1", "CronJob")],
            },
            "spec": deep_copy(template.get("spec") or {}),
        }
        try:
            made = await self.client.create(JOBS, ns, job)
        except AlreadyExists:
            made = None  # made before (the cache or the status lags)
        if made is not None:
            log.info("cronjob %s/%s: job %s for %s", ns, meta(cj)["name"], name, scheduled)
            self.event(
                cj, "batch/v1", "CronJob", "Normal", "SuccessfulCreate", f"Created job {name}"
            )
            active = [*active, _ref(made)]
        status["lastScheduleTime"] = format_time(scheduled)
        return active

    async def _history(self, jobs: list[Obj], spec: Obj) -> None:
        for typ, limit in (
            ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
            ("Failed", spec.get("failedJobsHistoryLimit", 1)),
        ):
            if limit is None:
                continue
            finished = [
                j for j in jobs if _finished_type(j) == typ and not meta(j).get("deletionTimestamp")
            ]
            finished.sort(
                key=lambda j: (
                    (j.get("status") or {}).get("startTime")
                    or meta(j).get("creationTimestamp")
                    or ""
                )
            )
            for j in finished[: max(len(finished) - int(limit), 0)]:
                m = meta(j)
                try:
                    await self.client.delete(
                        JOBS, m.get("namespace"), m["name"], propagation="Background"
                    )
                except NotFound:
                    pass

    async def _write(self, cj: Obj, status: Obj, active: list[Obj]) -> None:
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        if status != (cj.get("status") or {}):
            cj["status"] = status
            await self.client.update_status(CRONJOBS, meta(cj).get("namespace"), cj)


def _ref(job: Obj) -> Obj:
    m = meta(job)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": m["name"],
        "namespace": m.get("namespace"),
        "uid": m["uid"],
        "resourceVersion": m.get("resourceVersion"),
    }
