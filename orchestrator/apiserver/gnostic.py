"""An OpenAPI v2 (Swagger 2.0) document, as JSON-shaped dicts, encoded as the protobuf message
``openapi.v2.Document`` of gnostic (github.com/google/gnostic, ``openapiv2/OpenAPIv2.proto``):
what kube-apiserver serves at ``/openapi/v2`` to a client that asks for
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``, and what client-go decodes.

Only the writer, and only the messages a Kubernetes document uses: the document, info, paths
and their operations, query, path, header and body parameters, responses, schemas and their
definitions, security definitions and requirements. Each object is written field by field
from a table of its JSON names and field numbers; an ``x-`` key is a vendor extension (a
``NamedAny`` whose ``yaml`` holds the value as JSON, which YAML reads the same). A key the
message has no field for is an error naming where it is, as gnostic's own parser reports it:
nothing is dropped silently.

    body = gnostic.encode({"swagger": "2.0", "info": {...}, "paths": {...}, ...})
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["GnosticError", "encode"]

# (field number, value, where in the document) -> the field's bytes
Encoder = Callable[[int, Any, str], bytes]
Spec = dict[str, tuple[int, Encoder]]


class GnosticError(ValueError):
    """A document that the OpenAPI v2 messages cannot hold."""


# ----------------------------------------------------------------------------- wire format


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 takes ten bytes, as in every protobuf encoder
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _string(field: int, value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise GnosticError(f"{where}: a string, not {value!r}")
    return _len(field, value.encode()) if value else b""


def _bool(field: int, value: Any, where: str) -> bytes:
    if not isinstance(value, bool):
        raise GnosticError(f"{where}: a boolean, not {value!r}")
    return _tag(field, 0) + b"\x01" if value else b""


def _int(field: int, value: Any, where: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool):
        raise GnosticError(f"{where}: an integer, not {value!r}")
    return _tag(field, 0) + _varint(value) if value else b""


def _double(field: int, value: Any, where: str) -> bytes:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise GnosticError(f"{where}: a number, not {value!r}")
    return _tag(field, 1) + struct.pack("<d", value) if value else b""


def _strings(field: int, value: Any, where: str) -> bytes:
    if not isinstance(value, list):
        raise GnosticError(f"{where}: a list of strings, not {value!r}")
    return b"".join(_len(field, _string_value(v, where)) for v in value)


def _string_value(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise GnosticError(f"{where}: a string, not {value!r}")
    return value.encode()


def _any(field: int, value: Any, where: str) -> bytes:
    """gnostic's ``Any``: the value as YAML text (field 2); JSON is YAML."""
    return _len(field, _len(2, (json.dumps(value) + "\n").encode()))


def _repeated(encoder: Encoder) -> Encoder:
    def encode_list(field: int, value: Any, where: str) -> bytes:
        if not isinstance(value, list):
            raise GnosticError(f"{where}: a list, not {value!r}")
        return b"".join(encoder(field, v, f"{where}[{i}]") for i, v in enumerate(value))

    return encode_list


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise GnosticError(f"{where}: an object, not {value!r}")
    return value


def _named(value_encoder: Encoder) -> Encoder:
    """A map as gnostic writes it: repeated ``Named<X>{name = 1, value = 2}`` in order."""

    def encode_map(field: int, value: Any, where: str) -> bytes:
        return b"".join(
            _len(field, _len(1, name.encode()) + value_encoder(2, v, f"{where}.{name}"))
            for name, v in _obj(value, where).items()
        )

    return encode_map


def _fields(spec: Spec, extensions: int | None, value: Any, where: str) -> bytes:
    """The fields of one message, in field-number order as Go's proto.Marshal writes them."""
    parts: list[tuple[int, bytes]] = []
    for key, v in _obj(value, where).items():
        if key.startswith("x-") and extensions is not None:
            parts.append((extensions, _len(extensions, _len(1, key.encode()) + _any(2, v, key))))
        elif key in spec:
            number, encoder = spec[key]
            parts.append((number, encoder(number, v, f"{where}.{key}")))
        else:
            raise GnosticError(f"{where}: {key!r} is not a field of this OpenAPI v2 object")
    parts.sort(key=lambda p: p[0])
    return b"".join(p for _, p in parts)


def _message(spec: Spec, extensions: int | None = None) -> Encoder:
    def encode_message(field: int, value: Any, where: str) -> bytes:
        return _len(field, _fields(spec, extensions, value, where))

    return encode_message


# ----------------------------------------------------------------------------------- schema


def _schema(field: int, value: Any, where: str) -> bytes:
    return _len(field, _fields(_SCHEMA, 31, value, where))


