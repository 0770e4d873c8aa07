"""The content store: import of the three formats, verification, sharing, rm/prune/save."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from images.errors import DigestMismatch, FormatError, InUse, NotFound, UnsafeLayer
from images.sources import open_source, read_images
from images.store import Store, normalize_name
from testkit.imagebuild import (
    Entry,
    config_for,
    docker_files,
    oci_files,
    sha,
    tar_entries,
    write_dir,
    write_tar,
)

BASE = tar_entries(
    [Entry("etc", "dir"), Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
     Entry("bin", "dir"), Entry("bin/sh", data=b"#!fake\n", mode=0o755)]
)  # fmt: skip
TOP = tar_entries([Entry("app", "dir"), Entry("app/run", data=b"run\n", mode=0o755)])
OTHER = tar_entries([Entry("other", data=b"o")])


def files_of(store: Store) -> dict[str, int]:
    out = {}
    for dirpath, _, filenames in os.walk(store.root):
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(store.root))] = p.lstat().st_ino
    return out


def content(store: Store) -> set[str]:
    """Store content (blobs, layers, records) without lock files."""
    return {k for k in files_of(store) if not k.endswith(".lock")}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("form", ["oci-dir", "oci-archive", "docker-archive", "docker-dir"])
def test_import_formats(store: Store, tmp_path: Path, form: str, compression: str) -> None:
    if form.startswith("oci"):
        files, built = oci_files([BASE, TOP], ref_name="example.com/app:1", compression=compression)
    else:
        files, built = docker_files([BASE, TOP], repo_tags=["example.com/app:1"],
                                    compression=compression)  # fmt: skip
    src = tmp_path / "src"
    src = write_dir(src, files) if form.endswith("dir") else write_tar(src, files)
    (img,) = store.import_path(src)
    assert img.id == built.config_digest
    assert img.names == ("example.com/app:1",)
    assert [lr.diff_id for lr in img.layers] == built.diff_ids
    assert [lr.digest for lr in img.layers] == built.layer_digests
    assert store.get("example.com/app:1") == img
    assert store.get(img.short_id) == img
    dirs = store.layer_dirs(img)
    assert (dirs[0] / "app/run").read_bytes() == b"run\n"  # topmost first
    assert (dirs[1] / "etc/passwd").exists()
    assert img.size == len(BASE) + len(TOP)
    for lr in img.layers:
        assert store.has_blob(lr.digest)
    assert store.config(img)["rootfs"]["diff_ids"] == built.diff_ids
    assert not list(store.tmp.iterdir())


def test_name_override_and_normalisation(store: Store, tmp_path: Path) -> None:
    files, _ = oci_files([BASE], ref_name="x")
    (img,) = store.import_path(write_dir(tmp_path / "src", files), name="mine")
    assert img.names == ("mine:latest",)
    assert store.get("mine") == img
    assert normalize_name("localhost:5000/a") == "localhost:5000/a:latest"
    assert normalize_name("a@sha256:" + "0" * 64) == "a@sha256:" + "0" * 64
    # the name moves to the newest image carrying it
    files2, _ = oci_files([OTHER], ref_name="x")
    (img2,) = store.import_path(write_dir(tmp_path / "src2", files2), name="mine")
    assert store.get("mine") == img2
    assert [i.names for i in store.images() if i.id == img.id] == [()]


def test_layers_shared_and_reimport_writes_nothing(store: Store, tmp_path: Path) -> None:
    files_a, a = oci_files([BASE, TOP], ref_name="a")
    files_b, b = docker_files([BASE, OTHER], repo_tags=["b:1"])  # same base, uncompressed
    (img,) = store.import_path(write_dir(tmp_path / "a", files_a))
    before = files_of(store)
    record = store.images_dir / f"{img.id.split(':')[1]}.json"
    st = record.stat()
    (again,) = store.import_path(write_tar(tmp_path / "a.tar", files_a))  # same image again
    assert files_of(store).keys() == before.keys()
    for k in before:
        if k.startswith(("blobs", "layers")):
            assert files_of(store)[k] == before[k], f"{k} was rewritten"
    assert again == img  # its record too: nothing changed, nothing written
    assert (record.stat().st_ino, record.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    (named,) = store.import_path(write_tar(tmp_path / "a.tar", files_a), name="a:2")
    assert named.names[0] == normalize_name("a:2") and record.stat().st_ino != st.st_ino
    store.import_path(write_tar(tmp_path / "b.tar", files_b))
    layer_dirs = sorted(p.name for p in store.layers.iterdir())
    assert len(layer_dirs) == 3  # BASE unpacked once for both images
    assert (store.layers / a.diff_ids[0].split(":")[1] / "fs/etc/passwd").is_file()
    assert b.diff_ids[0] == a.diff_ids[0]


def test_digest_mismatch_names_blob_and_keeps_nothing(store: Store, tmp_path: Path) -> None:
    files, built = oci_files([BASE, TOP], ref_name="bad")
    victim = "blobs/sha256/" + built.layer_digests[1].split(":")[1]
    files[victim] = files[victim][:-1] + bytes([files[victim][-1] ^ 1])
    with pytest.raises(DigestMismatch) as ei:
        store.import_path(write_dir(tmp_path / "src", files))
    assert victim in str(ei.value)
    assert content(store) == set() and store.images() == []


def test_diff_id_mismatch(store: Store, tmp_path: Path) -> None:
    cfg = config_for([BASE])
    cfg["rootfs"]["diff_ids"] = [sha(b"something else")]
    files, _ = docker_files([BASE], cfg, repo_tags=["x:1"], compression="gzip")
    with pytest.raises(DigestMismatch, match="uncompressed"):
        store.import_path(write_tar(tmp_path / "src.tar", files))
    assert content(store) == set()


def test_config_digest_checked_in_docker_archive(store: Store, tmp_path: Path) -> None:
    files, built = docker_files([BASE], repo_tags=["x:1"])
    name = built.config_digest.split(":")[1] + ".json"
    files[name] = files[name].replace(b'"os"', b'"OS"')
    with pytest.raises(DigestMismatch, match=name):
        store.import_path(write_tar(tmp_path / "src.tar", files))


def test_hostile_layer_keeps_nothing(store: Store, tmp_path: Path) -> None:
    evil = tar_entries([Entry("e", "symlink", linkname="/"), Entry("e/pwned", data=b"x")])
    files, _ = oci_files([BASE, evil], ref_name="evil")
    with pytest.raises(UnsafeLayer, match="parent e is a symlink"):
        store.import_path(write_dir(tmp_path / "src", files))
    assert content(store) == set()
    assert not Path("/pwned").exists()


def test_truncated_and_garbage_archives(store: Store, tmp_path: Path) -> None:
    files, _ = docker_files([BASE, TOP], repo_tags=["x:1"])
    full = write_tar(tmp_path / "full.tar", files).read_bytes()
    (tmp_path / "cut.tar").write_bytes(full[: len(full) // 2])
    with pytest.raises(FormatError):
        store.import_path(tmp_path / "cut.tar")
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    with pytest.raises(FormatError):
        store.import_path(tmp_path / "junk")
    with pytest.raises(NotFound):
        store.import_path(tmp_path / "missing")
    assert content(store) == set()


def test_concurrent_imports(store: Store, tmp_path: Path) -> None:
    srcs = []
    for i in range(6):
        files, _ = oci_files([BASE, TOP if i % 2 else OTHER], ref_name=f"c{i}")
        srcs.append(write_dir(tmp_path / f"s{i}", files))
    errors: list[BaseException] = []

    def run(p: Path) -> None:
        try:
            Store(store.root).import_path(p)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p,)) for p in srcs + srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(n for i in store.images() for n in i.names) == [f"c{i}:latest" for i in range(6)]
    assert len(list(store.layers.iterdir())) == 3
    assert not list(store.tmp.iterdir())


def test_rm_refs_force_and_prune(store: Store, tmp_path: Path) -> None:
    fa, _ = oci_files([BASE, TOP], ref_name="a")
    fb, _ = oci_files([BASE, OTHER], ref_name="b")
    (a,) = store.import_path(write_dir(tmp_path / "a", fa))
    (b,) = store.import_path(write_dir(tmp_path / "b", fb))
    store.add_ref(a, "ctr1")
    with pytest.raises(InUse, match="ctr1"):
        store.remove("a")
    store.remove("a", force=True)  # untagged, kept while used
    with pytest.raises(NotFound):
        store.get("a")
    assert store.prune().images == []
    assert all(d.is_dir() for d in store.layer_dirs(a))
    store.remove_ref(a, "ctr1")
    res = store.prune()
    assert res.images == [a.id]
    assert len(res.layers) == 1  # TOP; BASE is still used by b
    store.remove("b")
    assert content(store) == set()


def test_save_round_trip(store: Store, tmp_path: Path) -> None:
    files, built = oci_files([BASE, TOP], ref_name="rt:1", compression="zstd")
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    for fmt in ("docker-archive", "oci-archive"):
        out = tmp_path / f"out-{fmt}.tar"
        store.save("rt:1", out, fmt)
        with open_source(out) as (kind, reader):
            assert kind == fmt
            (src,) = read_images(kind, reader)
        assert src.config_digest == img.id and src.names == ["rt:1"]
        other = Store(tmp_path / f"store-{fmt}")
        (img2,) = other.import_path(out)
        assert img2.id == img.id
        assert [lr.diff_id for lr in img2.layers] == built.diff_ids
    with tarfile.open(tmp_path / "out-oci-archive.tar") as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["digest"] == built.manifest_digest  # original manifest kept
    with pytest.raises(FormatError):
        store.save("rt:1", tmp_path / "x", "tgz")


def test_rm_by_one_of_several_names_untags(store: Store, tmp_path: Path) -> None:
    files, _ = oci_files([BASE], ref_name="one:1")
    src = write_dir(tmp_path / "src", files)
    (img,) = store.import_path(src)
    store.import_path(src, name="two")
    store.remove("one:1")
    assert store.get("two").id == img.id and store.get("two").names == ("two:latest",)
    store.remove(img.short_id)
    assert store.images() == [] and content(store) == set()


def test_layers_are_unpacked_at_once_and_a_repeated_one_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two layers unpacked one after the other would leave the barrier waiting for the second:
    # it breaks (after its timeout) and the import fails.
    from images import store as store_mod

    barrier = threading.Barrier(2, timeout=30)
    unpacked: list[str] = []
    real = store_mod.unpack_layer

    def unpack_layer(stream: object, dest: Path, **kw: object) -> object:
        unpacked.append(dest.parent.name[1:13])  # .<12 hex>-<random>: renamed when whole
        barrier.wait()
        return real(stream, dest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod, "unpack_layer", unpack_layer)
    files, built = oci_files([BASE, TOP, BASE], ref_name="twice")
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    assert sorted(unpacked) == sorted(d.split(":")[1][:12] for d in built.diff_ids[:2])
    assert [r.diff_id for r in img.layers] == built.diff_ids
    assert (store.layers / built.diff_ids[1].split(":")[1] / "fs/app/run").is_file()


def _tar_with_links(dest: Path, files: dict[str, bytes], links: dict[str, str]) -> Path:
    """A plain tar of ``files`` plus ``links`` (name -> target) as symlinks, the way docker
    25's ``docker save`` points <id>/layer.tar at blobs/sha256/<hex>."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, target in sorted(links.items()):
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
    return dest


