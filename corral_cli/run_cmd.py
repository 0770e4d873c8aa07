"""``corral run``, ``ps``, ``logs``, ``stop``, ``rm``: containers from images, like podman's.

Each command parses its arguments and calls one function of ``runtime.ctr``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from corral_common import defaults

from .errors import FAILED, Failure, failing, report
from .pod_cmd import network_config_option, node_netns_option

if TYPE_CHECKING:
    from runtime import ctr

F = TypeVar("F", bound=Callable[..., Any])

# runtime.ctr's defaults, from where both read them: `corral` starts without importing
# runtime.ctr (each command imports it when it runs).
IMAGE_ROOT = defaults.IMAGE_ROOT
STATE_ROOT = defaults.CONTAINER_STATE_ROOT


def _paths_options(fn: F) -> F:
    fn = click.option(
        "--state-root",
        envvar="CORRAL_STATE_ROOT",
        default=STATE_ROOT,
        show_default=True,
        help="runtime state of running containers",
    )(fn)
    fn = click.option(
        "--store",
        envvar="CORRAL_IMAGE_STORE",
        default=IMAGE_ROOT,
        show_default=True,
        help="image store; containers live in its containers/ directory",
    )(fn)
    return fn


def _paths(store: str, state_root: str) -> ctr.Paths:
    from runtime import ctr

    return ctr.Paths(store=store, state_root=state_root)


def _memory(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from runtime import ctr

    try:
        return ctr.parse_memory(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    short_help="Run a command in a new container from an image.",
)
@click.option("--rm", "rm", is_flag=True, help="remove the container when it exits")
@click.option("-d", "--detach", is_flag=True, help="run in the background; print the id")
@click.option("--name", default=None, help="a name for the container")
@click.option("-e", "--env", multiple=True, help="K=V (or K: our value of K); repeatable")
@click.option("-w", "--workdir", default=None, help="working directory inside the container")
@click.option("-u", "--user", default=None, help="user[:group], names or ids, from the image")
@click.option("--entrypoint", default=None, help='entrypoint: a command, a JSON array or ""')
@click.option("-m", "--memory", callback=_memory, default=None, help="memory limit (512m, 1g)")
@click.option("--cpus", type=float, default=None, help="CPU limit, in CPUs (1.5)")
@click.option(
    "--network",
    default=None,
    help="none (a namespace with lo only), host, or the pod network (bridge, or its name)"
    " [default: the pod network when a network config is set, else none]",
)
@click.option(
    "-v",
    "--volume",
    "volumes",
    multiple=True,
    help="SRC:DST[:OPTS]: bind a host path (absolute) or a named volume; OPTS ro, nosuid, ...",
)
@click.option(
    "-p",
    "--publish",
    multiple=True,
    help="HOSTPORT:CTRPORT[/tcp|udp] on the pod network; repeatable",
)
@click.option(
    "--restart",
    default="no",
    show_default=True,
    help="no, on-failure[:N] or always: restart a detached container when it exits",
)
@network_config_option
@node_netns_option
@click.option("-t", "--tty", is_flag=True, help="allocate a terminal")
@click.option("-i", "--interactive", is_flag=True, help="accepted; stdin always passes through")
@click.option("--hostname", default=None, help="hostname (default: the short id)")
@click.option(
    "--cgroup-parent",
    default=None,
    help="cgroup parent; relative paths are below our own cgroup"
    f" [default: {defaults.RUN_CGROUP_PARENT}]",
)
@_paths_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_command(
    rm: bool,
    detach: bool,
    name: str | None,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    entrypoint: str | None,
    memory: int | None,
    cpus: float | None,
    network: str | None,
    volumes: tuple[str, ...],
    publish: tuple[str, ...],
    restart: str,
    network_config: str | None,
    node_netns: str | None,
    tty: bool,
    interactive: bool,
    hostname: str | None,
    cgroup_parent: str | None,
    store: str,
    state_root: str,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's Entrypoint and Cmd) in a new container from IMAGE.

    In the foreground stdio passes through and corral exits with the container's exit code
    (128+N when signal N killed it; 125 when corral failed, 126/127 when the command cannot be
    run or does not exist). With -d, the id is printed and the container's output goes to a
    log (`corral logs`), and it runs under corral-monitor, which restarts it by --restart.
    Without --rm, an exited container stays until `corral rm`.
    """
    del interactive
    from runtime import ctr

    opts = ctr.RunOptions(
        image=image, command=command, name=name, env=env, workdir=workdir, user=user,
        entrypoint=entrypoint, memory=memory, cpus=cpus, network=network, tty=tty, rm=rm,
        detach=detach, cgroup_parent=cgroup_parent, hostname=hostname, volumes=volumes,
        publish=publish, restart=restart, network_config=network_config, node_netns=node_netns,
    )  # fmt: skip
    paths = _paths(store, state_root)
    with failing(f"run {image}"):
        if detach:
            click.echo(ctr.run_detached(opts, paths).id)
            return
        code = ctr.run(opts, paths)
    sys.exit(code)


