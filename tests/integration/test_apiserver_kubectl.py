"""``corral server`` and what kubectl sends beyond plain JSON: kubectl 1.32's protobuf bodies
(its typed ``create`` commands) give the same objects as kubectl 1.20's JSON; field validation
as kubectl prints it; RBAC, EndpointSlice and PodDisruptionBudget kinds; pods/eviction and
``kubectl drain`` (both versions)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubeserver import KUBECTL_VERSIONS, Kubectl, Server, api_only_server, kubectl_for

VERSIONS = KUBECTL_VERSIONS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_only_server(tmp_path_factory.mktemp("apiserver-kubectl")) as srv:
        yield srv


@pytest.fixture(scope="module")
def both(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Kubectl]:
    return {v: kubectl_for(v, server, tmp_path_factory) for v in VERSIONS}


@pytest.fixture(scope="module", params=list(VERSIONS))
def kubectl(request: pytest.FixtureRequest, both: dict[str, Kubectl]) -> Kubectl:
    return both[request.param]


def _tag(version: str) -> str:
    return "v" + version.replace(".", "")


def _readback(server: Server, path: str, tag: str) -> Any:
    code, obj = server.json("GET", path)
    assert code == 200, (path, obj)
    meta = obj["metadata"]
    uid = meta.get("uid")  # also in a Job's generated selector and labels
    for k in ("uid", "creationTimestamp", "resourceVersion", "namespace", "managedFields"):
        meta.pop(k, None)
    if obj.get("kind") == "Service":  # allocated per service
        obj["spec"].pop("clusterIP", None)
        obj["spec"].pop("clusterIPs", None)
        for p in obj["spec"].get("ports") or []:
            p.pop("nodePort", None)
    text = json.dumps(obj).replace(tag, "TAG")
    return json.loads(text.replace(uid, "UID") if uid else text)


# kubectl create <subcommand>: (args, the object's path under /api or /apis, with {ns}, {tag})
CREATES: list[tuple[list[str], str]] = [
    (["configmap", "cm", "--from-literal=a=b", "--from-literal=c=d"], "/api/v1/ns/{ns}/cm/cm"),
    (["secret", "generic", "sec", "--from-literal=x=y"], "/api/v1/ns/{ns}/secrets/sec"),
    (
        [
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=r.example",
            "--docker-username=u",
            "--docker-password=p",
        ],
        "/api/v1/ns/{ns}/secrets/reg",
    ),
    (["secret", "tls", "tls", "--cert={crt}", "--key={key}"], "/api/v1/ns/{ns}/secrets/tls"),
    (
        ["deployment", "web", "--image=nginx:1.21", "--replicas=2", "--port=80"],
        "/apis/apps/v1/ns/{ns}/deployments/web",
    ),
    (["serviceaccount", "robot"], "/api/v1/ns/{ns}/serviceaccounts/robot"),
    (["service", "clusterip", "cip", "--tcp=80:8080"], "/api/v1/ns/{ns}/services/cip"),
    (["service", "nodeport", "np", "--tcp=80:8080"], "/api/v1/ns/{ns}/services/np"),
    (["service", "loadbalancer", "lb", "--tcp=443:8443"], "/api/v1/ns/{ns}/services/lb"),
    (
        ["service", "externalname", "ext", "--external-name=db.example.com"],
        "/api/v1/ns/{ns}/services/ext",
    ),
    (["job", "once", "--image=busybox", "--", "echo", "hi"], "/apis/batch/v1/ns/{ns}/jobs/once"),
    (
        ["role", "reader", "--verb=get,list", "--resource=pods"],
        "/apis/rbac.authorization.k8s.io/v1/ns/{ns}/roles/reader",
    ),
    (
        ["rolebinding", "rb", "--role=reader", "--user=bob", "--serviceaccount={ns}:robot"],
        "/apis/rbac.authorization.k8s.io/v1/ns/{ns}/rolebindings/rb",
    ),
    (
        ["clusterrole", "cr-{tag}", "--verb=get", "--resource=nodes"],
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/cr-{tag}",
    ),
    (
        ["clusterrolebinding", "crb-{tag}", "--clusterrole=cr-{tag}", "--group=ops"],
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/crb-{tag}",
    ),
]


def _fill(text: str, ns: str, tag: str, server: Server) -> str:
    tls = server.data_dir / "tls"
    return (
        text.replace("{ns}", ns)
        .replace("{tag}", tag)
        .replace("{crt}", str(tls / "serving.crt"))
        .replace("{key}", str(tls / "serving.key"))
    )


def _path(template: str, ns: str, tag: str) -> str:
    return (
        template.replace("/ns/", "/namespaces/")
        .replace("/cm/", "/configmaps/")
        .replace("{ns}", ns)
        .replace("{tag}", tag)
    )


def test_typed_creates_same_objects_as_kubectl_120(
    server: Server, both: dict[str, Kubectl]
) -> None:
    """kubectl 1.32 sends these as protobuf, kubectl 1.20 as JSON: the server stores the same."""
    got: dict[str, list[Any]] = {}
    for version, k in both.items():
        tag = _tag(version)
        ns = f"create-{tag}"
        assert k.run("create", "namespace", ns).stdout.strip() == f"namespace/{ns} created"
        got[version] = [_readback(server, f"/api/v1/namespaces/{ns}", tag)]
        for args, path in CREATES:
            out = k.run("create", "-n", ns, *(_fill(a, ns, tag, server) for a in args)).stdout
            assert "created" in out, out
            got[version].append(_readback(server, _path(path, ns, tag), tag))
        k.run("scale", "deployment", "web", "--replicas=3", "-n", ns)
        k.run("expose", "deployment", "web", "--port=81", "--name=exposed", "-n", ns)
        k.run("label", "configmap", "cm", "tier=x", "-n", ns)
        got[version].append(
            _readback(server, f"/apis/apps/v1/namespaces/{ns}/deployments/web", tag)
        )
        got[version].append(_readback(server, f"/api/v1/namespaces/{ns}/services/exposed", tag))
        got[version].append(_readback(server, f"/api/v1/namespaces/{ns}/configmaps/cm", tag))
        assert got[version][0]["metadata"]["name"] == "create-TAG"
    for new, old in zip(got["1.32"], got["1.20"], strict=True):
        assert new == old
    deploy = got["1.32"][-3]
    assert deploy["spec"]["replicas"] == 3 and deploy["metadata"]["generation"] == 2
    k = both["1.32"]
    ns = "create-v132"
    k.run("rollout", "restart", "deployment", "web", "-n", ns)
    code, d = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    for args in (
        ["cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *"],
        ["poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"],
    ):
        assert "created" in k.run("create", "-n", ns, *args).stdout
    assert "created" in k.run("create", "-n", ns, "job", "manual", "--from=cronjob/tick").stdout
    code, job = server.json("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/manual")
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    code, cj = server.json("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick")
    assert code == 200 and cj["spec"]["schedule"] == "*/5 * * * *"
    assert cj["spec"]["concurrencyPolicy"] == "Allow"  # defaulted by the server
    code, pdb = server.json("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/pdb")
    assert code == 200 and pdb["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app": "web"}},
    }
    for version, k in both.items():
        ns = f"create-{_tag(version)}"
        out = k.run("delete", "deployment", "web", "-n", ns).stdout
        assert out.strip() == 'deployment.apps "web" deleted'
        code, _ = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")
        assert code == 404


def test_apply_with_unknown_field(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl 1.32 asks for Strict validation and prints the server's refusal; 1.20 finds the
    field unknown in /openapi/v2 and sends nothing. With validation lowered (1.32 ``warn``,
    1.20 ``false``: it asks for nothing, so Warn) the object is stored without the field
    and kubectl prints the server's warning."""
    ns = f"fv-{_tag(kubectl.version)}"
    kubectl.run("create", "namespace", ns)
    f = tmp_path / "typo.yaml"
    f.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: typo}\nspec:\n"
        "  selector: {matchLabels: {app: typo}}\n  template:\n"
        "    metadata: {labels: {app: typo}}\n    spec:\n      containers:\n"
        "      - {name: app, image: nginx, imagePullPolicyy: Always}\n"
    )
    p = kubectl.run("apply", "-n", ns, "-f", str(f), check=False)
    field = "spec.template.spec.containers[0].imagePullPolicyy"
    if kubectl.version == "1.32":
        assert p.returncode == 1
        assert (
            f'Error from server (BadRequest): error when creating "{f}": Deployment in version'
            f' "v1" cannot be handled as a Deployment: strict decoding error: unknown field'
            f' "{field}"' in p.stderr
        ), p.stderr
        assert kubectl.run("get", "deploy", "-n", ns, "-o", "name").stdout == ""
        p = kubectl.run("apply", "-n", ns, "-f", str(f), "--validate=warn")
    else:
        assert p.returncode == 1
        assert p.stderr == (
            f'error: error validating "{f}": error validating data: ValidationError(Deployment'
            '.spec.template.spec.containers[0]): unknown field "imagePullPolicyy" in'
            " io.k8s.api.core.v1.Container; if you choose to ignore these errors, turn"
            " validation off with --validate=false\n"
        )
        assert kubectl.run("get", "deploy", "-n", ns, "-o", "name").stdout == ""
        p = kubectl.run("apply", "-n", ns, "-f", str(f), "--validate=false")
    assert p.returncode == 0, p.stderr
    assert f'Warning: unknown field "{field}"' in p.stderr, p.stderr
    assert "deployment.apps/typo created" in p.stdout
    d = json.loads(kubectl.run("get", "deploy", "typo", "-n", ns, "-o", "json").stdout)
    assert (
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    )  # defaulted: no tag


