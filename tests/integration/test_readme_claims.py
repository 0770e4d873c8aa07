"""README claims that had no test on a real kernel: each one tried here.

corral-oci: ``--no-pivot``, ``--debug``, ``--systemd-cgroup`` refused, ``exec
--preserve-fds``, cgroup and user namespaces joined by path. ``corral logs -f``. The pod
command line: ``logs -f``, ``logs --previous``, ``exec -it``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.imagebuild import config_for, oci_files, tar_tree, write_tar
from tests.conftest import REPO, Runtime
from tests.integration.test_pods import CORRAL, Pods, image_tar, pods, sh, until  # noqa: F401
from tests.integration.test_run import Corral, corral  # noqa: F401 (fixture)

pytestmark = pytest.mark.root


def _edit(bundle: Path, fn: Any) -> None:
    spec = json.loads((bundle / "config.json").read_text())
    fn(spec)
    (bundle / "config.json").write_text(json.dumps(spec))


# ---------------------------------------------------------------- corral-oci


def test_no_pivot_uses_chroot(runtime: Runtime, tmp_path: Path) -> None:
    """Which call makes the rootfs the container's root, seen by strace(1) on the real
    create: pivot_root by default, chroot (and no pivot_root) with --no-pivot."""
    if shutil.which("strace") is None:
        pytest.skip("strace(1) is not installed")
    calls = {}
    for flag in ([], ["--no-pivot"]):
        cid, bundle = runtime.prepare("corral-test", "hostname")
        trace = tmp_path / f"trace{len(flag)}"
        argv = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root), "run",
                *flag, "--bundle", str(bundle), cid]  # fmt: skip
        res = subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=pivot_root,chroot", "-o", str(trace), *argv],
            capture_output=True, text=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert (res.returncode, res.stdout) == (0, "corral\n"), res.stderr
        text = trace.read_text()
        calls[bool(flag)] = ("pivot_root(" in text, 'chroot(".")' in text)
    assert calls == {False: (True, False), True: (False, True)}


def test_debug_is_accepted(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "hostname")
    res = runtime.cli("--debug", "run", "--bundle", str(bundle), cid)
    assert (res.rc, res.out) == (0, "corral\n"), res.err


def test_systemd_cgroup_is_refused_and_nothing_is_made(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true")
    res = runtime.cli("--systemd-cgroup", "run", "--bundle", str(bundle), cid)
    assert res.rc != 0
    assert "systemd cgroup driver is not supported" in res.err, res.err
    assert not (runtime.root / cid).exists()


def test_exec_preserve_fds_passes_exactly_n(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    r, w = os.pipe()
    oci = f"{sys.executable} -m runtime.cli.oci --root {runtime.root} exec"
    try:
        out = {}
        for n in (0, 1):
            p = subprocess.run(
                ["bash", "-c", f"exec {oci} --preserve-fds {n} {cid} corral-test fds 3<&{r}"],
                pass_fds=(r,), capture_output=True, text=True, cwd=REPO, timeout=60,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert p.returncode == 0, p.stderr
            out[n] = p.stdout.split()
    finally:
        os.close(r)
        os.close(w)
    assert out == {0: ["0", "1", "2"], 1: ["0", "1", "2", "3"]}


def test_user_and_cgroup_namespaces_joined_by_path(runtime: Runtime) -> None:
    owner, bundle = runtime.prepare("corral-test", "sleep", "1000")

    def userns(s: dict[str, Any]) -> None:
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]

    _edit(bundle, userns)
    runtime.cli("run", "--detach", "--bundle", str(bundle), owner, check=True)
    first = runtime.state(owner)["pid"]
    cid, bundle = runtime.prepare("corral-test", "sleep", "1000")

    def join(s: dict[str, Any]) -> None:
        kept = [ns for ns in s["linux"]["namespaces"] if ns["type"] not in ("user", "cgroup")]
        s["linux"]["namespaces"] = kept + [
            {"type": "user", "path": f"/proc/{first}/ns/user"},
            {"type": "cgroup", "path": f"/proc/{first}/ns/cgroup"},
        ]

    _edit(bundle, join)
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    second = runtime.state(cid)["pid"]
    for kind in ("user", "cgroup"):
        theirs = os.readlink(f"/proc/{first}/ns/{kind}")
        assert os.readlink(f"/proc/{second}/ns/{kind}") == theirs, kind
        assert theirs != os.readlink(f"/proc/self/ns/{kind}"), kind
    with open(f"/proc/{second}/status") as f:
        uid = next(line for line in f if line.startswith("Uid:")).split()[1]
    assert uid == "300000"


# ---------------------------------------------------------------- corral logs -f


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every container user may traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="corral-test-", dir="/var/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _follow(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


WAIT_GO = "echo one; while [ ! -e /x/go ]; do sleep 0.1; done; echo two"


@pytest.fixture
def imported(corral: Corral, rootfs: Path, tmp_path: Path) -> str:  # noqa: F811
    """The test rootfs as an OCI archive (``image_tar`` here is the pods' docker-archive)."""
    layer = tar_tree(rootfs)
    files, _ = oci_files([layer], config_for([layer], Cmd=["sh"]), ref_name="ctest:1")
    corral.ok("image", "import", str(write_tar(tmp_path / "ctest.tar", files)))
    return "ctest:1"


def test_corral_logs_follow(corral: Corral, imported: str) -> None:  # noqa: F811
    """logs -f prints what is there, then what comes, and ends when the container exits."""
    cid = corral.ok("run", "-d", "--entrypoint", "sh", imported, "-c",
                    WAIT_GO.replace("/x/go", "/go")).strip()  # fmt: skip
    p = _follow(corral.argv("logs", "-f", cid), corral.env())
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "one\n"
        (pid,) = [int(json.loads(f.read_text())["pid"]) for f in corral.state.glob("*/state.json")]
        Path(f"/proc/{pid}/root/go").write_text("")
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, rest) == (0, "two\n"), err
    corral.ok("rm", cid)
    corral.assert_clean()


