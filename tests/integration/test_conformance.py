"""Differential conformance: the same bundles and commands through runc and corral-oci.

Each test drives both runtimes as separate processes (as podman and containerd shims do), each
with a state root of its own under the test's temp dir and its cgroups below this process's
own cgroup (a relative ``cgroupsPath``: runc and corral both put it under the caller's cgroup
in every hierarchy). What the runtime spec or runc defines and a client can see is compared:
state JSON, lifecycle errors and exit codes, list/ps/features/spec/--version/--log output, and
what the container process sees inside. Where corral differs on purpose, the test asserts
corral's behaviour alone and says why.

Skipped when runc is not installed (Debian's ``runc`` package).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from corral_common import hostsys
from tests.conftest import REPO, Result, Runtime

pytestmark = pytest.mark.root

RUNC = shutil.which("runc")

SpecMod = Callable[[dict[str, Any]], None]


@dataclass
class Driver:
    """One runtime's command line, with bundles over the shared test rootfs."""

    name: str
    argv: list[str]  # the runtime and its global flags, up to and including --root
    rt: Runtime
    made: list[str] = field(default_factory=list)

    def cli(
        self, *args: str, timeout: float = 60, check: bool = False, stdin: bytes | None = None
    ) -> Result:
        # Files, not pipes: a created container keeps its stdio open until it exits.
        with (
            tempfile.TemporaryFile() as inp,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            if stdin is not None:
                inp.write(stdin)
                inp.seek(0)
            p = subprocess.run(
                [*self.argv, *args],
                stdin=inp if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                cwd=REPO,
            )
            out.seek(0)
            err.seek(0)
            res = Result(p.returncode, out.read().decode(), err.read().decode())
        if check and res.rc != 0:
            raise AssertionError(f"{self.name} {args} exited {res.rc}: {res.err}")
        return res

    def prepare(self, *args: str, mod: SpecMod | None = None, **process: Any) -> tuple[str, Path]:
        cid = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.made.append(cid)
        spec = self.rt.spec(*args, **process)
        spec["linux"]["cgroupsPath"] = self.rt.cgroup_path(cid)
        if mod is not None:
            mod(spec)
        return cid, self.rt.bundle(spec, cid)

    def run(self, *args: str, mod: SpecMod | None = None, **process: Any) -> Result:
        cid, bundle = self.prepare(*args, mod=mod, **process)
        return self.cli("run", "--bundle", str(bundle), cid)

    def start_running(self, *args: str, mod: SpecMod | None = None, **process: Any) -> str:
        cid, bundle = self.prepare(*args, mod=mod, **process)
        self.cli("create", "--bundle", str(bundle), cid, check=True)
        self.cli("start", cid, check=True)
        return cid

    def state(self, cid: str) -> dict[str, Any]:
        res = self.cli("state", cid, check=True)
        out: dict[str, Any] = json.loads(res.out)
        return out

    def wait_status(self, cid: str, status: str) -> None:
        deadline = time.monotonic() + 30
        while self.state(cid)["status"] != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {cid} never became {status}")
            time.sleep(0.02)


@pytest.fixture
def runc(runtime: Runtime) -> Iterator[Driver]:
    if RUNC is None:
        pytest.skip("runc is not installed")
    d = Driver("runc", [RUNC, "--root", str(runtime.tmp / "runc-state")], runtime)
    try:
        yield d
    finally:
        # Before the `runtime` fixture's own finalizer, which then finds no cgroup of either.
        root = runtime.tmp / "runc-state"
        left = set(d.made) | (set(os.listdir(root)) if root.is_dir() else set())
        for cid in left:
            d.cli("delete", "--force", cid)
        assert not (root.is_dir() and os.listdir(root)), "runc state left behind"


@pytest.fixture
def corral(runtime: Runtime) -> Driver:
    argv = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    d = Driver("corral", argv, runtime)
    d.made = runtime.made  # the runtime fixture deletes them and checks for leftovers
    return d


@pytest.fixture
def both(runc: Driver, corral: Driver) -> list[Driver]:
    return [runc, corral]


def _same(results: dict[str, Any], what: str) -> Any:
    """The value every runtime gave; fails naming each one's otherwise."""
    values = list(results.values())
    assert all(v == values[0] for v in values), f"{what} differs: {results}"
    return values[0]


# ---------------------------------------------------------------- state


def _check_state_shape(st: dict[str, Any], cid: str, bundle: Path, status: str) -> None:
    assert st["id"] == cid
    assert st["status"] == status
    assert st["bundle"] == str(bundle)
    assert isinstance(st["ociVersion"], str) and re.match(r"^\d+\.\d+\.\d+", st["ociVersion"])
    assert isinstance(st["pid"], int)
    if status == "stopped":
        assert st["pid"] == 0
    else:
        assert st["pid"] > 0
    # runc's extras, which podman and containerd read
    assert isinstance(st["rootfs"], str) and isinstance(st["owner"], str)
    datetime.fromisoformat(st["created"].replace("Z", "+00:00")[:26] + "+00:00")


def test_state_fields_through_the_lifecycle(both: list[Driver]) -> None:
    def annotate(spec: dict[str, Any]) -> None:
        spec["annotations"] = {"org.example.key": "value", "b": ""}

    keys: dict[str, dict[str, set[str]]] = {}
    types: dict[str, dict[str, dict[str, str]]] = {}
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000", mod=annotate)
        d.cli("create", "--bundle", str(bundle), cid, check=True)
        seen = {}
        for status in ("created", "running", "stopped"):
            if status == "running":
                d.cli("start", cid, check=True)
            elif status == "stopped":
                d.cli("kill", cid, "KILL", check=True)
                d.wait_status(cid, "stopped")
            st = d.state(cid)
            _check_state_shape(st, cid, bundle, status)
            assert st["annotations"] == {"org.example.key": "value", "b": ""}
            assert st["rootfs"] == str(d.rt.rootfs)
            seen[status] = st
        keys[d.name] = {s: set(st) for s, st in seen.items()}
        types[d.name] = {s: {k: type(v).__name__ for k, v in st.items()} for s, st in seen.items()}
        d.cli("delete", cid, check=True)
    # Every field runc prints, corral prints with the same JSON type (corral adds oomKilled).
    for status in ("created", "running", "stopped"):
        assert keys["runc"][status] <= keys["corral"][status]
        for k in keys["runc"][status]:
            assert types["runc"][status][k] == types["corral"][status][k], k


def test_state_of_unknown_id(both: list[Driver]) -> None:
    rcs = {}
    for d in both:
        res = d.cli("state", "no-such-container")
        rcs[d.name] = res.rc
        assert res.out == ""
        assert "does not exist" in res.err
        assert len(res.err.strip().splitlines()) == 1
    assert _same(rcs, "exit code of state for an unknown id") == 1


# ---------------------------------------------------------------- lifecycle errors


def _lifecycle_errors(d: Driver) -> dict[str, int]:
    rc: dict[str, int] = {}
    cid, bundle = d.prepare("corral-test", "sleep", "1000")
    d.cli("create", "--bundle", str(bundle), cid, check=True)
    rc["create existing id"] = d.cli("create", "--bundle", str(bundle), cid).rc
    assert d.state(cid)["status"] == "created"  # the failed create left it alone
    d.cli("start", cid, check=True)
    rc["start running"] = d.cli("start", cid).rc
    rc["delete running"] = d.cli("delete", cid).rc
    assert d.state(cid)["status"] == "running"
    rc["kill running"] = d.cli("kill", cid, "KILL").rc
    d.wait_status(cid, "stopped")
    rc["kill stopped"] = d.cli("kill", cid, "KILL").rc
    rc["start stopped"] = d.cli("start", cid).rc
    rc["pause stopped"] = d.cli("pause", cid).rc
    rc["resume stopped"] = d.cli("resume", cid).rc
    rc["delete stopped"] = d.cli("delete", cid).rc
    for op in ("start", "kill", "delete", "pause", "resume"):
        rc[f"{op} unknown"] = d.cli(op, cid).rc
    rc["delete --force unknown"] = d.cli("delete", "--force", cid).rc
    rc["create bad id"] = d.cli("create", "--bundle", str(bundle), "bad/id").rc
    rc["create missing bundle"] = d.cli("create", "--bundle", str(bundle / "nope"), cid).rc
    assert d.cli("state", cid).rc != 0  # neither failed create left anything
    return rc


def test_lifecycle_errors_and_exit_codes(both: list[Driver]) -> None:
    rcs = {d.name: _lifecycle_errors(d) for d in both}
    codes = _same(rcs, "lifecycle exit codes")
    assert codes["kill running"] == codes["delete stopped"] == codes["delete --force unknown"] == 0
    failing = {k for k, v in codes.items() if v != 0}
    assert failing == set(codes) - {"kill running", "delete stopped", "delete --force unknown"}


def test_delete_of_a_created_container_kills_its_process(both: list[Driver]) -> None:
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        d.cli("create", "--bundle", str(bundle), cid, check=True)
        pid = d.state(cid)["pid"]
        assert d.cli("delete", cid).rc == 0, d.name  # runc allows it: nothing ran yet
        assert _gone(pid), d.name
        assert d.cli("state", cid).rc != 0


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "sigkill"])
def test_kill_signal_spellings(both: list[Driver], sig: str) -> None:
    for d in both:
        cid = d.start_running("corral-test", "sleep", "1000")
        assert d.cli("kill", cid, sig).rc == 0, d.name
        d.wait_status(cid, "stopped")


