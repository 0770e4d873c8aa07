"""``corral run``, ``ps``, ``logs``, ``stop``, ``rm`` with real mounts, cgroups and processes,
on images built by testkit/imagebuild.py and saved by podman and skopeo.

Each test gets a store, a state root and a cgroup parent of its own (below this process's
cgroup); the finalizer force-removes every container and then checks that nothing is left:
no container directory, image ref, runtime state, overlay mount or cgroup.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral_common import hostsys
from testkit.imagebuild import config_for, oci_files, tar_tree, write_tar
from testkit.netns import NodeNs, node_netns
from tests.conftest import REPO, Result
from tests.integration.test_images import _run, mounts_under, podman, tool

pytestmark = pytest.mark.root

__all__ = ["podman"]  # a fixture, used by name

IDS_OUT = "uid=1000 gid=1000 euid=1000 egid=1000 groups=2000"


def own_cgroup_dirs(name: str) -> list[Path]:
    """``name`` below this process's own cgroup in every mounted hierarchy (where it exists)."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            own[c] = path
    out = []
    for m in hostsys.mountinfo():
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        mnt, root = m.mountpoint, m.root
        if m.fstype == "cgroup2":
            path = own.get("")
        else:
            opts = m.super_options.split(",")
            path = next((own[o] for o in opts if o in own and o), None)
        if path is None:
            continue
        d = Path(mnt) / os.path.relpath(path, root) / name
        if d.is_dir():
            out.append(d)
    return out


