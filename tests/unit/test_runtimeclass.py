"""RuntimeClass validation (kubemodel.runtimeclass) and the RuntimeClass admission of pods
(orchestrator.apiserver.runtimeclass), as kube 1.32, and the node's runtime handlers
(runtime.pod PodOptions.for_handler)."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import msgspec
import pytest

import kubemodel
from kubemodel.errors import FieldError
from kubemodel.runtimeclass import validate_runtime_class_update
from orchestrator.apiserver.errors import ApiError
from orchestrator.apiserver.runtimeclass import PREFIX, RuntimeClassAdmission
from orchestrator.store import NotFound
from runtime.pod.prepare import NoRuntimeHandler, PodOptions


def _rc(handler: str = "runc", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "rc"}, "handler": handler, **extra}  # fmt: skip


def _error(obj: dict[str, Any]) -> str:
    with pytest.raises(FieldError) as e:
        kubemodel.decode(obj, kubemodel.RuntimeClass)
    return str(e.value)


def test_valid_runtime_classes() -> None:
    kubemodel.decode(_rc(), kubemodel.RuntimeClass)
    kubemodel.decode(
        _rc(
            overhead={"podFixed": {"cpu": "250m", "memory": "120Mi"}},
            scheduling={
                "nodeSelector": {"example.com/runtime": "gvisor"},
                "tolerations": [{"key": "runtime", "operator": "Exists", "effect": "NoSchedule"}],
            },
        ),
        kubemodel.RuntimeClass,
    )


@pytest.mark.parametrize(
    "obj,field",
    [
        (_rc("Not_A_Label"), "handler"),
        (_rc(""), "handler"),
        (_rc(overhead={"podFixed": {"cpu": "-1"}}), "overhead"),
        (_rc(overhead={"podFixed": {"bogus": "1"}}), "overhead"),
        (_rc(scheduling={"nodeSelector": {"bad key!": "x"}}), "scheduling.nodeSelector"),
        (
            _rc(scheduling={"tolerations": [{"operator": "Equal", "value": "x"}]}),
            "scheduling.tolerations[0]",
        ),  # fmt: skip
    ],
    ids=[
        "handler-label",
        "handler-empty",
        "overhead-negative",
        "overhead-name",
        "selector",
        "toleration",
    ],  # fmt: skip
)
def test_invalid_runtime_classes(obj: dict[str, Any], field: str) -> None:
    assert _error(obj).startswith(field), _error(obj)


def test_the_handler_is_immutable() -> None:
    validate_runtime_class_update(_rc(), _rc(overhead={"podFixed": {"cpu": "1"}}))
    with pytest.raises(FieldError, match='handler: Invalid value: "crun": field is immutable'):
        validate_runtime_class_update(_rc(), _rc("crun"))


class _Store:
    def __init__(self, **classes: dict[str, Any]) -> None:
        self.classes = classes

    async def get(self, key: str) -> Any:
        name = key.removeprefix(PREFIX)
        if name not in self.classes:
            raise NotFound(key)
        return type("KV", (), {"value": msgspec.json.encode(self.classes[name])})()


def _admit(store: _Store, **spec: Any) -> dict[str, Any]:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], **spec}}
    asyncio.run(RuntimeClassAdmission(store).admit_pod(pod))  # type: ignore[arg-type]
    return pod["spec"]


def test_admission_sets_overhead_and_merges_scheduling() -> None:
    tol = {"key": "runtime", "operator": "Exists"}
    store = _Store(
        rc=_rc(
            overhead={"podFixed": {"memory": "16Mi"}},
            scheduling={"nodeSelector": {"a": "1"}, "tolerations": [tol]},
        ),  # fmt: skip
    )
    spec = _admit(store, runtimeClassName="rc", nodeSelector={"b": "2"}, tolerations=[tol])
    assert spec["overhead"] == {"memory": "16Mi"}
    assert spec["nodeSelector"] == {"a": "1", "b": "2"}
    assert spec["tolerations"] == [tol]  # not twice
    assert "overhead" not in _admit(_Store(rc=_rc()), runtimeClassName="rc")


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"runtimeClassName": "nope"}, 'pod rejected: RuntimeClass "nope" not found'),
        (
            {"runtimeClassName": "rc", "overhead": {"memory": "1Mi"}},
            "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
        ),
        (
            {"overhead": {"memory": "1Mi"}},
            "pod rejected: Pod Overhead set without corresponding RuntimeClass",
        ),
        (
            {"runtimeClassName": "rc", "nodeSelector": {"a": "2"}},
            "conflict: runtimeClass.scheduling.nodeSelector[a] = 1; pod.spec.nodeSelector[a] = 2",
        ),
    ],  # fmt: skip
    ids=["missing", "overhead-differs", "overhead-alone", "selector-conflict"],
)
def test_admission_refusals(spec: dict[str, Any], message: str) -> None:
    store = _Store(rc=_rc(overhead={"podFixed": {"memory": "16Mi"}},
                          scheduling={"nodeSelector": {"a": "1"}}))  # fmt: skip
    with pytest.raises(ApiError) as e:
        _admit(store, **spec)
    assert e.value.code == 403
    assert e.value.message == f'pods "p" is forbidden: {message}', e.value.message


def test_runtime_handlers_of_a_node() -> None:
    opts = PodOptions(runtime=("/x/corral-oci",))
    assert opts.for_handler(None) is opts and opts.for_handler("") is opts
    assert opts.for_handler("corral").runtime == ()
    with pytest.raises(NoRuntimeHandler, match='no runtime for "gvisor" is configured'):
        opts.for_handler("gvisor", "p")
    runc = shutil.which("runc")
    if runc:
        assert opts.for_handler("runc").runtime == (runc,)


def test_a_sandbox_the_kubelet_cannot_make_is_said_as_kube_says_it() -> None:
    """A class gone since admission, or a handler the node lacks: FailedCreatePodSandBox,
    the pod ContainerCreating, in the kubelet's words."""
    from orchestrator.kubelet.pods import NoRuntimeClass, failure_message, make_failure

    gone = NoRuntimeClass("p", "rc")
    assert make_failure(gone, 0)[:2] == ("FailedCreatePodSandBox", "ContainerCreating")
    assert failure_message(gone) == (
        'Failed to create pod sandbox: runtimeclass.node.k8s.io "rc" not found'
    )
    lacking = NoRuntimeHandler("p", "gvisor")
    assert make_failure(lacking, 0)[:2] == ("FailedCreatePodSandBox", "ContainerCreating")
    assert failure_message(lacking) == (
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox"
        ' runtime: no runtime for "gvisor" is configured'
    )
