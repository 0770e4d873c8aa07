"""Suite proxy: one full sync of the service proxy's rules for N services with 10 endpoints
each, ruleset built and applied (``nft -f``, one transaction), vs ``iptables-restore`` of an
equivalent ruleset in the shape kube-proxy's iptables mode writes (a chain per service with
``statistic`` rules, a chain per endpoint with its DNAT), built here from the same ports.

Everything runs in a network namespace made here (``OwnedNetns``), never the machine's own.
Each sample moves every endpoint, alternating between two layouts so that every apply changes
the rules: Corral as its proxy syncs (the table updated in place, one transaction) and with the
table replaced whole. CPU includes the nft / iptables-restore processes.
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
    return SuiteResult(
        "proxy", SUITES["proxy"], Status.OK, reason="; ".join(notes), cases=tuple(cases)
    )
