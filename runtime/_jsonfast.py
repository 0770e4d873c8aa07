"""JSON for the lifecycle commands, without importing the json package.

``json`` imports ``re`` (and with it enum, functools and the regex compiler) to build its
number and whitespace patterns: some milliseconds of every ``corral-oci start``, ``state``,
``kill`` and ``delete``, which read one small file and may print one object. The parsing
itself is the C scanner json uses (``_json.make_scanner``, which takes the same settings
object as ``json.JSONDecoder``); the writer covers what the runtime writes (dicts, lists,
strings, ints, floats, booleans, None) and hands anything else to ``json.dumps``. Both give
what ``json.loads`` and ``json.dumps`` give for those values, byte for byte (tested).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    from _json import encode_basestring as _quote_unicode
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # an interpreter without CPython's accelerator: the json package does it
    _make_scanner = None

_WS = " \t\n\r"  # what json's decoder skips around a document
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Settings:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: its defaults, but for
    ``parse_constant`` (NaN, Infinity, -Infinity) when given."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant: Callable[[str], Any] | None = None) -> None:
        self.parse_constant = parse_constant or _CONSTANTS.__getitem__


_scan = _make_scanner(_Settings()) if _make_scanner is not None else None


def loads(text: str | bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(text, parse_constant=parse_constant)``: the same value, or the same
    ``json.JSONDecodeError`` (a ValueError; the json package is imported for it)."""
    if isinstance(text, bytes) and _plain_utf8(text):
        text = text.decode("utf-8", "surrogatepass")  # what json.loads decodes it with
    if _scan is None or not isinstance(text, str) or text.startswith("\ufeff"):
        import json  # and json's own errors for a str that starts with a BOM

        return json.loads(text, parse_constant=parse_constant)
    scan = _scan if parse_constant is None else _make_scanner(_Settings(parse_constant))
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = scan(text, start)
    except StopIteration as e:
        raise _error("Expecting value", text, e.value) from None
    if text[end:].strip(_WS):
        raise _error("Extra data", text, len(text) - len(text[end:].lstrip(_WS)))
    return value


def _plain_utf8(data: bytes) -> bool:
    """Bytes json.loads decodes as UTF-8 (json.detect_encoding): no BOM, and no NUL among
    the first four bytes (UTF-16 or UTF-32 without a BOM)."""
    return not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) and (
        b"\x00" not in data[:4]
    )


def _error(msg: str, text: str, pos: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(msg, text, pos)


def quote(text: str) -> str:
    """``json.dumps(text, ensure_ascii=False)``: a JSON string literal, for messages."""
    if _scan is None:
        import json

        return json.dumps(text, ensure_ascii=False)
    return _quote_unicode(text)


class _Unsupported(Exception):
    """A value this writer leaves to the json package."""


def dumps(obj: object, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, indent=indent, sort_keys=sort_keys)``."""
    if _scan is not None:
        out: list[str] = []
        try:
            _write(obj, out, indent, sort_keys, 0)
        except _Unsupported:
            pass
        else:
            return "".join(out)
    import json

    return json.dumps(obj, indent=indent, sort_keys=sort_keys)


def _write(obj: object, out: list[str], indent: int | None, sort_keys: bool, level: int) -> None:
    if isinstance(obj, str):
        out.append(_quote(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif type(obj) is int:
        out.append(int.__repr__(obj))
    elif type(obj) is float:
        out.append(_float(obj))
    elif type(obj) is dict:
        if not obj:
            out.append("{}")
            return
        if any(type(k) is not str for k in obj):
            raise _Unsupported  # json's key coercions (numbers, booleans, None)
        items = sorted(obj.items()) if sort_keys else obj.items()
        first, between, close = _breaks(indent, level)
        out.append("{")
        for i, (key, value) in enumerate(items):
            out.append(between if i else first)
            out.append(_quote(key))
            out.append(": ")
            _write(value, out, indent, sort_keys, level + 1)
        out.append(close + "}")
    elif type(obj) in (list, tuple):
        seq: list[object] | tuple[object, ...] = obj  # type: ignore[assignment]
        if not seq:
            out.append("[]")
            return
        first, between, close = _breaks(indent, level)
        out.append("[")
        for i, value in enumerate(seq):
            out.append(between if i else first)
            _write(value, out, indent, sort_keys, level + 1)
        out.append(close + "]")
    else:
        raise _Unsupported


def _breaks(indent: int | None, level: int) -> tuple[str, str, str]:
    """What goes before the first item of a container at ``level``, before each other item,
    and before its closing bracket: as ``json.dumps``, ", " between items without indent; with
    one, each item on a line of its own, indented one step deeper than the container."""
    if indent is None:
        return "", ", ", ""
    line = "\n" + " " * (indent * (level + 1))
    return line, "," + line, "\n" + " " * (indent * level)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)
