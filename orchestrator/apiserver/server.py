"""``corral server``: the API server over the store, with TLS, client-certificate
authentication and an admin kubeconfig, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import ipaddress
import logging
import os
import resource
import secrets
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop
import yaml

from corral_common import hostsys
from orchestrator.store import StoreError, open_store

from .app import MAX_REQUEST_LINE, ApiServer
from .audit import AuditLog
from .authn import (
    Authenticator,
    ServiceAccountTokens,
    TokenFileError,
    UserInfo,
    load_token_file,
)
from .bootstrap import BootstrapError, publish, share
from .connections import IDLE_TIMEOUT, READ_HEADER_TIMEOUT, HeadTimeoutRunner
from .encryption import EncryptedBackend, EncryptionConfigError, load_or_create_config
from .encryption import rotate as rotate_keys
from .join import JOIN_PATHS, add_join_routes
from .pki import Pki, ensure_pki, issue_client_cert, pki_paths
from .security import Limits, Security
from .services import ServiceAllocator, parse_port_range
from .services import leave as leave_services
from .services import maintain as maintain_services

if TYPE_CHECKING:
    from orchestrator.client import ClientConfig

__all__ = [
    "ServerConfig",
    "ServerError",
    "kubeconfig",
    "rotate_secrets_key",
    "run_server",
    "user_kubeconfig",
]

log = logging.getLogger("corral.server")
ADMIN_USER = "system:admin"  # the admin certificate's user (pki.py)
PRIVILEGED_GROUP = "system:masters"
LOOPBACK_SOCKET = "loopback.sock"  # in the data dir: this process's components reach the API
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
# Connections waiting to be accepted: every client of a cluster may come back at once (after a
# restart of the server); 128, aiohttp's default, drops the rest's SYNs (capped by somaxconn).
BACKLOG = 1024


class ServerError(Exception):
    """The server could not start: ``step`` names what failed."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    https_listen_port: int = 6443
    # The address (and port) the members of the cluster reach this server at: the endpoint
    # of the ``kubernetes`` Service. None: the bind address (a wildcard: the host's address
    # on its default route), the listen port.
    advertise_address: str | None = None
    advertise_port: int | None = None
    # A network namespace (a path) where the server listens on the advertise address too (a
    # cluster on one machine: the LAN's); None: it listens there in its own when the bind
    # address does not cover it.
    advertise_netns: str | None = None
    write_kubeconfig: Path | None = None
    token: str | None = None
    datastore_endpoint: str = ""
    disable_agent: bool = False
    disable_proxy: bool = False
    disable_network_policy: bool = False
    disable_scheduler: bool = False
    disable_controller_manager: bool = False
    disable_controllers: tuple[str, ...] = ()
    # packaged components not deployed, by k3s' names (--disable): servicelb, local-storage,
    # traefik (Corral bundles none)
    disable: tuple[str, ...] = ()
    node_monitor_grace_period: float = 40.0
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    cluster_dns: str = ""  # the kube-dns Service's clusterIP; "": the service CIDR's 10th
    cluster_domain: str = "cluster.local"
    kubelet_netns: str | None = None  # reach kubelets from this network namespace (a path)
    service_node_port_range: str = "30000-32767"
    token_auth_file: Path | None = None
    audit_log_path: str | None = None
    audit_log_maxsize: int = 0  # megabytes; 0: never rotate
    audit_log_maxbackup: int = 0  # 0: keep every rotated file
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_watches_per_user: int = 500
    request_timeout: float = 60.0  # seconds a request body may take to arrive (then 504)
    read_header_timeout: float = READ_HEADER_TIMEOUT  # seconds a request's head may take
    idle_timeout: float = IDLE_TIMEOUT  # seconds a connection may wait for its next request


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def default_route_address() -> str:
    """The host's address on its default route (kube-apiserver's default advertise address
    for a wildcard bind); 127.0.0.1 without one. A UDP connect sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def advertised(cfg: ServerConfig) -> tuple[str, int]:
    """(address, port) of the ``kubernetes`` Service's endpoint for this server."""
    host = cfg.advertise_address or cfg.bind_address
    if _wildcard(host):
        host = default_route_address()
    return host, cfg.advertise_port or cfg.https_listen_port


