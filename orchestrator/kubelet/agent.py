"""``corral agent``: join the cluster with the token, register the Node, keep its Lease, run
the pods bound to it and the static pods of its manifest directory through the node runtime
(runtime.pod.api), import the images dropped in its images directory. ``corral server`` runs
one in-process unless ``--disable-agent``."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import ipaddress
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from corral_common import hostsys
from orchestrator.client import ApiClient, ClientError, Informer
from orchestrator.client.volumes import LOCAL_PATH_ROOT_ANNOTATION
from orchestrator.proxy import ProxyError, ServiceProxy
from runtime.pod import api

from .claims import LOCAL_PATH_DIR, LocalPathSweeper
from .config import AgentConfig
from .events import EventRecorder
from .eviction import (
    EvictionManager,
)
from .images import ImagesDir
from .join import JoinError, credentials, serving_files
from .network import NetworkSync, gateway_of
from .node import NodeAgent, NodeSpec, node_ip_for
from .pods import PodManager
from .port import KubeletPort
from .staticpods import ManifestDir

if TYPE_CHECKING:
    from orchestrator.client import ClientConfig
    from orchestrator.dns import ClusterDns
    from orchestrator.netpol import PolicyEnforcer

__all__ = ["AgentConfig", "AgentError", "remove_pods", "run_agent", "serve_agent"]

log = logging.getLogger("corral.agent")

MAX_NODE_IMAGES = 50  # the kubelet's nodeStatusMaxImages
DNS_PORT = 53
DNS_BACKLOG = 64
IP_FREEBIND = 15  # linux/in.h
TLS_READ_BUFFER = 16 * 1024  # bytes, each TLS connection's (see serve_agent)


class AgentError(Exception):
    """The agent could not start: ``step`` names what failed."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


def _runtime_version() -> str:
    from corral_common.version import version

    return f"corral://{version()}"


def pod_options(cfg: AgentConfig, network_config: Path) -> api.PodOptions:
    kw: dict[str, object] = {
        "root": str(cfg.data_dir / "pods"),
        "image_root": str(cfg.data_dir / "store"),
        "network": True,
        "network_config": str(network_config),
        "node_netns": cfg.node_netns,
    }
    if cfg.cgroup_parent is not None:
        kw["cgroup_parent"] = cfg.cgroup_parent
    if cfg.registries_conf is not None:  # read at each pull: edits apply without a restart
        kw["registries_conf"] = str(cfg.registries_conf)
    return api.PodOptions(**kw)  # type: ignore[arg-type]


def remove_pods(cfg: AgentConfig) -> list[str]:
    """A node going for good (``corral cluster down``, k3s' killall): remove every pod its
    agent ran (the agent stopped first), then collect what is left; the problems, if any."""
    opts = pod_options(cfg, cfg.data_dir / "network.json")
    problems = []
    for st in api.list_pods(opts):
        try:
            api.remove(st.uid, opts, force=True)
        except api.PodError as e:
            problems.append(str(e))
    problems += [str(e) for e in api.gc(opts).errors]
    return problems


