"""Ephemeral containers: a container added to a running pod (Kubernetes' ``kubectl debug``).

``add`` makes what ``prepare`` and ``launch`` make for a container of the pod's start, for one
more container, then hands it to the pod's monitor:

1. its image, had by its imagePullPolicy (or imported from a tarball), recorded in pod.json
   (``kind: ephemeral``, with the manifest that names it) before its reference is taken;
2. its overlay rootfs, in ``containers/<name>`` as any container's;
3. its OCI bundle (``runtime.pod.bundle``): the pod's network, IPC and UTS namespaces as a
   regular container joins them; with ``targetContainerName`` the target's PID namespace
   (the pod's shared one with shareProcessNamespace), else one of its own, or the pod's
   shared one; the pod's volumes only where its volumeMounts name them; no subPaths;
4. its section in ``ephemeral.conf`` (``kind ephemeral``; monitor.conf's format), written
   whole and atomically, then SIGHUP to the monitor, which reads the file again and starts
   the containers it does not know yet, once, without restarts or probes.

The pod directory says what runs: pod.json lists the container, ephemeral.conf holds its
section and ``status/<name>`` its state, so an agent that restarts finds it as it finds the
others. ``add`` of a container already recorded only sends SIGHUP again (idempotent).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

import msgspec

from runtime.pod.prepare import PodOptions, PrepareError
from runtime.pod.record import ContainerRecord
from runtime.pod.store import InvalidState, PodDir, PodError, PodState, write_atomic

__all__ = ["CONF", "add"]

CONF = "ephemeral.conf"


def _in_conf(pd: PodDir, name: str) -> bool:
    """Whether ephemeral.conf has the section of container ``name``."""
    from runtime.pod.monconf import escape

    try:
        text = (pd.path / CONF).read_text()
    except FileNotFoundError:
        return False
    return f"container {escape(name)}\n" in text.splitlines(keepends=True)


def _pid_namespace(pd: PodDir, share_pid: bool, target: str | None, app: str | None) -> int:
    """The pid whose /proc/<pid>/ns/pid the container joins (0: a namespace of its own): the
    pod's shared one (read from a container's bundle), else the target container's."""
    from runtime.pod.store import read_keyvalues

    if share_pid and app is not None:
        with open(pd.path / "containers" / app / "config.json", "rb") as f:
            spec = msgspec.json.decode(f.read())
        for ns in spec["linux"]["namespaces"]:
            if ns.get("type") == "pid" and ns.get("path"):
                return int(ns["path"].split("/")[2])
    if not target:
        return 0
    kv = read_keyvalues(f"{pd.path}/status/{target}")
    pid = kv.get("pid", "")
    if kv.get("state") != "running" or not pid.isdigit():
        raise PodError(pd.uid, f"target container {target!r} is not running")
    return int(pid)


