"""subPath resolution, subPathExpr, projected item paths and the prestart_first key, without
root (runtime/pod/subpath.py, bundle.py, manifest.py, monconf.py, prepare.py): openat2 needs
no privilege, so every escape is tried on real symlinks in a temporary directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import CorralError
from runtime.pod.bundle import BundleContext, container_config, subpath_mounts
from runtime.pod.manifest import ManifestError, parse_pod
from runtime.pod.monconf import MonitorConf, containers_of, render
from runtime.pod.projection import project
from runtime.pod.projection import write_projected as _write_projected
from runtime.pod.sources import ProjectedFile
from runtime.pod.subpath import (
    SubPathError,
    SubPathMount,
    _resolve,
    check_sub_path,
    read_plan,
    write_plan,
)


def pod_of(containers: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None) -> Any:
    return parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "containers": containers,
                "volumes": volumes if volumes is not None else [{"name": "v", "emptyDir": {}}],
            },
        }
    )


# ============================================================================= resolving


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A volume as containers leave it: attacks and legitimate entries side by side."""
    v = tmp_path / "vol"
    (v / "data/dir").mkdir(parents=True)
    (v / "data/dir/file").write_text("inside\n")
    (v / "esc").symlink_to("/")
    (v / "etc").symlink_to("/etc")
    (v / "d").mkdir()
    (v / "d/up").symlink_to("../../..")
    (v / "inlink").symlink_to("data/dir")
    (v / "abs-inside").symlink_to(str(v / "data"))  # absolute: leaves the volume's root
    (v / "dangling").symlink_to("/nonexistent-target")
    (v / "dangling-here").symlink_to("nothing-here")
    (v / "magic").symlink_to("/proc/self/root")
    os.chmod(v, 0o751)
    return v


def resolve(volume: Path, sub_path: str) -> os.stat_result:
    fd = _resolve(SubPathMount("v", sub_path, str(volume), "/unused"))
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("sub_path", "why"),
    [
        ("esc", "resolves outside the volume"),
        ("esc/etc", "resolves outside the volume"),
        ("etc", "resolves outside the volume"),
        ("d/up", "resolves outside the volume"),
        ("d/up/tmp", "resolves outside the volume"),
        ("abs-inside", "resolves outside the volume"),
        ("magic", "resolves outside the volume"),
        ("dangling", "resolves outside the volume"),
        ("dangling-here", "symlink to nothing"),  # not made through the symlink
        ("dangling/x", "resolves outside the volume"),
        ("data/dir/file/x", "not a directory"),
        ("/etc", "must not be an absolute path"),
        ("../x", "must not contain '..'"),
        ("data/../../x", "must not contain '..'"),
        ("", "is empty"),
    ],
)
def test_escapes_are_refused_naming_the_volume_and_subpath(
    volume: Path, sub_path: str, why: str
) -> None:
    before = sorted(p.name for p in volume.iterdir())
    with pytest.raises(SubPathError) as e:
        resolve(volume, sub_path)
    assert str(e.value).startswith(f"volume 'v' subPath {sub_path!r}: "), str(e.value)
    assert why in str(e.value), str(e.value)
    assert sorted(p.name for p in volume.iterdir()) == before  # nothing made


def test_subpaths_inside_the_volume_resolve_to_what_is_there(volume: Path) -> None:
    assert resolve(volume, "data/dir").st_ino == os.stat(volume / "data/dir").st_ino
    assert resolve(volume, "data/dir/file").st_ino == os.stat(volume / "data/dir/file").st_ino
    assert resolve(volume, "inlink").st_ino == os.stat(volume / "data/dir").st_ino
    assert resolve(volume, "./data//dir/").st_ino == os.stat(volume / "data/dir").st_ino


def test_a_missing_subpath_is_made_beneath_the_volume(volume: Path) -> None:
    st = resolve(volume, "inlink/new/deeper")
    made = volume / "data/dir/new/deeper"
    assert made.is_dir() and st.st_ino == os.stat(made).st_ino
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o751  # the volume's mode, as the kubelet
    assert stat.S_IMODE(os.stat(volume / "data/dir/new").st_mode) == 0o751


def test_check_sub_path() -> None:
    assert check_sub_path("a/b") is None and check_sub_path("a/.b/..c") is None
    assert check_sub_path("/a") and check_sub_path("a/../b") and check_sub_path("a\0")


# ============================================================================= bundle


def ctx(tmp: str = "/p", rootfs: str = "/r") -> BundleContext:
    return BundleContext(
        uid="u1",
        rootfs=rootfs,
        image_config={"config": {"Cmd": ["sh"]}},
        cgroup_parent="/kubepods",
        ns_pid=1,
        memory_capacity=2**30,
        volume_paths={"v": f"{tmp}/volumes/v"},
        pod_dir=tmp,
    )


