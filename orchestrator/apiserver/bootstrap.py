"""What every server of one cluster must share, kept in the shared datastore (as k3s'
bootstrap data): the cluster CA (certificate and key), the ServiceAccount signing key and the
secrets encryption keys. Several ``corral server`` processes over one etcd then trust the same
clients and agents, sign tokens the others accept, and read each other's secrets.

The first server to start with a datastore writes them there, sealed with AES-GCM under a key
derived from the join token's secret (PBKDF2-HMAC-SHA256), at a key named by a hash of that
secret (``/bootstrap/<hash>``, create-if-absent: of two servers starting at once, one wins and
the other takes its data). A server starting later with the same token takes them into its own
data dir (each server keeps its own serving and admin certificates, signed by the shared CA);
a different token finds nothing under its name and would start a separate cluster's files:
the join token *is* the cluster's secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from corral_common import hostsys
from orchestrator.store import AlreadyExists, Backend, Conflict, NotFound

__all__ = ["FILES", "BootstrapError", "bootstrap_key", "publish", "share"]

log = logging.getLogger("corral.server")

# Below the data dir: the files every server of a cluster holds alike, and their modes.
FILES: dict[str, int] = {
    "tls/server-ca.crt": 0o644,
    "tls/server-ca.key": 0o600,
    "tls/service-account.key": 0o600,
    "cred/encryption-config.yaml": 0o600,
}
# Made from the CA: signed by another CA once the shared one replaces a local one.
LEAVES = ("tls/serving.crt", "tls/client-admin.crt")
ITERATIONS = 200_000
NONCE = 12


class BootstrapError(Exception):
    pass


def bootstrap_key(secret: str) -> str:
    return "/bootstrap/" + hashlib.sha256(b"corral-bootstrap:" + secret.encode()).hexdigest()[:16]


def _cipher(secret: str, salt: bytes) -> AESGCM:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=ITERATIONS)
    return AESGCM(kdf.derive(secret.encode()))


def seal(secret: str, files: dict[str, bytes]) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(NONCE)
    plain = json.dumps({k: base64.b64encode(v).decode() for k, v in files.items()}).encode()
    sealed = _cipher(secret, salt).encrypt(nonce, plain, b"corral-bootstrap")
    return json.dumps(
        {
            "salt": base64.b64encode(salt).decode(),
            "data": base64.b64encode(nonce + sealed).decode(),
        }
    ).encode()


def unseal(secret: str, blob: bytes) -> dict[str, bytes]:
    try:
        doc = json.loads(blob)
        salt = base64.b64decode(doc["salt"])
        data = base64.b64decode(doc["data"])
        plain = _cipher(secret, salt).decrypt(data[:NONCE], data[NONCE:], b"corral-bootstrap")
        files = json.loads(plain)
        return {k: base64.b64decode(v) for k, v in files.items() if k in FILES}
    except InvalidTag:
        raise BootstrapError(
            "the datastore's bootstrap data does not open with this token"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise BootstrapError(f"the datastore's bootstrap data is malformed: {e}") from None


def _local(data_dir: Path) -> dict[str, bytes]:
    return {rel: (data_dir / rel).read_bytes() for rel in FILES if (data_dir / rel).exists()}


def _adopt(data_dir: Path, files: dict[str, bytes]) -> None:
    """Write the shared files into this server's data dir; leaves signed by another CA go."""
    ca = "tls/server-ca.crt"
    old_ca = (data_dir / ca).read_bytes() if (data_dir / ca).exists() else None
    for rel, data in files.items():
        path = data_dir / rel
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            hostsys.write_atomic(path, data, FILES[rel])
    if old_ca is not None and files.get(ca) != old_ca:
        log.info("this server's CA is replaced by the cluster's (from the datastore)")
        for rel in LEAVES:
            (data_dir / rel).unlink(missing_ok=True)


async def share(
    store: Backend, data_dir: Path, secret: str, make_local: Callable[[], None]
) -> bool:
    """Take the cluster's shared files from ``store`` into ``data_dir``, or (first server)
    make them with ``make_local()`` and put them there. True when they came from the store."""
    key = bootstrap_key(secret)
    for _ in range(3):
        try:
            kv = await store.get(key)
        except NotFound:
            pass
        else:
            _adopt(data_dir, unseal(secret, kv.value))
            return True
        make_local()
        files = _local(data_dir)
        missing = sorted(set(FILES) - set(files))
        if missing:
            raise BootstrapError(f"cannot share {', '.join(missing)}: not made")
        try:
            await store.create(key, seal(secret, files))
            return False
        except AlreadyExists:
            continue  # another server was first: take its files
    raise BootstrapError(f"{key}: created and gone again in the datastore")


async def publish(store: Backend, data_dir: Path, secret: str) -> None:
    """Replace the shared files in ``store`` with this data dir's (after a key rotation)."""
    key = bootstrap_key(secret)
    files = _local(data_dir)
    for _ in range(5):
        try:
            kv = await store.get(key)
        except NotFound:
            try:
                await store.create(key, seal(secret, files))
                return
            except AlreadyExists:
                continue
        unseal(secret, kv.value)  # the token must open what is there before it is replaced
        try:
            await store.update(key, seal(secret, files), kv.mod_rev)
            return
        except Conflict:
            continue
    raise BootstrapError(f"{key}: changed by another server while it was replaced")
