"""Layer unpacking: attributes kept, whiteouts converted, hostile entries refused."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from corral_common.rmtree import rmtree
from images.digest import decompressed
from images.errors import FormatError, UnsafeLayer
from images.unpack import Limits, unpack_layer
from testkit.imagebuild import Entry, compress, sha, sparse_bomb, tar_entries


def unpack(data: bytes, dest: Path, **limits: object) -> str:
    dest.mkdir(exist_ok=True)
    with decompressed(io.BytesIO(data)) as s:  # type: ignore[arg-type]
        return unpack_layer(s, dest, limits=Limits(**limits)).diff_id  # type: ignore[arg-type]


def opaque(path: Path) -> bytes | None:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            return os.getxattr(path, name)
        except OSError:
            continue
    return None


def test_files_dirs_links_and_attributes(tmp_path: Path) -> None:
    layer = tar_entries(
        [
            Entry("etc", "dir", mode=0o751, mtime=1_600_000_000),
            Entry("etc/hosts", data=b"127.0.0.1 x\n", mode=0o640, mtime=1_500_000_000),
            Entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
            Entry("bin", "symlink", linkname="usr/bin"),
            Entry("abs", "symlink", linkname="/etc/hosts"),
            Entry("etc/hosts2", "hardlink", linkname="etc/hosts"),
            Entry("pipe", "fifo", mode=0o600),
            Entry("x", data=b"x", pax={"SCHILY.xattr.user.test": "v1"}),
            Entry("evil-x", data=b"x", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
        ]
    )
    d = tmp_path / "fs"
    assert unpack(layer, d) == sha(layer)
    assert (d / "etc/hosts").read_bytes() == b"127.0.0.1 x\n"
    assert stat.S_IMODE((d / "etc/hosts").stat().st_mode) == 0o640
    assert (d / "etc/hosts").stat().st_mtime == 1_500_000_000
    assert stat.S_IMODE((d / "etc").stat().st_mode) == 0o751
    assert (d / "etc").stat().st_mtime == 1_600_000_000
    assert stat.S_IMODE((d / "usr/bin/tool").stat().st_mode) == 0o4755
    assert os.readlink(d / "bin") == "usr/bin"
    assert os.readlink(d / "abs") == "/etc/hosts"  # kept, resolves inside the container
    assert (d / "etc/hosts2").stat().st_ino == (d / "etc/hosts").stat().st_ino
    assert stat.S_ISFIFO((d / "pipe").lstat().st_mode)
    assert os.getxattr(d / "x", "user.test") == b"v1"
    assert "trusted.overlay.redirect" not in os.listxattr(d / "evil-x")
    if os.geteuid() == 0:
        assert (d / "etc/hosts").stat().st_uid == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="owners other than ours need root")
def test_owners_kept_as_root(tmp_path: Path) -> None:
    d = tmp_path / "fs"
    unpack(tar_entries([Entry("f", uid=1000, gid=2000), Entry("l", "symlink", "", "f", uid=7)]), d)
    assert ((d / "f").stat().st_uid, (d / "f").stat().st_gid) == (1000, 2000)
    assert (d / "l").lstat().st_uid == 7


@pytest.mark.skipif(os.geteuid() != 0, reason="owners other than ours need root")
@pytest.mark.parametrize("setgid", [False, True], ids=["plain-root", "setgid-root"])
def test_owners_of_made_entries_under_a_set_group_id_root(tmp_path: Path, setgid: bool) -> None:
    # An entry is made with our owner and, below a set-group-ID directory, that directory's
    # group: the chown an entry owned by us would not need is needed there.
    d = tmp_path / "fs"
    d.mkdir()
    os.chown(d, 0, 4321)
    if setgid:
        d.chmod(0o2755)
    entries = [
        Entry("dir", "dir"),
        Entry("dir/f", data=b"f"),
        Entry("l", "symlink", linkname="dir/f"),
        Entry("p", "fifo"),
        Entry("other", data=b"o", uid=5, gid=6),
    ]
    unpack(tar_entries(entries), d)
    for name in ("dir", "dir/f", "l", "p"):
        st = (d / name).lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), name
    st = (d / "other").lstat()
    assert (st.st_uid, st.st_gid) == (5, 6)


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_compressions(tmp_path: Path, kind: str) -> None:
    layer = tar_entries([Entry("a", data=b"hello" * 1000)])
    assert unpack(compress(layer, kind), tmp_path / "fs") == sha(layer)
    assert (tmp_path / "fs/a").read_bytes() == b"hello" * 1000


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    layer = tar_entries(
        [
            Entry("dir", "dir"),
            Entry("dir/.wh..wh..opq"),
            Entry("dir/new", data=b"n"),
            Entry(".wh.gone"),
            Entry("sub/.wh.file"),
            Entry(".wh..wh.plnk", "dir"),
        ]
    )
    d = tmp_path / "fs"
    unpack(layer, d)
    st = (d / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert stat.S_ISCHR((d / "sub/file").lstat().st_mode)
    assert opaque(d / "dir") == b"y"
    assert (d / "dir/new").read_bytes() == b"n"
    assert sorted(p.name for p in d.iterdir()) == ["dir", "gone", "sub"]


def test_later_entry_replaces_earlier(tmp_path: Path) -> None:
    layer = tar_entries(
        [
            Entry("a", data=b"1"),
            Entry("a", data=b"2"),
            Entry("d", "dir"),
            Entry("d/f", data=b"x"),
            Entry("d", "symlink", linkname="/etc"),
            # a directory the last walk went through, replaced by a hardlink, then a file
            # and a directory by each other, then one more entry in the first's parent
            Entry("h/sub/f", data=b"f"),
            Entry("h/sub", "hardlink", linkname="a"),
            Entry("h/g", data=b"g"),
            Entry("h/g/", "dir"),
            Entry("h/g/inner", data=b"i"),
            Entry("h/g", data=b"g2"),
            Entry("h/z", data=b"z"),
        ]
    )
    d = tmp_path / "fs"
    unpack(layer, d)
    assert (d / "a").read_bytes() == b"2"
    assert os.readlink(d / "d") == "/etc"
    assert (d / "h/sub").stat().st_ino == (d / "a").stat().st_ino
    assert (d / "h/g").read_bytes() == b"g2" and (d / "h/z").read_bytes() == b"z"


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, float, bytes]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == skip:
                continue
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime, data)
    return out


def hostile(host: Path) -> dict[str, bytes]:
    secret = host / "secret"
    return {
        "dotdot": tar_entries([Entry("../../host/pwned", data=b"x")]),
        "dotdot-inner": tar_entries([Entry("a/../../pwned", data=b"x")]),
        "absolute": tar_entries([Entry(f"{host}/pwned", data=b"x")]),
        "symlink-write-through": tar_entries(
            [Entry("evil", "symlink", linkname=str(host)), Entry("evil/pwned", data=b"x")]
        ),
        "relative-symlink-write-through": tar_entries(
            [
                Entry("evil", "symlink", linkname="../../../../../../.." + str(host)),
                Entry("evil/secret", data=b"overwritten"),
            ]
        ),
        "symlink-dir-then-mkdir-through": tar_entries(
            [Entry("evil", "symlink", linkname=str(host)), Entry("evil/newdir", "dir")]
        ),
        "hardlink-absolute": tar_entries([Entry("link", "hardlink", linkname=str(secret))]),
        "hardlink-dotdot": tar_entries(
            [Entry("link", "hardlink", linkname="../../../../../../.." + str(secret))]
        ),
        "hardlink-through-symlink": tar_entries(
            [
                Entry("evil", "symlink", linkname=str(host)),
                Entry("link", "hardlink", linkname="evil/secret"),
            ]
        ),
        "hardlink-missing": tar_entries([Entry("link", "hardlink", linkname="nothere")]),
        "device": tar_entries([Entry("sda", "blk", devmajor=8, devminor=0, mode=0o666)]),
        "chardev": tar_entries([Entry("mem", "chr", devmajor=1, devminor=1, mode=0o666)]),
        "whiteout-dotdot": tar_entries([Entry("a/.wh..."), Entry("x")]),
        "sparse-bomb": sparse_bomb("big", 1 << 40),
        "truncated": tar_entries([Entry("f", data=b"y" * 100_000)])[:50_000],
        "truncated-gzip": compress(tar_entries([Entry("f", data=os.urandom(100_000))]), "gzip")[
            :40_000
        ],
        "truncated-zstd": compress(tar_entries([Entry("f", data=os.urandom(100_000))]), "zstd")[
            :40_000
        ],
        "corrupt-deflate": _flip(compress(tar_entries([Entry("f", data=b"ab" * 50_000)]), "gzip")),
        "garbage": b"this is not a tar archive at all" * 40,
    }


def _flip(gz: bytes) -> bytes:
    """A gzip stream with a byte of its deflate data changed (an invalid block, not a
    truncation: the inflater itself refuses it)."""
    i = 10 + 2  # past the 10-byte header, into the first block's code lengths
    return gz[:i] + bytes([gz[i] ^ 0xFF]) + gz[i + 1 :]


def test_hostile_corpus_refused_and_host_untouched(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_bytes(b"s3cret")
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(tmp_path, work)
    errors = {}
    for name, data in hostile(host).items():
        with pytest.raises((UnsafeLayer, FormatError)) as ei:
            unpack(data, work / name, max_bytes=1 << 30)
        errors[name] = str(ei.value)
    assert snapshot(tmp_path, work) == before
    assert "'..'" in errors["dotdot"] and "absolute path" in errors["absolute"]
    assert "parent evil is a symlink" in errors["symlink-write-through"]
    assert "parent evil is a symlink" in errors["symlink-dir-then-mkdir-through"]
    assert "absolute" in errors["hardlink-absolute"]
    assert "'..'" in errors["hardlink-dotdot"]
    assert "symlink" in errors["hardlink-through-symlink"]
    assert "not in this layer" in errors["hardlink-missing"]
    assert "device" in errors["device"] and "device" in errors["chardev"]
    assert "passes the layer limit" in errors["sparse-bomb"]
    assert "truncated or corrupt" in errors["truncated"]
    assert "corrupt" in errors["truncated-gzip"] and "corrupt" in errors["truncated-zstd"]
    assert "corrupt" in errors["corrupt-deflate"]
    for e in errors.values():
        assert e.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_devices_only_when_allowed_as_root(tmp_path: Path) -> None:
    d = tmp_path / "fs"
    unpack(
        tar_entries([Entry("null", "chr", devmajor=1, devminor=3, mode=0o666)]),
        d,
        allow_devices=True,
    )
    assert (d / "null").lstat().st_rdev == os.makedev(1, 3)


def test_entry_limit(tmp_path: Path) -> None:
    layer = tar_entries([Entry(f"f{i}") for i in range(20)])
    with pytest.raises(UnsafeLayer, match="more than 10 entries"):
        unpack(layer, tmp_path / "fs", max_entries=10)


def test_gzip_bomb_capped(tmp_path: Path) -> None:
    # 64 MiB of zeros after the end-of-archive: never written, and the stream cap stops it.
    layer = tar_entries([Entry("a", data=b"a")]) + b"\0" * (64 << 20)
    with pytest.raises(FormatError, match="longer than"):
        unpack(compress(layer, "gzip"), tmp_path / "fs", max_bytes=1 << 20, max_entries=10)


def test_a_symlink_planted_after_the_old_entry_went_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink that appears between removing what was there (an earlier entry of the same
    name) and creating the file (a race) is refused: the file is created with O_EXCL |
    O_NOFOLLOW, never through it."""
    from images import unpack as mod

    outside = tmp_path / "outside"
    outside.write_bytes(b"host data")
    real_remove = mod._remove

    def racing_remove(st: Any, pfd: int, where: Any, name: str, keep_dir: bool = False) -> bool:
        kept = real_remove(st, pfd, where, name, keep_dir)
        if name == "victim":
            os.symlink(str(outside), name, dir_fd=pfd)
        return kept

    monkeypatch.setattr(mod, "_remove", racing_remove)
    with pytest.raises((OSError, UnsafeLayer)):
        unpack(
            tar_entries([Entry("victim", data=b"first"), Entry("victim", data=b"evil")]),
            tmp_path / "root",
        )
    assert outside.read_bytes() == b"host data"


