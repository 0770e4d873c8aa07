"""What the pod and density suites run on: a busybox image, Corral pod roots, podman, and
node network namespaces; all of it private to this run and removed on the way out.

- The image: the cached test rootfs (static busybox) as a one-layer docker-archive, imported
  once into a private Corral image store and loaded once into podman's private storage (not
  timed). Every pod runs one container, ``sleep``, from it.
- Corral: pod roots, image store and network state under a work directory in /var/tmp (the
  overlay upper directories need a real filesystem); the cgroup parent is relative, so every
  pod cgroup is below this process's own cgroup in each hierarchy.
- The node network: a network namespace held by ``unshare -n sleep infinity`` (a child of
  ours, killed at the end), one for Corral and one for podman; the machine's own namespace is
  never touched. Corral's bridge and veths live there; podman's commands join it (setns before
  execve), so its CNI bridge, veths and firewall rules are made there too.
- podman: its own ``--root``/``--runroot``/``--tmpdir``, a private containers.conf (ulimits the
  machine allows, a private network config directory), ``--cgroup-manager cgroupfs`` with a
  cgroup parent below this process's own cgroup, the OCI runtime named in the labels (crun
  refuses hybrid cgroup hosts, so runc there). A podman pod has an infra container (from the
  same busybox image, running ``sleep``: there is no pause image offline) holding the pod's
  namespaces, like Corral's monitor does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testkit.netns import NodeNs, node_netns

from . import host, peers
from .proc import Launch, join_netns

if TYPE_CHECKING:
    from runtime.pod.prepare import PodOptions

IMAGE = "corral-bench-busybox:1"
PODMAN_IMAGE = f"localhost/{IMAGE}"
WORK_PARENT = "/var/tmp"
CORRAL_CIDR = "10.254.0.0/23"
PODMAN_CIDR = "10.253.0.0/23"
CNI_IPAM_DIR = "/var/lib/cni/networks"  # where CNI host-local keeps podman's leases
SLEEP = ["sleep", "1000000000"]
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=32768:32768"]
[network]
network_config_dir = "{net_dir}"
"""


MARKS = "/marks"  # where the app container of a timed pod says it runs


def app_command(name: str, marks: str | None) -> list[str]:
    """The app container's command: sleep; with ``marks``, it first creates ``MARKS/name``
    (a host directory bind-mounted there), the container's first output seen from outside."""
    if marks is None:
        return list(SLEEP)
    return ["sh", "-c", f"touch {MARKS}/{name} && exec {' '.join(SLEEP)}"]


