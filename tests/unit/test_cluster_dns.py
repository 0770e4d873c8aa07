"""The cluster DNS's answers (orchestrator.dns): records built from Services and
EndpointSlices as the API has them, asked with dnspython messages; no server, no network."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from orchestrator.dns import build_records, respond

DOMAIN = "cluster.local"


def service(name: str, cluster_ip: str | None, ports: list[dict[str, Any]], **spec: Any) -> dict:
    s: dict[str, Any] = {"ports": ports, **spec}
    if cluster_ip is not None:
        s["clusterIP"] = cluster_ip
    return {"metadata": {"name": name, "namespace": "default"}, "spec": s}


def endpoint_slice(svc: str, endpoints: list[dict[str, Any]], ports: list[dict]) -> dict:
    return {
        "metadata": {
            "name": f"{svc}-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


HTTP = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
SLICE_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
SERVICES = [
    service("web", "10.43.0.10", HTTP),
    service("db", "None", HTTP),
    service("ext", None, [], type="ExternalName", externalName="example.org"),
]
SLICES = [
    endpoint_slice(
        "db",
        [
            {"addresses": ["10.42.1.5"], "conditions": {"ready": True}, "hostname": "db-0"},
            {"addresses": ["10.42.0.7"], "conditions": {"ready": True}},
            {"addresses": ["10.42.0.9"], "conditions": {"ready": False}},
        ],
        SLICE_PORTS,
    ),
    endpoint_slice("web", [{"addresses": ["10.42.0.3"]}], SLICE_PORTS),
]


def ask(name: str, rdtype: str = "A") -> dns.message.Message | None:
    recs = build_records(DOMAIN, SERVICES, SLICES)
    return respond(recs, dns.message.make_query(name, rdtype))


def rrs(resp: dns.message.Message | None, section: str = "answer") -> set[str]:
    assert resp is not None
    return {f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {d}" for r in getattr(resp, section)
            for d in r}  # fmt: skip


def test_a_cluster_ip_service_answers_its_cluster_ip() -> None:
    resp = ask("web.default.svc.cluster.local.")
    assert resp is not None and resp.rcode() == dns.rcode.NOERROR
    assert resp.flags & dns.flags.AA
    assert rrs(resp) == {"web.default.svc.cluster.local. A 10.43.0.10"}


def test_a_headless_service_answers_its_ready_endpoints_only() -> None:
    assert rrs(ask("db.default.svc.cluster.local.")) == {
        "db.default.svc.cluster.local. A 10.42.0.7",
        "db.default.svc.cluster.local. A 10.42.1.5",
    }
    assert rrs(ask("db-0.db.default.svc.cluster.local.")) == {
        "db-0.db.default.svc.cluster.local. A 10.42.1.5"
    }


def test_srv_for_named_ports() -> None:
    assert rrs(ask("_http._tcp.web.default.svc.cluster.local.", "SRV")) == {
        "_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."
    }
    headless = ask("_http._tcp.db.default.svc.cluster.local.", "SRV")
    assert rrs(headless) == {
        "_http._tcp.db.default.svc.cluster.local. SRV 0 100 8080 10-42-0-7.db.default.svc.cluster.local.",  # noqa: E501
        "_http._tcp.db.default.svc.cluster.local. SRV 0 100 8080 db-0.db.default.svc.cluster.local.",  # noqa: E501
    }
    assert rrs(headless, "additional") == {
        "10-42-0-7.db.default.svc.cluster.local. A 10.42.0.7",
        "db-0.db.default.svc.cluster.local. A 10.42.1.5",
    }


def test_external_name_is_a_cname() -> None:
    assert rrs(ask("ext.default.svc.cluster.local.")) == {
        "ext.default.svc.cluster.local. CNAME example.org."
    }


def test_unknown_names_are_nxdomain_and_known_ones_without_that_type_are_empty() -> None:
    for name in ("nosuch.default.svc.cluster.local.", "web.other.svc.cluster.local."):
        resp = ask(name)
        assert resp is not None and resp.rcode() == dns.rcode.NXDOMAIN, name
        assert rrs(resp, "authority")  # the SOA, for negative caching
    aaaa = ask("web.default.svc.cluster.local.", "AAAA")
    assert aaaa is not None and aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    # the names above services exist (empty non-terminals): NOERROR, no data
    for name in ("default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."):
        resp = ask(name)
        assert resp is not None and resp.rcode() == dns.rcode.NOERROR and not resp.answer, name


def test_names_are_case_insensitive_and_pod_names_answer_their_address() -> None:
    assert rrs(ask("WEB.Default.SVC.cluster.local.")) == {
        "WEB.Default.SVC.cluster.local. A 10.43.0.10"
    }
    assert rrs(ask("10-42-0-3.default.pod.cluster.local.")) == {
        "10-42-0-3.default.pod.cluster.local. A 10.42.0.3"
    }


def test_names_outside_the_zone_are_not_answered_here() -> None:
    assert ask("example.org.") is None


def test_a_service_without_a_cluster_ip_yet_exists_without_data() -> None:
    recs = build_records(DOMAIN, [service("new", None, HTTP)], [])
    resp = respond(recs, dns.message.make_query("new.default.svc.cluster.local.", "A"))
    assert resp is not None and resp.rcode() == dns.rcode.NOERROR and not resp.answer
