"""CertificateSigningRequests in the controller manager, as kube-controller-manager runs them:

* ``csrsigning``: the signers ``kubernetes.io/kube-apiserver-client`` (client certificates
  the API server accepts: it trusts this CA), ``kubernetes.io/kube-apiserver-client-kubelet``
  and ``kubernetes.io/kubelet-serving``, with the cluster CA. An approved request, not failed
  and not issued yet, is weighed by its signer's rules (kubemodel.certificates): refused, it
  gets a Failed condition (reason SignerValidationFailure); accepted, it is signed as kube's
  PermissiveSigningPolicy signs: the request's subject and subjectAltNames, its usages as key
  usages, not a CA, valid from 5 minutes back for ``expirationSeconds`` (at least 10 minutes,
  at most the signing duration, a year by default; a certificate of less than 8 hours is not
  backdated at its end) and never past the CA's own expiry. ``kubernetes.io/legacy-unknown``
  and signers of other domains are never signed here.
* ``csrcleaner``: a request goes an hour after it was approved and issued, denied or failed
  (the condition's lastUpdateTime), 24 hours after it was made if still pending (no
  condition), or once its issued certificate expired.
"""

from __future__ import annotations

import base64
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from kubemodel.certificates import (
    API_SERVER_CLIENT,
    KUBELET_CLIENT,
    KUBELET_SERVING,
    CsrSubject,
    parse_request,
    signer_refusal,
)
from orchestrator.client import Conflict, NotFound, Obj
from orchestrator.client.rest import CERTIFICATESIGNINGREQUESTS

from .base import Client, Controller, InformerFactory
from .util import meta

__all__ = [
    "SIGNERS",
    "CsrCleaner",
    "CsrSigner",
    "SigningCA",
    "issue",
]

log = logging.getLogger("corral.controllers")

SIGNERS = (API_SERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING)
DURATION = 365 * 24 * 3600.0  # --cluster-signing-duration (8760h)
BACKDATE = 300.0
SHORT = 8 * 3600.0
MIN_DURATION = 600.0
APPROVED_EXPIRATION = 3600.0
DENIED_EXPIRATION = 3600.0
PENDING_EXPIRATION = 24 * 3600.0

_KEY_USAGES = {
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}


def _ext_usages() -> dict[str, Any]:
    from cryptography.x509.oid import ExtendedKeyUsageOID as E
    from cryptography.x509.oid import ObjectIdentifier

    return {
        "any": E.ANY_EXTENDED_KEY_USAGE,
        "server auth": E.SERVER_AUTH,
        "client auth": E.CLIENT_AUTH,
        "code signing": E.CODE_SIGNING,
        "email protection": E.EMAIL_PROTECTION,
        "s/mime": E.EMAIL_PROTECTION,
        "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
        "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
        "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
        "timestamping": E.TIME_STAMPING,
        "ocsp signing": E.OCSP_SIGNING,
        "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
        "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
    }


