"""CustomResourceDefinitions (apiextensions.k8s.io/v1), as kube-apiserver's
apiextensions-apiserver serves them: a CRD is validated and defaulted when written, its status
conditions (NamesAccepted, Established) set as its controllers report them, and each
established CRD's served versions become resources of the table (``resources.set_custom``)
whose objects are pruned, defaulted and validated against the version's schema
(``crschema``, imported with the first CRD).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from kubemodel.errors import FieldError
from kubemodel.names import check_dns1035_label, check_dns_label

from .resources import RESOURCES, Resource, set_custom

__all__ = [
    "FINALIZER",
    "GROUP",
    "RESOURCE",
    "Custom",
    "admit_crd",
    "admit_custom",
    "conflict",
    "names_refused",
    "resources_of",
    "sync",
    "validate_update",
]

Obj = dict[str, Any]
GROUP = "apiextensions.k8s.io"
RESOURCE = "customresourcedefinitions"
FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ("Cluster", "Namespaced")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")  # a Go identifier of the API: no dots, dashes
_BUILTIN_PLURALS = frozenset(r.name for r in RESOURCES)
# The CRDs stored, by name (sync keeps it): names are accepted against the others'.
_KNOWN: dict[str, Obj] = {}


@dataclass(frozen=True)
class Custom:
    """What a custom resource's requests need of its CRD (one per served version)."""

    crd: str  # the CRD's name, <plural>.<group>
    prefix: str  # the store keys: /registry/<group>/<plural>/
    storage_version: str
    schema: Obj  # this version's openAPIV3Schema
    columns: tuple[Obj, ...]  # additionalPrinterColumns
    scale: Obj | None  # the scale subresource's paths
    terminating: bool


