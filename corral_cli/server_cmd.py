"""``corral server``: the cluster's API server (as ``k3s server``), until SIGTERM."""

from __future__ import annotations

from pathlib import Path

import click

from corral_common import defaults

from .errors import Failure


@click.command("server")
@click.option(
    "--data-dir",
    default=defaults.SERVER_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="state: TLS certificates, the join token, the embedded SQLite store",
)
@click.option(
    "--bind-address",
    default=defaults.SERVER_BIND_ADDRESS,
    show_default=True,
    help="address the API server listens on",
)
@click.option(
    "--https-listen-port",
    default=defaults.SERVER_HTTPS_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="port the API server listens on",
)
@click.option(
    "--advertise-address",
    default=None,
    show_default="the bind address; for 0.0.0.0 the host's address on its default route",
    help="address the members of the cluster reach the API server at: the endpoint of the"
    " kubernetes Service that pods use (the server listens there too when --bind-address does"
    " not cover it); the serving certificate names it",
)
@click.option(
    "--advertise-port",
    default=None,
    type=click.IntRange(1, 65535),
    show_default="--https-listen-port",
    help="port that goes with --advertise-address",
)
@click.option(
    "--advertise-netns",
    default=None,
    help="network namespace (a path) where the server also listens on --advertise-address"
    " (a cluster on one machine: the nodes' LAN); the machine's own namespace is left alone",
)
@click.option(
    "--write-kubeconfig",
    default=defaults.SERVER_KUBECONFIG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the admin kubeconfig (mode 0600)",
)
@click.option(
    "--token",
    default=None,
    envvar="CORRAL_TOKEN",
    help="the join secret agents present (generated when absent)",
)
@click.option(
    "--datastore-endpoint",
    default="",
    show_default="embedded SQLite",
    help="sqlite:///path, or etcd://host:2379,host:2379 for an etcd cluster",
)
@click.option(
    "--cluster-cidr",
    default="10.42.0.0/16",
    show_default=True,
    help="pod addresses: the node IPAM gives each node a /24 of it",
)
@click.option(
    "--service-cidr",
    default="10.43.0.0/16",
    show_default=True,
    help="service addresses: each Service's clusterIP (the first one: the kubernetes service)",
)
@click.option(
    "--cluster-dns",
    default="",
    show_default="the service CIDR's 10th address (10.43.0.10)",
    help="the cluster DNS Service's (kube-system/kube-dns) clusterIP, the pods' nameserver",
)
@click.option(
    "--cluster-domain", default="cluster.local", show_default=True, help="the cluster's DNS zone"
)
@click.option(
    "--service-node-port-range",
    default="30000-32767",
    show_default=True,
    help="the ports NodePort services get",
)
@click.option("--disable-agent", is_flag=True, help="run no agent (kubelet) in this process")
@click.option(
    "--kubelet-netns",
    default=None,
    help="network namespace (a path) to reach kubelets from (a cluster on one machine)",
)
@click.option(
    "--disable-proxy",
    "--disable-kube-proxy",
    is_flag=True,
    help="the server's own agent runs no service proxy",
)
@click.option(
    "--disable-network-policy",
    is_flag=True,
    help="the server's own agent enforces no NetworkPolicy (k3s' flag)",
)
@click.option(
    "--token-auth-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help='static bearer tokens, CSV lines token,user,uid[,"group1,group2"] (kube-apiserver)',
)
@click.option("--audit-log-path", help="write the audit log (JSON lines) here; - for stdout")
@click.option(
    "--audit-log-maxsize",
    default=0,
    type=click.IntRange(0),
    help="megabytes before the audit log is rotated (0: never)",
)
@click.option(
    "--audit-log-maxbackup",
    default=0,
    type=click.IntRange(0),
    help="rotated audit logs to keep (0: all)",
)
@click.option(
    "--max-requests-inflight",
    default=400,
    show_default=True,
    type=click.IntRange(0),
    help="non-mutating requests served at once before 429 (0: no limit)",
)
@click.option(
    "--max-mutating-requests-inflight",
    default=200,
    show_default=True,
    type=click.IntRange(0),
    help="mutating requests served at once before 429 (0: no limit)",
)
@click.option(
    "--max-watches-per-user",
    default=500,
    show_default=True,
    type=click.IntRange(0),
    help="watches one user may hold open at once before 429 (0: no limit)",
)
@click.option(
    "--request-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds a request's body may take to arrive before 504 (kube-apiserver's 1m0s)",
)
@click.option(
    "--read-header-timeout",
    default=32.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    hidden=True,  # (for tests: kube-apiserver's is fixed)
    help="seconds a request's head may take to arrive before the connection is closed"
    " (kube-apiserver's fixed ReadHeaderTimeout)",
)
@click.option(
    "--idle-timeout",
    default=90.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    hidden=True,  # (for tests: kube-apiserver's is fixed)
    help="seconds a connection may wait between requests before it is closed"
    " (kube-apiserver's fixed IdleTimeout)",
)
@click.option("--disable-scheduler", is_flag=True, help="run no scheduler in this process")
@click.option(
    "--disable-controller-manager",
    is_flag=True,
    help="run no controllers (replicaset, deployment, garbage collector, ...) in this process",
)
@click.option(
    "--disable",
    "disable",
    multiple=True,
    type=click.Choice(["servicelb", "local-storage", "traefik"]),
    help="do not deploy this packaged component, as k3s names them (repeatable): servicelb"
    " (LoadBalancer addresses), local-storage (the local-path class and provisioner);"
    " traefik: Corral bundles no ingress controller, nothing to disable",
)
@click.option(
    "--disable-controller",
    "disable_controllers",
    multiple=True,
    metavar="NAME",
    help="do not run this controller (repeatable)",
)
@click.option(
    "--node-monitor-grace-period",
    default=40.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds without a Lease renewal before a node is marked not ready",
)
@click.option(
    "--default-not-ready-toleration-seconds",
    default=300,
    show_default=True,
    type=click.IntRange(min=0),
    help="the toleration of node.kubernetes.io/not-ready:NoExecute given to every pod",
)
@click.option(
    "--default-unreachable-toleration-seconds",
    default=300,
    show_default=True,
    type=click.IntRange(min=0),
    help="the toleration of node.kubernetes.io/unreachable:NoExecute given to every pod",
)
def server(
    data_dir: Path,
    bind_address: str,
    https_listen_port: int,
    advertise_address: str | None,
    advertise_port: int | None,
    advertise_netns: str | None,
    write_kubeconfig: Path,
    token: str | None,
    datastore_endpoint: str,
    cluster_cidr: str,
    service_cidr: str,
    cluster_dns: str,
    cluster_domain: str,
    service_node_port_range: str,
    disable_agent: bool,
    kubelet_netns: str | None,
    disable_proxy: bool,
    disable_network_policy: bool,
    disable_scheduler: bool,
    disable_controller_manager: bool,
    disable: tuple[str, ...],
    disable_controllers: tuple[str, ...],
    node_monitor_grace_period: float,
    default_not_ready_toleration_seconds: int,
    default_unreachable_toleration_seconds: int,
    token_auth_file: Path | None,
    audit_log_path: str | None,
    audit_log_maxsize: int,
    audit_log_maxbackup: int,
    max_requests_inflight: int,
    max_mutating_requests_inflight: int,
    max_watches_per_user: int,
    request_timeout: float,
    read_header_timeout: float,
    idle_timeout: float,
) -> None:
    """Run the Kubernetes API server, with an embedded SQLite store by default."""
    from orchestrator.apiserver import ServerConfig, ServerError, run_server

    cfg = ServerConfig(
        data_dir=data_dir,
        bind_address=bind_address,
        https_listen_port=https_listen_port,
        advertise_address=advertise_address,
        advertise_port=advertise_port,
        advertise_netns=advertise_netns,
        write_kubeconfig=write_kubeconfig,
        token=token,
        datastore_endpoint=datastore_endpoint,
        disable_agent=disable_agent,
        kubelet_netns=kubelet_netns,
        disable_proxy=disable_proxy,
        disable_network_policy=disable_network_policy,
        disable_scheduler=disable_scheduler,
        disable_controller_manager=disable_controller_manager,
        disable=disable,
        disable_controllers=disable_controllers,
        node_monitor_grace_period=node_monitor_grace_period,
        default_not_ready_toleration_seconds=default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=default_unreachable_toleration_seconds,
        cluster_cidr=cluster_cidr,
        service_cidr=service_cidr,
        cluster_dns=cluster_dns,
        cluster_domain=cluster_domain,
        service_node_port_range=service_node_port_range,
        token_auth_file=token_auth_file,
        audit_log_path=audit_log_path,
        audit_log_maxsize=audit_log_maxsize,
        audit_log_maxbackup=audit_log_maxbackup,
        max_requests_inflight=max_requests_inflight,
        max_mutating_requests_inflight=max_mutating_requests_inflight,
        max_watches_per_user=max_watches_per_user,
        request_timeout=request_timeout,
        read_header_timeout=read_header_timeout,
        idle_timeout=idle_timeout,
    )
    try:
        run_server(cfg)
    except ServerError as e:
        raise Failure("server", e) from e


