"""kubemodel.certificates: CertificateSigningRequest validation in kube-apiserver's words
(pkg/apis/certificates/validation) and the rules kube-controller-manager's signers sign by
(pkg/apis/certificates/helpers.go, the csrsigning controller)."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa
from cryptography.x509.oid import NameOID

import kubemodel
from kubemodel.certificates import (
    CsrSubject,
    go_bytes,
    parse_request,
    signer_refusal,
    validate_csr_update,
)
from kubemodel.errors import FieldError

CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING = "kubernetes.io/kubelet-serving"


def request_pem(
    cn: str,
    *orgs: str,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
    key: Any = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(pem: bytes, signer: str = CLIENT, usages: list[str] | None = None, **more: Any) -> dict:
    spec = {
        "request": base64.b64encode(pem).decode(),
        "signerName": signer,
        "usages": ["client auth"] if usages is None else usages,
    }
    status = more.pop("status", None)
    spec.update(more)
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def check(obj: dict) -> str | None:
    try:
        kubemodel.decode(obj, kubemodel.CertificateSigningRequest)
    except FieldError as e:
        return str(e)
    return None


def test_a_valid_request() -> None:
    assert check(csr(request_pem("alice", "devs"))) is None
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert check(csr(request_pem("bob", key=rsa_key), expirationSeconds=600)) is None


def test_the_request_is_a_pem_certificate_request_whose_signature_verifies() -> None:
    not_pem = b"hello"
    assert check(csr(not_pem)) == (
        f"spec.request: Invalid value: {go_bytes(not_pem)}: PEM block type must be"
        " CERTIFICATE REQUEST"
    )
    assert go_bytes(b"-\n") == "[]byte{0x2d, 0xa}"
    wrong = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert check(csr(wrong)).endswith(": PEM block type must be CERTIFICATE REQUEST")
    for key, words in (
        (ec.generate_private_key(ec.SECP256R1()), "x509: ECDSA verification failure"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048),
         "crypto/rsa: verification error"),
    ):  # fmt: skip
        pem = request_pem("eve", key=key)
        der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
        der[-3] ^= 0x01  # a bit of the signature
        bad = (
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + base64.encodebytes(bytes(der))
            + b"-----END CERTIFICATE REQUEST-----\n"
        )
        with pytest.raises(ValueError, match=words):
            parse_request(bad)
        assert (check(csr(bad)) or "").endswith(words)


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"usages": []}, "spec.usages: Required value"),
        (
            {"usages": ["client auth", "nope"]},
            'spec.usages[1]: Unsupported value: "nope": supported values: "any", "cert sign",',
        ),
        ({"usages": ["any", "any"]}, 'spec.usages[1]: Duplicate value: "any"'),
        ({"signer": ""}, "spec.signerName: Required value"),
        ({"signer": "a/b/c"}, 'spec.signerName: Invalid value: "a/b/c": must be a fully'),
        (
            {"signer": "example/x"},
            'spec.signerName: Invalid value: "example": should be a domain with at least two'
            " segments separated by dots",
        ),
        (
            {"signer": "Ex.com/x"},
            'spec.signerName: Invalid value: "Ex.com": validating label "Ex": a lowercase RFC'
            " 1123 label must consist of",
        ),
        (
            {"signer": "kubernetes.io/legacy-unknown"},
            'spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy'
            " signerName is not allowed via this API version",
        ),
        (
            {"expirationSeconds": 599},
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than"
            " 600 seconds (10 minutes)",
        ),
        (
            {"status": {"conditions": [{"type": "Approved", "status": "False"}]}},
            'status.conditions[0].status: Unsupported value: "False": supported values: "True"',
        ),
        (
            {"status": {"conditions": [{"type": "Custom", "status": "Maybe"}]}},
            'status.conditions[0].status: Unsupported value: "Maybe": supported values:'
            ' "False", "True", "Unknown"',
        ),
        (
            {
                "status": {
                    "conditions": [
                        {"type": "Denied", "status": "True"},
                        {"type": "Approved", "status": "True"},
                    ]
                }
            },
            'status.conditions[1].type: Invalid value: "Approved": Approved and Denied'
            " conditions are mutually exclusive",
        ),  # fmt: skip
        (
            {
                "status": {
                    "conditions": [
                        {"type": "Failed", "status": "True"},
                        {"type": "Failed", "status": "True"},
                    ]
                }
            },
            'status.conditions[1].type: Duplicate value: "Failed"',
        ),  # fmt: skip
        (
            {"status": {"certificate": base64.b64encode(b"junk").decode()}},
            'status.certificate: Invalid value: "<certificate data>": must contain at least one'
            " CERTIFICATE PEM block",
        ),
    ],
)
def test_validation(more: dict[str, Any], message: str) -> None:
    more = dict(more)
    signer = more.pop("signer", CLIENT)
    usages = more.pop("usages", None)
    got = check(csr(request_pem("v"), signer, usages, **more))
    assert got is not None and got.startswith(message), got


def test_updates_keep_conditions_and_the_issued_certificate() -> None:
    approved = {"type": "Approved", "status": "True"}
    old = {"status": {"conditions": [approved], "certificate": "Y2VydA=="}}
    with pytest.raises(FieldError, match='updates may not remove a condition of type "Approved"'):
        validate_csr_update(old, {"status": {"conditions": [], "certificate": "Y2VydA=="}})
    with pytest.raises(FieldError, match="updates may not remove status.certificate"):
        validate_csr_update(old, {"status": {"conditions": [approved]}})
    with pytest.raises(FieldError, match="updates may not modify existing certificate"):
        validate_csr_update(old, {"status": {"conditions": [approved], "certificate": "b3RoZXI="}})
    validate_csr_update(old, {"status": {"conditions": [approved, {"type": "Failed",
                                                                    "status": "True"}],
                                         "certificate": "Y2VydA=="}})  # fmt: skip


def _subject(pem: bytes) -> CsrSubject:
    return CsrSubject(parse_request(pem))


def test_api_server_client_signer_usages() -> None:
    req = _subject(request_pem("anyone", "any-group"))
    assert signer_refusal(CLIENT, req, ["client auth"]) is None
    assert (
        signer_refusal(CLIENT, req, ["digital signature", "key encipherment", "client auth"])
        is None
    )
    assert signer_refusal(CLIENT, req, ["client auth", "server auth"]) == (
        "invalid usage for client certificate: server auth"
    )
    assert signer_refusal(CLIENT, req, ["digital signature"]) == (
        "missing required usage for client certificate: client auth"
    )


def test_kubelet_client_signer() -> None:
    usages = ["digital signature", "client auth"]
    good = _subject(request_pem("system:node:n1", "system:nodes"))
    assert signer_refusal(KUBELET, good, usages) is None
    assert signer_refusal(KUBELET, good, ["key encipherment", *usages]) is None
    cases = [
        (request_pem("system:node:n1", "devs"), usages, "subject organization is not system:nodes"),
        (request_pem("system:node:n1", "system:nodes", dns=("n1",)), usages,
         "DNS subjectAltNames are not allowed"),
        (request_pem("system:node:n1", "system:nodes", ips=("10.0.0.1",)), usages,
         "IP subjectAltNames are not allowed"),
        (request_pem("system:node:n1", "system:nodes", emails=("a@b.c",)), usages,
         "Email subjectAltNames are not allowed"),
        (request_pem("n1", "system:nodes"), usages,
         "subject common name does not begin with 'system:node:'"),
        (request_pem("system:node:n1", "system:nodes"), ["client auth"],
         "usages did not match [client auth digital signature key encipherment]"),
    ]  # fmt: skip
    for pem, use, message in cases:
        assert signer_refusal(KUBELET, _subject(pem), use) == message


def test_kubelet_serving_signer() -> None:
    usages = ["digital signature", "key encipherment", "server auth"]
    good = _subject(request_pem("system:node:n1", "system:nodes", dns=("n1",), ips=("10.0.0.1",)))
    assert signer_refusal(SERVING, good, usages) is None
    assert signer_refusal(SERVING, good, ["digital signature", "server auth"]) is None
    cases = [
        (request_pem("system:node:n1", "system:nodes"), usages,
         "DNS or IP subjectAltName is required"),
        (request_pem("system:node:n1", "system:nodes", dns=("n1",), emails=("a@b.c",)), usages,
         "Email subjectAltNames are not allowed"),
        (request_pem("system:node:n1", "system:nodes", dns=("n1",)), ["server auth"],
         "usages did not match [digital signature key encipherment server auth]"),
        (request_pem("n1", "system:nodes", dns=("n1",)), usages,
         "subject common name does not begin with 'system:node:'"),
        (request_pem("system:node:n1", "system:nodes", "x", dns=("n1",)), usages,
         "subject organization is not system:nodes"),
    ]  # fmt: skip
    for pem, use, message in cases:
        assert signer_refusal(SERVING, _subject(pem), use) == message
    with pytest.raises(KeyError):
        signer_refusal("kubernetes.io/legacy-unknown", good, usages)


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


def _ec_der_with(old: str, new_last: int) -> bytes:
    """A P-256 request whose OID ``old`` (hex DER) has its last byte changed."""
    pem = request_pem("k")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    i = der.index(bytes.fromhex(old))
    der[i + len(old) // 2 - 1] = new_last
    return bytes(der)


def _signed(key: Any, hash_alg: Any = None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_alg)
    return req.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: _signed(dsa.generate_private_key(2048), hashes.SHA256()),
         "x509: cannot verify signature: algorithm unimplemented"),
        (lambda: _signed(ed448.Ed448PrivateKey.generate()),
         "x509: cannot verify signature: algorithm unimplemented"),
        (lambda: _signed(ec.generate_private_key(ec.SECP256K1()), hashes.SHA256()),
         "x509: unsupported elliptic curve"),
        # id-ecPublicKey 1.2.840.10045.2.1 made .2.9: a key cryptography cannot load (a 500)
        (lambda: _pem(_ec_der_with("06072a8648ce3d0201", 0x09)),
         "x509: cannot verify signature: algorithm unimplemented"),
        # ecdsa-with-SHA256 1.2.840.10045.4.3.2 made .4.3.9: a signature algorithm nobody knows
        (lambda: _pem(_ec_der_with("06082a8648ce3d040302", 0x09)),
         "x509: cannot verify signature: algorithm unimplemented"),
    ],
    ids=["dsa", "ed448", "secp256k1", "unknown-key", "unknown-signature"],
)  # fmt: skip
def test_keys_go_does_not_take(make: Any, words: str) -> None:
    """Go's x509 (kube-apiserver's ParseCSR and CheckSignature) takes RSA, ECDSA on the NIST
    curves and Ed25519: the others were stored (and signed), an unknown key was a 500."""
    pem = make()
    with pytest.raises(ValueError, match=f"^{words}$"):
        parse_request(pem)
    assert (check(csr(pem)) or "").endswith(f": {words}")


def _san_request(value: bytes) -> bytes:
    from cryptography.x509.oid import ExtensionOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    ext = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, value)
    b = x509.CertificateSigningRequestBuilder().subject_name(name).add_extension(ext, False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"\x01\x02", "x509: invalid subject alternative names"),
        (b"\x30\x05\x82\x03a", "x509: invalid subject alternative names"),  # short
        (bytes.fromhex("300787050102030405"), "x509: cannot parse IP address of length 5"),
        (b"\x30\x03\x82\x01\xff", "x509: SAN dNSName is malformed"),
    ],
    ids=["not-a-sequence", "truncated", "ip-of-5-bytes", "dns-not-ascii"],
)
def test_subject_alt_names_as_go_parses_them(value: bytes, words: str) -> None:
    pem = _san_request(value)
    with pytest.raises(ValueError, match=f"^{words}$"):
        parse_request(pem)


def test_names_read_past_other_extensions_go_does_not_parse() -> None:
    """Go's CSR parser reads the subjectAltNames only: a malformed key usage is no error,
    and the names (an otherName skipped) are read."""
    from cryptography.x509.oid import ExtensionOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    ku = x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x01")
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("a.example"),
            x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"),
            x509.IPAddress(ipaddress.ip_address("fd00::1")),
            x509.RFC822Name("a@example.com"),
            x509.UniformResourceIdentifier("spiffe://x/y"),
        ]
    )
    b = x509.CertificateSigningRequestBuilder().subject_name(name)
    b = b.add_extension(ku, False).add_extension(san, False)
    pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    sub = CsrSubject(parse_request(pem))
    assert (sub.dns_names, sub.ip_addresses, sub.emails, sub.uris) == (
        ["a.example"],
        ["fd00::1"],
        ["a@example.com"],
        ["spiffe://x/y"],
    )
