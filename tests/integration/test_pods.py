"""Pods with real monitors, mounts, cgroups and network namespaces (issue #5's "Done when").

Each test gets a pod root, an image store and a cgroup parent of its own (a relative one: below
this process's cgroup in every hierarchy), and, when it builds a network, a node network
namespace of its own (held by a sleeping process) with the IPAM state in its tmp directory.
The finalizer force-removes every pod, runs ``pod gc`` and checks that nothing is left: no
mount below the tmp directory, no cgroup, no veth, no IPAM entry, no monitor or container
process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from runtime.pod import api
from runtime.pod.hostfacts import min_oom_score_adj
from runtime.pod.manifest import parse_pod
from runtime.pod.prepare import PodOptions, PrepareError, mounts_under
from runtime.pod.qos import QOSClass, oom_score_adj
from testkit.imagebuild import config_for, docker_files, tar_tree, write_tar
from testkit.wait import until as wait_until
from tests import tlsserver
from tests.conftest import REPO, leftover_cgroups

pytestmark = pytest.mark.root

IMAGE = "corral-test:latest"
CORRAL = str(Path(sys.executable).parent / "corral")
WAIT = 90.0  # seconds: generous upper bound for a condition, never an assertion on speed


def monitor_exe() -> str:
    from runtime.pod.monitor import monitor_path

    try:
        return str(monitor_path())
    except FileNotFoundError as e:
        pytest.skip(f"the pod monitor is not built yet: {e}")


@pytest.fixture(scope="session")
def image_tar(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-archive of the busybox + corral-test rootfs, tagged corral-test:latest."""
    layer = tar_tree(rootfs)
    files, _ = docker_files([layer], config_for([layer], Cmd=["sh"]), repo_tags=[IMAGE])
    return write_tar(tmp_path_factory.mktemp("image") / "corral-test.tar", files)


def until(what: str, cond: Callable[[], Any], timeout: float = WAIT) -> Any:
    return wait_until(what, cond, timeout)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class NodeNs:
    """A node network namespace held by ``unshare -n sleep``; its IPAM state in ``state``."""

    proc: subprocess.Popen[bytes]
    config: Path
    state: Path

    @property
    def path(self) -> str:
        return f"/proc/{self.proc.pid}/ns/net"


