"""OpenAPI v3 as kube-apiserver serves it: ``GET /openapi/v3`` lists one document per
group-version (``api/v1``, ``apis/apps/v1``, ...) with a ``serverRelativeURL`` carrying the
document's hash; ``GET /openapi/v3/<gv>`` returns the document (``components.schemas`` with
descriptions, the ``x-kubernetes-group-version-kind``, patch-strategy, merge-key and list-type
extensions; ``paths`` with the operations of each served kind).

kubectl 1.32 reads it for ``kubectl explain``, for the strategic-merge metadata of
``kubectl apply`` (a PATCH operation whose request body takes
``application/strategic-merge-patch+json``) and to learn that the server validates fields
itself (the ``fieldValidation`` parameter of PATCH), so it skips validating client-side.

The schemas come from ``kubemodel/schema.json`` (the Kubernetes 1.32 definitions as JSON
Schema, see kubemodel/gen.py) and ``kubemodel/descriptions.json``; the documents are built
once, on first use, and served from memory."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

import kubemodel

from .discovery import READ_ONLY, REVIEWS
from .resources import GROUPS, Resource, custom_generation, custom_resources

__all__ = [
    "INFO",
    "OpenApiV3",
    "build_document",
    "etag_of",
    "handle_document",
    "handle_index",
    "reply",
    "schemas",
    "served",
]

Obj = dict[str, Any]
T = TypeVar("T")

_MODEL_DIR = Path(kubemodel.__file__).resolve().parent
_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH = _META + "Patch"
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_SERIALIZATIONS = ("application/json", "application/vnd.kubernetes.protobuf", "application/yaml")
INFO = {"title": "Kubernetes", "version": "v1.32.0"}  # of every document, v2 and v3
_COMMON = (_META + "Status", _META + "DeleteOptions", _META + "WatchEvent", _PATCH)


# --------------------------------------------------------------------------- schemas


def _convert(node: Any) -> Any:
    """A JSON Schema node of schema.json as an OpenAPI v3 schema: nullable type lists to one
    type, ``#/$defs/`` references to ``#/components/schemas/``, no ``enum`` on apiVersion and
    kind (kubernetes-validate adds them; the API server's documents have none)."""
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = _REF + str(value).rpartition("/")[2]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "enum":
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        else:
            out[key] = _convert(value)
    return out


def _with_docs(name: str, node: Obj, docs: dict[str, str]) -> Obj:
    schema = _convert(node)
    if "" in docs:
        schema = {"description": docs[""], **schema}
    props = schema.get("properties")
    for prop, sub in (props or {}).items():
        text = docs.get(prop)
        if "$ref" in sub:
            # A reference with a description beside it, the way kube-openapi writes it.
            ref = {"$ref": sub.pop("$ref")}
            sub = props[prop] = {"allOf": [ref], **sub}
        if text:
            props[prop] = {"description": text, **sub}
    return schema


@cache
def schemas() -> dict[str, Obj]:
    """Every definition of kubemodel as an OpenAPI v3 schema, with its descriptions (built
    once, then shared by every document)."""
    defs = json.loads((_MODEL_DIR / "schema.json").read_text())
    docs_path = _MODEL_DIR / "descriptions.json"
    docs = json.loads(docs_path.read_text()) if docs_path.exists() else {}
    # CustomResourceDefinition and what it takes (kubemodel has no model of them): the
    # Kubernetes 1.32 definitions as kubemodel.gen keeps its own (from kubernetes-validate's
    # v1.32.0-local/_definitions.json, descriptions apart)
    extensions = json.loads((Path(__file__).parent / "apiextensions.json").read_text())
    defs.update(extensions["schemas"])
    docs.update(extensions["descriptions"])
    out = {name: _with_docs(name, node, docs.get(name, {})) for name, node in defs.items()}
    out[_PATCH] = {
        "description": "The body of a PATCH request, in the format its Content-Type names.",
        "type": "object",
    }
    out.update(_metrics_schemas())
    return out


_METRICS = "io.k8s.metrics.pkg.apis.metrics.v1beta1."


def _metrics_schemas() -> dict[str, Obj]:
    """metrics.k8s.io/v1beta1's kinds (metricsapi.py), as metrics-server publishes them."""
    quantity = {"$ref": _REF + "io.k8s.apimachinery.pkg.api.resource.Quantity"}
    usage = {
        "description": "The memory and CPU in use, in the form of a ResourceList.",
        "type": "object",
        "additionalProperties": {"allOf": [quantity], "default": {}},
    }
    meta = {"allOf": [{"$ref": _REF + _META + "ObjectMeta"}], "default": {}}

    def kind(name: str, desc: str, props: Obj, required: list[str]) -> Obj:
        return {
            "description": desc,
            "type": "object",
            "required": required,
            "properties": {
                "apiVersion": {"description": "The versioned schema of this object.",
                               "type": "string"},
                "kind": {"description": "The REST resource this object represents.",
                         "type": "string"},
                "metadata": meta,
                **props,
            },
            "x-kubernetes-group-version-kind": [
                {"group": "metrics.k8s.io", "kind": name, "version": "v1beta1"}
            ],
        }  # fmt: skip

    sampled = {
        "timestamp": {
            "description": "When the usage was sampled: the end of the window.",
            "allOf": [{"$ref": _REF + _META + "Time"}],
        },
        "window": {
            "description": "The time the usage was measured over, [timestamp-window, timestamp].",
            "type": "string",
        },
    }
    out = {
        _METRICS + "NodeMetrics": kind(
            "NodeMetrics",
            "The resource usage of a node.",
            {**sampled, "usage": usage},
            ["timestamp", "window", "usage"],
        ),
        _METRICS + "PodMetrics": kind(
            "PodMetrics",
            "The resource usage of a pod, by container.",
            {
                **sampled,
                "containers": {
                    "description": "The usage of each container of the pod.",
                    "type": "array",
                    "items": {
                        "allOf": [{"$ref": _REF + _METRICS + "ContainerMetrics"}],
                        "default": {},
                    },
                    "x-kubernetes-list-type": "atomic",
                },
            },
            ["timestamp", "window", "containers"],
        ),
        _METRICS + "ContainerMetrics": {
            "description": "The resource usage of a container.",
            "type": "object",
            "required": ["name", "usage"],
            "properties": {
                "name": {"description": "The container's name.", "type": "string", "default": ""},
                "usage": usage,
            },
        },
    }
    for name in ("NodeMetrics", "PodMetrics"):
        out[_METRICS + name + "List"] = kind(
            name + "List",
            f"A list of {name}.",
            {
                "metadata": {"allOf": [{"$ref": _REF + _META + "ListMeta"}], "default": {}},
                "items": {
                    "description": f"The {name} of the list.",
                    "type": "array",
                    "items": {"allOf": [{"$ref": _REF + _METRICS + name}], "default": {}},
                },
            },
            ["items"],
        )
    return out


def _read_only_paths(
    group: str, version: str, schemas: dict[str, Obj], roots: list[str]
) -> dict[str, Obj]:
    """The list and get operations of a read-only group (discovery.READ_ONLY)."""
    paths: dict[str, Obj] = {}
    tag = f"{group.split('.')[0]}_{version}"
    for resource, kind, namespaced in READ_ONLY[group][1]:
        item, listed = (
            _definition(group, version, kind, schemas),
            _definition(group, version, kind + "List", schemas),
        )
        if item is None or listed is None:
            continue
        roots += [item, listed]
        gvk = {"group": group, "kind": kind, "version": version}
        ns = "namespaces/{namespace}/" if namespaced else ""
        base = f"/apis/{group}/{version}/{ns}{resource}"
        scope = [
            _param("namespace", "object name and auth scope, such as for teams and projects",
                   where="path")
        ] if namespaced else []  # fmt: skip
        op = f"{_camel(group.removesuffix('.k8s.io'))}{_camel(version)}"
        scoped = "Namespaced" if namespaced else ""
        paths[base] = {
            "get": _operation(
                "list", f"list{op}{scoped}{kind}", f"list objects of kind {kind}", gvk, tag,
                listed, ("200",), [*_LIST],
            ),
            "parameters": [*scope, _PRETTY],
        }  # fmt: skip
        paths[base + "/{name}"] = {
            "get": _operation(
                "get", f"read{op}{scoped}{kind}", f"read the specified {kind}", gvk, tag,
                item, ("200",),
            ),
            "parameters": [
                _param("name", f"name of the {kind}", where="path"), *scope, _PRETTY
            ],
        }  # fmt: skip
    return paths


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            yield ref[len(_REF) :]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(roots: Iterable[str], schemas: dict[str, Obj]) -> dict[str, Obj]:
    keep: dict[str, Obj] = {}
    todo = [r for r in roots if r in schemas]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep[name] = schemas[name]
            todo.extend(_refs(schemas[name]))
    return dict(sorted(keep.items()))


def _definition(group: str, version: str, kind: str, schemas: dict[str, Obj]) -> str | None:
    for name, schema in schemas.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group"), gvk.get("version"), gvk.get("kind")) == (group, version, kind):
                return name
    return None


# ----------------------------------------------------------------------------- paths


def _param(name: str, desc: str, typ: str = "string", where: str = "query") -> Obj:
    p: Obj = {"description": desc, "in": where, "name": name}
    if where == "path":
        p["required"] = True
    p["schema"] = {"type": typ, "uniqueItems": True}
    return p


_PRETTY = _param("pretty", "If 'true', then the output is pretty printed.")
_DRY_RUN = _param("dryRun", "All: process the request without persisting anything.")
_FIELD_MANAGER = _param("fieldManager", "The name of the actor or entity making the change.")
_FIELD_VALIDATION = _param(
    "fieldValidation",
    "How to treat unknown or duplicate fields in the object: Ignore, Warn or Strict.",
)
_FORCE = _param("force", "Apply: take over the fields other managers own.", "boolean")
_LIST = [
    _param("allowWatchBookmarks", "Watch: send BOOKMARK events.", "boolean"),
    _param("continue", "The token of the next chunk of a chunked list."),
    _param("fieldSelector", "Only the objects whose fields match this selector."),
    _param("labelSelector", "Only the objects whose labels match this selector."),
    _param("limit", "The most objects one chunk of the list holds.", "integer"),
    _param("resourceVersion", "The resource version the list or watch starts from."),
    _param("resourceVersionMatch", "How resourceVersion applies to a list."),
    _param("sendInitialEvents", "Watch: start with the current objects.", "boolean"),
    _param("timeoutSeconds", "End the list or watch call after this many seconds.", "integer"),
    _param("watch", "Watch for changes to the objects instead of listing them.", "boolean"),
]
_DELETE = [
    _param("gracePeriodSeconds", "Seconds before the object is deleted.", "integer"),
    _param("orphanDependents", "Deprecated: use propagationPolicy.", "boolean"),
    _param("propagationPolicy", "Orphan, Background or Foreground deletion of dependents."),
    _DRY_RUN,
]


def _content(ref: str, types: Iterable[str] = _SERIALIZATIONS) -> Obj:
    return {t: {"schema": {"$ref": _REF + ref}} for t in types}


def _responses(ref: str, *codes: str) -> Obj:
    text = {"200": "OK", "201": "Created", "202": "Accepted"}
    return {c: {"content": _content(ref), "description": text[c]} for c in codes}


def _operation(
    action: str,
    op_id: str,
    desc: str,
    gvk: Obj,
    tag: str,
    response: str,
    codes: tuple[str, ...],
    params: list[Obj] | None = None,
    body: Obj | None = None,
) -> Obj:
    op: Obj = {"description": desc, "operationId": op_id}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    op["responses"] = _responses(response, *codes)
    op["tags"] = [tag]
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk
    return op


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", ".").split("."))


def _resource_paths(res: Resource, schemas: dict[str, Obj], roots: list[str]) -> dict[str, Obj]:
    kind_def = _definition(res.group, res.version, res.kind, schemas)
    list_def = _definition(res.group, res.version, res.list_kind, schemas)
    if kind_def is None or list_def is None:
        return {}
    roots += [kind_def, list_def]
    prefix = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    tag = f"{res.group.split('.')[0] or 'core'}_{res.version}"
    # operationIds as kube-apiserver names them: readCoreV1NamespacedPod, patchAppsV1...
    group_name = _camel(res.group.removesuffix(".k8s.io")) if res.group else "Core"
    op_base = f"{group_name}{_camel(res.version)}"
    scoped = "Namespaced" if res.namespaced else ""
    gvk = {"group": res.group, "kind": res.kind, "version": res.version}
    name_param = _param("name", f"name of the {res.kind}", where="path")
    ns_param = _param(
        "namespace", "object name and auth scope, such as for teams and projects", where="path"
    )
    scope = [ns_param] if res.namespaced else []
    base = (
        f"{prefix}/namespaces/{{namespace}}/{res.name}"
        if res.namespaced
        else (f"{prefix}/{res.name}")
    )
    write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    json_body = {"content": _content(kind_def, ("*/*",)), "required": True}
    # (a custom resource takes no strategic merge patch)
    patch_types = _PATCH_TYPES[:3] if res.custom is not None else _PATCH_TYPES
    patch_body = {"content": _content(_PATCH, patch_types), "required": True}
    kind = res.kind
    paths: dict[str, Obj] = {
        base: {
            "delete": _operation(
                "deletecollection",
                f"delete{op_base}Collection{scoped}{kind}",
                f"delete collection of {kind}",
                gvk,
                tag,
                _META + "Status",
                ("200",),
                [*_DELETE, *_LIST],
                {"content": _content(_META + "DeleteOptions", ("application/json",))},
            ),
            "get": _operation(
                "list",
                f"list{op_base}{scoped}{kind}",
                f"list or watch objects of kind {kind}",
                gvk,
                tag,
                list_def,
                ("200",),
                _LIST,
            ),
            "parameters": [*scope, _PRETTY],
            "post": _operation(
                "post",
                f"create{op_base}{scoped}{kind}",
                f"create a {kind}",
                gvk,
                tag,
                kind_def,
                ("200", "201", "202"),
                write,
                json_body,
            ),
        },
        f"{base}/{{name}}": {
            "delete": _operation(
                "delete",
                f"delete{op_base}{scoped}{kind}",
                f"delete a {kind}",
                gvk,
                tag,
                _META + "Status",
                ("200", "202"),
                _DELETE,
                {"content": _content(_META + "DeleteOptions", ("application/json",))},
            ),
            "get": _operation(
                "get",
                f"read{op_base}{scoped}{kind}",
                f"read the specified {kind}",
                gvk,
                tag,
                kind_def,
                ("200",),
            ),  # fmt: skip
            "parameters": [name_param, *scope, _PRETTY],
            "patch": _operation(
                "patch",
                f"patch{op_base}{scoped}{kind}",
                f"partially update the specified {kind}",
                gvk,
                tag,
                kind_def,
                ("200", "201"),
                [*write, _FORCE],
                patch_body,
            ),
            "put": _operation(
                "put",
                f"replace{op_base}{scoped}{kind}",
                f"replace the specified {kind}",
                gvk,
                tag,
                kind_def,
                ("200", "201"),
                write,
                json_body,
            ),
        },
    }
    if not res.delete_collection:  # namespaces: DELETE on the collection is 405
        del paths[base]["delete"]
    if res.namespaced:
        paths[f"{prefix}/{res.name}"] = {
            "get": _operation(
                "list",
                f"list{op_base}{kind}ForAllNamespaces",
                f"list or watch objects of kind {kind}",
                gvk,
                tag,
                list_def,
                ("200",),
            ),
            "parameters": [*_LIST, _PRETTY],
        }
    for sub in res.subresources:
        if sub in ("status", "approval"):  # approval: a CertificateSigningRequest's
            sub_gvk, sub_def, name = gvk, kind_def, f"{kind}{sub.capitalize()}"
        elif sub == "ephemeralcontainers":
            sub_gvk, sub_def, name = gvk, kind_def, f"{kind}Ephemeralcontainers"
        elif sub == "scale":
            sub_gvk = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
            sub_def, name = "io.k8s.api.autoscaling.v1.Scale", f"{kind}Scale"
            roots.append(sub_def)
        else:
            continue  # exec, log, binding, eviction...: not objects one reads or patches
        sub_body = {"content": _content(sub_def, ("*/*",)), "required": True}
        paths[f"{base}/{{name}}/{sub}"] = {
            "get": _operation(
                "get",
                f"read{op_base}{scoped}{name}",
                f"read {sub} of the specified {kind}",
                sub_gvk,
                tag,
                sub_def,
                ("200",),
            ),  # fmt: skip
            "parameters": [name_param, *scope, _PRETTY],
            "patch": _operation(
                "patch",
                f"patch{op_base}{scoped}{name}",
                f"partially update {sub} of the specified {kind}",
                sub_gvk,
                tag,
                sub_def,
                ("200", "201"),
                [*write, _FORCE],
                patch_body,
            ),
            "put": _operation(
                "put",
                f"replace{op_base}{scoped}{name}",
                f"replace {sub} of the specified {kind}",
                sub_gvk,
                tag,
                sub_def,
                ("200", "201"),
                write,
                sub_body,
            ),
        }
    return paths


def _review_paths(
    group: str,
    resource: str,
    kind: str,
    namespaced: bool,
    schemas: dict[str, Obj],
    roots: list[str],
) -> dict[str, Obj]:
    """A review kind (TokenReview, SelfSubjectAccessReview...): created and answered only."""
    kind_def = _definition(group, "v1", kind, schemas)
    if kind_def is None:
        return {}
    roots.append(kind_def)
    gvk = {"group": group, "kind": kind, "version": "v1"}
    base = (
        f"/apis/{group}/v1/namespaces/{{namespace}}/{resource}"
        if namespaced
        else (f"/apis/{group}/v1/{resource}")
    )
    scoped = "Namespaced" if namespaced else ""
    op = _operation(
        "post",
        f"create{_camel(group.removesuffix('.k8s.io'))}V1{scoped}{kind}",
        f"create a {kind}",
        gvk,
        f"{group.split('.')[0]}_v1",
        kind_def,
        ("200", "201", "202"),
        [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
        {"content": _content(kind_def, ("*/*",)), "required": True},
    )
    ns_param = _param(
        "namespace", "object name and auth scope, such as for teams and projects", where="path"
    )
    return {base: {"parameters": [*([ns_param] if namespaced else []), _PRETTY], "post": op}}


def build_document(
    group: str, version: str, resources: list[Resource], extra: dict[str, Obj] | None = None
) -> Obj:
    """The OpenAPI v3 document of one group-version (``extra``: the schemas of its custom
    resources)."""
    defs = {**schemas(), **extra} if extra else schemas()
    roots: list[str] = list(_COMMON)
    paths: dict[str, Obj] = {}
    for res in resources:
        paths.update(_resource_paths(res, defs, roots))
    if version == "v1":
        for resource, kind, namespaced in REVIEWS.get(group, []):
            paths.update(_review_paths(group, resource, kind, namespaced, defs, roots))
    if group in READ_ONLY and version == READ_ONLY[group][0]:
        paths.update(_read_only_paths(group, version, defs, roots))
    return {
        "components": {"schemas": _reachable(roots, defs)},
        "info": dict(INFO),
        "openapi": "3.0.0",
        "paths": dict(sorted(paths.items())),
    }


# ------------------------------------------------------------------ custom resources


def _custom_name(group: str, version: str, kind: str) -> str:
    """The definition name kube gives a custom resource: com.example.stable.v1.Widget."""
    return ".".join([*reversed(group.split(".")), version, kind])


def custom_schemas(resources: Iterable[Resource]) -> dict[str, Obj]:
    """The schemas of custom resources (their CRD version's openAPIV3Schema, with
    apiVersion, kind and metadata) and of their lists, named as kube names them."""
    out: dict[str, Obj] = {}
    for res in resources:
        if res.custom is None:
            continue
        schema = json.loads(json.dumps(res.custom.schema))  # (a copy)
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "description": _API_VERSION_DOC}
        props["kind"] = {"type": "string", "description": _KIND_DOC}
        props["metadata"] = {
            "allOf": [{"$ref": _REF + _META + "ObjectMeta"}],
            "description": "Standard object's metadata. More info:"
            " https://git.k8s.io/community/contributors/devel/sig-architecture/"
            "api-conventions.md#metadata",
        }
        gvk = {"group": res.group, "version": res.version}
        schema["x-kubernetes-group-version-kind"] = [{**gvk, "kind": res.kind}]
        name = _custom_name(res.group, res.version, res.kind)
        out[name] = schema
        out[_custom_name(res.group, res.version, res.list_kind)] = {
            "description": f"{res.list_kind} is a list of {res.kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": _API_VERSION_DOC},
                "items": {
                    "type": "array",
                    "description": f"List of {res.name}. More info:"
                    " https://git.k8s.io/community/contributors/devel/api-conventions.md",
                    "items": {"$ref": _REF + name},
                },
                "kind": {"type": "string", "description": _KIND_DOC},
                "metadata": {"allOf": [{"$ref": _REF + _META + "ListMeta"}]},
            },
            "x-kubernetes-group-version-kind": [{**gvk, "kind": res.list_kind}],
        }
    return out


