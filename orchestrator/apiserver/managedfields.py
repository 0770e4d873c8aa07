"""Field ownership (``metadata.managedFields``) and server-side apply, with the semantics of
kube-apiserver's field manager (structured-merge-diff).

A field set is written as kube-apiserver writes ``fieldsV1``: a tree whose keys are path
elements, ``f:<field>``, ``k:{"name":"app"}`` (an item of a list keyed by its map keys),
``v:"value"`` (an item of a set); ``{}`` is a member leaf, and ``".": {}`` makes an inner node
a member too. Functions take the tree as it is stored; paths (tuples of elements) name single
members. How lists and maps merge comes from the OpenAPI schema (``kubemodel/schema.json``):
``x-kubernetes-list-type`` atomic / set / map (with ``x-kubernetes-list-map-keys``), and
``x-kubernetes-map-type`` atomic or granular.

* ``update_tree`` / ``record_update``: a create, update or patch (operation Update): the fields
  it changed move to its manager.
* ``apply``: an apply (operation Apply): the configuration is merged into the live object;
  fields the manager applied before and no longer lists are removed unless another manager owns
  them; changing a field another manager owns is a conflict unless forced.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from importlib import resources
from typing import Any

import msgspec

from .errors import ApiError

log = logging.getLogger("corral.apiserver")
_json = msgspec.json.encode  # compact, as kube-apiserver writes keys and values

__all__ = [
    "Conflicts",
    "Schema",
    "Type",
    "apply",
    "compare",
    "created_entries",
    "definition",
    "entry",
    "field_tree",
    "manager_name",
    "members",
    "merge",
    "object_tree",
    "path_string",
    "record_update",
    "root_type",
    "custom_root",
    "tree_of",
    "updated_entries",
]

Obj = dict[str, Any]
Path = tuple[str, ...]
Tree = dict[str, Any]

SCALAR, ATOMIC, STRUCT, MAP, LIST_MAP, LIST_SET = range(6)
# metadata the field manager never tracks (kube-apiserver's stripMeta), and the top level
META_STRIP = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "selfLink",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
# Fields of Go value (not pointer) struct type: present in an empty object already, so a write
# that fills them does not own the struct itself (no "." in its Update entry), as in kube.
VALUE_STRUCTS = frozenset(
    {"metadata", "spec", "status", "template", "strategy", "updateStrategy", "resources"}
)
# list map keys that kube-apiserver defaults when an item omits them
KEY_DEFAULTS = {"protocol": "TCP"}
# subresources whose writes own the status alone (a CSR's /approval writes its conditions)
STATUS_LIKE = ("status", "approval")
MAX_MANAGER = 128


class Type:
    """One node of the schema: its kind, and the types below it."""

    __slots__ = ("elem", "fields", "keys", "kind", "named", "patch")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.fields: dict[str, Type] = {}
        self.elem: Type | None = None
        self.keys: tuple[str, ...] = ()
        # a struct's fields as the tree walk wants them: (path element, type, is a leaf,
        # is a member of what an Update adds), computed once
        self.named: dict[str, tuple[str, Type, bool, bool]] = {}
        # a struct's fields with a strategic merge patch strategy (x-kubernetes-patch-strategy
        # without "retainKeys": "merge" or "replace"), their merge key
        # (x-kubernetes-patch-merge-key, "" for none) and, for lists, their items' type
        self.patch: dict[str, PatchMeta] = {}

    def set_fields(self, fields: dict[str, Type]) -> None:
        self.fields = fields
        self.named = {
            k: ("f:" + k, ct, ct.kind <= ATOMIC, ct.kind == MAP or k not in VALUE_STRUCTS)
            for k, ct in fields.items()
        }

    def child(self, name: str) -> Type:
        if self.kind == STRUCT:
            return self.fields.get(name, _ATOMIC)
        if self.kind == MAP and self.elem is not None:
            return self.elem
        return _ATOMIC


_ATOMIC = Type(ATOMIC)
_SCALAR = Type(SCALAR)
PatchMeta = tuple[str, str, Type]


class Schema:
    """The schema's definitions turned into ``Type`` nodes (each built once)."""

    def __init__(self, defs: dict[str, Any], inline: bool = False) -> None:
        self.defs = defs
        # an object with properties and no $ref is a struct too (a CRD's schema nests its
        # objects so; the built-in definitions never do)
        self.inline = inline
        self.types: dict[str, Type] = {}
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        for name, d in defs.items():
            for gvk in d.get("x-kubernetes-group-version-kind") or ():
                self.by_gvk[(gvk["group"], gvk["version"], gvk["kind"])] = name

    def definition(self, name: str) -> Type:
        t = self.types.get(name)
        if t is not None:
            return t
        d = self.defs.get(name) or {}
        props = d.get("properties")
        if not isinstance(props, dict) or d.get("x-kubernetes-map-type") == "atomic":
            t = _SCALAR if "oneOf" in d or "format" in d else _ATOMIC
            self.types[name] = t
            return t
        t = self.types[name] = Type(STRUCT)  # before its fields: types may be recursive
        t.set_fields({k: self.node(v) for k, v in props.items()})
        t.patch = {
            k: self.patch_meta(v, t.fields[k])
            for k, v in props.items()
            if "x-kubernetes-patch-strategy" in v
        }
        return t

    def patch_meta(self, n: dict[str, Any], t: Type) -> PatchMeta:
        strategies = str(n["x-kubernetes-patch-strategy"]).split(",")
        strategy = next((s for s in strategies if s in ("merge", "replace")), "")
        elem = t
        if "items" in n:
            elem = t.elem if t.kind == LIST_MAP and t.elem is not None else self.node(n["items"])
        return strategy, str(n.get("x-kubernetes-patch-merge-key") or ""), elem

    def node(self, n: dict[str, Any]) -> Type:
        ref = n.get("$ref")
        if isinstance(ref, str):
            t = self.definition(ref.rpartition("/")[2])
            return _ATOMIC if n.get("x-kubernetes-map-type") == "atomic" else t
        kind = n.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind == "array":
            list_type = n.get("x-kubernetes-list-type")
            if list_type == "map":
                t = Type(LIST_MAP)
                t.keys = tuple(n.get("x-kubernetes-list-map-keys") or ())
                t.elem = self.node(n.get("items") or {})
                return t
            if list_type == "set":
                return Type(LIST_SET)
            return _ATOMIC
        if kind == "object":
            props = n.get("properties")
            if (
                self.inline
                and isinstance(props, dict)
                and n.get("x-kubernetes-map-type") != "atomic"
            ):
                t = Type(STRUCT)
                t.set_fields({k: self.node(v) for k, v in props.items() if isinstance(v, dict)})
                return t
            extra = n.get("additionalProperties")
            if isinstance(extra, dict) and n.get("x-kubernetes-map-type") != "atomic":
                t = Type(MAP)
                t.elem = self.node(extra)
                return t
            return _ATOMIC
        return _SCALAR