def test_rbac_endpointslice_pdb_tables(kubectl: Kubectl, server: Server) -> None:
    tag = _tag(kubectl.version)
    ns = f"kinds-{tag}"
    kubectl.run("create", "namespace", ns)
    code, listed = server.json(
        "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    )
    start = listed["metadata"]["resourceVersion"]
    objs = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [
                {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "ServiceAccount", "name": "robot", "namespace": ns},
            ],
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "x"}],
            "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "budget"},
            "spec": {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}},
        },
    ]
    for obj in objs:
        kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(obj))

    def table(*args: str) -> list[list[str]]:
        out = kubectl.run("get", *args, "-n", ns).stdout
        return [ln.split() for ln in out.splitlines()]

    rows = table("roles")
    assert rows[0] == ["NAME", "CREATED", "AT"] and rows[1][0] == "r"
    assert rows[1][1].endswith("Z")
    rows = table("rolebindings", "-o", "wide")
    assert rows[0] == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert rows[1][:2] == ["rb", "Role/r"] and rows[1][3:] == ["alice", "devs", f"{ns}/robot"]
    rows = table("endpointslices")
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert rows[1][:6] == ["web-abc", "IPv4", "80,x", "10.0.0.1,10.0.0.2,10.0.0.3", "+", "2"]
    rows = table("pdb")
    assert rows[0] == [
        "NAME",
        "MIN",
        "AVAILABLE",
        "MAX",
        "UNAVAILABLE",
        "ALLOWED",
        "DISRUPTIONS",
        "AGE",
    ]
    assert rows[1][:4] == ["budget", "N/A", "25%", "0"]
    # a watch from before the creates sees the binding added
    code, _, raw = server.request(
        "GET",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
        f"?watch=true&resourceVersion={start}&timeoutSeconds=1",
    )
    events = [json.loads(ln) for ln in raw.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "rb")]
    no_ref = json.dumps({**objs[1], "roleRef": None})
    if kubectl.version == "1.20":  # validated against /openapi/v2 before it is sent
        p = kubectl.run("create", "-n", ns, "-f", "-", input=no_ref, check=False)
        assert p.returncode == 1
        assert (
            'error validating data: ValidationError(RoleBinding): missing required field "roleRef"'
            " in io.k8s.api.rbac.v1.RoleBinding" in p.stderr
        ), p.stderr
    p = kubectl.run("create", "-n", ns, "-f", "-", "--validate=false", input=no_ref, check=False)
    assert 'The RoleBinding "rb" is invalid: roleRef' in p.stderr, p.stderr
    changed = {**objs[1], "roleRef": {**objs[1]["roleRef"], "name": "other"}}
    p = kubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(changed), check=False)
    assert p.returncode == 1
    assert (
        'The RoleBinding "rb" is invalid: roleRef: Invalid value: {"apiGroup":'
        '"rbac.authorization.k8s.io","kind":"Role","name":"other"}: cannot change roleRef'
        in p.stderr
    ), p.stderr
    kubectl.run("delete", "rolebinding", "rb", "-n", ns)
    kubectl.run("delete", "pdb", "budget", "-n", ns)
    assert kubectl.run("get", "rolebindings,pdb", "-n", ns, "-o", "name").stdout == ""


