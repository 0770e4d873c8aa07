"""Parsing for update's flags and the events data shape; no root needed."""

from __future__ import annotations

import pytest

from runtime.cgroups import Stats
from runtime.errors import ConfigError
from runtime.manage import parse_bytes, resources_from_flags, stats_data


@pytest.mark.parametrize(
    ("text", "value"),
    [("1024", 1024), ("64m", 64 << 20), ("1G", 1 << 30), ("512k", 512 << 10), ("-1", -1),
     ("2MiB", 2 << 20), ("1.5g", 3 << 29)],
)  # fmt: skip
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text, "--memory") == value


@pytest.mark.parametrize("text", ["", "m", "lots", "-5", "1x"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_bytes(text, "--memory")


def test_resources_from_flags_only_given() -> None:
    res = resources_from_flags({"memory": "64m", "pids_limit": "10", "cpu_shares": None})
    assert res.memory is not None and res.memory.limit == 64 << 20
    assert res.pids is not None and res.pids.limit == 10
    assert res.cpu is None
    with pytest.raises(ConfigError) as e:
        resources_from_flags({"cpu_quota": "fast"})
    assert "--cpu-quota" in str(e.value)


def test_stats_data_drops_unknown_values() -> None:
    data = stats_data(Stats(memory_usage=10, pids_current=2))
    assert data["memory"] == {"usage": {"usage": 10}, "swap": {}}
    assert data["pids"] == {"current": 2}
