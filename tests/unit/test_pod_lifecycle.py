"""runtime.pod.lifecycle without a monitor: the pod directories and their locks are real,
the monitor's part is played by this process (its lock held on another open of the pod
directory, its finish by a rename)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

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
