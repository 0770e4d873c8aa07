"""Admission webhooks without a network: which requests a webhook's rules match, the
configurations kept from the store's watch, what the server imports before any call."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.apiserver.resources import by_path
from orchestrator.apiserver.storage import Storage
from orchestrator.apiserver.webhooks import Attributes, matches_rules, object_matches
from orchestrator.store import open_store

REPO = Path(__file__).resolve().parents[2]


def _attrs(
    resource: str = "pods",
    sub: str = "",
    op: str = "CREATE",
    group: str = "",
    version: str = "v1",
    obj: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
) -> Attributes:
    res = by_path(group, version, resource)
    assert res is not None
    return Attributes(res, sub, op, "ns", "x", obj, old, False, None, {"username": "u"})


def _hook(**rule: Any) -> dict[str, Any]:
    base = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"]}
    base.update(rule)
    return {"rules": [base]}


@pytest.mark.parametrize(
    ("rule", "attrs", "want"),
    [
        ({"resources": ["pods"]}, {}, True),
        ({"resources": ["pods"]}, {"sub": "status"}, False),
        ({"resources": ["pods/*"]}, {"sub": "status"}, True),
        ({"resources": ["pods/*"]}, {}, True),  # (kube's: "*" is any subresource or none)
        ({"resources": ["*"]}, {"resource": "configmaps"}, True),
        ({"resources": ["*"]}, {"sub": "status"}, False),
        ({"resources": ["*/status"]}, {"sub": "status"}, True),
        ({"resources": ["*/status"]}, {"sub": "ephemeralcontainers"}, False),
        ({"resources": ["*/*"]}, {"sub": "ephemeralcontainers"}, True),
        ({"resources": ["pods/status"]}, {"sub": "status"}, True),
        ({"resources": ["pods"]}, {"op": "DELETE"}, False),
        ({"resources": ["pods"], "operations": ["*"]}, {"op": "DELETE"}, True),
        ({"resources": ["pods"], "scope": "Cluster"}, {}, False),
        ({"resources": ["pods"], "scope": "Namespaced"}, {}, True),
        ({"resources": ["*"], "scope": "Cluster"}, {"resource": "nodes"}, True),
        ({"resources": ["*"], "apiGroups": ["apps"]}, {}, False),
        (
            {"resources": ["deployments"], "apiGroups": ["*"], "apiVersions": ["*"]},
            {"resource": "deployments", "group": "apps"},
            True,
        ),
        (
            {"resources": ["deployments"], "apiGroups": ["apps"], "apiVersions": ["v1beta1"]},
            {"resource": "deployments", "group": "apps"},
            False,
        ),
    ],
)
def test_rules(rule: dict[str, Any], attrs: dict[str, Any], want: bool) -> None:
    assert matches_rules(_hook(**rule), _attrs(**attrs)) is want


def test_object_selector_matches_the_new_or_the_old_object() -> None:
    hook = {"objectSelector": {"matchLabels": {"a": "b"}}}
    labelled = {"metadata": {"labels": {"a": "b"}}}
    plain: dict[str, Any] = {"metadata": {}}
    assert object_matches(hook, _attrs(obj=labelled))
    assert not object_matches(hook, _attrs(obj=plain))
    assert object_matches(hook, _attrs(op="UPDATE", obj=plain, old=labelled))
    assert object_matches(hook, _attrs(op="DELETE", old=labelled))
    assert object_matches({"objectSelector": {}}, _attrs(obj=plain))


def _config(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "a.b.c",
                "clientConfig": {"url": "https://127.0.0.1:1/"},
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
        ],
    }


def test_a_configuration_is_in_force_when_its_write_returns(tmp_path: Path) -> None:
    vwc = by_path("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
    assert vwc is not None
    pods = by_path("", "v1", "pods")
    assert pods is not None

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            try:
                await storage.ensure_namespaces()
                storage.webhooks.start()
                assert not storage.webhooks.wants(pods)
                await storage.create(vwc, None, _config("one"))
                assert [h.name for h in storage.webhooks.validating] == ["a.b.c"]
                assert storage.webhooks.wants(pods)
                assert not storage.webhooks.wants(vwc)  # (never the configurations)
                await storage.patch(vwc, None, "one", "json", [
                    {"op": "replace", "path": "/webhooks/0/name", "value": "d.e.f"}
                ])  # fmt: skip
                assert [h.name for h in storage.webhooks.validating] == ["d.e.f"]
                await storage.delete(vwc, None, "one", {})
                assert storage.webhooks.validating == ()
                assert not storage.webhooks.wants(pods)
            finally:
                await storage.close()

    asyncio.run(main())


def test_the_server_imports_the_webhook_client_at_the_first_call() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, orchestrator.apiserver.app\nprint(json.dumps(sorted(sys.modules)))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mods = set(json.loads(out.splitlines()[-1]))
    assert "orchestrator.apiserver.webhooks" in mods
    assert "orchestrator.apiserver.webhookcall" not in mods


def test_the_answer_checked_as_kube_checks_it() -> None:
    from orchestrator.apiserver.webhookcall import CallError, _check_review

    v1 = "admission.k8s.io/v1"
    ok = {"apiVersion": v1, "kind": "AdmissionReview", "response": {"uid": "u", "allowed": True}}
    _check_review(ok, v1, "u")
    for got, says in (
        ({"apiVersion": v1, "kind": "AdmissionReview"}, "webhook response was absent"),
        (dict(ok, response={"uid": "x"}), 'expected response.uid="u", got "x"'),
        (
            dict(ok, apiVersion="v1"),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /v1,"
            " Kind=AdmissionReview",
        ),
    ):
        with pytest.raises(CallError) as e:
            _check_review(got, v1, "u")
        assert str(e.value) == "received invalid webhook response: " + says
    # v1beta1: a response is enough
    _check_review({"response": {"allowed": True}}, "admission.k8s.io/v1beta1", "u")


def test_a_refusal_in_the_webhooks_words() -> None:
    from orchestrator.apiserver.webhookcall import _denied

    e = _denied("a.b.c", {"message": "no", "code": 400, "reason": "BadRequest"})
    assert (e.code, e.reason, e.message) == (400, "BadRequest", 'admission webhook "a.b.c"'
                                             " denied the request: no")  # fmt: skip
    e = _denied("a.b.c", {"reason": "Nope"})
    assert (e.code, e.message) == (403, 'admission webhook "a.b.c" denied the request: Nope')
    e = _denied("a.b.c", None)
    assert e.message == 'admission webhook "a.b.c" denied the request without explanation'


def test_the_review_sent() -> None:
    from orchestrator.apiserver.webhookcall import review

    a = _attrs(sub="status", op="UPDATE", obj={"o": 1}, old={"o": 0})
    a.dry_run = True
    got = review({"admissionReviewVersions": ["v2", "v1beta1", "v1"]}, a, "u")
    assert got["apiVersion"] == "admission.k8s.io/v1beta1"  # the first one known
    req = got["request"]
    assert req["subResource"] == req["requestSubResource"] == "status"
    assert (req["object"], req["oldObject"], req["dryRun"]) == ({"o": 1}, {"o": 0}, True)
    assert req["options"] == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert req["namespace"] == "ns" and req["userInfo"] == {"username": "u"}


class _Recorder:
    """A webhook client that adds each webhook's label (name -> "yes") if missing."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def admit(self, h: Any, a: Attributes, as_res: Any = None) -> dict[str, Any] | None:
        self.calls.append(h.name)
        assert a.obj is not None
        labels = a.obj["metadata"].get("labels") or {}
        if h.name in labels:
            return None
        return {**a.obj, "metadata": {**a.obj["metadata"], "labels": {**labels, h.name: "y"}}}


