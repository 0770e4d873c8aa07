"""A small image builder for tests: layer tars from directory trees or from hand-made
entries (hostile ones included), written out as docker-archive, OCI layout or oci-archive.

Nothing here needs root; everything is deterministic (sorted entries, fixed mtimes unless the
tree has its own), so the same input gives the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MT_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    """One hand-made tar entry. ``kind``: file dir symlink hardlink chr blk fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    linkname: str = ""
    mode: int | None = None  # 0o755 for directories, 0o644 otherwise
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    size: int | None = None  # declared size, when it must differ from len(data)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_entries(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.linkname = e.linkname
            ti.devmajor, ti.devminor = e.devmajor, e.devminor
            ti.pax_headers = dict(e.pax)
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def sparse_bomb(name: str, apparent: int) -> bytes:
    """A tar with one GNU sparse (format 1.0, pax) file of ``apparent`` bytes and no data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
        ti.size = 512  # the sparse map block: one empty region at the end
        ti.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": name,
            "GNU.sparse.realsize": str(apparent),
        }
        sparse_map = f"1\n{apparent}\n0\n".encode().ljust(512, b"\0")
        tf.addfile(ti, io.BytesIO(sparse_map))
    return buf.getvalue()


def tar_tree(tree: Path, *, uid: int | None = 0, gid: int | None = 0) -> bytes:
    """A layer tar of ``tree`` (sorted; owners forced to ``uid``/``gid`` unless None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, tree)
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                ti = tf.gettarinfo(full, arcname=rel)
                if uid is not None:
                    ti.uid, ti.uname = uid, ""
                if gid is not None:
                    ti.gid, ti.gname = gid, ""
                if stat.S_ISREG(os.lstat(full).st_mode):
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(kind)


def config_for(layers: list[bytes], **cfg: Any) -> dict[str, Any]:
    """An image config for this host's platform (imports refuse others): linux/amd64 on
    x86_64, linux/arm64 with variant v8 on arm64."""
    from images import platforms

    host = platforms.host()
    return {
        "architecture": host.architecture,
        **({"variant": host.variant} if host.variant else {}),
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
        "history": [{"created_by": "testkit/imagebuild.py"} for _ in layers],
    }


@dataclass
class Built:
    config_digest: str
    manifest_digest: str | None
    layer_digests: list[str]
    diff_ids: list[str]


def _blobs(
    layers: list[bytes], config: dict[str, Any], compression: str
) -> tuple[bytes, list[bytes]]:
    return json.dumps(config, sort_keys=True).encode(), [compress(t, compression) for t in layers]


def oci_files(
    layers: list[bytes],
    config: dict[str, Any] | None = None,
    *,
    ref_name: str | None = None,
    compression: str = "gzip",
) -> tuple[dict[str, bytes], Built]:
    """The files of an OCI layout: {path: content}."""
    config = config or config_for(layers, Cmd=["/bin/sh"])
    cdata, blobs = _blobs(layers, config, compression)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(cdata),
            "size": len(cdata),
        },
        "layers": [
            {"mediaType": MT_LAYER[compression], "digest": sha(b), "size": len(b)} for b in blobs
        ],
    }
    mdata = json.dumps(manifest, sort_keys=True).encode()
    desc: dict[str, Any] = {
        "mediaType": manifest["mediaType"],
        "digest": sha(mdata),
        "size": len(mdata),
    }
    if ref_name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode(),
    }
    for b in [cdata, mdata, *blobs]:
        files["blobs/sha256/" + sha(b).split(":")[1]] = b
    built = Built(sha(cdata), sha(mdata), [sha(b) for b in blobs], [sha(t) for t in layers])
    return files, built


def docker_files(
    layers: list[bytes],
    config: dict[str, Any] | None = None,
    *,
    repo_tags: list[str] | None = None,
    compression: str = "none",
) -> tuple[dict[str, bytes], Built]:
    """The files of a ``docker save`` archive (legacy layout: <id>/layer.tar)."""
    config = config or config_for(layers, Cmd=["/bin/sh"])
    cdata, blobs = _blobs(layers, config, compression)
    chex = sha(cdata).split(":")[1]
    files = {f"{chex}.json": cdata}
    paths = []
    for i, b in enumerate(blobs):
        lid = hashlib.sha256(f"{chex}-{i}".encode()).hexdigest()
        files[f"{lid}/layer.tar"] = b
        files[f"{lid}/VERSION"] = b"1.0"
        files[f"{lid}/json"] = json.dumps({"id": lid}).encode()
        paths.append(f"{lid}/layer.tar")
    manifest = [{"Config": f"{chex}.json", "RepoTags": repo_tags, "Layers": paths}]
    files["manifest.json"] = json.dumps(manifest).encode()
    built = Built(sha(cdata), None, [sha(b) for b in blobs], [sha(t) for t in layers])
    return files, built


def write_dir(dest: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = dest / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return dest


def write_tar(dest: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    return dest
