"""``corral agent``: make this machine a node of the cluster (as ``k3s agent``)."""

from __future__ import annotations

from pathlib import Path

import click

from corral_common import defaults

from . import agent_main


def _ipv4_option(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if value:
        import ipaddress

        try:
            ipaddress.IPv4Address(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r}: expected key=value", param_hint=what)
        out[key] = value
    return out


@click.command("agent")
@click.option(
    "--server",
    required=True,
    multiple=True,
    envvar="CORRAL_URL",
    help="https://server:6443; several servers of one cluster: repeated or comma-separated,"
    " tried in order (the agent moves to the next when one cannot be reached)",
)
@click.option("--token", required=True, envvar="CORRAL_TOKEN", help="the server's join token")
@click.option(
    "--data-dir",
    default=defaults.AGENT_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="state: credentials, pods, the image store, the network's IPAM",
)
@click.option("--node-name", default="", help="the node's name [default: the host name]")
@click.option(
    "--node-ip", default="", help="the node's address [default: the one the server is reached from]"
)
@click.option("--node-label", multiple=True, help="key=value, repeated")
@click.option("--node-taint", multiple=True, help="key=value:Effect, repeated")
@click.option("--kubelet-port", default=10250, show_default=True, type=click.IntRange(1, 65535))
@click.option("--node-netns", default=None, help="the network namespace pods join (a path)")
@click.option(
    "--images-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="image archives imported at start and when they appear [default: DATA_DIR/images]",
)
@click.option(
    "--pod-cidr",
    default=None,
    help="pod addresses while the Node has no spec.podCIDR [default: wait for it]",
)
@click.option(
    "--cluster-cidr",
    default="10.42.0.0/16",
    show_default=True,
    help="every node's pods (the server's); pod traffic leaving it is masqueraded",
)
@click.option(
    "--cluster-domain", default="cluster.local", show_default=True, help="the cluster's DNS zone"
)
@click.option(
    "--cluster-dns",
    default="",
    callback=_ipv4_option,
    show_default="the clusterIP of kube-system/kube-dns",
    help="the pods' nameserver (ClusterFirst), the cluster DNS Service's address",
)
@click.option(
    "--disable-cluster-dns",
    is_flag=True,
    help="serve no cluster DNS on this node (its pods get the node's resolver)",
)
@click.option(
    "--cluster-dns-upstream",
    multiple=True,
    metavar="ADDRESS",
    help="where the cluster DNS sends other names (repeatable; 'none': nowhere)"
    " [default: the node's /etc/resolv.conf]",
)
@click.option("--cgroup-parent", default=None, help="pods' cgroup parent [default: /kubepods]")
@click.option(
    "--registries-conf",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the registries.conf image pulls use (search registries, mirrors, insecure ones) "
    "[default: $CORRAL_REGISTRIES_CONF, else /etc/containers/registries.conf]",
)
@click.option(
    "--disable-proxy",
    "--disable-kube-proxy",
    is_flag=True,
    help="run no service proxy (nftables rules for ClusterIPs and NodePorts) on this node",
)
@click.option(
    "--disable-network-policy",
    is_flag=True,
    help="enforce no NetworkPolicy on this node (k3s' flag)",
)
@click.option(
    "--eviction-hard",
    default="memory.available<100Mi",
    show_default=True,
    metavar="SIGNAL<QUANTITY",
    help="evict pods when memory.available (capacity less working set; the capacity of the"
    " pods' cgroup when it has a memory limit) is below this: a quantity or a percentage",
)
@click.option(
    "--eviction-pressure-transition-period",
    default="5m0s",
    show_default=True,
    metavar="DURATION",
    help="how long MemoryPressure stays True after the threshold was last met",
)
@click.option(
    "--pod-manifests",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="static pods: a Pod per file (YAML or JSON), run without the API, mirrored into it"
    " [default: DATA_DIR/pod-manifests]",
)
def agent(
    server: tuple[str, ...],
    token: str,
    data_dir: Path,
    node_name: str,
    node_ip: str,
    node_label: tuple[str, ...],
    node_taint: tuple[str, ...],
    kubelet_port: int,
    node_netns: str | None,
    images_dir: Path | None,
    pod_cidr: str | None,
    cluster_cidr: str,
    cluster_domain: str,
    cluster_dns: str,
    disable_cluster_dns: bool,
    cluster_dns_upstream: tuple[str, ...],
    cgroup_parent: str | None,
    registries_conf: Path | None,
    disable_proxy: bool,
    disable_network_policy: bool,
    eviction_hard: str,
    eviction_pressure_transition_period: str,
    pod_manifests: Path | None,
) -> None:
    """Join the cluster at --server with --token and run the pods it binds here."""
    from orchestrator.kubelet.config import (
        AgentConfig,
        parse_duration,
        parse_taint,
        parse_thresholds,
    )

    try:
        taints = tuple(parse_taint(t) for t in node_taint)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--node-taint") from None
    try:
        thresholds = parse_thresholds(eviction_hard)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--eviction-hard") from None
    try:
        transition = parse_duration(eviction_pressure_transition_period)
    except ValueError as e:
        raise click.BadParameter(
            str(e), param_hint="--eviction-pressure-transition-period"
        ) from None
    servers = [u.strip() for v in server for u in v.split(",") if u.strip()]
    if not servers:
        raise click.BadParameter("no server URL", param_hint="--server")
    for url in servers:
        if not url.startswith(("https://", "http://")):
            raise click.BadParameter(f"{url!r}: expected https://host:port", param_hint="--server")
    cfg = AgentConfig(
        server=servers[0],
        fallback_servers=tuple(servers[1:]),
        token=token,
        data_dir=data_dir,
        node_name=node_name,
        node_ip=node_ip,
        labels=_pairs(node_label, "--node-label"),
        taints=taints,
        kubelet_port=kubelet_port,
        node_netns=node_netns,
        images_dir=images_dir,
        pod_cidr=pod_cidr,
        cgroup_parent=cgroup_parent,
        registries_conf=registries_conf.absolute() if registries_conf else None,
        cluster_cidr=cluster_cidr,
        cluster_dns=not disable_cluster_dns,
        cluster_dns_ip=cluster_dns,
        cluster_domain=cluster_domain,
        dns_upstream=(
            None
            if not cluster_dns_upstream
            else tuple(u for u in cluster_dns_upstream if u != "none")
        ),
        disable_proxy=disable_proxy,
        disable_network_policy=disable_network_policy,
        eviction_hard=thresholds,
        eviction_transition=transition,
        pod_manifests=pod_manifests.absolute() if pod_manifests else None,
    )
    agent_main.exec_agent(cfg)  # the same pid goes on as the agent


def register(cli: click.Group) -> None:
    cli.add_command(agent)
