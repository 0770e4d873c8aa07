"""The pod library API: what ``corral pod`` and the kubelet call.

``create`` (prepare a pod from a manifest), ``start`` (hand it to its monitor), ``run``
(both), ``stop``, ``remove``, ``status``, ``list_pods``, ``logs``/``follow_logs``,
``exec_in``, ``gc``. Every function takes ``PodOptions`` (where pods, images and cgroups
live); a pod is named by uid, uid prefix, name or namespace/name. Errors are ``PodError``s
that name the pod and the step.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runtime.pod.manifest import Pod
from runtime.pod.prepare import PodOptions, PrepareError, prepare, teardown
from runtime.pod.store import (
    InvalidState,
    PodDir,
    PodError,
    PodState,
    PodStore,
    new_uid,
    read_keyvalues,
    write_atomic,
)

__all__ = [
    "ContainerStatus",
    "GcResult",
    "PodOptions",
    "PodStatus",
    "create",
    "exec_in",
    "follow_logs",
    "gc",
    "list_pods",
    "logs",
    "remove",
    "run",
    "start",
    "status",
    "stop",
    "wait",
]

READY_TIMEOUT = 30.0  # seconds for the monitor's "ready"
FINISH_TIMEOUT = 60.0  # seconds past the grace period for the monitor to finish


def _store(opts: PodOptions) -> PodStore:
    return PodStore(opts.root)


def _find(ref: str, opts: PodOptions) -> PodDir:
    return _store(opts).find(ref)


def _options_of(pod: PodDir, fallback: PodOptions) -> PodOptions:
    saved = pod.record().get("options")
    return PodOptions.from_json(saved) if saved else fallback


# ============================================================================= create


def _stored_manifest(manifest: Any) -> dict[str, Any] | None:
    """What pod.json keeps of the manifest: the Pod as the API would return it (defaults
    filled in), from a kubemodel Pod or from the decoded YAML."""
    if manifest is None:
        return None
    import kubemodel
    from runtime.pod.manifest import decode_pod

    kube = manifest if isinstance(manifest, kubemodel.Pod) else decode_pod(manifest)
    return kubemodel.to_dict(kube)


def create(pod: Pod, opts: PodOptions, manifest: Any = None, base_dir: str | None = None) -> PodDir:
    """Prepare ``pod``: its directory in ``prepared/``, images, cgroup, volumes, rootfs
    mounts. ``manifest`` (a ``kubemodel.Pod``, or the decoded YAML, parsed with ``base_dir``)
    is kept encoded in pod.json for ``inspect`` and for a later ``start``. On failure nothing
    is left."""
    stored = _stored_manifest(manifest)
    store = _store(opts)
    store.ensure()
    uid = pod.metadata.uid or new_uid()
    store.claim_name(pod.namespace, pod.name, uid)
    try:
        pd = store.create(uid)
    except BaseException:
        store.release_name(pod.namespace, pod.name, uid)
        raise
    from runtime.pod.qos import pod_qos

    record: dict[str, Any] = {
        "uid": uid,
        "name": pod.name,
        "namespace": pod.namespace,
        "created": time.time(),
        "qos": pod_qos(pod).value,
        "host_network": pod.spec.host_network,
        "share_pid": pod.spec.share_process_namespace,
        "options": opts.to_json(),
        "manifest": stored,
        "base_dir": base_dir,
    }
    try:
        pd.write_record(record)
        prepare(pd, pod, opts, record)
        pd.write_record(record)
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


# ============================================================================= start


def _dup_pair(w: int, r: int) -> int:
    """Duplicate ``w`` and ``r`` onto free fds n, n+1 (the monitor's sync fd convention)."""
    base = 10
    while True:
        n = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, base)
        m = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, n + 1)
        if m == n + 1:
            return n
        os.close(n)
        os.close(m)
        base = m


def _read_line(fd: int, timeout: float) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def _monitor_exe(opts: PodOptions) -> str:
    if opts.monitor:
        return opts.monitor
    from runtime.pod.monitor import monitor_path

    return str(monitor_path())


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "; ".join(text[-lines:])


