"""Who may do what on a real ``corral server``: client certificates, static and ServiceAccount
tokens, RBAC with the default roles (kubectl 1.32 and 1.20 ``auth can-i``), the node
authorizer, impersonation, the audit log, and secrets encrypted at rest."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubeserver import CORRAL, KUBECTL_120, KUBECTL_CURRENT, Kubectl, Server

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

NS = "team"
OTHER = "other"
TOKEN = "s3cr3t-static-token"
SECRET_VALUE = "correct-horse-battery-staple-4711"


def _kubeconfig(server: Server, user: str, *groups: str) -> Path:
    path = server.root / f"{user.replace(':', '_')}.kubeconfig"
    argv = [CORRAL, "kubeconfig", "--user", user, "--data-dir", str(server.data_dir)]
    for g in groups:
        argv += ["--group", g]
    subprocess.run([*argv, "-o", str(path)], check=True, capture_output=True)
    return path


class Identity:
    """Raw HTTPS as one user: a kubeconfig's client certificate, or a bearer token."""

    def __init__(self, server: Server, kubeconfig: Path | None = None, token: str = "") -> None:
        self.server = server
        cfg = yaml.safe_load(server.kubeconfig.read_text())
        ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        self.ctx = ssl.create_default_context(cadata=ca.decode())
        self.token = token
        if kubeconfig is not None:
            user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
            cert, key = kubeconfig.with_suffix(".crt"), kubeconfig.with_suffix(".key")
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            os.chmod(key, 0o600)
            self.ctx.load_cert_chain(cert, key)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, context=self.ctx, timeout=60
        )
        try:
            hdrs = dict(headers or {})
            if self.token:
                hdrs["Authorization"] = f"Bearer {self.token}"
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            json_body = resp.getheader("Content-Type", "").startswith("application/json")
            return resp.status, dict(resp.getheaders()), json.loads(raw) if json_body else raw
        finally:
            conn.close()


def _ok(code: int, body: Any, want: int = 201) -> None:
    assert code == want, body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("apiserver-security")
    tokens = root / "tokens.csv"
    tokens.write_text(f'{TOKEN},tokenuser,uid-42,"devs,ops"\n')
    srv = Server(
        root,
        extra=("--token-auth-file", str(tokens), "--audit-log-path", str(root / "audit.log")),
    )
    srv.start()
    try:
        for ns in (NS, OTHER):
            _ok(*srv.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}))
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        for user, role in (("viewer", "view"), ("editor", "edit"), ("boss", "admin")):
            _ok(
                *srv.json(
                    "POST",
                    f"{rbac}/namespaces/{NS}/rolebindings",
                    {
                        "metadata": {"name": f"{user}-{role}"},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": role,
                        },
                        "subjects": [
                            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                        ],
                    },
                )
            )
        for ns in (NS, OTHER):
            _ok(
                *srv.json(
                    "POST",
                    f"/api/v1/namespaces/{ns}/secrets",
                    {"metadata": {"name": "db"}, "stringData": {"password": SECRET_VALUE}},
                )
            )
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0


@pytest.fixture(scope="module", params=["1.32", "1.20"])
def kubectl_bin(request: pytest.FixtureRequest) -> tuple[str, str]:
    binary = KUBECTL_CURRENT if request.param == "1.32" else KUBECTL_120
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {request.param} not found at {binary} (scripts/setup.sh)")
    return binary, request.param


def _kubectl(server: Server, kubectl_bin: tuple[str, str], kubeconfig: Path, home: Path) -> Kubectl:
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(kubectl_bin[0], home, kubeconfig, kubectl_bin[1])


@pytest.fixture(scope="module")
def users(server: Server) -> dict[str, Path]:
    return {u: _kubeconfig(server, u) for u in ("viewer", "editor", "boss", "nobody")}


def _audit(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (server.root / "audit.log").read_text().splitlines()]


# ---------------------------------------------------------------------- authentication


def test_anonymous_gets_401_except_health(server: Server) -> None:
    anon = Identity(server)
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        code, _, _ = anon.request("GET", path)
        assert code == 200, path
    code, _, body = anon.request("GET", "/api/v1/namespaces/default/pods")
    assert code == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    code, _, body = Identity(server, token="not-a-token").request("GET", "/version")
    assert code == 401, "a bad token is refused even where anonymous is allowed"


