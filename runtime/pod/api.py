"""The pod library API: what ``corral pod`` and the kubelet call.

``PodRuntime`` is the surface the kubelet uses (a Protocol, so its tests can put a fake in its
place); ``NodePods`` is the real one, this node's pods under one ``PodOptions``. The module
functions below are the same operations taking ``PodOptions`` per call (the ``corral pod``
commands use them): ``create`` (prepare a pod from a manifest), ``start`` (hand it to its
monitor), ``run`` (both), ``stop``, ``remove``, ``status``, ``list_pods``,
``logs``/``follow_logs``, ``exec_in``, ``wait``, ``gc``. A pod is named by uid, uid prefix, name
or namespace/name. Errors are ``PodError``s that name the pod and the step.

The work is done by one module per job: ``lifecycle`` (create, stop, remove), ``launch`` (the
monitor launch protocol), ``status`` (status from the kernel and the monitor's files),
``streams`` (logs, exec), ``gc`` (pods and cgroups left behind), ``hostfacts``; the pod record
(pod.json) is ``runtime.pod.record``.

Images are had by each container's ``imagePullPolicy`` (``runtime.pod.imagepull``): a pod
whose image cannot be had is not created; ``create`` raises an ``ImagePullError`` whose
``reason`` is the container's waiting reason (ErrImagePull, ImagePullBackOff,
ErrImageNeverPull, InvalidImageName). ``NodePods`` keeps the pull back-off across calls and
reports such a pod's status (Pending, the container Waiting with that reason) until it is
created or removed. ``create`` and ``run`` take the pod's own registry credentials
(``credentials``, a ``Keyring``, e.g. of its ``imagePullSecrets`` read with ``docker_config``):
its pulls try them before the node's auth file; they stay in memory and are never written.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from images.errors import FormatError
from runtime.pod import gc as _gc
from runtime.pod import launch, lifecycle, projection, streams
from runtime.pod import status as _status
from runtime.pod.errors import ManifestError
from runtime.pod.gc import GcResult, live_pod_uids
from runtime.pod.imagepull import ImagePullError, PullBackoff
from runtime.pod.logs import LogLine
from runtime.pod.memory import MemoryUse, PodMemory, PodUsage, ResourceUse, Usage
from runtime.pod.prepare import RUNTIME_HANDLERS, NoRuntimeHandler, PodOptions
from runtime.pod.status import ContainerStatus, PodStatus, waiting_status
from runtime.pod.statuswatch import StatusWatch
from runtime.pod.store import NotFound, PodDir, PodError, PodStore
from runtime.pod.streams import Attachment, Stdio

if TYPE_CHECKING:
    from images.keyring import Keyring
    from images.regconf import Credentials
    from runtime.pod.manifest import Pod, decode_pod, from_kube, is_image_archive, parse_pod

# Loaded at their first use (an idle agent holds neither the manifest and the Kubernetes model
# it loads, nor the registries' configuration): name -> its module.
_LAZY = {
    "Pod": "runtime.pod.manifest",
    "decode_pod": "runtime.pod.manifest",
    "from_kube": "runtime.pod.manifest",
    "is_image_archive": "runtime.pod.manifest",
    "parse_pod": "runtime.pod.manifest",
    "Keyring": "images.keyring",
    "Credentials": "images.regconf",
}


def __getattr__(name: str) -> Any:
    """PEP 562: ``Pod``, ``decode_pod``, ``from_kube``, ``parse_pod``, ``Keyring`` and
    ``Credentials``, from their modules the first time one is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # __import__, as an import statement: -X importtime logs it (importlib.import_module's
    # imports it does not), which tests/integration/test_agent_idle.py reads
    value = getattr(__import__(module, fromlist=(name,)), name)
    globals()[name] = value
    return value