def _pod(name: str, node: str | None, labels: dict[str, str], owner: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _finish_deletions(server: Server, node: str, stop: threading.Event) -> None:
    """What the node's kubelet does once a pod's containers stopped: delete the terminating
    pod for good (grace 0, with its uid as precondition)."""
    while not stop.wait(0.2):
        code, pods = server.json("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")
        for p in pods["items"] if code == 200 else []:
            meta = p["metadata"]
            if meta.get("deletionTimestamp"):
                server.json(
                    "DELETE",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
                )


def test_drain(kubectl: Kubectl, server: Server) -> None:
    tag = _tag(kubectl.version)
    ns, node = f"drain-{tag}", f"node-{tag}"
    kubectl.run("create", "namespace", ns)
    kubectl.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
    )
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(ds))
    code, live = server.json("GET", f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent")
    owner = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "agent",
        "uid": live["metadata"]["uid"],
        "controller": True,
    }
    pods = [
        _pod("agent-1", node, {"app": "agent"}, owner),
        _pod("loose", node, {"app": "loose"}),
        _pod("other", None, {"app": "loose"}),
    ]
    for p in pods:
        kubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(p))
    stop = threading.Event()
    kubelet = threading.Thread(target=_finish_deletions, args=(server, node, stop), daemon=True)
    kubelet.start()
    try:
        p = kubectl.run("drain", node, "--ignore-daemonsets", "--force", "--timeout=120s")
    finally:
        stop.set()
        kubelet.join()
    assert f"node/{node} cordoned" in p.stdout, p.stdout
    assert f"evicting pod {ns}/loose" in p.stdout, p.stdout
    assert "pod/loose evicted" in p.stdout
    done = "drained" if kubectl.version == "1.32" else "evicted"  # 1.20's wording
    assert f"node/{node} {done}" in p.stdout
    assert f"ignoring DaemonSet-managed Pods: {ns}/agent-1" in p.stderr, p.stderr
    left = kubectl.run("get", "pods", "-n", ns, "-o", "name").stdout.split()
    assert left == ["pod/agent-1", "pod/other"]
    code, n = server.json("GET", f"/api/v1/nodes/{node}")
    assert n["spec"]["unschedulable"] is True
    kubectl.run("delete", "node", node)


