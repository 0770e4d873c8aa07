"""containerd drives corral-oci through its runc v2 shim, side by side with runc.

The test starts a containerd of its own (Debian's, installed by scripts/setup.sh): its root,
snapshotter root (overlayfs), runtime roots and fifo dir under a temp dir in /var/tmp, its state
and socket under a temp dir in /run, and a config that disables the CRI plugin (the only one
that wants a network) and the plugins that write outside those dirs. Every ``ctr run`` names
the runtime binary (``--runc-binary``), its root (``--runc-root``) and a cgroup path.

Cgroups: ``cgroupsPath`` is one path for every hierarchy, and on this hybrid host our own
cgroup differs from one hierarchy to the next (e.g. ``memory:/process_api/X`` but ``cpu:/``),
so an absolute path would make ancestors at the root of some hierarchies. The test passes a
relative path instead: runc and corral both resolve it below their own cgroup in each
hierarchy, which is the shim's, which is containerd's, which is ours (containerd moves neither
itself nor its shims unless configured to). The tests check this from /proc/<pid>/cgroup. The
shim finds the cgroup the same way (/proc/<pid>/cgroup, v1 on a hybrid host) for metrics.

Covered: run (output, exit codes, a missing executable), a tty run and a tty exec (driven
with script(1)), a detached task's life (ls, ps, exec, pause, resume, kill, delete), kill
``--all``, delete ``--force``, ``--memory-limit`` enforced inside, ``ctr task metrics`` and the
OOM event (the shim reads the cgroup itself), and what the process sees with ctr's options.

Each test runs once with corral-oci and once with runc as the shim's runtime; after each one
no task, container, runtime state, shim, mount or cgroup of it may be left. The module
finalizer stops the daemon by its pid and removes everything made, even after a failure:
shims are found by their ``-address`` argument (our socket) and nothing else is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from tests.conftest import REPO, Result
from tests.integration.test_images import mounts_under

pytestmark = pytest.mark.root

IMAGE = "localhost/corral-busybox:containerd"
CORRAL_OCI = REPO / ".venv" / "bin" / "corral-oci"
RUNTIMES = {"corral": str(CORRAL_OCI), "runc": shutil.which("runc")}
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2")
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 puts shim sockets here, by hash
FIFOS = Path("/run/containerd/fifo")  # ctr's default --fifo-dir (we always pass ours)
DEFAULT_RUNC_ROOT = Path("/run/containerd/runc")  # the shim's default --runc-root
WAIT = 60.0  # seconds to wait for something that must happen (never asserted on)


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy (the controllers field of /proc/self/cgroup)."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[ctrls] = path
    return out


def _own_cgroup_dirs() -> list[Path]:
    """Our own cgroup directory in every mounted hierarchy."""
    own: dict[str, str] = {}
    for ctrls, path in _own_cgroups().items():
        for c in ctrls.split(",") if ctrls else [""]:
            own[c] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if rfields[0] == "cgroup2":
            path = own.get("")
        elif rfields[0] == "cgroup":
            path = next((own[o] for o in rfields[2].split(",") if o and o in own), None)
        else:
            continue
        if path is not None:
            dirs.append(Path(fields[4]) / os.path.relpath(path, fields[3]))
    return dirs


def _cgroups_named(prefix: str) -> list[Path]:
    return sorted(
        c
        for d in _own_cgroup_dirs()
        if d.is_dir()
        for c in d.iterdir()
        if c.is_dir() and c.name.startswith(prefix)
    )


def _remove_cgroups(prefix: str) -> None:
    for top in _cgroups_named(prefix):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def _frozen(name: str) -> bool:
    """Whether the cgroup ``name`` (below ours) is frozen, by the v1 freezer or v2's."""
    for d in _cgroups_named(name):
        for f, frozen in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
            if (d / f).exists() and (d / f).read_text().strip() == frozen:
                return True
    return False


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def _shims(address: str, cid: str | None = None) -> list[int]:
    """Pids of the shims serving our containerd (its socket in their -address argument)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _cmdline(int(entry))
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        pairs = set(zip(argv, argv[1:], strict=False))
        if ("-address", address) not in pairs or (cid is not None and ("-id", cid) not in pairs):
            continue
        pids.append(int(entry))
    return pids


def _pids_in_cgroup(name: str) -> list[int]:
    """Processes whose cgroup (in any hierarchy) is ``name`` or below it."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if any(f"/{name}/" in line + "/" for line in text.splitlines()):
            pids.append(int(entry))
    return pids


