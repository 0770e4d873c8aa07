"""Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation), with the API server's words.

Each ``check_*`` raises ``FieldError(where, ...)``; each ``*_problem`` returns why a value breaks
the rule, or None.
"""

from __future__ import annotations

import os
import re

from kubemodel.errors import FieldError, q

__all__ = [
    "random_bytes",
    "random_name",
    "check_c_identifier",
    "check_config_key",
    "check_dns1035_label",
    "check_dns_label",
    "check_dns_subdomain",
    "check_env_name",
    "check_http_header_name",
    "check_label_value",
    "check_path_segment",
    "check_port_name",
    "qualified_name_problem",
]

DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
QUALIFIED_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
HTTP_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_PORT_NAME = re.compile(r"[a-z0-9-]+")
_LETTER = re.compile(r"[a-z]")


def _check_label(value: str, where: str, pattern: re.Pattern[str], rule: str) -> None:
    if len(value) > 63:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 63 characters")
    if not pattern.fullmatch(value):
        raise FieldError(where, f"Invalid value: {q(value)}: {rule}")


def check_dns_label(value: str, where: str) -> None:
    """RFC 1123 label: names of namespaces, containers, volumes; at most 63 characters."""
    _check_label(
        value,
        where,
        DNS_LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-',"
        " and must start and end with an alphanumeric character",
    )


def check_dns1035_label(value: str, where: str) -> None:
    """RFC 1035 label: names of Services (they become DNS names); at most 63 characters."""
    _check_label(
        value,
        where,
        DNS1035_LABEL,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start"
        " with an alphabetic character, and end with an alphanumeric character",
    )


def check_dns_subdomain(value: str, where: str) -> None:
    """RFC 1123 subdomain: names of most objects; at most 253 characters."""
    if len(value) > 253:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 253 characters")
    if not DNS_SUBDOMAIN.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: a lowercase RFC 1123 subdomain must consist of lower"
            " case alphanumeric characters, '-' or '.', and must start and end with an"
            " alphanumeric character",
        )


def check_path_segment(value: str, where: str) -> None:
    """A name that only has to be one URL path segment (RBAC objects: ``system:node``)."""
    if value in (".", ".."):
        raise FieldError(where, f"Invalid value: {q(value)}: may not be '.' or '..'")
    for bad in ("/", "%"):
        if bad in value:
            raise FieldError(where, f"Invalid value: {q(value)}: may not contain '{bad}'")


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (``[prefix/]name``: label and annotation keys)."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix:
        if len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix):
            return "prefix part must be a lowercase RFC 1123 subdomain"
        if "/" in prefix:
            return "a qualified name must have at most one '/'"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not QUALIFIED_NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must"
            " start and end with an alphanumeric character"
        )
    return None


def check_label_value(value: str, where: str) -> None:
    if len(value) > 63:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 63 characters")
    if value and not QUALIFIED_NAME.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: must be empty or consist of alphanumeric"
            " characters, '-', '_' or '.', and must start and end with an alphanumeric"
            " character",
        )


def check_port_name(value: str, where: str) -> None:
    """IANA_SVC_NAME: at most 15 characters, [a-z0-9-], a letter, no '-' at an end or twice."""
    if len(value) > 15:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 15 characters")
    if not _PORT_NAME.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: must contain only alphanumeric characters (a-z, 0-9)"
            " and hyphens (-)",
        )
    if "--" in value or value.startswith("-") or value.endswith("-"):
        raise FieldError(
            where, f"Invalid value: {q(value)}: hyphens must not start, end or be adjacent"
        )
    if not _LETTER.search(value):
        raise FieldError(where, f"Invalid value: {q(value)}: must contain at least one letter")


def check_c_identifier(value: str, where: str) -> None:
    """A C identifier ([A-Za-z_][A-Za-z0-9_]*): what strict environment variable names are."""
    if not C_IDENTIFIER.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: a valid C identifier must start with alphabetic"
            " character or '_', followed by a string of alphanumeric characters or '_'",
        )


def check_env_name(value: str, where: str) -> None:
    """An environment variable name as Kubernetes >= 1.30 accepts it: printable ASCII but '='."""
    if "=" in value or not all(" " <= ch <= "~" for ch in value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: must consist of printable ASCII characters except '='",
        )


def check_config_key(value: str, where: str) -> None:
    """A ConfigMap or Secret key (a file name in a volume: never ``.``, ``..`` nor one of
    the atomic writer's ``..`` names)."""
    if value == "." or value.startswith(".."):
        why = "must not be '.'" if value == "." else "must not start with '..'"
        if value == "..":
            why = "must not be '..'"
        raise FieldError(where, f"Invalid value: {q(value)}: {why}")
    if len(value) > 253 or not CONFIG_KEY.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: a valid config key must consist of alphanumeric"
            " characters, '-', '_' or '.'",
        )


def check_http_header_name(value: str, where: str) -> None:
    if not HTTP_TOKEN.fullmatch(value):
        raise FieldError(where, f"invalid HTTP header name {q(value)}")


_pool = bytearray()
_pool_pid = 0


def random_bytes(n: int) -> bytes:
    """``n`` bytes of os.urandom, read 4 KiB at a time: one syscall per many objects instead
    of one per object (never shared with a forked child)."""
    global _pool, _pool_pid
    if len(_pool) < n or _pool_pid != os.getpid():
        _pool, _pool_pid = bytearray(os.urandom(max(4096, n))), os.getpid()
    raw = bytes(_pool[-n:])
    del _pool[-n:]
    return raw


def random_name(alphabet: str, n: int) -> str:
    """``n`` characters of ``alphabet`` drawn uniformly at random (from random_bytes;
    ``secrets.choice`` once per character reads the system's random source each time)."""
    span = len(alphabet) ** n
    size = (span.bit_length() + 7) // 8
    limit = (256**size // span) * span  # below it, value % span is uniform
    while True:
        value = int.from_bytes(random_bytes(size))
        if value < limit:
            break
    value %= span
    out = []
    for _ in range(n):
        value, i = divmod(value, len(alphabet))
        out.append(alphabet[i])
    return "".join(out)
