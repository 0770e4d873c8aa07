"""LeaderElector's timing against a lease another candidate holds: a candidate looks again
as that lease runs out, not up to a retry period later (failover time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from orchestrator.client.leader import LeaderElector
from orchestrator.client.rest import LEASES
from orchestrator.controllers.fake import FakeClient


def _lease(holder: str, renewed_ago: float, duration: int) -> dict[str, object]:
    at = datetime.now(UTC) - timedelta(seconds=renewed_ago)
    return {
        "metadata": {"name": "lock", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "leaseTransitions": 0,
        },
    }


def test_a_candidate_looks_again_when_the_held_lease_expires() -> None:
    async def body() -> None:
        client = FakeClient()
        client.add(LEASES, _lease("a", renewed_ago=14.5, duration=15))
        b = LeaderElector(client, "lock", "b", namespace="kube-system", retry_period=2.0)  # type: ignore[arg-type]
        assert not await b.try_acquire()
        wait = b._next_try()
        assert 0.05 < wait < 1.0, wait  # about 0.5 s left on a's lease, not the 2 s period
        assert b._next_try() == 2.0  # nothing seen since: the retry period

        client.mutate(LEASES, "kube-system", "lock", spec=_lease("a", 0.0, 15)["spec"])
        assert not await b.try_acquire()
        assert b._next_try() == 2.0  # a fresh lease: the period is sooner than its expiry
        client.mutate(LEASES, "kube-system", "lock", spec=_lease("a", 16.0, 15)["spec"])
        assert await b.try_acquire()  # expired: taken over

    asyncio.run(body())
