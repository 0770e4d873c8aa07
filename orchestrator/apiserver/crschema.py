"""A custom resource's structural schema (a CRD version's ``openAPIV3Schema``): prune the
fields it does not name, apply its defaults, validate, as kube-apiserver's
apiextensions-apiserver does (pruning, then defaulting, then kube-openapi's validation), with
its field paths and words (``spec.replicas: Invalid value: "string": spec.replicas in body
must be of type integer: "string"``).

Imported when the first CustomResourceDefinition is served (the server's idle size): nothing
imports it at start.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

__all__ = [
    "SchemaError",
    "SchemaErrors",
    "admit",
    "default",
    "prune",
    "structural_problem",
    "unknown_fields",
    "validate",
]

Obj = dict[str, Any]
Schema = dict[str, Any]
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# what an embedded resource and the root keep whatever the schema says
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


class SchemaError(ValueError):
    """One invalid field: ``field`` its path, ``message`` kube's words after the path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _text(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def _type_name(v: Any) -> str:
    """kube-openapi's name for the type of a decoded JSON value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _preserves(s: Schema) -> bool:
    return bool(s.get("x-kubernetes-preserve-unknown-fields"))


# ----------------------------------------------------------------- pruning


def prune(
    value: Any, s: Schema, root: bool = True, path: str = "", found: list[str] | None = None
) -> None:
    """Drop, in place, the fields of objects the schema does not name (unless it preserves
    unknown fields there); the root and embedded resources keep apiVersion, kind, metadata.
    ``found``: the paths of the fields dropped are added to it."""
    if isinstance(value, dict):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
        extra = s.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else None
        keep = _preserves(s) or extra is not None
        embedded = root or bool(s.get("x-kubernetes-embedded-resource"))
        for k in list(value):
            sub = props.get(k, extra)
            if not isinstance(sub, dict):
                if not keep and not (embedded and k in ROOT_FIELDS):
                    # (a null is no field: a merge patch removes one so)
                    if found is not None and value[k] is not None:
                        found.append(_at(path, k))
                    del value[k]
                continue
            prune(value[k], sub, False, _at(path, k), found)
    elif isinstance(value, list):
        items = s.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                prune(v, items, False, _at(path, i), found)


# ----------------------------------------------------------------- defaulting


def default(value: Any, s: Schema) -> None:
    """Set, in place, the ``default`` of every property that is missing (or null where the
    schema is not nullable), from the top down (a default object gets its own defaults)."""
    if isinstance(value, dict):
        props = s.get("properties")
        if isinstance(props, dict):
            for k, sub in props.items():
                if not isinstance(sub, dict) or "default" not in sub:
                    continue
                if k not in value or (value[k] is None and not sub.get("nullable")):
                    value[k] = copy.deepcopy(sub["default"])
            for k, v in value.items():
                sub = props.get(k)
                if isinstance(sub, dict):
                    default(v, sub)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict) and not isinstance(props, dict):
            for v in value.values():
                default(v, extra)
    elif isinstance(value, list):
        items = s.get("items")
        if isinstance(items, dict):
            for v in value:
                default(v, items)


# ----------------------------------------------------------------- validation


@lru_cache(maxsize=256)
def _pattern(p: str) -> re.Pattern[str] | None:
    try:
        return re.compile(p)
    except re.error:
        return None


def _check_type(v: Any, s: Schema, path: str) -> bool:
    """Raise for a value of the wrong type; False when there is nothing more to check."""
    if v is None:
        if s.get("nullable"):
            return False
        t = s.get("type")
        if t or s.get("x-kubernetes-int-or-string"):
            raise SchemaError(
                path,
                f'Invalid value: "null": {path} in body must be of type {t or "string"}: "null"',
            )
        return False
    if s.get("x-kubernetes-int-or-string"):
        if isinstance(v, bool) or not isinstance(v, int | str):
            name = _type_name(v)
            raise SchemaError(
                path,
                f'Invalid value: "{name}": {path} in body must be of type integer,string: "{name}"',
            )
        return True
    t = s.get("type")
    if not t:
        return True
    name = _type_name(v)
    ok = (
        name == t
        or (t == "number" and name == "integer")
        or (t == "integer" and isinstance(v, float) and v.is_integer())
    )
    if not ok:
        raise SchemaError(
            path, f'Invalid value: "{name}": {path} in body must be of type {t}: "{name}"'
        )
    fmt = s.get("format")
    if t == "integer" and fmt in ("int32", "int64"):
        lo, hi = INT32 if fmt == "int32" else INT64
        if not lo <= v <= hi:
            raise SchemaError(
                path, f"Invalid value: {_text(v)}: {path} in body must be of type {fmt}: {_text(v)}"
            )
    return True


class SchemaErrors(ValueError):
    """Every invalid field of an object, by path."""

    def __init__(self, found: list[SchemaError]) -> None:
        self.errors = found
        super().__init__("; ".join(str(e) for e in found))


def validate(value: Any, s: Schema, path: str = "") -> None:
    """Raise SchemaError for the one field of ``value`` the schema refuses, SchemaErrors
    when there are more (all of them, as kube lists them)."""
    found: list[SchemaError] = []
    _validate(value, s, path, found)
    found.sort(key=lambda e: e.field)  # (in an order the body's key order does not change)
    if len(found) == 1:
        raise found[0]
    if found:
        raise SchemaErrors(found)


def _validate(value: Any, s: Schema, path: str, found: list[SchemaError]) -> None:
    try:
        _node(value, s, path, found)
    except SchemaError as e:  # this value is wrong: what is below it is not checked
        found.append(e)


def _node(value: Any, s: Schema, path: str, found: list[SchemaError]) -> None:
    if not _check_type(value, s, path):
        return
    if s.get("x-kubernetes-preserve-unknown-fields") and not s.get("type"):
        return
    where = path or "<root>"
    enum = s.get("enum")
    if isinstance(enum, list) and value not in enum:
        supported = ", ".join(_text(e) for e in enum)
        raise SchemaError(path, f"Unsupported value: {_text(value)}: supported values: {supported}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = s.get("minimum"), s.get("maximum")
        if isinstance(lo, int | float):
            if s.get("exclusiveMinimum") and value <= lo:
                raise SchemaError(
                    path, f"Invalid value: {_text(value)}: {where} in body should be greater"
                    f" than {_text(lo)}"
                )  # fmt: skip
            if value < lo:
                raise SchemaError(
                    path, f"Invalid value: {_text(value)}: {where} in body should be greater"
                    f" than or equal to {_text(lo)}"
                )  # fmt: skip
        if isinstance(hi, int | float):
            if s.get("exclusiveMaximum") and value >= hi:
                raise SchemaError(
                    path, f"Invalid value: {_text(value)}: {where} in body should be less than"
                    f" {_text(hi)}"
                )  # fmt: skip
            if value > hi:
                raise SchemaError(
                    path, f"Invalid value: {_text(value)}: {where} in body should be less than"
                    f" or equal to {_text(hi)}"
                )  # fmt: skip
    elif isinstance(value, str):
        n = len(value)
        if isinstance(s.get("maxLength"), int) and n > s["maxLength"]:
            raise SchemaError(path, f"Too long: may not be more than {s['maxLength']} bytes")
        if isinstance(s.get("minLength"), int) and n < s["minLength"]:
            raise SchemaError(
                path, f"Invalid value: {_text(value)}: {where} in body should be at least"
                f" {s['minLength']} chars long"
            )  # fmt: skip
        pattern = s.get("pattern")
        if isinstance(pattern, str):
            rx = _pattern(pattern)
            if rx is not None and rx.search(value) is None:
                raise SchemaError(
                    path, f"Invalid value: {_text(value)}: {where} in body should match"
                    f" '{pattern}'"
                )  # fmt: skip
    elif isinstance(value, list):
        if isinstance(s.get("maxItems"), int) and len(value) > s["maxItems"]:
            raise SchemaError(
                path, f"Too many: {len(value)}: must have at most {s['maxItems']} items"
            )
        if isinstance(s.get("minItems"), int) and len(value) < s["minItems"]:
            raise SchemaError(
                path, f"Invalid value: {len(value)}: {where} in body should have at least"
                f" {s['minItems']} items"
            )  # fmt: skip
        items = s.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _validate(v, items, _at(path, i), found)
        _check_unique(value, s, path, found)
    elif isinstance(value, dict):
        for r in s.get("required") or ():
            if r not in value:
                found.append(SchemaError(_at(path, r), "Required value"))
        props = s.get("properties")
        extra = s.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if isinstance(props, dict) else None
            if sub is None and isinstance(extra, dict):
                sub = extra
            if isinstance(sub, dict):
                _validate(v, sub, _at(path, k), found)
        if s.get("x-kubernetes-embedded-resource"):
            for f in ("apiVersion", "kind"):
                if not value.get(f):
                    found.append(SchemaError(_at(path, f), "Required value: must not be empty"))


def unknown_fields(obj: Obj, s: Schema) -> list[str]:
    """The paths of the fields of ``obj`` its schema does not name (kube's strict field
    validation: ``unknown field "spec.foo"``)."""
    found: list[str] = []
    prune(copy.deepcopy(obj), s, True, "", found)
    return sorted(found)


def _check_unique(value: list[Any], s: Schema, path: str, found: list[SchemaError]) -> None:
    """x-kubernetes-list-type set (items unique) and map (the map keys of items unique)."""
    kind = s.get("x-kubernetes-list-type")
    if kind == "set":
        seen: list[Any] = []
        for i, v in enumerate(value):
            if v in seen:
                found.append(SchemaError(_at(path, i), f"Duplicate value: {_text(v)}"))
            else:
                seen.append(v)
    elif kind == "map":
        keys = [k for k in s.get("x-kubernetes-list-map-keys") or () if isinstance(k, str)]
        taken: list[tuple[Any, ...]] = []
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                continue
            key = tuple(v.get(k) for k in keys)
            if key in taken:
                shown = ", ".join(f"{_text(k)}:{_text(v.get(k))}" for k in keys)
                found.append(
                    SchemaError(
                        _at(path, i), f"Duplicate value: map[string]interface {{}}{{{shown}}}"
                    )
                )
            else:
                taken.append(key)


def admit(obj: Obj, s: Schema) -> None:
    """Prune, default and validate a custom resource in place (its metadata is the API
    server's to check)."""
    prune(obj, s)
    default(obj, s)
    body = {k: v for k, v in obj.items() if k not in ROOT_FIELDS}
    props = {k: v for k, v in (s.get("properties") or {}).items() if k not in ROOT_FIELDS}
    validate(body, {**s, "properties": props, "required": _required_body(s)})


def _required_body(s: Schema) -> list[str]:
    return [r for r in s.get("required") or () if r not in ROOT_FIELDS]


# ----------------------------------------------------------------- the schema itself


def structural_problem(s: Any, path: str) -> tuple[str, str] | None:
    """(field, message) for what makes ``s`` not a structural schema (kube's words), or
    None: every level names its type, unless it is int-or-string or preserves unknown
    fields; the root is an object."""
    if not isinstance(s, dict):
        return path, "Required value: must be an object"
    if s.get("type") not in (None, "object", "array", "string", "integer", "number", "boolean"):
        return f"{path}.type", f"Unsupported value: {_text(s.get('type'))}"
    if (
        not s.get("type")
        and not s.get("x-kubernetes-int-or-string")
        and not s.get("x-kubernetes-preserve-unknown-fields")
    ):
        return f"{path}.type", "Required value: must not be empty for specified object fields"
    props = s.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            return f"{path}.properties", "Invalid value: must be an object"
        if s.get("additionalProperties") not in (None, False):
            return (
                f"{path}.additionalProperties",
                "Forbidden: additionalProperties and properties are mutual exclusive",
            )
        for k, sub in props.items():
            found = structural_problem(sub, f"{path}.properties[{k}]")
            if found:
                return found
    items = s.get("items")
    if s.get("type") == "array" and items is None:
        return f"{path}.items", "Required value: must be specified"
    if isinstance(items, dict):
        found = structural_problem(items, f"{path}.items")
        if found:
            return found
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        found = structural_problem(extra, f"{path}.additionalProperties")
        if found:
            return found
    return None