@functools.cache
def _schema() -> Schema:
    text = resources.files("kubemodel").joinpath("schema.json").read_text()
    return Schema(json.loads(text))


def definition(name: str) -> Type:
    """The type of a schema definition, by its name (``io.k8s.api.core.v1.Container``)."""
    return _schema().definition(name)


@functools.cache
def root_type(group: str, version: str, kind: str) -> Type:
    """The type of a served kind (atomic when the schema does not know it)."""
    s = _schema()
    name = s.by_gvk.get((group, version, kind))
    return s.definition(name) if name else _ATOMIC


_CUSTOM_ROOTS: dict[int, tuple[dict[str, Any], Type]] = {}
_CUSTOM_ROOT = "custom.root"


def custom_root(schema: dict[str, Any]) -> Type:
    """The type of a custom resource, from its CRD version's openAPIV3Schema (its metadata
    an ObjectMeta); built once per schema object."""
    hit = _CUSTOM_ROOTS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    base = _schema()
    props = dict(schema.get("properties") or {})
    props["metadata"] = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    root = {**schema, "properties": props}
    t = Schema({**base.defs, _CUSTOM_ROOT: root}, inline=True).definition(_CUSTOM_ROOT)
    if len(_CUSTOM_ROOTS) > 256:  # (schemas of CRDs since changed)
        _CUSTOM_ROOTS.clear()
    _CUSTOM_ROOTS[id(schema)] = (schema, t)
    return t