class FieldErrors(FieldError):
    """Several invalid fields of a custom resource (the storage's 422 lists them all)."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        super().__init__(found[0][0], found[0][1])
        self.found = found


def _fail(field: str, message: str) -> FieldError:
    return FieldError(field, message)


def _text(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def _default(crd: Obj) -> None:
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    conv = spec.get("conversion")
    if conv is None:
        spec["conversion"] = {"strategy": "None"}
    for v in spec.get("versions") or ():
        if isinstance(v, dict):
            v.setdefault("served", False)
            v.setdefault("storage", False)


def _validate(crd: Obj) -> None:
    """kube's ValidateCustomResourceDefinition, its main rules (FieldError at the first)."""
    name = crd["metadata"].get("name") or ""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        raise _fail("spec", "Required value")
    group = spec.get("group")
    if not isinstance(group, str) or not group:
        raise _fail("spec.group", "Required value")
    if "." not in group:
        raise _fail(
            "spec.group", f"Invalid value: {_text(group)}: should be a domain with at least one dot"
        )
    names = spec.get("names")
    if not isinstance(names, dict):
        raise _fail("spec.names", "Required value")
    plural = names.get("plural")
    if not isinstance(plural, str) or not plural:
        raise _fail("spec.names.plural", "Required value")
    check_dns_label(plural, "spec.names.plural")
    if plural in _BUILTIN_PLURALS:
        # (kube serves it in another group; the API server's admission is keyed by plural)
        raise _fail(
            "spec.names.plural",
            f"Invalid value: {_text(plural)}: is the name of a built-in resource (not served"
            " for custom resources by this API server)",
        )
    if name != f"{plural}.{group}":
        raise _fail(
            "metadata.name",
            f'Invalid value: {_text(name)}: must be spec.names.plural+"."+spec.group',
        )
    singular = names.get("singular")
    if isinstance(singular, str):
        check_dns_label(singular, "spec.names.singular")
    for f in ("kind", "listKind"):
        v = names.get(f)
        if not isinstance(v, str) or not v:
            raise _fail(f"spec.names.{f}", "Required value")
        if not _KIND.match(v):
            raise _fail(
                f"spec.names.{f}",
                f"Invalid value: {_text(v)}: may have mixed case, but should otherwise match:"
                " [a-z]([-a-z0-9]*[a-z0-9])?",
            )
    if names["kind"] == names["listKind"]:
        raise _fail(
            "spec.names.listKind",
            f"Invalid value: {_text(names['listKind'])}: kind and listKind may not be the same",
        )
    for i, short in enumerate(names.get("shortNames") or ()):
        if not isinstance(short, str):
            raise _fail(f"spec.names.shortNames[{i}]", "Invalid value: must be a string")
        check_dns_label(short, f"spec.names.shortNames[{i}]")
    for i, cat in enumerate(names.get("categories") or ()):
        if not isinstance(cat, str):
            raise _fail(f"spec.names.categories[{i}]", "Invalid value: must be a string")
        check_dns_label(cat, f"spec.names.categories[{i}]")
    scope = spec.get("scope")
    if not scope:
        raise _fail("spec.scope", "Required value")
    if scope not in SCOPES:
        raise _fail(
            "spec.scope",
            f'Unsupported value: {_text(scope)}: supported values: "Cluster", "Namespaced"',
        )
    strategy = (spec.get("conversion") or {}).get("strategy")
    if strategy not in ("None", "Webhook"):
        raise _fail(
            "spec.conversion.strategy",
            f'Unsupported value: {_text(strategy)}: supported values: "None", "Webhook"',
        )
    if strategy == "Webhook":
        raise _fail(
            "spec.conversion.strategy",
            "Forbidden: conversion webhooks are not served by this API server",
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise _fail(
            "spec.versions",
            "Invalid value: null: must have exactly one version marked as storage version",
        )
    seen: set[str] = set()
    from . import crschema

    for i, v in enumerate(versions):
        at = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            raise _fail(at, "Invalid value: must be an object")
        vname = v.get("name")
        if not isinstance(vname, str) or not vname:
            raise _fail(f"{at}.name", "Required value")
        check_dns1035_label(vname, f"{at}.name")
        if vname in seen:
            raise _fail(f"{at}.name", f"Duplicate value: {_text(vname)}")
        seen.add(vname)
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            raise _fail(f"{at}.schema.openAPIV3Schema", "Required value: schemas are required")
        where = f"{at}.schema.openAPIV3Schema"
        if isinstance(schema, dict) and schema.get("type") != "object":
            raise _fail(
                f"{where}.type",
                'Unsupported value: {}: supported values: "object"'.format(
                    _text(schema.get("type"))
                ),
            )
        problem = crschema.structural_problem(schema, where)
        if problem:
            raise _fail(*problem)
        sub = v.get("subresources") or {}
        scale = sub.get("scale")
        if scale is not None:
            for f in ("specReplicasPath", "statusReplicasPath"):
                p = scale.get(f) if isinstance(scale, dict) else None
                if not isinstance(p, str) or not p:
                    raise _fail(f"{at}.subresources.scale.{f}", "Required value")
                if not p.startswith(".spec." if f == "specReplicasPath" else ".status."):
                    raise _fail(
                        f"{at}.subresources.scale.{f}",
                        f"Invalid value: {_text(p)}: should be a json path under"
                        f" {'.spec' if f == 'specReplicasPath' else '.status'}",
                    )
        for j, col in enumerate(v.get("additionalPrinterColumns") or ()):
            cat = f"{at}.additionalPrinterColumns[{j}]"
            if not isinstance(col, dict) or not col.get("name"):
                raise _fail(f"{cat}.name", "Required value")
            if col.get("type") not in ("integer", "number", "string", "boolean", "date"):
                raise _fail(
                    f"{cat}.type",
                    f"Unsupported value: {_text(col.get('type'))}: supported values:"
                    ' "boolean", "date", "integer", "number", "string"',
                )
            if not col.get("jsonPath"):
                raise _fail(f"{cat}.jsonPath", "Required value")
    stored = [v["name"] for v in versions if v.get("storage")]
    if len(stored) != 1:
        raise _fail(
            "spec.versions",
            f"Invalid value: {_text([v['name'] for v in versions])}: must have exactly one"
            " version marked as storage version",
        )
    if not any(v.get("served") for v in versions):
        raise _fail("spec.versions", "Invalid value: must have at least one served version")


def names_refused(crd: Obj) -> bool:
    """Whether the CRD's NamesAccepted condition is False."""
    return any(
        c.get("type") == "NamesAccepted" and c.get("status") == "False"
        for c in (crd.get("status") or {}).get("conditions") or ()
    )


def conflict(crd: Obj) -> str:
    """Why another CRD of the group takes one of this one's names ("" when none does)."""
    spec = crd["spec"]
    names = spec["names"]
    mine = crd["metadata"]["name"]
    for other_name, other in _KNOWN.items():
        if other_name == mine or (other.get("spec") or {}).get("group") != spec["group"]:
            continue
        theirs = ((other.get("status") or {}).get("acceptedNames")) or {}
        taken = {theirs.get("plural"), theirs.get("singular"), *(theirs.get("shortNames") or ())}
        for n in (names.get("singular"), *(names.get("shortNames") or ())):
            if n in taken:
                return f'"{n}" is already in use'
        if names["kind"] in (theirs.get("kind"), theirs.get("listKind")):
            return f'"{names["kind"]}" is already in use'
        if names["listKind"] in (theirs.get("kind"), theirs.get("listKind")):
            return f'"{names["listKind"]}" is already in use'
    return ""


def _condition(type_: str, status: str, reason: str, message: str, now: str, old: Obj) -> Obj:
    prev = next((c for c in old.get("conditions") or () if c.get("type") == type_), None)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
    return {
        "type": type_,
        "status": status,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }


def admit_crd(crd: Obj, now: str) -> Obj:
    """The CRD to store: defaulted, validated (FieldError), with the status its naming and
    establishing controllers give it."""
    crd = copy.deepcopy(crd)
    _default(crd)
    _validate(crd)
    meta = crd["metadata"]
    if not meta.get("deletionTimestamp"):
        fins = meta.get("finalizers") or []
        if FINALIZER not in fins:
            meta["finalizers"] = [*fins, FINALIZER]
    old = crd.get("status") if isinstance(crd.get("status"), dict) else {}
    spec = crd["spec"]
    clash = conflict(crd)
    storage = next(v["name"] for v in spec["versions"] if v["storage"])
    stored_versions = list(old.get("storedVersions") or [])
    if storage not in stored_versions:
        stored_versions.append(storage)
    conds = []
    if clash:
        conds.append(_condition("NamesAccepted", "False", "NameConflict", clash, now, old))
        conds.append(
            _condition(
                "Established", "False", "NotAccepted", "not all names are accepted", now, old
            )
        )
        accepted = old.get("acceptedNames") or {"plural": "", "kind": ""}
    else:
        conds.append(
            _condition("NamesAccepted", "True", "NoConflicts", "no conflicts found", now, old)
        )
        conds.append(
            _condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                now,
                old,
            )
        )
        accepted = copy.deepcopy(spec["names"])
    for c in old.get("conditions") or ():
        if c.get("type") == "Terminating":
            conds.append(c)
    crd["status"] = {
        "conditions": conds,
        "acceptedNames": accepted,
        "storedVersions": stored_versions,
    }
    return crd


