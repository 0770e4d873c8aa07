"""``corral image ...``: each command parses its arguments and calls one
``images.store.Store`` method."""

from __future__ import annotations

import json
from typing import Any

import click

from corral_common import defaults

from .errors import failing


def _store(ctx: click.Context) -> Any:
    from runtime import _dataclass_cache

    _dataclass_cache.install()  # the store's dataclasses from the table setup.sh writes
    from images.store import Store

    with failing("image store"):
        return Store(ctx.obj or defaults.IMAGE_ROOT)


@click.group("image")
@click.option(
    "--store",
    envvar="CORRAL_IMAGE_STORE",
    default=None,
    help=f"image store directory [default: {defaults.IMAGE_ROOT}]",
)
@click.pass_context
def image(ctx: click.Context, store: str | None) -> None:
    """Import, list, inspect, remove and save images."""
    ctx.obj = store


@image.command("import")
@click.argument("path", type=click.Path(exists=True))
@click.option("--name", default=None, help="name for the image (default: from the archive)")
@click.option(
    "--platform",
    "platform_",
    default=None,
    metavar="OS/ARCH[/VARIANT]",
    help="import the image for this platform (default: this host's; others are refused)",
)
@click.pass_context
def image_import(ctx: click.Context, path: str, name: str | None, platform_: str | None) -> None:
    """Import a docker-archive, an oci-archive or an OCI layout directory."""
    from images.platforms import parse

    from .progress import bar

    store = _store(ctx)
    with failing("image import"):
        want = parse(platform_) if platform_ else None
        with bar("import") as progress:
            images = store.import_path(path, name=name, progress=progress, platform=want)
        for img in images:
            click.echo(f"{img.id} {' '.join(img.names)}".rstrip())


@image.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def image_ls(ctx: click.Context, as_json: bool) -> None:
    """List images: name, id, size, created."""
    from .progress import human

    images = _store(ctx).images()
    if as_json:
        click.echo(json.dumps([i.to_json() for i in images]))
        return
    rows = [("NAME", "ID", "SIZE", "CREATED")]
    for img in images:
        for name in img.names or ("<none>",):
            rows.append((name, img.short_id, human(img.size), img.created or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3])


@image.command("inspect")
@click.argument("ref")
@click.pass_context
def image_inspect(ctx: click.Context, ref: str) -> None:
    """Print an image's record and config as JSON."""
    store = _store(ctx)
    with failing("image inspect"):
        click.echo(json.dumps(store.inspect(ref), indent=2))


@image.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="untag even while containers use it")
@click.pass_context
def image_rm(ctx: click.Context, refs: tuple[str, ...], force: bool) -> None:
    """Remove images (refused while a container uses one, unless --force)."""
    store = _store(ctx)
    for ref in refs:
        with failing("image rm"):
            click.echo(store.remove(ref, force=force).id)


@image.command("prune")
@click.pass_context
def image_prune(ctx: click.Context) -> None:
    """Remove unnamed unused images and unreferenced blobs and layers."""
    store = _store(ctx)
    with failing("image prune"):
        res = store.prune()
    click.echo(
        f"removed {len(res.images)} images, {len(res.blobs)} blobs, {len(res.layers)} layers"
    )


@image.command("save")
@click.argument("ref")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="file")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker-archive", "oci-archive"]),
    default="docker-archive",
    show_default=True,
)
@click.pass_context
def image_save(ctx: click.Context, ref: str, output: str, fmt: str) -> None:
    """Write an image to a docker-archive or oci-archive file."""
    from .progress import bar

    store = _store(ctx)
    with failing("image save"), bar("save") as progress:
        store.save(ref, output, fmt, progress=progress)


def register(cli: click.Group) -> None:
    from . import registry_cmd

    cli.add_command(image)
    registry_cmd.register(cli, image, _store)  # image pull, image push, login, logout
