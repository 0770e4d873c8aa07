"""The three patch types kubectl sends: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and Kubernetes' strategic merge patch.

Each takes the live object and the decoded patch (plain JSON values) and returns a new object;
the live one is never modified. A patch that cannot apply raises ``PatchError`` (a 422 or 400
for the handler).

The strategic merge patch follows the schema of the kind patched (``managedfields.Type``, from
``kubemodel/schema.json``), as kube-apiserver follows the Go types: a list whose field has
x-kubernetes-patch-strategy "merge" merges its objects by x-kubernetes-patch-merge-key (a list
of scalars is a set); any other list is replaced whole; strategy "replace" replaces a map; a
field the schema does not have is replaced. The directives are kube's: ``$patch``
(replace / delete / merge), ``$retainKeys`` (keys of the map not listed are cleared),
``$deleteFromPrimitiveList/<f>``, ``$setElementOrder/<f>``; null deletes a key.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .managedfields import ATOMIC, MAP, STRUCT, Type

__all__ = ["NoMergeKey", "PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]


class PatchError(ValueError):
    pass


class NoMergeKey(PatchError):
    """A list item without the merge key of its list: kube-apiserver answers it with a 500
    whose message is strategicpatch's error."""

    def __init__(self, item: dict[str, Any], key: str) -> None:
        super().__init__(f"map: {_go(item)} does not contain declared merge key: {key}")


def _go(v: Any) -> str:
    """``v`` as Go's fmt prints a decoded JSON value (``map[a:1 b:[x y]]``)."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(i) for i in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_OPAQUE = Type(ATOMIC)  # a value the schema does not describe: maps merge, lists are replaced


# ================================================================ RFC 7386 merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ================================================================ RFC 6902 JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, insert: bool) -> int:
    if token == "-" and insert:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"invalid array index {token!r} in {path!r}")
    i = int(token)
    if i > len(container) or (i == len(container) and not insert):
        raise PatchError(f"array index {i} out of bounds in {path!r}")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"path {path!r}: {t!r} does not exist")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, path, False)]
        else:
            raise PatchError(f"path {path!r}: cannot descend into a scalar")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, False)]
    raise PatchError(f"path {path!r}: cannot descend into a scalar")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, False))
    raise PatchError(f"path {path!r}: cannot descend into a scalar")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, True), value)
    else:
        raise PatchError(f"path {path!r}: cannot descend into a scalar")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for n, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchError(f"operation {n}: must be an object with an 'op'")
        kind = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {n} ({kind}): 'path' is required")
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {n} ({kind}): 'value' is required")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            tokens = _pointer(path)
            if not tokens:
                doc = copy.deepcopy(op["value"])
            else:
                parent = _parent(doc, tokens, path)
                if isinstance(parent, list):
                    parent[_index(parent, tokens[-1], path, False)] = copy.deepcopy(op["value"])
                else:
                    parent[tokens[-1]] = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise PatchError(f"operation {n} ({kind}): 'from' is required")
            value = _remove(doc, src) if kind == "move" else copy.deepcopy(_get(doc, src))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"operation {n}: unknown op {kind!r}")
    return doc


# ================================================================ strategic merge patch

DIRECTIVE = "$patch"
RETAIN = "$retainKeys"
ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"
# what a field is to the patch: its type (None: not in the schema), its strategy ("merge",
# "replace" or "": the patch replaces a list, merges a map), its merge key, its items' type
_Field = tuple["Type | None", str, str, "Type"]


def strategic_merge_patch(target: Any, patch: Any, t: Type) -> Any:
    """``patch`` applied to ``target``, an object of type ``t`` (``managedfields.root_type``),
    as kube-apiserver applies a strategic merge patch: each list is merged or replaced as its
    schema says (x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be an object")
    return _smp_map(target if isinstance(target, dict) else {}, patch, t)


def _field(t: Type, key: str) -> _Field:
    if t.kind == STRUCT:
        ft = t.fields.get(key)
        if ft is None:
            return None, "", "", _OPAQUE
        meta = t.patch.get(key)
        return (ft, *meta) if meta is not None else (ft, "", "", ft)
    if t.kind == MAP and t.elem is not None:
        return t.elem, "", "", t.elem
    return _OPAQUE, "", "", _OPAQUE


def _fresh(value: Any, t: Type | None, strategy: str, key: str, elem: Type) -> Any:
    """A patch value for a field the target does not have (or has with another JSON type)."""
    if t is None:
        return copy.deepcopy(value)  # not in the schema: the patch's value, as it is
    if isinstance(value, dict):
        if strategy == "replace":
            return {k: copy.deepcopy(v) for k, v in value.items() if k != DIRECTIVE}
        return _smp_map({}, value, t)
    if isinstance(value, list):
        return _smp_list([], value, strategy, key, elem)
    return value


def _smp_map(original: dict[str, Any], patch: dict[str, Any], t: Type) -> dict[str, Any]:
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != DIRECTIVE}
    if directive == "delete":
        return {}
    if directive is not None and directive != "merge":
        raise PatchError(f"unknown patch type {directive!r} in {patch}")
    result = dict(original)
    retain = patch.get(RETAIN)
    if RETAIN in patch:
        if not isinstance(retain, list):
            raise PatchError(f"invalid patch format of {RETAIN}: {retain!r} is not a list")
        for k, v in patch.items():
            if v is None or k in (DIRECTIVE, RETAIN) or k.startswith((ORDER, DELETE_FROM)):
                continue
            if k not in retain:
                raise PatchError(f"invalid patch format of {RETAIN}: {k!r} is not retained")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key in (DIRECTIVE, RETAIN) or key.startswith(ORDER):
            continue
        if key.startswith(DELETE_FROM):
            field = key[len(DELETE_FROM) :]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        ft, strategy, merge_key, elem = _field(t, key)
        current = result.get(key)
        if ft is None:
            result[key] = copy.deepcopy(value)  # not in the schema: replaced
        elif isinstance(value, dict) and isinstance(current, dict):
            if strategy == "replace":
                result[key] = {k: copy.deepcopy(v) for k, v in value.items() if k != DIRECTIVE}
            else:
                result[key] = _smp_map(current, value, ft)
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _smp_list(current, value, strategy, merge_key, elem)
        else:
            result[key] = _fresh(value, ft, strategy, merge_key, elem)
    for key, order in patch.items():
        if not key.startswith(ORDER) or not isinstance(order, list):
            continue
        field = key[len(ORDER) :]
        _, strategy, merge_key, _ = _field(t, field)
        if strategy == "merge" and isinstance(result.get(field), list):
            before = original.get(field)
            result[field] = _ordered(
                merge_key, result[field], order, before if isinstance(before, list) else []
            )
    return result