__all__ = [
    "Attachment",
    "ContainerStatus",
    "add_ephemeral_container",
    "Credentials",
    "Keyring",
    "docker_config",
    "GcResult",
    "ImageInfo",
    "ImageNotPresent",
    "InvalidImageReference",
    "ImagePullError",
    "LogLine",
    "ManifestError",
    "MemoryUse",
    "PodUsage",
    "ResourceUse",
    "Usage",
    "PodMemory",
    "NodePods",
    "PodError",
    "Pod",
    "PodOptions",
    "NoRuntimeHandler",
    "RUNTIME_HANDLERS",
    "PodRuntime",
    "PodStatus",
    "PullBackoff",
    "StatusWatch",
    "attach",
    "create",
    "decode_pod",
    "ensure_network",
    "ensure_network_apart",
    "exec_in",
    "follow_log_lines",
    "follow_logs",
    "from_kube",
    "is_image_archive",
    "gc",
    "image_id",
    "import_images",
    "list_pods",
    "node_socket",
    "parse_pod",
    "port_connect",
    "refresh_volume",
    "list_images",
    "live_pod_uids",
    "log_lines",
    "memory_use",
    "logs",
    "remove",
    "run",
    "start",
    "status",
    "stop",
    "wait",
    "waiting_status",
]


