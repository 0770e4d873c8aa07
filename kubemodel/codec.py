"""Decode Kubernetes objects into the generated types, default, validate, and encode them back.

``decode`` takes what ``yaml.safe_load`` or ``json.loads`` gives; ``decode_json`` takes the bytes
of a request body (the API server's path: msgspec reads them straight into the types). Both
refuse unknown fields, apply Kubernetes' defaults and validate, as kube-apiserver does on
create; every error is a ``FieldError`` naming the field. ``encode`` gives the JSON the API
returns: Kubernetes' JSON names, fields left at their default omitted (Go's omitempty),
quantities in their canonical form ("0.5" is "500m", as kube-apiserver writes them),
int-or-strings as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Union, get_args, get_origin

import msgspec

from kubemodel._generated import KINDS, Object
from kubemodel.errors import DecodeError, FieldError, at, kind_of, q
from kubemodel.quantity import Quantity

__all__ = [
    "DEFAULTERS",
    "ENCODED",
    "INT_RANGES",
    "VALIDATORS",
    "decode",
    "decode_json",
    "encode",
    "kind_of_type",
    "to_dict",
    "unknown_fields",
]

T = TypeVar("T", bound=Object)

# Per type: the defaulting (in place) and validation that kube-apiserver applies on create.
DEFAULTERS: dict[type[Object], Callable[[Any], None]] = {}
VALIDATORS: dict[type[Object], Callable[[Any], None]] = {}
# Per type: what its encoded form (to_dict) needs beyond the types' own encoding.
ENCODED: dict[type[Object], Callable[[dict[str, Any]], None]] = {}
# (type, JSON field) -> how an integer field is described in a type error ("a port number").
INT_RANGES: dict[tuple[type[Object], str], str] = {}

_GVK = {cls: gvk for gvk, cls in sorted(KINDS.items(), reverse=True)}


def kind_of_type(cls: type[Object]) -> tuple[str, str]:
    """(apiVersion, kind) of a top-level type."""
    return _GVK[cls]


def _dec_hook(typ: type, value: Any) -> Any:
    if typ is Quantity:
        try:
            return Quantity(value)
        except FieldError as e:
            raise ValueError(e.message) from None
    raise NotImplementedError(typ)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Quantity):
        return str(value)
    raise NotImplementedError(type(value))


class _TypeMeta(msgspec.Struct):
    apiVersion: str | None = None  # noqa: N815
    kind: str | None = None


def _type_for(api_version: object, kind: object, cls: type[T] | None) -> type[Any]:
    if cls is not None:
        want_api, want_kind = _GVK[cls]
        if api_version is not None and api_version != want_api:
            raise FieldError("apiVersion", f"must be {q(want_api)}, not {q(str(api_version))}")
        if kind is not None and kind != want_kind:
            raise FieldError("kind", f"must be {q(want_kind)}, not {q(str(kind))}")
        return cls
    if not isinstance(api_version, str) or not api_version:
        raise FieldError("apiVersion", "is required")
    if not isinstance(kind, str) or not kind:
        raise FieldError("kind", "is required")
    found = KINDS.get((api_version, kind))
    if found is None:
        raise FieldError("kind", f"unknown kind {q(kind)} in {q(api_version)}")
    return found


def _finish(obj: Any, defaults: bool, validate: bool) -> Any:
    api, kind = _GVK[type(obj)]
    if obj.api_version is None:
        obj.api_version = api  # the Python client POSTs without apiVersion and kind
    if obj.kind is None:
        obj.kind = kind
    if defaults and (d := DEFAULTERS.get(type(obj))):
        d(obj)
    if validate and (v := VALIDATORS.get(type(obj))):
        v(obj)
    return obj


def decode(
    data: object, cls: type[T] | None = None, *, defaults: bool = True, validate: bool = True
) -> T:
    """An object from JSON-like data (dicts, lists, str, int, float, bool, None, datetime).

    ``cls`` None picks the type from apiVersion and kind; given, they must match it (or be
    absent). ``defaults``/``validate`` False skip Kubernetes' defaulting and validation.
    """
    if not isinstance(data, Mapping):
        raise DecodeError("", f"must be an object, not {kind_of(data)}")
    typ = _type_for(data.get("apiVersion"), data.get("kind"), cls)
    try:
        obj = msgspec.convert(data, typ, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _field_error(str(e), typ, data) from None
    return _finish(obj, defaults, validate)


def decode_json(
    raw: bytes | str, cls: type[T] | None = None, *, defaults: bool = True, validate: bool = True
) -> T:
    """An object from JSON text (a request body), as ``decode``."""
    try:
        if cls is None:
            meta = msgspec.json.decode(raw, type=_TypeMeta)
            typ = _type_for(meta.apiVersion, meta.kind, None)
        else:
            typ = cls
        obj = msgspec.json.decode(raw, type=typ, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        # Find the field in the decoded document (the slow path: only for a bad object).
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as de:
            raise DecodeError("", f"invalid JSON: {de}") from None
        if cls is None:
            typ = _type_for(data.get("apiVersion"), data.get("kind"), None)
        raise _field_error(str(e), typ, data) from None
    except msgspec.DecodeError as e:
        raise DecodeError("", f"invalid JSON: {e}") from None
    if cls is not None:
        _type_for(obj.api_version, obj.kind, cls)
    return _finish(obj, defaults, validate)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(obj: Object) -> bytes:
    """The JSON the API returns for ``obj`` (apiVersion and kind filled in when missing)."""
    if type(obj) in _GVK and (obj.api_version is None or obj.kind is None):  # type: ignore[attr-defined]
        obj.api_version, obj.kind = _GVK[type(obj)]  # type: ignore[attr-defined]
    return _encoder.encode(obj)


def to_dict(obj: Object) -> dict[str, Any]:
    """``encode`` as plain dicts and lists (datetimes as RFC 3339 text), with the kind's
    ``ENCODED`` finish (MicroTime fields in Go's fixed six digits)."""
    result = msgspec.json.decode(encode(obj))
    assert isinstance(result, dict)
    if finish := ENCODED.get(type(obj)):
        finish(result)
    return result


# ============================================================================= error paths

_MSG = re.compile(r"(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?\Z", re.S)
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_EXPECTED = re.compile(r"Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`\Z")
_GOT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "object": "an object",
    "array": "a list",
    "null": "null",
}
_WANT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "an object",
    "array": "a list",
    "int | str": "an integer or a string",
    "datetime": "a timestamp (RFC 3339)",
}