@dataclass(frozen=True)
class SigningCA:
    """The CA the signers sign with (PEM), and the longest a certificate may be valid."""

    cert_pem: bytes
    key_pem: bytes
    duration: float = DURATION


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def issue(
    ca: SigningCA,
    req: Any,
    usages: list[str],
    expiration_seconds: int | None,
    now: datetime.datetime | None = None,
) -> bytes:
    """The certificate (PEM) ``ca`` signs for the parsed request ``req``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    now = now or _now()
    ttl = ca.duration
    if expiration_seconds is not None:
        ttl = min(max(float(expiration_seconds), MIN_DURATION), ca.duration)
    not_before = now - datetime.timedelta(seconds=BACKDATE)
    end = ttl if ttl < SHORT else ttl - BACKDATE
    not_after = min(now + datetime.timedelta(seconds=end), ca_cert.not_valid_after_utc)
    if not now < ca_cert.not_valid_after_utc:
        raise ValueError(
            "refusing to sign a certificate that expired in the past: NotAfter="
            f"{ca_cert.not_valid_after_utc}"
        )
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ext_table = _ext_usages()
    extended: list[Any] = []
    for u in usages:
        if u in _KEY_USAGES:
            flags[_KEY_USAGES[u]] = True
        elif u in ext_table and ext_table[u] not in extended:
            extended.append(ext_table[u])
    builder = (
        x509.CertificateBuilder()
        .subject_name(req.subject)
        .issuer_name(ca_cert.subject)
        .public_key(req.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    sans = CsrSubject(req).san_extension()  # (the request's names; none of its extensions)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def _conditions(csr: Obj) -> list[Obj]:
    return [c for c in (csr.get("status") or {}).get("conditions") or () if isinstance(c, dict)]


def _has(csr: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in _conditions(csr))


def _stamp() -> str:
    return _now().strftime("%Y-%m-%dT%H:%M:%SZ")


class CsrSigner(Controller):
    """kube-controller-manager's csrsigning: the three kubernetes.io signers of this CA."""

    name = "csrsigning"
    workers = 2

    def __init__(self, client: Client, factory: InformerFactory, ca: SigningCA) -> None:
        super().__init__(client, factory)
        self.ca = ca
        self.csrs = factory.informer(CERTIFICATESIGNINGREQUESTS)
        self.csrs.add_handler(self.enqueue_handler)

    async def reconcile(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None:
            return None
        spec = csr.get("spec") or {}
        signer = spec.get("signerName")
        if (
            signer not in SIGNERS
            or not _has(csr, "Approved")
            or _has(csr, "Failed")
            or (csr.get("status") or {}).get("certificate")
        ):
            return None
        usages = [str(u) for u in spec.get("usages") or ()]
        try:
            req = parse_request(base64.b64decode(spec.get("request") or ""))
        except ValueError as e:  # the API server checked it: not seen
            log.warning("csrsigning: %s: unable to parse csr: %s", key, e)
            return None
        refusal = signer_refusal(str(signer), CsrSubject(req), usages)
        status = dict(csr.get("status") or {})
        if refusal is not None:
            failed = {
                "type": "Failed",
                "status": "True",
                "reason": "SignerValidationFailure",
                "message": refusal,
                "lastUpdateTime": _stamp(),
            }
            status["conditions"] = [*_conditions(csr), failed]
            log.info("csrsigning: %s: refused: %s", key, refusal)
        else:
            pem = issue(self.ca, req, usages, spec.get("expirationSeconds"))
            status["certificate"] = base64.b64encode(pem).decode()
            log.info("csrsigning: %s: signed for %s", key, signer)
        try:
            await self.client.update_status(
                CERTIFICATESIGNINGREQUESTS, None, {**csr, "status": status}
            )
        except Conflict:
            return 0.0  # it changed: weighed again as it is now
        except NotFound:
            pass
        return None


def _time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _cert_expiry(csr: Obj) -> datetime.datetime | None:
    from cryptography import x509

    raw = (csr.get("status") or {}).get("certificate")
    if not raw:
        return None
    try:
        certs = x509.load_pem_x509_certificates(base64.b64decode(raw))
    except ValueError:
        return None
    return min((c.not_valid_after_utc for c in certs), default=None)


def cleanup_deadline(csr: Obj) -> datetime.datetime | None:
    """When the csrcleaner deletes ``csr`` (None: never, as it stands)."""
    deadlines: list[datetime.datetime] = []
    conditions = _conditions(csr)
    issued = bool((csr.get("status") or {}).get("certificate"))
    if not conditions:
        made = _time(meta(csr).get("creationTimestamp"))
        if made is not None:
            deadlines.append(made + datetime.timedelta(seconds=PENDING_EXPIRATION))
    for c in conditions:
        updated = _time(c.get("lastUpdateTime"))
        kind = c.get("type")
        if updated is None:
            continue
        if kind == "Approved" and issued:
            deadlines.append(updated + datetime.timedelta(seconds=APPROVED_EXPIRATION))
        elif kind in ("Denied", "Failed"):
            deadlines.append(updated + datetime.timedelta(seconds=DENIED_EXPIRATION))
    if issued and any(c.get("type") == "Approved" for c in conditions):
        expiry = _cert_expiry(csr)
        if expiry is not None:
            deadlines.append(expiry)
    return min(deadlines, default=None)


class CsrCleaner(Controller):
    """kube-controller-manager's csrcleaner (each request looked at again when its deadline
    comes, rather than all of them every hour)."""

    name = "csrcleaner"
    workers = 1

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.csrs = factory.informer(CERTIFICATESIGNINGREQUESTS)
        self.csrs.add_handler(self.enqueue_handler)

    async def reconcile(self, key: str) -> float | None:
        csr = self.csrs.get(key)
        if csr is None:
            return None
        deadline = cleanup_deadline(csr)
        if deadline is None:
            return None
        left = (deadline - _now()).total_seconds()
        if left > 0:
            return left
        log.info("csrcleaner: deleting %s", key)
        try:  # this one, not one made since under its name
            await self.client.delete(
                CERTIFICATESIGNINGREQUESTS,
                None,
                str(meta(csr).get("name")),
                preconditions={"uid": meta(csr).get("uid")},
            )
        except (NotFound, Conflict):
            pass
        return None
