"""Images with real kernel objects and real tools: overlay rootfs, podman/skopeo/umoci
archives in, podman loading what we save, and a container run from an imported image.

Every overlay mount is unmounted in a finalizer, and each test checks none is left.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_common import hostsys
from images.bundle import oci_config
from images.store import Store
from testkit.imagebuild import Entry, config_for, oci_files, tar_entries, tar_tree, write_dir
from tests.conftest import Runtime

pytestmark = pytest.mark.root


def mounts_under(path: Path) -> list[str]:
    return [m.mountpoint for m in hostsys.mountinfo() if hostsys.mounts_under(path, [m])]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store")
    try:
        yield s
    finally:
        left = mounts_under(tmp_path)
        for mp in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], check=False)
        assert not left, f"mounts left behind: {left}"


@pytest.fixture
def mounted(store: Store, tmp_path: Path) -> Iterator[list[tuple[Path, Path]]]:
    """Record (dest, workdir) here after mount_rootfs; unmounted and removed afterwards."""
    made: list[tuple[Path, Path]] = []
    try:
        yield made
    finally:
        for dest, work in made:
            store.umount(dest, work)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {name}; scripts/setup.sh)")
    return path


@pytest.fixture
def rootfs_tar(rootfs: Path) -> bytes:
    return tar_tree(rootfs)


def test_overlay_rootfs_layers_whiteouts_and_private_upper(
    store: Store, mounted: list[tuple[Path, Path]], tmp_path: Path, rootfs_tar: bytes
) -> None:
    top = tar_entries(
        [
            Entry("etc", "dir"),
            Entry("etc/.wh.group"),  # deletes the base's /etc/group
            Entry("home", "dir"),
            Entry("home/.wh..wh..opq"),  # hides /home/tester of the base
            Entry("home/new", "dir"),
            Entry("etc/motd", data=b"hello from the top layer\n"),
        ]
    )
    files, _ = oci_files([rootfs_tar, top], config_for([rootfs_tar, top], Cmd=["/bin/sh"]),
                         ref_name="ovl:1")  # fmt: skip
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    dest, work = tmp_path / "rootfs", tmp_path / "ctr"
    store.mount_rootfs(img, dest, work)
    mounted.append((dest, work))
    assert (dest / "bin/busybox").is_file()
    assert (dest / "etc/motd").read_bytes() == b"hello from the top layer\n"
    assert (dest / "etc/passwd").is_file() and not (dest / "etc/group").exists()
    assert sorted(os.listdir(dest / "home")) == ["new"]
    (dest / "etc/passwd").write_text("changed\n")
    (dest / "bin/busybox").unlink()
    assert (work / "upper/etc/passwd").read_text() == "changed\n"
    for layer in store.layer_dirs(img):
        assert (
            "changed" not in (layer / "etc/passwd").read_text()
            if (layer / "etc/passwd").exists()
            else True
        )
    assert (store.layer_dirs(img)[1] / "bin/busybox").is_file()

    # a second container of the same image starts from the pristine layers
    dest2, work2 = tmp_path / "rootfs2", tmp_path / "ctr2"
    store.mount_rootfs(img, dest2, work2)
    mounted.append((dest2, work2))
    assert (dest2 / "bin/busybox").is_file()
    assert (dest2 / "etc/passwd").read_text() != "changed\n"

    store.umount(dest2, work2)
    mounted.remove((dest2, work2))
    assert not mounts_under(dest2) and not work2.exists()


@pytest.fixture
def podman() -> Iterator[list[str]]:
    """podman with storage of its own (vfs: no mounts); podman wants a runroot < 50 chars."""
    exe = tool("podman")
    d = Path(tempfile.mkdtemp(prefix="cpod-", dir="/tmp"))
    try:
        yield [exe, "--root", str(d / "root"), "--runroot", str(d / "run"),
               "--storage-driver", "vfs", "--events-backend", "none",
               "--cgroup-manager", "cgroupfs"]  # fmt: skip
    finally:
        left = mounts_under(d)
        for mp in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], check=False)
        shutil.rmtree(d, ignore_errors=True)
        assert not left, f"podman left mounts: {left}"


def _run(*cmd: str | Path) -> str:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{cmd}: {res.stderr}"
    return res.stdout


@pytest.fixture
def podman_archives(tmp_path: Path, rootfs: Path, podman: list[str]) -> dict[str, Path]:
    """podman import of the test rootfs, saved in both formats."""
    p = podman
    src = tmp_path / "rootfs.tar"
    _run("tar", "-C", rootfs, "-cf", src, ".")
    _run(*p, "import", "--change", 'CMD ["/bin/corral-test", "ids"]', "--change",
         "USER tester", "--change", "WORKDIR /home/tester", src, "localhost/ctest:1")  # fmt: skip
    out = {}
    for fmt in ("docker-archive", "oci-archive"):
        out[fmt] = tmp_path / f"podman-{fmt}.tar"
        _run(*p, "save", "--format", fmt, "-o", out[fmt], "localhost/ctest:1")
    return out


def _check_rootfs_image(store: Store, img_name: str, rootfs: Path, tmp_path: Path,
                        mounted: list[tuple[Path, Path]]) -> None:  # fmt: skip
    img = store.get(img_name)
    dest, work = tmp_path / f"m-{img.short_id}", tmp_path / f"w-{img.short_id}"
    store.mount_rootfs(img, dest, work)
    mounted.append((dest, work))
    for name in ("bin/busybox", "bin/corral-test", "etc/passwd"):
        a, b = (dest / name).stat(), (rootfs / name).stat()
        assert (a.st_size, stat.S_IMODE(a.st_mode)) == (b.st_size, stat.S_IMODE(b.st_mode)), name
    assert os.readlink(dest / "bin/sh") == os.readlink(rootfs / "bin/sh")
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_import_podman_save(
    store: Store,
    mounted: list[tuple[Path, Path]],
    tmp_path: Path,
    rootfs: Path,
    podman_archives: dict[str, Path],
    fmt: str,
) -> None:
    (img,) = store.import_path(podman_archives[fmt])
    assert img.names == ("localhost/ctest:1",)
    assert store.get("ctest:1") == img  # localhost/ is optional when looking up
    _check_rootfs_image(store, "ctest:1", rootfs, tmp_path, mounted)
    dest = mounted[-1][0]
    bundle = oci_config(store.config(img), dest)
    assert bundle["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert bundle["process"]["cwd"] == "/home/tester"
    assert bundle["process"]["args"] == ["/bin/corral-test", "ids"]


def test_import_skopeo_oci_archive_and_layout(
    store: Store,
    mounted: list[tuple[Path, Path]],
    tmp_path: Path,
    rootfs: Path,
    podman_archives: dict[str, Path],
) -> None:
    sk = tool("skopeo")
    src = f"docker-archive:{podman_archives['docker-archive']}"
    _run(sk, "copy", "-q", src, f"oci-archive:{tmp_path / 'sk.tar'}:sk:2")
    _run(sk, "copy", "-q", src, f"oci:{tmp_path / 'layout'}:v3")
    (a,) = store.import_path(tmp_path / "sk.tar")
    (b,) = store.import_path(tmp_path / "layout")
    assert a.names == ("sk:2",) and b.names == ("v3:latest", "sk:2")  # same image: merged
    assert a.id == b.id
    assert len(list(store.layers.iterdir())) == 1  # one layer, unpacked once
    _check_rootfs_image(store, "sk:2", rootfs, tmp_path, mounted)


def test_import_umoci_layout(store: Store, mounted: list[tuple[Path, Path]], tmp_path: Path,
                             rootfs: Path) -> None:  # fmt: skip
    um = tool("umoci")
    layout = tmp_path / "L"
    _run(um, "init", "--layout", layout)
    _run(um, "new", "--image", f"{layout}:u1")
    _run(um, "unpack", "--image", f"{layout}:u1", tmp_path / "b")
    _run("cp", "-a", f"{rootfs}/.", tmp_path / "b/rootfs/")
    _run(um, "repack", "--image", f"{layout}:u1", tmp_path / "b")
    _run(um, "config", "--image", f"{layout}:u1", "--config.cmd", "/bin/sh",
         "--config.user", "tester", "--config.label", "made.by=umoci")  # fmt: skip
    (img,) = store.import_path(layout, name="umoci-img")
    assert img.names == ("umoci-img:latest",)
    assert store.config(img)["config"]["Labels"] == {"made.by": "umoci"}
    _check_rootfs_image(store, "umoci-img", rootfs, tmp_path, mounted)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_loads_into_podman_and_back(
    store: Store, tmp_path: Path, rootfs_tar: bytes, podman: list[str], fmt: str
) -> None:
    p = podman
    files, built = oci_files([rootfs_tar], ref_name="localhost/rt:1", compression="zstd")
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    out = tmp_path / "saved.tar"
    store.save("localhost/rt:1", out, fmt)
    load = _run(*p, "load", "-i", out)
    assert "rt:1" in load
    info = json.loads(_run(*p, "image", "inspect", "localhost/rt:1"))[0]
    assert info["Id"] == img.id.split(":")[1]
    again = tmp_path / "again.tar"
    _run(*p, "save", "--format", fmt, "-o", again, "localhost/rt:1")
    (img2,) = Store(tmp_path / "store2").import_path(again)
    assert img2.id == img.id and img2.names == ("localhost/rt:1",)


def test_imported_image_runs(store: Store, mounted: list[tuple[Path, Path]], tmp_path: Path,
                             runtime: Runtime, rootfs_tar: bytes) -> None:  # fmt: skip
    cfg = config_for([rootfs_tar], Entrypoint=["/bin/corral-test"], Cmd=["ids"],
                     User="tester", WorkingDir="/home/tester", Env=["FOO=bar"])  # fmt: skip
    files, _ = oci_files([rootfs_tar], cfg, ref_name="runme:1")
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    dest, work = tmp_path / "run-rootfs", tmp_path / "run-ctr"
    store.mount_rootfs(img, dest, work)
    mounted.append((dest, work))
    store.add_ref(img, "ctr-test")
    try:
        part = oci_config(store.config(img), dest)
        spec = runtime.spec("unused")
        spec["process"].update(part["process"])
        spec["root"] = {"path": str(dest), "readonly": False}
        spec["annotations"] = part["annotations"]
        cid = runtime.new_id()
        spec["linux"]["cgroupsPath"] = runtime.cgroup_path(cid)
        res = runtime.cli("run", "--bundle", str(runtime.bundle(spec, cid)), cid)
        assert res.rc == 0, res.err
        assert res.out.startswith("uid=1000 gid=1000 euid=1000 egid=1000 groups=2000")
    finally:
        store.remove_ref(img, "ctr-test")


def test_many_layers_mount(store: Store, mounted: list[tuple[Path, Path]], tmp_path: Path) -> None:
    layers = [tar_entries([Entry(f"f{i:03}", data=str(i).encode())]) for i in range(60)]
    files, _ = oci_files(layers, ref_name="many:1", compression="none")
    (img,) = store.import_path(write_dir(tmp_path / "src", files))
    dest, work = tmp_path / "m", tmp_path / "w"
    store.mount_rootfs(img, dest, work)
    mounted.append((dest, work))
    assert len(os.listdir(dest)) == 60 and (dest / "f059").read_text() == "59"
    store.umount(dest, work)
    mounted.remove((dest, work))
    store.remove("many:1")
    assert list((store.root / "l").iterdir()) == []
