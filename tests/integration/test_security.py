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
import threading
from pathlib import Path

import pytest

from corral_common import hostsys
from runtime.config import CAPABILITIES
from tests.conftest import REPO, Runtime

pytestmark = pytest.mark.root


def _mounts() -> list[str]:
    return sorted(m.mountpoint for m in hostsys.mountinfo())


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
    before = _mounts()
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
    assert _mounts() == before


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


def test_container_cannot_write_its_own_exe_target_on_host(runtime: Runtime) -> None:
    res = runtime.run("corral-test", "open-rw", "/proc/self/exe")
    assert res.rc == 0, res.err
    assert res.out.strip() in ("ETXTBSY", "EROFS", "EACCES")


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


def test_user_namespace_root_is_unprivileged_outside(runtime: Runtime, tmp_path: Path) -> None:
    cid, bundle = runtime.prepare("sh", "-c", "corral-test ids; exec corral-test sleep 1000")

    def userns(s: dict) -> None:  # type: ignore[type-arg]
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]

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
    # Root inside cannot write a root-owned host file it can see only through a bind.
    host_file = tmp_path / "host-owned"
    host_file.write_text("x")
    host_file.chmod(0o644)


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


def test_exec_concurrent_with_kill_leaves_nothing(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    errors: list[str] = []

    def execs() -> None:
        for _ in range(5):
            res = runtime.cli("exec", cid, "true")
            if res.rc not in (0, 137, 255):  # ran, was killed, or exec failed (as runc)
                errors.append(res.err)

    t = threading.Thread(target=execs)
    t.start()
    runtime.cli("kill", cid, "KILL")
    t.join(60)
    assert not errors


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
