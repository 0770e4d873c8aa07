"""Server-side field validation (the ``fieldValidation`` query parameter of writes), as
kube-apiserver does it since 1.27:

* ``Strict``: an unknown or duplicated field refuses the request, 400 ``<Kind> in version
  "v1" cannot be handled as a <Kind>: strict decoding error: unknown field "spec.foo"``
  (kubectl 1.27+ sends Strict with every write);
* ``Warn``, the default: the fields are dropped, the object is stored, and each one is
  reported in a ``Warning: 299 - "unknown field \\"spec.foo\\""`` response header, which
  kubectl prints as ``Warning: unknown field "spec.foo"``;
* ``Ignore``: dropped silently, only when the client asks for it.

Duplicated JSON keys keep their last value, as Go's decoder does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

import kubemodel
from kubemodel.errors import at

from . import errors
from .resources import Resource

__all__ = ["DUPLICATES", "MODES", "WARNINGS", "check", "duplicates", "mode", "warning_header"]

MODES = ("Strict", "Warn", "Ignore")
DUPLICATES = web.RequestKey("duplicates", list[str])  # set by the body reader
WARNINGS = web.RequestKey("warnings", list[str])  # sent as Warning headers
_SUBRESOURCE_TYPES: dict[str, type[kubemodel.Object]] = {
    "scale": kubemodel.Scale,
    "eviction": kubemodel.Eviction,
}


def mode(request: web.Request) -> str:
    value = request.query.get("fieldValidation") or "Warn"
    if value not in MODES:
        raise errors.bad_request(
            f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{value}"'
        )
    return value


class _Object(dict[str, Any]):
    repeated: list[str]


# A key's closing quote with blanks before its colon.
_SPACED_KEY_END = re.compile(rb'"[ \t\r\n]+:')


def _keys(value: Any) -> int:
    """How many keys the objects of decoded JSON hold (duplicates counted once)."""
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            n += len(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


def duplicates(raw: bytes, decoded: Any = None) -> list[str]:
    """The paths of keys that appear twice in one JSON object of ``raw`` (valid JSON).
    ``decoded``: ``raw`` decoded already. Each key ends in a quote and a colon, blanks
    between them aside, and outside keys ``":`` shows only in a string, as an escaped quote
    before a colon: so with no blank before a colon, ``raw`` holds at least one ``":`` per
    key. When the decoded objects hold that many keys, none repeats, and ``raw`` is not
    parsed a second time."""
    if (
        decoded is not None
        and raw.count(b'":') == _keys(decoded)
        and _SPACED_KEY_END.search(raw) is None
    ):
        return []
    seen = False

    def hook(pairs: list[tuple[str, Any]]) -> _Object:
        nonlocal seen
        obj = _Object(pairs)
        obj.repeated = []
        if len(obj) != len(pairs):
            names: set[str] = set()
            for k, _ in pairs:
                if k in names and k not in obj.repeated:
                    obj.repeated.append(k)
                names.add(k)
            seen = True
        return obj

    tree = json.loads(raw, object_pairs_hook=hook)
    if not seen:
        return []
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Object):
            found.extend(at(path, k) for k in value.repeated)
            stack.extend((v, at(path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, at(path, i)) for i, v in enumerate(value))
    return sorted(found)


def check(request: web.Request, res: Resource, body: Any, sub: str | None = None) -> None:
    """Apply the request's field validation to ``body`` (an object, or a merge or strategic
    merge patch of one): refuse it (Strict), or drop the unknown fields from it and record
    warnings for the response (Warn) or not (Ignore)."""
    how = mode(request)
    if not isinstance(body, dict):
        return
    if res.untyped and (res.custom is None or sub == "scale"):
        cls = _SUBRESOURCE_TYPES.get(sub or "", res.model) if sub == "scale" else None
        unknown = [] if cls is None else kubemodel.unknown_fields(body, cls, prune=how != "Strict")
    elif res.custom is not None:  # pruned when stored
        from .crschema import unknown_fields

        unknown = unknown_fields(body, res.custom.schema)
        if isinstance(body.get("metadata"), dict):  # an ObjectMeta as any kind's
            meta = {"metadata": body["metadata"]}
            unknown += kubemodel.unknown_fields(meta, kubemodel.ConfigMap, prune=how != "Strict")
    else:
        cls = _SUBRESOURCE_TYPES.get(sub or "", res.model)
        unknown = kubemodel.unknown_fields(body, cls, prune=how != "Strict")
    problems = [f'unknown field "{p}"' for p in unknown]
    problems += [f'duplicate field "{p}"' for p in request.get(DUPLICATES, ())]
    if not problems:
        return
    if how == "Strict":
        kind = _SUBRESOURCE_TYPES[sub].__name__ if sub in _SUBRESOURCE_TYPES else res.kind
        version = "v1" if sub in _SUBRESOURCE_TYPES else res.version
        raise errors.bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding'
            f" error: {', '.join(problems)}"
        )
    if how == "Warn":
        request.setdefault(WARNINGS, []).extend(problems)


def warning_header(text: str) -> str:
    """RFC 7234 warn-code 299 with the text as a quoted string (what client-go parses)."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
