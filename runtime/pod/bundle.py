"""From a pod manifest to each container's OCI config.json: a pure function, no I/O.

``container_config(pod, container, ctx)`` starts from ``runtime.config.default_spec()``, puts the
image's process (``images.bundle.oci_config``) under the manifest's command/args/env/workingDir/
user, then adds what the kubelet and containerd add for a pod:

- namespaces: network, IPC and UTS joined by path from the pod's monitor (``/proc/<pid>/ns/*``;
  with hostNetwork the host's network and UTS, with hostIPC the host's IPC), PID joined from
  the pod's pid-1 process with shareProcessNamespace (an ephemeral container's target's with
  targetContainerName), the host's with hostPID, else new; mount and cgroup namespaces of its
  own;
- the kubelet's cgroup: ``<cgroup parent>/<QoS parent>/pod<uid>/<container>`` with cpu shares,
  quota and the memory limit from the container's resources, and oom_score_adj by QoS class;
- containerd's default capability set, changed by securityContext.capabilities; privileged
  gives every capability, every device, no masked or read-only paths; allowPrivilegeEscalation
  false sets no_new_privs;
- volume mounts, the pod's shared /dev/shm, and /etc/hosts, /etc/hostname, /etc/resolv.conf;
  a mount with a subPath (or subPathExpr, expanded from the container's env) binds a path
  below the pod's ``volume-subpaths/`` that ``runtime.pod.subpath`` mounts at container start
  (``subpath_mounts`` lists them), never the volume's host path joined with the subPath;
- env with HOSTNAME first, fieldRefs resolved and ``$(VAR)`` references expanded as Kubernetes
  does (also in command and args).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from images.bundle import oci_config
from runtime import config as cfg
from runtime.pod.manifest import (
    ConfigMapVolume,
    Container,
    Pod,
    SecretVolume,
)
from runtime.pod.qos import (
    container_cgroup_values,
    container_cgroups_path,
    container_oom_score_adj,
    pod_cgroups_path,
    pod_qos,
    qos_dir,
)
from runtime.pod.subpath import SUBPATH_DIR, SubPathMount

__all__ = [
    "DEFAULT_CAPABILITIES",
    "BundleContext",
    "container_cgroups_path",
    "container_config",
    "subpath_mounts",
    "pod_cgroups_path",
    "expand",
    "qos_dir",
]

# containerd's default set for CRI containers.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


@dataclass(frozen=True, slots=True)
class BundleContext:
    """What the pod has become on this host by the time its bundles are written."""

    uid: str
    rootfs: str  # the container's mounted rootfs (absolute)
    image_config: Mapping[str, Any]  # the image's config blob (``Store.config``)
    cgroup_parent: str  # "/kubepods", or relative (below the runtime's own cgroup)
    ns_pid: int  # the monitor: its /proc/<pid>/ns/{net,ipc,uts}
    memory_capacity: int  # bytes, for Burstable oom_score_adj
    pidns_pid: int = 0  # pid 1 of the pod's shared pid namespace, 0 without
    pod_ip: str | None = None
    volume_paths: Mapping[str, str] = field(default_factory=dict)  # volume -> host directory
    etc_dir: str | None = None  # holds hosts, hostname, resolv.conf
    shm_dir: str | None = None  # the pod's /dev/shm
    pod_dir: str = ""  # subPath mounts go below <pod_dir>/volume-subpaths/
    cap_last: int = 40  # highest capability the kernel knows (/proc/sys/kernel/cap_last_cap)
    # Lowest oom_score_adj the runtime may set: 0 without CAP_SYS_RESOURCE (the kernel refuses
    # negative values then); Guaranteed pods' -998 is raised to it.
    min_oom_score_adj: int = -1000


# ============================================================================= env


def expand(text: str, env: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined VAR is replaced, ``$$`` is a literal ``$``,
    and anything else (an undefined VAR, an unclosed reference) is left as written (and the
    undefined VAR's name appended to ``missing``)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "(":
            end = text.find(")", i + 2)
            if end > 0:
                name = text[i + 2 : end]
                if name in env:
                    out.append(env[name])
                else:
                    out.append(text[i : end + 1])
                    if missing is not None:
                        missing.append(name)
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _field_value(pod: Pod, path: str, ctx: BundleContext) -> str:
    if path == "metadata.name":
        return pod.name
    if path == "metadata.namespace":
        return pod.namespace
    if path == "metadata.uid":
        return ctx.uid
    if path == "status.podIP":
        return ctx.pod_ip or ""
    raise ValueError(f"unsupported fieldRef {path}")


def container_env(pod: Pod, container: Container, ctx: BundleContext) -> list[str]:
    """``NAME=value`` entries the manifest adds after the image's env (HOSTNAME first)."""
    values: dict[str, str] = {"HOSTNAME": pod.hostname}
    for e in container.env:
        if e.field_ref is not None:
            values[e.name] = _field_value(pod, e.field_ref, ctx)
        else:
            values[e.name] = expand(e.value, values)
    return [f"{k}={v}" for k, v in values.items()]


