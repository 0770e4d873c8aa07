"""``corral network gc``: free what the node network holds for pods that no longer exist."""

from __future__ import annotations

import click

from .errors import failing
from .pod_cmd import DEFAULT_ROOT, network_config_option, node_netns_option


@click.group("network")
def network() -> None:
    """The node's pod network."""


@network.command("gc")
@click.option(
    "--root",
    envvar="CORRAL_POD_ROOT",
    default=DEFAULT_ROOT,
    show_default=True,
    help="pod directory root: its pods that are not exited keep their addresses",
)
@network_config_option
@node_netns_option
def network_gc(root: str, network_config: str | None, node_netns: str | None) -> None:
    """Release IPAM addresses, hostPort rules and veths of pods that no longer exist."""
    from runtime.network import NodeNetwork
    from runtime.pod.api import live_pod_uids
    from runtime.pod.prepare import PodOptions

    opts = PodOptions(root=root, network_config=network_config, node_netns=node_netns)
    with failing("network gc"):
        node = NodeNetwork(opts.network_settings(), node_netns)
        report = node.gc(live_pod_uids(opts))
    for pod in report.pods:
        click.echo(f"pod {pod}: torn down")
    for addr in report.addresses:
        click.echo(f"address {addr}: freed")
    for veth in report.veths:
        click.echo(f"veth {veth}: removed")
    if report.hostports:
        click.echo(f"hostport rules: {report.hostports} removed")


def register(cli: click.Group) -> None:
    cli.add_command(network)
