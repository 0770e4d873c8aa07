"""Secrets encrypted at rest, as kube-apiserver's EncryptionConfiguration with the ``aesgcm``
provider: a Backend wrapper that encrypts every value under ``/registry/secrets/`` before it
reaches the store and decrypts it on the way back (get, list, watch events).

A stored value is ``k8s:enc:aesgcm:v1:<key name>:`` + 12-byte nonce + AES-256-GCM ciphertext and
tag, with the store key as additional data (a value copied under another key does not decrypt).
The first key encrypts; every key listed decrypts; a value without the prefix is read as it is
(written before encryption was on), so turning it on needs no migration.

The keys live in an EncryptionConfiguration file (``apiserver.config.k8s.io/v1``) made at first
start, mode 0600. ``rotate()`` puts a new key first and rewrites every secret with it
(``corral server rotate-key``); the old key can then be dropped.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from corral_common import hostsys
from orchestrator.store import (
    Backend,
    Conflict,
    Deleted,
    Event,
    KeyValue,
    ListResult,
    NotFound,
    StoreError,
)

__all__ = [
    "ENCRYPTED_PREFIXES",
    "EncryptedBackend",
    "EncryptionConfigError",
    "Keys",
    "load_or_create_config",
    "rotate",
]

PREFIX = b"k8s:enc:aesgcm:v1:"
ENCRYPTED_PREFIXES = ("/registry/secrets/",)
NONCE = 12


class EncryptionConfigError(Exception):
    pass


@dataclass(frozen=True)
class Keys:
    keys: tuple[tuple[str, bytes], ...]  # (name, 32-byte key); the first one encrypts

    def __post_init__(self) -> None:
        if not self.keys:
            raise EncryptionConfigError("no aesgcm key")
        for name, key in self.keys:
            if len(key) not in (16, 24, 32):
                raise EncryptionConfigError(f"key {name}: {len(key)} bytes, not 16, 24 or 32")
            if ":" in name or not name:
                raise EncryptionConfigError(f"key name {name!r}: empty or contains ':'")

    def encrypt(self, key: str, value: bytes) -> bytes:
        name, secret = self.keys[0]
        nonce = os.urandom(NONCE)
        sealed = AESGCM(secret).encrypt(nonce, value, key.encode())
        return PREFIX + name.encode() + b":" + nonce + sealed

    def decrypt(self, key: str, value: bytes) -> bytes:
        if not value.startswith(PREFIX):
            return value  # written before encryption was turned on
        rest = value[len(PREFIX) :]
        name, sep, blob = rest.partition(b":")
        if not sep:
            raise StoreError(key, "encrypted value without a key name")
        for known, secret in self.keys:
            if known.encode() == name:
                try:
                    return AESGCM(secret).decrypt(blob[:NONCE], blob[NONCE:], key.encode())
                except Exception:
                    raise StoreError(key, f"cannot decrypt with key {known}") from None
        raise StoreError(key, f"encrypted with key {name.decode(errors='replace')}, not known")


def _config(keys: Keys) -> dict[str, Any]:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {
                        "aesgcm": {
                            "keys": [
                                {"name": n, "secret": base64.b64encode(k).decode()}
                                for n, k in keys.keys
                            ]
                        }
                    },
                    {"identity": {}},
                ],
            }
        ],
    }


def read_config(path: Path) -> Keys:
    try:
        doc = yaml.safe_load(path.read_text())
        providers = doc["resources"][0]["providers"]
        entries = next(p["aesgcm"]["keys"] for p in providers if "aesgcm" in p)
        return Keys(tuple((e["name"], base64.b64decode(e["secret"])) for e in entries))
    except (OSError, yaml.YAMLError) as e:
        raise EncryptionConfigError(f"{path}: {e}") from None
    except (KeyError, IndexError, TypeError, StopIteration, ValueError) as e:
        raise EncryptionConfigError(
            f"{path}: not an EncryptionConfiguration with an aesgcm provider ({e!r})"
        ) from None


def write_config(path: Path, keys: Keys) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    hostsys.write_atomic(path, yaml.safe_dump(_config(keys), sort_keys=False).encode(), 0o600)


def load_or_create_config(path: Path) -> Keys:
    if path.exists():
        return read_config(path)
    keys = Keys((("key1", secrets.token_bytes(32)),))
    write_config(path, keys)
    return keys


def _encrypted(key: str) -> bool:
    return key.startswith(ENCRYPTED_PREFIXES)


class EncryptedBackend:
    """A Backend that encrypts the values of secrets on the way in, decrypts on the way out."""

    def __init__(self, inner: Backend, keys: Keys) -> None:
        self.inner = inner
        self.keys = keys
        self.url = inner.url

    def _in(self, key: str, value: bytes) -> bytes:
        return self.keys.encrypt(key, value) if _encrypted(key) else value

    def _kv(self, kv: KeyValue) -> KeyValue:
        if not _encrypted(kv.key):
            return kv
        return KeyValue(kv.key, self.keys.decrypt(kv.key, kv.value), kv.create_rev, kv.mod_rev)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> KeyValue:
        return self._kv(await self.inner.get(key))

    async def list(
        self, prefix: str, *, limit: int = 0, continue_token: str | None = None, revision: int = 0
    ) -> ListResult:
        page = await self.inner.list(
            prefix, limit=limit, continue_token=continue_token, revision=revision
        )
        if not any(_encrypted(kv.key) for kv in page.items):
            return page
        return ListResult(
            tuple(self._kv(kv) for kv in page.items), page.revision, page.continue_token
        )

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv = await self.inner.create(key, self._in(key, value))
        return KeyValue(kv.key, value, kv.create_rev, kv.mod_rev)

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        kv = await self.inner.update(key, self._in(key, value), revision)
        return KeyValue(kv.key, value, kv.create_rev, kv.mod_rev)

    async def delete(self, key: str, revision: int | None = None) -> Deleted:
        d = await self.inner.delete(key, revision)
        return Deleted(d.revision, self._kv(d.prev))

    async def watch(self, prefix: str, revision: int = 0) -> AsyncIterator[Event]:
        it = self.inner.watch(prefix, revision)
        try:
            async for ev in it:
                if _encrypted(ev.kv.key):
                    ev = Event(ev.type, self._kv(ev.kv), self._kv(ev.prev) if ev.prev else None)
                yield ev
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)


async def rotate(store: Backend, path: Path) -> tuple[str, int]:
    """Put a new key first in the configuration at ``path``, rewrite every secret with it
    (compare-and-swap: a secret written meanwhile is read again), then keep only the new key.
    Run it while no API server uses the store. (new key name, secrets rewritten)."""
    old = read_config(path)
    used = {name for name, _ in old.keys}
    n = len(old.keys) + 1
    while f"key{n}" in used:
        n += 1
    name = f"key{n}"
    both = Keys(((name, secrets.token_bytes(32)), *old.keys))
    write_config(path, both)  # from here on, a crash leaves a configuration that reads both
    enc = EncryptedBackend(store, both)
    count = 0
    for prefix in ENCRYPTED_PREFIXES:
        page = await store.list(prefix)
        for raw in page.items:
            while True:
                value = both.decrypt(raw.key, raw.value)
                try:
                    await store.update(raw.key, enc.keys.encrypt(raw.key, value), raw.mod_rev)
                    count += 1
                    break
                except Conflict:
                    raw = await store.get(raw.key)
                except NotFound:
                    break
    write_config(path, Keys((both.keys[0],)))
    return name, count
