"""corral-oci's click command line: every command, its help and its usage errors.

``runtime.cli.oci`` runs the hot commands (create, start, state, kill, delete, run) itself
when their arguments are plain, and hands everything else to ``cli`` here. The hot commands
below call the same functions as that fast path, so both behave alike.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from corral_common.cli import version_option

from ..errors import CorralError
from .oci import (
    DEFAULT_ROOT,
    EXEC_FAILED,
    SPEC_VERSION,
    Ctx,
    _call,
    _fail,
    do_create,
    do_delete,
    do_kill,
    do_run,
    do_start,
    do_state,
)

# Each command imports the library modules it uses when it runs: `corral-oci state` does not
# pay for the config model, the planner or the C core, and `spec` not for the lifecycle.

pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="state directory")
@click.option("--log", default=None, help="append errors to this file")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option("--debug", is_flag=True, help="print debug output")
@click.option("--systemd-cgroup", is_flag=True, help="use systemd for cgroups (unsupported)")
@click.option("--rootless", default="auto", hidden=True)
@click.option("--criu", default=None, hidden=True)
@version_option(lambda v: f"corral-oci version {v}\nspec: {SPEC_VERSION}")
@click.pass_context
def cli(
    cctx: click.Context,
    root: str,
    log: str | None,
    log_format: str,
    debug: bool,
    systemd_cgroup: bool,
    rootless: str,
    criu: str | None,
) -> None:
    """A runc-compatible OCI runtime."""
    ctx = Ctx(root, log, log_format, debug)
    cctx.obj = ctx
    if systemd_cgroup:
        _fail(
            ctx,
            "systemd-cgroup",
            CorralError("the systemd cgroup driver is not supported: no systemd on this host"),
        )


_create_opts = [
    click.option("-b", "--bundle", default=".", help="path to the bundle directory"),
    click.option("--console-socket", default=None, help="unix socket for the pty master"),
    click.option("--pid-file", default=None, help="write the container's pid here"),
    click.option("--no-pivot", is_flag=True, help="use chroot instead of pivot_root"),
    click.option("--no-new-keyring", is_flag=True, help="keep the session keyring"),
    click.option("--preserve-fds", default=0, type=int, help="pass fds 3..3+N-1 through"),
]


def _with(opts: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def deco(f: Any) -> Any:
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _opts(params: dict[str, Any]) -> dict[str, Any]:
    """A command's parameters as the fast path's option dict (without ctx and the id)."""
    return {k: v for k, v in params.items() if k not in ("ctx", "container_id")}


@cli.command()
@click.argument("container_id")
@_with(_create_opts)
@pass_ctx
def create(
    ctx: Ctx,
    container_id: str,
    bundle: str,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
) -> None:
    """Create a container; its process waits for `start`."""
    do_create(ctx, container_id, _opts(locals()))


@cli.command()
@click.argument("container_id")
@_with(_create_opts)
@click.option("-d", "--detach", is_flag=True, help="do not wait for the container to exit")
@click.option("--keep", is_flag=True, help="keep the container's state after it exits")
@click.option(
    "--start-gate",
    default=None,
    type=int,
    help="created, wait for a byte 'g' on this fd before start (EOF cancels the run)",
)
@pass_ctx
def run(
    ctx: Ctx,
    container_id: str,
    bundle: str,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
    detach: bool,
    keep: bool,
    start_gate: int | None,
) -> None:
    """Create and start a container, and wait for it; exits with its exit code."""
    sys.exit(do_run(ctx, container_id, _opts(locals())))


@cli.command()
@click.argument("container_id")
@pass_ctx
def start(ctx: Ctx, container_id: str) -> None:
    """Start a created container."""
    do_start(ctx, container_id, {})


@cli.command()
@click.argument("container_id")
@pass_ctx
def state(ctx: Ctx, container_id: str) -> None:
    """Print the state of a container as JSON."""
    do_state(ctx, container_id, {})


def _parse_user(value: str) -> tuple[int, int | None]:
    uid, _, gid = value.partition(":")
    try:
        return int(uid), int(gid) if gid else None
    except ValueError:
        raise CorralError(f"--user {value!r}: expected UID[:GID] as numbers") from None


def _exec_process(
    container_id: str,
    root: str,
    process_file: str | None,
    command: tuple[str, ...],
    overrides: dict[str, Any],
) -> Any:
    from .. import config
    from ..execproc import ProcessOverrides, process_from_flags
    from ..state import StateDir

    if process_file:
        try:
            with open(process_file, "rb") as f:
                obj = json.loads(config.read_json_bytes(f, f"--process {process_file}"))
        except OSError as e:
            raise CorralError(f"read --process {process_file}: {e.strerror}") from None
        except ValueError as e:
            raise CorralError(f"--process {process_file}: invalid JSON: {e}") from None
        return config.parse_process(obj)
    st = StateDir(root, container_id).load()
    spec = config.load_spec(st.bundle)
    if spec.process is None:
        raise CorralError("the container's config has no process")
    return process_from_flags(spec.process, ProcessOverrides(args=command, **overrides))


@cli.command(
    "exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": False}
)
@click.argument("container_id")
@click.argument("command", nargs=-1)
@click.option("--console-socket", default=None, help="send the pty master to this unix socket")
@click.option("--cwd", default=None, help="working directory in the container")
@click.option("-e", "--env", multiple=True, help="NAME=VALUE to set")
@click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-terminal")
@click.option("-u", "--user", default=None, help="UID[:GID]")
@click.option("-g", "--additional-gids", multiple=True, type=int, help="additional gids")
@click.option("-p", "--process", "process_file", default=None, help="a process.json to run")
@click.option("-d", "--detach", is_flag=True, help="do not wait for the process")
@click.option("--pid-file", default=None, help="write the process's pid here")
@click.option("--process-label", default=None, hidden=True)
@click.option("--apparmor", default=None, hidden=True)
@click.option("--no-new-privs", is_flag=True, help="set no_new_privs")
@click.option("-c", "--cap", multiple=True, help="add a capability")
@click.option("--preserve-fds", default=0, type=int, help="pass N more fds (from 3)")
@click.option("--cgroup", default=None, hidden=True)
@click.option("--ignore-paused", is_flag=True, hidden=True)
@pass_ctx
def exec_(
    ctx: Ctx,
    container_id: str,
    command: tuple[str, ...],
    console_socket: str | None,
    cwd: str | None,
    env: tuple[str, ...],
    tty: bool,
    user: str | None,
    additional_gids: tuple[int, ...],
    process_file: str | None,
    detach: bool,
    pid_file: str | None,
    process_label: str | None,
    apparmor: str | None,
    no_new_privs: bool,
    cap: tuple[str, ...],
    preserve_fds: int,
    cgroup: str | None,
    ignore_paused: bool,
) -> None:
    """Run a new process in a running container."""
    from ..execproc import ExecOptions, exec_process

    what = f"exec {container_id}"
    # As runc, a failure of exec itself exits 255, so that it is not taken for the exit
    # code of the process.
    overrides: dict[str, Any] = {
        "env": env,
        "cwd": cwd,
        "user": _call(ctx, what, _parse_user, user, code=EXEC_FAILED) if user else None,
        "additional_gids": additional_gids,
        "caps": cap,
        "tty": tty,
        "no_new_privs": no_new_privs,
    }
    process = _call(
        ctx,
        what,
        _exec_process,
        container_id,
        ctx.root,
        process_file,
        command,
        overrides,
        code=EXEC_FAILED,
    )
    opts = ExecOptions(
        root=ctx.root,
        detach=detach,
        pid_file=pid_file,
        console_socket=os.path.abspath(console_socket) if console_socket else None,
        preserve_fds=preserve_fds,
    )
    sys.exit(_call(ctx, what, exec_process, container_id, process, opts, code=EXEC_FAILED))


@cli.command()
@click.argument("container_id")
@click.argument("signal", default="SIGTERM")
@click.option("-a", "--all", "all_procs", is_flag=True, help="signal every process")
@pass_ctx
def kill(ctx: Ctx, container_id: str, signal: str, all_procs: bool) -> None:
    """Send a signal (default SIGTERM) to the container's init process."""
    do_kill(ctx, container_id, {"signal": signal, "all_procs": all_procs})