@pytest.mark.parametrize(
    "replace",
    [Entry("a/b", "symlink", linkname="/tmp"), Entry("a/.wh.b"), Entry("a/b", data=b"file")],
    ids=["symlink", "whiteout", "file"],
)
@pytest.mark.parametrize("elsewhere", [False, True], ids=["next", "after-another-directory"])
def test_a_directory_replaced_by_a_later_entry_is_not_written_through(
    tmp_path: Path, replace: Entry, elsewhere: bool
) -> None:
    # Entries reuse the fds of earlier walks (not only the last one); once an entry removes
    # a directory, the next one below its name walks again (and meets what replaced it).
    outside = tmp_path / "outside"
    outside.mkdir()
    replace = Entry(replace.name, replace.kind, replace.data, str(outside) * bool(replace.linkname))
    between = [Entry("x/y", data=b"y")] if elsewhere else []
    entries = [Entry("a/b/c", "dir"), Entry("a/b/c/one", data=b"1"), *between, replace]
    with pytest.raises(UnsafeLayer, match="a/b"):
        unpack(tar_entries([*entries, Entry("a/b/c/two", data=b"2")]), tmp_path / "root")
    assert not list(outside.iterdir())


def test_entries_of_one_directory_are_unpacked_in_it_whatever_the_order(tmp_path: Path) -> None:
    names = ["a/b/c/f1", "a/b/g", "a/b/c/f2", "a/x/f3", "a/b/c/d/f4", "top"]
    unpack(tar_entries([Entry(n, data=n.encode()) for n in names]), tmp_path / "root")
    for n in names:
        assert (tmp_path / "root" / n).read_bytes() == n.encode()


