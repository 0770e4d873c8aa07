"""Starting a prepared pod: the monitor launch protocol (docs/pods.md, "Start-up handshake").

``start`` renames the pod into ``run/`` (holding ``<pods root>/lock`` shared), spawns the
monitor with a pair of sync pipes, waits for its ``ready <pid> <pidns pid>``, sets up the pod
network in the monitor's network namespace, writes one OCI bundle per container and
``monitor.conf``, says ``go`` and waits until the monitor closes its pipe (configuration
accepted) or writes an error line. On failure the pod is torn down and removed.

With our own runtime, the pod's address is reserved before ``go`` and its interface made
after: the monitor's ``corral-oci run``s create the containers meanwhile and wait, created,
at a start gate that ``net`` opens (``monitor.conf``'s ``net_gate``), so no container runs
before its network is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import msgspec

from runtime.pod.hostfacts import (
    cap_last,
    memory_capacity,
    min_oom_score_adj,
    oom_file,
    oom_file_below,
)
from runtime.pod.monitor import Started, StartFailed
from runtime.pod.prepare import PodOptions, PrepareError, teardown
from runtime.pod.record import PodRecord
from runtime.pod.store import InvalidState, PodDir, PodError, PodState, write_atomic

if TYPE_CHECKING:
    from runtime.network import DnsConfig
    from runtime.pod.manifest import Pod

__all__ = ["READY_TIMEOUT", "load_pod", "start"]

READY_TIMEOUT = 30.0  # seconds for the monitor's "ready"


def _monitor_exe(opts: PodOptions) -> str:
    if opts.monitor:
        return opts.monitor
    from runtime.pod.monitor import monitor_path

    return str(monitor_path())


def _spawn_monitor(pd: PodDir, record: PodRecord, opts: PodOptions) -> Started:
    from runtime.pod.monitor import spawn

    flags = []
    if record.host_network:
        flags.append("--host-network")
    if record.share_pid:
        flags.append("--share-pid")
    try:
        return spawn(_monitor_exe(opts), flags, pd.path, READY_TIMEOUT)
    except StartFailed as e:
        raise PrepareError(pd.uid, e.step, e.why) from e


def _finish_argv(pd: PodDir) -> tuple[str, ...]:
    return (sys.executable, "-m", "runtime.pod.finish", str(pd.store.root / "run" / pd.uid))


def _reset_argv(pd: PodDir, container: str, subpaths: bool = False) -> tuple[str, ...]:
    """The monitor's prestart_arg: a restarted container gets a fresh writable layer; with
    ``subpaths``, its subPath mounts are made (again) before every create."""
    run_dir = str(pd.store.root / "run" / pd.uid)
    flag = ("--subpaths",) if subpaths else ()
    return (sys.executable, "-m", "runtime.pod.reset", *flag, run_dir, container)


def _pod_dns(pod: Pod, opts: PodOptions) -> DnsConfig:
    """The pod's resolver settings from its dnsPolicy and dnsConfig, the node network's cluster
    DNS (none without a network) and the node's resolv.conf."""
    from runtime.network import DnsConfig, host_resolv, pod_dns

    spec = pod.spec
    wants_cluster = spec.dns_policy == "ClusterFirstWithHostNet" or (
        spec.dns_policy == "ClusterFirst" and not spec.host_network
    )
    cluster = opts.network_settings().dns if opts.network and wants_cluster else DnsConfig()
    extra = pod.spec.dns_config
    return pod_dns(
        pod.spec.dns_policy,
        pod.namespace,
        cluster,
        host_resolv(),
        host_network=pod.spec.host_network,
        extra_nameservers=extra.nameservers if extra else (),
        extra_searches=extra.searches if extra else (),
        extra_options=extra.options if extra else (),
    )


