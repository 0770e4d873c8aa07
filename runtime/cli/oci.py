"""corral-oci: a runc-compatible command line over runtime.container.

Each command parses its arguments and calls one library function. Errors become one line
on stderr (and, with --log FILE --log-format json, exactly one JSON object in FILE) and
exit status 1.

The commands a container engine runs for every container (create, start, state, kill,
delete, and run) take a hand-written parser here: importing click and building its command
tree costs more than the work of `start` or `delete`. Whatever that parser does not take as
written (help, a flag it does not know, a missing argument, every other command) goes to the
click command line in ``runtime.cli.commands``, which parses it again, from the start, and
owns the messages for bad usage. This module imports nothing but the error tree until a
command runs; the lifecycle commands then import ``runtime.container`` only.
"""

from __future__ import annotations

import os
import sys

from corral_common.defaults import OCI_STATE_ROOT

from ..errors import CorralError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (ms of each command)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from .. import container
    from .commands import cli as cli  # noqa: F401  (resolved by __getattr__ below)

SPEC_VERSION = "1.1.0"
EXEC_FAILED = 255  # runc's exit status when `exec` itself fails
DEFAULT_ROOT = OCI_STATE_ROOT


class Ctx:
    def __init__(self, root: str, log: str | None, log_format: str, debug: bool) -> None:
        self.root = root
        self.log = log
        self.log_format = log_format
        self.debug = debug


def _fail(ctx: Ctx | None, what: str, exc: BaseException, code: int = 1) -> NoReturn:
    msg = f"{what}: {exc}" if what else str(exc)
    if not msg.isprintable():  # one line, whatever an id or a config put in it ("a\nb")
        msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)
    if ctx is not None and ctx.log:
        try:
            with open(ctx.log, "a") as f:
                if ctx.log_format == "json":
                    import json
                    import time

                    # RFC 3339 in UTC, compact, one object per line: runc's (logrus) shape.
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    entry = {"level": "error", "msg": msg, "time": stamp}
                    f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                else:
                    f.write(f"corral-oci: {msg}\n")
        except OSError:
            pass
    _echo(f"corral-oci: {msg}", err=True)
    sys.exit(code)


