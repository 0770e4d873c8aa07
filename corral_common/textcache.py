"""What a small configuration file's text parses to, kept per (path, text).

The file is read at every use, so a change is seen at once, but parsed again only when its
text changed: a node asks for its network config and registries.conf for every pod it
starts. A parse that raises is not kept (the next use raises again). Few entries are kept: a
process has a file or two of each kind (tests make many).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ParsedByText(Generic[T]):
    def __init__(self, parse: Callable[[str, str], T], kept: int = 8) -> None:
        self._parse = parse  # (text, path) -> the parsed value
        self._kept = kept
        self._parsed: dict[tuple[str, str], T] = {}

    def get(self, path: str, text: str) -> T:
        key = (path, text)
        value = self._parsed.get(key)
        if value is None:
            value = self._parse(text, path)
            if len(self._parsed) >= self._kept:
                self._parsed.clear()
            self._parsed[key] = value
        return value