def test_kill_unknown_signal_is_an_error(both: list[Driver]) -> None:
    rcs = {}
    for d in both:
        cid = d.start_running("corral-test", "sleep", "1000")
        rcs[d.name] = (d.cli("kill", cid, "SIGNOPE").rc, d.cli("kill", cid, "NOPE").rc)
        assert d.state(cid)["status"] == "running"
    assert _same(rcs, "exit codes of kill with an unknown signal") == (1, 1)


def test_kill_term_stops_a_created_container(both: list[Driver]) -> None:
    """The waiting process is the init of its pid namespace, which the kernel spares signals
    it has no handler for; runc's init handles them and exits, and so does corral's."""
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        d.cli("create", "--bundle", str(bundle), cid, check=True)
        assert d.cli("kill", cid).rc == 0  # SIGTERM by default
        d.wait_status(cid, "stopped")
        assert d.cli("start", cid).rc != 0


def _no_pid_ns(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]


def test_kill_all_reaches_what_the_init_left_behind(both: list[Driver]) -> None:
    """Without a pid namespace, the init's children outlive it in the container's cgroup:
    `ps` still lists them and `kill --all` of the stopped container still reaches them."""
    for d in both:
        cid = d.start_running(
            "sh", "-c", "corral-test sleep 1000 & exec corral-test sleep 1000", mod=_no_pid_ns
        )
        init = d.state(cid)["pid"]
        deadline = time.monotonic() + 30
        while len(json.loads(d.cli("ps", "--format", "json", cid, check=True).out)) < 2:
            assert time.monotonic() < deadline, f"{d.name}: the child never started"
            time.sleep(0.02)
        d.cli("kill", cid, "KILL", check=True)
        d.wait_status(cid, "stopped")
        left = json.loads(d.cli("ps", "--format", "json", cid, check=True).out)
        assert left and init not in left, d.name
        assert d.cli("kill", "--all", cid, "KILL").rc == 0, d.name
        assert all(_gone(pid) for pid in left), d.name
        # runc prints null for no processes, corral an empty list: both are "none" to a
        # client decoding into a list (Go's json gives a nil slice for either).
        assert json.loads(d.cli("ps", "--format", "json", cid, check=True).out) in (None, [])
        assert d.cli("kill", "--all", cid, "KILL").rc == 0, d.name  # still not an error
        assert d.cli("delete", cid).rc == 0


def test_kill_all_of_a_running_container(both: list[Driver]) -> None:
    """Without a pid namespace a plain kill of the init leaves its child running: `kill
    --all` must reach every process of the cgroup."""
    for d in both:
        cid = d.start_running(
            "sh", "-c", "corral-test sleep 1000 & exec corral-test sigwait", mod=_no_pid_ns
        )
        deadline = time.monotonic() + 30
        while len(procs := json.loads(d.cli("ps", "--format", "json", cid, check=True).out)) < 2:
            assert time.monotonic() < deadline, f"{d.name}: the child never started"
            time.sleep(0.02)
        assert d.cli("kill", "--all", cid, "KILL").rc == 0
        d.wait_status(cid, "stopped")
        assert all(_gone(pid) for pid in procs), d.name


# ---------------------------------------------------------------- list, ps, features, spec


def test_list_formats(both: list[Driver]) -> None:
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        d.cli("create", "--bundle", str(bundle), cid, check=True)
        assert d.cli("list", "-q", check=True).out.split() == [cid]
        items = json.loads(d.cli("list", "--format", "json", check=True).out)
        assert isinstance(items, list) and len(items) == 1
        item = items[0]
        assert item["id"] == cid and item["status"] == "created" and item["bundle"] == str(bundle)
        assert item["pid"] == d.state(cid)["pid"]
        assert item["owner"] == "root"  # the owner of the state directory, by name
        lines = d.cli("list", check=True).out.splitlines()
        assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        assert lines[1].split()[:4] == [cid, str(item["pid"]), "created", str(bundle)]
        assert lines[1].split()[-1] == "root"
        d.cli("delete", cid, check=True)
        assert json.loads(d.cli("list", "--format", "json", check=True).out) in (None, [])
        assert d.cli("list", "-q", check=True).out == ""