def _echo(text: str, *, err: bool = False) -> None:
    """A line on stdout (or stderr), flushed: what ``click.echo`` does for text."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _call(ctx: Ctx, what: str, fn: Callable[..., Any], *args: Any, code: int = 1, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except CorralError as e:
        _fail(ctx, what, e, code)
    except OSError as e:
        _fail(ctx, what, e, code)


def create_options(
    ctx: Ctx,
    pid_file: str | None,
    no_pivot: bool,
    preserve_fds: int,
    console_socket: str | None,
    no_new_keyring: bool = False,
) -> container.CreateOptions:
    from .. import container

    return container.CreateOptions(
        root=ctx.root,
        pid_file=pid_file,
        no_pivot=no_pivot,
        preserve_fds=preserve_fds,
        console_socket=os.path.abspath(console_socket) if console_socket else None,
        new_keyring=not no_new_keyring,
    )


# The hot commands, run from the parsed arguments. Each is the twin of the click command
# of the same name in runtime.cli.commands, which calls these.


def do_create(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import _dataclass_cache, container

    _dataclass_cache.install()  # before create imports the config model and the planner
    opts = create_options(
        ctx, o["pid_file"], o["no_pivot"], o["preserve_fds"], o["console_socket"],
        o["no_new_keyring"],
    )  # fmt: skip
    _call(ctx, f"create {cid}", container.create, cid, o["bundle"], opts)
    _dataclass_cache.save()
    return 0


def do_run(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import _dataclass_cache, container

    _dataclass_cache.install()
    opts = create_options(
        ctx, o["pid_file"], o["no_pivot"], o["preserve_fds"], o["console_socket"],
        o["no_new_keyring"],
    )  # fmt: skip
    gate = o.get("start_gate")
    if gate is not None:  # never inherited by what we spawn (hooks, the container's exec)
        _call(ctx, f"run {cid}: --start-gate {gate}", os.set_inheritable, gate, False)
    code = _call(
        ctx, f"run {cid}", container.run, cid, o["bundle"], opts, detach=o["detach"],
        keep=o["keep"], start_gate=gate,
    )  # fmt: skip
    _dataclass_cache.save()
    return int(code)


def do_start(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import container

    _call(ctx, f"start {cid}", container.start, cid, ctx.root)
    return 0


def do_state(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import _jsonfast, container

    st = _call(ctx, f"state {cid}", container.state, cid, ctx.root)
    _echo(_jsonfast.dumps(st, indent=2))
    return 0


def do_kill(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import container

    _call(
        ctx, f"kill {cid}", container.kill, cid, o["signal"], all_procs=o["all_procs"],
        root=ctx.root,
    )  # fmt: skip
    return 0


def do_delete(ctx: Ctx, cid: str, o: dict[str, Any]) -> int:
    from .. import container

    _call(ctx, f"delete {cid}", container.delete, cid, force=o["force"], root=ctx.root)
    return 0


class _Command:
    """What the fast parser accepts for one command: options with a value, flags, and
    positional arguments after the container id (with their defaults)."""

    def __init__(
        self,
        run: Callable[[Ctx, str, dict[str, Any]], int],
        values: dict[str, str] | None = None,
        flags: dict[str, str] | None = None,
        defaults: dict[str, Any] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.run = run
        self.values = values or {}
        self.flags = flags or {}
        self.defaults = defaults or {}
        self.extra = extra  # names of the optional positional arguments after the id


_CREATE_VALUES = {
    "-b": "bundle",
    "--bundle": "bundle",
    "--console-socket": "console_socket",
    "--pid-file": "pid_file",
    "--preserve-fds": "preserve_fds",
}
_CREATE_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_CREATE_DEFAULTS: dict[str, Any] = {
    "bundle": ".",
    "console_socket": None,
    "pid_file": None,
    "preserve_fds": 0,
    "no_pivot": False,
    "no_new_keyring": False,
}
_INT_VALUES = frozenset({"preserve_fds", "start_gate"})

_COMMANDS: dict[str, _Command] = {
    "create": _Command(do_create, _CREATE_VALUES, _CREATE_FLAGS, _CREATE_DEFAULTS),
    "run": _Command(
        do_run,
        {**_CREATE_VALUES, "--start-gate": "start_gate"},
        {**_CREATE_FLAGS, "-d": "detach", "--detach": "detach", "--keep": "keep"},
        {**_CREATE_DEFAULTS, "detach": False, "keep": False, "start_gate": None},
    ),
    "start": _Command(do_start),
    "state": _Command(do_state),
    "kill": _Command(
        do_kill,
        flags={"-a": "all_procs", "--all": "all_procs"},
        defaults={"all_procs": False, "signal": "SIGTERM"},
        extra=("signal",),
    ),
    "delete": _Command(
        do_delete, flags={"-f": "force", "--force": "force"}, defaults={"force": False}
    ),
}

_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format"}
_GLOBAL_IGNORED = frozenset({"--rootless", "--criu"})  # taken and ignored, as by click


def parse(argv: list[str]) -> tuple[Ctx, _Command, str, dict[str, Any]] | None:
    """The context, command, container id and options of a hot command line, or None for
    anything else (the click command line then takes it, errors and help included)."""
    glob: dict[str, Any] = {"root": DEFAULT_ROOT, "log": None, "log_format": "text"}
    debug = False
    i, n = 0, len(argv)
    while i < n and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name in _GLOBAL_VALUES or name in _GLOBAL_IGNORED:
            if not eq:
                i += 1
                if i >= n:
                    return None
                value = argv[i]
            if name in _GLOBAL_VALUES:
                glob[_GLOBAL_VALUES[name]] = value
        elif argv[i] == "--debug":
            debug = True
        else:
            return None
        i += 1
    if i >= n or glob["log_format"] not in ("text", "json"):
        return None
    cmd = _COMMANDS.get(argv[i])
    if cmd is None:
        return None
    opts = dict(cmd.defaults)
    args: list[str] = []
    i += 1
    while i < n:
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name in cmd.values:
                if not eq:
                    i += 1
                    if i >= n:
                        return None
                    value = argv[i]
                key = cmd.values[name]
                if key in _INT_VALUES:
                    try:
                        opts[key] = int(value)
                    except ValueError:
                        return None
                else:
                    opts[key] = value
            elif arg in cmd.flags:
                opts[cmd.flags[arg]] = True
            else:
                return None
        else:
            args.append(arg)
        i += 1
    if not args or len(args) > 1 + len(cmd.extra):
        return None
    opts.update(zip(cmd.extra, args[1:], strict=False))
    return Ctx(glob["root"], glob["log"], glob["log_format"], debug), cmd, args[0], opts


def run_command(argv: list[str]) -> int:
    """Run one command line; returns the exit status (or raises SystemExit, as click does)."""
    parsed = parse(argv)
    if parsed is not None:
        ctx, cmd, cid, opts = parsed
        return cmd.run(ctx, cid, opts)
    from .commands import cli

    cli(args=argv, prog_name="corral-oci")
    return 0


class _Deferred(type(sys)):  # type: ignore[misc]  # types.ModuleType, without importing types
    """Stands in sys.modules for a module not imported yet: the first attribute asked of it
    imports the real one, which then takes its place (and lends this one its namespace, for
    whoever imported the stand-in meanwhile)."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        __import__(name)  # not importlib.import_module: importlib brings in warnings
        real = sys.modules[name]
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer_import(name: str) -> None:
    """Let ``import name`` succeed without running the module until it is used.

    For ``inspect``: dataclasses imports it at once (with ast, dis, tokenize, linecache: about
    5 ms of a command's start) but calls it only for a dataclass without a docstring; the
    config model and the state have one each, so a hot command never uses it. For ``copy``
    (with weakref): dataclasses needs it for ``asdict`` and ``astuple`` only.
    """
    if name not in sys.modules:
        sys.modules[name] = _Deferred(name)


def main() -> NoReturn:
    """The corral-oci entry point.

    A command lives for tens of milliseconds, so two interpreter costs are skipped: the cyclic
    garbage collector (a few ms of collections while the command imports what it needs) and the
    teardown at exit (several ms freeing every module and object). Exit handlers still run and
    stdio is flushed before ``os._exit``.
    """
    import gc

    gc.disable()
    defer_import("inspect")
    defer_import("copy")
    try:
        code = run_command(sys.argv[1:])
    except SystemExit as e:  # click always ends this way
        code = _exit_status(e.code)
    _exit(code)


def _exit_status(code: object) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> NoReturn:
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the interpreter exits 120 for that
            code = code or 120
    os._exit(code & 0xFF)


def __getattr__(name: str) -> Any:
    """``cli``, the click command group, is built when first asked for."""
    if name == "cli":
        from .commands import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
