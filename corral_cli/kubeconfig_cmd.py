"""``corral kubeconfig``: a user's kubeconfig, with a client certificate the cluster CA signs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corral_common import defaults, hostsys

from .errors import Failure


@click.command("kubeconfig")
@click.option("--user", "user", required=True, help="the user name (certificate CN)")
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="a group of the user (certificate O), repeatable; system:masters is cluster-admin",
)
@click.option(
    "--data-dir",
    default=defaults.SERVER_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the server's data dir (its CA signs the certificate)",
)
@click.option("--server", "server_url", help="API server URL (default: the admin kubeconfig's)")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1), help="validity")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here (mode 0600) instead of standard output",
)
def kubeconfig(
    user: str,
    groups: tuple[str, ...],
    data_dir: Path,
    server_url: str | None,
    days: int,
    output: Path | None,
) -> None:
    """Issue a kubeconfig for USER: what the user may do is then up to RBAC
    (e.g. kubectl create rolebinding ... --clusterrole=view --user=USER)."""
    from orchestrator.apiserver import ServerError
    from orchestrator.apiserver.server import user_kubeconfig

    try:
        doc = user_kubeconfig(data_dir, server_url, user, groups, days)
    except ServerError as e:
        raise Failure("kubeconfig", e) from e
    if output is None:
        sys.stdout.buffer.write(doc)
        return
    try:
        hostsys.write_atomic(output, doc, 0o600)
    except hostsys.HostError as e:
        raise Failure("kubeconfig", e) from e


def register(cli: click.Group) -> None:
    cli.add_command(kubeconfig)