# ================================================================ paths and trees


def _key_element(item: Any, keys: tuple[str, ...]) -> str:
    if not isinstance(item, dict):
        raise ApiError(422, "Invalid", f"a keyed list has an item that is not an object: {item!r}")
    if len(keys) == 1:  # the common case, written directly
        v = item.get(keys[0])
        if v is not None:
            return 'k:{"' + keys[0] + '":' + _json(v).decode() + "}"
    key = {}
    for k in sorted(keys):
        v = item.get(k, KEY_DEFAULTS.get(k))
        if v is not None:
            key[k] = v
    if not key:
        raise ApiError(
            422,
            "Invalid",
            f"an item of a list keyed by {', '.join(keys)} has none of these fields",
        )
    return "k:" + _json(key).decode()


def _value_element(v: Any) -> str:
    return "v:" + _json(v).decode()


def field_tree(v: Any, t: Type, dots: bool, member: bool) -> Tree:
    """The fieldsV1 tree of value ``v`` of type ``t``. ``member``: the node itself is owned
    ("." when it has children); ``dots``: maps and pointer structs below are members too
    (what an Update that added them owns; an Apply owns only leaves and list items)."""
    kind = t.kind
    if kind == STRUCT:
        if not isinstance(v, dict) or not v:
            return {}
        out: Tree = {".": {}} if member else {}
        named = t.named
        for k, cv in v.items():
            f = named.get(k)
            if f is None:  # not in the schema: atomic
                out["f:" + k] = {}
            elif f[2] or cv is None:
                out[f[0]] = {}
            else:
                out[f[0]] = field_tree(cv, f[1], dots, dots and f[3])
        return out
    if kind == MAP:
        if not isinstance(v, dict) or not v:
            return {}
        out = {".": {}} if member else {}
        elem = t.elem or _ATOMIC
        if elem.kind <= ATOMIC:
            for k in v:
                out["f:" + k] = {}
            return out
        for k, cv in v.items():
            out["f:" + k] = {} if cv is None else field_tree(cv, elem, dots, dots)
        return out
    if kind == LIST_MAP:
        if not isinstance(v, list) or not v:
            return {}
        out = {}  # a list is never a member itself, its items are
        elem = t.elem or _ATOMIC
        for item in v:
            out[_key_element(item, t.keys)] = field_tree(item, elem, dots, True)
        return out
    if kind == LIST_SET:
        if not isinstance(v, list) or not v:
            return {}
        return {_value_element(item): {} for item in v}
    return {}


def object_tree(obj: Obj, t: Type, status_sub: bool, subresource: str | None, dots: bool) -> Tree:
    """The fields of a whole object a manager can own: without apiVersion, kind and the
    metadata the server sets; ``status`` only for the status subresource and everything but
    ``status`` for the rest when the kind has a status subresource (``status_sub``)."""
    out: Tree = {}
    for k, v in obj.items():
        if k == "apiVersion" or k == "kind":
            continue
        if subresource in STATUS_LIKE:
            if k != "status":
                continue
        elif k == "status" and status_sub:
            continue
        if k == "metadata":
            if not isinstance(v, dict):
                continue
            v = {mk: mv for mk, mv in v.items() if mk not in META_STRIP}
            if not v:
                continue
        ct = t.child(k)
        sub = field_tree(v, ct, dots, dots and ct.kind == MAP)
        if sub or not isinstance(v, dict) or not v:
            out["f:" + k] = sub
    return out


def members(tree: Tree, prefix: Path = ()) -> set[Path]:
    """The paths a tree owns."""
    out: set[Path] = set()
    stack: list[tuple[Tree, Path]] = [(tree, prefix)]
    while stack:
        node, path = stack.pop()
        for k, child in node.items():
            if k == ".":
                out.add(path)
            elif child:
                stack.append((child, (*path, k)))
            else:
                out.add((*path, k))
    return out


