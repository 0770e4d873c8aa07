"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with a
config file of its own in a temp dir, plain HTTP or TLS (a test CA made with ``openssl``), with
htpasswd auth or the token flow (``TokenServer``: a tiny JWT issuer signing with ``openssl``).
``FaultProxy`` sits in front of a registry and breaks chosen answers once: cut a blob
mid-stream, tamper with it, stall, redirect to another host, ignore a Range request, send a
huge manifest.

Everything started here is stopped by the fixture that started it. Shared by the tests
(``tests/registryserver.py`` turns a missing tool into a skip) and the pull benchmark.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.net import free_port

REGISTRY = "/usr/bin/docker-registry"


class Missing(RuntimeError):
    """A tool this needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} is not installed (Debian package {package}; scripts/setup.sh)")
        self.tool = tool
        self.package = package


def need(tool: str, package: str) -> str:
    """``tool``'s path; Missing when it is not installed."""
    path = shutil.which(tool)
    if path is None:
        raise Missing(tool, package)
    return path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    ca: Path  # CA certificate
    cert: Path  # server certificate for 127.0.0.1, signed by the CA
    key: Path


def make_pki(d: Path) -> Pki:
    """A test CA and a server certificate for IP 127.0.0.1 signed by it."""
    d.mkdir(parents=True, exist_ok=True)
    ca, cakey = d / "ca.crt", d / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=corral test CA", "-keyout", str(cakey), "-out", str(ca))  # fmt: skip
    key, csr, cert = d / "server.key", d / "server.csr", d / "server.crt"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(cakey),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return Pki(ca, cert, key)


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    tool = need("htpasswd", "apache2-utils")
    lines = []
    for user, pw in users.items():
        out = subprocess.run([tool, "-nbB", user, pw], check=True, capture_output=True, text=True)
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Registry:
    """A running docker-registry: ``host`` is 127.0.0.1:PORT."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    tls: bool

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")


def start_registry(
    root: Path, auth: dict[str, Any] | None = None, pki: Pki | None = None
) -> Registry:
    """Start docker-registry with storage and config under ``root``; waits until it answers."""
    need(REGISTRY, "docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http_cfg: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "corral-test-secret"}
    if pki is not None:
        http_cfg["tls"] = {"certificate": str(pki.cert), "key": str(pki.key)}
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": http_cfg,
    }
    if auth is not None:
        cfg["auth"] = auth
    conf = root / "config.yml"
    conf.write_text(json.dumps(cfg))  # JSON is YAML
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(
        [REGISTRY, "serve", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    reg = Registry(root, port, proc, pki is not None)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}:\n{reg.log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return reg
        except OSError:
            if time.monotonic() > deadline:
                reg.stop()
                raise RuntimeError(f"docker-registry did not listen:\n{reg.log()}") from None
            time.sleep(0.05)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[_Server, threading.Thread]:
    srv = _Server(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, t


class TokenServer:
    """Issues registry JWTs (RS256, the signing certificate in ``x5c``) to ``users`` for the
    actions they ask for, living ``expires_in`` seconds; anonymous requests and bad passwords
    get 401. ``issued`` records (user, scopes) per token issued."""

    def __init__(
        self, d: Path, users: dict[str, str], service: str = "corral-test", expires_in: int = 600
    ) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = d / "token.key", d / "token.crt"
        subj = "/CN=corral test token issuer"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subj,
                "-keyout", str(self.key), "-out", str(self.cert))  # fmt: skip
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.service = service
        self.expires_in = expires_in  # the token's exp and the answer's expires_in
        self.issuer = "corral-test-issuer"
        self.issued: list[tuple[str, list[str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.srv, self.thread = _serve(Handler)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.srv.server_address[1]}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert),
            }
        }

    def _sign(self, payload: bytes) -> bytes:
        p = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=payload,
                           check=True, capture_output=True)  # fmt: skip
        return p.stdout

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        user = ""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != pw:
                user = ""
        if not user:
            body = b'{"details":"bad or missing credentials"}'
            h.send_response(401)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        access = []
        scopes = q.get("scope", [])
        for s in scopes:
            typ, name, actions = s.split(":")[0], ":".join(s.split(":")[1:-1]), s.split(":")[-1]
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        self.issued.append((user, scopes))
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": q.get("service", [""])[0],
                  "exp": now + self.expires_in, "nbf": now - 60, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        token = signing + "." + _b64url(self._sign(signing.encode()))
        body = json.dumps({"token": token, "expires_in": self.expires_in}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


Fault = Callable[["FaultProxy", http.server.BaseHTTPRequestHandler, str], bool]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FaultProxy:
    """HTTP in front of a plain-HTTP registry. ``faults`` are tried in order for each request:
    a fault that handles the request (answers it itself) returns True and is used up."""

    upstream: int
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    srv: _Server | None = None
    stalled: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FaultProxy:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                outer._handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.srv, _ = _serve(Handler)
        return self

    @property
    def host(self) -> str:
        assert self.srv is not None
        return f"127.0.0.1:{self.srv.server_address[1]}"

    def stop(self) -> None:
        self.stalled.set()
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()

    def upstream_request(
        self,
        h: http.server.BaseHTTPRequestHandler,
        body: bytes | None,
        drop: tuple[str, ...] = (),
    ) -> http.client.HTTPResponse:
        """Send ``h``'s request upstream, without the headers named (lower case) in ``drop``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        skip = ("connection", *drop)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in skip}
        conn.request(h.command, h.path, body=body, headers=headers)
        return conn.getresponse()

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        self.seen.append(Seen(h.command, h.path, dict(h.headers.items())))
        for f in list(self.faults):
            if f(self, h, h.path):
                self.faults.remove(f)
                h.close_connection = True
                return
        resp = self.upstream_request(h, body)
        data = resp.read()
        answer(h, resp, data)


