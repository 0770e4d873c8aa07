"""Readers for the three import formats: docker-archive, oci-archive and OCI image layout.

A source is read in place (a tar file is indexed, never extracted; a directory is read with
every path checked to stay inside it). Member names are only used to look blobs up. Every
blob that names a digest is verified when it is read; layers are verified by the store as
they are copied.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import platforms
from .digest import CHUNK, GZIP_MAGIC, check_digest, sha256_bytes, verify_bytes
from .errors import FormatError, NotFound
from .imageconfig import check_config
from .platforms import Platform

MAX_JSON = 16 << 20  # manifests, configs and indexes are small; refuse anything bigger

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_BLOB_PATH = re.compile(r"^(?:.*/)?blobs/sha256/([0-9a-f]{64})$")
_HEX_FILE = re.compile(r"^(?:.*/)?([0-9a-f]{64})(?:\.json|\.tar)?$")


@dataclass(frozen=True)
class SourceLayer:
    path: str
    diff_id: str
    digest: str | None  # claimed by a descriptor or by the file name, verified on copy
    size: int | None
    media_type: str | None


@dataclass
class SourceImage:
    names: list[str]
    config: bytes
    config_digest: str
    layers: list[SourceLayer]
    manifest: bytes | None = None  # the original OCI manifest, kept for a faithful save
    manifest_digest: str | None = None
    config_json: dict[str, Any] = field(default_factory=dict)
    names_from: str = ""  # where in the source the names were found, for errors


class Reader:
    """Random access to the files of an archive or directory."""

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def independent(self, path: str) -> bool:
        """Whether the file ``open(path)`` returns may be read while other files of this
        reader are read, from other threads (else one file at a time, in one thread)."""
        return False

    def size(self, path: str) -> int:
        """The size of a file, for progress reports (0 when it cannot be told cheaply)."""
        return 0

    def head(self, path: str, n: int = 4) -> bytes:
        """The first ``n`` bytes of a file (its magic), read without filling a buffer."""
        with self.open(path) as f:
            return f.read(n)

    def read(self, path: str, limit: int = MAX_JSON) -> bytes:
        with self.open(path) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise FormatError(f"{path}: larger than {limit} bytes")
        return data

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path))
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: invalid JSON: {e}") from e


def _norm(name: str) -> str:
    return os.path.normpath("/" + name).lstrip("/")


# An archive's compression by its first bytes: tarfile's "r:*" tries each one it knows in
# turn, importing bz2 and lzma (0.6 MiB of libraries an agent then holds) to read a plain tar.
_TAR_MODES = ((GZIP_MAGIC, "r:gz"), (b"BZh", "r:bz2"), (b"\xfd7zXZ\x00", "r:xz"))


def _tar_mode(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((mode for magic, mode in _TAR_MODES if head.startswith(magic)), "r:")


class TarReader(Reader):
    def __init__(self, path: Path) -> None:
        try:
            self.tf = tarfile.open(path, _tar_mode(path))  # noqa: SIM115
            self.members = {_norm(m.name): m for m in self.tf.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as e:
            raise FormatError(f"{path}: not a readable tar archive: {e}") from e
        # An uncompressed archive (docker save writes one) holds each regular member's bytes
        # in one run: those are read with pread(2) on a descriptor of their own, so several
        # layers can be read at once. A compressed archive is one stream: extractfile only.
        self.fd = -1
        if type(self.tf.fileobj) is io.BufferedReader:
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                self.tf.close()
                raise FormatError(f"{path}: not a readable tar archive: {e}") from e

    def exists(self, path: str) -> bool:
        return _norm(path) in self.members

    def _regular(self, path: str) -> tarfile.TarInfo | None:
        """The regular, contiguous member ``path`` names, following links inside the archive
        (as extractfile does), or None."""
        m = self.members.get(_norm(path))
        for _ in range(8):
            if m is None or not (m.islnk() or m.issym()):
                break
            target = (
                m.linkname if m.islnk() else posixpath.join(posixpath.dirname(m.name), m.linkname)
            )
            m = self.members.get(_norm(target))
        if m is None or not m.isreg() or m.issparse():
            return None
        return m

    def independent(self, path: str) -> bool:
        return self.fd >= 0 and self._regular(path) is not None

    def head(self, path: str, n: int = 4) -> bytes:
        if self.fd >= 0 and (reg := self._regular(path)) is not None:
            return os.pread(self.fd, min(n, reg.size), reg.offset_data)
        return super().head(path, n)

    def open(self, path: str) -> IO[bytes]:
        if self.fd >= 0 and (reg := self._regular(path)) is not None:
            return io.BufferedReader(_Member(self.fd, reg.offset_data, reg.size, path), CHUNK)
        m = self.members.get(_norm(path))
        if m is None:
            raise FormatError(f"archive has no {path}")
        try:
            f = self.tf.extractfile(m)  # follows links inside the archive only
        except (tarfile.TarError, KeyError) as e:
            raise FormatError(f"archive member {path}: {e}") from e
        if f is None:
            raise FormatError(f"archive member {path} is not a file")
        return f

    def size(self, path: str) -> int:
        m = self.members.get(_norm(path))
        if m is not None and m.islnk():
            m = self.members.get(_norm(m.linkname), m)
        return m.size if m is not None and m.isfile() else 0

    def close(self) -> None:
        self.tf.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Member(io.RawIOBase):
    """``size`` bytes at ``offset`` of the descriptor ``fd``, read with pread(2): no shared
    file position, so members of one archive can be read from several threads."""

    def __init__(self, fd: int, offset: int, size: int, name: str) -> None:
        self.fd = fd
        self.offset = offset
        self.size = size
        self.name = name
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(b), self.size - self.pos)
        if want <= 0:
            return 0
        n = os.preadv(self.fd, [memoryview(b)[:want]], self.offset + self.pos)
        if n == 0:
            raise FormatError(f"archive member {self.name}: truncated archive")
        self.pos += n
        return n


class FileReader(Reader):
    """Members that are files of this host, found by ``_path``."""

    def _path(self, path: str) -> Path:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def size(self, path: str) -> int:
        try:
            return self._path(path).stat().st_size
        except OSError:
            return 0

    def open(self, path: str) -> IO[bytes]:
        return self._path(path).open("rb")

    def head(self, path: str, n: int = 4) -> bytes:
        with self._path(path).open("rb", buffering=0) as f:
            return f.read(n)

    def independent(self, path: str) -> bool:
        return True


class DirReader(FileReader):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, path: str) -> Path:
        p = (self.root / _norm(path)).resolve()
        if p != self.root and self.root not in p.parents:
            raise FormatError(f"{path} resolves outside {self.root}")
        return p

    def open(self, path: str) -> IO[bytes]:
        try:
            return super().open(path)
        except FileNotFoundError:
            raise FormatError(f"{self.root} has no {path}") from None

    def head(self, path: str, n: int = 4) -> bytes:
        try:
            return super().head(path, n)
        except FileNotFoundError:
            raise FormatError(f"{self.root} has no {path}") from None


@contextmanager
def open_source(path: Path) -> Iterator[tuple[str, Reader]]:
    """The format (``docker-archive``, ``oci-archive``, ``oci-dir``, ``docker-dir``) and reader."""
    if not path.exists():
        raise NotFound(str(path))
    reader: Reader = DirReader(path) if path.is_dir() else TarReader(path)
    try:
        if reader.exists("manifest.json"):
            kind = "docker-dir" if path.is_dir() else "docker-archive"
        elif reader.exists("index.json"):
            kind = "oci-dir" if path.is_dir() else "oci-archive"
        else:
            raise FormatError(f"{path}: neither manifest.json (docker) nor index.json (OCI)")
        yield kind, reader
    finally:
        reader.close()


def read_images(kind: str, reader: Reader, want: Platform | None = None) -> list[SourceImage]:
    """The images of an archive or layout, each checked to be for ``want`` (None: this
    host's platform); an index gives its entry for that platform."""
    if kind.startswith("docker"):
        return _docker(reader, want)
    return _oci(reader, want)


def _config(
    reader: Reader, path: str, expected: str | None, size: int | None = None
) -> tuple[bytes, str, dict[str, Any]]:
    data = reader.read(path)
    if expected is not None:
        verify_bytes(path, data, expected, size)
    digest = sha256_bytes(data)
    try:
        cfg = json.loads(data)
    except ValueError as e:
        raise FormatError(f"image config {path}: invalid JSON: {e}") from e
    check_config(cfg, f"image config {path}")
    return data, digest, cfg


def _diff_ids(cfg: dict[str, Any], n: int, where: str) -> list[str]:
    rootfs = cfg.get("rootfs") or {}
    ids = rootfs.get("diff_ids") or []
    if not isinstance(ids, list) or len(ids) != n:
        raise FormatError(f"{where}: {len(ids)} diff_ids for {n} layers")
    return [check_digest(d) for d in ids]


def _claim(path: str) -> str | None:
    m = _BLOB_PATH.match(path) or _HEX_FILE.match(path)
    return f"sha256:{m.group(1)}" if m else None


def _docker(reader: Reader, want: Platform | None) -> list[SourceImage]:
    manifest = reader.json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise FormatError("manifest.json: expected a non-empty array")
    out = []
    for i, entry in enumerate(manifest):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise FormatError("manifest.json: entry without Config")
        cpath = entry["Config"]
        config, cdigest, cfg = _config(reader, cpath, _claim(cpath))
        platforms.check(cfg, want, f"manifest.json[{i}]: image config {cpath}")
        layers = entry.get("Layers") or []
        diff_ids = _diff_ids(cfg, len(layers), cpath)
        src_layers = []
        for lpath, diff_id in zip(layers, diff_ids, strict=True):
            src_layers.append(SourceLayer(lpath, diff_id, _claim(lpath), None, None))
        names = entry.get("RepoTags") or []
        where = f"manifest.json[{i}].RepoTags"
        if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
            raise FormatError(f"{where}: must be an array of strings")
        out.append(
            SourceImage(names, config, cdigest, src_layers, config_json=cfg, names_from=where)
        )
    return out


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + check_digest(digest).split(":", 1)[1]


def _read_blob(reader: Reader, desc: dict[str, Any]) -> bytes:
    digest = check_digest(desc.get("digest", ""))
    data = reader.read(_blob_path(digest))
    verify_bytes(_blob_path(digest), data, digest, desc.get("size"))
    return data


def _host_platform() -> tuple[str, str]:
    p = platforms.host()
    return p.os, p.architecture


def _oci(reader: Reader, want: Platform | None) -> list[SourceImage]:
    index = reader.json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise FormatError("index.json: no manifests array")
    out = []
    for i, desc in enumerate(index["manifests"]):
        annotations = desc.get("annotations") or {}
        key = CONTAINERD_NAME if annotations.get(CONTAINERD_NAME) else REF_NAME
        name = annotations.get(key)
        where = f"index.json manifests[{i}].annotations[{key}]"
        if name is not None and not isinstance(name, str):
            raise FormatError(f"{where}: must be a string")
        while desc.get("mediaType") in INDEX_TYPES:
            nested = json.loads(_read_blob(reader, desc))
            if not isinstance(nested, dict) or not nested.get("manifests"):
                raise FormatError(f"index {desc.get('digest')}: lists no manifests")
            desc = platforms.pick(
                nested["manifests"], want or platforms.host(), f"index {desc.get('digest')}"
            )
        if desc.get("mediaType") not in MANIFEST_TYPES:
            raise FormatError(f"index.json: unsupported manifest type {desc.get('mediaType')!r}")
        mdata = _read_blob(reader, desc)
        try:
            man = json.loads(mdata)
        except ValueError as e:
            raise FormatError(f"manifest {desc['digest']}: invalid JSON: {e}") from e
        cdesc = man.get("config") or {}
        config, cdigest, cfg = _config(
            reader, _blob_path(cdesc.get("digest", "")), cdesc["digest"], cdesc.get("size")
        )
        platforms.check(cfg, want, f"index.json manifests[{i}]: image config {cdigest}")
        ldescs = man.get("layers") or []
        diff_ids = _diff_ids(cfg, len(ldescs), f"config {cdigest}")
        layers = []
        for ld, diff_id in zip(ldescs, diff_ids, strict=True):
            d = check_digest(ld.get("digest", ""))
            layers.append(
                SourceLayer(_blob_path(d), diff_id, d, ld.get("size"), ld.get("mediaType"))
            )
        out.append(
            SourceImage(
                [name] if name else [],
                config,
                cdigest,
                layers,
                manifest=mdata,
                manifest_digest=desc["digest"],
                config_json=cfg,
                names_from=where,
            )
        )
    return out