def tree_of(paths: Iterable[Path]) -> Tree:
    """The fieldsV1 tree owning exactly ``paths``."""
    root: Tree = {}
    for p in paths:
        insert(root, p)
    return root


def insert(tree: Tree, path: Path) -> None:
    node = tree
    for el in path:
        child = node.get(el)
        if child is None:
            child = node[el] = {}
            node = child
            continue
        if not child:  # a member leaf about to get children stays a member
            child["."] = {}
        node = child
    if node and "." not in node:
        node["."] = {}


def discard(tree: Tree, path: Path) -> None:
    """Remove one member (not what is below it) from the tree."""
    trail: list[tuple[Tree, str]] = []
    node = tree
    for el in path:
        child = node.get(el)
        if child is None:
            return
        trail.append((node, el))
        node = child
    if node:
        node.pop(".", None)
        if node:
            return
    while trail:
        parent, el = trail.pop()
        if parent[el]:
            if len(parent[el]) == 1 and "." in parent[el]:
                parent[el].clear()
            return
        del parent[el]
        if len(parent) == 1 and "." in parent:
            parent.clear()
            return
        if parent:
            return


def owns(tree: Tree, path: Path) -> bool:
    node = tree
    for el in path:
        node = node.get(el)  # type: ignore[assignment]
        if node is None:
            return False
    return not node or "." in node


def owns_below(tree: Tree, path: Path) -> bool:
    """Whether the tree owns something strictly below ``path``."""
    node = tree
    for el in path:
        node = node.get(el)  # type: ignore[assignment]
        if node is None:
            return False
    return any(k != "." for k in node)


def path_string(path: Path) -> str:
    """A path as kube-apiserver prints it in a conflict: ``.spec.containers[name="app"].image``."""
    out = []
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            key = json.loads(rest)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(key.items())) + "]")
        elif kind == "v":
            out.append(f"[={rest}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


# ================================================================ comparing


class Diff:
    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.modified: set[Path] = set()
        self.removed: set[Path] = set()

    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)

    def changed(self) -> set[Path]:
        return self.added | self.modified | self.removed


_MISSING = object()


def _diff(old: Any, new: Any, t: Type, path: Path, d: Diff) -> None:
    if old == new:
        return
    kind = t.kind
    if (kind == STRUCT or kind == MAP) and isinstance(old, dict) and isinstance(new, dict):
        if not old or not new:
            d.modified.add(path)
        for k in old.keys() | new.keys():
            o, n = old.get(k, _MISSING), new.get(k, _MISSING)
            ct = t.child(k)
            mem = ct.kind == MAP or k not in VALUE_STRUCTS
            p = (*path, "f:" + k)
            if o is _MISSING:
                d.added |= _paths(n, ct, p, mem)
            elif n is _MISSING:
                d.removed |= _paths(o, ct, p, True)
            else:
                _diff(o, n, ct, p, d)
        return
    if kind == LIST_MAP and isinstance(old, list) and isinstance(new, list):
        elem = t.elem or _ATOMIC
        olds = {_key_element(i, t.keys): i for i in old}
        news = {_key_element(i, t.keys): i for i in new}
        if not old or not new:
            d.modified.add(path)
        for k, n in news.items():
            o = olds.get(k, _MISSING)
            if o is _MISSING:
                d.added |= _paths(n, elem, (*path, k), True)
            else:
                _diff(o, n, elem, (*path, k), d)
        for k, o in olds.items():
            if k not in news:
                d.removed |= _paths(o, elem, (*path, k), True)
        return
    if kind == LIST_SET and isinstance(old, list) and isinstance(new, list):
        if not old or not new:
            d.modified.add(path)
        olds_v = {_value_element(i) for i in old}
        news_v = {_value_element(i) for i in new}
        d.added |= {(*path, v) for v in news_v - olds_v}
        d.removed |= {(*path, v) for v in olds_v - news_v}
        return
    d.modified.add(path)


def _paths(v: Any, t: Type, path: Path, member: bool) -> set[Path]:
    tree = field_tree(v, t, True, member)
    if not tree:
        return {path}
    return members(tree, path)


