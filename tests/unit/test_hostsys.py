"""corral_common.hostsys without root: the mountinfo reader, the atomic write, the errors,
prctl through python-prctl."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from corral_common import hostsys

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "41 22 0:50 /a\\040b /var/lib/c\\040d/merged rw shared:7 master:3 - overlay overlay rw,x\n"
    "42 22 0:51 / /tab\\011nl\\012bs\\134 rw - tmpfs my\\040tmp rw\n"
    "garbage line\n"
    "43 22 0:52 / /no-super rw - proc proc\n"
)


def test_parse_mountinfo_decodes_escapes_into_typed_records() -> None:
    root, ovl, tab, proc = hostsys.parse_mountinfo(MOUNTINFO)
    assert root == hostsys.MountInfo(
        22, 1, "8:1", "/", "/", "rw,relatime", ("shared:1",), "ext4", "/dev/sda1", "rw"
    )
    assert (ovl.root, ovl.mountpoint) == ("/a b", "/var/lib/c d/merged")
    assert ovl.optional == ("shared:7", "master:3") and ovl.shared
    assert ovl.fstype == "overlay" and ovl.super_options == "rw,x"
    assert tab.mountpoint == "/tab\tnl\nbs\\" and tab.source == "my tmp" and not tab.shared
    assert proc.super_options == ""


def test_unescape_leaves_what_is_not_an_octal_escape() -> None:
    assert hostsys.unescape("a\\040b\\9xy\\") == "a b\\9xy\\"


def test_mountinfo_of_this_process_holds_root() -> None:
    assert "/" in {m.mountpoint for m in hostsys.mountinfo()}


def test_escape_is_the_inverse_of_unescape() -> None:
    path = "/a b\tc\nd\\e/f"
    assert hostsys.escape(path) == "/a\\040b\\011c\\012d\\134e/f"
    assert hostsys.unescape(hostsys.escape(path)) == path
    assert hostsys.escape("/plain") == "/plain"


def test_mountinfo_parses_only_the_lines_asked_for() -> None:
    everything = hostsys.mountinfo()
    procs = hostsys.mountinfo(contains=" - proc ")
    assert procs and {m.fstype for m in procs} == {"proc"}
    assert [m for m in everything if m.fstype == "proc"] == procs


def test_mounts_under_deepest_first() -> None:
    mounts = hostsys.parse_mountinfo(
        "1 0 0:1 / /p rw - tmpfs t rw\n"
        "2 1 0:2 / /p/a/b rw - tmpfs t rw\n"
        "3 1 0:3 / /p/aa rw - tmpfs t rw\n"
        "4 1 0:4 / /pp rw - tmpfs t rw\n"
        "5 1 0:5 / /p/a/b rw - tmpfs t rw\n"
    )
    assert hostsys.mounts_under("/p/", mounts) == ["/p/a/b", "/p/aa", "/p"]


def test_write_atomic_str_bytes_mode_and_no_temp_left(tmp_path: Path) -> None:
    p = tmp_path / "f"
    old = os.umask(0o077)
    try:
        hostsys.write_atomic(p, "text", 0o644)
    finally:
        os.umask(old)
    assert p.read_text() == "text" and p.stat().st_mode & 0o777 == 0o644  # not the umask's
    hostsys.write_atomic(str(p), b"bytes")
    assert p.read_bytes() == b"bytes" and p.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_write_atomic_fsyncs_file_and_directory_unless_not_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    hostsys.write_atomic(tmp_path / "f", "one")
    assert synced == [False, True]  # the file, then its directory
    synced.clear()
    hostsys.write_atomic(tmp_path / "f", "two", durable=False)
    assert synced == [] and (tmp_path / "f").read_text() == "two"
    assert os.listdir(tmp_path) == ["f"]


def test_write_atomic_failure_names_the_step_and_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    (tmp_path / "d").mkdir()
    with pytest.raises(hostsys.HostError) as info:
        hostsys.write_atomic(tmp_path / "d", "x")  # rename over a directory
    assert info.value.step == f"write {tmp_path / 'd'}" and info.value.errno == errno.EISDIR
    assert sorted(os.listdir(tmp_path)) == ["d", "f"] and p.read_text() == "old"
    with pytest.raises(FileNotFoundError, match=r"write .*/nodir/f: No such file"):
        hostsys.write_atomic(tmp_path / "nodir" / "f", "x")


def test_host_error_is_of_the_errno_class_and_pickles() -> None:
    e = hostsys.HostError("openat2(x)", errno.EXDEV, "x")
    assert str(e) == "openat2(x): Invalid cross-device link" and e.path == "x"
    e = hostsys.HostError("statfs /x", errno.ENOENT, "/x")
    assert isinstance(e, FileNotFoundError) and isinstance(e, hostsys.HostError)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and (back.step, back.path, str(back)) == (e.step, "/x", str(e))


def test_syscall_errors_name_step_and_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^statfs /nonexistent/x: No such file"):
        hostsys.statfs_type("/nonexistent/x")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        (tmp_path / "out").symlink_to("/etc")
        with pytest.raises(hostsys.HostError) as info:
            hostsys.open_beneath(fd, "out/passwd")
        assert info.value.errno == errno.EXDEV and info.value.step == "openat2(out/passwd)"
    finally:
        os.close(fd)


def test_open_beneath_retries_eagain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """openat2 answers EAGAIN when a rename or mount raced the walk: tried again, not failed;
    an EAGAIN that never stops is an error naming the step."""
    import ctypes

    real = hostsys._c()
    fails = {"left": 3}

    class Racing:
        def syscall(self, *args: object) -> int:
            if fails["left"] > 0:
                fails["left"] -= 1
                ctypes.set_errno(errno.EAGAIN)
                return -1
            return int(real.syscall(*args))

    monkeypatch.setattr(hostsys, "_c", lambda: Racing())
    (tmp_path / "f").write_text("x")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        os.close(hostsys.open_beneath(fd, "f"))
        assert fails["left"] == 0
        fails["left"] = 10**6
        with pytest.raises(hostsys.HostError) as info:
            hostsys.open_beneath(fd, "f")
        assert info.value.errno == errno.EAGAIN and info.value.step == "openat2(f)"
    finally:
        os.close(fd)


def test_prctl_through_python_prctl() -> None:
    code = (
        "from corral_common import hostsys\nimport prctl\n"
        "hostsys.set_name('corral-tst')\nhostsys.set_dumpable(False)\n"
        "hostsys.set_pdeathsig(9)\nhostsys.set_child_subreaper()\n"
        "print(open('/proc/self/comm').read().strip(), prctl.get_dumpable(),"
        " prctl.get_pdeathsig(), prctl.get_child_subreaper())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["corral-tst", "False", "9", "1"]


def test_importing_hostsys_loads_neither_ctypes_nor_prctl() -> None:
    code = (
        "import sys, corral_common.hostsys\nprint('ctypes' in sys.modules, 'prctl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lifecycle_commands_do_not_import_hostsys() -> None:
    # start, state, kill, delete write nothing and detect nothing: they pay for no import
    code = "import sys, runtime.cli.oci, runtime.container\n"
    code += "print('corral_common.hostsys' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_cgroup_layout_magic_numbers_are_hostsys_ones() -> None:
    from runtime.cgroups import layout

    assert (layout.CGROUP2_SUPER_MAGIC, layout.CGROUP_SUPER_MAGIC, layout.TMPFS_MAGIC) == (
        hostsys.CGROUP2_SUPER_MAGIC,
        hostsys.CGROUP_SUPER_MAGIC,
        hostsys.TMPFS_MAGIC,
    )


def test_mountinfo_is_the_record_its_typed_declaration_says() -> None:
    # Type checkers read the NamedTuple under TYPE_CHECKING; the run time builds a namedtuple
    # (no typing import): their fields must be the same, in the same order.
    import ast

    tree = ast.parse(Path(hostsys.__file__).read_text())
    typed = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.name == "MountInfo"
        and any(isinstance(b, ast.Name) and b.id == "NamedTuple" for b in node.bases)
    )
    fields = [s.target.id for s in typed.body if isinstance(s, ast.AnnAssign)]  # type: ignore[union-attr]
    assert tuple(fields) == hostsys.MountInfo._fields
    m = hostsys.parse_mountinfo("36 35 98:0 /mnt1 /mnt2 rw,noatime shared:1 - ext3 /dev/root rw\n")
    assert (m[0].mountpoint, m[0].shared, m[0].super_options) == ("/mnt2", True, "rw")


def test_open_no_magiclinks_follows_symlinks_not_magic_links(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fd = hostsys.open_no_magiclinks(str(tmp_path / "link"))
    try:
        assert os.fstat(fd).st_ino == os.stat(tmp_path / "real").st_ino
    finally:
        os.close(fd)
    for magic in ("/proc/self/exe", "/proc/self/fd/0", "/dev/stdin", "/proc/self/root/etc"):
        with pytest.raises(OSError) as info:
            hostsys.open_no_magiclinks(magic)
        assert info.value.errno == errno.ELOOP, magic


def test_umount_all_reads_mountinfo_until_nothing_is_left_and_no_more(tmp_path: Path) -> None:
    from testkit.fakehost import RecordingHost

    class Counting(RecordingHost):
        reads = 0

        def mountinfo(
            self, pid: int | str = "self", contains: str | None = None
        ) -> list[hostsys.MountInfo]:
            self.reads += 1
            return super().mountinfo(pid, contains)

    h = Counting()
    top = tmp_path / "pod"
    with hostsys.using(h):
        hostsys.umount_all(top)  # nothing there: one look
        assert h.reads == 1
        for target in (top / "a", top / "a", top / "b/c"):  # a stacked twice
            h.mount("tmpfs", target, "tmpfs")
        h.reads = 0
        hostsys.umount_all(top)
        assert h.mounted() == [] and h.reads == 3  # two rounds of umounts, then nothing left
