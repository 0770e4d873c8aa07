"""``corral cluster up`` / ``down``: a cluster on this machine, every node in a network
namespace of its own (as kind); orchestrator.cluster does the work."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import Failure


@click.group("cluster")
def cluster() -> None:
    """A cluster on this machine: a server and N agents in network namespaces."""


@cluster.command("up")
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(1, 200))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="everything the cluster has: state, kubeconfig, logs, namespaces, nodes",
)
@click.option(
    "--images-dir",
    default=None,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="image archives every node imports",
)
@click.option(
    "--cgroup-parent",
    default=None,
    help="pods' cgroups, relative to this process's [default: corral-cluster-<id>]",
)
@click.option("--lan-cidr", default="172.31.250.0/24", show_default=True, help="node addresses")
@click.option("--cluster-cidr", default="10.42.0.0/16", show_default=True, help="pod addresses")
@click.option("--service-cidr", default="10.43.0.0/16", show_default=True, help="service addresses")
@click.option(
    "--node-monitor-grace-period",
    default=None,
    type=click.FloatRange(min=1),
    help="the server's: seconds without a Lease renewal before a node is NotReady [default: 40]",
)
@click.option(
    "--default-not-ready-toleration-seconds",
    default=None,
    type=click.IntRange(min=0),
    help="the server's: how long pods stay on a not-ready node [default: 300]",
)
@click.option(
    "--default-unreachable-toleration-seconds",
    default=None,
    type=click.IntRange(min=0),
    help="the server's: how long pods stay on an unreachable node [default: 300]",
)
def up(
    nodes: int,
    data_dir: Path,
    images_dir: Path | None,
    cgroup_parent: str | None,
    lan_cidr: str,
    cluster_cidr: str,
    service_cidr: str,
    node_monitor_grace_period: float | None,
    default_not_ready_toleration_seconds: int | None,
    default_unreachable_toleration_seconds: int | None,
) -> None:
    """Start the cluster; return when every node is Ready."""
    from orchestrator.cluster import ClusterError, ClusterSpec
    from orchestrator.cluster import up as cluster_up

    spec = ClusterSpec(
        data_dir=data_dir,
        nodes=nodes,
        images_dir=images_dir,
        cgroup_parent=cgroup_parent,
        lan_cidr=lan_cidr,
        cluster_cidr=cluster_cidr,
        service_cidr=service_cidr,
        node_monitor_grace_period=node_monitor_grace_period,
        not_ready_toleration_seconds=default_not_ready_toleration_seconds,
        unreachable_toleration_seconds=default_unreachable_toleration_seconds,
    )
    try:
        state = cluster_up(spec, lambda m: click.echo(m, err=True))
    except ClusterError as e:
        raise Failure("cluster up", e) from e
    click.echo(f"export KUBECONFIG={state.kubeconfig}")


@cluster.command("down")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def down(data_dir: Path) -> None:
    """Remove everything the cluster in --data-dir made (nothing if there is none)."""
    from orchestrator.cluster import ClusterError
    from orchestrator.cluster import down as cluster_down

    try:
        if not cluster_down(data_dir, lambda m: click.echo(m, err=True)):
            click.echo(f"no cluster in {data_dir}", err=True)
    except ClusterError as e:
        raise Failure("cluster down", e) from e


def register(cli: click.Group) -> None:
    cli.add_command(cluster)