def compare(old: Obj, new: Obj, t: Type, status_sub: bool, subresource: str | None) -> Diff:
    """What a write changed, in the fields managers own: added, modified, removed."""
    d = Diff()
    for k in old.keys() | new.keys():
        if k == "apiVersion" or k == "kind":
            continue
        if subresource in STATUS_LIKE:
            if k != "status":
                continue
        elif k == "status" and status_sub:
            continue
        o, n = old.get(k, _MISSING), new.get(k, _MISSING)
        if k == "metadata":  # what is left of it, or missing when nothing is
            o = {mk: mv for mk, mv in o.items() if mk not in META_STRIP} if o else {}
            n = {mk: mv for mk, mv in n.items() if mk not in META_STRIP} if n else {}
            o, n = o or _MISSING, n or _MISSING
        if o == n:
            continue
        ct = t.child(k)
        p = ("f:" + k,)
        if o is _MISSING:
            d.added |= _paths(n, ct, p, ct.kind == MAP)
        elif n is _MISSING:
            d.removed |= _paths(o, ct, p, True)
        else:
            _diff(o, n, ct, p, d)
    return d


# ================================================================ managers


def manager_name(field_manager: str | None, user_agent: str) -> str:
    """The manager of a write: ``fieldManager``, else the user agent up to its first "/"
    (printable characters, at most 128), as kube-apiserver names it."""
    if field_manager:
        return field_manager
    name = "".join(c for c in user_agent.split("/", 1)[0] if c.isprintable())
    return name[:MAX_MANAGER]


def _sort(entries: list[Obj]) -> list[Obj]:
    return sorted(
        entries,
        key=lambda e: (
            e.get("operation") or "",
            e.get("time") or "",
            e.get("manager") or "",
            e.get("apiVersion") or "",
            e.get("subresource") or "",
        ),
    )


def _same_manager(e: Obj, manager: str, op: str, api_version: str, sub: str | None) -> bool:
    return (
        e.get("manager") == manager
        and e.get("operation") == op
        and (op == "Apply" or e.get("apiVersion") == api_version)
        and (e.get("subresource") or None) == sub
    )


def entry(
    manager: str, op: str, api_version: str, now: str, tree: Tree, sub: str | None = None
) -> Obj:
    """One managedFields entry."""
    e: Obj = {
        "manager": manager,
        "operation": op,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": tree,
    }
    if sub:
        e["subresource"] = sub
    return e


def _copy_tree(t: Tree) -> Tree:
    return {k: _copy_tree(v) for k, v in t.items()}


def valid_entries(value: Any) -> list[Obj] | None:
    """Entries a client sent in ``metadata.managedFields``, or None when they are not entries
    the server could have written (kube-apiserver then keeps what it has)."""
    if not isinstance(value, list) or not value:
        return None
    for e in value:
        if not isinstance(e, dict) or not isinstance(e.get("manager"), str):
            return None
        if e.get("operation") not in ("Apply", "Update"):
            return None
        if e.get("fieldsType", "FieldsV1") != "FieldsV1" or not isinstance(
            e.get("fieldsV1", {}), dict
        ):
            return None
    return [dict(e) for e in value]


def _without(entries: list[Obj], changed: set[Path]) -> list[Obj]:
    """``entries`` with the ``changed`` fields taken from them (they move to the writer); an
    entry left with no field goes."""
    out: list[Obj] = []
    for e in entries:
        tree = e.get("fieldsV1") or {}
        if any(owns(tree, p) for p in changed):
            tree = _copy_tree(tree)
            for p in changed:
                discard(tree, p)
            if not tree:
                continue
            e = {**e, "fieldsV1": tree}
        out.append(e)
    return out


