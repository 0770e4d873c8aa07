"""``corral``: assembles the images, run, pod and network commands above every layer.

The entry point of the ``corral`` console script (and of ``python -m corral_cli``).
"""

from __future__ import annotations

import click

from . import image_cmd, network_cmd, pod_cmd, run_cmd, server_cmd
from .errors import Group


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    # Not click.version_option: it looks up a translation of its help text at import, and
    # the version comes from the package metadata, whose module is slow to import: only here.
    if value and not ctx.resilient_parsing:
        from corral_common.version import version

        click.echo(f"corral version {version()}")
        ctx.exit()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """Corral: run containers and pods."""


image_cmd.register(cli)  # image import, ls, inspect, rm, prune, save
run_cmd.register(cli)  # run, ps, logs, stop, rm
pod_cmd.register(cli)  # pod run, ls, inspect, logs, exec, stop, rm, gc
network_cmd.register(cli)  # network gc
server_cmd.register(cli)  # server


def main() -> None:
    cli(prog_name="corral")
