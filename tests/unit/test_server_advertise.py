"""The address the server advertises (the ``kubernetes`` Service's endpoint), the serving
certificate's addresses, and the ``kubernetes`` objects built from the servers' leases."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from cryptography import x509

from orchestrator.apiserver.pki import ensure_pki
from orchestrator.apiserver.server import (
    ServerConfig,
    ServerError,
    _advertise_socket,
    _serving_addresses,
    advertised,
)
from orchestrator.apiserver.services import _kubernetes_objects
from orchestrator.cluster.up import free_port


def cfg(**kw: object) -> ServerConfig:
    return ServerConfig(data_dir=Path("/nonexistent"), **kw)  # type: ignore[arg-type]


def sans(cert: Path) -> tuple[set[str], set[str]]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)},
        set(ext.get_values_for_type(x509.DNSName)),
    )


def test_the_advertised_endpoint_defaults_to_the_bind_address_and_port() -> None:
    assert advertised(cfg()) == ("127.0.0.1", 6443)
    assert advertised(cfg(bind_address="10.0.0.5", https_listen_port=7443)) == ("10.0.0.5", 7443)
    assert advertised(cfg(advertise_address="172.31.250.1", advertise_port=443)) == (
        "172.31.250.1",
        443,
    )
    host, _ = advertised(cfg(bind_address="0.0.0.0"))
    assert host != "0.0.0.0" and ipaddress.ip_address(host)  # the default route's, or loopback


def test_the_certificate_names_bind_advertise_and_cluster_ip(tmp_path: Path) -> None:
    c = cfg(advertise_address="172.31.250.1", service_cidr="10.96.0.0/16")
    assert _serving_addresses(c) == ("127.0.0.1", "172.31.250.1", "10.96.0.1")
    pki = ensure_pki(tmp_path, *_serving_addresses(c))
    ips, names = sans(pki.serving_cert)
    assert {"127.0.0.1", "172.31.250.1", "10.96.0.1"} <= ips
    assert {"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= names
    before = pki.serving_cert.read_bytes()
    assert ensure_pki(tmp_path, "172.31.250.1").serving_cert.read_bytes() == before  # kept
    # a new advertise address: the serving certificate is made again (same CA)
    ensure_pki(tmp_path, "127.0.0.1", "192.0.2.7", "10.96.0.1")
    ips, _ = sans(pki.serving_cert)
    assert "192.0.2.7" in ips and pki.serving_cert.read_bytes() != before


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"advertise_address": "pods.example"}, "--advertise-address"),
        ({"bind_address": "localhost"}, "--bind-address"),
        ({"advertise_netns": "/run/netns/lan"}, "--advertise-netns"),
        ({"service_cidr": "10.43.0.1/16"}, "--service-cidr"),
    ],
)
def test_bad_addresses_are_refused_naming_the_flag(kw: dict[str, str], flag: str) -> None:
    with pytest.raises(ServerError) as e:
        _serving_addresses(cfg(**kw))
    assert e.value.step == flag


def test_an_extra_listener_only_where_the_bind_address_does_not_serve(tmp_path: Path) -> None:
    host, port = advertised(cfg())
    assert _advertise_socket(cfg(), host, port) is None
    c = cfg(bind_address="0.0.0.0", advertise_address="127.0.0.1")
    assert _advertise_socket(c, *advertised(c)) is None  # the wildcard covers it
    c = cfg(advertise_address="127.0.0.1", advertise_port=free_port())  # another port
    sock = _advertise_socket(c, *advertised(c))
    assert sock is not None
    with sock:
        assert sock.getsockname() == advertised(c)
    with socket.socket() as taken:  # a port already held: refused, naming where
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        c = cfg(advertise_address="127.0.0.1", advertise_port=taken.getsockname()[1])
        with pytest.raises(ServerError) as e:
            _advertise_socket(c, *advertised(c))
        assert e.value.step == f"listen on 127.0.0.1:{c.advertise_port}"
    missing = tmp_path / "no-netns"
    c = cfg(advertise_address="10.0.0.1", advertise_netns=str(missing))
    with pytest.raises(ServerError) as e:
        _advertise_socket(c, *advertised(c))
    assert e.value.step == f"listen on 10.0.0.1:6443 in {missing}"


def test_kubernetes_objects_of_the_live_servers() -> None:
    svc, eps, slices = _kubernetes_objects(
        "10.43.0.1", [("10.0.0.2", 6443), ("10.0.0.1", 6443), ("127.0.0.1", 7000)]
    )
    assert svc["spec"]["clusterIP"] == "10.43.0.1"
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}
    ]
    assert eps["subsets"] == [
        {
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        },
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": 7000, "protocol": "TCP"}],
        },
    ]
    assert [s["metadata"]["name"] for s in slices] == ["kubernetes", "kubernetes-7000"]
    assert [e["addresses"] for e in slices[0]["endpoints"]] == [["10.0.0.1"], ["10.0.0.2"]]
    assert all(
        s["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes" for s in slices
    )
