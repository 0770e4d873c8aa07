"""The store's exceptions: one small tree, each carrying the key (or URL) it is about."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import KeyValue


class StoreError(Exception):
    """Base of every store error; ``key`` names the object (a key, prefix or store URL)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"store: {key}: {message}")
        self.key = key


class NotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(key, "not found")


class AlreadyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(key, "already exists")


class Conflict(StoreError):
    """A compare-and-swap lost: ``current`` is the value that is there now."""

    def __init__(self, key: str, expected: int, current: KeyValue) -> None:
        super().__init__(
            key, f"revision {expected} is stale (the current revision is {current.mod_rev})"
        )
        self.expected = expected
        self.current = current


class Gone(StoreError):
    """The revision asked for was compacted (HTTP 410): the caller must list again."""

    def __init__(self, key: str, revision: int, compacted: int) -> None:
        super().__init__(
            key, f"revision {revision} is compacted (the oldest kept revision is {compacted})"
        )
        self.revision = revision
        self.compacted = compacted


class Unavailable(StoreError):
    """The backend did not answer; for a write the outcome is unknown (re-read, then retry)."""


class InvalidArgument(StoreError):
    """Bad input from the caller: a malformed continue token, a revision in the future."""


class TooLarge(InvalidArgument):
    """The backend refused a value as too large (etcd's --max-request-bytes, 1.5 MiB by
    default); ``details`` is its word for it."""

    def __init__(self, key: str, details: str) -> None:
        super().__init__(key, details)
        self.details = details
