"""The default ClusterRoles and ClusterRoleBindings every cluster starts with, as
kube-apiserver's bootstrap policy makes them (without aggregation: admin, edit and view carry
their rules flat), for the kinds this server serves and the ones clients commonly name.

At every start a missing default is created, and one still annotated
``rbac.authorization.kubernetes.io/autoupdate: "true"`` is brought back to its rules
(kube-apiserver's reconciliation); set the annotation to "false" to keep your own edits.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTROLLER_USER", "NODE_RULES", "cluster_role_bindings", "cluster_roles"]

Obj = dict[str, Any]

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
READ_WRITE = READ + WRITE
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


def rule(
    verbs: list[str],
    groups: list[str] | None = None,
    resources: list[str] | None = None,
    urls: list[str] | None = None,
    names: list[str] | None = None,
) -> Obj:
    r: Obj = {"verbs": list(verbs)}
    if urls is not None:
        r["nonResourceURLs"] = urls
        return r
    r["apiGroups"] = groups or [""]
    r["resources"] = resources or []
    if names:
        r["resourceNames"] = names
    return r


# ------------------------------------------------------------------ view / edit / admin

_VIEW = [
    rule(
        READ,
        [""],
        [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ],
    ),
    rule(
        READ,
        [""],
        [
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ],
    ),
    rule(READ, [""], ["namespaces"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(
        READ,
        ["apps"],
        [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    rule(
        READ,
        ["networking.k8s.io"],
        ["ingresses", "ingresses/status", "networkpolicies"],
    ),
    # metrics-server's system:aggregated-metrics-reader, aggregated to view, edit and admin
    rule(READ, ["metrics.k8s.io"], ["pods", "nodes"]),
]

_EDIT_ONLY = [
    rule(["impersonate"], [""], ["serviceaccounts"]),
    rule(WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    rule(["create"], [""], ["pods/eviction"]),
    rule(["patch", "update"], [""], ["pods/ephemeralcontainers"]),
    rule(
        WRITE,
        [""],
        [
            "configmaps",
            "endpoints",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
    ),
    rule(["create"], [""], ["serviceaccounts/token"]),
    rule(
        WRITE,
        ["apps"],
        [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
    ),
    rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
    rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
    rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    rule(
        READ,
        [""],
        ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
    ),
]

_ADMIN_ONLY = [
    rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    rule(READ_WRITE, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
]

# ------------------------------------------------------------------ system roles

DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]

# What a node (kubelet and service proxy) may do besides what the node authorizer decides
# per object (its own Node and Lease, its pods, the secrets/configmaps/serviceaccounts they
# use): the rules of kube-apiserver's system:node role that touch no object of another node.
NODE_RULES = [
    rule(READ, [""], ["nodes"]),
    # the claims of its pods and their volumes (kube's node authorizer narrows these reads to
    # the pods' own claims; a node here reads them all)
    rule(READ, [""], ["persistentvolumeclaims", "persistentvolumes"]),
    rule(READ, [""], ["services", "endpoints"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
    rule(READ, ["node.k8s.io"], ["runtimeclasses"]),  # a pod's handler (kube's system:node)
    rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
    rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    rule(
        ["create"],
        ["authorization.k8s.io"],
        ["localsubjectaccessreviews", "subjectaccessreviews"],
    ),
    # not kube's: the agent watches NetworkPolicies with its node identity (no other node's
    # objects), and starts their enforcement, with CONTROLLER_USER's, at the first one
    rule(READ, ["networking.k8s.io"], ["networkpolicies"]),
]


def _meta(name: str) -> Obj:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {AUTOUPDATE: "true"},
    }


def _role(name: str, rules: list[Obj], extra_labels: dict[str, str] | None = None) -> Obj:
    meta = _meta(name)
    if extra_labels:
        meta["labels"].update(extra_labels)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta,
        "rules": rules,
    }


def _binding(name: str, role: str, groups: list[str]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups
        ],
    }


# The user of every agent's second client certificate (orchestrator/apiserver/join.py): what a
# node's NetworkPolicy enforcement reads cluster-wide, which the node authorizer keeps from a
# node's own identity (another node's pods). k3s binds its system:k3s-controller likewise.
CONTROLLER_USER = "system:corral-controller"
CONTROLLER_RULES = [
    rule(READ, [""], ["namespaces", "pods", "nodes"]),
    rule(READ, ["networking.k8s.io"], ["networkpolicies"]),
]


def cluster_roles() -> list[Obj]:
    facing = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return [
        _role(
            "cluster-admin",
            [rule(["*"], ["*"], ["*"]), rule(["*"], urls=["*"])],
            facing,
        ),
        _role("admin", _VIEW + _EDIT_ONLY + _ADMIN_ONLY),
        _role("edit", _VIEW + _EDIT_ONLY),
        _role("view", list(_VIEW)),
        _role(
            "system:basic-user",
            [
                rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        _role("system:discovery", [rule(["get"], urls=DISCOVERY_URLS)]),
        _role("system:public-info-viewer", [rule(["get"], urls=PUBLIC_INFO_URLS)]),
        _role("system:node", list(NODE_RULES)),
        # approving for each of kube-controller-manager's signers (bound to no one)
        *(
            _role(
                f"system:certificates.k8s.io:{signer}-approver",
                [
                    rule(
                        ["approve"],
                        ["certificates.k8s.io"],
                        ["signers"],
                        names=[f"kubernetes.io/{signer}"],
                    )
                ],
            )
            for signer in (
                "kube-apiserver-client",
                "kube-apiserver-client-kubelet",
                "kubelet-serving",
                "legacy-unknown",
            )
        ),
        _role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"])],
        ),
        _role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [
                rule(
                    ["create"],
                    ["certificates.k8s.io"],
                    ["certificatesigningrequests/selfnodeclient"],
                )
            ],
        ),
        _role(CONTROLLER_USER, list(CONTROLLER_RULES)),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"],
        ),
        # As kube-apiserver: no subjects; nodes are authorized by the node authorizer.
        {**_binding("system:node", "system:node", []), "subjects": None},
        {
            **_binding(CONTROLLER_USER, CONTROLLER_USER, []),
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}
            ],
        },
    ]
