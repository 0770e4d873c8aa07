"""CertificateSigningRequests in the API server, as kube-apiserver's registry and admission
treat them (pkg/registry/certificates/certificates/strategy.go, plugin/pkg/admission/
certificates):

* create: the requester is the one who asks (spec.username, uid, groups, extra are the
  request's user, never the body's); no status (no pre-approved request); the
  CertificateSubjectRestriction admission refuses a ``kube-apiserver-client`` request for
  ``system:masters``.
* update: spec never changes; the main resource keeps the status; ``/status`` (the signer)
  keeps the Approved and Denied conditions, ``/approval`` keeps the certificate; the
  conditions written get their lastUpdateTime and lastTransitionTime.
* admission: ``/approval`` needs the ``approve`` verb on ``signers`` named the signerName
  (or ``<domain>/*``) in certificates.k8s.io; a ``/status`` write that sets or changes the
  certificate needs ``sign`` there (CertificateApproval and CertificateSigning).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from kubemodel.certificates import API_SERVER_CLIENT, CsrSubject, parse_request

from . import errors

if TYPE_CHECKING:
    from .authn import UserInfo

__all__ = [
    "GROUP",
    "REQUEST_USER",
    "RESOURCE",
    "SignerCheck",
    "admit_update",
    "prepare_create",
    "prepare_update",
    "restrict_subject",
]

Obj = dict[str, Any]
GROUP = "certificates.k8s.io"
RESOURCE = "certificatesigningrequests"
# (verb, signerName) -> whether the request's user may (the authorizer, both names tried)
SignerCheck = Callable[[str, str], Awaitable[bool]]
# The user of the request being served (Security sets it for the handler's task): who asks
# for a certificate. None for the server's own writers.
REQUEST_USER: ContextVar[UserInfo | None] = ContextVar("corral_request_user", default=None)


def prepare_create(obj: Obj, user: UserInfo | None) -> None:
    """PrepareForCreate, on the body as sent."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return  # the model names the error
    for f in ("username", "uid", "groups", "extra"):
        spec.pop(f, None)
    if user is not None:
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    obj["status"] = {}


def restrict_subject(csr: Obj) -> None:
    """CertificateSubjectRestriction (a validating admission: on the object validated)."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") == API_SERVER_CLIENT:
        name = str((csr.get("metadata") or {}).get("name") or "")
        try:
            req = parse_request(base64.b64decode(spec.get("request") or ""))
        except (ValueError, binascii.Error) as e:
            raise errors.forbidden(RESOURCE, name, f"failed to parse CSR: {e}", GROUP) from None
        if "system:masters" in CsrSubject(req).organizations:
            raise errors.forbidden(
                RESOURCE,
                name,
                f"use of {API_SERVER_CLIENT} signer with system:masters group is not allowed",
                GROUP,
            )


def _conditions(obj: Obj) -> list[Obj]:
    return [c for c in (obj.get("status") or {}).get("conditions") or () if isinstance(c, dict)]


def _stamp(new: Obj, old: Obj, now: str) -> None:
    """populateConditionTimestamps."""
    before = _conditions(old)
    for c in _conditions(new):
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (
                    o["lastTransitionTime"]
                    for o in before
                    if o.get("type") == c.get("type")
                    and o.get("status") == c.get("status")
                    and o.get("lastTransitionTime")
                ),
                now,
            )


def prepare_update(old: Obj, new: Obj, subresource: str | None, now: str) -> Obj:
    """The object to store: ``new`` (the status of the request's body already in place for
    ``/status`` and ``/approval``, the old one for the main resource) with the strategy of
    the endpoint written to applied."""
    new["spec"] = copy.deepcopy(old.get("spec"))
    if not isinstance(new.get("status"), dict | None):
        return new  # not a status: the decoder refuses it as it is (a 400, a patch's 422)
    if subresource == "approval":
        status = dict(new.get("status") or {})
        certificate = (old.get("status") or {}).get("certificate")
        status.pop("certificate", None)
        if certificate:
            status["certificate"] = certificate
        new["status"] = status
        _stamp(new, old, now)
    elif subresource == "status":
        status = dict(new.get("status") or {})
        kept = [c for c in _conditions(old) if c.get("type") in ("Approved", "Denied")]
        written = status.get("conditions")
        if isinstance(written, list):
            others = [
                c
                for c in written
                if not (isinstance(c, dict) and c.get("type") in ("Approved", "Denied"))
            ]
            status["conditions"] = kept + others
        elif kept and written is None:  # (not a list: the decoder refuses it)
            status["conditions"] = kept
        new["status"] = status
        _stamp(new, old, now)
    return new


async def admit_update(
    old: Obj, new: Obj, subresource: str | None, allowed: SignerCheck | None
) -> None:
    """CertificateApproval and CertificateSigning: a 403 unless the user may approve (an
    ``/approval`` write) or sign (a ``/status`` write that changes the certificate) for the
    request's signerName."""
    if allowed is None:
        return  # no authorizer (the server's own writers, unit tests)
    signer = str((old.get("spec") or {}).get("signerName") or "")
    name = str(old["metadata"]["name"])
    if subresource == "approval":
        if not await allowed("approve", signer):
            raise errors.forbidden(
                RESOURCE,
                name,
                f'user not permitted to approve requests with signerName "{signer}"',
                GROUP,
            )
    elif subresource == "status":
        before = (old.get("status") or {}).get("certificate")
        after = (new.get("status") or {}).get("certificate")
        if before != after and not await allowed("sign", signer):
            raise errors.forbidden(
                RESOURCE,
                name,
                f'user not permitted to sign requests with signerName "{signer}"',
                GROUP,
            )