# ============================================================================= security


def _capabilities(container: Container, cap_last: int) -> list[str]:
    everything = [n for n, bit in cfg.CAPABILITIES.items() if bit <= cap_last]
    sc = container.security_context
    if sc.privileged:
        return sorted(everything, key=lambda n: cfg.CAPABILITIES[n])
    add, drop = sc.capabilities.add, sc.capabilities.drop
    caps = list(everything if "ALL" in add else DEFAULT_CAPABILITIES)
    if "ALL" in drop:
        caps = []
    for c in add:
        if c != "ALL" and c not in caps:
            caps.append(c)
    caps = [c for c in caps if c not in drop]
    return sorted(set(caps), key=lambda n: cfg.CAPABILITIES.get(n, 99))


def _user(container: Container, image_user: str) -> str | None:
    """The user spec for ``oci_config`` ("uid", "uid:gid", "name:gid"), None for the image's."""
    sc = container.security_context
    if sc.run_as_user is None and sc.run_as_group is None:
        return None
    user = str(sc.run_as_user) if sc.run_as_user is not None else image_user.partition(":")[0]
    if sc.run_as_group is not None:
        return f"{user or 0}:{sc.run_as_group}"
    return user


# ============================================================================= the config


def _bind(source: str, dest: str, readonly: bool) -> dict[str, Any]:
    return {
        "destination": dest,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", "ro" if readonly else "rw"],
    }


def subpath_mounts(pod: Pod, container: Container, ctx: BundleContext) -> list[SubPathMount]:
    """The subPath mounts of ``container``, one per volumeMount with a subPath or
    subPathExpr, in order: resolved in the volume's host directory and mounted on
    ``<pod_dir>/volume-subpaths/<volume>/<container>/<index>`` at container start. A
    subPathExpr is expanded from the container's env; a variable that is undefined or empty
    makes the mount's ``error`` (as the kubelet's "missing value for")."""
    env: dict[str, str] | None = None
    out = []
    for i, vm in enumerate(container.volume_mounts):
        if not vm.sub_path and not vm.sub_path_expr:
            continue
        error = ""
        sub_path = vm.sub_path or ""
        if vm.sub_path_expr:
            if env is None:
                pairs = (e.split("=", 1) for e in container_env(pod, container, ctx))
                env = {k: v for k, v in pairs if v}
            missing: list[str] = []
            sub_path = expand(vm.sub_path_expr, env, missing)
            if missing:
                error = f"subPathExpr {vm.sub_path_expr!r}: missing value for {', '.join(missing)}"
        target = posixpath.join(ctx.pod_dir, SUBPATH_DIR, vm.name, container.name, str(i))
        source = ctx.volume_paths[vm.name]
        out.append(SubPathMount(vm.name, sub_path, source, target, error))
    return out


