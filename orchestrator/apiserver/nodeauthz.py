"""The node authorizer (kube-apiserver's ``--authorization-mode=Node`` with the checks of its
NodeRestriction admission): a node's credentials (``system:node:<name>`` in ``system:nodes``)
reach only what that node needs.

* its own Node (create, update, patch, delete, status) and its Lease in kube-node-lease; every
  Node may be read (host-gw routes need the others' podCIDRs);
* the pods bound to it: get, delete, status; a list or watch only with the field selector
  ``spec.nodeName=<name>`` (kube-apiserver's AuthorizeWithSelectors), never another node's;
  create, of mirror pods of its static pods only (the body is checked on admission:
  ``security.py``, NodeRestriction);
* the secrets, configmaps and serviceaccounts (and ``serviceaccounts/token``) that those pods
  reference, read by name (get, or list/watch with ``fieldSelector=metadata.name=<name>``);
* events, and reads of services, endpoints and endpointslices (NODE_RULES).

Anything else gets no opinion here, so RBAC decides (and binds nothing to nodes by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .authz import Attributes, Decision, rule_allows
from .objcache import ObjectCache
from .policy import NODE_RULES

__all__ = ["NODE_GROUP", "NodeAuthorizer", "node_name", "pod_references"]

Obj = dict[str, Any]
NODE_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"


def node_name(attrs_user: Any) -> str | None:
    name = getattr(attrs_user, "name", "")
    if NODE_GROUP not in getattr(attrs_user, "groups", ()) or not name.startswith(NODE_PREFIX):
        return None
    return name[len(NODE_PREFIX) :] or None


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or ()


def pod_references(pod: Obj) -> dict[str, set[str]]:
    """The secrets, configmaps and serviceaccounts a pod uses, by resource."""
    spec = pod.get("spec") or {}
    refs: dict[str, set[str]] = {"secrets": set(), "configmaps": set(), "serviceaccounts": set()}
    refs["serviceaccounts"].add(spec.get("serviceAccountName") or "default")
    for s in spec.get("imagePullSecrets") or ():
        if s.get("name"):
            refs["secrets"].add(s["name"])
    for vol in spec.get("volumes") or ():
        if (sec := vol.get("secret")) and sec.get("secretName"):
            refs["secrets"].add(sec["secretName"])
        if (cm := vol.get("configMap")) and cm.get("name"):
            refs["configmaps"].add(cm["name"])
        for src in (vol.get("projected") or {}).get("sources") or ():
            if (sec := src.get("secret")) and sec.get("name"):
                refs["secrets"].add(sec["name"])
            if (cm := src.get("configMap")) and cm.get("name"):
                refs["configmaps"].add(cm["name"])
    for c in _containers(spec):
        for env in c.get("env") or ():
            vf = env.get("valueFrom") or {}
            if (ref := vf.get("secretKeyRef")) and ref.get("name"):
                refs["secrets"].add(ref["name"])
            if (ref := vf.get("configMapKeyRef")) and ref.get("name"):
                refs["configmaps"].add(ref["name"])
        for src in c.get("envFrom") or ():
            if (ref := src.get("secretRef")) and ref.get("name"):
                refs["secrets"].add(ref["name"])
            if (ref := src.get("configMapRef")) and ref.get("name"):
                refs["configmaps"].add(ref["name"])
    return refs


def _selects_node(field_selector: str, node: str) -> bool:
    for term in field_selector.split(","):
        key, sep, value = term.partition("=")
        if sep and key.strip() == "spec.nodeName" and value.lstrip("=").strip() == node:
            return True
    return False


class NodeAuthorizer:
    def __init__(self, pods: ObjectCache) -> None:
        self.pods = pods
        self._index_gen = -1
        self._index: dict[str, list[Obj]] = {}

    def pods_on(self, node: str) -> list[Obj]:
        if self._index_gen != self.pods.generation:
            index: dict[str, list[Obj]] = {}
            for pod in self.pods.objects.values():
                if bound := (pod.get("spec") or {}).get("nodeName"):
                    index.setdefault(bound, []).append(pod)
            self._index, self._index_gen = index, self.pods.generation
        return self._index.get(node, [])

    def _pod_on(self, node: str, ns: str, name: str) -> bool:
        pod = self.pods.objects.get((ns, name))
        return pod is not None and (pod.get("spec") or {}).get("nodeName") == node

    def _referenced(self, node: str, ns: str, resource: str, name: str) -> bool:
        for pod in self.pods_on(node):
            if pod["metadata"].get("namespace") == ns and name in pod_references(pod)[resource]:
                return True
        return False

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        node = node_name(attrs.user)
        if node is None:
            return Decision.NO_OPINION, ""
        if not attrs.resource_request:
            return Decision.NO_OPINION, ""
        no_relation = f"no relationship found between node '{node}' and this object"
        g, r, sub, v = attrs.api_group, attrs.resource, attrs.subresource, attrs.verb
        if g == "" and r in ("secrets", "configmaps", "serviceaccounts"):
            # by name: a get, or a list/watch selecting metadata.name (kubelet's watch-based
            # secret and configmap managers)
            reads = not sub and v in ("get", "list", "watch")
            token = r == "serviceaccounts" and sub == "token" and v == "create"
            if attrs.name and (reads or token):
                if self._referenced(node, attrs.namespace, r, attrs.name):
                    return Decision.ALLOW, ""
            return Decision.NO_OPINION, no_relation
        if g == "" and r == "pods":
            if v in ("list", "watch") and _selects_node(attrs.field_selector, node) and not sub:
                return Decision.ALLOW, ""
            if v == "create" and not sub and not attrs.name:
                return Decision.ALLOW, ""  # a mirror pod: the body is checked on admission
            if attrs.name and self._pod_on(node, attrs.namespace, attrs.name):
                if (sub == "" and v in ("get", "watch", "delete")) or (
                    sub == "status" and v in ("get", "update", "patch")
                ):
                    return Decision.ALLOW, ""
            return Decision.NO_OPINION, no_relation
        if g == "" and r == "nodes":
            if v in ("get", "list", "watch") and sub in ("", "status"):
                return Decision.ALLOW, ""
            if v == "create" and not sub:
                return Decision.ALLOW, ""  # the name in the body is checked on admission
            if attrs.name == node and v in ("update", "patch", "delete") and sub in ("", "status"):
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, no_relation
        if g == "coordination.k8s.io" and r == "leases":
            if attrs.namespace == LEASE_NAMESPACE and not sub:
                if v == "create" and not attrs.name:
                    return Decision.ALLOW, ""  # the name in the body is checked on admission
                if attrs.name == node and v in ("get", "update", "patch", "delete", "watch"):
                    return Decision.ALLOW, ""
            return Decision.NO_OPINION, no_relation
        if any(rule_allows(rule, attrs) for rule in NODE_RULES):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""

    async def refresh(self, since: float | None = None) -> None:
        await self.pods.refresh(since)