def validate_update(old: Obj, new: Obj) -> None:
    """kube's ValidateCustomResourceDefinitionUpdate, its main rules: the scope and the group
    do not change; every stored version stays among the versions."""
    for field in ("scope", "group"):
        was, now = old["spec"].get(field), new["spec"].get(field)
        if was != now:
            raise _fail(f"spec.{field}", f"Invalid value: {_text(now)}: field is immutable")
    versions = {v.get("name") for v in new["spec"].get("versions") or ()}
    for i, stored in enumerate((new.get("status") or {}).get("storedVersions") or ()):
        if stored not in versions:
            raise _fail(
                f"status.storedVersions[{i}]",
                f"Invalid value: {_text(stored)}: must appear in spec.versions",
            )


def _established(crd: Obj) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or ()
    )


def resources_of(crd: Obj, everything: bool = False) -> list[Resource]:
    """The resources an established CRD serves, one per served version (``everything``: of
    every version, established or not: to delete what is stored)."""
    from kubemodel._generated import Object

    if not everything and not _established(crd):
        return []
    spec = crd["spec"]
    names = spec["names"]
    group, plural = spec["group"], names["plural"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    out = []
    for v in spec["versions"]:
        if not v.get("served") and not everything:
            continue
        sub = v.get("subresources") or {}
        subs = tuple(s for s in ("status", "scale") if s in sub)
        custom = Custom(
            crd=crd["metadata"]["name"],
            prefix=f"/registry/{group}/{plural}/",
            storage_version=storage,
            schema=(v.get("schema") or {}).get("openAPIV3Schema") or {},
            columns=tuple(v.get("additionalPrinterColumns") or ()),
            scale=sub.get("scale"),
            terminating=bool(crd["metadata"].get("deletionTimestamp")),
        )
        out.append(
            Resource(
                group=group,
                version=v["name"],
                name=plural,
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec["scope"] == "Namespaced",
                model=Object,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subs,
                custom=custom,
                extra={"listKind": names.get("listKind") or names["kind"] + "List"},
            )
        )
    return out


def sync(crds: list[Obj]) -> None:
    """Serve the custom resources of these CRDs (all of those stored), and only them."""
    _KNOWN.clear()
    _KNOWN.update({c["metadata"]["name"]: c for c in crds})
    set_custom([r for c in crds for r in resources_of(c)])


def admit_custom(res: Resource, obj: Obj) -> Obj:
    """A custom resource as it is stored: pruned, defaulted and validated against its
    version's schema (crschema.SchemaError -> FieldError), in the storage version."""
    from . import crschema

    custom: Custom = res.custom
    obj = copy.deepcopy(obj)
    try:
        crschema.admit(obj, custom.schema)
    except crschema.SchemaError as e:
        raise FieldError(e.field, e.message) from None
    except crschema.SchemaErrors as e:
        raise FieldErrors([(x.field, x.message) for x in e.errors]) from None
    obj["apiVersion"] = f"{res.group}/{custom.storage_version}"
    obj["kind"] = res.kind
    return obj
