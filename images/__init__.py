"""Corral images: import docker/OCI archives into a verified content store, unpack layers
safely, mount overlay root filesystems and turn image configs into OCI runtime configs.

This package knows nothing of ``runtime`` or ``orchestrator``; they use it through
``images.store.Store`` and ``images.bundle``.
"""

from .errors import (
    DigestMismatch,
    FormatError,
    ImageError,
    InUse,
    MountError,
    NotFound,
    UnsafeLayer,
)

__all__ = [
    "DigestMismatch",
    "FormatError",
    "ImageError",
    "InUse",
    "MountError",
    "NotFound",
    "UnsafeLayer",
]
