"""Where images come from: ``registries.conf`` (mirrors, short names, insecure registries), the
auth file ``corral login`` writes (podman's and docker's format) and per-registry CA
directories (``certs.d/<host:port>/ca.crt``, as containers-certs.d(5)).

A small subset of containers-registries.conf(5), in TOML::

    unqualified-search-registries = ["registry.example:5000", "docker.io"]

    [[registry]]
    prefix = "docker.io/library"        # what a name starts with (default: location)
    location = "registry.example:5000/library"
    insecure = false                    # plain HTTP or unverified TLS allowed
    blocked = false

    [[registry.mirror]]
    location = "mirror.example:5000/library"
    insecure = true

Everything is parsed once into frozen dataclasses, with errors naming the file and field.
"""

from __future__ import annotations

import base64
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral_common.textcache import ParsedByText

from .errors import FormatError, ImageError
from .reference import parse

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"
DEFAULT_CONF = "/etc/containers/registries.conf"
DEFAULT_CERTS = "/etc/containers/certs.d"
DOCKER_HUB_AUTH_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Endpoint:
    """One place to fetch from: ``host[:port]`` and the repository path there."""

    host: str
    repo: str
    insecure: bool = False  # plain HTTP (and unverified TLS) allowed

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_HOST if self.host == DOCKER_HUB else self.host


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False


@dataclass(frozen=True)
class RegistryEntry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()


@dataclass(frozen=True)
class RegistriesConf:
    search: tuple[str, ...] = ()
    registries: tuple[RegistryEntry, ...] = ()

    def entry(self, name: str) -> RegistryEntry | None:
        """The entry whose prefix matches ``name`` (host/repo) longest, at a '/' boundary."""
        best = None
        for e in self.registries:
            if name == e.prefix or name.startswith(e.prefix + "/"):
                if best is None or len(e.prefix) > len(best.prefix):
                    best = e
        return best


