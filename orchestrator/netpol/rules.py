"""A node's NetworkPolicy rules, built as text for ``nft -f -``: a pure function of the
policies, the pods (this node's get rules; every pod's address is a peer), the namespaces'
labels and the node's name.

Where the rules sit, and why there. Pods hang off the node's bridge through veths. Traffic
between two pods of one node is bridged, never routed; traffic to or from another node, the
node itself or a Service is routed. A filter must see both kinds, after the service proxy's
DNAT (kube's policies are about the pod behind a ClusterIP, as kube-router and Calico see
it), with connection tracking (the replies of an allowed connection pass). Measured on this
kernel (6.18, ``CONFIG_BRIDGE_NETFILTER=y``, ``CONFIG_NF_CONNTRACK_BRIDGE`` not set):

* the ``bridge`` family keyed by the pods' veths sees bridged frames in its forward hook and
  routed ones in output, but without nf_conntrack_bridge a bridged connection is never
  tracked: ``ct state established`` does not match its replies, so a default-deny could not
  let them back without stateless reverse rules;
* with br_netfilter (``net.bridge.bridge-nf-call-iptables``, per network namespace, 1 unless
  someone cleared it: the controller sets it in the node's namespace, as k3s and kube-router
  need it), bridged IPv4 frames go through the ``ip`` family's hooks too, tracked; the
  interfaces are the bridge then (not the veths), so the rules key pods by address.

So the table is ``ip corral-netpol`` with two base chains: ``forward`` (between pods, bridged
or routed, and to and from other nodes; after the DNAT of prerouting, before the masquerade of
postrouting, so it sees the pods' own addresses) and ``input`` (a pod to the node itself:
the cluster DNS behind its ClusterIP is there). Both let established and related connections
through first, then look the source up in ``egress-pods`` (this node's pods some Egress policy
selects -> their chain) and, in forward, the destination in ``ingress-pods``. A pod's chain
returns for what some policy allows (the union of them) and drops the rest; a pod in neither
map is open, as kube says of a pod no policy of that type selects. Output (the node's own
traffic to its pods: probes) is not filtered: kube does not let a pod block its node.

Peers: a podSelector (the policy's namespace) or namespaceSelector (all its pods), both
(AND), each the addresses of the pods they select now (more than one: a named set, one per
list of addresses, which every chain naming those pods shares); an ipBlock, its CIDR without its
excepts. Ports: protocol and port, a range with endPort, or a named port: the destination
pod's container port of that name (ingress: the pod the chain is for; egress: any pod with
it, as address . port pairs). The cluster DNS is no pod here: each node's serves on its
bridge address (the Node's ``corral.dev/cluster-dns-address``), which is taken as a pod of
kube-system labelled ``k8s-app: kube-dns`` with CoreDNS's ports (dns 53/UDP, dns-tcp 53/TCP),
so the usual "allow DNS to kube-dns in kube-system" egress rule means what it says.

One script replaces the table in one transaction (``nft -f`` is atomic).

Cost, measured on this 2-core VM (scratch namespaces: a node with a bridge, two pods on it;
2000 TCP connections one after another, connect, a byte each way, close; 15 interleaved
rounds, medians): with the table (the server pod selected by 21 policies, 500 peer pods) a
connection takes 1.11x the time it takes with no table, and 1.13x with the table and the pod
not selected: the cost is the base chains' hook, not the pod's chain. A table for 200 local
pods, 1000 peers and 10 policies is some 41 KB of script, built in 5 ms, applied by
``nft -f`` in about 0.03 s.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.client.labels import label_selector_matches

__all__ = [
    "DNS_LABELS",
    "TABLE",
    "PodInfo",
    "delete_script",
    "dns_pods",
    "pod_info",
    "ruleset",
    "selector_matches",
]

Obj = dict[str, Any]
TABLE = "corral-netpol"
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DNS_NAMESPACE = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_ADDRESS_ANNOTATION = "corral.dev/cluster-dns-address"
DNS_PORTS = (("dns", "UDP", 53), ("dns-tcp", "TCP", 53))


@dataclass(frozen=True)
class PodInfo:
    """What the rules need of a pod."""

    namespace: str
    name: str
    ip: str
    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, containerPort)


def pod_info(pod: Obj) -> PodInfo | None:
    """``pod`` as the rules see it; None for one that has no address of its own (not yet, or
    hostNetwork: kube's policies do not apply to those) or has finished (its address may be
    another pod's already)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    try:
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        return None
    ports = []
    for c in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        for p in c.get("ports") or ():
            if p.get("name") and isinstance(p.get("containerPort"), int):
                ports.append((p["name"], p.get("protocol") or "TCP", p["containerPort"]))
    return PodInfo(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        ip=ip,
        node=spec.get("nodeName") or "",
        labels=dict(meta.get("labels") or {}),
        ports=tuple(ports),
    )


def dns_pods(nodes: Iterable[Obj]) -> list[PodInfo]:
    """Each node's cluster DNS address as a kube-dns pod of kube-system."""
    out = []
    for n in nodes:
        meta = n.get("metadata") or {}
        address = (meta.get("annotations") or {}).get(DNS_ADDRESS_ANNOTATION)
        try:
            ip = str(ipaddress.IPv4Address(address or ""))
        except ValueError:
            continue
        out.append(
            PodInfo(DNS_NAMESPACE, f"dns-{meta.get('name', '')}", ip, "", DNS_LABELS, DNS_PORTS)
        )
    return out


def selector_matches(sel: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against ``labels``: an empty one selects everything."""
    return label_selector_matches(sel or {}, labels)


def _id(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest)[:8].decode()


def _chain(prefix: str, pod: PodInfo) -> str:
    # nft identifiers: letters, digits, '/', '\\', '_', '.', '-'; kube names fit
    text = f"{pod.namespace}/{pod.name}"
    return f"{prefix}-{_id(text)}-{text}"[:250]


def _set(items: Iterable[str]) -> str:
    items = sorted(set(items), key=_sort_key)
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _sort_key(text: str) -> tuple[int, ...] | str:
    try:
        return tuple(int(x) for x in text.replace("/", ".").replace(" . ", ".").split("."))
    except ValueError:
        return (1 << 32,)


class _Cluster:
    """The pods and namespaces the peers are looked up in."""

    def __init__(self, pods: list[PodInfo], namespaces: Mapping[str, Mapping[str, str]]):
        self.pods = pods
        self.namespaces = namespaces
        self.sets: dict[str, str] = {}  # name -> its elements: one set per list of addresses
        self._peers: dict[tuple[str, str, str], str] = {}

    def addresses(self, ips: list[str]) -> str:
        """``ips`` as a match operand: the address itself, or a named set shared by every
        chain that names the same pods (a peer selecting many pods is listed once)."""
        ips = sorted(set(ips), key=_sort_key)
        if len(ips) == 1:
            return ips[0]
        elements = ", ".join(ips)
        name = f"pods-{_id(elements)}"
        self.sets[name] = elements
        return f"@{name}"

    def ns_labels(self, name: str) -> Mapping[str, str]:
        labels = self.namespaces.get(name)
        if labels is None:  # the pseudo kube-dns pods' namespace, or one not listed yet
            return {"kubernetes.io/metadata.name": name}
        return labels

    def peer_operand(self, peer: Obj, namespace: str) -> str:
        """The addresses of the pods ``peer`` selects as a match operand; "" for none."""
        key = (namespace, repr(peer.get("podSelector")), repr(peer.get("namespaceSelector")))
        found = self._peers.get(key)
        if found is None:  # each peer of each policy once, whichever pods it applies to
            ips = self._select(peer, namespace)
            found = self._peers[key] = self.addresses(ips) if ips else ""
        return found

    def _select(self, peer: Obj, namespace: str) -> list[str]:
        pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
        out = []
        for p in self.pods:
            if ns_sel is not None:
                if not selector_matches(ns_sel, self.ns_labels(p.namespace)):
                    continue
            elif p.namespace != namespace:
                continue
            if pod_sel is not None and not selector_matches(pod_sel, p.labels):
                continue
            out.append(p.ip)
        return out


def _peer_matches(
    peers: list[Obj] | None, namespace: str, cluster: _Cluster, key: str
) -> list[str]:
    """The matches of a rule's peers on ``key`` (saddr for ingress, daddr for egress); [""]
    for no peers (everything); [] when none selects anything."""
    if not peers:
        return [""]
    out = []
    for peer in peers:
        block = peer.get("ipBlock")
        if block is not None:
            try:
                net = ipaddress.ip_network(block.get("cidr", ""), strict=False)
            except ValueError:
                continue
            if net.version != 4:
                continue  # an IPv4 table: an IPv6 block matches nothing here
            match = f"ip {key} {net}"
            excepts = []
            for text in block.get("except") or ():
                try:
                    inner = ipaddress.ip_network(text, strict=False)
                except ValueError:
                    continue
                if inner.version == 4:
                    excepts.append(str(inner))
            if excepts:
                match += f" ip {key} != {_set(excepts)}"
            out.append(match)
            continue
        operand = cluster.peer_operand(peer, namespace)
        if operand:
            out.append(f"ip {key} {operand}")
    return out


def _port_matches(ports: list[Obj] | None, named: Any, egress: bool) -> list[str]:
    """The matches of a rule's ports; [""] for none (every port); [] when none can match.
    ``named(name, protocol)``: ingress, the container ports of that name of the pod; egress,
    (address, port) pairs of every pod having one."""
    if not ports:
        return [""]
    out = []
    for p in ports:
        proto = PROTOCOLS.get(p.get("protocol") or "TCP")
        if proto is None:
            continue
        port, end = p.get("port"), p.get("endPort")
        if port is None:
            out.append(f"meta l4proto {proto}")
        elif isinstance(port, int):
            span = f"{port}-{end}" if isinstance(end, int) and end > port else str(port)
            out.append(f"meta l4proto {proto} th dport {span}")
        else:
            found = named(str(port), p.get("protocol") or "TCP")
            if not found:
                continue
            if egress:
                pairs = ", ".join(sorted(set(found), key=_sort_key))  # a set even for one
                out.append(f"meta l4proto {proto} ip daddr . th dport {{ {pairs} }}")
            else:
                out.append(f"meta l4proto {proto} th dport {_set(found)}")
    return out


def _selecting(policies: list[Obj], pod: PodInfo, kind: str) -> list[Obj]:
    out = []
    for np in policies:
        meta, spec = np.get("metadata") or {}, np.get("spec") or {}
        if meta.get("namespace") != pod.namespace or kind not in (spec.get("policyTypes") or ()):
            continue
        if selector_matches(spec.get("podSelector"), pod.labels):
            out.append(np)
    return out


def _lines(line_parts: Iterable[tuple[str, str]]) -> list[str]:
    out = []
    for peer, port in line_parts:
        text = " ".join(x for x in (peer, port) if x)
        out.append(f"{text} return" if text else "return")
    return out


def ruleset(
    policies: Iterable[Obj],
    pods: Iterable[PodInfo],
    namespaces: Mapping[str, Mapping[str, str]],
    node_name: str,
) -> str:
    """The ``nft -f`` script that replaces the table with the rules for this node's pods."""
    policies = sorted(
        policies,
        key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]),
    )
    pods = list(pods)
    cluster = _Cluster(pods, namespaces)
    ingress_map: list[str] = []
    egress_map: list[str] = []
    chains: list[str] = []

    def egress_named(name: str, protocol: str) -> list[str]:
        return [
            f"{p.ip} . {number}"
            for p in pods
            for (n, proto, number) in p.ports
            if n == name and proto == protocol
        ]

    seen: set[str] = set()
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if pod.node != node_name or not node_name or pod.ip in seen:
            continue
        seen.add(pod.ip)

        def ingress_named(name: str, protocol: str, pod: PodInfo = pod) -> list[str]:
            return [str(n) for (pn, proto, n) in pod.ports if pn == name and proto == protocol]

        for kind, chain_prefix, key, entries in (
            ("Ingress", "ingress", "saddr", ingress_map),
            ("Egress", "egress", "daddr", egress_map),
        ):
            selecting = _selecting(policies, pod, kind)
            if not selecting:
                continue
            body: list[str] = []
            for np in selecting:
                spec = np.get("spec") or {}
                ns = np["metadata"].get("namespace", "")
                for rule in spec.get(chain_prefix) or ():
                    peers = rule.get("from" if kind == "Ingress" else "to")
                    peer_matches = _peer_matches(peers, ns, cluster, key)
                    port_matches = _port_matches(
                        rule.get("ports"),
                        ingress_named if kind == "Ingress" else egress_named,
                        kind == "Egress",
                    )
                    body += _lines((a, b) for a in peer_matches for b in port_matches)
            body.append("drop")
            name = _chain(chain_prefix, pod)
            chains.append(f"chain {name} {{\n" + "\n".join(dict.fromkeys(body)) + "\n}")
            entries.append(f"{pod.ip} : jump {name}")

    def elements(items: list[str]) -> str:
        return f" elements = {{ {', '.join(items)} }};" if items else ""

    out = [
        f"table ip {TABLE} {{",
        f"map ingress-pods {{ type ipv4_addr : verdict;{elements(ingress_map)} }}",
        f"map egress-pods {{ type ipv4_addr : verdict;{elements(egress_map)} }}",
        *(
            f"set {name} {{ type ipv4_addr; elements = {{ {items} }}; }}"
            for name, items in sorted(cluster.sets.items())
        ),
        "chain forward {\ntype filter hook forward priority filter; policy accept;\n"
        "ct state established,related accept\n"
        "ip saddr vmap @egress-pods\n"
        "ip daddr vmap @ingress-pods\n}",
        "chain input {\ntype filter hook input priority filter; policy accept;\n"
        "ct state established,related accept\n"
        "ip saddr vmap @egress-pods\n}",
        *chains,
        "}",
    ]
    body = "\n".join(out) + "\n"
    return f"add table ip {TABLE}\ndelete table ip {TABLE}\n{body}"


def delete_script() -> str:
    """Remove the table (and nothing else); no error when it is absent."""
    return f"add table ip {TABLE}\ndelete table ip {TABLE}\n"
