"""Digests, hashing readers and layer decompression."""

from __future__ import annotations

import gzip
import io
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from .errors import DigestMismatch, FormatError

try:  # the interpreter's own SHA-256: built in, nothing to load; 6x slower than OpenSSL's
    from _sha256 import sha256 as _small_sha256
except ImportError:  # pragma: no cover - Python 3.12 renamed it
    try:
        from _sha2 import sha256 as _small_sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _small_sha256 = None  # type: ignore[assignment]

SMALL = 64 << 10  # below this many bytes, the built-in hash: loading OpenSSL costs ~3 ms
_openssl_sha256: Any = None


def sha256(data: bytes = b"") -> Any:
    """A SHA-256 hash object from OpenSSL (SHA-NI where the CPU has it), for layers and
    streams: loaded on first use, without the rest of hashlib."""
    global _openssl_sha256
    if _openssl_sha256 is None:
        try:
            from _hashlib import openssl_sha256 as f
        except ImportError:  # pragma: no cover - a Python built without OpenSSL
            from hashlib import sha256 as f
        _openssl_sha256 = f
    return _openssl_sha256(data)


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def check_digest(d: str) -> str:
    """Return ``d`` if it is a sha256 digest we accept (the only algorithm we store)."""
    if not isinstance(d, str) or not _DIGEST.match(d):
        raise FormatError(f"unsupported or malformed digest: {d!r}")
    return d


def hex_of(d: str) -> str:
    return check_digest(d).split(":", 1)[1]


def sha256_bytes(data: bytes) -> str:
    if len(data) < SMALL and _small_sha256 is not None:  # configs, manifests, indexes
        return "sha256:" + _small_sha256(data).hexdigest()
    return "sha256:" + sha256(data).hexdigest()


def verify_bytes(name: str, data: bytes, expected: str, size: int | None = None) -> None:
    actual = sha256_bytes(data)
    if actual != check_digest(expected):
        raise DigestMismatch(name, expected, actual)
    if size is not None and size != len(data):
        raise DigestMismatch(name, f"{size} bytes", f"{len(data)} bytes")


class HashingReader(io.RawIOBase):
    """Reads through ``inner``, hashing and counting what passes; ``limit`` caps the count."""

    def __init__(self, inner: IO[bytes], limit: int | None = None) -> None:
        self.inner = inner
        self.hash = sha256()
        self.count = 0
        self.limit = limit

    def readable(self) -> bool:
        return True

    # Both ways of reading pass the bytes on without another copy: read() returns what the
    # inner stream returned (tarfile reads so), readinto() has the inner stream fill the
    # caller's buffer (a BufferedReader above reads so).
    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self._seen(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(b)  # type: ignore[attr-defined]
        self._seen(memoryview(b)[:n])
        return n

    def _seen(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise FormatError(f"stream longer than {self.limit} bytes")

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class TeeReader(io.RawIOBase):
    """Reads through ``inner``, writing every byte that passes to the file ``out_fd`` and, when
    ``hashing``, hashing it: a layer's blob is stored, verified and unpacked in one pass over
    the source (without ``hashing`` when the caller hashes the same bytes further down, as
    the unpack does for an uncompressed layer, whose digest is its diff_id)."""

    def __init__(self, inner: IO[bytes], out_fd: int, *, hashing: bool = True) -> None:
        self.inner = inner
        self.out_fd = out_fd
        self.hashing = hashing
        self.hash = sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(b)  # type: ignore[attr-defined]
        view = memoryview(b)[:n]
        if self.hashing:
            self.hash.update(view)
        while view:
            view = view[os.write(self.out_fd, view) :]
        self.count += n
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def stream_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or truncated compressed stream raises while it is read: the errors of
    the decompressors that are loaded (one not imported yet has read nothing; importing it
    on an error path only to name its error costs a node's agent about 2 MiB for good)."""
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
    isal_zlib = sys.modules.get("isal.isal_zlib")
    if isal_zlib is not None:
        errors += (isal_zlib.error,)
    zstandard = sys.modules.get("zstandard")
    if zstandard is not None:
        errors += (zstandard.ZstdError,)
    return errors


def sniff(head: bytes) -> str:
    """Compression of a layer from its first bytes: ``gzip``, ``zstd`` or ``none``."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


@contextmanager
def decompressed(raw: BinaryIO) -> Iterator[IO[bytes]]:
    """A stream of ``raw`` decompressed by its magic bytes (plain, gzip or zstd)."""
    buffered = io.BufferedReader(raw, CHUNK) if not hasattr(raw, "peek") else raw
    head = buffered.peek(4)[:4]  # type: ignore[attr-defined]
    kind = sniff(head)
    if kind == "gzip":
        # ISA-L's inflate (python-isal): about 1.7x zlib's speed on layer tars, and its
        # GzipFile reads members and trailers in C.
        from isal import igzip

        with igzip.GzipFile(fileobj=buffered, mode="rb") as g:
            yield g
    elif kind == "zstd":
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        with dctx.stream_reader(buffered, read_across_frames=True) as z:
            yield z  # type: ignore[misc]
    else:
        yield buffered