@dataclass(frozen=True)
class Resolved:
    """A reference made fully qualified: ``host/repo`` and tag or digest."""

    name: str  # host/repo, e.g. docker.io/library/busybox
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def repo(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def reference(self) -> str:
        """What the manifest is fetched by: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def _bool(d: dict[str, Any], key: str, where: str) -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise FormatError(f"{where}.{key}: must be true or false")
    return v


def _str(d: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v:
        raise FormatError(f"{where}.{key}: must be a non-empty string")
    return v.rstrip("/")


def parse_registries_conf(text: str, where: str = "registries.conf") -> RegistriesConf:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FormatError(f"{where}: {e}") from e
    search = doc.get("unqualified-search-registries", [])
    if not isinstance(search, list) or not all(isinstance(s, str) and s for s in search):
        raise FormatError(f"{where}: unqualified-search-registries: must be a list of hosts")
    entries = []
    regs = doc.get("registry", [])
    if not isinstance(regs, list):
        raise FormatError(f"{where}: registry: must be an array of tables ([[registry]])")
    for i, r in enumerate(regs):
        w = f"{where}: registry[{i}]"
        if not isinstance(r, dict):
            raise FormatError(f"{w}: must be a table")
        location = _str(r, "location", w, r.get("prefix"))
        prefix = _str(r, "prefix", w, location)
        mirrors = []
        for j, m in enumerate(r.get("mirror", [])):
            mw = f"{w}.mirror[{j}]"
            if not isinstance(m, dict):
                raise FormatError(f"{mw}: must be a table")
            mirrors.append(Mirror(_str(m, "location", mw), _bool(m, "insecure", mw)))
        entries.append(
            RegistryEntry(
                prefix,
                location,
                _bool(r, "insecure", w),
                _bool(r, "blocked", w),
                tuple(mirrors),
            )
        )
    return RegistriesConf(tuple(search), tuple(entries))


# the kubelet asks for it for every image it checks
_PARSED: ParsedByText[RegistriesConf] = ParsedByText(
    lambda text, where: parse_registries_conf(text, where)
)


def load_registries_conf(path: str | os.PathLike[str] | None = None) -> RegistriesConf:
    """The file at ``path`` (``$CORRAL_REGISTRIES_CONF``, else /etc/containers/registries.conf);
    an empty configuration when the default file does not exist."""
    explicit = path is not None or "CORRAL_REGISTRIES_CONF" in os.environ
    p = Path(path or os.environ.get("CORRAL_REGISTRIES_CONF") or DEFAULT_CONF)
    try:
        text = p.read_text()
    except FileNotFoundError:
        if explicit:
            raise FormatError(f"registries configuration {p}: no such file") from None
        return RegistriesConf()
    return _PARSED.get(str(p), text)


def _has_domain(name: str) -> bool:
    first, sep, _ = name.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def qualify(ref: str, conf: RegistriesConf) -> list[Resolved]:
    """The fully qualified names to try for ``ref``, in order. A name with a domain is itself;
    a short name is tried at each unqualified-search registry (docker.io adds ``library/``)."""
    r = parse(ref)
    if _has_domain(r.name):
        hosts = [r.name.split("/", 1)[0]]
        path = r.name.split("/", 1)[1]
    else:
        if not conf.search:
            raise ImageError(
                f"short name {ref!r}: no unqualified-search-registries in registries.conf; "
                "use a fully qualified name such as registry.example:5000/" + r.name
            )
        hosts, path = list(conf.search), r.name
    out = []
    for h in hosts:
        p = path
        if h == DOCKER_HUB and "/" not in p:
            p = "library/" + p
        tag = r.tag if (r.tag or r.digest) else "latest"
        out.append(Resolved(f"{h}/{p}", tag, r.digest))
    return out


def endpoints(name: str, conf: RegistriesConf, tls_verify: bool = True) -> list[Endpoint]:
    """Where to pull ``name`` (host/repo) from: its mirrors first, then its location."""
    e = conf.entry(name)
    if e is None:
        host, repo = name.split("/", 1)
        return [Endpoint(host, repo, not tls_verify)]
    if e.blocked:
        raise ImageError(f"registry {e.prefix} is blocked in registries.conf")
    rest = name[len(e.prefix) :]
    out = []
    for loc, insecure in [*((m.location, m.insecure) for m in e.mirrors), (e.location, e.insecure)]:
        full = loc + rest
        host, _, repo = full.partition("/")
        if not repo:
            raise FormatError(f"registries.conf: location {loc!r} for {name} names no repository")
        out.append(Endpoint(host, repo, insecure or not tls_verify))
    return out


def push_endpoint(name: str, conf: RegistriesConf, tls_verify: bool = True) -> Endpoint:
    """Where to push ``name``: its location, never a mirror."""
    return endpoints(name, conf, tls_verify)[-1]


# -- TLS: certs.d ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cas: tuple[Path, ...] = ()
    client: tuple[tuple[Path, Path], ...] = ()  # (cert, key)


def tls_files(host: str, certs_dir: str | os.PathLike[str] | None = None) -> TlsFiles:
    """``<certs_dir>/<host[:port]>/``: ``*.crt`` are CAs, ``x.cert`` with ``x.key`` a client
    certificate (containers-certs.d(5))."""
    d = Path(certs_dir or os.environ.get("CORRAL_CERTS_DIR") or DEFAULT_CERTS) / host
    if not d.is_dir():
        return TlsFiles()
    cas = tuple(sorted(d.glob("*.crt")))
    client = []
    for cert in sorted(d.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.is_file():
            raise FormatError(f"{cert}: client certificate without {key.name}")
        client.append((cert, key))
    return TlsFiles(cas, tuple(client))


# -- the auth file ------------------------------------------------------------------------------


def default_auth_file() -> Path:
    """``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json``, else
    ``/run/containers/<uid>/auth.json`` (podman's choice for root)."""
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(os.environ["REGISTRY_AUTH_FILE"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def _read_auths(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"auth file {path}: invalid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise FormatError(f'auth file {path}: want an object with an "auths" object')
    return doc


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def _decode(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None
    try:
        user, sep, pw = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{where}: auth is not base64 of user:password") from e
    if not sep:
        raise FormatError(f"{where}: auth is not base64 of user:password")
    return Credentials(user, pw)


def lookup_credentials(
    name: str, auth_file: str | os.PathLike[str] | None = None
) -> Credentials | None:
    """Credentials for ``name`` (host/repo): the longest matching key (``host/repo``,
    ``host/ns``, ``host``), as podman looks them up; ``~/.docker/config.json`` too."""
    files = [Path(auth_file) if auth_file else default_auth_file()]
    if auth_file is None:
        files.append(Path.home() / ".docker" / "config.json")
    host = name.split("/", 1)[0]
    keys = []
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
        keys.append("/".join(parts[:i]))
    if host == DOCKER_HUB:
        keys += list(DOCKER_HUB_AUTH_KEYS)
    for f in files:
        auths = _read_auths(f).get("auths", {})
        for k in keys:
            for cand in (k, "https://" + k, "http://" + k):
                if cand in auths:
                    c = _decode(auths[cand], f"auth file {f}: auths[{cand!r}]")
                    if c is not None:
                        return c
    return None


def _write_auths(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.rename(tmp, path)


def store_credentials(
    key: str, creds: Credentials, auth_file: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``creds`` under ``key`` (a host or host/repo); other entries are kept."""
    path = Path(auth_file) if auth_file else default_auth_file()
    doc = _read_auths(path)
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    doc.setdefault("auths", {})[key] = {"auth": auth}
    _write_auths(path, doc)
    return path


def remove_credentials(key: str, auth_file: str | os.PathLike[str] | None = None) -> bool:
    """Remove ``key``'s entry; False when there was none."""
    path = Path(auth_file) if auth_file else default_auth_file()
    doc = _read_auths(path)
    if key not in doc.get("auths", {}):
        return False
    del doc["auths"][key]
    _write_auths(path, doc)
    return True
