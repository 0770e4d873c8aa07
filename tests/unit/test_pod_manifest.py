"""Unit tests for runtime/pod/manifest.py: parsing and validating Pod manifests (no root)."""

from __future__ import annotations

import copy
import datetime
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.network.files import hosts_content
from runtime.pod.manifest import (
    Capabilities,
    ConfigMapVolume,
    ContainerPort,
    EmptyDirVolume,
    EnvVar,
    ExecAction,
    HostPathType,
    HostPathVolume,
    HTTPGetAction,
    HTTPHeader,
    KeyToPath,
    ManifestError,
    Pod,
    PodDnsConfig,
    Probe,
    Protocol,
    PullPolicy,
    Quantity,
    RestartPolicy,
    Scheme,
    SecretVolume,
    StorageMedium,
    TCPSocketAction,
    VolumeMount,
    is_image_archive,
    load_pod,
    loads_pod,
    parse_pod,
    parse_quantity,
)

BASE_DIR = "/srv/pods"

REALISTIC = """\
apiVersion: v1
kind: Pod
metadata:
  name: shop.frontend
  namespace: staging
  uid: 4c3a1f0e-9b1d-4d8e-a1c2-3f5e6d7c8b9a
  creationTimestamp: 2024-05-01T10:00:00Z
  resourceVersion: "1234"
  labels:
    app.kubernetes.io/name: shop
    tier: frontend
    empty: ""
  annotations:
    configmap.corral.io/nginx-conf: ./conf/nginx
    secret.corral.io/tls: /etc/corral/tls
    kubectl.kubernetes.io/last-applied-configuration: "{}"
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 45
  hostname: shop
  shareProcessNamespace: true
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
  initContainers:
  - name: migrate
    image: ./images/tools.tar.gz
    command: ["/bin/sh", "-c"]
    args: ["echo migrating; sleep 1"]
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  - name: warm-cache
    image: registry.example.com/shop/tools@sha256:0123
    securityContext:
      runAsUser: 0
  containers:
  - name: nginx
    image: nginx:1.25
    imagePullPolicy: Never
    ports:
    - containerPort: 8080
      name: http
    - containerPort: 8443
      name: https
      hostPort: 443
    - containerPort: 5353
      protocol: UDP
    env:
    - name: POD_IP
      valueFrom:
        fieldRef:
          apiVersion: v1
          fieldPath: status.podIP
    - name: MODE
      value: production
    - name: EMPTY
    resources:
      requests:
        cpu: 250m
        memory: 64Mi
      limits:
        cpu: "1"
        memory: 128Mi
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities:
        drop: [ALL]
        add: [NET_BIND_SERVICE, cap_chown]
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
        httpHeaders:
        - name: X-Probe
          value: liveness
      initialDelaySeconds: 5
      periodSeconds: 20
    readinessProbe:
      tcpSocket:
        port: 8080
      successThreshold: 2
      failureThreshold: 6
    startupProbe:
      httpGet:
        port: 8443
        scheme: HTTPS
        host: 127.0.0.1
      failureThreshold: 30
    volumeMounts:
    - name: conf
      mountPath: /etc/nginx/conf.d
      readOnly: true
    - name: tls
      mountPath: /etc/tls
      readOnly: true
    - name: scratch
      mountPath: /var/cache/nginx
      subPath: nginx
    - name: run
      mountPath: /run
  - name: log-shipper
    image: busybox
    command: [sh, -c, "tail -F /scratch/access.log"]
    workingDir: /scratch
    resources:
      limits:
        memory: 32Mi
    livenessProbe:
      exec:
        command: [cat, /scratch/access.log]
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  volumes:
  - name: scratch
    emptyDir: {}
  - name: run
    emptyDir:
      medium: Memory
      sizeLimit: 16Mi
  - name: host-logs
    hostPath:
      path: /var/log/shop
      type: DirectoryOrCreate
  - name: conf
    configMap:
      name: nginx-conf
      defaultMode: 0440
      items:
      - key: default.conf
        path: default.conf
      - key: gzip.conf
        path: extra/gzip.conf
        mode: 0400
  - name: tls
    secret:
      secretName: tls
status:
  phase: Running
  podIP: 10.88.0.5
"""


