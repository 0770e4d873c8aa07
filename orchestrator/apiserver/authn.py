"""Authentication: who sent a request, as kube-apiserver answers it.

Three authenticators, tried in kube-apiserver's order:

* the client certificate (verified by TLS against the cluster CA): CN is the user name, every
  O is a group;
* a static bearer token from ``--token-auth-file`` (CSV ``token,user,uid[,"group1,group2"]``);
* a ServiceAccount token: a JWT (ES256) signed with the key made at first start, for
  ``system:serviceaccount:<ns>:<name>`` in ``system:serviceaccounts`` and
  ``system:serviceaccounts:<ns>``. Tokens from TokenRequest expire and may be bound to a pod;
  each use checks the live ServiceAccount (and pod) by uid, so a token dies with its pod.

An authenticated user is also in ``system:authenticated``. No credentials: ``None`` (the caller
decides whether anonymous is allowed); credentials that do not verify: 401.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from corral_common import hostsys

from .errors import ApiError
from .resources import by_path
from .storage import Storage

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATED",
    "DEFAULT_AUDIENCE",
    "Authenticator",
    "ServiceAccountTokens",
    "TokenFileError",
    "UserInfo",
    "load_token_file",
    "service_account_user",
    "unauthorized",
]

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SA_PREFIX = "system:serviceaccount:"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
DELETED_POD_GRACE = 60.0  # seconds a token outlives its pod's deletionTimestamp (kube's)

PODS = by_path("", "v1", "pods")
SERVICEACCOUNTS = by_path("", "v1", "serviceaccounts")
assert PODS is not None and SERVICEACCOUNTS is not None


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The shape of authentication.k8s.io/v1 UserInfo (audit events, reviews)."""
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS = UserInfo("system:anonymous", groups=(UNAUTHENTICATED,))


def with_authenticated(user: UserInfo) -> UserInfo:
    if AUTHENTICATED in user.groups or user.name == ANONYMOUS.name:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED), user.extra)


def service_account_user(
    namespace: str, name: str, uid: str = "", extra: Mapping[str, tuple[str, ...]] | None = None
) -> UserInfo:
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        uid,
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
        dict(extra or {}),
    )


def split_service_account(username: str) -> tuple[str, str] | None:
    """``system:serviceaccount:<ns>:<name>`` -> (ns, name)."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


# ---------------------------------------------------------------------- certificates


def user_from_peercert(cert: Mapping[str, Any]) -> UserInfo | None:
    """The user a verified client certificate names (``ssl.SSLSocket.getpeercert()``)."""
    cn = ""
    groups: list[str] = []
    for rdn in cert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                groups.append(value)
    if not cn:
        return None
    return UserInfo(cn, groups=tuple(groups))


def _authenticated(cert: Mapping[str, Any]) -> UserInfo | None:
    user = user_from_peercert(cert)
    return None if user is None else with_authenticated(user)


@functools.lru_cache(maxsize=1024)
def _subject_user(subject: tuple[Any, ...]) -> UserInfo | None:
    """The authenticated user a certificate's subject names: the same subject on every
    request of a connection (and of a client's other connections) is read once. The
    certificate itself was verified by the TLS handshake, which this does not replace."""
    return _authenticated({"subject": subject})


def cert_user(cert: Mapping[str, Any]) -> UserInfo | None:
    """``with_authenticated(user_from_peercert(cert))``, or None when it names no user."""
    subject = cert.get("subject", ())
    if isinstance(subject, tuple):
        try:
            return _subject_user(subject)
        except TypeError:  # not hashable: not the tuples ssl gives
            pass
    return _authenticated(cert)


# ---------------------------------------------------------------------- static tokens


class TokenFileError(Exception):
    def __init__(self, path: Path, line: int, why: str) -> None:
        super().__init__(f"token file {path}, line {line}: {why}")


def load_token_file(path: Path) -> dict[str, UserInfo]:
    """kube-apiserver's ``--token-auth-file``: ``token,user,uid[,"group1,group2"]`` a line."""
    out: dict[str, UserInfo] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise TokenFileError(path, 0, e.strerror or str(e)) from None
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < 3:
            raise TokenFileError(path, n, "expected token,user,uid[,groups]")
        token, user, uid = (c.strip() for c in row[:3])
        if not token or not user:
            raise TokenFileError(path, n, "empty token or user name")
        if token in out:
            raise TokenFileError(path, n, "duplicate token")
        groups: tuple[str, ...] = ()
        if len(row) > 3:
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip())
        out[token] = UserInfo(user, uid, groups)
    return out


