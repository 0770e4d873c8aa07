"""``corral cluster up`` and ``down``: the one-machine cluster's life.

Record before you make: the state file (``<data-dir>/cluster.json``, written atomically) lists
every namespace, process and cgroup before it is made, so ``down`` removes exactly that, from
any process, as often as asked; a failed ``up`` calls ``down`` on what it made.

Layout of a cluster in DIR::

    DIR/cluster.json            the state
    DIR/kubeconfig              the admin kubeconfig
    DIR/netns/lan, node-N       network namespaces (nsfs bind mounts; `nsenter --net=...`)
    DIR/server/                 the server's data directory; DIR/logs/server.log

The server listens on 127.0.0.1 (kubectl, the agents) and, through a socket made in the LAN
namespace, on the LAN bridge's address (the first of the LAN), which it advertises: the
``kubernetes`` Service's endpoint, which pods reach through their node (masqueraded).
    DIR/nodes/node-N/           each agent's data directory; DIR/logs/node-N.log
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral_common import hostsys

__all__ = ["ClusterError", "ClusterSpec", "Node", "State", "down", "load_state", "up"]

STATE_FILE = "cluster.json"
LAN_BRIDGE = "lan0"
NODE_IFNAME = "eth0"
KUBELET_PORT = 10250
READY_TIMEOUT = 300.0  # seconds for the server, then every node, to be ready
STOP_TIMEOUT = 30.0


class ClusterError(Exception):
    """A step of ``up`` or ``down`` failed; ``step`` names it and its object."""

    def __init__(self, step: str, cause: object) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


@dataclass(frozen=True)
class ClusterSpec:
    data_dir: Path
    nodes: int = 2
    images_dir: Path | None = None
    # Relative: below the calling process's cgroup (where the agents run); each node's pods go
    # below <cgroup_parent>/<node>. None: corral-cluster-<id>.
    cgroup_parent: str | None = None
    lan_cidr: str = "172.31.250.0/24"
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    timeout: float = READY_TIMEOUT
    # The server's node lifecycle (None: the server's defaults): seconds without a Lease
    # renewal before a node is NotReady, and how long pods tolerate a not-ready / unreachable
    # node before they are evicted (short for tests and demos of a node failure).
    node_monitor_grace_period: float | None = None
    not_ready_toleration_seconds: int | None = None
    unreachable_toleration_seconds: int | None = None

    def check(self) -> None:
        if not 1 <= self.nodes <= 200:
            raise ClusterError("--nodes", f"{self.nodes}: from 1 to 200")
        try:
            lan = ipaddress.IPv4Network(self.lan_cidr)
            cluster = ipaddress.IPv4Network(self.cluster_cidr)
            ipaddress.IPv4Network(self.service_cidr)
        except ValueError as e:
            raise ClusterError("network ranges", e) from None
        if lan.num_addresses < self.nodes + 3:
            raise ClusterError("--lan-cidr", f"{lan} has no room for {self.nodes} nodes")
        if lan.overlaps(cluster):
            raise ClusterError("--lan-cidr", f"{lan} overlaps the cluster CIDR {cluster}")
        if self.cgroup_parent is not None and (
            self.cgroup_parent.startswith("/") or ".." in self.cgroup_parent.split("/")
        ):
            raise ClusterError("--cgroup-parent", "must be a relative path without '..'")
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise ClusterError("--images-dir", f"{self.images_dir} is not a directory")
        if self.node_monitor_grace_period is not None and self.node_monitor_grace_period < 1:
            raise ClusterError("--node-monitor-grace-period", "must be at least 1 second")
        for flag, v in (
            ("--default-not-ready-toleration-seconds", self.not_ready_toleration_seconds),
            ("--default-unreachable-toleration-seconds", self.unreachable_toleration_seconds),
        ):
            if v is not None and v < 0:
                raise ClusterError(flag, f"{v}: must not be negative")

    def server_args(self) -> list[str]:
        """The server's node lifecycle flags this spec sets."""
        out = []
        for flag, v in (
            ("--node-monitor-grace-period", self.node_monitor_grace_period),
            ("--default-not-ready-toleration-seconds", self.not_ready_toleration_seconds),
            ("--default-unreachable-toleration-seconds", self.unreachable_toleration_seconds),
        ):
            if v is not None:
                out += [flag, str(v)]
        return out


@dataclass
class Proc:
    pid: int
    start_time: str  # /proc/<pid>/stat field 22: a pid reused by another process differs


