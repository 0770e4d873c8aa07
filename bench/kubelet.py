"""Suite kubelet: ``kubectl apply`` of pods bound to a node to all their containers Ready, and
the agent's memory.

A ``corral server`` (embedded SQLite, ``--disable-agent``) and a ``corral agent`` run as
processes of the bench, the agent's pods in a node network namespace the bench made; kubectl
is the machine's. The latency of one pod is ``end - t0``:

- **t0**: the wall clock before the fork of ``kubectl apply -f FILE`` (the peer: before the
  fork of ``corral pod run -d FILE``, the same pod on the same kind of node without the
  control plane: no API server, no kubelet).
- **end**: when the bench learns that all the pod's containers are ready: for the kubelet,
  the arrival of the watch event (a watch the bench holds on the pods) whose status says
  Ready; for the peer, the runtime's status read by polling every 10 ms.

Pods one after another (each deleted after it was measured, not timed), then bursts of
``--density`` pods applied by one ``kubectl apply`` of a List (each pod measured from the
hand-over). The agent's RSS is read from /proc with no pod and with the burst running.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import ssl
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from testkit.kubeagent import CORRAL, Agent, start_until_ready, stop_process
from testkit.net import free_port
from testkit.netns import node_netns

from .model import Latencies, LatencyCase, Status, SuiteResult, Table
from .podenv import PodEnv, manifest, pod_env
from .scheduler import cpu_seconds
from .stats import interleaved_rounds, percentile

NODE = "bench-node"
READY_TIMEOUT = 120.0  # seconds: a pod not ready by then is a failure, not a sample
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


class PodNotReady(OSError):
    pass


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Cluster:
    """The server, the agent, an admin TLS context and a watch recording when pods got
    Ready."""

    def __init__(self, e: PodEnv, stack: ExitStack) -> None:
        self.work = e.work / "cluster"
        self.work.mkdir()
        self.port = free_port()
        self.kubeconfig = self.work / "kubeconfig"
        argv = [CORRAL, "server", "--data-dir", str(self.work / "server"),
                "--https-listen-port", str(self.port), "--write-kubeconfig",
                str(self.kubeconfig), "--disable-agent"]  # fmt: skip
        self.server = start_until_ready(argv, self.work / "server.log", "corral server")
        stack.callback(stop_process, self.server)
        netns = node_netns()  # the agent's own node namespace (the peer has e.corral_node)
        stack.callback(netns.close)
        self.agent = Agent(
            f"https://127.0.0.1:{self.port}",
            self.work / "server" / "token",
            self.work / "agent",
            NODE,
            netns.path,
            e.cgroup_parent + "-agent",
            extra=("--kubelet-port", str(free_port()), "--pod-cidr", "10.252.0.0/23"),
        )
        self.agent.images_dir.mkdir(parents=True)
        shutil.copy(e.image_tar, self.agent.images_dir / "image.tar")
        stack.callback(self._remove_pods)
        stack.callback(self.agent.kill)
        self.agent.start()
        self.ssl = self._ssl()
        self.ready: dict[str, float] = {}
        self.created: dict[str, float] = {}  # the arrival of the event first showing the pod
        self.cond = threading.Condition()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()
        stack.callback(self._stop.set)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.work),
                    "KUBECONFIG": str(self.kubeconfig)}  # fmt: skip

    def _ssl(self) -> ssl.SSLContext:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        cert, key = self.work / "admin.crt", self.work / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
        return ctx

    def _watch(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl)
            try:
                conn.request("GET", "/api/v1/pods?watch=1&timeoutSeconds=600")
                resp = conn.getresponse()
                while not self._stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    now = time.time()
                    ev = json.loads(line)
                    pod = ev.get("object") or {}
                    st = pod.get("status") or {}
                    cs = st.get("containerStatuses") or []
                    name = pod["metadata"]["name"]
                    if ev.get("type") == "ADDED":
                        with self.cond:
                            self.created.setdefault(name, now)
                    if ev.get("type") != "DELETED" and cs and all(c.get("ready") for c in cs):
                        with self.cond:
                            self.ready.setdefault(name, now)
                            self.cond.notify_all()
            except (OSError, ValueError, http.client.HTTPException):
                time.sleep(0.2)
            finally:
                conn.close()

    def kubectl(self, *args: str, input: str | None = None) -> None:
        p = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                           env=self.env, timeout=300)  # fmt: skip
        if p.returncode != 0:
            raise OSError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")

    def wait_ready(self, names: list[str]) -> list[float]:
        deadline = time.monotonic() + READY_TIMEOUT
        with self.cond:
            while not all(n in self.ready for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if n not in self.ready]
                    raise PodNotReady(f"pods not ready: {missing[:5]}; see {self.agent.log}")
                self.cond.wait(left)
            return [self.ready[n] for n in names]

    def runtime_pods(self) -> int:
        from orchestrator.kubelet.agent import AgentConfig, pod_options
        from runtime.pod import api

        cfg = AgentConfig("", "", self.agent.data_dir, cgroup_parent=self.agent.cgroup_parent)
        return len(api.list_pods(pod_options(cfg, self.agent.data_dir / "network.json")))

    def delete(self, names: list[str]) -> None:
        self.kubectl("delete", "pod", "--wait=true", *names)
        deadline = time.monotonic() + READY_TIMEOUT
        while self.runtime_pods() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _remove_pods(self) -> None:
        from orchestrator.kubelet.agent import AgentConfig, pod_options
        from runtime.pod import api

        cfg = AgentConfig("", "", self.agent.data_dir, node_netns=self.agent.node_netns,
                          cgroup_parent=self.agent.cgroup_parent)  # fmt: skip
        opts = pod_options(cfg, self.agent.data_dir / "network.json")
        for st in api.list_pods(opts):
            api.remove(st.uid, opts, force=True)
        api.gc(opts)


def _manifest(name: str) -> dict[str, Any]:
    m = manifest(name)
    m["spec"]["nodeName"] = NODE
    return m


def kubelet_suite(p: Any) -> SuiteResult:
    from runtime.pod import api

    from .host import remove_cgroup_everywhere
    from .suites import SUITES

    burst = p.density
    with pod_env(True, with_podman=False) as e, ExitStack() as stack:
        stack.callback(remove_cgroup_everywhere, e.cgroup_parent + "-agent")
        c = Cluster(e, stack)
        opts = e.corral_opts("pods-cli", True)
        n = iter(range(10**9))
        idle_rss = _rss_kib(c.agent.proc.pid) if c.agent.proc else 0
        stack_rss: list[int] = []  # the agent's RSS with a burst running
        agent_pid = c.agent.proc.pid if c.agent.proc else 0
        # (pods, agent CPU seconds from the apply to all Ready, from there to all gone), by
        # whether the pods came one at a time or in a burst
        cpu: dict[bool, list[float]] = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}
        # each pod's creation (watch) -> Ready, and the last pod's creation after t0, by whether
        # the pods came one at a time or in a burst
        from_created: dict[bool, list[float]] = {False: [], True: []}
        last_created: list[float] = []

        def kubelet_pods(count: int) -> list[float]:
            names = [f"k{next(n)}" for _ in range(count)]
            doc = {"apiVersion": "v1", "kind": "List", "items": [_manifest(x) for x in names]}
            cpu0 = cpu_seconds(agent_pid)
            t0 = time.time()
            c.kubectl("apply", "-f", "-", input=json.dumps(doc))
            ends = c.wait_ready(names)
            cpu1 = cpu_seconds(agent_pid)
            with c.cond:
                made = [c.created.get(x, t0) for x in names]
            from_created[count > 1] += [end - m for end, m in zip(ends, made, strict=True)]
            if count > 1:
                last_created.append(max(made) - t0)
            if count > 1:
                stack_rss.append(_rss_kib(agent_pid) if agent_pid else 0)
            c.delete(names)
            acc = cpu[count > 1]
            acc[0] += count
            acc[1] += cpu1 - cpu0
            acc[2] += cpu_seconds(agent_pid) - cpu1
            return [end - t0 for end in ends]

        def peer_pods(count: int) -> list[float]:
            names = [f"p{next(n)}" for _ in range(count)]
            files = [e.manifest_file(x) for x in names]
            t0 = time.time()
            procs = [subprocess.Popen(e.corral_cli(opts, "run", "-d", f).argv, env=e.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for f in files]  # fmt: skip
            ends: dict[str, float] = {}
            deadline = time.monotonic() + READY_TIMEOUT
            while len(ends) < count:
                if time.monotonic() > deadline:
                    raise PodNotReady(f"corral pod run -d: not ready: {set(names) - set(ends)}")
                for x in names:
                    if x in ends:
                        continue
                    try:
                        st = api.status(x, opts)
                    except api.PodError:
                        continue
                    if st.containers and all(cs.state == "Running" and cs.ready
                                             for cs in st.containers):  # fmt: skip
                        ends[x] = time.time()
                time.sleep(0.01)
            for proc in procs:
                proc.wait()
            for x in names:
                api.remove(x, opts, force=True)
            return [ends[x] - t0 for x in names]

        runners = {"corral agent (kubectl apply)": kubelet_pods, "corral pod run -d": peer_pods}
        for fn in runners.values():
            for _ in range(p.warmup):
                fn(1)
        from_created[False].clear()  # the warm-up's are not figures
        seq: dict[str, list[float]] = {k: [] for k in runners}
        for order in interleaved_rounds(list(runners), p.pods):
            for label in order:
                seq[label] += runners[label](1)
        at_once: dict[str, list[float]] = {k: [] for k in runners}
        for order in interleaved_rounds(list(runners), p.bursts):
            for label in order:
                at_once[label] += runners[label](burst)
        busy_rss = max(stack_rss) if stack_rss else 0
        server_rss = _rss_kib(c.server.pid)
    notes = (
        "Latency: t0 before the fork of `kubectl apply` (peer: `corral pod run -d`, the same "
        "pod without API server or kubelet) -> the bench sees all containers ready (kubelet: "
        "the watch event with Ready; peer: the runtime's status, polled every 10 ms). Image "
        "already on the node; each pod deleted after it was measured (not timed).",
    )
    return SuiteResult(
        name="kubelet",
        description=SUITES["kubelet"],
        status=Status.OK,
        latencies=(
            LatencyCase(
                f"{p.pods} pods one after another",
                p.warmup,
                tuple(Latencies(k, tuple(v)) for k, v in seq.items()),
                notes,
            ),
            LatencyCase(
                f"{burst} pods in one kubectl apply ({p.bursts} round(s))",
                0,
                tuple(Latencies(k, tuple(v)) for k, v in at_once.items()),
                notes,
            ),
        ),  # fmt: skip
        tables=(
            Table(
                "Agent memory (VmRSS)",
                ("process", "RSS"),
                (
                    ("corral agent, no pod (idle)", f"{idle_rss / 1024:.1f} MiB"),
                    (f"corral agent, {burst} pods running", f"{busy_rss / 1024:.1f} MiB"),
                    ("corral server (for scale)", f"{server_rss / 1024:.1f} MiB"),
                ),
                ("The agent is one Python process; its pods run under their own monitors.",),
                {"idle_kib": idle_rss, "busy_kib": busy_rss, "server_kib": server_rss},
            ),
            _cpu_table(cpu, burst),
            _created_table(from_created, last_created, burst),
        ),
    )


def _created_table(
    from_created: dict[bool, list[float]], last_created: list[float], burst: int
) -> Table:
    def row(label: str, xs: list[float]) -> tuple[str, str, str]:
        if not xs:
            return (label, "", "")
        return (label, f"{1000 * percentile(xs, 50):,.0f}", f"{1000 * percentile(xs, 99):,.0f}")

    last = f"{1000 * max(last_created):,.0f} ms" if last_created else ""
    return Table(
        "Per pod from its creation to Ready (the pod startup SLO's measure)",
        ("pods", "p50 ms", "p99 ms"),
        (
            row("one after another", from_created[False]),
            row(f"{burst} in one kubectl apply", from_created[True]),
        ),
        (
            "From the arrival of the watch event first showing the pod (kubectl has created it)"
            " to the one showing all its containers ready, as Kubernetes' pod startup SLO counts"
            " (and the cluster suite): the latencies above count from before the fork of"
            " kubectl, which creates a List's pods one after another (the last of a burst was"
            f" created {last} after t0, the worst round).",
        ),
        {
            "seq_p50_s": percentile(from_created[False], 50) if from_created[False] else None,
            "seq_p99_s": percentile(from_created[False], 99) if from_created[False] else None,
            "burst_p50_s": percentile(from_created[True], 50) if from_created[True] else None,
            "burst_p99_s": percentile(from_created[True], 99) if from_created[True] else None,
            "burst_last_created_s": max(last_created) if last_created else None,
        },
    )


def _cpu_table(cpu: dict[bool, list[float]], burst: int) -> Table:
    def row(label: str, acc: list[float]) -> tuple[str, str, str]:
        pods = max(int(acc[0]), 1)
        return (label, f"{1000 * acc[1] / pods:.1f} ms", f"{1000 * acc[2] / pods:.1f} ms")

    return Table(
        "Agent CPU per pod",
        ("pods", "apply -> Ready", "delete -> gone"),
        (
            row("one after another (with the warm-up)", cpu[False]),
            row(f"{burst} in one kubectl apply", cpu[True]),
        ),
        (
            "user + system time of the agent process (every thread, and its reaped children) "
            "from the fork of `kubectl apply` to all Ready, and from there to the runtime "
            "having no pod left, divided by the pods; the pods' monitors and containers are "
            "not the agent's and not counted.",
        ),
        {
            "seq_pods": cpu[False][0],
            "seq_start_s": cpu[False][1],
            "seq_delete_s": cpu[False][2],
            "burst_pods": cpu[True][0],
            "burst_start_s": cpu[True][1],
            "burst_delete_s": cpu[True][2],
        },
    )
