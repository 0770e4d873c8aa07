"""OCI runtime-spec conformance: opencontainers/runtime-tools' validation programs against
corral-oci, one case per program, failing on any ``not ok`` TAP line or a non-zero exit.

Each program writes a bundle, drives ``$RUNTIME create/start/state/kill/delete`` and checks
the result, most of them with ``runtimetest`` inside the container comparing config.json with
what it sees. The programs are not built here: Debian's
golang-github-opencontainers-runtime-tools-dev ships the library but not ``validation/`` or
``cmd/runtimetest``. ``CORRAL_RUNTIME_TOOLS`` (default ``<test cache>/runtime-tools``) names a
directory holding a static ``runtimetest`` and the ``<name>.t`` programs; without it the
module skips saying so. The rootfs the programs unpack (``rootfs-amd64.tar.gz`` in their cwd)
is ours: the shared busybox test rootfs.

How each program runs, the same for any runtime:
- ``RUNTIME`` is a two-line wrapper that adds a private ``--root`` (under this test's temp dir)
  and makes the bundle the program made (0700, as Go's TempDir makes it) reachable by a
  container whose root is mapped to another uid (linux_uid_mappings, linux_ns_nopath);
- in a mount and network namespace of its own (``unshare``), so nothing a runtime might mount
  in "the caller's" namespace reaches the machine's;
- cgroups: relative ``cgroupsPath`` values (``testdir/cgrouptest/container``) land under this
  process's own cgroup in every hierarchy. The absolute one is compiled into the programs
  (``cgroups.AbsCgroupPath``, ``/cgrouptest`` upstream): the programs that use it run only
  when ``abs-cgroup-path`` beside them names the value they were built with and it lies under
  our own cgroup in every hierarchy; otherwise they skip, saying so. Every program's cgroups
  are removed afterwards and any left fails the case.
- The programs that use cgroups run one after another (they share those paths); the others in
  a few parallel workers (each has its own bundle, ids, state root and temp dir).

Known differences (``KNOWN``) each name the TAP lines they excuse and why; each is a case where
runc 1.1.5 fails the same line on this machine, or corral differs from runc on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.cache import CACHE_DIR

pytestmark = pytest.mark.root

TOOLS = Path(os.environ.get("CORRAL_RUNTIME_TOOLS", CACHE_DIR / "runtime-tools"))
PROGRAMS = sorted(p.name.removesuffix(".t") for p in TOOLS.glob("*.t")) if TOOLS.is_dir() else []
CGROUP_ROOT = Path("/sys/fs/cgroup")
REL_CGROUP = "testdir/cgrouptest/container"  # runtime-tools' cgroups.RelCgroupPath
ABS_CGROUP_USERS = {
    "delete_resources", "linux_cgroups_blkio", "linux_cgroups_cpus", "linux_cgroups_devices",
    "linux_cgroups_hugetlb", "linux_cgroups_memory", "linux_cgroups_network",
    "linux_cgroups_pids",
}  # fmt: skip
TIMEOUT = 300
WORKERS = int(os.environ.get("CORRAL_RUNTIME_TOOLS_WORKERS", "3"))


def _own_cgroups() -> dict[str, str]:
    """Hierarchy directory under /sys/fs/cgroup -> this process's cgroup path in it."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:
            name = "unified" if (CGROUP_ROOT / "unified").is_dir() else ""
        else:
            name = controllers.removeprefix("name=")
            if not (CGROUP_ROOT / name).is_dir():
                name = next(
                    (d.name for d in CGROUP_ROOT.iterdir() if set(d.name.split(",")) >= {name}),
                    name,
                )
        own[name] = path
    return own


def _abs_cgroup_reason() -> str | None:
    """Why the absolute-cgroupsPath programs cannot run here, or None when they can."""
    f = TOOLS / "abs-cgroup-path"
    if not f.is_file():
        return f"{f} is missing: the compiled-in absolute cgroupsPath is unknown"
    path = f.read_text().strip()
    for hier, own in _own_cgroups().items():
        if not path.startswith(own.rstrip("/") + "/"):
            return (
                f"the programs' absolute cgroupsPath {path} is not under this process's "
                f"cgroup {own} in the {hier or 'unified'} hierarchy"
            )
    return None


