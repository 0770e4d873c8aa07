"""The csrsigning and csrcleaner controllers over the fake client: what is signed (approved,
not failed, not issued, one of the three signers), how (subject, names, usages, validity
capped by expirationSeconds and the CA), a refusal as a Failed condition, legacy-unknown and
other signers never signed; and when the cleaner deletes a request."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubemodel.certificates import parse_request
from orchestrator.client.rest import CERTIFICATESIGNINGREQUESTS as CSRS
from orchestrator.controllers.base import InformerFactory
from orchestrator.controllers.certificates import (
    CsrCleaner,
    CsrSigner,
    SigningCA,
    cleanup_deadline,
    issue,
)
from orchestrator.controllers.fake import FakeClient

UTC = datetime.UTC


def make_ca(days: int = 3650) -> SigningCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningCA(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def request_pem(cn: str, *orgs: str, dns: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(
    name: str,
    pem: bytes,
    signer: str = "kubernetes.io/kube-apiserver-client",
    usages: tuple[str, ...] = ("client auth",),
    conditions: tuple[str, ...] = ("Approved",),
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": signer,
            "usages": list(usages),
            **spec,
        },
        "status": {
            "conditions": [
                {"type": c, "status": "True", "lastUpdateTime": "2026-01-01T00:00:00Z"}
                for c in conditions
            ]
        },
    }


def run_signer(client: FakeClient, ca: SigningCA, *names: str) -> None:
    async def body() -> None:
        factory = InformerFactory(client)  # type: ignore[arg-type]
        signer = CsrSigner(client, factory, ca)  # type: ignore[arg-type]
        await factory.relist()
        for name in names:
            assert await signer.reconcile(name) is None

    asyncio.run(body())


def issued(client: FakeClient, name: str) -> x509.Certificate | None:
    stored = client.stored(CSRS, None, name)
    assert stored is not None
    raw = (stored.get("status") or {}).get("certificate")
    return x509.load_pem_x509_certificate(base64.b64decode(raw)) if raw else None


def test_signs_an_approved_request_as_kube_does() -> None:
    ca = make_ca()
    client = FakeClient()
    usages = ("digital signature", "client auth")
    pem = request_pem("alice", "devs", "qa")
    client.add(CSRS, csr("alice", pem, usages=usages, expirationSeconds=7200))
    run_signer(client, ca, "alice")
    acts = [repr(a) for a in client.take()]
    assert acts == ["update_status certificatesigningrequests/status alice"]
    cert = issued(client, "alice")
    assert cert is not None
    assert cert.subject.rfc4514_string() == "CN=alice,O=qa,O=devs"
    assert cert.issuer.rfc4514_string() == "CN=test-ca"
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # short (under 8 h): backdated 5 minutes at its start, not at its end
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
        seconds=7200 + 300
    )
    # signed once: an issued request is left alone
    run_signer(client, ca, "alice")
    assert client.take() == []


def test_validity_follows_expiration_seconds_within_the_signers_bounds() -> None:
    ca = make_ca()
    req = parse_request(request_pem("x"))
    now = datetime.datetime(2026, 6, 1, tzinfo=UTC)

    def lifetime(seconds: int | None, signing: SigningCA = ca) -> datetime.timedelta:
        cert = x509.load_pem_x509_certificate(issue(signing, req, ["client auth"], seconds, now))
        assert cert.not_valid_before_utc == now - datetime.timedelta(minutes=5)
        return cert.not_valid_after_utc - now

    assert lifetime(None) == datetime.timedelta(days=365, minutes=-5)  # the signing duration
    assert lifetime(10 * 86400) == datetime.timedelta(days=10, minutes=-5)  # long: backdated
    assert lifetime(3600) == datetime.timedelta(hours=1)
    assert lifetime(100 * 365 * 86400) == datetime.timedelta(days=365, minutes=-5)  # capped
    # never past the CA's own end
    short_ca = make_ca(days=30)
    ca_end = x509.load_pem_x509_certificate(short_ca.cert_pem).not_valid_after_utc
    cert = x509.load_pem_x509_certificate(
        issue(short_ca, req, ["client auth"], None, datetime.datetime.now(UTC))
    )
    assert cert.not_valid_after_utc == ca_end


def test_what_is_not_signed() -> None:
    ca = make_ca()
    client = FakeClient()
    pem = request_pem("bob")
    client.add(CSRS, csr("pending", pem, conditions=()))
    client.add(CSRS, csr("denied", pem, conditions=("Denied",)))
    client.add(CSRS, csr("failed", pem, conditions=("Approved", "Failed")))
    client.add(CSRS, csr("legacy", pem, signer="kubernetes.io/legacy-unknown"))
    client.add(CSRS, csr("custom", pem, signer="example.com/mine"))
    run_signer(client, ca, "pending", "denied", "failed", "legacy", "custom")
    assert client.take() == []


def test_a_signer_refuses_with_a_failed_condition() -> None:
    ca = make_ca()
    client = FakeClient()
    client.add(CSRS, csr("serving", request_pem("system:node:n1", "system:nodes"),
                         "kubernetes.io/kubelet-serving",
                         ("digital signature", "key encipherment", "server auth")))  # fmt: skip
    client.add(CSRS, csr("usage", request_pem("carol"), usages=("server auth",)))
    run_signer(client, ca, "serving", "usage")
    for name, message in (
        ("serving", "DNS or IP subjectAltName is required"),
        ("usage", "invalid usage for client certificate: server auth"),
    ):
        stored = client.stored(CSRS, None, name)
        assert stored is not None
        failed = stored["status"]["conditions"][-1]
        assert failed["type"] == "Failed" and failed["status"] == "True"
        assert (failed["reason"], failed["message"]) == ("SignerValidationFailure", message)
        assert failed["lastUpdateTime"]
        assert issued(client, name) is None
    client.take()
    run_signer(client, ca, "serving", "usage")  # failed: not weighed again
    assert client.take() == []
    # a kubelet's serving request that follows the rules is signed
    client.add(CSRS, csr("good", request_pem("system:node:n1", "system:nodes", dns=("n1",)),
                         "kubernetes.io/kubelet-serving",
                         ("digital signature", "server auth")))  # fmt: skip
    run_signer(client, ca, "good")
    cert = issued(client, "good")
    assert cert is not None
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]


def _at(hours: float) -> str:
    t = datetime.datetime.now(UTC) - datetime.timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_cleanup_deadlines() -> None:
    ca = make_ca()
    pem = request_pem("x")
    made = csr("p", pem, conditions=())
    made["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert cleanup_deadline(made) == datetime.datetime(2026, 1, 2, tzinfo=UTC)  # pending: 24 h
    denied = csr("d", pem, conditions=("Denied",))
    assert cleanup_deadline(denied) == datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)  # 1 h
    failed = csr("f", pem, conditions=("Approved", "Failed"))
    assert cleanup_deadline(failed) == datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)
    approved = csr("a", pem)
    assert cleanup_deadline(approved) is None  # approved, never issued: kept
    cert = issue(ca, parse_request(pem), ["client auth"], 3600)
    approved["status"]["certificate"] = base64.b64encode(cert).decode()
    assert cleanup_deadline(approved) == datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)
    # its certificate expiring before the hour is over: then
    cert = issue(
        ca, parse_request(pem), ["client auth"], 3600, datetime.datetime(2026, 1, 1, tzinfo=UTC)
    )
    approved["status"]["certificate"] = base64.b64encode(cert).decode()
    approved["status"]["conditions"][0]["lastUpdateTime"] = "2026-01-01T00:30:00Z"
    assert cleanup_deadline(approved) == datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_the_cleaner_deletes_at_the_deadline_and_waits_until_then() -> None:
    client = FakeClient()
    pem = request_pem("x")
    old = csr("old-denied", pem, conditions=("Denied",))
    old["status"]["conditions"][0]["lastUpdateTime"] = _at(2)
    fresh = csr("fresh-denied", pem, conditions=("Denied",))
    fresh["status"]["conditions"][0]["lastUpdateTime"] = _at(0.5)
    client.add(CSRS, old)
    client.add(CSRS, fresh)

    async def body() -> None:
        factory = InformerFactory(client)  # type: ignore[arg-type]
        cleaner = CsrCleaner(client, factory)  # type: ignore[arg-type]
        await factory.relist()
        assert await cleaner.reconcile("old-denied") is None
        wait = await cleaner.reconcile("fresh-denied")
        assert wait is not None and 1700 < wait <= 1800

    asyncio.run(body())
    assert [repr(a) for a in client.take()] == ["delete certificatesigningrequests old-denied"]
    assert client.stored(CSRS, None, "old-denied") is None
    assert client.stored(CSRS, None, "fresh-denied") is not None
