"""Image config -> the image part of an OCI config.json; users resolved inside the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from images.bundle import UserError, oci_config, read_in_root, resolve_user
from images.errors import FormatError

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
tester:x:1000:1000:tester:/home/tester:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
tester:x:1000:
extra:x:2000:tester,daemon
more:x:3000:tester
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text(PASSWD)
    (r / "etc/group").write_text(GROUP)
    return r


def test_full_config(root: Path) -> None:
    cfg = {
        "config": {
            "Entrypoint": ["/bin/app"],
            "Cmd": ["--serve"],
            "Env": ["PATH=/bin", "A=1"],
            "WorkingDir": "/srv",
            "User": "tester",
            "StopSignal": "SIGQUIT",
            "Labels": {"org.example": "yes"},
        }
    }
    out = oci_config(cfg, root)
    p = out["process"]
    assert p["args"] == ["/bin/app", "--serve"]
    assert p["env"] == ["PATH=/bin", "A=1", "HOME=/home/tester"]
    assert p["cwd"] == "/srv"
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]}
    assert out["annotations"] == {
        "org.example": "yes",
        "org.opencontainers.image.stopSignal": "SIGQUIT",
    }
    assert out["root"] == {"path": str(root)}


def test_overrides(root: Path) -> None:
    cfg = {"config": {"Entrypoint": ["/e"], "Cmd": ["c"], "Env": ["A=1"], "User": "daemon"}}
    out = oci_config(cfg, root, args=["x", "y"], env=["A=2", "B=3"], user="0:2000", cwd="/w")
    p = out["process"]
    assert p["args"] == ["/e", "x", "y"]
    assert p["env"][0].startswith("PATH=/usr/local/sbin")
    assert "A=2" in p["env"] and "B=3" in p["env"] and "A=1" not in p["env"]
    assert p["user"] == {"uid": 0, "gid": 2000}
    assert p["cwd"] == "/w"
    assert oci_config(cfg, root, entrypoint=[], args=["sh"])["process"]["args"] == ["sh"]


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("", (0, 0, ())),
        ("root", (0, 0, ())),
        ("1000", (1000, 1000, (2000, 3000))),
        ("tester:extra", (1000, 2000, ())),
        ("1000:3000", (1000, 3000, ())),
        ("4242", (4242, 0, ())),
        ("4242:4343", (4242, 4343, ())),
        ("daemon", (1, 1, (2000,))),
    ],
)
def test_resolve_user(root: Path, spec: str, expected: tuple[int, int, tuple[int, ...]]) -> None:
    u = resolve_user(spec, root)
    assert (u.uid, u.gid, u.additional_gids) == expected


def test_unknown_names(root: Path) -> None:
    with pytest.raises(UserError, match="nobody"):
        resolve_user("nobody", root)
    with pytest.raises(UserError, match="nogroup"):
        resolve_user("tester:nogroup", root)
    with pytest.raises(FormatError):
        oci_config({"config": {}}, root)


def test_passwd_symlink_stays_in_root(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "real").mkdir()
    (r / "real/passwd").write_text("app:x:77:77::/app:/bin/sh\n")
    (r / "etc/passwd").symlink_to(str(host / "passwd"))  # absolute: resolves in the rootfs
    assert read_in_root(r, "/etc/passwd") is None
    with pytest.raises(UserError):
        resolve_user("evil", r)
    (r / "etc/passwd").unlink()
    (r / "etc/passwd").symlink_to("../../../../../../real/passwd")  # .. clamps at the root
    assert resolve_user("app", r).uid == 77
    (r / "etc/loop").symlink_to("loop")
    with pytest.raises(UserError, match="too many symlinks"):
        read_in_root(r, "/etc/loop")
