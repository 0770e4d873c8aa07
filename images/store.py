"""The content-addressed image store.

Layout under ``root`` (default ``/var/lib/corral``; everything 0700, root-owned in production,
since layer trees may hold setuid files)::

    blobs/sha256/<hex>           verified blobs: configs, manifests, layers as imported
    layers/sha256/<diff hex>/fs  a layer unpacked once, shared by every image that has it
    layers/sha256/<diff hex>/meta.json
    images/<config hex>.json     one record per image: names, layers, manifest digest
    refs/<config hex>/<user>     one empty file per container using the image
    tmp/                         per-import staging, renamed into place on success
    gc.lock  meta.lock

Locking: an import holds ``gc.lock`` shared for its whole run and ``meta.lock`` only while it
renames its staged blobs and layers into place and writes records; ``rm`` and ``prune`` hold
``gc.lock`` exclusively, so they never delete something an import is about to reference.
Renames of identical content are idempotent, so concurrent imports of the same layers are
safe: the loser throws its copy away.

Durability: an import's staged files are not fsync'd one by one. Before they are published,
one syncfs(2) puts all of them on disk; the directories they are renamed into are fsync'd,
and the image record, which makes them reachable, is written durably last. After a crash,
what a record names is whole; what no record names is collected by ``prune``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from corral_common import hostsys
from corral_common.defaults import IMAGE_ROOT
from corral_common.rmtree import rmtree

from . import overlay
from .digest import (
    CHUNK,
    HashingReader,
    TeeReader,
    check_digest,
    decompressed,
    hex_of,
    sha256,
    sniff,
)
from .errors import DigestMismatch, FormatError, ImageError, InUse, NotFound
from .platforms import Platform
from .progress import CountingReader, Meter, ProgressFn
from .reference import check_name, check_ref, parse
from .sources import SourceImage, SourceLayer, open_source, read_images
from .unpack import Limits, UnpackResult, unpack_layer

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

DEFAULT_ROOT = IMAGE_ROOT

# Layers unpacked at once by an import (threads: see Store._stage).
UNPACK_THREADS = 4
MT_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True)
class LayerRecord:
    digest: str  # of the blob as stored (compressed or not)
    diff_id: str  # of the uncompressed tar
    media_type: str
    size: int  # blob bytes
    tar_size: int  # uncompressed tar bytes

    @staticmethod
    def from_json(d: dict[str, Any]) -> LayerRecord:
        return LayerRecord(d["digest"], d["diff_id"], d["media_type"], d["size"], d["tar_size"])


@dataclass(frozen=True)
class Image:
    id: str  # the config digest
    names: tuple[str, ...]
    layers: tuple[LayerRecord, ...]  # base first, as in the manifest
    created: str
    imported: float
    manifest_digest: str | None = None
    size: int = 0  # bytes of the unpacked layers' tar streams

    @property
    def short_id(self) -> str:
        return hex_of(self.id)[:12]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["names"] = list(self.names)
        d["layers"] = [asdict(x) for x in self.layers]
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> Image:
        return Image(
            id=d["id"],
            names=tuple(d.get("names") or ()),
            layers=tuple(LayerRecord.from_json(x) for x in d["layers"]),
            created=d.get("created") or "",
            imported=d.get("imported") or 0.0,
            manifest_digest=d.get("manifest_digest"),
            size=d.get("size") or 0,
        )


@dataclass
class PruneResult:
    images: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    tmp: int = 0


def normalize_name(name: str) -> str:
    """``foo`` -> ``foo:latest``; names with a tag or digest are kept as they are. FormatError
    for anything the distribution reference grammar refuses (``images.reference``)."""
    ref = parse(name)
    if ref.tag is None and ref.digest is None:
        return name + ":latest"
    return name


def _rmtree(path: Path) -> None:
    # A layer's tree is as deep as its author made it: no recursion (corral_common.rmtree).
    rmtree(path)


def _write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True)
    hostsys.host().write_atomic(path, text, 0o644, durable=durable)


class Store:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT, limits: Limits | None = None):
        self.root = Path(root)
        self.limits = limits or Limits()
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers" / "sha256"
        self.images_dir = self.root / "images"
        self.refs = self.root / "refs"
        self.tmp = self.root / "tmp"
        # made in this order, so a private root with tmp/ in it is a store made before (one
        # stat each, instead of six mkdirs and a chmod: the kubelet opens it for every pod)
        try:
            if os.stat(self.root).st_mode & 0o7777 == 0o700 and os.path.isdir(self.tmp):
                return
        except FileNotFoundError:
            pass
        for d in (self.root, self.blobs, self.layers, self.images_dir, self.refs, self.tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    # -- locks ---------------------------------------------------------------------------

    @contextmanager
    def _lock(self, name: str, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- paths ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def layer_dir(self, diff_id: str) -> Path:
        return self.layers / hex_of(diff_id) / "fs"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def has_layer(self, diff_id: str) -> bool:
        return (self.layers / hex_of(diff_id) / "meta.json").is_file()

    # -- queries -------------------------------------------------------------------------

    def images(self) -> list[Image]:
        out = []
        for p in sorted(self.images_dir.glob("*.json")):
            try:
                out.append(Image.from_json(json.loads(p.read_text())))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(out, key=lambda i: (-i.imported, i.id))

    def get(self, ref: str) -> Image:
        """An image by name (``foo`` = ``foo:latest``, ``localhost/`` optional), id or id prefix."""
        return self._lookup(ref)[0]

    def _lookup(self, ref: str) -> tuple[Image, str | None]:
        """The image and, when ``ref`` is one of its names, that name."""
        check_ref(ref)
        images = self.images()
        candidates = [ref]
        try:
            n = normalize_name(ref)
            candidates += [n, "localhost/" + n, "docker.io/library/" + n]
        except FormatError:
            pass
        for c in candidates:
            for img in images:
                if c in img.names:
                    return img, c
        h = ref.removeprefix("sha256:")
        if len(h) >= 4 and all(c in "0123456789abcdef" for c in h):
            found = [i for i in images if hex_of(i.id).startswith(h)]
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                raise ImageError(f"image id prefix {ref} is ambiguous")
        raise NotFound(f"image {ref}")

    def config(self, image: Image) -> dict[str, Any]:
        return json.loads(self.blob_path(image.id).read_bytes())

    def inspect(self, ref: str) -> dict[str, Any]:
        img = self.get(ref)
        out = img.to_json()
        out["config"] = self.config(img)
        out["users"] = self.users(img)
        out["layer_dirs"] = [str(p) for p in self.layer_dirs(img)]
        return out

    def layer_dirs(self, image: Image) -> list[Path]:
        """The unpacked layer trees, topmost first (overlayfs lowerdir order)."""
        return [self.layer_dir(lr.diff_id) for lr in reversed(image.layers)]

    # -- users (refs written by the runtime) ---------------------------------------------

    def users(self, image: Image) -> list[str]:
        d = self.refs / hex_of(image.id)
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def add_ref(self, image: Image, user: str) -> None:
        if not user or "/" in user or user.startswith("."):
            raise ImageError(f"invalid ref name {user!r}")
        d = self.refs / hex_of(image.id)
        d.mkdir(mode=0o700, exist_ok=True)
        (d / user).touch()

    def remove_ref(self, image: Image, user: str) -> None:
        d = self.refs / hex_of(image.id)
        try:
            (d / user).unlink()
            d.rmdir()
        except OSError:
            pass

    # -- import --------------------------------------------------------------------------

    def import_path(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        progress: ProgressFn | None = None,
        platform: Platform | None = None,
    ) -> list[Image]:
        """Import every image of a docker-archive, oci-archive or OCI layout directory.

        ``progress`` is called with the layer bytes and layers processed so far. ``name`` and
        the names the archive gives are checked (``images.reference``) before anything is
        stored. Images are for ``platform`` (None: this host's): an index gives its entry for
        it, an image for another one is refused."""
        if name is not None:
            check_name(name)
        with self.importing(), open_source(Path(path)) as (kind, reader):
            sources = read_images(kind, reader, platform)
            if name is not None:
                if len(sources) != 1:
                    raise FormatError(f"{path} holds {len(sources)} images; --name needs one")
                sources[0].names = [name]
            else:
                for s in sources:
                    for n in s.names:
                        check_name(n, f"{path}: {s.names_from}")
            return self.import_sources(reader, sources, progress, str(path))

    @contextmanager
    def importing(self) -> Iterator[None]:
        """Held (shared) by everything that adds to the store, so that ``rm`` and ``prune``
        (exclusive) never remove what an import or pull is about to reference."""
        with self._lock("gc.lock", exclusive=False):
            yield

    def import_sources(
        self,
        reader: Any,
        sources: list[SourceImage],
        progress: ProgressFn | None = None,
        where: str = "source",
    ) -> list[Image]:
        """Stage and commit images read by ``reader`` (an ``images.sources.Reader``): every
        blob verified, every layer unpacked, all renamed into place together or nothing."""
        with self.importing():
            layers = [lr for s in sources for lr in s.layers]
            total = sum(_layer_size(reader, lr) for lr in layers)
            meter = Meter(progress, total, len(layers))
            staging = Path(tempfile.mkdtemp(prefix="import-", dir=self.tmp))
            try:
                try:
                    staged = [self._stage(reader, s, staging, meter) for s in sources]
                except (tarfile.TarError, EOFError) as e:
                    raise FormatError(f"{where}: truncated or corrupt archive: {e}") from e
                return self._commit(staged, staging)
            finally:
                _rmtree(staging)

    def ingest_dir(self) -> Path:
        """Where pulls keep blobs while they download (``tmp/ingest``): partial files for
        Range resumption, verified ones until their image is committed. ``prune`` empties it."""
        d = self.tmp / "ingest"
        d.mkdir(mode=0o700, exist_ok=True)
        return d

    def _stage(
        self, reader: Any, src: SourceImage, staging: Path, meter: Meter
    ) -> tuple[SourceImage, list[LayerRecord]]:
        (staging / "blobs").mkdir(exist_ok=True)
        if not (staging / "layers").is_dir():
            (staging / "layers").mkdir()
            mark_topdir(staging / "layers")
        self._stage_bytes(staging, src.config_digest, src.config)
        if src.manifest is not None and src.manifest_digest:
            self._stage_bytes(staging, src.manifest_digest, src.manifest)

        # Each layer not stored yet is read from the source once: copied to its blob,
        # verified and unpacked in one pass (TeeReader), in a thread of its own when the
        # reader can serve several files at once (a directory, an uncompressed archive).
        # Otherwise the blobs are copied one after another, as they come out of the one
        # stream, and each is unpacked in a thread as soon as it is staged. Most of an unpack
        # is file creation and hashing, which run with the GIL released, so the layers' work
        # overlaps.
        # (The pool, and concurrent.futures with the logging it imports, only when a layer
        # is to be unpacked: a re-import unpacks none.)
        def unpack(blob: Path, layer: SourceLayer, size: int) -> Path:
            read = self._unpack(blob, layer, staging, meter)
            meter.layer_done(max(0, size - read))
            return blob

        pool: ThreadPoolExecutor | None = None

        def submit(fn: Callable[..., Path], *args: Any) -> Future[Path]:
            nonlocal pool
            if pool is None:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(UNPACK_THREADS)
            return pool.submit(fn, *args)

        blobs: list[Path | Future[Path]] = []
        started: dict[str, Future[Path]] = {}
        try:
            for layer in src.layers:
                size = _layer_size(reader, layer)  # here: the reader is not shared
                if layer.diff_id in started:  # twice in this image: the same blob
                    meter.layer_done(size)
                    blobs.append(started[layer.diff_id])
                    continue
                if self._layer_meta(staging, layer.diff_id):  # unpacked before
                    blobs.append(self._stage_blob(reader, layer, staging, stored=True))
                    meter.layer_done(size)
                elif reader.independent(layer.path):
                    # (Its blob, if stored already, is copied again: the rename is idempotent.
                    # An uncompressed layer's blob is checked by its diff_id.)
                    fut = submit(self._stream_layer, reader, layer, layer.digest, staging, meter)
                    started[layer.diff_id] = fut
                    blobs.append(fut)
                else:
                    blob = self._stage_blob(reader, layer, staging)
                    started[layer.diff_id] = submit(unpack, blob, layer, size)
                    blobs.append(blob)
            for f in started.values():
                f.result()  # the first error; the others finish (or never start) below
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        records = []
        for layer, b in zip(src.layers, blobs, strict=True):
            blob = b if isinstance(b, Path) else b.result()
            meta = self._layer_meta(staging, layer.diff_id)
            assert meta is not None  # unpacked above, or stored before
            with blob.open("rb") as f:
                kind = sniff(f.read(4))
            size = blob.stat().st_size
            digest = "sha256:" + blob.name
            records.append(
                LayerRecord(digest, layer.diff_id, MT_LAYER[kind], size, meta["tar_size"])
            )
        return src, records

    def _stage_bytes(self, staging: Path, digest: str, data: bytes) -> None:
        if not self.has_blob(digest):
            (staging / "blobs" / hex_of(digest)).write_bytes(data)

    def _find_blob(self, staging: Path, digest: str) -> Path | None:
        for p in (self.blob_path(digest), staging / "blobs" / hex_of(digest)):
            if p.is_file():
                return p
        return None

    def _stage_blob(
        self, reader: Any, layer: SourceLayer, staging: Path, stored: bool = False
    ) -> Path:
        """The layer's blob, stored or staged (copied from ``reader`` and verified).

        ``stored``: the layer is unpacked already, so its blob is most likely stored too;
        a blob whose digest the source does not tell (a compressed layer of a docker
        archive) is then hashed first, without a copy, and copied only if it is not."""
        claim = layer.digest
        if claim is None and sniff(reader.head(layer.path)) == "none":
            claim = layer.diff_id  # an uncompressed layer's digest is its diff_id
        if claim is None and stored:
            with reader.open(layer.path) as src:
                h = HashingReader(src)
                h.drain()
            claim = h.digest()  # what the copy below verifies, if it has to be made
        blob = self._find_blob(staging, claim) if claim else None
        if blob is None:
            blob = self._copy_blob(reader, layer, claim, staging)
        return blob

    def _copy_blob(self, reader: Any, layer: SourceLayer, claim: str | None, staging: Path) -> Path:
        fd, tmpname = tempfile.mkstemp(dir=staging / "blobs", prefix=".blob-")
        tmp = Path(tmpname)
        with reader.open(layer.path) as src, os.fdopen(fd, "wb") as out:
            h = HashingReader(src)
            while chunk := h.read(CHUNK):
                out.write(chunk)
        actual = h.digest()
        if claim is not None and actual != claim:
            tmp.unlink()
            raise DigestMismatch(layer.path, claim, actual)
        if layer.size is not None and layer.size != h.count:
            tmp.unlink()
            raise DigestMismatch(layer.path, f"{layer.size} bytes", f"{h.count} bytes")
        final = staging / "blobs" / hex_of(actual)
        os.rename(tmp, final)
        return final

    def _stream_layer(
        self, reader: Any, layer: SourceLayer, claim: str | None, staging: Path, meter: Meter
    ) -> Path:
        """Copy, verify and unpack one layer in a single read of the source; returns its
        staged blob. On any error nothing of it is left in ``staging``."""
        d = _new_tree(staging, layer.diff_id)
        fs = d / "fs"
        fd, tmpname = tempfile.mkstemp(dir=staging / "blobs", prefix=".blob-")
        tmp = Path(tmpname)
        name = layer.path
        try:
            try:
                with reader.open(name) as src:
                    kind = sniff(_head(src))
                    # Uncompressed, the blob is the tar the unpack hashes: hashed once, there.
                    tee = TeeReader(src, fd, hashing=kind != "none")
                    counted = CountingReader(cast(IO[bytes], tee), meter)
                    try:
                        with decompressed(cast(BinaryIO, counted)) as stream:
                            res = unpack_layer(stream, fs, limits=self.limits, layer=name)
                    except Exception as e:
                        # A blob that is not the one claimed is the cause to report.
                        wrong = _wrong_blob(tee, tmp, claim, layer)
                        if wrong is not None:
                            raise wrong from e
                        raise
                    tee.drain()  # what follows the end of a compressed stream, if anything
            finally:
                os.close(fd)
            if tee.hashing:
                actual = tee.digest()
            elif tee.count == res.size:
                actual = res.diff_id
            else:  # cannot happen: the unpack drains the stream the tee copies
                raise FormatError(f"{name}: read {tee.count} bytes, unpacked {res.size}")
            if claim is not None and actual != claim:
                raise DigestMismatch(name, claim, actual)
            if layer.size is not None and layer.size != tee.count:
                raise DigestMismatch(name, f"{layer.size} bytes", f"{tee.count} bytes")
            if res.diff_id != layer.diff_id:
                raise DigestMismatch(f"{name} (uncompressed)", layer.diff_id, res.diff_id)
            final = staging / "blobs" / hex_of(actual)
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            _rmtree(d)
            raise
        self._write_meta(d, layer.diff_id, res)
        meter.layer_done(max(0, _layer_size(reader, layer) - counted.count))
        return final

    def _layer_meta(self, staging: Path, diff_id: str) -> dict[str, Any] | None:
        for d in (self.layers / hex_of(diff_id), staging / "layers" / hex_of(diff_id)):
            try:
                return json.loads((d / "meta.json").read_text())
            except FileNotFoundError:
                continue
        return None

    def _unpack(self, blob: Path, layer: SourceLayer, staging: Path, meter: Meter) -> int:
        """Unpack the layer into the staging area and write its meta.json; returns the bytes
        of the blob read."""
        d = _new_tree(staging, layer.diff_id)
        fs = d / "fs"
        name = layer.path
        try:
            with blob.open("rb") as f:
                counted = CountingReader(f, meter)
                with decompressed(cast(BinaryIO, counted)) as stream:
                    res = unpack_layer(stream, fs, limits=self.limits, layer=name)
        except BaseException:
            _rmtree(d)
            raise
        if res.diff_id != layer.diff_id:
            _rmtree(d)
            raise DigestMismatch(f"{name} (uncompressed)", layer.diff_id, res.diff_id)
        self._write_meta(d, layer.diff_id, res)
        return counted.count

    @staticmethod
    def _write_meta(d: Path, diff_id: str, res: UnpackResult) -> None:
        """The unpacked layer's meta.json, staged (made durable with everything staged by
        the one syncfs of ``_commit``); then the tree takes its layer's name."""
        meta = {
            "diff_id": diff_id,
            "tar_size": res.size,
            "content_bytes": res.content_bytes,
            "entries": res.entries,
        }
        try:
            _write_json(d / "meta.json", meta, durable=False)
            os.rename(d, d.parent / hex_of(diff_id))
        except BaseException:
            _rmtree(d)
            raise

    def _commit(
        self, staged: list[tuple[SourceImage, list[LayerRecord]]], staging: Path
    ) -> list[Image]:
        # What an image record names must be on disk before the record is: one syncfs puts
        # every staged blob, layer tree and meta.json there (none of them was fsync'd: a
        # staged file that a crash loses is never referenced, and prune removes the staging
        # directory), the directory fsyncs the renames that publish them, and the record is
        # written durably last. A crash before it leaves unreferenced blobs and layers, which
        # prune collects; the next import of the image finds them and renames nothing.
        blobs = [p for p in (staging / "blobs").iterdir() if not p.name.startswith(".")]
        layers = [p for p in (staging / "layers").iterdir() if not p.name.startswith(".")]
        if blobs or layers:  # (a re-import stages nothing)
            hostsys.syncfs(staging)
        with self._lock("meta.lock", exclusive=True):
            for p in blobs:
                _rename_into(p, self.blobs / p.name)
            for p in layers:
                _rename_into(p, self.layers / p.name)
            if blobs:
                hostsys.fsync_dir(self.blobs)
            if layers:
                hostsys.fsync_dir(self.layers)
            out = []
            now = time.time()
            for src, records in staged:
                names = tuple(normalize_name(n) for n in src.names)
                old = self._record(src.config_digest)
                keep = tuple(n for n in (old.names if old else ()) if n not in names)
                img = Image(
                    id=src.config_digest,
                    names=names + keep,
                    layers=tuple(records),
                    created=str(src.config_json.get("created") or ""),
                    imported=now,
                    manifest_digest=src.manifest_digest or (old.manifest_digest if old else None),
                    size=sum(r.tar_size for r in records),
                )
                for other in self.images():
                    if other.id != img.id and set(other.names) & set(names):
                        rest = tuple(n for n in other.names if n not in names)
                        self._write_record(Image(**{**other.__dict__, "names": rest}))
                if old is not None and old == Image(**{**img.__dict__, "imported": old.imported}):
                    img = old  # a re-import that changes nothing writes nothing
                else:
                    self._write_record(img)
                out.append(img)
            return out

    def _record(self, image_id: str) -> Image | None:
        try:
            return Image.from_json(
                json.loads((self.images_dir / f"{hex_of(image_id)}.json").read_text())
            )
        except FileNotFoundError:
            return None

    def _write_record(self, img: Image) -> None:
        _write_json(self.images_dir / f"{hex_of(img.id)}.json", img.to_json())

    # -- removal -------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False) -> Image:
        """Remove an image. By one of several names, only that name goes. While containers
        use it this is refused, or with ``force`` the image only loses its names (it stays
        until ``prune`` finds it unused)."""
        with self._lock("gc.lock", exclusive=True), self._lock("meta.lock", exclusive=True):
            img, name = self._lookup(ref)
            if name is not None and len(img.names) > 1:
                self._write_record(
                    Image(**{**img.__dict__, "names": tuple(n for n in img.names if n != name)})
                )
                return img
            users = self.users(img)
            if users and not force:
                raise InUse(img.names[0] if img.names else img.short_id, users)
            if users:
                self._write_record(Image(**{**img.__dict__, "names": ()}))
            else:
                (self.images_dir / f"{hex_of(img.id)}.json").unlink()
                self._gc(PruneResult())
            return img

    def prune(self) -> PruneResult:
        """Remove unnamed unused images, unreferenced blobs and layers, stale staging dirs."""
        res = PruneResult()
        with self._lock("gc.lock", exclusive=True), self._lock("meta.lock", exclusive=True):
            for img in self.images():
                if not img.names and not self.users(img):
                    (self.images_dir / f"{hex_of(img.id)}.json").unlink()
                    res.images.append(img.id)
            for p in self.tmp.iterdir():
                _rmtree(p)  # no import runs while we hold gc.lock exclusively
                res.tmp += 1
            self._gc(res)
        return res

    def _gc(self, res: PruneResult) -> None:
        blobs: set[str] = set()
        layers: set[str] = set()
        for img in self.images():
            blobs.add(hex_of(img.id))
            if img.manifest_digest:
                blobs.add(hex_of(img.manifest_digest))
            for lr in img.layers:
                blobs.add(hex_of(lr.digest))
                layers.add(hex_of(lr.diff_id))
        for p in self.blobs.iterdir():
            if p.name not in blobs:
                p.unlink()
                res.blobs.append("sha256:" + p.name)
        for p in self.layers.iterdir():
            if p.name not in layers:
                _rmtree(p)
                res.layers.append("sha256:" + p.name)
        links = self.root / "l"
        for p in links.iterdir() if links.is_dir() else ():
            if not p.exists():  # dangling: its layer is gone
                p.unlink()

    # -- rootfs --------------------------------------------------------------------------

    def mount_rootfs(
        self, image: Image | str, dest: str | os.PathLike[str], workdir: str | os.PathLike[str]
    ) -> None:
        """Mount ``image`` at ``dest``: its layers read-only under a private upper/work dir
        made in ``workdir`` (which must be on one filesystem and not inside ``dest``)."""
        img = self.get(image) if isinstance(image, str) else image
        lowers = []
        for lr in reversed(img.layers):
            if not self.layer_dir(lr.diff_id).is_dir():
                raise NotFound(f"unpacked layer {lr.diff_id}")
            lowers.append(self._short_link(lr.diff_id))
        overlay.mount(lowers, Path(dest), Path(workdir))

    def _short_link(self, diff_id: str) -> Path:
        """``l/<16 hex>`` -> the layer tree: short lowerdir paths (like docker's overlay2
        ``l/``), so about a hundred layers fit in mount(2)'s one-page option string."""
        link = self.root / "l" / hex_of(diff_id)[:16]
        target = f"../layers/sha256/{hex_of(diff_id)}/fs"
        link.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            os.symlink(target, link)
        except FileExistsError:
            if os.readlink(link) != target:
                return self.layer_dir(diff_id)  # a 64-bit prefix collision: use the long path
        return link

    def umount(
        self, dest: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None
    ) -> None:
        """Unmount a rootfs made by ``mount_rootfs`` and remove its ``workdir``, if given."""
        overlay.umount(Path(dest))
        if workdir is not None:
            _rmtree(Path(workdir))

    # -- save ----------------------------------------------------------------------------

    def save(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        fmt: str = "docker-archive",
        progress: ProgressFn | None = None,
    ) -> Image:
        """Write ``ref`` to ``dest``; ``progress`` is called as layer bytes are written."""
        from . import save as _save

        with self._lock("gc.lock", exclusive=False):
            img = self.get(ref)
            _save.write(self, img, Path(dest), fmt, progress)
            return img

    def open_blob(self, digest: str) -> IO[bytes]:
        check_digest(digest)
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest}") from None


# FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (_IOR/_IOW('f', 1/2, long): the same numbers on every
# 64-bit Linux ABI; the kernel reads and writes an int) and FS_TOPDIR_FL.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def mark_topdir(path: Path) -> None:
    """Mark ``path`` as the top of directory hierarchies (``chattr +T``), where the
    filesystem has the flag (ext2/3/4; elsewhere this does nothing).

    ext4 places a new file's inode in its directory's block group, and a new directory near
    its parent, unless the parent is a top directory: then each child directory is put in
    a group of its own choosing (Orlov), as the root's children are. Each staged layer tree
    thus gets its own group instead of the one that holds the store, and that matters where
    files are deleted often: on an ext4 without a journal, every inode allocation scans
    past the inodes of its group deleted in the last minutes (``recently_deleted``), so
    creating a layer's files where the previous import's (or another program's) files
    were just removed costs time quadratic in their number (measured: a 2,000-file image,
    2.7 s of system time instead of 0.2 s)."""
    import array

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, False)
    except OSError:
        pass  # ENOTTY, EOPNOTSUPP: a filesystem without inode flags; EPERM: not ours to set
    finally:
        os.close(fd)


def _new_tree(staging: Path, diff_id: str) -> Path:
    """A directory for a layer's tree (``fs``) and meta.json, made under ``staging/layers``
    with a random name; ``_write_meta`` renames it to the layer's hex once it is whole.
    (ext4 starts its search for a top directory's child's block group at a hash of the
    name: the hex of a layer removed and imported again would lead it back to the group
    where the removed layer's inodes were just freed.)"""
    d = Path(tempfile.mkdtemp(dir=staging / "layers", prefix=f".{hex_of(diff_id)[:12]}-"))
    try:
        os.chmod(d, 0o755)
        (d / "fs").mkdir(mode=0o755)
    except BaseException:
        _rmtree(d)
        raise
    return d


