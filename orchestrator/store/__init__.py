"""The store: one Backend protocol, drivers chosen by URL.

``sqlite:///path/to/db`` (the default: embedded, WAL, synchronous=FULL) or
``etcd://h1:2379,h2:2379`` (also ``http://h1:2379,http://h2:2379``: an etcd v3 cluster; needs
the ``etcd`` extra). Drivers are imported only when used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Backend, Deleted, Event, EventType, KeyValue, ListResult
from .errors import (
    AlreadyExists,
    Conflict,
    Gone,
    InvalidArgument,
    NotFound,
    StoreError,
    TooLarge,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "Backend",
    "Conflict",
    "Deleted",
    "Event",
    "EventType",
    "Gone",
    "InvalidArgument",
    "KeyValue",
    "ListResult",
    "NotFound",
    "StoreError",
    "TooLarge",
    "Unavailable",
    "open_store",
]


def open_store(url: str, *, compact_interval: float = 300.0) -> Backend:
    """A driver for ``url``, not yet started (``await store.start()``, or ``async with``).
    ``compact_interval`` (seconds, 0 = never): compact every interval to the revision of the
    previous tick, as kube-apiserver does."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
            raise InvalidArgument(url, "use sqlite:///absolute/path/to/file.db")
        from .sqlite import SQLiteBackend

        return SQLiteBackend(parts.path, compact_interval=compact_interval)
    if scheme in ("etcd", "http"):
        from .etcd import EtcdBackend, parse_endpoints

        return EtcdBackend(parse_endpoints(url), compact_interval=compact_interval)
    raise InvalidArgument(url, "unknown store URL (sqlite:///path, etcd://host:port,...)")