def test_certificate_from_another_ca_refused(server: Server, tmp_path: Path) -> None:
    from orchestrator.apiserver.pki import ensure_pki, issue_client_cert

    other = ensure_pki(tmp_path / "other-ca", "127.0.0.1")
    cert, key = issue_client_cert(other, "intruder", ("system:masters",))
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    ident = Identity(server)
    ident.ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        ident.request("GET", "/api/v1/namespaces")
    cfg = yaml.safe_load(server.kubeconfig.read_text())
    user = cfg["users"][0]["user"]
    user["client-certificate-data"] = base64.b64encode(cert).decode()
    user["client-key-data"] = base64.b64encode(key).decode()
    bad = tmp_path / "intruder.kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    k = Kubectl(KUBECTL_CURRENT, tmp_path / "home", bad, "1.32")
    p = k.run("get", "namespaces", "--request-timeout=5s", check=False)
    assert p.returncode != 0 and "default" not in p.stdout, p
    assert Identity(server, token=TOKEN).request("GET", "/version")[0] == 200, "still serving"


def test_static_token_user(server: Server) -> None:
    ident = Identity(server, token=TOKEN)
    code, _, body = ident.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {"spec": {}}
    )
    assert code == 201
    assert body["status"]["userInfo"] == {
        "username": "tokenuser",
        "uid": "uid-42",
        "groups": ["devs", "ops", "system:authenticated"],
    }
    code, _, body = ident.request("GET", f"/api/v1/namespaces/{NS}/pods")
    assert code == 403
    assert body["message"] == (
        'pods is forbidden: User "tokenuser" cannot list resource "pods" in API group ""'
        f' in the namespace "{NS}"'
    )


# ---------------------------------------------------------------------- RBAC with kubectl


CAN_I = [
    ("viewer", ["list", "pods"], True),
    ("viewer", ["get", "deployments.apps"], True),
    ("viewer", ["create", "pods"], False),
    ("viewer", ["get", "secrets"], False),
    ("viewer", ["list", "pods", "-n", OTHER], False),
    ("editor", ["create", "pods"], True),
    ("editor", ["get", "secrets"], True),
    ("editor", ["get", "secrets", "-n", OTHER], False),
    ("editor", ["create", "rolebindings.rbac.authorization.k8s.io"], False),
    ("boss", ["create", "rolebindings.rbac.authorization.k8s.io"], True),
    ("boss", ["delete", "nodes"], False),
    ("nobody", ["get", "pods"], False),
]