@cli.command()
@click.argument("container_id")
@click.option("-f", "--force", is_flag=True, help="kill a running container first")
@pass_ctx
def delete(ctx: Ctx, container_id: str, force: bool) -> None:
    """Delete a stopped container and everything create made."""
    do_delete(ctx, container_id, {"force": force})


@cli.command()
@click.argument("container_id")
@pass_ctx
def pause(ctx: Ctx, container_id: str) -> None:
    """Freeze every process of the container."""
    from .. import container

    _call(ctx, f"pause {container_id}", container.pause, container_id, ctx.root)


@cli.command()
@click.argument("container_id")
@pass_ctx
def resume(ctx: Ctx, container_id: str) -> None:
    """Thaw a paused container."""
    from .. import container

    _call(ctx, f"resume {container_id}", container.resume, container_id, ctx.root)


@cli.command("list")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True, help="print only the ids")
@pass_ctx
def list_cmd(ctx: Ctx, fmt: str, quiet: bool) -> None:
    """List the containers under --root."""
    from .. import container

    items = _call(ctx, "list", container.list_containers, ctx.root)
    if quiet:
        for it in items:
            click.echo(it["id"])
    elif fmt == "json":
        click.echo(json.dumps(items, separators=(",", ":")))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [
            (it["id"], str(it["pid"]), it["status"], it["bundle"], it["created"], it["owner"])
            for it in items
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            click.echo("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@cli.command()
@click.option("-b", "--bundle", default=".", help="where to write config.json")
@click.option("--rootless", is_flag=True, help="a spec for a rootless container")
@pass_ctx
def spec(ctx: Ctx, bundle: str, rootless: bool) -> None:
    """Write a default config.json."""
    from .. import config

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        _fail(ctx, "spec", CorralError(f"File {path} exists. Remove it first"))
    data = config.default_spec(rootless=rootless)
    try:
        with open(path, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
    except OSError as e:
        _fail(ctx, "spec", e)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("container_id")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def ps(ctx: Ctx, container_id: str, ps_args: tuple[str, ...], fmt: str) -> None:
    """Show the processes of a container (ps(1) output, or a JSON list of pids)."""
    from .. import manage

    pids = _call(ctx, f"ps {container_id}", manage.processes, container_id, ctx.root)
    if fmt == "json":
        click.echo(json.dumps(pids))
        return
    import subprocess

    try:
        out = subprocess.run(
            ["ps", *(ps_args or ("-ef",))], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        _fail(ctx, f"ps {container_id}", CorralError(f"ps: {e}"))
    lines = out.splitlines()
    if not lines:
        return
    header = lines[0].split()
    if "PID" not in header:
        _fail(ctx, f"ps {container_id}", CorralError("ps output has no PID column"))
    col = header.index("PID")
    click.echo(lines[0])
    wanted = {str(p) for p in pids}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col] in wanted:
            click.echo(line)


@cli.command()
@click.argument("container_id")
@click.option("--stats", is_flag=True, help="print one stats event and exit")
@click.option("--interval", default="5s", help="time between stats events (e.g. 5s, 500ms)")
@pass_ctx
def events(ctx: Ctx, container_id: str, stats: bool, interval: str) -> None:
    """Print container events (stats, oom) as JSON lines."""
    from .. import manage

    what = f"events {container_id}"
    if stats:
        data = _call(ctx, what, manage.stats, container_id, ctx.root)
        click.echo(json.dumps({"type": "stats", "id": container_id, "data": data}))
        return
    seconds = _call(ctx, what, _parse_duration, interval)
    gc.enable()  # main() turned it off for short commands; a stream may run for days

    def stream() -> None:
        for ev in manage.events(container_id, ctx.root, seconds):
            click.echo(json.dumps(ev))
            sys.stdout.flush()

    _call(ctx, what, stream)


def _parse_duration(text: str) -> float:
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)]) * scale
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise CorralError(f"--interval {text!r}: expected a duration such as 5s or 500ms")