def manifest(name: str, marks: str | None = None) -> dict[str, Any]:
    """The pod every Corral runner starts: one busybox container that sleeps (``marks``: see
    ``app_command``; the directory is a hostPath volume)."""
    container: dict[str, Any] = {
        "name": "main",
        "image": IMAGE,
        "command": app_command(name, marks),
    }
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "containers": [container]}
    if marks is not None:
        container["volumeMounts"] = [{"name": "marks", "mountPath": MARKS}]
        spec["volumes"] = [{"name": "marks", "hostPath": {"path": marks, "type": "Directory"}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def podman_cgroup_parent(own: dict[str, str]) -> str | None:
    """An absolute cgroup path for podman (cgroupfs takes one path for every hierarchy):
    the deepest of this process's own cgroups when every other one is a prefix of it, so
    that it lies below our own cgroup in each hierarchy; else None."""
    paths = [p for p in own.values() if p]
    if not paths:
        return None
    deepest = max(paths, key=len).rstrip("/") or "/"
    for p in paths:
        q = p.rstrip("/")
        if q and deepest != q and not deepest.startswith(q + "/"):
            return None
    return deepest


def remove_absolute_cgroup(path: str) -> list[str]:
    """rmdir an absolute cgroup ``path`` (and what is below it) in every hierarchy where it
    is visible, deepest first; return what could not be removed."""
    left = []
    for mount in host.cgroup_mounts():
        rel = os.path.relpath(path, mount.root)
        if rel.startswith(".."):
            continue
        top = os.path.normpath(os.path.join(mount.mountpoint, rel))
        if os.path.isdir(top):
            left += host.remove_tree_dirs(top)
    return left


def missing_cgroup_dirs(path: str) -> list[str]:
    """The directories along the absolute cgroup ``path`` that do not exist yet, in every
    hierarchy where it is visible: podman makes them all (mkdir -p), and where our own cgroup
    is the root of a hierarchy they are not below anything of ours, so they go afterwards."""
    missing = []
    for mount in host.cgroup_mounts():
        rel = os.path.relpath(path, mount.root)
        if rel.startswith(".."):
            continue
        d = mount.mountpoint
        for part in rel.split("/"):
            d = os.path.join(d, part)
            if not os.path.isdir(d):
                missing.append(d)
    return missing


def podman_runtime() -> tuple[str | None, str]:
    """The OCI runtime podman uses here, and why."""
    if host.cgroup_layout().startswith("hybrid"):
        runc = shutil.which("runc")
        if runc is None:
            return None, "crun refuses hybrid cgroup hosts and runc is not installed"
        return "runc", "runc (crun refuses hybrid cgroup hosts)"
    crun = shutil.which("crun")
    if crun is not None:
        return "crun", "crun"
    runc = shutil.which("runc")
    return (None, "neither crun nor runc is installed") if runc is None else ("runc", "runc")


@dataclass
class Podman:
    """podman with everything private; ``node`` set when its pods get a network."""

    binary: str
    base: Path
    runtime: str
    cgroup_parent: str
    env: dict[str, str]
    net_name: str
    node: NodeNs | None = None

    @property
    def label(self) -> str:
        return f"podman ({self.runtime})"

    def argv(self, *args: str) -> tuple[str, ...]:
        b = self.base
        return (
            self.binary, "--root", str(b / "root"), "--runroot", str(b / "run"),
            "--tmpdir", str(b / "tmp"), "--runtime", self.runtime,
            "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            "--storage-driver", "overlay", *args,
        )  # fmt: skip

    def launch(self, *args: str, network: bool) -> Launch:
        fd = self.node.fd if network and self.node is not None else -1
        return Launch(self.argv(*args), self.env, net_ns_fd=fd)

    def query(self, *args: str, network: bool = False, timeout: float = 300) -> str:
        """Run a podman command that is not measured; its stdout, or OSError."""
        fd = self.node.fd if network and self.node is not None else -1

        def join() -> None:
            if join_netns(fd) != 0:
                os._exit(126)

        res = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, preexec_fn=join if fd >= 0 else None,
            pass_fds=(fd,) if fd >= 0 else (), check=False,
        )  # fmt: skip
        if res.returncode != 0:
            tail = " / ".join(res.stderr.strip().splitlines()[-2:])
            raise OSError(f"podman {' '.join(args)} exited {res.returncode}: {tail}")
        return res.stdout

    def pod_create(self, name: str, network: bool) -> Launch:
        net = self.net_name if network else "none"
        return self.launch(
            "pod", "create", "--name", name, "--cgroup-parent", self.cgroup_parent,
            "--network", net, "--infra-image", PODMAN_IMAGE,
            "--infra-command", " ".join(SLEEP), network=network,
        )  # fmt: skip

    def run_in_pod(self, pod: str, network: bool, marks: str | None = None) -> Launch:
        volume = ("-v", f"{marks}:{MARKS}") if marks is not None else ()
        return self.launch(
            "run", "-d", "--pod", pod, *volume, PODMAN_IMAGE, *app_command(pod, marks),
            network=network,
        )  # fmt: skip

    def pod_rm(self, name: str, network: bool) -> Launch:
        return self.launch("pod", "rm", "-f", "-t", "0", name, network=network)

    def clean(self) -> list[str]:
        """Remove every pod and container, the network and the storage; what stays."""
        problems = []
        for args in (("pod", "rm", "-a", "-f", "-t", "0"), ("rm", "-a", "-f", "-t", "0")):
            try:
                self.query(*args, network=self.node is not None)
            except (OSError, subprocess.TimeoutExpired) as e:
                problems.append(str(e))
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.query("network", "rm", "-f", self.net_name)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.query("rmi", "-a", "-f")
        shutil.rmtree(os.path.join(CNI_IPAM_DIR, self.net_name), ignore_errors=True)
        return problems


@dataclass
class PodEnv:
    work: Path
    tag: str  # names this run's cgroups and podman network
    image_tar: Path
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)  # corral pod roots handed out
    corral_node: NodeNs | None = None
    podman: Podman | None = None
    podman_skipped: str = ""
    _n: Iterator[int] = field(default_factory=itertools.count)

    @property
    def scratch(self) -> str:
        return str(self.work / "output")

    @property
    def image_root(self) -> str:
        return str(self.work / "images")

    @property
    def cgroup_parent(self) -> str:
        return f"corral-bench-pods-{self.tag}"

    @property
    def marks(self) -> str:
        """The host directory timed pods' containers mark (made by ``pod_env``)."""
        return str(self.work / "marks")

    def mark(self, name: str) -> str:
        return os.path.join(self.marks, name)

    def name(self, prefix: str) -> str:
        return f"{prefix}{next(self._n)}"

    def corral_opts(self, root: str, network: bool) -> PodOptions:
        from runtime.pod.prepare import PodOptions

        path = str(self.work / root)
        if path not in self.roots:
            self.roots.append(path)
        kw: dict[str, Any] = {}
        if network:
            assert self.corral_node is not None
            kw = {
                "network_config": str(self.work / "network.json"),
                "node_netns": self.corral_node.path,
            }
        return PodOptions(
            root=path,
            image_root=self.image_root,
            cgroup_parent=self.cgroup_parent,
            network=network,
            **kw,
        )

    def corral_cli(self, opts: PodOptions, *args: str) -> Launch:
        argv = [str(Path(sys.executable).parent / "corral"), "pod", "--root", opts.root]
        argv += ["--store", opts.image_root, "--cgroup-parent", opts.cgroup_parent]
        if opts.network:
            assert opts.network_config and opts.node_netns
            argv += ["--network-config", opts.network_config, "--node-netns", opts.node_netns]
        else:
            argv.append("--no-network")
        return Launch((*argv, *args), self.env)

    def manifest_file(self, name: str, marks: str | None = None) -> str:
        path = self.work / "manifests" / f"{name}.json"  # JSON is YAML
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(manifest(name, marks)))
        return str(path)


