"""Containers from images, in one step: what ``corral run``, ``ps``, ``logs``, ``stop`` and
``rm`` do (the commands in ``corral_cli/run_cmd.py`` parse arguments and call one function).

A container is a directory ``<containers>/<id>`` (default /var/lib/corral/containers, next to
the image store it uses)::

    meta.json     name, image, command, options: what ``ps`` shows (written once, atomically)
    config.json   the OCI config: runtime defaults + the image's config + the overrides
    rootfs/       the image's overlay mount (``Store.mount_rootfs``) while the container lives
    overlay/      its private upper and work directories
    owner.json    pid and start time of the process that waits for it (the foreground
                  ``corral run``, or a detached container's corral-monitor)
    exit.json     its exit code (128+N when killed by signal N), written atomically by the owner
                  (a detached container's: by the monitor's finish step)
    lock          flock: the owner's finish and ``rm`` serialise on it
    network.json  on the pod network: its config, node namespace and what setup made; etc/
                  holds the hosts, hostname and resolv.conf bound into the container

A detached container's directory is also its monitor's (``runtime.ctrmon``): monitor.conf,
status/ctr, logs/ctr/<N>.log (CRI logs, one file per run), monitor.log.

While the process runs, the runtime's own state lives under a state root of ours (default
/run/corral/containers) and its cgroup below ``cgroup_parent``. The image store holds a ref
named after the container id from before the mount until ``rm``, so ``corral image rm``
refuses an image while a container (running or exited) uses it. Named volumes live in
``<store>/volumes/<name>/_data`` and outlive the containers that use them.

A detached container runs under corral-monitor, the pod monitor (``runtime.ctrmon``): it
holds the container's stdio, writes its logs, records its exit, restarts it by ``--restart``
and finishes (exit code, network teardown, unmount, or removal with ``--rm``). No daemon:
everything ``ps`` says is derived from the directory, the runtime state and whether the owner
still lives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import select
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from corral_common import defaults

from . import container
from .errors import ContainerError, CorralError, InvalidState, NotFound, SpawnError
from .state import process_start_time, write_atomic

IMAGE_ROOT = defaults.IMAGE_ROOT
STATE_ROOT = defaults.CONTAINER_STATE_ROOT
CGROUP_PARENT = defaults.RUN_CGROUP_PARENT
STOP_SIGNAL = "org.opencontainers.image.stopSignal"
ANN_NAME = "io.corral.container.name"
ANN_IMAGE = "io.corral.image"
CPU_PERIOD = 100_000

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


class RunError(CorralError):
    """A step of making, running or removing a container failed: ``step(obj): cause``."""

    def __init__(self, step: str, obj: str, cause: BaseException | str) -> None:
        self.step = step
        self.obj = obj
        self.cause = cause
        where = f"{step}({obj})" if obj else step
        super().__init__(f"{where}: {cause}")

    @property
    def exit_code(self) -> int:
        """What ``corral run`` exits with, as podman does: 127 when the command does not
        exist, 126 when it cannot be executed, 125 for any other failure of ours."""
        if isinstance(self.cause, SpawnError):
            if self.cause.errno == errno.ENOENT:
                return 127
            if self.cause.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM):
                return 126
        return 125


@dataclass(frozen=True, slots=True)
class Paths:
    """Where containers, the image store, the runtime state and the cgroups live."""

    store: str = IMAGE_ROOT
    containers: str = ""  # default: <store>/containers
    state_root: str = STATE_ROOT
    cgroup_root: str = container.CGROUP_ROOT

    @property
    def containers_dir(self) -> str:
        return self.containers or os.path.join(self.store, "containers")

    @property
    def volumes_dir(self) -> str:
        """Named volumes: ``<store>/volumes/<name>/_data``, as podman keeps them."""
        return os.path.join(self.store, "volumes")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Paths:
        return Paths(**json.loads(text))


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``corral run`` was asked for. ``command`` replaces the image's Cmd when not
    empty; ``entrypoint`` replaces its Entrypoint (``""`` clears it; a JSON array is taken
    as the argv) and then, as in docker and podman, the image's Cmd is not used."""

    image: str
    command: tuple[str, ...] = ()
    name: str | None = None
    env: tuple[str, ...] = ()  # K=V, or K to pass our own value of K
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    memory: int | None = None  # bytes
    cpus: float | None = None
    network: str | None = None  # none, host, or the pod network (bridge, pod or its name);
    # None: the pod network when a network config is set (network_config or the default
    # file exists), else none
    tty: bool = False
    rm: bool = False
    detach: bool = False
    cgroup_parent: str | None = None  # relative: below the caller's own cgroup
    hostname: str | None = None
    volumes: tuple[str, ...] = ()  # -v SRC:DST[:OPTS]
    publish: tuple[str, ...] = ()  # -p HOSTPORT:CTRPORT[/tcp|udp]
    restart: str = "no"  # no | on-failure[:N] | always (detached only)
    network_config: str | None = None  # the node network config file (None: the default)
    node_netns: str | None = None  # the node's network namespace (a path); None: ours


