"""Image names: the distribution reference grammar (github.com/distribution/reference).

::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ domain "/" ] path-component [ "/" path-component ]*
    domain           := domain-component [ "." domain-component ]* [ ":" port ] | "[" ipv6 "]" ...
    path-component   := [a-z0-9]+ ( ( [._] | "__" | "-"* ) [a-z0-9]+ )*
    tag              := [\\w][\\w.-]{0,127}
    digest           := algorithm ":" hex{32,}

The name (domain and path) is at most 255 characters. Every name that enters the store
(``import --name``, a docker-archive's ``RepoTags``, an OCI ``ref.name`` annotation) is checked
with ``check_name``; every reference a command looks up (``rm``, ``save``, ``run``, a pod's
``image``) with ``check_ref``, which also takes an image id or id prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FormatError

__all__ = ["NAME_MAX", "Reference", "check_name", "check_ref", "parse"]

NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]*)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$",
    re.ASCII,
)
_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{4,64}$")


@dataclass(frozen=True)
class Reference:
    name: str
    tag: str | None
    digest: str | None


def _why(ref: str) -> str:
    """What is wrong with a reference the grammar refuses, in docker's words where it has any."""
    if not ref:
        return "empty"
    name, at, digest = ref.partition("@")
    if at and not re.fullmatch(_DIGEST, digest, re.ASCII):
        return "invalid digest: want algorithm:hex (32 hex digits or more)"
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if len(tag) > 128:
            return f"tag is {len(tag)} characters (128 at most)"
        if not re.fullmatch(_TAG, tag, re.ASCII):
            return "invalid tag: letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    if len(name) > NAME_MAX:
        return f"name is {len(name)} characters ({NAME_MAX} at most)"
    if _REFERENCE.match(name.lower()):
        return "repository name must be lowercase"
    return (
        "invalid reference format: path components are lowercase letters and digits "
        "separated by '.', '_', '__' or '-'"
    )


def parse(ref: str) -> Reference:
    """Split a reference the grammar accepts; FormatError saying why otherwise."""
    m = _REFERENCE.match(ref) if isinstance(ref, str) else None
    if m is None or len(m.group("name")) > NAME_MAX:
        shown = (
            repr(ref)
            if len(str(ref)) <= 80
            else repr(str(ref)[:60]) + f"... ({len(ref)} characters)"
        )
        raise FormatError(f"invalid image name {shown}: {_why(str(ref))}")
    return Reference(m.group("name"), m.group("tag"), m.group("digest"))


def check_name(name: str, where: str = "") -> str:
    """``name`` if it is a valid reference; FormatError naming ``where`` it came from."""
    try:
        parse(name)
    except FormatError as e:
        raise FormatError(f"{where}: {e}" if where else str(e)) from None
    return name


def check_ref(ref: str) -> str:
    """A reference to look up: a valid name, or an image id or id prefix (4 hex digits or more,
    ``sha256:`` optional)."""
    if isinstance(ref, str) and _ID.match(ref):
        return ref
    return check_name(ref)