def _type(field: int, value: Any, where: str) -> bytes:  # TypeItem{repeated string value = 1}
    return _len(field, _strings(1, [value] if isinstance(value, str) else value, where))


def _items(field: int, value: Any, where: str) -> bytes:  # ItemsItem{repeated Schema schema = 1}
    items = value if isinstance(value, list) else [value]
    return _len(field, _repeated(_schema)(1, items, where))


def _additional_properties(field: int, value: Any, where: str) -> bytes:
    # AdditionalPropertiesItem: oneof {Schema schema = 1; bool boolean = 2}; a oneof member is
    # written even when false
    if isinstance(value, bool):
        return _len(field, _tag(2, 0) + _varint(int(value)))
    return _len(field, _schema(1, value, where))


def _properties(field: int, value: Any, where: str) -> bytes:  # Properties{NamedSchema = 1}
    return _len(field, _named(_schema)(1, value, where))


_SCHEMA: Spec = {
    "$ref": (1, _string),
    "format": (2, _string),
    "title": (3, _string),
    "description": (4, _string),
    "default": (5, _any),
    "multipleOf": (6, _double),
    "maximum": (7, _double),
    "exclusiveMaximum": (8, _bool),
    "minimum": (9, _double),
    "exclusiveMinimum": (10, _bool),
    "maxLength": (11, _int),
    "minLength": (12, _int),
    "pattern": (13, _string),
    "maxItems": (14, _int),
    "minItems": (15, _int),
    "uniqueItems": (16, _bool),
    "maxProperties": (17, _int),
    "minProperties": (18, _int),
    "required": (19, _strings),
    "enum": (20, _repeated(_any)),
    "additionalProperties": (21, _additional_properties),
    "type": (22, _type),
    "items": (23, _items),
    "allOf": (24, _repeated(_schema)),
    "properties": (25, _properties),
    "discriminator": (26, _string),
    "readOnly": (27, _bool),
    "example": (30, _any),
}


# ------------------------------------------------------------------------------- parameters

_JSON_REFERENCE: Spec = {"$ref": (1, _string), "description": (2, _string)}
_BODY_PARAMETER: Spec = {
    "description": (1, _string),
    "name": (2, _string),
    "in": (3, _string),
    "required": (4, _bool),
    "schema": (5, _schema),
}


def _simple_parameter(allow_empty_value: bool) -> Spec:
    """Query and formData parameters have ``allowEmptyValue`` as field 5, and every later
    field one further than in path and header parameters."""
    spec: Spec = {
        "required": (1, _bool),
        "in": (2, _string),
        "description": (3, _string),
        "name": (4, _string),
    }
    shift = 1 if allow_empty_value else 0
    if allow_empty_value:
        spec["allowEmptyValue"] = (5, _bool)
    for i, (key, encoder) in enumerate(
        [
            ("type", _string),
            ("format", _string),
            ("collectionFormat", _string),  # after items, which Kubernetes never uses
            ("default", _any),
            ("maximum", _double),
            ("exclusiveMaximum", _bool),
            ("minimum", _double),
            ("exclusiveMinimum", _bool),
            ("maxLength", _int),
            ("minLength", _int),
            ("pattern", _string),
            ("maxItems", _int),
            ("minItems", _int),
            ("uniqueItems", _bool),
            ("enum", _repeated(_any)),
            ("multipleOf", _double),
        ]
    ):
        number = 5 + shift + i + (1 if i >= 2 else 0)  # field 7 (8 with the shift): items
        spec[key] = (number, encoder)
    return spec


_QUERY = _simple_parameter(allow_empty_value=True)
_PATH = _simple_parameter(allow_empty_value=False)
# NonBodyParameter: oneof {header = 1, formData = 2, query = 3, path = 4}; (member, fields,
# vendor-extension field)
_NON_BODY: dict[str, tuple[int, Spec, int]] = {
    "header": (1, _PATH, 22),
    "formData": (2, _QUERY, 23),
    "query": (3, _QUERY, 23),
    "path": (4, _PATH, 22),
}


def _parameter(field: int, value: Any, where: str) -> bytes:
    """ParametersItem: oneof {Parameter parameter = 1; JsonReference json_reference = 2};
    Parameter: oneof {BodyParameter = 1; NonBodyParameter = 2}."""
    obj = _obj(value, where)
    if "$ref" in obj:
        return _len(field, _message(_JSON_REFERENCE)(2, obj, where))
    where = f"{where}({obj.get('name')})"
    place = obj.get("in")
    if place == "body":
        parameter = _message(_BODY_PARAMETER, 6)(1, obj, where)
    elif isinstance(place, str) and place in _NON_BODY:
        member, spec, extensions = _NON_BODY[place]
        parameter = _len(2, _len(member, _fields(spec, extensions, obj, where)))
    else:
        raise GnosticError(f"{where}: a parameter in {place!r}")
    return _len(field, _len(1, parameter))