@dataclass
class Corral:
    tmp: Path
    tag: str

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(CORRAL_IMAGE_STORE=str(self.store), CORRAL_STATE_ROOT=str(self.state))
        env["PYTHONPATH"] = str(REPO)
        return env

    def argv(self, *args: str) -> list[str]:
        run = ["--cgroup-parent", self.tag] if args and args[0] == "run" else []
        main = "from corral_cli.main import main; main()"
        return [sys.executable, "-c", main, args[0], *run, *args[1:]]

    def __call__(self, *args: str, timeout: float = 60, input: str | None = None) -> Result:
        # Files, not pipes: nothing a container or its monitor holds can keep us waiting.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(
                self.argv(*args), stdout=out, stderr=err, timeout=timeout, env=self.env(),
                cwd=REPO, input=input.encode() if input is not None else None,
                stdin=None if input is not None else subprocess.DEVNULL,
            )  # fmt: skip
            out.seek(0)
            err.seek(0)
            return Result(p.returncode, out.read().decode(), err.read().decode())

    def ok(self, *args: str, timeout: float = 60) -> str:
        res = self(*args, timeout=timeout)
        assert res.rc == 0, f"corral {' '.join(args)}: rc {res.rc}: {res.err}"
        return res.out

    def ps(self) -> list[dict[str, Any]]:
        return json.loads(self.ok("ps", "-a", "--json"))

    def leftovers(self) -> dict[str, list[str]]:
        ctrs = self.store / "containers"
        refs = self.store / "refs"
        return {
            "containers": sorted(n for n in os.listdir(ctrs) if n != ".lock")
            if ctrs.is_dir() else [],
            "refs": sorted(str(p.relative_to(refs)) for p in refs.rglob("*")) if refs.is_dir()
            else [],
            "state": sorted(os.listdir(self.state)) if self.state.is_dir() else [],
            "mounts": mounts_under(self.tmp),
            "cgroups": [str(c) for d in own_cgroup_dirs(self.tag) for c in d.iterdir()
                        if c.is_dir()],
        }  # fmt: skip

    def assert_clean(self) -> None:
        left = {k: v for k, v in self.leftovers().items() if v}
        assert not left, f"left behind: {left}"


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    c = Corral(tmp_path, f"crun-{uuid.uuid4().hex[:6]}")
    try:
        yield c
    finally:
        try:
            for item in c.ps():
                c("rm", "-f", item["id"])
            left = c.leftovers()
        finally:
            for mp in sorted(mounts_under(tmp_path), key=len, reverse=True):
                subprocess.run(["umount", "-l", mp], check=False)
            for d in own_cgroup_dirs(c.tag):
                for sub in sorted(d.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                    if sub.is_dir():
                        os.rmdir(sub)
                os.rmdir(d)
        assert not {k: v for k, v in left.items() if v}, f"left behind: {left}"


@pytest.fixture(scope="module")
def image_tar(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test rootfs as a one-layer OCI archive: corral-test ids, as user tester."""
    layer = tar_tree(rootfs)
    cfg = config_for([layer], Entrypoint=["/bin/corral-test"], Cmd=["ids"], User="tester",
                     WorkingDir="/home/tester", Env=["FOO=bar"], StopSignal="SIGUSR1")  # fmt: skip
    files, _ = oci_files([layer], cfg, ref_name="ctest:1")
    return write_tar(tmp_path_factory.mktemp("img") / "ctest.tar", files)


@pytest.fixture
def imported(corral: Corral, image_tar: Path) -> str:
    corral.ok("image", "import", str(image_tar))
    return "ctest:1"


def wait_until(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_run_foreground_exit_codes_and_rm_leaves_nothing(corral: Corral, imported: str) -> None:
    res = corral("run", "--rm", imported)
    assert res.rc == 0, res.err
    assert res.out.startswith(IDS_OUT)
    assert corral("run", "--rm", imported, "exit", "3").rc == 3
    res = corral("run", "--rm", "--entrypoint", "sh", imported, "-c", "cat; echo err >&2",
                 input="from stdin\n")  # fmt: skip
    assert (res.rc, res.out, res.err) == (0, "from stdin\n", "err\n")
    corral.assert_clean()
    # without --rm the exited container stays, rootfs unmounted, until rm
    res = corral("run", "--name", "keep", imported, "exit", "4")
    assert res.rc == 4
    (item,) = corral.ps()
    assert (item["name"], item["status"], item["exit_code"]) == ("keep", "exited", 4)
    assert item["command"] == ["/bin/corral-test", "exit", "4"]
    assert mounts_under(corral.tmp) == []
    assert corral.leftovers()["refs"]
    assert "exited (4)" in corral.ok("ps", "-a") and "keep" not in corral.ok("ps")
    assert corral.ok("rm", "keep") == "keep\n"
    corral.assert_clean()


def test_overrides_env_workdir_user_limits(corral: Corral, imported: str) -> None:
    script = 'echo "$FOO $A $B"; pwd; id -u; id -g; hostname'
    out = corral.ok("run", "--rm", "-e", "A=1", "-e", "FOO=over", "-e", "B", "-w", "/tmp",
                    "-u", "0:0", "--hostname", "h1", "--entrypoint", "sh", imported,
                    "-c", script)  # fmt: skip
    assert out.split("\n") == ["over 1 ", "/tmp", "0", "0", "h1", ""]
    out = corral.ok("run", "--rm", imported)  # the image's defaults
    assert out.startswith(IDS_OUT)
    out = corral.ok("run", "--rm", "--entrypoint", "sh", imported, "-c", "pwd; echo $FOO")
    assert out == "/home/tester\nbar\n"
    # --network host: the host's network namespace (ours), not a new one.
    netns = ["--entrypoint", "readlink", imported, "/proc/self/ns/net"]
    own = os.readlink("/proc/self/ns/net")
    assert corral.ok("run", "--rm", "--network", "host", *netns).strip() == own
    assert corral.ok("run", "--rm", *netns).strip() != own
    corral.assert_clean()


def test_memory_and_cpu_limits_reach_the_cgroup(corral: Corral, imported: str) -> None:
    if not Path("/sys/fs/cgroup/memory").is_dir() or not Path("/sys/fs/cgroup/cpu").is_dir():
        pytest.skip("needs the v1 memory and cpu controllers")
    out = corral.ok("run", "--rm", "-m", "64m", "--cpus", "0.5", "--entrypoint", "sh", imported,
                    "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # fmt: skip
    assert out.split() == [str(64 << 20), "50000"]
    corral.assert_clean()


def test_failures_remove_what_they_made(corral: Corral, imported: str) -> None:
    res = corral("run", "--rm", "--entrypoint", "/no/such", imported)
    assert res.rc == 127 and "/no/such" in res.err
    assert res.err.startswith(f"corral: run {imported}: start container(")
    res = corral("run", "-u", "nobody-here", imported)
    assert res.rc == 125
    assert f"corral: run {imported}: make config({imported}): user 'nobody-here'" in res.err
    res = corral("run", "nosuch:1")
    assert (res.rc, res.err) == (125, "corral: run nosuch:1: find image(nosuch:1): "
                                      "not found: image nosuch:1\n")  # fmt: skip
    res = corral("run", "-d", "--entrypoint", "/no/such", imported)
    assert res.rc == 125 and "start container(" in res.err and "/no/such" in res.err
    corral.assert_clean()
    # a layer that went missing: the mount fails, and the error names the step and the path
    (layer,) = (corral.store / "layers" / "sha256").iterdir()
    os.rename(layer, layer.with_name("moved"))
    try:
        res = corral("run", imported)
    finally:
        os.rename(layer.with_name("moved"), layer)
    assert res.rc == 125
    assert f"corral: run {imported}: mount rootfs({corral.store}/containers/" in res.err
    corral.assert_clean()
    corral.ok("run", "--name", "dup", imported)
    res = corral("run", "--name", "dup", imported)
    assert (res.rc, res.err) == (125, f"corral: run {imported}: name(dup): already in use "
                                      "by another container\n")  # fmt: skip


# A stand-in for corral-monitor ($CORRAL_MONITOR) that refuses its configuration as the real
# one does (the error on the sync pipe after `go`, the reason in monitor.log), but then stays
# up instead of exiting: whoever started it must stop it. It detaches as the real one does
# (the process corral spawned exits once the monitor proper said ready).
REFUSING_MONITOR = """#!{python}
import os, signal, sys

fd = int(sys.argv[-1])
if os.fork():
    os._exit(0)
with open({pidfile!r}, "w") as f:
    f.write(str(os.getpid()))
os.write(fd, f"ready {{os.getpid()}} 0\\n".encode())
assert os.read(fd + 1, 100) == b"go\\n"
why = "monitor.conf line 3: unknown key 'frobnicate'"
print(why, file=sys.stderr, flush=True)
os.write(fd, f"error {{why}}\\n".encode())
os.close(fd)
while True:
    signal.pause()
"""


def _running(pid: int, exe: Path) -> bool:
    """``pid`` is a live (not zombie) process running ``exe``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and str(exe).encode() in cmdline


@pytest.fixture
def refusing_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """$CORRAL_MONITOR set to REFUSING_MONITOR (yielded; it writes its pid to EXE.pid). The
    finalizer kills it if it is still up (it is ours)."""
    exe = tmp_path / "refusing-monitor"
    pidfile = exe.with_suffix(".pid")
    exe.write_text(REFUSING_MONITOR.format(python=sys.executable, pidfile=str(pidfile)))
    exe.chmod(0o755)
    monkeypatch.setenv("CORRAL_MONITOR", str(exe))
    try:
        yield exe
    finally:
        if pidfile.exists() and _running(pid := int(pidfile.read_text()), exe):
            os.kill(pid, signal.SIGKILL)


def test_a_refused_monitor_start_fails_the_detached_run(
    corral: Corral, imported: str, refusing_monitor: Path
) -> None:
    """`run -d` returns only once the monitor took its configuration: a refusal is an error
    of the run (125, one line naming the step and the monitor's reason), and the container
    goes with everything it had: directory, rootfs mount, cgroups, and the monitor."""
    res = corral("run", "-d", imported)
    assert res.rc == 125, res.err
    assert re.fullmatch(
        rf"corral: run {re.escape(imported)}: start monitor\([0-9a-f]{{12}}\): monitor\.conf "
        r"line 3: unknown key 'frobnicate' \(monitor\.log: .*\)\n",
        res.err,
    ), res.err
    pid = int(refusing_monitor.with_suffix(".pid").read_text())  # it ran, and said ready
    assert not _running(pid, refusing_monitor)
    assert corral.ps() == []
    corral.assert_clean()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("User", 5, "config.User: must be a string"),
        ("Cmd", "notalist", "config.Cmd: must be an array of strings"),
        ("Env", "A=B", "config.Env: must be an array of strings"),
    ],
)
def test_a_bad_stored_config_is_refused_cleanly(
    corral: Corral, imported: str, field: str, value: Any, message: str
) -> None:
    """Import refuses such configs; one stored before that check (or changed since) makes
    `run` fail with 125 and one line naming the field, not a traceback."""
    image_id = json.loads(corral.ok("image", "inspect", imported))["id"]
    blob = corral.store / "blobs" / "sha256" / image_id.split(":")[1]
    cfg = json.loads(blob.read_bytes())
    cfg["config"][field] = value
    blob.write_text(json.dumps(cfg))
    res = corral("run", "--rm", imported)
    assert (res.rc, res.err) == (
        125, f"corral: run {imported}: make config({imported}): image config: {message}\n"
    )  # fmt: skip
    corral.assert_clean()


