"""The one table of kinds the API server serves: group, version, resource, kind, scope,
short names, and the kubemodel types that decode, default and validate them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kubemodel
from kubemodel._generated import Object

__all__ = [
    "INITIAL_STATUS",
    "NETWORKING",
    "RBAC",
    "RESOURCES",
    "GROUPS",
    "Resource",
    "by_path",
    "custom_generation",
    "custom_resources",
    "lookup",
    "served",
    "set_custom",
]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    version: str
    name: str  # plural: "pods"
    singular: str
    kind: str
    namespaced: bool
    model: type[Object]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "eviction"
    has_spec: bool = True  # generation follows changes of spec
    delete_collection: bool = True  # namespaces have no deletecollection verb
    extra: dict[str, str] = field(default_factory=dict)
    # Served as another resource of the same name stores it, in that group (events.k8s.io/v1
    # Event is core/v1's): the keys are that group's; requests convert (apiserver.converted).
    stored_group: str | None = None
    stored_version: str | None = None  # of the stored resource, when not this one's
    # A custom resource: what its CRD says of it (crd.Custom); its objects have no model,
    # crd.admit_custom checks them against the CRD's schema.
    custom: Any = None

    @property
    def untyped(self) -> bool:
        """No object model: a custom resource, or a CustomResourceDefinition (crd.py)."""
        return self.custom is not None or self.group == APIEXTENSIONS

    @property
    def verbs(self) -> list[str]:
        return VERBS if self.delete_collection else [v for v in VERBS if v != "deletecollection"]

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.extra.get("listKind") or self.kind + "List"

    def key_prefix(self, namespace: str | None) -> str:
        """Store keys: /registry/<group.resource>/<namespace>/<name>."""
        if self.custom is not None:  # kube's layout for custom resources
            base = self.custom.prefix
            return f"{base}{namespace}/" if self.namespaced and namespace else base
        group = self.group if self.stored_group is None else self.stored_group
        base = f"/registry/{self.name}.{group}/" if group else f"/registry/{self.name}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        return self.key_prefix(namespace) + name


def _r(
    group: str,
    name: str,
    kind: str,
    namespaced: bool,
    model: type[Object],
    short: tuple[str, ...] = (),
    all_: bool = False,
    sub: tuple[str, ...] = (),
    has_spec: bool = True,
    bulk: bool = True,
    version: str = "v1",
) -> Resource:
    return Resource(
        group=group,
        version=version,
        name=name,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        model=model,
        short_names=short,
        categories=("all",) if all_ else (),
        subresources=sub,
        has_spec=has_spec,
        delete_collection=bulk,
    )


k = kubemodel
APIEXTENSIONS = "apiextensions.k8s.io"
RBAC = "rbac.authorization.k8s.io"
NETWORKING = "networking.k8s.io"
ADMISSION = "admissionregistration.k8s.io"
RESOURCES: tuple[Resource, ...] = (
    _r("", "namespaces", "Namespace", False, k.Namespace, ("ns",), sub=("status",), bulk=False),
    _r(
        "",
        "pods",
        "Pod",
        True,
        k.Pod,
        ("po",),
        True,
        (
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "proxy",
            "ephemeralcontainers",
        ),
    ),  # fmt: skip
    _r("", "configmaps", "ConfigMap", True, k.ConfigMap, ("cm",), has_spec=False),
    _r("", "secrets", "Secret", True, k.Secret, has_spec=False),
    _r("", "services", "Service", True, k.Service, ("svc",), True, ("status", "proxy")),
    _r("", "events", "Event", True, k.Event, ("ev",), has_spec=False),
    _r("", "serviceaccounts", "ServiceAccount", True, k.ServiceAccount, ("sa",), has_spec=False),
    _r("", "nodes", "Node", False, k.Node, ("no",), sub=("status", "proxy")),
    _r("", "endpoints", "Endpoints", True, k.Endpoints, ("ep",), has_spec=False),
    _r(
        "",
        "persistentvolumes",
        "PersistentVolume",
        False,
        k.PersistentVolume,
        ("pv",),
        sub=("status",),
    ),
    _r(
        "",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        k.PersistentVolumeClaim,
        ("pvc",),
        sub=("status",),
    ),
    _r(
        "",
        "replicationcontrollers",
        "ReplicationController",
        True,
        k.ReplicationController,
        ("rc",),
        True,
        ("status", "scale"),
    ),
    _r(
        "apps",
        "deployments",
        "Deployment",
        True,
        k.Deployment,
        ("deploy",),
        True,
        ("status", "scale"),
    ),
    _r("apps", "replicasets", "ReplicaSet", True, k.ReplicaSet, ("rs",), True, ("status", "scale")),
    _r("apps", "daemonsets", "DaemonSet", True, k.DaemonSet, ("ds",), True, ("status",)),
    _r(
        "apps",
        "statefulsets",
        "StatefulSet",
        True,
        k.StatefulSet,
        ("sts",),
        True,
        ("status", "scale"),
    ),
    _r("batch", "jobs", "Job", True, k.Job, (), True, ("status",)),
    _r(
        "autoscaling",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        k.HorizontalPodAutoscaler,
        ("hpa",),
        True,
        ("status",),
        version="v2",
    ),
    _r("batch", "cronjobs", "CronJob", True, k.CronJob, ("cj",), True, ("status",)),
    _r(
        "apps",
        "controllerrevisions",
        "ControllerRevision",
        True,
        k.ControllerRevision,
        has_spec=False,
    ),
    _r("coordination.k8s.io", "leases", "Lease", True, k.Lease),
    _r(
        "discovery.k8s.io", "endpointslices", "EndpointSlice", True, k.EndpointSlice, has_spec=False
    ),
    _r(NETWORKING, "ingressclasses", "IngressClass", False, k.IngressClass),
    _r("node.k8s.io", "runtimeclasses", "RuntimeClass", False, k.RuntimeClass, has_spec=False),
    *(
        _r(ADMISSION, f"{kind.lower()}s", kind, False, getattr(k, kind), has_spec=False)
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
    ),
    _r(NETWORKING, "ingresses", "Ingress", True, k.Ingress, ("ing",), sub=("status",)),
    _r(NETWORKING, "networkpolicies", "NetworkPolicy", True, k.NetworkPolicy, ("netpol",)),
    _r(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        k.PodDisruptionBudget,
        ("pdb",),
        sub=("status",),
    ),
    _r(
        RBAC,
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        k.ClusterRoleBinding,
        has_spec=False,
    ),
    _r(RBAC, "clusterroles", "ClusterRole", False, k.ClusterRole, has_spec=False),
    _r(RBAC, "rolebindings", "RoleBinding", True, k.RoleBinding, has_spec=False),
    _r(RBAC, "roles", "Role", True, k.Role, has_spec=False),
    _r(
        "scheduling.k8s.io",
        "priorityclasses",
        "PriorityClass",
        False,
        k.PriorityClass,
        ("pc",),
        has_spec=False,
    ),
    _r(
        "storage.k8s.io",
        "storageclasses",
        "StorageClass",
        False,
        k.StorageClass,
        ("sc",),
        has_spec=False,
    ),
)
RESOURCES += (
    _r("", "resourcequotas", "ResourceQuota", True, k.ResourceQuota, ("quota",), sub=("status",)),
    _r("", "limitranges", "LimitRange", True, k.LimitRange, ("limits",)),
    Resource(
        group="events.k8s.io",
        version="v1",
        name="events",
        singular="event",
        kind="Event",
        namespaced=True,
        model=k.EventsV1Event,
        short_names=("ev",),
        has_spec=False,
        stored_group="",
    ),
    Resource(  # stored as autoscaling/v2 (kubemodel.autoscaling converts)
        group="autoscaling",
        version="v1",
        name="horizontalpodautoscalers",
        singular="horizontalpodautoscaler",
        kind="HorizontalPodAutoscaler",
        namespaced=True,
        model=k.AutoscalingV1HorizontalPodAutoscaler,
        short_names=("hpa",),
        categories=("all",),
        subresources=("status",),
        stored_group="autoscaling",
        stored_version="v2",
    ),
    Resource(
        group="certificates.k8s.io",
        version="v1",
        name="certificatesigningrequests",
        singular="certificatesigningrequest",
        kind="CertificateSigningRequest",
        namespaced=False,
        model=k.CertificateSigningRequest,
        short_names=("csr",),
        subresources=("approval", "status"),
        has_spec=False,
    ),
    Resource(
        group=APIEXTENSIONS,
        version="v1",
        name="customresourcedefinitions",
        singular="customresourcedefinition",
        kind="CustomResourceDefinition",
        namespaced=False,
        model=Object,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
    ),
)
del k

# The status a new object starts with (its Go zero value, where that has required fields).
INITIAL_STATUS: dict[str, dict[str, Any]] = {
    "daemonsets": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
    "replicasets": {"replicas": 0},
    "horizontalpodautoscalers": {"currentReplicas": 0, "desiredReplicas": 0},
    "replicationcontrollers": {"replicas": 0},
    "statefulsets": {"replicas": 0},
    "persistentvolumes": {"phase": "Pending"},
    "persistentvolumeclaims": {"phase": "Pending"},
    "poddisruptionbudgets": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}

# IngressStatus.LoadBalancer is a struct Go always writes
INITIAL_STATUS["ingresses"] = {"loadBalancer": {}}

# group -> version -> resources, in the order discovery lists them.
GROUPS: dict[str, dict[str, list[Resource]]] = {}
for _res in RESOURCES:
    GROUPS.setdefault(_res.group, {}).setdefault(_res.version, []).append(_res)

_BY_PATH = {(r.group, r.version, r.name): r for r in RESOURCES}
# The custom resources served now (crd.py sets them when a CRD is established or goes).
_CUSTOM: dict[tuple[str, str, str], Resource] = {}


_GENERATION = [0]  # how many times the custom resources were set


def set_custom(resources: list[Resource]) -> None:
    """Serve these custom resources (and no other ones) from now on."""
    if list(_CUSTOM.values()) == resources:
        return
    _CUSTOM.clear()
    _CUSTOM.update({(r.group, r.version, r.name): r for r in resources})
    _GENERATION[0] += 1


def custom_generation() -> int:
    """Changes whenever the custom resources are set (0: never, no CRD was ever served)."""
    return _GENERATION[0]


def custom_resources() -> list[Resource]:
    return list(_CUSTOM.values())


def served() -> tuple[Resource, ...]:
    """Every resource served: the table's, then the custom ones."""
    return RESOURCES + tuple(_CUSTOM.values()) if _CUSTOM else RESOURCES


def by_path(group: str, version: str, name: str) -> Resource | None:
    return _BY_PATH.get((group, version, name)) or _CUSTOM.get((group, version, name))


def lookup(api_version: str, kind: str) -> Resource | None:
    for r in served():
        if r.api_version == api_version and r.kind == kind:
            return r
    return None
