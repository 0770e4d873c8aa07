"""admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration and
MutatingWebhookConfiguration: kube-apiserver 1.32's defaults (pkg/apis/admissionregistration/v1
defaults.go) and validation (pkg/apis/admissionregistration/validation, worded as it words
them; the first problem found is reported). Calling the webhooks is the API server's
(orchestrator/apiserver/webhooks.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from kubemodel._generated import (
    LabelSelector,
    MutatingWebhook,
    MutatingWebhookConfiguration,
    RuleWithOperations,
    ValidatingWebhook,
    ValidatingWebhookConfiguration,
    WebhookClientConfig,
)
from kubemodel.codec import DEFAULTERS, VALIDATORS
from kubemodel.errors import FieldError, at, q
from kubemodel.names import check_dns1035_label, check_dns_subdomain
from kubemodel.pod import _check_label_key, invalid, not_supported, validate_meta
from kubemodel.storage import _selector

__all__ = ["OPERATIONS", "REVIEW_VERSIONS"]

OPERATIONS = ("*", "CREATE", "UPDATE", "DELETE", "CONNECT")
REVIEW_VERSIONS = ("v1", "v1beta1")
SCOPES = ("*", "Cluster", "Namespaced")
Webhook = ValidatingWebhook | MutatingWebhook


def _default_webhook(w: Webhook) -> None:
    if w.failure_policy is None:
        w.failure_policy = "Fail"
    if w.match_policy is None:
        w.match_policy = "Equivalent"
    if w.namespace_selector is None:
        w.namespace_selector = LabelSelector()
    if w.object_selector is None:
        w.object_selector = LabelSelector()
    if w.timeout_seconds is None:
        w.timeout_seconds = 10
    if isinstance(w, MutatingWebhook) and w.reinvocation_policy is None:
        w.reinvocation_policy = "Never"
    for r in w.rules or ():
        if r.scope is None:
            r.scope = "*"
    service = w.client_config.service
    if service is not None and service.port is None:
        service.port = 443


def _default(c: ValidatingWebhookConfiguration | MutatingWebhookConfiguration) -> None:
    for w in c.webhooks or ():
        _default_webhook(w)


def _go_list(values: list[str]) -> str:
    return "[]string{" + ", ".join(q(v) for v in values) + "}"


def _exclusive_star(values: list[str], where: str, what: str) -> None:
    if len(values) > 1 and "*" in values:
        raise FieldError(
            where,
            f"Invalid value: {_go_list(values)}: if '*' is present, must not specify other {what}",
        )


def _validate_resources(resources: list[str], where: str) -> None:
    """validateResources: "resource[/subresource]", with '*' and '*/*' exclusive."""
    if not resources:
        raise FieldError(where, "Required value")
    seen: set[str] = set()
    sub_wild: set[str] = set()  # resources with "x/*"
    res_wild: set[str] = set()  # subresources with "*/x"
    has_double = "*/*" in resources
    for i, r in enumerate(resources):
        here = at(where, i)
        if r == "":
            raise FieldError(here, "Required value")
        if r == "*/*" and len(resources) > 1:
            raise FieldError(
                here,
                "Invalid value: \"*/*\": if '*/*' is present, must not specify other resources",
            )
        if r in seen:
            raise FieldError(here, f"Duplicate value: {q(r)}")
        seen.add(r)
        res, _, sub = r.partition("/")
        if res == "*" and not sub and len(resources) > 1 and not has_double:
            raise FieldError(
                here,
                "Invalid value: \"*\": if '*' is present, must not specify"
                " other resources without subresources",
            )
        if sub == "*":
            sub_wild.add(res)
        if res == "*" and sub:
            res_wild.add(sub)
    for i, r in enumerate(resources):
        res, _, sub = r.partition("/")
        if sub and sub != "*" and res in sub_wild:
            raise FieldError(
                at(where, i),
                f"Invalid value: {q(r)}: if '{res}/*' is present, must not specify {r}",
            )
        if sub and res != "*" and sub in res_wild:
            raise FieldError(
                at(where, i),
                f"Invalid value: {q(r)}: if '*/{sub}' is present, must not specify {r}",
            )


def _validate_rule(r: RuleWithOperations, where: str) -> None:
    ops = r.operations or []
    if not ops:
        raise FieldError(at(where, "operations"), "Required value")
    _exclusive_star(ops, at(where, "operations"), "operations")
    for i, op in enumerate(ops):
        if op not in OPERATIONS:
            raise not_supported(at(at(where, "operations"), i), op, OPERATIONS)
    groups = r.api_groups or []
    if not groups:
        raise FieldError(at(where, "apiGroups"), "Required value")
    _exclusive_star(groups, at(where, "apiGroups"), "API groups")
    versions = r.api_versions or []
    if not versions:
        raise FieldError(at(where, "apiVersions"), "Required value")
    _exclusive_star(versions, at(where, "apiVersions"), "API versions")
    for i, v in enumerate(versions):
        if v == "":
            raise FieldError(
                at(at(where, "apiVersions"), i), "Required value: version must not be empty"
            )
    _validate_resources(r.resources or [], at(where, "resources"))
    if r.scope is not None and r.scope not in SCOPES:
        raise not_supported(at(where, "scope"), r.scope, SCOPES)


def _validate_url(url: str, where: str) -> None:
    """webhook.ValidateWebhookURL (forceHttps)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as e:
        raise invalid(where, url, f"url must be a valid URL: {e}") from None
    if parts.scheme != "https":
        raise invalid(where, url, "'https' is the only allowed URL scheme")
    if not parts.netloc or not host:
        raise invalid(where, url, "host must be specified")
    if "@" in parts.netloc:
        raise invalid(where, url, "user information is not permitted in the URL")
    if parts.fragment or url.endswith("#"):
        raise invalid(where, url, "fragments are not permitted in the URL")
    if parts.query or "?" in url:
        raise invalid(where, url, "query parameters are not permitted in the URL")


