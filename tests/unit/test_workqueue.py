"""The work queue's guarantees (client-go's): dedupe, one worker per key, re-queue of a key
added while processed, per-key exponential backoff, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.client import ShutDown, WorkQueue


def test_dedupe_and_order() -> None:
    async def body() -> None:
        q = WorkQueue()
        for k in ("a", "b", "a", "c", "b"):
            q.add(k)
        assert len(q) == 3
        assert [await q.get() for _ in range(3)] == ["a", "b", "c"]

    asyncio.run(body())


def test_key_added_while_processing_comes_back_after_done() -> None:
    async def body() -> None:
        q = WorkQueue()
        q.add("a")
        assert await q.get() == "a"
        q.add("a")  # changed while a worker holds it: not handed to a second worker
        assert len(q) == 0
        q.add("b")
        assert await q.get() == "b"
        q.done("b")
        q.done("a")
        assert await q.get() == "a"

    asyncio.run(body())


def test_rate_limited_backoff_doubles_and_forget_resets() -> None:
    async def body() -> None:
        q = WorkQueue(base_delay=0.05, max_delay=0.2)
        loop = asyncio.get_running_loop()
        waits = []
        for _ in range(4):
            t = loop.time()
            q.add_rate_limited("k")
            assert await asyncio.wait_for(q.get(), 5) == "k"
            q.done("k")
            waits.append(loop.time() - t)
        assert q.num_requeues("k") == 4
        # 0.05, 0.1, 0.2, 0.2 (capped): each at least its delay.
        for got, want in zip(waits, (0.05, 0.1, 0.2, 0.2), strict=True):
            assert got >= want * 0.9, waits
        q.forget("k")
        assert q.num_requeues("k") == 0

    asyncio.run(body())


def test_waiting_workers_wake_and_shutdown_ends_them() -> None:
    async def body() -> None:
        q = WorkQueue()
        got: list[str] = []

        async def worker() -> None:
            while True:
                try:
                    k = await q.get()
                except ShutDown:
                    return
                got.append(k)
                q.done(k)

        workers = [asyncio.create_task(worker()) for _ in range(3)]
        await asyncio.sleep(0)
        for i in range(10):
            q.add(str(i))
            await asyncio.sleep(0)
        while len(got) < 10:
            await asyncio.sleep(0.01)
        q.shutdown()
        await asyncio.wait_for(asyncio.gather(*workers), 5)
        assert sorted(got, key=int) == [str(i) for i in range(10)]
        q.add("late")  # ignored after shutdown
        with pytest.raises(ShutDown):
            await q.get()

    asyncio.run(body())


def test_cancelled_getter_passes_its_wakeup_on() -> None:
    async def body() -> None:
        q = WorkQueue()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("x")  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        assert await asyncio.wait_for(second, 5) == "x"

    asyncio.run(body())
