"""admissionregistration.k8s.io/v1 webhook configurations: kube's defaults and validation."""

from __future__ import annotations

import copy

import pytest

import kubemodel
from kubemodel import FieldError


def _hook(**over: object) -> dict:
    hook = {
        "name": "deny.example.com",
        "clientConfig": {"url": "https://127.0.0.1:8443/validate"},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    hook.update(over)
    return hook


def _config(*hooks: dict, kind: str = "ValidatingWebhookConfiguration") -> dict:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": "c"},
        "webhooks": list(hooks),
    }


def _decode(obj: dict) -> dict:
    kind = obj["kind"]
    return kubemodel.to_dict(kubemodel.decode(obj, getattr(kubemodel, kind)))


def _error(obj: dict) -> str:
    with pytest.raises(FieldError) as e:
        _decode(obj)
    return str(e.value)


def test_defaults_as_kube() -> None:
    out = _decode(_config(_hook(clientConfig={"service": {"namespace": "n", "name": "s"}})))
    hook = out["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 10
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["rules"][0]["scope"] == "*"
    assert hook["clientConfig"]["service"]["port"] == 443
    assert "reinvocationPolicy" not in hook
    mutating = _decode(_config(_hook(), kind="MutatingWebhookConfiguration"))
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "Never"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"name": "deny"},
            'webhooks[0].name: Invalid value: "deny": should be a domain with at least three'
            " segments separated by dots",
        ),
        ({"name": "Deny.x.y"}, 'webhooks[0].name: Invalid value: "Deny.x.y": a lowercase RFC'),
        (
            {"clientConfig": {"url": "http://127.0.0.1/x"}},
            "webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1/x\": 'https' is"
            " the only allowed URL scheme",
        ),
        (
            {"clientConfig": {"url": "https://u@h/x"}},
            "user information is not permitted in the URL",
        ),
        ({"clientConfig": {"url": "https://h/x?a=b"}}, "query parameters are not permitted"),
        ({"clientConfig": {"url": "https://h/x#f"}}, "fragments are not permitted in the URL"),
        (
            {"clientConfig": {}},
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        ),
        (
            {
                "clientConfig": {
                    "url": "https://h/",
                    "service": {"namespace": "n", "name": "s"},
                }
            },
            "exactly one of url or service is required",
        ),
        (
            {"clientConfig": {"service": {"namespace": "n", "name": "s", "path": "x"}}},
            "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'",
        ),
        (
            {"clientConfig": {"service": {"namespace": "n", "name": "s", "port": 0}}},
            "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid",
        ),
        (
            {"failurePolicy": "Maybe"},
            'webhooks[0].failurePolicy: Unsupported value: "Maybe": supported values: "Fail",'
            ' "Ignore"',
        ),
        ({"matchPolicy": "Loose"}, 'webhooks[0].matchPolicy: Unsupported value: "Loose"'),
        (
            {"sideEffects": "Some"},
            'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None",'
            ' "NoneOnDryRun"',
        ),
        (
            {"admissionReviewVersions": []},
            "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
        ),
        (
            {"admissionReviewVersions": ["v2"]},
            'webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include'
            " at least one of v1, v1beta1",
        ),
        (
            {"timeoutSeconds": 31},
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1"
            " and 30 seconds",
        ),
        (
            {
                "rules": [
                    {
                        "operations": [],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ]
            },  # fmt: skip
            "webhooks[0].rules[0].operations: Required value",
        ),
        (
            {
                "rules": [
                    {
                        "operations": ["PATCH"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ]
            },  # fmt: skip
            'webhooks[0].rules[0].operations[0]: Unsupported value: "PATCH"',
        ),
        (
            {
                "rules": [
                    {
                        "operations": ["*", "CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ]
            },  # fmt: skip
            "if '*' is present, must not specify other operations",
        ),
        (
            {
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Cloud",
                    }
                ]
            },  # fmt: skip
            'webhooks[0].rules[0].scope: Unsupported value: "Cloud"',
        ),
        (
            {
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": [],
                    }
                ]
            },  # fmt: skip
            "webhooks[0].rules[0].resources: Required value",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}},
            "webhooks[0].namespaceSelector.matchExpressions[0]",
        ),
    ],
)
def test_validation_as_kube(over: dict, message: str) -> None:
    assert message in _error(_config(_hook(**over)))


def test_names_unique_within_a_configuration() -> None:
    assert 'webhooks[1].name: Duplicate value: "deny.example.com"' in _error(
        _config(_hook(), _hook())
    )


def test_reinvocation_policy_of_mutating_webhooks() -> None:
    bad = _config(_hook(reinvocationPolicy="Always"), kind="MutatingWebhookConfiguration")
    assert 'webhooks[0].reinvocationPolicy: Unsupported value: "Always"' in _error(bad)
    ok = copy.deepcopy(bad)
    ok["webhooks"][0]["reinvocationPolicy"] = "IfNeeded"
    assert _decode(ok)["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"


def test_side_effects_and_review_versions_are_required() -> None:
    hook = _hook()
    del hook["sideEffects"]
    assert "sideEffects" in _error(_config(hook))
