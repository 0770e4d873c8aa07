"""A client for the OCI distribution API (https://github.com/opencontainers/distribution-spec):
manifests and blobs by digest, uploads, and the two ways registries authenticate (Basic, and
the bearer token flow of distribution's token spec).

Standard library only: ``http.client`` and ``ssl``. One ``Client`` talks to one repository on
one registry; it is used from several threads at once (layers download in parallel), each with
its own keep-alive connection. Every failure is a ``RegistryError`` that names the request, the
registry and, when there is one, the registry's own message.

Redirects are followed only to the same host (distribution's filesystem storage never
redirects; a registry that sends a blob elsewhere is refused with that said).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from .digest import check_digest, sha256_bytes
from .errors import AuthError, FormatError, RegistryError, RegistryNotFound
from .regconf import Credentials, Endpoint, TlsFiles
from .sources import INDEX_TYPES, MANIFEST_TYPES

MAX_MANIFEST = 4 << 20  # distribution's own limit for a manifest
MAX_ERROR_BODY = 64 << 10
MAX_REDIRECTS = 5
TOKEN_LIFETIME = 60.0  # seconds a bearer token lives when the token server does not say
TOKEN_MARGIN = 5.0  # a token with less than this left is fetched again before it is used
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
USER_AGENT = "corral/0.1"


@dataclass
class Settings:
    """How to talk to registries (what the CLI options say)."""

    credentials: Credentials | None = None
    tls: TlsFiles = field(default_factory=TlsFiles)
    timeout: float = 60.0  # seconds without a byte before a request counts as stalled
    max_manifest: int = MAX_MANIFEST


_CHALLENGE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="reg",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE.finditer(rest):
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return scheme.lower(), params


def registry_message(body: bytes) -> str:
    """The ``errors[].message`` of a distribution error body, or the body's start."""
    try:
        doc = json.loads(body)
        errs = doc.get("errors") or []
        msgs = []
        for e in errs:
            text = e.get("message") or e.get("code") or ""
            if e.get("code") and e.get("message"):
                text = f"{e['code']}: {e['message']}"
            msgs.append(str(text))
        if msgs:
            return "; ".join(msgs)
        if isinstance(doc.get("details"), str):
            return doc["details"]
    except (ValueError, AttributeError, TypeError):
        pass
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "no message"


