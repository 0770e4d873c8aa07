"""The API server's ServiceAllocator over a real SQLite store: defaults, the repair pass
(orphaned keys released after two passes, missing keys re-created), release by owner only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrator.apiserver.errors import ApiError
from orchestrator.apiserver.services import IP_PREFIX, PORT_PREFIX, ServiceAllocator
from orchestrator.store import open_store


def _svc(uid: str, typ: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"s-{uid}", "namespace": "ns", "uid": uid},
        "spec": {"type": typ, "ports": [{"port": 80}], **spec},
    }


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        store = open_store(f"sqlite://{tmp_path / 'db'}", compact_interval=0)
        await store.start()
        try:
            await body(ServiceAllocator(store, "10.96.0.0/28", (30000, 30009)), store)
        finally:
            await store.close()

    asyncio.run(main())


def test_defaults_and_allocation(tmp_path: Path) -> None:
    async def body(alloc: ServiceAllocator, store: Any) -> None:
        svc = _svc("a", "NodePort", sessionAffinity="ClientIP")
        got = await alloc.on_create(svc, dry_run=False)
        spec = svc["spec"]
        node_port = spec["ports"][0]["nodePort"]
        assert spec["ports"][0] == {
            "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": node_port
        }  # fmt: skip
        assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
        assert spec["externalTrafficPolicy"] == "Cluster"
        assert sorted(got.taken) == sorted(alloc.keys_of(svc))
        ext = _svc("b", "ExternalName", externalName="x.example")
        assert (await alloc.on_create(ext, dry_run=False)).taken == []
        with pytest.raises(ApiError) as e:
            await alloc.on_create(_svc("c", "Weird"), dry_run=False)
        assert 'spec.type: Unsupported value: "Weird"' in e.value.message
        with pytest.raises(ApiError) as e:
            await alloc.on_create(_svc("d", "NodePort", clusterIP="None"), dry_run=False)
        assert "may not be set to 'None' for NodePort" in e.value.message

    run(tmp_path, body)


def test_repair_releases_orphans_after_two_passes_and_recreates_missing(tmp_path: Path) -> None:
    async def body(alloc: ServiceAllocator, store: Any) -> None:
        live = _svc("live", "NodePort")
        await alloc.on_create(live, dry_run=False)
        orphan = _svc("gone")
        await alloc.on_create(orphan, dry_run=False)  # its service was never written
        orphan_key = IP_PREFIX + orphan["spec"]["clusterIP"]
        # the live service's node port key lost (as if written before allocation existed)
        port_key = PORT_PREFIX + str(live["spec"]["ports"][0]["nodePort"])
        await store.delete(port_key)
        await alloc.reconcile(await alloc.snapshot(), [live])
        await store.get(orphan_key)  # one pass: still there (a create may be in flight)
        await store.get(port_key)  # re-created for its service
        await alloc.reconcile(await alloc.snapshot(), [live])
        keys = await alloc.snapshot()
        assert orphan_key not in keys
        assert set(keys) == alloc.keys_of(live)

    run(tmp_path, body)


def test_release_takes_only_what_the_owner_holds(tmp_path: Path) -> None:
    async def body(alloc: ServiceAllocator, store: Any) -> None:
        a = _svc("a")
        await alloc.on_create(a, dry_run=False)
        await alloc.release(alloc.keys_of(a), "someone-else")
        assert set(await alloc.snapshot()) == alloc.keys_of(a)
        await alloc.release(alloc.keys_of(a), "a")
        assert await alloc.snapshot() == {}

    run(tmp_path, body)


def test_one_node_port_twice_in_a_service(tmp_path: Path) -> None:
    async def body(alloc: ServiceAllocator, store: Any) -> None:
        ports = [
            {"name": "a", "port": 53, "protocol": "UDP", "nodePort": 30003},
            {"name": "b", "port": 53, "protocol": "TCP", "nodePort": 30003},
        ]
        dns = _svc("dns", "NodePort", ports=ports)
        await alloc.on_create(dns, dry_run=False)  # one port, two protocols: as kube allows
        twice = [{**ports[1], "name": "c", "port": 54}, {**ports[1], "name": "d"}]
        with pytest.raises(ApiError) as e:
            await alloc.on_create(_svc("x", "NodePort", ports=twice), dry_run=False)
        assert "spec.ports[1].nodePort: Duplicate value: 30003" in e.value.message

    run(tmp_path, body)


def test_the_cluster_dns_address_is_reserved(tmp_path: Path) -> None:
    """The 10th address (or --cluster-dns) is kube-system/kube-dns's: never handed out at
    random, refused to any other service that asks for it."""

    async def body(alloc: ServiceAllocator, store: Any) -> None:
        assert alloc.cluster_dns_ip == "10.96.0.10"
        got = set()
        for i in range(12):  # 14 host addresses: .1 the kubernetes service's, .10 the DNS's
            svc = _svc(f"u{i}")
            await alloc.on_create(svc, dry_run=False)
            got.add(svc["spec"]["clusterIP"])
        assert "10.96.0.10" not in got and len(got) == 12
        with pytest.raises(ApiError, match="range is full"):
            await alloc.on_create(_svc("full"), dry_run=False)
        with pytest.raises(ApiError) as e:
            await alloc.on_create(_svc("x", clusterIP="10.96.0.10"), dry_run=False)
        assert "provided IP is reserved for the cluster DNS (kube-system/kube-dns" in str(e.value)
        dns = _svc("dns", clusterIP="10.96.0.10")
        dns["metadata"].update(name="kube-dns", namespace="kube-system")
        await alloc.on_create(dns, dry_run=False)
        assert dns["spec"]["clusterIPs"] == ["10.96.0.10"]

    run(tmp_path, body)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.97.0.10", "not a host address of the service CIDR 10.96.0.0/28"),
        ("10.96.0.15", "not a host address"),
        ("10.96.0.1", "the kubernetes service's address"),
        ("dns", "--cluster-dns dns"),
    ],
)
def test_a_bad_cluster_dns_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceAllocator(None, "10.96.0.0/28", cluster_dns=value)  # type: ignore[arg-type]
    alloc = ServiceAllocator(None, "10.96.0.0/28", cluster_dns="10.96.0.5")  # type: ignore[arg-type]
    assert alloc.cluster_dns_ip == "10.96.0.5"