def _ago(created: str) -> str:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created or "-"
    s = int((datetime.now(UTC) - then).total_seconds())
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            return f"{s // n} {unit}{'s' if s // n > 1 else ''} ago"
    return f"{max(s, 0)} seconds ago"


def _status(i: ctr.Info) -> str:
    if i.status == "exited":
        return f"exited ({i.exit_code})" if i.exit_code is not None else "exited (unknown)"
    if i.restarts:
        return f"{i.status} ({i.restarts} restarts)"
    return i.status


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="exited containers too")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_paths_options
def ps_command(all_: bool, as_json: bool, store: str, state_root: str) -> None:
    """List containers made by `corral run` (running ones; -a for all)."""
    from runtime import ctr

    with failing("ps"):
        items = ctr.list_containers(_paths(store, state_root), all_)
    if as_json:
        click.echo(json.dumps([i.to_json() for i in items]))
        return
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for i in items:
        cmd = " ".join(i.meta.command)
        cmd = cmd if len(cmd) <= 24 else cmd[:21] + "..."
        rows.append(
            (i.meta.short_id, i.meta.image, cmd, _ago(i.meta.created), _status(i), i.meta.name)
        )
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5])


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="keep printing until the container exits")
@_paths_options
@click.argument("container")
def logs_command(follow: bool, store: str, state_root: str, container: str) -> None:
    """Print the output of a detached container (its stderr lines on stderr)."""
    from runtime import ctr

    with failing(f"logs {container}"):
        ctr.logs(_paths(store, state_root), container, sys.stdout.buffer, sys.stderr.buffer,
                 follow)  # fmt: skip


@click.command("stop")
@click.option("-t", "--time", "timeout", type=float, default=10.0, show_default=True,
              help="seconds to wait before SIGKILL")  # fmt: skip
@_paths_options
@click.argument("containers", nargs=-1, required=True)
def stop_command(timeout: float, store: str, state_root: str, containers: tuple[str, ...]) -> None:
    """Stop containers: their stop signal (SIGTERM unless the image says), then SIGKILL."""
    from runtime import ctr

    paths = _paths(store, state_root)
    for ref in containers:
        with failing(f"stop {ref}"):
            ctr.stop(paths, ref, timeout)
            click.echo(ref)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="kill a running container first")
@_paths_options
@click.argument("containers", nargs=-1, required=True)
def rm_command(force: bool, store: str, state_root: str, containers: tuple[str, ...]) -> None:
    """Remove containers: state, rootfs mount, upper dir, image ref."""
    from runtime import ctr

    paths = _paths(store, state_root)
    failed = False
    for ref in containers:  # each one that can go goes; then exit 1 if one could not
        try:
            with failing(f"rm {ref}"):
                ctr.remove(paths, ref, force)
                click.echo(ref)
        except Failure as f:
            report(f)
            failed = True
    if failed:
        sys.exit(FAILED)


COMMANDS = (run_command, ps_command, logs_command, stop_command, rm_command)


def register(group: click.Group) -> None:
    for cmd in COMMANDS:
        group.add_command(cmd)
