"""The cluster DNS server (orchestrator.dns.ClusterDns) against a real ``corral server``: it
follows Services and EndpointSlices through its watches, answers over UDP and TCP on
127.0.0.1, truncates an answer too big for UDP (the client asks again over TCP), and sends
names outside the zone upstream (here: a second ClusterDns of another zone)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from orchestrator.client import ApiClient, load_kubeconfig
from orchestrator.client.rest import ENDPOINTSLICES, SERVICES
from orchestrator.dns import ClusterDns
from tests.kubeserver import API_ONLY, Server

pytestmark = pytest.mark.root

WAIT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("dns") / "server", extra=API_ONLY)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def headless(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
    }


def endpoint_slice(svc: str, n: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-1", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [f"10.42.{i // 200}.{i % 200 + 2}"], "conditions": {"ready": True}}
            for i in range(n)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def bound(kind: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    return s


async def until(what: str, cond: Callable[[], Any]) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        got = await cond()
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def scenario(kubeconfig: Path) -> None:
    async with ApiClient(load_kubeconfig(kubeconfig)) as client:
        upstream = ClusterDns(client, "other.test")
        await upstream.start()
        up_udp, up_tcp = bound(socket.SOCK_DGRAM), bound(socket.SOCK_STREAM)
        up_port = up_udp.getsockname()[1]
        await upstream.serve(up_udp, up_tcp)
        cdns = ClusterDns(client, "cluster.local", [f"127.0.0.1:{up_port}"])
        await cdns.start()
        udp, tcp = bound(socket.SOCK_DGRAM), bound(socket.SOCK_STREAM)
        port, tcp_port = udp.getsockname()[1], tcp.getsockname()[1]
        await cdns.serve(udp, tcp)
        try:
            name = "web.default.svc.cluster.local."

            async def ask() -> dns.message.Message:
                q = dns.message.make_query(name, "A")
                return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)

            first = await ask()
            assert first.rcode() == dns.rcode.NXDOMAIN
            await client.create(SERVICES, "default", headless("web"))
            await client.create(ENDPOINTSLICES, "default", endpoint_slice("web", 2))

            async def two() -> bool:
                r = await ask()
                return (
                    r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1 and len(r.answer[0]) == 2
                )

            await until("the endpoints in the answer", two)
            # a big headless service: truncated over UDP, whole over TCP
            await client.create(SERVICES, "default", headless("big"))
            await client.create(ENDPOINTSLICES, "default", endpoint_slice("big", 100))
            big = dns.message.make_query("big.default.svc.cluster.local.", "A")

            async def truncated() -> bool:
                r = await dns.asyncquery.udp(big, "127.0.0.1", port=port, timeout=2)
                return bool(r.flags & dns.flags.TC)

            await until("a truncated UDP answer", truncated)
            whole = await dns.asyncquery.tcp(big, "127.0.0.1", port=tcp_port, timeout=2)
            assert len(whole.answer[0]) == 100
            # outside the zone: upstream answers (its zone), and its NXDOMAIN comes back
            out = dns.message.make_query("web.default.svc.other.test.", "A")
            fwd = await dns.asyncquery.udp(out, "127.0.0.1", port=port, timeout=5)
            assert fwd.rcode() == dns.rcode.NOERROR and len(fwd.answer[0]) == 2
            # without upstream servers: REFUSED
            lone = ClusterDns(client, "cluster.local")
            assert lone.answer(out) is None
            refused = dns.message.from_wire(await lone.handle(out.to_wire()) or b"")
            assert refused.rcode() == dns.rcode.REFUSED
        finally:
            await cdns.stop()
            await upstream.stop()


def test_the_dns_server_follows_the_api_over_udp_and_tcp(server: Server) -> None:
    asyncio.run(scenario(server.kubeconfig))
