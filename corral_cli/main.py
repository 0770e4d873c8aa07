"""``corral``: assembles the images, run, pod and network commands above every layer.

The entry point of the ``corral`` console script (and of ``python -m corral_cli``).
"""

from __future__ import annotations

import click

from corral_common.cli import version_option

from . import (
    agent_cmd,
    cluster_cmd,
    image_cmd,
    kubeconfig_cmd,
    network_cmd,
    pod_cmd,
    run_cmd,
    server_cmd,
    snapshot_cmd,
)
from .errors import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@version_option(lambda v: f"corral version {v}")
def cli() -> None:
    """Corral: run containers and pods."""


image_cmd.register(cli)  # image import, ls, inspect, rm, prune, save
run_cmd.register(cli)  # run, ps, logs, stop, rm
pod_cmd.register(cli)  # pod run, ls, inspect, logs, exec, stop, rm, gc
network_cmd.register(cli)  # network gc
server_cmd.register(cli)  # server
kubeconfig_cmd.register(cli)  # kubeconfig (a user's, signed by the cluster CA)
snapshot_cmd.register(cli)  # snapshot save|ls|restore (the SQLite store)
agent_cmd.register(cli)  # agent
cluster_cmd.register(cli)  # cluster up, down


def main() -> None:
    cli(prog_name="corral")
