"""Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection: the
holder renews the lease every ``retry_period``; another candidate takes it over once it has not
been renewed for ``lease_duration``. Every write is a compare-and-swap on the resourceVersion,
so two candidates never both believe they lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from .rest import LEASES, ApiClient, ClientError, Conflict, NotFound, Obj

__all__ = ["LeaderElector", "micro_time", "parse_time"]

log = logging.getLogger("corral.leader")


def micro_time(t: datetime | None = None) -> str:
    """A MicroTime as Kubernetes writes it: RFC 3339 with microseconds."""
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaderElector:
    """Run ``lead()`` while this identity holds the lease; cancel it when the lease is lost."""

    def __init__(
        self,
        client: ApiClient,
        name: str,
        identity: str,
        *,
        namespace: str = "kube-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name
        self.identity = identity
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._expires_in: float | None = None  # the holder's lease, as last seen: left (s)
        self.leading = asyncio.Event()

    def _spec(self, transitions: int, acquire: str | None) -> Obj:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, int(self.lease_duration)),
            "acquireTime": acquire or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when this identity holds it."""
        try:
            lease = await self.client.get(LEASES, self.namespace, self.name)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            try:
                await self.client.create(LEASES, self.namespace, body)
                return True
            except ClientError:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder and holder != self.identity:
            renewed = parse_time(spec.get("renewTime"))
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if renewed is not None:
                age = (datetime.now(UTC) - renewed).total_seconds()
                if age < duration:
                    self._expires_in = duration - age
                    return False
        if holder == self.identity:
            acquire = spec.get("acquireTime")
        else:  # taken over, or taken after a release: a transition
            transitions += 1
            acquire = None
        lease = dict(lease)
        lease["spec"] = self._spec(transitions, acquire)
        try:
            await self.client.update(LEASES, self.namespace, lease)
        except (Conflict, NotFound):
            return False
        except ClientError as e:
            log.info("lease %s/%s: %s", self.namespace, self.name, e)
            return False
        return True

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Forever: acquire, then run ``lead`` while renewing; on a lost lease cancel it and
        campaign again."""
        while True:
            while not await self.try_acquire():
                await asyncio.sleep(self._next_try())
            log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
            self.leading.set()
            task = asyncio.create_task(lead())
            try:
                await self._renew_until_lost(task)
            finally:
                self.leading.clear()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            log.warning("lease %s/%s: leadership lost", self.namespace, self.name)

    def _next_try(self) -> float:
        """When a candidate looks again: every ``retry_period``, or as the lease it saw held
        expires if that is sooner (a dead leader is replaced when its lease runs out, not up
        to a retry period later)."""
        left, self._expires_in = self._expires_in, None
        if left is None:
            return self.retry_period
        return min(self.retry_period, left + 0.05)

    async def _renew_until_lost(self, task: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while not task.done():
            await asyncio.sleep(self.retry_period)
            if await self.try_acquire():
                last_ok = loop.time()
            elif loop.time() - last_ok > self.renew_deadline:
                return
        task.result()  # lead() ended: its error (if any) surfaces here

    async def release(self) -> None:
        """Give the lease up (on a clean stop), so that another candidate leads at once."""
        with contextlib.suppress(ClientError):
            lease = await self.client.get(LEASES, self.namespace, self.name)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease = dict(lease)
                spec = dict(lease["spec"])
                spec["holderIdentity"] = None
                spec["renewTime"] = micro_time(datetime(1970, 1, 1, tzinfo=UTC))
                lease["spec"] = spec
                await self.client.update(LEASES, self.namespace, lease)
