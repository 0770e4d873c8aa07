"""The cluster DNS server: answers for the cluster's zone from an informer cache of Services
and EndpointSlices (``records``), over UDP and TCP on sockets the caller made (the agent makes
them in its node's network namespace, on the pods' gateway address). Names outside the zone
go to the upstream servers when there are any (from the process's own network namespace, as
CoreDNS's ``forward . /etc/resolv.conf``), else get REFUSED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from orchestrator.client import ApiClient, Informer
from orchestrator.client.rest import ENDPOINTSLICES, SERVICES

from .records import Answer, Records, build_records

__all__ = ["ClusterDns", "host_nameservers", "respond"]

log = logging.getLogger("corral.dns")

TTL = 5  # seconds, CoreDNS's kubernetes plugin's default
UPSTREAM_TIMEOUT = 2.0


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The ``nameserver`` lines of a resolv.conf."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if len(words) > 1 and words[0] == "nameserver":
                    out.append(words[1])
    except OSError:
        return []
    return out


def _host_port(server: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``[::1]:5353`` or ``::1``."""
    if server.startswith("["):
        host, _, port = server[1:].partition("]:")
        return host, int(port or 53)
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, 53


class ClusterDns:
    def __init__(
        self, client: ApiClient, domain: str = "cluster.local", upstream: Sequence[str] = ()
    ) -> None:
        self.domain = domain
        self.upstream = list(upstream)
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINTSLICES)
        self._records: Records | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- the zone

    def _changed(self, *_: object) -> None:
        self._records = None  # rebuilt at the next query

    def records(self) -> Records:
        if self._records is None:
            self._records = build_records(self.domain, self.services.list(), self.slices.list())
        return self._records

    async def start(self) -> None:
        for inf in (self.services, self.slices):
            inf.add_handler(self._changed)
            inf.start()
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())

    # ---------------------------------------------------------------- answering

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to ``query`` for the zone; None when the name is not in it."""
        return respond(self.records(), query)

    async def handle(self, wire: bytes) -> bytes | None:
        """One query's wire form in, its response's out (None: no answer at all)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            if len(wire) >= 2:  # answer FORMERR to anything with an id
                return wire[:2] + b"\x81\x01" + b"\x00" * 8
            return None
        resp = self.answer(query)
        if resp is None:
            resp = await self._forward(query)
        return resp.to_wire(max_size=65535)

    async def _forward(self, query: dns.message.Message) -> dns.message.Message:
        for server in self.upstream:
            host, port = _host_port(server)
            try:
                return await dns.asyncquery.udp(query, host, port=port, timeout=UPSTREAM_TIMEOUT)
            except (dns.exception.DNSException, OSError) as e:
                log.debug("upstream %s: %s", server, e)
        resp = dns.message.make_response(query)
        resp.set_rcode(dns.rcode.SERVFAIL if self.upstream else dns.rcode.REFUSED)
        return resp

    # ---------------------------------------------------------------- serving

    async def serve(self, udp: socket.socket, tcp: socket.socket) -> None:
        """Serve on two bound sockets (UDP, TCP: the TCP one is put in listening state)."""
        loop = asyncio.get_running_loop()
        udp.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        self._transports.append(transport)
        tcp.listen(64)
        tcp.setblocking(False)
        self._servers.append(await asyncio.start_server(self._tcp, sock=tcp))

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                wire = await reader.readexactly(struct.unpack("!H", head)[0])
                out = await self.handle(wire)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop_serving(self) -> None:
        """Close the sockets (the caches stay)."""
        for s in self._servers:
            s.close()
        for t in self._transports:
            t.close()
        for s in self._servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
        self._servers.clear()
        self._transports.clear()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        await self.stop_serving()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(self.services.stop(), self.slices.stop())


def _soa(recs: Records) -> dns.rrset.RRset:
    zone = recs.zone
    return dns.rrset.from_text(
        zone, TTL, "IN", "SOA", f"ns.dns.{zone} hostmaster.{zone} 1 7200 1800 86400 {TTL}"
    )


def respond(recs: Records, query: dns.message.Message) -> dns.message.Message | None:
    """The authoritative response to ``query`` from ``recs``; None when the name is not in
    the zone (the caller forwards it or refuses it)."""
    resp = dns.message.make_response(query)
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        resp.set_rcode(dns.rcode.NOTIMP)
        return resp
    q = query.question[0]
    qname = q.name.to_text()
    if not recs.in_zone(qname):
        return None
    resp.flags |= dns.flags.AA
    if q.rdclass != dns.rdataclass.IN:
        return resp
    found = recs.lookup(qname)
    if not found.found:
        resp.set_rcode(dns.rcode.NXDOMAIN)
        resp.authority.append(_soa(recs))
        return resp
    _fill(resp, q.name, q.rdtype, found, recs)
    if not resp.answer:
        resp.authority.append(_soa(recs))
    return resp


def _fill(
    resp: dns.message.Message, name: dns.name.Name, rdtype: int, found: Answer, recs: Records
) -> None:
    any_type = rdtype == dns.rdatatype.ANY
    if found.cname is not None:
        resp.answer.append(dns.rrset.from_text(name, TTL, "IN", "CNAME", found.cname))
        if rdtype != dns.rdatatype.CNAME and recs.in_zone(found.cname):
            target = recs.lookup(found.cname)
            if target.a and rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                resp.answer.append(dns.rrset.from_text(found.cname, TTL, "IN", "A", *target.a))
        return
    if found.a and (rdtype == dns.rdatatype.A or any_type):
        resp.answer.append(dns.rrset.from_text(name, TTL, "IN", "A", *found.a))
    if found.srv and (rdtype == dns.rdatatype.SRV or any_type):
        resp.answer.append(
            dns.rrset.from_text(
                name, TTL, "IN", "SRV", *(f"0 100 {s.port} {s.target}" for s in found.srv)
            )
        )
        for target, addrs in sorted(found.additional.items()):
            resp.additional.append(dns.rrset.from_text(target, TTL, "IN", "A", *addrs))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, dns_server: ClusterDns) -> None:
        self.dns = dns_server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.dns._spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        out = await self.dns.handle(data)
        if out is None or self.transport is None:
            return
        query = dns.message.from_wire(data) if len(out) > 512 else None
        if query is not None and len(out) > max(512, query.payload if query.edns >= 0 else 0):
            # Too big for the client's buffer: truncated, it asks again over TCP.
            resp = dns.message.make_response(query)
            resp.flags |= dns.flags.TC
            out = resp.to_wire()
        self.transport.sendto(out, addr)
