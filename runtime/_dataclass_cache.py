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

``install`` also spares a command the ``re`` module (with enum and the regex compiler: about
3 ms of each start). dataclasses compiles one regex when imported, ``_MODULE_IDENTIFIER_RE``,
and matches each string annotation with it (every field of ours: the modules use
``from __future__ import annotations``). When nothing has imported ``re`` yet, dataclasses is
imported with a stand-in for it that answers that one ``compile`` with ``_IdentifierPattern``,
a plain-Python twin of the pattern; any other use of the stand-in imports the real module.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from types import CodeType, ModuleType

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


# The pattern dataclasses compiles at import (CPython 3.10 to 3.13): `[module.]name`, with
# blanks allowed around both, at the start of an annotation string.
_IDENTIFIER_RE = r"^(?:\s*(\w+)\s*\.)?\s*(\w+)"


class _IdentifierMatch:
    __slots__ = ("_groups",)

    def __init__(self, module: str | None, name: str) -> None:
        self._groups = (module, name)

    def group(self, i: int) -> str | None:
        return self._groups[i - 1] if i in (1, 2) else None


def _word_end(s: str, i: int) -> int:
    """The end of the run of word characters at ``i`` (re's for str patterns: str.isalnum,
    or an underscore)."""
    n = len(s)
    while i < n and (s[i].isalnum() or s[i] == "_"):
        i += 1
    return i


def _space_end(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i].isspace():  # re's whitespace for str patterns
        i += 1
    return i


class _IdentifierPattern:
    """``re.compile(_IDENTIFIER_RE)``'s ``match``, for dataclasses: the same groups, or None."""

    def __init__(self) -> None:
        self._seen: dict[str, _IdentifierMatch | None] = {}

    def match(self, s: str) -> _IdentifierMatch | None:
        try:
            return self._seen[s]  # a few annotations ("str", "int", "bool") are most fields
        except KeyError:
            pass
        start = _space_end(s, 0)
        end = _word_end(s, start)
        found = None
        if end > start:
            found = _IdentifierMatch(None, s[start:end])
            dot = _space_end(s, end)
            if dot < len(s) and s[dot] == ".":
                name = _space_end(s, dot + 1)
                name_end = _word_end(s, name)
                if name_end > name:
                    found = _IdentifierMatch(s[start:end], s[name:name_end])
        self._seen[s] = found
        return found


class _ReStandIn(type(sys)):  # type: ignore[misc]  # types.ModuleType, without importing types
    """``re`` while dataclasses is imported: ``compile`` of its one pattern costs nothing;
    anything else imports the real module and is its."""

    def compile(self, pattern: object, flags: int = 0) -> object:
        if pattern == _IDENTIFIER_RE and not flags:
            return _IdentifierPattern()
        return self.__getattr__("compile")(pattern, flags)

    def __getattr__(self, attr: str) -> object:
        if sys.modules.get("re") is self:
            del sys.modules["re"]
        import re

        return getattr(re, attr)


def _import_dataclasses() -> ModuleType:
    if "dataclasses" in sys.modules or "re" in sys.modules:
        import dataclasses

        return dataclasses
    sys.modules["re"] = _ReStandIn("re")
    try:
        import dataclasses
    finally:
        if isinstance(sys.modules.get("re"), _ReStandIn):
            del sys.modules["re"]
    return dataclasses


def install() -> None:
    """Let ``@dataclass`` take its methods from the table from now on (idempotent)."""
    dataclasses = _import_dataclasses()

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
    image store,
    cgroup layout, and the resource limits of ``runtime._config_extra``: every container of a
    pod has some, its CPU shares at least, and they were 7 ms of its start); the rarely used
    parts of the model compile theirs when used, as without."""
    install()
    _codes.clear()  # exactly what these imports compile, whatever an older table held
    import images.store  # noqa: F401  (`corral image` and the pods' image look-ups)
    import runtime._config_extra
    import runtime.cgroups.layout
    import runtime.config
    import runtime.container
    import runtime.plan  # noqa: F401

    save(force=True)


if __name__ == "__main__":
    warm()
    print(f"{cache_path()}: {len(_codes)} methods")