def test_auth_can_i_per_role(
    server: Server,
    users: dict[str, Path],
    kubectl_bin: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("home")
    for user, args, want in CAN_I:
        k = _kubectl(server, kubectl_bin, users[user], home / user)
        p = k.run("auth", "can-i", *args, *([] if "-n" in args else ["-n", NS]), check=False)
        got = p.stdout.strip()
        assert (got, p.returncode) == (("yes", 0) if want else ("no", 1)), (user, args, p)
    admin = _kubectl(server, kubectl_bin, server.kubeconfig, home / "admin")
    assert admin.run("auth", "can-i", "*", "*", "--all-namespaces").stdout.strip() == "yes"


def test_auth_can_i_list(server: Server, users: dict[str, Path], tmp_path: Path) -> None:
    k = Kubectl(KUBECTL_CURRENT, tmp_path, users["viewer"], "1.32")
    out = k.run("auth", "can-i", "--list", "-n", NS).stdout
    rows = {ln.split()[0]: ln for ln in out.splitlines()[1:] if not ln.startswith(" ")}
    assert "[get list watch]" in rows["pods"]
    assert "secrets" not in rows
    assert "[create]" in rows["selfsubjectaccessreviews.authorization.k8s.io"]
    out = k.run("api-resources", "--api-group=authorization.k8s.io").stdout
    assert "selfsubjectaccessreviews" in out and "localsubjectaccessreviews" in out


def test_view_cannot_create_edit_cannot_read_elsewhere(
    server: Server,
    users: dict[str, Path],
    kubectl_bin: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("home")
    viewer = _kubectl(server, kubectl_bin, users["viewer"], home / "viewer")
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}})
    p = viewer.run("create", "-n", NS, "-f", "-", input=cm, check=False)
    assert p.returncode == 1
    assert (
        'configmaps is forbidden: User "viewer" cannot create resource "configmaps" in API'
        f' group "" in the namespace "{NS}"'
    ) in p.stderr
    assert "Error from server (Forbidden)" in p.stderr
    viewer.run("get", "pods", "-n", NS)

    editor = _kubectl(server, kubectl_bin, users["editor"], home / "editor")
    got = editor.run("get", "secret", "db", "-n", NS, "-o", "json").stdout
    password = json.loads(got)["data"]["password"]
    assert base64.b64decode(password).decode() == SECRET_VALUE
    p = editor.run("get", "secret", "db", "-n", OTHER, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == (
        'Error from server (Forbidden): secrets "db" is forbidden: User "editor" cannot get'
        f' resource "secrets" in API group "" in the namespace "{OTHER}"'
    )
    p = editor.run("get", "nodes", check=False)
    assert (
        'nodes is forbidden: User "editor" cannot list resource "nodes" in API group "" at the'
        " cluster scope"
    ) in p.stderr


def test_binding_takes_effect_and_revocation_too(server: Server, users: dict[str, Path]) -> None:
    nobody = Identity(server, users["nobody"])
    path = f"/api/v1/namespaces/{OTHER}/configmaps"
    code, _, _ = nobody.request("GET", path)
    assert code == 403
    binding = {
        "metadata": {"name": "nobody-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "nobody", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    rb = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{OTHER}/rolebindings"
    _ok(*server.json("POST", rb, binding))
    code, _, _ = nobody.request("GET", path)
    assert code == 200
    _ok(*server.json("DELETE", f"{rb}/nobody-view"), want=200)
    code, _, _ = nobody.request("GET", path)
    assert code == 403


def test_impersonation(server: Server, users: dict[str, Path], tmp_path: Path) -> None:
    admin = Kubectl(KUBECTL_CURRENT, tmp_path / "a", server.kubeconfig, "1.32")
    assert admin.run("auth", "can-i", "get", "pods", "-n", NS, "--as", "viewer").stdout.strip() == (
        "yes"
    )
    p = admin.run("auth", "can-i", "create", "pods", "-n", NS, "--as", "viewer", check=False)
    assert p.stdout.strip() == "no"
    p = admin.run("get", "secrets", "-n", NS, "--as", "viewer", check=False)
    assert 'User "viewer" cannot list resource "secrets"' in p.stderr
    editor = Kubectl(KUBECTL_CURRENT, tmp_path / "e", users["editor"], "1.32")
    p = editor.run("get", "pods", "-n", NS, "--as", "boss", check=False)
    assert p.returncode == 1 and "Forbidden" in p.stderr
    ident = Identity(server, users["editor"])
    code, _, body = ident.request(
        "GET", f"/api/v1/namespaces/{NS}/pods", None, {"Impersonate-User": "boss"}
    )
    assert code == 403
    assert body["message"] == (
        'users "boss" is forbidden: User "editor" cannot impersonate resource "users" in API'
        ' group "" at the cluster scope'
    )
    # edit may impersonate the ServiceAccounts of its namespace (kube's edit role)
    code, body = server.json(
        "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "imp"}}
    )
    _ok(code, body)
    code, _, body = ident.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"spec": {}},
        {"Impersonate-User": f"system:serviceaccount:{NS}:imp"},
    )
    assert code == 201, body
    assert body["status"]["userInfo"]["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{NS}",
        "system:authenticated",
    ]


# ---------------------------------------------------------------------- ServiceAccount tokens


def _token_client(server: Server, token: str) -> client.CoreV1Api:
    cfg = yaml.safe_load(server.kubeconfig.read_text())
    ca = server.root / "ca.crt"
    ca.write_bytes(base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]))
    conf = client.Configuration()
    conf.host = f"https://127.0.0.1:{server.port}"
    conf.ssl_ca_cert = str(ca)
    conf.api_key = {"authorization": token}
    conf.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(conf))


