"""certificates.k8s.io/v1 CertificateSigningRequests on a real ``corral server`` with its
controllers (no scheduler), to kubectl 1.32 and 1.20: ``kubectl certificate approve`` and the
csrsigning controller issue a client certificate that kubectl then authenticates with as the
CN and O in it (RBAC deciding what it may do); ``kubectl certificate deny``; a signer that
refuses a request (a Failed condition); the requester filled from who asks; kube's validation;
approval needs ``approve`` on the signer; ``kubectl get csr``'s columns; discovery."""

from __future__ import annotations

import base64
import datetime
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.test_cluster import until
from tests.kubeserver import (
    NO_SCHEDULER,
    Kubectl,
    Server,
    running_server,
)

pytestmark = [pytest.mark.root]

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT = "kubernetes.io/kube-apiserver-client"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("apis-csr"), NO_SCHEDULER) as srv:
        yield srv


def request_pem(
    cn: str, *orgs: str, dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()
) -> tuple[bytes, bytes]:
    """(the key, the CERTIFICATE REQUEST) for ``cn`` in ``orgs``, PEM."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = b.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def self_signed() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def csr_body(
    name: str,
    pem: bytes,
    signer: str = CLIENT,
    usages: tuple[str, ...] = ("client auth",),
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": signer,
            "usages": list(usages),
            **spec,
        },
    }


def _cells(out: str) -> list[dict[str, str]]:
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {n: ln[a:b].strip() for n, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for ln in lines[1:]
    ]


def _get(server: Server, name: str) -> dict[str, Any]:
    code, obj = server.json("GET", f"{CSRS}/{name}")
    assert code == 200, obj
    return obj


def _issued(server: Server, name: str) -> bytes:
    def cert() -> bytes | None:
        c = (_get(server, name).get("status") or {}).get("certificate")
        return base64.b64decode(c) if c else None

    return until(f"csr {name} issued", cert)


def _user_kubeconfig(
    kubectl: Kubectl, tmp: Path, user: str, key_pem: bytes, cert_pem: bytes
) -> Kubectl:
    cfg = yaml.safe_load(kubectl.kubeconfig.read_text())
    cfg["users"] = [
        {
            "name": user,
            "user": {
                "client-certificate-data": base64.b64encode(cert_pem).decode(),
                "client-key-data": base64.b64encode(key_pem).decode(),
            },
        }
    ]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = user
    path = tmp / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return Kubectl(kubectl.binary, kubectl.home, path, kubectl.version)


def test_discovery(kubectl: Kubectl) -> None:
    out = kubectl.run("api-resources", "--api-group=certificates.k8s.io").stdout
    row = _cells(out)[0]
    assert row["NAME"] == "certificatesigningrequests"
    assert row["SHORTNAMES"] == "csr"
    assert row["APIVERSION"] == "certificates.k8s.io/v1"
    assert row["NAMESPACED"] == "false"
    assert row["KIND"] == "CertificateSigningRequest"
    out = kubectl.run("explain", "csr.spec.signerName").stdout
    assert "signerName indicates the requested signer" in out


def test_approve_issue_and_authenticate(kubectl: Kubectl, server: Server, tmp_path: Path) -> None:
    v = kubectl.version.replace(".", "")
    user = f"alice-{v}"
    name = f"alice-{v}"
    key_pem, pem = request_pem(user, "devs", "qa")
    body = csr_body(name, pem, expirationSeconds=3600)
    body["spec"]["username"] = "system:admin-forged"  # never taken from the body
    kubectl.run("create", "-f", "-", input=json.dumps(body))
    made = _get(server, name)
    assert made["spec"]["username"] == "system:admin"  # who asked (kubectl's admin cert)
    assert set(made["spec"]["groups"]) == {"system:masters", "system:authenticated"}
    assert made.get("status") in (None, {})
    row = _cells(kubectl.run("get", "csr", name).stdout)[0]
    assert row["NAME"] == name
    assert row["SIGNERNAME"] == CLIENT
    assert row["REQUESTOR"] == "system:admin"
    assert row["REQUESTEDDURATION"] == "60m"
    assert row["CONDITION"] == "Pending"
    out = kubectl.run("certificate", "approve", name).stdout
    assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} approved"
    cert_pem = _issued(server, name)
    cond = _get(server, name)["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Approved", "True", "KubectlApprove")
    assert cond["lastUpdateTime"] and cond["lastTransitionTime"]
    row = _cells(kubectl.run("get", "csr", name).stdout)[0]
    assert row["CONDITION"] == "Approved,Issued"
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
    # a short certificate: backdated 5 minutes at its start only (kube's signing policy)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == datetime.timedelta(seconds=3600 + 300)
    # the issued certificate authenticates as its CN and O; RBAC then decides
    as_user = _user_kubeconfig(kubectl, tmp_path, user, key_pem, cert_pem)
    denied = as_user.run("get", "pods", "-n", "default", check=False)
    assert denied.returncode != 0
    assert f'User "{user}" cannot list resource "pods"' in denied.stderr
    if kubectl.version != "1.20":
        who = _cells(as_user.run("auth", "whoami").stdout)
        assert {"ATTRIBUTE": "Username", "VALUE": user} in who
        groups = next(r["VALUE"] for r in who if r["ATTRIBUTE"] == "Groups")
        assert groups == "[devs qa system:authenticated]"
    kubectl.run("create", "rolebinding", f"{user}-view", "--clusterrole=view", f"--user={user}",
                "-n", "default")  # fmt: skip
    kubectl.run("create", "rolebinding", f"{user}-devs", "--clusterrole=view", "--group=devs",
                "-n", "kube-system")  # fmt: skip
    assert as_user.run("get", "pods", "-n", "default").returncode == 0
    assert as_user.run("get", "pods", "-n", "kube-system").returncode == 0  # as a member of devs
    # approving again changes nothing
    assert kubectl.run("certificate", "approve", name).returncode == 0
    assert len(_get(server, name)["status"]["conditions"]) == 1


def test_deny(kubectl: Kubectl, server: Server) -> None:
    name = f"denied-{kubectl.version.replace('.', '')}"
    _, pem = request_pem("mallory")
    kubectl.run("create", "-f", "-", input=json.dumps(csr_body(name, pem)))
    out = kubectl.run("certificate", "deny", name).stdout
    assert out.strip() == f"certificatesigningrequest.certificates.k8s.io/{name} denied"
    obj = _get(server, name)
    assert [(c["type"], c["reason"]) for c in obj["status"]["conditions"]] == [
        ("Denied", "KubectlDeny")
    ]
    assert _cells(kubectl.run("get", "csr", name).stdout)[0]["CONDITION"] == "Denied"
    described = kubectl.run("describe", "csr", name).stdout
    assert re.search(r"Requesting User:\s+system:admin", described), described
    assert re.search(r"Signer:\s+kubernetes.io/kube-apiserver-client", described), described
    assert re.search(r"Status:\s+Denied", described), described
    # approved and denied are not both (kubectl refuses to approve it without --force)
    code, body = server.json(
        "PUT",
        f"{CSRS}/{name}/approval",
        {**obj, "status": {"conditions": [*obj["status"]["conditions"],
                                          {"type": "Approved", "status": "True"}]}},
    )  # fmt: skip
    assert code == 422, body
    assert body["message"] == (
        f'CertificateSigningRequest.certificates.k8s.io "{name}" is invalid:'
        ' status.conditions[1].type: Invalid value: "Approved": Approved and Denied'
        " conditions are mutually exclusive"
    )
    assert not (_get(server, name).get("status") or {}).get("certificate")


def test_a_signer_refuses_what_it_may_not_sign(kubectl: Kubectl, server: Server) -> None:
    name = f"bad-serving-{kubectl.version.replace('.', '')}"
    _, pem = request_pem("system:node:n1", "devs", dns=("n1.example",))
    body = csr_body(
        name, pem, "kubernetes.io/kubelet-serving", ("digital signature", "server auth")
    )
    kubectl.run("create", "-f", "-", input=json.dumps(body))
    kubectl.run("certificate", "approve", name)

    def failed() -> dict[str, Any] | None:
        for c in (_get(server, name).get("status") or {}).get("conditions") or ():
            if c["type"] == "Failed":
                return c
        return None

    cond = until(f"csr {name} failed", failed)
    assert cond["reason"] == "SignerValidationFailure"
    assert cond["message"] == "subject organization is not system:nodes"
    assert not _get(server, name)["status"].get("certificate")
    assert _cells(kubectl.run("get", "csr", name).stdout)[0]["CONDITION"] == "Approved,Failed"


def test_kubelet_signers_sign_what_they_may(server: Server) -> None:
    suffix = uuid.uuid4().hex[:6]
    _, serving = request_pem(
        "system:node:n1", "system:nodes", dns=("n1.example",), ips=("10.0.0.5",)
    )
    _, client = request_pem("system:node:n1", "system:nodes")
    serving_usages = ("digital signature", "key encipherment", "server auth")
    kubelet = "kubernetes.io/kube-apiserver-client-kubelet"
    for name, body in (
        (f"serving-{suffix}", csr_body(f"serving-{suffix}", serving,
                                       "kubernetes.io/kubelet-serving", serving_usages)),
        (f"kclient-{suffix}", csr_body(f"kclient-{suffix}", client, kubelet,
                                       ("digital signature", "client auth"))),
    ):  # fmt: skip
        code, made = server.json("POST", CSRS, body)
        assert code == 201, made
        made["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
        code, out = server.json("PUT", f"{CSRS}/{name}/approval", made)
        assert code == 200, out
        cert = x509.load_pem_x509_certificate(_issued(server, name))
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if "serving" in name:
            assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sans.get_values_for_type(x509.DNSName) == ["n1.example"]
        else:
            assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        # a year, the signing duration, when no expirationSeconds is asked for
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=365)


def test_validation(server: Server) -> None:
    _, pem = request_pem("v")
    prefix = 'CertificateSigningRequest.certificates.k8s.io "v" is invalid: '
    bad_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    cases = [
        (csr_body("v", bad_pem), "spec.request: Invalid value: []byte{0x2d, 0x2d,"),
        (csr_body("v", pem, usages=()), "spec.usages: Required value"),
        (
            csr_body("v", pem, usages=("client auth", "flying")),
            'spec.usages[1]: Unsupported value: "flying": supported values: "any",',
        ),
        (
            csr_body("v", pem, usages=("client auth", "client auth")),
            'spec.usages[1]: Duplicate value: "client auth"',
        ),
        (csr_body("v", pem, signer=""), "spec.signerName: Required value"),
        (
            csr_body("v", pem, signer="kubernetes.io/legacy-unknown"),
            'spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy'
            " signerName is not allowed via this API version",
        ),
        (
            csr_body("v", pem, signer="nodomain"),
            'spec.signerName: Invalid value: "nodomain": must be a fully qualified domain and'
            " path of the form 'example.com/signer-name'",
        ),
        (
            csr_body("v", pem, expirationSeconds=599),
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than"
            " 600 seconds (10 minutes)",
        ),
    ]
    for body, message in cases:
        code, out = server.json("POST", CSRS, body)
        assert code == 422, (body["spec"], out)
        assert out["message"].startswith(prefix + message), out["message"]
    # a request signed with another key than the one it names
    key = ec.generate_private_key(ec.SECP256R1())
    other = x509.load_pem_x509_csr(pem)
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(other.subject)
        .sign(key, hashes.SHA256())
    )
    der = bytearray(forged.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # the signature no longer verifies
    bad = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + (b"-----END CERTIFICATE REQUEST-----\n")
    )
    code, out = server.json("POST", CSRS, csr_body("v", bad))
    assert code == 422, out
    assert out["message"].endswith(": x509: ECDSA verification failure"), out["message"]
    # CertificateSubjectRestriction
    _, masters = request_pem("root", "system:masters")
    code, out = server.json("POST", CSRS, csr_body("m", masters))
    assert code == 403, out
    assert out["message"] == (
        'certificatesigningrequests.certificates.k8s.io "m" is forbidden: use of'
        " kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
    )


def test_approving_needs_approve_on_the_signer(server: Server) -> None:
    """An /approval write needs ``update`` on certificatesigningrequests/approval (RBAC on
    the request) and ``approve`` on the signer (the CertificateApproval admission); a
    /status write that issues needs ``sign``."""
    who = f"approver-{uuid.uuid4().hex[:6]}"
    as_who = {"Impersonate-User": who}
    name = f"for-{who}"
    _, pem = request_pem("carol")
    code, made = server.json("POST", CSRS, csr_body(name, pem))
    assert code == 201, made
    role = {
        "metadata": {"name": who},
        "rules": [
            {
                "apiGroups": ["certificates.k8s.io"],
                "resources": ["certificatesigningrequests", "certificatesigningrequests/approval",
                              "certificatesigningrequests/status"],
                "verbs": ["get", "update"],
            }
        ],
    }  # fmt: skip
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    assert server.json("POST", f"{rbac}/clusterroles", role)[0] == 201
    bind = {
        "metadata": {"name": who},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": who},
        "subjects": [{"kind": "User", "name": who, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    assert server.json("POST", f"{rbac}/clusterrolebindings", bind)[0] == 201
    approved = {**made, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    code, _, raw = server.request("PUT", f"{CSRS}/{name}/approval", approved, as_who)
    out = json.loads(raw)
    assert code == 403, out
    assert out["message"] == (
        f'certificatesigningrequests.certificates.k8s.io "{name}" is forbidden: user not'
        ' permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client"'
    )
    # signing needs "sign": a certificate written through /status by someone without it
    fake = {**made, "status": {"certificate": base64.b64encode(self_signed()).decode()}}
    code, _, raw = server.request("PUT", f"{CSRS}/{name}/status", fake, as_who)
    assert code == 403, raw
    assert b"user not permitted to sign requests with signerName" in raw
    # the approver role of that signer (kube's bootstrap policy), by its domain's wildcard
    approver = {
        "metadata": {"name": f"{who}-approver"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                   "resourceNames": ["kubernetes.io/*"], "verbs": ["approve"]}],
    }  # fmt: skip
    assert server.json("POST", f"{rbac}/clusterroles", approver)[0] == 201
    bind2 = {**bind, "metadata": {"name": f"{who}-approver"},
             "roleRef": {**bind["roleRef"], "name": f"{who}-approver"}}  # fmt: skip
    assert server.json("POST", f"{rbac}/clusterrolebindings", bind2)[0] == 201
    code, _, raw = server.request("PUT", f"{CSRS}/{name}/approval", approved, as_who)
    assert code == 200, raw
    _issued(server, name)
    # the built-in approver roles exist
    for signer in ("kube-apiserver-client", "kubelet-serving"):
        code, role = server.json(
            "GET", f"{rbac}/clusterroles/system:certificates.k8s.io:{signer}-approver"
        )
        assert code == 200 and role["rules"][0]["resourceNames"] == [f"kubernetes.io/{signer}"]


def test_status_and_main_resource_keep_their_parts(server: Server) -> None:
    """The main resource never changes spec or status; /status keeps the approval; /approval
    keeps the certificate; an issued certificate is never changed."""
    name = f"parts-{uuid.uuid4().hex[:6]}"
    _, pem = request_pem("dave")
    code, made = server.json("POST", CSRS, csr_body(name, pem))
    assert code == 201, made
    changed = json.loads(json.dumps(made))
    changed["spec"]["usages"] = ["client auth", "digital signature"]
    changed["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    changed["metadata"]["labels"] = {"a": "b"}
    code, out = server.json("PUT", f"{CSRS}/{name}", changed)
    assert code == 200, out
    assert out["spec"] == made["spec"] and not (out.get("status") or {}).get("conditions")
    assert out["metadata"]["labels"] == {"a": "b"}
    out["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    code, out = server.json("PUT", f"{CSRS}/{name}/status", out)  # no approval through status
    assert code == 200, out
    assert not (out.get("status") or {}).get("conditions")
    code, _, raw = server.request(  # a merge patch of the approval, as an approver may send
        "PATCH",
        f"{CSRS}/{name}/approval",
        json.dumps({"status": {"conditions": [{"type": "Approved", "status": "True"}]}}).encode(),
        {"Content-Type": "application/merge-patch+json"},
    )
    assert code == 200, raw
    issued = _issued(server, name)
    obj = _get(server, name)
    obj["status"]["conditions"] = []
    code, out = server.json("PUT", f"{CSRS}/{name}/approval", obj)
    assert code == 422, out
    assert 'updates may not remove a condition of type \\"Approved\\"' in json.dumps(out) or (
        'updates may not remove a condition of type "Approved"' in out["message"]
    )
    obj = _get(server, name)
    _, other = request_pem("other")
    obj["status"]["certificate"] = base64.b64encode(issued + issued).decode()
    code, out = server.json("PUT", f"{CSRS}/{name}/status", obj)
    assert code == 422, out
    assert out["message"].endswith(
        "status.certificate: Forbidden: updates may not modify existing certificate"
    )


def test_server_side_apply_of_the_approval(server: Server) -> None:
    """PATCH application/apply-patch+yaml of /approval, as kube-apiserver takes it on every
    subresource (was: a 415 that did not list apply-patch+yaml): the CertificateApproval
    admission weighs it as a PUT (a 403 without ``approve`` on the signer), the applier owns
    the conditions through the subresource, and spec and certificate stay as they were. A
    PATCH of a media type kube does not take lists kube's four, in its order."""
    name = f"ssa-{uuid.uuid4().hex[:6]}"
    _, pem = request_pem("dave")
    code, made = server.json("POST", CSRS, csr_body(name, pem, signer="example.com/nobody"))
    assert code == 201, made
    apply = {"Content-Type": "application/apply-patch+yaml"}
    config = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"signerName": "example.com/other", "usages": ["any"]},  # ignored
        "status": {
            "conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "M"}]
        },
    }
    path = f"{CSRS}/{name}/approval?fieldManager=ssa-test"
    # one who may patch /approval (RBAC) but not approve for the signer (the admission)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = {
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["certificates.k8s.io"],
                   "resources": ["certificatesigningrequests/approval"], "verbs": ["patch"]}],
    }  # fmt: skip
    assert server.json("POST", f"{rbac}/clusterroles", role)[0] == 201
    bind = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    assert server.json("POST", f"{rbac}/clusterrolebindings", bind)[0] == 201
    code, _, raw = server.request("PATCH", path, config, {**apply, "Impersonate-User": name})
    assert code == 403, raw
    assert b"user not permitted to approve requests with signerName" in raw, raw
    assert "status" not in _get(server, name) or not _get(server, name)["status"]
    code, _, raw = server.request("PATCH", path, config, apply)
    assert code == 200, raw
    got = _get(server, name)
    assert got["spec"] == made["spec"]
    assert [c["type"] for c in got["status"]["conditions"]] == ["Approved"]
    entry = [e for e in got["metadata"]["managedFields"] if e["manager"] == "ssa-test"]
    assert len(entry) == 1 and entry[0]["subresource"] == "approval", entry
    assert "f:spec" not in entry[0]["fieldsV1"], entry
    code, _, raw = server.request(
        "PATCH", f"{CSRS}/{name}/approval", b"{}", {"Content-Type": "text/plain"}
    )
    assert code == 415, raw
    assert json.loads(raw)["message"] == (
        "the body of the request was in an unknown format - accepted media types include:"
        " application/json-patch+json, application/merge-patch+json,"
        " application/strategic-merge-patch+json, application/apply-patch+yaml"
    )
    assert server.request("DELETE", f"{CSRS}/{name}")[0] == 200


