"""Suite proxy: one full sync of the service proxy's rules for N services with 10 endpoints
each, ruleset built and applied (``nft -f``, one transaction), vs ``iptables-restore`` of an
equivalent ruleset in the shape kube-proxy's iptables mode writes (a chain per service with
``statistic`` rules, a chain per endpoint with its DNAT), built here from the same ports.

Everything runs in a network namespace made here (``OwnedNetns``), never the machine's own.
Each sample moves every endpoint, alternating between two layouts so that every apply changes
the rules: Corral as its proxy syncs (the table updated in place, one transaction) and with the
table replaced whole. CPU includes the nft / iptables-restore processes.

Connection setup: 200 TCP connections one after another (connect, accepted, closed by the
server) to a pod address on lo, through a service IP DNATed by Corral's rules among 100 other
services, vs straight to the pod address, and vs the same service in kube-proxy's iptables
layout.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable

from orchestrator.proxy import Endpoint, Ruleset, ServicePort, apply_ruleset, ruleset
from runtime.network import OwnedNetns
from runtime.network.netns import in_netns

from .model import CaseResult, RunnerResult, Sample, Status, SuiteResult
from .network import Clock
from .stats import interleaved_rounds, ratios

ENDPOINTS = 10


def ports(n: int, shift: int) -> list[ServicePort]:
    """``n`` service ports with 10 endpoints each; ``shift`` moves every endpoint."""
    out = []
    for i in range(n):
        eps = tuple(
            Endpoint(
                f"10.{100 + (k := i * ENDPOINTS + j + shift) // 65536}.{k // 256 % 256}.{k % 256}",
                8080,
            )  # fmt: skip
            for j in range(ENDPOINTS)
        )
        ip = str(ipaddress.IPv4Address("10.43.0.2") + i)
        out.append(ServicePort("bench", f"svc{i}", "http", "TCP", ip, 80, 30000 + i, eps))
    return out


def iptables_rules(svc_ports: list[ServicePort]) -> str:
    """An iptables-restore input for the nat table in kube-proxy's layout."""
    chains = [":PREROUTING ACCEPT", ":OUTPUT ACCEPT", ":POSTROUTING ACCEPT",
              ":SVC-ENTRY -", ":NODEPORTS -", ":MARK-MASQ -", ":POST -"]  # fmt: skip
    rules = [
        "-A PREROUTING -j SVC-ENTRY",
        "-A OUTPUT -j SVC-ENTRY",
        "-A POSTROUTING -j POST",
        "-A MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A POST -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully",
    ]
    for s, sp in enumerate(svc_ports):
        svc = f"SVC{s}"
        chains.append(f":{svc} -")
        rules.append(f"-A SVC-ENTRY -d {sp.cluster_ip}/32 -p tcp --dport {sp.port} -j {svc}")
        rules.append(f"-A NODEPORTS -p tcp --dport {sp.node_port} -j {svc}")
        n = len(sp.endpoints)
        for e, ep in enumerate(sp.endpoints):
            sep = f"SEP{s}-{e}"
            chains.append(f":{sep} -")
            left = n - e
            if left > 1:
                rules.append(
                    f"-A {svc} -m statistic --mode random --probability {1 / left:.11f} -j {sep}"
                )
            else:
                rules.append(f"-A {svc} -j {sep}")
            rules.append(f"-A {sep} -s {ep.ip}/32 -j MARK-MASQ")
            rules.append(f"-A {sep} -p tcp -j DNAT --to-destination {ep.ip}:{ep.port}")
    rules.append("-A SVC-ENTRY -m addrtype --dst-type LOCAL -j NODEPORTS")
    return "*nat\n" + "\n".join(chains + rules) + "\nCOMMIT\n"


