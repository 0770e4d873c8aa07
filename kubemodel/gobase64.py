"""Base64 as Go's ``encoding/json`` decodes a ``[]byte`` (``base64.StdEncoding``): padding
required, CR and LF skipped anywhere; an error names the offset of the first bad byte, in Go's
words (``illegal base64 data at input byte 4``), which kube-apiserver answers as a 400 body
that cannot be decoded, before any validation. Secret ``data``, ConfigMap ``binaryData`` and
a CertificateSigningRequest's ``request`` and ``certificate`` are such fields."""

from __future__ import annotations

import base64

from kubemodel.errors import DecodeError

__all__ = ["decode", "error_offset"]

_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NEWLINES = (0x0A, 0x0D)
_PAD = 0x3D


def error_offset(src: bytes) -> int | None:
    """Where Go's StdEncoding.Decode fails on ``src`` (its CorruptInputError), None if it
    decodes: decodeQuantum of base64.go, quantum after quantum."""
    si, n = 0, len(src)
    while si < n:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j  # (j == 1, or padding missing: StdEncoding pads)
            c = src[si]
            si += 1
            if c in _ALPHABET:
                j += 1
                continue
            if c in _NEWLINES:
                continue
            if c != _PAD or j < 2:
                return si - 1
            if j == 2:  # "==" wanted: the first one taken, the second next (newlines skipped)
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    return n
                if src[si] != _PAD:
                    return si - 1
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            return si if si < n else None  # anything after the padding is garbage
    return None


def decode(text: str, field: str = "") -> bytes:
    """The bytes of ``text``, or DecodeError with Go's words (``field`` for a caller's
    message; kube's decoder names none)."""
    raw = text.encode()
    bad = error_offset(raw)
    if bad is not None:
        raise DecodeError(field, f"illegal base64 data at input byte {bad}")
    return base64.b64decode(raw.replace(b"\n", b"").replace(b"\r", b""), validate=True)