def _with_extensions(*extensions: x509.Extension[Any]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ext-user")])
    b = x509.CertificateSigningRequestBuilder().subject_name(name)
    for e in extensions:
        b = b.add_extension(e.value, critical=e.critical)
    pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, pem


def test_extensions_are_read_as_go_reads_them(server: Server) -> None:
    """Go's ParseCertificateRequest reads a request's subjectAltNames and no other extension:
    a malformed subjectAltName is a 422 in its words, a malformed key usage is taken (both
    were a 500 for kube-apiserver-client, whose admission read every extension, and stored
    for other signers); the request with a bad key usage is signed with its names."""
    from cryptography.x509.oid import ExtensionOID

    bad_san = x509.Extension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        False,
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x01\x02"),
    )
    bad_ku = x509.Extension(
        ExtensionOID.KEY_USAGE,
        False,
        x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x01\x02"),
    )
    names = x509.Extension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        False,
        x509.SubjectAlternativeName([x509.DNSName("ext.example")]),
    )
    for signer in (CLIENT, "example.com/nobody"):
        name = f"bad-san-{uuid.uuid4().hex[:6]}"
        _, pem = _with_extensions(bad_san)
        code, out = server.json("POST", CSRS, csr_body(name, pem, signer=signer))
        assert code == 422, out
        assert out["message"].endswith(": x509: invalid subject alternative names"), out
    name = f"bad-ku-{uuid.uuid4().hex[:6]}"
    _, pem = _with_extensions(bad_ku, names)
    code, made = server.json("POST", CSRS, csr_body(name, pem))
    assert code == 201, made
    approved = {**made, "status": {"conditions": [{"type": "Approved", "status": "True"}]}}
    code, out = server.json("PUT", f"{CSRS}/{name}/approval", approved)
    assert code == 200, out
    cert = x509.load_pem_x509_certificate(_issued(server, name))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["ext.example"]
    assert server.request("DELETE", f"{CSRS}/{name}")[0] == 200
