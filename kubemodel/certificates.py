"""certificates.k8s.io/v1 CertificateSigningRequest as kube-apiserver validates it
(pkg/apis/certificates/validation) and as kube-controller-manager's signers weigh it
(pkg/apis/certificates/helpers.go, pkg/controller/certificates/signer): the request a PEM
CERTIFICATE REQUEST whose signature verifies, the signerName's form, known usages, at least
600 s asked for, the conditions (Approved and Denied not both, those and Failed only "True"),
an issued certificate of CERTIFICATE blocks only; on update, no condition of those types
removed and an issued certificate never changed. The signers' rules: what each
``kubernetes.io`` signer may sign (its usages, the subject and names it accepts), ``None`` for
a signer it does not know.

Pure functions over the typed object or its JSON; the request is read with ``cryptography``
(imported when a request is checked, not when the model loads)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any

from kubemodel import gobase64
from kubemodel._generated import CertificateSigningRequest
from kubemodel.codec import VALIDATORS
from kubemodel.errors import FieldError, at, q
from kubemodel.pod import invalid, not_supported

__all__ = [
    "API_SERVER_CLIENT",
    "KUBELET_CLIENT",
    "KUBELET_SERVING",
    "LEGACY_UNKNOWN",
    "USAGES",
    "CsrSubject",
    "go_bytes",
    "parse_request",
    "signer_refusal",
    "validate_csr_update",
]

API_SERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

# allValidUsages, sorted as kube lists them in its "supported values"
USAGES = tuple(
    sorted(
        (
            "signing",
            "digital signature",
            "content commitment",
            "key encipherment",
            "key agreement",
            "data encipherment",
            "cert sign",
            "crl sign",
            "encipher only",
            "decipher only",
            "any",
            "server auth",
            "client auth",
            "code signing",
            "email protection",
            "s/mime",
            "ipsec end system",
            "ipsec tunnel",
            "ipsec user",
            "timestamping",
            "ocsp signing",
            "microsoft sgc",
            "netscape sgc",
        )
    )
)
# condition types that may only be "True" (kube's trueConditionTypes)
TRUE_ONLY = ("Approved", "Denied", "Failed")
_STATUSES = ("False", "True", "Unknown")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-',"
    " and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc',"
    " regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DOMAIN_MAX = 253
_GO_CURVES = ("secp224r1", "secp256r1", "secp384r1", "secp521r1")
_SIGNER_MAX = _DOMAIN_MAX + (253 + 63 + 1) + 1


class CsrSubject:
    """What a parsed request names: the subject's CN and O, the subjectAltNames (read as Go's
    ParseCertificateRequest reads them: the request's other extensions are not parsed)."""

    def __init__(self, req: Any) -> None:
        from cryptography.x509.oid import NameOID

        self.request = req
        subject = req.subject
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.common_name = str(cns[0].value) if cns else ""
        self.organizations = [
            str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ]
        self.dns_names, self.emails, ips, self.uris = request_sans(req)
        self.ip_addresses = [str(ip) for ip in ips]

    def san_extension(self) -> Any:
        """The names as an x509.SubjectAlternativeName for a certificate, None without."""
        from cryptography import x509

        names: list[Any] = [x509.DNSName(d) for d in self.dns_names]
        names += [x509.RFC822Name(e) for e in self.emails]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ip_addresses]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        return x509.SubjectAlternativeName(names) if names else None


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each DER element of ``data``, one after another (a single-byte
    tag, definite lengths); ValueError when they do not fill it exactly."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError("truncated")
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            size = n & 0x7F
            if size == 0 or size > 4 or i + size > len(data):
                raise ValueError("bad length")
            n = int.from_bytes(data[i : i + size], "big")
            i += size
        if i + n > len(data):
            raise ValueError("truncated")
        out.append((tag, data[i : i + n]))
        i += n
    return out


_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17, the contents of its OBJECT IDENTIFIER


