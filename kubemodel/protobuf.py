"""Decode Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) into the JSON
dicts the rest of Corral handles.

The envelope is the 4 bytes ``k8s\\x00`` then a ``runtime.Unknown`` message: typeMeta
(apiVersion, kind), raw (the object's own message), contentEncoding, contentType. The object's
message is read with the tables of ``_proto_generated.py`` (made by ``protogen.py`` from the
``generated.proto`` files and Go structs of k8s.io/api and k8s.io/apimachinery), and turned
into the JSON Go's ``encoding/json`` would give for the same Go value: what kubectl would have
sent as JSON. So a non-pointer field at its zero value is dropped under ``omitempty`` and kept
without it; a pointer field present on the wire is kept even when zero; a non-pointer struct is
always present; ``,inline`` fields are merged into their parent. Time, MicroTime, Duration,
Quantity, IntOrString, RawExtension and FieldsV1 have their own JSON forms (and certificates'
ExtraValue, a list of strings).

    obj = kubemodel.protobuf.decode(body)   # {"apiVersion": "v1", "kind": "Pod", ...}

Every error is a ``ProtobufError`` saying what is wrong and where (a message and field).
Unknown field numbers are skipped, as protobuf decoders do.
"""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from kubemodel._proto_generated import FIELDS, KINDS

__all__ = ["MAGIC", "MEDIA_TYPE", "ProtobufError", "decode", "decode_message", "envelope"]

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAX_DEPTH = 100  # message nesting (Kubernetes objects stay far below)

_REPEATED, _POINTER, _OMITEMPTY, _INLINE = 1, 2, 4, 8
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICRO_TIME = _META + "MicroTime"
_DURATION = _META + "Duration"
_FIELDS_V1 = _META + "FieldsV1"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_EXTRA_VALUE = "k8s.io.api.certificates.v1.ExtraValue"  # type ExtraValue []string
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Kinds registered in every group version (kubectl sends DeleteOptions as "v1" and others).
_ANY_VERSION = {"DeleteOptions": _META + "DeleteOptions", "Status": _META + "Status"}

_INTS = frozenset({"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool"})
_FIXED64 = frozenset({"fixed64", "double", "sfixed64"})
_FIXED32 = frozenset({"fixed32", "float", "sfixed32"})


class ProtobufError(ValueError):
    """A protobuf body that cannot be decoded."""


# ----------------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError(f"{where}: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError(f"{where}: varint too long")


def _fields(buf: bytes, where: str) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) in wire order; a length-delimited value is bytes."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"{where}: field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > end:
                raise ProtobufError(f"{where}: truncated 64-bit field {number}")
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos, where)
            if pos + size > end:
                raise ProtobufError(f"{where}: field {number} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            if pos + 4 > end:
                raise ProtobufError(f"{where}: truncated 32-bit field {number}")
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"{where}: field {number} has wire type {wire} (unsupported)")
        out.append((number, wire, value))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if bits == 32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >> 31 else value
    return value - (1 << 64) if value >> 63 else value


def _scalar(typ: str, wire: int, value: Any, where: str) -> Any:
    if typ == "string":
        if wire != 2:
            raise ProtobufError(f"{where}: a string with wire type {wire}")
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise ProtobufError(f"{where}: a string that is not UTF-8") from None
    if typ == "bytes":
        if wire != 2:
            raise ProtobufError(f"{where}: bytes with wire type {wire}")
        return base64.b64encode(value).decode()
    if typ in _INTS:
        if wire != 0:
            raise ProtobufError(f"{where}: an integer with wire type {wire}")
        if typ == "bool":
            return value != 0
        if typ in ("int32", "int64"):
            return _signed(value, 32 if typ == "int32" else 64)
        if typ in ("sint32", "sint64"):
            return (value >> 1) ^ -(value & 1)
        return value
    if typ in _FIXED64 and wire == 1:
        return struct.unpack("<d" if typ == "double" else "<q" if typ[0] == "s" else "<Q", value)[0]
    if typ in _FIXED32 and wire == 5:
        return struct.unpack("<f" if typ == "float" else "<i" if typ[0] == "s" else "<I", value)[0]
    raise ProtobufError(f"{where}: a {typ} with wire type {wire}")