def test_serviceaccount_token_dies_with_its_pod(server: Server, tmp_path: Path) -> None:
    for path, obj in (
        (f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "robot"}}),
        (
            f"/api/v1/namespaces/{NS}/pods",
            {
                "metadata": {"name": "robot-pod"},
                "spec": {
                    "serviceAccountName": "robot",
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            },
        ),
        (
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings",
            {
                "metadata": {"name": "robot-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
            },
        ),
    ):
        _ok(*server.json("POST", path, obj))
    admin = Kubectl(KUBECTL_CURRENT, tmp_path, server.kubeconfig, "1.32")
    token = admin.run(
        "create",
        "token",
        "robot",
        "-n",
        NS,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "robot-pod",
        "--duration",
        "15m",
    ).stdout.strip()
    api = _token_client(server, token)
    pods = api.list_namespaced_pod(NS)
    assert "robot-pod" in [p.metadata.name for p in pods.items]
    with pytest.raises(ApiException) as e:
        api.list_namespaced_secret(NS)
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == (
        f'secrets is forbidden: User "system:serviceaccount:{NS}:robot" cannot list resource'
        f' "secrets" in API group "" in the namespace "{NS}"'
    )
    # an unbound token from the Python client, and a bound one for the same pod
    admin_api = client.CoreV1Api(kubernetes.config.new_client_from_config(str(server.kubeconfig)))
    req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    unbound = admin_api.create_namespaced_service_account_token("robot", NS, req).status.token
    assert _token_client(server, unbound).list_namespaced_pod(NS).items

    _ok(*server.json("DELETE", f"/api/v1/namespaces/{NS}/pods/robot-pod"), want=200)
    with pytest.raises(ApiException) as e:
        api.list_namespaced_pod(NS)
    assert e.value.status == 401
    assert _token_client(server, unbound).list_namespaced_pod(NS) is not None
    _ok(*server.json("DELETE", f"/api/v1/namespaces/{NS}/serviceaccounts/robot"), want=200)
    with pytest.raises(ApiException) as e:
        _token_client(server, unbound).list_namespaced_pod(NS)
    assert e.value.status == 401


def test_expired_or_foreign_serviceaccount_token_refused(server: Server, tmp_path: Path) -> None:
    from orchestrator.apiserver.authn import ServiceAccountTokens

    _ok(
        *server.json(
            "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "old"}}
        )
    )
    code, sa = server.json("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/old")
    real = ServiceAccountTokens(server.data_dir / "tls" / "service-account.key")
    foreign = ServiceAccountTokens(tmp_path / "other.key")
    fresh, _ = real.issue(NS, sa, [real.issuer], 600)
    ident = Identity(server, token=fresh)
    review = {"spec": {}}
    ssr = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    assert ident.request("POST", ssr, review)[0] == 201
    expired, _ = real.issue(NS, sa, [real.issuer], -1)
    assert Identity(server, token=expired).request("POST", ssr, review)[0] == 401
    forged, _ = foreign.issue(NS, sa, [real.issuer], 600)
    assert Identity(server, token=forged).request("POST", ssr, review)[0] == 401
    other_audience, _ = real.issue(NS, sa, ["vault"], 600)
    assert Identity(server, token=other_audience).request("POST", ssr, review)[0] == 401
    code, body = server.json(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/old/token",
        {"spec": {"expirationSeconds": 60}},
    )
    assert code == 422 and "10 minutes" in body["message"]


# ---------------------------------------------------------------------- the node authorizer


def _pod(name: str, secret: str, configmap: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "env": [
                        {
                            "name": "X",
                            "valueFrom": {"configMapKeyRef": {"name": configmap, "key": "x"}},
                        }
                    ],
                }
            ],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
        },
    }


