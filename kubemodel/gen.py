"""Generate ``kubemodel/_generated.py`` (typed msgspec models) from the Kubernetes schema.

Run at development time, never at run time::

    python -m kubemodel.gen                      # schema.json -> _generated.py
    python -m kubemodel.gen --schema DEFS.json   # refresh schema.json first, then generate

``DEFS.json`` is ``kubernetes_validate/kubernetes-json-schema/v<X>-local/_definitions.json`` from
the ``kubernetes-validate`` package (the Kubernetes OpenAPI v2 definitions as JSON Schema). The
refresh keeps only the definitions reachable from ``ROOTS`` and drops their descriptions, so
``schema.json`` stays small; ``tests/unit/test_kubemodel_gen.py`` checks that generating from it
gives the committed ``_generated.py``. The descriptions of those definitions and of their
properties go to ``descriptions.json`` (what the API server's OpenAPI v3 documents show, e.g. in
``kubectl explain``).

Mapping: an object definition is a ``msgspec.Struct`` (keyword-only, unknown fields refused,
fields equal to their default omitted on encode); a field listed as required has no default;
every other field defaults to None, except the Go value-typed ``omitempty`` fields in
``ZERO_DEFAULTS`` (``false``/``0`` omitted on encode, as the API server omits them). Quantity is
``Quantity`` (its canonical text), IntOrString ``int | str``, Time and MicroTime ``datetime``,
FieldsV1 and RawExtension any JSON object.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "schema.json"
DESCRIPTIONS = HERE / "descriptions.json"
OUTPUT = HERE / "_generated.py"

_CORE = "io.k8s.api.core.v1."
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
ROOTS = (
    *(_CORE + k for k in "Pod Node Service Endpoints ConfigMap Secret Namespace".split()),
    *(_CORE + k for k in ("Event", "ServiceAccount", "ReplicationController")),
    *(_CORE + k + s for k in ("PersistentVolume", "PersistentVolumeClaim") for s in ("", "List")),
    "io.k8s.api.storage.v1.StorageClass",
    "io.k8s.api.storage.v1.StorageClassList",
    "io.k8s.api.certificates.v1.CertificateSigningRequest",
    "io.k8s.api.certificates.v1.CertificateSigningRequestList",
    "io.k8s.api.node.v1.RuntimeClass",
    "io.k8s.api.node.v1.RuntimeClassList",
    *(
        "io.k8s.api.admissionregistration.v1." + k + s
        for k in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        for s in ("", "List")
    ),
    *(_CORE + k + "List" for k in "Pod Node Service Endpoints ConfigMap Secret Namespace".split()),
    _CORE + "EventList",
    _CORE + "ServiceAccountList",
    _CORE + "ReplicationControllerList",
    _CORE + "Binding",
    *(
        "io.k8s.api.apps.v1." + k + s
        for k in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "ControllerRevision")
        for s in ("", "List")
    ),
    *("io.k8s.api.batch.v1." + k + s for k in ("Job", "CronJob") for s in ("", "List")),
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.coordination.v1.LeaseList",
    "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.discovery.v1.EndpointSliceList",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    "io.k8s.api.policy.v1.PodDisruptionBudgetList",
    "io.k8s.api.policy.v1.Eviction",
    "io.k8s.api.scheduling.v1.PriorityClass",
    "io.k8s.api.scheduling.v1.PriorityClassList",
    *(
        "io.k8s.api.networking.v1." + k + s
        for k in ("Ingress", "IngressClass", "NetworkPolicy")
        for s in ("", "List")
    ),
    "io.k8s.api.events.v1.Event",
    "io.k8s.api.events.v1.EventList",
    *(_CORE + k + s for k in ("ResourceQuota", "LimitRange") for s in ("", "List")),
    *(
        "io.k8s.api.rbac.v1." + k + s
        for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
        for s in ("", "List")
    ),
    _META + "Status",
    _META + "DeleteOptions",
    _META + "WatchEvent",
    _META + "APIResourceList",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerList",
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",  # served converted (stored as v2)
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscalerList",
    # answered, never stored (orchestrator/apiserver/security.py): typed for OpenAPI only
    *("io.k8s.api.authentication.v1." + k for k in ("SelfSubjectReview", "TokenReview")),
    *(
        "io.k8s.api.authorization.v1." + k
        for k in (
            "LocalSubjectAccessReview",
            "SelfSubjectAccessReview",
            "SelfSubjectRulesReview",
            "SubjectAccessReview",
        )
    ),
)

# The API versions served; KINDS lists a kind under these only.
API_VERSIONS = frozenset(
    {"v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
    | {"autoscaling/v1", "autoscaling/v2", "discovery.k8s.io/v1", "policy/v1"}
    | {"scheduling.k8s.io/v1", "networking.k8s.io/v1", "events.k8s.io/v1"}
    | {"storage.k8s.io/v1", "certificates.k8s.io/v1", "node.k8s.io/v1"}
    | {"admissionregistration.k8s.io/v1"}
)

# Definitions that are not objects: their Python type.
SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "int | str",
    _META + "Time": "datetime",
    _META + "MicroTime": "datetime",
    _META + "FieldsV1": "dict[str, Any]",
    "io.k8s.apimachinery.pkg.runtime.RawExtension": "dict[str, Any]",
}

# Fields the schema lists as required that kube's decoder does not require: their validation
# words a missing one as an empty one (a RuntimeClass's handler: the RFC 1123 label rule; a
# CSR's request: []byte(nil) is no PEM block), not "Required value".
NOT_REQUIRED: dict[str, tuple[str, ...]] = {
    "io.k8s.api.node.v1.RuntimeClass": ("handler",),
    "io.k8s.api.certificates.v1.CertificateSigningRequestSpec": ("request",),
}

# Go value-typed (not pointer) scalars tagged omitempty: the API server omits their zero value,
# so it is their default here. Pointer fields (*bool, *int32) keep an explicit false or 0.
ZERO_DEFAULTS: dict[str, tuple[str, ...]] = {
    "io.k8s.api.core.v1.PodSpec": ("hostNetwork", "hostPID", "hostIPC"),
    "io.k8s.api.core.v1.Container": ("stdin", "stdinOnce", "tty"),
    "io.k8s.api.core.v1.EphemeralContainer": ("stdin", "stdinOnce", "tty"),
    "io.k8s.api.core.v1.VolumeMount": ("readOnly",),
    "io.k8s.api.core.v1.ContainerPort": ("hostPort",),
    "io.k8s.api.core.v1.Probe": (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ),
    "io.k8s.api.core.v1.HostPathVolumeSource": (),
    "io.k8s.api.core.v1.NodeSpec": ("unschedulable",),
    _META + "ObjectMeta": ("generation",),
}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        # The documentation strings go; a property named "description" (an object) stays.
        return {
            k: _strip(v)
            for k, v in sorted(node.items())
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.append(ref.rpartition("/")[2])
        for value in node.values():
            out.extend(_refs(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_refs(value))
    return out


def trim(defs: dict[str, Any]) -> dict[str, Any]:
    """The definitions reachable from ROOTS, without descriptions, in name order."""
    keep: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in defs:
            raise SystemExit(f"gen: definition {name} not in the schema")
        keep[name] = _strip(defs[name])
        todo.extend(_refs(defs[name]) if name not in SPECIAL else ())
    return dict(sorted(keep.items()))


def describe(defs: dict[str, Any], names: list[str]) -> dict[str, dict[str, str]]:
    """{definition: {"": its description, property: the property's description}}."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        node = defs[name]
        docs = {"": node["description"]} if isinstance(node.get("description"), str) else {}
        for prop, sub in sorted((node.get("properties") or {}).items()):
            if isinstance(sub, dict) and isinstance(sub.get("description"), str):
                docs[prop] = sub["description"]
        out[name] = docs
    return out


# ----------------------------------------------------------------------------- rendering


def snake(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = s.replace("-", "_").replace("$", "").lower()
    return s + "_" if keyword.iskeyword(s) or s in ("bool", "int", "str", "float") else s


# Besides core's, the group-versions whose types keep their short names when another group
# has the same (the stored version of a kind served in two: autoscaling/v1's are AutoscalingV1*)
_KEEP_BASE = ("io.k8s.api.autoscaling.v2.",)


def _class_names(defs: dict[str, Any]) -> dict[str, str]:
    """Short names (``Pod``); a name two groups share gets its group and version in front,
    except core's and _KEEP_BASE's."""
    short: dict[str, list[str]] = {}
    for name in defs:
        if name not in SPECIAL:
            short.setdefault(name.rpartition(".")[2], []).append(name)
    out: dict[str, str] = {}
    for base, names in short.items():
        for name in names:
            if len(names) == 1:
                out[name] = base
            else:
                parts = name.split(".")
                group = "".join(p.capitalize() for p in parts[-3:-1])
                keep = name.startswith(_CORE) or name.startswith(_KEEP_BASE)
                out[name] = base if keep else group + base
    return out


def _type(node: dict[str, Any], names: dict[str, str]) -> str:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = ref.rpartition("/")[2]
        return SPECIAL.get(target) or names[target]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "array":
        return f"list[{_type(node.get('items') or {}, names)}]"
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return f"dict[str, {_type(extra, names)}]"
        return "dict[str, Any]"
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(
        str(kind), "Any"
    )


def render(defs: dict[str, Any]) -> str:
    names = _class_names(defs)
    out = [
        '"""Kubernetes API types, generated by ``python -m kubemodel.gen`` from ``schema.json``.',
        "",
        "Do not edit: change gen.py (or refresh the schema) and generate again.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "from __future__ import annotations",
        "",
        "from datetime import datetime",
        "from typing import Any",
        "",
        "import msgspec",
        "",
        "from kubemodel.quantity import Quantity",
        "",
        "",
        "class Object(",
        "    msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True",
        "):",
        '    """Base of every generated type: JSON names as Kubernetes spells them."""',
        "",
        "",
    ]
    classes = sorted(names[n] for n in defs if n not in SPECIAL)
    out.append("__all__ = [")
    out.extend(f'    "{c}",' for c in ["KINDS", "Object", *classes])
    out.extend(["]", "", ""])
    kinds: list[tuple[str, str, str]] = []
    for name in sorted(defs, key=lambda n: names.get(n, "")):
        if name in SPECIAL:
            continue
        node = defs[name]
        cls = names[name]
        out.append(f"class {cls}(Object):")
        out.append(f'    """``{name}``."""')
        props: dict[str, Any] = node.get("properties") or {}
        required = set(node.get("required") or ()) - set(NOT_REQUIRED.get(name, ()))
        zero = set(ZERO_DEFAULTS.get(name, ()))
        lines_req: list[str] = []
        lines_opt: list[str] = []
        for json_name in sorted(props):
            py = snake(json_name)
            typ = _type(props[json_name], names)
            renamed = f'name="{json_name}"' if py != json_name else ""
            if json_name in required:
                spec = f"msgspec.field({renamed})" if renamed else ""
                lines_req.append(f"    {py}: {typ}" + (f" = {spec}" if spec else ""))
                continue
            if json_name in zero:
                default = {"bool": "False", "int": "0", "str": '""'}[typ]
                ann = typ
            else:
                default, ann = "None", f"{typ} | None"
            if renamed:
                lines_opt.append(f"    {py}: {ann} = msgspec.field(default={default}, {renamed})")
            else:
                lines_opt.append(f"    {py}: {ann} = {default}")
        body = lines_req + lines_opt
        out.extend(body or ["    pass"])
        out.extend(["", ""])
        for gvk in node.get("x-kubernetes-group-version-kind") or ():
            group, version = gvk["group"], gvk["version"]
            api = f"{group}/{version}" if group else version
            if api in API_VERSIONS and name.endswith("." + gvk["kind"]):
                kinds.append((api, gvk["kind"], cls))
    out.append("# (apiVersion, kind) -> type, for every kind above that has its own apiVersion.")
    out.append("KINDS: dict[tuple[str, str], type[Object]] = {")
    for api, kind, cls in sorted(set(kinds)):
        out.append(f'    ("{api}", "{kind}"): {cls},')
    out.append("}")
    return "\n".join(out) + "\n"


def load_schema(path: Path = SCHEMA) -> dict[str, Any]:
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kubemodel.gen", description=__doc__)
    ap.add_argument("--schema", help="refresh schema.json from this _definitions.json first")
    ap.add_argument("--check", action="store_true", help="exit 1 if _generated.py is stale")
    args = ap.parse_args(argv)
    if args.schema:
        raw = json.loads(Path(args.schema).read_text())
        defs = raw.get("$defs") or raw.get("definitions") or {}
        kept = trim(defs)
        SCHEMA.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        docs = describe(defs, list(kept))
        DESCRIPTIONS.write_text(json.dumps(docs, indent=0, sort_keys=True) + "\n")
    text = render(load_schema())
    if args.check:
        return 0 if OUTPUT.read_text() == text else 1
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
