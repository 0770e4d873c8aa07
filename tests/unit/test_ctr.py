"""runtime.ctr without root: the parsers, the config built from an image, the error text."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from runtime import ctr
from runtime.errors import SpawnError

IMAGE_CONFIG = {
    "config": {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["serve"],
        "Env": ["PATH=/bin", "FOO=image"],
        "WorkingDir": "/srv",
        "User": "app",
        "StopSignal": "SIGQUIT",
        "Labels": {"l": "v"},
    }
}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:100:101::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:101:\nextra:x:300:app\n")
    return tmp_path / "rootfs"


def build(rootfs: Path, **kw: object) -> dict:
    opts = ctr.RunOptions(image="img", **kw)  # type: ignore[arg-type]
    return ctr.build_config(
        IMAGE_CONFIG, str(rootfs), opts, "ab" * 32, name="n1", image_id="sha256:" + "c" * 64,
        cgroup_path="parent/corral-abababababab", environ={"HOSTVAR": "h"}, host_files=(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "value"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1048576", 1 << 20), ("64MiB", 64 << 20),
     ("2k", 2048), ("1.5g", 3 << 29)],
)  # fmt: skip
def test_parse_memory(text: str, value: int) -> None:
    assert ctr.parse_memory(text) == value


@pytest.mark.parametrize("text", ["", "m", "-1m", "12x", "0"])
def test_parse_memory_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        ctr.parse_memory(text)


def test_parse_env_takes_bare_names_from_our_environment() -> None:
    assert ctr.parse_env(["A=1", "B", "C", "D="], {"B": "2"}) == ["A=1", "B=2", "D="]
    with pytest.raises(ValueError):
        ctr.parse_env(["=x"], {})


def test_parse_entrypoint() -> None:
    assert ctr.parse_entrypoint("") == []
    assert ctr.parse_entrypoint("/bin/sh") == ["/bin/sh"]
    assert ctr.parse_entrypoint('["/bin/sh", "-c"]') == ["/bin/sh", "-c"]
    assert ctr.parse_entrypoint("[not json") == ["[not json"]


def test_cgroups_path() -> None:
    cid = "0123456789abcdef" * 4
    assert ctr.cgroups_path(cid, None) == "corral/corral-0123456789ab"
    assert ctr.cgroups_path(cid, "/abs/p/") == "/abs/p/corral-0123456789ab"
    for bad in ("/", "a/../b"):
        with pytest.raises(ValueError):
            ctr.cgroups_path(cid, bad)


def test_config_from_image_defaults(rootfs: Path) -> None:
    spec = build(rootfs)
    p = spec["process"]
    assert p["args"] == ["/bin/app", "serve"]
    assert p["cwd"] == "/srv"
    assert p["user"] == {"uid": 100, "gid": 101, "additionalGids": [300]}
    assert "FOO=image" in p["env"] and "HOME=/home/app" in p["env"]
    assert p["terminal"] is False and not any(e.startswith("TERM=") for e in p["env"])
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "abababababab"
    assert spec["linux"]["cgroupsPath"] == "parent/corral-abababababab"
    assert spec["annotations"][ctr.STOP_SIGNAL] == "SIGQUIT"
    assert spec["annotations"][ctr.ANN_NAME] == "n1"
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert "memory" not in spec["linux"]["resources"]


def test_config_overrides(rootfs: Path) -> None:
    spec = build(
        rootfs, command=("a", "b"), env=("FOO=mine", "HOSTVAR", "NOPE"), workdir="/w",
        user="0:0", tty=True, memory=64 << 20, cpus=1.5, network="host", hostname="h1",
    )  # fmt: skip
    p = spec["process"]
    assert p["args"] == ["/bin/app", "a", "b"]
    assert "FOO=mine" in p["env"] and "FOO=image" not in p["env"] and "HOSTVAR=h" in p["env"]
    assert not any(e.startswith("NOPE") for e in p["env"])
    assert p["cwd"] == "/w" and p["user"] == {"uid": 0, "gid": 0}
    assert p["terminal"] is True and "TERM=xterm" in p["env"]
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"quota": 150_000, "period": 100_000}
    assert all(ns["type"] != "network" for ns in spec["linux"]["namespaces"])
    assert spec["hostname"] == "h1"
    json.dumps(spec)


def test_new_entrypoint_drops_the_image_cmd(rootfs: Path) -> None:
    assert build(rootfs, entrypoint="/bin/sh")["process"]["args"] == ["/bin/sh"]
    assert build(rootfs, entrypoint="", command=("ls",))["process"]["args"] == ["ls"]
    assert build(rootfs, entrypoint='["x", "-y"]', command=("z",))["process"]["args"] == [
        "x", "-y", "z",
    ]  # fmt: skip


def test_config_errors(rootfs: Path) -> None:
    from images.errors import ImageError

    with pytest.raises(ImageError, match="nobody"):
        build(rootfs, user="nobody")
    with pytest.raises(ValueError, match="network"):
        build(rootfs, network="bridge")
    with pytest.raises(ValueError, match="cpus"):
        build(rootfs, cpus=0.0)
    with pytest.raises(ImageError, match="no Entrypoint or Cmd"):
        build(rootfs, entrypoint="")


def test_run_error_text_and_exit_codes() -> None:
    e = ctr.RunError("mount rootfs", "/var/lib/corral/containers/x/rootfs", "Invalid argument")
    assert str(e) == "mount rootfs(/var/lib/corral/containers/x/rootfs): Invalid argument"
    assert e.exit_code == 125
    assert ctr.RunError("start container", "x", SpawnError("exec", errno.ENOENT)).exit_code == 127
    assert ctr.RunError("start container", "x", SpawnError("exec", errno.EACCES)).exit_code == 126
    assert str(ctr.RunError("name", "", "taken")) == "name: taken"


def test_paths_round_trip() -> None:
    p = ctr.Paths(store="/s", state_root="/r")
    assert p.containers_dir == "/s/containers"
    assert ctr.Paths.from_json(p.to_json()) == p


def test_meta_round_trip() -> None:
    m = ctr.Meta("a" * 64, "n", "img", "sha256:x", ("sh", "-c", "x"), "2024-01-01T00:00:00Z")
    assert ctr.Meta.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert m.short_id == "a" * 12


def test_find_and_list_without_containers(tmp_path: Path) -> None:
    paths = ctr.Paths(store=str(tmp_path), state_root=str(tmp_path / "state"))
    assert ctr.list_containers(paths, all_=True) == []
    from runtime.errors import NotFound

    with pytest.raises(NotFound):
        ctr.find(paths, "abc")


def test_cli_errors_name_the_command_and_step(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from corral_cli.main import cli

    env = {"CORRAL_IMAGE_STORE": str(tmp_path / "s"), "CORRAL_STATE_ROOT": str(tmp_path / "r")}
    r = CliRunner()
    res = r.invoke(cli, ["run", "--rm", "nope:1", "true"], env=env)
    assert res.exit_code == 125
    assert res.output == "corral: run nope:1: find image(nope:1): not found: image nope:1\n"
    res = r.invoke(cli, ["run", "-m", "lots", "nope:1"], env=env)
    assert res.exit_code == 2 and "invalid memory size" in res.output
    assert r.invoke(cli, ["ps", "-a"], env=env).output.startswith("CONTAINER ID  IMAGE")
    assert r.invoke(cli, ["ps", "--json"], env=env).output == "[]\n"
    for cmd in (["logs", "x1"], ["stop", "x1"], ["rm", "x1"]):
        res = r.invoke(cli, cmd, env=env)
        assert res.exit_code == 1
        assert res.output == f"corral: {cmd[0]} x1: container does not exist: x1\n"


def test_cli_defaults_match_the_library_and_corral_starts_without_it() -> None:
    import subprocess
    import sys

    from corral_cli import run_cmd
    from runtime import ctr

    assert (run_cmd.IMAGE_ROOT, run_cmd.STATE_ROOT) == (ctr.IMAGE_ROOT, ctr.STATE_ROOT)
    code = "import sys, corral_cli.main; print('runtime.ctr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_parse_volume() -> None:
    v = ctr.parse_volume("/srv/x/:/data:ro,nosuid")
    assert (v.source, v.destination, v.options, v.named) == ("/srv/x", "/data", ("ro", "nosuid"),
                                                             False)  # fmt: skip
    assert v.mount("/srv/x") == {"destination": "/data", "type": "bind", "source": "/srv/x",
                                 "options": ["rbind", "ro", "nosuid", "rprivate"]}  # fmt: skip
    v = ctr.parse_volume("cache:/var/cache:bind,rshared,Z")
    assert v.named and v.mount("/d")["options"] == ["bind", "rshared"]
    for bad, why in [("x", "want SRC:DST"), ("/a:b", "absolute"), ("/a:/", "other than /"),
                     ("../x:/y", "neither"), ("/a:/b:ro,rw", "exclude"), ("/a:/b:ro,ro", "exclude"),
                     ("/a:/b:O", "unknown option"), ("/a:/b:c:d", "want SRC:DST")]:  # fmt: skip
        with pytest.raises(ctr.OptionError, match=why) as e:
            ctr.parse_volume(bad)
        assert str(e.value).startswith(f"--volume {bad}: ") and e.value.exit_code == 125


def test_parse_publish_and_restart() -> None:
    assert ctr.parse_publish("8080:80") == (8080, 80, "tcp")
    assert ctr.parse_publish("53:5353/udp") == (53, 5353, "udp")
    for bad in ("80", "a:80", "8080:80/sctp", "70000:80", "0:1", ":80"):
        with pytest.raises(ctr.OptionError, match="--publish"):
            ctr.parse_publish(bad)
    assert ctr.parse_restart("no") == ("no", 0)
    assert ctr.parse_restart("always") == ("always", 0)
    assert ctr.parse_restart("on-failure") == ("on-failure", 0)
    assert ctr.parse_restart("on-failure:3") == ("on-failure", 3)
    for bad in ("never", "always:2", "on-failure:0", "on-failure:x", ""):
        with pytest.raises(ctr.OptionError, match="--restart"):
            ctr.parse_restart(bad)


def test_restart_count_fits_the_monitor() -> None:
    assert ctr.parse_restart("on-failure:2147483647") == ("on-failure", 2**31 - 1)
    with pytest.raises(ctr.OptionError, match="--restart"):
        ctr.parse_restart("on-failure:3000000000")  # the monitor would refuse its config


def test_check_options_needs_no_network_config_for_none(tmp_path: Path) -> None:
    opts = ctr.RunOptions(image="i", network_config=None)
    if not os.path.exists(ctr.defaults.NETWORK_CONFIG):
        assert ctr.check_options(opts).network == "none"
    cfg = tmp_path / "net.json"
    cfg.write_text(json.dumps({"podCIDR": "10.5.0.0/24", "name": "mine"}))
    got = ctr.check_options(ctr.RunOptions(image="i", network_config=str(cfg), publish=("1:2",)))
    assert got.network == "pod" and got.ports == ((1, 2, "tcp"),)
    assert ctr.check_options(ctr.RunOptions(image="i", network="mine",
                                            network_config=str(cfg))).network == "pod"  # fmt: skip
    with pytest.raises(ctr.OptionError, match="--network other: want none, host or the pod "
                       "network mine"):  # fmt: skip
        ctr.check_options(ctr.RunOptions(image="i", network="other", network_config=str(cfg)))
    with pytest.raises(ctr.OptionError, match="--network-config"):
        ctr.check_options(ctr.RunOptions(image="i", network_config=str(tmp_path / "nope")))


def test_pod_network_config_binds_the_etc_files_and_joins_later(rootfs: Path) -> None:
    opts = ctr.RunOptions(image="img")
    spec = ctr.build_config(
        IMAGE_CONFIG, str(rootfs), opts, "ab" * 32, name="n1", image_id="sha256:" + "c" * 64,
        cgroup_path="p/c", environ={}, network="pod", etc_dir="/c/etc",
        mounts=[ctr.parse_volume("/h:/data").mount("/h")],
    )  # fmt: skip
    dests = {m["destination"]: m["source"] for m in spec["mounts"]}
    assert (
        dests["/etc/hosts"] == "/c/etc/hosts" and dests["/etc/resolv.conf"] == "/c/etc/resolv.conf"
    )
    assert dests["/data"] == "/h"
    ctr.join_netns(spec, "/proc/7/ns/net")
    assert {"type": "network", "path": "/proc/7/ns/net"} in spec["linux"]["namespaces"]


def test_monitor_conf_of_a_detached_container() -> None:
    from runtime.pod.monconf import ContainerConf, MonitorConf, render

    text = render(MonitorConf(runtime_arg=("oci",), runtime_root="/r", restart_policy="OnFailure",
                              grace_s=10, restart_max=2,
                              containers=(ContainerConf("ctr", "app", "id1", "/b",
                                                        stop_signal=10, terminal=True),
                                          ContainerConf("c2", "app", "id2", "/b2"))))  # fmt: skip
    lines = text.splitlines()
    assert "restart_max 2" in lines and "stop_signal 10" in lines
    assert lines.index("stop_signal 10") > lines.index("container ctr")
    # `-t`: the monitor creates it with a console socket; only the terminal container says so
    assert lines.index("container ctr") < lines.index("terminal true") < lines.index("container c2")
    assert lines.count("terminal true") == 1
