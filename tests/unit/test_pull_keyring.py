"""Registry credentials of a pod's imagePullSecrets: the docker config formats a
``kubernetes.io/dockerconfigjson`` and a ``kubernetes.io/dockercfg`` secret hold, the keyring's
matching (the kubelet's credentialprovider rules), and what a pull tries in which order."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from images.errors import FormatError
from images.keyring import Keyring, parse_docker_config
from images.pull import Options
from images.regconf import Credentials, Endpoint, store_credentials
from orchestrator.kubelet.pullsecrets import keyring_of, pull_secret_keys, secret_credentials


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


A = Credentials("alice", "pa:ss")  # a password may hold ':'
B = Credentials("bob", "b0b")


# ---------------------------------------------------------------- formats


def test_dockerconfigjson_auth_and_username_password() -> None:
    doc = {
        "auths": {
            "reg.example.com:5000": {"auth": b64("alice:pa:ss"), "email": "a@example.com"},
            "https://other.example.com/v1/": {"username": "bob", "password": "b0b"},
        }
    }
    got = parse_docker_config(json.dumps(doc), "x")
    assert got == {"reg.example.com:5000": A, "https://other.example.com/v1/": B}


def test_auth_wins_over_username_and_password() -> None:
    doc = {"auths": {"r.io": {"auth": b64("alice:pa:ss"), "username": "u", "password": "p"}}}
    assert parse_docker_config(json.dumps(doc), "x") == {"r.io": A}


def test_dockercfg_is_the_flat_map() -> None:
    doc = {"r.io": {"auth": b64("bob:b0b"), "email": "b@example.com"}}
    assert parse_docker_config(json.dumps(doc), "x", legacy=True) == {"r.io": B}
    with pytest.raises(FormatError, match='want an object with an "auths" object'):
        parse_docker_config(json.dumps(doc), "x")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("{", "x: invalid JSON"),
        ("[]", "x: not a JSON object"),
        ('{"auths": []}', '"auths" object'),
        ('{"auths": {"r.io": "no"}}', r"x: \['r.io'\]: not an object"),
        ('{"auths": {"r.io": {"auth": "%%%"}}}', "not base64 of user:password"),
        ('{"auths": {"r.io": {"auth": "' + b64("nocolon") + '"}}}', "not base64 of user:pass"),
        ('{"auths": {"r.io": {"username": 1}}}', "must be strings"),
    ],
)
def test_malformed_configs_are_named(data: str, error: str) -> None:
    with pytest.raises(FormatError, match=error):
        parse_docker_config(data, "x")


def test_credentials_never_show_in_repr() -> None:
    k = Keyring([{"r.io": A}])
    assert "pa:ss" not in repr(k) and "pa:ss" not in repr(A)


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("key", "image", "match"),
    [
        ("r.io", "r.io/app", True),
        ("https://r.io", "r.io/app", True),
        ("http://r.io/v2/", "r.io/app", True),
        ("r.io", "r.io:5000/app", False),  # ports must be equal
        ("r.io:5000", "r.io:5000/app", True),
        ("r.io:5000", "r.io/app", False),
        ("r.io/team", "r.io/team/app", True),  # the key's path is a prefix of the image's
        ("r.io/team", "r.io/other/app", False),
        ("*.r.io", "eu.r.io/app", True),  # a glob matches one domain part
        ("*.r.io", "r.io/app", False),
        ("*.io", "eu.r.io/app", False),
        ("r.*", "r.io/app", True),
        ("app*.r.io", "app1.r.io/x", True),
        ("127.0.0.1:5000", "127.0.0.1:5000/corral/app", True),
        ("127.0.0.1:5000", "127.0.0.2:5000/corral/app", False),
    ],
)
def test_matching_as_the_kubelet_keyring(key: str, image: str, match: bool) -> None:
    k = Keyring([{key: A}])
    assert (k.lookup(image) == [A]) is match


def test_more_specific_keys_first_and_each_credential_once() -> None:
    k = Keyring([{"r.io": A, "r.io/team": B}, {"https://r.io/": A}])
    assert k.lookup("r.io/team/app") == [B, A]
    assert k.lookup("r.io/app") == [A]
    assert k.lookup("s.io/app") == []


def test_docker_hub_falls_back_to_index_docker_io() -> None:
    k = Keyring([{"https://index.docker.io/v1/": A}])
    assert k.lookup("docker.io/library/busybox") == [A]
    assert k.lookup("quay.io/x") == []
    assert Keyring([{"docker.io": B}]).lookup("docker.io/library/busybox") == [B]


# ---------------------------------------------------------------- what a pull tries


def test_pod_credentials_come_before_the_node_auth_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    store_credentials("r.io", B, auth)
    ep = Endpoint("r.io", "team/app")
    assert Options(auth_file=str(auth)).candidates(ep) == [B]
    assert Options(auth_file=str(auth), keyring=Keyring([{"r.io/team": A}])).candidates(ep) == [
        A,
        B,
    ]
    assert Options(auth_file=str(auth), keyring=Keyring([{"s.io": A}])).candidates(ep) == [B]
    none = str(tmp_path / "none.json")
    assert Options(auth_file=none, keyring=Keyring()).candidates(ep) == [None]
    assert Options(auth_file=none, keyring=Keyring([{"r.io": A}])).settings(ep).credentials == A


# ---------------------------------------------------------- secrets, as the kubelet reads them


def secret(name: str, kind: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "type": kind,
        "data": {k: b64(v) for k, v in data.items()},
    }


def test_secret_types() -> None:
    cfgjson = json.dumps({"auths": {"r.io": {"auth": b64("alice:pa:ss")}}})
    assert secret_credentials(
        secret("a", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": cfgjson})
    ) == {"r.io": A}
    cfg = json.dumps({"r.io": {"username": "bob", "password": "b0b"}})
    assert secret_credentials(secret("b", "kubernetes.io/dockercfg", {".dockercfg": cfg})) == {
        "r.io": B
    }
    with pytest.raises(ValueError, match="type Opaque is not kubernetes.io/dockerconfigjson"):
        secret_credentials(secret("c", "Opaque", {".dockerconfigjson": cfgjson}))
    with pytest.raises(ValueError, match=r"no \.dockerconfigjson in its data"):
        secret_credentials(secret("d", "kubernetes.io/dockerconfigjson", {}))
    with pytest.raises(ValueError, match=r"\.dockerconfigjson: invalid JSON"):
        secret_credentials(
            secret("e", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": "{"})
        )


def test_keyring_of_a_pod_leaves_out_what_it_cannot_use() -> None:
    good = json.dumps({"auths": {"r.io": {"auth": b64("alice:pa:ss")}}})
    objs = {
        "good": secret("good", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": good}),
        "bad": secret("bad", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": "[]"}),
    }
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"imagePullSecrets": [{"name": "gone"}, {"name": "bad"}, {"name": "good"}]},
    }
    asked: list[tuple[str, str, str]] = []

    def lookup(kind: str, ns: str, name: str) -> dict[str, object] | None:
        asked.append((kind, ns, name))
        return objs.get(name)

    keyring, failed = keyring_of(pod, lookup)
    assert keyring.lookup("r.io/app") == [A]
    assert failed == [
        'gone: secret "gone" not found',
        "bad: .dockerconfigjson: not a JSON object",
    ]
    assert asked == [("secret", "ns", "gone"), ("secret", "ns", "bad"), ("secret", "ns", "good")]
    assert pull_secret_keys(pod) == ["secret/ns/gone", "secret/ns/bad", "secret/ns/good"]
