"""``corral``: assembles the images, run, pod and network commands above every layer.

The entry point of the ``corral`` console script (and of ``python -m corral_cli``). A command's
module is imported when that command runs (or ``--help`` lists it), not before: ``corral agent``
holds for good what it imported (issues #15, #20), and the server's, the image store's and the
cluster's commands are no part of it (click's lazily loading group).
"""

from __future__ import annotations

import importlib

import click

from corral_common.cli import version_option

from .errors import Group

# Each command and the module whose register(cli) adds it (a module adds all of its own).
COMMAND_MODULES = {
    "image": "image_cmd",  # image import, ls, inspect, rm, prune, save, pull, push
    "login": "image_cmd",
    "logout": "image_cmd",
    "run": "run_cmd",
    "ps": "run_cmd",
    "logs": "run_cmd",
    "stop": "run_cmd",
    "rm": "run_cmd",
    "pod": "pod_cmd",  # pod run, ls, inspect, logs, exec, stop, rm, gc
    "network": "network_cmd",  # network gc
    "server": "server_cmd",
    "secrets-encrypt": "server_cmd",
    "scheduler": "server_cmd",
    "kubeconfig": "kubeconfig_cmd",  # a user's, signed by the cluster CA
    "snapshot": "snapshot_cmd",  # snapshot save|ls|restore (the SQLite store)
    "agent": "agent_cmd",
    "cluster": "cluster_cmd",  # cluster up, down
}


class LazyGroup(Group):
    """The root group: lists every command by name; imports a command's module at its use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f"{__package__}.{module}").register(self)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@version_option(lambda v: f"corral version {v}")
def cli() -> None:
    """Corral: run containers and pods."""


def main() -> None:
    cli(prog_name="corral")