@dataclass
class _Monitor:
    pid: int
    pidns_pid: int
    go_fd: int  # we write "go" here
    said_fd: int  # the monitor writes here: after go, an error line or EOF


def _read_to_eof(fd: int, timeout: float) -> str | None:
    """What the monitor writes until it closes the pipe; None when it does not in time."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf.decode(errors="replace").strip()
        buf += chunk


def _spawn_monitor(pd: PodDir, record: dict[str, Any], opts: PodOptions) -> _Monitor:
    to_py_r, to_py_w = os.pipe2(os.O_CLOEXEC)
    to_mon_r, to_mon_w = os.pipe2(os.O_CLOEXEC)
    n = _dup_pair(to_py_w, to_mon_r)
    os.close(to_py_w)
    os.close(to_mon_r)
    argv = [_monitor_exe(opts)]
    if record.get("host_network"):
        argv.append("--host-network")
    if record.get("share_pid"):
        argv.append("--share-pid")
    argv += [str(pd.path), str(n)]
    log = open(pd.path / "monitor.log", "ab")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(n, n + 1),
            close_fds=True,
            start_new_session=True,
        )
    except OSError as e:
        for fd in (n, n + 1, to_py_r, to_mon_w):
            os.close(fd)
        raise PrepareError(pd.uid, f"start monitor {argv[0]}", e.strerror or e) from e
    finally:
        log.close()
    os.close(n)
    os.close(n + 1)
    try:
        line = _read_line(to_py_r, READY_TIMEOUT)
    except BaseException:
        os.close(to_py_r)
        os.close(to_mon_w)
        raise
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=READY_TIMEOUT)
    words = line.split()
    if len(words) == 3 and words[0] == "ready":
        return _Monitor(int(words[1]), int(words[2]), to_mon_w, to_py_r)
    os.close(to_py_r)
    os.close(to_mon_w)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    why = line.removeprefix("error ").strip() if line else "no answer"
    detail = _tail(pd.path / "monitor.log")
    raise PrepareError(
        pd.uid, "start monitor", f"{why}" + (f" (monitor.log: {detail})" if detail else "")
    )


def _memory_capacity() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(errno.EIO, "no MemTotal in /proc/meminfo")


CAP_SYS_RESOURCE = 24


def min_oom_score_adj() -> int:
    """-1000, or 0 when this process lacks CAP_SYS_RESOURCE (then the kernel refuses negative
    oom_score_adj values to it and to the runtime it starts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return -1000 if int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1 else 0
    return 0


def _cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def _oom_file(cgroups_path: str, cid: str) -> str | None:
    from runtime import cgroups

    try:
        paths = cgroups.manager_for(cgroups_path, cid).paths()
    except Exception:  # noqa: BLE001 - no memory controller: no OOM reason
        return None
    if "memory" in paths:
        return os.path.join(paths["memory"], "memory.oom_control")
    if "" in paths and not any(k for k in paths if k):
        return os.path.join(paths[""], "memory.events")
    return None


def _finish_argv(pd: PodDir) -> tuple[str, ...]:
    return (sys.executable, "-m", "runtime.pod.finish", str(pd.store.root / "run" / pd.uid))


def _reset_argv(pd: PodDir, container: str, subpaths: bool = False) -> tuple[str, ...]:
    """The monitor's prestart_arg: a restarted container gets a fresh writable layer; with
    ``subpaths``, its subPath mounts are made (again) before every create."""
    run_dir = str(pd.store.root / "run" / pd.uid)
    flag = ("--subpaths",) if subpaths else ()
    return (sys.executable, "-m", "runtime.pod.reset", *flag, run_dir, container)


def _go(pd: PodDir, pod: Pod, record: dict[str, Any], opts: PodOptions, mon: _Monitor) -> None:
    """Network, bundles, monitor.conf: everything between "ready" and "go"."""
    from images.store import Store
    from runtime.network import PortMapping, write_pod_files
    from runtime.pod.bundle import (
        BundleContext,
        container_cgroups_path,
        container_config,
        subpath_mounts,
    )
    from runtime.pod.monconf import MonitorConf, containers_of, render
    from runtime.pod.qos import pod_qos
    from runtime.pod.subpath import write_plan

    path = pd.path
    pod_ip: str | None = None
    dns = None
    if not pod.spec.host_network and opts.network:
        write_atomic(path / "network.json", "{}\n")  # teardown looks for it: write it first
        with _steps(pd, "network setup"):
            from runtime.network import NodeNetwork

            settings = opts.network_settings()
            node = NodeNetwork(settings, opts.node_netns)
            ports = [
                PortMapping(p.host_port, p.container_port, p.protocol.value.lower())
                for c in pod.spec.containers
                for p in c.ports
                if p.host_port
            ]
            net = node.setup_pod(pd.uid, f"/proc/{mon.pid}/ns/net", ports)
            write_atomic(path / "network.json", json.dumps(net.to_json(), indent=1) + "\n")
            pod_ip = str(net.ip)
            dns = settings.dns
    elif not pod.spec.host_network:
        with _steps(pd, "loopback up"):
            from runtime.network import in_netns, lo_up

            in_netns(f"/proc/{mon.pid}/ns/net", lo_up)
    hostname = pod.hostname if not pod.spec.host_network else os.uname().nodename
    write_pod_files(path / "etc", hostname, pod_ip, dns)
    record["pod_ip"] = pod_ip
    pd.write_record(record)

    store = Store(opts.image_root)
    qos = pod_qos(pod)
    capacity = _memory_capacity()
    cap_last = _cap_last()
    min_adj = min_oom_score_adj()
    bundles: dict[str, str] = {}
    oom: dict[str, str | None] = {}
    with_subpaths: set[str] = set()
    for c in pod.all_containers:
        cdir = path / "containers" / c.name
        with _steps(pd, f"bundle {c.name}"):
            image_id = next(x["image_id"] for x in record["containers"] if x["name"] == c.name)
            ctx = BundleContext(
                uid=pd.uid,
                rootfs=str(cdir / "rootfs"),
                image_config=store.config(store.get(image_id)),
                cgroup_parent=opts.cgroup_parent,
                ns_pid=mon.pid,
                pidns_pid=mon.pidns_pid,
                memory_capacity=capacity,
                pod_ip=pod_ip,
                volume_paths={k: str(path / v) for k, v in (record.get("volumes") or {}).items()},
                etc_dir=str(path / "etc"),
                shm_dir=str(path / "shm"),
                pod_dir=str(path),
                cap_last=cap_last,
                min_oom_score_adj=min_adj,
            )
            spec = container_config(pod, c, ctx)
            subpaths = subpath_mounts(pod, c, ctx)
            if subpaths:
                write_plan(cdir, subpaths)  # mounted by the prestart step (reset --subpaths)
                with_subpaths.add(c.name)
            write_atomic(cdir / "config.json", json.dumps(spec, indent=1) + "\n", 0o600)
        bundles[c.name] = str(cdir)
        oom[c.name] = _oom_file(
            container_cgroups_path(opts.cgroup_parent, qos, pd.uid, c.name), c.name
        )
    conf = MonitorConf(
        runtime_arg=opts.runtime_argv(),
        runtime_root=str(path / "runtime"),
        restart_policy=pod.spec.restart_policy.value,
        grace_s=pod.spec.termination_grace_period_seconds,
        finish_arg=_finish_argv(pd),
        https_probe_arg=(sys.executable, "-m", "runtime.pod.probe", "https"),
        log_max_bytes=opts.log_max_bytes,
        log_max_files=opts.log_max_files,
        backoff_initial_ms=opts.backoff_initial_ms,
        backoff_max_ms=opts.backoff_max_ms,
        backoff_reset_ms=opts.backoff_reset_ms,
        containers=tuple(
            containers_of(
                pod,
                bundles,
                oom,
                lambda name: _reset_argv(pd, name, name in with_subpaths),
                frozenset(with_subpaths),
            )
        ),
        probe_host=pod_ip or "127.0.0.1",
    )
    write_atomic(path / "monitor.conf", render(conf))


@contextlib.contextmanager
def _steps(pd: PodDir, step: str) -> Iterator[None]:
    try:
        yield
    except (PrepareError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise PrepareError(pd.uid, step, e) from e


def _load_pod(record: dict[str, Any]) -> Pod:
    from runtime.pod.manifest import parse_pod

    if not record.get("manifest"):
        raise PodError(str(record.get("uid")), "created without its manifest: cannot start it")
    data = dict(record["manifest"])
    meta = dict(data.get("metadata") or {})
    meta["uid"] = record["uid"]
    data["metadata"] = meta
    return parse_pod(data, base_dir=record.get("base_dir"))


def start(ref: str, opts: PodOptions, pod: Pod | None = None) -> PodDir:
    """Start a prepared pod: rename it to run/, spawn its monitor, set up its network, write
    its bundles and monitor.conf, say go, and wait until the monitor has accepted its
    configuration (it closes the sync pipe) or refused it. On failure the pod is torn down
    and removed."""
    store = _store(opts)
    pd = store.find(ref)
    if not pd.state.can_start:
        raise InvalidState(pd.uid, f"cannot start a pod in {pd.state.value}/")
    if not pd.try_lock():
        raise InvalidState(pd.uid, "another process holds the pod")
    opts = _options_of(pd, opts)
    record = pd.record()
    mon: _Monitor | None = None
    try:
        if pod is None:
            pod = _load_pod(record)
        with _steps(pd, "resolve probe hosts"):
            from runtime.pod.probehost import resolve_probe_hosts

            pod = resolve_probe_hosts(pod)  # before the monitor: a name that fails stops here
        with store.gc_lock(exclusive=False):
            pd.move(PodState.RUNNING)
            pd.unlock()  # the monitor takes it
            mon = _spawn_monitor(pd, record, opts)
            _go(pd, pod, record, opts, mon)
            os.write(mon.go_fd, b"go\n")
            os.close(mon.go_fd)
            mon.go_fd = -1
            # Before this returns, the monitor has its configuration: else a pod it refused
            # would look like one whose containers are still being created.
            said = _read_to_eof(mon.said_fd, READY_TIMEOUT)
            if said is None:
                raise PrepareError(pd.uid, "start monitor", "no answer to go")
            if said:
                why = said.removeprefix("error ").strip()
                detail = _tail(pd.path / "monitor.log")
                raise PrepareError(
                    pd.uid, "start monitor", why + (f" (monitor.log: {detail})" if detail else "")
                )
    except BaseException:
        if mon is not None and mon.go_fd >= 0:
            os.close(mon.go_fd)  # EOF without go: the monitor exits
        _abort_start(pd, mon)
        raise
    finally:
        if mon is not None:
            os.close(mon.said_fd)
    return pd


def _abort_start(pd: PodDir, mon: _Monitor | None) -> None:
    with contextlib.suppress(Exception):
        pd.refresh()
    if not pd.wait_lock(timeout=10) and mon is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(mon.pid, signal.SIGKILL)
        pd.wait_lock(timeout=10)
    with contextlib.suppress(Exception):
        teardown(pd)
    with contextlib.suppress(Exception):
        pd.remove()
    pd.unlock()


def run(pod: Pod, opts: PodOptions, manifest: Any = None, base_dir: str | None = None) -> PodDir:
    """create then start."""
    pd = create(pod, opts, manifest, base_dir)
    return start(pd.uid, opts, pod)


# ============================================================================= stop / remove


def _monitor_pid(pd: PodDir) -> int | None:
    try:
        return int((pd.path / "monitor.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _finish_here(pd: PodDir) -> None:
    """With the lock held: tear down a pod whose monitor is gone and move it to exited/."""
    teardown(pd)
    pd.refresh()
    if pd.state in (PodState.RUNNING, PodState.PREPARED, PodState.PREPARING):
        pd.move(PodState.EXITED)


def stop(ref: str, opts: PodOptions, grace: int | None = None) -> PodDir:
    """Stop a running pod: its monitor sends SIGTERM, waits ``grace`` seconds (default the
    pod's terminationGracePeriodSeconds), SIGKILLs, tears down. Returns once it is in exited/.
    A prepared pod is torn down; an exited one is left as it is."""
    pd = _find(ref, opts)
    if pd.state is PodState.EXITED:
        return pd
    if pd.state is PodState.PREPARED:
        if not pd.try_lock():
            raise InvalidState(pd.uid, "another process holds the pod")
        try:
            _finish_here(pd)
        finally:
            pd.unlock()
        return pd
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot stop a pod in {pd.state.value}/")
    if not pd.try_lock():
        if grace is not None:
            write_atomic(pd.path / "stop-grace", f"{grace}\n")
        pid = _monitor_pid(pd)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        limit = (grace if grace is not None else _grace_of(pd)) + FINISH_TIMEOUT
        if not pd.wait_lock(timeout=limit):
            raise PodError(pd.uid, f"stop: the monitor (pid {pid}) did not finish")
    try:
        pd.refresh()
        if pd.state is PodState.RUNNING:
            _finish_here(pd)  # the monitor died without finishing
    finally:
        pd.unlock()
    return pd


def _grace_of(pd: PodDir) -> int:
    manifest = pd.record().get("manifest") or {}
    spec = manifest.get("spec") or {}
    value = spec.get("terminationGracePeriodSeconds")
    return int(value) if isinstance(value, int) else 30


def remove(ref: str, opts: PodOptions, force: bool = False) -> str:
    """Remove a pod that is not running (with ``force``, stop it first, without grace).
    Returns its uid."""
    pd = _find(ref, opts)
    if pd.state in (PodState.RUNNING, PodState.PREPARING) and not force:
        raise InvalidState(pd.uid, f"cannot remove a pod in {pd.state.value}/ (stop it or use -f)")
    if pd.state is PodState.RUNNING:
        stop(pd.uid, opts, grace=0)
        pd.refresh()
    if not pd.wait_lock(timeout=30):
        raise InvalidState(pd.uid, "another process holds the pod")
    try:
        if pd.state in (PodState.PREPARING, PodState.PREPARED, PodState.RUNNING):
            teardown(pd)
        try:
            rec = pd.record()
        except PodError:
            rec = {}
        pd.remove()
        if rec.get("name"):
            _store(opts).release_name(str(rec.get("namespace", "")), str(rec["name"]), pd.uid)
    finally:
        pd.unlock()
    return pd.uid


# ============================================================================= status


@dataclass
class ContainerStatus:
    """A container in Kubernetes terms: state Waiting|Running|Terminated with its reason."""

    name: str
    kind: str  # init | app
    image: str
    state: str = "Waiting"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        inner: dict[str, Any] = {}
        if self.state == "Running":
            inner = {"startedAt": self.started_at}
        elif self.state == "Terminated":
            inner = {
                "exitCode": self.exit_code,
                "reason": self.reason,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
            }
            if self.signal is not None:
                inner["signal"] = self.signal
        else:
            inner = {"reason": self.reason}
        if self.message:
            inner["message"] = self.message
        return {
            "name": self.name,
            "image": self.image,
            "state": {self.state[0].lower() + self.state[1:]: inner},
            "ready": self.ready,
            "restartCount": self.restart_count,
        }


@dataclass
class PodStatus:
    uid: str
    name: str
    namespace: str
    location: str  # prepare | prepared | run | exited | garbage
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    qos_class: str
    pod_ip: str | None
    host_network: bool
    created: float
    started_at: str | None = None
    finished_at: str | None = None
    monitor_pid: int | None = None
    reason: str = ""
    init_containers: list[ContainerStatus] = field(default_factory=list)
    containers: list[ContainerStatus] = field(default_factory=list)

    @property
    def all_containers(self) -> list[ContainerStatus]:
        return self.init_containers + self.containers

    def container(self, name: str) -> ContainerStatus:
        for c in self.all_containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "phase": self.phase,
            "qosClass": self.qos_class,
            "podIP": self.pod_ip,
            "startTime": self.started_at,
            "initContainerStatuses": [c.to_json() for c in self.init_containers],
            "containerStatuses": [c.to_json() for c in self.containers],
        }
        if self.reason:
            status["reason"] = self.reason
        return {
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
            "status": status,
            "corral": {
                "location": self.location,
                "monitorPid": self.monitor_pid,
                "created": self.created,
                "finishedAt": self.finished_at,
            },
        }


_STATES = {"waiting": "Waiting", "running": "Running", "terminated": "Terminated"}


def _container_status(pd: PodDir, c: dict[str, Any], has_init: bool) -> ContainerStatus:
    kv = read_keyvalues(pd.path / "status" / c["name"])
    cs = ContainerStatus(c["name"], c["kind"], c["image"])
    if not kv:
        cs.reason = "PodInitializing" if c["kind"] == "app" and has_init else "ContainerCreating"
        return cs

    def num(key: str) -> int | None:
        v = kv.get(key, "")
        return int(v) if v.lstrip("-").isdigit() else None

    cs.state = _STATES.get(kv.get("state", ""), "Waiting")
    cs.reason = kv.get("reason", "")
    cs.message = kv.get("message", "")
    cs.exit_code = num("exit_code")
    cs.signal = num("signal")
    cs.restart_count = num("restart_count") or 0
    cs.ready = kv.get("ready") == "true"
    cs.started_at = kv.get("started_at") or None
    cs.finished_at = kv.get("finished_at") or None
    cs.pid = num("pid")
    return cs


def _monitor_lost(pd: PodDir) -> bool:
    """A run/ pod whose lock is free. Looking takes the lock for an instant: never while a
    start is between the rename to run/ and its monitor's lock, which that would make fail."""
    with pd.store.no_start_in_window() as quiet:
        if not quiet or pd.is_locked():
            return False
    pd.refresh()
    return pd.state is PodState.RUNNING


def _status_of(pd: PodDir) -> PodStatus:
    rec = pd.record()
    kv = read_keyvalues(pd.path / "pod.status")
    phase = kv.get("phase") or "Pending"
    reason = ""
    lost = pd.state is PodState.RUNNING and _monitor_lost(pd)
    if lost:
        phase, reason = "Unknown", "MonitorLost"
    if pd.state is PodState.EXITED and phase in ("Pending", "Running"):
        phase = "Failed"
    containers = rec.get("containers") or []
    has_init = any(c["kind"] == "init" for c in containers)
    st = PodStatus(
        uid=pd.uid,
        name=str(rec.get("name", "")),
        namespace=str(rec.get("namespace", "")),
        location=pd.state.value,
        phase=phase,
        qos_class=str(rec.get("qos", "")),
        pod_ip=rec.get("pod_ip"),
        host_network=bool(rec.get("host_network")),
        created=float(rec.get("created", 0)),
        started_at=kv.get("started_at") or None,
        finished_at=kv.get("finished_at") or None,
        monitor_pid=int(kv["monitor_pid"]) if kv.get("monitor_pid", "").isdigit() else None,
        reason=reason,
    )
    for c in containers:
        cs = _container_status(pd, c, has_init)
        if lost or pd.state in (PodState.EXITED, PodState.GARBAGE):
            _unmonitored(cs, pd.uid)
        (st.init_containers if c["kind"] == "init" else st.containers).append(cs)
    return st


def _in_pod_cgroup(pid: int, uid: str) -> bool:
    """The kernel's word that ``pid`` is a live process (not a zombie) of pod ``uid`` (not a
    reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/cgroup") as f:
            return f"/pod{uid}/" in f.read()
    except (OSError, IndexError):
        return False


def _unmonitored(cs: ContainerStatus, uid: str) -> None:
    """A container whose monitor is gone (or whose pod finished): its status file says what
    the monitor last saw. Nobody probes it, so it is not ready; a container the file calls
    running is running only if the kernel still has its process in the pod's cgroup, else
    its state is unknown, which the kubelet reports as terminated, ContainerStatusUnknown."""
    cs.ready = False
    if cs.state == "Running" and not (cs.pid and _in_pod_cgroup(cs.pid, uid)):
        cs.state, cs.reason = "Terminated", "ContainerStatusUnknown"
        cs.exit_code, cs.signal = 137, None
        cs.message = "the container could not be located: the pod's monitor is gone"
        cs.pid = None


def status(ref: str, opts: PodOptions) -> PodStatus:
    return _status_of(_find(ref, opts))


def list_pods(opts: PodOptions) -> list[PodStatus]:
    out = []
    for pd in _store(opts).list():
        with contextlib.suppress(PodError, FileNotFoundError):
            out.append(_status_of(pd))
    return sorted(out, key=lambda s: s.created)


def wait(ref: str, opts: PodOptions, timeout: float | None = None, interval: float = 0.1) -> bool:
    """Wait until the pod has finished (it is in exited/); False on timeout."""
    pd = _find(ref, opts)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pd.refresh()
        if pd.state in (PodState.EXITED, PodState.GARBAGE):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ============================================================================= logs


def _container_names(pd: PodDir, container: str | None) -> list[str]:
    names = [c["name"] for c in pd.record().get("containers") or []]
    if container is None:
        return names
    if container not in names:
        raise PodError(pd.uid, f"no container {container!r} (the pod has {', '.join(names)})")
    return [container]


def logs(
    ref: str, opts: PodOptions, container: str | None = None, previous: bool = False
) -> list[str]:
    """The text lines of a container's current run (``previous``: the run before)."""
    from runtime.pod.logs import read_log, runs

    pd = _find(ref, opts)
    names = _container_names(pd, container)
    if container is None:
        app = [c["name"] for c in pd.record()["containers"] if c["kind"] == "app"]
        if len(app) != 1:
            raise PodError(pd.uid, f"a container name must be given: one of {', '.join(names)}")
        names = app
    log_dir = pd.path / "logs" / names[0]
    have = runs(log_dir)
    if not have:
        return []
    run_no = have[-1] - (1 if previous else 0)
    if previous and run_no not in have:
        raise PodError(pd.uid, f"container {names[0]!r} has no previous run")
    return [ln.text for ln in read_log(log_dir, run_no, names[0])]


def follow_logs(
    ref: str,
    opts: PodOptions,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, str]]:
    """(container, line) as they are written, all containers or one, across restarts and
    rotations, until the pod has finished (or ``should_stop()``)."""
    from runtime.pod.logs import LogFollower

    pd = _find(ref, opts)
    names = _container_names(pd, container)
    follower = LogFollower(pd.store.root / "run" / pd.uid / "logs", names)
    try:
        while True:
            pd.refresh()
            done = pd.state is not PodState.RUNNING or (should_stop is not None and should_stop())
            if pd.state is PodState.EXITED:
                follower.logs_dir = pd.path / "logs"
                for t in follower.tails.values():
                    t.log_dir = pd.path / "logs" / t.container
            for line in follower.poll():
                yield line.container, line.text
            if done:
                return
            time.sleep(interval)
    finally:
        follower.close()


# ============================================================================= exec


def exec_in(
    ref: str,
    opts: PodOptions,
    command: Sequence[str],
    container: str | None = None,
    tty: bool = False,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` in a running container of the pod (the first app container unless
    ``container``); stdio as for ``subprocess.run``."""
    pd = _find(ref, opts)
    if pd.state is not PodState.RUNNING:
        raise InvalidState(pd.uid, f"cannot exec in a pod in {pd.state.value}/")
    rec = pd.record()
    if container is None:
        container = next(c["name"] for c in rec["containers"] if c["kind"] == "app")
    _container_names(pd, container)
    popts = _options_of(pd, opts)
    argv = [*popts.runtime_argv(), "--root", str(pd.path / "runtime"), "exec"]
    if tty:
        argv.append("-t")
    argv += [container, *command]
    return subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=stderr, check=False)


# ============================================================================= gc


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
    store = _store(opts)
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
                    _finish_here(pd)
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
        for pd in _store(opts).list()
        if pd.state in (PodState.PREPARING, PodState.PREPARED, PodState.RUNNING)
    ]
