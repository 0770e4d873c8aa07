"""registries.conf, short names, mirrors, the auth file, certs.d and the parts of the registry
client that need no registry (challenges, error bodies, platform choice). No root."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from images.errors import FormatError, ImageError
from images.pull import pick_platform
from images.regconf import (
    Credentials,
    Endpoint,
    RegistriesConf,
    endpoints,
    load_registries_conf,
    lookup_credentials,
    parse_registries_conf,
    push_endpoint,
    qualify,
    remove_credentials,
    store_credentials,
    tls_files,
)
from images.registry import parse_challenge, registry_message

CONF = """
unqualified-search-registries = ["reg.example:5000", "docker.io"]

[[registry]]
prefix = "docker.io/library"
location = "origin.example/lib"
[[registry.mirror]]
location = "mirror.example:5001/hub"
insecure = true

[[registry]]
location = "bad.example"
blocked = true
"""


def test_short_names_are_tried_at_each_search_registry() -> None:
    conf = parse_registries_conf(CONF)
    got = [str(r) for r in qualify("busybox", conf)]
    assert got == ["reg.example:5000/busybox:latest", "docker.io/library/busybox:latest"]
    d = "sha256:" + "a" * 64
    assert [str(r) for r in qualify(f"ns/app@{d}", conf)] == [
        f"reg.example:5000/ns/app@{d}",
        f"docker.io/ns/app@{d}",
    ]
    assert [str(r) for r in qualify("localhost/app:1", conf)] == ["localhost/app:1"]
    with pytest.raises(ImageError, match="short name 'busybox': no unqualified-search"):
        qualify("busybox", RegistriesConf())
    with pytest.raises(FormatError, match="invalid image name"):
        qualify("Bad Name", conf)


def test_mirrors_come_first_then_the_location_and_push_uses_the_location() -> None:
    conf = parse_registries_conf(CONF)
    assert endpoints("docker.io/library/busybox", conf) == [
        Endpoint("mirror.example:5001", "hub/busybox", True),
        Endpoint("origin.example", "lib/busybox", False),
    ]
    assert push_endpoint("docker.io/library/busybox", conf) == Endpoint(
        "origin.example", "lib/busybox", False
    )
    # no entry: the name itself; --tls-verify=false makes it insecure
    assert endpoints("other.example/x", conf, tls_verify=False) == [
        Endpoint("other.example", "x", True)
    ]
    # a prefix matches at a '/' boundary only
    assert endpoints("docker.io/libraryx/a", conf) == [Endpoint("docker.io", "libraryx/a")]
    assert Endpoint("docker.io", "library/a").api_host == "registry-1.docker.io"
    with pytest.raises(ImageError, match="registry bad.example is blocked"):
        endpoints("bad.example/x", conf)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unqualified-search-registries = 'x'", "must be a list of hosts"),
        ("[[registry]]\nprefix = 3", r"registry\[0\].location: must be a non-empty string"),
        ("[[registry]]\nlocation = 'a'\ninsecure = 'yes'", r"registry\[0\].insecure: must be"),
        ("[[registry]]\nlocation = 'a'\n[[registry.mirror]]\n", r"mirror\[0\].location"),
        ("not toml =", "r.conf: "),
    ],
)
def test_bad_registries_conf_names_the_field(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_registries_conf(text, "r.conf")


def test_registries_conf_file(tmp_path: Path) -> None:
    p = tmp_path / "registries.conf"
    with pytest.raises(FormatError, match="no such file"):
        load_registries_conf(p)
    p.write_text(CONF)
    assert load_registries_conf(p).search == ("reg.example:5000", "docker.io")


def test_registries_conf_is_parsed_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from images import regconf

    p = tmp_path / "registries.conf"
    p.write_text(CONF)
    parsed: list[str] = []
    real = regconf.parse_registries_conf

    def counted(text: str, where: str = "") -> RegistriesConf:
        parsed.append(where)
        return real(text, where)

    monkeypatch.setattr(regconf, "parse_registries_conf", counted)
    first = load_registries_conf(p)
    assert load_registries_conf(p) is first and len(parsed) <= 1
    p.write_text('unqualified-search-registries = ["other.example"]\n')
    assert load_registries_conf(p).search == ("other.example",)  # a change is seen at once
    p.write_text("unqualified-search-registries = 3\n")
    for _ in range(2):  # a bad file is an error at every use
        with pytest.raises(FormatError):
            load_registries_conf(p)


def test_auth_file_in_podmans_format(tmp_path: Path) -> None:
    f = tmp_path / "auth" / "auth.json"
    assert lookup_credentials("reg.example/a/b", str(f)) is None
    store_credentials("reg.example", Credentials("u", "p:w"), str(f))
    store_credentials("reg.example/team", Credentials("t", "x"), str(f))
    doc = json.loads(f.read_text())
    assert doc["auths"]["reg.example"] == {"auth": base64.b64encode(b"u:p:w").decode()}
    assert f.stat().st_mode & 0o777 == 0o600
    # the longest matching key wins, as podman looks them up
    assert lookup_credentials("reg.example/team/app", str(f)) == Credentials("t", "x")
    assert lookup_credentials("reg.example/other", str(f)) == Credentials("u", "p:w")
    assert lookup_credentials("else.example/other", str(f)) is None
    assert remove_credentials("reg.example/team", str(f))
    assert not remove_credentials("reg.example/team", str(f))
    assert lookup_credentials("reg.example/team/app", str(f)) == Credentials("u", "p:w")
    f.write_text('{"auths": {"reg.example": {"auth": "!!!"}}}')
    with pytest.raises(FormatError, match=r"auths\['reg.example'\]: auth is not base64"):
        lookup_credentials("reg.example/x", str(f))
    f.write_text("[]")
    with pytest.raises(FormatError, match='want an object with an "auths" object'):
        lookup_credentials("reg.example/x", str(f))


def test_docker_hub_keys_of_docker_config(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    auth = base64.b64encode(b"hub:pw").decode()
    f.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}))
    assert lookup_credentials("docker.io/library/busybox", str(f)) == Credentials("hub", "pw")


def test_certs_dir(tmp_path: Path) -> None:
    d = tmp_path / "reg.example:5000"
    assert tls_files("reg.example:5000", tmp_path).cas == ()
    d.mkdir()
    (d / "ca.crt").write_text("x")
    (d / "client.cert").write_text("x")
    with pytest.raises(FormatError, match="client certificate without client.key"):
        tls_files("reg.example:5000", tmp_path)
    (d / "client.key").write_text("x")
    files = tls_files("reg.example:5000", tmp_path)
    assert files.cas == (d / "ca.crt",)
    assert files.client == ((d / "client.cert", d / "client.key"),)


def test_challenges_and_error_bodies() -> None:
    kind, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry",'
        'scope="repository:a/b:pull,push"'
    )
    assert kind == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    assert registry_message(body) == "MANIFEST_UNKNOWN: manifest unknown"
    assert registry_message(b"<html>gateway</html>") == "<html>gateway</html>"
    assert registry_message(b"") == "no message"


def test_platform_from_an_index() -> None:
    index = {
        "manifests": [
            {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:" + "3" * 64},
        ]
    }
    assert pick_platform(index, ("linux", "amd64"), "x")["digest"] == "sha256:" + "2" * 64
    with pytest.raises(ImageError, match=r"x: no image for linux/s390x .*linux/arm64, linux/amd64"):
        pick_platform(index, ("linux", "s390x"), "x")
    with pytest.raises(FormatError, match="without a manifests array"):
        pick_platform({}, ("linux", "amd64"), "x")