@dataclass
class Pods:
    tmp: Path
    opts: PodOptions
    tag: str
    node: NodeNs | None = None
    pids: set[int] = field(default_factory=set)  # every monitor and container pid seen

    def manifest(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict:
        for c in containers + spec.get("initContainers", []):
            c.setdefault("image", IMAGE)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": containers, **spec},
        }

    def run(self, raw: dict[str, Any]) -> str:
        pod = parse_pod(raw, base_dir=str(self.tmp))
        return api.run(pod, self.opts, raw, str(self.tmp)).uid

    def status(self, ref: str) -> api.PodStatus:
        st = api.status(ref, self.opts)
        self.pids.update(p for p in [st.monitor_pid] + [c.pid for c in st.all_containers] if p)
        return st

    def wait(self, ref: str) -> api.PodStatus:
        until(f"pod {ref} to finish", lambda: api.wait(ref, self.opts, timeout=0))
        return self.status(ref)

    def container(self, ref: str, name: str) -> api.ContainerStatus:
        return self.status(ref).container(name)

    def running_pid(self, ref: str, name: str) -> int:
        """The pid of a running container. Fails at once, saying why, when the pod cannot
        get there any more (it ended, or lost its monitor), and with the last status and the
        monitor's log when the wait is over."""
        last: list[api.PodStatus] = []

        def check() -> int | None:
            st = self.status(ref)
            last[:] = [st]
            pid = st.container(name).pid
            if pid:
                return pid
            if st.phase in ("Succeeded", "Failed", "Unknown") or st.location != "run":
                raise AssertionError(f"{name} will not run: {self._describe(st)}")
            return None

        try:
            return until(f"{name} to run", check)
        except AssertionError as e:
            if "will not run" in str(e) or not last:
                raise
            raise AssertionError(f"{e}: {self._describe(last[0])}") from None

    def _describe(self, st: api.PodStatus) -> str:
        log = Path(self.opts.root) / st.location / st.uid / "monitor.log"
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
        return f"{json.dumps(st.to_json())}; monitor.log: {tail}"

    def cli(self, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CORRAL, "pod", *self.global_args(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )

    def global_args(self) -> list[str]:
        out = ["--root", self.opts.root, "--store", self.opts.image_root]
        out += ["--cgroup-parent", self.opts.cgroup_parent]
        if self.opts.registries_conf:
            out += ["--registries-conf", self.opts.registries_conf]
        if self.node is None:
            out.append("--no-network")
        else:
            out += ["--network-config", str(self.node.config), "--node-netns", self.node.path]
        return out

    def with_network(self, cidr: str = "10.99.7.0/24") -> NodeNs:
        proc = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
        own = os.readlink("/proc/self/ns/net")
        until("the node namespace", lambda: os.readlink(f"/proc/{proc.pid}/ns/net") != own)
        state = self.tmp / "network"
        config = self.tmp / "network.json"
        config.write_text(json.dumps({"podCIDR": cidr, "stateDir": str(state)}))
        self.node = NodeNs(proc, config, state)
        self.opts = PodOptions(
            **{
                **self.opts.to_json(),
                "runtime": (),
                "network": True,
                "network_config": str(config),
                "node_netns": self.node.path,
            }
        )
        return self.node


def _network_leftovers(node: NodeNs) -> dict[str, Any]:
    from runtime.network import NodeNetwork, load_config
    from runtime.network.netlink import Rtnl

    net = NodeNetwork(load_config(node.config), node.path)
    with Rtnl(node.path) as rt:
        veths = sorted(lk.name for lk in rt.links() if lk.name.startswith("cr"))
    return {"veths": veths, "addresses": net.ipam.allocations(), "records": net.pods()}


@pytest.fixture
def pods(rootfs: Path, image_tar: Path, tmp_path: Path) -> Iterator[Pods]:
    monitor_exe()
    from images.store import Store

    tag = f"cpt{uuid.uuid4().hex[:6]}"
    conf = tmp_path / "registries.conf"
    conf.write_text("")  # not the host's: no image of these tests comes from a registry
    opts = PodOptions(
        root=str(tmp_path / "pods"),
        image_root=str(tmp_path / "images"),
        registries_conf=str(conf),
        cgroup_parent=tag,
        network=False,
        backoff_initial_ms=100,
        backoff_max_ms=400,
    )
    Store(opts.image_root).import_path(image_tar)
    p = Pods(tmp_path, opts, tag)
    try:
        yield p
    finally:
        try:
            for st in api.list_pods(p.opts):
                p.pids.update(x for x in [st.monitor_pid] + [c.pid for c in st.all_containers] if x)
                api.remove(st.uid, p.opts, force=True)
            gc = api.gc(p.opts)
            mounts = mounts_under(tmp_path)
            cgroups = pod_cgroups(tag)
            procs = sorted(pid for pid in p.pids if alive(pid))
            net = _network_leftovers(p.node) if p.node is not None else {}
        finally:
            for mp in mounts_under(tmp_path):
                subprocess.run(["umount", "-l", mp], check=False)
            for path in sorted(leftover_cgroups(tag), key=len, reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            if p.node is not None:
                p.node.proc.kill()
                p.node.proc.wait()
        assert not gc.errors, gc.errors
        assert not mounts, f"mounts left behind: {mounts}"
        assert not cgroups, f"cgroups left behind: {cgroups}"
        assert not procs, f"processes left behind: {procs}"
        assert not any(net.values()), f"network left behind: {net}"


def pod_cgroups(tag: str) -> list[str]:
    """Cgroups below the test's cgroup parent (which itself stays until the fixture ends)."""
    out = []
    for top in leftover_cgroups(tag):
        for dirpath, dirnames, _ in os.walk(top):
            out += [os.path.join(dirpath, d) for d in dirnames]
    return out


def sh(name: str, script: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "command": ["sh", "-c", script], **kw}


# ============================================================================= the pod sandbox


def test_init_containers_in_order_and_a_shared_empty_dir(pods: Pods) -> None:
    work = [{"name": "work", "mountPath": "/work"}]
    raw = pods.manifest(
        "init",
        [sh("app", "cat /work/order; echo app >> /work/order", volumeMounts=work)],
        restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
        initContainers=[
            sh("first", "echo first > /work/order", volumeMounts=work),
            sh(
                "second",
                "grep -q first /work/order && echo second >> /work/order",
                volumeMounts=work,
            ),
        ],
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert [c.reason for c in st.init_containers] == ["Completed", "Completed"]
    assert api.logs(uid, pods.opts, "app") == ["first", "second"]
    assert st.containers[0].state == "Terminated" and st.containers[0].exit_code == 0
    # the pod's end deleted its three containers from the runtime (the teardown does it)
    from runtime.pod.store import PodStore
    from runtime.state import list_ids

    assert list_ids(str(PodStore(pods.opts.root).get(uid).path / "runtime")) == []


def test_two_containers_talk_over_localhost(pods: Pods) -> None:
    raw = pods.manifest(
        "talk",
        [
            sh("server", "echo hello-from-server | nc -l -p 7070"),
            sh("client", "until nc 127.0.0.1 7070 </dev/null; do sleep 0.1; done"),
        ],
        restartPolicy="Never",
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert "hello-from-server" in api.logs(uid, pods.opts, "client")


def test_memory_empty_dir_and_config_sources(pods: Pods) -> None:
    (pods.tmp / "cfg").mkdir()
    (pods.tmp / "cfg" / "greeting").write_text("hi\n")
    (pods.tmp / "token").write_text("s3cret\n")
    raw = pods.manifest(
        "vols",
        [
            sh(
                "c",
                "grep ' /mem ' /proc/mounts; cat /cfg/greeting /sec/token; hostname",
                volumeMounts=[
                    {"name": "mem", "mountPath": "/mem"},
                    {"name": "cfg", "mountPath": "/cfg"},
                    {"name": "sec", "mountPath": "/sec"},
                ],
            )
        ],
        restartPolicy="Never",
        hostname="myhost",
        volumes=[
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
            {"name": "cfg", "configMap": {"name": "app"}},
            {"name": "sec", "secret": {"secretName": "db"}},
        ],
    )
    raw["metadata"]["annotations"] = {
        "configmap.corral.io/app": "./cfg",
        "secret.corral.io/db": "./token",
    }
    uid = pods.run(raw)
    assert pods.wait(uid).phase == "Succeeded"
    out = api.logs(uid, pods.opts, "c")
    assert out[0].startswith("tmpfs /mem tmpfs") and "size=4096k" in out[0]
    assert out[1:] == ["hi", "s3cret", "myhost"]


def test_a_container_named_pod(pods: Pods) -> None:
    raw = pods.manifest("named", [sh("pod", "echo hi")], restartPolicy="Never")
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    c = st.container("pod")
    assert (c.state, c.reason, c.exit_code) == ("Terminated", "Completed", 0)
    assert api.logs(uid, pods.opts, "pod") == ["hi"]


# ============================================================================= restarts


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts"),
    [("Never", 1, False), ("OnFailure", 0, False), ("OnFailure", 3, True), ("Always", 0, True)],
)
def test_restart_policy(pods: Pods, policy: str, exit_code: int, restarts: bool) -> None:
    raw = pods.manifest("rp", [sh("c", f"echo run; exit {exit_code}")], restartPolicy=policy)
    uid = pods.run(raw)
    if not restarts:
        st = pods.wait(uid)
        c = st.containers[0]
        assert c.restart_count == 0 and c.exit_code == exit_code
        assert st.phase == ("Succeeded" if exit_code == 0 else "Failed")
        assert c.reason == ("Completed" if exit_code == 0 else "Error")
        return
    until("two restarts", lambda: pods.container(uid, "c").restart_count >= 2)
    assert api.logs(uid, pods.opts, "c", previous=True) == ["run"]
    api.stop(uid, pods.opts)
    assert pods.status(uid).location == "exited"


def test_a_restarted_container_gets_a_fresh_rootfs_and_keeps_its_volumes(pods: Pods) -> None:
    script = (
        "[ -e /written-by-a-run ] && echo stale-rootfs; touch /written-by-a-run; "
        "echo x >> /data/runs; n=$(wc -l < /data/runs); echo runs=$n; [ $n -ge 2 ]"
    )
    raw = pods.manifest(
        "fresh",
        [sh("c", script, volumeMounts=[{"name": "data", "mountPath": "/data"}])],
        restartPolicy="OnFailure",
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    uid = pods.run(raw)
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    assert st.containers[0].restart_count == 1
    assert api.logs(uid, pods.opts, "c", previous=True) == ["runs=1"]
    assert api.logs(uid, pods.opts, "c") == ["runs=2"]  # no stale-rootfs: a fresh layer


def test_liveness_probe_failure_restarts(pods: Pods) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1}
    probe["failureThreshold"] = 1
    raw = pods.manifest("live", [sh("c", "echo started; sleep 1000", livenessProbe=probe)])
    uid = pods.run(raw)
    until("a restart by the liveness probe", lambda: pods.container(uid, "c").restart_count >= 1)
    assert api.logs(uid, pods.opts, "c", previous=True) == ["started"]
    api.stop(uid, pods.opts, grace=0)


def test_readiness_probe_sets_ready(pods: Pods) -> None:
    """Not ready while running and the probe fails (seen to have run twice, so its first
    result is in), ready once it succeeds: a container without the probe would be ready at
    once."""
    check = "echo probed >> /tmp/probed; cat /tmp/ready"
    probe = {"exec": {"command": ["sh", "-c", check]}, "periodSeconds": 1}
    raw = pods.manifest("ready", [sh("c", "sleep 1000", readinessProbe=probe)])
    uid = pods.run(raw)
    pid = pods.running_pid(uid, "c")
    probed = Path(f"/proc/{pid}/root/tmp/probed")
    until("two probes", lambda: probed.exists() and len(probed.read_text().split()) >= 2)
    c = pods.container(uid, "c")
    assert c.pid == pid and not c.ready, c
    Path(f"/proc/{pid}/root/tmp/ready").write_text("")
    until("ready", lambda: pods.container(uid, "c").ready)
    api.stop(uid, pods.opts, grace=0)


def test_the_status_watch_reports_what_the_monitor_writes(pods: Pods) -> None:
    """``NodePods.watch_status``: the node's one status watch becomes readable, naming the
    pod, when its monitor writes a change (here: the container exits), with nobody reading
    the pod's status in between (the kubelet's notification instead of polling)."""
    go = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3"
    uid = pods.run(pods.manifest("watched", [sh("c", go)], restartPolicy="Never"))
    node = api.NodePods(pods.opts)
    watch = node.status_watch()
    try:
        node.watch_status(uid)
        pid = pods.running_pid(uid, "c")
        watch.read()  # what came before: seen
        Path(f"/proc/{pid}/root/tmp/go").write_text("")
        seen: set[str] = set()
        while uid not in seen:
            ready, _, _ = select.select([watch.fileno()], [], [], WAIT)
            assert ready, "the exit of the container was not reported"
            seen |= watch.read()
        c = node.status(uid).container("c")
        assert (c.state, c.exit_code) == ("Terminated", 3), c
        pods.wait(uid)
        with pytest.raises(api.PodError):
            node.watch_status("no-such-pod")
    finally:
        watch.close()


def test_https_readiness_probe(pods: Pods) -> None:
    """The kubelet's https probe: GET over TLS, the self-signed certificate not verified."""
    probe = {"httpGet": {"scheme": "HTTPS", "port": 8443, "path": "/healthz"}}
    probe["periodSeconds"] = 1
    uid = pods.run(pods.manifest("tls", [sh("c", "sleep 1000", readinessProbe=probe)]))
    monitor = pods.status(uid).monitor_pid
    server = tlsserver.start(f"/proc/{monitor}/ns/net", pods.tmp, port=8443)  # the pod's net
    try:
        until("ready", lambda: pods.container(uid, "c").ready)
        assert server.requests()[-1]["headers"]["User-Agent"] == "kube-probe/corral"
    finally:
        server.stop()
    api.stop(uid, pods.opts, grace=0)


def test_oom_killed_reason(pods: Pods) -> None:
    res = {"limits": {"memory": "32Mi"}}
    raw = pods.manifest(
        "oom", [{"name": "c", "command": ["corral-test", "alloc", "256"], "resources": res}],
        restartPolicy="Never",
    )  # fmt: skip
    uid = pods.run(raw)
    st = pods.wait(uid)
    c = st.containers[0]
    assert c.reason == "OOMKilled", c
    assert st.phase == "Failed"


# ============================================================================= QoS


@pytest.mark.parametrize(
    ("resources", "qos", "subdir"),
    [
        ({"limits": {"cpu": "500m", "memory": "64Mi"}}, QOSClass.GUARANTEED, ""),
        ({"requests": {"memory": "64Mi"}}, QOSClass.BURSTABLE, "burstable/"),
        ({}, QOSClass.BEST_EFFORT, "besteffort/"),
    ],
)
def test_qos_class_cgroups_and_oom_score_adj(
    pods: Pods, resources: dict[str, Any], qos: QOSClass, subdir: str
) -> None:
    raw = pods.manifest(
        "qos", [{"name": "c", "command": ["sleep", "1000"], "resources": resources}]
    )
    uid = pods.run(raw)
    pid = pods.running_pid(uid, "c")
    st = pods.status(uid)
    assert st.qos_class == qos.value
    with open("/proc/meminfo") as f:
        capacity = int(next(x for x in f if x.startswith("MemTotal:")).split()[1]) * 1024
    want = oom_score_adj(qos, 64 * 2**20 if qos is not QOSClass.BEST_EFFORT else 0, capacity)
    want = max(want, min_oom_score_adj())  # 0 where we lack CAP_SYS_RESOURCE (this VM)
    assert int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == want
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"/{pods.tag}/{subdir}pod{uid}/c\n" in cgroup, cgroup
    if qos is QOSClass.GUARANTEED:
        # The pod cgroup (the container's parent) carries the pod's memory limit: v1's
        # memory hierarchy where there is one, else the unified hierarchy's memory.max.
        lines = dict(line.split(":", 2)[1:] for line in cgroup.splitlines())
        if "memory" in lines:
            pod_mem = Path("/sys/fs/cgroup/memory" + lines["memory"]).parent
            limit = pod_mem / "memory.limit_in_bytes"
        else:
            pod_mem = Path("/sys/fs/cgroup" + lines[""]).parent
            limit = pod_mem / "memory.max"
        assert int(limit.read_text()) == 64 * 2**20
    api.stop(uid, pods.opts, grace=0)


# ============================================================================= logs


def test_cri_logs_with_rotation(pods: Pods) -> None:
    pods.opts = PodOptions(**{**pods.opts.to_json(), "runtime": (), "log_max_bytes": 2048,
                              "log_max_files": 2})  # fmt: skip
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; echo err >&2"
    uid = pods.run(pods.manifest("logs", [sh("c", script)], restartPolicy="Never"))
    pods.wait(uid)
    log_dir = Path(pods.opts.root) / "exited" / uid / "logs" / "c"
    names = sorted(os.listdir(log_dir))
    assert names == ["0.log", "0.log.1", "0.log.2"], names
    cri = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*$")
    for name in names:
        text = (log_dir / name).read_text()
        assert all(cri.match(line) for line in text.splitlines()), name
        assert len(text) <= 2048 + 16 * 1024
    lines = api.logs(uid, pods.opts, "c")
    assert lines[-1] == "err" and lines[-2] == "line-299"
    numbers = [int(x.split("-")[1]) for x in lines[:-1]]
    assert numbers == list(range(numbers[0], 300)) and numbers[0] > 0  # the oldest rotated away


# ============================================================================= lifecycle


def test_cli_killed_pod_keeps_running(pods: Pods) -> None:
    manifest = pods.tmp / "pod.yaml"
    raw = pods.manifest("survivor", [sh("c", "echo alive; sleep 1000")])
    manifest.write_text(json.dumps(raw))
    cli = subprocess.Popen(
        [CORRAL, "pod", *pods.global_args(), "run",
         str(manifest)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert cli.stdout is not None
        assert cli.stdout.readline().strip() == b"alive"
        cli.kill()
        cli.wait()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    st = pods.status("survivor")
    assert st.phase == "Running" and st.containers[0].state == "Running"
    assert alive(st.monitor_pid) and alive(st.containers[0].pid)
    res = pods.cli("ls")
    assert res.returncode == 0 and re.search(r"survivor\s+Running\s+1/1", res.stdout), res.stdout
    res = pods.cli("inspect", "-o", "json", "survivor")
    status = json.loads(res.stdout)["status"]
    assert status["phase"] == "Running" and status["qosClass"] == "BestEffort"
    assert "running" in status["containerStatuses"][0]["state"]
    res = pods.cli("exec", "survivor", "-c", "c", "--", "sh", "-c", "echo in-pod; exit 7")
    assert res.returncode == 7 and res.stdout == "in-pod\n"
    res = pods.cli("stop", "-t", "0", "survivor")
    assert res.returncode == 0, res.stderr
    assert not alive(st.monitor_pid) and not alive(st.containers[0].pid)
    assert pods.status("survivor").location == "exited"
    res = pods.cli("rm", "survivor")
    assert res.returncode == 0, res.stderr
    assert api.list_pods(pods.opts) == []


def test_tty_container_logs_its_terminal(pods: Pods) -> None:
    """tty: true: the container's stdout is a terminal (the monitor's pty, logged as stdout
    with the terminal's \r\n, as conmon); a container without it gets pipes."""
    script = "[ -t 1 ] && echo is-a-tty || echo no-tty; tty || true"
    uid = pods.run(
        pods.manifest("tty", [sh("t", script, tty=True), sh("p", script)], restartPolicy="Never")
    )
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    t = api.logs(uid, pods.opts, "t")
    assert t[0].rstrip("\r") == "is-a-tty" and t[1].rstrip("\r").startswith("/dev/pts/"), t
    assert t[0].endswith("\r")  # the terminal's line discipline, kept as text
    p = api.logs(uid, pods.opts, "p")
    assert p[0] == "no-tty", p


def test_foreground_run_streams_logs(pods: Pods) -> None:
    manifest = pods.tmp / "pod.yaml"
    raw = pods.manifest("fg", [sh("c", "echo one; echo two")], restartPolicy="Never")
    manifest.write_text(json.dumps(raw))
    res = pods.cli("run", str(manifest))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "one\ntwo\n"
    assert "Succeeded" in res.stderr


def test_gc_after_the_monitor_died(pods: Pods) -> None:
    node = pods.with_network()
    raw = pods.manifest(
        "orphan",
        [sh("c", "sleep 1000", volumeMounts=[{"name": "m", "mountPath": "/m"}])],
        volumes=[{"name": "m", "emptyDir": {"medium": "Memory"}}],
    )
    uid = pods.run(raw)
    pid = pods.running_pid(uid, "c")
    st = pods.status(uid)
    assert st.pod_ip is not None
    os.kill(st.monitor_pid or 0, signal.SIGKILL)
    until("the monitor to die", lambda: not alive(st.monitor_pid))
    assert pods.status(uid).phase == "Unknown"
    assert alive(pid)  # the container outlives its monitor ...
    res = pods.cli("gc")
    assert res.returncode == 0, res.stderr
    assert f"finished {uid}" in res.stdout
    assert not alive(pid)  # ... until gc
    assert not mounts_under(pods.tmp / "pods")
    assert not pod_cgroups(pods.tag)
    assert not any(_network_leftovers(node).values())
    assert api.list_pods(pods.opts) == []  # exited pods are removed by gc


def test_ls_after_the_monitor_was_killed(pods: Pods) -> None:
    """READY and PHASE come from the kernel (the monitor's lock, the container's process in
    the pod's cgroup), not from the status files the dead monitor left saying 2/2."""
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    raw = pods.manifest(
        "lost",
        [sh("a", "sleep 1000", readinessProbe=probe), sh("b", "sleep 1000", readinessProbe=probe)],
    )
    uid = pods.run(raw)
    until("both ready", lambda: all(c.ready for c in pods.status(uid).containers))
    res = pods.cli("ls")
    assert re.search(r"lost\s+Running\s+2/2", res.stdout), res.stdout
    pid_a, pid_b = (pods.running_pid(uid, n) for n in ("a", "b"))
    # the monitor's pid from the pod's own files; it is this pod's monitor, started by us
    run_dir = Path(pods.opts.root) / "run" / uid
    monitor = int((run_dir / "monitor.pid").read_text())
    assert str(run_dir) in Path(f"/proc/{monitor}/cmdline").read_text()
    os.kill(monitor, signal.SIGKILL)
    until("the monitor to die", lambda: not alive(monitor))
    res = pods.cli("ls")
    assert res.returncode == 0 and re.search(r"lost\s+Unknown\s+0/2", res.stdout), res.stdout
    st = json.loads(pods.cli("inspect", "-o", "json", "lost").stdout)["status"]
    assert st["phase"] == "Unknown" and st["reason"] == "MonitorLost"
    assert [c["ready"] for c in st["containerStatuses"]] == [False, False]
    assert "running" in st["containerStatuses"][0]["state"]  # its process is still there
    assert alive(pid_a)
    os.kill(pid_b, signal.SIGKILL)  # nobody records its end now: the kernel tells
    until("b to die", lambda: not alive(pid_b))
    b = pods.status(uid).container("b")
    assert (b.state, b.reason, b.ready) == ("Terminated", "ContainerStatusUnknown", False)
    assert "Phase:      Unknown (MonitorLost)" in pods.cli("inspect", "lost").stdout
    res = pods.cli("rm", "-f", "lost")
    assert res.returncode == 0, res.stderr
    assert not alive(pid_a)
    assert api.list_pods(pods.opts) == []
    assert [n for n in os.listdir(Path(pods.opts.root) / "names") if n != ".lock"] == []
    assert not mounts_under(pods.tmp / "pods")
    assert not pod_cgroups(pods.tag)


_RESOLVE = """
import json, sys
from runtime.pod.manifest import parse_pod
from runtime.pod.probehost import resolve_probe_hosts
for host in sys.argv[1:]:
    c = {"name": "c", "image": "x:1", "readinessProbe": {"tcpSocket": {"host": host, "port": 1}}}
    raw = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [c]}}
    try:
        probe = resolve_probe_hosts(parse_pod(raw)).spec.containers[0].readiness_probe
        print(probe.handler.host)
    except Exception as e:
        print(e)
"""


def test_probe_host_names_resolve_with_getaddrinfo(tmp_path: Path) -> None:
    """The real resolver honours an /etc/hosts of our own (bind-mounted in a mount namespace
    of the test's); the network namespace has no network, so no lookup leaves the machine."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.1.2.3 db.corral-test\nfd00::9 v6.corral-test\n")
    script = f'mount --bind {hosts} /etc/hosts && exec "$@"'
    res = subprocess.run(
        ["unshare", "-m", "-n", "sh", "-c", script, "sh", sys.executable, "-c", _RESOLVE,
         "db.corral-test", "v6.corral-test", "nosuch.corral-test"],
        capture_output=True, text=True, cwd=REPO, timeout=WAIT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == ["10.1.2.3", "fd00::9"]
    assert lines[2].startswith(
        "spec.containers[0].readinessProbe.tcpSocket.host: cannot resolve 'nosuch.corral-test': "
    )


def test_probe_host_names_at_pod_start(pods: Pods, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kw: Any) -> Any:
        if host == "db.corral-test":  # no lookup leaves the machine
            return real("127.0.0.1", *args, **kw)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    probe = {"tcpSocket": {"host": "db.corral-test", "port": 7070}, "periodSeconds": 1}
    uid = pods.run(
        pods.manifest("named", [sh("c", "while :; do nc -l -p 7070; done", readinessProbe=probe)])
    )
    until("ready through the resolved name", lambda: pods.container(uid, "c").ready)
    conf = (Path(pods.opts.root) / "run" / uid / "monitor.conf").read_text()
    assert "probe_tcp 127.0.0.1 7070\n" in conf
    api.stop(uid, pods.opts, grace=0)
    api.remove(uid, pods.opts)
    probe["tcpSocket"]["host"] = "nosuch.corral-test"
    with pytest.raises(api.PodError) as ei:
        pods.run(pods.manifest("named", [sh("c", "sleep 1000", readinessProbe=probe)]))
    assert str(ei.value).endswith(
        ": resolve probe hosts: spec.containers[0].readinessProbe.tcpSocket.host: "
        "cannot resolve 'nosuch.corral-test': Name or service not known"
    )
    assert api.list_pods(pods.opts) == []
    assert [n for n in os.listdir(Path(pods.opts.root) / "names") if n != ".lock"] == []


def test_probe_host_that_does_not_resolve_fails_pod_run(pods: Pods) -> None:
    """The real resolver, from a network namespace without network: nothing leaves the
    machine, the name does not resolve, `pod run` says which field and leaves nothing."""
    probe = {"httpGet": {"host": "nosuch.corral-test", "port": 80}}
    manifest = pods.tmp / "pod.yaml"
    manifest.write_text(json.dumps(pods.manifest("p", [sh("c", "sleep 1", livenessProbe=probe)])))
    res = subprocess.run(
        ["unshare", "-n", CORRAL, "pod", *pods.global_args(), "run", "-d", str(manifest)],
        capture_output=True, text=True, cwd=REPO, timeout=WAIT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 1, res
    assert res.stderr.startswith("corral: pod run p: "), res.stderr
    assert (
        ": resolve probe hosts: spec.containers[0].livenessProbe.httpGet.host: "
        "cannot resolve 'nosuch.corral-test': " in res.stderr
    )
    assert api.list_pods(pods.opts) == []


def test_gc_removes_leaked_pod_cgroups(pods: Pods) -> None:
    from runtime import cgroups

    live = pods.run(pods.manifest("live", [sh("c", "sleep 1000")]))
    pods.running_pid(live, "c")
    # cgroups of pods that do not exist, at every QoS level, in every hierarchy
    leaked = (
        f"{pods.tag}/pod{'1' * 32}/c",
        f"{pods.tag}/burstable/pod{'2' * 32}/c",
        f"{pods.tag}/besteffort/pod{'3' * 32}",
    )
    mgrs = {path: cgroups.manager_for(path, "leak") for path in leaked}
    busy = cgroups.manager_for(f"{pods.tag}/burstable/pod{'4' * 32}/c", "busy")
    for mgr in [*mgrs.values(), busy]:
        mgr.create()
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        busy.add_pid(proc.pid)
        res = pods.cli("gc")
        assert res.returncode == 0, res.stderr
        removed = {line.split(" ", 2)[2] for line in res.stdout.splitlines() if "cgroup" in line}
        want = set()
        for path, mgr in mgrs.items():
            dirs = set(mgr.paths().values())
            want |= {os.path.dirname(d) if path.endswith("/c") else d for d in dirs}
            assert not mgr.exists(), path
        assert removed == want
        assert busy.exists()  # a process is in it
        st = pods.status(live)
        assert st.phase == "Running" and alive(st.containers[0].pid)
        assert (
            f"/{pods.tag}/besteffort/pod{live}/c\n"
            in Path(f"/proc/{st.containers[0].pid}/cgroup").read_text()
        )
    finally:
        proc.kill()
        proc.wait()
    res = pods.cli("gc")  # now it is empty
    assert res.returncode == 0 and f"pod{'4' * 32}" in res.stdout, res.stdout
    assert not busy.exists()
    api.stop(live, pods.opts, grace=0)


def test_a_refused_monitor_conf_fails_the_start(
    pods: Pods, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() returns only once the monitor took its configuration: a refused one is an
    error of start, not a pod that looks forever like its containers are being created."""
    from runtime.pod import monconf

    render = monconf.render
    monkeypatch.setattr(monconf, "render", lambda conf: render(conf) + "frobnicate 1\n")
    with pytest.raises(api.PodError, match=r"start monitor: monitor.conf line \d+: unknown key"):
        pods.run(pods.manifest("refused", [sh("c", "true")]))
    assert api.list_pods(pods.opts) == []


@pytest.mark.parametrize(
    "image,why",
    [("a//b:1", "invalid reference format"), ("MyApp:1", "repository name must be lowercase"),
     ("a:" + "t" * 500, "tag is 500 characters (128 at most)")],
)  # fmt: skip
def test_a_pod_image_reference_is_checked(pods: Pods, image: str, why: str) -> None:
    """The kubelet's InvalidImageName: refused by the reference grammar, not looked up (a
    path such as ../x.tar is an image archive, see manifest.is_image_archive)."""
    raw = pods.manifest("badref", [{"name": "c", "image": image, "command": ["true"]}])
    with pytest.raises(api.PodError, match="invalid image name") as ei:
        pods.run(raw)
    assert why in str(ei.value)
    assert api.list_pods(pods.opts) == []
    assert [n for n in os.listdir(Path(pods.opts.root) / "names") if n != ".lock"] == []


def test_failed_start_leaves_nothing(pods: Pods) -> None:
    raw = pods.manifest("bad", [{"name": "c", "image": "no-such-image"}])
    with pytest.raises(api.PodError, match="image no-such-image"):
        pods.run(raw)
    assert api.list_pods(pods.opts) == []
    raw = pods.manifest("bad2", [{"name": "c", "command": ["true"]}], hostNetwork=False)
    raw["spec"]["volumes"] = [
        {"name": "h", "hostPath": {"path": "/nonexistent", "type": "Directory"}}
    ]
    with pytest.raises(api.PodError, match="volume h"):
        pods.run(raw)
    assert api.list_pods(pods.opts) == []


# ============================================================================= network


def _connect(ns: str, ip: str, port: int) -> bytes:
    from runtime.network import in_netns

    def go() -> bytes:
        with socket.create_connection((ip, port), timeout=10) as s:
            return s.recv(100)

    return in_netns(ns, go)


def test_pod_network(pods: Pods) -> None:
    node = pods.with_network()
    server = sh("srv", "while true; do echo pong | nc -l -p 8080; done")
    a = pods.run(pods.manifest("a", [server]))
    ip_a = pods.status(a).pod_ip
    assert ip_a is not None
    until("pod a to listen", lambda: pods.container(a, "srv").state == "Running")
    # the node reaches the pod
    reply = until("a reply from pod a", lambda: _try(lambda: _connect(node.path, ip_a, 8080)))
    assert reply == b"pong\n"
    # a second pod reaches the first by its IP; it sees its own IP in its env
    client = sh("cli", f"echo $MY_IP; until nc {ip_a} 8080 </dev/null; do sleep 0.2; done")
    client["env"] = [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    b = pods.run(pods.manifest("b", [client], restartPolicy="Never"))
    st = pods.wait(b)
    assert st.phase == "Succeeded"
    assert api.logs(b, pods.opts, "cli") == [st.pod_ip, "pong"]
    assert st.pod_ip != ip_a
    api.stop(a, pods.opts, grace=0)
    # network gc frees addresses of pods that do not exist
    from runtime.network import NodeNetwork, load_config

    net = NodeNetwork(load_config(node.config), node.path)
    leaked = net.ipam.allocate("0" * 32)
    res = subprocess.run(
        [CORRAL, "network", "gc", "--root", pods.opts.root,
         "--network-config", str(node.config), "--node-netns", node.path],
        capture_output=True, text=True, cwd=REPO, timeout=WAIT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"address {leaked}: freed" in res.stdout
    assert net.ipam.allocations() == {}


def _slow_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pod's interface made a second later than it would be: the runtime gets to the
    start gate first, and a container let through early would find no network."""
    import time

    from runtime.network.node import NodeNetwork

    link = NodeNetwork.link_pod

    def slow(self: NodeNetwork, *a: Any, **kw: Any) -> None:
        time.sleep(1.0)
        link(self, *a, **kw)

    monkeypatch.setattr(NodeNetwork, "link_pod", slow)


def _has_default_route(lines: list[str]) -> bool:
    """A default route via eth0 in /proc/net/route as the container saw it."""
    return any(line.split()[:2] == ["eth0", "00000000"] for line in lines)


def _runc_state(pods: Pods, uid: str, container: str) -> subprocess.CompletedProcess[str]:
    root = Path(pods.opts.root) / "run" / uid / "runtime"
    return subprocess.run(
        ["runc", "--root", str(root), "state", container], capture_output=True, text=True
    )


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_a_pod_naming_a_runtime_handler_runs_through_it(pods: Pods) -> None:
    """``spec.runtimeClassName`` names the OCI runtime of the pod's containers on this node
    (the kubelet puts there the handler of the pod's RuntimeClass): with ``runc`` it is runc
    that holds the running container (and exec goes through it); without, corral-oci, whose
    container runc does not know."""
    uid = pods.run(pods.manifest("runc", [sh("c", "sleep 1000")], runtimeClassName="runc"))
    pods.running_pid(uid, "c")
    p = _runc_state(pods, uid, "c")
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["status"] == "running", p.stdout
    got = api.exec_in(uid, pods.opts, ["cat", "/proc/1/cmdline"], "c", stdout=subprocess.PIPE)
    assert got.returncode == 0 and b"sleep" in got.stdout, got
    ours = pods.run(pods.manifest("ours", [sh("c", "sleep 1000")]))
    pods.running_pid(ours, "c")
    assert _runc_state(pods, ours, "c").returncode != 0
    for ref in (uid, ours):
        api.remove(ref, pods.opts, force=True)


def test_the_monitor_keeps_no_fd_of_its_starter(pods: Pods) -> None:
    """An fd its starter left without close-on-exec (here on purpose) is not the monitor's:
    it closes everything but stdio and its sync pair first (the starter spawns it with
    posix_spawn, which closes nothing)."""
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        uid = pods.run(pods.manifest("fds", [sh("c", "sleep 1000")]))
        pods.running_pid(uid, "c")
        mon = pods.status(uid).monitor_pid
        assert mon
        leaked = {os.readlink(f"/proc/self/fd/{fd}") for fd in (r, w)}
        held = set()
        for fd in os.listdir(f"/proc/{mon}/fd"):
            with contextlib.suppress(FileNotFoundError):
                held.add(os.readlink(f"/proc/{mon}/fd/{fd}"))
        assert not leaked & held, (leaked, held)
        api.remove(uid, pods.opts, force=True)
    finally:
        os.close(r)
        os.close(w)


def test_an_unknown_runtime_handler_makes_nothing(pods: Pods) -> None:
    """A handler the node does not have is refused in containerd's words before anything of
    the pod is made."""
    with pytest.raises(api.NoRuntimeHandler, match='no runtime for "gvisor" is configured'):
        pods.run(pods.manifest("gv", [sh("c", "true")], runtimeClassName="gvisor"))
    assert api.list_pods(pods.opts) == []
    assert not list((Path(pods.opts.root)).glob("*/*"))


@pytest.mark.parametrize("runtime", ["ours", "named"])
def test_a_container_runs_once_its_network_is_there(
    pods: Pods, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """Our runtime creates the containers while the pod network is set up (the start gate);
    their first command still finds the pod's address and route. A runtime named in the
    options gets no gate: the network is made before it runs at all."""
    pods.with_network()
    if runtime == "named":
        pods.opts = replace(pods.opts, runtime=(str(Path(sys.executable).parent / "corral-oci"),))
    _slow_link(monkeypatch)
    c = sh("c", "cat /proc/net/route; cat /etc/hosts")
    uid = pods.run(pods.manifest("gated", [c], restartPolicy="Never"))
    st = pods.wait(uid)
    assert st.phase == "Succeeded", st
    lines = api.logs(uid, pods.opts, "c")
    assert _has_default_route(lines), lines
    assert any(st.pod_ip in line.split() for line in lines), (st.pod_ip, lines)


def test_a_network_setup_failing_after_go_leaves_nothing(
    pods: Pods, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's interface cannot be configured (after the veth pair was made, while the
    runtime creates the container): the start fails naming the step, the container never
    ran, and the pod, its veth, address, mounts and cgroups are gone."""
    import errno

    from runtime.network import netlink
    from runtime.network.errors import NetlinkError

    node = pods.with_network()
    marks = pods.tmp / "marks"
    marks.mkdir()

    def broken(*a: Any, **kw: Any) -> None:
        raise NetlinkError("route replace default", "injected", errno.EIO)

    monkeypatch.setattr(netlink, "configure_pod_interface", broken)
    c = sh("c", "touch /marks/ran; sleep 1000", volumeMounts=[{"name": "m", "mountPath": "/marks"}])
    raw = pods.manifest("nonet", [c], volumes=[{"name": "m", "hostPath": {"path": str(marks)}}])
    with pytest.raises(PrepareError, match="network setup: route replace default.*injected"):
        pods.run(raw)
    assert api.list_pods(pods.opts) == []
    assert not (marks / "ran").exists()
    assert not any(_network_leftovers(node).values())


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except OSError:
        return None


def test_host_network_pod_in_a_namespace_of_our_own(pods: Pods) -> None:
    """hostNetwork without touching the machine's network: the whole lifecycle runs through
    the CLI inside a network namespace this test makes (with an interface of its own), which
    is then the pod's "host"."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    try:
        ns = f"/proc/{holder.pid}/ns/net"
        own = os.readlink("/proc/self/ns/net")
        until("the namespace", lambda: os.readlink(ns) != own)
        for cmd in (
            "ip link set lo up",
            "ip link add corraltest0 type veth peer name corraltest1",  # no dummy module here
            "ip addr add 192.0.2.7/24 dev corraltest0",
            "ip link set corraltest0 up",
        ):
            subprocess.run(["nsenter", f"--net={ns}", *cmd.split()], check=True)
        manifest = pods.tmp / "host.yaml"
        server = "grep -o corraltest0 /proc/net/dev; while true; do echo pong | nc -l -p 7071; done"
        raw = pods.manifest(
            "hostnet",
            [
                sh("srv", server),
                sh("cli", "until nc 192.0.2.7 7071 </dev/null; do sleep 0.1; done"),
            ],
            hostNetwork=True,
        )
        manifest.write_text(json.dumps(raw))

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["nsenter", f"--net={ns}", CORRAL, "pod", *pods.global_args(), *args],
                capture_output=True, text=True, timeout=WAIT, cwd=REPO, stdin=subprocess.DEVNULL,
            )  # fmt: skip

        res = cli("run", "-d", str(manifest))
        assert res.returncode == 0, res.stderr
        uid = res.stdout.strip()
        st = pods.status(uid)
        assert st.host_network and st.pod_ip is None
        assert os.readlink(f"/proc/{st.monitor_pid}/ns/net") == os.readlink(ns)
        until("the client's pong", lambda: api.logs(uid, pods.opts, "cli") == ["pong"])
        pid = pods.running_pid(uid, "srv")
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(ns)
        assert api.logs(uid, pods.opts, "srv")[0] == "corraltest0"  # it sees our interfaces
        reply = until(
            "a reply on our loopback", lambda: _try(lambda: _connect(ns, "127.0.0.1", 7071))
        )
        assert reply == b"pong\n"
        res = cli("exec", uid, "-c", "srv", "--", "cat", "/proc/net/dev")
        assert res.returncode == 0 and "corraltest0" in res.stdout, res.stderr
        assert cli("stop", "-t", "0", uid).returncode == 0
        assert cli("rm", uid).returncode == 0
        assert api.list_pods(pods.opts) == []
    finally:
        holder.kill()
        holder.wait()
