"""What import refuses before anything is stored: image configs the OCI image spec refuses
(images/imageconfig.py) and image names the distribution reference grammar refuses
(images/reference.py); and the lookups (rm, save, get) that check a reference first."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from corral_cli.main import cli
from images.bundle import oci_config
from images.errors import FormatError, NotFound
from images.reference import parse
from images.store import Store
from testkit.imagebuild import Entry, config_for, docker_files, oci_files, tar_entries, write_tar

LAYER = tar_entries([Entry("etc", "dir"), Entry("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n")])
GOOD = config_for([LAYER], Cmd=["/bin/sh"], User="root")


def snapshot(store: Store) -> dict[str, bytes]:
    """Every file of the store with its content (lock files aside)."""
    out = {}
    for dirpath, _, names in os.walk(store.root):
        for n in names:
            p = Path(dirpath, n)
            if not n.endswith(".lock"):
                out[str(p.relative_to(store.root))] = p.read_bytes()
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    files, _ = oci_files([tar_entries([Entry("other", data=b"o")])], ref_name="keep:1")
    s.import_path(write_tar(tmp_path / "keep.tar", files))  # imports must not disturb it
    return s


def bad(path: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(GOOD)
    obj = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        obj = obj[k]
    if value is _DELETE:
        del obj[keys[-1]]
    else:
        obj[keys[-1]] = value
    return cfg


_DELETE = object()

BAD_CONFIGS = [
    ("config.User", 5, "config.User: must be a string"),
    ("config.Cmd", "notalist", "config.Cmd: must be an array of strings"),
    ("config.Cmd", ["ok", 1], "config.Cmd: must be an array of strings"),
    ("config.Entrypoint", {"a": 1}, "config.Entrypoint: must be an array of strings"),
    ("config.Env", "A=B", "config.Env: must be an array of strings"),
    ("config.Env", ["A=1", "NOEQUALS"], "config.Env[1]: must be NAME=VALUE"),
    ("config.Env", ["=x"], "config.Env[0]: must be NAME=VALUE"),
    ("config.ExposedPorts", ["80/tcp"], "config.ExposedPorts: must be an object"),
    ("config.ExposedPorts", {"80/tcp": 1}, "config.ExposedPorts['80/tcp']: must be an object"),
    ("config.Volumes", "/data", "config.Volumes: must be an object"),
    ("config.WorkingDir", ["/"], "config.WorkingDir: must be a string"),
    ("config.Labels", {"a": 1}, "config.Labels['a']: must be a string"),
    ("config.Labels", ["a"], "config.Labels: must be an object"),
    ("config.StopSignal", 9, "config.StopSignal: must be a string"),
    ("config", "x", "config: must be an object"),
    ("rootfs.type", "tarball", "rootfs.type: must be 'layers'"),
    ("rootfs.diff_ids", "sha256:x", "rootfs.diff_ids: must be an array of digests"),
    ("rootfs.diff_ids", ["nothex"], "rootfs.diff_ids[0]: must be a digest"),
    ("rootfs", _DELETE, "rootfs: is required"),
    ("architecture", 64, "architecture: must be a string"),
    ("os", ["linux"], "os: must be a string"),
    ("history", {"created_by": "x"}, "history: must be an array"),
    ("history", [{"created_by": 3}], "history[0].created_by: must be a string"),
    ("history", [{"empty_layer": "yes"}], "history[0].empty_layer: must be a boolean"),
]


@pytest.mark.parametrize("form", ["docker-archive", "oci-archive"])
@pytest.mark.parametrize("field,value,message", BAD_CONFIGS)
def test_bad_config_refused_and_nothing_stored(
    store: Store, tmp_path: Path, form: str, field: str, value: Any, message: str
) -> None:
    cfg = bad(field, value)
    if form == "docker-archive":
        files, _ = docker_files([LAYER], cfg, repo_tags=["bad:1"])
    else:
        files, _ = oci_files([LAYER], cfg, ref_name="bad:1")
    before = snapshot(store)
    with pytest.raises(FormatError) as ei:
        store.import_path(write_tar(tmp_path / "bad.tar", files))
    assert str(ei.value).startswith("image config ") and message in str(ei.value)
    assert snapshot(store) == before
    assert not list(store.tmp.iterdir())


def test_docker_style_nulls_and_empty_fields_are_accepted(store: Store, tmp_path: Path) -> None:
    cfg = config_for([LAYER])
    cfg["config"] = {
        "User": "", "Cmd": None, "Entrypoint": ["/bin/sh"], "Env": None, "Volumes": None,
        "Labels": None, "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "", "OnBuild": None,
        "ArgsEscaped": True,
    }  # fmt: skip
    cfg["history"].append({"created_by": "ENV x", "empty_layer": True})
    files, built = docker_files([LAYER], cfg, repo_tags=["nulls:1"])
    (img,) = store.import_path(write_tar(tmp_path / "n.tar", files))
    assert img.id == built.config_digest


def test_cli_import_names_the_field(store: Store, tmp_path: Path) -> None:
    files, _ = oci_files([LAYER], bad("config.Cmd", "notalist"), ref_name="bad:1")
    src = write_tar(tmp_path / "bad.tar", files)
    res = CliRunner().invoke(cli, ["image", "--store", str(store.root), "import", str(src)])
    assert res.exit_code == 1
    assert res.output.startswith("corral: image import: image config blobs/sha256/")
    assert res.output.endswith(": config.Cmd: must be an array of strings\n")
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("field,value,message", BAD_CONFIGS[:15])
def test_a_bad_stored_config_is_an_error_when_run(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    """A config stored before import checked it (or changed since) is refused with the same
    words when it is turned into a runtime config, not a TypeError."""
    with pytest.raises(FormatError, match="^" + re.escape(f"image config: {message}")):
        oci_config(bad(field, value), tmp_path)


# -- names ---------------------------------------------------------------------------------

GOOD_NAMES = [
    "a", "a:1", "library/alpine", "example.com/app:1", "localhost:5000/a/b:v1.2_x-y",
    "a__b", "a--b/c.d_e", "[::1]:5000/a:1", "Registry.Example.com/a", "a@sha256:" + "0" * 64,
    "a:1@sha256:" + "f" * 64, "x" * 255, "a:" + "t" * 128,
]  # fmt: skip
BAD_NAMES = [
    ("../../x:1", "invalid reference format"),
    ("./x", "invalid reference format"),
    ("MyApp:1", "repository name must be lowercase"),
    ("library/Alpine", "repository name must be lowercase"),
    ("a:" + "t" * 500, "tag is 500 characters (128 at most)"),
    ("x" * 256, "name is 256 characters (255 at most)"),
    ("a:-x", "invalid tag"),
    ("a@sha256:zz", "invalid digest"),
    ("a b", "invalid reference format"),
    ("", "empty"),
    ("a/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a-", "invalid reference format"),
    ("a\nb", "invalid reference format"),
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_grammar_accepts(name: str) -> None:
    parse(name)


@pytest.mark.parametrize("name,why", BAD_NAMES)
def test_grammar_refuses(name: str, why: str) -> None:
    with pytest.raises(FormatError, match="^invalid image name ") as ei:
        parse(name)
    assert why in str(ei.value)
    assert len(str(ei.value)) < 300  # a 500-character name is not echoed whole


@pytest.mark.parametrize("name,why", BAD_NAMES[:8])
def test_import_refuses_bad_names_from_every_source(
    store: Store, tmp_path: Path, name: str, why: str
) -> None:
    before = snapshot(store)
    good_oci, _ = oci_files([LAYER], ref_name="fine:1")
    with pytest.raises(FormatError, match="invalid image name") as ei:
        store.import_path(write_tar(tmp_path / "a.tar", good_oci), name=name)
    assert why in str(ei.value)
    files, _ = docker_files([LAYER], repo_tags=["fine:1", name])
    with pytest.raises(FormatError, match=r"manifest\.json\[0\]\.RepoTags: invalid image name"):
        store.import_path(write_tar(tmp_path / "d.tar", files))
    files, _ = oci_files([LAYER], ref_name=name)
    with pytest.raises(
        FormatError,
        match=r"index\.json manifests\[0\]\.annotations\[org\.opencontainers\.image\.ref\.name\]",
    ):
        store.import_path(write_tar(tmp_path / "o.tar", files))
    assert snapshot(store) == before
    assert not list(store.tmp.iterdir())
    # a valid --name rescues an archive whose own names are bad
    (img,) = store.import_path(tmp_path / "d.tar", name="rescued:1")
    assert img.names == ("rescued:1",)


def test_docker_repotags_must_be_strings(store: Store, tmp_path: Path) -> None:
    files, _ = docker_files([LAYER], repo_tags=["fine:1"])
    man = json.loads(files["manifest.json"])
    man[0]["RepoTags"] = ["fine:1", 7]
    files["manifest.json"] = json.dumps(man).encode()
    before = snapshot(store)
    with pytest.raises(FormatError, match=r"manifest\.json\[0\]\.RepoTags: must be an array"):
        store.import_path(write_tar(tmp_path / "d.tar", files))
    assert snapshot(store) == before


@pytest.mark.parametrize("name,why", BAD_NAMES[:6])
def test_lookups_check_the_reference(store: Store, tmp_path: Path, name: str, why: str) -> None:
    before = snapshot(store)
    for call in (
        lambda: store.get(name),
        lambda: store.remove(name),
        lambda: store.save(name, tmp_path / "out.tar"),
    ):
        with pytest.raises(FormatError, match="invalid image name") as ei:
            call()
        assert why in str(ei.value)
    assert snapshot(store) == before and not (tmp_path / "out.tar").exists()
    # ids and id prefixes still work, and a valid unknown name is still "not found"
    img = store.get("keep:1")
    assert store.get(img.short_id[:4]) == img == store.get(img.id)
    with pytest.raises(NotFound):
        store.get("nosuch:1")


def test_cli_rm_and_save_refuse_bad_names(store: Store, tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(cli, ["image", "--store", str(store.root), "rm", "../../x:1"])
    assert res.exit_code == 1
    assert res.output.startswith("corral: image rm: invalid image name '../../x:1': invalid ")
    out = str(tmp_path / "o.tar")
    res = r.invoke(cli, ["image", "--store", str(store.root), "save", "MyApp", "-o", out])
    assert (res.exit_code, res.output) == (
        1, "corral: image save: invalid image name 'MyApp': repository name must be lowercase\n"
    )  # fmt: skip
    files, _ = oci_files([LAYER], ref_name="fine:1")
    src = str(write_tar(tmp_path / "a.tar", files))
    before = snapshot(store)
    res = r.invoke(cli, ["image", "--store", str(store.root), "import", src, "--name", "A"])
    assert (res.exit_code, res.output) == (
        1, "corral: image import: invalid image name 'A': repository name must be lowercase\n"
    )  # fmt: skip
    assert snapshot(store) == before