def _ordered(key: str, merged: list[Any], order: list[Any], server: list[Any]) -> list[Any]:
    """``merged`` in the order ``order`` gives, as kube-apiserver orders it: the items the
    order names (the client's) in that order; the items only the server had (another
    writer's) in their own order; the two interleaved so that where both items were in the
    server's list, the one it had first comes first, else the client's. ``key`` is the merge
    key of a list of objects ("" for a list of scalars)."""

    def ident(item: Any) -> Any:
        if key and isinstance(item, dict):
            item = item.get(key)
        if isinstance(item, str | int | float | bool) or item is None:
            return (type(item) is str, type(item) is bool, item)  # 1, "1" and true differ
        return json.dumps(item, sort_keys=True)

    rank = {ident(o): n for n, o in enumerate(order)}
    at_server = {ident(o): n for n, o in enumerate(server)}
    ids = [(ident(i), i) for i in merged]
    named = sorted((p for p in ids if p[0] in rank), key=lambda p: rank[p[0]])
    others = [p for p in ids if p[0] not in rank]
    out: list[Any] = []
    a = b = 0
    while a < len(others) or b < len(named):
        if b == len(named):
            out.append(others[a][1])
            a += 1
            continue
        if a < len(others):
            left, right = at_server.get(others[a][0]), at_server.get(named[b][0])
            if left is not None and right is not None and left < right:
                out.append(others[a][1])
                a += 1
                continue
        out.append(named[b][1])
        b += 1
    return out


def _smp_list(
    original: list[Any], patch: list[Any], strategy: str, key: str, elem: Type
) -> list[Any]:
    if strategy != "merge":  # atomic: the patch's list replaces the target's
        if any(isinstance(i, dict) and DIRECTIVE in i for i in patch):
            return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and DIRECTIVE in i)]
        return copy.deepcopy(patch)
    if not original and not patch:
        return original
    maps = [isinstance(i, dict) for i in original + patch]
    if any(isinstance(i, list) for i in original + patch) or (any(maps) and not all(maps)):
        raise PatchError(f"a list merged by the patch mixes types: {original + patch}")
    if not any(maps):  # a set of scalars
        merged = list(original)
        for v in patch:
            if v not in merged:
                merged.append(v)
        return _ordered("", merged, patch, original)
    if not key:
        raise PatchError(f"cannot merge lists without a merge key: {patch}")
    result = list(original)
    items = []
    for item in patch:
        directive = item.get(DIRECTIVE)
        if directive is None:
            items.append(item)
            continue
        if directive == "replace":
            return [
                _smp_map({}, i, elem) for i in patch if DIRECTIVE not in i
            ]  # the patch's items only
        if directive == "delete":
            if key not in item:
                raise NoMergeKey(item, key)
            result = [o for o in result if not (isinstance(o, dict) and o.get(key) == item[key])]
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type {directive!r} in {item}")
    for item in items:
        if key not in item:
            raise NoMergeKey(item, key)
        pos = next(
            (n for n, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        if pos is None:
            result.append(_smp_map({}, item, elem))
        else:
            result[pos] = _smp_map(result[pos], item, elem)
    return _ordered(key, result, items, original)
