"""corral: the rkt-style front end (pods and images arrive with their issues)."""

from __future__ import annotations

import json

import click

from .. import container
from ..state import DEFAULT_ROOT

VERSION = "0.1.0"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, "-v", "--version", message="corral version %(version)s")
def cli() -> None:
    """Corral: run containers and pods."""


@cli.command("ps")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="OCI state directory")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def ps(root: str, as_json: bool) -> None:
    """List OCI containers created by corral-oci under --root."""
    items = container.list_containers(root)
    if as_json:
        click.echo(json.dumps(items))
        return
    for it in items:
        click.echo(f"{it['id']}\t{it['status']}\t{it['pid']}\t{it['bundle']}")


def main() -> None:
    cli(prog_name="corral")