def record_update(
    entries: list[Obj],
    diff: Diff,
    manager: str,
    api_version: str,
    subresource: str | None,
    now: str,
) -> list[Obj]:
    """The entries after ``manager`` made the changes ``diff`` with an Update: the changed
    fields leave the other managers and belong to it."""
    if diff.empty():
        return entries
    mine: Obj | None = None
    others: list[Obj] = []
    for e in entries:
        if _same_manager(e, manager, "Update", api_version, subresource):
            mine = dict(e)
        else:
            others.append(e)
    out = _without(others, diff.changed())
    tree = _copy_tree(mine.get("fieldsV1") or {}) if mine else {}
    for p in diff.removed:
        discard(tree, p)
    for p in diff.added | diff.modified:
        if p not in diff.removed:
            insert(tree, p)
    if tree:
        out.append(entry(manager, "Update", api_version, now, tree, subresource))
    return _sort(out)


def created_entries(
    obj: Obj, t: Type, status_sub: bool, manager: str, api_version: str, now: str
) -> list[Obj] | None:
    """The managedFields of an object ``manager`` creates: one Update entry owning its fields.
    None when there are none, or when the schema cannot place them (a keyed list's item
    without its key): the write goes on without them, as kube-apiserver's UpdateNoErrors."""
    try:
        tree = object_tree(obj, t, status_sub, None, dots=True)
    except ApiError as e:
        log.warning("managedFields of a new object by %s not recorded: %s", manager, e)
        return None
    return [entry(manager, "Update", api_version, now, tree)] if tree else None


def created_over_sent(
    sent: list[Obj],
    obj: Obj,
    t: Type,
    status_sub: bool,
    manager: str,
    api_version: str,
    now: str,
) -> list[Obj] | None:
    """The managedFields of an object created with valid ``sent`` entries, as kube-apiserver's
    field manager makes them: the create is an Update over an empty object, so the creator
    takes every field the object has from the sent entries (an entry left with none goes) and
    adds them to its own entry (a sent one of the same manager, operation and apiVersion)."""
    created = created_entries(obj, t, status_sub, manager, api_version, now)
    if not created:
        return _sort([dict(e) for e in sent]) or None
    tree = created[0]["fieldsV1"]
    others: list[Obj] = []
    for e in sent:
        if _same_manager(e, manager, "Update", api_version, None):
            for p in members(e.get("fieldsV1") or {}):
                insert(tree, p)
        else:
            others.append(e)
    return _sort([*_without(others, members(tree)), *created])


def updated_entries(
    entries: list[Obj],
    old: Obj,
    new: Obj,
    t: Type,
    status_sub: bool,
    subresource: str | None,
    manager: str,
    api_version: str,
    entry_subresource: str | None,
    now: str,
) -> list[Obj]:
    """``record_update`` of what a write of ``new`` over ``old`` changed (through
    ``subresource``; the entry names ``entry_subresource``); the entries unchanged when the
    schema cannot compare them (the write goes on, as kube-apiserver's UpdateNoErrors)."""
    try:
        diff = compare(old, new, t, status_sub, subresource)
    except ApiError as e:
        log.warning("managedFields of a write by %s not recorded: %s", manager, e)
        return entries
    return record_update(entries, diff, manager, api_version, entry_subresource, now)


# ================================================================ apply


class Conflicts(ApiError):
    """409: an apply would change fields other managers own (kube-apiserver's Status)."""

    def __init__(self, conflicts: list[tuple[Obj, Path]]) -> None:
        causes = []
        by_manager: dict[str, list[str]] = {}
        for e, path in conflicts:
            who = _print_manager(e)
            field = path_string(path)
            causes.append(
                {
                    "reason": "FieldManagerConflict",
                    "message": f"conflict with {who}",
                    "field": field,
                }
            )
            by_manager.setdefault(who, []).append(field)
        if len(conflicts) == 1:
            message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
        else:
            lines = []
            for who in sorted(by_manager):
                lines.append(f"conflicts with {who}:")
                lines += [f"- {f}" for f in by_manager[who]]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
        super().__init__(409, "Conflict", message, {"causes": causes})


def _print_manager(e: Obj) -> str:
    out = json.dumps(e.get("manager") or "")
    if e.get("subresource"):
        out += f" with subresource {json.dumps(e['subresource'])}"
    if e.get("operation") == "Update":
        out += f" using {e.get('apiVersion') or ''}"
    return out


