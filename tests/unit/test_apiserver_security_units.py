"""The API server's security parts without a server: request attributes, RBAC rule matching,
Forbidden wording, escalation coverage, the token file, ServiceAccount JWTs, protobuf review
bodies, and secrets encryption over a real SQLite store."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from orchestrator.apiserver.authn import (  # noqa: E402
    ServiceAccountTokens,
    TokenFileError,
    UserInfo,
    cert_user,
    load_token_file,
    user_from_peercert,
)
from orchestrator.apiserver.authz import forbidden, request_attributes, rule_allows  # noqa: E402
from orchestrator.apiserver.encryption import (  # noqa: E402
    EncryptedBackend,
    Keys,
    load_or_create_config,
)
from orchestrator.apiserver.errors import ApiError  # noqa: E402
from orchestrator.apiserver.escalation import rule_covers  # noqa: E402
from orchestrator.apiserver.reviewproto import decode_spec  # noqa: E402
from orchestrator.store import StoreError, open_store  # noqa: E402

ALICE = UserInfo("alice", groups=("dev",))


def attrs(method: str, path: str, **query: str):  # type: ignore[no-untyped-def]
    return request_attributes(ALICE, method, path, query)


@pytest.mark.parametrize(
    "method,path,query,want",
    [
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/pods", {"watch": "true"}, ("watch", "", "", "pods", "", "")),
        ("GET", "/api/v1/watch/namespaces/ns/pods/p", {}, ("watch", "", "ns", "pods", "p", "")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("get", "", "ns", "pods", "p", "log")),
        (
            "POST",
            "/api/v1/namespaces/ns/pods/p/exec",
            {},
            ("create", "", "ns", "pods", "p", "exec"),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/pods",
            {},
            ("deletecollection", "", "ns", "pods", "", ""),
        ),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "ns", "")),
        (
            "PUT",
            "/api/v1/namespaces/ns/status",
            {},
            ("update", "", "ns", "namespaces", "ns", "status"),
        ),
        ("GET", "/api/v1/namespaces", {}, ("list", "", "", "namespaces", "", "")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            {},
            ("patch", "apps", "ns", "deployments", "d", "scale"),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/secrets",
            {"fieldSelector": "metadata.name=s"},
            ("list", "", "ns", "secrets", "s", ""),
        ),
    ],
)
def test_request_attributes(method: str, path: str, query: dict[str, str], want: tuple) -> None:  # type: ignore[type-arg]
    a = request_attributes(ALICE, method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.namespace, a.resource, a.name, a.subresource) == want


def test_non_resource_attributes() -> None:
    for path in ("/healthz", "/api", "/apis/apps/v1", "/openapi/v2"):
        a = attrs("GET", path)
        assert not a.resource_request and a.verb == "get" and a.path == path
    assert attrs("POST", "/logs").verb == "post"


def test_rules() -> None:
    rule = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "*/status"]}
    assert rule_allows(rule, attrs("GET", "/api/v1/namespaces/n/pods/p"))
    assert not rule_allows(rule, attrs("GET", "/api/v1/namespaces/n/pods"))  # list
    assert not rule_allows(rule, attrs("GET", "/api/v1/namespaces/n/pods/p/log"))
    assert rule_allows(rule, attrs("GET", "/api/v1/namespaces/n/services/s/status"))
    assert not rule_allows(rule, attrs("GET", "/apis/apps/v1/namespaces/n/deployments/d"))
    named = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "resourceNames": ["x"]}
    assert rule_allows(named, attrs("DELETE", "/api/v1/namespaces/n/secrets/x"))
    assert not rule_allows(named, attrs("DELETE", "/api/v1/namespaces/n/secrets/y"))
    assert not rule_allows(named, attrs("POST", "/api/v1/namespaces/n/secrets"))
    urls = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}
    assert rule_allows(urls, attrs("GET", "/healthz"))
    assert rule_allows(urls, attrs("GET", "/apis/apps/v1"))
    assert not rule_allows(urls, attrs("GET", "/healthz/etcd"))
    assert not rule_allows(urls, attrs("GET", "/api/v1/namespaces/n/pods/p"))


def test_forbidden_wording() -> None:
    e = forbidden(attrs("GET", "/api/v1/namespaces/default/pods"))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == (
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the'
        ' namespace "default"'
    )
    e = forbidden(attrs("GET", "/apis/apps/v1/namespaces/n/deployments/d/scale"), "why")
    assert e.message == (
        'deployments.apps "d" is forbidden: User "alice" cannot get resource'
        ' "deployments/scale" in API group "apps" in the namespace "n": why'
    )
    assert e.details == {"kind": "deployments", "group": "apps", "name": "d"}
    e = forbidden(attrs("GET", "/api/v1/nodes"))
    assert e.message.endswith('in API group "" at the cluster scope')
    assert forbidden(attrs("GET", "/metrics")).message == (
        'forbidden: User "alice" cannot get path "/metrics"'
    )


def test_escalation_coverage() -> None:
    owner = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"]}
    assert rule_covers(owner, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    assert rule_covers(owner, {"verbs": ["get"], "apiGroups": [""], "resources": ["nodes/status"]})
    assert not rule_covers(owner, {"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]})
    assert not rule_covers(owner, {"verbs": ["get"], "apiGroups": ["*"], "resources": ["pods"]})
    named = {**owner, "resourceNames": ["a"]}
    assert rule_covers(
        named, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}
    )
    assert not rule_covers(named, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    urls = {"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}
    assert rule_covers(urls, {"verbs": ["get"], "nonResourceURLs": ["/apis/apps"]})
    assert not rule_covers(urls, {"verbs": ["get"], "nonResourceURLs": ["*"]})


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.csv"
    f.write_text('t1,alice,1,"dev,ops"\nt2,bob,2\n\n')
    users = load_token_file(f)
    assert users["t1"] == UserInfo("alice", "1", ("dev", "ops"))
    assert users["t2"] == UserInfo("bob", "2", ())
    f.write_text("t1,alice\n")
    with pytest.raises(TokenFileError, match="line 1"):
        load_token_file(f)
    f.write_text("t1,a,1\nt1,b,2\n")
    with pytest.raises(TokenFileError, match="line 2: duplicate"):
        load_token_file(f)


def test_peercert_user() -> None:
    cert = {
        "subject": (
            (("organizationName", "system:masters"),),
            (("organizationName", "dev"),),
            (("commonName", "system:admin"),),
        )
    }
    assert user_from_peercert(cert) == UserInfo("system:admin", groups=("system:masters", "dev"))


def test_cert_user_is_the_subjects_user_each_time() -> None:
    """The authenticated user of a client certificate, read once per subject: a second
    certificate with another subject is another user, one without a common name none."""
    admin = {"subject": ((("organizationName", "system:masters"),), (("commonName", "a"),))}
    dev = {"subject": ((("organizationName", "dev"),), (("commonName", "b"),))}
    want_admin = UserInfo("a", groups=("system:masters", "system:authenticated"))
    want_dev = UserInfo("b", groups=("dev", "system:authenticated"))
    for _ in range(2):
        assert cert_user(admin) == want_admin
        assert cert_user(dev) == want_dev
    assert cert_user({"subject": ((("organizationName", "x"),),)}) is None
    as_lists = {"subject": [[["commonName", "c"]]]}  # not ssl's tuples: read, not cached
    assert cert_user(as_lists) == UserInfo("c", groups=("system:authenticated",))


def test_jwt_sign_verify_tamper(tmp_path: Path) -> None:
    tokens = ServiceAccountTokens(tmp_path / "sa.key")
    assert oct((tmp_path / "sa.key").stat().st_mode & 0o777) == "0o600"
    sa = {"metadata": {"name": "robot", "uid": "u1"}}
    token, _ = tokens.issue("ns", sa, ["aud"], 600)
    claims = tokens.verify(token)
    assert claims is not None and claims["sub"] == "system:serviceaccount:ns:robot"
    head, body, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["sub"] = "system:serviceaccount:kube-system:admin"
    raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(ApiError):
        tokens.verify(f"{head}.{raw}.{sig}")
    assert tokens.verify("not.a.jwt") is None
    again = ServiceAccountTokens(tmp_path / "sa.key")  # the key is kept
    assert again.verify(token) == claims


def _field(number: int, value: bytes | str | int) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def test_protobuf_review_bodies() -> None:
    attrs_msg = _field(1, "ns") + _field(2, "list") + _field(5, "pods") + _field(7, "x")
    spec = _field(1, attrs_msg)
    obj = _field(1, b"") + _field(2, spec)
    body = b"k8s\x00" + _field(1, _field(1, "authorization.k8s.io/v1")) + _field(2, obj)
    assert decode_spec(body, "SelfSubjectAccessReview") == {
        "resourceAttributes": {"namespace": "ns", "verb": "list", "resource": "pods", "name": "x"}
    }
    bound = _field(1, "Pod") + _field(2, "v1") + _field(3, "p") + _field(4, "uid")
    spec = _field(1, "a1") + _field(1, "a2") + _field(3, bound) + _field(4, 900)
    body = b"k8s\x00" + _field(2, _field(2, spec))
    assert decode_spec(body, "TokenRequest") == {
        "audiences": ["a1", "a2"],
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "uid"},
        "expirationSeconds": 900,
    }
    with pytest.raises(ValueError):
        decode_spec(b"k8s\x00" + b"\x12\xff", "TokenRequest")


def test_encryption_over_sqlite(tmp_path: Path) -> None:
    keys = load_or_create_config(tmp_path / "cred" / "enc.yaml")
    assert load_or_create_config(tmp_path / "cred" / "enc.yaml") == keys

    async def run() -> None:
        inner = open_store(f"sqlite://{tmp_path / 'db'}", compact_interval=0)
        store = EncryptedBackend(inner, keys)
        await store.start()
        try:
            await inner.create("/registry/secrets/ns/old", b'{"plain":1}')
            assert (await store.get("/registry/secrets/ns/old")).value == b'{"plain":1}'
            watch = store.watch("/registry/secrets/", await store.current_revision())
            await store.create("/registry/secrets/ns/new", b'{"v":"hush"}')
            await store.create("/registry/configmaps/ns/c", b'{"v":"open"}')
            raw = (await inner.get("/registry/secrets/ns/new")).value
            assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"hush" not in raw
            assert (await inner.get("/registry/configmaps/ns/c")).value == b'{"v":"open"}'
            assert (await store.get("/registry/secrets/ns/new")).value == b'{"v":"hush"}'
            ev = await watch.__anext__()
            assert ev.kv.value == b'{"v":"hush"}'
            await watch.aclose()
            page = await store.list("/registry/secrets/")
            assert sorted(kv.value for kv in page.items) == [b'{"plain":1}', b'{"v":"hush"}']
            # the store key is authenticated: a value moved to another key does not decrypt
            await inner.create("/registry/secrets/ns/moved", raw)
            with pytest.raises(StoreError, match="cannot decrypt"):
                await store.get("/registry/secrets/ns/moved")
            other = EncryptedBackend(inner, Keys((("key9", b"k" * 32),)))
            with pytest.raises(StoreError, match="key1, not known"):
                await other.get("/registry/secrets/ns/new")
        finally:
            await store.close()

    asyncio.run(run())


def test_static_token_in_process_and_own_auth_paths(tmp_path: Path) -> None:
    """In process over plain HTTP (no certificates): a static token authenticates, other
    requests get 401, and a path whose handler authenticates itself is let through."""
    import aiohttp
    from aiohttp import web

    from orchestrator.apiserver.app import ApiServer
    from orchestrator.apiserver.authn import Authenticator
    from orchestrator.apiserver.security import Security

    async def main() -> None:
        store = open_store(f"sqlite://{tmp_path}/state.db", compact_interval=0)
        await store.start()
        api = ApiServer(store)
        api.security = Security(
            api.storage,
            api.caches,
            Authenticator(
                api.storage,
                ServiceAccountTokens(tmp_path / "sa.key"),
                {"admintoken": UserInfo("root", groups=("system:masters",))},
            ),
            own_auth_prefixes=("/v1-join/",),
        )
        await api.start()
        app = api.app()

        async def join(request: web.Request) -> web.Response:
            ok = request.headers.get("Authorization") == "Bearer K10join"
            return web.Response(status=200 if ok else 401, text="joined" if ok else "no")

        app.router.add_post("/v1-join/node", join)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{url}/api/v1/namespaces") as r:
                    assert r.status == 401
                auth = {"Authorization": "Bearer admintoken"}
                async with s.get(f"{url}/api/v1/namespaces", headers=auth) as r:
                    assert r.status == 200
                async with s.post(
                    f"{url}/v1-join/node", headers={"Authorization": "Bearer K10join"}
                ) as r:
                    assert (r.status, await r.text()) == (200, "joined")
                async with s.post(f"{url}/v1-join/node") as r:
                    assert r.status == 401 and await r.text() == "no"
        finally:
            await api.close()
            await runner.cleanup()
            await store.close()

    asyncio.run(main())