def test_plain_archive_members_are_read_independently(tmp_path: Path) -> None:
    from images.sources import TarReader

    files = {"blobs/sha256/" + "a" * 64: b"0123456789", "other": b"xyz"}
    links = {"l1/layer.tar": "../blobs/sha256/" + "a" * 64}
    plain = _tar_with_links(tmp_path / "p.tar", files, links)
    r = TarReader(plain)
    try:
        assert r.independent("l1/layer.tar") and r.independent("other")
        a, b = r.open("l1/layer.tar"), r.open("other")  # two at once, interleaved
        assert a.read(4) == b"0123" and b.read() == b"xyz" and a.read() == b"456789"
        a.seek(2)
        assert a.read(3) == b"234"
    finally:
        r.close()
    gz = tmp_path / "p.tar.gz"
    with tarfile.open(gz, "w:gz") as tf:
        tf.add(plain, "inner")
    r = TarReader(gz)
    try:
        assert not r.independent("inner")  # one compressed stream: read in turn
    finally:
        r.close()


def test_docker_archive_with_symlinked_layers(store: Store, tmp_path: Path) -> None:
    files, built = docker_files([BASE, TOP], repo_tags=["sl:1"])
    links = {}
    for name in [n for n in files if n.endswith("/layer.tar")]:
        data = files.pop(name)
        blob = "blobs/sha256/" + sha(data).split(":")[1]
        files[blob] = data
        links[name] = "../" + blob
    (img,) = store.import_path(_tar_with_links(tmp_path / "src.tar", files, links))
    assert [lr.diff_id for lr in img.layers] == built.diff_ids
    assert (store.layer_dirs(img)[0] / "app/run").read_bytes() == b"run\n"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_compressed_docker_archive(store: Store, tmp_path: Path, compression: str) -> None:
    # A .tar.gz archive is one stream: its layers are copied in turn, then unpacked.
    files, built = docker_files([BASE, TOP], repo_tags=["gz:1"], compression=compression)
    plain = write_tar(tmp_path / "src.tar", files)
    with tarfile.open(tmp_path / "src.tar.gz", "w:gz") as out, tarfile.open(plain) as inp:
        for m in inp.getmembers():
            out.addfile(m, inp.extractfile(m))
    (img,) = store.import_path(tmp_path / "src.tar.gz")
    assert [lr.digest for lr in img.layers] == built.layer_digests
    assert (store.layer_dirs(img)[1] / "etc/passwd").exists()


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_corrupt_layer_of_a_plain_archive_keeps_nothing(
    store: Store, tmp_path: Path, compression: str
) -> None:
    files, _ = docker_files([BASE, TOP], repo_tags=["bad:1"], compression=compression)
    victim = sorted(n for n in files if n.endswith("/layer.tar"))[0]
    data = files[victim]
    files[victim] = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    with pytest.raises((DigestMismatch, FormatError)) as ei:
        store.import_path(write_tar(tmp_path / "src.tar", files))
    assert victim in str(ei.value)
    assert content(store) == set() and store.images() == []
    assert not list(store.tmp.iterdir())