def build_image(dest: Path) -> Path:
    """The cached test rootfs as a one-layer docker-archive tagged ``IMAGE``."""
    sys.path.insert(0, str(host.REPO))
    from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
    from testkit.rootfs import cached_rootfs

    from .spawn import ROOTFS_CACHE

    layer = tar_tree(cached_rootfs(Path(ROOTFS_CACHE)))
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
    return write_tar(dest, files)


def _remove_corral_pods(roots: list[str], opts_of: dict[str, PodOptions]) -> list[str]:
    from runtime.errors import CorralError
    from runtime.pod import api

    problems = []
    for root in roots:
        opts = opts_of[root]
        if not os.path.isdir(root):
            continue
        try:
            for st in api.list_pods(opts):
                try:
                    api.remove(st.uid, opts, force=True)
                except (CorralError, OSError) as e:
                    problems.append(f"pod {st.uid}: {e}")
            gc = api.gc(opts)
            problems += gc.errors
        except (CorralError, OSError) as e:
            problems.append(f"{root}: {e}")
    return problems


def _setup_podman(e: PodEnv, stack: ExitStack, network: bool) -> None:
    binary = shutil.which("podman")
    if binary is None:
        e.podman_skipped = "podman is not installed"
        return
    runtime, why = podman_runtime()
    if runtime is None:
        e.podman_skipped = why
        return
    parent = podman_cgroup_parent(host.self_cgroup())
    if parent is None:
        e.podman_skipped = "this process's cgroups are not nested: no cgroup parent below them"
        return
    base = e.work / "podman"
    (base / "net").mkdir(parents=True)
    conf = base / "containers.conf"
    conf.write_text(CONTAINERS_CONF.format(net_dir=base / "net"))
    env = dict(e.env)
    env["CONTAINERS_CONF"] = str(conf)
    cg = f"{parent.rstrip('/')}/corral-bench-podman-{e.tag}"
    pm = Podman(binary, base, runtime, cg, env, net_name=f"corral-bench-{e.tag}")
    made = missing_cgroup_dirs(cg)
    stack.callback(_report, "podman cgroup parents", lambda: host.remove_dirs(made))
    stack.callback(_report, "podman cgroup", lambda: remove_absolute_cgroup(cg))
    if network:
        pm.node = node_netns()
        stack.callback(pm.node.close)
    stack.callback(_report, "podman", pm.clean)  # pods first, then the namespace
    pm.query("load", "-q", "-i", str(e.image_tar))
    if network:
        pm.query("network", "create", "--subnet", PODMAN_CIDR, pm.net_name, network=True)
    e.podman = pm
    e.notes.append(f"podman's OCI runtime: {why}.")


def _report(what: str, fn: Any) -> None:
    left = fn()
    if left:
        print(f"bench: {what} clean-up: {'; '.join(map(str, left))}", file=sys.stderr)


@contextmanager
def pod_env(network: bool, with_podman: bool = True) -> Iterator[PodEnv]:
    """The image imported, node namespaces (``network``), podman set up; everything removed
    afterwards, also on failure, ^C or SIGTERM."""
    from images.store import Store
    from runtime.pod.monitor import monitor_path

    monitor_path()  # FileNotFoundError (an OSError) when the monitor is not built
    work = Path(tempfile.mkdtemp(prefix="cbp-", dir=WORK_PARENT))
    tag = f"{os.getpid()}-{work.name[4:]}"
    opts_of: dict[str, PodOptions] = {}
    with ExitStack() as stack:
        from .image import remove_tree

        stack.callback(remove_tree, str(work))
        e = PodEnv(work, tag, work / "image.tar", peers.child_env())
        os.mkdir(e.marks)
        stack.callback(_report, "cgroup", lambda: host.remove_cgroup_everywhere(e.cgroup_parent))

        # Pods go first: they hold mounts, cgroups and veths in the node namespace.
        def corral_pods() -> list[str]:
            for root in e.roots:
                opts_of.setdefault(root, e.corral_opts(os.path.basename(root), False))
            return _remove_corral_pods(e.roots, opts_of)

        build_image(e.image_tar)
        Store(e.image_root).import_path(e.image_tar)
        if network:
            e.corral_node = node_netns()
            stack.callback(e.corral_node.close)
            (work / "network.json").write_text(
                json.dumps({"podCIDR": CORRAL_CIDR, "stateDir": str(work / "network")})
            )
        stack.callback(_report, "corral pods", corral_pods)
        if with_podman:
            try:
                _setup_podman(e, stack, network)
            except (OSError, subprocess.TimeoutExpired) as ex:
                e.podman, e.podman_skipped = None, f"podman set-up failed: {ex}"
        yield e