def test_node_reaches_only_its_own(server: Server) -> None:
    sa = {"metadata": {"name": "default"}}
    code, body = server.json("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", sa)
    assert code in (201, 409), body  # the serviceaccount controller may have made it first
    for name, node in (("n1", "node-1"), ("n2", "node-2")):
        for res, obj in (
            ("secrets", {"metadata": {"name": f"s-{name}"}, "stringData": {"k": "v"}}),
            ("configmaps", {"metadata": {"name": f"c-{name}"}, "data": {"x": "1"}}),
            ("pods", _pod(f"p-{name}", f"s-{name}", f"c-{name}")),
        ):
            _ok(*server.json("POST", f"/api/v1/namespaces/{NS}/{res}", obj))
        _ok(
            *server.json(
                "POST",
                f"/api/v1/namespaces/{NS}/pods/p-{name}/binding",
                {"target": {"kind": "Node", "name": node}},
            )
        )
    me = Identity(server, _kubeconfig(server, "system:node:node-1", "system:nodes"))
    base = f"/api/v1/namespaces/{NS}"

    def code(method: str, path: str, body: Any = None) -> int:
        return me.request(method, path, body)[0]

    assert code("GET", f"{base}/pods/p-n1") == 200
    assert code("GET", f"{base}/secrets/s-n1") == 200
    assert code("GET", f"{base}/configmaps/c-n1") == 200
    assert code("GET", f"{base}/serviceaccounts/default") == 200
    st, _, body = me.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1")
    assert st == 200 and [p["metadata"]["name"] for p in body["items"]] == ["p-n1"]
    st, _, body = me.request("GET", f"{base}/pods/p-n2")
    assert st == 403
    assert body["message"] == (
        'pods "p-n2" is forbidden: User "system:node:node-1" cannot get resource "pods" in API'
        f' group "" in the namespace "{NS}": no relationship found between node \'node-1\''
        " and this object"
    )
    assert code("GET", f"{base}/secrets/s-n2") == 403
    assert code("GET", f"{base}/secrets/db") == 403
    assert code("GET", f"{base}/configmaps/c-n2") == 403
    assert code("GET", f"{base}/secrets") == 403
    one = "fieldSelector=metadata.name%3Ds-n1"
    st, _, body = me.request("GET", f"{base}/secrets?{one}")
    assert st == 200 and [s["metadata"]["name"] for s in body["items"]] == ["s-n1"]
    assert code("GET", f"{base}/secrets?fieldSelector=metadata.name%3Ds-n2") == 403
    assert code("GET", "/api/v1/pods") == 403
    assert code("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-2") == 403
    assert code("DELETE", f"{base}/pods/p-n2") == 403
    assert code("PATCH", f"{base}/pods/p-n2/status", {}) == 403
    assert code("POST", "/api/v1/nodes", {"metadata": {"name": "node-2"}}) == 403
    assert code("POST", "/api/v1/nodes", {"metadata": {"name": "node-1"}}) == 201
    lease = {"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}}
    leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    assert code("POST", leases, lease) == 201
    assert code("POST", leases, {**lease, "metadata": {"name": "node-2"}}) == 403
    assert code("GET", f"{leases}/node-1") == 200
    assert code("GET", "/api/v1/nodes") == 200
    assert code("POST", f"{base}/events", _event()) == 201
    assert code("POST", f"{base}/configmaps", {"metadata": {"name": "mine"}}) == 403
    # pods: a node creates only mirror pods, bound to itself, owned by its Node at most,
    # referring to no service account, secret or configMap (NodeRestriction)
    mirror = {
        "metadata": {
            "name": "static-node-1",
            "annotations": {"kubernetes.io/config.mirror": "abc"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u1"}
            ],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]},
    }
    plain = {**mirror, "metadata": {"name": "plain"}}
    st, _, body = me.request("POST", f"{base}/pods", plain)
    assert st == 403 and "node 'node-1' can only create mirror pods" in body["message"], body
    other = {**mirror, "spec": {**mirror["spec"], "nodeName": "node-2"}}
    st, _, body = me.request("POST", f"{base}/pods", other)
    assert st == 403 and "can only create pods bound to itself" in body["message"], body
    owned = {
        **mirror,
        "metadata": {
            **mirror["metadata"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "node-2", "uid": "u2"}
            ],
        },
    }
    assert code("POST", f"{base}/pods", owned) == 403
    secret = {
        **mirror,
        "spec": {**mirror["spec"], "volumes": [{"name": "s", "secret": {"secretName": "s-n1"}}]},
    }
    st, _, body = me.request("POST", f"{base}/pods", secret)
    assert st == 403 and "reference secrets" in body["message"], body
    account = {**mirror, "spec": {**mirror["spec"], "serviceAccountName": "default"}}
    assert code("POST", f"{base}/pods", account) == 403
    st, _, body = me.request("POST", f"{base}/pods", mirror)
    assert st == 201, body
    assert body["spec"].get("volumes") is None  # no token volume for a mirror pod
    assert code("DELETE", f"{base}/pods/static-node-1") == 200
    # the node's token requests: only for its own pods
    st, _, body = me.request(
        "POST",
        f"{base}/serviceaccounts/default/token",
        {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p-n2"}}},
    )
    assert st == 403, body


def _event() -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": "ev1"},
        "involvedObject": {"kind": "Pod", "name": "p-n1", "namespace": NS},
        "reason": "Started",
        "message": "started",
        "type": "Normal",
        "firstTimestamp": now,
        "lastTimestamp": now,
    }


# ---------------------------------------------------------------------- at rest, audit