# ---------------------------------------------------------------------- ServiceAccount JWTs


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServiceAccountTokens:
    """Signs and verifies ServiceAccount JWTs with one EC P-256 key (ES256), kept in
    ``key_path`` (made at first start, mode 0600)."""

    def __init__(self, key_path: Path, issuer: str = DEFAULT_AUDIENCE) -> None:
        self.issuer = issuer
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            hostsys.write_atomic(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        self._key = key
        self._public = key.public_key()
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64(hashlib.sha256(der).digest())

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"alg": "ES256", "kid": self.kid}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this server signed (signature checked, not yet the times or
        the objects); None for a token that is not ours."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        if header.get("alg") != "ES256" or claims.get("iss") != self.issuer:
            return None
        if len(sig) != 64:
            raise unauthorized()
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self._public.verify(
                der, (parts[0] + "." + parts[1]).encode(), ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise unauthorized() from None
        return claims

    def issue(
        self,
        namespace: str,
        sa: Mapping[str, Any],
        audiences: list[str],
        seconds: int,
        pod: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A bound token for ServiceAccount ``sa`` (and ``pod``): (token, expiry epoch)."""
        now = int(time.time())
        exp = now + seconds
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa["metadata"]["name"], "uid": sa["metadata"]["uid"]},
        }
        if pod is not None:
            private["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
        claims = {
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "sub": f"{SA_PREFIX}{namespace}:{sa['metadata']['name']}",
        }
        return self.sign(claims), exp


# ---------------------------------------------------------------------- the authenticator


class Authenticator:
    def __init__(
        self,
        storage: Storage,
        sa_tokens: ServiceAccountTokens,
        static_tokens: Mapping[str, UserInfo] | None = None,
        audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,),
    ) -> None:
        self.storage = storage
        self.sa_tokens = sa_tokens
        self.static_tokens = dict(static_tokens or {})
        self.audiences = audiences

    async def authenticate(
        self, peercert: Mapping[str, Any] | None, authorization: str | None
    ) -> UserInfo | None:
        """The user, None when the request carries no credentials; 401 for credentials that
        do not verify."""
        if peercert:
            user = cert_user(peercert)
            if user is not None:
                return user
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        user = self._static(token)
        if user is None:
            user = await self.token_user(token)
        if user is None:
            raise unauthorized()
        return with_authenticated(user)

    def _static(self, token: str) -> UserInfo | None:
        for known, user in self.static_tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None

    async def token_user(
        self, token: str, audiences: tuple[str, ...] | None = None
    ) -> UserInfo | None:
        """The user of a ServiceAccount token, None when it is not valid (not ours, expired,
        wrong audience, its ServiceAccount or pod gone or replaced)."""
        try:
            claims = self.sa_tokens.verify(token)
        except ApiError:
            return None
        if claims is None:
            return None
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or exp <= now:
            return None
        if isinstance(nbf, int | float) and nbf > now + 60:
            return None
        aud = claims.get("aud")
        aud_list = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(aud_list) & set(audiences or self.audiences):
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        ns = private.get("namespace")
        sa_ref = private.get("serviceaccount") or {}
        if not isinstance(ns, str) or not isinstance(sa_ref, dict):
            return None
        sa_name, sa_uid = sa_ref.get("name"), sa_ref.get("uid")
        if claims.get("sub") != f"{SA_PREFIX}{ns}:{sa_name}":
            return None
        try:
            sa = await self.storage.get(SERVICEACCOUNTS, ns, str(sa_name))
        except ApiError:
            return None
        if sa["metadata"].get("uid") != sa_uid:
            return None
        extra: dict[str, tuple[str, ...]] = {}
        if jti := claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = (f"JTI={jti}",)
        pod_ref = private.get("pod")
        if isinstance(pod_ref, dict):
            try:
                pod = await self.storage.get(PODS, ns, str(pod_ref.get("name")))
            except ApiError:
                return None
            meta = pod["metadata"]
            if meta.get("uid") != pod_ref.get("uid"):
                return None
            if (deleted := meta.get("deletionTimestamp")) and _epoch(
                deleted
            ) < now - DELETED_POD_GRACE:
                return None
            extra["authentication.kubernetes.io/pod-name"] = (str(meta["name"]),)
            extra["authentication.kubernetes.io/pod-uid"] = (str(meta["uid"]),)
        return service_account_user(ns, str(sa_name), str(sa_uid), extra)


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
