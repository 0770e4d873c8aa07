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


# Annotation strings as dataclasses sees them, and odd ones around the pattern's edges.
ANNOTATIONS = (
    "int", "str | None", "tuple[str, ...]", "cfg.Process | None", "dataclasses.InitVar[int]",
    "InitVar[int]", " KW_ONLY", "typing . ClassVar[int]", "a.", "a. ", ".b", "", " ", "a.b.c",
    "_x._y", "é.ü", "x1 .\t2y", "[int]", "a .[b]", "ClassVar", "\u00a0a", "a\u2028.b", "é9_",
)  # fmt: skip


def test_the_identifier_pattern_matches_as_the_regex_dataclasses_compiles() -> None:
    import dataclasses
    import re

    from runtime import _dataclass_cache as dc

    assert dataclasses._MODULE_IDENTIFIER_RE.pattern == dc._IDENTIFIER_RE  # type: ignore[attr-defined]
    regex, ours = re.compile(dc._IDENTIFIER_RE), dc._IdentifierPattern()
    for text in (*ANNOTATIONS, *ANNOTATIONS):  # the second time from its table
        want = regex.match(text)
        got = ours.match(text)
        assert (got is None) == (want is None), text
        if want is not None and got is not None:
            assert (got.group(1), got.group(2)) == want.group(1, 2), text


# A module whose string annotations dataclasses must resolve: a ClassVar (not a field), an
# InitVar (an __init__ argument only, named bare or through the module) and KW_ONLY.
VARS_MODULE = '''
from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, InitVar, dataclass, field
import typing
from typing import ClassVar


@dataclass
class Rec:
    """A record."""

    count: ClassVar[int] = 0
    other: typing.ClassVar[str] = "c"
    a: int
    seed: InitVar[int]
    seed2: dataclasses.InitVar[str]
    _: KW_ONLY
    b: int = 1
    total: int = field(init=False, default=0)

    def __post_init__(self, seed: int, seed2: str) -> None:
        self.total = self.a + seed + len(seed2)
'''

VARS_PROBE = """
import sys
sys.path[:0] = [{repo!r}, {moddir!r}]
from runtime import _dataclass_cache as dc
from runtime.cli import oci
dc.cache_path = lambda: {table!r}
oci.defer_import("inspect")  # as corral-oci does: inspect imports re and enum too
oci.defer_import("copy")
if {use_cache!r}:
    dc.install()
without_re = "re" not in sys.modules and "enum" not in sys.modules
import recvars
from dataclasses import fields
r = recvars.Rec(1, 2, "xyz", b=5)
import json, re
print(json.dumps({{
    "without_re": without_re,
    "fields": [f.name for f in fields(r)],
    "repr": repr(r),
    "total": r.total,
    "re_works": re.compile("a+b").match("aab") is not None and sys.modules["re"] is re
    and hasattr(re, "Pattern"),
}}))
"""


def _probe_vars(tmp_path: Path, *, use_cache: bool) -> dict[str, object]:
    moddir = tmp_path / "mod"
    moddir.mkdir(exist_ok=True)
    (moddir / "recvars.py").write_text(VARS_MODULE)
    code = VARS_PROBE.format(
        repo=str(REPO), moddir=str(moddir), table=str(tmp_path / "t.bin"), use_cache=use_cache
    )
    out = subprocess.run(
        [sys.executable, "-S", "-B", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_install_imports_dataclasses_without_re_and_makes_the_same_classes(
    tmp_path: Path,
) -> None:
    plain = _probe_vars(tmp_path, use_cache=False)
    ours = _probe_vars(tmp_path, use_cache=True)
    assert ours["without_re"] and ours["re_works"]
    assert {k: v for k, v in ours.items() if k != "without_re"} == {
        k: v for k, v in plain.items() if k != "without_re"
    }
    assert plain["fields"] == ["a", "b", "total"] and plain["total"] == 6


def test_corral_image_takes_the_image_store_classes_from_the_table(tmp_path: Path) -> None:
    # The table setup.sh writes (warm) holds the image store's classes, and `corral image`'s
    # commands install it before they import the store: nothing is compiled.
    table = tmp_path / "table.bin"
    head = (
        f"import sys, json\nsys.path[:0] = [{str(REPO)!r}]\n"
        "from runtime import _dataclass_cache as dc\n"
        f"dc.cache_path = lambda: {str(table)!r}\n"
    )
    run = [sys.executable, "-B", "-c"]
    subprocess.run([*run, head + "dc.warm()"], check=True)
    probe = (
        "import click, dataclasses\nfrom corral_cli import image_cmd\n"
        f"image_cmd._store(click.Context(image_cmd.image, obj={str(tmp_path / 'store')!r}))\n"
        "print(json.dumps([dc._added, dataclasses.exec is dc._exec]))"
    )
    out = subprocess.run([*run, head + probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [0, True]