async def run_agent(cfg: AgentConfig, stop: asyncio.Event) -> None:
    """Run the agent until ``stop`` is set; AgentError (or JoinError) when it cannot start."""
    name = cfg.name
    try:
        cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise AgentError(f"prepare {cfg.data_dir}", e) from e
    node_ip = cfg.node_ip or node_ip_for(cfg.server)
    client_cfg = await credentials(
        cfg.server, cfg.token, name, node_ip, cfg.data_dir, cfg.fallback_servers
    )
    async with ApiClient(client_cfg, user_agent=f"corral-kubelet/{name}") as client:
        try:
            version = await client.request("GET", "/version")
        except ClientError as e:
            raise AgentError(f"reach {', '.join(client_cfg.servers)}", e) from e
        spec = NodeSpec(
            name=name,
            node_ip=node_ip,
            data_dir=cfg.data_dir,
            labels=dict(cfg.labels),
            taints=tuple(cfg.taints),
            kubelet_port=cfg.kubelet_port,
            kubelet_version=str(version.get("gitVersion") or "v0.0.0"),
            runtime_version=_runtime_version(),
            control_plane=cfg.control_plane,
        )
        dns_ip = await cluster_dns_address(client, cfg) if cfg.cluster_dns else None
        runtime = api.NodePods(pod_options(cfg, cfg.data_dir / "network.json"))
        network = NetworkSync(
            client,
            name,
            cfg.data_dir,
            # A node in a network namespace of its own (a one-machine cluster) gets its bridge
            # at once; a host's is made by its first pod. In a child process: an agent with
            # no pod does without the netlink library.
            functools.partial(runtime.ensure_network, cfg.node_netns is not None, True),
            cfg.cluster_cidr,
            dns_ip,
            cfg.pod_cidr,
            cfg.cluster_domain,
        )
        node = NodeAgent(client, spec, network.set_pod_cidr, network.informer)
        node.annotations[LOCAL_PATH_ROOT_ANNOTATION] = str(cfg.data_dir / LOCAL_PATH_DIR)
        node.network_ready = False
        events = EventRecorder(client, name)
        events.node_event("Starting", "Starting kubelet.")
        node.on_event = events.node_event
        try:
            await node.register()
        except ClientError as e:
            raise AgentError(f"register node {name}", e) from e
        loop = asyncio.get_running_loop()

        def images_changed() -> None:  # the Node lists the node's images (ImageLocality)
            node.images = [
                {"names": [*i.names, i.id], "sizeBytes": i.size}
                for i in runtime.images()[:MAX_NODE_IMAGES]
            ]
            node.changed.set()

        images = ImagesDir(
            cfg.images_dir or cfg.data_dir / "images",
            lambda p: loop.run_in_executor(None, runtime.import_images, p),
            images_changed,
        )
        await images.scan()
        images_changed()
        pods = PodManager(client, runtime, name, lambda: node_ip, events, cfg.data_dir)
        tasks: list[asyncio.Task[None]] = []
        pods.node_uid = node.uid
        manifests = ManifestDir(
            cfg.pod_manifests or cfg.data_dir / "pod-manifests",
            name,
            lambda changed: pods.set_static(manifests.pods, changed),
        )
        try:
            manifests.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise AgentError(f"prepare {manifests.path}", e) from e
        manifests.scan()  # before the pods start: a restarted agent keeps its static pods
        tasks.append(asyncio.create_task(manifests.run(), name="kubelet-static-pods"))
        eviction = EvictionManager(
            runtime, cfg.eviction_hard, pods, node, transition=cfg.eviction_transition
        )
        tasks.extend(
            [
                asyncio.create_task(node.run(), name="kubelet-node"),
                asyncio.create_task(images.run(), name="kubelet-images"),
            ]
        )
        sweeper = LocalPathSweeper(client, cfg.data_dir / LOCAL_PATH_DIR)
        cert, key = serving_files(cfg.data_dir)
        assert client_cfg.ca_pem is not None
        kubelet = KubeletPort(runtime, pods.get, cert, key, client_cfg.ca_pem, pods.all)
        dns = ClusterDnsOnNode(client, runtime, cfg, name) if cfg.cluster_dns else None
        proxy = None
        policies = NetworkPolicies(client, client_cfg, cfg, name, network.informer)
        try:
            if not await _network_ready(network, node, stop):
                return  # stopped while waiting for a podCIDR (the finally clause cleans up)
            if dns is not None:
                await dns.start(network)
            await pods.start()
            sweeper.start()
            tasks.append(asyncio.create_task(eviction.run(), name="kubelet-eviction"))
            # A node in a namespace of its own (a one-machine cluster) serves its kubelet on
            # its address there; a loopback address is this process's own.
            in_node = cfg.node_netns is not None and not ipaddress.ip_address(node_ip).is_loopback
            try:
                sock = runtime.node_socket() if in_node else None
                await kubelet.start(node_ip, cfg.kubelet_port, sock)
            except OSError as e:
                raise AgentError(f"listen on {node_ip}:{cfg.kubelet_port}", e) from e
            assert network.pod_cidr is not None
            proxy = await _start_proxy(cfg, client, network.pod_cidr, name, pods.services)
            if not cfg.disable_network_policy:
                policies.start()
            log.info(
                "node %s ready (pods in %s, pod CIDR %s)", name, cfg.data_dir, network.pod_cidr
            )
            print(f"corral agent: node {name} ready", flush=True)
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await policies.stop()
            if proxy is not None:
                await proxy.stop()
            await kubelet.stop()
            await sweeper.stop()
            await pods.stop()
            if dns is not None:
                await dns.stop()
            await network.stop()
    log.info("agent stopped; its pods keep running")


