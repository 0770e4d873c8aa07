"""Containers from images, in one step: what ``corral run``, ``ps``, ``logs``, ``stop`` and
``rm`` do (the commands in ``corral_cli/run_cmd.py`` parse arguments and call one function).

A container is a directory ``<containers>/<id>`` (default /var/lib/corral/containers, next to
the image store it uses)::

    meta.json     name, image, command, options: what ``ps`` shows (written once, atomically)
    config.json   the OCI config: runtime defaults + the image's config + the overrides
    rootfs/       the image's overlay mount (``Store.mount_rootfs``) while the container lives
    overlay/      its private upper and work directories
    owner.json    pid and start time of the process that waits for it (the foreground
                  ``corral run``, or a detached container's supervisor)
    ctr.log       stdout and stderr of a detached container
    exit.json     its exit code (128+N when killed by signal N), written atomically by the owner
    lock          flock: the owner's finish and ``rm`` serialise on it

While the process runs, the runtime's own state lives under a state root of ours (default
/run/corral/containers) and its cgroup below ``cgroup_parent``. The image store holds a ref
named after the container id from before the mount until ``rm``, so ``corral image rm``
refuses an image while a container (running or exited) uses it.

A detached container is waited for by a small supervisor process (``python -m runtime.ctr
supervise``, in a session of its own): it creates and starts the container, tells ``run`` that
it started (or why not) over a pipe, waits, records the exit code, unmounts the rootfs (or
removes everything with ``--rm``) and exits. No daemon: everything ``ps`` says is derived from
the directory, the runtime state and whether the owner still lives.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

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
    network: str = "none"  # none: a namespace with lo only; host: the host's
    tty: bool = False
    rm: bool = False
    detach: bool = False
    cgroup_parent: str | None = None  # relative: below the caller's own cgroup
    hostname: str | None = None


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
    status: str  # creating running paused stopping exited
    exit_code: int | None = None
    pid: int = 0
    finished: str = ""

    def to_json(self) -> dict[str, Any]:
        out = self.meta.to_json()
        out.update(status=self.status, exit_code=self.exit_code, pid=self.pid)
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
) -> dict[str, Any]:
    """The OCI config.json: the runtime's defaults, the image's config
    (``images.bundle.oci_config``, with its User resolved inside ``rootfs``), the overrides."""
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
    if opts.network == "host":
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
        for path in host_files:
            if os.path.isfile(path):
                spec["mounts"].append(
                    {"destination": path, "type": "bind", "source": path,
                     "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
                )  # fmt: skip
    elif opts.network != "none":
        raise ValueError(f"unknown network mode {opts.network!r} (none or host)")
    return spec


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

    @property
    def log(self) -> str:
        return self.file("ctr.log")

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
    cleanup: ExitStack = field(default_factory=ExitStack)


def prepare(opts: RunOptions, paths: Paths) -> Prepared:
    """Everything but the process: the directory and record, the image ref, the overlay
    rootfs and config.json. A failure removes what was made and raises RunError."""
    from images.errors import ImageError

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
        try:
            spec = build_config(
                store.config(img), ctr.rootfs, opts, cid,
                name=name, image_id=img.id, cgroup_path=cgroup_path,
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
        return Prepared(ctr, meta, img, store, undo.pop_all())
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _create_opts(paths: Paths) -> container.CreateOptions:
    return container.CreateOptions(root=paths.state_root, cgroup_root=paths.cgroup_root)


def run(
    opts: RunOptions,
    paths: Paths = Paths(),
    *,
    on_started: Callable[[Meta], None] | None = None,
) -> int:
    """``corral run`` in the foreground: stdio passes through, signals are forwarded, the
    container's exit code is returned. With ``opts.rm`` nothing is left afterwards;
    otherwise the exited container stays (rootfs unmounted) until ``remove``."""
    if opts.detach:
        raise ValueError("run() is for the foreground; use run_detached()")
    p = prepare(opts, paths)
    try:
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
    _finish(p.ctr, code)
    return code


def run_detached(opts: RunOptions, paths: Paths = Paths()) -> Meta:
    """``corral run -d``: start the container under a supervisor and return once it runs
    (or raise RunError with the supervisor's reason, everything removed)."""
    p = prepare(opts, paths)
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            _spawn_supervisor(p.ctr, w)
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as f:
            answer = f.read().decode(errors="replace").strip()
        if answer != "ok":
            reason = answer.removeprefix("error: ") or "the supervisor exited without a word"
            raise RunError("start container", p.meta.short_id, reason)
    except BaseException:
        # The supervisor has exited (its end of the pipe is closed) or never started.
        _kill_container(p.ctr)
        p.cleanup.close()
        raise
    return p.meta


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn_supervisor(ctr: Ctr, status_fd: int) -> None:
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_package_root(), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    argv = [sys.executable, "-m", "runtime.ctr", "supervise", ctr.paths.to_json(), ctr.id,
            str(status_fd)]  # fmt: skip
    log = os.open(ctr.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        launcher = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(status_fd,),
            start_new_session=True,
            env=env,
            cwd="/",
        )
    except OSError as e:
        raise RunError("start supervisor", ctr.id[:12], e) from e
    finally:
        os.close(log)
    launcher.wait()  # it forks the supervisor and exits: nobody has to reap the supervisor


def supervise(paths: Paths, cid: str, status_fd: int) -> int:
    """The detached container's supervisor: create and start it, say ``ok`` (or
    ``error: ...``) on ``status_fd``, wait, record the exit code, clean up."""
    ctr = Ctr(paths, cid)
    os.set_inheritable(status_fd, False)  # the container must not hold it open
    status = os.fdopen(status_fd, "wb")

    def started(_st: object) -> None:
        status.write(b"ok\n")
        status.close()

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        ctr.set_owner(os.getpid())
        code = container.run(cid, ctr.dir, _create_opts(paths), on_started=started)
    except BaseException as e:
        if not status.closed:
            status.write(f"error: {e}\n".encode())
            status.close()
            return 1  # run_detached removes what prepare made
        raise
    _finish(ctr, code)
    return 0


def _finish(ctr: Ctr, code: int) -> None:
    """After the process exited (and the runtime state is gone): record the exit code, then
    unmount the rootfs, or remove everything for ``--rm``."""
    with ctr.locked() as present:
        if not present:
            return  # removed meanwhile by `rm -f`
        ctr.write_json("exit.json", {"code": code, "finished": _now()})
        meta = ctr.meta()
        if meta.rm:
            _remove_all(ctr, meta)
            return
        from images.store import Store

        Store(ctr.paths.store).umount(ctr.rootfs)


def _rmtree(path: str) -> None:
    import shutil

    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


def _remove_all(ctr: Ctr, meta: Meta) -> None:
    """Runtime state, overlay mount, upper dir, image ref, directory: each is removed if
    present (so a half-made or half-removed container can be removed again)."""
    from images.errors import ImageError
    from images.store import Store

    try:
        container.delete(meta.id, force=True, root=ctr.paths.state_root)
    except CorralError as e:
        raise RunError("delete runtime state", meta.id[:12], e) from e
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
    done = ctr.read_json("exit.json")
    if done is not None:
        return Info(meta, "exited", int(done["code"]), finished=str(done.get("finished", "")))
    try:
        st = container.state(meta.id, ctr.paths.state_root)
    except NotFound:
        st = None
    owner = ctr.owner_alive()
    if st is not None:
        status = str(st["status"])
        pid = int(st["pid"])  # type: ignore[call-overload]
        if status == "stopped":
            return Info(meta, "stopping" if owner else "exited", pid=0)
        return Info(meta, status, pid=pid)
    return Info(meta, "creating" if owner else "exited")


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


def log_path(paths: Paths, ref: str) -> str:
    ctr = find(paths, ref)
    if not os.path.exists(ctr.log):
        raise ContainerError(ref, f"container {ref} has no log: it ran in the foreground")
    return ctr.log


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


def stop(paths: Paths, ref: str, timeout: float = 10.0) -> Info:
    """Send the image's stop signal (default SIGTERM), SIGKILL after ``timeout`` seconds;
    return once the exit is recorded (or, with no owner left, the process is gone)."""
    ctr = find(paths, ref)
    i = info(ctr)
    if i.status in ("exited",):
        return i
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
    state, overlay mount and upper dir, image ref, directory."""
    ctr = find(paths, ref)
    i = info(ctr)
    if i.status != "exited":
        if not force:
            raise InvalidState(ref, f"container {ref} is {i.status}: stop it first, or use -f")
        _kill_container(ctr)
        if i.pid:
            _wait_pid(i.pid, 10.0)
        # Let the owner record the exit and let go; then we remove whatever it left.
        _wait_for(lambda: not ctr.owner_alive(), 10.0)
    with ctr.locked() as present:
        if present:
            _remove_all(ctr, i.meta)
    return i.meta


def supervisor_main(argv: list[str]) -> int:
    """``python -m runtime.ctr supervise PATHS_JSON ID STATUS_FD``: fork the supervisor (so
    the caller reaps this launcher at once and the supervisor is nobody's child), then run."""
    if len(argv) != 4 or argv[0] != "supervise":
        print("usage: python -m runtime.ctr supervise PATHS_JSON ID STATUS_FD", file=sys.stderr)
        return 2
    paths, cid, fd = Paths.from_json(argv[1]), argv[2], int(argv[3])
    if os.fork() != 0:
        os._exit(0)
    try:
        code = supervise(paths, cid, fd)
    except BaseException as e:  # noqa: B036 - the log is the only place to say it
        print(f"corral supervisor {cid[:12]}: {e}", file=sys.stderr, flush=True)
        code = 1
    os._exit(code)


if __name__ == "__main__":
    from runtime.ctr import supervisor_main as _main

    sys.exit(_main(sys.argv[1:]))