def merge(live: Any, config: Any, t: Type) -> Any:
    """``config`` merged into ``live`` by the schema: maps and structs field by field, keyed
    lists item by item, sets as a union, anything else (scalars, atomic lists and maps)
    replaced."""
    kind = t.kind
    if (kind == STRUCT or kind == MAP) and isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for k, v in config.items():
            out[k] = merge(live[k], v, t.child(k)) if k in live else _plain(v)
        return out
    if kind == LIST_MAP and isinstance(live, list) and isinstance(config, list):
        elem = t.elem or _ATOMIC
        result = list(live)
        index = {_key_element(item, t.keys): n for n, item in enumerate(live)}
        for item in config:
            key = _key_element(item, t.keys)
            n = index.get(key)
            if n is None:
                index[key] = len(result)
                result.append(_plain(item))
            else:
                result[n] = merge(result[n], item, elem)
        return result
    if kind == LIST_SET and isinstance(live, list) and isinstance(config, list):
        return list(live) + [_plain(v) for v in config if v not in live]
    return _plain(config)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def remove(obj: Obj, path: Path) -> None:
    """Take the field or item at ``path`` out of ``obj`` (and containers it leaves empty)."""
    trail: list[tuple[Any, Any]] = []
    cur: Any = obj
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f" and isinstance(cur, dict) and rest in cur:
            trail.append((cur, rest))
            cur = cur[rest]
        elif kind == "k" and isinstance(cur, list):
            key = json.loads(rest)
            n = next(
                (
                    n
                    for n, item in enumerate(cur)
                    if isinstance(item, dict)
                    and all(item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in key.items())
                ),
                None,
            )
            if n is None:
                return
            trail.append((cur, n))
            cur = cur[n]
        elif kind == "v" and isinstance(cur, list):
            value = json.loads(rest)
            if value not in cur:
                return
            trail.append((cur, cur.index(value)))
            cur = value
        else:
            return
    first = True
    while trail:
        parent, at = trail.pop()
        if first or (isinstance(parent[at], dict | list) and not parent[at]):
            del parent[at]
            first = False
        else:
            return


def _names_item(path: Path) -> bool:
    """Whether ``path`` is a key field of a keyed list's item (it goes only with the item)."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def apply(
    live: Obj | None,
    config: Obj,
    t: Type,
    entries: list[Obj],
    manager: str,
    api_version: str,
    subresource: str | None,
    status_sub: bool,
    force: bool,
    now: str,
) -> tuple[Obj, list[Obj]]:
    """The object after ``manager`` applied ``config`` to ``live`` (None: it does not exist
    yet), and its managedFields; ``Conflicts`` when it would change other managers' fields."""
    cfg_tree = object_tree(config, t, status_sub, subresource, dots=False)
    if live is None:
        return _plain(config), [entry(manager, "Apply", api_version, now, cfg_tree, subresource)]
    merged = merge(live, config, t)
    mine: Obj | None = None
    others: list[Obj] = []
    for e in entries:
        if _same_manager(e, manager, "Apply", api_version, subresource):
            mine = e
        else:
            others.append(e)
    if mine is not None:  # what it applied before and no longer applies goes, if nobody owns it
        owners = [cfg_tree] + [e.get("fieldsV1") or {} for e in others]
        gone = members(mine.get("fieldsV1") or {}) - members(cfg_tree)
        if gone:
            merged = _plain(merged)  # removing must not touch ``live``, which merged shares
        for p in sorted(gone, key=len, reverse=True):
            if any(owns(o, p) or owns_below(o, p) for o in owners) or _names_item(p):
                continue
            remove(merged, p)
    diff = compare(live, merged, t, status_sub, subresource)
    touched = diff.added | diff.modified
    conflicts = [
        (e, p) for e in others for p in sorted(touched) if owns(e.get("fieldsV1") or {}, p)
    ]
    if conflicts and not force:
        raise Conflicts(conflicts)
    out = _without(others, diff.changed())
    if mine is not None and diff.empty() and mine.get("fieldsV1") == cfg_tree:
        out.append(mine)  # nothing changed: the entry keeps its time
    elif cfg_tree:
        out.append(entry(manager, "Apply", api_version, now, cfg_tree, subresource))
    return merged, _sort(out)