def test_what_a_record_names_is_synced_before_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One syncfs of the staged files while none is published yet, the directories the
    # renames publish them into fsync'd, then the record; a re-import stages nothing and
    # syncs nothing.
    from corral_common import hostsys

    events: list[str] = []
    real_syncfs, real_fsync_dir = hostsys.syncfs, hostsys.fsync_dir

    def syncfs(path: str) -> None:
        events.append(f"syncfs, published: {sorted(p.name for p in store.blobs.iterdir())}")
        real_syncfs(path)

    def fsync_dir(path: str) -> None:
        events.append(f"fsync {Path(path).relative_to(store.root)}, {len(store.images())} images")
        real_fsync_dir(path)

    monkeypatch.setattr(hostsys, "syncfs", syncfs)
    monkeypatch.setattr(hostsys, "fsync_dir", fsync_dir)
    files, _ = docker_files([BASE, TOP], repo_tags=["sync:1"])
    src = write_tar(tmp_path / "src.tar", files)
    store.import_path(src)
    assert events[:3] == [
        "syncfs, published: []",
        "fsync blobs/sha256, 0 images",
        "fsync layers/sha256, 0 images",
    ]
    events.clear()
    store.import_path(src)
    assert not [e for e in events if e.startswith(("syncfs", "fsync blobs", "fsync layers"))]