# ---------------------------------------------------------------- known differences


def _no_file(hier: str, pattern: str) -> Callable[[], bool]:
    """True when our own cgroup in hierarchy ``hier`` has no file matching ``pattern``."""

    def check() -> bool:
        own = _own_cgroups().get(hier)
        return own is None or not any((CGROUP_ROOT / hier / own.lstrip("/")).glob(pattern))

    return check


def _kmem_ignored() -> bool:
    """True when this kernel has no working kernel-memory limit: memory.kmem.limit_in_bytes
    is absent, or (Linux >= 6.1 on v1) takes a write and still reads back unlimited."""
    own = _own_cgroups().get("memory")
    if own is None:
        return True
    probe = CGROUP_ROOT / "memory" / own.lstrip("/") / f"rtval-kmem-{os.getpid()}"
    probe.mkdir()
    try:
        f = probe / "memory.kmem.limit_in_bytes"
        if not f.exists():
            return True
        try:
            f.write_text("50593792")
        except OSError:
            return True
        return f.read_text().strip() != "50593792"
    finally:
        probe.rmdir()


def _hugetlb_v1_absent() -> bool:
    return not any("hugetlb" in line.split(":")[1] for line in _proc_cgroup_lines())


def _proc_cgroup_lines() -> list[str]:
    return Path("/proc/self/cgroup").read_text().splitlines()