def _pax_tar(name: str, **pax: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.pax_headers = pax
        tf.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_pax_tar("a/" * 2100 + "f"), "path of 4096 bytes or more"),
        (_pax_tar("x" * 256), "a name longer than 255 bytes"),
        (_pax_tar("m", mtime="-1e30"), "mtime -1e+30 is out of range"),
        (_pax_tar("m", mtime="nan"), "mtime nan is out of range"),
        (_pax_tar("u", uid=str(2**64)), f"uid {2**64} is not a user or group id"),
        (_pax_tar("u", uid="4294967295"), "uid 4294967295 is not a user or group id"),
        (_pax_tar("g", gid="-5"), "gid -5 is not a user or group id"),
        (_pax_tar("x", **{"SCHILY.xattr.user." + "a" * 300: "v"}), "xattr user.aaa"),
    ],
    ids=["long-path", "long-name", "mtime", "mtime-nan", "uid-64", "uid-minus-1", "gid", "xattr"],
)
def test_entries_the_kernel_cannot_take_are_refused_by_name(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    """Each was an OverflowError, OSError or RecursionError out of the unpack (a traceback
    from `corral image import`); now an UnsafeLayer naming the entry and why."""
    with pytest.raises(UnsafeLayer) as ei:
        unpack(data, tmp_path / "fs")
    assert reason in str(ei.value)
    assert len(str(ei.value)) < 300


def test_a_deep_directory_replaced_in_its_layer_and_the_tree_removed(tmp_path: Path) -> None:
    """A layer's tree is as deep as its author likes (2000 levels fit in PATH_MAX): replacing
    it by a later entry, and removing the unpacked layer, recursed once per level in
    shutil.rmtree (RecursionError, even with ignore_errors)."""
    deep = "d/" * 2000
    d = tmp_path / "fs"
    unpack(tar_entries([Entry(deep + "f", data=b"x"), Entry("d", data=b"now a file")]), d)
    assert (d / "d").read_bytes() == b"now a file"
    unpack(tar_entries([Entry(deep + "f", data=b"x")]), tmp_path / "fs2")
    rmtree(tmp_path / "fs2")
    assert not (tmp_path / "fs2").exists()
