"""Attacks tried from inside a container, and the security settings that stop them.

Each escape test names the CVE class it covers. The host is checked afterwards: nothing was
mounted, written or opened outside the container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_common import hostsys
from runtime.config import CAPABILITIES
from tests.conftest import REPO, Runtime

pytestmark = pytest.mark.root


def _mounts(under: Path) -> list[str]:
    """The machine's mount points below ``under`` (the test's own directory: where an escaped
    mount would land; other tests on the machine mount elsewhere at the same time)."""
    return sorted(
        m.mountpoint for m in hostsys.mountinfo() if Path(m.mountpoint).is_relative_to(under)
    )


def _private_rootfs(runtime: Runtime, tmp_path: Path) -> Path:
    """A writable copy of the test rootfs that a test may plant symlinks in."""
    dest = tmp_path / "rootfs"
    shutil.copytree(runtime.rootfs, dest, symlinks=True)
    return dest


def _with_root(runtime: Runtime, root: Path, *args: str, **process: object) -> tuple[str, Path]:
    cid, bundle = runtime.prepare(*args, **process)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(root), "readonly": False}
    (bundle / "config.json").write_text(json.dumps(spec))
    return cid, bundle


def _edit(bundle: Path, fn) -> None:  # type: ignore[no-untyped-def]
    spec = json.loads((bundle / "config.json").read_text())
    fn(spec)
    (bundle / "config.json").write_text(json.dumps(spec))


# ------------------------------------------------------------------ escapes


def test_mount_destination_symlink_stays_in_rootfs(runtime: Runtime, tmp_path: Path) -> None:
    """CVE-2021-30465 class: a symlink in the rootfs must not redirect a mount to the host."""
    root = _private_rootfs(runtime, tmp_path)
    host_target = tmp_path / "host-target"
    host_target.mkdir()
    (host_target / "precious").write_text("host data")
    # Absolute and relative symlinks that point out of the rootfs.
    os.symlink(str(host_target), root / "abs-escape")
    os.symlink("../../../../../../../../" + str(host_target).lstrip("/"), root / "rel-escape")
    before = _mounts(tmp_path)
    cid, bundle = _with_root(
        runtime, root, "sh", "-c", "echo hi > /abs-escape/x; echo hi > /rel-escape/y; ls /"
    )
    _edit(
        bundle,
        lambda s: s["mounts"].extend(
            [
                {"destination": "/abs-escape", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/rel-escape", "type": "tmpfs", "source": "tmpfs"},
            ]
        ),
    )
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res.err
    assert sorted(p.name for p in host_target.iterdir()) == ["precious"]
    assert (host_target / "precious").read_text() == "host data"
    assert _mounts(tmp_path) == before


def test_cwd_through_a_leaked_fd_is_refused(runtime: Runtime) -> None:
    """CVE-2024-21626 class: cwd /proc/self/fd/N must not land outside the container."""
    for n in range(3, 12):
        cid, bundle = runtime.prepare("corral-test", "ls", ".", cwd=f"/proc/self/fd/{n}")
        res = runtime.cli("run", "--bundle", str(bundle), cid)
        listing = res.out.split()
        assert "state.json" not in listing and "exec.fifo" not in listing, (n, res)
        assert res.rc != 0 or set(listing) <= {p.name for p in runtime.rootfs.iterdir()}, (n, res)


def test_runtime_fds_do_not_leak(runtime: Runtime, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    cid, bundle = runtime.prepare("corral-test", "fds")
    with open(secret) as f:
        p = subprocess.run(
            [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root), "run",
             "--bundle", str(bundle), cid],
            pass_fds=(f.fileno(),), capture_output=True, text=True, cwd=REPO, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "1", "2"]


def test_created_process_holds_no_inherited_fd(runtime: Runtime, tmp_path: Path) -> None:
    """The fds `create` inherits are closed in the container's process at once, not only
    at execve: a created container (still the runtime's copy) holds none of them."""
    secret = tmp_path / "secret"
    secret.write_text("x")
    cid, bundle = runtime.prepare("corral-test", "fds")
    # files, not pipes: the created process keeps its stdio open
    with open(secret) as f, tempfile.TemporaryFile() as out:
        p = subprocess.run(
            [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root), "create",
             "--bundle", str(bundle), cid],
            pass_fds=(f.fileno(),), stdout=out, stderr=out, cwd=REPO, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.seek(0)
        assert p.returncode == 0, out.read()
    pid = runtime.state(cid)["pid"]
    held = [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
    assert str(secret) not in held, held


def test_preserve_fds_passes_exactly_n(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("corral-test", "fds")
    r, w = os.pipe()
    cmd = (
        f"exec {sys.executable} -m runtime.cli.oci --root {runtime.root} run --preserve-fds 1 "
        f"--bundle {bundle} {cid} 3<&{r}"
    )
    try:
        p = subprocess.run(
            ["bash", "-c", cmd], pass_fds=(r,), capture_output=True, text=True, cwd=REPO,
            timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "1", "2", "3"]


def test_runtime_binary_unreachable_during_exec(runtime: Runtime, tmp_path: Path) -> None:
    """CVE-2019-5736 class: while `exec` sets up its process inside the container, that
    process (still a copy of the runtime) must not be reachable through /proc/PID/exe."""
    out = tmp_path / "out"
    out.mkdir()
    watcher = (
        "while [ ! -e /out/stop ]; do for p in /proc/[0-9]*; do "
        "corral-test readlink $p/exe 2>/dev/null; done; done > /out/seen"
    )
    cid, bundle = runtime.prepare("sh", "-c", watcher)
    _edit(
        bundle,
        lambda s: s["mounts"].append(
            {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
        ),
    )
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    try:
        for _ in range(15):
            assert runtime.cli("exec", cid, "true").rc == 0
    finally:
        (out / "stop").write_text("")
    seen = set((out / "seen").read_text().split()) if (out / "seen").exists() else set()
    assert seen, "the watcher saw nothing"
    leaked = {s for s in seen if "python" in s or str(REPO) in s or ".venv" in s}
    assert not leaked


def _ns_pid(host_pid: int) -> int:
    """The pid of ``host_pid`` in its innermost pid namespace."""
    with open(f"/proc/{host_pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"/proc/{host_pid}/status has no NSpid")


def test_created_process_exe_unreachable_from_a_sibling(runtime: Runtime) -> None:
    """CVE-2019-5736 class, during create: a created container's process is a copy of the
    runtime until `start`; a container sharing its pid namespace (same uid, same
    capabilities, so the kernel's ptrace check would otherwise let it in) must not open
    /proc/PID/exe on it. The window is held open for as long as the test needs: the
    container stays created."""
    sib, sib_bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("run", "--detach", "--bundle", str(sib_bundle), sib, check=True)
    sib_pid = runtime.state(sib)["pid"]
    cid, bundle = runtime.prepare("true")
    _edit(
        bundle,
        lambda s: s["linux"].__setitem__(
            "namespaces",
            [ns for ns in s["linux"]["namespaces"] if ns["type"] != "pid"]
            + [{"type": "pid", "path": f"/proc/{sib_pid}/ns/pid"}],
        ),
    )
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    target = runtime.state(cid)["pid"]
    assert os.readlink(f"/proc/{target}/exe") == os.path.realpath(sys.executable)
    ns_target = _ns_pid(target)
    script = f"corral-test readlink /proc/1/exe; corral-test readlink /proc/{ns_target}/exe"
    res = runtime.cli("exec", sib, "sh", "-c", script)
    control, *rest = res.out.splitlines()
    assert control == "/bin/corral-test" or control.endswith("/corral-test"), res
    assert not rest, f"the sibling read the runtime's exe link: {res.out!r}"
    assert "Permission denied" in res.err, res.err
    assert runtime.state(cid)["status"] == "created"


# ------------------------------------------------------------------ settings


def test_default_capabilities_and_a_denied_privileged_call(runtime: Runtime) -> None:
    res = runtime.run("sh", "-c", "corral-test caps; hostname evil 2>&1; corral-test hostname")
    assert res.rc == 0, res.err
    lines = res.out.splitlines()
    caps = dict(line.split(":\t") for line in lines[:5])
    want = 0
    for name in ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"):
        want |= 1 << CAPABILITIES[name]
    assert int(caps["CapEff"], 16) == want
    assert int(caps["CapBnd"], 16) == want
    assert lines[-1] == "corral"  # sethostname needs CAP_SYS_ADMIN


def test_ambient_and_inheritable_for_non_root(runtime: Runtime) -> None:
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    res = runtime.run(
        "corral-test",
        "caps",
        user={"uid": 1000, "gid": 1000},
        capabilities={
            k: caps for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
        },
    )
    assert res.rc == 0, res.err
    got = dict(line.split(":\t") for line in res.out.splitlines())
    want = (1 << CAPABILITIES["CAP_NET_BIND_SERVICE"]) | (1 << CAPABILITIES["CAP_KILL"])
    assert int(got["CapAmb"], 16) == want
    assert int(got["CapEff"], 16) == want


def test_unknown_capability_is_an_error(runtime: Runtime) -> None:
    res = runtime.run("true", capabilities={"bounding": ["CAP_NOT_A_THING"]})
    assert res.rc != 0
    assert "process.capabilities.bounding[0]" in res.err


def test_no_new_privs_and_oom_score_adj(runtime: Runtime) -> None:
    res = runtime.run(
        "sh", "-c", "corral-test nnp; corral-test cat /proc/self/oom_score_adj", oomScoreAdj=500
    )
    assert res.rc == 0, res.err
    assert res.out.split() == ["1", "500"]


def test_sysctl_is_set_inside_only(runtime: Runtime) -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host = f.read()
    cid, bundle = runtime.prepare("corral-test", "sysctl", "net.ipv4.ip_forward")
    _edit(bundle, lambda s: s["linux"].__setitem__("sysctl", {"net.ipv4.ip_forward": "1"}))
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res.err
    assert res.out.strip() == "1"
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host


def test_proc_and_sys_read_only_where_the_spec_says(runtime: Runtime) -> None:
    res = runtime.run(
        "sh",
        "-c",
        "corral-test open-rw /proc/sysrq-trigger; corral-test open-rw /sys/kernel/uevent_helper;"
        "corral-test cat /proc/kcore | wc -c",
    )
    assert res.rc == 0, res.err
    sysrq, uevent, kcore = res.out.split()
    assert sysrq in ("EROFS", "ENOENT") and uevent in ("EROFS", "ENOENT") and kcore == "0"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A root-owned directory every user may traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="corral-test-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_user_namespace_root_is_unprivileged_outside(runtime: Runtime, open_dir: Path) -> None:
    # Root inside cannot write a root-owned host file it can see only through a bind.
    host_file = open_dir / "host-owned"
    host_file.write_text("x")
    host_file.chmod(0o644)
    cid, bundle = runtime.prepare("sh", "-c", "corral-test ids; exec corral-test sleep 1000")

    def userns(s: dict) -> None:  # type: ignore[type-arg]
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        s["mounts"].append(
            {"destination": "/tmp/host-owned", "type": "bind", "source": str(host_file),
             "options": ["bind"]}
        )  # fmt: skip

    _edit(bundle, userns)
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    assert status["Uid"].split()[0] == "200000"
    assert status["Gid"].split()[0] == "200000"
    res = runtime.cli("exec", cid, "corral-test", "ids")
    assert res.rc == 0, res.err
    assert res.out.startswith("uid=0 gid=0")
    res = runtime.cli(
        "exec", cid, "sh", "-c", "corral-test open-rw /tmp/host-owned; cat /tmp/host-owned"
    )
    assert res.rc == 0, res.err
    assert res.out.split() == ["EACCES", "x"]
    assert host_file.read_text() == "x"


def test_tmpcopyup_keeps_the_image_files(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("sh", "-c", "cat /etc/passwd | head -1; touch /etc/new && echo w")
    _edit(
        bundle,
        lambda s: s["mounts"].append(
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
        ),
    )
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res.err
    assert res.out.split() == ["root:x:0:0:root:/root:/bin/sh", "w"]
    assert not (runtime.rootfs / "etc" / "new").exists()


def test_kill_during_an_exec_leaves_nothing(runtime: Runtime) -> None:
    """`kill KILL` lands while an exec'd process runs: the exec ends as killed (137), its
    process is gone with the container, and delete leaves nothing."""
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    init = runtime.state(cid)["pid"]
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root), "exec", cid,
           "corral-test", "sleep", "1001"]  # fmt: skip
    ex = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        execd = until_exec(init, ["corral-test", "sleep", "1001"])
        runtime.cli("kill", cid, "KILL", check=True)
        _, err = ex.communicate(timeout=60)
    finally:
        if ex.poll() is None:
            ex.kill()
            ex.wait()
    assert ex.returncode == 137, err
    assert not Path(f"/proc/{execd}").exists()
    runtime.cli("delete", cid, check=True)


def until_exec(init: int, argv: list[str]) -> int:
    """The host pid of the process in ``init``'s pid namespace that runs ``argv`` (past
    execve: the runtime's copy has another argv), once it runs."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                got = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
                if os.readlink(p / "ns" / "pid") == ns and got == [*argv, ""]:
                    return int(p.name)
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no process runs {argv}")


def _keyrings() -> str:
    with open("/proc/keys") as f:
        return f.read()


def test_session_keyring_per_container(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true")
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    assert f"keyring   {cid}: empty" in _keyrings()
    cid2, bundle2 = runtime.prepare("true")
    runtime.cli("create", "--no-new-keyring", "--bundle", str(bundle2), cid2, check=True)
    assert cid2 not in _keyrings()