def _bounding_set_short() -> bool:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    status = Path("/proc/self/status").read_text()
    bnd = int(re.search(r"^CapBnd:\s*([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return bnd != (1 << (last + 1)) - 1


@dataclass(frozen=True)
class Known:
    reason: str
    lines: frozenset[str] = frozenset()  # TAP descriptions excused; empty: skip the program
    when: Callable[[], bool] = lambda: True


_KMEM = Known(
    "this kernel takes memory.kmem.limit_in_bytes and ignores it (reads back unlimited); runc "
    "fails the same line",
    frozenset({"memory kernel is set correctly"}),
    _kmem_ignored,
)
_BLKIO = Known(
    "this kernel has neither blkio.weight nor blkio.bfq.weight (no CFQ, no BFQ): corral and "
    "runc both refuse linux.resources.blockIO.weight",
    when=_no_file("blkio", "blkio*weight"),
)
_NET_CLS = Known(
    "no net_cls/net_prio controller on this kernel: corral and runc both refuse "
    "linux.resources.network",
    when=lambda: not (CGROUP_ROOT / "net_cls").exists(),
)
_HUGETLB = Known(
    "hugetlb is a controller of the unified hierarchy of this hybrid host: runtime-tools' "
    "cgroups library reads v1 hierarchies only, and runc cannot set the limit at all",
    when=_hugetlb_v1_absent,
)
KNOWN: dict[str, Known] = {
    "linux_cgroups_memory": _KMEM,
    "linux_cgroups_relative_memory": _KMEM,
    "linux_cgroups_blkio": _BLKIO,
    "linux_cgroups_relative_blkio": _BLKIO,
    "linux_cgroups_network": _NET_CLS,
    "linux_cgroups_relative_network": _NET_CLS,
    "linux_cgroups_hugetlb": _HUGETLB,
    "linux_cgroups_relative_hugetlb": _HUGETLB,
    "process_capabilities": Known(
        "this process's capability bounding set lacks some capabilities, so the all-caps "
        "config cannot be applied (capset EPERM, runc alike)",
        when=_bounding_set_short,
    ),
    "process_rlimits": Known(
        "runtimetest built with Go >= 1.19 raises its own RLIMIT_NOFILE soft limit to the hard "
        "one at start-up, before it looks (runc fails the same line)",
        frozenset({"has expected soft RLIMIT_NOFILE"}),
    ),
    "delete": Known(
        "delete of a created (not yet started) container kills and deletes it, as runc does "
        "and as containerd and podman rely on; runc fails the same lines",
        frozenset(
            {
                "attempting to `delete` a container that is not `stopped` MUST generate an error",
                "attempting to `delete` a container that is not `stopped` MUST have no effect "
                "on the container",
            }
        ),
    ),
    "hooks_stdin": Known(
        'prestart hooks run during create and see status "creating", as with runc (which '
        "fails this line and the poststart one)",
        frozenset({'the state of the container MUST be passed to "prestart" hook over stdin'}),
    ),
    "misc_props": Known(
        "the program's first case never copies runtimetest into its bundle (exec fails "
        "under runc alike)",
        frozenset(
            {
                "implementations that are reading/processing this configuration file MUST NOT "
                "generate an error if they encounter an unknown annotation key"
            }
        ),
    ),
    "start": Known(
        "the last case expects create to accept a config without process; corral and runc "
        "both refuse it at create",
        frozenset({"exit status 1"}),
    ),
    "pidfile": Known(
        "the program runs `true`, then kills the container after it has exited and counts "
        "the refusal as a failure (runc alike)",
        frozenset({"create with '--pid-file' option works"}),
    ),
    "hooks": Known(
        'the program expects the output "post-start1\\n" where its own hooks write '
        '"post-start1 called\\n", so no runtime passes (runc alike)',
        frozenset({"Hooks MUST be called in the listed order"}),
    ),
    "prestart": Known(
        "prestart hooks run during create, as runc runs them and runtime-spec 1.1 says; the "
        "program checks the 1.0.2-dev wording (after start)",
        frozenset({"Pre-start hooks MUST be called after the `start` operation is called"}),
    ),
    "linux_ns_itype": Known(
        "no mount namespace: corral refuses what would mount in the caller's namespace on "
        "purpose (tests/integration/test_conformance.py); runc mounts there and passes"
    ),
}


# ---------------------------------------------------------------- running the programs


@dataclass
class Outcome:
    rc: int
    tap: str
    err: str
    cgroups_left: list[str]


def _rootfs_tarball(rootfs: Path, dest: Path) -> Path:
    tarball = dest / "rootfs-amd64.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(rootfs, arcname=".")
    return tarball


def _remove_cgroups() -> list[str]:
    """Removes the cgroups the programs make below our own; returns those still there."""
    abs_file = TOOLS / "abs-cgroup-path"
    abs_path = abs_file.read_text().strip() if abs_file.is_file() else None
    left = []
    for hier, own in _own_cgroups().items():
        base = CGROUP_ROOT / hier / own.lstrip("/")
        rel = REL_CGROUP.split("/")
        candidates = [base.joinpath(*rel[:i]) for i in range(len(rel), 0, -1)]
        if abs_path:
            candidates.insert(0, CGROUP_ROOT / hier / abs_path.lstrip("/"))
        for d in candidates:
            if d.is_dir():
                try:
                    d.rmdir()
                except OSError:
                    left.append(str(d))
    return left


def _run_program(name: str, work: Path, tarball: Path, corral_oci: str) -> Outcome:
    d = work / name
    (d / "tmp").mkdir(parents=True, mode=0o755)
    d.chmod(0o755)
    state = d / "state"
    os.symlink(tarball, d / tarball.name)
    shutil.copy2(TOOLS / "runtimetest", d / "runtimetest")
    wrapper = d / "runtime"
    wrapper.write_text(
        "#!/bin/sh\n"
        'prev=; for a in "$@"; do [ "$prev" = --bundle ] && chmod 755 "$a"; prev=$a; done\n'
        f'exec {corral_oci} --root {state} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "RUNTIME": str(wrapper), "TMPDIR": str(d / "tmp")}
    argv = ["unshare", "--mount", "--propagation", "private", "--net", str(TOOLS / f"{name}.t")]
    try:
        p = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = -1, str(e.stdout or ""), f"timed out after {TIMEOUT} s"
    finally:
        if state.is_dir():
            for cid in os.listdir(state):
                subprocess.run(
                    [corral_oci, "--root", str(state), "delete", "--force", cid],
                    capture_output=True,
                )
        left = _remove_cgroups() if name.startswith(("linux_cgroups", "delete")) else []
        shutil.rmtree(d, ignore_errors=True)
    return Outcome(rc, out, err, left)


# Programs with a race of their own: up to two more runs when the first fails, and each run
# is reported. killsig signals the container's `sh` as soon as it is running, which may be
# before sh has set its trap; sh is the pid namespace's init, so the kernel drops a signal it
# has no handler for, sh sleeps on and the program's 5 s wait for "stopped" runs out (runc
# alike: start returns before the process has exec'd, let alone set a trap).
RACY = {"killsig"}


def _run_racy(name: str, work: Path, tarball: Path, corral_oci: str) -> Outcome:
    res = _run_program(name, work, tarball, corral_oci)
    for n in ("second", "third"):
        if name not in RACY or (res.rc == 0 and not failures(res.tap)):
            break
        again = _run_program(name, work, tarball, corral_oci)
        again.err = f"({n} run; the one before failed with)\n{res.tap}\n{res.err}\n---\n{again.err}"
        res = again
    return res


@pytest.fixture(scope="module")
def outcomes(rootfs: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Outcome]]]:
    """Starts every program at once: cgroup users in one serial lane, the rest WORKERS at a
    time (CORRAL_RUNTIME_TOOLS_WORKERS, 3 by default). Each case then waits for its own."""
    corral_oci = shutil.which("corral-oci", path=str(Path(sys.executable).parent))
    if corral_oci is None:
        pytest.skip("corral-oci is not installed beside this python (scripts/setup.sh)")
    # Not under pytest's basetemp: its /tmp/pytest-of-root is 0700, which a container root
    # mapped to another uid cannot pass.
    work = Path(tempfile.mkdtemp(prefix="corral-runtime-tools-"))
    work.chmod(0o755)
    tarball = _rootfs_tarball(rootfs, work)
    serial = ThreadPoolExecutor(max_workers=1)
    parallel = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {}
    selected = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec")
    }
    for name in PROGRAMS:
        if name not in selected or _skip_reason(name):
            continue
        uses_cgroups = name.startswith(("linux_cgroups", "delete"))
        pool = serial if uses_cgroups else parallel
        futures[name] = pool.submit(_run_racy, name, work, tarball, corral_oci)
    try:
        yield futures
    finally:
        serial.shutdown(wait=True, cancel_futures=True)
        parallel.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
        left = _remove_cgroups()
        assert not left, f"cgroups left behind: {left}"


