"""``corral agent``: join the cluster with the token, register the Node, keep its Lease, run
the pods bound to it through the node runtime (runtime.pod.api), import the images dropped in
its images directory. ``corral server`` runs one in-process unless ``--disable-agent``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from corral_common import defaults, hostsys
from orchestrator.client import ApiClient, ClientError
from orchestrator.proxy import ProxyError, ServiceProxy
from runtime.pod import api

from .events import EventRecorder
from .images import ImagesDir
from .join import credentials, serving_files
from .node import NodeAgent, NodeSpec, node_ip_for
from .pods import PodManager
from .server import KubeletServer

__all__ = ["AgentConfig", "AgentError", "run_agent", "serve_agent"]

log = logging.getLogger("corral.agent")

DEFAULT_DATA_DIR = Path(defaults.AGENT_DATA_DIR)
DEFAULT_POD_CIDR = "10.42.0.0/24"
MAX_NODE_IMAGES = 50  # the kubelet's nodeStatusMaxImages


class AgentError(Exception):
    """The agent could not start: ``step`` names what failed."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


@dataclass(frozen=True)
class AgentConfig:
    server: str
    token: str
    data_dir: Path = DEFAULT_DATA_DIR
    node_name: str = ""
    node_ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    kubelet_port: int = 10250
    node_netns: str | None = None
    images_dir: Path | None = None
    pod_cidr: str = DEFAULT_POD_CIDR  # when the Node has no spec.podCIDR
    cgroup_parent: str | None = None  # None: the runtime's default (/kubepods)
    control_plane: bool = False  # a server's own agent (node-role labels, as k3s)
    disable_proxy: bool = False  # run no service proxy (orchestrator.proxy) on this node

    @property
    def name(self) -> str:
        return (self.node_name or socket.gethostname()).lower()


def _runtime_version() -> str:
    from corral_common.version import version

    return f"corral://{version()}"


def _network_config(cfg: AgentConfig, pod_cidr: str) -> Path:
    """The node network file the runtime reads: this node's pod CIDR, IPAM state in the data
    directory."""
    net = ipaddress.ip_network(pod_cidr, strict=False)
    path = cfg.data_dir / "network.json"
    doc = {"name": "corral", "podCIDR": str(net), "stateDir": str(cfg.data_dir / "network")}
    hostsys.write_atomic(path, json.dumps(doc, indent=1).encode(), 0o644)
    return path


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
    return api.PodOptions(**kw)  # type: ignore[arg-type]


async def run_agent(cfg: AgentConfig, stop: asyncio.Event) -> None:
    """Run the agent until ``stop`` is set; AgentError (or JoinError) when it cannot start."""
    name = cfg.name
    try:
        cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise AgentError(f"prepare {cfg.data_dir}", e) from e
    node_ip = cfg.node_ip or node_ip_for(cfg.server)
    client_cfg = await credentials(cfg.server, cfg.token, name, node_ip, cfg.data_dir)
    async with ApiClient(client_cfg, user_agent=f"corral-kubelet/{name}") as client:
        try:
            version = await client.request("GET", "/version")
        except ClientError as e:
            raise AgentError(f"reach {cfg.server}", e) from e
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
        try:  # the option's range until the Node has a spec.podCIDR (the node IPAM's)
            network = _network_config(cfg, cfg.pod_cidr)
        except (OSError, ValueError) as e:
            raise AgentError(f"write the node network config for {cfg.pod_cidr}", e) from e

        def pod_cidr_set(cidr: str) -> None:
            try:
                _network_config(cfg, cidr)
                log.info("node %s: pods get addresses from %s (spec.podCIDR)", name, cidr)
            except (OSError, ValueError) as e:
                log.error("node %s: spec.podCIDR %s not taken: %s", name, cidr, e)

        node = NodeAgent(client, spec, pod_cidr_set)
        try:
            await node.register()
        except ClientError as e:
            raise AgentError(f"register node {name}", e) from e
        pod_cidr = node.pod_cidr or cfg.pod_cidr
        runtime = api.NodePods(pod_options(cfg, network))
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
        events = EventRecorder(client, name)
        pods = PodManager(client, runtime, name, lambda: node_ip, events, cfg.data_dir)
        tasks = [
            asyncio.create_task(node.run(), name="kubelet-node"),
            asyncio.create_task(images.run(), name="kubelet-images"),
        ]
        cert, key = serving_files(cfg.data_dir)
        assert client_cfg.ca_pem is not None
        kubelet = KubeletServer(runtime, pods.informer.get, cert, key, client_cfg.ca_pem)
        proxy = None
        try:
            await pods.start()
            try:
                await kubelet.start(node_ip, cfg.kubelet_port)
            except OSError as e:
                raise AgentError(f"listen on {node_ip}:{cfg.kubelet_port}", e) from e
            proxy = await _start_proxy(cfg, client, pod_cidr)
            log.info("node %s ready (pods in %s, pod CIDR %s)", name, cfg.data_dir, pod_cidr)
            print(f"corral agent: node {name} ready", flush=True)
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if proxy is not None:
                await proxy.stop()
            await kubelet.stop()
            await pods.stop()
    log.info("agent stopped; its pods keep running")


async def _start_proxy(cfg: AgentConfig, client: ApiClient, pod_cidr: str) -> ServiceProxy | None:
    """The node's service proxy (nftables in the node's network namespace), unless
    ``disable_proxy``. It stops with the agent and leaves its rules in place."""
    if cfg.disable_proxy:
        return None
    proxy = ServiceProxy(client, cfg.node_netns, pod_cidr=pod_cidr)
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

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(cfg, stop)

    asyncio.run(main())