def _strip_optional(typ: Any) -> Any:
    if get_origin(typ) is Union or type(typ).__name__ == "UnionType":
        args = [a for a in get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return typ


def _field_type(cls: Any, json_name: str) -> Any:
    for f in msgspec.structs.fields(cls):
        if f.encode_name == json_name:
            return _strip_optional(f.type)
    return None


def _field_error(text: str, typ: type, data: object) -> FieldError:
    """Turn msgspec's message into a FieldError whose path names map keys too."""
    key_error = " - at `key` in `" in text  # a map key that is not a string
    m = _MSG.match(text.replace(" - at `key` in `", " - at `"))
    assert m is not None
    msg, raw_path = m["msg"], m["path"] or "$"
    path = ""
    cur_type: Any = typ
    owner: Any = None
    last_field = ""
    node: object = data
    for seg_name, seg_index in _SEGMENT.findall(raw_path.removeprefix("$")):
        owner, last_field = None, ""
        if seg_name:
            owner, last_field = (cur_type, seg_name) if _is_struct(cur_type) else (None, "")
            cur_type = _field_type(cur_type, seg_name) if _is_struct(cur_type) else None
            node = node.get(seg_name) if isinstance(node, dict) else None
            path = at(path, seg_name)
        elif seg_index == "...":
            value_type = _strip_optional(get_args(cur_type)[1]) if get_args(cur_type) else Any
            key = _bad_key(node, value_type)
            cur_type = value_type
            if key is None:
                path += "[...]"
                node = None
            else:
                path = at(path, str(key))
                node = node.get(key) if isinstance(node, dict) else None
        else:
            cur_type = _strip_optional(get_args(cur_type)[0]) if get_args(cur_type) else Any
            node = node[int(seg_index)] if isinstance(node, list) else None
            path = at(path, int(seg_index))
    if key_error:
        return DecodeError(path, "keys must be strings")
    if m2 := re.fullmatch(r"Object contains unknown field `([^`]*)`", msg):
        return DecodeError(at(path, m2[1]), "unknown field")
    if m2 := re.fullmatch(r"Object missing required field `([^`]*)`", msg):
        return FieldError(at(path, m2[1]), "is required")  # a validation error in kube
    if m2 := _EXPECTED.match(msg):
        want = m2["want"].removesuffix(" | null")
        if want == "object" and get_origin(cur_type) is dict:
            inner = _strip_optional(get_args(cur_type)[1])
            described = "an object of strings" if inner is str else "an object"
        elif want == "int" and owner is not None and (owner, last_field) in INT_RANGES:
            described = INT_RANGES[(owner, last_field)]
        else:
            described = _WANT.get(want, f"`{want}`")
        # Go's decoder takes null as the zero value: then validation refuses it (422)
        error = FieldError if m2["got"] == "null" else DecodeError
        return error(path, f"must be {described}, not {_GOT.get(m2['got'], m2['got'])}")
    return DecodeError(path, msg)


def _is_struct(typ: Any) -> bool:
    return isinstance(typ, type) and issubclass(typ, msgspec.Struct)


def _bad_key(node: object, value_type: Any) -> object:
    """The first key of a map whose value does not convert to ``value_type``."""
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if not isinstance(key, str):
            return key
        try:
            msgspec.convert(value, value_type, dec_hook=_dec_hook)
        except msgspec.ValidationError:
            return key
    return None


# ============================================================================= unknown fields


@functools.cache
def _struct_fields(cls: type) -> dict[str, Any]:
    return {f.encode_name: f.type for f in msgspec.structs.fields(cls)}


def unknown_fields(data: Any, cls: type[Object], *, prune: bool = False) -> list[str]:
    """The paths of the fields of ``data`` that ``cls`` does not have (``spec.foo``,
    ``spec.containers[0].bar``), as kube-apiserver's field validation names them; with
    ``prune`` they are also removed from ``data`` (in place). Keys starting with ``$``
    (strategic merge patch directives) are not fields. Values of the wrong type are left
    for ``decode`` to refuse."""
    try:  # the common case, and msgspec's C decoder is faster than the walk below
        msgspec.convert(data, cls, dec_hook=_dec_hook)
        return []
    except msgspec.ValidationError:
        pass  # an unknown field, or something else wrong (a patch lacks required fields)
    found: list[str] = []
    stack: list[tuple[Any, Any, str]] = [(data, cls, "")]
    while stack:
        value, typ, path = stack.pop()
        typ = _strip_optional(typ)
        if _is_struct(typ):
            if not isinstance(value, dict):
                continue
            fields = _struct_fields(typ)
            for key in list(value):
                if not isinstance(key, str):
                    continue
                sub = at(path, key)
                if key in fields:
                    stack.append((value[key], fields[key], sub))
                elif not key.startswith("$"):
                    found.append(sub)
                    if prune:
                        del value[key]
            continue
        origin = get_origin(typ)
        if origin is list and isinstance(value, list):
            (item,) = get_args(typ)
            stack.extend((v, item, at(path, i)) for i, v in enumerate(value))
        elif origin is dict and isinstance(value, dict):
            item = get_args(typ)[1]
            if _is_struct(_strip_optional(item)):
                stack.extend((v, item, at(path, str(k))) for k, v in value.items())
    return sorted(found)
