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
    "dns_label_problem",
    "dns_subdomain_problem",
    "qualified_name_problem",
    "regex_error",
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


def regex_error(message: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError: the rule, its examples and the regex, in kube's words."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN_FMT = DNS_LABEL_FMT + r"(\." + DNS_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RULE = regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character",
    QUALIFIED_NAME_FMT,
    "MyName",
    "my.name",
    "123-abc",
)
DNS_LABEL_RULE = regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-',"
    " and must start and end with an alphanumeric character",
    DNS_LABEL_FMT,
    "my-name",
    "123-abc",
)
DNS_SUBDOMAIN_RULE = regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-'"
    " or '.', and must start and end with an alphanumeric character",
    DNS_SUBDOMAIN_FMT,
    "example.com",
)


def dns_label_problem(value: str) -> str | None:
    """IsDNS1123Label's first error, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not DNS_LABEL.fullmatch(value):
        if DNS_SUBDOMAIN.fullmatch(value):  # a subdomain, not a label: its dots
            return "must not contain dots"
        return DNS_LABEL_RULE
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """IsDNS1123Subdomain's first error, or None."""
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not DNS_SUBDOMAIN.fullmatch(value):
        return DNS_SUBDOMAIN_RULE
    return None


def check_dns_label(value: str, where: str) -> None:
    """RFC 1123 label: names of namespaces, containers, volumes; at most 63 characters."""
    if problem := dns_label_problem(value):
        raise FieldError(where, f"Invalid value: {q(value)}: {problem}")


def check_dns1035_label(value: str, where: str) -> None:
    """RFC 1035 label: names of Services (they become DNS names); at most 63 characters."""
    if len(value) > 63:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 63 characters")
    if not DNS1035_LABEL.fullmatch(value):
        rule = regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start"
            " with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            "my-name",
            "abc-123",
        )
        raise FieldError(where, f"Invalid value: {q(value)}: {rule}")


def check_dns_subdomain(value: str, where: str) -> None:
    """RFC 1123 subdomain: names of most objects; at most 253 characters."""
    if problem := dns_subdomain_problem(value):
        raise FieldError(where, f"Invalid value: {q(value)}: {problem}")


def check_path_segment(value: str, where: str) -> None:
    """A name that only has to be one URL path segment (RBAC objects: ``system:node``)."""
    if value in (".", ".."):
        raise FieldError(where, f"Invalid value: {q(value)}: may not be '{value}'")
    for bad in ("/", "%"):
        if bad in value:
            raise FieldError(where, f"Invalid value: {q(value)}: may not contain '{bad}'")
    if "\x00" in value:  # kube's etcd keys hold it; the store's keys are NUL-free text
        raise FieldError(where, f"Invalid value: {q(value)}: may not contain NUL")


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (``[prefix/]name``: label and annotation keys)."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if prefix:
        if "/" in prefix:
            return (
                f"a qualified name {_QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix"
                " and '/' (e.g. 'example.com/MyName')"
            )
        if problem := dns_subdomain_problem(prefix):
            return f"prefix part {problem}"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not QUALIFIED_NAME.fullmatch(name):
        return f"name part {_QUALIFIED_NAME_RULE}"
    return None


def check_label_value(value: str, where: str) -> None:
    if len(value) > 63:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 63 characters")
    if value and not QUALIFIED_NAME.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: "
            + regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters,"
                " '-', '_' or '.', and must start and end with an alphanumeric character",
                f"({QUALIFIED_NAME_FMT})?",
                "MyValue",
                "my_value",
                "12345",
            ),
        )


def check_port_name(value: str, where: str) -> None:
    """IANA_SVC_NAME: at most 15 characters, [a-z0-9-], a letter, no '-' at an end or twice."""
    if len(value) > 15:
        raise FieldError(where, f"Invalid value: {q(value)}: must be no more than 15 characters")
    problem = None
    if not _PORT_NAME.fullmatch(value):
        problem = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    elif not _LETTER.search(value):
        problem = "must contain at least one letter (a-z)"
    elif "--" in value:
        problem = "must not contain consecutive hyphens"
    elif value.startswith("-") or value.endswith("-"):
        problem = "must not begin or end with a hyphen"
    if problem:
        raise FieldError(where, f"Invalid value: {q(value)}: {problem}")


def check_c_identifier(value: str, where: str) -> None:
    """A C identifier ([A-Za-z_][A-Za-z0-9_]*): what strict environment variable names are."""
    if not C_IDENTIFIER.fullmatch(value):
        raise FieldError(
            where,
            f"Invalid value: {q(value)}: "
            + regex_error(
                "a valid C identifier must start with alphabetic character or '_', followed by"
                " a string of alphanumeric characters or '_'",
                "[A-Za-z_][A-Za-z0-9_]*",
                "my_name",
                "MY_NAME",
                "MyName",
            ),
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
    # IsConfigMapKey's first error: its length, its characters, then a directory's name
    why = None
    if len(value) > 253:
        why = "must be no more than 253 characters"
    elif not CONFIG_KEY.fullmatch(value):
        why = regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            "key.name",
            "KEY_NAME",
            "key-name",
        )
    elif value in (".", ".."):
        why = f"must not be '{value}'"
    elif value.startswith(".."):
        why = "must not start with '..'"
    if why:
        raise FieldError(where, f"Invalid value: {q(value)}: {why}")


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
