"""Protobuf request bodies of the access reviews and TokenRequest.

kubectl 1.32 sends ``kubectl auth can-i`` (SelfSubjectAccessReview, SelfSubjectRulesReview) and
``kubectl create token`` (TokenRequest) as ``application/vnd.kubernetes.protobuf``: the 4 bytes
``k8s\\x00`` then a ``runtime.Unknown`` whose ``raw`` (field 2) is the object's message. These
few messages are read here, by field number (k8s.io/api authorization/v1 and authentication/v1
``generated.proto``), into the JSON shape of their ``spec``; the answer goes back as JSON, which
client-go decodes by the response's Content-Type.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MEDIA_TYPE", "ProtoError", "decode_spec"]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message: field number -> (JSON name, kind); kind "s" string, "i" integer, "S" repeated string,
# a dict a nested message, ("map", message) a map<string, message>
_RESOURCE = {
    1: ("namespace", "s"),
    2: ("verb", "s"),
    3: ("group", "s"),
    4: ("version", "s"),
    5: ("resource", "s"),
    6: ("subresource", "s"),
    7: ("name", "s"),
}
_NONRESOURCE = {1: ("path", "s"), 2: ("verb", "s")}
_EXTRA = {1: ("items", "S")}
_SSAR_SPEC = {1: ("resourceAttributes", _RESOURCE), 2: ("nonResourceAttributes", _NONRESOURCE)}
_SAR_SPEC = {
    **_SSAR_SPEC,
    3: ("user", "s"),
    4: ("groups", "S"),
    5: ("extra", ("map", _EXTRA)),
    6: ("uid", "s"),
}
_BOUND = {1: ("kind", "s"), 2: ("apiVersion", "s"), 3: ("name", "s"), 4: ("uid", "s")}
SPECS: dict[str, dict[int, Any]] = {
    "SelfSubjectAccessReview": _SSAR_SPEC,
    "SubjectAccessReview": _SAR_SPEC,
    "LocalSubjectAccessReview": _SAR_SPEC,
    "SelfSubjectRulesReview": {1: ("namespace", "s")},
    "TokenReview": {1: ("token", "s"), 2: ("audiences", "S")},
    "TokenRequest": {
        1: ("audiences", "S"),
        3: ("boundObjectRef", _BOUND),
        4: ("expirationSeconds", "i"),
    },
    "SelfSubjectReview": {},
}


class ProtoError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtoError(f"field {number}: truncated")
            out.append((number, buf[i : i + n]))
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ProtoError(f"field {number}: wire type {wire} not supported")
    return out


def _message(buf: bytes, schema: dict[int, Any], depth: int = 0) -> dict[str, Any]:
    if depth > 10:
        raise ProtoError("nested too deeply")
    out: dict[str, Any] = {}
    for number, value in _fields(buf):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "i":
            if not isinstance(value, int):
                raise ProtoError(f"{name}: not an integer")
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
            continue
        if not isinstance(value, bytes):
            raise ProtoError(f"{name}: not length-delimited")
        if kind == "s":
            out[name] = value.decode()
        elif kind == "S":
            out.setdefault(name, []).append(value.decode())
        elif isinstance(kind, dict):
            out[name] = _message(value, kind, depth + 1)
        else:  # ("map", value schema)
            entry = dict(_fields(value))
            key = entry.get(1, b"")
            val = entry.get(2, b"")
            if not isinstance(key, bytes) or not isinstance(val, bytes):
                raise ProtoError(f"{name}: bad map entry")
            item = _message(val, kind[1], depth + 1)
            out.setdefault(name, {})[key.decode()] = item.get("items", [])
    return out


def decode_spec(body: bytes, kind: str) -> dict[str, Any]:
    """The ``spec`` of a ``kind`` object sent as Kubernetes protobuf, as JSON would give it."""
    if not body.startswith(MAGIC):
        raise ProtoError("not a Kubernetes protobuf body (no k8s\\x00 prefix)")
    unknown = dict(_fields(body[len(MAGIC) :]))
    raw = unknown.get(2, b"")
    if not isinstance(raw, bytes):
        raise ProtoError("the envelope has no object")
    obj = dict(_fields(raw))
    spec = obj.get(2, b"")
    if kind == "SelfSubjectReview" or not isinstance(spec, bytes):
        return {}
    try:
        return _message(spec, SPECS[kind])
    except UnicodeDecodeError:
        raise ProtoError("a string is not UTF-8") from None
