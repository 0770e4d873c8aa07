"""The three patch types kubectl sends: JSON merge patch (RFC 7386), JSON patch (RFC 6902)
and Kubernetes' strategic merge patch.

Each takes the live object and the decoded patch (plain JSON values) and returns a new object;
the live one is never modified. A patch that cannot apply raises ``PatchError`` (a 422 or 400
for the handler).
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]


class PatchError(ValueError):
    pass


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

# Lists merged by a key (the patchMergeKey of the Kubernetes types), by field name. "ports"
# depends on where it is: containerPort in containers, port in services.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "addresses": "type",
    "images": "names",
}
# Lists of scalars merged as sets.
MERGE_SETS = {"finalizers"}
DIRECTIVE = "$patch"


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        return "port"
    return MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be an object")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != DIRECTIVE}
    if directive == "delete":
        return {}
    if directive is not None:
        raise PatchError(f"unknown patch directive {directive!r} in a map")
    result = dict(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in (DIRECTIVE, "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict):
            result[key] = _smp_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, current if isinstance(current, list) else [], value)
        else:
            result[key] = value
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                before = original.get(field)
                result[field] = _ordered(
                    field, result[field], order, before if isinstance(before, list) else []
                )
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _ordered(field: str, merged: list[Any], order: list[Any], server: list[Any]) -> list[Any]:
    """``merged`` in the order ``$setElementOrder`` gives, as kube-apiserver orders it: the
    items the order names (the client's whole list) in that order; the items only the server
    had (another writer's) in their own order; the two interleaved so that where both items
    were in the server's list, the one it had first comes first, else the client's."""
    key = _merge_key(field, merged + server + order)

    def ident(item: Any) -> Any:
        if key is not None and isinstance(item, dict):
            return json.dumps(item.get(key), sort_keys=True)
        return json.dumps(item, sort_keys=True)

    rank = {ident(o): n for n, o in enumerate(order)}
    at_server = {ident(o): n for n, o in enumerate(server)}
    named = sorted((i for i in merged if ident(i) in rank), key=lambda i: rank[ident(i)])
    others = [i for i in merged if ident(i) not in rank]
    out: list[Any] = []
    a = b = 0
    while a < len(others) or b < len(named):
        if b == len(named):
            out.append(others[a])
            a += 1
            continue
        if a < len(others):
            left, right = at_server.get(ident(others[a])), at_server.get(ident(named[b]))
            if left is not None and right is not None and left < right:
                out.append(others[a])
                a += 1
                continue
        out.append(named[b])
        b += 1
    return out


def _smp_list(field: str, original: list[Any], patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get(DIRECTIVE) == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and DIRECTIVE in i)]
    if field in MERGE_SETS:
        out = list(original)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    key = _merge_key(field, original + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return copy.deepcopy(patch)  # atomic list: the patch replaces it
    result = [copy.deepcopy(i) for i in original]
    for item in patch:
        if key not in item:
            if item.get(DIRECTIVE) == "delete":
                continue
            raise PatchError(f"{field}: an item has no merge key {key!r}")
        pos = next(
            (n for n, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        if item.get(DIRECTIVE) == "delete":
            if pos is not None:
                result.pop(pos)
            continue
        if pos is None:
            result.append(_smp_map({}, item))
        else:
            result[pos] = _smp_map(result[pos], item)
    return result
