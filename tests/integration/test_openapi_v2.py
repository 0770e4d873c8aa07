"""OpenAPI v2 on ``corral server``: ``/openapi/v2`` as JSON and as the gnostic protobuf kubectl
1.20 asks for (content negotiation, ETag, 304, gzip), and what kubectl 1.20 does with it:
``kubectl explain`` of every served kind, client-side validation of ``create`` and ``apply``
(an unknown field, a wrong type: refused before anything is sent; ``--validate=false``: the
server's Warn), ``--dry-run=server`` (the PATCH operations list ``dryRun``), and no false
errors on the manifests of the README and a built-in kind of every served group. kubectl
1.32 reads it for ``explain --output=plaintext-openapiv2``; its ``--validate=strict`` is the
server's (``fieldValidation=Strict``)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.apiserver import gnostic
from tests.kubeserver import REPO, Kubectl, Server, api_only_server, kubectl_for, temp_namespace

PROTOBUF_120 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # kubectl 1.20
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # its newer name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("openapi-v2")) as srv:
        yield srv


@pytest.fixture(scope="module")
def k120(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for("1.20", server, tmp_path_factory)


@pytest.fixture(scope="module")
def k132(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for("1.32", server, tmp_path_factory)


@pytest.fixture
def ns(server: Server) -> Iterator[str]:
    with temp_namespace(server, "oa2") as name:
        yield name


def test_json_and_protobuf(server: Server) -> None:
    code, headers, body = server.request("GET", "/openapi/v2")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert headers["Vary"] == "Accept, Accept-Encoding"
    etag = headers["Etag"]
    assert re.fullmatch(r'"[0-9A-F]{128}"', etag)
    doc = json.loads(body)
    assert doc["swagger"] == "2.0"
    defs = doc["definitions"]
    assert defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "Pod", "version": "v1"}
    ]
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert containers["description"].startswith("List of containers belonging to the pod.")
    # a reference keeps its description beside it (no allOf in v2)
    strategy = defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys" and strategy["description"]
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "format": "int-or-string",
        "type": "string",
    }
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    params = {p["name"]: p for p in patch["parameters"]}
    assert params["body"]["in"] == "body" and params["body"]["required"] is True
    assert params["dryRun"] == {
        "description": params["dryRun"]["description"],
        "in": "query",
        "name": "dryRun",
        "type": "string",
        "uniqueItems": True,
    }
    assert patch["responses"]["200"]["schema"] == {
        "$ref": "#/definitions/io.k8s.api.apps.v1.Deployment"
    }
    # the protobuf form is the JSON one, message for message, under the same ETag
    for accept in (PROTOBUF_120, PROTOBUF, f"application/json;q=0.5, {PROTOBUF}"):
        code, headers, pb = server.request("GET", "/openapi/v2", headers={"Accept": accept})
        assert code == 200 and headers["Content-Type"] == PROTOBUF
        assert headers["Etag"] == etag
        assert pb == gnostic.encode(doc)
    code, headers, legacy = server.request("GET", "/swagger-2.0.0.pb-v1")
    assert code == 200 and legacy == pb and headers["Content-Type"] == PROTOBUF
    code, headers, zipped = server.request(
        "GET", "/openapi/v2", headers={"Accept": PROTOBUF_120, "Accept-Encoding": "gzip"}
    )
    assert code == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped) == pb
    code, headers, empty = server.request(
        "GET", "/openapi/v2", headers={"Accept": PROTOBUF_120, "If-None-Match": etag}
    )
    assert code == 304 and empty == b"" and headers["Etag"] == etag
    since = headers["Last-Modified"]
    code, _, _ = server.request("GET", "/openapi/v2", headers={"If-Modified-Since": since})
    assert code == 304
    code, _, _ = server.request(
        "GET", "/openapi/v2", headers={"If-Modified-Since": since, "If-None-Match": '"0"'}
    )
    assert code == 200  # a tag decides over a date
    code, _, _ = server.request("GET", "/openapi/v2", headers={"Accept": "text/html"})
    assert code == 406


def test_explain_120(k120: Kubectl) -> None:
    out = k120.run("explain", "pod.spec.containers.resources").stdout
    assert out.startswith("KIND:     Pod\nVERSION:  v1\n\nRESOURCE: resources <Object>\n")
    assert "ResourceRequirements describes the compute resource requirements." in out
    assert "   limits\t<map[string]string>\n     Limits describes the maximum amount" in out
    assert "   requests\t<map[string]string>\n" in out
    out = k120.run("explain", "deployment.spec.strategy.rollingUpdate.maxSurge").stdout
    assert "FIELD:    maxSurge <string>" in out
    assert "The maximum number of pods that can be scheduled" in out
    rows = k120.run("api-resources", "--no-headers").stdout.splitlines()
    assert len(rows) >= 25
    seen: set[str] = set()
    for row in rows:  # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        name, *_, api_version, _, kind = row.split()
        # kubectl maps a resource name to the kind of its first group (metrics.k8s.io's pods
        # and nodes are the core ones to it, on any cluster): such a kind goes by its name
        target = kind.lower() if name in seen else name
        seen.add(name)
        out = k120.run("explain", target, f"--api-version={api_version}").stdout
        assert out.startswith(f"KIND:     {kind}\nVERSION:  {api_version}\n"), out
        assert "\nDESCRIPTION:\n" in out and "\nFIELDS:\n" in out, out


def test_explain_current_from_v2(k132: Kubectl) -> None:
    """kubectl 1.32 reads the v2 document (with today's gnostic) for its old output."""
    out = k132.run(
        "explain", "pods.spec.containers.resources", "--output=plaintext-openapiv2"
    ).stdout
    assert out.startswith("KIND:     Pod\nVERSION:  v1\n\nRESOURCE: resources <Object>\n")
    assert "   limits\t<map[string]string>\n" in out


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "typo"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec},
    }