def _validate_client_config(cc: WebhookClientConfig, where: str) -> None:
    if (cc.url is None) == (cc.service is None):
        raise FieldError(where, "Required value: exactly one of url or service is required")
    if cc.url is not None:
        _validate_url(cc.url, at(where, "url"))
        return
    svc = cc.service
    assert svc is not None
    here = at(where, "service")
    if not svc.name:
        raise FieldError(at(here, "name"), "Required value: service name is required")
    if not svc.namespace:
        raise FieldError(at(here, "namespace"), "Required value: service namespace is required")
    if svc.path is not None and svc.path:
        if not svc.path.startswith("/"):
            raise invalid(at(here, "path"), svc.path, "must start with a '/'")
        if svc.path == "/":
            pass
        elif any(step == "" for step in svc.path[1:].split("/")):
            raise invalid(at(here, "path"), svc.path, "segment[1]: may not be empty")
    if svc.port is not None and not 1 <= svc.port <= 65535:
        raise invalid(
            at(here, "port"), svc.port, "port is not valid: must be between 1 and 65535, inclusive"
        )


def _validate_review_versions(versions: list[str], where: str) -> None:
    if not versions:
        raise FieldError(where, f"Required value: must specify one of {', '.join(REVIEW_VERSIONS)}")
    seen: set[str] = set()
    for i, v in enumerate(versions):
        check_dns1035_label(v, at(where, i))
        if v in seen:
            raise invalid(at(where, i), v, "duplicate version")
        seen.add(v)
    if not any(v in REVIEW_VERSIONS for v in versions):
        raise FieldError(
            where,
            f"Invalid value: {_go_list(versions)}: must include at least one of"
            f" {', '.join(REVIEW_VERSIONS)}",
        )


def _validate_webhook(w: Webhook, where: str) -> None:
    name_at = at(where, "name")
    if not w.name:
        raise FieldError(name_at, "Required value")
    check_dns_subdomain(w.name, name_at)
    if len(w.name.split(".")) < 3:
        raise invalid(
            name_at, w.name, "should be a domain with at least three segments separated by dots"
        )
    for i, r in enumerate(w.rules or ()):
        _validate_rule(r, at(at(where, "rules"), i))
    if w.failure_policy is not None and w.failure_policy not in ("Ignore", "Fail"):
        raise not_supported(at(where, "failurePolicy"), w.failure_policy, ("Fail", "Ignore"))
    if w.match_policy is not None and w.match_policy not in ("Exact", "Equivalent"):
        raise not_supported(at(where, "matchPolicy"), w.match_policy, ("Equivalent", "Exact"))
    if w.side_effects not in ("None", "NoneOnDryRun"):
        raise not_supported(at(where, "sideEffects"), w.side_effects, ("None", "NoneOnDryRun"))
    if w.timeout_seconds is not None and not 1 <= w.timeout_seconds <= 30:
        raise invalid(
            at(where, "timeoutSeconds"),
            w.timeout_seconds,
            "the timeout value must be between 1 and 30 seconds",
        )
    selectors = ((w.namespace_selector, "namespaceSelector"), (w.object_selector, "objectSelector"))
    for sel, f in selectors:
        if sel is not None:
            for key in sel.match_labels or {}:
                _check_label_key(key, at(at(where, f), "matchLabels"))
            _selector(sel, at(where, f))
    _validate_review_versions(w.admission_review_versions, at(where, "admissionReviewVersions"))
    _validate_client_config(w.client_config, at(where, "clientConfig"))
    if isinstance(w, MutatingWebhook) and w.reinvocation_policy is not None:
        if w.reinvocation_policy not in ("Never", "IfNeeded"):
            raise not_supported(
                at(where, "reinvocationPolicy"), w.reinvocation_policy, ("IfNeeded", "Never")
            )
    conditions = w.match_conditions or []
    if len(conditions) > 64:
        raise FieldError(
            at(where, "matchConditions"), f"Too many: {len(conditions)}: must have at most 64 items"
        )
    names: set[str] = set()
    for i, c in enumerate(conditions):
        here = at(at(where, "matchConditions"), i)
        if not c.name:
            raise FieldError(at(here, "name"), "Required value")
        _check_label_key(c.name, at(here, "name"))
        if c.name in names:
            raise FieldError(at(here, "name"), f"Duplicate value: {q(c.name)}")
        names.add(c.name)
        if not c.expression:
            raise FieldError(at(here, "expression"), "Required value")


def _validate(c: ValidatingWebhookConfiguration | MutatingWebhookConfiguration) -> None:
    validate_meta(c.metadata, False)
    seen: set[str] = set()
    for i, w in enumerate(c.webhooks or ()):
        _validate_webhook(w, at("webhooks", i))
        if w.name in seen:
            raise FieldError(at(at("webhooks", i), "name"), f"Duplicate value: {q(w.name)}")
        seen.add(w.name)


DEFAULTERS.update(
    {ValidatingWebhookConfiguration: _default, MutatingWebhookConfiguration: _default}
)
VALIDATORS.update(
    {ValidatingWebhookConfiguration: _validate, MutatingWebhookConfiguration: _validate}
)