def with_container(manifest: dict[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The pod manifest (as pod.json keeps it) with ``container`` among its
    ephemeralContainers (in place of one of the same name)."""
    spec = dict(manifest.get("spec") or {})
    name = container.get("name")
    kept = [e for e in spec.get("ephemeralContainers") or [] if e.get("name") != name]
    spec["ephemeralContainers"] = [*kept, dict(container)]
    return {**manifest, "spec": spec}


def add(
    pd: PodDir,
    container: Mapping[str, Any],
    opts: PodOptions,
    backoff: Any = None,
    credentials: Any = None,
) -> None:
    """Add ``container`` (an EphemeralContainer as the API holds it) to the running pod
    ``pd``, the manifest pod.json keeps gaining it, and have the pod's monitor start it.
    ``ManifestError`` when the pod with it is not one corral runs, ``ImagePullError`` when
    its image cannot be had, ``InvalidState`` when the pod is not running."""
    from images.store import Store
    from runtime.pod.bundle import (
        BundleContext,
        container_cgroups_path,
        container_config,
    )
    from runtime.pod.hostfacts import (
        cap_last,
        memory_capacity,
        min_oom_score_adj,
        oom_file,
        oom_file_below,
    )
    from runtime.pod.imagepull import ensure_image
    from runtime.pod.launch import load_pod
    from runtime.pod.lifecycle import stored_manifest
    from runtime.pod.manifest import decode_pod
    from runtime.pod.monconf import ContainerConf, render_containers
    from runtime.pod.qos import pod_qos
    from runtime.pod.status import status_of

    name = str(container.get("name") or "")
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot add a container to a pod in {pd.state.value}/")
    st = status_of(pd)
    if st.monitor_pid is None or st.phase in ("Succeeded", "Failed", "Unknown"):
        raise InvalidState(pd.uid, f"cannot add a container to a pod that is {st.phase}")
    record = pd.record()
    if record is None:
        raise PodError(pd.uid, f"{pd.path}/pod.json is missing")
    opts = record.pod_options(opts)
    known = record.container(name)
    if known is not None and known.kind != "ephemeral":
        raise PodError(pd.uid, f"container {name!r} is not an ephemeral container")
    if known is not None and _in_conf(pd, name):
        os.kill(st.monitor_pid, signal.SIGHUP)  # it may not have read it yet: again
        return
    # (recorded, but an earlier add stopped before its section was written: the rest now)
    if not record.manifest:
        raise PodError(pd.uid, "created without its manifest: cannot add a container")
    if known is None:
        kube = decode_pod(with_container(record.manifest, container))  # defaults, validation
        pod = load_pod(record.replace(manifest=stored_manifest(kube)))
    else:
        pod = load_pod(record)
    c = pod.container(name)
    if any(m.sub_path or m.sub_path_expr for m in c.volume_mounts):
        raise PodError(pd.uid, f"ephemeral container {name!r}: subPath is not supported")

    def step(what: str) -> Any:
        from runtime.pod.prepare import _step

        return _step(pd, what)

    store = Store(opts.image_root)
    with step(f"image {c.image}"):
        if known is not None:
            img = store.get(known.image_id)
        elif c.image_archive is not None:
            imported = store.import_path(c.image_archive)
            if len(imported) != 1:
                raise PodError(pd.uid, f"{c.image_archive} holds {len(imported)} images, not 1")
            img = imported[0]
        else:
            img = ensure_image(store, pd.uid, c, opts, backoff, credentials)
    if known is None:
        # recorded before its reference and rootfs are made: teardown undoes what it names
        record = record.replace(
            images=tuple(sorted({*record.images, img.id})),
            containers=(
                *record.containers,
                ContainerRecord(name=name, kind="ephemeral", image=c.image, image_id=img.id),
            ),
            manifest=stored_manifest(kube),
        )
        pd.write_record(record)
    store.add_ref(img, pd.uid)  # (a set: taken again, it is one)
    path = pd.path
    cdir = path / "containers" / name
    with step(f"mount rootfs({cdir / 'rootfs'})"):
        cdir.mkdir(mode=0o700, exist_ok=True)
        if not os.path.ismount(cdir / "rootfs"):
            store.mount_rootfs(img, cdir / "rootfs", cdir / "overlay")
    with step(f"bundle {name}"):
        app = record.app_containers[0] if record.app_containers else None
        ctx = BundleContext(
            uid=pd.uid,
            rootfs=str(cdir / "rootfs"),
            image_config=store.config(img),
            cgroup_parent=opts.cgroup_parent,
            ns_pid=st.monitor_pid,
            pidns_pid=_pid_namespace(pd, record.share_pid, c.target, app),
            memory_capacity=memory_capacity(),
            pod_ip=record.pod_ip,
            volume_paths={k: str(path / v) for k, v in (record.volumes or {}).items()},
            etc_dir=str(path / "etc"),
            shm_dir=str(path / "shm"),
            pod_dir=str(path),
            cap_last=cap_last(),
            min_oom_score_adj=min_oom_score_adj(),
        )
        spec = container_config(pod, c, ctx)
        text = msgspec.json.format(msgspec.json.encode(spec), indent=1) + b"\n"
        write_atomic(cdir / "config.json", text, 0o600, durable=False)
    if record.cgroup and record.cgroup.paths:
        oom = oom_file_below(record.cgroup.paths, name)
    else:
        qos = pod_qos(pod)
        oom = oom_file(container_cgroups_path(opts.cgroup_parent, qos, pd.uid, name), name)
    conf = ContainerConf(
        name=name,
        kind="ephemeral",
        id=name,
        bundle=str(cdir),
        oom_file=oom,
        terminal=bool(c.tty),
        stdin=c.stdin,
        stdin_once=c.stdin_once,
        attach=c.stdin or c.tty,
    )
    try:
        before = (path / CONF).read_text()
    except FileNotFoundError:
        before = ""
    write_atomic(path / CONF, before + render_containers([conf], "127.0.0.1"), durable=False)
    try:
        os.kill(st.monitor_pid, signal.SIGHUP)
    except ProcessLookupError:
        raise PrepareError(pd.uid, "signal the monitor", "the pod's monitor is gone") from None
