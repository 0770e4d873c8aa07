"""``corral pod ...``: each command parses its arguments and calls one ``runtime.pod.api``
function. Errors print one line, ``corral: pod <cmd> <pod>: <step>: <reason>``, and exit 1
(:mod:`corral_cli.errors`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from corral_common import defaults

from .errors import FAILED, Failure, failing

DEFAULT_ROOT = defaults.POD_ROOT


@contextmanager
def _errors(what: str) -> Iterator[None]:
    with failing(f"pod {what}"):
        yield


network_config_option = click.option(
    "--network-config",
    envvar="CORRAL_NETWORK_CONFIG",
    default=None,
    help=f"node network config file [default: {defaults.NETWORK_CONFIG}, or built-in]",
)
node_netns_option = click.option(
    "--node-netns", default=None, help="the node's network namespace (a path)"
)


def _opts(ctx: click.Context) -> Any:
    return ctx.obj


@click.group("pod")
@click.option(
    "--root",
    envvar="CORRAL_POD_ROOT",
    default=DEFAULT_ROOT,
    show_default=True,
    help="pod directory root",
)
@click.option(
    "--store",
    envvar="CORRAL_IMAGE_STORE",
    default=defaults.IMAGE_ROOT,
    show_default=True,
    help="image store directory",
)
@click.option(
    "--cgroup-parent",
    envvar="CORRAL_CGROUP_PARENT",
    default=defaults.POD_CGROUP_PARENT,
    show_default=True,
    help="parent of the QoS and pod cgroups (relative: below this process's cgroup)",
)
@network_config_option
@node_netns_option
@click.option("--no-network", is_flag=True, help="pods get a network namespace with lo only")
@click.option("--registries-conf", default=None, help="registries.conf for image pulls")
@click.option("--authfile", default=None, envvar="REGISTRY_AUTH_FILE", help="auth file for pulls")
@click.option("--cert-dir", default=None, help="directory of <host:port>/ca.crt for pulls")
@click.option("--tls-verify", type=bool, default=True, show_default=True,
              help="verify registries' TLS (false also allows plain HTTP)")  # fmt: skip
@click.pass_context
def pod(
    ctx: click.Context,
    root: str,
    store: str,
    cgroup_parent: str,
    network_config: str | None,
    node_netns: str | None,
    no_network: bool,
    registries_conf: str | None,
    authfile: str | None,
    cert_dir: str | None,
    tls_verify: bool,
) -> None:
    """Run Kubernetes Pod manifests: run, ls, inspect, logs, exec, stop, rm, gc."""
    from runtime.pod.prepare import PodOptions

    ctx.obj = PodOptions(
        root=root,
        image_root=store,
        cgroup_parent=cgroup_parent,
        network=not no_network,
        network_config=network_config,
        node_netns=node_netns,
        registries_conf=registries_conf,
        auth_file=authfile,
        certs_dir=cert_dir,
        tls_verify=tls_verify,
    )


def _load(path: str, what: str) -> tuple[Any, Any, str]:
    import os

    from runtime.pod.manifest import ManifestError, parse_pod, read_manifest

    try:
        with open(path, encoding="utf-8") as f:
            raw = read_manifest(f.read())
    except OSError as e:
        raise Failure(f"pod {what}", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise Failure(f"pod {what}", f"{path} is not UTF-8 text") from None
    except ManifestError as e:
        raise Failure(f"pod {what}", f"{path}: {e.message}") from None
    base = os.path.dirname(os.path.abspath(path))
    return parse_pod(raw, base_dir=base), raw, base


def _stream(opts: Any, uid: str, multi: bool, should_stop: Any = None) -> None:
    from runtime.pod import api

    for name, line in api.follow_logs(uid, opts, should_stop=should_stop):
        click.echo(f"[{name}] {line}" if multi else line)


@pod.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-d", "--detach", is_flag=True, help="print the pod's uid and return")
@click.pass_context
def pod_run(ctx: click.Context, file: str, detach: bool) -> None:
    """Run the pod in FILE. In the foreground, stream its logs until it finishes; Ctrl-C
    stops it. Exit 0 when the pod succeeded."""
    from runtime.pod import api

    opts = _opts(ctx)
    with _errors(f"run {file}"):
        manifest, raw, base = _load(file, f"run {file}")
    what = f"run {manifest.name}"
    with _errors(what):
        pd = api.run(manifest, opts, raw, base)
    if detach:
        click.echo(pd.uid)
        return
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        interrupted.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    multi = len(manifest.all_containers) > 1
    try:
        with _errors(what):
            _stream(opts, pd.uid, multi, should_stop=lambda: bool(interrupted))
            if interrupted:
                click.echo(f"corral: stopping pod {manifest.name}", err=True)
                api.stop(pd.uid, opts)
                _stream(opts, pd.uid, multi)
            st = api.status(pd.uid, opts)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    click.echo(f"corral: pod {manifest.name} {st.phase}", err=True)
    sys.exit(0 if st.phase == "Succeeded" else FAILED)


@pod.command("start")
@click.argument("ref")
@click.pass_context
def pod_start(ctx: click.Context, ref: str) -> None:
    """Start a prepared pod (from `pod create`)."""
    from runtime.pod import api

    with _errors(f"start {ref}"):
        click.echo(api.start(ref, _opts(ctx)).uid)


@pod.command("create")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def pod_create(ctx: click.Context, file: str) -> None:
    """Prepare the pod in FILE without starting it; print its uid."""
    from runtime.pod import api

    with _errors(f"create {file}"):
        manifest, raw, base = _load(file, f"create {file}")
        click.echo(api.create(manifest, _opts(ctx), raw, base).uid)


def _age(created: float) -> str:
    s = max(0, int(time.time() - created))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


@pod.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def pod_ls(ctx: click.Context, as_json: bool) -> None:
    """List pods: uid, name, phase, ready containers, restarts, IP, age."""
    from runtime.pod import api

    with _errors("ls"):
        pods = api.list_pods(_opts(ctx))
    if as_json:
        click.echo(json.dumps([p.to_json() for p in pods]))
        return
    rows = [("UID", "NAMESPACE", "NAME", "PHASE", "READY", "RESTARTS", "IP", "AGE")]
    for p in pods:
        ready = sum(c.ready for c in p.containers)
        restarts = sum(c.restart_count for c in p.all_containers)
        rows.append(
            (
                p.uid[:12],
                p.namespace,
                p.name,
                p.phase,
                f"{ready}/{len(p.containers)}",
                str(restarts),
                p.pod_ip or "-",
                _age(p.created),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@pod.command("inspect")
@click.argument("ref")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def pod_inspect(ctx: click.Context, ref: str, output: str) -> None:
    """Show a pod's status in Kubernetes terms."""
    from runtime.pod import api

    with _errors(f"inspect {ref}"):
        st = api.status(ref, _opts(ctx))
    if output == "json":
        click.echo(json.dumps(st.to_json(), indent=2))
        return
    click.echo(f"Name:       {st.namespace}/{st.name}")
    click.echo(f"UID:        {st.uid}")
    click.echo(f"Phase:      {st.phase}" + (f" ({st.reason})" if st.reason else ""))
    click.echo(f"QoS Class:  {st.qos_class}")
    click.echo(f"IP:         {st.pod_ip or '-'}")
    click.echo(f"Directory:  {st.location}/")
    for title, group in (("Init Containers", st.init_containers), ("Containers", st.containers)):
        if not group:
            continue
        click.echo(f"{title}:")
        for c in group:
            detail = c.reason
            if c.state == "Terminated":
                detail = f"{c.reason}, exit code {c.exit_code}"
            click.echo(f"  {c.name}:")
            click.echo(f"    Image:     {c.image}")
            click.echo(f"    State:     {c.state}" + (f" ({detail})" if detail else ""))
            if c.message:
                click.echo(f"    Message:   {c.message}")
            click.echo(f"    Ready:     {str(c.ready).lower()}")
            click.echo(f"    Restarts:  {c.restart_count}")