@dataclass
class Node:
    name: str
    address: str
    netns: str
    data_dir: str
    cgroup_parent: str
    proc: Proc | None = None


@dataclass
class State:
    id: str
    data_dir: str
    lan_cidr: str
    cluster_cidr: str
    made_dir: bool = False
    lan_netns: str | None = None
    server: Proc | None = None
    server_url: str = ""
    cgroup_parent: str = ""
    cgroup_paths: dict[str, str] = field(default_factory=dict)  # hierarchy -> directory
    nodes: list[Node] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / STATE_FILE

    @property
    def kubeconfig(self) -> Path:
        return Path(self.data_dir) / "kubeconfig"

    def save(self) -> None:
        hostsys.write_atomic(self.path, json.dumps(asdict(self), indent=1).encode(), 0o600)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        d = dict(d)
        d["server"] = Proc(**d["server"]) if d.get("server") else None
        d["nodes"] = [
            Node(**{**n, "proc": Proc(**n["proc"]) if n.get("proc") else None})
            for n in d.get("nodes") or []
        ]
        return cls(**d)


def load_state(data_dir: Path) -> State | None:
    try:
        text = (data_dir / STATE_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        return State.from_json(json.loads(text))
    except (ValueError, TypeError, KeyError) as e:
        raise ClusterError(f"read {data_dir / STATE_FILE}", e) from None


# ============================================================================= processes


def corral_argv() -> list[str]:
    exe = Path(sys.executable).parent / "corral"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "corral_cli"]


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(p: Proc) -> bool:
    return _start_time(p.pid) == p.start_time


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start a daemon of the cluster: its own session, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    start = _start_time(proc.pid) or ""
    return Proc(proc.pid, start)