def _go(
    pd: PodDir, pod: Pod, record: PodRecord, opts: PodOptions, mon: Started
) -> Callable[[], None] | None:
    """Network, bundles, monitor.conf: everything between "ready" and "go". Returns what
    sets up the pod's interface when that is left for after ``go`` (the start gate), else
    None."""
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
    domain = ""
    link: Callable[[], None] | None = None
    if not pod.spec.host_network and opts.network:
        # teardown looks for it: write it first. The files of a started pod are not
        # fsync'd: a machine crash ends the pod, and they are written again when it starts.
        write_atomic(path / "network.json", "{}\n", durable=False)
        with _steps(pd, "network setup"):
            from runtime.network import node_network

            settings = opts.network_settings()
            node = node_network(settings, opts.node_netns)
            ports = [
                PortMapping(p.host_port, p.container_port, p.protocol.value.lower())
                for c in pod.spec.containers
                for p in c.ports
                if p.host_port
            ]
            net, old = node.reserve_pod(pd.uid, ports)
            pod_ip = str(net.ip)
            domain = pod.host_domain(settings.dns.cluster_domain)

        def link_pod() -> None:
            with _steps(pd, "network setup"):
                node.link_pod(net, f"/proc/{mon.pid}/ns/net", old)
                text = json.dumps(net.to_json(), indent=1) + "\n"
                write_atomic(path / "network.json", text, durable=False)

        # Only our runtime takes the start gate (`run --start-gate`), and the containers'
        # creation must not need the network: pod bundles have no hooks and no sysctls.
        if opts.runtime:
            link_pod()
        else:
            link = link_pod
    if not pod.spec.host_network and not opts.network:
        with _steps(pd, "loopback up"):
            from runtime.network import in_netns, lo_up

            in_netns(f"/proc/{mon.pid}/ns/net", lo_up)
    hostname = pod.hostname if not pod.spec.host_network else os.uname().nodename
    with _steps(pd, "resolv.conf"):
        dns = _pod_dns(pod, opts)
    write_pod_files(path / "etc", hostname, pod_ip, dns, domain=domain)
    record = record.replace(pod_ip=pod_ip)
    pd.write_record(record, durable=False)

    store = Store(opts.image_root)
    qos = pod_qos(pod)
    capacity = memory_capacity()
    last_cap = cap_last()
    min_adj = min_oom_score_adj()
    bundles: dict[str, str] = {}
    oom: dict[str, str | None] = {}
    with_subpaths: set[str] = set()
    for c in pod.all_containers:
        cdir = path / "containers" / c.name
        with _steps(pd, f"bundle {c.name}"):
            found = record.container(c.name)
            if found is None:
                raise PodError(pd.uid, f"container {c.name!r} is not in pod.json")
            ctx = BundleContext(
                uid=pd.uid,
                rootfs=str(cdir / "rootfs"),
                image_config=store.config(store.get(found.image_id)),
                cgroup_parent=opts.cgroup_parent,
                ns_pid=mon.pid,
                pidns_pid=mon.pidns_pid,
                memory_capacity=capacity,
                pod_ip=pod_ip,
                volume_paths={k: str(path / v) for k, v in (record.volumes or {}).items()},
                etc_dir=str(path / "etc"),
                shm_dir=str(path / "shm"),
                pod_dir=str(path),
                cap_last=last_cap,
                min_oom_score_adj=min_adj,
            )
            spec = container_config(pod, c, ctx)
            subpaths = subpath_mounts(pod, c, ctx)
            if subpaths:
                write_plan(cdir, subpaths)  # mounted by the prestart step (reset --subpaths)
                with_subpaths.add(c.name)
            # msgspec: the spec (seccomp profile and all) encodes ten times faster than json's
            text = msgspec.json.format(msgspec.json.encode(spec), indent=1) + b"\n"
            write_atomic(cdir / "config.json", text, 0o600, durable=False)
        bundles[c.name] = str(cdir)
        if record.cgroup and record.cgroup.paths:  # below the pod's: no lookup again
            oom[c.name] = oom_file_below(record.cgroup.paths, c.name)
        else:
            oom[c.name] = oom_file(
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
        net_gate=link is not None,
        # our own runtime's containers are deleted by the teardown that finish_arg runs,
        # through the library; another runtime's state only that runtime can delete
        finish_deletes=not opts.runtime,
    )
    write_atomic(path / "monitor.conf", render(conf), durable=False)
    return link


@contextlib.contextmanager
def _steps(pd: PodDir, step: str) -> Iterator[None]:
    try:
        yield
    except (PrepareError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise PrepareError(pd.uid, step, e) from e


def load_pod(record: PodRecord) -> Pod:
    """The pod of a record, from the manifest kept in it."""
    from runtime.pod.manifest import parse_pod

    if not record.manifest:
        raise PodError(record.uid, "created without its manifest: cannot start it")
    data = dict(record.manifest)
    meta = dict(data.get("metadata") or {})
    meta["uid"] = record.uid
    data["metadata"] = meta
    return parse_pod(data, base_dir=record.base_dir)


def start(pd: PodDir, opts: PodOptions, pod: Pod | None = None) -> PodDir:
    """Start a prepared pod: rename it to run/, spawn its monitor, set up its network, write
    its bundles and monitor.conf, say go, and wait until the monitor has accepted its
    configuration (it closes the sync pipe) or refused it. On failure the pod is torn down
    and removed."""
    store = pd.store
    if not pd.state.can_start:
        raise InvalidState(pd.uid, f"cannot start a pod in {pd.state.value}/")
    if not pd.try_lock():
        raise InvalidState(pd.uid, "another process holds the pod")
    try:
        record = pd.record()
    except BaseException:
        pd.unlock()  # an unreadable record: the pod stays as it is
        raise
    if record is not None:
        opts = record.pod_options(opts)
    mon: Started | None = None
    try:
        if record is None:
            raise PodError(pd.uid, f"{pd.path}/pod.json is missing: cannot start it")
        if pod is None:
            pod = load_pod(record)
        with _steps(pd, "resolve probe hosts"):
            from runtime.pod.probehost import resolve_probe_hosts

            pod = resolve_probe_hosts(pod)  # before the monitor: a name that fails stops here
        with store.gc_lock(exclusive=False):
            pd.move(PodState.RUNNING)
            pd.unlock()  # the monitor takes it
            mon = _spawn_monitor(pd, record, opts)
            link = _go(pd, pod, record, opts, mon)
            # Before this returns, the monitor has its configuration: else a pod it refused
            # would look like one whose containers are still being created.
            try:
                if link is None:
                    mon.go(pd.path, READY_TIMEOUT)
                else:
                    mon.go_gated()  # the containers are created meanwhile
                    link()
                    mon.net_ready(pd.path, READY_TIMEOUT)
            except StartFailed as e:
                raise PrepareError(pd.uid, e.step, e.why) from e
    except BaseException:
        if mon is not None:
            mon.close()  # EOF without go: the monitor exits
        _abort_start(pd, mon)
        raise
    finally:
        if mon is not None:
            mon.close()
    return pd


def _abort_start(pd: PodDir, mon: Started | None) -> None:
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