def test_validation_120(k120: Kubectl, server: Server, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "pod.json"
    f.write_text(json.dumps(_pod(foo="bar")))
    for verb in ("apply", "create", "replace"):
        p = k120.run(verb, "-n", ns, "-f", str(f), check=False)
        assert p.returncode == 1
        assert p.stderr == (
            f'error: error validating "{f}": error validating data: ValidationError(Pod.spec):'
            ' unknown field "foo" in io.k8s.api.core.v1.PodSpec; if you choose to ignore these'
            " errors, turn validation off with --validate=false\n"
        ), p.stderr
    code, _ = server.json("GET", f"/api/v1/namespaces/{ns}/pods/typo")
    assert code == 404  # nothing was sent
    f.write_text(json.dumps(_pod(terminationGracePeriodSeconds="soon", priority=None)))
    p = k120.run("create", "-n", ns, "-f", str(f), check=False)
    assert p.returncode == 1
    assert (
        "ValidationError(Pod.spec.terminationGracePeriodSeconds): invalid type for"
        ' io.k8s.api.core.v1.PodSpec.terminationGracePeriodSeconds: got "string", expected'
        ' "integer"' in p.stderr
    ), p.stderr
    # --validate=false: the server gets it, keeps what it knows and warns about the rest
    f.write_text(json.dumps(_pod(foo="bar")))
    p = k120.run("apply", "-n", ns, "-f", str(f), "--validate=false")
    assert p.stdout == "pod/typo created\n"
    assert 'Warning: unknown field "spec.foo"' in p.stderr
    code, pod = server.json("GET", f"/api/v1/namespaces/{ns}/pods/typo")
    assert code == 200 and "foo" not in pod["spec"]


def test_dry_run_server_120(k120: Kubectl, server: Server, ns: str) -> None:
    """kubectl 1.20 sends ``--dry-run=server`` only for a kind whose PATCH takes dryRun."""
    pod = json.dumps(_pod())
    p = k120.run("create", "-n", ns, "-f", "-", "--dry-run=server", input=pod)
    assert p.stdout == "pod/typo created (server dry run)\n"
    code, _ = server.json("GET", f"/api/v1/namespaces/{ns}/pods/typo")
    assert code == 404


def test_validate_strict_current(k132: Kubectl, server: Server, ns: str) -> None:
    """kubectl 1.32 leaves validation to the server (the v3 PATCH lists fieldValidation)."""
    pod = json.dumps(_pod(foo="bar"))
    p = k132.run("apply", "-n", ns, "-f", "-", "--validate=strict", input=pod, check=False)
    assert p.returncode == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Pod in version "v1"'
        ' cannot be handled as a Pod: strict decoding error: unknown field "spec.foo"'
    ) in p.stderr, p.stderr
    p = k132.run("apply", "-n", ns, "-f", "-", "--validate=warn", input=pod)
    assert p.stdout == "pod/typo created\n"
    assert 'Warning: unknown field "spec.foo"' in p.stderr