def _layer_size(reader: Any, layer: SourceLayer) -> int:
    return layer.size if layer.size is not None else reader.size(layer.path)


def _head(f: IO[bytes]) -> bytes:
    """The first bytes of ``f``, left to be read again (peeked, or read and sought back)."""
    peek = getattr(f, "peek", None)
    if peek is not None:
        head: bytes = peek(4)[:4]
        if len(head) == 4 or not head:
            return head
    head = f.read(4)
    f.seek(0)
    return head


def _wrong_blob(
    tee: TeeReader, copy: Path, claim: str | None, layer: SourceLayer
) -> DigestMismatch | None:
    """After a failed unpack: the mismatch of the whole blob with its claimed digest or size,
    if it has one (the rest of the blob is copied first; the copy is hashed here when the
    tee did not hash it)."""
    if claim is None and layer.size is None:
        return None
    tee.drain()
    if tee.hashing:
        actual = tee.digest()
    else:
        h = sha256()
        with copy.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        actual = "sha256:" + h.hexdigest()
    if claim is not None and actual != claim:
        return DigestMismatch(layer.path, claim, actual)
    if layer.size is not None and layer.size != tee.count:
        return DigestMismatch(layer.path, f"{layer.size} bytes", f"{tee.count} bytes")
    return None


def _rename_into(src: Path, dest: Path) -> None:
    try:
        os.rename(src, dest)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
            raise
        # Same digest, same content: somebody else committed it first.