def _restore(binary: str, text: str, netns: int) -> None:
    def run() -> None:
        res = subprocess.run([binary], input=text, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise OSError(f"{binary}: {res.stderr.strip()[-500:]}")

    in_netns(netns, run)


CONNECTIONS = 200  # connections per sample of the connection setup case
POD_IP = "10.42.0.10"


def _connect_case(runs: int, restore: str | None) -> CaseResult:
    """Connection setup (connect, accepted, closed) to a server at a pod address, straight
    to it and through a service IP whose DNAT rules sit among 100 other services': with
    Corral's nft rules, and with kube-proxy's iptables layout (another namespace). Each
    namespace of the bench has the pod address and a route to the service CIDR on lo."""
    import socket
    import threading

    with OwnedNetns() as ours, OwnedNetns() as theirs:
        assert ours.fd is not None and theirs.fd is not None
        paths = {
            "ours": f"/proc/{os.getpid()}/fd/{ours.fd}",
            "theirs": f"/proc/{os.getpid()}/fd/{theirs.fd}",
        }
        for path in paths.values():
            for cmd in (
                ["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", f"{POD_IP}/32", "dev", "lo"],
                ["ip", "route", "add", "10.43.0.0/16", "dev", "lo", "src", POD_IP],
            ):
                subprocess.run(["nsenter", f"--net={path}", *cmd], check=True, capture_output=True)
        svc = ports(100, 0)
        target = svc[50]
        svc[50] = ServicePort(target.namespace, target.name, target.port_name, "TCP",
                              target.cluster_ip, 80, target.node_port,
                              (Endpoint(POD_IP, 8080),))  # fmt: skip
        apply_ruleset(ruleset(svc, "10.42.0.0/24").replace_script(), paths["ours"])
        if restore:
            _restore(restore, iptables_rules(svc), theirs.fd)
        stop = threading.Event()
        servers: list[socket.socket] = []

        def serve(ns: int) -> None:
            srv = in_netns(ns, lambda: socket.create_server((POD_IP, 8080), backlog=512))
            servers.append(srv)

            def loop() -> None:
                while not stop.is_set():
                    try:
                        conn, _ = srv.accept()
                    except OSError:
                        return
                    conn.close()

            threading.Thread(target=loop, daemon=True).start()

        serve(ours.fd)
        if restore:
            serve(theirs.fd)

        def connections(ns: int, ip: str, port: int) -> Callable[[], Sample]:
            def run() -> Sample:
                def loop() -> Sample:
                    mark = Clock.now()
                    for _ in range(CONNECTIONS):
                        with socket.create_connection((ip, port), timeout=5) as c:
                            c.recv(1)  # the server's close
                    return Clock.since(mark)

                return in_netns(ns, loop)

            return run

        runners: list[tuple[str, Callable[[], Sample]]] = [
            ("through a service (corral nft rules)", connections(ours.fd, target.cluster_ip, 80)),
            ("straight to the pod address", connections(ours.fd, POD_IP, 8080)),
        ]
        if restore:
            runners.append(("through a service (kube-proxy iptables layout)",
                            connections(theirs.fd, target.cluster_ip, 80)))  # fmt: skip
        try:
            by_label = dict(runners)
            samples: dict[str, list[Sample]] = {label: [] for label in by_label}
            for fn in by_label.values():
                fn()  # warm-up
            for order in interleaved_rounds(list(by_label), runs):
                for label in order:
                    samples[label].append(by_label[label]())
        finally:
            stop.set()
            for srv in servers:
                srv.close()
    results = tuple(RunnerResult(label, tuple(samples[label])) for label in by_label)
    return CaseResult(
        f"connection setup, {CONNECTIONS} connections one after another",
        1,
        CONNECTIONS,
        results,
        ratios(results),
        (
            "connect + accept + close over lo in a netns of the bench; the service's DNAT among "
            "100 services x 10 endpoints",
        ),  # fmt: skip
    )


def proxy_suite(p: object) -> SuiteResult:
    from .suites import SUITES

    quick = bool(getattr(p, "quick", False))
    runs = 2 if quick else max(3, int(getattr(p, "runs", 5)))
    sizes = (100,) if quick else (100, 1000)
    nft = shutil.which("nft")
    if nft is None:
        return SuiteResult("proxy", SUITES["proxy"], Status.SKIPPED, "nft is not installed")
    restore = shutil.which("iptables-restore")
    notes = [] if restore else ["iptables-restore not found: no peer"]
    cases = []
    with OwnedNetns() as ours, OwnedNetns() as theirs:
        assert ours.fd is not None and theirs.fd is not None
        fd_ours, fd_theirs = ours.fd, theirs.fd
        for n in sizes:
            layouts = [ports(n, 0), ports(n, 5)]
            count = [0]

            held: list[Ruleset] = []  # what the namespace holds after the last corral run

            def corral(
                layouts: list[list[ServicePort]] = layouts,
                count: list[int] = count,
                held: list[Ruleset] = held,
                in_place: bool = True,
            ) -> Sample:
                mark = Clock.now()
                new = ruleset(layouts[count[0] % 2], "10.42.0.0/24")
                if in_place and held:
                    script = new.update_script(held[-1])
                else:
                    script = new.replace_script()
                apply_ruleset(script, f"/proc/{os.getpid()}/fd/{fd_ours}")
                held[:] = [new]
                count[0] += 1
                return Clock.since(mark)

            def corral_replace() -> Sample:
                return corral(in_place=False)

            def iptables(
                layouts: list[list[ServicePort]] = layouts, count: list[int] = count
            ) -> Sample:
                assert restore is not None
                mark = Clock.now()
                _restore(restore, iptables_rules(layouts[count[0] % 2]), fd_theirs)
                count[0] += 1
                return Clock.since(mark)

            runners: list[tuple[str, Callable[[], Sample]]] = [
                ("corral (nft -f, update in place)", corral),
                ("corral (nft -f, replace the table)", corral_replace),
            ]
            if restore:
                runners.append(("iptables-restore (kube-proxy layout)", iptables))
            samples: dict[str, list[Sample]] = {label: [] for label, _ in runners}
            by_label = dict(runners)
            for _label, fn in runners:  # warm-up: the first apply creates everything
                fn()
            for order in interleaved_rounds(list(by_label), runs):
                for label in order:
                    samples[label].append(by_label[label]())
            results = tuple(RunnerResult(label, tuple(samples[label])) for label in by_label)
            cases.append(
                CaseResult(
                    f"full proxy sync, {n} services x {ENDPOINTS} endpoints",
                    1,
                    1,
                    results,
                    ratios(results),
                    ("ruleset built and applied in one transaction, in a netns of the bench",),
                )
            )
    cases.append(_connect_case(runs, restore))
    return SuiteResult(
        "proxy", SUITES["proxy"], Status.OK, reason="; ".join(notes), cases=tuple(cases)
    )
