"""Probe hosts that are names: resolved at pod start (runtime/pod/probehost.py), the address
reaching monitor.conf, a name that does not resolve naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.pod.manifest import ManifestError, parse_pod
from runtime.pod.monconf import MonitorConf, containers_of, render
from runtime.pod.probehost import resolve_probe_hosts


def pod(**probes: Any) -> Any:
    c = {"name": "c", "image": "x:1", "command": ["true"], **probes}
    other = {"name": "d", "image": "x:1", "command": ["true"]}
    raw = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [other, c]}}  # fmt: skip
    return parse_pod(raw)


def table(names: dict[str, str]) -> Any:
    asked: list[str] = []

    def resolve(host: str) -> str:
        asked.append(host)
        if host not in names:
            raise OSError(-2, "Name or service not known")
        return names[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def conf_of(p: Any) -> str:
    bundles = {c.name: f"/b/{c.name}" for c in p.all_containers}
    conf = MonitorConf(runtime_arg=("rt",), runtime_root="/r", restart_policy="Always",
                       grace_s=1, containers=tuple(containers_of(p, bundles, {})))  # fmt: skip
    return render(conf)


def test_names_are_replaced_by_their_address() -> None:
    p = pod(
        readinessProbe={"tcpSocket": {"host": "db.example", "port": 5432}},
        livenessProbe={"httpGet": {"host": "web.example", "port": 80, "path": "/h"}},
        startupProbe={"exec": {"command": ["true"]}},
    )
    resolve = table({"db.example": "10.1.2.3", "web.example": "fd00::7"})
    out = conf_of(resolve_probe_hosts(p, resolve))
    assert "probe_tcp 10.1.2.3 5432\n" in out
    assert "probe_http http fd00::7 80 /h\n" in out
    assert "example" not in out
    assert sorted(resolve.asked) == ["db.example", "web.example"]


def test_addresses_localhost_and_no_host_are_not_looked_up() -> None:
    for host in ("10.0.0.1", "::1", "localhost", None):
        tcp: dict[str, Any] = {"port": 1}
        if host is not None:
            tcp["host"] = host
        p = pod(readinessProbe={"tcpSocket": tcp})
        resolve = table({})
        assert resolve_probe_hosts(p, resolve) is p
        assert resolve.asked == []


@pytest.mark.parametrize(
    "probes,field",
    [
        ({"readinessProbe": {"tcpSocket": {"host": "nosuch.example", "port": 1}}},
         "spec.containers[1].readinessProbe.tcpSocket.host"),
        ({"livenessProbe": {"httpGet": {"host": "nosuch.example", "port": 1}}},
         "spec.containers[1].livenessProbe.httpGet.host"),
    ],
)  # fmt: skip
def test_a_name_that_does_not_resolve_names_the_field(probes: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as ei:
        resolve_probe_hosts(pod(**probes), table({}))
    assert str(ei.value) == f"{field}: cannot resolve 'nosuch.example': Name or service not known"