_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers"
    " should convert recognized schemas to the latest internal value, and may reject"
    " unrecognized values."
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers"
    " may infer this from the endpoint the client submits requests to. Cannot be updated. In"
    " CamelCase."
)


class CustomDocuments:
    """The documents of the group-versions custom resources are served in (with the table's
    resources of the same group-version, if any), built again when the CRDs change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: tuple[int, dict[str, tuple[bytes, str]]] = (0, {})

    def documents(self) -> dict[str, tuple[bytes, str]]:
        generation = custom_generation()
        with self._lock:
            if self._built[0] == generation:
                return self._built[1]
            customs = custom_resources()
            extra = custom_schemas(customs)
            by_gv: dict[tuple[str, str], list[Resource]] = {}
            for r in customs:
                by_gv.setdefault((r.group, r.version), []).append(r)
            docs: dict[str, tuple[bytes, str]] = {}
            for (group, version), resources in by_gv.items():
                table = GROUPS.get(group, {}).get(version, [])
                doc = build_document(group, version, [*table, *resources], extra)
                body = json.dumps(doc, separators=(",", ":")).encode()
                docs[_gv_path(group, version)] = (body, etag_of(body))
            self._built = (generation, docs)
            return docs


_CUSTOM = None  # CustomDocuments, made with the first CRD served


def _custom_documents() -> dict[str, tuple[bytes, str]]:
    global _CUSTOM
    if custom_generation() == 0:
        return {}
    if _CUSTOM is None:
        _CUSTOM = CustomDocuments()
    return _CUSTOM.documents()


# ---------------------------------------------------------------------------- serving


def served(
    groups: dict[str, dict[str, list[Resource]]] = GROUPS,
) -> Iterator[tuple[str, str, list[Resource]]]:
    """Every served group-version with its resources (the review groups have none)."""
    versions = {g: dict(vs) for g, vs in groups.items()}
    for group in REVIEWS:
        versions.setdefault(group, {}).setdefault("v1", [])
    for group, (version, _) in READ_ONLY.items():
        versions.setdefault(group, {}).setdefault(version, [])
    for group, by_version in versions.items():
        for version, resources in by_version.items():
            yield group, version, resources


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


class OpenApiV3:
    """The documents of the served group-versions, encoded once with their hashes (the
    upper-case hex SHA-512 of the JSON, as kube-openapi computes its ETags)."""

    def __init__(self, groups: dict[str, dict[str, list[Resource]]] = GROUPS) -> None:
        self._groups = groups
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[bytes, str]] | None = None
        self._index: tuple[bytes, str] | None = None

    def _build(self) -> tuple[dict[str, tuple[bytes, str]], tuple[bytes, str]]:
        with self._lock:
            if self._docs is None or self._index is None:
                docs: dict[str, tuple[bytes, str]] = {}
                for group, version, resources in served(self._groups):
                    doc = build_document(group, version, resources)
                    body = json.dumps(doc, separators=(",", ":")).encode()
                    docs[_gv_path(group, version)] = (body, etag_of(body))
                index = {
                    "paths": {
                        path: {"serverRelativeURL": _url(path, etag)}
                        for path, (_, etag) in sorted(docs.items())
                    }
                }
                body = json.dumps(index, separators=(",", ":")).encode()
                self._docs, self._index = docs, (body, etag_of(body))
            return self._docs, self._index

    @property
    def ready(self) -> bool:
        return self._docs is not None

    def index(self) -> tuple[bytes, str]:
        return self._build()[1]

    def document(self, path: str) -> tuple[bytes, str] | None:
        return self._build()[0].get(path.strip("/"))


def etag_of(body: bytes) -> str:
    """The upper-case hex SHA-512 of a document, as kube-openapi computes its ETags."""
    return hashlib.sha512(body).hexdigest().upper()


def _url(path: str, etag: str) -> str:
    return f"/openapi/v3/{path}?{urlencode({'hash': etag})}"


_SERVICE = OpenApiV3()


def reply(
    request: web.Request, body: bytes, etag: str, content_type: str = "application/json"
) -> web.StreamResponse:
    """``body`` with its ETag, 304 when the client has it, gzipped when it may be."""
    quoted = f'"{etag}"'
    if quoted in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"Etag": quoted})
    headers = {"Etag": quoted}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        # compressed once per document (hundreds of kilobytes), not per request
        body, headers["Content-Encoding"] = _gzipped(body), "gzip"
    return web.Response(body=body, content_type=content_type, headers=headers)


@cache
def _gzipped(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


async def _built(get: Callable[[], T]) -> T:
    """Building the documents takes a moment (once per process): off the event loop."""
    if _SERVICE.ready:
        return get()
    return await asyncio.to_thread(get)


async def handle_index(request: web.Request) -> web.StreamResponse:
    """``GET /openapi/v3``: the group-versions and the URLs of their documents."""
    body, etag = await _built(_SERVICE.index)
    customs = _custom_documents()
    if customs:  # the custom resources' group-versions too
        index = json.loads(body)
        for path, (_, doc_etag) in customs.items():
            index["paths"][path] = {"serverRelativeURL": _url(path, doc_etag)}
        index["paths"] = dict(sorted(index["paths"].items()))
        body = json.dumps(index, separators=(",", ":")).encode()
        etag = etag_of(body)
    return reply(request, body, etag)


async def handle_document(request: web.Request) -> web.StreamResponse:
    """``GET /openapi/v3/<gv>[?hash=H]``: the document; a stale hash is redirected to the
    current one, a current hash makes it cacheable for a year (it never changes)."""
    found = _custom_documents().get(request.match_info["gv"].strip("/"))
    if found is None:
        found = await _built(lambda: _SERVICE.document(request.match_info["gv"]))
    if found is None:
        raise web.HTTPNotFound()
    body, etag = found
    accept = request.headers.get("Accept", "*/*") or "*/*"
    if not any(
        t.split(";")[0].strip() in ("*/*", "application/*", "application/json")
        for t in accept.split(",")
    ):
        return web.Response(status=406, headers={"Vary": "Accept"})
    wanted = request.query.get("hash")
    if wanted and wanted != etag:
        location = _url(request.match_info["gv"].strip("/"), etag)
        return web.Response(status=301, headers={"Location": location})
    response = reply(request, body, etag)
    response.headers["Vary"] = "Accept"
    if wanted:
        response.headers["Cache-Control"] = "public, immutable"
        response.headers["Expires"] = formatdate(time.time() + 365 * 86400, usegmt=True)
    return response
