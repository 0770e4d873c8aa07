"""``corral cluster`` without the kernel: what a spec refuses (naming the option), the state
file's round trip, ``down`` where there is no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cluster import ClusterError, ClusterSpec, Node, State, down, load_state
from orchestrator.cluster.up import Proc


@pytest.mark.parametrize(
    ("kw", "step"),
    [
        ({"nodes": 0}, "--nodes"),
        ({"lan_cidr": "10.42.7.0/24"}, "--lan-cidr"),  # inside the cluster CIDR
        ({"lan_cidr": "172.31.0.0/30", "nodes": 3}, "--lan-cidr"),  # no room
        ({"cluster_cidr": "10.42.0.0/33"}, "network ranges"),
        ({"cgroup_parent": "/abs"}, "--cgroup-parent"),
        ({"cgroup_parent": "a/../b"}, "--cgroup-parent"),
        ({"node_monitor_grace_period": 0.5}, "--node-monitor-grace-period"),
        ({"unreachable_toleration_seconds": -1}, "--default-unreachable-toleration-seconds"),
        ({"not_ready_toleration_seconds": -1}, "--default-not-ready-toleration-seconds"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_option(
    tmp_path: Path, kw: dict[str, object], step: str
) -> None:
    with pytest.raises(ClusterError) as e:
        ClusterSpec(tmp_path, **kw).check()  # type: ignore[arg-type]
    assert e.value.step == step


def test_a_missing_images_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="--images-dir"):
        ClusterSpec(tmp_path, images_dir=tmp_path / "nope").check()


def test_the_node_lifecycle_options_go_to_the_server(tmp_path: Path) -> None:
    assert ClusterSpec(tmp_path).server_args() == []  # the server's own defaults
    spec = ClusterSpec(tmp_path, node_monitor_grace_period=15, unreachable_toleration_seconds=5)
    assert spec.server_args() == [
        "--node-monitor-grace-period", "15",
        "--default-unreachable-toleration-seconds", "5",
    ]  # fmt: skip
    from click.testing import CliRunner

    from corral_cli.cluster_cmd import up

    res = CliRunner().invoke(up, ["--data-dir", str(tmp_path / "c"),
                                  "--node-monitor-grace-period", "0"])  # fmt: skip
    assert res.exit_code != 0 and "--node-monitor-grace-period" in res.output


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    state = State(
        id="abc",
        data_dir=str(tmp_path),
        lan_cidr="172.31.250.0/24",
        cluster_cidr="10.42.0.0/16",
        lan_netns=str(tmp_path / "netns/lan"),
        server=Proc(123, "456"),
        cgroup_paths={"memory": "/sys/fs/cgroup/memory/x"},
        nodes=[
            Node("node-1", "172.31.250.2", "ns", "dd", "cp", Proc(7, "8")),
            Node("n2", "a", "b", "c", "d"),
        ],
    )
    state.save()
    assert load_state(tmp_path) == state
    (tmp_path / "cluster.json").write_text("{not json")
    with pytest.raises(ClusterError, match="cluster.json"):
        load_state(tmp_path)


def test_down_without_a_cluster_is_nothing(tmp_path: Path) -> None:
    assert down(tmp_path) is False
    assert list(tmp_path.iterdir()) == []
