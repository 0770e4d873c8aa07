"""Memory figures from /proc: a process's RSS and PSS (smaps_rollup), the node's used memory.

Pure parsers plus two small readers, so the parsing is unit-tested without root.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rollup:
    """A process's resident and proportional set sizes, in KiB."""

    rss_kib: int
    pss_kib: int


def parse_kib_fields(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines (smaps_rollup, meminfo) as {key: KiB}; other lines (the
    rollup's address header) and fields without a number are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep or " " in key.strip():
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] != "kB":
            continue
        out[key.strip()] = value
    return out


def parse_rollup(text: str) -> Rollup:
    fields = parse_kib_fields(text)
    try:
        return Rollup(rss_kib=fields["Rss"], pss_kib=fields["Pss"])
    except KeyError as e:
        raise ValueError(f"smaps_rollup without {e.args[0]}") from None


def used_kib(meminfo: str) -> int:
    """The node's used memory as ``free`` counts it: MemTotal - MemAvailable."""
    fields = parse_kib_fields(meminfo)
    return fields["MemTotal"] - fields["MemAvailable"]


def read_rollup(pid: int) -> Rollup:
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        return parse_rollup(f.read())


def node_used_kib() -> int:
    with open("/proc/meminfo", encoding="utf-8") as f:
        return used_kib(f.read())
