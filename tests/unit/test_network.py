"""Pod network pieces that need no root: config model, IPAM (many processes and threads),
/etc files, CNI conflists, and the import cost rule."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.network import (
    DnsConfig,
    Ipam,
    IpamExhausted,
    Netns,
    NetworkConfigError,
    NetworkError,
    PortMapping,
    hosts_content,
    load_config,
    parse_config,
    resolv_conf_content,
    veth_name,
    write_pod_files,
)
from runtime.network.cni import CniNetwork, CniResult

REPO = Path(__file__).resolve().parents[2]
NET = ipaddress.IPv4Network("10.88.0.0/24")


# config


def test_parse_a_full_node_config() -> None:
    cfg = parse_config(
        {
            "name": "pods",
            "bridge": "br-pods",
            "podCIDR": "10.88.1.0/24",
            "clusterCIDR": "10.88.0.0/16",
            "nodeAddress": "192.168.50.1",
            "masquerade": True,
            "firewall": "iptables",
            "mtu": 1450,
            "stateDir": "/tmp/x",
            "dns": {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local"]},
            "peers": [{"name": "b", "podCIDR": "10.88.2.0/24", "address": "192.168.50.2"}],
        }
    )
    assert str(cfg.gateway) == "10.88.1.1/24"
    assert cfg.directory == Path("/tmp/x/pods")
    assert cfg.peers[0].pod_cidr == ipaddress.IPv4Network("10.88.2.0/24")
    assert cfg.dns.nameservers == ("10.96.0.10",)
    assert parse_config({"podCIDR": "10.1.0.0/24"}).bridge == "corral0"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "podCIDR"),
        ({"podCIDR": "10.88.1.1/24"}, "podCIDR"),  # host bits set
        ({"podCIDR": "10.88.1.0/24", "bridje": "x"}, "bridje"),
        ({"podCIDR": "10.88.1.0/24", "bridge": "a-very-long-bridge-name"}, "bridge"),
        ({"podCIDR": "10.88.1.0/24", "firewall": "pf"}, "firewall"),
        ({"podCIDR": "10.88.1.0/24", "masquerade": "yes"}, "masquerade"),
        ({"podCIDR": "10.88.1.0/24", "peers": [{"podCIDR": "10.88.2.0/24"}]}, "peers[0].address"),
        (
            {
                "podCIDR": "10.88.1.0/24",
                "peers": [{"podCIDR": "10.88.1.0/25", "address": "1.2.3.4"}],
            },
            "peers[0].podCIDR",
        ),
    ],
)
def test_config_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(NetworkConfigError) as err:
        parse_config(data)
    assert err.value.step == field


def test_load_config_from_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "n.yaml").write_text(
        "podCIDR: 10.9.0.0/24\npeers:\n- {podCIDR: 10.9.1.0/24, address: 1.1.1.2}\n"
    )  # noqa: E501
    (tmp_path / "n.json").write_text(json.dumps({"podCIDR": "10.9.0.0/24"}))
    assert len(load_config(tmp_path / "n.yaml").peers) == 1
    assert load_config(tmp_path / "n.json").pod_cidr == ipaddress.IPv4Network("10.9.0.0/24")


def test_port_mappings_from_kubernetes_ports() -> None:
    assert PortMapping.from_k8s({"containerPort": 80}) is None
    assert PortMapping.from_k8s({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}) == (
        PortMapping(8080, 80, "udp")
    )
    with pytest.raises(NetworkConfigError):
        PortMapping.from_k8s({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"})
    with pytest.raises(NetworkConfigError):
        PortMapping(0, 80)


def test_veth_names_are_stable_and_fit_ifnamsiz() -> None:
    assert veth_name("a") == veth_name("a") != veth_name("b")
    assert len(veth_name("x" * 200)) <= 15


def test_netns_references() -> None:
    assert Netns.of(None).is_current
    assert Netns.of(5) == Netns(fd=5)
    assert Netns.of(Path("/run/netns/x")).path == "/run/netns/x"
    assert Netns(fd=7).proc_path().endswith("/fd/7")


# IPAM


def test_ipam_allocates_in_order_skipping_reserved_and_is_idempotent(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, NET)
    a = ipam.allocate("a")
    assert a == ipaddress.IPv4Address("10.88.0.2")  # .0 network, .1 gateway
    assert ipam.allocate("a") == a
    assert ipam.allocate("b") == a + 1
    assert ipam.lookup("b") == a + 1
    assert ipam.release("a") == a
    assert ipam.release("a") is None
    assert ipam.allocate("c") == a + 2  # round-robin: a freed address is not reused at once
    with pytest.raises(NetworkError):
        ipam.allocate("d", want=ipaddress.IPv4Address("10.88.0.3"))  # b has it
    with pytest.raises(NetworkError):
        ipam.allocate("../etc")


def test_ipam_survives_restarts_and_exhausts(tmp_path: Path) -> None:
    small = ipaddress.IPv4Network("10.88.0.0/29")  # 8 addresses, 5 assignable
    got = {Ipam(tmp_path, small).allocate(f"p{i}") for i in range(5)}
    assert len(got) == 5
    fresh = Ipam(tmp_path, small)  # a new process sees the same allocations
    assert set(fresh.allocations()) == got
    with pytest.raises(IpamExhausted):
        fresh.allocate("one-too-many")
    freed = fresh.release("p2")
    assert freed in got
    assert fresh.allocate("next") == freed  # the only free one


def test_ipam_reads_each_allocation_once_per_allocate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ipam = Ipam(tmp_path, NET)
    for i in range(10):
        ipam.allocate(f"p{i}")
    reads: list[str] = []
    real = Ipam._read

    def read(self: Ipam, dfd: int, name: str) -> str | None:
        reads.append(name)
        return real(self, dfd, name)

    monkeypatch.setattr(Ipam, "_read", read)
    ip = ipam.allocate("new")
    assert len(reads) == 10 and str(ip) not in reads  # the owners, once (not per question)
    reads.clear()
    assert ipam.allocate("p3") == ipaddress.IPv4Address("10.88.0.5") and len(reads) == 11


def test_load_config_parses_again_only_when_the_text_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod's start asks for the node config twice: it is read each time (a change is seen
    at once) but parsed only when its text changed; a bad file fails every time."""
    from runtime.network import config

    p = tmp_path / "n.json"
    p.write_text('{"podCIDR": "10.9.0.0/24"}')
    parsed: list[object] = []
    real = config.parse_config

    def counted(data: object) -> object:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(config, "parse_config", counted)
    first = load_config(p)
    assert load_config(p) is first and len(parsed) == 1
    p.write_text('{"podCIDR": "10.7.0.0/24"}')
    assert load_config(p).pod_cidr == ipaddress.IPv4Network("10.7.0.0/24")
    p.write_text('{"podCIDR": "10.7.0.0/24", "bogus": 1}')
    for _ in range(2):
        with pytest.raises(NetworkConfigError):
            load_config(p)