def _inode_flags(path: Path) -> int:
    import array
    import fcntl

    from images import store as store_mod

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, store_mod._FS_IOC_GETFLAGS, flags, True)
        return flags[0]
    finally:
        os.close(fd)


def test_staged_layer_trees_each_start_a_directory_hierarchy(store: Store, tmp_path: Path) -> None:
    # ext4 puts each layer tree in a block group of its own choosing (the parent of the
    # staged trees is a top directory, chattr +T), not in the store's group, where the files
    # of removed images were just deleted.
    from images.store import _FS_TOPDIR_FL, mark_topdir

    probe = tmp_path / "probe"
    probe.mkdir()
    mark_topdir(probe)
    try:
        if not _inode_flags(probe) & _FS_TOPDIR_FL:
            pytest.skip(f"{tmp_path}: the filesystem has no top-directory flag")
    except OSError as e:
        pytest.skip(f"{tmp_path}: no inode flags ({e})")
    seen: set[int] = set()
    trees: list[tuple[str, bool]] = []

    def progress(_: object) -> None:
        for d in store.tmp.glob("import-*/layers"):
            seen.add(_inode_flags(d) & _FS_TOPDIR_FL)
            trees.extend((t.name, (t / "meta.json").exists()) for t in d.iterdir())

    files, built = oci_files([BASE, TOP], ref_name="topdir")
    store.import_path(write_dir(tmp_path / "src", files), progress=progress)
    assert seen == {_FS_TOPDIR_FL}
    # A tree is made under a random name (ext4 hashes it to pick where to look for a block
    # group) and takes its layer's name once whole.
    hexes = {d.split(":")[1] for d in built.diff_ids}
    assert {n for n, _ in trees if n.startswith(".")}, trees
    assert all(whole for n, whole in trees if n in hexes), trees
    assert not _inode_flags(store.layers) & _FS_TOPDIR_FL  # published trees keep their place