def _skip_reason(name: str) -> str | None:
    known = KNOWN.get(name)
    if known is not None and not known.lines and known.when():
        return known.reason
    if name in ABS_CGROUP_USERS:
        return _abs_cgroup_reason()
    return None


_NOT_OK = re.compile(r"^not ok \d+ - (.*?)(?:\s+#.*)?$", re.M)
_POINT = re.compile(r"^(?:not )?ok \d+", re.M)
# The hook programs report a failure as a bare YAML diagnostic with no test point.
_BARE_ERROR = re.compile(r'^\s+"error": "([^"\\]+)', re.M)


def failures(tap: str) -> list[str]:
    """The descriptions of a program's failed checks: its ``not ok`` lines, or the errors of
    a program that reported no test point at all."""
    if _POINT.search(tap):
        return _NOT_OK.findall(tap)
    return _BARE_ERROR.findall(tap)


@pytest.mark.skipif(not PROGRAMS, reason=f"no runtime-tools validation programs in {TOOLS}")
@pytest.mark.parametrize("name", PROGRAMS or ["none"])
def test_validation_program(name: str, outcomes: dict[str, Future[Outcome]]) -> None:
    reason = _skip_reason(name)
    if reason:
        pytest.skip(reason)
    res = outcomes[name].result()
    assert not res.cgroups_left, f"cgroups left behind: {res.cgroups_left}"
    failed = failures(res.tap)
    known = KNOWN.get(name)
    excused = set(known.lines) if known is not None and known.when() else set()
    unexpected = [f for f in failed if f not in excused]
    assert res.rc == 0 and not unexpected, (
        f"{name}: exit {res.rc}, not ok: {unexpected}\n--- TAP\n{res.tap}\n--- stderr\n{res.err}"
    )