# ---------------------------------------------------------------------- operations, paths


def _schema_item(field: int, value: Any, where: str) -> bytes:  # SchemaItem{Schema schema = 1}
    return _len(field, _schema(1, value, where))


_RESPONSE: Spec = {"description": (1, _string), "schema": (2, _schema_item)}


def _response_value(field: int, value: Any, where: str) -> bytes:
    """ResponseValue: oneof {Response response = 1; JsonReference json_reference = 2}."""
    if "$ref" in _obj(value, where):
        return _len(field, _message(_JSON_REFERENCE)(2, value, where))
    return _len(field, _message(_RESPONSE, 5)(1, value, where))


def _responses(field: int, value: Any, where: str) -> bytes:
    """Responses{repeated NamedResponseValue response_code = 1; vendor_extension = 2}."""
    codes = {k: v for k, v in _obj(value, where).items() if not k.startswith("x-")}
    extensions = {k: v for k, v in value.items() if k.startswith("x-")}
    return _len(field, _named(_response_value)(1, codes, where) + _fields({}, 2, extensions, where))


_OPERATION: Spec = {
    "tags": (1, _strings),
    "summary": (2, _string),
    "description": (3, _string),
    "operationId": (5, _string),
    "produces": (6, _strings),
    "consumes": (7, _strings),
    "parameters": (8, _repeated(_parameter)),
    "responses": (9, _responses),
    "schemes": (10, _strings),
    "deprecated": (11, _bool),
}
_operation = _message(_OPERATION, 13)
_PATH_ITEM: Spec = {
    "$ref": (1, _string),
    "get": (2, _operation),
    "put": (3, _operation),
    "post": (4, _operation),
    "delete": (5, _operation),
    "options": (6, _operation),
    "head": (7, _operation),
    "patch": (8, _operation),
    "parameters": (9, _repeated(_parameter)),
}


def _paths(field: int, value: Any, where: str) -> bytes:
    """Paths{repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2}."""
    paths = {k: v for k, v in _obj(value, where).items() if not k.startswith("x-")}
    extensions = {k: v for k, v in value.items() if k.startswith("x-")}
    return _len(
        field,
        _fields({}, 1, extensions, where) + _named(_message(_PATH_ITEM, 10))(2, paths, where),
    )


# --------------------------------------------------------------------------------- security

# SecurityDefinitionsItem: oneof {basic = 1; apiKey = 2; oauth2 flows = 3..6 (not written)}
_SECURITY_SCHEMES: dict[str, tuple[int, Spec, int]] = {
    "basic": (1, {"type": (1, _string), "description": (2, _string)}, 3),
    "apiKey": (
        2,
        {
            "type": (1, _string),
            "name": (2, _string),
            "in": (3, _string),
            "description": (4, _string),
        },
        5,
    ),
}


def _security_scheme(field: int, value: Any, where: str) -> bytes:
    kind = _obj(value, where).get("type")
    if not isinstance(kind, str) or kind not in _SECURITY_SCHEMES:
        raise GnosticError(f"{where}: a security scheme of type {kind!r}")
    member, spec, extensions = _SECURITY_SCHEMES[kind]
    return _len(field, _len(member, _fields(spec, extensions, value, where)))


def _security_definitions(field: int, value: Any, where: str) -> bytes:
    return _len(field, _named(_security_scheme)(1, value, where))


def _security_requirement(field: int, value: Any, where: str) -> bytes:
    """SecurityRequirement{repeated NamedStringArray = 1}; StringArray{repeated string = 1}."""

    def scopes(f: int, v: Any, w: str) -> bytes:
        return _len(f, _strings(1, v, w))

    return _len(field, _named(scopes)(1, value, where))


# --------------------------------------------------------------------------------- document

_DOCUMENT: Spec = {
    "swagger": (1, _string),
    "info": (
        2,
        _message({"title": (1, _string), "version": (2, _string), "description": (3, _string)}, 7),
    ),
    "host": (3, _string),
    "basePath": (4, _string),
    "schemes": (5, _strings),
    "consumes": (6, _strings),
    "produces": (7, _strings),
    "paths": (8, _paths),
    "definitions": (9, _properties),  # Definitions{repeated NamedSchema = 1}, as Properties
    "security": (12, _repeated(_security_requirement)),
    "securityDefinitions": (13, _security_definitions),
}


def encode(document: Mapping[str, Any]) -> bytes:
    """``document`` (an OpenAPI v2 object) as an ``openapi.v2.Document`` message."""
    return _fields(_DOCUMENT, 16, document, "$")