@dataclass
class Containerd:
    """Our own containerd daemon and a ``ctr`` pointed at it."""

    base: Path  # /var/tmp/...: root, snapshotter, runtime roots, fifos, logs
    run: Path  # /run/...: state and socket
    namespace: str
    tag: str  # prefix of every container id and cgroup name
    proc: subprocess.Popen[bytes] | None = None
    made: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.run / "containerd.sock")

    @property
    def fifo_dir(self) -> Path:
        return self.base / "fifo"

    def runtime_root(self, name: str) -> Path:
        return self.base / f"runtime-{name}"

    @property
    def corral_calls(self) -> Path:
        """Every command line the shim ran corral-oci with, one a line (see ``binary``)."""
        return self.base / "corral-oci.calls"

    def binary(self, name: str) -> str:
        """The runtime binary ctr names: for corral, a wrapper that logs its command line
        and execs corral-oci, so a test can tell the shim really ran it (some ctr options
        make the shim run plain runc whatever --runc-binary says)."""
        if name != "corral":
            return str(RUNTIMES[name])
        wrapper = self.base / "corral-oci"
        if not wrapper.exists():
            wrapper.write_text(
                f'#!/bin/sh\necho "$*" >> {shlex.quote(str(self.corral_calls))}\n'
                f'exec {shlex.quote(str(CORRAL_OCI))} "$@"\n'
            )
            wrapper.chmod(0o755)
        return str(wrapper)

    def corral_ran(self, cid: str) -> list[str]:
        """The corral-oci subcommands run for ``cid`` under this containerd's runtime root."""
        root = f"--root {self.runtime_root('corral') / self.namespace} "
        calls = self.corral_calls.read_text().splitlines() if self.corral_calls.exists() else []
        out = []
        for line in calls:
            words = line.split()
            if root in line + " " and cid in words:
                out += [w for w in ("create", "start", "exec", "delete", "kill") if w in words][:1]
        return out

    def ctr(self, *args: str, timeout: float = 120) -> Result:
        cmd = ["ctr", "--address", self.address, "--namespace", self.namespace, *args]
        # Files, not pipes: a detached task's stdio must not keep us waiting for EOF.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout, cwd=REPO
            )
            out.seek(0)
            err.seek(0)
            return Result(p.returncode, out.read().decode(), err.read().decode())

    def ok(self, *args: str, timeout: float = 120) -> str:
        res = self.ctr(*args, timeout=timeout)
        assert res.rc == 0, f"ctr {' '.join(args)}: rc {res.rc}: {res.out}{res.err}"
        return res.out

    def tasks(self) -> dict[str, tuple[int, str]]:
        """{id: (pid, status)} from `ctr task ls`."""
        rows = self.ok("task", "ls").splitlines()[1:]
        return {f[0]: (int(f[1]), f[2]) for f in (r.split() for r in rows) if len(f) == 3}

    def containers(self) -> list[str]:
        return self.ok("container", "ls", "-q").split()

    def shim_socket(self, cid: str) -> Path:
        """Where containerd 1.6 puts the shim socket of ``cid`` (runtime/v2/shim SocketAddress)."""
        key = os.path.join(self.address, self.namespace, cid)
        return SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest()

    def leftovers(self, cids: list[str]) -> dict[str, list[str]]:
        """What is left of these containers anywhere: must be nothing once they are gone."""
        tasks, ctrs = self.tasks(), self.containers()
        bundles = self.run / "state" / "io.containerd.runtime.v2.task" / self.namespace
        found: dict[str, list[str]] = {
            "tasks": [c for c in cids if c in tasks],
            "containers": [c for c in cids if c in ctrs],
            "bundles": [c for c in cids if (bundles / c).exists()],
            "runtime state": [
                f"{name}/{c}"
                for name in RUNTIMES
                for c in cids
                if (self.runtime_root(name) / self.namespace / c).exists()
            ],
            "shims": [f"{c}: {p}" for c in cids for p in _shims(self.address, c)],
            "shim sockets": [
                str(self.shim_socket(c)) for c in cids if self.shim_socket(c).exists()
            ],
            "mounts": [
                m
                for m in mounts_under(self.run) + mounts_under(self.base)
                if any(f"/{c}/" in m + "/" for c in cids)
            ],
            "cgroups": [str(d) for c in cids for d in _cgroups_named(c)],
            "processes": [f"{c}: {p}" for c in cids for p in _pids_in_cgroup(c)],
        }
        return {k: v for k, v in found.items() if v}

    def force_remove(self, cid: str, daemon: bool = True) -> None:
        """Remove ``cid`` whatever state it is in: through containerd (while it runs), then
        through the runtimes, then whatever is left of its shim and cgroups."""
        if daemon:
            self.ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
            self.ctr("task", "delete", "--force", cid)
            self.ctr("container", "delete", cid)
        for name, binary in RUNTIMES.items():
            root = self.runtime_root(name) / self.namespace
            if binary is not None and (root / cid).exists():
                subprocess.run(
                    [binary, "--root", str(root), "delete", "--force", cid],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
        for pid in _shims(self.address, cid) + _pids_in_cgroup(cid):
            _kill(pid)  # its shim, and anything still in its cgroup (ours by its name)
        self.shim_socket(cid).unlink(missing_ok=True)
        _wait_for(lambda: not _pids_in_cgroup(cid), f"the processes of {cid} to exit")
        _remove_cgroups(cid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Client:
    """``ctr`` running containers with one runtime binary (corral-oci or runc)."""

    cd: Containerd
    name: str
    binary: str
    made: list[str] = field(default_factory=list)

    def new_id(self) -> str:
        cid = f"{self.cd.tag}-{self.name}-{uuid.uuid4().hex[:6]}"
        self.made.append(cid)
        self.cd.made.append(cid)
        return cid

    def run_args(self, cid: str, *opts: str) -> list[str]:
        """`ctr run` with our runtime, its root, fifo dir and cgroup, then IMAGE and id."""
        return [
            "run",
            "--runc-binary",
            self.binary,
            "--runc-root",
            str(self.cd.runtime_root(self.name)),
            "--fifo-dir",
            str(self.cd.fifo_dir),
            "--cgroup",
            cid,  # relative: below the runtime's own cgroup, i.e. ours (see the docstring)
            *opts,
            IMAGE,
            cid,
        ]

    def run(self, *cmd: str, opts: tuple[str, ...] = ("--rm",)) -> tuple[str, Result]:
        cid = self.new_id()
        return cid, self.cd.ctr(*self.run_args(cid, *opts), *cmd)

    def run_detached(self, *cmd: str) -> tuple[str, Path]:
        """A running task whose output goes to a log file (returned)."""
        cid = self.new_id()
        log = self.cd.base / f"{cid}.log"
        self.cd.ok(*self.run_args(cid, "--detach", "--log-uri", f"file://{log}"), *cmd)
        return cid, log

    def exec_args(self, cid: str, exec_id: str, *opts: str) -> list[str]:
        return ["task", "exec", "--fifo-dir", str(self.cd.fifo_dir), "--exec-id", exec_id,
                *opts, cid]  # fmt: skip

    def assert_ran(self) -> None:
        """corral-oci ran every container of the corral client (create, then delete, with
        our runtime root), and none of the others."""
        for cid in self.made:
            ran = self.cd.corral_ran(cid)
            if self.name == "corral":
                assert "create" in ran and "delete" in ran, (cid, ran)
            else:
                assert ran == [], (cid, ran)

    def assert_gone(self) -> None:
        """corral-oci ran what it should (``assert_ran``) and nothing of this client's
        containers is left (the shims exit a little after)."""
        self.assert_ran()
        try:
            _wait_for(lambda: not self.cd.leftovers(self.made), "containers to be cleaned up")
        except AssertionError:
            assert self.cd.leftovers(self.made) == {}


@pytest.fixture(scope="module")
def containerd(rootfs: Path) -> Iterator[Containerd]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"containerd is not installed ({', '.join(missing)}; scripts/setup.sh)")
    hexid = uuid.uuid4().hex[:8]
    cd = Containerd(
        base=Path(tempfile.mkdtemp(prefix="corral-containerd-", dir="/var/tmp")),
        run=Path(tempfile.mkdtemp(prefix="corral-containerd-", dir="/run")),
        namespace=f"corral-{hexid}",
        tag=f"ctrd{hexid}",
    )
    had_run_containerd = Path("/run/containerd").exists()
    root, state = cd.base / "root", cd.run / "state"
    cd.fifo_dir.mkdir()
    config = cd.base / "config.toml"
    disabled = [
        "io.containerd.grpc.v1.cri",  # Kubernetes CRI: CNI networking, streaming server
        "io.containerd.internal.v1.opt",  # would write /opt/containerd
        "io.containerd.internal.v1.tracing",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
    ]
    config.write_text(
        f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = {json.dumps(disabled)}

[grpc]
  address = "{cd.address}"
[ttrpc]
  address = "{cd.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.snapshotter.v1.overlayfs"]
  root_path = "{root / "overlayfs"}"
"""
    )
    log = open(cd.base / "containerd.log", "wb")  # noqa: SIM115 (closed in the finalizer)
    try:
        cd.proc = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            assert cd.proc is not None and cd.proc.poll() is None, (
                "containerd exited: " + (cd.base / "containerd.log").read_text()[-3000:]
            )
            return cd.ctr("version", timeout=30).rc == 0

        _wait_for(up, "containerd to serve")
        layer = tar_tree(rootfs)
        image = config_for([layer], Cmd=["sh"], Env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        files, _ = docker_files([layer], image, repo_tags=[IMAGE])
        archive = write_tar(cd.base / "image.tar", files)
        cd.ok("images", "import", "--snapshotter", "overlayfs", str(archive))
        yield cd
    finally:
        try:
            _teardown(cd, had_run_containerd)
        finally:
            log.close()
            for path in (cd.run, cd.base):
                for mp in sorted(mounts_under(path), key=len, reverse=True):
                    subprocess.run(["umount", "-l", mp], check=False)
            shutil.rmtree(cd.run, ignore_errors=True)
            shutil.rmtree(cd.base, ignore_errors=True)


def _teardown(cd: Containerd, had_run_containerd: bool) -> None:
    """Everything the module made goes, in an order that works whatever failed."""
    if cd.proc is not None and cd.proc.poll() is None:
        listed = cd.ctr("container", "ls", "-q", timeout=WAIT)
        for cid in listed.out.split() if listed.rc == 0 else []:
            cd.force_remove(cid)
        cd.ctr("images", "rm", "--sync", IMAGE, timeout=WAIT)
    if cd.proc is not None:
        cd.proc.terminate()
        try:
            cd.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            cd.proc.kill()
            cd.proc.wait()
    # Whatever the daemon did not clean: the runtimes' containers, then our shims.
    bundles = cd.run / "state" / "io.containerd.runtime.v2.task" / cd.namespace
    left = set(cd.made) | (set(os.listdir(bundles)) if bundles.is_dir() else set())
    for name in RUNTIMES:
        root = cd.runtime_root(name) / cd.namespace
        left |= set(os.listdir(root)) if root.is_dir() else set()
    for cid in left:
        cd.force_remove(cid, daemon=False)
    for pid in _shims(cd.address):
        _kill(pid)
    _remove_cgroups(cd.tag)
    try:
        DEFAULT_RUNC_ROOT.joinpath(cd.namespace).rmdir()  # only if some run fell back to it
    except OSError:
        pass
    if not had_run_containerd:
        # The shims made /run/containerd/{s,fifo}: drop them if nobody else uses them.
        for d in (SHIM_SOCKETS, FIFOS, DEFAULT_RUNC_ROOT, SHIM_SOCKETS.parent):
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture(params=list(RUNTIMES))
def client(request: pytest.FixtureRequest, containerd: Containerd) -> Iterator[Client]:
    binary = RUNTIMES[request.param]
    if binary is None:
        pytest.skip(f"{request.param} is not installed")
    c = Client(containerd, request.param, containerd.binary(request.param))
    try:
        yield c  # each test ends with c.assert_gone(): the runtime's own cleanup, checked
    finally:
        for cid in c.made:
            containerd.force_remove(cid)


def _wait_status(cd: Containerd, cid: str, status: str) -> int:
    _wait_for(lambda: cd.tasks().get(cid, (0, ""))[1] == status, f"{cid} to be {status}")
    return cd.tasks()[cid][0]


# ---------------------------------------------------------------- run


def test_run_rm_echo(client: Client) -> None:
    _, res = client.run("echo", "hi")
    assert (res.rc, res.out) == (0, "hi\n"), res.err
    client.assert_gone()


def test_run_exit_code(client: Client) -> None:
    _, res = client.run("sh", "-c", "echo out; echo err >&2; exit 3")
    assert res.rc == 3, res.err
    assert res.out == "out\n"
    assert "err\n" in res.err
    client.assert_gone()


def test_missing_executable_fails_at_create(client: Client) -> None:
    """The runtime's error reaches ctr through the shim (from `--log FILE --log-format json`)."""
    cid, res = client.run("/nonexistent")
    assert res.rc != 0
    assert "OCI runtime create failed" in res.err, res.err
    assert "no such file or directory" in res.err.lower(), res.err
    if client.name == "corral":  # and it is ours: the shim ran the binary we named
        assert f"create {cid}: exec(/nonexistent)" in res.err, res.err
    client.assert_gone()


def test_network_is_a_new_namespace_with_only_lo(client: Client) -> None:
    _, res = client.run("sh", "-c", "corral-test netdevs; corral-test ifup lo")
    assert res.rc == 0, res.err
    assert res.out.split() == ["lo", "up"]
    client.assert_gone()


def test_memory_limit_enforced_inside(client: Client) -> None:
    limit = 32 << 20
    _, res = client.run(
        "sh", "-c", "corral-test alloc 8 >/dev/null && echo small-ok; corral-test alloc 64; "
        "echo big=$?", opts=("--rm", "--memory-limit", str(limit)),
    )  # fmt: skip
    assert res.rc == 0, res.err
    lines = res.out.splitlines()
    assert "small-ok" in lines
    assert lines[-1] == f"big={128 + signal.SIGKILL}"  # the OOM killer
    client.assert_gone()


def test_oom_kill_reaches_the_event_stream(client: Client) -> None:
    """The shim watches the container's memory cgroup itself and publishes /tasks/oom."""
    cd = client.cd
    out = cd.base / f"events-{uuid.uuid4().hex[:6]}"
    with open(out, "wb") as f:
        events = subprocess.Popen(
            ["ctr", "--address", cd.address, "--namespace", cd.namespace, "events"],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        # Subscribed once an event of ours shows up (an image label change: /images/update).
        token = uuid.uuid4().hex

        def subscribed() -> bool:
            cd.ok("images", "label", IMAGE, f"corral.test/sync={token}")
            return token in out.read_text()

        _wait_for(subscribed, "ctr events to subscribe")
        cid, res = client.run(
            "corral-test", "alloc", "64", opts=("--rm", "--memory-limit", str(32 << 20))
        )
        assert res.rc == 128 + signal.SIGKILL, res.err

        def seen() -> dict[str, str]:
            found = {}
            for line in out.read_text().splitlines():
                # date time zone UTC namespace topic {event}
                fields = line.split(None, 6)
                if len(fields) == 7 and f'"{cid}"' in fields[6]:
                    found[fields[5]] = fields[6]
            return found

        # The shim publishes /tasks/oom from its own watch of the cgroup, apart from the
        # task's exit and delete: it may come after them (seen with runc's shim on a busy
        # machine), so both are waited for.
        _wait_for(
            lambda: {"/tasks/delete", "/tasks/oom"} <= set(seen()),
            "the task's delete and oom events",
        )
        topics = seen()
        assert json.loads(topics["/tasks/exit"])["exit_status"] == 128 + signal.SIGKILL
    finally:
        events.kill()
        events.wait()
    client.assert_gone()


def test_tty_run(client: Client) -> None:
    if shutil.which("script") is None:
        pytest.skip("script(1) not installed")
    cid = client.new_id()
    ctr = ["ctr", "--address", client.cd.address, "--namespace", client.cd.namespace]
    cmd = [*ctr, *client.run_args(cid, "--rm", "--tty"), "sh", "-c", "corral-test ttyname; exit 4"]
    res = subprocess.run(
        ["script", "-qec", shlex.join(cmd), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 4, res.stdout + res.stderr
    assert "/dev/pts/0" in res.stdout
    client.assert_gone()


# What the process sees with ctr's options, the same through corral-oci and runc. Not here:
# --no-pivot and --uidmap, with which ctr 1.6 sends task options that replace the runtime
# options, so the shim runs plain `runc` whatever --runc-binary says.
INSIDE = {
    "default": (
        (),
        "corral-test mounts; corral-test caps; corral-test rlimit NOFILE; corral-test nnp",
    ),
    "seccomp": (("--seccomp",), "corral-test seccomp-probe unshare"),
    "read-only": (("--read-only",), "touch /x; echo rc=$?"),
    "privileged": (("--privileged",), "corral-test caps; corral-test nnp; ls /proc/acpi"),
    "caps": (("--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN"), "corral-test caps"),
    "env-cwd": (("--env", "FOO=bar", "--cwd", "/tmp"), "echo $FOO; pwd; corral-test ids"),
    "bind-ro": (
        ("--mount", "type=bind,src=/etc,dst=/host,options=rbind:ro"),
        "test -f /host/hostname && echo found; touch /host/x; echo rc=$?",
    ),
    "allow-new-privs": (("--allow-new-privs",), "corral-test nnp"),
    "masked": ((), "cat /proc/kcore; ls /proc/acpi; echo 1 > /proc/sysrq-trigger; echo rc=$?"),
}


@pytest.mark.parametrize("case", list(INSIDE))
def test_inside_same_as_runc(containerd: Containerd, case: str) -> None:
    if RUNTIMES["runc"] is None:
        pytest.skip("runc is not installed")
    opts, script = INSIDE[case]
    seen = {}
    clients = [Client(containerd, name, containerd.binary(name)) for name in RUNTIMES]
    try:
        for c in clients:
            _, res = c.run("sh", "-c", f"{{ {script}; }} 2>&1", opts=("--rm", *opts))
            seen[c.name] = (res.rc, res.out, res.err)
            c.assert_gone()
    finally:
        for c in clients:
            for cid in c.made:
                containerd.force_remove(cid)
    assert seen["corral"] == seen["runc"]


# ---------------------------------------------------------------- a task's life


def test_detached_task_lifecycle(client: Client) -> None:
    cd = client.cd
    cid, log = client.run_detached("corral-test", "sigwait")
    _wait_for(lambda: log.exists() and "ready" in log.read_text(), "the task to be ready")
    pid, status = cd.tasks()[cid]
    assert status == "RUNNING"

    # The init is the shim's child (the runtime exited, the shim is a subreaper) and its
    # cgroup is ours plus the relative path we gave, in every hierarchy.
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    assert ppid in _shims(cd.address, cid)
    own = _own_cgroups()
    theirs = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        theirs[ctrls] = path
    assert theirs == {k: os.path.join(v, cid) for k, v in own.items()}
    # The shim ran the binary we named, with the root we named.
    root = cd.runtime_root(client.name) / cd.namespace
    out = subprocess.run(
        [client.binary, "--root", str(root), "state", cid], capture_output=True, timeout=60
    ).stdout
    assert (json.loads(out)["status"], json.loads(out)["pid"]) == ("running", pid)

    # ps: the init and an exec'd process, which ctr labels with its exec id.
    cd.ok(*client.exec_args(cid, "bg", "--detach"), "sleep", "1000")
    rows = [r.split(None, 1) for r in cd.ok("task", "ps", cid).splitlines()[1:]]
    assert str(pid) in [r[0] for r in rows]
    assert any("ExecID:bg" in r[1] for r in rows if len(r) > 1), rows
    assert len(rows) == 2

    # exec with output and exit code.
    res = cd.ctr(*client.exec_args(cid, "x"), "sh", "-c", "echo in-exec; exit 5")
    assert res.rc == 5, res.err
    assert res.out == "in-exec\n"

    # A failing exec is the runtime's error, and the task carries on.
    res = cd.ctr(*client.exec_args(cid, "missing"), "/nonexistent")
    assert res.rc != 0
    assert "OCI runtime exec failed" in res.err, res.err
    assert "no such file or directory" in res.err.lower(), res.err
    assert cd.tasks()[cid][1] == "RUNNING"

    cd.ok("task", "pause", cid)
    assert cd.tasks()[cid][1] == "PAUSED"
    assert _frozen(cid)
    cd.ok("task", "resume", cid)
    assert cd.tasks()[cid][1] == "RUNNING"
    assert not _frozen(cid)

    cd.ok("task", "kill", "--signal", "SIGTERM", cid)
    _wait_status(cd, cid, "STOPPED")
    assert log.read_text().split() == ["ready", str(int(signal.SIGTERM))]
    cd.ok("task", "delete", cid)
    cd.ok("container", "delete", cid)
    client.assert_gone()


def test_kill_all_and_force_delete(client: Client) -> None:
    cd = client.cd
    cid, _ = client.run_detached("sh", "-c", "sleep 1000 & sleep 1000 & wait")
    pid = _wait_status(cd, cid, "RUNNING")
    _wait_for(lambda: len(cd.ok("task", "ps", cid).splitlines()) == 4, "the sleeps to start")
    cd.ok("task", "kill", "--all", "--signal", "SIGKILL", cid)
    _wait_status(cd, cid, "STOPPED")
    assert not _pids_in_cgroup(cid)
    assert not Path(f"/proc/{pid}").exists()
    cd.ok("task", "delete", cid)
    cd.ok("container", "delete", cid)

    # delete --force kills a running task first.
    cid, _ = client.run_detached("sleep", "1000")
    _wait_status(cd, cid, "RUNNING")
    cd.ok("task", "delete", "--force", cid)
    cd.ok("container", "delete", cid)
    client.assert_gone()


def test_exec_tty(client: Client) -> None:
    if shutil.which("script") is None:
        pytest.skip("script(1) not installed")
    cd = client.cd
    cid, _ = client.run_detached("sleep", "1000")
    _wait_status(cd, cid, "RUNNING")
    ctr = ["ctr", "--address", cd.address, "--namespace", cd.namespace]
    cmd = [*ctr, *client.exec_args(cid, "t", "--tty"), "sh", "-c", "corral-test ttyname; exit 6"]
    res = subprocess.run(
        ["script", "-qec", shlex.join(cmd), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 6, res.stdout + res.stderr
    assert "/dev/pts/" in res.stdout
    cd.ok("task", "delete", "--force", cid)
    cd.ok("container", "delete", cid)
    client.assert_gone()


# ---------------------------------------------------------------- metrics


def _metrics(cd: Containerd, cid: str) -> dict[str, str]:
    rows = cd.ok("task", "metrics", cid).splitlines()
    start = next(i for i, r in enumerate(rows) if r.startswith("METRIC"))
    return {f[0]: f[1] for f in (r.split(None, 1) for r in rows[start + 1 :]) if len(f) == 2}


def test_metrics(client: Client) -> None:
    """The shim reads the container's cgroup itself, found from the init's /proc/PID/cgroup."""
    cd = client.cd
    limit = 48 << 20
    cid = client.new_id()
    log = cd.base / f"{cid}.log"
    opts = ("--detach", "--memory-limit", str(limit), "--log-uri", f"file://{log}")
    cd.ok(*client.run_args(cid, *opts), "sh", "-c", "sleep 1000 & corral-test sigwait")
    _wait_for(lambda: log.exists() and "ready" in log.read_text(), "the task to be ready")
    m = _metrics(cd, cid)
    assert int(m["memory.limit_in_bytes"]) == limit
    assert int(m["memory.usage_in_bytes"]) > 0
    assert int(m["pids.current"]) == 2
    assert int(m["cpuacct.usage"]) > 0
    cd.ok("task", "delete", "--force", cid)
    cd.ok("container", "delete", cid)
    client.assert_gone()


def test_metrics_fields_same_as_runc(containerd: Containerd) -> None:
    if RUNTIMES["runc"] is None:
        pytest.skip("runc is not installed")
    fields = {}
    clients = [Client(containerd, name, containerd.binary(name)) for name in RUNTIMES]
    try:
        for c in clients:
            cid, _ = c.run_detached("sleep", "1000")
            _wait_status(containerd, cid, "RUNNING")
            fields[c.name] = sorted(_metrics(containerd, cid))
            containerd.ok("task", "delete", "--force", cid)
            containerd.ok("container", "delete", cid)
        assert fields["corral"] == fields["runc"]
        for c in clients:
            c.assert_gone()
    finally:
        for c in clients:
            for cid in c.made:
                containerd.force_remove(cid)


# ---------------------------------------------------------------- nothing left


def test_nothing_left(containerd: Containerd) -> None:
    """After all of the above: no task, container, shim, mount, cgroup or runtime state."""
    cd = containerd
    assert cd.tasks() == {}
    assert cd.containers() == []
    assert cd.leftovers(cd.made) == {}
    active = [r for r in cd.ok("snapshots", "ls").splitlines()[1:] if "Active" in r]
    assert active == []
    assert _shims(cd.address) == []
    assert [m for m in mounts_under(cd.run) + mounts_under(cd.base)] == []
    assert _cgroups_named(cd.tag) == []
    for name in RUNTIMES:
        root = cd.runtime_root(name) / cd.namespace
        assert not (root.is_dir() and os.listdir(root)), f"{name} state left: {root}"
    # No run fell back to the shim's default runtime root (ctr does for some options).
    assert not (DEFAULT_RUNC_ROOT / cd.namespace).exists()