def _check_addresses(cfg: ServerConfig) -> str:
    """The addresses checked; the ``kubernetes`` Service's ClusterIP (the service CIDR's
    first address). ServerError naming the flag."""
    for flag, value in (("--bind-address", cfg.bind_address),
                        ("--advertise-address", cfg.advertise_address)):  # fmt: skip
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ServerError(flag, f"{value!r} is not an IP address") from None
    if cfg.advertise_netns is not None and not cfg.advertise_address:
        raise ServerError("--advertise-netns", "needs --advertise-address (the address there)")
    try:
        net = ipaddress.ip_network(cfg.service_cidr, strict=True)
    except ValueError as e:
        raise ServerError("--service-cidr", e) from None
    return str(net.network_address + 1)


def _serving_addresses(cfg: ServerConfig) -> tuple[str, ...]:
    """The IP addresses the serving certificate must name: the bind and advertise addresses
    and the ``kubernetes`` ClusterIP (in-cluster clients connect to it and check it)."""
    return (cfg.bind_address, advertised(cfg)[0], _check_addresses(cfg))


def _host_port(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def kubeconfig(
    server_url: str,
    pki: Pki,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    user: str = "default",
) -> bytes:
    """A kubeconfig for ``server_url`` trusting the cluster CA, with the admin certificate or
    the one given."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    if cert_pem is None or key_pem is None:
        cert_pem, key_pem = pki.admin_cert.read_bytes(), pki.admin_key.read_bytes()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "default",
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": b64(pki.ca_cert.read_bytes()),
                },
            }
        ],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": user}}],
        "current-context": "default",
        "preferences": {},
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert_pem),
                    "client-key-data": b64(key_pem),
                },
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def user_kubeconfig(
    data_dir: Path, server_url: str | None, user: str, groups: tuple[str, ...], days: int
) -> bytes:
    """``corral kubeconfig``: a kubeconfig for ``user`` in ``groups``, with a certificate the
    cluster CA in ``data_dir`` signs (RBAC then decides what the user may do)."""
    tls = data_dir / "tls"
    if not (tls / "server-ca.key").exists():
        raise ServerError(
            f"read the cluster CA in {tls}", "no server-ca.key (run corral server first)"
        )
    pki = pki_paths(tls)
    try:
        cert, key = issue_client_cert(pki, user, groups, days)
    except (OSError, ValueError) as e:
        raise ServerError(f"issue a certificate for {user}", e) from e
    if server_url is None:  # the one the server wrote into the admin kubeconfig
        admin = data_dir / "cred" / "admin.kubeconfig"
        try:
            server_url = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
        except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
            raise ServerError(f"read the server address from {admin}", e) from e
    return kubeconfig(str(server_url), pki, cert, key, user)


def _token_secret(cfg: ServerConfig) -> str:
    """The join token's secret: the one given, else the one kept from an earlier start, else
    a new one."""
    path = cfg.data_dir / "token"
    if cfg.token:
        return cfg.token.rsplit("::server:", 1)[-1]
    if path.exists():
        return path.read_text().strip().rsplit("::server:", 1)[-1]
    return secrets.token_hex(16)


def _token(cfg: ServerConfig, pki: Pki, secret: str) -> str:
    """The join token, k3s' format ``K10<sha256 of the CA>::server:<secret>``, kept in
    ``<data-dir>/token``."""
    ca_hash = hashlib.sha256(pki.ca_cert.read_bytes()).hexdigest()
    full = f"K10{ca_hash}::server:{secret}"
    hostsys.write_atomic(cfg.data_dir / "token", (full + "\n").encode())
    return full


def _make_shared(cfg: ServerConfig) -> None:
    """This server's CA, ServiceAccount key and encryption keys (made if missing)."""
    ensure_pki(cfg.data_dir / "tls", *_serving_addresses(cfg))
    ServiceAccountTokens(cfg.data_dir / "tls" / "service-account.key")
    load_or_create_config(cfg.data_dir / "cred" / "encryption-config.yaml")


async def _share_bootstrap(cfg: ServerConfig, secret: str) -> None:
    store = open_store(cfg.datastore_endpoint, compact_interval=0)
    try:
        await store.start()
        try:
            took = await share(store, cfg.data_dir, secret, lambda: _make_shared(cfg))
        finally:
            await store.close()
    except (StoreError, BootstrapError, OSError, ValueError, EncryptionConfigError) as e:
        raise ServerError("share the cluster's keys through the datastore", e) from e
    if took:
        log.info("the cluster's CA and keys come from the datastore (another server made them)")


def _ssl_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.serving_cert, pki.serving_key)
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # no certificate: anonymous, refused with 401
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _advertise_socket(cfg: ServerConfig, host: str, port: int) -> socket.socket | None:
    """A listening socket on the advertise address when the main one does not cover it: made
    in ``--advertise-netns`` when given (a socket stays in the namespace it was made in), else
    in ours. None when the bind address and port already serve it."""
    if cfg.advertise_netns is None:
        if (
            cfg.advertise_address is None
            or port == cfg.https_listen_port
            and (host == cfg.bind_address or _wildcard(cfg.bind_address))
        ):
            return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = _host_port(host, port) + (f" in {cfg.advertise_netns}" if cfg.advertise_netns else "")

    def make() -> socket.socket:
        return socket.socket(family, socket.SOCK_STREAM)

    try:
        if cfg.advertise_netns is None:
            sock = make()
        else:
            from runtime.network import NetworkError, in_netns

            try:
                sock = in_netns(cfg.advertise_netns, make)
            except NetworkError as e:
                raise ServerError(f"listen on {where}", e) from e
    except OSError as e:
        raise ServerError(f"listen on {where}", e) from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServerError(f"listen on {where}", e) from e
    log.info("also serving on %s", where)
    return sock