@runtime_checkable
class PodRuntime(Protocol):
    """A node's pods, as the kubelet sees them. ``ref`` names a pod by uid, uid prefix, name
    or namespace/name; operations that make or change a pod return its uid. Errors are
    ``PodError``s (``NotFound``, ``InvalidState``, ``AlreadyExists``, ``PrepareError``, and
    ``ImagePullError`` whose ``reason`` is the container's waiting reason)."""

    def create(
        self,
        pod: Pod,
        manifest: Any = None,
        base_dir: str | None = None,
        credentials: Keyring | None = None,
    ) -> str:
        """Prepare the pod (images by imagePullPolicy, with ``credentials`` before the node's
        auth file, cgroup, volumes, rootfs); it waits in prepared/. A pod whose image cannot
        be had raises ``ImagePullError`` and its status (``status``, ``list``) is Pending
        with that reason until it is created or removed."""
        ...

    def start(self, ref: str, pod: Pod | None = None) -> str:
        """Hand a prepared pod to its monitor; returns once the monitor accepted it."""
        ...

    def run(
        self,
        pod: Pod,
        manifest: Any = None,
        base_dir: str | None = None,
        credentials: Keyring | None = None,
    ) -> str:
        """create, then start."""
        ...

    def stop(self, ref: str, grace: int | None = None) -> str:
        """SIGTERM, ``grace`` seconds (default: the pod's), SIGKILL, teardown."""
        ...

    def add_ephemeral_container(
        self, ref: str, container: Mapping[str, Any], credentials: Keyring | None = None
    ) -> None:
        """Start ``container`` (an EphemeralContainer as the API holds it) in the running pod
        ``ref`` (``runtime.pod.ephemeral``); nothing new when it was added already.
        ``ManifestError``, or ``ImagePullError`` when its image cannot be had."""
        ...

    def remove(self, ref: str, force: bool = False) -> str:
        """Remove a pod that is not running (``force``: stop it first, without grace)."""
        ...

    def status(self, ref: str) -> PodStatus: ...

    def list(self) -> list[PodStatus]:
        """Every pod's status, oldest first."""
        ...

    def status_watch(self) -> StatusWatch:
        """The node's one ``StatusWatch`` (made on first use): readable when a watched pod's
        monitor rewrote its status, ``read()`` says which pods."""
        ...

    def watch_status(self, ref: str) -> None:
        """Have ``status_watch()`` report the changes of pod ``ref`` from now on (its
        status as read after this call is the one to compare with). ``NotFound`` when it is
        not there."""
        ...

    def logs(self, ref: str, container: str | None = None, previous: bool = False) -> list[str]:
        """The lines of a container's current run (``previous``: the one before)."""
        ...

    def follow_logs(
        self,
        ref: str,
        container: str | None = None,
        interval: float = 0.1,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, str]]:
        """(container, line) as written, until the pod finishes or ``should_stop()``."""
        ...

    def log_lines(
        self, ref: str, container: str | None = None, previous: bool = False
    ) -> list[LogLine]:
        """``logs`` with each line's time and stream."""
        ...

    def follow_log_lines(
        self,
        ref: str,
        container: str | None = None,
        interval: float = 0.1,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[LogLine]:
        """``follow_logs`` with each line's time and stream."""
        ...

    def exec(
        self,
        ref: str,
        command: Sequence[str],
        container: str | None = None,
        tty: bool = False,
        stdin: Stdio = subprocess.DEVNULL,
        stdout: Stdio = None,
        stderr: Stdio = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` in a running container (the first app container by default)."""
        ...

    def attach(self, ref: str, container: str | None = None, stdin: bool = False) -> Attachment:
        """Attach to a running container: its output from now on, its stdin with ``stdin``
        (a container whose spec sets ``stdin``), its terminal's size (``tty``)."""
        ...

    def port_connect(self, ref: str, port: int) -> socket.socket:
        """A TCP connection to ``port`` on the pod's loopback, made in its network
        namespace (port-forward)."""
        ...

    def wait(self, ref: str, timeout: float | None = None, interval: float = 0.1) -> bool:
        """Wait until the pod has finished; False on timeout."""
        ...

    def gc(self, keep_exited: bool = False) -> GcResult:
        """Finish pods whose monitor died; remove abandoned, garbage and exited pods and
        leaked pod cgroups."""
        ...

    def refresh_volume(
        self, ref: str, volume: str, definition: Mapping[str, Any] | None = None
    ) -> bool:
        """Project a configMap or secret volume again from its source (an atomic swap of the
        files the containers see), after replacing its ``definition`` (new items) when
        given; False when nothing changed."""
        ...

    def image_id(self, ref: str) -> str | None:
        """The id of the image ``ref`` names in the node's store, None when it is not there."""
        ...

    def import_images(self, path: str) -> list[str]:
        """Import every image of an archive (or OCI layout) into the node's store; their ids."""
        ...

    def images(self) -> list[ImageInfo]:
        """The images in the node's store, newest first."""
        ...

    def memory_use(self, pods: bool = True) -> MemoryUse:
        """The node's memory capacity and working set, and each running pod's (the eviction
        manager's signal); without ``pods``, the node's only (``pods`` empty: no pod read)."""
        ...

    def resource_use(self) -> ResourceUse:
        """The node's and each running pod's and container's cumulative CPU time and memory
        working set (the kubelet's resource metrics, which ``kubectl top`` reads)."""
        ...


class NodePods:
    """``PodRuntime`` on this node: pods under ``opts.root``, run by ``corral-monitor``.

    It keeps the image pull back-off (``backoff``, a ``PullBackoff``; one of its own unless
    given) and, for each pod whose create failed on an image, that pod's waiting status."""

    def __init__(self, opts: PodOptions | None = None, backoff: PullBackoff | None = None) -> None:
        self.opts = opts if opts is not None else PodOptions()
        self.backoff = backoff if backoff is not None else PullBackoff()
        self._mu = threading.Lock()
        self._waiting: dict[str, PodStatus] = {}  # uid -> Pending status (image not had)
        self._watch: StatusWatch | None = None
        # ``list`` reads again only the pods whose files changed since the last one
        self._statuses = _status.StatusCache(PodStore(self.opts.root))

    def _same_uid(self, pod: Pod) -> Pod:
        """A pod without a uid that is waiting for its image keeps the uid it was given, so
        its pull back-off (keyed by uid and image) carries over to this attempt."""
        if pod.metadata.uid:
            return pod
        st = self._find_waiting(f"{pod.namespace}/{pod.name}")
        if st is None:
            return pod
        return dataclasses.replace(pod, metadata=dataclasses.replace(pod.metadata, uid=st.uid))

    def _created(self, make: Callable[[Pod], PodDir], pod: Pod) -> str:
        pod = self._same_uid(pod)
        try:
            uid = make(pod).uid
        except ImagePullError as e:
            with self._mu:
                old = self._waiting.get(e.pod)
                created = old.created if old is not None else None
                self._waiting[e.pod] = waiting_status(pod, e.pod, e, created)
            raise
        with self._mu:
            self._waiting.pop(uid, None)
        return uid

    def _find_waiting(self, ref: str) -> PodStatus | None:
        namespace, _, name = ref.rpartition("/")
        with self._mu:
            for st in self._waiting.values():
                if st.uid == ref or (
                    st.name == name and (not namespace or st.namespace == namespace)
                ):
                    return st
        return None

    def create(
        self,
        pod: Pod,
        manifest: Any = None,
        base_dir: str | None = None,
        credentials: Keyring | None = None,
    ) -> str:
        return self._created(
            lambda p: create(p, self.opts, manifest, base_dir, self.backoff, credentials), pod
        )

    def start(self, ref: str, pod: Pod | None = None) -> str:
        return start(ref, self.opts, pod).uid

    def run(
        self,
        pod: Pod,
        manifest: Any = None,
        base_dir: str | None = None,
        credentials: Keyring | None = None,
    ) -> str:
        return self._created(
            lambda p: run(p, self.opts, manifest, base_dir, self.backoff, credentials), pod
        )

    def stop(self, ref: str, grace: int | None = None) -> str:
        return stop(ref, self.opts, grace).uid

    def add_ephemeral_container(
        self, ref: str, container: Mapping[str, Any], credentials: Keyring | None = None
    ) -> None:
        add_ephemeral_container(ref, self.opts, container, self.backoff, credentials)

    def remove(self, ref: str, force: bool = False) -> str:
        try:
            return remove(ref, self.opts, force)
        except NotFound:
            st = self._find_waiting(ref)
            if st is None:
                raise
            with self._mu:
                self._waiting.pop(st.uid, None)
            return st.uid

    def status(self, ref: str) -> PodStatus:
        try:
            return status(ref, self.opts)
        except NotFound:
            st = self._find_waiting(ref)
            if st is None:
                raise
            return st

    def list(self) -> list[PodStatus]:
        pods = self._statuses.list()
        have = {p.uid for p in pods}
        with self._mu:
            waiting = [st for uid, st in self._waiting.items() if uid not in have]
        return sorted(pods + waiting, key=lambda s: s.created)

    def status_watch(self) -> StatusWatch:
        with self._mu:
            if self._watch is None:
                self._watch = StatusWatch()
            return self._watch

    def watch_status(self, ref: str) -> None:
        pd = _find(ref, self.opts)
        try:
            self.status_watch().add(pd.uid, pd.path)
        except FileNotFoundError as e:  # moved meanwhile (it finished): not there any more
            raise NotFound(pd.uid) from e
        except OSError as e:  # no watch to be had (the inotify limits): the caller polls
            raise PodError(pd.uid, f"status watch: {e}") from e

    def logs(self, ref: str, container: str | None = None, previous: bool = False) -> list[str]:
        return logs(ref, self.opts, container, previous)

    def follow_logs(
        self,
        ref: str,
        container: str | None = None,
        interval: float = 0.1,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, str]]:
        return follow_logs(ref, self.opts, container, interval, should_stop)

    def log_lines(
        self, ref: str, container: str | None = None, previous: bool = False
    ) -> list[LogLine]:
        return log_lines(ref, self.opts, container, previous)

    def follow_log_lines(
        self,
        ref: str,
        container: str | None = None,
        interval: float = 0.1,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[LogLine]:
        return follow_log_lines(ref, self.opts, container, interval, should_stop)

    def exec(
        self,
        ref: str,
        command: Sequence[str],
        container: str | None = None,
        tty: bool = False,
        stdin: Stdio = subprocess.DEVNULL,
        stdout: Stdio = None,
        stderr: Stdio = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return exec_in(ref, self.opts, command, container, tty, stdin, stdout, stderr)

    def attach(self, ref: str, container: str | None = None, stdin: bool = False) -> Attachment:
        return attach(ref, self.opts, container, stdin)

    def port_connect(self, ref: str, port: int) -> socket.socket:
        return port_connect(ref, self.opts, port)

    def wait(self, ref: str, timeout: float | None = None, interval: float = 0.1) -> bool:
        return wait(ref, self.opts, timeout, interval)

    def gc(self, keep_exited: bool = False) -> GcResult:
        return gc(self.opts, keep_exited)

    def refresh_volume(
        self, ref: str, volume: str, definition: Mapping[str, Any] | None = None
    ) -> bool:
        return refresh_volume(ref, self.opts, volume, definition)

    def image_id(self, ref: str) -> str | None:
        return image_id(ref, self.opts)

    def import_images(self, path: str) -> list[str]:
        return import_images(path, self.opts)

    def images(self) -> list[ImageInfo]:
        return list_images(self.opts)

    def memory_use(self, pods: bool = True) -> MemoryUse:
        from runtime.pod.memory import memory_use as use

        if not pods:
            return use(self.opts, [])
        return use(self.opts, [st for st in self._statuses.list() if st.location == "run"])

    def resource_use(self) -> ResourceUse:
        from runtime.pod.memory import resource_use as use

        return use(self.opts, [st for st in self._statuses.list() if st.location == "run"])

    def ensure_network(self, create: bool = True, apart: bool = False) -> bool:
        if apart:
            return ensure_network_apart(self.opts, create)
        return ensure_network(self.opts, create)

    def node_socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        return node_socket(self.opts, kind)


def memory_use(opts: PodOptions, pods: bool = True) -> MemoryUse:
    """The node's memory (the pods' parent cgroup when it has a limit, else the machine's)
    and the working set of each of its running pods and their containers (without ``pods``,
    none: the node's figures only)."""
    from runtime.pod.memory import memory_use as use

    return use(opts, [st for st in list_pods(opts) if st.location == "run"] if pods else [])


# ============================================================================= the node network


def ensure_network(opts: PodOptions, create: bool = True) -> bool:
    """Bring the node network to what the node network file says now: the bridge and its
    gateway address (from podCIDR), the host-gw routes to the peers' pod CIDRs (routes no
    longer listed go), the masquerade and hostPort rules. Idempotent; in ``opts.node_netns``.
    Without ``create``, a node that has no bridge yet (no pod made it) gets its routes only.
    True when the bridge is there."""
    from runtime.pod.netsync import ensure

    return ensure(opts, create)


def ensure_network_apart(opts: PodOptions, create: bool = True) -> bool:
    """``ensure_network`` in a child process (``runtime.pod.netsync``): the caller never loads
    the netlink library (pyroute2: some 15 MB that a long-running agent with no pod would keep
    for good). PodError with what the child reported."""
    import json
    import sys

    args = {"network_config": opts.network_config, "node_netns": opts.node_netns, "create": create}
    try:
        p = subprocess.run(
            [sys.executable, "-m", "runtime.pod.netsync", json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PodError("", f"node network: {e}") from None
    if p.returncode != 0:
        raise PodError("", f"node network: {p.stderr.strip() or f'exit status {p.returncode}'}")
    return p.stdout.strip() == "true"


def node_socket(opts: PodOptions, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """An IPv4 socket (``kind``: SOCK_STREAM or SOCK_DGRAM) in the node's network namespace
    (``opts.node_netns``; ours when None), for a service of the node there (its DNS, its
    kubelet)."""
    from runtime.network import in_netns

    return in_netns(opts.node_netns, lambda: socket.socket(socket.AF_INET, kind))


# ============================================================================= per call


def docker_config(data: bytes | str, where: str, legacy: bool = False) -> dict[str, Credentials]:
    """The registry credentials of a docker config (``{"auths": {...}}``; with ``legacy`` the
    old flat map of ``.dockercfg``) by registry location, for a ``Keyring``. Not one: a
    ``ValueError`` naming ``where``."""
    try:
        from images.keyring import parse_docker_config

        return parse_docker_config(data, where, legacy)
    except FormatError as e:
        raise ValueError(str(e)) from e


def _find(ref: str, opts: PodOptions) -> PodDir:
    return PodStore(opts.root).find(ref)


def create(
    pod: Pod,
    opts: PodOptions,
    manifest: Any = None,
    base_dir: str | None = None,
    backoff: PullBackoff | None = None,
    credentials: Keyring | None = None,
) -> PodDir:
    """Prepare ``pod``: its directory in ``prepared/``, images (pulled by imagePullPolicy,
    ``backoff`` kept by the caller across calls, ``credentials`` tried first), cgroup,
    volumes, rootfs mounts.
    ``manifest`` (a ``kubemodel.Pod``, or the decoded YAML, parsed with ``base_dir``) is kept
    encoded in pod.json for ``inspect`` and for a later ``start``. On failure nothing is left;
    an image that cannot be had is an ``ImagePullError``."""
    return lifecycle.create(
        PodStore(opts.root), pod, opts, manifest, base_dir, backoff, credentials
    )


def start(ref: str, opts: PodOptions, pod: Pod | None = None) -> PodDir:
    """Start a prepared pod (``runtime.pod.launch``). On failure it is torn down and removed."""
    return launch.start(_find(ref, opts), opts, pod)


def run(
    pod: Pod,
    opts: PodOptions,
    manifest: Any = None,
    base_dir: str | None = None,
    backoff: PullBackoff | None = None,
    credentials: Keyring | None = None,
) -> PodDir:
    """create then start."""
    pd = create(pod, opts, manifest, base_dir, backoff, credentials)
    return start(pd.uid, opts, pod)


def add_ephemeral_container(
    ref: str,
    opts: PodOptions,
    container: Mapping[str, Any],
    backoff: PullBackoff | None = None,
    credentials: Keyring | None = None,
) -> None:
    """Add ``container`` (an EphemeralContainer as the API holds it) to the running pod
    ``ref``, kept in the manifest pod.json holds, and have its monitor start it
    (``runtime.pod.ephemeral``)."""
    from runtime.pod import ephemeral

    ephemeral.add(_find(ref, opts), container, opts, backoff, credentials)


def stop(ref: str, opts: PodOptions, grace: int | None = None) -> PodDir:
    """Stop a running pod: its monitor sends SIGTERM, waits ``grace`` seconds (default the
    pod's terminationGracePeriodSeconds), SIGKILLs, tears down. Returns once it is in exited/.
    A prepared pod is torn down; an exited one is left as it is."""
    return lifecycle.stop(_find(ref, opts), grace)


def remove(ref: str, opts: PodOptions, force: bool = False) -> str:
    """Remove a pod that is not running (with ``force``, stop it first, without grace).
    Returns its uid."""
    return lifecycle.remove(_find(ref, opts), force)


def status(ref: str, opts: PodOptions) -> PodStatus:
    return _status.status_of(_find(ref, opts))


def list_pods(opts: PodOptions) -> list[PodStatus]:
    return _status.list_statuses(PodStore(opts.root))


def wait(ref: str, opts: PodOptions, timeout: float | None = None, interval: float = 0.1) -> bool:
    """Wait until the pod has finished (it is in exited/); False on timeout."""
    return _status.wait(_find(ref, opts), timeout, interval)


def logs(
    ref: str, opts: PodOptions, container: str | None = None, previous: bool = False
) -> list[str]:
    """The text lines of a container's current run (``previous``: the run before)."""
    return streams.logs(_find(ref, opts), container, previous)


def follow_logs(
    ref: str,
    opts: PodOptions,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, str]]:
    """(container, line) as they are written, all containers or one, across restarts and
    rotations, until the pod has finished (or ``should_stop()``)."""
    return streams.follow_logs(_find(ref, opts), container, interval, should_stop)


def log_lines(
    ref: str, opts: PodOptions, container: str | None = None, previous: bool = False
) -> list[LogLine]:
    """The lines of a container's current (or previous) run with their time and stream."""
    return streams.log_lines(_find(ref, opts), container, previous)


def follow_log_lines(
    ref: str,
    opts: PodOptions,
    container: str | None = None,
    interval: float = 0.1,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """``follow_logs`` with each line's time and stream."""
    return streams.follow_log_lines(_find(ref, opts), container, interval, should_stop)


def exec_in(
    ref: str,
    opts: PodOptions,
    command: Sequence[str],
    container: str | None = None,
    tty: bool = False,
    stdin: Stdio = subprocess.DEVNULL,
    stdout: Stdio = None,
    stderr: Stdio = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` in a running container of the pod (the first app container unless
    ``container``); stdio as for ``subprocess.run``."""
    return streams.exec_in(_find(ref, opts), opts, command, container, tty, stdin, stdout, stderr)


def attach(
    ref: str, opts: PodOptions, container: str | None = None, stdin: bool = False
) -> Attachment:
    """Attach to a running container of the pod (the first app container unless
    ``container``) through its monitor: output from now on and, with ``stdin``, its stdin
    (``streams.Attachment``); the container's spec must set ``stdin`` (for stdin) or
    ``tty``."""
    return streams.attach(_find(ref, opts), container, stdin)


def port_connect(ref: str, opts: PodOptions, port: int) -> socket.socket:
    """A TCP connection to ``port`` on the pod's loopback (127.0.0.1, then ::1), made in the
    pod's network namespace (``kubectl port-forward``); the caller owns the socket."""
    return streams.port_connect(_find(ref, opts), port)


def gc(opts: PodOptions, keep_exited: bool = False) -> GcResult:
    """Tear down pods whose monitor is gone (to exited/), remove abandoned prepares, garbage
    and (unless ``keep_exited``) exited pods, then leaked pod cgroups (``runtime.pod.gc``)."""
    return _gc.gc(opts, keep_exited)


def refresh_volume(
    ref: str, opts: PodOptions, volume: str, definition: Mapping[str, Any] | None = None
) -> bool:
    """Project a configMap or secret volume of the pod again from its source, swapped in
    atomically (``runtime.pod.projection``), after replacing its ``definition`` in pod.json
    when given (the same kind, new items); False when nothing changed."""
    return projection.refresh(_find(ref, opts), volume, definition)


@dataclass(frozen=True)
class ImageInfo:
    """An image of the node's store: its id, names and unpacked size."""

    id: str
    names: tuple[str, ...]
    size: int


def list_images(opts: PodOptions) -> list[ImageInfo]:
    """The images in the node's store, newest first."""
    from images.store import Store

    return [ImageInfo(i.id, i.names, i.size) for i in Store(opts.image_root).images()]


class ImageNotPresent(PodError):
    """The image a container names is not in the node's store (``image_id`` said so)."""


class InvalidImageReference(ImageNotPresent):
    """``image_id`` was given what is no image reference: the grammar refuses it, or it is
    the path of an image tarball (which only ``corral pod`` manifests may name); nothing to
    look up or pull (the kubelet's InvalidImageName)."""


def image_id(ref: str, opts: PodOptions) -> str | None:
    """The id of the image ``ref`` (a name, ``name:tag``, id or id prefix) in the node's store,
    or None when the store has no such image. A short name is also looked up under the names
    a pull stores it as (qualified by the registries.conf of ``opts``, as
    ``runtime.pod.imagepull`` does), so a pulled ``app:1`` is found as ``app:1``. An invalid
    reference (or a tarball's path) raises ``InvalidImageReference`` naming it."""
    from images.errors import FormatError, ImageError
    from images.errors import NotFound as ImageNotFound
    from images.reference import check_ref
    from images.store import Store
    from runtime.pod.imagepull import find_local, pull_options
    from runtime.pod.manifest import is_image_archive

    if is_image_archive(ref):
        raise InvalidImageReference("", f"invalid image name {ref!r}: a path, not an image")
    try:
        check_ref(ref)
    except FormatError as e:
        raise InvalidImageReference("", str(e)) from e
    store = Store(opts.image_root)
    try:
        conf = pull_options(opts).registries()
    except ImageError:  # an unreadable registries.conf: the name as written only
        conf = None
    try:
        if conf is None:
            return store.get(ref).id
        img = find_local(store, ref, conf)
        return img.id if img is not None else None
    except ImageNotFound:
        return None
    except ImageError as e:
        raise ImageNotPresent("", f"image {ref}: {e}") from e


def import_images(path: str, opts: PodOptions) -> list[str]:
    """Import every image of the archive (or OCI layout) ``path`` into the node's store."""
    from images.store import Store

    return [img.id for img in Store(opts.image_root).import_path(path)]