def answer(
    h: http.server.BaseHTTPRequestHandler, resp: http.client.HTTPResponse, data: bytes
) -> None:
    """Answer ``h`` with the registry's response ``resp`` carrying ``data`` as its body (its
    length set anew; no body for a HEAD)."""
    h.send_response(resp.status)
    for k, v in resp.getheaders():
        if k.lower() not in ("transfer-encoding", "connection", "content-length", "date"):
            h.send_header(k, v)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def blob_fault(kind: str, match: str = "/blobs/sha256:") -> Fault:
    """Once, for a GET of a blob whose path contains ``match``: ``cut`` sends the headers and
    half the body then closes; ``tamper`` flips a byte; ``stall`` sends half and then nothing;
    ``redirect`` answers 307 to another host; ``norange`` (only for a request with a Range
    header) drops the Range header, so the registry answers 200 with the whole blob;
    ``unauthorized`` drops the Authorization header, so the registry answers 401 with its
    challenge, as for a token that expired or was revoked."""

    def fault(proxy: FaultProxy, h: http.server.BaseHTTPRequestHandler, path: str) -> bool:
        if h.command != "GET" or match not in path or "/blobs/uploads" in path:
            return False
        if kind in ("norange", "unauthorized"):
            if kind == "norange" and "Range" not in h.headers:
                return False
            drop = ("range",) if kind == "norange" else ("authorization",)
            resp = proxy.upstream_request(h, None, drop=drop)
            data = resp.read()
            answer(h, resp, data)
            return True
        if kind == "redirect":
            h.send_response(307)
            h.send_header("Location", f"http://127.0.0.2:1{path}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return True
        resp = proxy.upstream_request(h, None)
        data = resp.read()
        if resp.status not in (200, 206) or len(data) < 2:
            return False
        if kind == "tamper":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "date"):
                h.send_header(k, v)
        h.end_headers()
        if kind == "tamper":
            h.wfile.write(data)
            return True
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        if kind == "stall":
            proxy.stalled.wait(60)
        return True

    return fault


def manifest_fault(kind: str) -> Fault:
    """Once, for a GET of a manifest: ``huge`` answers 5 MiB, ``digest`` answers the manifest
    with one more space while keeping the registry's Docker-Content-Digest."""

    def fault(proxy: FaultProxy, h: http.server.BaseHTTPRequestHandler, path: str) -> bool:
        if h.command != "GET" or "/manifests/" not in path:
            return False
        resp = proxy.upstream_request(h, None)
        data = resp.read()
        if kind == "huge":
            data = data[:-1] + b" " * (5 << 20) + data[-1:]
        else:
            data = data[:-1] + b" " + data[-1:]
        answer(h, resp, data)
        return True

    return fault


def held_blob(match: str, until: Callable[[], bool], timeout: float = 60.0) -> Fault:
    """Once, for a GET of a blob whose path contains ``match``: wait until ``until()`` (or
    ``timeout`` seconds), then answer it as the registry does. It keeps one pull in the middle
    of that blob while the test makes another pull catch up with it."""

    once = threading.Lock()  # a second GET of the blob meanwhile goes through unheld

    def fault(proxy: FaultProxy, h: http.server.BaseHTTPRequestHandler, path: str) -> bool:
        if h.command != "GET" or match not in path or "/blobs/uploads" in path:
            return False
        if not once.acquire(blocking=False):
            return False
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline and not proxy.stalled.is_set():
            time.sleep(0.01)
        resp = proxy.upstream_request(h, None)
        data = resp.read()
        answer(h, resp, data)
        return True

    return fault