# A built-in kind of every served group (core, apps, batch, coordination, discovery, policy,
# rbac, scheduling; the review groups below), with the int-or-string, quantity, probe,
# volume, selector and list fields manifests commonly use.
MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {a: "1", b.txt: hello}
binaryData: {c: aGVsbG8=}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
stringData: {user: admin}
data: {pass: c2VjcmV0}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Service
metadata: {name: svc, labels: {app: svc}}
spec:
  selector: {app: svc}
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
  - {name: alt, port: 8443, targetPort: 8443}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dep, labels: {app: dep}, annotations: {note: "x"}}
spec:
  replicas: 2
  revisionHistoryLimit: 3
  minReadySeconds: 1
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}}
  selector:
    matchLabels: {app: dep}
    matchExpressions: [{key: tier, operator: In, values: [web]}]
  template:
    metadata: {labels: {app: dep, tier: web}}
    spec:
      serviceAccountName: robot
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{key: k, operator: Exists, effect: NoExecute, tolerationSeconds: 5}]
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 10
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: dep}}
      securityContext: {runAsUser: 1000, fsGroup: 2000, runAsNonRoot: true}
      volumes:
      - {name: conf, configMap: {name: conf, defaultMode: 0644, items: [{key: a, path: a}]}}
      - {name: creds, secret: {secretName: creds, optional: true}}
      - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
      initContainers:
      - {name: init, image: busybox, command: [sh, -c, "true"]}
      containers:
      - name: app
        image: busybox:1.36
        imagePullPolicy: IfNotPresent
        args: [httpd, -f, -p, "8080"]
        workingDir: /
        ports: [{name: http, containerPort: 8080, protocol: TCP}]
        env:
        - {name: A, value: "1"}
        - name: FROM_CONF
          valueFrom: {configMapKeyRef: {name: conf, key: a}}
        - name: LIMIT
          valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
        envFrom: [{secretRef: {name: creds}, prefix: S_}]
        resources:
          requests: {cpu: 100m, memory: 32Mi}
          limits: {cpu: 1, memory: 64Mi, ephemeral-storage: 1Gi}
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
        livenessProbe: {tcpSocket: {port: 8080}, initialDelaySeconds: 3, failureThreshold: 5}
        startupProbe: {exec: {command: ["true"]}}
        lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        volumeMounts:
        - {name: conf, mountPath: /conf, readOnly: true}
        - {name: scratch, mountPath: /tmp, subPath: t}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  serviceName: svc
  replicas: 1
  podManagementPolicy: Parallel
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 0}}
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      containers: [{name: app, image: busybox}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      containers: [{name: app, image: busybox}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: job}
spec:
  backoffLimit: 2
  completions: 3
  parallelism: 2
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: OnFailure
      containers: [{name: app, image: busybox, command: ["true"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron}
spec:
  schedule: "*/5 * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: app, image: busybox}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lease}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: slice, labels: {kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec:
  minAvailable: 50%
  selector: {matchLabels: {app: dep}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules:
- apiGroups: [""]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: ServiceAccount, name: robot}
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
"""

CLUSTER_MANIFESTS = """
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: oa2-high}
value: 1000
preemptionPolicy: Never
description: for the test
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: oa2-viewer}
rules:
- {apiGroups: [apps], resources: [deployments], verbs: [get]}
- {nonResourceURLs: [/healthz], verbs: [get]}
"""


def test_manifests_validate_120(k120: Kubectl, server: Server, ns: str, tmp_path: Path) -> None:
    """What the README applies and a kind of every served group pass kubectl 1.20's
    validation, are stored, apply again, and validate as the server returns them."""
    docs = list(yaml.safe_load_all(MANIFESTS))
    files = {
        "examples/pod.yaml": REPO / "examples" / "pod.yaml",
        "examples/deployment.yaml": REPO / "examples" / "deployment.yaml",
        "kinds.yaml": tmp_path / "kinds.yaml",
        "cluster.yaml": tmp_path / "cluster.yaml",
    }
    files["kinds.yaml"].write_text(MANIFESTS)
    files["cluster.yaml"].write_text(CLUSTER_MANIFESTS)
    for path in files.values():
        p = k120.run("apply", "-n", ns, "-f", str(path), check=False)
        assert p.returncode == 0 and "error" not in p.stderr.lower(), (path, p.stderr)
        # again: validated again, then patched (kubectl 1.20 patches what it finds changed
        # as with kube-apiserver: a pod's volumeMounts gained the token's, the integer cpu
        # came back a string, stringData is never stored; kinds newer than 1.20 get merge
        # patches, which replace lists the server defaulted)
        p = k120.run("apply", "-n", ns, "-f", str(path))
        assert all(ln.endswith((" unchanged", " configured")) for ln in p.stdout.splitlines())
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        got = json.loads(k120.run("get", kind, name, "-n", ns, "-o", "json").stdout)
        assert got["kind"] == kind and got["metadata"]["name"] == name
    # every object as the server returns it (defaults, status, managedFields) validates too:
    # what kubectl edit or get -o yaml | replace -f sends back
    resources = k120.run("api-resources", "--verbs=list", "-o", "name").stdout.split()
    listed = k120.run("get", ",".join(resources), "-A", "-o", "json").stdout
    assert len({item["kind"] for item in json.loads(listed)["items"]}) >= 20
    p = k120.run("create", "--dry-run=client", "-f", "-", input=listed)
    assert "pod/hello created (dry run)" in p.stdout.splitlines()
    for name in ("priorityclass/oa2-high", "clusterrole/oa2-viewer"):
        k120.run("delete", name)
    # the review groups: created, answered, nothing stored
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": ns, "verb": "get", "resource": "pods"}},
    }
    p = k120.run("create", "-f", "-", "-o", "json", input=json.dumps(review))
    assert json.loads(p.stdout)["status"]["allowed"] is True
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    p = k120.run("create", "-f", "-", "-o", "json", input=json.dumps(review))
    assert json.loads(p.stdout)["status"]["userInfo"]["username"]


def test_python_client(server: Server) -> None:
    """The Python client (which reads no OpenAPI itself) fetches the JSON form and works on;
    its VersionApi asks for ``/version/``."""
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.config.new_client_from_config(str(server.kubeconfig))
    r = api.call_api(
        "GET", api.configuration.host + "/openapi/v2", header_params={"Accept": "application/json"}
    )
    r.read()
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    assert "io.k8s.api.core.v1.Pod" in json.loads(r.data)["definitions"]
    names = [n.metadata.name for n in kubernetes.client.CoreV1Api(api).list_namespace().items]
    assert "default" in names
    assert kubernetes.client.VersionApi(api).get_code().git_version.startswith("v1.")  # /version/
