"""runtime._jsonfast: what json.loads and json.dumps give, without importing json."""

from __future__ import annotations

import json

import pytest

from runtime import _jsonfast

VALUES: list[object] = [
    {},
    [],
    "",
    0,
    -7,
    2**70,
    1.5,
    -0.0,
    1e100,
    None,
    True,
    False,
    'é\n\t"\\ \u2603 \x00 \U0001f600',
    [1, [2, [3, []]], {}],
    {"z": 1, "a": {"y": [1.25, None, True], "b": {}}, "é": "x"},
    (1, "two"),
    {"ociVersion": "1.0.2", "id": "c1", "pid": 42, "annotations": {"k": "v"}, "oom": False},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
@pytest.mark.parametrize("indent", [None, 1, 2])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_dumps_is_json_dumps(value: object, indent: int | None, sort_keys: bool) -> None:
    assert _jsonfast.dumps(value, indent=indent, sort_keys=sort_keys) == json.dumps(
        value, indent=indent, sort_keys=sort_keys
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: "int key", "b": None}, {None}])
def test_what_the_writer_leaves_to_json_comes_out_as_json_writes_it(value: object) -> None:
    try:
        expected = json.dumps(value)
    except TypeError:
        with pytest.raises(TypeError):
            _jsonfast.dumps(value)
    else:
        assert _jsonfast.dumps(value) == expected


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_loads_is_json_loads(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=2), f" \n\t{json.dumps(value)}\r\n "):
        assert repr(_jsonfast.loads(text)) == repr(json.loads(text))


def test_loads_takes_json_constants() -> None:
    assert repr(_jsonfast.loads("[NaN, Infinity, -Infinity]")) == "[nan, inf, -inf]"


@pytest.mark.parametrize(
    "text", ["", "   ", "{", "[1] x", "[1]]", "nul", '{"a": 1,}', "{'a': 1}", '"\x01"', "01"]
)
def test_loads_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _jsonfast.loads(text)


def _outcome(fn: object, text: str | bytes, **kw: object) -> tuple[str, str]:
    try:
        return "value", repr(fn(text, **kw))  # type: ignore[operator]
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        return type(e).__name__, str(e)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}', "[1] x", "[1]  \n x", "", " ", '{"a":1', "\ufeff{}", b'{"a": 1}',
        b"\xef\xbb\xbf{}", '{"é": "ü"}'.encode(), "[1]".encode("utf-16"), b'{"a":\xff}',
        b"\x00{",
    ],
)  # fmt: skip
@pytest.mark.parametrize("parse_constant", [None, _no_constants])
def test_loads_gives_json_loads_value_or_error_for_str_and_bytes(
    text: str | bytes, parse_constant: object
) -> None:
    expected = _outcome(json.loads, text, parse_constant=parse_constant)
    assert _outcome(_jsonfast.loads, text, parse_constant=parse_constant) == expected


@pytest.mark.parametrize("text", ["", "plain", 'quote " and \\ back', "é\n\t\u2603\x01"])
def test_quote_is_json_dumps_without_ascii_escapes(text: str) -> None:
    assert _jsonfast.quote(text) == json.dumps(text, ensure_ascii=False)