def _kubelet_client(pki: Pki) -> ssl.SSLContext:
    """TLS to the kubelets (pods/log): their serving certificates are the cluster CA's; the
    API server shows the admin certificate (system:masters)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(pki.admin_cert, pki.admin_key)
    return ctx


async def _serve(cfg: ServerConfig) -> None:
    from aiohttp import web

    data = cfg.data_dir
    serving_addresses = _serving_addresses(cfg)
    adv_host, adv_port = advertised(cfg)
    try:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        secret = _token_secret(cfg)
    except (OSError, ValueError) as e:
        raise ServerError(f"prepare {data}", e) from e
    if cfg.datastore_endpoint:  # servers sharing a datastore share the cluster's keys
        await _share_bootstrap(cfg, secret)
    try:
        pki = ensure_pki(data / "tls", *serving_addresses)
        token = _token(cfg, pki, secret)
    except (OSError, ValueError) as e:
        raise ServerError(f"prepare {data}", e) from e
    address = _host_port(cfg.bind_address, cfg.https_listen_port)
    url = f"https://{address}"
    config = kubeconfig(url, pki)
    targets = [data / "cred" / "admin.kubeconfig"]
    if cfg.write_kubeconfig is not None:
        targets.append(cfg.write_kubeconfig)
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            hostsys.write_atomic(target, config)
        except OSError as e:
            raise ServerError(f"write kubeconfig {target}", e) from e

    endpoint = cfg.datastore_endpoint or f"sqlite://{(data / 'db' / 'state.db').resolve()}"
    if not cfg.datastore_endpoint:
        (data / "db").mkdir(mode=0o700, exist_ok=True)
    try:
        keys = load_or_create_config(data / "cred" / "encryption-config.yaml")
    except (OSError, EncryptionConfigError) as e:
        raise ServerError("load the secrets encryption keys", e) from e
    try:
        store = EncryptedBackend(open_store(endpoint), keys)
        await store.start()
    except StoreError as e:
        raise ServerError("open the datastore", e) from e
    loopback_token = secrets.token_urlsafe(32)
    try:
        api = _secured_api(cfg, store, address, pki, loopback_token)
    except (OSError, ValueError, TokenFileError, EncryptionConfigError) as e:
        await store.close()
        raise ServerError("set up authentication, authorization and audit", e) from e
    api.storage.not_ready_toleration_seconds = cfg.default_not_ready_toleration_seconds
    api.storage.builtin_storage_class = "local-storage" not in cfg.disable
    if "traefik" in cfg.disable:
        log.info("--disable traefik: Corral bundles no ingress controller, nothing to disable")
    api.storage.unreachable_toleration_seconds = cfg.default_unreachable_toleration_seconds
    try:
        ports = parse_port_range(cfg.service_node_port_range)
        api.storage.services = ServiceAllocator(store, cfg.service_cidr, ports, cfg.cluster_dns)
    except ValueError as e:
        await store.close()
        raise ServerError("--service-cidr / --service-node-port-range / --cluster-dns", e) from None
    runner: web.AppRunner | None = None
    agent: asyncio.Task[None] | None = None
    try:
        await api.start()
        # What exists now (modules, routes, tables) lives as long as the server: keep the
        # cyclic collector from walking it again on every full collection. Collect the young
        # generation less often (a list of 10k objects allocates about 300k containers), and
        # the older ones far less: the caches (watch windows, informers, authorizers) keep
        # every object decoded, and a pass over them cost a fifth of the server's CPU while
        # 10k pods were created and bound (2.3 of 12 s; 0.8 s so). The young generation's
        # threshold counts containers kept (those freed at once do not count): at 500k
        # rather than 50k, objects that live a while (a watch window's) are more often freed
        # before a pass walks them: about 4% less server CPU per pod scheduled (measured side
        # by side); a young pass then takes about a fifth of a second.
        gc.collect()
        gc.freeze()
        gc.set_threshold(500_000, 20, 100)
        app = api.app()
        add_join_routes(app, pki, token)
        runner = HeadTimeoutRunner(
            app,
            read_header_timeout=cfg.read_header_timeout,
            idle_timeout=cfg.idle_timeout,
            access_log=None,
            shutdown_timeout=2.0,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            cfg.bind_address,
            cfg.https_listen_port,
            ssl_context=_ssl_context(pki),
            backlog=BACKLOG,
        )
        try:
            await site.start()
        except OSError as e:
            raise ServerError(f"listen on {address}", e) from e
        extra = _advertise_socket(cfg, adv_host, adv_port)
        if extra is not None:
            await web.SockSite(
                runner, extra, ssl_context=_ssl_context(pki), backlog=BACKLOG
            ).start()
        loopback = await _loopback(runner, data, url, pki, loopback_token)
        log.info("datastore: %s", store.url)
        log.info("admin kubeconfig written to %s", targets[-1])
        log.info("join token in %s", data / "token")
        components = _start_components(cfg, loopback)
        advertise = _host_port(adv_host, adv_port)
        components.append(asyncio.create_task(maintain_services(api.storage, advertise)))
        controllers = _start_controller_manager(cfg, loopback, api)
        stop = asyncio.Event()
        if not cfg.disable_agent:  # this host is a node too, as k3s server's own agent
            agent = asyncio.create_task(
                _agent(url, token, data / "agent", stop, cfg, api.storage.services.cluster_dns_ip),
                name="agent",
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"corral server: ready, serving on {url}", flush=True)
        await stop.wait()
        log.info("stopping")
        for task in components:
            task.cancel()
        await asyncio.gather(*components, return_exceptions=True)
        try:  # pods stop being sent here while the other servers serve on
            await asyncio.wait_for(leave_services(api.storage, advertise), 5.0)
        except Exception as e:  # noqa: BLE001 - its lease expires anyway
            log.warning("leaving the kubernetes endpoints: %s", e)
        if controllers is not None:
            controllers.cancel()
            await asyncio.gather(controllers, return_exceptions=True)
    finally:
        if agent is not None:
            await asyncio.gather(agent, return_exceptions=True)
        await api.close()
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(OSError):
            (data / LOOPBACK_SOCKET).unlink()
        await store.close()
    log.info("stopped")


async def _loopback(runner: Any, data: Path, url: str, pki: Pki, token: str) -> ClientConfig:
    """How this process's components (controllers, scheduler) reach the API: a Unix socket
    in the data dir (mode 0600, the dir 0700), plain HTTP with the loopback token, which
    spares every watch event and request to them a TLS record each way on both ends of one
    process; HTTPS to ``url`` with the admin certificate when the path is too long for a
    socket."""
    from aiohttp import web

    from orchestrator.client import ClientConfig

    path = data / LOOPBACK_SOCKET
    if len(str(path)) <= MAX_SOCKET_PATH:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a server that was killed
        try:
            await web.UnixSite(runner, str(path), backlog=BACKLOG).start()
            os.chmod(path, 0o600)
        except OSError as e:
            log.warning("loopback socket %s: %s; components use HTTPS", path, e)
        else:
            # the CA still goes with it: the root CA publisher publishes the client's CA
            ca = pki.ca_cert.read_bytes()
            return ClientConfig(
                server="http://localhost", ca_pem=ca, unix_socket=str(path), token=token
            )
    return ClientConfig(
        server=url,
        ca_pem=pki.ca_cert.read_bytes(),
        cert_pem=pki.admin_cert.read_bytes(),
        key_pem=pki.admin_key.read_bytes(),
    )


def _secured_api(
    cfg: ServerConfig, store: EncryptedBackend, address: str, pki: Pki, loopback_token: str
) -> ApiServer:
    """The API server with authentication (certificates, the token file, ServiceAccount
    tokens signed with ``tls/service-account.key``, the loopback token of this process's own
    components), RBAC and node authorization, limits and the audit log."""
    api = ApiServer(
        store,
        server_address=address,
        kubelet_client=_kubelet_client(pki),
        request_timeout=cfg.request_timeout,
    )
    api.kubelet_netns = cfg.kubelet_netns
    static = load_token_file(cfg.token_auth_file) if cfg.token_auth_file else {}
    # The admin certificate's user, as the components had over HTTPS (kube-apiserver's
    # loopback client has a token of its own likewise, made at start, never written).
    static[loopback_token] = UserInfo(ADMIN_USER, groups=(PRIVILEGED_GROUP,))
    sa_tokens = ServiceAccountTokens(cfg.data_dir / "tls" / "service-account.key")
    audit = None
    if cfg.audit_log_path:
        audit = AuditLog(cfg.audit_log_path, cfg.audit_log_maxsize, cfg.audit_log_maxbackup)
    api.security = Security(
        api.storage,
        api.caches,
        Authenticator(api.storage, sa_tokens, static),
        audit=audit,
        limits=Limits(
            cfg.max_requests_inflight,
            cfg.max_mutating_requests_inflight,
            cfg.max_watches_per_user,
        ),
        own_auth_prefixes=JOIN_PATHS,
    )
    return api


def rotate_secrets_key(data_dir: Path, datastore_endpoint: str = "") -> tuple[str, int]:
    """``corral secrets-encrypt rotate``: a new key encrypts every secret, the old one is
    dropped. The server must be stopped (it holds the keys it started with). (new key name,
    secrets rewritten)."""
    path = data_dir / "cred" / "encryption-config.yaml"
    if not path.exists():
        raise ServerError("rotate the secrets key", f"{path} does not exist")
    endpoint = datastore_endpoint or f"sqlite://{(data_dir / 'db' / 'state.db').resolve()}"

    async def run() -> tuple[str, int]:
        store = open_store(endpoint, compact_interval=0)
        await store.start()
        try:
            out = await rotate_keys(store, path)
            if datastore_endpoint:  # the other servers read the new keys from the datastore
                await publish(store, data_dir, _token_secret(ServerConfig(data_dir)))
            return out
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (StoreError, EncryptionConfigError, BootstrapError, OSError) as e:
        raise ServerError("rotate the secrets key", e) from e


def _raise_open_files_limit() -> None:
    """Every watch holds a connection: take the hard limit on open files (as k3s' unit's
    LimitNOFILE), so many watches exhaust the per-user cap before the process's fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _agent(
    url: str, token: str, data_dir: Path, stop: asyncio.Event, server: ServerConfig, dns_ip: str
) -> None:
    """The server's own agent (orchestrator.kubelet); its failure leaves the API serving."""
    from orchestrator.kubelet import AgentConfig, run_agent

    try:
        cfg = AgentConfig(
            server=url,
            token=token,
            data_dir=data_dir,
            control_plane=True,
            disable_proxy=server.disable_proxy,
            disable_network_policy=server.disable_network_policy,
            cluster_dns_ip=dns_ip,
            cluster_domain=server.cluster_domain,
        )
        await run_agent(cfg, stop)
    except Exception as e:  # noqa: BLE001 - reported, the API keeps serving
        log.error("the agent failed, this server runs no node: %s", e)