@click.group("secrets-encrypt")
def secrets_encrypt() -> None:
    """Secrets encryption at rest (AES-GCM keys in <data-dir>/cred/encryption-config.yaml)."""


@secrets_encrypt.command("rotate")
@click.option(
    "--data-dir",
    default=defaults.SERVER_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the server's data dir",
)
@click.option(
    "--datastore-endpoint",
    default="",
    show_default="embedded SQLite",
    help="the store the server uses (as corral server)",
)
def rotate(data_dir: Path, datastore_endpoint: str) -> None:
    """Encrypt every secret with a new key and drop the old one. Stop the server first (and
    every server sharing the datastore; copy the new configuration to each)."""
    from orchestrator.apiserver.server import ServerError, rotate_secrets_key

    try:
        name, count = rotate_secrets_key(data_dir, datastore_endpoint)
    except ServerError as e:
        raise Failure("secrets-encrypt rotate", e) from e
    click.echo(f"secrets encrypted with new key {name}: {count} secret(s) rewritten")


@click.command("scheduler")
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="how to reach the API server (as kube-scheduler's --kubeconfig)",
)
@click.option(
    "--scheduler-name",
    default="default-scheduler",
    show_default=True,
    help="schedule the pods whose spec.schedulerName is this",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=True,
    show_default=True,
    help="take the kube-system/kube-scheduler Lease before scheduling",
)
@click.option(
    "--percentage-of-nodes-to-score",
    default=0,
    type=click.IntRange(0, 100),
    help="0: kube-scheduler's adaptive percentage",
)
def scheduler(
    kubeconfig: Path, scheduler_name: str, leader_elect: bool, percentage_of_nodes_to_score: int
) -> None:
    """Run the scheduler alone against an API server (as kube-scheduler), until SIGTERM."""
    from orchestrator.client import ClientError, load_kubeconfig
    from orchestrator.scheduler import SchedulerConfig, serve_scheduler

    try:
        client = load_kubeconfig(kubeconfig)
    except ClientError as e:
        raise Failure("scheduler", e) from e
    serve_scheduler(
        client,
        SchedulerConfig(
            scheduler_name=scheduler_name,
            leader_elect=leader_elect,
            percentage_of_nodes_to_score=percentage_of_nodes_to_score,
        ),
    )


def register(cli: click.Group) -> None:
    cli.add_command(server)
    cli.add_command(secrets_encrypt)
    cli.add_command(scheduler)