def base() -> dict[str, Any]:
    """A small valid manifest that the error cases below break one field at a time."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "annotations": {"configmap.corral.io/cfg": "cfg", "secret.corral.io/creds": "/creds"},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox:1.36",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
            ],
        },
    }


def parse(data: object) -> Pod:
    return parse_pod(data, base_dir=BASE_DIR)


def with_field(path: str, value: Any) -> dict[str, Any]:
    """base() with the field at a dotted path (list indexes as numbers) set; DELETE removes it."""
    data = base()
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def error_of(data: object) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse(data)
    return info.value


# ============================================================================= valid manifests


def test_realistic_manifest() -> None:
    pod = loads_pod(REALISTIC, base_dir=BASE_DIR)
    meta = pod.metadata
    assert (pod.name, pod.namespace, meta.uid) == (
        "shop.frontend",
        "staging",
        "4c3a1f0e-9b1d-4d8e-a1c2-3f5e6d7c8b9a",
    )
    assert dict(meta.labels) == {"app.kubernetes.io/name": "shop", "tier": "frontend", "empty": ""}
    assert meta.annotations["kubectl.kubernetes.io/last-applied-configuration"] == "{}"

    spec = pod.spec
    assert spec.restart_policy is RestartPolicy.ON_FAILURE
    assert spec.termination_grace_period_seconds == 45
    assert (spec.hostname, pod.hostname) == ("shop", "shop")
    assert spec.share_process_namespace and not spec.host_network
    assert [c.name for c in pod.all_containers] == ["migrate", "warm-cache", "nginx", "log-shipper"]

    migrate, warm = spec.init_containers
    assert migrate.image == "./images/tools.tar.gz"
    assert migrate.image_archive == "/srv/pods/images/tools.tar.gz"
    assert migrate.image_pull_policy is PullPolicy.IF_NOT_PRESENT
    assert migrate.command == ("/bin/sh", "-c")
    assert migrate.args == ("echo migrating; sleep 1",)
    assert migrate.env == (EnvVar("POD_NAME", field_ref="metadata.name"),)
    assert migrate.security_context.run_as_user == 1000  # from the pod
    assert warm.image_archive is None
    assert warm.image_pull_policy is PullPolicy.IF_NOT_PRESENT  # a digest
    assert (warm.security_context.run_as_user, warm.security_context.run_as_group) == (0, 1000)

    nginx = pod.container("nginx")
    assert nginx.image_pull_policy is PullPolicy.NEVER
    assert nginx.ports == (
        ContainerPort(8080, None, Protocol.TCP, "http"),
        ContainerPort(8443, 443, Protocol.TCP, "https"),
        ContainerPort(5353, None, Protocol.UDP, None),
    )
    assert nginx.env == (
        EnvVar("POD_IP", field_ref="status.podIP"),
        EnvVar("MODE", "production"),
        EnvVar("EMPTY", ""),
    )
    res = nginx.resources
    assert (res.requests.cpu, res.requests.memory) == (
        parse_quantity("250m"),
        parse_quantity("64Mi"),
    )
    assert (res.limits.cpu.milli(), res.limits.memory.ceil()) == (1000, 128 * 2**20)  # type: ignore[union-attr]
    sec = nginx.security_context
    assert sec.read_only_root_filesystem and not sec.privileged
    assert sec.allow_privilege_escalation is False
    assert sec.capabilities == Capabilities(
        add=("CAP_NET_BIND_SERVICE", "CAP_CHOWN"), drop=("ALL",)
    )
    assert (sec.run_as_user, sec.run_as_group) == (1000, 1000)
    assert nginx.liveness_probe == Probe(
        HTTPGetAction(
            port=8080,
            path="/healthz",
            http_headers=(HTTPHeader("X-Probe", "liveness"),),
            port_name="http",
        ),
        initial_delay_seconds=5,
        period_seconds=20,
    )
    assert nginx.readiness_probe == Probe(
        TCPSocketAction(8080), success_threshold=2, failure_threshold=6
    )
    assert nginx.startup_probe == Probe(
        HTTPGetAction(port=8443, host="127.0.0.1", scheme=Scheme.HTTPS), failure_threshold=30
    )
    assert nginx.volume_mounts == (
        VolumeMount("conf", "/etc/nginx/conf.d", True),
        VolumeMount("tls", "/etc/tls", True),
        VolumeMount("scratch", "/var/cache/nginx", False, "nginx"),
        VolumeMount("run", "/run"),
    )

    shipper = pod.container("log-shipper")
    assert shipper.working_dir == "/scratch"
    assert shipper.image_pull_policy is PullPolicy.ALWAYS  # no tag
    assert shipper.resources.requests.memory == parse_quantity("32Mi")  # defaulted to the limit
    assert shipper.resources.requests.cpu is None
    assert shipper.liveness_probe == Probe(ExecAction(("cat", "/scratch/access.log")))

    assert [v.name for v in spec.volumes] == ["scratch", "run", "host-logs", "conf", "tls"]
    assert pod.volume("scratch").source == EmptyDirVolume()
    assert pod.volume("run").source == EmptyDirVolume(StorageMedium.MEMORY, parse_quantity("16Mi"))
    assert pod.volume("host-logs").source == HostPathVolume(
        "/var/log/shop", HostPathType.DIRECTORY_OR_CREATE
    )
    assert pod.volume("conf").source == ConfigMapVolume(
        name="nginx-conf",
        local_path="/srv/pods/conf/nginx",
        items=(
            KeyToPath("default.conf", "default.conf"),
            KeyToPath("gzip.conf", "extra/gzip.conf", 0o400),
        ),
        default_mode=0o440,
    )
    assert pod.volume("tls").source == SecretVolume("tls", "/etc/corral/tls")


def test_minimal_defaults() -> None:
    pod = parse(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        }
    )
    assert pod.namespace == "default"
    assert pod.metadata.uid is None
    assert dict(pod.metadata.labels) == {} and dict(pod.metadata.annotations) == {}
    spec = pod.spec
    assert spec.restart_policy is RestartPolicy.ALWAYS
    assert spec.termination_grace_period_seconds == 30
    assert (spec.host_network, spec.share_process_namespace, spec.hostname) == (False, False, None)
    assert spec.init_containers == () and spec.volumes == ()
    (c,) = spec.containers
    assert c.image_pull_policy is PullPolicy.IF_NOT_PRESENT
    assert (c.command, c.args, c.env, c.ports, c.volume_mounts) == ((), (), (), (), ())
    assert c.working_dir is None
    assert c.resources.requests.cpu is None and c.resources.limits.memory is None
    sec = c.security_context
    assert (sec.run_as_user, sec.run_as_group, sec.privileged) == (None, None, False)
    assert sec.allow_privilege_escalation is None
    assert (c.liveness_probe, c.readiness_probe, c.startup_probe) == (None, None, None)


def test_probe_defaults_and_zero_means_default() -> None:
    data = with_field("spec.containers.0.livenessProbe", {"tcpSocket": {"port": 80}})
    assert parse(data).spec.containers[0].liveness_probe == Probe(
        TCPSocketAction(80),
        initial_delay_seconds=0,
        period_seconds=10,
        timeout_seconds=1,
        success_threshold=1,
        failure_threshold=3,
    )
    zeros = {
        "exec": {"command": ["true"]},
        "periodSeconds": 0,
        "timeoutSeconds": 0,
        "successThreshold": 0,
        "failureThreshold": 0,
    }
    probe = parse(with_field("spec.containers.0.readinessProbe", zeros)).spec.containers[0]
    assert probe.readiness_probe == Probe(ExecAction(("true",)))


def test_http_probe_path_gets_a_slash() -> None:
    data = with_field("spec.containers.0.readinessProbe", {"httpGet": {"port": 1, "path": "ok"}})
    probe = parse(data).spec.containers[0].readiness_probe
    assert probe is not None and probe.handler == HTTPGetAction(port=1, path="/ok")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", PullPolicy.ALWAYS),
        ("busybox:latest", PullPolicy.ALWAYS),
        ("busybox:1.36", PullPolicy.IF_NOT_PRESENT),
        ("localhost:5000/busybox", PullPolicy.ALWAYS),
        ("localhost:5000/busybox:1", PullPolicy.IF_NOT_PRESENT),
        ("busybox@sha256:abc", PullPolicy.IF_NOT_PRESENT),
        ("/images/busybox.tar", PullPolicy.IF_NOT_PRESENT),
    ],
)
def test_default_pull_policy(image: str, policy: PullPolicy) -> None:
    pod = parse(with_field("spec.containers.0.image", image))
    assert pod.spec.containers[0].image_pull_policy is policy


@pytest.mark.parametrize(
    ("image", "archive"),
    [
        ("busybox", False),
        ("docker.io/library/busybox:1.36", False),
        ("/abs/busybox.tar", True),
        ("./busybox", True),
        ("../images/busybox", True),
        ("busybox.tar", True),
        ("out/busybox.tar.gz", True),
        ("busybox.tgz", True),
        ("busybox.tar.zst", True),
        ("busybox.tar.xz", True),
    ],
)
def test_image_archive_rule(image: str, archive: bool) -> None:
    assert is_image_archive(image) is archive


def test_relative_paths_are_taken_from_the_manifest_directory(tmp_path: Path) -> None:
    data = with_field("spec.containers.0.image", "images/app.tar")
    (tmp_path / "pod.yaml").write_text(json.dumps(data))  # JSON is YAML
    pod = load_pod(tmp_path / "pod.yaml")
    assert pod.spec.containers[0].image_archive == str(tmp_path / "images/app.tar")
    assert pod.volume("cfg").source == ConfigMapVolume("cfg", str(tmp_path / "cfg"))
    assert pod.volume("creds").source == SecretVolume("creds", "/creds")


def test_relative_paths_without_a_file_use_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pod = parse_pod(with_field("spec.containers.0.image", "./app.tar"))
    assert pod.spec.containers[0].image_archive == str(tmp_path / "app.tar")


def test_missing_optional_source_is_an_empty_volume() -> None:
    data = with_field("metadata.annotations", {})
    data["spec"]["volumes"][1]["configMap"]["optional"] = True
    data["spec"]["volumes"][2]["secret"]["optional"] = True
    pod = parse(data)
    assert pod.volume("cfg").source == ConfigMapVolume("cfg", None, optional=True)
    assert pod.volume("creds").source == SecretVolume("creds", None, optional=True)


def test_resource_request_defaults_to_limit_per_resource() -> None:
    data = with_field(
        "spec.containers.0.resources",
        {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    )
    res = parse(data).spec.containers[0].resources
    assert (
        res.requests.cpu == Quantity(Fraction(1, 10)) and res.requests.memory == res.limits.memory
    )
    data = with_field("spec.containers.0.resources", {"requests": {"memory": "1Gi"}})
    res = parse(data).spec.containers[0].resources
    assert res.limits.memory is None and res.requests.memory is not None
    assert res.requests.memory.ceil() == 2**30


def test_request_equal_to_limit_written_differently() -> None:
    data = with_field(
        "spec.containers.0.resources", {"requests": {"cpu": "1000m"}, "limits": {"cpu": 1}}
    )
    res = parse(data).spec.containers[0].resources
    assert res.requests.cpu == res.limits.cpu
    assert str(res.requests.cpu) == str(res.limits.cpu) == "1"  # kube's canonical form


def test_host_network_defaults_host_ports() -> None:
    data = with_field("spec.hostNetwork", True)
    data["spec"]["containers"][0]["ports"].append({"containerPort": 53, "hostPort": 53})
    pod = parse(data)
    assert [p.host_port for p in pod.spec.containers[0].ports] == [8080, 53]


def test_host_port_may_repeat_across_protocols() -> None:
    data = with_field(
        "spec.containers.0.ports",
        [
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
            {"containerPort": 53, "hostPort": 53},
        ],
    )
    assert [p.protocol for p in parse(data).spec.containers[0].ports] == ["UDP", "TCP"]


def test_container_security_overrides_pod() -> None:
    data = with_field("spec.securityContext", {"runAsUser": 1000, "runAsGroup": 2000})
    data["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0, "privileged": True}
    data["spec"]["containers"].append({"name": "b", "image": "b"})
    a, b = parse(data).spec.containers
    assert (a.security_context.run_as_user, a.security_context.run_as_group) == (0, 2000)
    assert a.security_context.privileged
    assert (b.security_context.run_as_user, b.security_context.run_as_group) == (1000, 2000)


def test_ignored_fields_are_accepted() -> None:
    data = base()
    data["status"] = {"phase": "Pending", "anything": [1, 2]}
    data["metadata"].update(
        creationTimestamp=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        resourceVersion="7",
        generation=2,
        selfLink="/api/v1/namespaces/default/pods/web",
        managedFields=[{"manager": "kubectl"}],
    )
    assert parse(data).name == "web"


def test_null_fields_count_as_absent() -> None:
    data = base()
    data["spec"]["containers"][0].update(command=None, env=None, resources=None)
    data["spec"]["volumes"][0]["emptyDir"] = None  # YAML `emptyDir:`
    data["metadata"]["labels"] = None
    pod = parse(data)
    assert pod.spec.containers[0].command == ()
    assert pod.volume("data").source == EmptyDirVolume()


def test_hostname_defaults_to_pod_name_cut_to_63() -> None:
    name = "a" * 62 + "-b" + "c" * 10
    pod = parse(with_field("metadata.name", name))
    assert pod.spec.hostname is None and pod.hostname == "a" * 62
    assert parse(base()).hostname == "web"


def test_subdomain_gives_the_pod_a_cluster_fqdn() -> None:
    data = with_field("spec.subdomain", "db")
    data["metadata"]["namespace"] = "shop"
    pod = parse(data)
    assert pod.spec.subdomain == "db"
    assert pod.host_domain("cluster.local") == "db.shop.svc.cluster.local"
    assert pod.host_domain("") == "db.shop.svc"  # no cluster DNS configured
    assert parse(base()).host_domain("cluster.local") == ""
    hosts = hosts_content(pod.hostname, "10.42.0.5", domain=pod.host_domain("cluster.local"))
    assert "10.42.0.5\tweb.db.shop.svc.cluster.local\tweb\n" in hosts


def test_mount_paths_are_cleaned() -> None:
    data = with_field("spec.containers.0.volumeMounts.0", {"name": "data", "mountPath": "//x/./y/"})
    assert parse(data).spec.containers[0].volume_mounts[0].mount_path == "/x/y"


def test_model_is_frozen() -> None:
    pod = parse(base())
    with pytest.raises(AttributeError):
        pod.spec.containers[0].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        pod.metadata.annotations["x"] = "y"  # type: ignore[index]


def test_manifest_error_is_a_config_error() -> None:
    err = error_of(with_field("kind", "Service"))
    assert isinstance(err, ConfigError)
    assert (err.field, err.message) == ("kind", 'must be "Pod", not "Service"')
    assert str(err) == 'kind: must be "Pod", not "Service"'


# ============================================================================= errors


ERRORS: list[tuple[str, Any, str, str]] = [
    # (field to set, value, error field, error message)
    ("apiVersion", "apps/v1", "apiVersion", 'must be "v1", not "apps/v1"'),
    ("apiVersion", DELETE, "apiVersion", 'must be "v1", not ""'),
    ("kind", "Deployment", "kind", 'must be "Pod", not "Deployment"'),
    ("metadata", DELETE, "metadata", "is required"),
    ("spec", DELETE, "spec", "is required"),
    ("spec", [], "spec", "must be an object, not a list"),
    ("bogus", 1, "bogus", "unknown field"),
    # metadata
    ("metadata.name", DELETE, "metadata.name", "is required"),
    ("metadata.name", 7, "metadata.name", "must be a string, not an integer"),
    (
        "metadata.name",
        "Web",
        "metadata.name",
        'Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case'
        " alphanumeric characters, '-' or '.', and must start and end with an alphanumeric"
        " character",
    ),
    ("metadata.name", "a" * 254, "metadata.name", "must be no more than 253 characters"),
    ("metadata.namespace", "my.ns", "metadata.namespace", "must not contain dots"),
    ("metadata.uid", "../../x", "metadata.uid", 'Invalid value: "../../x"'),
    ("metadata.generateName", "web-", "metadata.generateName", "not supported by corral"),
    ("metadata.ownerReferences", [], "metadata.ownerReferences", "not supported by corral"),
    ("metadata.nmae", "x", "metadata.nmae", "unknown field"),
    ("metadata.labels", ["a"], "metadata.labels", "must be an object of strings, not a list"),
    ("metadata.labels", {"version": 1}, "metadata.labels.version", "must be a string"),
    ("metadata.labels", {"-x": "y"}, "metadata.labels", 'Invalid value: "-x": name part'),
    ("metadata.labels", {"a/b/c": "y"}, "metadata.labels", "with an optional DNS subdomain"),
    ("metadata.labels", {"/b": "y"}, "metadata.labels", "prefix part must be non-empty"),
    ("metadata.labels", {"Ex.com/b": "y"}, "metadata.labels", "prefix part a lowercase RFC 1123"),
    ("metadata.labels", {"a" * 64: "y"}, "metadata.labels", "no more than 63 characters"),
    ("metadata.labels", {"app": "-web"}, "metadata.labels", 'Invalid value: "-web"'),
    ("metadata.labels", {"app": "w" * 64}, "metadata.labels", "no more than 63 characters"),
    ("metadata.annotations", {"a b": ""}, "metadata.annotations", 'Invalid value: "a b"'),
    ("metadata.annotations", {"x": 1}, "metadata.annotations.x", "must be a string"),
    (
        "metadata.annotations",
        {"x": "v" * (256 * 1024)},
        "metadata.annotations",
        "Too long: may not be more than 262144 bytes",
    ),
    (
        "metadata.annotations",
        {"configmaps.corral.io/cfg": "x"},
        "metadata.annotations.configmaps.corral.io/cfg",
        "unknown corral annotation",
    ),
    # spec
    ("spec.nodeSelector", {"a": "b"}, "spec.nodeSelector", "not supported by corral"),
    ("spec.tolerations", [], "spec.tolerations", "not supported by corral"),
    ("spec.setHostnameAsFQDN", True, "spec.setHostnameAsFQDN", "not supported by corral"),
    ("spec.hostNetwrok", True, "spec.hostNetwrok", "unknown field"),
    ("spec.containers", [], "spec.containers", "is required: a pod needs at least one container"),
    ("spec.containers", {"name": "x"}, "spec.containers", "must be a list, not an object"),
    ("spec.containers.0", "busybox", "spec.containers[0]", "must be an object, not a string"),
    (
        "spec.restartPolicy",
        "Sometimes",
        "spec.restartPolicy",
        'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
    ),
    (
        "spec.terminationGracePeriodSeconds",
        -1,
        "spec.terminationGracePeriodSeconds",
        "Invalid value: -1: must be a non-negative integer",
    ),
    (
        "spec.terminationGracePeriodSeconds",
        "30",
        "spec.terminationGracePeriodSeconds",
        "must be a non-negative integer, not a string",
    ),
    (
        "spec.terminationGracePeriodSeconds",
        1.5,
        "spec.terminationGracePeriodSeconds",
        "must be a non-negative integer, not a number",
    ),
    ("spec.hostname", "my_host", "spec.hostname", 'Invalid value: "my_host"'),
    ("spec.subdomain", "My.Sub", "spec.subdomain", 'Invalid value: "My.Sub"'),
    ("spec.hostNetwork", "yes", "spec.hostNetwork", "must be true or false, not a string"),
    ("spec.shareProcessNamespace", 1, "spec.shareProcessNamespace", "must be true or false"),
    ("spec.securityContext.fsGroup", 1, "spec.securityContext.fsGroup", "not supported by corral"),
    (
        "spec.securityContext.runAsUser",
        -1,
        "spec.securityContext.runAsUser",
        "Invalid value: -1: must be an integer between 0 and 2147483647",
    ),
    # containers
    ("spec.containers.0.name", DELETE, "spec.containers[0].name", "is required"),
    ("spec.containers.0.name", "", "spec.containers[0].name", "is required"),
    ("spec.containers.0.name", "App", "spec.containers[0].name", 'Invalid value: "App"'),
    ("spec.containers.0.name", "a" * 64, "spec.containers[0].name", "no more than 63"),
    ("spec.containers.0.image", DELETE, "spec.containers[0].image", "is required"),
    ("spec.containers.0.image", " busybox", "spec.containers[0].image", "leading or trailing"),
    ("spec.containers.0.image", ["busybox"], "spec.containers[0].image", "must be a string"),
    ("spec.containers.0.lifecycle", {}, "spec.containers[0].lifecycle", "not supported by corral"),
    ("spec.containers.0.envFrom", [], "spec.containers[0].envFrom", "not supported by corral"),
    (
        "spec.containers.0.imagePullPolicy",
        "Sometimes",
        "spec.containers[0].imagePullPolicy",
        "Unsupported value",
    ),
    ("spec.containers.0.commands", ["x"], "spec.containers[0].commands", "unknown field"),
    (
        "spec.containers.0.command",
        "sleep 1",
        "spec.containers[0].command",
        "must be a list, not a string",
    ),
    (
        "spec.containers.0.args",
        ["-n", 5],
        "spec.containers[0].args[1]",
        "must be a string, not an integer",
    ),
    (
        "spec.containers.0.workingDir",
        "tmp",
        "spec.containers[0].workingDir",
        'must be an absolute path, not "tmp"',
    ),
    # env
    ("spec.containers.0.env", [{"value": "x"}], "spec.containers[0].env[0].name", "is required"),
    (
        "spec.containers.0.env",
        [{"name": "A=B"}],
        "spec.containers[0].env[0].name",
        "must consist of printable ASCII characters except '='",
    ),
    (
        "spec.containers.0.env",
        [{"name": "N", "value": 1}],
        "spec.containers[0].env[0].value",
        "must be a string, not an integer",
    ),
    (
        "spec.containers.0.env",
        [{"name": "N", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "spec.containers[0].env[0].valueFrom",
        "may not be specified when `value` is not empty",
    ),
    (
        "spec.containers.0.env",
        [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
        'unsupported value "spec.nodeName": must be one of "metadata.name", "metadata.namespace",'
        ' "metadata.uid", "status.podIP"',
    ),
    (
        "spec.containers.0.env",
        [
            {
                "name": "N",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}},
            }
        ],
        "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion",
        'Unsupported value: "v2": supported values: "v1"',
    ),
    (
        "spec.containers.0.env",
        [{"name": "N", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "spec.containers[0].env[0].valueFrom.secretKeyRef",
        "not supported by corral",
    ),
    (
        "spec.containers.0.env",
        [{"name": "N", "valueFrom": {}}],
        "spec.containers[0].env[0].valueFrom",
        "must specify one of: `fieldRef`",
    ),
    # ports
    (
        "spec.containers.0.ports.0",
        {"name": "x"},
        "spec.containers[0].ports[0].containerPort",
        "is required",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 0},
        "spec.containers[0].ports[0].containerPort",
        "Invalid value: 0: must be an integer between 1 and 65535",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 65536},
        "spec.containers[0].ports[0].containerPort",
        "Invalid value: 65536",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": "80"},
        "spec.containers[0].ports[0].containerPort",
        "not a string",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "hostPort": 70000},
        "spec.containers[0].ports[0].hostPort",
        "between 0 and 65535",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "protocol": "ICMP"},
        "spec.containers[0].ports[0].protocol",
        'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "protocol": "tcp"},
        "spec.containers[0].ports[0].protocol",
        "Unsupported value",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "hostIP": "1.2.3.4"},
        "spec.containers[0].ports[0].hostIP",
        "not supported by corral",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "name": "HTTP"},
        "spec.containers[0].ports[0].name",
        "alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "name": "a" * 16},
        "spec.containers[0].ports[0].name",
        "no more than 15 characters",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "name": "8080"},
        "spec.containers[0].ports[0].name",
        "must contain at least one letter",
    ),
    (
        "spec.containers.0.ports.0",
        {"containerPort": 80, "name": "a--b"},
        "spec.containers[0].ports[0].name",
        "must not contain consecutive hyphens",
    ),
    # resources
    (
        "spec.containers.0.resources",
        {"limits": {"memory": "12XB"}},
        "spec.containers[0].resources.limits.memory",
        'invalid quantity "12XB"',
    ),
    (
        "spec.containers.0.resources",
        {"limits": {"cpu": "1K"}},
        "spec.containers[0].resources.limits.cpu",
        'invalid quantity "1K"',
    ),
    (
        "spec.containers.0.resources",
        {"requests": {"cpu": True}},
        "spec.containers[0].resources.requests.cpu",
        "must be a quantity (a string or a number), not a boolean",
    ),
    (
        "spec.containers.0.resources",
        {"requests": {"memory": "-1Mi"}},
        "spec.containers[0].resources.requests[memory]",
        'Invalid value: "-1Mi": must be greater than or equal to 0',
    ),
    (
        "spec.containers.0.resources",
        {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
        "spec.containers[0].resources.requests",
        'Invalid value: "2": must be less than or equal to cpu limit of 1',
    ),
    (
        "spec.containers.0.resources",
        {"requests": {"memory": "1Gi"}, "limits": {"memory": "1G"}},
        "spec.containers[0].resources.requests",
        'Invalid value: "1Gi": must be less than or equal to memory limit of 1G',
    ),
    (
        "spec.containers.0.resources",
        {"limits": {"ephemeral-storage": "1Gi"}},
        "spec.containers[0].resources.limits.ephemeral-storage",
        "resource not supported by corral: only cpu and memory are",
    ),
    (
        "spec.containers.0.resources",
        {"claims": []},
        "spec.containers[0].resources.claims",
        "not supported by corral",
    ),
    (
        "spec.containers.0.resources",
        {"limit": {}},
        "spec.containers[0].resources.limit",
        "unknown field",
    ),
    # securityContext
    (
        "spec.containers.0.securityContext",
        {"runAsUser": 2**31},
        "spec.containers[0].securityContext.runAsUser",
        "Invalid value: 2147483648",
    ),
    (
        "spec.containers.0.securityContext",
        {"runAsGroup": "0"},
        "spec.containers[0].securityContext.runAsGroup",
        "not a string",
    ),
    (
        "spec.containers.0.securityContext",
        {"privileged": "true"},
        "spec.containers[0].securityContext.privileged",
        "must be true or false",
    ),
    (
        "spec.containers.0.securityContext",
        {"capabilities": {"add": ["NET_ADMIN", "FLY"]}},
        "spec.containers[0].securityContext.capabilities.add[1]",
        'unknown capability "FLY"',
    ),
    (
        "spec.containers.0.securityContext",
        {"capabilities": {"drop": "ALL"}},
        "spec.containers[0].securityContext.capabilities.drop",
        "must be a list",
    ),
    (
        "spec.containers.0.securityContext",
        {"privileged": True, "allowPrivilegeEscalation": False},
        "spec.containers[0].securityContext",
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
    ),
    (
        "spec.containers.0.securityContext",
        {"capabilities": {"add": ["SYS_ADMIN"]}, "allowPrivilegeEscalation": False},
        "spec.containers[0].securityContext",
        "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
    ),
    (
        "spec.containers.0.securityContext",
        {"seccompProfile": {}},
        "spec.containers[0].securityContext.seccompProfile",
        "not supported by corral",
    ),
    (
        "spec.containers.0.securityContext",
        {"runAsNonRoot": True},
        "spec.containers[0].securityContext.runAsNonRoot",
        "not supported by corral",
    ),
    # probes
    (
        "spec.containers.0.livenessProbe",
        {"periodSeconds": 5},
        "spec.containers[0].livenessProbe",
        "must specify a handler type: exec, httpGet or tcpSocket",
    ),
    (
        "spec.containers.0.livenessProbe",
        {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}},
        "spec.containers[0].livenessProbe.tcpSocket",
        "may not specify more than 1 handler type",
    ),
    (
        "spec.containers.0.livenessProbe",
        {"grpc": {"port": 1}},
        "spec.containers[0].livenessProbe.grpc",
        "not supported by corral",
    ),
    (
        "spec.containers.0.livenessProbe",
        {"exec": {"command": []}},
        "spec.containers[0].livenessProbe.exec.command",
        "is required",
    ),
    (
        "spec.containers.0.livenessProbe",
        {"exec": {"command": "true"}},
        "spec.containers[0].livenessProbe.exec.command",
        "must be a list",
    ),
    (
        "spec.containers.0.livenessProbe",
        {"tcpSocket": {"port": 1}, "successThreshold": 2},
        "spec.containers[0].livenessProbe.successThreshold",
        "must be 1, not 2",
    ),
    (
        "spec.containers.0.startupProbe",
        {"tcpSocket": {"port": 1}, "successThreshold": 3},
        "spec.containers[0].startupProbe.successThreshold",
        "must be 1, not 3",
    ),
    (
        "spec.containers.0.readinessProbe",
        {"tcpSocket": {"port": 1}, "periodSeconds": -1},
        "spec.containers[0].readinessProbe.periodSeconds",
        "Invalid value: -1: must be a non-negative integer",
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": "metrics"}},
        "spec.containers[0].readinessProbe.httpGet.port",
        'no container port named "metrics"',
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"path": "/"}},
        "spec.containers[0].readinessProbe.httpGet.port",
        "is required",
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": 0}},
        "spec.containers[0].readinessProbe.httpGet.port",
        "between 1 and 65535",
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": "8080"}},
        "spec.containers[0].readinessProbe.httpGet.port",
        "at least one letter",
    ),
    (
        "spec.containers.0.readinessProbe",
        {"tcpSocket": {"port": "Http"}},
        "spec.containers[0].readinessProbe.tcpSocket.port",
        'Invalid value: "Http"',
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": 80, "scheme": "FTP"}},
        "spec.containers[0].readinessProbe.httpGet.scheme",
        'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"',
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}},
        "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].name",
        'invalid HTTP header name "Bad Header"',
    ),
    (
        "spec.containers.0.readinessProbe",
        {"httpGet": {"port": 80, "query": "x"}},
        "spec.containers[0].readinessProbe.httpGet.query",
        "unknown field",
    ),
    # volume mounts
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "date", "mountPath": "/data"},
        "spec.containers[0].volumeMounts[0].name",
        'not found: no volume named "date"',
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data", "mountPath": "data"},
        "spec.containers[0].volumeMounts[0].mountPath",
        "must be an absolute path",
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data"},
        "spec.containers[0].volumeMounts[0].mountPath",
        "is required",
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data", "mountPath": "/d", "subPath": "../x"},
        "spec.containers[0].volumeMounts[0].subPath",
        "must not contain '..'",
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data", "mountPath": "/d", "subPath": "/x"},
        "spec.containers[0].volumeMounts[0].subPath",
        "must be a relative path",
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data", "mountPath": "/d", "readOnly": "yes"},
        "spec.containers[0].volumeMounts[0].readOnly",
        "must be true or false",
    ),
    (
        "spec.containers.0.volumeMounts.0",
        {"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional"},
        "spec.containers[0].volumeMounts[0].mountPropagation",
        "not supported by corral",
    ),
    # volumes
    (
        "spec.volumes.0",
        {"name": "data"},
        "spec.volumes[0]",
        "must specify a volume type: emptyDir, hostPath, configMap or secret",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}},
        "spec.volumes[0].hostPath",
        "may not specify more than 1 volume type",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
        "spec.volumes[0].persistentVolumeClaim",
        "not supported by corral",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "nfs": {}},
        "spec.volumes[0].nfs",
        "not supported by corral",
    ),
    (
        "spec.volumes.0",
        {"name": "Data", "emptyDir": {}},
        "spec.volumes[0].name",
        'Invalid value: "Data"',
    ),
    (
        "spec.volumes.1",
        {"name": "data", "emptyDir": {}},
        "spec.volumes[1].name",
        'Duplicate value: "data"',
    ),
    (
        "spec.volumes.0",
        {"name": "data", "emptyDir": {"medium": "HugePages"}},
        "spec.volumes[0].emptyDir.medium",
        'unsupported value "HugePages": must be one of "Memory"',
    ),
    (
        "spec.volumes.0",
        {"name": "data", "emptyDir": {"sizeLimit": "1Q"}},
        "spec.volumes[0].emptyDir.sizeLimit",
        'invalid quantity "1Q"',
    ),
    (
        "spec.volumes.0",
        {"name": "data", "emptyDir": {"sizeLimit": "-1"}},
        "spec.volumes[0].emptyDir.sizeLimit",
        "must be greater than or equal to 0",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "emptyDir": []},
        "spec.volumes[0].emptyDir",
        "must be an object, not a list",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "hostPath": {}},
        "spec.volumes[0].hostPath.path",
        "is required",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "hostPath": {"path": "var/log"}},
        "spec.volumes[0].hostPath.path",
        "must be an absolute path",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "hostPath": {"path": "/var/../etc"}},
        "spec.volumes[0].hostPath.path",
        "must not contain '..'",
    ),
    (
        "spec.volumes.0",
        {"name": "data", "hostPath": {"path": "/x", "type": "Dir"}},
        "spec.volumes[0].hostPath.type",
        'Unsupported value: "Dir": supported values: "DirectoryOrCreate", "Directory",'
        ' "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"',
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "other"}},
        "spec.volumes[1].configMap.name",
        'no local source for configMap "other": add the pod annotation'
        " configmap.corral.io/other: <file or directory>",
    ),
    (
        "spec.volumes.2",
        {"name": "creds", "secret": {"secretName": "other"}},
        "spec.volumes[2].secret.secretName",
        'no local source for secret "other": add the pod annotation'
        " secret.corral.io/other: <file or directory>",
    ),
    (
        "spec.volumes.2",
        {"name": "creds", "secret": {"name": "creds"}},
        "spec.volumes[2].secret.name",
        "unknown field",
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "Cfg"}},
        "spec.volumes[1].configMap.name",
        'Invalid value: "Cfg"',
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o1000}},
        "spec.volumes[1].configMap.defaultMode",
        "Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a"}]}},
        "spec.volumes[1].configMap.items[0].path",
        "is required",
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "/etc/a"}]}},
        "spec.volumes[1].configMap.items[0].path",
        'Invalid value: "/etc/a": must be a relative path',
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "x/../../a"}]}},
        "spec.volumes[1].configMap.items[0].path",
        "must not contain '..'",
    ),
    (
        "spec.volumes.1",
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a/b", "path": "a"}]}},
        "spec.volumes[1].configMap.items[0].key",
        'Invalid value: "a/b": a valid config key',
    ),
    (
        "spec.volumes.1",
        {
            "name": "cfg",
            "configMap": {
                "name": "cfg",
                "items": [{"key": "a", "path": "a"}, {"key": "b", "path": "a"}],
            },
        },
        "spec.volumes[1].configMap.items[1].path",
        'Duplicate value: "a"',
    ),
    (
        "spec.volumes.1",
        {
            "name": "cfg",
            "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a", "mode": -1}]},
        },
        "spec.volumes[1].configMap.items[0].mode",
        "must be a number between 0 and 0777",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    ERRORS,
    ids=[f"{case[2]}:{case[3][:30]}" for case in ERRORS],
)
def test_error_names_the_field(path: str, value: Any, field: str, message: str) -> None:
    err = error_of(with_field(path, value))
    assert err.field == field
    assert message in err.message, err.message


def test_exact_quantity_error_text() -> None:
    err = error_of(with_field("spec.containers.0.resources", {"limits": {"memory": "12XB"}}))
    assert str(err) == 'spec.containers[0].resources.limits.memory: invalid quantity "12XB"'


def test_duplicate_container_name_across_lists() -> None:
    data = with_field("spec.initContainers", [{"name": "app", "image": "busybox"}])
    err = error_of(data)
    assert (err.field, err.message) == ("spec.containers[0].name", 'Duplicate value: "app"')
    data = with_field(
        "spec.initContainers", [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}]
    )
    assert error_of(data).field == "spec.initContainers[1].name"


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe", "startupProbe"])
def test_init_containers_may_not_have_probes(probe: str) -> None:
    init = {"name": "init", "image": "x", probe: {"exec": {"command": ["true"]}}}
    err = error_of(with_field("spec.initContainers", [init]))
    assert (err.field, err.message) == (
        f"spec.initContainers[0].{probe}",
        "may not be set for init containers",
    )


def test_init_container_errors_name_init_containers() -> None:
    init = {"name": "init", "image": "x", "resources": {"limits": {"cpu": "lots"}}}
    err = error_of(with_field("spec.initContainers", [init]))
    assert str(err) == 'spec.initContainers[0].resources.limits.cpu: invalid quantity "lots"'


def test_duplicate_port_name() -> None:
    ports = [{"containerPort": 1, "name": "web"}, {"containerPort": 2, "name": "web"}]
    err = error_of(with_field("spec.containers.0.ports", ports))
    assert (err.field, err.message) == (
        "spec.containers[0].ports[1].name",
        'Duplicate value: "web"',
    )


def test_duplicate_host_port_across_containers() -> None:
    data = with_field("spec.containers.0.ports", [{"containerPort": 80, "hostPort": 8080}])
    data["spec"]["containers"].append(
        {"name": "b", "image": "b", "ports": [{"containerPort": 81, "hostPort": 8080}]}
    )
    err = error_of(data)
    assert (err.field, err.message) == (
        "spec.containers[1].ports[0].hostPort",
        'Duplicate value: "8080/TCP"',
    )


def test_host_network_host_port_must_match() -> None:
    data = with_field("spec.hostNetwork", True)
    data["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    err = error_of(data)
    assert (err.field, err.message) == (
        "spec.containers[0].ports[0].hostPort",
        "must match `containerPort` when `hostNetwork` is true",
    )


def test_duplicate_mount_path() -> None:
    mounts = [{"name": "data", "mountPath": "/d"}, {"name": "cfg", "mountPath": "/d/"}]
    err = error_of(with_field("spec.containers.0.volumeMounts", mounts))
    assert (err.field, err.message) == (
        "spec.containers[0].volumeMounts[1].mountPath",
        'Duplicate value: "/d"',
    )


def test_unknown_fields_are_reported_before_values() -> None:
    data = with_field("spec.containers.0.nmae", "x")
    data["spec"]["containers"][0]["image"] = 5
    assert error_of(data).field == "spec.containers[0].nmae"


def test_field_names_must_be_strings() -> None:
    data = base()
    data["spec"][1] = "x"
    err = error_of(data)
    assert (err.field, err.message) == ("spec", "field names must be strings, not 1")


def test_top_level_must_be_an_object() -> None:
    err = error_of(["a"])
    assert (err.field, err.message) == ("", "must be an object, not a list")
    assert str(err) == "must be an object, not a list"


# ============================================================================= YAML and files


def test_yaml_errors() -> None:
    with pytest.raises(ManifestError, match=r"^invalid YAML at line 3, column 1: did not find"):
        loads_pod("apiVersion: v1\nkind: [Pod\n")
    with pytest.raises(ManifestError, match="expected one Pod document, found 0"):
        loads_pod("")
    with pytest.raises(ManifestError, match="expected one Pod document, found 2"):
        loads_pod(REALISTIC + "---\n" + REALISTIC, base_dir=BASE_DIR)
    # A leading separator and an empty trailing document are fine.
    assert loads_pod("---\n" + REALISTIC + "---\n", base_dir=BASE_DIR).name == "shop.frontend"


def test_yaml_scalars_keep_their_types() -> None:
    text = REALISTIC.replace("value: production", "value: 1")
    with pytest.raises(ManifestError) as info:
        loads_pod(text, base_dir=BASE_DIR)
    assert info.value.field == "spec.containers[0].env[1].value"
    # YAML 1.1 octal modes, as kubectl reads them.
    pod = loads_pod(REALISTIC, base_dir=BASE_DIR)
    source = pod.volume("conf").source
    assert isinstance(source, ConfigMapVolume) and source.default_mode == 0o440


def test_load_pod_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"cannot read .*missing\.yaml"):
        load_pod(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ManifestError, match="is not UTF-8 text"):
        load_pod(bad)


# ============================================================================= quantities


QUANTITIES: list[tuple[object, Fraction]] = [
    ("0", Fraction(0)),
    ("2", Fraction(2)),
    ("0.5", Fraction(1, 2)),
    (".5", Fraction(1, 2)),
    ("5.", Fraction(5)),
    ("+1", Fraction(1)),
    ("-1", Fraction(-1)),
    ("500m", Fraction(1, 2)),
    ("1m", Fraction(1, 1000)),
    ("100u", Fraction(1, 10000)),
    ("3n", Fraction(3, 10**9)),
    ("1k", Fraction(1000)),
    ("1M", Fraction(10**6)),
    ("1G", Fraction(10**9)),
    ("1T", Fraction(10**12)),
    ("1P", Fraction(10**15)),
    ("1E", Fraction(10**18)),
    ("1Ki", Fraction(1024)),
    ("1Mi", Fraction(2**20)),
    ("1.5Gi", Fraction(3 * 2**29)),
    ("1Ti", Fraction(2**40)),
    ("1Pi", Fraction(2**50)),
    ("2Ei", Fraction(2**61)),
    ("0.1Ki", Fraction(512, 5)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("1e+3", Fraction(1000)),
    ("12e-3", Fraction(12, 1000)),
    ("1.5e2", Fraction(150)),
    ("128974848", Fraction(128974848)),
    ("129e6", Fraction(129 * 10**6)),
    ("123Mi", Fraction(123 * 2**20)),
    (3, Fraction(3)),
    (0.25, Fraction(1, 4)),
    (0.1, Fraction(1, 10)),  # from the float's shortest repr, not its binary value
    (1e-05, Fraction(1, 100000)),
    # ParseQuantity caps a binary magnitude at the largest int64 (a decimal one is capped for
    # use, as MilliValue/Value would overflow) and rounds up to a nano
    ("1e999", Fraction(2**63 - 1)),
    ("99999999999999999999Ti", Fraction(2**63 - 1)),
    ("-1e9223372036854775807", Fraction(-1, 10)),  # the exponent is kept as an int32: -1
    # apimachinery's scanner reads a missing number as zero
    ("Mi", Fraction(0)),
    (".", Fraction(0)),
    ("e3", Fraction(0)),
    ("-", Fraction(0)),
    ("1e-400", Fraction(1, 10**9)),
    ("0.0000000001", Fraction(1, 10**9)),
    ("0e999999999", Fraction(0)),
]

BAD_QUANTITIES: list[object] = [
    "",
    " 1",
    "1 ",
    "1K",  # decimal kilo is "k"
    "1Kb",
    "1kb",
    "1KiB",
    "1mi",
    "1XB",
    "12XB",
    "1.2.3",
    "1e",
    "Ei",  # (no digits: on apimachinery's slow path, which needs some)
    "e-10",
    "1e3.5",
    "1ee3",
    "--1",
    "1 Mi",
    "0x10",
    "１",  # a full-width digit
    "1e9223372036854775808",  # an exponent beyond int64 (strconv.ParseInt)
    "1e" + "9" * 5000,  # (int() refuses that many digits)
    "NaN",
    float("inf"),
    float("nan"),
    None,
    True,
    [1],
]


@pytest.mark.parametrize(("text", "value"), QUANTITIES, ids=[repr(q[0]) for q in QUANTITIES])
def test_quantity_values(text: object, value: Fraction) -> None:
    q = parse_quantity(text)
    assert q.value == value
    if isinstance(text, str):
        assert str(q) == text


@pytest.mark.parametrize("text", BAD_QUANTITIES, ids=[repr(q) for q in BAD_QUANTITIES])
def test_bad_quantities(text: object) -> None:
    with pytest.raises(ManifestError) as info:
        parse_quantity(text, "x.y")
    assert info.value.field == "x.y"


@pytest.mark.parametrize(
    ("text", "milli", "ceil"),
    [
        ("1", 1000, 1),
        ("0.5", 500, 1),
        ("500m", 500, 1),
        ("2", 2000, 2),
        ("0.0001", 1, 1),  # rounded up, like MilliValue/Value
        ("1500m", 1500, 2),
        ("100n", 1, 1),
        ("0", 0, 0),
        ("1Mi", 2**20 * 1000, 2**20),
        ("0.5Ki", 512000, 512),
    ],
)
def test_quantity_rounding(text: str, milli: int, ceil: int) -> None:
    q = parse_quantity(text)
    assert (q.milli(), q.ceil()) == (milli, ceil)


def test_quantity_equality_and_order() -> None:
    assert parse_quantity("1") == parse_quantity("1000m") == parse_quantity("1e0")
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert hash(parse_quantity("1k")) == hash(parse_quantity("1000"))
    assert parse_quantity("0").is_zero() and not parse_quantity("1n").is_zero()


def test_quantity_error_message() -> None:
    with pytest.raises(ManifestError) as info:
        parse_quantity("1K", "spec.x")
    assert str(info.value) == 'spec.x: invalid quantity "1K"'


def test_base_manifest_is_valid() -> None:
    pod = parse(copy.deepcopy(base()))
    assert pod.spec.containers[0].ports == (ContainerPort(8080, name="http"),)


def test_dns_policy() -> None:
    """ClusterFirst (the default: the cluster's DNS when the node network has one), Default
    (the node's resolver), ClusterFirstWithHostNet and None (dnsConfig only) are taken."""
    assert parse(base()).spec.dns_policy == "ClusterFirst"
    for policy in ("ClusterFirst", "Default", "ClusterFirstWithHostNet"):
        assert parse(with_field("spec.dnsPolicy", policy)).spec.dns_policy == policy
    with pytest.raises(ManifestError, match=r"^spec.dnsConfig: Required value: must provide"):
        parse(with_field("spec.dnsPolicy", "None"))
    with pytest.raises(ManifestError, match=r"^spec.dnsPolicy: Unsupported value: \"Cluster\""):
        parse(with_field("spec.dnsPolicy", "Cluster"))


def test_dns_config() -> None:
    doc = with_field("spec.dnsPolicy", "None")
    doc["spec"]["dnsConfig"] = {
        "nameservers": ["1.2.3.4"],
        "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    spec = parse(doc).spec
    assert spec.dns_policy == "None"
    assert spec.dns_config == PodDnsConfig(
        ("1.2.3.4",),
        ("ns1.svc.cluster-domain.example", "my.dns.search.suffix"),
        (("ndots", "2"), ("edns0", None)),
    )
    doc["spec"]["dnsConfig"]["nameservers"] = []
    with pytest.raises(ManifestError, match=r"^spec.dnsConfig.nameservers: Required value"):
        parse(doc)
    doc["spec"]["dnsConfig"]["nameservers"] = ["1.2.3.4", "bad"]
    with pytest.raises(ManifestError, match=r"^spec.dnsConfig.nameservers\[1\]: Invalid value"):
        parse(doc)
    doc["spec"]["dnsConfig"]["nameservers"] = ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]
    with pytest.raises(ManifestError, match=r"more than 3 nameservers"):
        parse(doc)
    doc["spec"]["dnsConfig"] = {"nameservers": ["1.1.1.1"], "searches": ["Bad_Domain"]}
    with pytest.raises(ManifestError, match=r"^spec.dnsConfig.searches\[0\]"):
        parse(doc)
