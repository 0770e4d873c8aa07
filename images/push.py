"""Push an image from the store to a registry.

Blobs the registry has (HEAD) are skipped; one the image also has under another repository of
the same registry is mounted from there (``POST ?mount=&from=``); the rest are uploaded,
monolithically (one PUT) up to ``Options.chunk_size`` and in PATCH chunks above it, in
parallel threads. Then the manifest: the one the image came with when the store kept it (so its
digest stays what the source said), else an OCI manifest made from the store's records.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .errors import FormatError
from .pull import Options
from .regconf import push_endpoint, qualify
from .registry import Client
from .sources import MANIFEST_TYPES, MT_OCI_MANIFEST

if TYPE_CHECKING:
    from .store import Image, Store


def manifest_for(store: Store, img: Image) -> tuple[bytes, str]:
    """(manifest bytes, media type) to push for ``img``."""
    if img.manifest_digest and store.has_blob(img.manifest_digest):
        with store.open_blob(img.manifest_digest) as f:
            data = f.read()
        try:
            media = json.loads(data).get("mediaType") or MT_OCI_MANIFEST
        except (ValueError, AttributeError) as e:
            raise FormatError(f"stored manifest {img.manifest_digest}: {e}") from e
        if media in MANIFEST_TYPES:
            return data, media
    from .save import _manifest

    data, _ = _manifest(store, img)
    return data, MT_OCI_MANIFEST


def push(store: Store, ref: str, dest: str | None = None, opts: Options | None = None) -> str:
    """Push the stored image ``ref`` to ``dest`` (default: ``ref`` itself, which must then name
    a registry). Returns the manifest digest the registry stored."""
    opts = opts or Options()
    conf = opts.registries()
    with store.importing():  # keeps prune from removing blobs while they are read
        img = store.get(ref)
        target = qualify(dest or ref, conf)[0]
        ep = push_endpoint(target.name, conf, opts.tls_verify)
        body, media = manifest_for(store, img)
        blobs: dict[str, int] = {img.id: store.blob_path(img.id).stat().st_size}
        for lr in img.layers:
            blobs[lr.digest] = lr.size
        others = []
        for n in img.names:
            repo = n.split("@")[0]
            if repo.rfind(":") > repo.rfind("/"):
                repo = repo[: repo.rfind(":")]
            host, _, path = repo.partition("/")
            if host == ep.host and path and path != ep.repo:
                others.append(path)
        with Client(ep, opts.settings(ep), "pull,push") as client:
            with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
                futures = [
                    pool.submit(_push_blob, client, store, d, s, others, opts.chunk_size)
                    for d, s in blobs.items()
                ]
                errors = []
                for f in futures:
                    try:
                        f.result()
                    except Exception as e:  # every upload finishes before we report
                        errors.append(e)
                if errors:
                    raise errors[0]
            return client.put_manifest(target.digest or target.tag or "latest", body, media)


def _push_blob(
    client: Client, store: Store, digest: str, size: int, others: list[str], chunk_size: int
) -> str:
    """Upload one blob; what happened: ``exists``, ``mounted``, ``monolithic`` or ``chunked``."""
    if client.has_blob(digest):
        return "exists"
    location = client.start_upload(digest, others[0] if others else None)
    if location is None:
        return "mounted"
    with store.open_blob(digest) as f:
        if size <= chunk_size:
            client.finish_upload(location, digest, f, size)
            return "monolithic"
        offset = 0
        while chunk := f.read(chunk_size):
            location = client.upload_chunk(location, chunk, offset, digest)
            offset += len(chunk)
    client.finish_upload(location, digest)
    return "chunked"