def request_sans(req: Any) -> tuple[list[str], list[str], list[Any], list[str]]:
    """(dNSNames, rfc822Names, iPAddresses, URIs) of the request's subjectAltName extension,
    as Go's parseSANExtension reads them (other names skipped); ValueError in its words."""
    bad = ValueError("x509: invalid subject alternative names")
    dns: list[str] = []
    emails: list[str] = []
    ips: list[Any] = []
    uris: list[str] = []
    for attr in req.attributes:
        if attr.oid.dotted_string != _EXTENSION_REQUEST:
            continue
        try:
            extensions = _der_items(attr.value)
        except ValueError:
            raise bad from None
        for tag, ext in extensions:
            try:
                parts = _der_items(ext) if tag == 0x30 else []
            except ValueError:
                raise bad from None
            if len(parts) < 2 or parts[0] != (0x06, _SAN_OID) or parts[-1][0] != 0x04:
                continue
            try:
                (seq,) = _der_items(parts[-1][1])
                if seq[0] != 0x30:
                    raise ValueError
                names = _der_items(seq[1])
            except ValueError:
                raise bad from None
            dns, emails, ips, uris = [], [], [], []  # (Go: the last such extension's)
            for ntag, value in names:
                if ntag in (0x81, 0x82, 0x86):
                    try:
                        text = value.decode("ascii")
                    except UnicodeDecodeError:
                        what = {
                            0x81: "rfc822Name",
                            0x82: "dNSName",
                            0x86: "uniformResourceIdentifier",
                        }
                        raise ValueError(f"x509: SAN {what[ntag]} is malformed") from None
                    {0x81: emails, 0x82: dns, 0x86: uris}[ntag].append(text)
                elif ntag == 0x87:
                    if len(value) not in (4, 16):
                        raise ValueError(f"x509: cannot parse IP address of length {len(value)}")
                    ips.append(ipaddress.ip_address(value))
    return dns, emails, ips, uris


def go_bytes(data: bytes) -> str:
    """A []byte as Go's ``%#v`` prints it (how kube's field.Invalid shows spec.request)."""
    return "[]byte{" + ", ".join(f"0x{b:x}" for b in data) + "}"


def _decoded(text: str | None) -> bytes:
    """A []byte field's bytes (DecodeError, a 400, when it is not base64)."""
    return gobase64.decode(text or "")