def _packed(typ: str, value: bytes, where: str) -> list[Any]:
    out: list[Any] = []
    pos = 0
    while pos < len(value):
        if typ in _FIXED64:
            out.append(_scalar(typ, 1, value[pos : pos + 8], where))
            pos += 8
        elif typ in _FIXED32:
            out.append(_scalar(typ, 5, value[pos : pos + 4], where))
            pos += 4
        else:
            v, pos = _varint(value, pos, where)
            out.append(_scalar(typ, 0, v, where))
    return out


# ----------------------------------------------------------------------------- messages


def _zero(typ: str) -> Any:
    if typ == "string" or typ == "bytes":
        return ""
    if typ == "bool":
        return False
    return 0


def _special(typ: str, raw: bytes, where: str) -> Any:
    """The JSON of a message with its own Go marshalling."""
    if typ == _EXTRA_VALUE:
        return [
            _scalar("string", wire, value, f"{where}.1")
            for number, wire, value in _fields(raw, where)
            if number == 1
        ]
    f: dict[int, Any] = {}
    for number, wire, value in _fields(raw, where):
        f[number] = (wire, value)

    def get(number: int, scalar: str) -> Any:
        if number not in f:
            return _zero(scalar)
        return _scalar(scalar, f[number][0], f[number][1], f"{where}.{number}")

    if typ in (_TIME, _MICRO_TIME):
        seconds, nanos = get(1, "int64"), get(2, "int32")
        if not raw:
            return None  # the zero time: null in JSON
        t = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
        if typ == _TIME:
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if typ == _DURATION:
        return _go_duration(get(1, "int64"))
    if typ == _QUANTITY:
        return get(1, "string") or "0"
    if typ == _INT_OR_STRING:
        return get(3, "string") if get(1, "int64") == 1 else get(2, "int32")
    if typ in (_RAW_EXTENSION, _FIELDS_V1):
        data = f.get(1, (2, b""))[1]
        if not data:
            return None
        if typ == _RAW_EXTENSION and bytes(data[:4]) == MAGIC:
            return decode(bytes(data))
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as e:
            raise ProtobufError(f"{where}: embedded JSON is not valid: {e}") from None
    raise ProtobufError(f"{where}: no decoder for {typ}")