def test_a_stored_layer_is_hashed_not_copied_again(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gzip layer of a docker archive names no digest: re-imported, it is read and hashed
    # once, and copied only when no blob of that digest is stored.
    from images import store as store_mod

    copies: list[str] = []
    real = store_mod.Store._copy_blob

    def copy_blob(self: Store, reader: object, layer: object, *rest: object) -> Path:
        copies.append(layer.path)  # type: ignore[attr-defined]
        return real(self, reader, layer, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod.Store, "_copy_blob", copy_blob)
    plain, _ = docker_files([BASE, TOP], repo_tags=["p:1"])
    gz, built = docker_files([BASE, TOP], repo_tags=["gz:1"], compression="gzip")
    store.import_path(write_tar(tmp_path / "plain.tar", plain))
    # The layers are stored, their gzip blobs are not: hashed, then copied.
    (img,) = store.import_path(write_tar(tmp_path / "gz.tar", gz))
    assert len(copies) == 2
    assert [lr.digest for lr in img.layers] == built.layer_digests
    assert all(store.has_blob(d) for d in built.layer_digests)
    copies.clear()
    before = files_of(store)
    (again,) = store.import_path(write_tar(tmp_path / "gz2.tar", gz))
    assert copies == [] and again.layers == img.layers
    assert {k: v for k, v in files_of(store).items() if not k.startswith("images")} == {
        k: v for k, v in before.items() if not k.startswith("images")
    }


def test_opening_a_made_store_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store opened again (the kubelet opens one per pod) makes no directory; one missing
    its last directory, or whose root is not private, is made whole again."""
    root = tmp_path / "images"
    Store(root)
    made: list[str] = []
    real = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: (made.append(str(p)), real(p, *a, **k))[1])
    Store(root)
    assert made == []
    os.rmdir(root / "tmp")
    os.chmod(root, 0o755)
    Store(root)
    assert str(root / "tmp") in made
    assert (root / "tmp").is_dir() and os.stat(root).st_mode & 0o777 == 0o700


def test_a_layer_deeper_than_the_recursion_limit_is_removed(store: Store, tmp_path: Path) -> None:
    """An image's tree is as deep as its author made it: `image rm` of a layer 2000
    directories deep was a RecursionError traceback (shutil.rmtree recurses per level), and
    so was dropping it when the import failed after unpacking it."""
    deep = tar_entries([Entry("d/" * 2000 + "f", data=b"x")])
    files, _ = oci_files([deep], ref_name="deep")
    store.import_path(write_dir(tmp_path / "src", files))
    store.remove("deep")
    assert content(store) == set()
    files, _ = oci_files([deep, tar_entries([Entry("e", "symlink", linkname="/"), Entry("e/x")])])
    with pytest.raises(UnsafeLayer, match="parent e is a symlink"):
        store.import_path(write_dir(tmp_path / "src2", files))
    assert content(store) == set()
