"""The service proxy's nftables ruleset, built as text for ``nft -f -``: a pure function of
the service ports and their ready endpoints.

The layout follows kube-proxy's nftables mode in spirit (its chains are worth reading):

* ``services`` (from the nat prerouting and output hooks) looks the destination up in two
  verdict maps: ``service-ips`` (clusterIP . protocol . port) and, for the node's own addresses
  (``fib daddr type local``, not 127/8), ``service-nodeports`` (protocol . port). Each element
  jumps to that port's chain.
* ``svc-<id>`` picks an endpoint: first a client pinned by session affinity (a set of client
  addresses per endpoint, with a timeout), else ``numgen random mod N`` over a verdict map.
  ``ext-<id>`` (NodePort) marks the connection for masquerade, then goes to ``svc-<id>``.
* ``ep-<id>`` DNATs to one endpoint; a pod reaching its own service (hairpin: source is the
  endpoint) is marked for masquerade, so its replies come back through the node.
* Ports without a ready endpoint are in ``no-endpoint-services`` / ``no-endpoint-nodeports``,
  looked up in filter chains before DNAT (prerouting, output, at priority dstnat-10): they are
  rejected (TCP reset, ICMP port unreachable for the rest) instead of timing out.
* ``nat-postrouting`` masquerades what was marked, and (with ``pod_cidr``) traffic from this
  node's pods that was DNATed to a pod on the same bridge (else the reply would take the bridge
  straight back with the wrong source).

Every script is one transaction (``nft -f`` is atomic): the kernel swaps the old rules for the
new ones at once, never a moment without rules. The first deletes and re-creates the whole
table; later ones (``Ruleset.update_script``) empty the maps and chains, delete the chains and
sets that went away and add everything again, so the affinity sets keep their entries.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "MASQ_MARK",
    "TABLE",
    "Endpoint",
    "Ruleset",
    "ServicePort",
    "build_ruleset",
    "delete_script",
    "ruleset",
]

TABLE = "corral-proxy"
MASQ_MARK = 0x4000
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one service, with its ready endpoints."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP, SCTP
    cluster_ip: str  # "" or "None": no clusterIP rules
    port: int
    node_port: int = 0
    endpoints: tuple[Endpoint, ...] = ()
    affinity_timeout: int = 0  # sessionAffinity ClientIP: seconds; 0: none
    local_endpoints: tuple[Endpoint, ...] = ()  # those of ``endpoints`` on this node
    internal_local: bool = False  # internalTrafficPolicy Local: the clusterIP's go to local ones
    external_local: bool = False  # externalTrafficPolicy Local: the NodePort's go to local ones
    # externalIPs and load balancer ingress addresses: the port answers there too, as from
    # outside (the NodePort's chain: masquerade, or the Local policy)
    external_ips: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name}"

    @property
    def has_ip(self) -> bool:
        return self.cluster_ip not in ("", "None")


def _id(text: str) -> str:
    """A short stable id for a name (chain names must be unique and at most 255 bytes)."""
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest)[:8].decode()


def _chain(prefix: str, text: str) -> str:
    # nft identifiers: letters, digits, '/', '\\', '_', '.', '-'; names and ports fit
    return f"{prefix}-{_id(text)}-{text}"[:250]


def _ep_chain(sp: ServicePort, ep: Endpoint) -> str:
    return _chain("ep", f"{sp.key}__{ep.ip}/{ep.port}")


def _ip(text: str) -> str:
    return str(ipaddress.IPv4Address(text))  # refuses anything that would break the script


MAPS = {
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
HAIRPIN_TYPE = "ipv4_addr . ipv4_addr"


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The table's contents (``body``: the ``table ip corral-proxy { ... }`` block), the
    names of the per-service chains and affinity sets in it, and the (protocol, address,
    port) of every endpoint it DNATs to."""

    body: str
    chains: frozenset[str]
    sets: frozenset[str]
    endpoints: frozenset[tuple[str, str, int]] = frozenset()

    def replace_script(self) -> str:
        """Delete and re-create the table: for the first sync, when nothing is known of what
        the kernel holds (affinity entries start afresh)."""
        return f"add table ip {TABLE}\ndelete table ip {TABLE}\n{self.body}"

    def update_script(self, previous: Ruleset) -> str:
        """Replace ``previous`` (what the kernel holds) with this, in one transaction that
        keeps the affinity sets both share (their entries live on): empty the maps and the
        chains, delete the chains and sets gone, then add everything again."""
        t = f"ip {TABLE}"
        head = [f"add table {t}"]
        head += [f"add map {t} {name} {{ type {typ}; }}" for name, typ in MAPS.items()]
        head.append(f"add set {t} hairpin {{ type {HAIRPIN_TYPE}; }}")
        head += [f"flush map {t} {name}" for name in MAPS]
        head.append(f"flush set {t} hairpin")
        head.append(f"flush table {t}")
        head += [f"delete chain {t} {c}" for c in sorted(previous.chains - self.chains)]
        head += [f"delete set {t} {s}" for s in sorted(previous.sets - self.sets)]
        return "\n".join(head) + "\n" + self.body


