"""The agent's credentials, got with the join token as a k3s agent gets them.

The token is ``K10<sha256 of the cluster CA>::server:<secret>`` (or a bare secret). The agent
fetches the CA from ``<server>/cacerts``, checks its hash against the token (a bare secret
cannot be checked: the CA is then trusted on first use, with a warning), then presents the
token to ``<server>/v1-corral/node-credentials`` over TLS verified with that CA and gets a client
certificate for ``system:node:<name>`` (and one for ``system:corral-controller``, the
cluster-wide reader the node's NetworkPolicy enforcement uses: ``controller_config``).
Certificates, keys and CA are kept in ``<data-dir>/cred/`` (mode 0600) and reused while they
are valid and the token's CA hash still matches."""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
from pathlib import Path

import aiohttp

from corral_common import hostsys
from orchestrator.client import ClientConfig
from orchestrator.client.rest import failure_reason as _why

__all__ = [
    "JoinError",
    "JoinToken",
    "controller_config",
    "credentials",
    "parse_token",
    "serving_files",
]

log = logging.getLogger("corral.agent.join")

CACERTS_PATH = "/cacerts"
CREDENTIALS_PATH = "/v1-corral/node-credentials"


class JoinError(Exception):
    """Joining failed: ``step`` names what failed."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


class JoinToken:
    """A parsed join token: the CA hash (None for a bare secret) and the secret."""

    def __init__(self, ca_hash: str | None, secret: str) -> None:
        self.ca_hash = ca_hash
        self.secret = secret

    @property
    def text(self) -> str:
        return f"K10{self.ca_hash}::server:{self.secret}" if self.ca_hash else self.secret


def parse_token(token: str) -> JoinToken:
    token = token.strip()
    if not token:
        raise JoinError("parse the join token", "it is empty")
    if token.startswith("K10") and "::" in token:
        head, _, rest = token.partition("::")
        ca_hash = head[3:].lower()
        user, sep, secret = rest.partition(":")
        if (
            len(ca_hash) != 64
            or any(c not in "0123456789abcdef" for c in ca_hash)
            or not sep
            or not secret
        ):
            raise JoinError(
                "parse the join token", "expected K10<sha256 of the CA>::server:<secret>"
            )
        return JoinToken(ca_hash, secret)
    return JoinToken(None, token)


def _files(data_dir: Path) -> tuple[Path, Path, Path]:
    cred = data_dir / "cred"
    return cred / "server-ca.crt", cred / "client-kubelet.crt", cred / "client-kubelet.key"


def serving_files(data_dir: Path) -> tuple[Path, Path]:
    """The kubelet's serving certificate and key (its HTTPS port), signed by the cluster CA."""
    cred = data_dir / "cred"
    return cred / "serving-kubelet.crt", cred / "serving-kubelet.key"


def controller_files(data_dir: Path) -> tuple[Path, Path]:
    """The ``system:corral-controller`` client certificate and key."""
    cred = data_dir / "cred"
    return cred / "client-controller.crt", cred / "client-controller.key"


def controller_config(node: ClientConfig, data_dir: Path) -> ClientConfig:
    """``node``'s servers and CA with the controller's certificate (read now): JoinError when
    the node joined before there was one (its next start joins again)."""
    cert, key = controller_files(data_dir)
    try:
        cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError as e:
        raise JoinError("read the controller credentials", e) from e
    return ClientConfig(node.server, node.ca_pem, cert_pem, key_pem, fallbacks=node.fallbacks)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    hostsys.write_atomic(path, data, 0o600)


