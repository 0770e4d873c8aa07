"""Write a stored image as a docker-archive or an oci-archive.

docker-archive: ``manifest.json``, ``repositories``, ``<config hex>.json`` and one
uncompressed ``<diff_id hex>.tar`` per layer (compressed blobs are decompressed on the fly, so
the config's diff_ids stay right). oci-archive: an OCI image layout in a tar, the blobs as
stored (the original manifest when the image came from an OCI source), names as
``org.opencontainers.image.ref.name``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .digest import decompressed, hex_of, sha256_bytes
from .errors import FormatError
from .progress import CountingReader, Meter, ProgressFn
from .sources import MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST, REF_NAME

if TYPE_CHECKING:
    from .store import Image, Store

FORMATS = ("docker-archive", "oci-archive")


def write(
    store: Store, img: Image, dest: Path, fmt: str, progress: ProgressFn | None = None
) -> None:
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "docker-archive":
        sizes = {lr.diff_id: lr.tar_size for lr in img.layers}
    else:
        sizes = {lr.digest: lr.size for lr in img.layers}
    meter = Meter(progress, sum(sizes.values()), len(sizes))
    fd, tmpname = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tf,
        ):
            if fmt == "docker-archive":
                _docker(store, img, tf, meter)
            else:
                _oci(store, img, tf, meter)
        os.chmod(tmpname, 0o644)
        os.rename(tmpname, dest)
    except BaseException:
        try:
            os.unlink(tmpname)
        except FileNotFoundError:
            pass
        raise


def _info(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mode = mode
    ti.mtime = int(time.time())
    return ti


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_stream(
    tf: tarfile.TarFile, name: str, size: int, stream: IO[bytes], meter: Meter | None = None
) -> None:
    if meter is None:
        tf.addfile(_info(name, size), stream)
        return
    tf.addfile(_info(name, size), io.BufferedReader(CountingReader(stream, meter)))
    meter.layer_done()


def _docker(store: Store, img: Image, tf: tarfile.TarFile, meter: Meter) -> None:
    config_name = f"{hex_of(img.id)}.json"
    with store.open_blob(img.id) as f:
        _add_bytes(tf, config_name, f.read())
    layer_names = []
    for lr in img.layers:
        name = f"{hex_of(lr.diff_id)}.tar"
        if name not in layer_names:
            with store.open_blob(lr.digest) as raw, decompressed(raw) as stream:
                _add_stream(tf, name, lr.tar_size, stream, meter)
        layer_names.append(name)
    manifest = [{"Config": config_name, "RepoTags": list(img.names) or None, "Layers": layer_names}]
    _add_bytes(tf, "manifest.json", json.dumps(manifest).encode())
    repos: dict[str, dict[str, str]] = {}
    for n in img.names:
        repo, _, tag = n.rpartition(":")
        if repo and "@" not in n:
            repos.setdefault(repo, {})[tag] = hex_of(img.layers[-1].diff_id) if img.layers else ""
    _add_bytes(tf, "repositories", json.dumps(repos).encode())


def _manifest(store: Store, img: Image) -> tuple[bytes, str]:
    if img.manifest_digest and store.has_blob(img.manifest_digest):
        with store.open_blob(img.manifest_digest) as f:
            data = f.read()
        if json.loads(data).get("mediaType", MT_OCI_MANIFEST) == MT_OCI_MANIFEST:
            return data, img.manifest_digest
    config_size = store.blob_path(img.id).stat().st_size
    man: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": img.id, "size": config_size},
        "layers": [
            {"mediaType": lr.media_type, "digest": lr.digest, "size": lr.size} for lr in img.layers
        ],
    }
    data = json.dumps(man, separators=(",", ":")).encode()
    return data, sha256_bytes(data)


def _oci(store: Store, img: Image, tf: tarfile.TarFile, meter: Meter) -> None:
    mdata, mdigest = _manifest(store, img)
    _add_bytes(tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    seen: set[str] = set()
    for digest in [img.id, *(lr.digest for lr in img.layers)]:
        if digest in seen:
            continue
        seen.add(digest)
        path = store.blob_path(digest)
        with path.open("rb") as f:
            _add_stream(tf, f"blobs/sha256/{hex_of(digest)}", path.stat().st_size, f,
                        meter if digest != img.id else None)  # fmt: skip
    _add_bytes(tf, f"blobs/sha256/{hex_of(mdigest)}", mdata)
    desc: dict[str, Any] = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(mdata)}
    if img.names:
        # One entry: readers such as podman refuse to choose between several.
        desc["annotations"] = {REF_NAME: img.names[0]}
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [desc]}
    _add_bytes(tf, "index.json", json.dumps(index).encode())