# ---------------------------------------------------------------- corral pod


def test_pod_logs_follow(pods: Pods, open_dir: Path) -> None:  # noqa: F811
    """logs -f prints what is there, then what comes, and ends when the container exits."""
    c = sh("c", WAIT_GO, volumeMounts=[{"name": "x", "mountPath": "/x"}])
    raw = pods.manifest(
        "follow",
        [c],
        restartPolicy="Never",
        volumes=[{"name": "x", "hostPath": {"path": str(open_dir), "type": "Directory"}}],
    )
    uid = pods.run(raw)
    pods.running_pid(uid, "c")
    p = _follow([CORRAL, "pod", *pods.global_args(), "logs", "-f", "-c", "c", uid])
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "one\n"
        (open_dir / "go").write_text("")
        rest, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, rest) == (0, "two\n"), err
    pods.wait(uid)


def test_pod_logs_previous(pods: Pods) -> None:  # noqa: F811
    raw = pods.manifest("prev", [sh("c", "echo run; exec sleep 1000")])
    uid = pods.run(raw)
    pid = pods.running_pid(uid, "c")
    os.kill(pid, 9)  # restartPolicy Always: a second run
    until("a restart", lambda: pods.container(uid, "c").restart_count >= 1)
    res = pods.cli("logs", "--previous", "-c", "c", uid)
    assert (res.returncode, res.stdout) == (0, "run\n"), res.stderr
    until("the second run's output", lambda: pods.cli("logs", "-c", "c", uid).stdout == "run\n")
    pods.cli("stop", "-t", "0", uid)


def test_pod_exec_with_a_terminal(pods: Pods) -> None:  # noqa: F811
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    uid = pods.run(pods.manifest("tty", [sh("c", "exec sleep 1000")]))
    pods.running_pid(uid, "c")
    argv = [CORRAL, "pod", *pods.global_args(), "exec", "-it", uid, "-c", "c", "--",
            "sh", "-c", "corral-test ttyname; exit 3"]  # fmt: skip
    res = subprocess.run(
        ["script", "-qec", shlex.join(argv), "/dev/null"],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr
    assert "/dev/pts/" in res.stdout, res.stdout
    pods.cli("stop", "-t", "0", uid)