@dataclass(frozen=True, slots=True)
class Meta:
    id: str
    name: str
    image: str  # as given
    image_id: str
    command: tuple[str, ...]
    created: str
    rm: bool = False
    detach: bool = False
    tty: bool = False
    cgroups_path: str = ""
    network: str = "none"  # none, host or pod
    restart: str = "no"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["command"] = list(self.command)
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Meta:
        return Meta(**{**d, "command": tuple(d.get("command") or ())})


@dataclass(frozen=True, slots=True)
class Info:
    """One container as ``ps`` shows it."""

    meta: Meta
    status: str  # creating running paused restarting stopping exited
    exit_code: int | None = None
    pid: int = 0
    finished: str = ""
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        out = self.meta.to_json()
        out.update(status=self.status, exit_code=self.exit_code, pid=self.pid)
        out["restarts"] = self.restarts
        out["finished"] = self.finished
        return out


# -- small parsers (pure) ----------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str) -> int:
    """``512m``, ``1g``, ``1048576``, ``64MiB`` -> bytes (units are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise ValueError(f"invalid memory size {text!r} (e.g. 512m, 1g)")
    value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return value


def parse_env(items: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``K=V`` as is; a bare ``K`` takes our value of K (and is dropped when we have none)."""
    out = []
    for item in items:
        key, eq, _ = item.partition("=")
        if not key or "\0" in item:
            raise ValueError(f"invalid environment variable {item!r}")
        if eq:
            out.append(item)
        elif key in environ:
            out.append(f"{key}={environ[key]}")
    return out


def parse_entrypoint(text: str) -> list[str]:
    """``""`` -> no entrypoint; a JSON array -> that argv; anything else -> one argument."""
    if not text:
        return []
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return value
    return [text]


_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# Mount option words a volume may carry (podman's, less the SELinux z/Z, ignored, and the
# overlay and chown ones, which corral does not do).
_VOLUME_OPTS = {
    "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
    "private", "rprivate", "shared", "rshared", "slave", "rslave", "z", "Z",
}  # fmt: skip
_EXCLUSIVE = (
    {"ro", "rw"}, {"nosuid", "suid"}, {"nodev", "dev"}, {"noexec", "exec"}, {"bind", "rbind"},
    {"private", "rprivate", "shared", "rshared", "slave", "rslave"},
)  # fmt: skip


class OptionError(RunError):
    """A ``corral run`` option has a bad value: ``--option VALUE: why`` (exit 125)."""

    def __init__(self, option: str, value: str, why: str) -> None:
        self.step, self.obj, self.cause = option, value, why
        self.option = option
        CorralError.__init__(self, f"{option} {value}: {why}" if value else f"{option}: {why}")


@dataclass(frozen=True, slots=True)
class Volume:
    """``-v SRC:DST[:OPTS]``: SRC an absolute host path (a bind mount) or a volume name."""

    source: str
    destination: str
    options: tuple[str, ...] = ()
    named: bool = False

    def mount(self, source_path: str) -> dict[str, Any]:
        """The OCI mount, with ``source_path`` (the named volume's directory) as source."""
        opts = [o for o in self.options if o not in ("z", "Z")]
        if not any(o in ("bind", "rbind") for o in opts):
            opts.insert(0, "rbind")
        if not any(o in _EXCLUSIVE[5] for o in opts):
            opts.append("rprivate")
        return {"destination": self.destination, "type": "bind", "source": source_path,
                "options": opts}  # fmt: skip