def container_config(pod: Pod, container: Container, ctx: BundleContext) -> dict[str, Any]:
    """The complete config.json of one container of ``pod``."""
    spec = cfg.default_spec()
    sc = container.security_context
    image_cfg = dict(ctx.image_config)
    image_user = str((image_cfg.get("config") or {}).get("User") or "")
    env = container_env(pod, container, ctx)
    env_map = dict(e.split("=", 1) for e in env)
    command = [expand(a, env_map) for a in container.command]
    args = [expand(a, env_map) for a in container.args]
    image = oci_config(
        image_cfg,
        ctx.rootfs,
        entrypoint=command or None,
        args=args if (args or command) else None,
        env=env,
        user=_user(container, image_user),
        cwd=container.working_dir,
    )
    process = spec["process"]
    process.update(image["process"])
    # tty: the monitor hands create a console socket and logs the pty as stdout (as conmon).
    process["terminal"] = bool(container.tty)
    caps = _capabilities(container, ctx.cap_last)
    process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    process["noNewPrivileges"] = sc.allow_privilege_escalation is False and not sc.privileged
    adj = container_oom_score_adj(pod, container, ctx.memory_capacity)
    process["oomScoreAdj"] = max(adj, ctx.min_oom_score_adj)
    spec["root"] = {"path": ctx.rootfs, "readonly": sc.read_only_root_filesystem}
    spec["annotations"] = {
        **image.get("annotations", {}),
        "io.kubernetes.pod.name": pod.name,
        "io.kubernetes.pod.namespace": pod.namespace,
        "io.kubernetes.pod.uid": ctx.uid,
        "io.kubernetes.container.name": container.name,
    }

    host_network = pod.spec.host_network
    mon = f"/proc/{ctx.ns_pid}/ns"
    namespaces: list[dict[str, str]] = [{"type": "mount"}, {"type": "cgroup"}]
    # hostIPC, hostPID: no entry, so the runtime's own (the monitor runs it in the node's)
    if not pod.spec.host_ipc:
        namespaces.append({"type": "ipc", "path": f"{mon}/ipc"})
    if pod.spec.host_pid:
        pass
    elif ctx.pidns_pid:
        namespaces.append({"type": "pid", "path": f"/proc/{ctx.pidns_pid}/ns/pid"})
    else:
        namespaces.append({"type": "pid"})
    if host_network:
        spec.pop("hostname", None)
    else:
        namespaces.append({"type": "network", "path": f"{mon}/net"})
        namespaces.append({"type": "uts", "path": f"{mon}/uts"})
        spec["hostname"] = pod.hostname
    linux = spec["linux"]
    linux["namespaces"] = namespaces

    qos = pod_qos(pod)
    linux["cgroupsPath"] = container_cgroups_path(ctx.cgroup_parent, qos, ctx.uid, container.name)
    values = container_cgroup_values(container)
    resources: dict[str, Any] = {"devices": linux["resources"]["devices"]}
    cpu: dict[str, int] = {}
    if values.cpu_shares is not None:
        cpu["shares"] = values.cpu_shares
    if values.cpu_quota is not None and values.cpu_period is not None:
        cpu["quota"] = values.cpu_quota
        cpu["period"] = values.cpu_period
    if cpu:
        resources["cpu"] = cpu
    if values.memory_limit is not None:
        resources["memory"] = {"limit": values.memory_limit}
    linux["resources"] = resources

    mounts: list[dict[str, Any]] = spec["mounts"]
    if sc.privileged:
        resources["devices"] = [{"allow": True, "access": "rwm"}]
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    if ctx.shm_dir is not None:
        mounts[:] = [m for m in mounts if m["destination"] != "/dev/shm"]
        mounts.append(_bind(ctx.shm_dir, "/dev/shm", False))
    subpaths = iter(subpath_mounts(pod, container, ctx))
    for vm in container.volume_mounts:
        volume = pod.volume(vm.name)
        source = ctx.volume_paths[vm.name]
        if vm.sub_path or vm.sub_path_expr:
            source = next(subpaths).target  # never the volume joined with the subPath
        projected = isinstance(volume.source, (ConfigMapVolume, SecretVolume))
        mounts.append(_bind(source, vm.mount_path, vm.read_only or projected))
    if ctx.etc_dir is not None:
        mounted = {vm.mount_path for vm in container.volume_mounts}
        for name in ("hosts", "hostname", "resolv.conf"):
            dest = f"/etc/{name}"
            if dest not in mounted:
                mounts.append(_bind(posixpath.join(ctx.etc_dir, name), dest, False))
    return spec