def stop(p: Proc | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; nothing if that process is gone."""
    if p is None:
        return
    if not _alive(p):
        _reap(p.pid)
        return
    os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(p):
        _reap(p.pid)
        if time.monotonic() > deadline:
            os.kill(p.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)
    _reap(p.pid)


def wait_log(p: Proc, log: Path, what: str, timeout: float) -> None:
    """Wait for a line with "ready" in ``log``; ClusterError with the log's tail if the process
    ends or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        if any(" ready" in ln for ln in text.splitlines() if ln.startswith("corral ")):
            return
        if not _alive(p):
            raise ClusterError(what, f"exited:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise ClusterError(what, f"not ready after {timeout:.0f} s:\n{text[-3000:]}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ============================================================================= namespaces


def _on_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a thread of its own (it may unshare: only that thread moves)."""
    err: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            err.append(e)

    t = threading.Thread(target=run, name="corral-cluster-netns")
    t.start()
    t.join()
    if err:
        raise err[0]


def make_netns(path: Path) -> None:
    """A new network namespace kept by a bind mount on ``path`` (as `ip netns add` does in
    /run/netns), with lo up."""
    from runtime.network import in_netns, lo_up

    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(0o444)

    def make() -> None:
        hostsys.unshare(hostsys.CLONE_NEWNET, "unshare(CLONE_NEWNET)")
        hostsys.mount("/proc/thread-self/ns/net", path, None, hostsys.MS_BIND)

    _on_thread(make)
    in_netns(str(path), lo_up)


def remove_netns(path: str) -> None:
    """Unmount and remove; its links go when the last holder does. Idempotent."""
    hostsys.umount(path)
    Path(path).unlink(missing_ok=True)


def _lan_address(state: State, i: int) -> ipaddress.IPv4Interface:
    lan = ipaddress.IPv4Network(state.lan_cidr)
    return ipaddress.IPv4Interface(f"{lan.network_address + i}/{lan.prefixlen}")


def make_lan(state: State) -> None:
    from runtime.network.netlink import Rtnl

    assert state.lan_netns is not None
    make_netns(Path(state.lan_netns))
    with Rtnl(state.lan_netns) as rt:
        br = rt.ensure_bridge(LAN_BRIDGE)
        rt.ensure_addr(br.index, _lan_address(state, 1), LAN_BRIDGE)  # the LAN's own address


def join_lan(state: State, i: int, node: Node) -> None:
    """The node's namespace, a veth to the LAN bridge (``lan<i>`` there, eth0 here) with the
    node's address."""
    from runtime.network import Netns
    from runtime.network.netlink import Rtnl

    assert state.lan_netns is not None
    make_netns(Path(node.netns))
    port = f"lan{i}"
    with Rtnl(state.lan_netns) as lan:
        if lan.link(port) is None:
            lan.add_veth(port, NODE_IFNAME, Netns(path=node.netns))
        br, link = lan.link(LAN_BRIDGE), lan.link(port)
        assert br is not None and link is not None
        lan.set_up(link.index, port, master=br.index)
    with Rtnl(node.netns) as rt:
        dev = rt.link(NODE_IFNAME)
        assert dev is not None
        rt.ensure_addr(dev.index, ipaddress.IPv4Interface(f"{node.address}/{_prefix(state)}"))
        rt.set_up(dev.index, NODE_IFNAME)


def _prefix(state: State) -> int:
    return ipaddress.IPv4Network(state.lan_cidr).prefixlen


# ============================================================================= up


def up(spec: ClusterSpec, log: Callable[[str], None] = lambda _m: None) -> State:
    """Make the cluster and return when every node is Ready; on failure remove what was made
    and raise ClusterError."""
    spec.check()
    data = spec.data_dir.resolve()
    if load_state(data) is not None:
        raise ClusterError(f"cluster up in {data}", "a cluster is there: `corral cluster down`")
    made_dir = not data.exists()
    data.mkdir(parents=True, exist_ok=True)
    cid = uuid.uuid4().hex[:8]
    state = State(
        id=cid,
        data_dir=str(data),
        lan_cidr=spec.lan_cidr,
        cluster_cidr=spec.cluster_cidr,
        made_dir=made_dir,
        cgroup_parent=spec.cgroup_parent or f"corral-cluster-{cid}",
    )
    state.save()
    try:
        _up(spec, state, log)
    except BaseException as e:
        try:
            down(data)
        except ClusterError as again:
            log(f"cleaning up after the failed start: {again}")
        if isinstance(e, ClusterError):
            raise
        if isinstance(e, OSError | hostsys.HostError | ValueError):
            raise ClusterError("cluster up", e) from e
        raise
    return state


def _up(spec: ClusterSpec, state: State, log: Callable[[str], None]) -> None:
    from runtime import cgroups

    data = Path(state.data_dir)
    # The agents' pods go below <this process's cgroup>/<cgroup_parent>/<node>: record the
    # directories first (down removes them from wherever it runs).
    state.cgroup_paths = cgroups.manager_for(state.cgroup_parent, "cluster").paths()
    state.lan_netns = str(data / "netns" / "lan")
    state.save()
    log(f"LAN {spec.lan_cidr} in {state.lan_netns}")
    make_lan(state)
    for i in range(1, spec.nodes + 1):
        name = f"node-{i}"
        node = Node(
            name=name,
            address=str(_lan_address(state, i + 1).ip),
            netns=str(data / "netns" / name),
            data_dir=str(data / "nodes" / name),
            cgroup_parent=f"{state.cgroup_parent}/{name}",
        )
        state.nodes.append(node)
        state.save()
        join_lan(state, i, node)
        log(f"{name}: {node.address} in {node.netns}")

    port = free_port()
    state.server_url = f"https://127.0.0.1:{port}"
    server_log = data / "logs" / "server.log"
    argv = [
        *corral_argv(), "server",
        "--data-dir", str(data / "server"),
        "--https-listen-port", str(port),
        "--write-kubeconfig", str(state.kubeconfig),
        "--disable-agent",
        "--kubelet-netns", state.lan_netns,  # the nodes' kubelets are on the LAN
        # pods reach the API (the kubernetes Service) at the LAN bridge's address: the server
        # listens there too, on a socket made in the LAN's namespace
        "--advertise-address", str(_lan_address(state, 1).ip),
        "--advertise-netns", state.lan_netns,
        "--cluster-cidr", spec.cluster_cidr,
        "--service-cidr", spec.service_cidr,
        *spec.server_args(),
    ]  # fmt: skip
    state.server = spawn(argv, server_log)
    state.save()
    wait_log(state.server, server_log, "corral server", spec.timeout)
    log(f"server {state.server_url} (log {server_log})")
    token = (data / "server" / "token").read_text().strip()

    for node in state.nodes:
        argv = [
            *corral_argv(), "agent",
            "--server", state.server_url,
            "--data-dir", node.data_dir,
            "--node-name", node.name,
            "--node-ip", node.address,
            "--node-netns", node.netns,
            "--kubelet-port", str(KUBELET_PORT),
            "--cgroup-parent", node.cgroup_parent,
            "--cluster-cidr", spec.cluster_cidr,
            "--cluster-dns-upstream", "none",  # nothing leaves the machine
        ]  # fmt: skip
        if spec.images_dir is not None:
            argv += ["--images-dir", str(spec.images_dir.resolve())]
        node.proc = spawn(argv, data / "logs" / f"{node.name}.log", {"CORRAL_TOKEN": token})
        state.save()
    for node in state.nodes:
        assert node.proc is not None
        wait_log(node.proc, data / "logs" / f"{node.name}.log", f"agent {node.name}", spec.timeout)
    asyncio.run(_wait_ready(state, spec.timeout))
    log(f"{len(state.nodes)} nodes Ready; KUBECONFIG={state.kubeconfig}")


async def _wait_ready(state: State, timeout: float) -> None:
    from orchestrator.client import ApiClient, ClientError, load_kubeconfig
    from orchestrator.client.rest import NODES

    want = {n.name for n in state.nodes}
    deadline = time.monotonic() + timeout
    async with ApiClient(load_kubeconfig(state.kubeconfig), user_agent="corral-cluster") as c:
        while True:
            try:
                nodes, _ = await c.list_all(NODES)
            except ClientError as e:
                nodes, last = [], str(e)
            ready = {
                n["metadata"]["name"]
                for n in nodes
                if any(
                    cond.get("type") == "Ready" and cond.get("status") == "True"
                    for cond in (n.get("status") or {}).get("conditions") or []
                )
            }
            if want <= ready:
                return
            last = f"not Ready: {', '.join(sorted(want - ready))}"
            if time.monotonic() > deadline:
                raise ClusterError("wait for the nodes", last)
            for node in state.nodes:
                if node.proc is not None and not _alive(node.proc):
                    raise ClusterError(f"agent {node.name}", "exited (see its log)")
            await asyncio.sleep(0.2)


# ============================================================================= down


def down(data_dir: Path, log: Callable[[str], None] = lambda _m: None) -> bool:
    """Remove everything the cluster in ``data_dir`` has: agents, their pods, the server,
    cgroups, namespaces, mounts, the directory (if up made it). False if there was no cluster.
    Each step goes on after a failure; ClusterError names them all at the end (the state
    file then still lists what is left, and down can be run again)."""
    from orchestrator.kubelet import AgentConfig
    from orchestrator.kubelet.agent import remove_pods

    data = data_dir.resolve()
    state = load_state(data)
    if state is None:
        return False
    errors: list[str] = []

    def step(what: str, fn: Callable[[], object]) -> bool:
        try:
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - every step is tried; all are reported
            errors.append(f"{what}: {e}")
            return False

    for node in state.nodes:  # the agents first: nothing restarts a pod behind us
        step(f"stop agent {node.name}", lambda n=node: stop(n.proc))
    for node in state.nodes:
        cfg = AgentConfig(
            server="",
            token="",
            data_dir=Path(node.data_dir),
            node_netns=node.netns,
            cgroup_parent=node.cgroup_parent,
        )

        def pods(cfg: AgentConfig = cfg, name: str = node.name) -> None:
            problems = remove_pods(cfg)
            if problems:
                raise ClusterError(f"pods of {name}", "; ".join(problems))

        if Path(node.data_dir).exists():
            step(f"remove the pods of {node.name}", pods)
        log(f"{node.name}: agent stopped, pods removed")
    step("stop the server", lambda: stop(state.server))
    if state.cgroup_paths:
        step("remove cgroups", lambda: _remove_cgroups(state.cgroup_paths))
    for node in state.nodes:
        step(f"remove netns {node.netns}", lambda n=node: remove_netns(n.netns))
    if state.lan_netns:
        step(f"remove netns {state.lan_netns}", lambda: remove_netns(state.lan_netns or ""))
    step(f"unmount below {data}", lambda: hostsys.umount_all(data))
    if errors:
        raise ClusterError(f"cluster down in {data}", "; ".join(errors))
    if state.made_dir:
        shutil.rmtree(data, ignore_errors=True)
    else:
        for name in (STATE_FILE, "kubeconfig", "netns", "server", "nodes", "logs"):
            p = data / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    log(f"cluster in {data} removed")
    return True


def _remove_cgroups(paths: dict[str, str]) -> None:
    """Remove the cluster's cgroup directories, deepest first (pods' leftovers included)."""
    left = []
    for top in sorted(set(paths.values())):
        if not os.path.isdir(top):
            continue
        dirs = [d for d, _, _ in os.walk(top)]
        for d in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{d}: {e.strerror}")
    if left:
        raise ClusterError("remove cgroups", ", ".join(left))