async def _network_ready(network: NetworkSync, node: NodeAgent, stop: asyncio.Event) -> bool:
    """Set up the pod network; without a podCIDR yet, wait for the node IPAM's (the Node is
    NotReady until then, as a kubelet whose network plugin is not ready). False if ``stop``
    was set meanwhile."""
    await network.start()
    waited = 0
    while not network.ready.is_set():
        if stop.is_set():
            return False
        if waited and waited % 30 == 0:
            log.warning("node %s: no spec.podCIDR yet (is the node IPAM running?)", node.spec.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(network.ready.wait(), 1.0)
        waited += 1
    node.network_ready = True
    node.changed.set()
    return True


DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DEFAULT_CLUSTER_DNS = "10.43.0.10"  # the default service CIDR's 10th address (the server's)
DNS_ADDRESS_ANNOTATION = "corral.dev/cluster-dns-address"  # where this node's DNS listens
DNS_LOOKUP_TRIES = 10


async def cluster_dns_address(client: ApiClient, cfg: AgentConfig) -> str:
    """The ClusterFirst pods' nameserver: ``--cluster-dns``, else the clusterIP of the server's
    kube-system/kube-dns Service (waited for a few seconds: a server starting with its agent
    makes it at once), else the default service CIDR's 10th address."""
    if cfg.cluster_dns_ip:
        return cfg.cluster_dns_ip
    from orchestrator.client import NotFound
    from orchestrator.client.rest import SERVICES

    for _ in range(DNS_LOOKUP_TRIES):
        try:
            svc = await client.get(SERVICES, DNS_NAMESPACE, DNS_SERVICE)
        except NotFound:
            await asyncio.sleep(1.0)
            continue
        except ClientError as e:
            log.warning("cluster DNS: cannot read %s/%s: %s", DNS_NAMESPACE, DNS_SERVICE, e)
            break
        ip = str((svc.get("spec") or {}).get("clusterIP") or "")
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv4Address(ip))
        break
    log.warning(
        "cluster DNS: no clusterIP from %s/%s: pods are told %s (--cluster-dns sets it)",
        DNS_NAMESPACE,
        DNS_SERVICE,
        DEFAULT_CLUSTER_DNS,
    )
    return DEFAULT_CLUSTER_DNS


