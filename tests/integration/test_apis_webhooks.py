"""Admission webhooks on a real ``corral server`` (API only) and an HTTPS webhook server
this test runs on 127.0.0.1 with a CA of its own (``url`` clientConfig with its caBundle), to
kubectl 1.32 and 1.20: a refusal in the webhook's words, a pod mutated by a JSONPatch,
failurePolicy Fail and Ignore for a dead webhook and for one that times out, a server
certificate not checked by the caBundle, namespaceSelector and objectSelector, dryRun,
warnings shown by kubectl, updates and deletes; the configurations' columns and discovery."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.kubeserver import (
    API_ONLY,
    KUBECTL_VERSIONS,
    Kubectl,
    Server,
    kubectl_for,
    running_server,
    temp_namespace,
)

pytestmark = [pytest.mark.root]

VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def _cert(
    name: str,
    issuer_key: Any = None,
    issuer: x509.Name | None = None,
    ca: bool = False,
    dns: tuple[str, ...] = (),
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        san += [x509.DNSName(d) for d in dns]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, b.sign(issuer_key or key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Hooks:
    """The webhook server: each path answers in its own way; every review is recorded. It
    listens on 127.0.0.1, or on ``sock`` (bound and listening: one made in a pod's network
    namespace); its certificate names 127.0.0.1 and ``dns``."""

    def __init__(
        self, root: Path, sock: socket.socket | None = None, dns: tuple[str, ...] = ()
    ) -> None:
        ca_key, ca = _cert("webhook-test-ca", ca=True)
        key, cert = _cert("127.0.0.1", ca_key, ca.subject, dns=dns)
        root.mkdir(parents=True, exist_ok=True)
        (root / "tls.crt").write_bytes(_pem(cert))
        (root / "tls.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.ca_bundle = base64.b64encode(_pem(ca)).decode()
        self.reviews: list[tuple[str, dict[str, Any]]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path.split("?")[0]
                hooks.reviews.append((self.path, body))
                out = hooks.answer(path, body["request"])
                data = json.dumps(
                    {"apiVersion": body["apiVersion"], "kind": "AdmissionReview", "response": out}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.httpd.socket.close()
            self.httpd.socket = sock
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(root / "tls.crt", root / "tls.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, req: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": req["uid"], "allowed": True}
        if path == "/deny":
            out["allowed"] = False
            out["status"] = {"message": f"{req['resource']['resource']} are refused here"}
        elif path == "/deny-code":
            out["allowed"] = False
            out["status"] = {"code": 422, "reason": "Invalid", "message": "not this one"}
        elif path == "/mutate":
            patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
            if (req["object"]["metadata"]).get("labels"):
                patch = [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
            out["patchType"] = "JSONPatch"
            out["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        elif path == "/mutate-invalid":
            patch = [{"op": "add", "path": "/data", "value": {"bad key!": "x"}}]
            out["patchType"] = "JSONPatch"
            out["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        elif path == "/ids":  # a uid on create, replicas up on update, a name when asked
            obj = req["object"]
            if req["operation"] == "CREATE":
                patch = [{"op": "replace", "path": "/metadata/uid",
                          "value": "00000000-0000-0000-0000-000000000000"}]  # fmt: skip
            elif (obj["metadata"].get("labels") or {}).get("rename"):
                patch = [{"op": "replace", "path": "/metadata/name", "value": "other"}]
            else:
                replicas = obj["spec"].get("replicas", 1) + 1
                patch = [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
            out["patchType"] = "JSONPatch"
            out["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        elif path == "/warn":
            out["warnings"] = ["think twice about this configmap"]
        elif path == "/slow":
            time.sleep(3)
        elif path == "/wrong-uid":
            out["uid"] = "not-the-one"
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("apis-webhooks"), API_ONLY) as srv:
        yield srv


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    h = Hooks(tmp_path_factory.mktemp("webhook-server"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module", params=list(KUBECTL_VERSIONS))
def kubectl(
    request: pytest.FixtureRequest, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Kubectl:
    return kubectl_for(request.param, server, tmp_path_factory)


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "wh") as name:
        yield name


def _hook(
    name: str, url: str, ca: str | None, ns: str, resources: list[str], **over: Any
) -> dict[str, Any]:
    cc: dict[str, Any] = {"url": url}
    if ca is not None:
        cc["caBundle"] = ca
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": cc,
        "rules": [
            {
                "operations": over.pop("operations", ["CREATE"]),
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": resources,
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        # this test's namespace only: the other tests' requests are not sent
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
    }
    hook.update(over)
    return hook


class Config:
    """A webhook configuration made for one test and deleted after it."""

    def __init__(self, server: Server, path: str, *webhooks: dict[str, Any]) -> None:
        self.server, self.path = server, path
        self.name = f"wh-{uuid.uuid4().hex[:8]}"
        kind = "Mutating" if path == MWC else "Validating"
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": f"{kind}WebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": list(webhooks),
        }
        code, out = server.json("POST", path, body)
        assert code == 201, out
        self.obj = out

    def __enter__(self) -> Config:
        return self

    def __exit__(self, *exc: object) -> None:
        code, out = self.server.json("DELETE", f"{self.path}/{self.name}")
        assert code == 200, out


def _configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "b"}}


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# ---------------------------------------------------------------------------- tests


def test_discovery_and_columns(kubectl: Kubectl, server: Server, hooks: Hooks, ns: str) -> None:
    out = kubectl.run("api-resources", "--api-group=admissionregistration.k8s.io").stdout
    assert "validatingwebhookconfigurations" in out and "mutatingwebhookconfigurations" in out
    out = kubectl.run("explain", "validatingwebhookconfigurations.webhooks.failurePolicy").stdout
    assert "FailurePolicy defines how unrecognized errors" in out, out
    hook = _hook("a.corral.test", hooks.url("/ok"), hooks.ca_bundle, ns, ["secrets"])
    second = dict(hook, name="b.corral.test")
    with Config(server, VWC, hook, second) as c:
        assert c.obj["webhooks"][0]["failurePolicy"] == "Fail"
        assert c.obj["webhooks"][0]["timeoutSeconds"] == 10
        lines = kubectl.run("get", "validatingwebhookconfigurations", c.name).stdout.splitlines()
        assert lines[0].split() == ["NAME", "WEBHOOKS", "AGE"]
        assert lines[1].split()[:2] == [c.name, "2"]


def test_invalid_configuration_refused(kubectl: Kubectl, hooks: Hooks, ns: str) -> None:
    hook = _hook("nodots", "http://127.0.0.1/x", None, ns, ["pods"])
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bad"},
        "webhooks": [hook],
    }
    p = kubectl.run("create", "-f", "-", input=json.dumps(body), check=False)
    assert p.returncode != 0
    assert (
        'webhooks[0].name: Invalid value: "nodots": should be a domain with at least three'
        " segments separated by dots" in p.stderr
    )


def test_deny_create_in_the_webhooks_words(
    kubectl: Kubectl, server: Server, hooks: Hooks, ns: str
) -> None:
    hook = _hook("deny.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["configmaps"])
    with Config(server, VWC, hook):
        p = kubectl.run("create", "configmap", "x", "-n", ns, check=False)
        assert p.returncode != 0
        assert (
            'admission webhook "deny.corral.test" denied the request: configmaps are refused'
            " here" in p.stderr
        ), p.stderr
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("y"))
        assert code == 403, out
        # the webhook's own code and reason when it gives them
        hook2 = dict(hook, name="deny2.corral.test", clientConfig=dict(hook["clientConfig"]))
        hook2["clientConfig"]["url"] = hooks.url("/deny-code")
        hook2["rules"] = [dict(hook["rules"][0], resources=["secrets"])]
        with Config(server, VWC, hook2):
            code, out = server.json(
                "POST", f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "s"}}
            )
            assert (code, out["reason"]) == (422, "Invalid"), out
            assert out["message"] == (
                'admission webhook "deny2.corral.test" denied the request: not this one'
            )
    # the configuration deleted: in force no more
    kubectl.run("create", "configmap", "x", "-n", ns)


def test_review_sent(server: Server, hooks: Hooks, ns: str) -> None:
    hook = _hook(
        "ok.corral.test",
        hooks.url("/ok"),
        hooks.ca_bundle,
        ns,
        ["configmaps"],
        operations=["*"],
        timeoutSeconds=7,
    )
    with Config(server, VWC, hook):
        before = len(hooks.reviews)
        code, _ = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("r"))
        assert code == 201
        path, review = hooks.reviews[before]
        assert path == "/ok?timeout=7s"
        assert review["apiVersion"] == "admission.k8s.io/v1"
        req = review["request"]
        assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
        assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
        assert (req["operation"], req["name"], req["namespace"]) == ("CREATE", "r", ns)
        assert req["object"]["data"] == {"a": "b"} and req["oldObject"] is None
        assert req["dryRun"] is False
        assert req["options"]["kind"] == "CreateOptions"
        assert req["userInfo"]["username"]
        # an update: the old object too; a delete: the old object alone
        code, _ = server.json(
            "PATCH",
            f"/api/v1/namespaces/{ns}/configmaps/r",
            {"data": {"a": "c"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200
        req = hooks.reviews[-1][1]["request"]
        assert req["operation"] == "UPDATE"
        assert (req["oldObject"]["data"], req["object"]["data"]) == ({"a": "b"}, {"a": "c"})
        code, _ = server.json("DELETE", f"/api/v1/namespaces/{ns}/configmaps/r")
        assert code == 200
        req = hooks.reviews[-1][1]["request"]
        assert req["operation"] == "DELETE" and req["object"] is None
        assert req["oldObject"]["data"] == {"a": "c"}
        assert req["options"]["kind"] == "DeleteOptions"


def test_deny_update_and_delete(kubectl: Kubectl, server: Server, hooks: Hooks, ns: str) -> None:
    kubectl.run("create", "configmap", "keep", "-n", ns)
    hook = _hook(
        "guard.corral.test",
        hooks.url("/deny"),
        hooks.ca_bundle,
        ns,
        ["configmaps"],
        operations=["UPDATE", "DELETE"],
    )
    with Config(server, VWC, hook):
        p = kubectl.run("delete", "configmap", "keep", "-n", ns, check=False)
        assert 'admission webhook "guard.corral.test" denied the request' in p.stderr
        p = kubectl.run("label", "configmap", "keep", "-n", ns, "x=y", check=False)
        assert 'admission webhook "guard.corral.test" denied the request' in p.stderr
    kubectl.run("delete", "configmap", "keep", "-n", ns)


def test_mutating_webhook_adds_a_label(
    kubectl: Kubectl, server: Server, hooks: Hooks, ns: str
) -> None:
    hook = _hook("label.corral.test", hooks.url("/mutate"), hooks.ca_bundle, ns, ["pods"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    with Config(server, MWC, hook):
        kubectl.run("create", "-f", "-", "-n", ns, input=json.dumps(pod))
        out = json.loads(kubectl.run("get", "pod", "p", "-n", ns, "-o", "json").stdout)
        assert out["metadata"]["labels"] == {"app": "x", "mutated": "yes"}


def test_mutated_object_validated_again(server: Server, hooks: Hooks, ns: str) -> None:
    hook = _hook(
        "bad.corral.test", hooks.url("/mutate-invalid"), hooks.ca_bundle, ns, ["configmaps"]
    )
    with Config(server, MWC, hook):
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("m"))
        assert code == 422, out
        assert "bad key!" in out["message"]


def test_validating_after_mutating(server: Server, hooks: Hooks, ns: str) -> None:
    """The validating webhook sees the object as the mutating one left it."""
    mut = _hook("label.corral.test", hooks.url("/mutate"), hooks.ca_bundle, ns, ["configmaps"])
    val = _hook("ok.corral.test", hooks.url("/ok"), hooks.ca_bundle, ns, ["configmaps"])
    with Config(server, MWC, mut), Config(server, VWC, val):
        before = len(hooks.reviews)
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("v"))
        assert code == 201, out
        paths = [p.split("?")[0] for p, _ in hooks.reviews[before:]]
        assert paths == ["/mutate", "/ok"]
        assert hooks.reviews[-1][1]["request"]["object"]["metadata"]["labels"] == {"mutated": "yes"}


@pytest.mark.parametrize("how", ["dead", "timeout", "unknown-ca", "wrong-uid"])
def test_failure_policy(server: Server, hooks: Hooks, ns: str, how: str) -> None:
    ca: str | None = hooks.ca_bundle
    extra: dict[str, Any] = {}
    if how == "dead":
        url = f"https://127.0.0.1:{_dead_port()}/x"
        why = f'failed to call webhook: Post "{url}?timeout=10s": dial tcp 127.0.0.1:'
        why2 = "connect: connection refused"
    elif how == "timeout":
        url, extra = hooks.url("/slow"), {"timeoutSeconds": 1}
        why = f'failed to call webhook: Post "{url}?timeout=1s": context deadline exceeded'
        why2 = ""
    elif how == "unknown-ca":
        url, ca = hooks.url("/ok"), None
        why = "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        why2 = ""
    else:
        url = hooks.url("/wrong-uid")
        why = 'received invalid webhook response: expected response.uid="'
        why2 = ""
    fail = _hook("fail.corral.test", url, ca, ns, ["configmaps"], failurePolicy="Fail", **extra)
    with Config(server, VWC, fail):
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("f"))
        assert (code, out["reason"]) == (500, "InternalError"), out
        assert out["message"].startswith(
            'Internal error occurred: failed calling webhook "fail.corral.test": '
        )
        assert why in out["message"] and why2 in out["message"], out["message"]
    ignore = dict(fail, name="ignore.corral.test", failurePolicy="Ignore")
    with Config(server, VWC, ignore):
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("i"))
        assert code == 201, out


def test_namespace_and_object_selectors(server: Server, hooks: Hooks, ns: str) -> None:
    hook = _hook(
        "sel.corral.test",
        hooks.url("/deny"),
        hooks.ca_bundle,
        ns,
        ["configmaps"],
        objectSelector={"matchLabels": {"guarded": "yes"}},
    )
    with Config(server, VWC, hook), temp_namespace(server, "wh-other") as other:
        base = f"/api/v1/namespaces/{ns}/configmaps"
        code, _ = server.json("POST", base, _configmap("free"))
        assert code == 201  # its labels do not match the objectSelector
        code, out = server.json("POST", base, _configmap("held", {"guarded": "yes"}))
        assert code == 403, out
        # another namespace: the namespaceSelector does not match it
        code, out = server.json(
            "POST", f"/api/v1/namespaces/{other}/configmaps", _configmap("o", {"guarded": "yes"})
        )
        assert code == 201, out


def test_dry_run(server: Server, hooks: Hooks, ns: str) -> None:
    hook = _hook("dry.corral.test", hooks.url("/ok"), hooks.ca_bundle, ns, ["configmaps"])
    with Config(server, VWC, hook):
        before = len(hooks.reviews)
        code, out = server.json(
            "POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", _configmap("d")
        )
        assert code == 201, out
        req = hooks.reviews[before][1]["request"]
        assert req["dryRun"] is True and req["options"]["dryRun"] == ["All"]
        code, _ = server.json("GET", f"/api/v1/namespaces/{ns}/configmaps/d")
        assert code == 404
    deny = _hook("deny.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["configmaps"])
    with Config(server, VWC, deny):
        code, out = server.json(
            "POST", f"/api/v1/namespaces/{ns}/configmaps?dryRun=All", _configmap("d")
        )
        assert code == 403, out


def test_warning_shown_by_kubectl(kubectl: Kubectl, server: Server, hooks: Hooks, ns: str) -> None:
    hook = _hook("warn.corral.test", hooks.url("/warn"), hooks.ca_bundle, ns, ["configmaps"])
    with Config(server, VWC, hook):
        p = kubectl.run("create", "configmap", "w", "-n", ns)
        assert "Warning: think twice about this configmap" in p.stderr, p.stderr


def test_configurations_themselves_never_sent(server: Server, hooks: Hooks, ns: str) -> None:
    """A webhook on every resource is not called for the webhook configurations."""
    hook = _hook("all.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["*"])
    hook["rules"] = [
        {
            "operations": ["*"],
            "apiGroups": ["*"],
            "apiVersions": ["*"],
            "resources": ["*"],
            "scope": "Cluster",
        }
    ]
    del hook["namespaceSelector"]
    with Config(server, VWC, hook) as c:
        # (deleting the configuration itself is the test: Config's exit asserts a 200)
        code, out = server.json(
            "PATCH",
            f"{VWC}/{c.name}",
            {"metadata": {"labels": {"x": "y"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200, out


def test_subresource_rules(server: Server, hooks: Hooks, ns: str) -> None:
    """``pods/status`` matches a status write and not the pod's own create."""
    hook = _hook("status.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["pods/status"])
    hook["rules"][0]["operations"] = ["UPDATE"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "s"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    with Config(server, VWC, hook):
        code, out = server.json("POST", f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, out
        before = len(hooks.reviews)
        code, out = server.json(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/s/status",
            {"status": {"message": "hi"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 403, out
        req = hooks.reviews[before][1]["request"]
        assert (req["subResource"], req["operation"]) == ("status", "UPDATE")
        code, out = server.json(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/s",
            {"metadata": {"labels": {"a": "b"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200, out


def _hpa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        },
    }


def test_match_policy_equivalent(server: Server, hooks: Hooks, ns: str) -> None:
    """A rule for autoscaling/v1 HPAs sees an autoscaling/v2 write (converted to v1) under
    matchPolicy Equivalent, not under Exact; a patch to the v1 form lands in the v2 one."""
    rule = {
        "operations": ["CREATE"],
        "apiGroups": ["autoscaling"],
        "apiVersions": ["v1"],
        "resources": ["horizontalpodautoscalers"],
    }
    base = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    hook = _hook("hpa.corral.test", hooks.url("/mutate"), hooks.ca_bundle, ns, [], rules=[rule])
    with Config(server, MWC, hook):
        before = len(hooks.reviews)
        code, out = server.json("POST", base, _hpa("h1"))
        assert code == 201, out
        assert out["metadata"]["labels"] == {"mutated": "yes"}
        assert out["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
        req = hooks.reviews[before][1]["request"]
        assert req["kind"] == {
            "group": "autoscaling",
            "version": "v1",
            "kind": "HorizontalPodAutoscaler",
        }
        assert req["requestKind"]["version"] == "v2"
        assert req["object"]["apiVersion"] == "autoscaling/v1"
        assert req["object"]["spec"]["targetCPUUtilizationPercentage"] == 50
    exact = dict(hook, name="exact.corral.test", matchPolicy="Exact")
    exact["clientConfig"] = dict(hook["clientConfig"], url=hooks.url("/deny"))
    with Config(server, VWC, exact):
        code, out = server.json("POST", base, _hpa("h2"))
        assert code == 201, out
    with Config(server, VWC, dict(exact, name="equiv.corral.test", matchPolicy="Equivalent")):
        code, out = server.json("POST", base, _hpa("h3"))
        assert code == 403, out


def test_binding_and_eviction_are_creates(server: Server, hooks: Hooks, ns: str) -> None:
    """pods/binding and pods/eviction are CREATEs of a Binding and an Eviction; the delete
    an eviction makes is not sent (as kube's eviction writes through its registry)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "b"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    base = f"/api/v1/namespaces/{ns}/pods"
    code, out = server.json("POST", base, pod)
    assert code == 201, out
    hook = _hook("sub.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["pods/binding"])
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
               "target": {"kind": "Node", "name": "n1"}}  # fmt: skip
    with Config(server, VWC, hook):
        before = len(hooks.reviews)
        code, out = server.json("POST", f"{base}/b/binding", binding)
        assert code == 403, out
        req = hooks.reviews[before][1]["request"]
        assert (req["operation"], req["subResource"]) == ("CREATE", "binding")
        assert req["kind"]["kind"] == "Binding" and req["object"]["target"]["name"] == "n1"
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "b"}}
    hook = _hook("evict.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["pods/eviction"])
    with Config(server, VWC, hook):
        before = len(hooks.reviews)
        code, out = server.json("POST", f"{base}/b/eviction", eviction)
        assert code == 403, out
        req = hooks.reviews[before][1]["request"]
        assert (req["operation"], req["subResource"]) == ("CREATE", "eviction")
        assert req["kind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    deletes = _hook(
        "del.corral.test", hooks.url("/deny"), hooks.ca_bundle, ns, ["pods"], operations=["DELETE"]
    )
    with Config(server, VWC, deletes):
        code, out = server.json("POST", f"{base}/b/eviction", eviction)
        assert code == 201, out
        code, out = server.json("GET", f"{base}/b")
        assert code == 404 or out["metadata"].get("deletionTimestamp"), out


def test_what_a_mutation_may_not_change(server: Server, hooks: Hooks, ns: str) -> None:
    """A patch of the name on update is refused as kube refuses it (immutable); one of the
    uid on create is undone (kube sets it after admission); a spec changed by a webhook on
    update moves the generation on."""
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    rule = {
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "resources": ["deployments"],
    }
    hook = _hook("ids.corral.test", hooks.url("/ids"), hooks.ca_bundle, ns, [], rules=[rule])
    with Config(server, MWC, hook):
        code, out = server.json("POST", base, dep)
        assert code == 201, out
        assert out["metadata"]["uid"] != "00000000-0000-0000-0000-000000000000"
        assert (out["metadata"]["generation"], out["spec"]["replicas"]) == (1, 1)
        code, out = server.json(
            "PATCH",
            f"{base}/d",
            {"metadata": {"labels": {"x": "y"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 200, out
        assert (out["metadata"]["generation"], out["spec"]["replicas"]) == (2, 2)
        code, out = server.json(
            "PATCH",
            f"{base}/d",
            {"metadata": {"labels": {"rename": "yes"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert code == 422, out
        assert 'metadata.name: Invalid value: "other": field is immutable' in out["message"]


def test_custom_resources(server: Server, hooks: Hooks, ns: str) -> None:
    """A custom resource is sent to the webhooks whose rules name its group: mutated, then
    validated by its schema again."""
    from tests.integration.test_apiserver_crd import CRD_GROUP, _crd
    from tests.integration.test_cluster import until

    plural = f"wh{uuid.uuid4().hex[:6]}s"
    kind = "W" + plural[1:-1]
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    code, out = server.json("POST", crds, _crd(plural, kind))
    assert code == 201, out
    try:

        def established() -> bool:
            got = server.json("GET", f"{crds}/{plural}.{CRD_GROUP}")[1]
            conds = (got.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

        until("the CRD to be established", established)
        rule = {
            "operations": ["CREATE"],
            "apiGroups": [CRD_GROUP],
            "apiVersions": ["*"],
            "resources": [plural],
        }
        hook = _hook("cr.corral.test", hooks.url("/mutate"), hooks.ca_bundle, ns, [], rules=[rule])
        base = f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/{plural}"
        cr = {"apiVersion": f"{CRD_GROUP}/v1", "kind": kind, "metadata": {"name": "c"},
              "spec": {"size": "S"}}  # fmt: skip
        with Config(server, MWC, hook):
            code, out = server.json("POST", base, cr)
            assert code == 201, out
            assert out["metadata"]["labels"] == {"mutated": "yes"}
            assert out["spec"] == {"size": "S", "replicas": 1}
        deny = dict(hook, name="crdeny.corral.test")
        deny["clientConfig"] = dict(hook["clientConfig"], url=hooks.url("/deny"))
        with Config(server, VWC, deny):
            code, out = server.json("POST", base, dict(cr, metadata={"name": "d"}))
            assert code == 403, out
            assert out["message"] == (
                f'admission webhook "crdeny.corral.test" denied the request: {plural} are'
                " refused here"
            )
    finally:
        server.json("DELETE", f"{crds}/{plural}.{CRD_GROUP}")
