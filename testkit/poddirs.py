"""Pod directories as the runtime and a pod's monitor leave them, for tests of what reads
them (the status cache, the kubelet's relist and status watch) without a monitor: the
monitor's writes are played by renames, as csrc/monitor/util.c makes them."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.pod.record import ContainerRecord, PodRecord
from runtime.pod.store import PodDir, PodState, PodStore


def monitor_writes(path: Path, text: str) -> None:
    """``path`` replaced with ``text`` by a rename, as the monitor writes its status files."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, path)


def running_pod(root: Path, uid: str, name: str) -> PodDir:
    """A pod in run/ with its record (one container, ``app``) and its monitor's files; its
    lock held by the returned PodDir (as by its monitor: not a pod whose monitor is lost)."""
    pd = PodStore(root).create(uid)
    pd.write_record(
        PodRecord(
            uid=uid,
            name=name,
            namespace="default",
            created=1.0,
            containers=(ContainerRecord("app", "app", "busybox", "a" * 64),),
        ),
        durable=False,
    )
    pd.move(PodState.RUNNING)
    (pd.path / "status").mkdir()
    monitor_writes(pd.path / "pod.status", "phase=Running\n")
    monitor_writes(pd.path / "status" / "app", "state=running\nready=true\n")
    return pd