def test_ipam_allocate_parses_no_address_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allocation reads every owner (a node's pods) but parses none of their addresses:
    the names are compared as text."""
    ipam = Ipam(tmp_path, NET)
    for i in range(10):
        ipam.allocate(f"p{i}")
    parsed: list[object] = []

    class Counted(ipaddress.IPv4Address):
        def __init__(self, address: object) -> None:
            parsed.append(address)
            super().__init__(address)

    monkeypatch.setattr(ipaddress, "IPv4Address", Counted)
    ip = ipam.allocate("new")
    assert ip == NET.network_address + 12 and len(parsed) <= 3  # the hint, the candidate
    parsed.clear()
    assert ipam.allocate("p3") == NET.network_address + 5 and len(parsed) == 1


@pytest.mark.parametrize(
    "name",
    [
        "10.88.0.5",
        "0.0.0.0",
        "255.255.255.255",
        "010.88.0.5",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        ".10.88.0.5.1.2",
        "10.88.0.5\n",
        "a.b.c.d",
        "1.2.3.-4",
        "1.2.3.04",
        "",
        "lock",
    ],
)
def test_ipam_address_file_names_are_what_ipv4address_takes(tmp_path: Path, name: str) -> None:
    from runtime.network.ipam import _ADDRESS

    try:
        ipaddress.IPv4Address(name)
        valid = True
    except ValueError:
        valid = False
    assert (_ADDRESS.fullmatch(name) is not None) == valid


def test_ipam_gc_frees_only_dead_owners(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, NET)
    for p in ("live", "dead1", "dead2"):
        ipam.allocate(p)
    freed = ipam.gc({"live"})
    assert sorted(freed.values()) == ["dead1", "dead2"]
    assert list(ipam.allocations().values()) == ["live"]


def _allocate_many(args: tuple[str, int, int]) -> list[str]:
    directory, worker, count = args
    ipam = Ipam(directory, ipaddress.IPv4Network("10.88.0.0/22"))

    def one(i: int) -> str:
        return str(ipam.allocate(f"w{worker}-{i}"))

    with ThreadPoolExecutor(4) as pool:  # threads inside each process, too
        return list(pool.map(one, range(count)))


def test_ipam_never_hands_out_an_address_twice_under_concurrency(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # fresh processes, as separate `corral` runs
    with ctx.Pool(6) as pool:
        results = pool.map(_allocate_many, [(str(tmp_path), w, 40) for w in range(6)])
    ips = [ip for r in results for ip in r]
    assert len(ips) == 240 and len(set(ips)) == 240
    on_disk = Ipam(tmp_path, ipaddress.IPv4Network("10.88.0.0/22")).allocations()
    assert sorted(map(str, on_disk)) == sorted(ips)


# /etc files


def test_hosts_and_resolv_conf(tmp_path: Path) -> None:
    hosts = hosts_content("web", "10.88.0.5", {"10.0.0.9": ["db", "db.local"]}, "ns.svc")
    assert "127.0.0.1\tlocalhost\n" in hosts
    assert "10.88.0.5\tweb.ns.svc\tweb\n" in hosts
    assert hosts.endswith("10.0.0.9\tdb db.local\n")
    dns = DnsConfig(("10.96.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"), ("a.svc", "svc"), ("ndots:5",))
    assert resolv_conf_content(dns) == (
        "nameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"
        "search a.svc svc\noptions ndots:5\n"
    )
    files = write_pod_files(tmp_path / "etc", "web", "10.88.0.5", dns)
    assert files["hosts"].read_text() == hosts_content("web", "10.88.0.5")
    assert files["resolv.conf"].read_text() == resolv_conf_content(dns)
    assert files["hostname"].read_text() == "web\n"
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == [
        "hostname", "hosts", "resolv.conf",
    ]  # fmt: skip


# CNI config


def test_cni_conflists() -> None:
    net = CniNetwork.from_conflist(
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}
    )
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]
    single = CniNetwork.from_conflist({"cniVersion": "0.4.0", "name": "n", "type": "bridge"})
    assert single.plugins == ({"type": "bridge"},)
    with pytest.raises(NetworkConfigError):
        CniNetwork.from_conflist({"name": "n", "plugins": [{"bridge": "x"}]})
    res = CniResult({"ips": [{"address": "fd00::2/64"}, {"address": "10.1.0.2/24"}]})
    assert str(res.ip) == "10.1.0.2"


# import cost


def test_importing_the_network_package_does_not_import_pyroute2() -> None:
    code = "import sys, runtime.network, runtime.network.cni; print('pyroute2' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