def test_detached_logs_stop_rm_and_image_in_use(corral: Corral, imported: str) -> None:
    script = 'echo started; trap "echo bye; exit 7" USR1; while :; do sleep 0.05; done'
    cid = corral.ok("run", "-d", "--name", "web", "--entrypoint", "sh", imported, "-c", script)
    cid = cid.strip()
    assert len(cid) == 64
    (item,) = json.loads(corral.ok("ps", "--json"))
    assert (item["id"], item["status"], item["name"]) == (cid, "running", "web")
    assert item["pid"] > 0
    wait_until(lambda: corral.ok("logs", "web") == "started\n")
    res = corral("image", "rm", imported)
    assert res.rc == 1 and f"is used by {cid}" in res.err
    res = corral("rm", "web")
    assert res.rc == 1 and "is running: stop it first" in res.err
    # the image's StopSignal (SIGUSR1) ends it: the trap's exit code is recorded
    assert corral.ok("stop", "web") == "web\n"
    (item,) = corral.ps()
    assert (item["status"], item["exit_code"]) == ("exited", 7)
    assert corral.ok("logs", cid[:12]) == "started\nbye\n"
    assert mounts_under(corral.tmp) == []
    assert corral("image", "rm", imported).rc == 1  # an exited container still uses it
    corral.ok("rm", cid[:8])
    corral.assert_clean()
    corral.ok("image", "rm", imported)


