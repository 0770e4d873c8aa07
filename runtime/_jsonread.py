"""The reader of JSON objects the OCI config model is parsed with (runtime.config and
runtime._config_extra): every getter names the full JSON path in its errors. Plain classes and
functions only, so importing it costs next to nothing on corral-oci's start-up path.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ._jsonfast import quote
from .errors import ConfigError

_EMPTY: Mapping[str, str] = MappingProxyType({})


class _Range:
    """An allowed integer range and how an error message words it (a plain class: cheap import)."""

    __slots__ = ("hi", "lo", "text")

    def __init__(self, lo: int, hi: int, text: str) -> None:
        self.lo = lo
        self.hi = hi
        self.text = text


_U16 = _Range(0, 2**16 - 1, "an integer between 0 and 65535")
_U32 = _Range(0, 2**32 - 1, "an integer between 0 and 4294967295")
_U64 = _Range(0, 2**64 - 1, "an integer between 0 and 18446744073709551615")
_I64 = _Range(-(2**63), 2**63 - 1, "a signed 64-bit integer")
_POSITIVE = _Range(1, 2**63 - 1, "a positive integer")
_OOM_SCORE_ADJ = _Range(-1000, 1000, "an integer between -1000 and 1000")
_BLKIO_WEIGHT = _Range(10, 1000, "an integer between 10 and 1000")
_SWAPPINESS = _Range(0, 100, "an integer between 0 and 100")
_SECCOMP_ARG_INDEX = _Range(0, 5, "an integer between 0 and 5 (a syscall has six arguments)")
_CPU_IDLE = _Range(0, 1, "0 or 1")


def _q(text: str) -> str:
    """Quote a value for an error message (escapes control characters)."""
    return quote(text)


def _key(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _map_key(base: str, key: str) -> str:
    return f"{base}[{_q(key)}]"


def _as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, "must be a string")
    return value


def _as_int(value: object, where: str, rng: _Range) -> int:
    # bool is an int in Python but not in JSON; floats (even 1.0) are not integers in Go either.
    if isinstance(value, bool) or not isinstance(value, int) or not rng.lo <= value <= rng.hi:
        raise ConfigError(where, f"must be {rng.text}")
    return value


def _as_list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(where, "must be an array")
    return value


def _check_text(text: str, where: str) -> None:
    """A string the kernel gets as a C string: a NUL would cut it short there."""
    if "\0" in text:
        raise ConfigError(where, "must not contain a NUL byte")


def _check_path(path: str, where: str) -> None:
    _check_text(path, where)
    if not path.startswith("/"):
        raise ConfigError(where, f"must be an absolute path, not {_q(path)}")


class _Obj:
    """One JSON object being read. Every getter names the full JSON path in its errors.

    Like Go's decoder (which runc and crun use), a JSON null counts as an absent field.
    """

    __slots__ = ("_data", "path")

    def __init__(self, data: object, path: str, what: str = "must be") -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"{what} a JSON object")
        self._data: dict[str, object] = data
        self.path = path

    def at(self, key: str) -> str:
        return _key(self.path, key)

    def get(self, key: str) -> object:
        return self._data.get(key)

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def keys(self) -> list[str]:
        """The fields that are present (not null)."""
        return [k for k, v in self._data.items() if v is not None]

    def req_str(self, key: str) -> str:
        value = self._data.get(key)
        if value is None:
            raise ConfigError(self.at(key), "is required")
        return _as_str(value, self.at(key))

    def opt_str(self, key: str) -> str | None:
        """A string, or None when absent or empty (Go's omitempty: "" means unset)."""
        value = self._data.get(key)
        if value is None:
            return None
        return _as_str(value, self.at(key)) or None

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.at(key), "must be true or false")
        return value

    def opt_flag(self, key: str) -> bool | None:
        return self.flag(key) if self.has(key) else None

    def req_int(self, key: str, rng: _Range) -> int:
        value = self._data.get(key)
        if value is None:
            raise ConfigError(self.at(key), "is required")
        return _as_int(value, self.at(key), rng)

    def opt_int(self, key: str, rng: _Range) -> int | None:
        value = self._data.get(key)
        return None if value is None else _as_int(value, self.at(key), rng)

    def items(self, key: str) -> list[tuple[object, str]]:
        """The entries of an array field with their paths; an absent array is empty."""
        value = self._data.get(key)
        if value is None:
            return []
        where = self.at(key)
        return [(item, _key(where, i)) for i, item in enumerate(_as_list(value, where))]

    def objs(self, key: str) -> list[_Obj]:
        return [_Obj(item, where) for item, where in self.items(key)]

    def strs(self, key: str) -> tuple[str, ...]:
        return tuple(_as_str(item, where) for item, where in self.items(key))

    def obj(self, key: str) -> _Obj | None:
        value = self._data.get(key)
        return None if value is None else _Obj(value, self.at(key))

    def str_map(self, key: str) -> Mapping[str, str]:
        value = self._data.get(key)
        if value is None:
            return _EMPTY
        where = self.at(key)
        if not isinstance(value, dict):
            raise ConfigError(where, "must be a JSON object of strings")
        for k, v in value.items():
            if not k:
                raise ConfigError(where, "keys must not be empty")
            _as_str(v, _map_key(where, k))
        return MappingProxyType(dict(value)) if value else _EMPTY


def _check_env(entry: str, where: str) -> None:
    name, eq, _ = entry.partition("=")
    if not eq:
        raise ConfigError(where, f"invalid environment variable {_q(entry)}: missing '='")
    if not name:
        raise ConfigError(where, f"invalid environment variable {_q(entry)}: empty name")
    if "\0" in entry:
        raise ConfigError(where, "must not contain a NUL byte")
