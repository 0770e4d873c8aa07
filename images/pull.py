"""Pull an image from a registry into the store.

The manifest (or image index, then this host's platform from it) and the config are fetched
into memory and verified against their digests. Layers download in parallel threads into the
store's ingest directory (``tmp/ingest``): each is hashed as it streams, and renamed from
``<hex>.partial`` to ``<hex>`` only when its digest and size match (a mismatch deletes it). A
connection that breaks mid-blob is resumed with a Range request; a partial file left by an
interrupted pull is resumed by the next one, and a per-blob lock makes two concurrent pulls of
one layer download it once. Then the store imports the verified blobs the way it imports an
archive: unpacked, checked against the config's diff_ids, committed all together or not at all.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral_common import hostsys

from . import platforms
from .digest import CHUNK, check_digest, hex_of, sha256, sha256_bytes
from .errors import AuthError, DigestMismatch, FormatError, ImageError, RegistryError
from .imageconfig import check_config
from .keyring import Keyring
from .platforms import Platform
from .progress import Meter, ProgressFn
from .regconf import (
    Credentials,
    Endpoint,
    RegistriesConf,
    Resolved,
    endpoints,
    load_registries_conf,
    lookup_credentials,
    qualify,
    remove_credentials,
    store_credentials,
    tls_files,
)
from .registry import Client, Settings
from .sources import (
    INDEX_TYPES,
    MAX_JSON,
    FileReader,
    SourceImage,
    SourceLayer,
)

if TYPE_CHECKING:
    from .store import Image, Store


@dataclass
class Options:
    """What ``corral image pull/push`` and the kubelet pass in."""

    conf: RegistriesConf | None = None  # None: load registries.conf
    tls_verify: bool = True
    certs_dir: str | None = None
    auth_file: str | None = None
    credentials: Credentials | None = None  # instead of the auth file
    # a pod's pull secrets (the kubelet's): tried before the auth file, kept in memory only
    keyring: Keyring | None = field(default=None, repr=False)
    timeout: float = 60.0
    retries: int = 3  # resumptions of one blob after a broken connection
    workers: int = 3  # layers downloaded at once
    # (os, architecture) or a Platform (with its variant); None: this host's
    platform: tuple[str, str] | Platform | None = None
    chunk_size: int = 16 << 20  # push: blobs larger than this go in PATCH chunks
    conf_path: str | None = field(default=None, repr=False)

    def registries(self) -> RegistriesConf:
        return self.conf if self.conf is not None else load_registries_conf(self.conf_path)

    def candidates(self, ep: Endpoint) -> list[Credentials | None]:
        """The credentials to try at ``ep``, in order: ``credentials`` alone when given; else
        the keyring's matches, then the auth file's entry; ``[None]`` (anonymous) when there
        are none, as the kubelet tries a pod's keyring then the node's."""
        if self.credentials is not None:
            return [self.credentials]
        name = f"{ep.host}/{ep.repo}"
        out: list[Credentials | None] = []
        if self.keyring is not None:
            out += self.keyring.lookup(name)
        node = lookup_credentials(name, self.auth_file)
        if node is not None and node not in out:
            out.append(node)
        return out or [None]

    def settings(self, ep: Endpoint) -> Settings:
        """The client settings for ``ep``, with the first credentials to try there."""
        return self.settings_with(ep, self.candidates(ep)[0])

    def settings_with(self, ep: Endpoint, creds: Credentials | None) -> Settings:
        return Settings(creds, tls_files(ep.host, self.certs_dir), self.timeout)


@dataclass(frozen=True)
class Pulled:
    image: Image
    name: str  # the name it was stored under
    manifest_digest: str  # what the reference resolved to (an index's digest for an index)
    endpoint: str  # host/repo it came from (a mirror, perhaps)


def pull(
    store: Store, ref: str, opts: Options | None = None, progress: ProgressFn | None = None
) -> Pulled:
    """Pull ``ref`` into ``store``. Short names are tried at each unqualified-search registry
    and every name at its mirrors first; the first that has the image wins."""
    opts = opts or Options()
    conf = opts.registries()
    errors: list[RegistryError] = []
    for resolved in qualify(ref, conf):
        for ep in endpoints(resolved.name, conf, opts.tls_verify):
            for creds in opts.candidates(ep):
                try:
                    return _pull_from(store, ep, resolved, opts, progress, creds)
                except AuthError as e:  # refused: the next credentials, if any
                    errors.append(e)
                except RegistryError as e:
                    errors.append(e)
                    break
    if len(errors) == 1:
        raise errors[0]
    raise ImageError(f"pull {ref}: " + "; ".join(str(e) for e in errors))


def _want(want: tuple[str, str] | Platform) -> Platform:
    """A platform asked for as (os, architecture) gets the architecture's default variant;
    this host's has its own (arm64: v8)."""
    if isinstance(want, Platform):
        return want
    return platforms.normalize(*want)


