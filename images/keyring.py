"""Registry credentials kept in memory for one pull: a keyring, as the kubelet's credential
provider keeps the credentials of a pod's ``imagePullSecrets``.

``parse_docker_config`` reads a docker config: ``{"auths": {KEY: ENTRY}}`` (what
``~/.docker/config.json`` and a ``kubernetes.io/dockerconfigjson`` secret hold) or, with
``legacy``, the old flat ``{KEY: ENTRY}`` map (``~/.dockercfg``, a ``kubernetes.io/dockercfg``
secret). An ENTRY has ``auth`` (base64 of ``user:password``, which wins) or ``username`` and
``password``; ``email`` and the rest are ignored.

``Keyring`` matches an image's ``host[:port]/repository`` against its keys the way the
kubelet's keyring does: a key is a registry location, with or without ``http(s)://``, with or
without a path (``/v1/`` and ``/v2/`` API prefixes are dropped). It matches an image when the
host has as many dot-separated parts as the key's and each matches the key's (a part may be a
glob: ``*.example.com``), the ports are equal (none is a port of its own), and the key's path
is a prefix of the image's. Every matching key's credentials are returned, longer and more
specific keys first (keys in reverse order); with none, an image of Docker Hub gets the
credentials of ``index.docker.io``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import posixpath
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import FormatError
from .regconf import Credentials

__all__ = ["Keyring", "parse_docker_config"]

DEFAULT_REGISTRY_HOST = "index.docker.io"


def _entry(entry: Any, where: str) -> Credentials:
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: not an object")
    auth = entry.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise FormatError(f"{where}: auth is not a string")
        try:
            raw = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError) as e:
            raise FormatError(f"{where}: auth is not base64 of user:password") from e
        user, sep, password = raw.partition(":")
        if not sep:
            raise FormatError(f"{where}: auth is not base64 of user:password")
        return Credentials(user, password)
    user, password = entry.get("username", ""), entry.get("password", "")
    if not isinstance(user, str) or not isinstance(password, str):
        raise FormatError(f"{where}: username and password must be strings")
    return Credentials(user, password)


def parse_docker_config(
    data: bytes | str, where: str, legacy: bool = False
) -> dict[str, Credentials]:
    """The credentials of a docker config (see the module doc) by key; ``where`` names it in
    errors (a ``FormatError``)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{where}: invalid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: not a JSON object")
    if not legacy:
        doc = doc.get("auths")
        if not isinstance(doc, dict):
            raise FormatError(f'{where}: want an object with an "auths" object')
    return {str(k): _entry(v, f"{where}: [{k!r}]") for k, v in doc.items()}


def _schemeless(loc: str) -> urllib.parse.SplitResult:
    if not loc.startswith(("http://", "https://")):
        loc = "https://" + loc
    return urllib.parse.urlsplit(loc)


def _key(loc: str) -> str:
    """The keyring key of a config's location: host[:port] and its path, without scheme
    and API version prefix."""
    u = _schemeless(loc)
    path = u.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    if path and path != "/":
        return u.netloc + posixpath.normpath(path)
    return u.netloc


def _split_port(host: str) -> tuple[str, str]:
    name, sep, port = host.rpartition(":")
    return (name, port) if sep else (host, "")


def matches(key: str, image: str) -> bool:
    """Whether keyring key ``key`` covers ``image`` (``host[:port]/repo``)."""
    k, i = _schemeless(key), _schemeless(image)
    khost, kport = _split_port(k.netloc)
    ihost, iport = _split_port(i.netloc)
    if kport != iport:
        return False
    kparts, iparts = khost.split("."), ihost.split(".")
    if len(kparts) != len(iparts):
        return False
    if not all(fnmatch.fnmatchcase(ip, kp) for kp, ip in zip(kparts, iparts, strict=True)):
        return False
    return i.path.startswith(k.path)


def _docker_hub(image: str) -> bool:
    host, sep, _ = image.partition("/")
    if not host:
        return False
    if not sep or host in ("docker.io", "registry-1.docker.io", DEFAULT_REGISTRY_HOST):
        return True
    return not any(c in host for c in ".:")


class Keyring:
    """Credentials by registry location; ``lookup`` gives those that apply to an image."""

    def __init__(self, configs: Iterable[Mapping[str, Credentials]] = ()) -> None:
        self._creds: dict[str, list[Credentials]] = {}
        for c in configs:
            self.add(c)

    def add(self, config: Mapping[str, Credentials]) -> None:
        for loc, creds in config.items():
            entries = self._creds.setdefault(_key(loc), [])
            if creds not in entries:
                entries.append(creds)

    def __bool__(self) -> bool:
        return bool(self._creds)

    def __repr__(self) -> str:  # never the secrets
        return f"Keyring({sorted(self._creds)!r})"

    def lookup(self, image: str) -> list[Credentials]:
        """The credentials to try for ``image`` (``host[:port]/repository``), in order."""
        out: list[Credentials] = []
        for key in sorted(self._creds, reverse=True):
            if matches(key, image):
                out += [c for c in self._creds[key] if c not in out]
        if not out and _docker_hub(image):
            out = list(self._creds.get(DEFAULT_REGISTRY_HOST, ()))
        return out
