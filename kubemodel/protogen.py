"""Generate ``kubemodel/_proto_generated.py``: the Kubernetes protobuf messages as tables that
``kubemodel.protobuf`` decodes with.

Run at development time, never at run time, on the public sources at the pinned version::

    git -C kubernetes/api archive v0.32.9 | tar -x -C /tmp/api
    git -C kubernetes/apimachinery archive v0.32.9 | tar -x -C /tmp/apimachinery
    python -m kubemodel.protogen --api /tmp/api --apimachinery /tmp/apimachinery

Two inputs per package: ``generated.proto`` (the wire: field numbers, scalar or message types,
repeated, maps) and the Go structs in the package's ``.go`` files (the JSON: a field's JSON name,
``omitempty``, ``,inline``, and whether the Go field is a pointer). Both are needed to give the
JSON that kubectl would have sent: gogo-protobuf writes every non-pointer field, so a decoded
zero ``string`` is Go's zero value, which ``encoding/json`` drops under ``omitempty``; a pointer
field is written only when set, so a decoded zero there is an explicit one and is kept.

The messages kept are those reachable from ``ROOTS``; ``SPECIAL`` ones (Time, Quantity,
IntOrString, ...) have their own JSON form and are decoded by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "_proto_generated.py"
VERSION = "v0.32.9"  # the kubernetes/api and kubernetes/apimachinery tag the table comes from

# proto package -> (source tree, directory, apiVersion of its kinds or "" for none)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "k8s.io.api.core.v1": ("api", "core/v1", "v1"),
    "k8s.io.api.apps.v1": ("api", "apps/v1", "apps/v1"),
    "k8s.io.api.batch.v1": ("api", "batch/v1", "batch/v1"),
    "k8s.io.api.autoscaling.v1": ("api", "autoscaling/v1", "autoscaling/v1"),
    "k8s.io.api.autoscaling.v2": ("api", "autoscaling/v2", "autoscaling/v2"),
    "k8s.io.api.coordination.v1": ("api", "coordination/v1", "coordination.k8s.io/v1"),
    "k8s.io.api.discovery.v1": ("api", "discovery/v1", "discovery.k8s.io/v1"),
    "k8s.io.api.policy.v1": ("api", "policy/v1", "policy/v1"),
    "k8s.io.api.rbac.v1": ("api", "rbac/v1", "rbac.authorization.k8s.io/v1"),
    "k8s.io.api.scheduling.v1": ("api", "scheduling/v1", "scheduling.k8s.io/v1"),
    "k8s.io.api.networking.v1": ("api", "networking/v1", "networking.k8s.io/v1"),
    "k8s.io.api.events.v1": ("api", "events/v1", "events.k8s.io/v1"),
    "k8s.io.api.storage.v1": ("api", "storage/v1", "storage.k8s.io/v1"),
    "k8s.io.api.certificates.v1": ("api", "certificates/v1", "certificates.k8s.io/v1"),
    "k8s.io.apimachinery.pkg.apis.meta.v1": ("apimachinery", "pkg/apis/meta/v1", "meta.k8s.io/v1"),
    "k8s.io.apimachinery.pkg.api.resource": ("apimachinery", "pkg/api/resource", ""),
    "k8s.io.apimachinery.pkg.runtime": ("apimachinery", "pkg/runtime", ""),
    "k8s.io.apimachinery.pkg.runtime.schema": ("apimachinery", "pkg/runtime/schema", ""),
    "k8s.io.apimachinery.pkg.util.intstr": ("apimachinery", "pkg/util/intstr", ""),
}

_CORE = "k8s.io.api.core.v1."
ROOTS: tuple[tuple[str, str], ...] = (
    *(
        ("v1", k)
        for k in (
            "Pod Node Service Endpoints ConfigMap Secret Namespace Event ServiceAccount Binding"
            " ReplicationController"
        ).split()
    ),
    *(("apps/v1", k) for k in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet")),
    ("apps/v1", "ControllerRevision"),
    *(("batch/v1", k) for k in ("Job", "CronJob")),
    ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("policy/v1", "PodDisruptionBudget"),
    ("policy/v1", "Eviction"),
    *(
        ("rbac.authorization.k8s.io/v1", k)
        for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    ),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("events.k8s.io/v1", "Event"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("v1", "PersistentVolume"),
    ("v1", "PersistentVolumeClaim"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    ("autoscaling/v1", "Scale"),
    ("autoscaling/v1", "HorizontalPodAutoscaler"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("meta.k8s.io/v1", "DeleteOptions"),
    ("meta.k8s.io/v1", "Status"),
)

# Messages whose JSON is not their fields (custom Go marshalling): decoded by hand.
SPECIAL = frozenset(
    {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration",
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
        "k8s.io.apimachinery.pkg.api.resource.Quantity",
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
        "k8s.io.apimachinery.pkg.runtime.RawExtension",
        "k8s.io.apimachinery.pkg.runtime.Unknown",
        "k8s.io.api.certificates.v1.ExtraValue",  # a []string: its items
    }
)

SCALARS = frozenset(
    "string bytes bool int32 int64 uint32 uint64 sint32 sint64 fixed32 fixed64 double float".split()
)

# Field flags in the table.
REPEATED, POINTER, OMITEMPTY, INLINE = 1, 2, 4, 8


@dataclass
class ProtoField:
    number: int
    name: str
    type: str  # a scalar name, a message's full name, or "map"
    repeated: bool
    key: str = ""  # map key and value types
    value: str = ""


@dataclass
class GoField:
    json_name: str
    pointer: bool
    omitempty: bool
    inline: bool


_MESSAGE = re.compile(r"^message (\w+) \{$")
_FIELD = re.compile(r"^\s+(optional|repeated|required) ([\w.]+) (\w+) = (\d+);")
_MAP = re.compile(r"^\s+map<([\w.]+), ([\w.]+)> (\w+) = (\d+);")
_PACKAGE = re.compile(r"^package ([\w.]+);", re.M)


def _resolve(typ: str, package: str) -> str:
    typ = typ.removeprefix(".")
    if typ in SCALARS:
        return typ
    if typ.startswith("k8s.io."):
        return typ
    return f"{package}.{typ}"


def parse_proto(text: str) -> tuple[str, dict[str, list[ProtoField]]]:
    """(package, message full name -> fields) of one generated.proto."""
    m = _PACKAGE.search(text)
    if m is None:
        raise SystemExit("protogen: a generated.proto without a package")
    package = m[1]
    messages: dict[str, list[ProtoField]] = {}
    current: list[ProtoField] | None = None
    for line in text.splitlines():
        if (mm := _MESSAGE.match(line)) is not None:
            current = messages.setdefault(f"{package}.{mm[1]}", [])
        elif line == "}":
            current = None
        elif current is not None and (f := _FIELD.match(line)) is not None:
            current.append(ProtoField(int(f[4]), f[3], _resolve(f[2], package), f[1] == "repeated"))
        elif current is not None and (f := _MAP.match(line)) is not None:
            current.append(
                ProtoField(
                    int(f[4]), f[3], "map", False, _resolve(f[1], package), _resolve(f[2], package)
                )
            )
        elif current is not None and line.strip() and not line.strip().startswith("//"):
            raise SystemExit(f"protogen: {package}: a line not understood: {line!r}")
    return package, messages


_STRUCT = re.compile(r"^type (\w+) struct \{$")
_GO_FIELD = re.compile(r"^\s+(?:(\w+)\s+)?(\*?[\w.\[\]*]+)\s+`([^`]*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')


def parse_go(text: str) -> dict[str, dict[int, GoField]]:
    """Go struct name -> protobuf field number -> what encoding/json does with it."""
    out: dict[str, dict[int, GoField]] = {}
    current: dict[int, GoField] | None = None
    for line in text.splitlines():
        if (m := _STRUCT.match(line)) is not None:
            current = out.setdefault(m[1], {})
        elif line == "}":
            current = None
        elif current is not None and (f := _GO_FIELD.match(line)) is not None:
            tags = dict(_TAG.findall(f[3]))
            if tags.get("protobuf", "-") == "-":
                continue
            number = int(tags["protobuf"].split(",")[1])
            json_tag = tags.get("json", "").split(",")
            current[number] = GoField(
                json_name=json_tag[0],
                pointer=f[2].startswith("*"),
                omitempty="omitempty" in json_tag[1:],
                inline="inline" in json_tag[1:],
            )
    return out


def load(
    roots: dict[str, Path],
) -> tuple[dict[str, list[ProtoField]], dict[str, dict[int, GoField]]]:
    protos: dict[str, list[ProtoField]] = {}
    go: dict[str, dict[int, GoField]] = {}
    for package, (tree, directory, _) in PACKAGES.items():
        base = roots[tree] / directory
        got, messages = parse_proto((base / "generated.proto").read_text())
        if got != package:
            raise SystemExit(f"protogen: {base}/generated.proto is package {got}, not {package}")
        protos.update(messages)
        for path in sorted(base.glob("*.go")):
            if path.name.endswith("_test.go") or path.name.startswith(("zz_", "generated")):
                continue
            for struct, fields in parse_go(path.read_text()).items():
                if fields:
                    go[f"{package}.{struct}"] = fields
    return protos, go


def _api_version(message: str) -> str:
    package = message.rpartition(".")[0]
    return PACKAGES[package][2]


def reachable(protos: dict[str, list[ProtoField]]) -> list[str]:
    by_kind = {(_api_version(m), m.rpartition(".")[2]): m for m in protos}
    todo = []
    for root in ROOTS:
        if root not in by_kind:
            raise SystemExit(f"protogen: no message for {root}")
        todo.append(by_kind[root])
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in protos:
            raise SystemExit(f"protogen: message {name} not found (a package missing?)")
        seen.add(name)
        if name in SPECIAL:
            continue
        for f in protos[name]:
            for t in (f.type, f.value):
                if t and t not in SCALARS and t != "map":
                    todo.append(t)
    return sorted(seen)


def render(protos: dict[str, list[ProtoField]], go: dict[str, dict[int, GoField]]) -> str:
    keep = reachable(protos)
    out = [
        f'"""Kubernetes protobuf messages ({VERSION}), generated by ``python -m',
        "kubemodel.protogen`` from k8s.io/api and k8s.io/apimachinery ``generated.proto`` and",
        "their Go structs.",
        "",
        "Do not edit: change protogen.py and generate again.",
        "",
        "FIELDS: message -> field number -> (JSON name, type, map value type, flags); the",
        "type is a scalar (``string``, ``int32``...), a message's full name or ``map`` (then",
        "the second type is the map's value; keys are strings); flags: 1 repeated, 2 Go",
        "pointer, 4 omitempty, 8 inline. KINDS: (apiVersion, kind) -> message.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        'VERSION = "' + VERSION + '"',
        "",
        "FIELDS: dict[str, dict[int, tuple[str, str, str, int]]] = {",
    ]
    for name in keep:
        if name in SPECIAL:
            continue
        struct = go.get(name)
        if struct is None:
            raise SystemExit(f"protogen: no Go struct for {name}")
        out.append(f'    "{name}": {{')
        for f in sorted(protos[name], key=lambda f: f.number):
            g = struct.get(f.number)
            if g is None:
                raise SystemExit(f"protogen: {name}.{f.name} (#{f.number}) has no Go field")
            if f.type == "map" and f.key != "string":
                raise SystemExit(f"protogen: {name}.{f.name}: map keys of {f.key}")
            json_name = g.json_name or f.name
            # the wire name is the Go field's, lower-cased at its start ("aPIGroup" for the
            # JSON "apiGroup" of IngressClassParametersReference): only its case may differ
            if not g.inline and json_name.lower() != f.name.lower():
                raise SystemExit(f"protogen: {name}.{f.name}: JSON name {json_name}")
            flags = (
                (REPEATED if f.repeated else 0)
                | (POINTER if g.pointer else 0)
                | (OMITEMPTY if g.omitempty else 0)
                | (INLINE if g.inline else 0)
            )
            out.append(f'        {f.number}: ("{json_name}", "{f.type}", "{f.value}", {flags}),')
        out.append("    },")
    out.append("}")
    out.append("")
    out.append("KINDS: dict[tuple[str, str], str] = {")
    for api, kind in sorted(set(ROOTS)):
        message = next(m for m in keep if m.endswith("." + kind) and _api_version(m) == api)
        out.append(f'    ("{api}", "{kind}"): "{message}",')
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kubemodel.protogen", description=__doc__)
    ap.add_argument("--api", required=True, help=f"a kubernetes/api tree at {VERSION}")
    ap.add_argument("--apimachinery", required=True, help=f"kubernetes/apimachinery at {VERSION}")
    ap.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = ap.parse_args(argv)
    protos, go = load({"api": Path(args.api), "apimachinery": Path(args.apimachinery)})
    text = render(protos, go)
    if args.check:
        return 0 if OUTPUT.read_text() == text else 1
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