@pod.command("logs")
@click.argument("ref")
@click.option("-f", "--follow", is_flag=True, help="follow until the pod finishes")
@click.option("-c", "--container", default=None, help="container name")
@click.option("-p", "--previous", is_flag=True, help="the container's previous run")
@click.pass_context
def pod_logs(
    ctx: click.Context, ref: str, follow: bool, container: str | None, previous: bool
) -> None:
    """Print a container's log (its text, without the CRI fields)."""
    from runtime.pod import api

    opts = _opts(ctx)
    with _errors(f"logs {ref}"):
        if follow:
            st = api.status(ref, opts)
            multi = container is None and len(st.all_containers) > 1
            for name, line in api.follow_logs(ref, opts, container):
                click.echo(f"[{name}] {line}" if multi else line)
            return
        for line in api.logs(ref, opts, container, previous):
            click.echo(line)


@pod.command(
    "exec", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
@click.option("-i", "--stdin", "interactive", is_flag=True, help="pass stdin")
@click.option("-t", "--tty", is_flag=True, help="allocate a terminal")
@click.option("-c", "--container", default=None, help="container name")
@click.argument("ref")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def pod_exec(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    container: str | None,
    ref: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in a container of the pod: `pod exec [-it] POD [-c NAME] -- CMD...`."""
    from runtime.pod import api

    args = list(command)
    if args[:1] == ["-c"] and len(args) >= 2:  # `POD -c NAME -- CMD`
        container, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise Failure(f"pod exec {ref}", "no command given")
    with _errors(f"exec {ref}"):
        res = api.exec_in(
            ref,
            _opts(ctx),
            args,
            container,
            tty=tty,
            stdin=None if interactive or tty else subprocess.DEVNULL,
        )
    sys.exit(res.returncode)


@pod.command("attach")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="pass stdin (stdin: true)")
@click.argument("ref")
@click.argument("container", required=False)
@click.pass_context
def pod_attach(ctx: click.Context, interactive: bool, ref: str, container: str | None) -> None:
    """Attach to a running container (its spec sets stdin or tty): its output from now on
    and, with -i, its stdin; until its run ends."""
    from runtime.pod import api

    with _errors(f"attach {ref}"), api.attach(ref, _opts(ctx), container, interactive) as att:
        att.copy(sys.stdin.fileno() if interactive else None, 1, 2)


@pod.command("stop")
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "-t",
    "--time",
    "grace",
    type=int,
    default=None,
    help="seconds to wait before SIGKILL [default: the pod's grace period]",
)
@click.pass_context
def pod_stop(ctx: click.Context, refs: tuple[str, ...], grace: int | None) -> None:
    """Stop pods: SIGTERM, the grace period, SIGKILL; then tear them down."""
    from runtime.pod import api

    for ref in refs:
        with _errors(f"stop {ref}"):
            click.echo(api.stop(ref, _opts(ctx), grace).uid)


@pod.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="stop running pods first")
@click.pass_context
def pod_rm(ctx: click.Context, refs: tuple[str, ...], force: bool) -> None:
    """Remove pods that are not running (or, with -f, any)."""
    from runtime.pod import api

    for ref in refs:
        with _errors(f"rm {ref}"):
            click.echo(api.remove(ref, _opts(ctx), force))


@pod.command("gc")
@click.option("--keep-exited", is_flag=True, help="only tear down pods whose monitor died")
@click.pass_context
def pod_gc(ctx: click.Context, keep_exited: bool) -> None:
    """Tear down pods whose monitor died; remove exited pods, abandoned ones and leaked pod
    cgroups."""
    from runtime.pod import api

    with _errors("gc"):
        res = api.gc(_opts(ctx), keep_exited)
    for uid in res.finished:
        click.echo(f"finished {uid}")
    for uid in res.removed:
        click.echo(f"removed {uid}")
    for path in res.cgroups:
        click.echo(f"removed cgroup {path}")
    for err in res.errors:
        click.echo(f"corral: pod gc: {err}", err=True)
    if res.errors:
        sys.exit(FAILED)


def register(cli: click.Group) -> None:
    cli.add_command(pod)
