"""Unit tests for runtime/pod/sources.py: configMap/secret volumes from local files (no root)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from runtime.pod.manifest import ConfigMapVolume, KeyToPath, ManifestError, SecretVolume
from runtime.pod.sources import ProjectedFile, projected_files, source_keys


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "b.conf").write_text("b")
    (d / "a.conf").write_text("a")
    (d / ".hidden").write_text("h")
    (d / "sub").mkdir()
    (d / "sub" / "nested").write_text("n")
    os.symlink(d / "a.conf", d / "link.conf")
    os.symlink(d / "sub", d / "dirlink")
    os.symlink(d / "missing", d / "dangling")
    return d


def test_directory_keys_are_its_regular_files(conf: Path) -> None:
    keys = source_keys(str(conf))
    assert list(keys) == [".hidden", "a.conf", "b.conf", "link.conf"]
    assert keys["a.conf"] == str(conf / "a.conf")


def test_a_file_is_one_key(conf: Path) -> None:
    assert source_keys(str(conf / "a.conf")) == {"a.conf": str(conf / "a.conf")}


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read .*nope: No such file"):
        source_keys(str(tmp_path / "nope"), "here")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ManifestError, match="neither a regular file nor a directory"):
        source_keys(str(tmp_path / "fifo"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a b").write_text("")
    with pytest.raises(ManifestError, match="'a b' is not a valid config key") as info:
        source_keys(str(tmp_path / "d"), "there")
    assert info.value.field == "there"


@pytest.mark.parametrize("name", ["..data", "..2026_12_03_02_10_00.123456789", "..x"])
def test_a_key_of_the_atomic_writer_is_refused(tmp_path: Path, name: str) -> None:
    """``..data`` and the version directories are the volume's own (kube's IsConfigMapKey
    refuses keys starting with '..'): a local source may not name one, as a file of a
    directory or as a file of its own."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_text("")
    for source in (tmp_path / "d", tmp_path / "d" / name):
        with pytest.raises(
            ManifestError, match=f"{re.escape(repr(name))} is not a valid config key"
        ):
            source_keys(str(source), "there")


def test_all_keys_with_the_default_mode(conf: Path) -> None:
    files = projected_files(ConfigMapVolume("cfg", str(conf), default_mode=0o440))
    assert [(f.path, f.mode) for f in files] == [
        (".hidden", 0o440),
        ("a.conf", 0o440),
        ("b.conf", 0o440),
        ("link.conf", 0o440),
    ]


def test_items_select_and_place_keys(conf: Path) -> None:
    items = (KeyToPath("b.conf", "x/b"), KeyToPath("a.conf", "a", 0o400))
    files = projected_files(SecretVolume("tls", str(conf), items))
    assert files == (
        ProjectedFile("x/b", str(conf / "b.conf"), 0o644),
        ProjectedFile("a", str(conf / "a.conf"), 0o400),
    )


def test_missing_key(conf: Path) -> None:
    volume = ConfigMapVolume("cfg", str(conf), (KeyToPath("c.conf", "c"),))
    with pytest.raises(ManifestError) as info:
        projected_files(volume)
    assert info.value.field == "metadata.annotations.configmap.corral.io/cfg"
    assert "no key 'c.conf'" in info.value.message
    optional = ConfigMapVolume("cfg", str(conf), (KeyToPath("c.conf", "c"),), optional=True)
    assert projected_files(optional) == ()


def test_missing_source(tmp_path: Path) -> None:
    volume = SecretVolume("db", str(tmp_path / "nope"))
    with pytest.raises(ManifestError) as info:
        projected_files(volume)
    assert info.value.field == "metadata.annotations.secret.corral.io/db"
    assert projected_files(SecretVolume("db", str(tmp_path / "nope"), optional=True)) == ()
    assert projected_files(SecretVolume("db", None, optional=True)) == ()


def test_a_projected_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    from runtime.errors import CorralError
    from runtime.pod.projection import write_projected as _write_projected

    vdir, outside, source = tmp_path / "vol", tmp_path / "outside", tmp_path / "source"
    vdir.mkdir()
    outside.write_text("host data")
    source.write_text("config")
    os.symlink(str(outside), vdir / "key")
    with pytest.raises((OSError, CorralError)):
        _write_projected(vdir, "key", str(source), 0o644)
    assert outside.read_text() == "host data"


def test_a_volume_is_projected_and_updated_atomically(tmp_path: Path) -> None:
    from runtime.pod.projection import DATA, project
    from runtime.pod.sources import ProjectedFile

    vdir, src = tmp_path / "vol", tmp_path / "src"
    vdir.mkdir()
    src.mkdir()
    (src / "a").write_text("one")
    (src / "b").write_text("two")
    files = [ProjectedFile("a", str(src / "a"), 0o644), ProjectedFile("d/b", str(src / "b"), 0o600)]
    assert project(vdir, files) is True
    first = os.readlink(vdir / DATA)
    assert first.startswith("..") and (vdir / first).is_dir()
    assert os.readlink(vdir / "a") == f"{DATA}/a" and os.readlink(vdir / "d") == f"{DATA}/d"
    assert (vdir / "a").read_text() == "one" and (vdir / "d" / "b").read_text() == "two"
    assert os.stat(vdir / "d" / "b").st_mode & 0o777 == 0o600
    assert project(vdir, files) is False  # nothing changed: no new version
    assert os.readlink(vdir / DATA) == first
    (src / "a").write_text("ONE")
    assert project(vdir, files[:1]) is True  # a changed, d/b gone
    second = os.readlink(vdir / DATA)
    assert second != first and not (vdir / first).exists()
    assert (vdir / "a").read_text() == "ONE"
    assert not os.path.lexists(vdir / "d")
    assert sorted(os.listdir(vdir)) == sorted([DATA, second, "a"])


def test_a_planted_data_link_is_replaced_not_followed(tmp_path: Path) -> None:
    from runtime.pod.projection import DATA, project
    from runtime.pod.sources import ProjectedFile

    vdir, src, outside = tmp_path / "vol", tmp_path / "k", tmp_path / "outside"
    vdir.mkdir()
    outside.mkdir()
    src.write_text("v")
    os.symlink(str(outside), vdir / "..data_tmp")
    project(vdir, [ProjectedFile("k", str(src), 0o644)])
    assert list(outside.iterdir()) == []
    assert (vdir / "k").read_text() == "v" and not os.path.isabs(os.readlink(vdir / DATA))
