"""A pod's /etc/hosts and /etc/resolv.conf, as text and written into a directory."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from corral_common import hostsys
from runtime.network.config import DnsConfig

HOSTS_HEADER = "# Kubernetes-managed hosts file (written by corral).\n"
_BASE_HOSTS = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("fe00::0", "ip6-mcastprefix"),
    ("fe00::1", "ip6-allnodes"),
    ("fe00::2", "ip6-allrouters"),
)


def hosts_content(
    hostname: str,
    ip: ipaddress.IPv4Address | str | None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    domain: str = "",
) -> str:
    """The pod's hosts file: the base entries, its own address and hostname (plus the FQDN when
    ``domain`` is given), then ``aliases`` (Kubernetes hostAliases: ip -> hostnames)."""
    lines = [HOSTS_HEADER] + [f"{addr}\t{names}\n" for addr, names in _BASE_HOSTS]
    if ip is not None:
        names = f"{hostname}.{domain}\t{hostname}" if domain else hostname
        lines.append(f"{ip}\t{names}\n")
    for addr, names in (aliases or {}).items():
        ipaddress.ip_address(addr)  # validates
        lines.append(f"{addr}\t{' '.join(names)}\n")
    return "".join(lines)


def host_resolv(path: str = "/etc/resolv.conf") -> DnsConfig:
    """The node's resolver settings, minus loopback nameservers a pod cannot reach."""
    servers, searches, options = [], [], []
    try:
        text = Path(path).read_text()
    except OSError:
        return DnsConfig()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            try:
                if not ipaddress.ip_address(words[1]).is_loopback:
                    servers.append(words[1])
            except ValueError:
                continue
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return DnsConfig(tuple(servers), tuple(searches), tuple(options))


MAX_NAMESERVERS = 3  # what the resolver reads, and kube's limits
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_OPTIONS = ("ndots:5",)


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merge_options(
    existing: Sequence[str], extra: Sequence[tuple[str, str | None]]
) -> tuple[str, ...]:
    """Options by name, a later value replacing an earlier one (as the kubelet's
    mergeDNSOptions; in first-seen order where its map has none)."""
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for name, value in extra:
        merged[name] = value or ""
    return tuple(f"{n}:{v}" if v else n for n, v in merged.items())


def _fit_searches(searches: Sequence[str]) -> tuple[str, ...]:
    """At most MAX_SEARCHES domains and MAX_SEARCH_CHARS characters (the kubelet trims)."""
    out = list(searches[:MAX_SEARCHES])
    while out and len(" ".join(out)) > MAX_SEARCH_CHARS:
        out.pop()
    return tuple(out)


def pod_dns(
    policy: str,
    namespace: str,
    cluster: DnsConfig,
    host: DnsConfig,
    *,
    host_network: bool = False,
    extra_nameservers: Sequence[str] = (),
    extra_searches: Sequence[str] = (),
    extra_options: Sequence[tuple[str, str | None]] = (),
) -> DnsConfig:
    """A pod's resolver settings as the kubelet composes them (its dns.Configurer.GetPodDNS).

    ``policy`` is spec.dnsPolicy; ``cluster`` the node's cluster DNS (its nameservers are the
    kubelet's --cluster-dns, ``cluster_domain`` its --cluster-domain); ``host`` the node's own
    resolv.conf; ``extra_*`` spec.dnsConfig.

    * ClusterFirst (not hostNetwork) and ClusterFirstWithHostNet: the cluster's nameservers,
      ``search <ns>.svc.<domain> svc.<domain> <domain>`` then the host's searches,
      ``options ndots:5``; without a cluster DNS, what Default gives.
    * Default, and ClusterFirst with hostNetwork: the host's resolv.conf.
    * None: nothing but dnsConfig.

    dnsConfig is then appended: nameservers and searches without duplicates, options merged by
    name (dnsConfig's value wins). At most 3 nameservers and 32 searches (2048 characters)."""
    kind = policy
    if policy == "ClusterFirst":
        kind = "Default" if host_network else "Cluster"
    elif policy == "ClusterFirstWithHostNet":
        kind = "Cluster"
    if kind == "Cluster" and not cluster.nameservers:
        kind = "Default"  # the kubelet's MissingClusterDNS fallback
    if kind == "None":
        servers: tuple[str, ...] = ()
        searches: tuple[str, ...] = ()
        options: tuple[str, ...] = ()
    elif kind == "Cluster":
        servers = cluster.nameservers
        d = cluster.cluster_domain
        first = (f"{namespace}.svc.{d}", f"svc.{d}", d) if d else ()
        searches = _unique([*first, *cluster.searches, *host.searches])
        options = cluster.options or (CLUSTER_OPTIONS if d else ())
    else:
        servers, searches, options = host.nameservers, host.searches, host.options
    servers = _unique([*servers, *extra_nameservers])[:MAX_NAMESERVERS]
    searches = _fit_searches(_unique([*searches, *extra_searches]))
    options = _merge_options(options, extra_options)
    return DnsConfig(
        servers, searches, options, cluster.cluster_domain if kind == "Cluster" else ""
    )


def resolv_conf_content(dns: DnsConfig) -> str:
    lines = [f"nameserver {s}\n" for s in dns.nameservers[:3]]  # the resolver reads three
    if dns.searches:
        lines.append(f"search {' '.join(dns.searches[:32])}\n")
    if dns.options:
        lines.append(f"options {' '.join(dns.options)}\n")
    return "".join(lines)


def _write(path: Path, text: str) -> None:
    # Not fsync'd: the files serve the containers of a running pod or container, which a
    # machine crash ends; they are written again when it starts again.
    hostsys.host().write_atomic(path, text, 0o644, durable=False)


def write_pod_files(
    directory: str | os.PathLike[str],
    hostname: str,
    ip: ipaddress.IPv4Address | str | None,
    dns: DnsConfig | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    domain: str = "",
) -> dict[str, Path]:
    """Write ``hosts``, ``resolv.conf`` and ``hostname`` into ``directory`` (atomically each),
    for bind-mounting onto the pod's containers' /etc files. ``dns`` None: the node's own
    resolver settings."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if dns is None:
        dns = host_resolv()
    elif not dns.nameservers:
        dns = DnsConfig(host_resolv().nameservers, dns.searches, dns.options)
    out = {"hosts": d / "hosts", "resolv.conf": d / "resolv.conf", "hostname": d / "hostname"}
    _write(out["hosts"], hosts_content(hostname, ip, aliases, domain))
    _write(out["resolv.conf"], resolv_conf_content(dns))
    _write(out["hostname"], hostname + "\n")
    return out
