"""Validation of networking.k8s.io/v1 Ingress, IngressClass and NetworkPolicy as
kube-apiserver 1.32 does it on create and update (k8s.io/kubernetes/pkg/apis/networking/validation,
worded as it words them; the first problem found is reported), and NetworkPolicy's defaulting
(pkg/apis/networking/v1/defaults.go). Which class an Ingress gets when it names none is
admission, the API server's (orchestrator/apiserver/ingress.py)."""

from __future__ import annotations

import ipaddress
import re

from kubemodel._generated import (
    HTTPIngressPath,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressClassParametersReference,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    TypedLocalObjectReference,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at, q
from kubemodel.names import (
    DNS_SUBDOMAIN,
    DNS_SUBDOMAIN_FMT,
    check_dns1035_label,
    check_dns_label,
    check_dns_subdomain,
    check_label_value,
    check_path_segment,
    check_port_name,
    regex_error,
)
from kubemodel.pod import (
    LABEL_OPERATORS,
    _check_label_key,
    _validate_requirement,
    not_supported,
    validate_meta,
)

__all__ = [
    "INGRESS_CLASS_ANNOTATION",
    "PATH_TYPES",
    "POLICY_PROTOCOLS",
    "POLICY_TYPES",
    "validate_ingress_class_update",
    "validate_ingress_create",
]

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_INVALID_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_SUFFIXES = ("/..", "/.")
_MAX_CONTROLLER = 250
_HTTP_PATH = re.compile(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")


def _invalid(field: str, value: object, message: str) -> FieldError:
    shown = q(value) if isinstance(value, str) else str(value)
    return FieldError(field, f"Invalid value: {shown}: {message}")


def _check_wildcard_subdomain(value: str, where: str) -> None:
    """IsWildcardDNS1123Subdomain: ``*.`` then an RFC 1123 subdomain."""
    if len(value) > 253:
        raise _invalid(where, value, "must be no more than 253 characters")
    if not (value.startswith("*.") and DNS_SUBDOMAIN.fullmatch(value[2:])):
        raise _invalid(
            where,
            value,
            regex_error(
                "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS"
                " subdomain, which must consist of lower case alphanumeric characters, '-' or"
                " '.' and end with an alphanumeric character",
                r"\*\." + DNS_SUBDOMAIN_FMT,
                "*.example.com",
            ),
        )


def _check_host(host: str, where: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise _invalid(where, host, "must be a DNS name, not an IP address")
    if host.startswith("*"):
        _check_wildcard_subdomain(host, where)
    else:
        check_dns_subdomain(host, where)


def _typed_reference(ref: TypedLocalObjectReference, where: str) -> None:
    """validateIngressTypedLocalObjectReference."""
    if ref.api_group is not None:
        check_dns_subdomain(ref.api_group, at(where, "apiGroup"))
    if not ref.kind:
        raise FieldError(at(where, "kind"), "Required value: kind is required")
    check_path_segment(ref.kind, at(where, "kind"))
    if not ref.name:
        raise FieldError(at(where, "name"), "Required value: name is required")
    check_path_segment(ref.name, at(where, "name"))


def _backend(backend: IngressBackend, where: str) -> None:
    """validateIngressBackend: a resource or a service (its name and a port name or number)."""
    if backend.resource is not None and backend.service is not None:
        raise _invalid(where, "", "cannot set both resource and service backends")
    if backend.resource is not None:
        _typed_reference(backend.resource, at(where, "resource"))
        return
    service = backend.service
    if service is None:
        raise _invalid(where, "", "resource or service backend is required")
    if not service.name:
        raise FieldError(at(at(where, "service"), "name"), "Required value")
    check_dns1035_label(service.name, at(at(where, "service"), "name"))
    port_name = service.port.name if service.port is not None else None
    port_number = service.port.number if service.port is not None else None
    if port_name and port_number:
        raise _invalid(where, "", "cannot set both port name & port number")
    if port_name:
        check_port_name(port_name, f"{where}.service.port.name")
    elif port_number:
        if not 1 <= port_number <= 65535:
            raise _invalid(
                f"{where}.service.port.number",
                port_number,
                "must be between 1 and 65535, inclusive",
            )
    else:
        raise FieldError(where, "Required value: port name or number is required")


def _path(p: HTTPIngressPath, where: str) -> None:
    """validateHTTPIngressPath."""
    path = p.path or ""
    field = at(where, "path")
    if p.path_type in ("Exact", "Prefix"):
        if not path.startswith("/"):
            raise _invalid(field, path, "must be an absolute path")
        for seq in _INVALID_SEQUENCES:
            if seq in path:
                raise _invalid(field, path, f"must not contain '{seq}'")
        for suffix in _INVALID_SUFFIXES:
            if path.endswith(suffix):
                raise _invalid(field, path, f"cannot end with '{suffix}'")
    elif p.path_type == "ImplementationSpecific":
        if path and not path.startswith("/"):
            raise _invalid(field, path, "must be an absolute path")
    else:
        raise FieldError(
            at(where, "pathType"),
            f"Unsupported value: {q(p.path_type)}: supported values: "
            + ", ".join(q(t) for t in PATH_TYPES),
        )
    _backend(p.backend, at(where, "backend"))


def _validate_ingress(ing: Ingress) -> None:
    validate_meta(ing.metadata, True)
    spec = ing.spec
    rules = spec.rules if spec is not None else None
    default = spec.default_backend if spec is not None else None
    if not rules and default is None:
        shown = "[]networking.IngressRule(nil)" if rules is None else "[]networking.IngressRule{}"
        raise FieldError(
            "spec",
            f"Invalid value: {shown}: either `defaultBackend` or `rules` must be specified",
        )
    assert spec is not None
    if default is not None:
        _backend(default, "spec.defaultBackend")
    for i, rule in enumerate(rules or []):
        where = at("spec.rules", i)
        if rule.host:
            _check_host(rule.host, at(where, "host"))
        if rule.http is not None:
            http = at(where, "http")
            if not rule.http.paths:
                raise FieldError(at(http, "paths"), "Required value")
            for j, p in enumerate(rule.http.paths):
                _path(p, at(at(http, "paths"), j))
    for i, tls in enumerate(spec.tls or []):
        where = at("spec.tls", i)
        for j, host in enumerate(tls.hosts or []):
            if host.startswith("*"):
                _check_wildcard_subdomain(host, at(at(where, "hosts"), j))
            else:
                check_dns_subdomain(host, at(at(where, "hosts"), j))
        if tls.secret_name:
            check_dns_subdomain(tls.secret_name, at(where, "secretName"))
    if spec.ingress_class_name is not None:
        check_dns_subdomain(spec.ingress_class_name, "spec.ingressClassName")


def validate_ingress_create(ing: Ingress) -> None:
    """ValidateIngressCreate's own check: the class annotation and field are not both set."""
    annotations = (ing.metadata.annotations if ing.metadata is not None else None) or {}
    if ing.spec is not None and ing.spec.ingress_class_name is not None:
        if INGRESS_CLASS_ANNOTATION in annotations:
            raise _invalid(
                f"annotations.{INGRESS_CLASS_ANNOTATION}",
                annotations[INGRESS_CLASS_ANNOTATION],
                "can not be set when the class field is also set",
            )


def _parameters(p: IngressClassParametersReference, where: str) -> None:
    """validateIngressClassParametersReference."""
    if p.api_group is not None:
        check_dns_subdomain(p.api_group, at(where, "apiGroup"))
    if not p.kind:
        raise FieldError(at(where, "kind"), "Required value: kind is required")
    check_path_segment(p.kind, at(where, "kind"))
    if not p.name:
        raise FieldError(at(where, "name"), "Required value: name is required")
    check_path_segment(p.name, at(where, "name"))
    if p.scope is None:
        raise FieldError(at(where, "scope"), "Required value")
    if p.scope == "Cluster":
        if p.namespace is not None:
            raise FieldError(
                at(where, "namespace"), "Forbidden: `parameters.scope` is set to 'Cluster'"
            )
    elif p.scope == "Namespace":
        if p.namespace is None:
            raise FieldError(
                at(where, "namespace"), "Required value: `parameters.scope` is set to 'Namespace'"
            )
        check_dns_label(p.namespace, at(where, "namespace"))
    else:
        raise FieldError(
            at(where, "scope"),
            f'Unsupported value: {q(p.scope)}: supported values: "Cluster", "Namespace"',
        )


def _validate_ingress_class(c: IngressClass) -> None:
    validate_meta(c.metadata, False)
    spec = c.spec
    controller = (spec.controller if spec is not None else None) or ""
    where = "spec.controller"
    if len(controller) > _MAX_CONTROLLER:
        raise FieldError(where, f"Too long: may not be more than {_MAX_CONTROLLER} bytes")
    if not controller:  # IsDomainPrefixedPath
        raise FieldError(where, "Required value")
    host, slash, rest = controller.partition("/")
    if not slash:
        raise _invalid(where, controller, 'must be a domain-prefixed path (such as "acme.io/foo")')
    check_dns_subdomain(host, where)
    if not _HTTP_PATH.fullmatch(rest):
        raise _invalid(
            where,
            rest,
            "a valid HTTP path must consist of alphanumeric characters or one of the following"
            " special characters: ['/', '-', '.', '_', '~', '%', '!', '$', '&', \"'\", '(',"
            " ')', '*', '+', ',', ';', '=', ':'] (e.g. '/', or '/foo', or '/foo/bar', or"
            " '/foo/bar/', regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        )
    if spec is not None and spec.parameters is not None:
        _parameters(spec.parameters, "spec.parameters")


def validate_ingress_class_update(old: dict[str, object], new: dict[str, object]) -> None:
    """ValidateIngressClassUpdate: spec.controller is immutable."""
    before = (old.get("spec") or {}).get("controller")  # type: ignore[union-attr]
    after = (new.get("spec") or {}).get("controller")  # type: ignore[union-attr]
    if before != after:
        raise _invalid("spec.controller", after or "", "field is immutable")


def _default_ingress_class(c: IngressClass) -> None:
    """SetDefaults_IngressClass: parameters without a scope are cluster-scoped."""
    if c.spec is not None and c.spec.parameters is not None and c.spec.parameters.scope is None:
        c.spec.parameters.scope = "Cluster"


# ------------------------------------------------------------------------ NetworkPolicy

POLICY_TYPES = ("Ingress", "Egress")
POLICY_PROTOCOLS = ("TCP", "UDP", "SCTP")


def _label_selector(sel: LabelSelector, where: str) -> None:
    """ValidateLabelSelector: label keys and values, the operators a label selector has."""
    for key, value in (sel.match_labels or {}).items():
        _check_label_key(key, at(where, "matchLabels"))
        check_label_value(value, at(where, "matchLabels"))
    for i, r in enumerate(sel.match_expressions or ()):
        _validate_requirement(r, at(at(where, "matchExpressions"), i), LABEL_OPERATORS)


def _port_number(value: int, where: str) -> None:
    if not 1 <= value <= 65535:
        raise _invalid(where, value, "must be between 1 and 65535, inclusive")


def _policy_port(port: NetworkPolicyPort, where: str) -> None:
    """ValidateNetworkPolicyPort."""
    if port.protocol is not None and port.protocol not in POLICY_PROTOCOLS:
        raise not_supported(at(where, "protocol"), port.protocol, POLICY_PROTOCOLS)
    if isinstance(port.port, int):
        _port_number(port.port, at(where, "port"))
        if port.end_port is not None:
            if port.end_port < port.port:  # kube shows `port` as the value here
                raise _invalid(
                    at(where, "endPort"), port.port, "must be greater than or equal to `port`"
                )
            _port_number(port.end_port, at(where, "endPort"))
    elif port.port is not None:
        if port.end_port is not None:
            raise _invalid(
                at(where, "endPort"),
                port.end_port,
                "may not be specified when `port` is non-numeric",
            )
        check_port_name(port.port, at(where, "port"))
    elif port.end_port is not None:
        raise _invalid(
            at(where, "endPort"), port.end_port, "may not be specified when `port` is not specified"
        )


def _cidr(value: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """IsValidCIDR (netutils.ParseCIDRSloppy: host bits may be set)."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _invalid(
            where, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ) from None


def _ip_block(block: IPBlock, where: str) -> None:
    """ValidateIPBlock: a CIDR, and excepts strictly inside it."""
    if not block.cidr:
        raise FieldError(at(where, "cidr"), "Required value")
    net = _cidr(block.cidr, at(where, "cidr"))
    for i, text in enumerate(block.except_ or ()):
        w = at(at(where, "except"), i)
        inner = _cidr(text, w)
        if (
            inner.version != net.version
            or inner.network_address not in net
            or net.prefixlen >= inner.prefixlen
        ):
            raise _invalid(w, text, "must be a strict subset of `cidr`")


def _peer(peer: NetworkPolicyPeer, where: str) -> None:
    """ValidateNetworkPolicyPeer: at least one peer; an ipBlock alone."""
    found = 0
    if peer.pod_selector is not None:
        found += 1
        _label_selector(peer.pod_selector, at(where, "podSelector"))
    if peer.namespace_selector is not None:
        found += 1
        _label_selector(peer.namespace_selector, at(where, "namespaceSelector"))
    if peer.ip_block is not None:
        found += 1
        _ip_block(peer.ip_block, at(where, "ipBlock"))
    if found == 0:
        raise FieldError(where, "Required value: must specify a peer")
    if found > 1 and peer.ip_block is not None:
        raise FieldError(where, "Forbidden: may not specify both ipBlock and another peer")


def _validate_network_policy(np: NetworkPolicy) -> None:
    """ValidateNetworkPolicy (the name an RFC 1123 subdomain) and ValidateNetworkPolicySpec."""
    validate_meta(np.metadata, True)
    spec = np.spec
    if spec is None:
        return
    _label_selector(spec.pod_selector, "spec.podSelector")
    for i, ing in enumerate(spec.ingress or ()):
        w = at("spec.ingress", i)
        for j, port in enumerate(ing.ports or ()):
            _policy_port(port, at(at(w, "ports"), j))
        for j, peer in enumerate(ing.from_ or ()):
            _peer(peer, at(at(w, "from"), j))
    for i, eg in enumerate(spec.egress or ()):
        w = at("spec.egress", i)
        for j, port in enumerate(eg.ports or ()):
            _policy_port(port, at(at(w, "ports"), j))
        for j, peer in enumerate(eg.to or ()):
            _peer(peer, at(at(w, "to"), j))
    types = spec.policy_types or []
    if len(types) > len(POLICY_TYPES):
        shown = "[" + " ".join(types) + "]"  # Go's %v of the []PolicyType
        raise FieldError(
            "spec.policyTypes", f"Invalid value: {shown}: may not specify more than two policyTypes"
        )
    for i, kind in enumerate(types):
        if kind not in POLICY_TYPES:
            raise not_supported(at("spec.policyTypes", i), kind, POLICY_TYPES)


def _default_network_policy(np: NetworkPolicy) -> None:
    """SetDefaults_NetworkPolicy (no policyTypes: Ingress, and Egress when egress rules are
    given) and SetDefaults_NetworkPolicyPort (protocol TCP)."""
    spec = np.spec
    if spec is None:
        return
    if not spec.policy_types:
        spec.policy_types = ["Ingress", "Egress"] if spec.egress else ["Ingress"]
    for rule in [*(spec.ingress or ()), *(spec.egress or ())]:
        for port in rule.ports or ():
            if port.protocol is None:
                port.protocol = "TCP"


DEFAULTERS.update({IngressClass: _default_ingress_class, NetworkPolicy: _default_network_policy})
VALIDATORS.update(
    {
        Ingress: _validate_ingress,
        IngressClass: _validate_ingress_class,
        NetworkPolicy: _validate_network_policy,
    }
)
