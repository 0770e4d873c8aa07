"""podman drives corral-oci as its OCI runtime (through conmon), the way users will run it.

Everything podman makes lives under this test's own directories (--root, --runroot, --tmpdir)
and its cgroups under this process's own cgroup (--cgroup-parent); no network is built
(--network none). Debian's podman is installed by scripts/setup.sh.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.root

IMAGE = "localhost/corral-busybox:test"
RUNTIME = REPO / ".venv" / "bin" / "corral-oci"


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def docker_archive(rootfs: Path, dest: Path, tag: str) -> None:
    """A one-layer docker-archive (what `docker save` writes) of ``rootfs``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(rootfs.rglob("*")):
            t.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": _arch(),
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [{"Config": f"{config_id}.json", "RepoTags": [tag], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    with tarfile.open(dest, "w") as out:
        for name, data in (
            (f"{diff_id}/layer.tar", layer_bytes),
            (f"{config_id}.json", config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def _own_cgroup_parent() -> str | None:
    """The deepest own cgroup path that every hierarchy's own path is a prefix of."""
    paths = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            paths.append(line.rstrip("\n").split(":", 2)[2])
    deepest = max(paths, key=len)
    if all(deepest.startswith(p.rstrip("/") + "/") or p in ("/", deepest) for p in paths):
        return deepest.rstrip("/")
    return None


@dataclass
class Podman:
    base: list[str]
    env: dict[str, str]
    cgroup_parent: str

    def __call__(
        self, *args: str, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input.decode() if input is not None else None,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self(
            "run",
            "--network",
            "none",
            "--cgroup-parent",
            self.cgroup_parent,
            *args,
            timeout=timeout,
        )


def _cleanup_cgroups(rel: str) -> None:
    for hierarchy in sorted(Path("/sys/fs/cgroup").iterdir()):
        with open("/proc/self/mountinfo") as f:
            mounted = any(line.split()[4] == str(hierarchy) for line in f)
        if not mounted:
            continue
        top = hierarchy / rel.lstrip("/")
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def _missing_cgroup_dirs(rel: str) -> list[Path]:
    """The directories along the absolute cgroup path ``rel`` that do not exist yet in each
    hierarchy: podman makes them all, and in a hierarchy where our own cgroup is the root they
    are not below anything of ours, so the finalizer removes them too."""
    with open("/proc/self/mountinfo") as f:
        mounted = {line.split()[4] for line in f}
    missing = []
    for hierarchy in sorted(Path("/sys/fs/cgroup").iterdir()):
        if str(hierarchy) not in mounted:
            continue
        d = hierarchy
        for part in rel.strip("/").split("/"):
            d = d / part
            if not d.is_dir():
                missing.append(d)
    return missing


def _umount_under(path: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for mp in sorted((p for p in points if p.startswith(str(path) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)


@pytest.fixture(scope="module")
def podman(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman/conmon not installed (scripts/setup.sh installs them)")
    own = _own_cgroup_parent()
    if own is None:
        pytest.skip("own cgroups are not nested: cannot place podman's cgroups below them")
    # Overlay storage needs a real filesystem, not tmpfs: keep it under /var/tmp.
    base = Path("/var/tmp") / f"corral-podman-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    tmp = tmp_path_factory.mktemp("podman")
    conf = tmp / "containers.conf"
    conf.write_text(
        f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "corral"
runtime_supports_json = ["corral-oci", "crun", "runc"]
[engine.runtimes]
corral = ["{RUNTIME}"]
"""
    )
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    cgroup_parent = f"{own}/corral-podman-{uuid.uuid4().hex[:8]}"
    made = _missing_cgroup_dirs(cgroup_parent)
    pm = Podman(
        base=[
            "podman",
            "--root",
            str(base / "storage"),
            "--runroot",
            str(base / "run"),
            "--tmpdir",
            str(base / "tmp"),
            "--runtime",
            str(RUNTIME),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ],
        env=env,
        cgroup_parent=cgroup_parent,
    )
    archive = tmp / "image.tar"
    docker_archive(rootfs, archive, IMAGE)
    try:
        res = pm("load", "-i", str(archive))
        assert res.returncode == 0, res.stderr
        yield pm
    finally:
        pm("rm", "--all", "--force", "--time", "0", timeout=300)
        pm("rmi", "--all", "--force", timeout=300)
        _umount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        _cleanup_cgroups(cgroup_parent)
        for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass  # gone, or still used by something else (another run's podman)
        leaf = cgroup_parent.rsplit("/", 1)[1]
        assert not [d for d in made if d.name == leaf and d.exists()], "cgroups left behind"


def test_podman_uses_corral(podman: Podman) -> None:
    res = podman("info", "--format", "{{.Host.OCIRuntime.Path}}")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(RUNTIME)


def test_run_rm_echo(podman: Podman) -> None:
    res = podman.run("--rm", IMAGE, "echo", "hi")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hi\n"


def test_exit_code_and_missing_command(podman: Podman) -> None:
    assert podman.run("--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3
    res = podman.run("--rm", IMAGE, "/nonexistent")
    assert res.returncode == 127, res.stderr


def test_detached_exec_pause_stop(podman: Podman) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    res = podman.run("-d", "--name", name, IMAGE, "corral-test", "sigwait")
    assert res.returncode == 0, res.stderr
    try:
        res = podman("exec", name, "sh", "-c", "echo in-$(corral-test hostname)")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("in-")
        assert podman("exec", name, "sh", "-c", "exit 5").returncode == 5

        assert podman("pause", name).returncode == 0
        state = podman("inspect", "--format", "{{.State.Status}}", name)
        assert state.stdout.strip() == "paused"
        assert podman("unpause", name).returncode == 0
        state = podman("inspect", "--format", "{{.State.Status}}", name)
        assert state.stdout.strip() == "running"

        res = podman("stop", "--time", "10", name)
        assert res.returncode == 0, res.stderr
        state = podman("inspect", "--format", "{{.State.Status}}", name)
        assert state.stdout.strip() == "exited"
    finally:
        podman("rm", "--force", "--time", "0", name)


def test_limits_enforced_inside(podman: Podman) -> None:
    res = podman.run(
        "--rm", "--memory", "64m", "--pids-limit", "20", IMAGE, "sh", "-c",
        "corral-test forkbomb 100; cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "fail EAGAIN" in res.stdout
    forked = int(res.stdout.split("forked ")[1].split()[0])
    assert forked < 20
    assert str(64 << 20) in res.stdout


def test_network_none_has_only_lo(podman: Podman) -> None:
    res = podman.run("--rm", IMAGE, "sh", "-c", "corral-test netdevs; corral-test ifup lo")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["lo", "up"]


def test_tty_run(podman: Podman) -> None:
    if shutil.which("script") is None:
        pytest.skip("script(1) not installed")
    cmd = " ".join(
        [*podman.base, "run", "--rm", "-t", "--network", "none", "--cgroup-parent",
         podman.cgroup_parent, IMAGE, "corral-test", "ttyname"]
    )  # fmt: skip
    res = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        env=podman.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "/dev/pts/0" in res.stdout


# ---------------------------------------------------------------- side by side with runc (#24)

RUNC = shutil.which("runc")


@pytest.fixture(scope="module")
def podman_runc(podman: Podman) -> Podman:
    """The same podman storage, with runc as the runtime of the containers it makes."""
    if RUNC is None:
        pytest.skip("runc is not installed")
    base = list(podman.base)
    base[base.index("--runtime") + 1] = RUNC
    return Podman(base=base, env=podman.env, cgroup_parent=podman.cgroup_parent)


@pytest.fixture
def podmans(podman: Podman, podman_runc: Podman) -> dict[str, Podman]:
    return {"runc": podman_runc, "corral": podman}


@pytest.fixture
def names(podman: Podman) -> Iterator[list[str]]:
    """Container names a test made: removed even when it fails."""
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            podman("rm", "--force", "--time", "0", name, timeout=300)


def _name(made: list[str]) -> str:
    made.append(f"c-{uuid.uuid4().hex[:8]}")
    return made[-1]


def test_volume_flags_noexec_nosuid(
    podmans: dict[str, Podman], rootfs: Path, tmp_path: Path
) -> None:
    """-v DIR:/d:noexec refuses to run what is on it, -v DIR:/d:nosuid ignores setuid bits;
    a plain volume honours them (the setuid-root helper then runs with euid 0)."""
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o755)
    for name, mode in (("helper", 0o755), ("suid", 0o4755)):
        shutil.copy(rootfs / "bin" / "corral-test", vol / name)
        os.chown(vol / name, 0, 0)
        (vol / name).chmod(mode)
    script = "/p/suid ids; /s/suid ids; /x/helper pid 2>&1; true"
    outs = {}
    for rt, pm in podmans.items():
        res = pm.run(
            "--rm", "--user", "1000:1000",
            "-v", f"{vol}:/p", "-v", f"{vol}:/s:nosuid,nodev", "-v", f"{vol}:/x:noexec",
            IMAGE, "sh", "-c", script,
        )  # fmt: skip
        assert res.returncode == 0, f"{rt}: {res.stderr}"
        outs[rt] = res.stdout
    assert outs["corral"] == outs["runc"]
    lines = outs["corral"].splitlines()
    assert "euid=0 " in lines[0]
    assert "euid=1000 " in lines[1]
    assert "Permission denied" in lines[2]


def test_kill_of_a_paused_container(podmans: dict[str, Podman], names: list[str]) -> None:
    """podman kill of a paused container: the runtime thaws it for SIGKILL, so it exits 137
    and podman sees the exit (with corral it used to stay frozen and podman timed out)."""
    for rt, pm in podmans.items():
        name = _name(names)
        res = pm.run("-d", "--name", name, IMAGE, "corral-test", "sigwait")
        assert res.returncode == 0, f"{rt}: {res.stderr}"
        assert pm("pause", name).returncode == 0, rt
        res = pm("kill", name, timeout=120)
        assert res.returncode == 0, f"{rt}: {res.stderr}"
        res = pm("wait", name, timeout=120)
        assert res.returncode == 0, f"{rt}: {res.stderr}"
        assert res.stdout.strip() == "137", rt
        state = pm("inspect", "--format", "{{.State.Status}}", name)
        assert state.stdout.strip() == "exited", rt


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A host directory that is a shared mount of its own; unmounted with whatever a
    container mounted under it, even when the test fails."""
    d = tmp_path / "shared"
    (d / "sub").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
        yield d
    finally:
        subprocess.run(["umount", "-R", "-l", str(d)], check=False)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if p == str(path) or p.startswith(f"{path}/"))


@pytest.mark.parametrize("propagation", ["rshared", "rslave"])
def test_volume_propagation(podmans: dict[str, Podman], shared_dir: Path, propagation: str) -> None:
    """-v DIR:/d:rshared: a mount made in the container under /d appears on the host, as
    with runc; with rslave it does not."""
    sub = str(shared_dir / "sub")
    for rt, pm in podmans.items():
        res = pm.run(
            "--rm", "--cap-add", "SYS_ADMIN", "-v", f"{shared_dir}:/d:{propagation}",
            IMAGE, "mount", "-t", "tmpfs", "inner", "/d/sub",
        )  # fmt: skip
        assert res.returncode == 0, f"{rt}: {res.stderr}"
        seen = _mounts_under(shared_dir)
        if propagation == "rshared":
            assert seen == [str(shared_dir), sub], rt
            subprocess.run(["umount", sub], check=True)
        else:
            assert seen == [str(shared_dir)], rt


def test_run_timeout(podmans: dict[str, Podman], names: list[str]) -> None:
    """conmon's --timeout kills the container's process group: the container must lead a
    session of its own (runc's setsid), or conmon kills itself and the container stays up."""
    rcs = {}
    for rt, pm in podmans.items():
        name = _name(names)
        res = pm.run("--name", name, "--timeout", "2", IMAGE, "corral-test", "sleep", "1000")
        rcs[rt] = res.returncode
        state = pm("inspect", "--format", "{{.State.Status}}", name)
        assert state.stdout.strip() == "exited", (rt, res.stderr)
    assert rcs["corral"] == rcs["runc"], rcs  # podman 4.3 says 255 for either