def _start_components(cfg: ServerConfig, client: ClientConfig) -> list[asyncio.Task[None]]:
    """The components that run in the server's process (as k3s): each talks to this API
    through ``client`` (the loopback socket, see ``_loopback``)."""
    tasks: list[asyncio.Task[None]] = []
    if not cfg.disable_scheduler:
        from orchestrator.scheduler import run_scheduler

        tasks.append(asyncio.create_task(run_scheduler(client), name="scheduler"))
    return tasks


def _start_controller_manager(
    cfg: ServerConfig, client: ClientConfig, api: ApiServer
) -> asyncio.Task[None] | None:
    """The controllers in this process (as k3s), through ``client`` (the loopback socket,
    see ``_loopback``); ``--disable-controller-manager`` turns them off."""
    if cfg.disable_controller_manager:
        return None
    from orchestrator.controllers.base import Metrics
    from orchestrator.controllers.certificates import SigningCA
    from orchestrator.controllers.manager import CONTROLLERS, ManagerConfig, run_controller_manager
    from orchestrator.controllers.namespaced import check_cluster_cidr

    try:
        check_cluster_cidr(cfg.cluster_cidr)
    except ValueError as e:
        raise ServerError("--cluster-cidr", e) from None
    unknown = sorted(set(cfg.disable_controllers) - set(CONTROLLERS))
    if unknown:
        raise ServerError(
            "disable controllers",
            f"unknown: {', '.join(unknown)} (known: {', '.join(CONTROLLERS)})",
        )

    components = {"servicelb": ("servicelb",), "local-storage": ("local-path-provisioner",)}
    pki = pki_paths(cfg.data_dir / "tls")  # the cluster CA signs CSRs (as k3s' client CA)
    manager = ManagerConfig(
        signing_ca=SigningCA(pki.ca_cert.read_bytes(), pki.ca_key.read_bytes()),
        disabled=frozenset(cfg.disable_controllers)
        | {c for name in cfg.disable for c in components.get(name, ())},
        cluster_cidr=cfg.cluster_cidr,
        node_monitor_grace_period=cfg.node_monitor_grace_period,
    )
    metrics = Metrics()
    api.metrics_sources.append(metrics.render)
    task = asyncio.create_task(run_controller_manager(client, manager, metrics), name="controllers")
    task.add_done_callback(
        lambda t: (
            t.cancelled()
            or t.exception() is None
            or log.error("controller manager stopped: %s", t.exception())
        )
    )
    return task


def run_server(cfg: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT (then return); ServerError when it cannot start."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _raise_open_files_limit()
    # uvloop: the event loop, sockets and TLS in C (libuv) rather than asyncio's Python
    # selector loop and sslproto, on every request and every watch event.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(cfg))
