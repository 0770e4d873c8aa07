"""Prepare a pod on this host and tear it down again.

``prepare`` turns a validated manifest into what the pod's containers need before any of them
runs: images (tarballs imported on the fly, names found in the store or pulled by
imagePullPolicy, a store ref per pod), the pod cgroup with its
limits, volumes, the pod's /dev/shm, and one overlay rootfs per container. It records each
object in pod.json *before* making it, so ``teardown`` (which reads only pod.json and the pod
directory, never the manifest's files) can undo exactly what exists, from any process, after a
crash at any point. ``teardown`` is idempotent and goes on after a failed step; it raises the
first error at the end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral_common import hostsys
from corral_common.defaults import IMAGE_ROOT, NETWORK_CONFIG, POD_CGROUP_PARENT
from corral_common.rmtree import rmtree
from runtime.errors import CorralError
from runtime.pod.qos import QOSClass, pod_cgroup_values, pod_cgroups_path, pod_qos, qos_dir
from runtime.pod.record import CgroupRecord, ContainerRecord, PodRecord
from runtime.pod.store import DEFAULT_ROOT, PodDir, PodError

if TYPE_CHECKING:
    from runtime.pod.manifest import HostPathVolume, Pod

__all__ = [
    "DEFAULT_CGROUP_PARENT",
    "DEFAULT_NETWORK_CONFIG",
    "RUNTIME_HANDLERS",
    "NoRuntimeHandler",
    "PodOptions",
    "mounts_under",
    "pod_cgroup_dirs",
    "prepare",
    "remove_empty_cgroup",
    "teardown",
]

DEFAULT_CGROUP_PARENT = POD_CGROUP_PARENT
DEFAULT_NETWORK_CONFIG = NETWORK_CONFIG
DEFAULT_POD_CIDR = "10.87.0.0/24"
SHM_SIZE = 64 * 1024 * 1024  # the kubelet's default /dev/shm for a pod sandbox
SECRET_SIZE = 16 * 1024 * 1024

MS_NOSUID, MS_NODEV, MS_NOEXEC = hostsys.MS_NOSUID, hostsys.MS_NODEV, hostsys.MS_NOEXEC
MNT_DETACH = hostsys.MNT_DETACH


@dataclass(frozen=True, slots=True)
class PodOptions:
    """How this host runs pods; saved in pod.json so any later process tears down the same."""

    root: str = DEFAULT_ROOT
    image_root: str = IMAGE_ROOT
    cgroup_parent: str = DEFAULT_CGROUP_PARENT  # relative: below the starting process's cgroup
    network: bool = True  # False: the pod gets a network namespace with lo only
    network_config: str | None = None  # node network file; None: DEFAULT_NETWORK_CONFIG or
    node_netns: str | None = None  # defaults. The node's netns (a path); None: ours
    monitor: str | None = None  # the corral-monitor executable; None: monitor_path()
    runtime: tuple[str, ...] = ()  # argv prefix of the OCI runtime; () = our corral-oci
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 5
    backoff_initial_ms: int = 10_000
    backoff_max_ms: int = 300_000
    backoff_reset_ms: int = 600_000
    # where images come from when a container's imagePullPolicy pulls (images.pull.Options):
    registries_conf: str | None = None  # None: $CORRAL_REGISTRIES_CONF or the system file
    auth_file: str | None = None  # None: the default auth file (corral login)
    certs_dir: str | None = None  # None: /etc/containers/certs.d
    tls_verify: bool = True  # False: plain HTTP and unverified TLS allowed

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["runtime"] = list(self.runtime)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PodOptions:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "runtime" in kw:
            kw["runtime"] = tuple(kw["runtime"])
        return cls(**kw)

    def runtime_argv(self) -> tuple[str, ...]:
        if self.runtime:
            return self.runtime
        exe = Path(sys.executable).parent / "corral-oci"
        if exe.is_file() and os.access(exe, os.X_OK):
            return (str(exe),)
        return (sys.executable, "-m", "runtime.cli.oci")

    def for_handler(self, handler: str | None, pod: str = "") -> PodOptions:
        """These options for a pod naming a runtime handler (its ``spec.runtimeClassName``:
        on a node, the handler of its RuntimeClass, as the CRI's runtime_handler): another
        OCI runtime found on PATH (``RUNTIME_HANDLERS``, as k3s' containerd configures the
        runtimes it finds), ``corral`` for corral-oci; NoRuntimeHandler otherwise."""
        if not handler:
            return self
        if handler == OWN_HANDLER:
            return replace(self, runtime=())
        import shutil  # only for a pod naming a handler: not on the commands' start-up path

        exe = shutil.which(handler) if handler in RUNTIME_HANDLERS else None
        if exe is None:
            raise NoRuntimeHandler(pod, handler)
        return replace(self, runtime=(exe,))

    def network_settings(self) -> Any:
        """The node network config (runtime.network.NetworkConfig)."""
        from runtime.network import load_config, parse_config

        path = self.network_config
        if path is None and os.path.exists(DEFAULT_NETWORK_CONFIG):
            path = DEFAULT_NETWORK_CONFIG
        if path is not None:
            return load_config(path)
        return parse_config({"podCIDR": DEFAULT_POD_CIDR})


# The OCI runtimes a pod may name as its handler besides corral-oci ("corral"), when the node
# has them on PATH.
RUNTIME_HANDLERS = ("runc", "crun")
OWN_HANDLER = "corral"


class NoRuntimeHandler(PodError):
    """The pod names a runtime handler this node does not have (containerd's words)."""

    def __init__(self, pod: str, handler: str) -> None:
        self.handler = handler
        super().__init__(
            pod, f'failed to get sandbox runtime: no runtime for "{handler}" is configured'
        )


class PrepareError(PodError):
    """A step of preparing the pod failed: ``step`` names it and its object."""

    def __init__(self, pod: str, step: str, cause: BaseException | str) -> None:
        self.step = step
        super().__init__(pod, f"{step}: {cause}")


# ============================================================================= mounts


def mount_tmpfs(dest: Path, size: int | None, mode: int = 0o755) -> None:
    data = f"mode={mode:o}" + (f",size={size}" if size else "")
    flags = MS_NOSUID | MS_NODEV
    hostsys.host().mount("tmpfs", dest, "tmpfs", flags, data, step=f"mount tmpfs on {dest}")


def mounts_under(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    return hostsys.mounts_under(path)


def umount_all(path: str | os.PathLike[str]) -> None:
    """Unmount everything at or below ``path`` (repeatedly: mounts may be stacked)."""
    hostsys.umount_all(path)


# ============================================================================= prepare


def _image_store(opts: PodOptions) -> Any:
    from images.store import Store

    return Store(opts.image_root)


def _step(pod: PodDir, step: str) -> Any:
    """Name a failed step in the error it raises."""

    class _Ctx:
        def __enter__(self) -> None:
            return None

        def __exit__(self, et: Any, e: BaseException | None, tb: Any) -> bool:
            if e is None or isinstance(e, (PrepareError, KeyboardInterrupt)):
                return False
            if isinstance(e, hostsys.HostError):  # it names its own step and object
                raise PrepareError(pod.uid, step, str(e)) from e
            if isinstance(e, OSError) and e.strerror and e.filename is None:
                raise PrepareError(pod.uid, step, e.strerror) from e
            raise PrepareError(pod.uid, step, e) from e

    return _Ctx()


def prepare(
    pod_dir: PodDir,
    pod: Pod,
    opts: PodOptions,
    record: PodRecord,
    backoff: Any = None,
    credentials: Any = None,
) -> PodRecord:
    """Make everything the pod needs before it starts (see the module doc). ``record`` is the
    initial pod.json (uid, name, options); it is extended and written as objects are made,
    and returned. Images are had by each container's imagePullPolicy
    (``runtime.pod.imagepull``; ``backoff`` is its ``PullBackoff``, kept by the caller;
    ``credentials`` the pod's own registry credentials, a ``Keyring``). On failure the caller
    runs ``teardown``."""
    from runtime.pod.imagepull import ensure_image

    path = pod_dir.path
    uid = pod_dir.uid
    qos = pod_qos(pod)
    for d in ("containers", "volumes", "logs", "status", "runtime", "etc"):
        sub = f"{path}/{d}"
        try:
            os.mkdir(sub, 0o700 if d != "volumes" else 0o755)
        except FileExistsError:
            if not os.path.isdir(sub):
                raise
    os.chmod(path, 0o711)  # containers running as non-root users reach their volumes

    # images: import tarballs, find or pull by policy, take a ref per pod (recorded first)
    store = _image_store(opts)
    images: dict[str, Any] = {}
    had: dict[tuple[str, str], Any] = {}  # (image, policy) -> Image: pulled once per pod
    for c in pod.all_containers:
        with _step(pod_dir, f"image {c.image}"):
            if c.image_archive is not None:
                imported = store.import_path(c.image_archive)
                if len(imported) != 1:
                    raise CorralError(f"{c.image_archive} holds {len(imported)} images, not 1")
                img = imported[0]
            else:
                key = (c.image, c.image_pull_policy.value)
                img = had.get(key) or ensure_image(store, uid, c, opts, backoff, credentials)
                had[key] = img
            images[c.name] = img
    # the pod cgroup's manager (nothing made yet), recorded with the images in one write
    from runtime import cgroups
    from runtime.config import parse_resources

    cg_path = pod_cgroups_path(opts.cgroup_parent, qos, uid)
    with _step(pod_dir, f"pod cgroup {cg_path}"):
        from runtime.cgroups.layout import detect_layout, read_mounts

        mounts = read_mounts()  # once, for the layout and the hierarchies
        mgr = cgroups.manager_for(
            cg_path, uid, layout=detect_layout(mountinfo=mounts), mountinfo=mounts
        )
    record = record.replace(
        images=tuple(sorted({img.id for img in images.values()})),
        containers=tuple(
            ContainerRecord(
                name=c.name,
                kind="init" if c in pod.spec.init_containers else "app",
                image=c.image,
                image_id=images[c.name].id,
            )
            for c in pod.all_containers
        ),
        cgroup=CgroupRecord(path=cg_path, paths=mgr.paths()),
    )
    # durable: the image references below outlive a crash. Both are recorded before they
    # are made (teardown undoes what the record names, made or not).
    pod_dir.write_record(record)
    for img in {img.id: img for img in images.values()}.values():
        store.add_ref(img, uid)

    # the pod cgroup, with the pod-level limits
    with _step(pod_dir, f"pod cgroup {cg_path}"):
        mgr.create()
        values = pod_cgroup_values(pod)
        res: dict[str, Any] = {}
        cpu: dict[str, int] = {}
        if values.cpu_shares is not None:
            cpu["shares"] = values.cpu_shares
        if values.cpu_quota is not None and values.cpu_period is not None:
            cpu.update(quota=values.cpu_quota, period=values.cpu_period)
        if cpu:
            res["cpu"] = cpu
        if values.memory_limit is not None:
            res["memory"] = {"limit": values.memory_limit}
        if res:
            mgr.apply(parse_resources(res, "pod cgroup"))

    # volumes and the pod's /dev/shm
    with _step(pod_dir, "mount /dev/shm"):
        shm = path / "shm"
        shm.mkdir(mode=0o1777, exist_ok=True)
        mount_tmpfs(shm, SHM_SIZE, 0o1777)
    volume_paths: dict[str, str] = {}
    for v in pod.spec.volumes:
        with _step(pod_dir, f"volume {v.name}"):
            made = _make_volume(path / "volumes" / v.name, v.source, values.memory_limit)
            # inside the pod directory: relative, since the directory moves (run/, exited/)
            volume_paths[v.name] = (
                os.path.relpath(made, path) if made.startswith(f"{path}/") else made
            )
    record = record.replace(volumes=volume_paths)
    pod_dir.write_record(record, durable=False)

    # one overlay rootfs per container
    for c in pod.all_containers:
        cdir = path / "containers" / c.name
        with _step(pod_dir, f"mount rootfs({cdir / 'rootfs'})"):
            cdir.mkdir(mode=0o700, exist_ok=True)
            store.mount_rootfs(images[c.name], cdir / "rootfs", cdir / "overlay")
    return record


def memory_volume_size(size_limit: int | None, pod_memory_limit: int | None) -> int:
    """The size of a memory-backed emptyDir, as the kubelet sizes it: the node's memory, or
    less, the pod's memory limit, or less, the volume's sizeLimit (a limit of 0 or beyond
    what the pod may use is not taken: the tmpfs never promises more than there is)."""
    from runtime.pod.hostfacts import memory_capacity

    size = memory_capacity()
    for limit in (pod_memory_limit, size_limit):
        if limit is not None and 0 < limit <= size:
            size = limit
    return size


def _make_volume(vdir: Path, source: Any, pod_memory_limit: int | None = None) -> str:
    from runtime.pod.manifest import (
        ConfigMapVolume,
        EmptyDirVolume,
        HostPathVolume,
        SecretVolume,
        StorageMedium,
    )
    from runtime.pod.projection import project
    from runtime.pod.sources import projected_files

    if isinstance(source, HostPathVolume):
        return _host_path(source, vdir)
    vdir.mkdir(mode=0o755, exist_ok=True)
    if isinstance(source, EmptyDirVolume):
        if source.medium is StorageMedium.MEMORY:
            limit = source.size_limit.ceil() if source.size_limit is not None else None
            mount_tmpfs(vdir, memory_volume_size(limit, pod_memory_limit), 0o777)
        os.chmod(vdir, 0o777)  # as the kubelet makes emptyDirs
        return str(vdir)
    assert isinstance(source, (ConfigMapVolume, SecretVolume))
    if isinstance(source, SecretVolume):
        mount_tmpfs(vdir, SECRET_SIZE, 0o755)
    project(vdir, projected_files(source))
    return str(vdir)


# by HostPathType's values (a StrEnum: its members look themselves up)
_HOST_PATH_TYPES = {
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "Directory": (stat.S_ISDIR, "a directory"),
    "FileOrCreate": (stat.S_ISREG, "a regular file"),
    "File": (stat.S_ISREG, "a regular file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _open_host_path(p: str) -> int:
    """An O_PATH fd of the host path ``p``, its symlinks followed but never a magic link:
    ``/proc/self/exe``, ``/proc/self/fd/N``, ``/dev/stdin`` name what the process opening
    them holds (the runtime's own binary, its files), not a path of the host (the kubelet's
    runtime would mount its own sealed copy, or its own descriptors, there)."""
    try:
        return hostsys.open_no_magiclinks(p)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        os.close(os.open(p, os.O_PATH | os.O_CLOEXEC))  # ELOOP again: a loop of symlinks
        raise CorralError(
            f"hostPath {p} goes through a process's magic link (/proc/<pid>/exe, fd, root,"
            " cwd): it names what the runtime holds, not a path of the host"
        ) from None


def _host_path(v: HostPathVolume, vdir: Path) -> str:
    """A hostPath volume. Without a type, no check (as Kubernetes), but never through a
    magic link (``_open_host_path``); a missing one is left to the container's mount.
    With one, Kubernetes' checks: DirectoryOrCreate makes a missing directory (and its
    parents, 0755), FileOrCreate a missing file (0644, not its parent directory); every type
    must then be what it says. The path (the admin's: symlinks are followed, as the kubelet's
    stat does) is opened once, that fd is checked and that fd is bind-mounted on the pod's
    ``volumes/<name>``, which the containers get: what was checked is what is mounted (and,
    without a type, what was opened)."""
    from runtime.pod.manifest import HostPathType

    p, t = v.path, v.type
    check, what = _HOST_PATH_TYPES.get(t, (None, ""))
    try:
        fd = _open_host_path(p)
    except FileNotFoundError:
        if t is HostPathType.UNSET:
            return p  # no check: the container's mount of it says what is missing
        if t is HostPathType.DIRECTORY_OR_CREATE:
            os.makedirs(p, mode=0o755, exist_ok=True)
        elif t is HostPathType.FILE_OR_CREATE:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                os.close(os.open(p, flags, 0o644))
            except FileNotFoundError:
                raise CorralError(
                    f"hostPath {p}: its directory does not exist (FileOrCreate makes only the file)"
                ) from None
            except FileExistsError:
                pass  # made meanwhile (or a dangling symlink: the open below says so)
        else:
            raise CorralError(f"hostPath {p} does not exist (type {t.value})") from None
        try:
            fd = _open_host_path(p)
        except FileNotFoundError:
            raise CorralError(f"hostPath {p} does not exist (type {t.value})") from None
    try:
        mode = os.fstat(fd).st_mode
        if check is not None and not check(mode):
            raise CorralError(f"hostPath {p} is not {what} (type {t.value})")
        if stat.S_ISDIR(mode):
            vdir.mkdir(mode=0o755, exist_ok=True)
        else:
            os.close(os.open(vdir, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        hostsys.host().bind_fd(fd, vdir, recursive=True)
    finally:
        os.close(fd)
    return str(vdir)


# ============================================================================= teardown


def _kill_containers(path: Path, errors: list[BaseException]) -> None:
    from runtime import container
    from runtime.state import list_ids

    root = str(path / "runtime")
    if not os.path.isdir(root):
        return
    for cid in list_ids(root):
        try:
            container.delete(cid, force=True, root=root)
        except Exception as e:  # noqa: BLE001 - go on, report the first
            errors.append(PodError(path.name, f"delete container {cid}: {e}"))


def _destroy_cgroup(record: PodRecord, errors: list[BaseException]) -> None:
    from runtime import cgroups

    paths = record.cgroup.paths if record.cgroup else None
    if not paths:
        return
    try:
        mgr = cgroups.manager_from_paths(paths)
        if mgr.exists():
            for _ in range(100):
                if not mgr.pids():
                    break
                mgr.kill_all(signal.SIGKILL)
                time.sleep(0.02)
            mgr.destroy()
    except Exception as e:  # noqa: BLE001
        errors.append(PodError(record.uid, f"remove cgroup: {e}"))
    for leaf in paths.values():
        parent = os.path.dirname(leaf)
        if os.path.basename(parent) in ("burstable", "besteffort"):
            try:
                os.rmdir(parent)
            except OSError:
                pass


_POD_CGROUP = re.compile(r"^pod([A-Za-z0-9-]{1,64})$")


def pod_cgroup_dirs(cgroup_parent: str) -> list[tuple[str, str]]:
    """(uid, directory) of every ``pod<uid>`` cgroup below the QoS parents of
    ``cgroup_parent`` (itself, burstable/, besteffort/), in every hierarchy. A relative parent
    is below this process's cgroup, as when pods are prepared."""
    from runtime import cgroups

    try:
        tops = sorted(set(cgroups.manager_for(cgroup_parent, "gc").paths().values()))
    except Exception:  # noqa: BLE001 - no cgroups here: nothing can have leaked
        return []
    out = []
    for top in tops:
        for qos in ("", *(qos_dir(q) for q in QOSClass if qos_dir(q))):
            parent = os.path.join(top, qos) if qos else top
            try:
                names = sorted(os.listdir(parent))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                m = _POD_CGROUP.match(name)
                if m and os.path.isdir(os.path.join(parent, name)):
                    out.append((m.group(1), os.path.join(parent, name)))
    return out


def remove_empty_cgroup(top: str) -> bool:
    """Remove the cgroup ``top`` and the cgroups below it, deepest first, unless a process
    is in any of them; True when it is gone."""
    dirs = [d for d, _, _ in os.walk(top)]
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                if f.read().strip():
                    return False
        except FileNotFoundError:
            continue
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # a process or a cgroup came meanwhile
    parent = os.path.dirname(top)
    if os.path.basename(parent) in ("burstable", "besteffort"):
        with contextlib.suppress(OSError):
            os.rmdir(parent)  # the QoS parent goes with its last pod, as in teardown
    return True


def teardown_network(record: PodRecord, opts: PodOptions) -> None:
    from runtime.network import node_network

    node = node_network(opts.network_settings(), opts.node_netns)
    node.teardown_pod(record.uid)


def teardown(pod_dir: PodDir) -> None:
    """Remove everything the pod holds on the host: containers (and any process left in the
    pod cgroup), the pod network, every mount below the pod directory, overlay upper layers,
    image refs, cgroups. Logs, status and pod.json stay."""
    path = pod_dir.path
    record = pod_dir.record_or_blank()
    uid = pod_dir.uid
    opts = record.pod_options()
    errors: list[BaseException] = []
    _kill_containers(path, errors)
    _destroy_cgroup(record, errors)
    if (path / "network.json").exists():
        try:
            teardown_network(record, opts)
            (path / "network.json").unlink()
        except Exception as e:  # noqa: BLE001
            errors.append(PodError(uid, f"network teardown: {e}"))
    try:
        umount_all(path)
    except OSError as e:
        errors.append(PodError(uid, str(e)))
    for cdir in sorted((path / "containers").glob("*")):
        for sub in ("overlay", "rootfs"):
            target = cdir / sub
            if target.exists() and not mounts_under(target):
                rmtree(target, ignore_errors=True)
    for d in ("volume-subpaths", "volumes", "shm", "etc"):
        target = path / d
        if target.exists() and not mounts_under(target):
            rmtree(target, ignore_errors=True)
    if record.images:
        try:
            store = _image_store(opts)
            for image_id in record.images:
                try:
                    img = store.get(image_id)
                except Exception:  # noqa: BLE001 - the image is gone: so is its ref
                    continue
                store.remove_ref(img, uid)
        except Exception as e:  # noqa: BLE001
            errors.append(PodError(uid, f"remove image refs: {e}"))
    if errors:
        raise errors[0]
