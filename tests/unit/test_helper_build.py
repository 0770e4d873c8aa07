"""The test helper and the test rootfs build without root and work on the host."""

from __future__ import annotations

import os
import resource
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from testkit.helper.build import ToolchainMissing, build_helper
from testkit.rootfs import (
    REQUIRED_APPLETS,
    BusyboxMissing,
    build_rootfs,
    cached_rootfs,
    find_busybox,
    tree_manifest,
)


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_helper(tmp_path_factory.mktemp("helper"))
    except ToolchainMissing as e:
        pytest.skip(f"cannot build the static test helper: {e}")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory, helper: Path) -> Path:
    try:
        find_busybox()
    except BusyboxMissing as e:
        pytest.skip(str(e))
    return build_rootfs(tmp_path_factory.mktemp("rootfs"), helper=helper)


def run(rootfs: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rootfs / "bin/corral-test"), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=30,
    )


def test_hostname(rootfs: Path) -> None:
    assert run(rootfs, "hostname").stdout == socket.gethostname() + "\n"


def test_ids(rootfs: Path) -> None:
    ruid, euid, _ = os.getresuid()
    rgid, egid, _ = os.getresgid()
    line = run(rootfs, "ids").stdout
    assert line.endswith("\n") and line.count("\n") == 1
    fields = dict(f.split("=", 1) for f in line.split())
    assert list(fields) == ["uid", "gid", "euid", "egid", "groups"]
    assert (fields["uid"], fields["gid"]) == (str(ruid), str(rgid))
    assert (fields["euid"], fields["egid"]) == (str(euid), str(egid))
    groups = [int(g) for g in fields["groups"].split(",") if g]
    assert sorted(groups) == sorted(os.getgroups())


def test_rlimit(rootfs: Path) -> None:
    def fmt(v: int) -> str:
        return "unlimited" if v == resource.RLIM_INFINITY else str(v)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert run(rootfs, "rlimit", "NOFILE").stdout == f"{fmt(soft)} {fmt(hard)}\n"
    bad = run(rootfs, "rlimit", "NOPE", check=False)
    assert bad.returncode == 1 and "NOPE" in bad.stderr


def test_exit_code(rootfs: Path) -> None:
    assert run(rootfs, "exit", "3", check=False).returncode == 3


def test_stat(rootfs: Path) -> None:
    st = os.lstat("/")
    assert run(rootfs, "stat", "/").stdout == (
        f"mode=0{stat.S_IMODE(st.st_mode):04o} uid={st.st_uid} gid={st.st_gid} type=d\n"
    )
    assert run(rootfs, "stat", str(rootfs / "tmp")).stdout.startswith("mode=01777 ")
    assert run(rootfs, "stat", str(rootfs / "bin/sh")).stdout.endswith(" type=l\n")


def test_usage_errors(rootfs: Path) -> None:
    assert run(rootfs, "no-such-subcommand", check=False).returncode == 2
    assert run(rootfs, "cat", check=False).returncode == 2


def test_env_write_cat(rootfs: Path, tmp_path: Path) -> None:
    target = tmp_path / "f"
    assert run(rootfs, "write", str(target), "hello").stdout == ""
    assert target.read_text() == "hello"
    assert run(rootfs, "cat", str(target)).stdout == "hello"
    missing = run(rootfs, "write", str(tmp_path / "no/such/dir"), "x", check=False)
    assert (missing.returncode, missing.stdout) == (1, "ENOENT\n")
    assert run(rootfs, "open-rw", str(tmp_path / "nope")).stdout == "ENOENT\n"
    assert run(rootfs, "env", "PATH").stdout == os.environ["PATH"] + "\n"


def test_busybox_shell(rootfs: Path) -> None:
    for argv in ([rootfs / "bin/busybox", "sh"], [rootfs / "bin/sh"]):
        out = subprocess.run(
            [*map(str, argv), "-c", "echo hi"], capture_output=True, text=True, check=True
        )
        assert out.stdout == "hi\n"