def _pem_blocks(data: bytes) -> list[tuple[str, bool, bytes]]:
    """Go's pem.Decode in a loop: (type, has headers, DER) of each block."""
    out = []
    text = data.decode("latin-1")
    pattern = re.compile(r"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
    for m in pattern.finditer(text):
        body = m.group(2)
        headers = False
        lines = body.splitlines()
        if lines and ":" in lines[0]:
            headers = True
            while lines and lines[0].strip():
                lines.pop(0)
        try:
            der = base64.b64decode("".join(line.strip() for line in lines), validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append((m.group(1), headers, der))
    return out


def parse_request(request: bytes) -> Any:
    """kube's ParseCSR and CheckSignature: the x509 request, or ValueError with Go's words."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    blocks = _pem_blocks(request)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        req = x509.load_der_x509_csr(blocks[0][2])
        req.subject  # noqa: B018 (parsed now: a bad one is refused here)
        key = req.public_key()
    except ValueError as e:
        raise ValueError(f"asn1: structure error: {e}") from None
    except UnsupportedAlgorithm:
        key = None  # (Go parses none of these either: an unknown algorithm, refused below)
    request_sans(req)  # (ParseCertificateRequest reads the subjectAltNames, nothing else)
    # Go's x509 knows RSA, ECDSA on the NIST curves and Ed25519 keys; ParseCertificateRequest
    # refuses another curve, CheckSignature any other algorithm (DSA, Ed448, X25519 ...)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _GO_CURVES:
        raise ValueError("x509: unsupported elliptic curve")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("x509: cannot verify signature: algorithm unimplemented")
    try:
        req.signature_hash_algorithm  # noqa: B018 (an algorithm it does not know raises)
        valid = req.is_signature_valid
    except UnsupportedAlgorithm:  # (a signature algorithm Go does not know either)
        raise ValueError("x509: cannot verify signature: algorithm unimplemented") from None
    if not valid:
        if isinstance(key, rsa.RSAPublicKey):
            raise ValueError("crypto/rsa: verification error")
        if isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("x509: ECDSA verification failure")
        if isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("x509: Ed25519 verification failure")
        raise ValueError("x509: signature verification failure")
    return req


def _check_signer_name(name: str) -> None:
    """apimachinery's ValidateSignerName (its first error)."""
    where = "spec.signerName"
    if not name:
        raise FieldError(where, "Required value")
    segments = name.split("/")
    if len(segments) != 2:
        raise invalid(
            where,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )
    domain, path = segments
    if len(domain) > _DOMAIN_MAX:
        raise FieldError(where, f"Too long: may not be more than {_DOMAIN_MAX} bytes")
    labels = domain.split(".")
    for label in labels:
        problem = ""
        if len(label) > 63:
            problem = "must be no more than 63 characters"
        elif not _LABEL.fullmatch(label):
            problem = _DNS1123_LABEL_RULE
        if problem:
            raise invalid(where, domain, f"validating label {q(label)}: {problem}")
    if len(labels) < 2:
        raise invalid(
            where, domain, "should be a domain with at least two segments separated by dots"
        )
    if len(name) > _SIGNER_MAX:
        raise FieldError(where, f"Too long: may not be more than {_SIGNER_MAX} bytes")
    if not path:
        raise invalid(
            where,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )


def _check_certificate(data: bytes) -> str | None:
    """kube's validateCertificate: why ``data`` is not a chain of CERTIFICATE blocks."""
    from cryptography import x509

    if not data:
        return None
    blocks = _pem_blocks(data)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for kind, headers, der in blocks:
        if kind != "CERTIFICATE":
            return f"only CERTIFICATE PEM blocks are allowed, found {q(kind)}"
        if headers:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as e:
            return f"x509: malformed certificate: {e}"
    return None


def _validate_conditions(conditions: list[Any]) -> None:
    where = "status.conditions"
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate(conditions):
        here = at(where, i)
        if not c.type:
            raise FieldError(at(here, "type"), "Required value")
        allowed = ("True",) if c.type in TRUE_ONLY else _STATUSES
        if not c.status:
            raise FieldError(at(here, "status"), "Required value")
        if c.status not in allowed:
            raise not_supported(at(here, "status"), c.status, allowed)
        if c.type == "Approved":
            approved = True
            if denied:
                raise invalid(
                    at(here, "type"),
                    c.type,
                    "Approved and Denied conditions are mutually exclusive",
                )
        elif c.type == "Denied":
            denied = True
            if approved:
                raise invalid(
                    at(here, "type"),
                    c.type,
                    "Approved and Denied conditions are mutually exclusive",
                )
        if c.type in seen:
            raise FieldError(at(here, "type"), f"Duplicate value: {q(c.type)}")
        seen.add(c.type)


def _validate_csr(csr: CertificateSigningRequest) -> None:
    """validateCertificateSigningRequest with the v1 options (metadata is the API server's)."""
    spec = csr.spec
    status = csr.status
    raw = _decoded(spec.request)  # both decoded before anything is validated, as Go's
    certificate = _decoded(status.certificate if status else None)  # decoder does
    try:
        parse_request(raw)
    except ValueError as e:
        shown = "[]byte(nil)" if spec.request is None else go_bytes(raw)  # (Go's %#v)
        raise FieldError("spec.request", f"Invalid value: {shown}: {e}") from None
    usages = spec.usages or []
    if not usages:
        raise FieldError("spec.usages", "Required value")
    for i, usage in enumerate(usages):
        if usage not in USAGES:
            raise not_supported(at("spec.usages", i), usage, USAGES)
    seen: set[str] = set()
    for i, usage in enumerate(usages):
        if usage in seen:
            raise FieldError(at("spec.usages", i), f"Duplicate value: {q(usage)}")
        seen.add(usage)
    if spec.signer_name == LEGACY_UNKNOWN:
        raise invalid(
            "spec.signerName",
            spec.signer_name,
            "the legacy signerName is not allowed via this API version",
        )
    _check_signer_name(spec.signer_name)
    if spec.expiration_seconds is not None and spec.expiration_seconds < 600:
        raise invalid(
            "spec.expirationSeconds",
            spec.expiration_seconds,
            "may not specify a duration less than 600 seconds (10 minutes)",
        )
    _validate_conditions((status.conditions if status else None) or [])
    problem = _check_certificate(certificate)
    if problem:
        raise FieldError("status.certificate", f'Invalid value: "<certificate data>": {problem}')


def validate_csr_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """validateCertificateSigningRequestUpdate beyond the create rules (which the decode ran):
    conditions of the types Approved, Denied and Failed are never removed, an issued
    certificate is neither removed nor changed."""

    def conditions(obj: dict[str, Any], kind: str) -> int:
        return sum(
            1
            for c in (obj.get("status") or {}).get("conditions") or ()
            if isinstance(c, dict) and c.get("type") == kind
        )

    for kind in TRUE_ONLY:
        if conditions(new, kind) < conditions(old, kind):
            raise FieldError(
                "status.conditions",
                f"Forbidden: updates may not remove a condition of type {q(kind)}",
            )
    before = (old.get("status") or {}).get("certificate")
    after = (new.get("status") or {}).get("certificate")
    if before and not after:
        raise FieldError(
            "status.certificate", "Forbidden: updates may not remove status.certificate"
        )
    if before and after and _decoded(before) != _decoded(after):
        raise FieldError(
            "status.certificate", "Forbidden: updates may not modify existing certificate"
        )


# ----------------------------------------------------------------------------- signers

_KUBELET_SERVING_USAGES = (
    frozenset({"digital signature", "key encipherment", "server auth"}),
    frozenset({"digital signature", "server auth"}),
)
_KUBELET_CLIENT_USAGES = (
    frozenset({"digital signature", "key encipherment", "client auth"}),
    frozenset({"digital signature", "client auth"}),
)


def _go_list(items: frozenset[str]) -> str:
    return "[" + " ".join(sorted(items)) + "]"


def _kubelet_serving(req: CsrSubject, usages: set[str]) -> str | None:
    """ValidateKubeletServingCSR."""
    if req.organizations != ["system:nodes"]:
        return "subject organization is not system:nodes"
    if not req.dns_names and not req.ip_addresses:
        return "DNS or IP subjectAltName is required"
    if req.emails:
        return "Email subjectAltNames are not allowed"
    if req.uris:
        return "URI subjectAltNames are not allowed"
    if usages not in _KUBELET_SERVING_USAGES:
        return f"usages did not match {_go_list(_KUBELET_SERVING_USAGES[0])}"
    if not req.common_name.startswith("system:node:"):
        return "subject common name does not begin with 'system:node:'"
    return None


def _kubelet_client(req: CsrSubject, usages: set[str]) -> str | None:
    """ValidateKubeletClientCSR."""
    if req.organizations != ["system:nodes"]:
        return "subject organization is not system:nodes"
    if req.dns_names:
        return "DNS subjectAltNames are not allowed"
    if req.emails:
        return "Email subjectAltNames are not allowed"
    if req.ip_addresses:
        return "IP subjectAltNames are not allowed"
    if req.uris:
        return "URI subjectAltNames are not allowed"
    if not req.common_name.startswith("system:node:"):
        return "subject common name does not begin with 'system:node:'"
    if usages not in _KUBELET_CLIENT_USAGES:
        return f"usages did not match {_go_list(_KUBELET_CLIENT_USAGES[0])}"
    return None


def _api_server_client(usages: list[str]) -> str | None:
    """validAPIServerClientUsages: client auth, with digital signature and key encipherment
    at most."""
    client_auth = False
    for u in usages:
        if u in ("digital signature", "key encipherment"):
            continue
        if u == "client auth":
            client_auth = True
            continue
        return f"invalid usage for client certificate: {u}"
    if not client_auth:
        return "missing required usage for client certificate: client auth"
    return None


def signer_refusal(signer: str, req: CsrSubject, usages: list[str]) -> str | None:
    """Why the ``signer`` (one of kube-controller-manager's) refuses to sign: the message of
    the Failed condition it adds (reason SignerValidationFailure); None when it signs.
    KeyError for a signer it does not run."""
    if signer == API_SERVER_CLIENT:
        return _api_server_client(usages)
    if signer == KUBELET_CLIENT:
        return _kubelet_client(req, set(usages))
    if signer == KUBELET_SERVING:
        return _kubelet_serving(req, set(usages))
    raise KeyError(signer)


VALIDATORS.update({CertificateSigningRequest: _validate_csr})
