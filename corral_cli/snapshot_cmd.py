"""``corral snapshot save|ls|restore``: snapshots of the embedded SQLite store (as k3s'
``etcd-snapshot``); over etcd, ``etcdctl snapshot save`` does this."""

from __future__ import annotations

import time
from pathlib import Path

import click

from corral_common import defaults

from .errors import Failure

DATA_DIR = click.option(
    "--data-dir",
    default=defaults.SERVER_DATA_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the server's data dir",
)


def _db(data_dir: Path) -> Path:
    return data_dir / "db" / "state.db"


def _snapshots(data_dir: Path) -> Path:
    return data_dir / "db" / "snapshots"


@click.group("snapshot")
def snapshot() -> None:
    """Snapshots of the embedded SQLite store (saved while the server runs)."""


@snapshot.command("save")
@DATA_DIR
@click.option("--name", help="the snapshot's name (default on-demand-<host>-<unix time>)")
def save_cmd(data_dir: Path, name: str | None) -> None:
    """Save a consistent copy of the store in <data-dir>/db/snapshots/NAME.db."""
    import socket

    from orchestrator.store.snapshot import SUFFIX, SnapshotError, save

    name = name or f"on-demand-{socket.gethostname()}-{int(time.time())}"
    if "/" in name or name.startswith("."):
        raise click.BadParameter(f"{name!r}: a file name, without / nor a leading dot")
    try:
        snap = save(_db(data_dir), _snapshots(data_dir) / f"{name}{SUFFIX}")
    except SnapshotError as e:
        raise Failure("snapshot save", e) from e
    click.echo(f"{snap.path} (revision {snap.revision}, {snap.keys} keys, {snap.size} bytes)")


@snapshot.command("ls")
@DATA_DIR
def ls_cmd(data_dir: Path) -> None:
    """The snapshots saved in <data-dir>/db/snapshots."""
    from orchestrator.store.snapshot import list_snapshots

    for s in list_snapshots(_snapshots(data_dir)):
        click.echo(f"{s.path}\trevision {s.revision}\t{s.keys} keys\t{s.size} bytes")


@snapshot.command("restore")
@DATA_DIR
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def restore_cmd(data_dir: Path, path: Path) -> None:
    """Replace the store with the snapshot PATH (stop the server first). The database it
    replaces is kept beside it; clients that watched before get 410 Gone and list again."""
    from orchestrator.store.snapshot import SnapshotError, restore

    try:
        snap, kept = restore(path, _db(data_dir))
    except SnapshotError as e:
        raise Failure("snapshot restore", e) from e
    click.echo(f"restored {path} into {snap.path} (now at revision {snap.revision})")
    if kept is not None:
        click.echo(f"the previous database is kept as {kept}")


def register(cli: click.Group) -> None:
    cli.add_command(snapshot)
