"""runtime.pod.lifecycle without a monitor: the pod directories and their locks are real,
the monitor's part is played by this process (its lock held on another open of the pod
directory, its finish by a rename)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from runtime.pod.lifecycle import stop
from runtime.pod.record import PodRecord
from runtime.pod.store import PodState, PodStore

UID = "0b5e0f6a-1111-2222-3333-444455556666"


def test_a_stop_that_meets_the_pod_finishing_returns_it_exited(tmp_path: Path) -> None:
    """The pod was running when stop looked; its monitor finished it (run/ -> exited/)
    before stop wrote the grace for it: stop returns the exited pod, as for any pod that
    ended, instead of failing on the vanished run/ directory."""
    store = PodStore(tmp_path / "pods")
    pd = store.create(UID)
    pd.write_record(PodRecord(uid=UID, name="p", namespace="default", created=1.0))
    pd.move(PodState.RUNNING)
    pd.unlock()
    monitor = os.open(pd.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    gone: list[int] = []
    try:
        fcntl.flock(monitor, fcntl.LOCK_EX)  # the monitor's lock, on its own open
        seen = store.get(UID)  # what stop was given: running
        held = seen.try_lock

        def finishes_meanwhile() -> bool:
            took = held()  # the monitor holds it: no
            os.rename(store.root / "run" / UID, store.root / "exited" / UID)
            os.close(monitor)  # and it exits
            gone.append(monitor)
            return took

        seen.try_lock = finishes_meanwhile  # type: ignore[method-assign]
        assert stop(seen, grace=5).state is PodState.EXITED
        assert not (store.root / "exited" / UID / "stop-grace").exists()
    finally:
        if not gone:
            os.close(monitor)


def test_a_wait_for_the_lock_sleeps_on_its_holder_until_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait_lock(holder=pid)`` (stop waiting for the monitor): no look at the lock every
    50 ms; it sleeps on the holder's pidfd and takes the lock once the holder exited."""
    import select
    import subprocess
    import sys

    from runtime.pod import store as store_mod

    store = PodStore(tmp_path / "pods")
    pd = store.create(UID)
    pd.move(PodState.RUNNING)
    pd.unlock()
    holds = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holds, str(pd.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"

        def no_polling(_: float) -> None:
            raise AssertionError("looked at the lock again instead of waiting for its holder")

        real_poll = select.poll

        class Poll:  # the holder is told to exit once the wait sleeps on its pidfd
            def __init__(self) -> None:
                self.poll_ = real_poll()

            def register(self, fd: int, mask: int) -> None:
                self.poll_.register(fd, mask)

            def poll(self, ms: int) -> list[tuple[int, int]]:
                assert child.stdin is not None
                if not child.stdin.closed:
                    child.stdin.close()
                return self.poll_.poll(ms)

        monkeypatch.setattr(store_mod.time, "sleep", no_polling)
        monkeypatch.setattr(store_mod.select, "poll", Poll)
        seen = store.get(UID)
        assert seen.wait_lock(timeout=60, holder=child.pid)
        seen.unlock()
    finally:
        if child.stdin is not None and not child.stdin.closed:
            child.stdin.close()
        child.wait()
