"""runtime._dataclass_cache: @dataclass's methods from a table kept between runs, the same
classes either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A module of frozen dataclasses with defaults, factories and annotations that
# `from __future__ import annotations` would turn into strings (the cache must not).
MODULE = '''
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Inner:
    """An inner record."""

    n: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outer:
    """An outer record."""

    name: str
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, int] = field(default_factory=dict)
'''

# Runs in a fresh interpreter: installs the cache (table at TABLE), imports the module above,
# exercises the classes, and prints what it saw and how many methods it had to compile.
PROBE = """
import json, sys
sys.path[:0] = [{repo!r}, {moddir!r}]
from runtime import _dataclass_cache as dc
dc.cache_path = lambda: {table!r}
if {use_cache!r}:
    dc.install()
import recs
from dataclasses import FrozenInstanceError, fields, replace
o = recs.Outer("x", recs.Inner(2, ("a",)))
try:
    o.name = "y"
    frozen = False
except FrozenInstanceError:
    frozen = True
print(json.dumps({{
    "repr": repr(replace(o, name="z")),
    "eq": o == recs.Outer("x", recs.Inner(2, ("a",))),
    "hash": hash(o.inner) == hash(recs.Inner(2, ("a",))),
    "frozen": frozen,
    "fields": [f.name for f in fields(o)],
    "init_annotations": {{k: repr(v) for k, v in recs.Outer.__init__.__annotations__.items()}},
    "init_code": recs.Outer.__init__.__code__.co_code.hex(),
    "compiled": dc._added,
}}))
if {use_cache!r}:
    dc.save(force=True)
"""


def _probe(tmp_path: Path, table: Path, *, use_cache: bool = True) -> dict[str, object]:
    moddir = tmp_path / "mod"
    moddir.mkdir(exist_ok=True)
    (moddir / "recs.py").write_text(MODULE)
    code = PROBE.format(repo=str(REPO), moddir=str(moddir), table=str(table), use_cache=use_cache)
    out = subprocess.run(
        [sys.executable, "-B", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_the_second_run_compiles_nothing_and_makes_the_same_classes(tmp_path: Path) -> None:
    table = tmp_path / "table.bin"
    plain = _probe(tmp_path, table, use_cache=False)
    first = _probe(tmp_path, table)
    assert first["compiled"] > 0 and table.exists()
    second = _probe(tmp_path, table)
    assert second["compiled"] == 0
    for result in (first, second):
        assert {k: v for k, v in result.items() if k != "compiled"} == {
            k: v for k, v in plain.items() if k != "compiled"
        }
    assert plain["eq"] and plain["hash"] and plain["frozen"]
    assert plain["init_annotations"] == {
        "name": "<class 'str'>",
        "inner": "<class 'recs.Inner'>",
        "extra": "dict[str, int]",
        "return": "None",
    }


def test_a_table_of_another_interpreter_build_or_a_damaged_one_is_not_used(
    tmp_path: Path,
) -> None:
    table = tmp_path / "table.bin"
    _probe(tmp_path, table)
    data = table.read_bytes()
    header, _, body = data.partition(b"\n")
    for damaged in (header.replace(b"cpython", b"otherpy") + b"\n" + body, data[: len(data) // 2]):
        table.write_bytes(damaged)
        result = _probe(tmp_path, table)
        assert result["compiled"] > 0 and result["frozen"] and result["eq"]