class ClusterDnsOnNode:
    """The cluster DNS on the pods' gateway address, port 53 (UDP and TCP), in the node's
    network namespace: moved when the pod CIDR changes. The address is published on the Node
    (annotation ``corral.dev/cluster-dns-address``): the controller manager makes it this
    node's endpoint of the kube-dns Service, which pods reach at its clusterIP.

    The sockets are bound at start; the server (orchestrator.dns: dnspython, and the watches
    of the Services and EndpointSlices its answers come from, some 3 MiB an agent would keep
    for good) starts at the first query, which waits in its socket meanwhile: a node whose
    pods never look a name up does without it."""

    def __init__(
        self, client: ApiClient, runtime: api.NodePods, cfg: AgentConfig, node_name: str
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.node_name = node_name
        self.runtime = runtime
        self.server: ClusterDns | None = None  # from the first query on
        self.address = ""
        self.published = ""
        self._waiting: tuple[socket.socket, ...] = ()  # bound, no server yet
        self._starting: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, network: NetworkSync) -> None:
        try:
            await self._listen(network)
        except AgentError as e:  # the node runs on; its pods' lookups fail
            log.error("%s", e)
        self._task = asyncio.create_task(self._follow(network), name="kubelet-dns")

    async def _listen(self, network: NetworkSync) -> None:
        assert network.pod_cidr is not None
        address = gateway_of(network.pod_cidr)
        if address == self.address:
            await self._publish(address)  # again, if it failed before
            return
        await self._close()
        udp = self.runtime.node_socket(socket.SOCK_DGRAM)
        tcp = self.runtime.node_socket(socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):  # the bridge may get its address later (its first pod)
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((address, DNS_PORT))
            tcp.bind((address, DNS_PORT))
            if self.server is not None:
                await self.server.serve(udp, tcp)
            else:
                tcp.listen(DNS_BACKLOG)
                self._wait_for_query(udp, tcp)
        except OSError as e:
            udp.close()
            tcp.close()
            raise AgentError(f"cluster DNS: listen on {address}:{DNS_PORT}", e) from e
        self.address = address
        log.info("cluster DNS serving on %s:%d", address, DNS_PORT)
        await self._publish(address)

    def _wait_for_query(self, udp: socket.socket, tcp: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._waiting = (udp, tcp)
        for sock in self._waiting:
            loop.add_reader(sock.fileno(), self._first_query)

    def _unwait(self) -> tuple[socket.socket, ...]:
        socks, self._waiting = self._waiting, ()
        loop = asyncio.get_running_loop()
        for sock in socks:
            loop.remove_reader(sock.fileno())
        return socks

    def _first_query(self) -> None:
        udp, tcp = self._unwait()
        self._starting = asyncio.create_task(self._start_server(udp, tcp), name="kubelet-dns")

    async def _start_server(self, udp: socket.socket, tcp: socket.socket) -> None:
        from orchestrator.dns import ClusterDns, host_nameservers

        cfg = self.cfg
        upstream = cfg.dns_upstream if cfg.dns_upstream is not None else host_nameservers()
        server = ClusterDns(self.client, cfg.cluster_domain, upstream)
        try:
            await server.start()  # the Services and EndpointSlices listed
            await server.serve(udp, tcp)
        except BaseException as e:
            udp.close()
            tcp.close()
            await server.stop()
            if not isinstance(e, Exception):
                raise
            log.error("cluster DNS: cannot start its server: %s", e)
            self.address = ""  # bound again by the next round of _follow
            return
        self.server = server

    async def _close(self) -> None:
        """The sockets closed (a server that is starting serves first)."""
        for sock in self._unwait():
            sock.close()
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self.server is not None:
            await self.server.stop_serving()

    async def _publish(self, address: str) -> None:
        """The Node's annotation names the address (kube-dns's endpoint on this node)."""
        from orchestrator.client.rest import NODES

        if address == self.published:
            return
        patch = {"metadata": {"annotations": {DNS_ADDRESS_ANNOTATION: address}}}
        try:
            await self.client.patch(NODES, None, self.node_name, patch)
        except ClientError as e:
            raise AgentError(f"cluster DNS: publish {address} on node {self.node_name}", e) from e
        self.published = address

    async def _follow(self, network: NetworkSync) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # unpublished: tried again in a while
                await asyncio.wait_for(
                    network.applied.wait(), None if self.published == self.address else 10.0
                )
            network.applied.clear()
            try:
                await self._listen(network)
            except AgentError as e:
                log.error("%s", e)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._starting is not None:
            self._starting.cancel()
        await self._close()
        if self.server is not None:
            await self.server.stop()


class NetworkPolicies:
    """The cluster's NetworkPolicies, watched with the node's credentials; the first one
    loads their enforcement (orchestrator.netpol, which watches every pod and namespace with
    the controller credentials): an agent in a cluster without policies does without it."""

    def __init__(
        self,
        client: ApiClient,
        client_cfg: ClientConfig,
        cfg: AgentConfig,
        node_name: str,
        nodes: Informer,
    ) -> None:
        from orchestrator.client.rest import NETWORKPOLICIES

        self.client_cfg = client_cfg
        self.cfg = cfg
        self.node_name = node_name
        self.nodes = nodes
        self.informer = Informer(client, NETWORKPOLICIES)
        self.enforcer: PolicyEnforcer | None = None
        self._client: ApiClient | None = None
        self._starting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.informer.add_handler(self._seen)
        self.informer.start()

    def _seen(self, _ev: str, _old: dict[str, object] | None, new: object) -> None:
        if new is not None and self._starting is None:
            self._starting = asyncio.create_task(self._start(), name="kubelet-netpol")

    async def _start(self) -> None:
        from orchestrator.netpol import PolicyEnforcer

        from .join import controller_config

        log.info("node %s: enforcing NetworkPolicies", self.node_name)
        try:
            creds = controller_config(self.client_cfg, self.cfg.data_dir)
        except JoinError as e:
            log.error("network policies not enforced: %s", e)
            return
        self._client = ApiClient(creds, user_agent=f"corral-netpol/{self.node_name}")
        await self._client.open()
        enforcer = PolicyEnforcer(
            self._client, self.node_name, self.informer, self.nodes, self.cfg.node_netns
        )
        try:
            enforcer.start()
        except ProxyError as e:
            log.error("network policies not enforced: %s", e)
            return
        self.enforcer = enforcer

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self.enforcer is not None:
            await self.enforcer.stop()
        await self.informer.stop()
        if self._client is not None:
            await self._client.close()


async def _start_proxy(
    cfg: AgentConfig, client: ApiClient, pod_cidr: str, node_name: str, services: Informer
) -> ServiceProxy | None:
    """The node's service proxy (nftables in the node's network namespace), unless
    ``disable_proxy``. It stops with the agent and leaves its rules in place. ``services``:
    the pod manager's informer of every Service, which the proxy shares (it starts before the
    proxy and stops after it)."""
    if cfg.disable_proxy:
        return None
    proxy = ServiceProxy(
        client, cfg.node_netns, node_name=node_name, pod_cidr=pod_cidr, services=services
    )
    try:
        proxy.start()  # syncs in the background; failures are logged and retried
    except ProxyError as e:
        raise AgentError("start the service proxy", e) from e
    return proxy


def serve_agent(cfg: AgentConfig) -> None:
    """``corral agent``: run until SIGTERM/SIGINT (the pods keep running)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        raise AgentError("start", "the agent runs pods: it must run as root")
    # One malloc arena for the agent's threads (the default executor's image imports, network
    # and proxy syncs; the pod workers): they seldom allocate at once, and each arena of its
    # own would keep its high-water mark (issue #15: the agent's idle memory).
    hostsys.malloc_arena_max(1)
    # asyncio gives each TLS connection a read buffer of SSLProtocol.max_size (256 KiB),
    # zeroed when made: the agent's seven watches held about 1.75 MiB of them. A record larger
    # than the buffer (TLS records carry up to 16 KiB) is read in more than one recv: the
    # SSL object gathers it, so a small buffer costs a few more reads of a large list only.
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(cfg, stop)

    asyncio.run(main())
