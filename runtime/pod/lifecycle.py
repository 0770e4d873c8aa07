"""Create, stop and remove a pod (``start`` is ``runtime.pod.launch``)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from runtime.pod.prepare import PodOptions, prepare, teardown
from runtime.pod.record import PodRecord
from runtime.pod.store import (
    InvalidState,
    PodDir,
    PodError,
    PodState,
    PodStore,
    new_uid,
    write_atomic,
)

if TYPE_CHECKING:
    from runtime.pod.manifest import Pod

__all__ = ["FINISH_TIMEOUT", "create", "finish_here", "remove", "stop", "stored_manifest"]

FINISH_TIMEOUT = 60.0  # seconds past the grace period for the monitor to finish


def stored_manifest(manifest: Any) -> dict[str, Any] | None:
    """What pod.json keeps of the manifest: the Pod as the API would return it (defaults
    filled in), from a kubemodel Pod or from the decoded YAML."""
    if manifest is None:
        return None
    import kubemodel
    from runtime.pod.manifest import decode_pod

    kube = manifest if isinstance(manifest, kubemodel.Pod) else decode_pod(manifest)
    return kubemodel.to_dict(kube)


def create(
    store: PodStore,
    pod: Pod,
    opts: PodOptions,
    manifest: Any = None,
    base_dir: str | None = None,
    backoff: Any = None,
    credentials: Any = None,
) -> PodDir:
    """Prepare ``pod``: its directory in ``prepared/``, images, cgroup, volumes, rootfs
    mounts. ``manifest`` (a ``kubemodel.Pod``, or the decoded YAML, parsed with ``base_dir``)
    is kept encoded in pod.json for ``inspect`` and for a later ``start``. ``backoff`` is the
    image pull back-off (``runtime.pod.imagepull.PullBackoff``) the caller keeps;
    ``credentials`` a ``Keyring`` of registry credentials for this pod's pulls only (kept in
    memory, never written). On failure nothing is left."""
    opts = opts.for_handler(pod.spec.runtime_class_name, pod.name)  # kept in pod.json
    stored = stored_manifest(manifest)
    store.ensure()
    uid = pod.metadata.uid or new_uid()
    store.claim_name(pod.namespace, pod.name, uid)
    try:
        pd = store.create(uid)
    except BaseException:
        store.release_name(pod.namespace, pod.name, uid)
        raise
    from runtime.pod.qos import pod_qos

    record = PodRecord(
        uid=uid,
        name=pod.name,
        namespace=pod.namespace,
        created=time.time(),
        qos=pod_qos(pod).value,
        host_network=pod.spec.host_network,
        share_pid=pod.spec.share_process_namespace,
        options=opts.to_json(),
        manifest=stored,
        base_dir=base_dir,
    )
    # pod.json is rewritten as the pod is made (what teardown must undo) and fsync'd only
    # where it records what outlives a machine crash: the image references (``prepare``).
    # Cgroups, mounts and the network do not outlive one; another process's death never
    # loses a write.
    try:
        pd.write_record(record, durable=False)
        prepare(pd, pod, opts, record, backoff, credentials)  # it wrote what it returns
        pd.move(PodState.PREPARED)
    except BaseException:
        with contextlib.suppress(Exception):
            teardown(pd)
        with contextlib.suppress(Exception):
            pd.remove()
        with contextlib.suppress(Exception):
            store.release_name(pod.namespace, pod.name, uid)
        raise
    finally:
        pd.unlock()
    return pd


def _monitor_pid(pd: PodDir) -> int | None:
    try:
        return int((pd.path / "monitor.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def finish_here(pd: PodDir) -> None:
    """With the lock held: tear down a pod whose monitor is gone and move it to exited/."""
    teardown(pd)
    pd.refresh()
    if pd.state in (PodState.RUNNING, PodState.PREPARED, PodState.PREPARING):
        pd.move(PodState.EXITED)


def stop(pd: PodDir, grace: int | None = None) -> PodDir:
    """Stop a running pod: its monitor sends SIGTERM, waits ``grace`` seconds (default the
    pod's terminationGracePeriodSeconds), SIGKILLs, tears down. Returns once it is in exited/.
    A prepared pod is torn down; an exited one is left as it is."""
    if pd.state is PodState.EXITED:
        return pd
    if pd.state is PodState.PREPARED:
        if not pd.try_lock():
            raise InvalidState(pd.uid, "another process holds the pod")
        try:
            finish_here(pd)
        finally:
            pd.unlock()
        return pd
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot stop a pod in {pd.state.value}/")
    if not pd.try_lock():
        if grace is not None:
            try:
                write_atomic(pd.path / "stop-grace", f"{grace}\n")
            except FileNotFoundError:  # it finished meanwhile (moved to exited/)
                pd.refresh()
                if pd.state is not PodState.RUNNING:
                    return pd
                raise
        pid = _monitor_pid(pd)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        limit = grace if grace is not None else pd.record_or_blank().grace_period()
        if not pd.wait_lock(timeout=limit + FINISH_TIMEOUT, holder=pid):
            raise PodError(pd.uid, f"stop: the monitor (pid {pid}) did not finish")
    try:
        pd.refresh()
        if pd.state is PodState.RUNNING:
            finish_here(pd)  # the monitor died without finishing
    finally:
        pd.unlock()
    return pd


def remove(pd: PodDir, force: bool = False) -> str:
    """Remove a pod that is not running (with ``force``, stop it first, without grace); its
    name is released (``PodDir.remove``). Returns its uid."""
    if pd.state in (PodState.RUNNING, PodState.PREPARING) and not force:
        raise InvalidState(pd.uid, f"cannot remove a pod in {pd.state.value}/ (stop it or use -f)")
    if pd.state is PodState.RUNNING:
        stop(pd, grace=0)
        pd.refresh()
    if not pd.wait_lock(timeout=30):
        raise InvalidState(pd.uid, "another process holds the pod")
    try:
        if pd.state in (PodState.PREPARING, PodState.PREPARED, PodState.RUNNING):
            teardown(pd)
        pd.remove()
    finally:
        pd.unlock()
    return pd.uid