def parse_volume(text: str) -> Volume:
    """``SRC:DST[:OPT,...]`` as podman takes it."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise OptionError("--volume", text, "want SRC:DST[:OPTIONS] (SRC a path or a name)")
    src, dst = parts[0], parts[1]
    if not dst.startswith("/") or os.path.normpath(dst) == "/":
        raise OptionError("--volume", text, f"the destination {dst!r} must be an absolute path "
                          "other than /")  # fmt: skip
    if "\0" in text or "," in src or "," in dst:
        raise OptionError("--volume", text, "invalid character")
    named = not src.startswith("/")
    if named and not _VOLUME_NAME_RE.match(src):
        raise OptionError("--volume", text, f"{src!r} is neither an absolute path nor a volume "
                          "name (letters, digits, _ . -)")  # fmt: skip
    opts = tuple(parts[2].split(",")) if len(parts) == 3 else ()
    for o in opts:
        if o not in _VOLUME_OPTS:
            raise OptionError("--volume", text, f"unknown option {o!r} (one of "
                              f"{', '.join(sorted(_VOLUME_OPTS))})")  # fmt: skip
    for group in _EXCLUSIVE:
        if len(group & set(opts)) > 1 or len([o for o in opts if o in group]) > 1:
            raise OptionError("--volume", text, f"options {', '.join(sorted(group & set(opts)))}"
                              " exclude each other")  # fmt: skip
    return Volume(src if named else os.path.normpath(src), os.path.normpath(dst), opts, named)


def parse_publish(text: str) -> tuple[int, int, str]:
    """``HOSTPORT:CTRPORT[/tcp|udp]`` -> (host port, container port, protocol)."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    m = re.fullmatch(r"(\d+):(\d+)", spec)
    if m is None:
        raise OptionError("--publish", text, "want HOSTPORT:CTRPORT[/tcp|udp]")
    if proto not in ("tcp", "udp"):
        raise OptionError("--publish", text, f"protocol {proto!r}: want tcp or udp")
    host, ctr_port = int(m[1]), int(m[2])
    for port in (host, ctr_port):
        if not 0 < port < 65536:
            raise OptionError("--publish", text, f"{port} is not a port number (1..65535)")
    return host, ctr_port, proto


_MAX_RESTARTS = 2**31 - 1  # the monitor's restart_max is a C int


def parse_restart(text: str) -> tuple[str, int]:
    """``no``, ``on-failure[:N]``, ``always`` -> (policy, at most N restarts; 0: no limit)."""
    policy, colon, count = text.partition(":")
    if policy in ("no", "always") and not colon:
        return policy, 0
    if policy == "on-failure":
        if not colon:
            return policy, 0
        if count.isdigit() and 0 < int(count) <= _MAX_RESTARTS:
            return policy, int(count)
        raise OptionError(
            "--restart", text, f"{count!r}: want a number of retries from 1 to {_MAX_RESTARTS}"
        )
    raise OptionError("--restart", text, "want no, on-failure[:N] or always")


def cgroups_path(cid: str, parent: str | None) -> str:
    """The container's cgroupsPath: ``<parent>/corral-<short id>``. A relative parent (the
    default ``corral``) is below the caller's own cgroup in each hierarchy."""
    base = (parent or CGROUP_PARENT).rstrip("/")
    if not base or any(p == ".." for p in base.split("/")):
        raise ValueError(f"invalid cgroup parent {parent!r}")
    return f"{base}/corral-{cid[:12]}"


