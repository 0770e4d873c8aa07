"""OpenAPI v2 as kube-apiserver serves it: ``GET /openapi/v2`` is one document with every
definition and every path, JSON by default and gnostic's ``openapi_v2.Document`` protobuf
(gnostic.py) when asked (``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``,
what kubectl before 1.27 sends; ``…spec.v2.v1.0+protobuf`` is its newer name), with one
ETag for both (the SHA-512 of the JSON), 304 for a client that has it, gzip when accepted.

kubectl 1.20 reads it for ``kubectl explain``, to validate manifests before it sends them
(``create``, ``apply`` and ``replace`` refuse an unknown field or a missing required one,
naming the definition), for the strategic-merge metadata of ``apply`` and to learn that a
kind takes ``dryRun`` (the PATCH operation of its path). kubectl 1.32 reads OpenAPI v3.

The document is written from the OpenAPI v3 ones (openapi.py: the same schemas, paths and
descriptions, from kubemodel) by the rules kube-openapi follows for v2: ``#/definitions/``
references; a reference carries its description beside it (v3 wraps it in ``allOf``); a type
of several (IntOrString, Quantity) is a string, ``int-or-string`` when it may be an integer;
a request body is a ``body`` parameter with the operation's ``consumes``; a response names
its schema, the operation lists what it ``produces``. It is built on the first request and
kept as bytes only (the dicts go): the idle server never pays for it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from aiohttp import web

from . import gnostic, openapi
from .discovery import groups_served
from .resources import GROUPS, Resource, custom_generation, custom_resources

__all__ = ["JSON", "PROTOBUF", "Document", "OpenApiV2", "build", "handle", "handle_legacy"]

Obj = dict[str, Any]

JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# the media types a client may ask for, and which form each gets
_ACCEPTED = (
    ("application", "json", JSON),
    ("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
    ("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
)
_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"


# --------------------------------------------------------------------------- conversion


def schema(node: Any) -> Any:
    """An OpenAPI v3 schema of openapi.py as the OpenAPI v2 one kube-openapi writes."""
    if isinstance(node, list):
        return [schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    all_of = node.get("allOf")
    if all_of is not None:
        if len(all_of) != 1 or set(all_of[0]) != {"$ref"}:
            raise ValueError(f"allOf other than one reference: {all_of!r}")
        node = {"$ref": all_of[0]["$ref"], **{k: v for k, v in node.items() if k != "allOf"}}
    out: Obj = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = _V2_REF + str(value).removeprefix(_V3_REF)
        elif key == "oneOf":
            out.update(_one_type(value))
        elif key == "properties":
            out[key] = {name: schema(sub) for name, sub in value.items()}
        elif key.startswith("x-"):
            out[key] = value
        else:
            out[key] = schema(value)
    return out


def _one_type(alternatives: list[Obj]) -> Obj:
    types = {alt.get("type") for alt in alternatives}
    if "string" not in types:
        raise ValueError(f"oneOf without a string: {alternatives!r}")
    return {"type": "string", **({"format": "int-or-string"} if "integer" in types else {})}


def _parameter(param: Obj) -> Obj:
    """A query or path parameter: v3 puts its type in a schema, v2 beside its name."""
    out = {k: v for k, v in param.items() if k != "schema"}
    out.update(param.get("schema") or {})
    return dict(sorted(out.items()))


def _operation(op: Obj) -> Obj:
    out: Obj = {k: v for k, v in op.items() if k not in ("parameters", "requestBody", "responses")}
    params = [_parameter(p) for p in op.get("parameters") or []]
    body = op.get("requestBody")
    if body is not None:
        content = body["content"]
        out["consumes"] = list(content)
        param: Obj = {"in": "body", "name": "body", "schema": schema(_first(content)["schema"])}
        if body.get("required"):
            param["required"] = True
        params.insert(0, param)
    if params:
        out["parameters"] = params
    responses: Obj = {}
    for code, response in op["responses"].items():
        v2: Obj = {"description": response["description"]}
        content = response.get("content") or {}
        if content:
            v2["schema"] = schema(_first(content)["schema"])
            out.setdefault("produces", list(content))
        responses[code] = v2
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    out["schemes"] = ["https"]
    return dict(sorted(out.items()))


def _first(content: Obj) -> Obj:
    return next(iter(content.values()))


def _path_item(item: Obj) -> Obj:
    return {
        key: [_parameter(p) for p in value] if key == "parameters" else _operation(value)
        for key, value in item.items()
    }


def build(
    groups: dict[str, dict[str, list[Resource]]] = GROUPS, extra: dict[str, Obj] | None = None
) -> Obj:
    """The OpenAPI v2 document of every served group-version (``extra``: the schemas of
    the custom resources among them)."""
    paths: Obj = {}
    for group, version, resources in openapi.served(groups):
        doc = openapi.build_document(group, version, resources, extra)
        for path, item in doc["paths"].items():
            paths[path] = _path_item(item)
    defs = {**openapi.schemas(), **extra} if extra else openapi.schemas()
    definitions = {name: schema(node) for name, node in sorted(defs.items())}
    return {
        "definitions": definitions,
        "info": dict(openapi.INFO),
        "paths": dict(sorted(paths.items())),
        "security": [{"BearerToken": []}],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            }
        },
        "swagger": "2.0",
    }


# ----------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class Document:
    json: bytes
    protobuf: bytes
    etag: str  # upper-case hex SHA-512 of the JSON, as kube-openapi computes it
    last_modified: float

    def body(self, media_type: str) -> bytes:
        return self.protobuf if media_type == PROTOBUF else self.json


class OpenApiV2:
    """The document, built once (on first use) and kept as its two encodings."""

    def __init__(self, groups: dict[str, dict[str, list[Resource]]] = GROUPS) -> None:
        self._groups = groups
        self._lock = threading.Lock()
        self._doc: Document | None = None
        self._generation = 0  # custom_generation() of the document

    @property
    def ready(self) -> bool:
        return self._doc is not None and custom_generation() == self._generation

    def document(self) -> Document:
        with self._lock:
            if self._groups is GROUPS and custom_generation() != self._generation:
                # the CRDs changed: built again with their custom resources
                self._doc, self._generation = None, custom_generation()
            if self._doc is None:
                groups, extra = self._groups, None
                if self._generation:
                    groups = groups_served()
                    extra = openapi.custom_schemas(custom_resources())
                doc = build(groups, extra)
                body = json.dumps(doc, separators=(",", ":")).encode()
                self._doc = Document(body, gnostic.encode(doc), openapi.etag_of(body), time.time())
            return self._doc


_SERVICE = OpenApiV2()


def negotiate(accept: str) -> str | None:
    """The media type served for ``accept`` (JSON or PROTOBUF), None for 406: the clauses by
    quality, the more specific first among equals, as goautoneg orders them."""
    clauses: list[tuple[float, bool, bool, int, str, str]] = []
    for i, clause in enumerate((accept or "*/*").split(",")):
        media, *params = (part.strip() for part in clause.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        typ, _, sub = media.partition("/")
        if quality > 0 and typ:
            clauses.append((-quality, typ == "*", sub == "*", i, typ, sub))
    for _, _, _, _, typ, sub in sorted(clauses):
        for accepted_type, accepted_sub, served in _ACCEPTED:
            if typ in (accepted_type, "*") and sub in (accepted_sub, "*"):
                return served
    return None


def _not_modified(request: web.Request, doc: Document) -> bool:
    """http.ServeContent's rule: If-None-Match decides when given, else If-Modified-Since."""
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or f'"{doc.etag}"' in tags
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            return int(doc.last_modified) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


async def _serve(request: web.Request, media_type: str | None) -> web.StreamResponse:
    if media_type is None:
        return web.Response(status=406, headers={"Vary": "Accept"})
    doc = _SERVICE.document() if _SERVICE.ready else await asyncio.to_thread(_SERVICE.document)
    headers = {
        "Vary": "Accept, Accept-Encoding",
        "Last-Modified": formatdate(doc.last_modified, usegmt=True),
    }
    if _not_modified(request, doc):
        return web.Response(status=304, headers={**headers, "Etag": f'"{doc.etag}"'})
    response = openapi.reply(request, doc.body(media_type), doc.etag, media_type)
    response.headers.update(headers)
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    """``GET /openapi/v2``: the document in the form the Accept header asks for."""
    return await _serve(request, negotiate(request.headers.get("Accept", "")))


async def handle_legacy(request: web.Request) -> web.StreamResponse:
    """``GET /swagger-2.0.0.pb-v1``, where servers before 1.10 served the protobuf form (and
    where client-go asks when /openapi/v2 answers 404, 403 or 406): protobuf, always."""
    return await _serve(request, PROTOBUF)