def test_secret_values_not_in_the_sqlite_files(server: Server) -> None:
    db = server.data_dir / "db"
    raw = b"".join(p.read_bytes() for p in db.iterdir() if p.is_file())
    assert raw, "no database files"
    for needle in (SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode()):
        assert needle.encode() not in raw
    assert b"k8s:enc:aesgcm:v1:key1:" in raw
    key_file = server.data_dir / "cred" / "encryption-config.yaml"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_audit_log_records_who_did_what(
    server: Server, users: dict[str, Path], tmp_path: Path
) -> None:
    viewer = Identity(server, users["viewer"])
    viewer.request("POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "audited"}})
    deadline = time.monotonic() + 30
    while True:
        events = _audit(server)
        hits = [
            e
            for e in events
            if e["user"].get("username") == "viewer"
            and e["verb"] == "create"
            and e.get("objectRef", {}).get("resource") == "configmaps"
        ]
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert hits, "the forbidden create is not in the audit log"
    ev = hits[-1]
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event"
    assert ev["stage"] == "ResponseComplete"
    assert ev["responseStatus"]["code"] == 403
    assert ev["objectRef"]["namespace"] == NS
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert ev["requestReceivedTimestamp"].endswith("Z")
    codes = {
        (e["user"].get("username"), e["responseStatus"]["code"])
        for e in events
        if e.get("objectRef", {}).get("resource") in ("pods", "secrets")
    }
    assert ("system:node:node-1", 403) in codes
    assert (f"system:serviceaccount:{NS}:robot", 200) in codes
    assert any(e["responseStatus"]["code"] == 401 and e["user"] == {} for e in events), (
        "refused credentials are audited too"
    )


def test_no_escalation_through_rbac_writes(server: Server, users: dict[str, Path]) -> None:
    boss = Identity(server, users["boss"])  # admin of NS: may write roles and rolebindings
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"

    def binding(name: str, role: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "User", "name": "nobody"}],
        }

    code, _, body = boss.request("POST", f"{rbac}/rolebindings", binding("grab", "cluster-admin"))
    assert code == 403
    assert body["message"].startswith(
        'rolebindings.rbac.authorization.k8s.io "grab" is forbidden: user "boss" (groups=['
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:'
    )
    assert boss.request("POST", f"{rbac}/rolebindings", binding("share", "edit"))[0] == 201
    role = {
        "metadata": {"name": "nodes-too"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
    }
    assert boss.request("POST", f"{rbac}/roles", role)[0] == 403
    role = {
        "metadata": {"name": "pods-only"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    assert boss.request("POST", f"{rbac}/roles", role)[0] == 201
    patch = [{"op": "add", "path": "/rules/0/resources/-", "value": "nodes"}]
    code, _, body = boss.request(
        "PATCH",
        f"{rbac}/roles/pods-only",
        patch,
        {"Content-Type": "application/json-patch+json"},
    )
    assert code == 403, body


def test_masters_keep_access_without_the_cluster_admin_binding(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv")
    srv.start()
    try:
        crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin"
        code, _ = srv.json("DELETE", crb)
        assert code == 200
        code, _ = srv.json("GET", "/api/v1/namespaces")
        assert code == 200
    finally:
        assert srv.stop() == 0
    srv.start()  # the default binding is made again at start
    try:
        code, body = srv.json(
            "GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin"
        )
        assert code == 200 and body["subjects"][0]["name"] == "system:masters"
    finally:
        assert srv.stop() == 0


def test_subject_access_and_token_reviews(server: Server, users: dict[str, Path]) -> None:
    authz = "/apis/authorization.k8s.io/v1"

    def sar(verb: str, resource: str, user: str = "viewer", ns: str = NS) -> dict[str, Any]:
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource},
            },
        }

    code, body = server.json("POST", f"{authz}/subjectaccessreviews", sar("list", "pods"))
    assert code == 201 and body["status"]["allowed"] is True
    code, body = server.json("POST", f"{authz}/subjectaccessreviews", sar("delete", "pods"))
    assert code == 201 and body["status"]["allowed"] is False
    editor = Identity(server, users["editor"])
    code, _, body = editor.request("POST", f"{authz}/subjectaccessreviews", sar("list", "pods"))
    assert code == 403, "asking about others needs create on subjectaccessreviews"
    boss = Identity(server, users["boss"])  # admin: localsubjectaccessreviews in its namespace
    local = {**sar("list", "pods"), "kind": "LocalSubjectAccessReview"}
    code, _, body = boss.request(
        "POST", f"{authz}/namespaces/{NS}/localsubjectaccessreviews", local
    )
    assert code == 201 and body["status"]["allowed"] is True
    code, _, body = boss.request(
        "POST", f"{authz}/namespaces/{OTHER}/localsubjectaccessreviews", local
    )
    assert code == 403
    review = {"spec": {"token": TOKEN}}
    code, body = server.json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", review)
    assert code == 201 and body["status"]["authenticated"] is True
    assert body["status"]["user"]["username"] == "tokenuser"
    review = {"spec": {"token": "wrong"}}
    code, body = server.json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", review)
    assert code == 201 and body["status"]["authenticated"] is False