def build_ruleset(ports: Iterable[ServicePort], pod_cidr: str | None = None) -> str:
    """The ``nft -f`` script that replaces the proxy's table with rules for ``ports``."""
    return ruleset(ports, pod_cidr).replace_script()


def ruleset(ports: Iterable[ServicePort], pod_cidr: str | None = None) -> Ruleset:
    """The proxy's table for ``ports``."""
    t = f"ip {TABLE}"
    chain_names: set[str] = set()
    set_names: set[str] = set()
    service_ips: list[str] = []
    node_ports: list[str] = []
    no_ep_ips: list[str] = []
    no_ep_node_ports: list[str] = []
    chains: list[str] = []
    sets: list[str] = []
    hairpin: set[str] = set()
    taken_ips: set[tuple[str, str, int]] = set()
    taken_node_ports: set[tuple[str, int]] = set()
    ep_chains: set[str] = set()
    targets_of: set[tuple[str, str, int]] = set()

    def picker(chain: str, sp: ServicePort, eps: list[Endpoint]) -> None:
        """``chain`` DNATs to one of ``eps`` (random; a pinned client first with affinity)."""
        proto = PROTOCOLS[sp.protocol]
        chain_names.add(chain)
        targets_of.update((proto, _ip(ep.ip), ep.port) for ep in eps)
        targets = [f"{_ip(ep.ip)} . {ep.port}" for ep in eps]
        hairpin.update(f"{_ip(ep.ip)} . {_ip(ep.ip)}" for ep in eps)
        if not sp.affinity_timeout:
            # one rule: DNAT to the endpoint a random number picks from a map
            if len(eps) == 1:
                pick = targets[0].replace(" . ", ":")
            else:
                pick = (
                    f"numgen random mod {len(eps)} map {{ "
                    + ", ".join(f"{i} : {target}" for i, target in enumerate(targets))
                    + " }"
                )
            chains.append(f"chain {chain} {{\nmeta l4proto {proto} dnat ip to {pick}\n}}")
            return
        # session affinity: a chain per endpoint records the client in that endpoint's set
        body = []
        names = [_ep_chain(sp, ep) for ep in eps]
        for name in names:
            body.append(f"ip saddr @{_aff(sp, name)} goto {name}")
        if len(names) == 1:
            body.append(f"goto {names[0]}")
        else:
            vmap = ", ".join(f"{i} : goto {n}" for i, n in enumerate(names))
            body.append(f"numgen random mod {len(names)} vmap {{ {vmap} }}")
        chains.append(f"chain {chain} {{\n" + "\n".join(body) + "\n}")
        for ep, name in zip(eps, names, strict=True):
            if name in ep_chains:  # shared by the cluster-wide and the local chain
                continue
            ep_chains.add(name)
            aff = _aff(sp, name)
            set_names.add(aff)
            sets.append(
                f"set {aff} {{ type ipv4_addr; flags dynamic,timeout;"
                f" timeout {sp.affinity_timeout}s; }}"
            )
            lines = [
                f"update @{aff} {{ ip saddr }}",
                f"meta l4proto {proto} dnat to {_ip(ep.ip)}:{ep.port}",
            ]
            chains.append(f"chain {name} {{\n" + "\n".join(lines) + "\n}")
            chain_names.add(name)

    pods = str(ipaddress.IPv4Network(pod_cidr, strict=False)) if pod_cidr else ""
    for sp in sorted(ports, key=lambda p: p.key):
        proto = PROTOCOLS[sp.protocol]
        svc = _chain("svc", sp.key)
        eps = sorted(set(sp.endpoints), key=lambda e: (e.ip, e.port))
        local_eps = sorted(set(sp.local_endpoints) & set(eps), key=lambda e: (e.ip, e.port))
        # one address:port (one node port) is one map key: the first service by name has it
        # (never two with a working API server; one bad object must not fail every sync)
        has_ip = sp.has_ip and (sp.cluster_ip, proto, sp.port) not in taken_ips
        node_port = sp.node_port if (proto, sp.node_port) not in taken_node_ports else 0
        if has_ip:
            taken_ips.add((sp.cluster_ip, proto, sp.port))
        if node_port:
            taken_node_ports.add((proto, node_port))
        externals = []
        for address in dict.fromkeys(sp.external_ips):
            if (address, proto, sp.port) not in taken_ips:
                taken_ips.add((address, proto, sp.port))
                externals.append(f"{_ip(address)} . {proto} . {sp.port}")
        if not has_ip and not node_port and not externals:
            continue
        if not eps:
            if has_ip:
                no_ep_ips.append(f"{_ip(sp.cluster_ip)} . {proto} . {sp.port} : goto reject-chain")
            if node_port:
                no_ep_node_ports.append(f"{proto} . {node_port} : goto reject-chain")
            no_ep_ips.extend(f"{key} : goto reject-chain" for key in externals)
            continue
        local = _chain("local", sp.key)
        if local_eps and (sp.internal_local or sp.external_local):
            picker(local, sp, local_eps)
        cluster_wide = (has_ip and not sp.internal_local) or node_port or externals
        if cluster_wide:
            picker(svc, sp, eps)
        if has_ip:
            ip_key = f"{_ip(sp.cluster_ip)} . {proto} . {sp.port}"
            if not sp.internal_local:
                service_ips.append(f"{ip_key} : goto {svc}")
            elif local_eps:
                service_ips.append(f"{ip_key} : goto {local}")
            else:  # Kubernetes: endpoints elsewhere, none here: dropped (not refused)
                no_ep_ips.append(f"{ip_key} : drop")
        if node_port or externals:
            ext = _chain("ext", sp.key)
            if node_port:
                node_ports.append(f"{proto} . {node_port} : goto {ext}")
            service_ips.extend(f"{key} : goto {ext}" for key in externals)
            if not sp.external_local:
                body = ["jump mark-for-masquerade", f"goto {svc}"]
            else:
                # the client's address is kept: only this node's endpoints; this node's own
                # pods and the node itself go cluster-wide (as kube-proxy)
                body = [f"ip saddr {pods} goto {svc}"] if pods else []
                body += ["fib saddr type local jump mark-for-masquerade"]
                body += [f"fib saddr type local goto {svc}"]
                body.append(f"goto {local}" if local_eps else "drop")
            chains.append(f"chain {ext} {{\n" + "\n".join(body) + "\n}")
            chain_names.add(ext)

    def elements(items: list[str]) -> str:
        return f" elements = {{ {', '.join(items)} }};" if items else ""

    postrouting = [
        "ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
        f"meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark ^ {MASQ_MARK:#x}"
        " masquerade fully-random",
    ]
    if pod_cidr:
        net = ipaddress.IPv4Network(pod_cidr, strict=False)
        postrouting.append(f"ct status dnat ip saddr {net} ip daddr {net} masquerade fully-random")
    local = "fib daddr type local ip daddr != 127.0.0.0/8"
    contents = {
        "service-ips": service_ips,
        "service-nodeports": node_ports,
        "no-endpoint-services": no_ep_ips,
        "no-endpoint-nodeports": no_ep_node_ports,
    }
    out = [
        f"table {t} {{",
        *(f"map {name} {{ type {typ};{elements(contents[name])} }}" for name, typ in MAPS.items()),
        f"set hairpin {{ type {HAIRPIN_TYPE};{elements(sorted(hairpin))} }}",
        *sets,
        "chain filter-prerouting {\ntype filter hook prerouting priority dstnat - 10;"
        " policy accept;\nct state new jump endpoints-check\n}",
        "chain filter-output {\ntype filter hook output priority -110;"
        " policy accept;\nct state new jump endpoints-check\n}",
        "chain endpoints-check {\n"
        "ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n"
        f"{local} meta l4proto . th dport vmap @no-endpoint-nodeports\n}}",
        "chain reject-chain {\nmeta l4proto tcp reject with tcp reset\nreject\n}",
        "chain nat-prerouting {\ntype nat hook prerouting priority dstnat; policy accept;"
        "\njump services\n}",
        "chain nat-output {\ntype nat hook output priority -100; policy accept;\njump services\n}",
        "chain nat-postrouting {\ntype nat hook postrouting priority srcnat; policy accept;\n"
        + "\n".join(postrouting)
        + "\n}",
        f"chain mark-for-masquerade {{\nmeta mark set meta mark | {MASQ_MARK:#x}\n}}",
        "chain services {\nip daddr . meta l4proto . th dport vmap @service-ips\n"
        f"{local} meta l4proto . th dport vmap @service-nodeports\n}}",
        *chains,
        "}",
    ]
    return Ruleset(
        "\n".join(out) + "\n",
        frozenset(chain_names),
        frozenset(set_names),
        frozenset(targets_of),
    )


def _aff(sp: ServicePort, ep_chain: str) -> str:
    # the timeout is part of the name: a set's timeout cannot change, a new one is made
    return f"aff-{sp.affinity_timeout}-{ep_chain[3:]}"[:250]


def delete_script() -> str:
    """Remove the proxy's table (and nothing else); no error when it is absent."""
    return f"add table ip {TABLE}\ndelete table ip {TABLE}\n"