def test_stop_kills_after_timeout_and_rm_force(corral: Corral, imported: str) -> None:
    # sleep as pid 1 ignores SIGUSR1 and SIGTERM: stop falls back to SIGKILL -> 137
    cid = corral.ok("run", "-d", imported, "sleep", "60").strip()
    corral.ok("stop", "-t", "0.2", cid)
    (item,) = corral.ps()
    assert (item["status"], item["exit_code"]) == ("exited", 137)
    corral.ok("rm", cid)
    # rm -f of a running container
    corral.ok("run", "-d", "--name", "doomed", imported, "sleep", "60")
    corral.ok("rm", "-f", "doomed")
    corral.assert_clean()
    # --rm -d: gone by itself once it exits
    corral.ok("run", "-d", "--rm", imported, "exit", "0")
    wait_until(lambda: corral.ps() == [])
    corral.assert_clean()


def test_foreground_stopped_from_outside(corral: Corral, imported: str) -> None:
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(corral.argv("run", "--name", "fg", imported, "sleep", "60"),
                             stdout=out, stderr=out, env=corral.env(), cwd=REPO,
                             stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_until(lambda: [i["status"] for i in corral.ps()] == ["running"])
            corral.ok("stop", "-t", "0.2", "fg")
            assert p.wait(timeout=30) == 137
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    (item,) = corral.ps()
    assert (item["status"], item["exit_code"]) == ("exited", 137)
    res = corral("logs", "fg")
    assert res.rc == 1 and "ran in the foreground" in res.err
    corral.ok("rm", "fg")
    corral.assert_clean()


def test_images_saved_by_podman_and_skopeo_run(
    corral: Corral, rootfs: Path, podman: list[str], tmp_path: Path
) -> None:
    p = podman
    src = tmp_path / "rootfs.tar"
    _run("tar", "-C", rootfs, "-cf", src, ".")
    _run(*p, "import", "--change", 'ENTRYPOINT ["/bin/corral-test"]', "--change", 'CMD ["ids"]',
         "--change", "USER tester", src, "localhost/pm:1")  # fmt: skip
    archives = {}
    for fmt in ("docker-archive", "oci-archive"):
        archives[fmt] = tmp_path / f"{fmt}.tar"
        _run(*p, "save", "--format", fmt, "-o", archives[fmt], "localhost/pm:1")
    sk = tool("skopeo")
    _run(sk, "copy", "-q", f"docker-archive:{archives['docker-archive']}",
         f"oci:{tmp_path / 'layout'}:sk:2")  # fmt: skip
    names = []
    for i, path in enumerate([*archives.values(), tmp_path / "layout"]):
        name = f"pm{i}"
        corral.ok("image", "import", "--name", name, str(path))
        names.append(name)
    for name in names:
        res = corral("run", "--rm", name)
        assert res.rc == 0, res.err
        assert res.out.startswith(IDS_OUT), (name, res.out)
        assert corral("run", "--rm", name, "exit", "5").rc == 5
    corral.assert_clean()


def _parent_comm(pid: int) -> str:
    ppid = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
                .splitlines() if line.startswith("PPid:"))  # fmt: skip
    return Path(f"/proc/{ppid}/comm").read_text().strip()


