"""The server's certificates, made at first start and kept in ``<data-dir>/tls``: a CA, the
serving certificate it signs (for 127.0.0.1, localhost, the host name, the ``kubernetes`` service's
names and the addresses the server is told: its bind and advertise addresses, the service's
ClusterIP)
and the admin client certificate (``system:admin`` in ``system:masters``) that the admin
kubeconfig carries. Keys are written mode 0600, atomically; existing files are reused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral_common import hostsys

__all__ = [
    "Pki",
    "ensure_pki",
    "issue_client_cert",
    "issue_serving_cert",
    "not_after",
    "pki_paths",
]

CA_DAYS = 3650
LEAF_DAYS = 365


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, *orgs: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs if o]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, pub: object, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _load(cert: Path, key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    k = serialization.load_pem_private_key(key.read_bytes(), None)
    assert isinstance(k, ec.EllipticCurvePrivateKey)
    return c, k


def _ips(addresses: tuple[str, ...]) -> set[str]:
    """The addresses a serving certificate names: loopback and each given one but wildcards."""
    return {"127.0.0.1", "::1"} | {a for a in addresses if a not in ("0.0.0.0", "::", "")}


def _sans(addresses: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    host = socket.gethostname()
    if host and host != "localhost":
        names.append(x509.DNSName(host))
    ips = [ipaddress.ip_address(ip) for ip in _ips(addresses)]
    ips.sort(key=lambda ip: (ip.version, int(ip)))
    names.extend(x509.IPAddress(ip) for ip in ips)
    return names


def _serving_ok(cert: Path, addresses: tuple[str, ...]) -> bool:
    """The serving certificate exists, is valid for a while yet, and names every address."""
    if not cert.exists():
        return False
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    if c.not_valid_after_utc < datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30):
        return False
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = set(sans.get_values_for_type(x509.IPAddress))
    return all(ipaddress.ip_address(a) in have for a in _ips(addresses))


def pki_paths(tls_dir: Path) -> Pki:
    return Pki(
        ca_cert=tls_dir / "server-ca.crt",
        ca_key=tls_dir / "server-ca.key",
        serving_cert=tls_dir / "serving.crt",
        serving_key=tls_dir / "serving.key",
        admin_cert=tls_dir / "client-admin.crt",
        admin_key=tls_dir / "client-admin.key",
    )


def ensure_pki(tls_dir: Path, *addresses: str) -> Pki:
    """The CA, the serving certificate (made again when it does not name every one of
    ``addresses``, IP addresses) and the admin certificate in ``tls_dir``."""
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    p = pki_paths(tls_dir)
    if p.ca_cert.exists() and p.ca_key.exists():
        ca_cert, ca_key = _load(p.ca_cert, p.ca_key)
    else:
        ca_key = _key()
        subject = _name(f"corral-server-ca@{int(datetime.datetime.now().timestamp())}")
        ca_cert = (
            _builder(subject, subject, ca_key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        hostsys.write_atomic(p.ca_key, _key_pem(ca_key))
        hostsys.write_atomic(p.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        for stale in (p.serving_cert, p.admin_cert):  # signed by another CA
            stale.unlink(missing_ok=True)

    def leaf(
        cert: Path,
        key: Path,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None,
    ) -> None:
        cert_pem, key_pem = _issue(p, subject, usage, sans)
        hostsys.write_atomic(key, key_pem)
        hostsys.write_atomic(cert, cert_pem, 0o644)

    if not (_serving_ok(p.serving_cert, addresses) and p.serving_key.exists()):
        leaf(
            p.serving_cert,
            p.serving_key,
            _name("kube-apiserver"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            _sans(addresses),
        )
    if not (p.admin_cert.exists() and p.admin_key.exists()):
        leaf(
            p.admin_cert,
            p.admin_key,
            _name("system:admin", "system:masters"),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            None,
        )
    return p


def _issue(
    pki: Pki,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
    days: int = LEAF_DAYS,
) -> tuple[bytes, bytes]:
    ca_cert, ca_key = _load(pki.ca_cert, pki.ca_key)
    k = _key()
    b = (
        _builder(subject, ca_cert.subject, k.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    c = b.sign(ca_key, hashes.SHA256())
    return c.public_bytes(serialization.Encoding.PEM), _key_pem(k)


def issue_client_cert(
    pki: Pki, user: str, groups: tuple[str, ...] = (), days: int = LEAF_DAYS
) -> tuple[bytes, bytes]:
    """A client certificate signed by the cluster CA for ``user`` (CN) in ``groups`` (one O
    each), as kube-apiserver reads them: (certificate PEM, private key PEM). The key never
    touches the disk here."""
    if not user:
        raise ValueError("a user name is required")
    return _issue(pki, _name(user, *groups), ExtendedKeyUsageOID.CLIENT_AUTH, days=days)


def issue_serving_cert(pki: Pki, common_name: str, hosts: list[str]) -> tuple[bytes, bytes]:
    """A new serving certificate (a kubelet's) for ``hosts`` (names or IP addresses) signed
    by the cluster CA: (certificate PEM, private key PEM)."""
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return _issue(pki, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, sans)


def not_after(cert_pem: bytes) -> str:
    """When a certificate expires (RFC 3339, UTC)."""
    c = x509.load_pem_x509_certificate(cert_pem)
    return c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
