"""The object model's one error: a field path and what is wrong with it."""

from __future__ import annotations

import json

__all__ = ["DecodeError", "FieldError", "at", "key", "kind_of", "q"]


class FieldError(ValueError):
    """An object is invalid; ``field`` is its path as the API server words it, e.g.
    ``spec.containers[0].resources.limits.cpu`` ("" for the object itself)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class DecodeError(FieldError):
    """The value of a field is of the wrong type, or a quantity does not parse: what Go's JSON
    decoder refuses before anything is validated (kube-apiserver answers 400 for these and
    422 for an object that decodes but is invalid)."""


def at(base: str, key: str | int) -> str:
    """``base`` then one more step: ``.key`` or ``[index]``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def key(base: str, name: str) -> str:
    """``base`` then a map's key, as kube's ``field.Path.Key`` words it: ``data[name]``."""
    return f"{base}[{name}]"


def q(text: str) -> str:
    """A value quoted as in the API server's messages."""
    return json.dumps(text, ensure_ascii=False)


def kind_of(value: object) -> str:
    """What a JSON/YAML value is, for messages: ``a string``, ``an integer``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # e.g. a YAML timestamp