def pick_platform(
    index: dict[str, Any], want: tuple[str, str] | Platform, where: str
) -> dict[str, Any]:
    """The descriptor of ``want`` (os, architecture[, variant]) in an image index; an error
    listing what the index has otherwise."""
    return platforms.pick(index.get("manifests"), _want(want), where)


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise FormatError(f"{what}: invalid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise FormatError(f"{what}: not a JSON object")
    return doc


def _descriptor(d: Any, what: str) -> tuple[str, int]:
    if not isinstance(d, dict):
        raise FormatError(f"{what}: not a descriptor")
    size = d.get("size")
    if not isinstance(size, int) or size < 0:
        raise FormatError(f"{what}: size must be a non-negative integer")
    try:
        return check_digest(d.get("digest", "")), size
    except FormatError as e:
        raise FormatError(f"{what}: {e}") from None


def _pull_from(
    store: Store,
    ep: Endpoint,
    resolved: Resolved,
    opts: Options,
    progress: ProgressFn | None,
    creds: Credentials | None,
) -> Pulled:
    want = _want(opts.platform) if opts.platform else platforms.host()
    where = f"{ep.host}/{ep.repo}:{resolved.reference}"
    with Client(ep, opts.settings_with(ep, creds)) as client:
        body, media, digest, doc = client.get_manifest(resolved.reference)
        top = digest
        if media in INDEX_TYPES:
            desc = pick_platform(doc, want, where)
            mdigest, _ = _descriptor(desc, f"{where}: index entry")
            body, media, digest, man = client.get_manifest(mdigest)
            if media in INDEX_TYPES:
                raise FormatError(f"{where}: an index inside an index")
        else:
            man = doc
        cdigest, csize = _descriptor(man.get("config"), f"manifest {digest}: config")
        with store.importing():
            config = _fetch_config(client, store.ingest_dir(), store, cdigest, csize)
        cfg = _json(config, f"image config {cdigest}")
        check_config(cfg, f"image config {cdigest}")
        platforms.check(cfg, want if opts.platform else None, where)
        ldescs = man.get("layers")
        if not isinstance(ldescs, list):
            raise FormatError(f"manifest {digest}: layers must be an array")
        layers = [_descriptor(d, f"manifest {digest}: layers[{i}]") for i, d in enumerate(ldescs)]
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise FormatError(f"image config {cdigest}: {len(diff_ids)} diff_ids for "
                              f"{len(layers)} layers")  # fmt: skip
        name = str(resolved)
        with store.importing():
            ingest = store.ingest_dir()
            todo = {d: s for d, s in layers if not store.has_blob(d)}
            meter = _SafeMeter(progress, sum(todo.values()), len(todo))
            _download_all(client, ingest, store, todo, opts, meter)
            src = SourceImage(
                names=[name],
                config=config,
                config_digest=cdigest,
                layers=[
                    SourceLayer(f"blobs/sha256/{hex_of(d)}", check_digest(i), d, s, None)
                    for (d, s), i in zip(layers, diff_ids, strict=True)
                ],
                manifest=body,
                manifest_digest=digest,
                config_json=cfg,
                names_from=where,
            )
            images = store.import_sources(_IngestReader(ingest, store), [src], None, where)
            for d in [*todo, cdigest]:
                try:
                    (ingest / hex_of(d)).unlink()
                except FileNotFoundError:
                    pass
    return Pulled(images[0], name, top, f"{ep.host}/{ep.repo}")


def _fetch_config(client: Client, ingest: Path, store: Store, digest: str, size: int) -> bytes:
    """The config blob, verified: from the store when an image there has it (a pull of a
    stored image fetches only its manifest), from the ingest directory when a concurrent pull
    fetched it, else from the registry, under the blob's lock like a layer (so two pulls fetch
    it once) and kept in the ingest directory until the image is committed."""
    h = hex_of(digest)
    with _blob_lock(ingest, h):
        if size <= MAX_JSON:
            for path in (store.blob_path(digest), ingest / h):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if len(data) == size and sha256_bytes(data) == digest:
                    return data
        data = client.blob_bytes(digest, size, MAX_JSON)
        hostsys.host().write_atomic(ingest / h, data, 0o600)
        return data


class _SafeMeter(Meter):
    """A Meter the download threads share."""

    def __init__(self, fn: ProgressFn | None, total: int, layers: int) -> None:
        self._mu = threading.Lock()
        super().__init__(fn, total, layers)

    def add(self, n: int) -> None:
        with self._mu:
            super().add(n)

    def layer_done(self, skipped: int = 0) -> None:
        with self._mu:
            super().layer_done(skipped)


def _download_all(
    client: Client, ingest: Path, store: Store, todo: dict[str, int], opts: Options, meter: Meter
) -> None:
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
        futures = [
            pool.submit(fetch_blob, client, ingest, store, d, s, opts.retries, meter)
            for d, s in todo.items()
        ]
        first: BaseException | None = None
        for f in futures:
            try:
                f.result()
            except BaseException as e:  # every thread finishes before we report
                first = first or e
        if first is not None:
            raise first


@contextmanager
def _blob_lock(ingest: Path, h: str) -> Iterator[None]:
    fd = os.open(ingest / f"{h}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fetch_blob(
    client: Client,
    ingest: Path,
    store: Store,
    digest: str,
    size: int,
    retries: int,
    meter: Meter,
) -> Path | None:
    """Download one blob into ``ingest/<hex>``, verified; None when the store already has it.

    A ``<hex>.partial`` from an earlier attempt is hashed and continued with a Range request;
    a broken connection is continued the same way up to ``retries`` times. Content longer than
    ``size`` or with another digest is deleted and refused (DigestMismatch)."""
    h = hex_of(digest)
    final, partial = ingest / h, ingest / f"{h}.partial"
    with _blob_lock(ingest, h):
        if store.has_blob(digest) or final.is_file():
            meter.layer_done(size)
            return None if store.has_blob(digest) else final
        hasher = sha256()
        offset = 0
        if partial.exists():
            with partial.open("rb") as f:
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                    offset += len(chunk)
            if offset > size:
                partial.unlink()
                hasher, offset = sha256(), 0
            meter.add(offset)
        failures = 0
        done = partial.exists() and offset == size
        while not done:
            try:
                resp = client.get_blob(digest, offset)
                if resp.status == 200 and offset:
                    meter.add(-offset)  # the registry ignored Range: start again
                    hasher, offset = sha256(), 0
                    partial.unlink()
                elif resp.status == 206:
                    want = f"bytes {offset}-"
                    if not (resp.getheader("Content-Range") or "").startswith(want):
                        raise RegistryError(
                            f"GET blob {client.repo}@{digest}",
                            client.host,
                            f"asked for bytes from {offset}, got "
                            f"{resp.getheader('Content-Range')!r}",
                        )
                with partial.open("ab") as out:
                    while chunk := client.read_blob(resp, CHUNK, digest):
                        if offset + len(chunk) > size:
                            partial.unlink()
                            raise DigestMismatch(
                                f"{client.host}/{client.repo}@{digest}",
                                f"{size} bytes",
                                "more",
                            )
                        out.write(chunk)
                        hasher.update(chunk)
                        offset += len(chunk)
                        meter.add(len(chunk))
                if offset < size:
                    raise RegistryError(
                        f"GET blob {client.repo}@{digest}",
                        client.host,
                        f"connection closed after {offset} of {size} bytes",
                    )
                done = True
            except RegistryError as e:
                if e.status or failures >= retries:
                    raise
                failures += 1  # a broken or stalled connection: resume where it stopped
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            partial.unlink()
            raise DigestMismatch(f"{client.host}/{client.repo}@{digest}", digest, actual)
        os.rename(partial, final)
        meter.layer_done()
        return final


class _IngestReader(FileReader):
    """``blobs/sha256/<hex>`` from the ingest directory (or the store, when a concurrent pull
    committed it and removed its ingest copy first)."""

    def __init__(self, ingest: Path, store: Store) -> None:
        self.ingest = ingest
        self.store = store

    def _path(self, path: str) -> Path:
        h = path.rsplit("/", 1)[-1]
        p = self.ingest / h
        return p if p.is_file() else self.store.blob_path("sha256:" + h)


def login(registry: str, username: str, password: str, opts: Options | None = None) -> Path:
    """Check ``username``/``password`` against ``registry`` (host[:port], or host/repo) and
    store them in the auth file; returns the file's path."""
    from .registry import check_login

    opts = opts or Options()
    key = registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    host, _, repo = key.partition("/")
    ep = endpoints(f"{host}/{repo or 'x'}", RegistriesConf(), opts.tls_verify)[0]
    creds = Credentials(username, password)
    check_login(ep, Settings(creds, tls_files(host, opts.certs_dir), opts.timeout))
    return store_credentials(key, creds, opts.auth_file)


def logout(registry: str, opts: Options | None = None) -> bool:
    """Remove ``registry``'s entry from the auth file; False when there was none."""
    opts = opts or Options()
    key = registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    return remove_credentials(key, opts.auth_file)