def test_detached_runs_under_the_monitor_logs_follow_and_volumes(
    corral: Corral, imported: str, tmp_path: Path
) -> None:
    """The monitor holds the container (its parent), writes its logs (stdout and stderr
    apart) and records its exit; `logs -f` follows until the exit. A bind volume (ro and
    rw) and a named volume reach the container."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from the host\n")
    script = ("cat /shared/in; echo out-of-volume > /shared/out; cat /ro/in; "
              "echo no > /ro/x || echo ro-refused >&2; echo kept >> /named/f; cat /named/f; "
              "while [ ! -e /shared/go ]; do sleep 0.05; done; echo two >&2; exit 3")  # fmt: skip
    ERR = "sh: can't create /ro/x: Read-only file system\nro-refused\ntwo\n"  # noqa: N806
    cid = corral.ok(
        "run",
        "-d",
        "-u",
        "0:0",
        "-v",
        f"{shared}:/shared",
        "-v",
        f"{shared}:/ro:ro,nosuid",
        "-v",
        "vol1:/named",
        "--entrypoint",
        "sh",
        imported,
        "-c",
        script,
    ).strip()
    (item,) = corral.ps()
    assert item["status"] == "running" and _parent_comm(item["pid"]) == "corral-monitor"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        follow = subprocess.Popen(corral.argv("logs", "-f", cid), stdout=out, stderr=err,
                                  env=corral.env(), cwd=REPO, stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_until(
                lambda: (shared / "out").exists() and corral.ok("logs", cid).count("\n") == 3
            )
            (shared / "go").touch()
            assert follow.wait(timeout=60) == 0
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        out.seek(0)
        err.seek(0)
        assert out.read().decode() == "from the host\nfrom the host\nkept\n"
        assert err.read().decode() == ERR
    assert (shared / "out").read_text() == "out-of-volume\n" and not (shared / "x").exists()
    (item,) = corral.ps()
    assert (item["status"], item["exit_code"], item["restarts"]) == ("exited", 3, 0)
    res = corral("logs", cid)
    assert (res.out, res.err) == ("from the host\nfrom the host\nkept\n", ERR)
    assert mounts_under(corral.tmp) == []
    corral.ok("rm", cid)
    # the named volume outlives the container, as podman's do, and is used again
    assert (corral.store / "volumes" / "vol1" / "_data" / "f").read_text() == "kept\n"
    out = corral.ok("run", "--rm", "-u", "0:0", "-v", "vol1:/named", "--entrypoint", "sh",
                    imported, "-c", "echo again >> /named/f; cat /named/f")  # fmt: skip
    assert out == "kept\nagain\n"
    corral.assert_clean()


def test_restart_policies(corral: Corral, imported: str) -> None:
    """on-failure:N restarts a failing container N times (the monitor's backoff), then it
    stays exited; always restarts one that succeeds too, until `stop`."""
    script = "echo run; exit 3"
    cid = corral.ok("run", "-d", "--restart", "on-failure:2", "--entrypoint", "sh", imported,
                    "-c", script).strip()  # fmt: skip
    wait_until(lambda: corral.ps()[0]["status"] == "exited", timeout=60)
    (item,) = corral.ps()
    assert (item["exit_code"], item["restarts"]) == (3, 2)
    assert corral.ok("logs", cid) == "run\nrun\nrun\n"
    corral.ok("rm", cid)
    cid = corral.ok("run", "-d", "--restart", "always", "--entrypoint", "sh", imported, "-c",
                    "echo up; exit 0").strip()  # fmt: skip
    wait_until(lambda: corral.ps()[0]["restarts"] >= 2, timeout=60)
    assert corral.ps()[0]["status"] != "exited"
    corral.ok("stop", cid)
    (item,) = corral.ps()
    assert item["status"] == "exited" and item["exit_code"] in (0, 143)
    n = item["restarts"]
    assert corral.ps()[0]["restarts"] == n  # stopped means stopped: no restart after it
    corral.ok("rm", cid)
    # --restart no (the default): one run
    cid = corral.ok("run", "-d", imported, "exit", "4").strip()
    wait_until(lambda: corral.ps()[0]["status"] == "exited")
    assert (corral.ps()[0]["exit_code"], corral.ps()[0]["restarts"]) == (4, 0)
    corral.ok("rm", cid)
    corral.assert_clean()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--restart", "sometimes", "-d"),
            "--restart sometimes: want no, on-failure[:N] or always",
        ),
        (("--restart", "on-failure:0", "-d"), "--restart on-failure:0: '0': want a number"),
        (("--restart", "always"), "--restart always: only a detached container (-d) restarts"),
        (("--restart", "always", "-d", "--rm"), "--restart always: conflicts with --rm"),
        (("-v", "rel/x:/y"), "--volume rel/x:/y: 'rel/x' is neither an absolute path"),
        (("-v", "/tmp:y"), "--volume /tmp:y: the destination 'y' must be an absolute path"),
        (("-v", "/tmp:/y:ro,rw"), "--volume /tmp:/y:ro,rw: options ro, rw exclude each other"),
        (("-v", "/tmp:/y:bogus"), "--volume /tmp:/y:bogus: unknown option 'bogus'"),
        (("-v", "/no/such/dir:/y"), "--volume /no/such/dir:/y: /no/such/dir: No such file"),
        (("-v", "/tmp:/y", "-v", "/tmp:/y/"), "--volume /tmp:/y/: /y is mounted twice"),
        (("-p", "80"), "--publish 80: want HOSTPORT:CTRPORT[/tcp|udp]"),
        (("-p", "8080:80/sctp"), "--publish 8080:80/sctp: protocol 'sctp': want tcp or udp"),
        (("-p", "0:80"), "--publish 0:80: 0 is not a port number"),
        (("-p", "8080:80"), "--publish 8080:80: needs the pod network, not none"),
        (("--network", "host", "-p", "8080:80"), "--publish 8080:80: needs the pod network"),
    ],
)
def test_bad_options_exit_125_naming_the_option(
    corral: Corral, imported: str, args: tuple[str, ...], message: str
) -> None:
    res = corral("run", *args, imported)
    assert res.rc == 125, res.err
    assert res.err.startswith(f"corral: run {imported}: {message}"), res.err
    corral.assert_clean()
    assert not (corral.store / "volumes").exists()


@dataclass
class Node:
    ns: NodeNs
    config: Path

    @property
    def path(self) -> str:
        return self.ns.path

    def leftovers(self) -> dict[str, Any]:
        from runtime.network import NodeNetwork, load_config
        from runtime.network.netlink import Rtnl

        net = NodeNetwork(load_config(self.config), self.path)
        with Rtnl(self.path) as rt:
            veths = sorted(lk.name for lk in rt.links() if lk.name.startswith("cr"))
        return {"veths": veths, "addresses": net.ipam.allocations(), "records": net.pods(),
                "hostports": net.firewall.hostports()}  # fmt: skip


@pytest.fixture
def node(corral: Corral, tmp_path: Path) -> Iterator[Node]:
    """A node network namespace of the test's own (never the machine's) and its config. The
    containers go before it does (their network teardown needs it)."""
    ns = node_netns()
    try:
        config = tmp_path / "network.json"
        config.write_text(json.dumps({"podCIDR": "10.99.9.0/24", "name": "podnet",
                                      "stateDir": str(tmp_path / "netstate")}))  # fmt: skip
        yield Node(ns, config)
        for item in corral.ps():
            corral("rm", "-f", item["id"])
    finally:
        ns.close()


def _echo(netns: str, ip: str, port: int) -> str:
    import socket

    from runtime.network import in_netns

    s = in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    with s:
        s.settimeout(5)
        s.connect((ip, port))
        return s.recv(1024).decode()


def _answers(netns: str, ip: str, port: int) -> str:
    got: list[str] = []

    def once() -> bool:
        try:
            got.append(_echo(netns, ip, port))
        except OSError:
            return False
        return bool(got[-1])

    wait_until(once)
    return got[-1]


def test_pod_network_publish_foreground_and_detached(
    corral: Corral, imported: str, node: Node
) -> None:
    """--network <pod network> attaches the container as `corral pod` attaches a pod (an
    address on the node bridge, /etc/hosts); -p publishes a port on the node; everything
    is gone after the container."""
    net = ["--network-config", str(node.config), "--node-netns", node.path]
    out = corral.ok("run", "--rm", *net, "--hostname", "fg", "--entrypoint", "sh", imported,
                    "-c", "ip -4 -o addr show eth0; cat /etc/hosts")  # fmt: skip
    assert " eth0 " in out and "inet 10.99.9." in out and "fg" in out.split("inet")[1]
    assert node.leftovers() == {"veths": [], "addresses": {}, "records": [], "hostports": []}
    # a network config set: the pod network is the default; `--network none` still works
    out = corral.ok("run", "--rm", *net, "--network", "none", "--entrypoint", "sh", imported,
                    "-c", "ls /sys/class/net")  # fmt: skip
    assert out.split() == ["lo"]
    res = corral("run", "--rm", *net, "--network", "other", imported)
    assert res.rc == 125 and "--network other: want none, host or the pod network podnet" in res.err
    # detached, its port published on the node: the monitor holds its network namespace
    cid = corral.ok("run", "-d", *net, "--network", "podnet", "-p", "8080:80", "-u", "0:0",
                    "--hostname", "web", "--entrypoint", "nc", imported, "-ll", "-p", "80", "-e",
                    "hostname").strip()  # fmt: skip
    gateway = "10.99.9.1"
    assert _answers(node.path, gateway, 8080) == "web\n"
    left = node.leftovers()
    assert len(left["veths"]) == 1 and [h.host_port for h in left["hostports"]] == [8080]
    (item,) = corral.ps()
    assert os.readlink(f"/proc/{item['pid']}/ns/net") == os.readlink(
        f"/proc/{corral_monitor_pid(corral, cid)}/ns/net"
    )
    # a second container cannot take the same host port; nothing of it is left
    res = corral("run", "-d", *net, "-p", "8080:81", imported, "sleep", "60")
    assert res.rc == 125 and "network setup(" in res.err
    assert len(corral.ps()) == 1
    corral.ok("stop", "-t", "1", cid)
    assert node.leftovers() == {"veths": [], "addresses": {}, "records": [], "hostports": []}
    corral.ok("rm", cid)
    corral.assert_clean()


def corral_monitor_pid(corral: Corral, cid: str) -> int:
    return int((corral.store / "containers" / cid / "monitor.pid").read_text())
