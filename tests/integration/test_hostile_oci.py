"""Hostile config.json values and exec flags against corral-oci.

Each one is refused with one line naming the step and the field (no traceback), or, where runc
takes it, it is taken with runc's meaning. The ``runtime`` fixture fails the test on state or
cgroups left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Result, Runtime

pytestmark = pytest.mark.root


def _one_line_error(res: Result) -> str:
    assert res.rc != 0, res
    assert "Traceback" not in res.err, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral-oci: "), res.err
    return lines[0]


def _edit(bundle: Path, fn) -> None:  # type: ignore[no-untyped-def]
    spec = json.loads((bundle / "config.json").read_text())
    fn(spec)
    (bundle / "config.json").write_text(json.dumps(spec))


def test_device_owner_and_umask_use_all_32_bits(runtime: Runtime) -> None:
    """A device's uid/gid is a uint32 in the spec and a uid_t in the kernel (4294967294 is a
    valid id); a umask is a uint32 that umask(2) masks to its permission bits, as runc passes
    it. Both went through a C int: an OverflowError traceback."""
    cid, bundle = runtime.prepare(
        "sh", "-c", "stat -c %u:%g:%t:%T /dev/rthdev; umask", user={"uid": 0, "gid": 0}
    )

    def hostile(spec: dict) -> None:  # type: ignore[type-arg]
        spec["linux"]["devices"] = [
            {"path": "/dev/rthdev", "type": "c", "major": 1, "minor": 3,
             "uid": 2**32 - 2, "gid": 2**32 - 2}
        ]  # fmt: skip
        spec["process"]["user"]["umask"] = 0o40000022

    _edit(bundle, hostile)
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res.err
    assert res.out.split() == ["4294967294:4294967294:1:3", "0022"]


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (("--user", "-1:-1"), "--user: -1"),
        (("--user", "99999999999:0"), "--user: 99999999999"),
        (("--user", "0:4294967296"), "--user: 4294967296"),
        (("--additional-gids", "-7"), "--additional-gids: -7"),
    ],
)
def test_exec_ids_out_of_range_are_refused(
    runtime: Runtime, flags: tuple[str, ...], word: str
) -> None:
    """exec's --user and --additional-gids went unchecked into the spawn plan (an
    OverflowError traceback); runc refuses them too."""
    cid, bundle = runtime.prepare("corral-test", "sigwait")
    assert runtime.cli("create", "--bundle", str(bundle), cid).rc == 0
    assert runtime.cli("start", cid).rc == 0
    line = _one_line_error(runtime.cli("exec", *flags, cid, "true"))
    assert word in line and "between 0 and 4294967295" in line, line
    assert runtime.cli("exec", cid, "true").rc == 0  # the container is unharmed


def test_an_error_naming_an_id_with_a_newline_stays_one_line(runtime: Runtime) -> None:
    """The error prefix names the id as given: a newline or tab in it split the one line."""
    line = _one_line_error(runtime.cli("create", "--bundle", str(runtime.tmp), "a\nb\tc"))
    assert "a\\nb\\tc" in line and "invalid container id" in line, line


def test_a_symlink_planted_in_the_state_root_is_no_container(
    runtime: Runtime, tmp_path: Path
) -> None:
    """root/ID -> a host directory: `delete --force ID` listed and unlinked every file of the
    directory it points at (it took it for a container whose create never committed), and
    state/kill/list read a state.json through it. runc answers "container does not exist"."""
    host, other = tmp_path / "host", tmp_path / "other"
    for d in (host, other):
        d.mkdir()
        (d / "precious").write_text("host data")
    runtime.root.mkdir(parents=True, exist_ok=True)
    (runtime.root / "evil").symlink_to(other)  # a directory without a state.json
    (runtime.root / "evil2").mkdir()
    (runtime.root / "evil2" / "state.json").symlink_to(host / "state.json")
    (host / "state.json").write_text('{"id": "evil2"}')
    for cid in ("evil", "evil2"):
        assert runtime.cli("delete", "--force", cid).rc == 0
        assert (other / "precious").read_text() == "host data", f"delete --force {cid} wiped it"
        for args in (("delete", cid), ("state", cid), ("kill", cid, "KILL"), ("pause", cid)):
            line = _one_line_error(runtime.cli(*args))
            assert line.endswith(f"container does not exist: {cid}"), line
    listed = runtime.cli("list", "--format", "json")
    assert listed.rc == 0 and json.loads(listed.out or "[]") == [], listed
    assert sorted(p.name for p in host.iterdir()) == ["precious", "state.json"]
    assert [p.name for p in other.iterdir()] == ["precious"]
    assert (other / "precious").read_text() == "host data"
    cid, bundle = runtime.prepare("true")
    line = _one_line_error(runtime.cli("create", "--bundle", str(bundle), "evil"))
    assert "container with id exists: evil" in line
    assert [p.name for p in other.iterdir()] == ["precious"]


def test_exec_process_file_without_end(runtime: Runtime) -> None:
    """exec --process /dev/zero read until memory ran out."""
    cid, bundle = runtime.prepare("corral-test", "sigwait")
    assert runtime.cli("create", "--bundle", str(bundle), cid).rc == 0
    assert runtime.cli("start", cid).rc == 0
    line = _one_line_error(runtime.cli("exec", "--process", "/dev/zero", cid, timeout=30))
    assert "--process /dev/zero: larger than 64 MiB" in line, line


def test_a_read_only_path_keeps_its_other_flags(runtime: Runtime, tmp_path: Path) -> None:
    """readonlyPaths ["/bin"] (or a symlink to "/" there): read-only, and still executable,
    as runc's readonlyPath remounts with the flags the path had. It was also made noexec,
    nosuid and nodev: "exec(sh): Permission denied"."""
    import shutil

    root = tmp_path / "rootfs"
    shutil.copytree(runtime.rootfs, root, symlinks=True)
    (root / "whole").symlink_to("/")
    cid, bundle = runtime.prepare(
        "/bin/sh", "-c", "touch /bin/x /y 2>/dev/null || echo read-only; /bin/true && echo ran"
    )

    def hostile(spec: dict) -> None:  # type: ignore[type-arg]
        spec["root"] = {"path": str(root), "readonly": False}
        spec["linux"]["readonlyPaths"] = ["/bin", "/whole"]

    _edit(bundle, hostile)
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert (res.rc, res.out.split()) == (0, ["read-only", "ran"]), res
    assert not (root / "bin" / "x").exists() and not (root / "y").exists()


# (name, symlinks planted in a private rootfs {path: target}, config edits, the container's
# script, what it prints). HOST is a host directory with a file in it: /HOST in a target names
# it absolutely, ../../HOST relatively.
_PLANTED = [
    (
        "mount through a relative chain",
        {"x": "a/b", "a": "c", "c/b": "../../../../../../HOST"},
        {"mounts+": {"destination": "/x", "type": "tmpfs", "source": "tmpfs"}},
        "ls /x; grep -c ' /x \\| HOST ' /proc/self/mountinfo",
        ["1"],
    ),
    (
        "masked path to a host directory",
        {"m": "/HOST"},
        {"maskedPaths": ["/m"]},
        "ls /m; echo listed",
        ["listed"],
    ),
    (
        "read-only path to a host directory",
        {"r": "/HOST"},
        {"readonlyPaths": ["/r"]},
        "ls /r; touch /r/new 2>/dev/null || echo read-only",
        ["read-only"],
    ),
    (
        "cwd through a symlink out",
        {"w": "../../../../../../HOST"},
        {"cwd": "/w"},
        "ls; pwd",
        ["HOST"],
    ),
    (
        "device through a symlinked /dev",
        {"dev": "/HOST"},
        {"devices": [{"path": "/dev/rthnull", "type": "c", "major": 1, "minor": 3}]},
        "ls /dev/rthnull",
        ["/dev/rthnull"],
    ),
]


@pytest.mark.parametrize(
    ("planted", "edits", "script", "want"),
    [p[1:] for p in _PLANTED],
    ids=[p[0] for p in _PLANTED],
)
def test_symlinks_planted_in_the_rootfs_resolve_inside_it(
    runtime: Runtime,
    tmp_path: Path,
    planted: dict[str, str],
    edits: dict[str, object],
    script: str,
    want: list[str],
) -> None:
    """Mount destinations, masked and read-only paths, the cwd and device nodes go through
    symlinks as if the rootfs were /: what they name on the host is neither listed,
    written nor mounted over (CVE-2021-30465 class)."""
    import shutil

    from tests.integration.test_security import _mounts

    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "precious").write_text("host data")
    root = tmp_path / "rootfs"
    shutil.copytree(runtime.rootfs, root, symlinks=True)
    for path, target in planted.items():
        link = root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        link.symlink_to(target.replace("HOST", str(host).lstrip("/")))
    before = _mounts(tmp_path)
    cid, bundle = runtime.prepare("sh", "-c", script.replace("HOST", str(host)))

    def hostile(spec: dict) -> None:  # type: ignore[type-arg]
        spec["root"] = {"path": str(root), "readonly": False}
        for key, value in edits.items():
            if key == "mounts+":
                spec["mounts"].append(value)
            elif key == "cwd":
                spec["process"]["cwd"] = value
            else:
                spec["linux"][key] = value

    _edit(bundle, hostile)
    res = runtime.cli("run", "--bundle", str(bundle), cid)
    assert res.rc == 0, res
    assert "precious" not in res.out, res
    assert res.out.split() == [w.replace("HOST", str(host)) for w in want], res
    assert [p.name for p in host.iterdir()] == ["precious"]
    assert (host / "precious").read_text() == "host data"
    assert _mounts(tmp_path) == before


def test_create_with_a_preserve_fds_out_of_range_leaves_nothing(runtime: Runtime) -> None:
    """--preserve-fds 99999999999999999999 was an OverflowError traceback out of the spawn;
    a negative count was taken as none. Nothing is made either way."""
    for n in ("99999999999999999999", "-3", str((1 << 20) + 1)):
        cid, bundle = runtime.prepare("true")
        line = _one_line_error(
            runtime.cli("create", "--preserve-fds", n, "--bundle", str(bundle), cid)
        )
        assert f"create {cid}: preserve-fds: {n} is not a number of fds from 0 to" in line, line
        assert runtime.cli("state", cid).rc != 0


def test_exec_and_kill_flags_out_of_range(runtime: Runtime) -> None:
    """exec --preserve-fds -1 was taken as none, exec --cwd rel failed in the child as
    "chdir(rel)", kill 99999 said "[Errno 22] Invalid argument"."""
    cid, bundle = runtime.prepare("corral-test", "sigwait")
    assert runtime.cli("create", "--bundle", str(bundle), cid).rc == 0
    assert runtime.cli("start", cid).rc == 0
    line = _one_line_error(runtime.cli("exec", "--preserve-fds", "-1", cid, "true"))
    assert "preserve-fds: -1 is not a number of fds" in line, line
    line = _one_line_error(runtime.cli("exec", "--cwd", "rel", cid, "true"))
    assert "--cwd: must be an absolute path, not 'rel'" in line, line
    line = _one_line_error(runtime.cli("kill", cid, "99999"))
    assert line.endswith("signal: unknown signal '99999'"), line
    assert runtime.cli("kill", cid, "0").rc == 0  # still there, and 0 still probes it


def test_exec_cwd_through_a_leaked_fd_stays_inside(runtime: Runtime, tmp_path: Path) -> None:
    """CVE-2024-21626 through exec (runc's `exec -w /proc/self/fd/N`), with a descriptor of a
    host directory the caller leaked to the runtime (a shim's, say): such a cwd is refused or
    lands in the container, never in the host directory. (This held; taking out both the
    child's close_inherited and its getcwd check still left the fd unreachable: the leaked
    descriptor is dropped before the child too.)"""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "precious").write_text("host data")
    cid, bundle = runtime.prepare("corral-test", "sigwait")
    assert runtime.cli("create", "--bundle", str(bundle), cid).rc == 0
    assert runtime.cli("start", cid).rc == 0
    inside = {p.name for p in runtime.rootfs.iterdir()}
    leaked = os.open(host, os.O_RDONLY | os.O_DIRECTORY)  # inheritable once passed
    try:
        for n in sorted({leaked, *range(3, 12)}):
            cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root), "exec",
                   "--cwd", f"/proc/self/fd/{n}", cid, "ls", "-a", "."]  # fmt: skip
            res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL, pass_fds=(leaked,))  # fmt: skip
            listing = set(res.stdout.split()) - {".", ".."}
            assert "Traceback" not in res.stderr, res.stderr
            assert "precious" not in listing, (n, res)
            assert res.returncode != 0 or listing <= inside, (n, res)
    finally:
        os.close(leaked)