class Client:
    """Requests to ``endpoint.repo`` on ``endpoint.host`` with ``actions`` (pull, or
    pull,push) rights."""

    def __init__(self, endpoint: Endpoint, settings: Settings, actions: str = "pull") -> None:
        self.endpoint = endpoint
        self.host = endpoint.api_host
        self.repo = endpoint.repo
        self.settings = settings
        self.actions = actions
        self.scheme = "https"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[http.client.HTTPConnection] = []
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}  # scopes -> token, until
        self._pinged = False

    # -- connections -------------------------------------------------------------------------

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        tls = self.settings.tls
        for ca in tls.cas:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as e:
                raise RegistryError("load CA", self.host, f"{ca}: {e}") from e
        for cert, key in tls.client:
            try:
                ctx.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as e:
                raise RegistryError("load client certificate", self.host, f"{cert}: {e}") from e
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _new_conn(self) -> http.client.HTTPConnection:
        t = self.settings.timeout
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            ctx = self._ssl_context(not self.endpoint.insecure)
            conn = http.client.HTTPSConnection(self.host, timeout=t, context=ctx)
        else:
            conn = http.client.HTTPConnection(self.host, timeout=t)
        with self._lock:
            self._conns.append(conn)
        return conn

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._new_conn()
        return c

    def _drop_conn(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: learns the scheme (HTTPS, or HTTP for an insecure registry that does
        not speak TLS) and how the registry wants to be authenticated."""
        if self._pinged:
            return
        try:
            resp = self._send("GET", "/v2/", {}, None, "ping")
        except RegistryError as e:
            if not (self.endpoint.insecure and isinstance(e.__cause__, ssl.SSLError | OSError)):
                raise
            self._drop_conn()
            self.scheme = "http"
            resp = self._send("GET", "/v2/", {}, None, "ping")
        body = resp.read(MAX_ERROR_BODY)
        if resp.status == 401:
            self._challenge = parse_challenge(resp.getheader("WWW-Authenticate") or "")
        elif resp.status != 200:
            raise RegistryError("ping /v2/", self.host, registry_message(body), resp.status)
        self._pinged = True

    def _send(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | IO[bytes] | None,
        step: str,
    ) -> http.client.HTTPResponse:
        """One request on this thread's connection; a stale keep-alive connection is retried
        once on a fresh one (never a request with a streamed body)."""
        hdrs = {"User-Agent": USER_AGENT, **headers}
        for attempt in (0, 1):
            conn = self._conn()
            fresh = conn.sock is None
            try:
                conn.request(method, target, body=body, headers=hdrs)
                return conn.getresponse()
            except TimeoutError as e:
                self._drop_conn()
                raise RegistryError(
                    step, self.host, f"no answer for {self.settings.timeout:g} s (stalled)"
                ) from e
            except (OSError, http.client.HTTPException) as e:
                self._drop_conn()
                if attempt == 0 and not fresh and not hasattr(body, "read"):
                    continue
                raise RegistryError(step, self.host, f"connection failed: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _scopes(self, extra: Iterable[str]) -> tuple[str, ...]:
        return (f"repository:{self.repo}:{self.actions}", *extra)

    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._challenge is None:
            return {}
        kind, params = self._challenge
        creds = self.settings.credentials
        if kind == "basic":
            if creds is None:
                return {}
            raw = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if kind == "bearer":
            with self._lock:
                token, until = self._tokens.get(scopes, ("", 0.0))
            if not token or time.monotonic() >= until - TOKEN_MARGIN:
                token, lifetime = self._fetch_token(params, scopes)
                with self._lock:
                    self._tokens[scopes] = (token, time.monotonic() + lifetime)
            return {"Authorization": "Bearer " + token}
        raise AuthError("authenticate", self.host, f"unsupported auth scheme {kind!r}")

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> tuple[str, float]:
        """A token for ``scopes`` from the challenge's realm, and how many seconds it lives
        (``expires_in``; 60 when the answer does not say, as the token spec has it)."""
        realm = params.get("realm")
        if not realm:
            raise AuthError("token", self.host, "Bearer challenge without a realm")
        query = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        creds = self.settings.credentials
        if creds is not None:
            raw = f"{creds.username}:{creds.password}".encode()
            req.add_header("Authorization", "Basic " + base64.b64encode(raw).decode())
        ctx = self._ssl_context(not self.endpoint.insecure) if url.startswith("https:") else None
        step = f"GET token from {realm}"
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout, context=ctx) as r:
                doc = json.loads(r.read(MAX_ERROR_BODY))
        except urllib.error.HTTPError as e:
            msg = registry_message(e.read(MAX_ERROR_BODY))
            raise AuthError(step, self.host, msg, e.code) from e
        except (OSError, ValueError) as e:
            raise AuthError(step, self.host, str(e)) from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(step, self.host, "the answer holds no token")
        lifetime = doc.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = TOKEN_LIFETIME
        return token, float(lifetime)

    def request(
        self,
        method: str,
        target: str,
        step: str,
        *,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        scopes: Iterable[str] = (),
    ) -> http.client.HTTPResponse:
        """Send, authenticating when challenged and following same-host redirects; the
        response (status in ``ok``) is returned unread. Anything else is a RegistryError."""
        self.ping()
        sc = self._scopes(scopes)
        authed = False
        for _ in range(MAX_REDIRECTS + 1):
            hdrs = {**(headers or {}), **self._auth_header(sc)}
            resp = self._send(method, target, hdrs, body, step)
            if resp.status == 401 and not authed and not hasattr(body, "read"):
                refusal = resp.read(MAX_ERROR_BODY)
                challenge = parse_challenge(resp.getheader("WWW-Authenticate") or "")
                authed = True
                if challenge[0] in ("basic", "bearer"):
                    if challenge[0] == "basic" and self.settings.credentials is None:
                        said = registry_message(refusal) if refusal.strip() else ""
                        msg = f"{said or 'authentication required'} (no credentials: corral login)"
                        raise AuthError(step, self.host, msg, resp.status)
                    self._challenge = challenge
                    sent = hdrs.get("Authorization", "").removeprefix("Bearer ")
                    with self._lock:  # expired or revoked: fetch another, unless a thread
                        if self._tokens.get(sc, ("",))[0] == sent:  # already has
                            self._tokens.pop(sc, None)
                    continue
            if resp.status in ok:
                return resp
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                resp.read(MAX_ERROR_BODY)
                target = self._same_host(resp.getheader("Location") or "", step)
                continue
            msg = registry_message(resp.read(MAX_ERROR_BODY))
            if resp.status == 401:
                raise AuthError(step, self.host, msg, resp.status)
            if resp.status == 404:
                raise RegistryNotFound(step, self.host, msg, resp.status)
            raise RegistryError(step, self.host, msg, resp.status)
        raise RegistryError(step, self.host, f"more than {MAX_REDIRECTS} redirects")

    def _same_host(self, location: str, step: str) -> str:
        """The request target for a redirect or upload Location; another host is refused."""
        u = urllib.parse.urlsplit(location)
        if u.netloc and (u.netloc != self.host or (u.scheme and u.scheme != self.scheme)):
            raise RegistryError(
                step, self.host, f"redirect to another host refused: {u.scheme}://{u.netloc}"
            )
        if not u.path.startswith("/"):
            raise RegistryError(step, self.host, f"bad Location {location!r}")
        return u.path + ("?" + u.query if u.query else "")

    # -- manifests ---------------------------------------------------------------------------

    def get_manifest(self, reference: str) -> tuple[bytes, str, str, dict[str, Any]]:
        """(body, media type, digest, parsed body) of a manifest or index by tag or digest. The
        digest is computed and must match the one asked for, and the registry's
        Docker-Content-Digest; the body must be a JSON object."""
        step = f"GET manifest {self.repo}:{reference}"
        resp = self.request(
            "GET", f"/v2/{self.repo}/manifests/{reference}", step, headers={"Accept": ACCEPT}
        )
        limit = self.settings.max_manifest
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._drop_conn()
            raise RegistryError(step, self.host, f"manifest is {length} bytes (at most {limit})")
        body = self._read(resp, limit + 1, step)
        if len(body) > limit:
            self._drop_conn()
            raise RegistryError(step, self.host, f"manifest larger than {limit} bytes")
        digest = sha256_bytes(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(step, self.host, f"manifest digest is {digest}, not {reference}")
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise RegistryError(
                step, self.host, f"manifest digest is {digest}, registry says {claimed}"
            )
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise FormatError(f"{self.host}: {step}: manifest is not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise FormatError(f"{self.host}: {step}: manifest is not a JSON object")
        media = doc.get("mediaType") or (resp.getheader("Content-Type") or "").split(";")[0]
        if media not in (*MANIFEST_TYPES, *INDEX_TYPES):
            if "manifests" in doc:
                media = INDEX_TYPES[0]
            elif "config" in doc and "layers" in doc:
                media = MANIFEST_TYPES[0]
            else:
                raise FormatError(f"{self.host}: {step}: unsupported manifest type {media!r}")
        return body, media, digest, doc

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        step = f"PUT manifest {self.repo}:{reference}"
        resp = self.request(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference}",
            step,
            ok=(201, 200),
            headers={"Content-Type": media_type, "Content-Length": str(len(body))},
            body=body,
        )
        resp.read(MAX_ERROR_BODY)
        digest = sha256_bytes(body)
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(step, self.host, f"registry stored {claimed}, we sent {digest}")
        return digest

    # -- blobs -------------------------------------------------------------------------------

    def _read(self, resp: http.client.HTTPResponse, n: int, step: str) -> bytes:
        try:
            return resp.read(n)
        except TimeoutError as e:
            self._drop_conn()
            raise RegistryError(
                step, self.host, f"no data for {self.settings.timeout:g} s (stalled)"
            ) from e
        except (OSError, http.client.HTTPException) as e:
            self._drop_conn()
            raise RegistryError(step, self.host, f"connection failed: {e}") from e

    def get_blob(self, digest: str, start: int = 0) -> http.client.HTTPResponse:
        """A blob's response, unread: 200 from the start, or 206 from ``start``."""
        check_digest(digest)
        headers = {"Range": f"bytes={start}-"} if start else {}
        step = f"GET blob {self.repo}@{digest}"
        return self.request(
            "GET", f"/v2/{self.repo}/blobs/{digest}", step, ok=(200, 206), headers=headers
        )

    def read_blob(self, resp: http.client.HTTPResponse, n: int, digest: str) -> bytes:
        return self._read(resp, n, f"GET blob {self.repo}@{digest}")

    def blob_bytes(self, digest: str, size: int | None, limit: int) -> bytes:
        """A small blob (a config) in memory, verified."""
        resp = self.get_blob(digest)
        data = self.read_blob(resp, limit + 1, digest)
        step = f"GET blob {self.repo}@{digest}"
        if len(data) > limit:
            self._drop_conn()
            raise RegistryError(step, self.host, f"blob larger than {limit} bytes")
        actual = sha256_bytes(data)
        if actual != digest or (size is not None and size != len(data)):
            raise RegistryError(
                step, self.host, f"content is {actual} ({len(data)} bytes), not {digest} ({size})"
            )
        return data

    def has_blob(self, digest: str) -> bool:
        step = f"HEAD blob {self.repo}@{digest}"
        try:
            resp = self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}", step)
        except RegistryNotFound:
            return False
        resp.read()
        return True

    def start_upload(self, digest: str, mount_from: str | None) -> str | None:
        """POST an upload session: None when the blob was mounted from ``mount_from``, else the
        session's Location target."""
        target = f"/v2/{self.repo}/blobs/uploads/"
        scopes: tuple[str, ...] = ()
        if mount_from:
            target += "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from})
            scopes = (f"repository:{mount_from}:pull",)
        step = f"POST upload {self.repo}@{digest}"
        resp = self.request(
            "POST",
            target,
            step,
            ok=(201, 202),
            headers={"Content-Length": "0"},
            body=b"",
            scopes=scopes,
        )
        resp.read(MAX_ERROR_BODY)
        if resp.status == 201:
            return None
        return self._location(resp, step)

    def _location(self, resp: http.client.HTTPResponse, step: str) -> str:
        loc = resp.getheader("Location")
        if not loc:
            raise RegistryError(step, self.host, "upload answer without a Location")
        return self._same_host(loc, step)

    def upload_chunk(self, location: str, data: bytes, offset: int, digest: str) -> str:
        step = f"PATCH upload {self.repo}@{digest} bytes {offset}-{offset + len(data) - 1}"
        resp = self.request(
            "PATCH",
            location,
            step,
            ok=(202,),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
                "Content-Range": f"{offset}-{offset + len(data) - 1}",
            },
            body=data,
        )
        resp.read(MAX_ERROR_BODY)
        return self._location(resp, step)

    def finish_upload(
        self, location: str, digest: str, body: bytes | IO[bytes] = b"", size: int = 0
    ) -> None:
        """PUT ``?digest=``: with the whole blob (monolithic) or none (after chunks)."""
        sep = "&" if "?" in location else "?"
        step = f"PUT upload {self.repo}@{digest}"
        resp = self.request(
            "PUT",
            location + sep + urllib.parse.urlencode({"digest": digest}),
            step,
            ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body,
        )
        resp.read(MAX_ERROR_BODY)
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(step, self.host, f"registry stored {claimed}, we sent {digest}")


def check_login(endpoint: Endpoint, settings: Settings) -> None:
    """Authenticate once against ``/v2/`` (Basic) or the token server (Bearer, scope-less)."""
    client = Client(endpoint, settings)
    try:
        client.ping()
        if client._challenge is None:
            return
        if settings.credentials is None:
            raise AuthError("login", client.host, "no credentials")
        hdrs = client._auth_header(())
        resp = client._send("GET", "/v2/", hdrs, None, "login")
        body = resp.read(MAX_ERROR_BODY)
        if resp.status != 200:
            raise AuthError("login", client.host, registry_message(body), resp.status)
    finally:
        client.close()
