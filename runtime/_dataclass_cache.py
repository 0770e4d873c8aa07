"""The methods ``@dataclass`` writes, compiled once and kept between runs of corral-oci.

For each class, ``dataclasses`` writes ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` as Python source and compiles it with ``exec``, at every
import: the config model and the planner are some thirty classes, and compiling their hundred
small functions was about a fifth of a `corral-oci create`. ``install`` gives the dataclasses
module an ``exec`` of its own (a module global, found before the builtin) that looks each
source text up in a table of code objects read from a file beside this module's bytecode, and
compiles only what the table lacks. The key is the whole source text and the code is what
``exec`` would have compiled from it (same file name, no inherited ``__future__`` flags), so
the classes are the same with or without the table; a table written by another interpreter
build is ignored.

``python -m runtime._dataclass_cache`` writes the table at install time (scripts/setup.sh, and
the bench before it measures) with the classes every create uses. Where there is none, ``save``
writes what a command compiled (where bytecode may be written, as Python does for .pyc files);
an existing table is not grown by the commands that use it, so that rarely used classes do not
make every command read a larger one.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from types import CodeType

# Written by another build of the interpreter, the table is not read (marshal's format and the
# bytecode are the interpreter's).
_HEADER = f"corral dataclass methods {sys.implementation.cache_tag} {sys.version}\n".encode()
_codes: dict[str, CodeType] = {}
_added = 0
_had_table = False


def cache_path() -> str:
    name = f"dataclass-fns.{sys.implementation.cache_tag}.bin"
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__", name)


def _load() -> dict[str, CodeType]:
    try:
        with open(cache_path(), "rb") as f:
            data = f.read()
    except OSError:
        return {}
    if not data.startswith(_HEADER):
        return {}
    try:
        table = marshal.loads(data[len(_HEADER) :])
    except (ValueError, EOFError, TypeError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if type(k) is str and type(v) is _CODE_TYPE}


_CODE_TYPE = type(_load.__code__)


def _exec(source: object, globals: dict[str, object] | None = None, locals: object = None) -> None:
    """``exec`` for the dataclasses module: a source text's code from the table."""
    global _added
    if type(source) is str:
        code = _codes.get(source)
        if code is None:
            # As exec(source) in dataclasses compiles it: file "<string>", and none of this
            # module's __future__ flags (dont_inherit).
            code = compile(source, "<string>", "exec", dont_inherit=True)
            _codes[source] = code
            _added += 1
        source = code
    builtins.exec(source, globals, locals)  # type: ignore[arg-type]


def install() -> None:
    """Let ``@dataclass`` take its methods from the table from now on (idempotent)."""
    import dataclasses

    global _had_table
    if getattr(dataclasses, "exec", None) is _exec:
        return
    table = _load()
    _had_table = bool(table)
    _codes.update(table)
    dataclasses.exec = _exec  # type: ignore[attr-defined]


def save(*, force: bool = False) -> None:
    """Write the table of what this process compiled or read, atomically, when there was
    none and Python would write bytecode here (``force``: in any case, replacing it). Failures
    are ignored (the table is a cache)."""
    global _added, _had_table
    if not force and (not _added or _had_table or sys.dont_write_bytecode):
        return
    path = cache_path()
    table = _codes
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_HEADER + marshal.dumps(table))
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    _added = 0
    _had_table = True


def warm() -> None:
    """Write the table of the classes every create uses (the config model, the planner, the
    cgroup layout, and the resource limits of ``runtime._config_extra``: every container of a
    pod has some, its CPU shares at least, and they were 7 ms of its start); the rarely used
    parts of the model compile theirs when used, as without."""
    install()
    _codes.clear()  # exactly what these imports compile, whatever an older table held
    import runtime._config_extra
    import runtime.cgroups.layout
    import runtime.config
    import runtime.container
    import runtime.plan  # noqa: F401

    save(force=True)


if __name__ == "__main__":
    warm()
    print(f"{cache_path()}: {len(_codes)} methods")