def test_rootfs_layout(rootfs: Path) -> None:
    modes = {"proc": 0o755, "sys": 0o755, "dev": 0o755, "etc": 0o755, "tmp": 0o1777,
             "root": 0o700, "usr/bin": 0o755}  # fmt: skip
    for rel, mode in modes.items():
        st = (rootfs / rel).lstat()
        assert stat.S_ISDIR(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == mode, rel

    bindir = rootfs / "bin"
    assert (bindir / "busybox").is_file() and os.access(bindir / "busybox", os.X_OK)
    assert (bindir / "corral-test").is_file() and os.access(bindir / "corral-test", os.X_OK)
    assert not (bindir / "corral-test").is_symlink()
    for applet in REQUIRED_APPLETS:
        assert os.readlink(bindir / applet) == "busybox", applet

    passwd = {
        f[0]: (int(f[2]), int(f[3]))
        for f in (line.split(":") for line in (rootfs / "etc/passwd").read_text().splitlines())
    }
    assert passwd["root"] == (0, 0)
    assert passwd["daemon"] == (1, 1)
    assert passwd["nobody"] == (65534, 65534)
    assert passwd["tester"] == (1000, 1000)
    group = {
        f[0]: (int(f[2]), f[3])
        for f in (line.split(":") for line in (rootfs / "etc/group").read_text().splitlines())
    }
    assert group["root"] == (0, "")
    assert group["daemon"] == (1, "")
    assert group["tester"] == (1000, "")
    assert group["extra"] == (2000, "tester")


def test_cached_rootfs_reuses(tmp_path: Path, helper: Path) -> None:
    try:
        find_busybox()
    except BusyboxMissing as e:
        pytest.skip(str(e))
    first = cached_rootfs(tmp_path)
    stamp = (first / "bin/corral-test").stat().st_mtime_ns
    assert cached_rootfs(tmp_path) == first
    assert (first / "bin/corral-test").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir() if "rootfs" in p.name) == [
        ".rootfs.lock",
        first.name,
        f"{first.name}.manifest",
    ]
    assert (first / "bin/sh").is_symlink()


def test_helper_build_is_cached(helper: Path) -> None:
    before = helper.stat().st_mtime_ns
    assert build_helper(helper.parent) == helper
    assert helper.stat().st_mtime_ns == before


def test_cached_rootfs_replaces_a_tree_that_was_changed(tmp_path: Path, helper: Path) -> None:
    """A test that wrote into the shared tree (a device node, a directory, a mode) does not
    break the runs after it: the next call finds the tree unlike its manifest, says what
    changed, keeps the old tree aside for whoever still uses it, and builds it again."""
    try:
        find_busybox()
    except BusyboxMissing as e:
        pytest.skip(str(e))
    first = cached_rootfs(tmp_path)
    clean = tree_manifest(first)
    (first / "etc/planted").write_text("x")
    (first / "newdir").mkdir()
    (first / "etc/passwd").chmod(0o600)
    (first / "etc/group").unlink()
    assert tree_manifest(first) != clean
    with pytest.warns(UserWarning, match="written into") as w:
        again = cached_rootfs(tmp_path)
    assert "(-'etc/group', ~'etc/passwd', +'etc/planted', +'newdir')" in str(w[0].message)
    assert again == first
    assert not (again / "etc/planted").exists() and not (again / "newdir").exists()
    assert tree_manifest(again) == clean
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".rootfs-stale-")]
    assert len(stale) == 1 and (stale[0] / "etc/planted").exists()  # kept for its users
    assert cached_rootfs(tmp_path) == first  # clean: no warning, nothing built
    os.utime(stale[0], (0, 0))
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".rootfs-stale-")]) == 1
    import testkit.rootfs as tr

    old = tr.STALE_AFTER
    tr.STALE_AFTER = -1  # every replaced tree is old enough to go
    try:
        cached_rootfs(tmp_path)
    finally:
        tr.STALE_AFTER = old
    assert sorted(p.name for p in tmp_path.iterdir() if "rootfs" in p.name) == [
        ".rootfs.lock",
        first.name,
        f"{first.name}.manifest",
    ]
