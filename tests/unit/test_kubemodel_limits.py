"""LimitRange (kubemodel.limits): the kind's defaulting and validation, the LimitRanger's
defaults on a pod and its refusals in kube's words."""

from __future__ import annotations

from typing import Any

import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.limits import ANNOTATION, default_pod, pod_limit_problems


def _range(*items: dict[str, Any]) -> dict[str, Any]:
    lr = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "lr", "namespace": "n"},
        "spec": {"limits": list(items)},
    }
    return kubemodel.to_dict(kubemodel.decode(lr))


def _pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)]
        },
    }


def test_range_defaults() -> None:
    lr = _range({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}  # from max
    assert item["defaultRequest"] == {"cpu": "2", "memory": "64Mi"}  # from default, then min


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1',
        ),
        (
            {"type": "Container", "default": {"cpu": "3"}, "max": {"cpu": "2"}},
            # (its defaultRequest is its default: that breaks max first, as kube checks)
            'spec.limits[0].defaultRequest[cpu]: Invalid value: "3": default request value 3 is'
            " greater than max value 2",
        ),
        (
            {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1500m"}},
            'spec.limits[0].defaultRequest[cpu]: Invalid value: "1500m": default request value'
            " 1500m is greater than default limit value 1",
        ),
        (
            {"type": "Pod", "default": {"cpu": "1"}},
            "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'",
        ),
        (
            {"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}},
            'spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less'
            " than 1",
        ),
        (
            {
                "type": "Container",
                "min": {"cpu": "1"},
                "max": {"cpu": "2"},
                "maxLimitRequestRatio": {"cpu": "3"},
            },
            'spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "3": ratio 3 is greater'
            " than max/min = 2.000000",
        ),
    ],
)
def test_range_validation(item: dict[str, Any], message: str) -> None:
    with pytest.raises(FieldError) as e:
        _range(item)
    assert str(e.value) == message


def test_defaults_on_a_pod() -> None:
    lr = _range(
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }
    )
    pod = _pod({}, {"limits": {"cpu": "1"}})
    default_pod(pod, [lr])
    c0, c1 = (c["resources"] for c in pod["spec"]["containers"])
    assert c0 == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    }
    # its own cpu limit is its cpu request (the pod's defaulting, before admission in kube)
    assert c1 == {"limits": {"cpu": "1", "memory": "256Mi"}, "requests": {"memory": "128Mi"}}
    assert pod["metadata"]["annotations"][ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container c0; cpu, memory limit for"
        " container c0; memory request for container c1; memory limit for container c1"
    )
    assert pod_limit_problems(pod, [lr]) is None


def test_refusals() -> None:
    lr = _range(
        {"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}},
        {"type": "Pod", "maxLimitRequestRatio": {"memory": "2"}},
    )
    item = lr["spec"]["limits"]
    lr["spec"]["limits"] = [
        {k: v for k, v in item[0].items() if k not in ("default", "defaultRequest")},
        item[1],
    ]
    assert (
        pod_limit_problems(
            _pod(
                {
                    "requests": {"cpu": "200m", "memory": "1Gi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                }
            ),
            [lr],
        )
        == "maximum cpu usage per Container is 1, but limit is 2"
    )
    # a request not named is the limit (the pod is defaulted before admission in kube)
    assert pod_limit_problems(_pod({"limits": {"cpu": "1", "memory": "1Gi"}}), [lr]) is None
    assert pod_limit_problems(_pod({}), [lr]) == (
        "[minimum cpu usage per Container is 100m.  No request is specified, maximum cpu usage"
        " per Container is 1.  No limit is specified, maximum memory usage per Container is"
        " 1Gi.  No limit is specified, memory max limit to request ratio per Pod is 2, but no"
        " request is specified or request is 0]"
    )
    assert pod_limit_problems(
        _pod(
            {"requests": {"cpu": "50m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
        ),
        [lr],
    ) == (
        "[minimum cpu usage per Container is 100m, but request is 50m, memory max limit to"
        " request ratio per Pod is 2, but provided ratio is 10.240000]"
    )
