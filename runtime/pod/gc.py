"""Garbage collection: pods whose monitor is gone, abandoned prepares, garbage and exited
pods, then leaked pod cgroups (docs/pods.md, "Pod directories")."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.pod.lifecycle import finish_here
from runtime.pod.prepare import PodOptions, teardown
from runtime.pod.store import PodState, PodStore

__all__ = ["GcResult", "gc", "live_pod_uids"]


@dataclass
class GcResult:
    removed: list[str] = field(default_factory=list)  # exited, garbage, abandoned prepares
    finished: list[str] = field(default_factory=list)  # run/ pods whose monitor was gone
    cgroups: list[str] = field(default_factory=list)  # leaked pod cgroups removed
    errors: list[str] = field(default_factory=list)


def gc(opts: PodOptions, keep_exited: bool = False) -> GcResult:
    """Tear down pods whose monitor is gone (to exited/), remove abandoned prepares, garbage
    and (unless ``keep_exited``) exited pods, then leaked pod cgroups: ``pod<uid>`` below the
    QoS parents of ``opts.cgroup_parent`` (in every hierarchy) whose pod is not prepared or
    running, when no process is in them."""
    store = PodStore(opts.root)
    res = GcResult()
    if not store.root.exists():
        _gc_cgroups(opts, res)
        return res
    with store.gc_lock(exclusive=True):
        for pd in store.list():
            if not pd.try_lock():
                continue  # alive: its monitor or a corral process holds it
            try:
                if pd.state is PodState.RUNNING:
                    finish_here(pd)
                    res.finished.append(pd.uid)
                    if keep_exited:
                        continue
                if pd.state is PodState.PREPARED:
                    continue  # waiting for `pod start`
                if pd.state is PodState.EXITED and keep_exited:
                    continue
                if pd.state is PodState.PREPARING:
                    teardown(pd)
                pd.remove()
                res.removed.append(pd.uid)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                res.errors.append(f"{pd.uid}: {e}")
            finally:
                pd.unlock()
        _gc_cgroups(opts, res)
    return res


def _gc_cgroups(opts: PodOptions, res: GcResult) -> None:
    from runtime.pod.prepare import pod_cgroup_dirs, remove_empty_cgroup

    # Look at the cgroups first, then at the pods: a pod directory is made before its
    # cgroup, so a pod being prepared meanwhile is in the list.
    found = pod_cgroup_dirs(opts.cgroup_parent)
    if not found:
        return
    live = set(live_pod_uids(opts))
    for uid, path in found:
        if uid in live:
            continue
        try:
            if remove_empty_cgroup(path):
                res.cgroups.append(path)
        except OSError as e:
            res.errors.append(f"cgroup {path}: {e.strerror or e}")


def live_pod_uids(opts: PodOptions) -> list[str]:
    """Pods that may hold network resources: anything not yet exited."""
    return [
        pd.uid
        for pd in PodStore(opts.root).list()
        if pd.state in (PodState.PREPARING, PodState.PREPARED, PodState.RUNNING)
    ]
