"""CVE-2019-5736 class: an image reaches a host binary of the runtime through /proc/self/exe.

The attacker's image has a script `/attack` whose interpreter is `#!/proc/self/exe` and a
loader of its own at the path of the host's ld.so (tests/helper/exe-report.c). When the
process that execs `/attack` is still a copy of a host binary (the runtime's Python, the pod
monitor), the kernel loads that binary as the interpreter and, as it is dynamic, the image's
loader with it: the loader opens /proc/self/exe and could later write the host binary. Here
the loader only reports what its handle names (`exe-report link=... dev=... ino=...`), on
stdout and in /report/exe; it writes nothing else. Every path that execs into a container is
tried: create/start and a startContainer hook, exec, `corral run`, a pod and its exec probe,
and pid 1 of a pod's shared pid namespace. A control program (`/dyn`, dynamic) proves the
planted loader really runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.pod import api
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.rootfs import elf_interpreter
from tests.conftest import REPO, Runtime
from tests.integration.test_pods import Pods, image_tar, pods, until  # noqa: F401 (fixtures)
from tests.integration.test_run import Corral, corral  # noqa: F401 (fixture)

pytestmark = pytest.mark.root

HELPER = REPO / "tests" / "helper" / "exe-report.c"
NOLIBC_FLAGS = [
    "-std=c11", "-Os", "-Wall", "-Wextra", "-Werror", "-fPIE", "-static-pie", "-nostdlib",
    "-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
]  # fmt: skip


def host_binaries() -> dict[tuple[int, int], str]:
    """(dev, ino) of every host binary of the runtime a container could be handed."""
    paths = [os.path.realpath(sys.executable), os.path.realpath("/usr/bin/python3")]
    paths += [str(p) for p in (REPO / "runtime" / "_bin").iterdir()]
    out = {}
    for p in paths:
        st = os.stat(p)
        out[(st.st_dev, st.st_ino)] = p
    return out


def reports(text: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("exe-report "):
            out.append(dict(w.split("=", 1) for w in line.split()[1:] if "=" in w))
    return out


def assert_no_host_handle(text: str, control: str | None = None) -> None:
    """No report names a host file; ``control`` (a path in the image) must have been seen."""
    found = reports(text)
    if control is not None:
        assert any(r.get("link") == control for r in found), (
            f"the planted loader did not run for the control {control}: {text!r}"
        )
    hosts = host_binaries()
    for r in found:
        if r.get("link") == control:
            continue
        key = (int(r.get("dev", 0)), int(r.get("ino", 0)))
        assert key not in hosts, f"the container got a handle on {hosts[key]}: {r}"
        assert r.get("link", "").startswith("/memfd:"), f"a handle on a host file: {r}"


@pytest.fixture(scope="module")
def attack_rootfs(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the attacker's loader")
    dest = tmp_path_factory.mktemp("attack") / "rootfs"

    def specials(d: str, names: list[str]) -> list[str]:  # never read a device as a file
        return [n for n in names if not os.path.isdir(os.path.join(d, n))
                and not os.path.islink(os.path.join(d, n))
                and not os.path.isfile(os.path.join(d, n))]  # fmt: skip

    shutil.copytree(rootfs, dest, symlinks=True, ignore=specials)
    interp = elf_interpreter(os.path.realpath(sys.executable))
    assert interp is not None, f"{sys.executable} has no interpreter"
    loader = dest / interp.lstrip("/")
    loader.parent.mkdir(parents=True, exist_ok=True)
    if loader.is_symlink() or loader.exists():
        loader.unlink()
    cc = ["gcc", *NOLIBC_FLAGS, f"-I{REPO / 'csrc'}"]
    subprocess.run([*cc, "-o", str(loader), str(HELPER)], check=True)
    # the control: any dynamic program makes the kernel load the planted loader
    src = dest.parent / "dyn.c"
    src.write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-o", str(dest / "dyn"), str(src)], check=True)
    (dest / "attack").write_text("#!/proc/self/exe\n")
    (dest / "attack").chmod(0o755)
    (dest / "report").mkdir()
    return dest


def _spec_on(runtime: Runtime, root: Path, report: Path, *args: str) -> tuple[str, Path]:
    cid, bundle = runtime.prepare(*args)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(root), "readonly": True}
    spec["mounts"].append(
        {"destination": "/report", "type": "bind", "source": str(report), "options": ["rbind"]}
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    return cid, bundle


def test_control_proves_the_planted_loader_runs(
    runtime: Runtime, attack_rootfs: Path, tmp_path: Path
) -> None:
    cid, bundle = _spec_on(runtime, attack_rootfs, tmp_path, "/dyn")
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert_no_host_handle(res.out, control="/dyn")


def test_create_start_and_start_hook(runtime: Runtime, attack_rootfs: Path, tmp_path: Path) -> None:
    cid, bundle = _spec_on(runtime, attack_rootfs, tmp_path, "/attack")
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {"startContainer": [{"path": "/dyn"}, {"path": "/attack"}]}
    (bundle / "config.json").write_text(json.dumps(spec))
    runtime.cli("create", "--bundle", str(bundle), cid, check=True)
    runtime.cli("start", cid)
    until("the container to stop", lambda: runtime.state(cid)["status"] == "stopped")
    assert_no_host_handle((tmp_path / "exe").read_text(), control="/dyn")
    # the program itself: straight through run
    cid2, bundle2 = _spec_on(runtime, attack_rootfs, tmp_path, "/attack")
    res = runtime.cli("run", "--bundle", str(bundle2), cid2)
    assert_no_host_handle(res.out)
    assert res.rc != 0
    assert "corral-exec" in res.err, res.err


def test_exec(runtime: Runtime, attack_rootfs: Path, tmp_path: Path) -> None:
    cid, bundle = _spec_on(runtime, attack_rootfs, tmp_path, "sleep", "100")
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    res = runtime.cli("exec", cid, "/attack")
    assert_no_host_handle(res.out)
    assert res.rc != 0
    res = runtime.cli("exec", cid, "/dyn")
    assert_no_host_handle(res.out, control="/dyn")


def test_corral_run(corral: Corral, attack_rootfs: Path, tmp_path: Path) -> None:  # noqa: F811
    layer = tar_tree(attack_rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["/attack"]), repo_tags=["evil:1"])
    corral.ok("image", "import", str(write_tar(tmp_path / "evil.tar", files)))
    res = corral("run", "--rm", "evil:1")
    assert_no_host_handle(res.out)
    assert res.rc != 0
    assert_no_host_handle(corral("run", "--rm", "evil:1", "/dyn").out, control="/dyn")


@pytest.fixture
def evil_pods(pods: Pods, attack_rootfs: Path, tmp_path: Path) -> Iterator[Pods]:  # noqa: F811
    from images.store import Store

    layer = tar_tree(attack_rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=["evil:1"])
    Store(pods.opts.image_root).import_path(write_tar(tmp_path / "evil.tar", files))
    yield pods


def test_pod_container_exec_probe_and_pod_pid1(evil_pods: Pods, tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    vol = [{"name": "r", "mountPath": "/report"}]
    probe = {"exec": {"command": ["/attack"]}, "periodSeconds": 1}
    watch_pid1 = "corral-test readlink /proc/1/exe > /report/pid1 2>&1; sleep 1000"
    raw = evil_pods.manifest(
        f"evil-{uuid.uuid4().hex[:6]}",
        [
            {"name": "a", "image": "evil:1", "command": ["/attack"], "volumeMounts": vol},
            {
                "name": "p",
                "image": "evil:1",
                "command": ["sh", "-c", watch_pid1],
                "readinessProbe": probe,
                "volumeMounts": vol,
            },
        ],  # fmt: skip
        initContainers=[{"name": "i", "image": "evil:1", "command": ["/dyn"], "volumeMounts": vol}],
        volumes=[{"name": "r", "hostPath": {"path": str(report), "type": "Directory"}}],
        shareProcessNamespace=True,
        restartPolicy="Never",
    )
    uid = evil_pods.run(raw)
    evil_pods.running_pid(uid, "p")
    log = Path(evil_pods.opts.root) / "run" / uid / "monitor.log"

    def probed() -> bool:  # failed (as it must), or ready (the attack ran)
        return "probe of p failed" in log.read_text() or evil_pods.container(uid, "p").ready

    until("the readiness probe to run", probed)
    until("container a to end", lambda: evil_pods.container(uid, "a").pid is None)
    until("the pid 1 report", lambda: (report / "pid1").exists())
    assert_no_host_handle((report / "exe").read_text(), control="/dyn")
    assert not evil_pods.status(uid).container("p").ready
    # pid 1 of the pod's pid namespace is corral-exec from a sealed copy, and not dumpable,
    # so a container cannot even read where it came from
    seen = (report / "pid1").read_text()
    assert "Permission denied" in seen or seen.startswith("/memfd:corral-exec"), seen
    api.remove(uid, evil_pods.opts, force=True)


def test_pod_pid1_is_a_sealed_copy_and_the_monitor_out_of_sight(evil_pods: Pods) -> None:
    """The monitor itself is in no container's pid namespace; the pod's pid 1, which every
    container of a shareProcessNamespace pod sees, runs from a sealed copy of corral-exec."""
    import fcntl

    raw = evil_pods.manifest(
        f"m-{uuid.uuid4().hex[:6]}",
        [{"name": "s", "command": ["sh", "-c", "ls /proc > /tmp/p; sleep 100"]}],
        shareProcessNamespace=True,
    )
    uid = evil_pods.run(raw)
    pid = evil_pods.running_pid(uid, "s")
    monitor = evil_pods.status(uid).monitor_pid
    assert monitor
    # pid 1 of the container's pid namespace, as the host sees it
    with open(f"/proc/{pid}/status") as f:
        nspids = next(ln for ln in f if ln.startswith("NSpid:")).split()[1:]
    assert len(nspids) == 2, nspids

    def nspid(p: str) -> list[str]:
        try:
            with open(f"/proc/{p}/status") as f:
                return next(ln for ln in f if ln.startswith("NSpid:")).split()[1:]
        except (OSError, StopIteration):
            return []

    ns = os.readlink(f"/proc/{pid}/ns/pid")
    pid1 = next(
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and nspid(p)[-1:] == ["1"]
        and os.path.exists(f"/proc/{p}/ns/pid")
        and os.readlink(f"/proc/{p}/ns/pid") == ns
    )
    assert os.readlink(f"/proc/{pid1}/exe").startswith("/memfd:corral-exec")
    with open(f"/proc/{pid1}/exe", "rb") as f:
        seals = fcntl.fcntl(f.fileno(), 1024 + 10)  # F_GET_SEALS
    assert seals & 0x8, seals  # F_SEAL_WRITE
    with open(f"/proc/{pid1}/comm") as f:
        assert f.read().strip() == "corral-pod-init"
    # the monitor is not in the pod's pid namespace: no container can name it
    assert os.readlink(f"/proc/{monitor}/ns/pid") != os.readlink(f"/proc/{pid}/ns/pid")
    api.remove(uid, evil_pods.opts, force=True)