def _go_duration(ns: int) -> str:
    """time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                text = f"{ns / size:.9f}".rstrip("0").rstrip(".")
                return f"{sign}{text}{unit}"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return f"{sign}{out}{secs}s"


def _value(typ: str, wire: int, value: Any, where: str, depth: int) -> Any:
    if typ in FIELDS:
        if wire != 2:
            raise ProtobufError(f"{where}: a message with wire type {wire}")
        return _message(typ, bytes(value), where, depth + 1)
    if typ.startswith("k8s.io."):
        if wire != 2:
            raise ProtobufError(f"{where}: a message with wire type {wire}")
        return _special(typ, bytes(value), where)
    return _scalar(typ, wire, value, where)


def _map_entry(value_type: str, raw: bytes, where: str, depth: int) -> tuple[str, Any]:
    key, val = "", None
    have_value = False
    for number, wire, v in _fields(raw, where):
        if number == 1:
            key = _scalar("string", wire, v, where)
        elif number == 2:
            val, have_value = _value(value_type, wire, v, f"{where}[{key}]", depth), True
    if not have_value:
        val = _value(value_type, 2, b"", where, depth) if "." in value_type else _zero(value_type)
    return key, val


def _message(typ: str, raw: bytes, where: str, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ProtobufError(f"{where}: nested deeper than {MAX_DEPTH} messages")
    table = FIELDS[typ]
    found: dict[int, Any] = {}
    for number, wire, value in _fields(raw, where):
        spec = table.get(number)
        if spec is None:
            continue  # a field this version does not know
        name, ftype, value_type, flags = spec
        at = f"{where}.{name}"
        if ftype == "map":
            if wire != 2:
                raise ProtobufError(f"{at}: a map entry with wire type {wire}")
            k, v = _map_entry(value_type, bytes(value), at, depth)
            found.setdefault(number, {})[k] = v
        elif flags & _REPEATED:
            items = found.setdefault(number, [])
            if wire == 2 and ftype not in FIELDS and ftype not in ("string", "bytes"):
                if ftype.startswith("k8s.io."):
                    items.append(_value(ftype, wire, value, f"{at}[{len(items)}]", depth))
                else:
                    items.extend(_packed(ftype, bytes(value), at))
            else:
                items.append(_value(ftype, wire, value, f"{at}[{len(items)}]", depth))
        else:
            found[number] = _value(ftype, wire, value, at, depth)  # the last one wins
    out: dict[str, Any] = {}
    for number, (name, ftype, _, flags) in table.items():
        if number in found:
            value = found[number]
        elif flags & (_POINTER | _REPEATED) or ftype == "map":
            continue  # nil: omitted
        elif ftype in FIELDS:
            value = _message(ftype, b"", f"{where}.{name}", depth + 1)
        elif ftype.startswith("k8s.io."):
            value = _special(ftype, b"", f"{where}.{name}")
        else:
            value = _zero(ftype)
        if flags & _INLINE:
            if isinstance(value, dict):
                out.update(value)
            continue
        # encoding/json's omitempty: false, 0, "", nil and empty lists and maps; never a
        # struct (a zero Time is a struct and shows as null).
        if (
            flags & _OMITEMPTY
            and not flags & _POINTER
            and "." not in ftype
            and (value == [] or value == {} or value == _zero(ftype))
        ):
            continue
        out[name] = value
    return out


# ----------------------------------------------------------------------------- envelope


def envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, the object's message bytes) of a protobuf body."""
    if body[:4] != MAGIC:
        raise ProtobufError("not a Kubernetes protobuf body (the k8s\\0 prefix is missing)")
    api_version = kind = ""
    raw = b""
    encoding = content_type = ""
    for number, wire, value in _fields(body[4:], "Unknown"):
        if number == 1 and wire == 2:
            for n2, w2, v2 in _fields(bytes(value), "Unknown.typeMeta"):
                if n2 == 1:
                    api_version = _scalar("string", w2, v2, "Unknown.typeMeta.apiVersion")
                elif n2 == 2:
                    kind = _scalar("string", w2, v2, "Unknown.typeMeta.kind")
        elif number == 2 and wire == 2:
            raw = bytes(value)
        elif number == 3:
            encoding = _scalar("string", wire, value, "Unknown.contentEncoding")
        elif number == 4:
            content_type = _scalar("string", wire, value, "Unknown.contentType")
    if encoding:
        raise ProtobufError(f"content encoding {encoding!r} is not supported")
    if content_type not in ("", MEDIA_TYPE):
        raise ProtobufError(f"content type {content_type!r} inside the envelope")
    return api_version, kind, raw


def message_of(api_version: str, kind: str) -> str | None:
    """The protobuf message of a kind, or None when it is not one the table knows."""
    return KINDS.get((api_version, kind)) or _ANY_VERSION.get(kind)


def decode_message(message: str, raw: bytes) -> dict[str, Any]:
    """The JSON dict of one message (no apiVersion/kind)."""
    if message not in FIELDS:
        raise ProtobufError(f"unknown message {message}")
    return _message(message, raw, message.rpartition(".")[2])


def decode(body: bytes) -> dict[str, Any]:
    """The JSON dict of a protobuf body, apiVersion and kind first."""
    api_version, kind, raw = envelope(body)
    message = message_of(api_version, kind)
    if message is None:
        raise ProtobufError(f"no protobuf decoding for kind {kind!r} in {api_version!r}")
    return {"apiVersion": api_version, "kind": kind, **decode_message(message, raw)}