@pytest.mark.parametrize(
    ("policies", "calls"),
    [
        (("IfNeeded", "Never"), ["a.x.y", "b.x.y", "a.x.y"]),  # b changed it after a
        (("Never", "Never"), ["a.x.y", "b.x.y"]),
        (("Never", "IfNeeded"), ["a.x.y", "b.x.y"]),  # nothing changed after b
        (("IfNeeded", "IfNeeded"), ["a.x.y", "b.x.y", "a.x.y"]),
    ],
)
def test_reinvocation_if_needed(policies: tuple[str, str], calls: list[str]) -> None:
    from orchestrator.apiserver.webhooks import Hook, WebhookAdmission

    rule = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
    w = WebhookAdmission(None)  # type: ignore[arg-type]
    w.mutating = tuple(
        Hook("c", True, {"name": n, "rules": [rule], "reinvocationPolicy": p})
        for n, p in zip(("a.x.y", "b.x.y"), policies, strict=True)
    )
    rec = _Recorder()
    w._client = rec
    out = asyncio.run(w.mutate(_attrs(obj={"metadata": {"name": "x"}})))
    assert rec.calls == calls
    assert out is not None and out["metadata"]["labels"] == {"a.x.y": "y", "b.x.y": "y"}


def test_the_configurations_are_listed_again_after_any_failure(tmp_path: Path) -> None:
    """An unexpected error while listing does not leave the cache dead (or stale)."""
    from orchestrator.apiserver.webhooks import VALIDATING, WebhookAdmission

    vwc = by_path("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
    assert vwc is not None

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            storage = Storage(store)
            await storage.ensure_namespaces()
            await storage.create(vwc, None, _config("one"))  # before the cache starts

            class Flaky:
                failures = 1

                def __getattr__(self, name: str) -> Any:
                    return getattr(store, name)

                async def list(self, prefix: str, **kw: Any) -> Any:
                    if Flaky.failures and VALIDATING in prefix:
                        Flaky.failures -= 1
                        raise RuntimeError("not now")
                    return await store.list(prefix, **kw)

            w = WebhookAdmission(Flaky())  # type: ignore[arg-type]
            w.start()
            try:
                for _ in range(600):  # (a bound on waiting, not a measure of speed)
                    if w.validating:
                        break
                    await asyncio.sleep(0.05)
                assert [h.name for h in w.validating] == ["a.b.c"]
                assert Flaky.failures == 0
            finally:
                await w.close()
                await storage.close()

    asyncio.run(main())


def test_the_server_starts_with_the_configurations_known(tmp_path: Path) -> None:
    """No request is served before the configurations are listed: a restarted server refuses
    by its webhooks from its first request on."""
    from orchestrator.apiserver.app import ApiServer

    vwc = by_path("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
    assert vwc is not None

    async def main() -> None:
        async with open_store(f"sqlite://{tmp_path}/db", compact_interval=0) as store:
            first = Storage(store)
            await first.ensure_namespaces()
            await first.create(vwc, None, _config("one"))
            await first.close()
            api = ApiServer(store)
            await api.start()
            try:
                assert [h.name for h in api.storage.webhooks.validating] == ["a.b.c"]
            finally:
                await api.close()

    asyncio.run(main())