def test_ps_formats(both: list[Driver]) -> None:
    for d in both:
        cid = d.start_running("corral-test", "sleep", "1000")
        pid = d.state(cid)["pid"]
        assert json.loads(d.cli("ps", "--format", "json", cid, check=True).out) == [pid]
        table = d.cli("ps", cid, check=True).out.splitlines()
        col = table[0].split().index("PID")
        assert [line.split()[col] for line in table[1:]] == [str(pid)]
        custom = d.cli("ps", cid, "-o", "pid,comm", check=True).out.split()
        assert custom == ["PID", "COMMAND", str(pid), "corral-test"]
        d.cli("kill", cid, "KILL", check=True)
        d.wait_status(cid, "stopped")
        table = d.cli("ps", cid, check=True).out.splitlines()
        assert len(table) == 1 and "PID" in table[0].split()


def test_features_document(runc: Driver, corral: Driver) -> None:
    docs = {d.name: json.loads(d.cli("features", check=True).out) for d in (runc, corral)}
    assert set(docs["runc"]) <= set(docs["corral"])
    assert set(docs["runc"]["linux"]) <= set(docs["corral"]["linux"])
    assert docs["corral"]["hooks"] == docs["runc"]["hooks"]
    assert set(docs["runc"]["linux"]["namespaces"]) <= set(docs["corral"]["linux"]["namespaces"])
    assert docs["corral"]["linux"]["capabilities"] == docs["runc"]["linux"]["capabilities"]
    for key in ("ociVersionMin", "ociVersionMax"):
        assert re.match(r"^\d+\.\d+\.\d+", docs["corral"][key])
    # Options runc lists that corral does not know (acl, the r* recursive forms of mount_setattr,
    # symfollow) are left out on purpose: a features document must not promise them.
    assert {"bind", "rbind", "ro", "rprivate", "tmpcopyup"} <= set(docs["corral"]["mountOptions"])


def test_version_shape(both: list[Driver]) -> None:
    for d in both:
        lines = d.cli("--version", check=True).out.splitlines()
        assert re.match(r"^\S+ version \S+$", lines[0]), lines
        assert any(re.match(r"^spec: \d+\.\d+\.\d+", line) for line in lines), lines


def test_spec_output_runs_under_both(both: list[Driver]) -> None:
    """Each runtime's default config.json runs under the other, with the same result."""
    outputs: dict[str, str] = {}
    for maker in both:
        for runner in both:
            bundle = maker.rt.tmp / f"spec-{maker.name}-{runner.name}"
            bundle.mkdir()
            maker.cli("spec", "--bundle", str(bundle), check=True)
            again = maker.cli("spec", "--bundle", str(bundle))
            assert again.rc == 1 and "exists" in again.err
            spec = json.loads((bundle / "config.json").read_text())
            assert spec["process"]["terminal"] is True and spec["root"]["path"] == "rootfs"
            cid = f"{runner.name}-{uuid.uuid4().hex[:8]}"
            runner.made.append(cid)
            spec["root"]["path"] = str(runner.rt.rootfs)
            spec["process"]["terminal"] = False
            spec["process"]["args"] = [
                "sh",
                "-c",
                "id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
            ]
            spec["linux"]["cgroupsPath"] = runner.rt.cgroup_path(cid)
            (bundle / "config.json").write_text(json.dumps(spec))
            res = runner.cli("run", "--bundle", str(bundle), cid)
            assert res.rc == 0, f"{maker.name}'s spec under {runner.name}: {res.err}"
            outputs[f"{maker.name} spec under {runner.name}"] = res.out
    _same(outputs, "the default spec's process")


def test_log_json_on_error(both: list[Driver]) -> None:
    for d in both:
        log = d.rt.tmp / f"{d.name}.log"
        res = d.cli("--log", str(log), "--log-format", "json", "state", "no-such-container")
        assert res.rc == 1
        lines = log.read_text().splitlines()
        assert len(lines) == 1, lines  # podman unmarshals the whole file as one object
        entry = json.loads(lines[0])
        assert set(entry) == {"level", "msg", "time"}
        assert entry["level"] == "error" and "does not exist" in entry["msg"]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", entry["time"])


# ---------------------------------------------------------------- inside the container

_INSIDE = r"""
echo "== env"; env | sort
echo "== status"; grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status
echo "== ids"; id
echo "== umask"; umask
echo "== cwd"; pwd
echo "== hostname"; hostname
echo "== oom"; cat /proc/self/oom_score_adj
echo "== nofile"; ulimit -n
echo "== rootfs"; touch /written 2>&1 | sed 's/.*: //'
echo "== tmp"; touch /tmp/x && echo ok
"""


def _inside_variants() -> dict[str, SpecMod]:
    def default(spec: dict[str, Any]) -> None:
        pass

    def user(spec: dict[str, Any]) -> None:
        p = spec["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [2000], "umask": 0o027}
        p["cwd"] = "/tmp"
        p["env"] = ["PATH=/bin", "FOO=bar baz"]
        p["oomScoreAdj"] = 100
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]
        p["noNewPrivileges"] = False
        spec["hostname"] = "other"

    def unknown_uid(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 4242, "gid": 4242}  # not in /etc/passwd: HOME=/

    def caps(spec: dict[str, Any]) -> None:
        names = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SETPCAP"]
        spec["process"]["capabilities"] = {
            "bounding": names,
            "effective": names,
            "permitted": names,
            "inheritable": names[:1],
            "ambient": names[:2],  # CAP_NET_RAW is not inheritable: runc leaves it out
        }
        spec["process"]["user"] = {"uid": 1000, "gid": 1000}

    return {"default": default, "user": user, "unknown-uid": unknown_uid, "caps": caps}


@pytest.mark.parametrize("variant", list(_inside_variants()))
def test_process_environment_matches(both: list[Driver], variant: str) -> None:
    mod = _inside_variants()[variant]
    outs = {}
    for d in both:
        res = d.run("sh", "-c", _INSIDE, mod=mod)
        assert res.rc == 0, f"{d.name}: {res.err}"
        outs[d.name] = res.out
    _same(outs, f"what the {variant} process sees")


def _mountinfo(d: Driver) -> dict[str, tuple[str, str, str, str]]:
    res = d.run("cat", "/proc/self/mountinfo")
    assert res.rc == 0, f"{d.name}: {res.err}"
    out = {}
    for line in res.out.splitlines():
        pre, post = line.split(" - ")
        fields = pre.split()
        fstype, _source, super_opts = post.split()
        out[fields[4]] = (fields[3], fields[5], fstype, super_opts)
    return out