def build_config(
    image_config: Mapping[str, Any],
    rootfs: str | None,
    opts: RunOptions,
    cid: str,
    *,
    name: str,
    image_id: str,
    cgroup_path: str,
    environ: Mapping[str, str] | None = None,
    host_files: Sequence[str] = ("/etc/resolv.conf", "/etc/hosts"),
    network: str | None = None,
    etc_dir: str = "",
    mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The OCI config.json: the runtime's defaults, the image's config
    (``images.bundle.oci_config``, with its User resolved inside ``rootfs``), the overrides.

    ``network``: ``none`` (a namespace with lo only), ``host``, or ``pod`` (a namespace of
    its own whose path is set later by ``join_netns``; /etc/hosts, /etc/hostname and
    /etc/resolv.conf are bound from ``etc_dir``). ``mounts``: the volumes' OCI mounts."""
    from images.bundle import oci_config

    from .config import default_spec

    entrypoint = parse_entrypoint(opts.entrypoint) if opts.entrypoint is not None else None
    args: list[str] | None = list(opts.command) if opts.command else None
    if entrypoint is not None and args is None:
        args = []  # a new entrypoint does not inherit the image's Cmd
    part = oci_config(
        dict(image_config),
        rootfs,
        args=args,
        entrypoint=entrypoint,
        env=parse_env(opts.env, os.environ if environ is None else environ),
        user=opts.user,
        cwd=opts.workdir,
    )
    spec = default_spec()
    process = spec["process"]
    process.update(part["process"])
    process["terminal"] = opts.tty
    if opts.tty and not any(e.startswith("TERM=") for e in process["env"]):
        process["env"].append("TERM=xterm")
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = opts.hostname or cid[:12]
    spec["annotations"] = {**part["annotations"], ANN_NAME: name, ANN_IMAGE: image_id}
    linux = spec["linux"]
    linux["cgroupsPath"] = cgroup_path
    resources = linux.setdefault("resources", {})
    if opts.memory is not None:
        resources["memory"] = {"limit": opts.memory}
    if opts.cpus is not None:
        if opts.cpus <= 0:
            raise ValueError(f"--cpus must be positive: {opts.cpus}")
        resources["cpu"] = {"quota": int(opts.cpus * CPU_PERIOD), "period": CPU_PERIOD}
    binds: list[tuple[str, str]] = []
    network = network or opts.network or "none"
    if network == "host":
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        binds = [(path, path) for path in host_files if os.path.isfile(path)]
    elif network == "pod":
        binds = [(os.path.join(etc_dir, name), f"/etc/{name}")
                 for name in ("hosts", "hostname", "resolv.conf")]  # fmt: skip
    elif network != "none":
        raise ValueError(f"unknown network mode {network!r} (none, host or pod)")
    for src, dst in binds:
        spec["mounts"].append(
            {"destination": dst, "type": "bind", "source": src,
             "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
        )  # fmt: skip
    spec["mounts"].extend(dict(m) for m in mounts)
    return spec


def join_netns(spec: dict[str, Any], path: str) -> None:
    """Make the container join the network namespace at ``path`` (the pod network's)."""
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = path


@dataclass(frozen=True, slots=True)
class Checked:
    """The options that need more than a type, parsed and checked before anything is made."""

    volumes: tuple[Volume, ...] = ()
    ports: tuple[tuple[int, int, str], ...] = ()
    restart: tuple[str, int] = ("no", 0)
    network: str = "none"  # none, host or pod
    settings: Any = None  # the pod network's runtime.network.NetworkConfig


def network_settings(config: str | None) -> Any:
    """The node network config: ``config``, else the default file, else the built-in one
    (as ``corral pod`` reads it)."""
    from runtime.pod.prepare import PodOptions

    return PodOptions(network_config=config).network_settings()


def check_options(opts: RunOptions) -> Checked:
    """Parse and check what ``corral run`` was given; OptionError names the option."""
    volumes = tuple(parse_volume(v) for v in opts.volumes)
    seen: set[str] = set()
    for v, text in zip(volumes, opts.volumes, strict=True):
        if v.destination in seen:
            raise OptionError("--volume", text, f"{v.destination} is mounted twice")
        seen.add(v.destination)
    ports = tuple(parse_publish(p) for p in opts.publish)
    if len({(h, proto) for h, _, proto in ports}) != len(ports):
        raise OptionError("--publish", ",".join(opts.publish), "a host port is published twice")
    restart = parse_restart(opts.restart)
    if restart[0] != "no" and not opts.detach:
        raise OptionError("--restart", opts.restart, "only a detached container (-d) restarts")
    if restart[0] != "no" and opts.rm:
        raise OptionError("--restart", opts.restart, "conflicts with --rm")
    network, settings = opts.network, None
    if network not in ("none", "host"):
        if (
            network is None
            and opts.network_config is None
            and not os.path.exists(defaults.NETWORK_CONFIG)
        ):
            network = "none"
        else:
            try:
                settings = network_settings(opts.network_config)
            except (CorralError, OSError, ValueError) as e:
                raise OptionError("--network-config", opts.network_config or "", str(e)) from e
            names = ("bridge", "pod", settings.name)
            if network is not None and network not in names:
                raise OptionError("--network", network, f"want none, host or the pod network "
                                  f"{settings.name} (or bridge)")  # fmt: skip
            network = "pod"
    if ports and network != "pod":
        raise OptionError("--publish", opts.publish[0], f"needs the pod network, not {network}"
                          " (--network bridge, or a network config)")  # fmt: skip
    return Checked(volumes, ports, restart, network, settings)


# -- the container directory -------------------------------------------------------------


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Ctr:
    """One container's directory."""

    paths: Paths
    id: str

    @property
    def dir(self) -> str:
        return os.path.join(self.paths.containers_dir, self.id)

    def file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def rootfs(self) -> str:
        return self.file("rootfs")

    @property
    def overlay(self) -> str:
        return self.file("overlay")

    def meta(self) -> Meta:
        try:
            with open(self.file("meta.json"), encoding="utf-8") as f:
                return Meta.from_json(json.load(f))
        except FileNotFoundError:
            raise NotFound(self.id) from None
        except (ValueError, TypeError) as e:
            raise RunError("read", self.file("meta.json"), f"corrupt: {e}") from None

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self.file(name), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        write_atomic(self.file(name), json.dumps(data, indent=1).encode(), 0o644)

    def owner_alive(self) -> bool:
        owner = self.read_json("owner.json")
        if not owner:
            return False
        return process_start_time(int(owner["pid"])) == owner["start"]

    def set_owner(self, pid: int) -> None:
        self.write_json("owner.json", {"pid": pid, "start": process_start_time(pid)})

    @contextmanager
    def locked(self) -> Iterator[bool]:
        """Hold the container's lock; yields False when the directory is gone (removed)."""
        try:
            fd = os.open(self.file("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield os.path.isdir(self.dir)
        finally:
            os.close(fd)


@contextmanager
def _global_lock(paths: Paths) -> Iterator[None]:
    d = paths.containers_dir
    os.makedirs(d, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(d, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ids(paths: Paths) -> list[str]:
    try:
        names = os.listdir(paths.containers_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if re.fullmatch(r"[0-9a-f]{64}", n))


def _metas(paths: Paths) -> list[Meta]:
    out = []
    for cid in _ids(paths):
        try:
            out.append(Ctr(paths, cid).meta())
        except (NotFound, RunError):
            continue  # being created or removed
    return out


def find(paths: Paths, ref: str) -> Ctr:
    """A container by id, name or unique id prefix."""
    if not ref:
        raise NotFound(ref)
    metas = _metas(paths)
    for m in metas:
        if ref in (m.id, m.name):
            return Ctr(paths, m.id)
    found = [m for m in metas if m.id.startswith(ref)]
    if len(found) == 1:
        return Ctr(paths, found[0].id)
    if len(found) > 1:
        raise ContainerError(ref, f"container id prefix {ref} is ambiguous")
    raise NotFound(ref)


def _store(paths: Paths) -> Any:
    from images.store import Store

    try:
        return Store(paths.store)
    except OSError as e:
        raise RunError("open image store", paths.store, e) from e


# -- run -----------------------------------------------------------------------------------


@dataclass
class Prepared:
    ctr: Ctr
    meta: Meta
    image: Any  # images.store.Image
    store: Any  # images.store.Store
    checked: Checked = field(default_factory=Checked)
    cleanup: ExitStack = field(default_factory=ExitStack)


def _volume_mounts(
    checked: Checked, texts: Sequence[str], paths: Paths, undo: ExitStack
) -> list[dict[str, Any]]:
    """The volumes' OCI mounts: a bind source must exist; a named volume is made on first
    use (and removed again if this run fails)."""
    out = []
    for v, text in zip(checked.volumes, texts, strict=True):
        if not v.named:
            try:
                os.stat(v.source)
            except OSError as e:
                raise OptionError("--volume", text, f"{v.source}: {e.strerror}") from e
            out.append(v.mount(v.source))
            continue
        top = os.path.join(paths.volumes_dir, v.source)
        data = os.path.join(top, "_data")
        if not os.path.isdir(data):
            try:
                os.makedirs(paths.volumes_dir, mode=0o700, exist_ok=True)
                os.mkdir(top, 0o700)
                undo.callback(_rmtree, top)
                os.mkdir(data, 0o755)
            except FileExistsError:
                pass  # made meanwhile by another run
            except OSError as e:
                raise RunError("make volume", top, e) from e
        out.append(v.mount(data))
    return out


def prepare(opts: RunOptions, paths: Paths) -> Prepared:
    """Everything but the process: the directory and record, the image ref, the overlay
    rootfs, named volumes and config.json. A failure removes what was made and raises
    RunError (OptionError for a bad option, before anything is made)."""
    from images.errors import ImageError

    checked = check_options(opts)
    store = _store(paths)
    try:
        img = store.get(opts.image)
    except ImageError as e:
        raise RunError("find image", opts.image, e) from e
    cid = os.urandom(32).hex()
    ctr = Ctr(paths, cid)
    try:
        cgroup_path = cgroups_path(cid, opts.cgroup_parent)
    except ValueError as e:
        raise RunError("cgroup parent", opts.cgroup_parent or "", e) from e
    with ExitStack() as undo:
        with _global_lock(paths):
            name = opts.name or f"corral-{cid[:8]}"
            if not _NAME_RE.match(name):
                raise RunError("name", name, "use letters, digits, _ . - (128 at most)")
            if opts.name and any(m.name == name for m in _metas(paths)):
                raise RunError("name", name, "already in use by another container")
            try:
                os.mkdir(ctr.dir, 0o700)
            except OSError as e:
                raise RunError("make container directory", ctr.dir, e) from e
            undo.callback(_rmtree, ctr.dir)
            meta = Meta(
                id=cid,
                name=name,
                image=opts.image,
                image_id=img.id,
                command=tuple(opts.command),
                created=_now(),
                rm=opts.rm,
                detach=opts.detach,
                tty=opts.tty,
                cgroups_path=cgroup_path,
                network=checked.network,
                restart=opts.restart,
            )
            try:
                ctr.write_json("meta.json", meta.to_json())
                ctr.set_owner(os.getpid())  # "creating", not "exited", to ps and rm
            except OSError as e:
                raise RunError("write", ctr.file("meta.json"), e) from e
        try:
            store.add_ref(img, cid)
            undo.callback(store.remove_ref, img, cid)
            store.get(img.id)  # not removed while we added the ref
        except (ImageError, OSError) as e:
            raise RunError("add image ref", f"{img.short_id} {cid[:12]}", e) from e
        try:
            store.mount_rootfs(img, ctr.rootfs, ctr.overlay)
        except (ImageError, OSError) as e:
            raise RunError("mount rootfs", ctr.rootfs, e) from e
        undo.callback(store.umount, ctr.rootfs, ctr.overlay)
        mounts = _volume_mounts(checked, opts.volumes, paths, undo)
        try:
            spec = build_config(
                store.config(img), ctr.rootfs, opts, cid,
                name=name, image_id=img.id, cgroup_path=cgroup_path,
                network=checked.network, etc_dir=ctr.file("etc"), mounts=mounts,
            )  # fmt: skip
        except (ImageError, ValueError, OSError) as e:
            raise RunError("make config", opts.image, e) from e
        argv = spec["process"]["args"]
        if argv != list(meta.command):
            meta = Meta(**{**asdict(meta), "command": tuple(argv)})
        try:
            ctr.write_json("config.json", spec)
            ctr.write_json("meta.json", meta.to_json())
        except OSError as e:
            raise RunError("write", ctr.file("config.json"), e) from e
        return Prepared(ctr, meta, img, store, checked, undo.pop_all())
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _create_opts(paths: Paths) -> container.CreateOptions:
    return container.CreateOptions(root=paths.state_root, cgroup_root=paths.cgroup_root)


def setup_network(ctr: Ctr, checked: Checked, opts: RunOptions, netns: Any) -> None:
    """Attach the container's network namespace ``netns`` (a path, or a runtime.network
    Netns) to the pod network, as ``corral pod`` attaches a pod: an address on the node
    bridge, the published ports; write etc/{hosts,hostname,resolv.conf}. ``network.json``
    records the config and the node namespace first, so ``teardown_network`` works from any
    process. On failure what was made is removed again."""
    from runtime.network import NodeNetwork, PortMapping, write_pod_files

    settings = checked.settings
    where = {"config": opts.network_config, "nodeNetns": opts.node_netns}
    try:
        ctr.write_json("network.json", where)  # teardown looks for it: write it first
        node = NodeNetwork(settings, opts.node_netns)
        ports = [PortMapping(h, c, proto) for h, c, proto in checked.ports]
        net = node.setup_pod(ctr.id, netns, ports)
        ctr.write_json("network.json", {**where, "pod": net.to_json()})
        spec = ctr.read_json("config.json") or {}
        write_pod_files(ctr.file("etc"), spec.get("hostname") or ctr.id[:12], net.ip,
                        settings.dns)  # fmt: skip
    except (CorralError, OSError, ValueError) as e:
        with contextlib.suppress(Exception):
            teardown_network(ctr)
        raise RunError("network setup", ctr.id[:12], e) from e


def teardown_network(ctr: Ctr) -> None:
    """Remove what ``setup_network`` made (nothing when it was not called)."""
    where = ctr.read_json("network.json")
    if where is None:
        return
    from runtime.network import NodeNetwork

    try:
        node = NodeNetwork(network_settings(where.get("config")), where.get("nodeNetns"))
        node.teardown_pod(ctr.id)
    except (CorralError, OSError, ValueError) as e:
        raise RunError("network teardown", ctr.id[:12], e) from e
    os.unlink(ctr.file("network.json"))


def join_netns_file(ctr: Ctr, netns_path: str) -> None:
    """config.json joins the network namespace at ``netns_path``."""
    spec = ctr.read_json("config.json")
    if spec is None:
        raise RunError("read", ctr.file("config.json"), "missing or corrupt")
    join_netns(spec, netns_path)
    ctr.write_json("config.json", spec)


def run(
    opts: RunOptions,
    paths: Paths = Paths(),
    *,
    on_started: Callable[[Meta], None] | None = None,
) -> int:
    """``corral run`` in the foreground: stdio passes through, signals are forwarded, the
    container's exit code is returned. With ``opts.rm`` nothing is left afterwards;
    otherwise the exited container stays (rootfs unmounted) until ``remove``. On the pod
    network this process holds the container's network namespace (by an fd) until the
    container has exited."""
    if opts.detach:
        raise ValueError("run() is for the foreground; use run_detached()")
    p = prepare(opts, paths)
    netns = None
    try:
        if p.checked.network == "pod":
            from runtime.network import OwnedNetns

            netns = OwnedNetns()
            p.cleanup.callback(netns.close)
            setup_network(p.ctr, p.checked, opts, netns.ns)
            p.cleanup.callback(teardown_network, p.ctr)
            join_netns_file(p.ctr, f"/proc/{os.getpid()}/fd/{netns.fd}")
        try:
            code = container.run(
                p.meta.id,
                p.ctr.dir,
                _create_opts(paths),
                on_started=(lambda _st: on_started(p.meta)) if on_started else None,
            )
        except CorralError as e:
            raise RunError("start container", p.meta.short_id, e) from e
    except BaseException:
        p.cleanup.close()
        raise
    try:
        teardown_network(p.ctr)
    finally:
        if netns is not None:
            netns.close()
        p.cleanup.pop_all()  # the rest is _finish's (or rm's) to remove
        _finish(p.ctr, code)
    return code


def run_detached(opts: RunOptions, paths: Paths = Paths()) -> Meta:
    """``corral run -d``: start the container under corral-monitor (``runtime.ctrmon``) and
    return once it runs (or raise RunError with the reason, everything removed)."""
    from . import ctrmon

    p = prepare(opts, paths)
    ctrmon.start(p, opts, paths)
    return p.meta


def _finish(ctr: Ctr, code: int | None) -> None:
    """After the process exited (and the runtime state is gone): record the exit code, then
    unmount the rootfs, or remove everything for ``--rm`` (unless a detached start has not
    let go of it yet: the file ``starting``, see ``runtime.ctrmon``)."""
    with ctr.locked() as present:
        if not present:
            return  # removed meanwhile by `rm -f`
        ctr.write_json("exit.json", {"code": code, "finished": _now()})
        meta = ctr.meta()
        if meta.rm and not os.path.exists(ctr.file("starting")):
            _remove_all(ctr, meta)
            return
        from images.store import Store

        Store(ctr.paths.store).umount(ctr.rootfs)


def _rmtree(path: str) -> None:
    from corral_common.rmtree import rmtree  # a container's upper dir: any depth

    rmtree(path, ignore_errors=True)


def _remove_all(ctr: Ctr, meta: Meta) -> None:
    """Runtime state, network, overlay mount, upper dir, image ref, directory: each is
    removed if present (so a half-made or half-removed container can be removed again)."""
    from images.errors import ImageError
    from images.store import Store

    try:
        container.delete(meta.id, force=True, root=ctr.paths.state_root)
    except CorralError as e:
        raise RunError("delete runtime state", meta.id[:12], e) from e
    teardown_network(ctr)
    store = Store(ctr.paths.store)
    try:
        store.umount(ctr.rootfs, ctr.overlay)
    except (ImageError, OSError) as e:
        raise RunError("unmount rootfs", ctr.rootfs, e) from e
    if os.path.ismount(ctr.rootfs):  # never remove files through a mount
        raise RunError("unmount rootfs", ctr.rootfs, "still mounted")
    try:
        img = store.get(meta.image_id)
    except ImageError:
        img = None
    if img is not None:
        store.remove_ref(img, meta.id)
    else:  # the record is gone (forced image rm + prune): drop the ref by its directory
        _rmtree(os.path.join(store.refs, meta.image_id.removeprefix("sha256:"), meta.id))
    _rmtree(ctr.dir)


# -- ps, logs, stop, rm ----------------------------------------------------------------------


def info(ctr: Ctr) -> Info:
    meta = ctr.meta()
    restarts = 0
    mon: dict[str, str] = {}
    if meta.detach:
        from .ctrmon import read_status

        mon = read_status(ctr)
        restarts = int(mon.get("restart_count", "0") or 0)
    done = ctr.read_json("exit.json")
    if done is not None:
        code = done.get("code")
        return Info(meta, "exited", int(code) if code is not None else None,
                    finished=str(done.get("finished", "")), restarts=restarts)  # fmt: skip
    try:
        st = container.state(meta.id, ctr.paths.state_root)
    except NotFound:
        st = None
    owner = ctr.owner_alive()
    if owner and mon.get("reason") == "CrashLoopBackOff":
        return Info(meta, "restarting", restarts=restarts)
    if st is not None:
        status = str(st["status"])
        pid = int(st["pid"])  # type: ignore[call-overload]
        if status == "stopped":
            return Info(meta, "stopping" if owner else "exited", pid=0, restarts=restarts)
        return Info(meta, status, pid=pid, restarts=restarts)
    return Info(meta, "creating" if owner else "exited", restarts=restarts)


def list_containers(paths: Paths = Paths(), all_: bool = False) -> list[Info]:
    out = []
    for m in _metas(paths):
        try:
            i = info(Ctr(paths, m.id))
        except NotFound:
            continue
        if all_ or i.status != "exited":
            out.append(i)
    return sorted(out, key=lambda i: i.meta.created, reverse=True)


def logs(paths: Paths, ref: str, out: IO[bytes], err: IO[bytes], follow: bool = False) -> None:
    """A detached container's output as its monitor logged it, every run in order: stdout
    lines to ``out``, stderr lines to ``err``; ``follow``: until the container has exited."""
    ctr = find(paths, ref)
    if not ctr.meta().detach:
        raise ContainerError(ref, f"container {ref} has no log: it ran in the foreground")
    from .ctrmon import write_logs

    def done() -> bool:
        try:
            return info(ctr).status == "exited"
        except NotFound:
            return True  # removed (--rm)

    write_logs(ctr, follow, out, err, done)


def _wait_pid(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (not our child) is gone; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _stop_signal(ctr: Ctr) -> int:
    cfg = ctr.read_json("config.json") or {}
    sig = (cfg.get("annotations") or {}).get(STOP_SIGNAL) or "SIGTERM"
    try:
        return container.parse_signal(sig)
    except CorralError:
        return signal.SIGTERM


def _kill_container(ctr: Ctr) -> None:
    try:
        container.kill(ctr.id, signal.SIGKILL, all_procs=True, root=ctr.paths.state_root)
    except (NotFound, InvalidState):
        pass


def _stop_detached(ctr: Ctr, timeout: float) -> None:
    """Its monitor stops it (no restart after that), finishes and exits. A container still
    being started by `corral run -d` is waited for until its monitor has it."""
    from .ctrmon import monitor_pid, stop_monitor

    _wait_for(lambda: bool(monitor_pid(ctr)) or not ctr.owner_alive(), 60.0)
    stop_monitor(ctr, timeout)


def stop(paths: Paths, ref: str, timeout: float = 10.0) -> Info:
    """Send the image's stop signal (default SIGTERM), SIGKILL after ``timeout`` seconds;
    return once the exit is recorded (or, with no owner left, the process is gone)."""
    ctr = find(paths, ref)
    i = info(ctr)
    if i.status in ("exited",):
        return i
    if i.meta.detach:
        _stop_detached(ctr, timeout)
        return info(ctr)
    if i.status in ("running", "paused", "created") and i.pid:
        sig = _stop_signal(ctr)
        try:
            container.kill(ctr.id, sig, root=paths.state_root)
            if i.status == "paused":
                container.resume(ctr.id, paths.state_root)
        except (NotFound, InvalidState):
            pass
        if not _wait_pid(i.pid, timeout):
            _kill_container(ctr)
            _wait_pid(i.pid, 10.0)
    _wait_for(lambda: info(ctr).status == "exited" or not ctr.owner_alive(), 30.0)
    return info(ctr)


def remove(paths: Paths, ref: str, force: bool = False) -> Meta:
    """Remove a container that is not running (with ``force``, kill it first): runtime
    state, network, overlay mount and upper dir, image ref, directory."""
    ctr = find(paths, ref)
    i = info(ctr)
    if i.status != "exited":
        if not force:
            raise InvalidState(ref, f"container {ref} is {i.status}: stop it first, or use -f")
        if i.meta.detach:
            _stop_detached(ctr, 0.0)
        else:
            _kill_container(ctr)
            if i.pid:
                _wait_pid(i.pid, 10.0)
            # Let the owner record the exit and let go; then we remove whatever it left.
            _wait_for(lambda: not ctr.owner_alive(), 10.0)
    with ctr.locked() as present:
        if present:
            _remove_all(ctr, i.meta)
    return i.meta
