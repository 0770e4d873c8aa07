"""Image platforms: this host's from ``uname -m``, normalisation (arm64 means arm64/v8), index
entries picked for a platform, and images for another architecture refused on import unless
``platform`` asks for them. No root: archives are built with testkit.imagebuild."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from images import platforms
from images.errors import FormatError, ImageError
from images.platforms import Platform
from images.store import Store
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

ARM64 = Platform("linux", "arm64", "v8")
AMD64 = Platform("linux", "amd64")


@pytest.mark.parametrize(
    ("machine", "want"),
    [
        ("x86_64", AMD64),
        ("aarch64", ARM64),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("riscv64", Platform("linux", "riscv64")),
        ("s390x", Platform("linux", "s390x")),
    ],
)
def test_host_platform_from_uname(machine: str, want: Platform) -> None:
    assert platforms.host(machine) == want


def test_normalise_aliases_and_default_variants() -> None:
    assert platforms.normalize("linux", "aarch64") == ARM64
    assert platforms.normalize("Linux", "ARM64", "") == ARM64
    assert platforms.normalize("linux", "x86_64") == AMD64
    assert platforms.normalize("linux", "armhf") == Platform("linux", "arm", "v7")
    assert str(ARM64) == "linux/arm64/v8" and str(AMD64) == "linux/amd64"


def test_matching_takes_variants_into_account() -> None:
    assert platforms.matches(ARM64, Platform("linux", "arm64"))  # no variant: v8
    assert platforms.matches(Platform("linux", "arm64"), ARM64)
    assert not platforms.matches(ARM64, Platform("linux", "arm64", "v9"))
    assert not platforms.matches(ARM64, Platform("linux", "arm", "v7"))  # arm32 is another
    assert not platforms.matches(Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6"))
    assert not platforms.matches(ARM64, AMD64)
    assert not platforms.matches(AMD64, Platform("windows", "amd64"))


def test_parse() -> None:
    assert platforms.parse("linux/arm64/v8") == ARM64
    assert platforms.parse("linux/arm64") == ARM64
    assert platforms.parse("arm64") == ARM64
    assert platforms.parse("arm/v6") == Platform("linux", "arm", "v6")
    assert platforms.parse("amd64") == AMD64
    for bad in ("", "linux//v8", "a/b/c/d"):
        with pytest.raises(FormatError, match="want OS/ARCH"):
            platforms.parse(bad)


INDEX = [
    {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    {
        "digest": "sha256:" + "2" * 64,
        "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
    },
    {
        "digest": "sha256:" + "3" * 64,
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
    },
    {"digest": "sha256:" + "4" * 64},  # an attestation: no platform
]


def test_pick_from_an_index() -> None:
    assert platforms.pick(INDEX, ARM64, "x")["digest"].endswith("3" * 64)
    assert platforms.pick(INDEX, platforms.host("aarch64"), "x")["digest"].endswith("3" * 64)
    assert platforms.pick(INDEX, AMD64, "x")["digest"].endswith("1" * 64)
    no_variant = [{"digest": "d", "platform": {"os": "linux", "architecture": "arm64"}}]
    assert platforms.pick(no_variant, ARM64, "x")["digest"] == "d"
    with pytest.raises(
        ImageError,
        match=r"^x: no image for linux/riscv64 in the index "
        r"\(it has linux/amd64, linux/arm/v7, linux/arm64/v8\)$",
    ):
        platforms.pick(INDEX, platforms.host("riscv64"), "x")
    with pytest.raises(FormatError, match="without a manifests array"):
        platforms.pick(None, ARM64, "x")


def test_check_refuses_another_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platforms, "host", lambda machine=None: ARM64)
    platforms.check({"os": "linux", "architecture": "arm64"}, None, "img")
    platforms.check({"os": "linux", "architecture": "arm64", "variant": "v8"}, None, "img")
    platforms.check({}, None, "img")  # says nothing: taken
    with pytest.raises(ImageError) as e:
        platforms.check({"os": "linux", "architecture": "amd64"}, None, "img")
    assert str(e.value) == (
        "img: image is for linux/amd64, this host runs linux/arm64/v8 "
        "(--platform linux/amd64 takes it anyway)"
    )
    platforms.check({"os": "linux", "architecture": "amd64"}, AMD64, "img")  # asked for
    with pytest.raises(ImageError, match="image is for linux/arm64/v8, not linux/amd64 as asked"):
        platforms.check({"os": "linux", "architecture": "arm64"}, AMD64, "img")


# ------------------------------------------------------------------ imports on an arm64 host


def _layer() -> bytes:
    return tar_entries([Entry("hello", data=b"hi\n")])


def _config(arch: str, variant: str | None = None) -> dict[str, Any]:
    layer = _layer()
    cfg = config_for([layer], Cmd=["/hello"])
    cfg["architecture"] = arch
    cfg.pop("variant", None)
    if variant:
        cfg["variant"] = variant
    return cfg


@pytest.fixture
def arm64_host(monkeypatch: pytest.MonkeyPatch) -> None:
    real = platforms.host
    monkeypatch.setattr(platforms, "host", lambda machine=None: real(machine or "aarch64"))


def test_a_foreign_docker_archive_is_refused_unless_asked_for(
    arm64_host: None, tmp_path: Path
) -> None:
    files, _ = docker_files([_layer()], _config("amd64"), repo_tags=["x86:latest"])
    archive = write_tar(tmp_path / "x86.tar", files)
    store = Store(tmp_path / "store")
    refused = r"image is for linux/amd64, this host runs linux/arm64/v8"
    with pytest.raises(ImageError, match=refused):
        store.import_path(archive)
    assert store.images() == []  # nothing stored
    (img,) = store.import_path(archive, platform=platforms.parse("linux/amd64"))
    assert store.config(img)["architecture"] == "amd64"

    files, _ = docker_files([_layer()], _config("arm64"), repo_tags=["arm:latest"])
    (img,) = store.import_path(write_tar(tmp_path / "arm.tar", files))
    assert img.names == ("arm:latest",)


def test_an_oci_index_gives_the_arm64_v8_entry(arm64_host: None, tmp_path: Path) -> None:
    layouts = {
        arch: oci_files([_layer()], _config(arch, variant)) for arch, variant in
        (("amd64", None), ("arm64", "v8"), ("arm", "v7"))
    }  # fmt: skip
    files: dict[str, bytes] = {}
    descs = []
    for fs, built in layouts.values():
        files.update(fs)
        desc = json.loads(fs["index.json"])["manifests"][0]
        cfg = json.loads(fs["blobs/sha256/" + built.config_digest.split(":")[1]])
        desc["platform"] = {k: cfg[k] for k in ("os", "architecture", "variant") if k in cfg}
        descs.append(desc)
    nested = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        }
    ).encode()
    files["blobs/sha256/" + sha(nested).split(":")[1]] = nested
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(nested),
        "size": len(nested),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    layout = write_dir(tmp_path / "layout", files)

    store = Store(tmp_path / "store")
    (img,) = store.import_path(layout, name="multi:latest")
    assert img.id == layouts["arm64"][1].config_digest
    cfg = store.config(img)
    assert (cfg["architecture"], cfg["variant"]) == ("arm64", "v8")
    (img,) = Store(tmp_path / "s2").import_path(
        layout, name="multi:latest", platform=platforms.parse("linux/arm/v7")
    )
    assert img.id == layouts["arm"][1].config_digest
    with pytest.raises(ImageError, match=r"no image for linux/riscv64 in the index"):
        Store(tmp_path / "s3").import_path(layout, platform=platforms.parse("linux/riscv64"))