@cli.command()
@click.argument("container_id")
@click.option("-r", "--resources", "resources_file", default=None, help="LinuxResources JSON")
@click.option("--memory", default=None)
@click.option("--memory-reservation", default=None)
@click.option("--memory-swap", default=None)
@click.option("--kernel-memory", default=None, hidden=True)
@click.option("--kernel-memory-tcp", default=None, hidden=True)
@click.option("--cpu-shares", default=None)
@click.option("--cpu-quota", default=None)
@click.option("--cpu-period", default=None)
@click.option("--cpu-rt-runtime", default=None)
@click.option("--cpu-rt-period", default=None)
@click.option("--cpuset-cpus", default=None)
@click.option("--cpuset-mems", default=None)
@click.option("--pids-limit", default=None)
@click.option("--blkio-weight", default=None)
@pass_ctx
def update(ctx: Ctx, container_id: str, resources_file: str | None, **flags: str | None) -> None:
    """Change the resource limits of a container."""
    from .. import manage

    what = f"update {container_id}"
    flags.pop("kernel_memory", None)
    flags.pop("kernel_memory_tcp", None)
    if resources_file:
        res = _call(ctx, what, manage.load_resources, resources_file)
    else:
        res = _call(ctx, what, manage.resources_from_flags, flags)
    _call(ctx, what, manage.update, container_id, res, ctx.root)


@cli.command()
@pass_ctx
def features(ctx: Ctx) -> None:
    """Print what this runtime supports (runtime-spec features document)."""
    from corral_common.version import version

    from .. import manage

    click.echo(json.dumps(manage.features(version()), indent=4))