def _kept(data_dir: Path, node_name: str, node_ip: str, token: JoinToken) -> ClientConfig | None:
    """The kept credentials, when they are for this node and address, from this token's CA
    and valid for a week yet (``cred/node.json`` says what they were issued for: the agent
    need not load a certificate parser, some 7 MiB, to know)."""
    import datetime
    import json

    ca, cert, key = _files(data_dir)
    serving, serving_key = serving_files(data_dir)
    try:
        meta = json.loads((data_dir / "cred" / "node.json").read_text())
        ca_pem, cert_pem, key_pem = ca.read_bytes(), cert.read_bytes(), key.read_bytes()
        serving.stat()
        serving_key.stat()
        for path in controller_files(data_dir):  # a node joined before it had one joins again
            path.stat()
        not_after = datetime.datetime.fromisoformat(str(meta["notAfter"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if token.ca_hash and hashlib.sha256(ca_pem).hexdigest() != token.ca_hash:
        return None
    if meta.get("nodeName") != node_name or node_ip not in (meta.get("nodeAddresses") or []):
        return None
    if not_after < datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7):
        return None
    return ClientConfig(server="", ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem)


async def _fetch_ca(server: str, token: JoinToken) -> bytes:
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA bundle: nothing is verified
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(server + CACERTS_PATH, ssl=insecure, timeout=aiohttp.ClientTimeout(30)) as r,
        ):
            if r.status != 200:
                raise JoinError(f"get {server}{CACERTS_PATH}", f"HTTP {r.status}")
            ca = await r.read()
    except aiohttp.ClientConnectorError as e:
        raise _Unreachable(f"get {server}{CACERTS_PATH}", _why(e)) from e
    except (aiohttp.ClientError, TimeoutError) as e:
        raise JoinError(f"get {server}{CACERTS_PATH}", _why(e)) from e
    if token.ca_hash is None:
        log.warning("the join token carries no CA hash: trusting the CA %s served", server)
    elif hashlib.sha256(ca).hexdigest() != token.ca_hash:
        raise JoinError(
            f"verify the CA of {server}",
            "its hash does not match the join token (wrong server or wrong token)",
        )
    return ca


async def credentials(
    server: str,
    token: str,
    node_name: str,
    node_ip: str,
    data_dir: Path,
    fallbacks: tuple[str, ...] = (),
) -> ClientConfig:
    """The client configuration this node talks to ``server`` (and ``fallbacks``, servers of
    the same cluster) with: kept credentials when still good, else new ones for the join token
    from the first of the servers that can be reached."""
    servers = [s.rstrip("/") for s in (server, *fallbacks)]
    rest = tuple(servers[1:])
    tok = parse_token(token)
    kept = _kept(data_dir, node_name, node_ip, tok)
    if kept is not None:
        return ClientConfig(servers[0], kept.ca_pem, kept.cert_pem, kept.key_pem, fallbacks=rest)
    for i, url in enumerate(servers):
        try:
            ca, cert, key = await _join(url, tok, node_name, node_ip, data_dir)
        except _Unreachable as e:
            if i + 1 == len(servers):
                raise JoinError(e.step, e.why) from e
            log.warning("%s: %s; trying %s", e.step, e.why, servers[i + 1])
            continue
        # the server that answered first, the others after it in the order given
        order = servers[i:] + servers[:i]
        return ClientConfig(order[0], ca, cert, key, fallbacks=tuple(order[1:]))
    raise AssertionError("unreachable")  # the loop returns or raises


class _Unreachable(Exception):
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step = step
        self.why = why


async def _join(
    server: str, tok: JoinToken, node_name: str, node_ip: str, data_dir: Path
) -> tuple[bytes, bytes, bytes]:
    """CA, certificate and key from ``server``, stored in ``data_dir``; _Unreachable when the
    server cannot be connected to (another may be tried)."""
    ca = await _fetch_ca(server, tok)
    ctx = ssl.create_default_context(cadata=ca.decode())
    url = server + CREDENTIALS_PATH
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                url,
                json={"nodeName": node_name, "nodeAddresses": [node_ip]},
                headers={"Authorization": f"Bearer {tok.text}"},
                ssl=ctx,
                timeout=aiohttp.ClientTimeout(30),
            ) as r,
        ):
            body = await r.json(content_type=None)
            if r.status == 401:
                raise JoinError(f"join {server} as node {node_name}", "the join token was refused")
            if r.status != 200:
                msg = body.get("message") if isinstance(body, dict) else body
                raise JoinError(f"join {server} as node {node_name}", f"HTTP {r.status}: {msg}")
    except aiohttp.ClientConnectorError as e:
        raise _Unreachable(f"join {server} as node {node_name}", _why(e)) from e
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise JoinError(f"join {server} as node {node_name}", _why(e)) from e
    if not all(
        isinstance(body.get(k), str)
        for k in (
            "certificate",
            "key",
            "servingCertificate",
            "servingKey",
            "controllerCertificate",
            "controllerKey",
            "notAfter",
        )
    ):
        raise JoinError(f"join {server} as node {node_name}", "the answer lacks credentials")
    cert, key = body["certificate"].encode(), body["key"].encode()
    ca_path, cert_path, key_path = _files(data_dir)
    serving_path, serving_key_path = serving_files(data_dir)
    try:
        _write_private(ca_path, ca)
        _write_private(key_path, key)
        _write_private(cert_path, cert)
        _write_private(serving_key_path, body["servingKey"].encode())
        _write_private(serving_path, body["servingCertificate"].encode())
        controller_path, controller_key_path = controller_files(data_dir)
        _write_private(controller_key_path, body["controllerKey"].encode())
        _write_private(controller_path, body["controllerCertificate"].encode())
        issued = {k: body.get(k) for k in ("nodeName", "notAfter")}
        issued["nodeAddresses"] = [node_ip]
        _write_private(data_dir / "cred" / "node.json", json.dumps(issued).encode())
    except OSError as e:
        raise JoinError(f"store the credentials in {ca_path.parent}", e) from e
    log.info("joined %s as system:node:%s", server, node_name)
    return ca, cert, key