def test_eviction_honours_disruption_budget(server: Server) -> None:
    ns = "evict"
    assert server.json("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
    base = f"/api/v1/namespaces/{ns}/pods"
    for name in ("a", "b", "pending"):
        code, pod = server.json("POST", base, _pod(name, None, {"app": "web"}))
        assert code == 201
        if name != "pending":
            pod["status"] = {"phase": "Running"}
            assert server.json("PUT", f"{base}/{name}/status", pod)[0] == 200
    pdbs = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
    code, pdb = server.json(
        "POST",
        pdbs,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    assert code == 201 and pdb["metadata"]["generation"] == 1

    def evict(name: str, body: Any = None) -> tuple[int, Any]:
        return server.json(
            "POST",
            f"{base}/{name}/eviction",
            body or {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}},
        )

    code, st = evict("a")  # no disruption controller has looked at the budget yet
    assert (code, st["reason"]) == (429, "TooManyRequests"), st
    assert st["details"]["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server."
    )
    pdb["status"] = {
        "observedGeneration": 1,
        "disruptionsAllowed": 1,
        "currentHealthy": 2,
        "desiredHealthy": 1,
        "expectedPods": 2,
    }
    assert server.json("PUT", f"{pdbs}/web/status", pdb)[0] == 200
    code, st = evict("a")
    assert (code, st["status"]) == (201, "Success"), st
    assert server.json("GET", f"{base}/a")[0] == 404
    code, live = server.json("GET", f"{pdbs}/web")
    assert live["status"]["disruptionsAllowed"] == 0 and list(live["status"]["disruptedPods"]) == [
        "a"
    ]
    code, st = evict("b")
    assert (code, st["reason"]) == (429, "TooManyRequests")
    assert st["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert st["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 1 healthy pods and has 2 currently",
        }
    ]
    assert server.json("GET", f"{base}/b")[0] == 200
    code, st = evict("pending")  # not running: budgets do not apply
    assert code == 201 and server.json("GET", f"{base}/pending")[0] == 404
    code, st = evict(
        "b", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "a"}}
    )
    assert code == 400 and "does not match" in st["message"]
    code, st = evict("nosuch")
    assert code == 404 and st["message"] == 'pods "nosuch" not found'
    code, st = server.json("GET", f"{base}/b/eviction")
    assert code == 405