def test_subpath_and_expr_mounts_bind_the_pod_owned_target(tmp_path: Path) -> None:
    env = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "EMPTY", "value": ""},
        {"name": "DIR", "value": "logs"},
    ]
    mounts = [
        {"name": "v", "mountPath": "/whole"},
        {"name": "v", "mountPath": "/a", "subPath": "esc"},
        {"name": "v", "mountPath": "/b", "subPathExpr": "$(DIR)/$(POD)"},
        {"name": "v", "mountPath": "/c", "subPathExpr": "x/$(EMPTY)$(UNDEFINED)"},
    ]
    pod = pod_of([{"name": "c", "image": "i", "env": env, "volumeMounts": mounts}])
    c = pod.spec.containers[0]
    got = subpath_mounts(pod, c, ctx())
    assert got == [
        SubPathMount("v", "esc", "/p/volumes/v", "/p/volume-subpaths/v/c/1"),
        SubPathMount("v", "logs/web", "/p/volumes/v", "/p/volume-subpaths/v/c/2"),
        SubPathMount(
            "v",
            "x/$(EMPTY)$(UNDEFINED)",
            "/p/volumes/v",
            "/p/volume-subpaths/v/c/3",
            "subPathExpr 'x/$(EMPTY)$(UNDEFINED)': missing value for EMPTY, UNDEFINED",
        ),
    ]
    by_dest = {
        m["destination"]: m["source"]
        for m in container_config(pod, c, ctx(rootfs=str(tmp_path)))["mounts"]
    }
    assert by_dest["/whole"] == "/p/volumes/v"
    assert by_dest["/a"] == "/p/volume-subpaths/v/c/1"  # never /p/volumes/v/esc
    assert by_dest["/b"] == "/p/volume-subpaths/v/c/2"
    # a missing value is refused at container start, with the volume named
    with pytest.raises(SubPathError, match="volume 'v' subPath .*missing value for EMPTY"):
        _resolve(got[2])


def test_plan_round_trip(tmp_path: Path) -> None:
    plan = [SubPathMount("v", "a", "/s", "/t/0"), SubPathMount("w", "b", "/s2", "/t/1", "bad")]
    write_plan(tmp_path, plan)
    assert stat.S_IMODE(os.stat(tmp_path / "subpaths.json").st_mode) == 0o600
    assert read_plan(tmp_path) == plan
    assert read_plan(tmp_path / "nothing") == []


@pytest.mark.parametrize(
    ("mount", "why"),
    [
        ({"subPath": "/etc"}, "must be a relative path"),
        ({"subPath": "a/../../etc"}, "must not contain '..'"),
        ({"subPathExpr": "/$(X)"}, "must be a relative path"),
        ({"subPathExpr": "../$(X)"}, "must not contain '..'"),
        ({"subPath": "a", "subPathExpr": "b"}, "mutually exclusive"),
    ],
)
def test_manifest_refuses_subpaths_out_of_the_volume(mount: dict[str, str], why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        pod_of(
            [
                {
                    "name": "c",
                    "image": "i",
                    "volumeMounts": [{"name": "v", "mountPath": "/m", **mount}],
                }
            ]
        )


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x"])
def test_manifest_refuses_projected_items_out_of_the_volume(path: str) -> None:
    vol = {
        "name": "v",
        "configMap": {"name": "cm", "optional": True, "items": [{"key": "k", "path": path}]},
    }
    with pytest.raises(ManifestError, match=r"items\[0\]\.path"):
        pod_of([{"name": "c", "image": "i"}], [vol])


# ============================================================================= projected files


def test_projected_items_are_written_beneath_the_volume(tmp_path: Path) -> None:
    vdir, src, outside = tmp_path / "vol", tmp_path / "src", tmp_path / "outside"
    vdir.mkdir(mode=0o755)
    outside.mkdir()
    src.write_text("value\n")
    _write_projected(vdir, "a/b/key", str(src), 0o640)
    assert (vdir / "a/b/key").read_text() == "value\n"
    assert stat.S_IMODE(os.stat(vdir / "a/b/key").st_mode) == 0o640
    for bad in ("../x", "/x", "a/../../x"):
        with pytest.raises(Exception, match=r"item path .*(absolute|'\.\.')"):
            _write_projected(vdir, bad, str(src), 0o644)
    (vdir / "link").symlink_to(outside)
    with pytest.raises(CorralError, match="item path 'link/key': "):
        _write_projected(vdir, "link/key", str(src), 0o644)
    (vdir / "flink").symlink_to(outside / "f")
    with pytest.raises(CorralError, match="item path 'flink': "):
        _write_projected(vdir, "flink", str(src), 0o644)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("paths", "bad", "why"),
    [
        (["a", "a/b"], "a/b", "a component is a file of another item"),
        (["a/b", "a"], "a", "is already a file or directory of the volume"),
        (["."], ".", "is already a file or directory of the volume"),
        (["x", "x/."], "x/.", "a component is a file of another item"),
    ],
)
def test_items_that_cannot_all_be_are_refused_naming_the_item(
    tmp_path: Path, paths: list[str], bad: str, why: str
) -> None:
    """Paths the API accepts (each is relative, without '..') but that no volume can hold
    together: the new version is not swapped in, the one shown stays whole."""
    vdir, src = tmp_path / "vol", tmp_path / "src"
    vdir.mkdir(mode=0o755)
    src.write_text("v\n")
    assert project(vdir, [ProjectedFile("keep", str(src), 0o644)])
    before = sorted(os.listdir(vdir))
    with pytest.raises(CorralError) as info:
        project(vdir, [ProjectedFile(p, str(src), 0o644) for p in paths])
    assert str(info.value) == f"item path {bad!r}: {why}"
    assert sorted(os.listdir(vdir)) == before
    assert (vdir / "keep").read_text() == "v\n"


# ============================================================================= monitor.conf


def test_prestart_first_only_for_containers_with_subpaths() -> None:
    pod = pod_of([{"name": "a", "image": "i"}, {"name": "b", "image": "i"}])
    conf = MonitorConf(
        runtime_arg=("rt",),
        runtime_root="/r",
        restart_policy="Always",
        grace_s=1,
        containers=tuple(
            containers_of(
                pod,
                {"a": "/b/a", "b": "/b/b"},
                {},
                lambda n: ("reset", n),
                frozenset({"b"}),
            )
        ),
    )
    text = render(conf)
    a, b = text.split("container b\n")
    assert "prestart_first" not in a
    assert "prestart_arg reset\nprestart_arg b\nprestart_first true\n" in b