def test_mount_table_matches(both: list[Driver]) -> None:
    tables = {d.name: _mountinfo(d) for d in both}
    for point in ("/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/tmp"):
        _same({n: t[point] for n, t in tables.items()}, f"the {point} mount")
    # maskedPaths: the same points are covered (a tmpfs for directories, /dev/null for files)
    masked = {"/proc/acpi", "/proc/keys", "/proc/timer_list", "/sys/firmware"}
    for n, t in tables.items():
        assert masked <= set(t), n
    _same({n: {p: t[p][2] for p in masked} for n, t in tables.items()}, "masked paths")
    # readonlyPaths: read-only binds of /proc's own subtrees in both. corral also sets
    # nosuid,nodev,noexec there (locked flags of the proc mount they come from).
    for n, t in tables.items():
        for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"):
            assert t[p][0] == p.removeprefix("/proc") and t[p][2] == "proc", (n, p)
            assert t[p][1].split(",")[0] == "ro", (n, p)
    # ... made in the same order: readonlyPaths first, then maskedPaths.
    covered = masked | {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"}
    _same({n: [p for p in t if p in covered] for n, t in tables.items()}, "mask/readonly order")
    # /sys/fs/cgroup on this v1 (hybrid) host: runc's per-controller mounts are all there,
    # read-only as the spec's "ro" asks. corral differs on purpose: its tmpfs is read-only
    # too, and it also mounts the hybrid cgroup2 hierarchy at unified.
    cg = {
        n: {p: v for p, v in t.items() if p.startswith("/sys/fs/cgroup/")}
        for n, t in tables.items()
    }
    assert set(cg["runc"]) <= set(cg["corral"])
    for p, v in cg["corral"].items():
        assert v[1].split(",")[0] == "ro", p
    for p, v in cg["runc"].items():
        assert cg["corral"][p][2:] == v[2:], p


def test_dev_nodes_match(both: list[Driver]) -> None:
    # name, type, mode, device numbers, owner; symlink targets (/dev/core only where the
    # host has /proc/kcore, as runc)
    script = (
        "stat -c '%n %F %a %t:%T %u:%g' /dev/* /dev/pts/* /dev/shm /dev/mqueue;"
        'for f in /dev/*; do [ -L $f ] && echo "$f -> $(readlink $f)"; done; true'
    )
    outs = {}
    for d in both:
        res = d.run("sh", "-c", script)
        assert res.rc == 0, f"{d.name}: {res.err}"
        outs[d.name] = res.out
    _same(outs, "/dev")


def test_run_exit_codes(both: list[Driver]) -> None:
    for d in both:
        assert d.run("sh", "-c", "exit 3").rc == 3, d.name
        assert d.run("sh", "-c", "corral-test sleep 1000 & exit 5").rc == 5, d.name
        res = d.run("/nonexistent")
        assert res.rc != 0 and "no such file or directory" in res.err.lower(), d.name
        res = d.run("nonexistent")
        assert res.rc != 0 and "executable file not found in $PATH" in res.err, d.name


def test_run_returns_128_plus_signal(both: list[Driver]) -> None:
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        proc = subprocess.Popen(
            [*d.argv, "run", "--bundle", str(bundle), cid],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not (d.cli("state", cid).rc == 0 and d.state(cid)["status"] == "running"):
                assert time.monotonic() < deadline and proc.poll() is None, d.name
                time.sleep(0.02)
            d.cli("kill", cid, "KILL", check=True)
            assert proc.wait(timeout=30) == 128 + signal.SIGKILL, d.name
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert d.cli("state", cid).rc != 0  # run deletes the container it made


def test_run_detach_returns_with_the_container_running(both: list[Driver]) -> None:
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        res = d.cli("run", "--detach", "--bundle", str(bundle), cid)
        assert res.rc == 0 and res.out == "", f"{d.name}: {res.err}"
        assert d.state(cid)["status"] == "running"
        assert d.cli("delete", "--force", cid).rc == 0


# ---------------------------------------------------------------- exec


def _exec_matrix(d: Driver) -> dict[str, tuple[int, str]]:
    cid = d.start_running("corral-test", "sleep", "1000", env=["PATH=/bin", "FOO=bar"])

    def ex(*args: str) -> tuple[int, str]:
        res = d.cli("exec", *args)
        return res.rc, res.out

    out = {
        "env": ex("--env", "X=1", "--env", "FOO=baz", cid, "env"),
        "cwd": ex("--cwd", "/tmp", cid, "pwd"),
        "user": ex("--user", "1000:2000", cid, "id"),
        "uid only": ex("--user", "1000", cid, "id"),
        "groups": ex("--user", "1000:1000", "--additional-gids", "2000", cid, "id"),
        "home of user": ex("--user", "1000", cid, "env"),
        "exit code": ex(cid, "sh", "-c", "exit 7"),
        "killed": ex(cid, "sh", "-c", "kill -9 $$"),
        "caps": ex(cid, "grep", "^Cap", "/proc/self/status"),
        # runc >= 1.1.2 (CVE-2022-29162): --cap never reaches the inheritable set
        "cap added": ex("--cap", "CAP_SYS_ADMIN", cid, "grep", "^Cap", "/proc/self/status"),
        "pid 1": ex(cid, "cat", "/proc/1/cmdline"),
        # Failures of exec itself exit 255, so they are not taken for the process's code.
        "missing cwd": ex("--cwd", "/nope", cid, "pwd")[:1] + ("",),
        "missing command": ex(cid, "nonexistent")[:1] + ("",),
        "missing path": ex(cid, "/nonexistent")[:1] + ("",),
        "not executable": ex(cid, "/etc/passwd")[:1] + ("",),
        "no command": ex(cid)[:1] + ("",),
    }
    pid_file = d.rt.tmp / f"{d.name}-exec.pid"
    res = d.cli(
        "exec", "--detach", "--pid-file", str(pid_file), cid, "corral-test", "sleep", "1000"
    )
    assert res.rc == 0, res.err
    assert int(pid_file.read_text()) in json.loads(d.cli("ps", "-f", "json", cid).out)
    d.cli("pause", cid, check=True)
    out["paused"] = ex(cid, "true")
    d.cli("resume", cid, check=True)
    d.cli("kill", cid, "KILL", check=True)
    d.wait_status(cid, "stopped")
    out["stopped"] = ex(cid, "true")
    return out


def test_exec_matches(both: list[Driver]) -> None:
    results = {d.name: _exec_matrix(d) for d in both}
    for key in results["runc"]:
        _same({n: r[key] for n, r in results.items()}, f"exec {key}")
    r = results["corral"]
    assert r["exit code"][0] == 7 and r["killed"][0] == 128 + signal.SIGKILL
    for key in ("missing cwd", "missing command", "not executable", "paused", "stopped"):
        assert r[key][0] == 255, key
    assert "HOME=/home/tester" in r["home of user"][1]


def test_exec_process_file(both: list[Driver]) -> None:
    for d in both:
        cid = d.start_running("corral-test", "sleep", "1000")
        proc = d.rt.tmp / f"{d.name}-process.json"
        base = {"args": ["sh", "-c", "echo $A; exit 3"], "env": ["PATH=/bin", "A=b"]}
        proc.write_text(json.dumps({**base, "cwd": "/", "user": {"uid": 0, "gid": 0}}))
        res = d.cli("exec", "--process", str(proc), cid)
        assert (res.rc, res.out) == (3, "b\n"), f"{d.name}: {res.err}"
        proc.write_text(json.dumps(base))  # cwd is required
        assert d.cli("exec", "--process", str(proc), cid).rc == 255, d.name


# ---------------------------------------------------------------- what containerd's go-runc calls


def _pids_max(pid: int) -> str:
    """pids.max of ``pid``'s cgroup, read on the host: the v1 pids hierarchy, else the
    unified one (whichever layout this host has)."""
    own = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            own[c] = path
    base = Path("/sys/fs/cgroup")
    v1, v2 = base / "pids", (base / "unified" if (base / "unified").is_dir() else base)
    path = v1 / own["pids"].lstrip("/") if "pids" in own else v2 / own[""].lstrip("/")
    return (path / "pids.max").read_text().strip()


def test_containerd_style_calls(both: list[Driver]) -> None:
    """create --pid-file, update --resources - (JSON on stdin), ps with ps(1) arguments,
    exec --process FILE --detach --pid-file, kill --all, delete --force."""
    for d in both:
        cid, bundle = d.prepare("corral-test", "sleep", "1000")
        pid_file = d.rt.tmp / f"{d.name}-init.pid"
        d.cli("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid, check=True)
        assert int(pid_file.read_text()) == d.state(cid)["pid"]
        d.cli("start", cid, check=True)
        d.cli("update", "--resources", "-", cid, stdin=b'{"pids": {"limit": 77}}', check=True)
        assert _pids_max(d.state(cid)["pid"]) == "77", d.name
        process = d.rt.tmp / f"{d.name}-exec.json"
        process.write_text(
            json.dumps(
                {
                    "args": ["corral-test", "sleep", "1000"],
                    "cwd": "/",
                    "env": ["PATH=/bin"],
                    "user": {"uid": 0, "gid": 0},
                }
            )
        )
        exec_pid = d.rt.tmp / f"{d.name}-exec.pid"
        d.cli("exec", "--process", str(process), "--detach", "--pid-file", str(exec_pid), cid)
        pids = json.loads(d.cli("ps", "--format", "json", cid, check=True).out)
        assert sorted(pids) == sorted([d.state(cid)["pid"], int(exec_pid.read_text())])
        top = d.cli("ps", "--format", "table", cid, "-o", "pid,comm", check=True).out.split()
        assert top[:2] == ["PID", "COMMAND"] and sorted(top[2::2]) == sorted(map(str, pids))
        assert d.cli("kill", "--all", cid, "KILL").rc == 0
        d.wait_status(cid, "stopped")
        assert d.cli("delete", "--force", cid).rc == 0
        assert d.cli("delete", "--force", cid).rc == 0


def _receive_fd(sock: socket.socket) -> int:
    conn, _ = sock.accept()
    with conn:
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1
    return fds[0]


def test_console_socket_receives_the_pty_master(both: list[Driver]) -> None:
    def terminal(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True

    outs = {}
    for d in both:
        cid, bundle = d.prepare("sh", "-c", "corral-test ttyname; echo done", mod=terminal)
        path = d.rt.tmp / f"{d.name}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(path))
            sock.listen(1)
            sock.settimeout(60)
            args = ("create", "--bundle", str(bundle), "--console-socket", str(path), cid)
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(
                    [*d.argv, *args], cwd=REPO, stdin=subprocess.DEVNULL, stderr=err
                )
                try:
                    master = _receive_fd(sock)
                finally:
                    assert proc.wait(timeout=60) == 0, d.name
        try:
            d.cli("start", cid, check=True)
            data = b""
            while b"done" not in data:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO once the last slave is closed
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(master)
        outs[d.name] = data.decode().replace("\r\n", "\n")
        d.wait_status(cid, "stopped")
    assert _same(outs, "the output through the pty") == "/dev/pts/0\ndone\n"


# ---------------------------------------------------------------- issue #24: mounts, kill, sessions


@pytest.fixture
def volume(runtime: Runtime) -> Path:
    """A host directory holding the static test helper, plus a setuid-root copy of it."""
    vol = runtime.tmp / "vol"
    vol.mkdir(mode=0o755)
    vol.chmod(0o755)
    for name, mode in (("helper", 0o755), ("suid", 0o4755)):
        shutil.copy(runtime.rootfs / "bin" / "corral-test", vol / name)
        os.chown(vol / name, 0, 0)
        (vol / name).chmod(mode)
    return vol


def _binds(vol: Path, *points: tuple[str, list[str]]) -> SpecMod:
    def mod(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 1000, "gid": 1000}
        spec["process"]["noNewPrivileges"] = False  # else setuid is ignored anyway
        for dest, options in points:
            spec["mounts"].append(
                {"destination": dest, "type": "bind", "source": str(vol), "options": options}
            )

    return mod


def test_bind_flags_of_read_write_volumes(both: list[Driver], volume: Path) -> None:
    """nosuid, nodev and noexec hold on a read-write bind (podman's named volumes and
    -v DIR:/d:nosuid,nodev,noexec): a bind needs a remount to set them."""
    mod = _binds(
        volume,
        ("/tmp/plain", ["rbind", "rw"]),
        ("/tmp/noexec", ["rbind", "rw", "noexec"]),
        ("/tmp/nosuid", ["rbind", "rw", "nosuid", "nodev", "rprivate"]),
    )
    script = (
        "/tmp/plain/suid ids; /tmp/nosuid/suid ids; /tmp/noexec/helper pid 2>&1;"
        "grep ' /tmp/no' /proc/self/mountinfo | cut -d' ' -f5,6"
    )
    outs = {}
    for d in both:
        res = d.run("sh", "-c", script, mod=mod)
        assert res.rc == 0, f"{d.name}: {res.err}"
        outs[d.name] = res.out
    lines = _same(outs, "setuid, exec and flags on the volumes").splitlines()
    assert "euid=0 " in lines[0]  # the helper works where nothing forbids it
    assert "euid=1000 " in lines[1]  # nosuid: the setuid bit gives nothing
    assert "Permission denied" in lines[2]  # noexec
    flags = dict(line.split() for line in lines[3:])
    assert set(flags["/tmp/noexec"].split(",")) >= {"rw", "noexec"}
    assert set(flags["/tmp/nosuid"].split(",")) >= {"rw", "nosuid", "nodev"}


def test_kill_of_a_paused_container(both: list[Driver]) -> None:
    """SIGKILL reaches a frozen init only once it is thawed: runc thaws for SIGKILL (and
    only for it), so the container exits; podman then sees it exit."""
    for d in both:
        cid = d.start_running("corral-test", "sigwait")
        d.cli("pause", cid, check=True)
        assert d.cli("kill", cid, "TERM").rc == 0, d.name
        assert d.state(cid)["status"] == "paused", d.name  # not thawed for other signals
        assert d.cli("kill", cid, "KILL").rc == 0, d.name
        d.wait_status(cid, "stopped")
        cid = d.start_running("corral-test", "sigwait")
        d.cli("pause", cid, check=True)
        assert d.cli("kill", "--all", cid, "KILL").rc == 0, d.name
        d.wait_status(cid, "stopped")


def _session(text: str) -> tuple[str, str, str]:
    """pid, process group and session from a /proc/<pid>/stat line."""
    fields = text.rsplit(")", 1)[1].split()
    pid = text.split()[0]
    return pid, fields[2], fields[3]


def test_init_and_detached_exec_lead_their_own_session(both: list[Driver]) -> None:
    """As runc: the container's process calls setsid() even without a terminal, so a kill of
    its process group (conmon's --timeout) never reaches the runtime's caller."""
    for d in both:
        res = d.run("sh", "-c", "cat /proc/$$/stat")
        assert res.rc == 0, f"{d.name}: {res.err}"
        assert _session(res.out) == ("1", "1", "1"), d.name
        cid = d.start_running("corral-test", "sigwait")
        d.cli("exec", "--detach", cid, "sh", "-c", "cat /proc/$$/stat > /tmp/stat", check=True)
        deadline = time.monotonic() + 30
        while not (out := d.cli("exec", cid, "cat", "/tmp/stat").out):
            assert time.monotonic() < deadline, d.name
            time.sleep(0.02)
        pid, pgrp, sid = _session(out)
        assert pid == pgrp == sid, (d.name, out)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A host directory that is a shared mount of its own (the host's / is private here);
    unmounted, with whatever a container mounted under it, even when the test fails."""
    d = tmp_path / "shared"
    (d / "sub").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], check=False)


def _host_mounts(*under: Path) -> list[str]:
    """The host's mount points at or below any of ``under`` (others work on this host too)."""
    points = [m.mountpoint for m in hostsys.mountinfo()]
    return sorted(p for p in points if any(p == str(u) or p.startswith(f"{u}/") for u in under))


@pytest.mark.parametrize("propagation", ["rshared", "rslave"])
def test_volume_propagation_to_the_host(
    both: list[Driver], shared_dir: Path, propagation: str
) -> None:
    """podman's -v DIR:/d:rshared gives rootfsPropagation "shared" and a bind with rshared:
    a mount made in the container under it appears on the host (runc); rslave keeps it in."""

    def mod(spec: dict[str, Any]) -> None:
        if propagation == "rshared":
            spec["linux"]["rootfsPropagation"] = "shared"
        caps = ["CAP_SYS_ADMIN"]
        spec["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        spec["mounts"].append(
            {
                "destination": "/tmp/d",
                "type": "bind",
                "source": str(shared_dir),
                "options": ["rbind", "rw", propagation],
            }
        )

    sub = str(shared_dir / "sub")
    ours = (shared_dir.parent, both[0].rt.rootfs)
    before = _host_mounts(*ours)
    for d in both:
        res = d.run("sh", "-c", "mount -t tmpfs inner /tmp/d/sub", mod=mod)
        assert res.rc == 0, f"{d.name}: {res.err}"
        after = _host_mounts(*ours)
        if propagation == "rshared":
            assert sub in after, d.name
            subprocess.run(["umount", sub], check=True)
        else:
            assert sub not in after, d.name
        assert _host_mounts(*ours) == before, d.name  # nothing else reached the host


@pytest.mark.parametrize("propagation", ["unbindable", "runbindable"])
def test_unbindable_rootfs_propagation(corral: Driver, propagation: str) -> None:
    """rootfsPropagation "unbindable", one of the spec's four values: the container's / is
    unbindable inside (runtime-tools' linux_rootfs_propagation checks it from inside). The
    caller's / stays the rslave default while the rootfs is bound below it: an unbindable
    / would refuse that bind (EINVAL). runc 1.1.5 makes / unbindable first and fails the
    create, so it is not run here."""

    def mod(spec: dict[str, Any]) -> None:
        spec["linux"]["rootfsPropagation"] = propagation

    res = corral.run("cat", "/proc/self/mountinfo", mod=mod)
    assert res.rc == 0, res.err
    root = next(line for line in res.out.splitlines() if line.split()[4] == "/")
    assert "unbindable" in root.split(" - ")[0].split()[6:], root


def test_net_sysctl_refused_in_the_host_network_namespace(both: list[Driver]) -> None:
    """net.* sysctls in a joined network namespace that is the runtime's own (here the
    host's, through this test's own /proc/PID/ns/net) would change the host's: both refuse
    them at create (the value asked is the host's own, so a runtime that wrongly applied it
    changes nothing)."""
    host = f"/proc/{os.getpid()}/ns/net"
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        value = "\t".join(f.read().split())

    def mod(spec: dict[str, Any]) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = host
        spec["linux"]["sysctl"] = {"net.ipv4.ping_group_range": value}

    for d in both:
        res = d.run("true", mod=mod)
        assert res.rc != 0, d.name
        assert "ping_group_range" in res.err and "host network namespace" in res.err, (
            d.name,
            res.err,
        )
    assert (
        'linux.sysctl["net.ipv4.ping_group_range"]: not allowed in the host network namespace'
        in res.err
    )


def test_net_sysctl_in_a_joined_network_namespace(both: list[Driver]) -> None:
    """A network namespace joined by path that is not the host's (a pod's) is the
    container's to tune, as with runc."""
    for d in both:
        owner = d.start_running("corral-test", "sigwait")
        path = f"/proc/{d.state(owner)['pid']}/ns/net"

        def mod(spec: dict[str, Any], path: str = path) -> None:
            for ns in spec["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = path
            spec["linux"]["sysctl"] = {"net.ipv4.ping_group_range": "0 0"}

        res = d.run("corral-test", "sysctl", "net.ipv4.ping_group_range", mod=mod)
        assert res.rc == 0, f"{d.name}: {res.err}"
        assert res.out.split() == ["0", "0"], d.name


def test_namespace_path_of_the_wrong_kind(both: list[Driver], tmp_path: Path) -> None:
    """A namespace path that is another kind of namespace, or no namespace, fails create in
    both; corral names the namespace, the path and what is wrong."""
    plain = tmp_path / "plain-file"
    plain.write_text("")
    cases = {
        "/proc/self/ns/mnt": "setns(network /proc/self/ns/mnt): "
        "not a network namespace (it is a mount namespace)",
        str(plain): f"setns(network {plain}): not a namespace file",
    }
    for path, message in cases.items():

        def mod(spec: dict[str, Any], path: str = path) -> None:
            for ns in spec["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = path

        for d in both:
            cid, bundle = d.prepare("true", mod=mod)
            res = d.cli("create", "--bundle", str(bundle), cid)
            assert res.rc != 0, (d.name, path)
        assert res.err.strip() == f"corral-oci: create {cid}: {message}", res.err


def test_setns_failure_names_the_namespace(corral: Driver) -> None:
    """A setns() the kernel refuses after the type check (joining one's own user namespace is
    EINVAL) is reported with the namespace and its path, not as a broken sync pipe."""

    def mod(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "user", "path": "/proc/self/ns/user"})

    cid, bundle = corral.prepare("true", mod=mod)
    res = corral.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert res.err.strip() == (
        f"corral-oci: create {cid}: setns(user /proc/self/ns/user): Invalid argument"
    ), res.err


# ---------------------------------------------------------------- resources the host cannot apply


def _v1_controllers() -> set[str]:
    from runtime.cgroups import Layout, detect_layout, v1_hierarchies

    if detect_layout() is Layout.UNIFIED:
        return set()
    return set().union(*(m.controllers for m in v1_hierarchies()))


def _v1_file(pid: int, controller: str, name: str) -> str:
    """A knob of the v1 cgroup ``pid`` is in, for ``controller``."""
    from runtime.cgroups import parse_proc_cgroup, v1_hierarchies

    with open(f"/proc/{pid}/cgroup") as f:
        own = parse_proc_cgroup(f.read())
    mount = next(m for m in v1_hierarchies() if controller in m.controllers)
    with open(os.path.join(mount.mountpoint, own[controller].lstrip("/"), name)) as f:
        return f.read()


def _network_limits(spec: dict[str, Any]) -> None:
    spec["linux"]["resources"]["network"] = {
        "classID": 0x100001,
        "priorities": [{"name": "lo", "priority": 3}],
    }


def test_network_limits_are_applied_or_refused(both: list[Driver]) -> None:
    """linux.resources.network needs the v1 net_cls and net_prio controllers. Where they are
    not mounted (cgroup v2 has none) both runtimes refuse create instead of dropping the
    limits; corral names the field and the controller, and leaves nothing behind (the
    fixtures check state and cgroups)."""
    have = _v1_controllers()
    if {"net_cls", "net_prio"} <= have:
        for d in both:
            pid = d.state(d.start_running("corral-test", "sigwait", mod=_network_limits))["pid"]
            assert _v1_file(pid, "net_cls", "net_cls.classid").strip() == "1048577", d.name
            assert "lo 3" in _v1_file(pid, "net_prio", "net_prio.ifpriomap").splitlines()
        return
    if not have:
        # runc ignores the field on cgroup v2; corral refuses it.
        res = both[1].run("true", mod=_network_limits)
        assert res.rc != 0
        assert "apply linux.resources.network.classID: net_cls controller not available" in (
            res.err
        ), res.err
        return
    for d in both:
        res = d.run("true", mod=_network_limits)
        assert res.rc != 0, d.name
        assert "net_cls" in res.err, (d.name, res.err)
    assert res.err.strip().endswith(
        "apply linux.resources.network.classID: net_cls controller not available"
    ), res.err
    # Only the priorities: net_prio is named.
    res = both[1].run(
        "true",
        mod=lambda s: s["linux"]["resources"].update(
            network={"priorities": [{"name": "lo", "priority": 3}]}
        ),
    )
    assert res.rc != 0
    assert "apply linux.resources.network.priorities: net_prio controller not available" in (
        res.err
    ), res.err


def test_update_refuses_network_limits_it_cannot_apply(corral: Driver, tmp_path: Path) -> None:
    """`update --resources` with network limits on a host without net_cls fails naming the
    field, and the container keeps running with its limits unchanged."""
    if "net_cls" in _v1_controllers():
        pytest.skip("net_cls is mounted here")
    cid = corral.start_running("corral-test", "sigwait")
    res_file = tmp_path / "resources.json"
    res_file.write_text(json.dumps({"pids": {"limit": 77}, "network": {"classID": 1}}))
    res = corral.cli("update", "--resources", str(res_file), cid)
    assert res.rc != 0
    assert "apply linux.resources.network.classID: net_cls controller not available" in res.err
    st = corral.state(cid)
    assert st["status"] == "running"
    if "pids" in _v1_controllers():
        assert _v1_file(st["pid"], "pids", "pids.max").strip() == "max"  # refused before writes


def test_rdma_limits_are_refused(both: list[Driver]) -> None:
    """rdma limits: corral does not apply them (features says "rdma": false) and refuses
    create naming the field; runc refuses too where there is no rdma hierarchy."""

    def mod(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["rdma"] = {"mlx5_1": {"hcaHandles": 3}}

    rdma_mounted = "rdma" in _v1_controllers()
    for d in both:
        res = d.run("true", mod=mod)
        if d.name == "runc" and rdma_mounted:
            continue
        assert res.rc != 0, d.name
    assert "linux.resources.rdma: rdma limits are not supported by this runtime" in res.err


def test_blkio_weights_on_this_kernel(both: list[Driver]) -> None:
    """blockIO.weight goes to blkio.bfq.weight where the kernel has BFQ (and no CFQ), in both
    runtimes; a leaf weight, which only CFQ had, fails create in both naming
    blkio.leaf_weight (corral names the field too), before anything is written. Where the
    kernel has no weight at all (no BFQ scheduler loaded), a weight fails create in both,
    corral naming the field and the file."""
    if "blkio" not in _v1_controllers():
        pytest.skip("no v1 blkio hierarchy")

    def weight(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["blockIO"] = {"weight": 300}

    def leaf(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["blockIO"] = {"weight": 300, "leafWeight": 300}

    runc, corral = both
    res = runc.run("true", mod=weight)
    if res.rc != 0:  # neither CFQ (gone since Linux 5.0) nor BFQ here: no weight file at all
        assert "blkio.bfq.weight: no such file or directory" in res.err, res.err
        for mod in (weight, leaf):
            res = corral.run("true", mod=mod)
            assert res.rc != 0
            assert (
                "apply linux.resources.blockIO.weight: blkio.weight does not exist on this kernel"
                in res.err
            ), res.err
        return
    have_leaf = None
    for d in both:
        pid = d.state(d.start_running("corral-test", "sigwait", mod=weight))["pid"]
        try:
            text = _v1_file(pid, "blkio", "blkio.bfq.weight")
        except FileNotFoundError:
            text = _v1_file(pid, "blkio", "blkio.weight")
        assert "300" in text.split(), (d.name, text)
        try:
            _v1_file(pid, "blkio", "blkio.leaf_weight")
            have_leaf = True
        except FileNotFoundError:
            have_leaf = False
    for d in both:
        res = d.run("true", mod=leaf)
        if have_leaf:
            assert res.rc == 0, (d.name, res.err)
            continue
        assert res.rc != 0, d.name
        assert "blkio.leaf_weight" in res.err, (d.name, res.err)
    if not have_leaf:
        assert "apply linux.resources.blockIO.leafWeight: blkio.leaf_weight does not exist" in (
            res.err
        ), res.err


def test_a_filter_that_denies_getcwd(both: list[Driver]) -> None:
    """The working directory is checked before the seccomp filter is loaded (without
    noNewPrivileges the filter is loaded while the runtime still sets the process up): a
    profile that denies getcwd, which the runtime itself calls, does not break create, as in
    crun. runc (Debian's 1.1.5 with the CVE-2024-21626 fix) checks its cwd under the filter
    and fails: corral differs on purpose."""

    def mod(spec: dict[str, Any]) -> None:
        spec["process"]["noNewPrivileges"] = False
        spec["process"]["cwd"] = "/tmp"
        spec["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }

    runc, corral = both
    res = runc.run("true", mod=mod)
    assert res.rc != 0 and "current working directory" in res.err, res.err
    # busybox's pwd asks the kernel (getcwd), which the filter denies: proof it is loaded.
    res = corral.run("sh", "-c", "touch marker; ls /tmp; /bin/pwd -P || echo denied", mod=mod)
    assert res.rc == 0, res.err
    assert res.out.split() == ["marker", "denied"], (res.out, res.err)  # cwd was /tmp


def test_hugetlb_through_the_unified_hierarchy_of_a_hybrid_host(both: list[Driver]) -> None:
    """A hybrid host whose v1 hierarchies lack hugetlb while its cgroup2 mount has it: corral
    applies the limit through the cgroup2 hierarchy (hugetlb.<size>.max in the container's
    cgroup2 directory). runc 1.1.5's hybrid mode only joins that directory and refuses the
    limit ("cannot set hugetlb limit"): corral differs on purpose."""
    from runtime.cgroups import Layout, detect_layout, parse_proc_cgroup

    unified = "/sys/fs/cgroup/unified"
    if detect_layout() is not Layout.HYBRID or "hugetlb" in _v1_controllers():
        pytest.skip("needs a hybrid host without a v1 hugetlb hierarchy")
    with open(f"{unified}/cgroup.controllers") as f:
        if "hugetlb" not in f.read().split():
            pytest.skip("the cgroup2 mount has no hugetlb controller")

    def mod(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 6 << 20}]

    runc, corral = both
    res = runc.run("true", mod=mod)
    assert res.rc != 0 and "hugetlb" in res.err, res.err
    pid = corral.state(corral.start_running("corral-test", "sigwait", mod=mod))["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        path = parse_proc_cgroup(f.read())[""]
    with open(f"{unified}{path}/hugetlb.2MB.max") as f:
        assert f.read().strip() == str(6 << 20)


# ---------------------------------------------------------------- without a mount namespace


def _drop_namespaces(*kinds: str) -> SpecMod:
    def mod(spec: dict[str, Any]) -> None:
        ns = spec["linux"]["namespaces"]
        spec["linux"]["namespaces"] = [n for n in ns if kinds and n["type"] not in kinds]

    return mod


def test_without_a_mount_namespace_what_would_mount_is_refused(
    both: list[Driver], rootfs: Path
) -> None:
    """The default spec without a mount namespace: both refuse it before anything is made
    (runc: "unable to restrict sys entries without a private MNT namespace"; corral names the
    field). With no namespaces at all, the hostname is refused by both for want of a uts
    namespace."""
    before = _host_mounts(rootfs)
    for d in both:
        res = d.run("true", mod=_drop_namespaces("mount"))
        assert res.rc != 0, d.name
    assert "linux.maskedPaths: needs a mount namespace in linux.namespaces" in res.err, res.err
    for d in both:
        res = d.run("true", mod=_drop_namespaces())
        assert res.rc != 0, d.name
        assert "hostname" in res.err and "UTS" in res.err.upper(), (d.name, res.err)
    assert _host_mounts(rootfs) == before


def _bare(*kinds: str) -> SpecMod:
    """Without the namespaces ``kinds`` (all of them when none is named) and without anything
    that would mount: no mounts, masks, read-only root or hostname."""
    drop = _drop_namespaces(*kinds)

    def mod(spec: dict[str, Any]) -> None:
        drop(spec)
        spec["mounts"] = []
        spec["linux"]["maskedPaths"] = []
        spec["linux"]["readonlyPaths"] = []
        spec["root"]["readonly"] = False
        if not kinds:
            spec.pop("hostname", None)

    return mod


@pytest.mark.parametrize("kinds", [("mount",), ()], ids=["no-mount-ns", "no-namespaces"])
def test_without_a_mount_namespace_it_runs_in_the_callers(
    corral: Driver, rootfs: Path, kinds: tuple[str, ...]
) -> None:
    """No mount namespace (or none at all): the container runs in the caller's namespaces, in
    a chroot to its root, as with runc and crun, and the host's mount table is left as it
    was: nothing is mounted, not even the rootfs bind runc makes in the host's namespace.
    (runc is not run here for that reason.) exec enters the same root."""
    before = _host_mounts(rootfs)
    cid = corral.start_running("corral-test", "sigwait", mod=_bare(*kinds))
    pid = corral.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/root") == str(rootfs)
    shared = ["mnt"] if kinds else ["mnt", "pid", "net", "ipc", "uts", "cgroup"]
    for ns in shared:
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}"), ns
    assert _host_mounts(rootfs) == before
    res = corral.cli("exec", cid, "ls", "/")
    assert res.rc == 0, res.err
    assert sorted(res.out.split()) == sorted(os.listdir(rootfs))
    corral.cli("kill", cid, "KILL", check=True)
    corral.wait_status(cid, "stopped")
    corral.cli("delete", cid, check=True)
    assert _host_mounts(rootfs) == before
