"""The kubelet's service environment variables (orchestrator.kubelet.envvars) against what
Kubernetes' kubelet gives: its envvars.FromServices table (names, values, order) and
getServiceEnvVarMap's choice of services (the master ``kubernetes`` service always, the
pod's namespace unless enableServiceLinks is false)."""

from __future__ import annotations

from typing import Any

from orchestrator.kubelet.envvars import from_services, service_env, with_service_env
from orchestrator.kubelet.pods import node_manifest
from orchestrator.kubelet.volumes import PreparedVolumes


def svc(name: str, ip: str, *ports: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": list(ports)},
    }


def test_from_services_is_the_kubelet_table() -> None:
    services = [
        svc("foo-bar", "1.2.3.4", {"port": 8080, "protocol": "TCP"}),
        svc(
            "abc-123",
            "5.6.7.8",
            {"name": "u-d-p", "port": 8081, "protocol": "UDP"},
            {"name": "t-c-p", "port": 8081, "protocol": "TCP"},
        ),
        svc(
            "q-u-u-x",
            "9.8.7.6",
            {"port": 8082, "protocol": "TCP"},
            {"name": "8083", "port": 8083, "protocol": "TCP"},
        ),
        svc("svrc-clusterip-none", "None", {"port": 8082, "protocol": "TCP"}),
        svc("svrc-clusterip-empty", "", {"port": 8082, "protocol": "TCP"}),
    ]
    assert from_services(services) == [
        ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
        ("FOO_BAR_SERVICE_PORT", "8080"),
        ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
        ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
        ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
        ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
        ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
        ("ABC_123_SERVICE_HOST", "5.6.7.8"),
        ("ABC_123_SERVICE_PORT", "8081"),
        ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
        ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
        ("ABC_123_PORT", "udp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
        ("ABC_123_PORT_8081_UDP_PORT", "8081"),
        ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
        ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
        ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
        ("ABC_123_PORT_8081_TCP_PORT", "8081"),
        ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
        ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
        ("Q_U_U_X_SERVICE_PORT", "8082"),
        ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
        ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
        ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
        ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
        ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
        ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
        ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
        ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
        ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
        ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
    ]


KUBERNETES = svc("kubernetes", "10.43.0.1", {"name": "https", "port": 443, "protocol": "TCP"})
# what every pod of a k3s cluster has (10.43.0.1 is k3s' first service address)
KUBERNETES_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.43.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.43.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.43.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443",
    "KUBERNETES_PORT_443_TCP_ADDR": "10.43.0.1",
}
SERVICES = [
    KUBERNETES,
    svc("kubernetes", "1.2.3.8", {"port": 8086, "protocol": "TCP"}, ns="kubernetes"),
    svc("test", "1.2.3.1", {"port": 8081, "protocol": "TCP"}, ns="test1"),
    svc("api", "1.2.3.4", {"port": 8084, "protocol": "TCP"}, ns="test1"),
    svc("not-special", "1.2.3.8", {"port": 8088, "protocol": "TCP"}, ns="kubernetes"),
    svc("headless", "None", {"port": 80}, ns="test1"),
    svc("dns", "10.43.0.10", {"name": "dns", "port": 53, "protocol": "UDP"}, ns="kube-system"),
]


def test_the_master_service_always_and_the_namespace_with_links() -> None:
    env = service_env(SERVICES, "test1")
    assert env == {
        **KUBERNETES_ENV,
        **dict(from_services([SERVICES[3], SERVICES[2]])),
    }
    assert "HEADLESS_SERVICE_HOST" not in env and "DNS_SERVICE_HOST" not in env
    # enableServiceLinks: false: only the master service
    assert service_env(SERVICES, "test1", enable_service_links=False) == KUBERNETES_ENV
    assert service_env(SERVICES, "default", enable_service_links=False) == KUBERNETES_ENV


def test_a_namespace_service_named_kubernetes_wins_over_the_master_one() -> None:
    for order in (SERVICES, list(reversed(SERVICES))):
        env = service_env(order, "kubernetes")
        assert env["KUBERNETES_SERVICE_HOST"] == "1.2.3.8"
        assert env["KUBERNETES_SERVICE_PORT"] == "8086"
        assert "KUBERNETES_SERVICE_PORT_HTTPS" not in env
        assert env["NOT_SPECIAL_SERVICE_PORT"] == "8088"
        # without links the namespace's services are not seen: the master one is
        assert service_env(order, "kubernetes", False) == KUBERNETES_ENV


def test_the_runtime_gets_them_before_the_containers_own_env() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "default", "uid": "u"},
        "spec": {
            "enableServiceLinks": False,
            "serviceAccountName": "default",
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "env": [
                        {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
                        {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
                    ],
                }
            ],
        },
    }
    m = node_manifest(pod, PreparedVolumes({}, {}, {}), KUBERNETES_ENV)
    assert "enableServiceLinks" not in m["spec"]  # the kubelet's, done here
    (init,) = m["spec"]["initContainers"]
    assert init["env"] == [{"name": k, "value": v} for k, v in KUBERNETES_ENV.items()]
    (c,) = m["spec"]["containers"]
    assert c["env"][: len(KUBERNETES_ENV)] == init["env"]
    assert c["env"][len(KUBERNETES_ENV) :] == pod["spec"]["containers"][0]["env"]
    assert with_service_env(pod["spec"]["containers"][0], {}) is pod["spec"]["containers"][0]
