"""The Backend protocol every store driver implements, and the types it speaks.

Keys are ``/registry/<resource>/<ns>/<name>`` strings, compared as their UTF-8 bytes (etcd's
order); values are bytes (the API server serializes). A revision is the store's global write
counter: every create, update and delete gets the next one, and an object's ``mod_rev`` is its
resourceVersion. Compaction at ``C`` forgets the history below ``C``: a list at a revision
below ``C``, or a watch that would need an event below ``C``, raises ``Gone``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import InvalidArgument, StoreError

log = logging.getLogger("corral.store")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_rev: int
    mod_rev: int  # the resourceVersion


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETED, ``kv`` holds the last value with ``mod_rev`` = the deletion's
    revision; ``prev`` is the value before the change (None for ADDED)."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_rev


@dataclass(frozen=True, slots=True)
class ListResult:
    items: tuple[KeyValue, ...]
    revision: int  # the revision the whole list (every page) is read at
    continue_token: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class Deleted:
    revision: int  # the deletion's revision
    prev: KeyValue  # the value that was deleted


@runtime_checkable
class Backend(Protocol):
    """What the API server needs from a store (after kine's Backend)."""

    url: str

    async def start(self) -> None:
        """Connect / open, and start the periodic compaction."""

    async def close(self) -> None:
        """Stop watches and background tasks and release the store (idempotent)."""

    async def get(self, key: str) -> KeyValue:
        """The current value (NotFound)."""

    async def list(
        self, prefix: str, *, limit: int = 0, continue_token: str | None = None, revision: int = 0
    ) -> ListResult:
        """Keys under ``prefix`` in key order, at ``revision`` (0: the current one), at most
        ``limit`` (0: all). A continue token reads the next page at the first page's revision
        (Gone once that is compacted)."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create if absent (AlreadyExists)."""

    async def update(self, key: str, value: bytes, revision: int) -> KeyValue:
        """Compare-and-swap on ``mod_rev == revision`` (Conflict with the current value;
        NotFound)."""

    async def delete(self, key: str, revision: int | None = None) -> Deleted:
        """Delete, only if ``mod_rev == revision`` when given (Conflict; NotFound)."""

    def watch(self, prefix: str, revision: int = 0) -> AsyncIterator[Event]:
        """Changes under ``prefix`` after ``revision`` (0: from now) in revision order: the
        past ones first, then live ones. Gone when ``revision + 1`` is compacted. Close the
        iterator (``aclose``) to stop it."""

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Forget history below ``revision`` (a revision compacted already is no error)."""


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end);
    b"\\0" means no end (etcd's convention for "to the end of the keyspace")."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


class Compactor:
    """Kubernetes' scheme: every ``interval`` seconds, compact to the revision seen one tick
    earlier, so at least ``interval`` seconds of history stay readable."""

    def __init__(self, backend: Backend, interval: float) -> None:
        self.backend = backend
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        previous = 0
        while True:
            await asyncio.sleep(self.interval)
            try:
                if previous > 0:
                    await self.backend.compact(previous)
                previous = await self.backend.current_revision()
            except StoreError as e:  # the next tick tries again
                log.warning("%s: periodic compaction: %s", self.backend.url, e)


def encode_continue(revision: int, start: str) -> str:
    raw = json.dumps({"rv": revision, "start": start}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str, prefix: str) -> tuple[int, str]:
    """(revision, first key of the page) from a token; the key must lie under ``prefix``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        revision, start = data["rv"], data["start"]
    except (binascii.Error, ValueError, TypeError, KeyError) as e:
        raise InvalidArgument(prefix, f"malformed continue token: {e}") from None
    if not isinstance(revision, int) or not isinstance(start, str) or revision < 1:
        raise InvalidArgument(prefix, "malformed continue token")
    if not start.startswith(prefix):
        raise InvalidArgument(prefix, f"continue token points outside the prefix ({start!r})")
    return revision, start


def check_key(key: str) -> bytes:
    if not key or "\0" in key:
        raise InvalidArgument(key or "''", "a key must be non-empty and contain no NUL")
    try:
        return key.encode()
    except UnicodeEncodeError as e:
        raise InvalidArgument(repr(key), f"a key must be valid UTF-8: {e}") from None


def list_range(
    prefix: str, limit: int, continue_token: str | None, revision: int
) -> tuple[bytes, bytes, int]:
    """A list's arguments checked: (prefix, first key to read, revision to read at), the
    last two from the continue token when there is one."""
    p = check_key(prefix)
    start = p
    if continue_token:
        revision, s = decode_continue(continue_token, prefix)
        start = s.encode()
    if limit < 0 or revision < 0:
        raise InvalidArgument(prefix, f"negative limit {limit} or revision {revision}")
    return p, start, revision
