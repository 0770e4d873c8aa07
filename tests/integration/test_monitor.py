"""corral-monitor (csrc/monitor/) driven directly, the way the Python pod code drives it:
spawn it with a sync pipe pair, read ``ready``, write bundles that join its namespaces and a
monitor.conf, say ``go``, then watch its status files, logs and exit.

Containers run through the real ``corral-oci`` (``python -m runtime.cli.oci``) in the
``runtime`` fixture's state root, with cgroups below this process's own. The ``pods`` fixture
kills every monitor it started (by the pid the monitor reported) even when a test fails; the
``runtime`` fixture then force-deletes what is left and fails on leftover state or cgroups.
Waits are for conditions (with a generous cap), never timing thresholds.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.pod.monitor import monitor_path
from runtime.state import list_ids
from testkit.rootfs import is_static_elf
from tests import tlsserver
from tests.conftest import Runtime

pytestmark = pytest.mark.root

MiB = 1 << 20
WAIT = 90.0  # cap for any wait: a failure, not a measurement
HTTPS_PROBE = (sys.executable, "-m", "runtime.pod.probe", "https")
CRI_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")

# Starts the monitor, then stays alive until killed: the "corral process" that started it.
LAUNCHER = """
import subprocess, sys, time
fd = int(sys.argv[-1])
subprocess.run(sys.argv[1:], pass_fds=(fd, fd + 1))
print("launched", flush=True)
time.sleep(3600)
"""


def _wait_for(pred: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _consecutive_fds(a: int, b: int) -> int:
    """dup ``a`` and ``b`` to two free fds n, n+1 (the monitor's sync fd convention)."""
    n = 100
    while True:
        try:
            os.fstat(n)
            n += 1
            continue
        except OSError:
            pass
        try:
            os.fstat(n + 1)
            n += 2
            continue
        except OSError:
            break
    os.dup2(a, n, inheritable=False)
    os.dup2(b, n + 1, inheritable=False)
    return n


def _own_cgroup(controller: str) -> tuple[str, str] | None:
    """(mount dir, our path) of a v1 controller, or of the unified hierarchy for ''."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                return f"/sys/fs/cgroup/{controller}", path
            if ctrls == "" and controller == "":
                return "/sys/fs/cgroup", path
    return None


def _oom_file(cgroup_path: str) -> str:
    v1 = _own_cgroup("memory")
    if v1 and os.path.isdir(v1[0]):
        return os.path.join(v1[0] + v1[1], cgroup_path, "memory.oom_control")
    unified = _own_cgroup("")
    assert unified is not None
    return os.path.join(unified[0] + unified[1], cgroup_path, "memory.events")


@dataclass
class Ctr:
    name: str
    args: list[str]
    kind: str = "app"
    conf: list[str] = field(default_factory=list)  # extra monitor.conf lines (probes)
    resources: dict[str, Any] | None = None
    oom: bool = False
    id: str = ""


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


class Pod:
    def __init__(self, runtime: Runtime, tmp: Path) -> None:
        self.rt = runtime
        self.uid = uuid.uuid4().hex
        self.dir = tmp / "pods" / "run" / self.uid
        self.dir.mkdir(parents=True)
        self.shared = tmp / f"shared-{self.uid[:8]}"
        self.shared.mkdir()
        self.pid = 0
        self.reaper = 0
        self.launcher: subprocess.Popen[bytes] | None = None
        self._from = -1  # we read the monitor's lines here
        self._to = -1  # we write "go" here
        self.ready_line = ""

    # ------------------------------------------------------------ handshake

    def start(self, *flags: str, via_launcher: bool = False) -> str:
        """Spawn the monitor; return its ``ready ...`` (or ``error ...``) line."""
        from_mon, mon_w = os.pipe()
        mon_r, to_mon = os.pipe()
        n = _consecutive_fds(mon_w, mon_r)
        os.close(mon_w)
        os.close(mon_r)
        self._from, self._to = from_mon, to_mon
        argv = [str(monitor_path()), *flags, str(self.dir), str(n)]
        try:
            if via_launcher:
                self.launcher = subprocess.Popen(
                    [sys.executable, "-c", LAUNCHER, *argv],
                    pass_fds=(n, n + 1),
                    stdout=subprocess.PIPE,
                )
            else:
                subprocess.run(argv, pass_fds=(n, n + 1), check=False, timeout=WAIT)
        finally:
            os.close(n)
            os.close(n + 1)
        line = self._readline()
        self.ready_line = line
        if line.startswith("ready "):
            _, pid, reaper = line.split()
            self.pid, self.reaper = int(pid), int(reaper)
        return line

    def _readline(self) -> str:
        buf = b""
        deadline = time.monotonic() + WAIT
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            assert left > 0, f"no line from the monitor (got {buf!r})"
            ready, _, _ = select.select([self._from], [], [], left)
            if ready:
                chunk = os.read(self._from, 1)
                if not chunk:
                    break
                buf += chunk
        return buf.decode()

    def _rest(self) -> str:
        """Everything the monitor writes after go, until it closes the pipe."""
        out = b""
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the monitor kept the sync pipe open after go"
            ready, _, _ = select.select([self._from], [], [], left)
            if ready:
                chunk = os.read(self._from, 4096)
                if not chunk:
                    return out.decode()
                out += chunk

    def close_sync(self) -> None:
        for fd in (self._from, self._to):
            if fd >= 0:
                os.close(fd)
        self._from = self._to = -1

    # ------------------------------------------------------------ bundles and config

    def bundle(self, c: Ctr, share_pid: bool) -> Path:
        c.id = self.rt.new_id(c.name)
        spec = self.rt.spec(*c.args)
        spec.pop("hostname", None)  # the uts namespace is the pod's: the monitor names it
        linux = spec["linux"]
        joined = {"network": "net", "ipc": "ipc", "uts": "uts"}
        if share_pid:
            joined["pid"] = "pid"
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in joined] + [
            {
                "type": t,
                "path": f"/proc/{self.reaper if t == 'pid' else self.pid}/ns/{name}",
            }
            for t, name in joined.items()
        ]
        linux["cgroupsPath"] = self.rt.cgroup_path(c.id)
        if c.resources:
            linux["resources"].update(c.resources)
        spec["mounts"].append(
            {
                "destination": "/home",
                "type": "bind",
                "source": str(self.shared),
                "options": ["rbind", "rw"],
            }
        )
        return self.rt.bundle(spec, c.id)

    def go(
        self,
        ctrs: list[Ctr],
        *,
        share_pid: bool = False,
        finish: list[str] | None = None,
        extra: list[str] | None = None,
        runtime: list[str] | None = None,
        **keys: Any,
    ) -> str:
        """Write bundles and monitor.conf, say go; return what the monitor said after go.
        ``runtime``: the OCI runtime's argv prefix (default: ours, python -m runtime.cli.oci)."""
        conf = {
            "runtime_root": str(self.rt.root),
            "restart_policy": "Never",
            "grace_s": "10",
            "backoff_initial_ms": "10",
            "backoff_max_ms": "40",
            "backoff_reset_ms": "600000",
        }
        conf.update({k: str(v) for k, v in keys.items()})
        argv = runtime or [sys.executable, "-m", "runtime.cli.oci"]
        lines = [f"runtime_arg {_esc(a)}" for a in argv]
        lines += [f"{k} {_esc(v)}" for k, v in conf.items()]
        lines += [f"finish_arg {_esc(a)}" for a in finish or []]
        lines += extra or []
        for c in ctrs:
            bundle = self.bundle(c, share_pid)
            lines += [f"container {c.name}", f"kind {c.kind}", f"id {c.id}", f"bundle {bundle}"]
            if c.oom:
                lines.append(f"oom_file {_oom_file(self.rt.cgroup_path(c.id))}")
            lines += c.conf
        (self.dir / "monitor.conf").write_text("\n".join(lines) + "\n")
        os.write(self._to, b"go\n")
        return self._rest()

    # ------------------------------------------------------------ observing

    @staticmethod
    def _keyvalues(path: Path) -> dict[str, str]:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {}
        return dict(line.split("=", 1) for line in text.splitlines())

    def status(self, name: str) -> dict[str, str]:
        """status/<name> of a container."""
        return self._keyvalues(self.dir / "status" / name)

    def pod_status(self) -> dict[str, str]:
        return self._keyvalues(self.dir / "pod.status")

    def wait_status(self, name: str, what: str, **want: str) -> dict[str, str]:
        def check() -> dict[str, str] | None:
            st = self.status(name)
            return st if all(st.get(k) == v for k, v in want.items()) else None

        try:
            return _wait_for(check, what)
        except AssertionError:
            raise AssertionError(
                f"timed out waiting for {what}: status/{name} with {want}, "
                f"last {self.status(name)}; monitor.log:\n{self.monitor_log()}"
            ) from None

    def wait_exit(self) -> None:
        _wait_for(lambda: not _alive(self.pid), f"monitor {self.pid} to exit")

    def log(self, name: str, run: int = 0, suffix: str = "") -> list[tuple[str, str, str]]:
        path = self.dir / "logs" / name / f"{run}.log{suffix}"
        entries = []
        for line in path.read_text().splitlines():
            m = CRI_LINE.match(line)
            assert m, f"not a CRI log line in {path}: {line!r}"
            entries.append((m.group(2), m.group(3), m.group(4)))
        return entries

    def monitor_log(self) -> str:
        try:
            return (self.dir / "monitor.log").read_text()
        except FileNotFoundError:
            return ""

    def stop(self, grace: str | None = None) -> None:
        if grace is not None:
            (self.dir / "stop-grace").write_text(grace)
        os.kill(self.pid, signal.SIGTERM)

    def assert_clean(self) -> None:
        """After the monitor exited: nothing of the pod is left."""
        assert not _alive(self.pid)
        if self.reaper:
            assert not _alive(self.reaper)
        assert list_ids(str(self.rt.root)) == []
        with open("/proc/self/mountinfo") as f:
            assert str(self.dir) not in f.read()
        # the lock went with the monitor
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)

    def kill(self) -> None:
        """Finalizer: kill only what this test started."""
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            _wait_for(lambda: not _alive(self.pid), "the killed monitor to go")
        if self.launcher is not None:
            self.launcher.kill()
            self.launcher.wait()
        self.close_sync()


@pytest.fixture
def pods(runtime: Runtime, tmp_path: Path) -> Iterator[Callable[[], Pod]]:
    made: list[Pod] = []

    def new() -> Pod:
        pod = Pod(runtime, tmp_path)
        made.append(pod)
        return pod

    try:
        yield new
    finally:
        for pod in made:
            pod.kill()


def _run(pods: Callable[[], Pod], ctrs: list[Ctr], **kw: Any) -> Pod:
    """Start a pod, let it run to its end, check it left nothing behind."""
    pod = pods()
    assert pod.start().startswith("ready "), pod.ready_line
    assert pod.go(ctrs, **kw) == ""
    pod.wait_exit()
    pod.assert_clean()
    return pod


# ---------------------------------------------------------------- handshake


def test_handshake_namespaces_and_a_completed_container(pods: Callable[[], Pod]) -> None:
    pod = pods()
    line = pod.start()
    assert re.fullmatch(r"ready \d+ 0\n", line), line
    assert (pod.dir / "monitor.pid").read_text().strip() == str(pod.pid)
    assert pod.pod_status()["phase"] == "Pending"
    # Not our child, not in our session; its own network and uts namespaces, our mount ns.
    assert os.getsid(pod.pid) != os.getsid(0)
    for ns in ("net", "uts", "ipc"):
        assert os.readlink(f"/proc/{pod.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    assert os.readlink(f"/proc/{pod.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    netns = os.readlink(f"/proc/{pod.pid}/ns/net")
    marker = pod.dir / "finished"
    c = Ctr(
        "main",
        ["sh", "-c", "corral-test readlink /proc/self/ns/net; corral-test hostname; echo hi"],
    )
    assert pod.go([c], finish=["/bin/sh", "-c", f"echo $$ > {marker}"], hostname="podhost") == ""
    pod.wait_exit()
    pod.assert_clean()

    assert pod.log("main") == [
        ("stdout", "F", netns),
        ("stdout", "F", "podhost"),
        ("stdout", "F", "hi"),
    ]
    st = pod.status("main")
    assert st["state"] == "terminated"
    assert st["reason"] == "Completed"
    assert st["exit_code"] == "0"
    assert st["restart_count"] == "0"
    assert st["ready"] == "false"
    assert "signal" not in st and "pid" not in st
    assert st["started_at"] <= st["finished_at"]
    ps = pod.pod_status()
    assert ps["phase"] == "Succeeded"
    assert ps["monitor_pid"] == str(pod.pid)
    assert ps["started_at"] <= ps["finished_at"]
    assert marker.read_text().strip().isdigit()  # finish_arg ran, before the monitor exited


def test_a_container_may_be_named_pod(pods: Callable[[], Pod]) -> None:
    """The pod's own status is pod.status, beside status/: no container name collides."""
    pod = _run(pods, [Ctr("pod", ["sh", "-c", "echo named; exit 3"])])
    st = pod.status("pod")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "Error", "3")
    assert pod.log("pod") == [("stdout", "F", "named")]
    ps = pod.pod_status()
    assert ps["phase"] == "Failed" and ps["monitor_pid"] == str(pod.pid)


def test_eof_without_go_exits_and_cleans_up(pods: Callable[[], Pod]) -> None:
    pod = pods()
    line = pod.start("--share-pid")
    assert re.fullmatch(r"ready \d+ [1-9]\d*\n", line), line
    assert _alive(pod.reaper)
    pod.close_sync()
    pod.wait_exit()
    _wait_for(lambda: not _alive(pod.reaper), "the pod's pid 1 to go")
    pod.assert_clean()
    assert "closed before go" in pod.monitor_log()


def test_a_locked_pod_directory_is_refused(pods: Callable[[], Pod]) -> None:
    first = pods()
    assert first.start().startswith("ready ")
    second = pods()
    second.dir.rmdir()
    second.dir = first.dir
    line = second.start()
    assert line.startswith("error lock ") and "held by another process" in line, line
    first.close_sync()
    first.wait_exit()


def test_bad_monitor_conf_is_reported_on_the_sync_pipe(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    said = pod.go([Ctr("c", ["true"])], extra=["frobnicate 1"])
    assert re.match(r"error monitor.conf line \d+: unknown key 'frobnicate'", said), said
    pod.wait_exit()
    pod.assert_clean()
    assert pod.pod_status()["phase"] == "Failed"
    assert "frobnicate" in pod.pod_status()["message"]


# ---------------------------------------------------------------- the start gate


def _created(pod: Pod, c: Ctr) -> bool:
    """The runtime has made ``c`` and holds it before start (its state says created)."""
    try:
        return bool(c.id) and pod.rt.state(c.id)["status"] == "created"
    except Exception:  # noqa: BLE001 - not committed yet
        return False


def test_the_start_gate_holds_the_run_until_net(pods: Callable[[], Pod]) -> None:
    """With net_gate the runs begin at `go` and wait, created, at the start gate; `net`
    (the pod network is there) lets them start."""
    pod = pods()
    assert pod.start().startswith("ready ")
    c = Ctr("c", ["sh", "-c", "echo hi > /home/ran; echo hi"])
    assert pod.go([c], net_gate="true") == ""  # accepted: the monitor closed its end
    _wait_for(lambda: _created(pod, c), "the run to wait at the start gate")
    assert pod.status("c")["reason"] == "ContainerCreating"
    assert not (pod.shared / "ran").exists()
    os.write(pod._to, b"net\n")
    pod.wait_exit()
    pod.assert_clean()
    assert pod.log("c") == [("stdout", "F", "hi")]
    st = pod.status("c")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "Completed", "0")


def test_no_net_after_go_cancels_the_runs(pods: Callable[[], Pod]) -> None:
    """The sync pipe closed without `net` (the network setup failed): the runs delete what
    they made, no user code ran, the pod ends."""
    pod = pods()
    assert pod.start().startswith("ready ")
    c = Ctr("c", ["sh", "-c", "echo ran > /home/ran"])
    assert pod.go([c], net_gate="true", restart_policy="Always") == ""
    _wait_for(lambda: _created(pod, c), "the run to wait at the start gate")
    pod.close_sync()
    pod.wait_exit()
    pod.assert_clean()
    assert not (pod.shared / "ran").exists()
    st = pod.status("c")
    assert (st["state"], st["reason"]) == ("terminated", "StartError"), st
    assert "start gate closed" in st["message"]
    assert "no pod network" in pod.monitor_log()


def test_a_stop_before_net_cancels_the_runs(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    c = Ctr("c", ["sh", "-c", "echo ran > /home/ran"])
    assert pod.go([c], net_gate="true", restart_policy="Always") == ""
    _wait_for(lambda: _created(pod, c), "the run to wait at the start gate")
    pod.stop()
    pod.wait_exit()
    pod.assert_clean()
    assert not (pod.shared / "ran").exists()
    assert pod.status("c")["reason"] == "StartError"


def test_the_monitor_survives_the_process_that_started_it(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start(via_launcher=True).startswith("ready ")
    launcher = pod.launcher
    assert launcher is not None and launcher.stdout is not None
    assert launcher.stdout.readline() == b"launched\n"
    launcher.kill()
    launcher.wait()
    assert _alive(pod.pid)
    assert pod.go([Ctr("c", ["echo", "still here"])]) == ""
    pod.wait_exit()
    pod.assert_clean()
    assert pod.log("c") == [("stdout", "F", "still here")]


# ---------------------------------------------------------------- containers


def test_init_containers_run_in_order_before_the_apps(pods: Callable[[], Pod]) -> None:
    ctrs = [
        Ctr("app", ["cat", "/home/order"]),
        Ctr("first", ["sh", "-c", "echo one >> /home/order"], kind="init"),
        Ctr("second", ["sh", "-c", "echo two >> /home/order"], kind="init"),
    ]
    pod = _run(pods, ctrs)
    assert [e[2] for e in pod.log("app")] == ["one", "two"]
    for name in ("first", "second", "app"):
        assert pod.status(name)["reason"] == "Completed"
    assert pod.status("first")["finished_at"] <= pod.status("second")["started_at"]
    assert pod.status("second")["finished_at"] <= pod.status("app")["started_at"]
    assert pod.pod_status()["phase"] == "Succeeded"


def test_a_failed_init_container_fails_the_pod_under_never(pods: Callable[[], Pod]) -> None:
    ctrs = [Ctr("app", ["true"]), Ctr("init", ["sh", "-c", "exit 3"], kind="init")]
    pod = _run(pods, ctrs, restart_policy="Never")
    st = pod.status("init")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "Error", "3")
    assert pod.status("app")["state"] == "waiting"
    assert pod.status("app")["reason"] == "PodInitializing"
    assert not (pod.dir / "logs" / "app").exists()
    assert pod.pod_status()["phase"] == "Failed"


def test_a_failed_init_container_is_retried_under_on_failure(pods: Callable[[], Pod]) -> None:
    count = "n=$(cat /home/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /home/n; "
    ctrs = [
        Ctr("init", ["sh", "-c", count + "[ $n -ge 2 ]"], kind="init"),
        Ctr("app", ["cat", "/home/n"]),
    ]
    pod = _run(pods, ctrs, restart_policy="OnFailure")
    assert pod.status("init")["restart_count"] == "1"
    assert pod.status("init")["last_reason"] == "Error"
    assert pod.log("app") == [("stdout", "F", "2")]
    assert pod.pod_status()["phase"] == "Succeeded"


def test_restart_never_records_the_exit_code(pods: Callable[[], Pod]) -> None:
    pod = _run(pods, [Ctr("c", ["sh", "-c", "exit 2"])], restart_policy="Never")
    st = pod.status("c")
    assert (st["state"], st["reason"], st["exit_code"], st["restart_count"]) == (
        "terminated",
        "Error",
        "2",
        "0",
    )
    assert pod.pod_status()["phase"] == "Failed"


def test_restart_on_failure_until_success(pods: Callable[[], Pod]) -> None:
    script = "n=$(cat /home/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /home/n; echo run $n; "
    pod = _run(pods, [Ctr("c", ["sh", "-c", script + "[ $n -ge 3 ]"])], restart_policy="OnFailure")
    st = pod.status("c")
    assert (st["state"], st["reason"], st["exit_code"], st["restart_count"]) == (
        "terminated",
        "Completed",
        "0",
        "2",
    )
    assert (st["last_reason"], st["last_exit_code"]) == ("Error", "1")
    # one log per run, N = restart count
    assert [pod.log("c", run) for run in range(3)] == [
        [("stdout", "F", f"run {n}")] for n in (1, 2, 3)
    ]
    assert _delays(pod, "c") == [10, 20]
    assert pod.pod_status()["phase"] == "Succeeded"


def _delays(pod: Pod, name: str) -> list[int]:
    pattern = rf"container {name}: back-off (\d+) ms restarting"
    return [int(d) for d in re.findall(pattern, pod.monitor_log())]


def test_restart_always_with_exponential_backoff(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    assert pod.go([Ctr("c", ["true"])], restart_policy="Always") == ""
    _wait_for(lambda: int(pod.status("c").get("restart_count", "0")) >= 5, "five restarts")
    pod.stop()
    pod.wait_exit()
    pod.assert_clean()
    # a run that exits 0 is restarted too; 10 ms doubling up to the 40 ms maximum
    assert _delays(pod, "c")[:5] == [10, 20, 40, 40, 40]
    st = pod.status("c")
    assert st["last_reason"] == "Completed" or st["reason"] == "Completed"
    assert pod.log("c", 4) == []


def test_prestart_arg_runs_before_every_create_but_the_first(pods: Callable[[], Pod]) -> None:
    pod = pods()
    script = "n=$(cat /home/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /home/n; "
    prestart = f"echo prestart >> {pod.shared}/prestarts; echo fresh; echo to-stderr >&2"
    ctr = Ctr(
        "c",
        ["sh", "-c", script + "echo run $n; [ $n -ge 3 ]"],
        conf=["prestart_arg /bin/sh", "prestart_arg -c", f"prestart_arg {_esc(prestart)}"],
    )
    assert pod.start().startswith("ready ")
    assert pod.go([ctr], restart_policy="OnFailure") == ""
    pod.wait_exit()
    pod.assert_clean()
    assert (pod.shared / "prestarts").read_text() == "prestart\n" * 2
    assert pod.log("c", 0) == [("stdout", "F", "run 1")]
    for run in (1, 2):  # its output is in the log of the run it prepared
        entries = pod.log("c", run)
        assert ("stdout", "F", "fresh") in entries and ("stderr", "F", "to-stderr") in entries
        assert entries[-1] == ("stdout", "F", f"run {run + 1}")
    assert pod.status("c")["restart_count"] == "2"
    assert pod.pod_status()["phase"] == "Succeeded"


def test_a_failed_prestart_is_a_start_error(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr(
        "c",
        ["false"],
        conf=["prestart_arg /bin/sh", "prestart_arg -c", "prestart_arg echo bad layer >&2; exit 3"],
    )
    assert pod.go([ctr], restart_policy="OnFailure") == ""
    st = pod.wait_status("c", "a failed prestart", last_reason="StartError")
    assert (st["last_exit_code"], st["last_message"]) == ("128", "bad layer")
    pod.stop()
    pod.wait_exit()
    pod.assert_clean()
    assert pod.log("c", 0) == []  # `false` says nothing; the first run had no prestart


def test_backoff_starts_over_after_a_long_enough_run(pods: Callable[[], Pod]) -> None:
    script = "n=$(cat /home/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /home/n; "
    ctr = Ctr("c", ["sh", "-c", script + "[ $n -ge 5 ]"])
    pod = _run(pods, [ctr], restart_policy="OnFailure", backoff_reset_ms=0)
    assert pod.status("c")["restart_count"] == "4"
    assert _delays(pod, "c") == [10, 10, 10, 10]


def test_oom_killed(pods: Callable[[], Pod]) -> None:
    ctr = Ctr(
        "hog",
        ["corral-test", "alloc", "256"],
        resources={"memory": {"limit": 32 * MiB, "swap": 32 * MiB}},
        oom=True,
    )
    pod = _run(pods, [ctr, Ctr("ok", ["true"], oom=True)])
    st = pod.status("hog")
    assert (st["reason"], st["exit_code"], st["signal"]) == ("OOMKilled", "137", "9")
    assert pod.status("ok")["reason"] == "Completed"


def test_start_error_names_the_cause(pods: Callable[[], Pod]) -> None:
    pod = _run(pods, [Ctr("c", ["no-such-program"])])
    st = pod.status("c")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "StartError", "128")
    assert "executable file not found" in st["message"]
    assert pod.pod_status()["phase"] == "Failed"


# ---------------------------------------------------------------- logs


def test_logs_are_cri_lines_with_streams_and_partial_lines(pods: Callable[[], Pod]) -> None:
    script = (
        "echo out; echo err >&2; printf 'a\\tb\\n\\n'; "
        "head -c 20000 /dev/zero | tr '\\0' x; echo; printf 'no newline'"
    )
    pod = _run(pods, [Ctr("c", ["sh", "-c", script])])
    entries = pod.log("c")
    out = [e for e in entries if e[0] == "stdout"]
    assert ("stderr", "F", "err") in entries
    assert out == [
        ("stdout", "F", "out"),
        ("stdout", "F", "a\tb"),
        ("stdout", "F", ""),
        ("stdout", "P", "x" * 16384),  # a line is cut at 16 KiB
        ("stdout", "F", "x" * (20000 - 16384)),
        ("stdout", "P", "no newline"),  # the end of the stream
    ]
    stamps = [line.split(" ", 1)[0] for line in (pod.dir / "logs/c/0.log").read_text().split("\n")]
    assert all(s.endswith("Z") for s in stamps if s)


def test_log_rotation(pods: Callable[[], Pod]) -> None:
    script = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line $i; done"
    pod = _run(pods, [Ctr("c", ["sh", "-c", script])], log_max_bytes=200, log_max_files=2)
    files = sorted(p.name for p in (pod.dir / "logs" / "c").iterdir())
    assert files == ["0.log", "0.log.1", "0.log.2"]
    for name in files:
        assert (pod.dir / "logs" / "c" / name).stat().st_size <= 200
    kept = pod.log("c", 0, ".2") + pod.log("c", 0, ".1") + pod.log("c", 0)
    texts = [e[2] for e in kept]
    # the newest lines, in order, without a gap; the oldest were dropped
    first = int(texts[0].split()[1])
    assert first > 1
    assert texts == [f"line {i}" for i in range(first, 41)]


# ---------------------------------------------------------------- probes


def _probe(kind: str, *lines: str, period: str = "0.1", threshold: int = 1) -> list[str]:
    return [
        f"probe {kind}",
        f"probe_period_s {period}",
        "probe_timeout_s 60",
        f"probe_failure_threshold {threshold}",
        *lines,
    ]


def test_liveness_exec_failure_restarts_the_container(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr(
        "c",
        ["sleep", "1000"],
        conf=_probe("liveness", "probe_exec sh", "probe_exec -c", "probe_exec exit 1"),
    )
    assert pod.go([ctr], restart_policy="Always", grace_s="0.2") == ""
    st = _wait_for(
        lambda: (s := pod.status("c")) and s.get("restart_count") == "1" and s,
        "a restart after the liveness failure",
    )
    assert st["last_reason"] == "Error"
    assert st["last_exit_code"] == "137"  # pid 1 ignores TERM: KILL after the grace
    assert "Liveness probe failed: exec exited 1" in st["last_message"]
    pod.stop()
    pod.wait_exit()
    pod.assert_clean()


def test_http_and_tcp_probes_against_a_server_in_the_pod(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    server = Ctr(
        "web",
        ["sh", "-c", "mkdir /tmp/w && echo ok > /tmp/w/healthz && exec httpd -f -p 8080 -h /tmp/w"],
        conf=_probe(
            "readiness", "probe_http HTTP 127.0.0.1 8080 /healthz", "probe_success_threshold 2"
        )
        + _probe("liveness", "probe_tcp 127.0.0.1 8080", threshold=100),
    )
    missing = Ctr(
        "missing",
        ["sleep", "1000"],
        conf=_probe("readiness", "probe_http http 127.0.0.1 8080 /nothing-here"),
    )
    closed = Ctr("closed", ["sleep", "1000"], conf=_probe("readiness", "probe_tcp 127.0.0.1 8099"))
    tcp = Ctr("tcp", ["sleep", "1000"], conf=_probe("readiness", "probe_tcp localhost 8080"))
    headers = Ctr(
        "headers",
        ["sh", "-c", "nc -l -p 8081 > /home/request"],
        conf=_probe(
            "startup",
            "probe_http http 127.0.0.1 8081 /hello?x=1",
            "probe_http_header X-Probe: yes",
            threshold=1000,
        ),
    )
    assert pod.go([server, missing, closed, tcp, headers], restart_policy="Always") == ""
    pod.wait_status("web", "http readiness", state="running", ready="true")
    pod.wait_status("tcp", "tcp readiness", state="running", ready="true")
    log = _wait_for(
        lambda: "readiness probe of missing failed" in (m := pod.monitor_log()) and m,
        "a failing http probe",
    )
    assert "HTTP status 404" in log
    _wait_for(lambda: "readiness probe of closed failed" in pod.monitor_log(), "a refused tcp")
    request = _wait_for(
        lambda: (
            (pod.shared / "request").exists() and (pod.shared / "request").read_bytes().decode()
        ),
        "the request of the http probe",
    )
    lines = request.split("\r\n")
    assert lines[0] == "GET /hello?x=1 HTTP/1.1"
    assert "Host: 127.0.0.1:8081" in lines
    assert "X-Probe: yes" in lines
    assert pod.status("missing")["ready"] == "false"
    assert pod.status("closed")["ready"] == "false"
    # a startup probe that has not succeeded keeps the container not ready
    assert pod.status("headers")["ready"] == "false"
    assert pod.status("web")["restart_count"] == "0"  # the tcp liveness probe passes
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()


def test_https_probes_run_https_probe_arg_in_the_pod_network(pods: Callable[[], Pod]) -> None:
    """The monitor has no TLS: it runs https_probe_arg (in the pod's network namespace, killed
    at the timeout) and takes the line it prints as the reason."""
    pod = pods()
    assert pod.start().startswith("ready ")
    fake = (
        # written whole, then renamed: a probe running again never leaves it empty to read
        f"readlink /proc/self/ns/net > {pod.shared}/ns.$$ && mv {pod.shared}/ns.$$ "
        f'{pod.shared}/ns; echo "$@" >> {pod.shared}/args; '
        '[ "$3" = /slow ] && exec sleep 1000; echo "fake says no"; exit 1'
    )
    extra = [f"https_probe_arg {_esc(a)}" for a in ("/bin/sh", "-c", fake, "fake")]
    says_no = Ctr(
        "no",
        ["sleep", "1000"],
        conf=_probe("readiness", "probe_http HTTPS 127.0.0.1 8443 /ok", "probe_http_header A: b"),
    )
    slow = Ctr(
        "slow",
        ["sleep", "1000"],
        conf=[
            "probe readiness",
            "probe_period_s 0.1",
            "probe_timeout_s 0.3",
            "probe_http https 127.0.0.1 8444 /slow",
        ],
    )
    assert pod.go([says_no, slow], extra=extra) == ""
    log = _wait_for(
        lambda: (
            "readiness probe of no failed (1 in a row): fake says no" in (m := pod.monitor_log())
            and "readiness probe of slow failed (2 in a row): timed out" in m
            and m
        ),
        "the https probes' results",
    )
    assert "readiness probe of slow" in log
    assert (pod.shared / "ns").read_text().strip() == os.readlink(f"/proc/{pod.pid}/ns/net")
    args = (pod.shared / "args").read_text().splitlines()
    assert "127.0.0.1 8443 /ok A: b" in args and "127.0.0.1 8444 /slow" in args
    assert pod.status("no")["ready"] == "false" and pod.status("slow")["ready"] == "false"
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()


def test_https_probe_against_a_tls_server_in_the_pod(
    pods: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    server = tlsserver.start(f"/proc/{pod.pid}/ns/net", tmp_path)
    try:
        https = [f"https_probe_arg {_esc(a)}" for a in HTTPS_PROBE]
        good = Ctr(
            "good",
            ["sleep", "1000"],
            conf=_probe("readiness", f"probe_http https 127.0.0.1 {server.port} /healthz"),
        )
        missing = Ctr(
            "missing",
            ["sleep", "1000"],
            conf=_probe("readiness", f"probe_http https localhost {server.port} /missing"),
        )
        assert pod.go([good, missing], extra=https) == ""
        pod.wait_status("good", "https readiness", state="running", ready="true")
        _wait_for(
            lambda: (
                "readiness probe of missing failed (1 in a row): HTTP status 404"
                in pod.monitor_log()
            ),
            "a 404 from the TLS server",
        )
        assert pod.status("missing")["ready"] == "false"
        assert any(r["headers"]["User-Agent"] == "kube-probe/corral" for r in server.requests())
        pod.stop("0")
        pod.wait_exit()
        pod.assert_clean()
    finally:
        server.stop()


def test_monitor_log_is_capped(pods: Callable[[], Pod]) -> None:
    """A probe failing every 10 ms fills monitor.log: it is rotated to monitor.log.1."""
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr("c", ["sleep", "1000"], conf=_probe("readiness", "probe_tcp 127.0.0.1 9"))
    ctr.conf[1] = "probe_period_s 0.01"
    assert pod.go([ctr], monitor_log_max_bytes=4000) == ""
    old = pod.dir / "monitor.log.1"
    _wait_for(
        lambda: old.exists() and "readiness probe of c failed" in pod.monitor_log(),
        "monitor.log to be rotated",
    )
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()
    assert sorted(p.name for p in pod.dir.glob("monitor.log*")) == ["monitor.log", "monitor.log.1"]
    for path in (pod.dir / "monitor.log", old):
        assert 0 < path.stat().st_size <= 4000
    counts = [int(n) for n in re.findall(r"failed \((\d+) in a row\)", old.read_text())]
    counts += [int(n) for n in re.findall(r"failed \((\d+) in a row\)", pod.monitor_log())]
    assert counts == list(range(counts[0], counts[0] + len(counts)))  # no line lost, in order


def test_an_https_probe_needs_https_probe_arg(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr("c", ["true"], conf=_probe("liveness", "probe_http https 127.0.0.1 443 /"))
    said = pod.go([ctr])
    assert "the liveness probe of 'c' is https: that needs https_probe_arg" in said, said
    pod.wait_exit()
    pod.assert_clean()


# ---------------------------------------------------------------- stop


def _logging_runtime(pod: Pod, delay_run: float = 0) -> tuple[list[str], Path]:
    """A runtime that appends its arguments (one line per call) to a file, then runs ours;
    ``delay_run`` seconds of sleep first when the command is ``run``."""
    calls = pod.shared / "runtime-calls"
    script = pod.shared / "runtime.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'[ "$3" = run ] && sleep {delay_run}\n'
        f'exec {sys.executable} -m runtime.cli.oci "$@"\n'
    )
    script.chmod(0o755)
    return [str(script)], calls


def _commands(calls: Path) -> list[str]:
    """The runtime command of each call (after ``--root R``)."""
    return [line.split()[2] for line in calls.read_text().splitlines()]


def test_a_container_is_created_and_started_by_one_runtime_process(
    pods: Callable[[], Pod],
) -> None:
    pod = pods()
    runtime, calls = _logging_runtime(pod)
    assert pod.start().startswith("ready ")
    assert pod.go([Ctr("c", ["sh", "-c", "echo hi"])], runtime=runtime) == ""
    pod.wait_exit()
    pod.assert_clean()
    assert _commands(calls) == ["run", "delete"]  # not create, then start
    assert "run --detach --bundle " in calls.read_text()
    assert pod.log("c") == [("stdout", "F", "hi")]
    st = pod.status("c")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "Completed", "0")


def test_with_finish_deletes_the_finish_arg_deletes_the_containers(
    pods: Callable[[], Pod],
) -> None:
    # A pod's finish_arg tears it down through the library, containers included: the
    # monitor runs no runtime `delete` per container at the end.
    pod = pods()
    runtime, calls = _logging_runtime(pod)
    a, b = Ctr("a", ["true"]), Ctr("b", ["true"])
    finish = pod.shared / "finish.sh"
    root = pod.rt.root
    delete_all = (
        "from runtime import container; from runtime.state import list_ids; "
        f"[container.delete(i, force=True, root='{root}') for i in list_ids('{root}')]"
    )
    finish.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{delete_all}"\n')
    finish.chmod(0o755)
    assert pod.start().startswith("ready ")
    assert pod.go([a, b], runtime=runtime, finish=[str(finish)], finish_deletes="true") == ""
    pod.wait_exit()
    pod.assert_clean()  # no container left in the runtime: the finish deleted them
    assert _commands(calls) == ["run", "run"]


def test_finish_deletes_needs_a_finish_arg(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    said = pod.go([Ctr("c", ["true"])], finish_deletes="true")
    assert "finish_deletes without a finish_arg" in said, said
    pod.wait_exit()
    pod.assert_clean()


def test_a_stop_while_the_runtime_starts_a_container_stops_it(pods: Callable[[], Pod]) -> None:
    # The stop comes while `run` is under way: once it has run the container runs user
    # code, so it is a run like any other, stopped with the stop signal and the grace.
    pod = pods()
    runtime, calls = _logging_runtime(pod, delay_run=1.0)
    assert pod.start().startswith("ready ")
    stubborn = Ctr("stubborn", ["sleep", "1000"])  # pid 1 without a TERM handler: KILL ends it
    assert pod.go([stubborn], restart_policy="Always", runtime=runtime) == ""
    _wait_for(lambda: calls.exists() and "run" in _commands(calls), "the runtime's run")
    pod.stop("0.2")
    pod.wait_exit()
    pod.assert_clean()
    # TERM, then KILL after the grace, both sent by the monitor itself: no runtime process
    assert _commands(calls) == ["run", "delete"]
    st = pod.status("stubborn")
    assert (st["state"], st["exit_code"], st["signal"], st["restart_count"]) == (
        "terminated",
        "137",
        "9",
        "0",
    )
    assert st["started_at"]
    assert pod.pod_status()["phase"] == "Failed"


def test_stop_sends_term_then_kill_after_the_grace(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    stubborn = Ctr("stubborn", ["sleep", "1000"])  # pid 1 without a TERM handler
    polite = Ctr("polite", ["corral-test", "sigwait"])
    assert pod.go([stubborn, polite], restart_policy="Always") == ""
    for name in ("stubborn", "polite"):
        st = pod.wait_status(name, "running", state="running")
        assert st["ready"] == "true"  # no readiness probe: ready while running
        assert _alive(int(st["pid"]))
    _wait_for(lambda: ("stdout", "F", "ready") in pod.log("polite"), "the handler installed")
    # a grace long enough for the polite one to end on TERM on a loaded machine
    pod.stop("1.5")
    pod.wait_exit()
    pod.assert_clean()
    assert "stopping the pod, grace 1500 ms" in pod.monitor_log()
    st = pod.status("stubborn")
    assert (st["state"], st["exit_code"], st["signal"], st["restart_count"]) == (
        "terminated",
        "137",
        "9",
        "0",
    )
    st = pod.status("polite")
    assert (st["state"], st["reason"], st["exit_code"]) == ("terminated", "Completed", "0")
    assert pod.log("polite")[-1] == ("stdout", "F", str(int(signal.SIGTERM)))
    assert pod.pod_status()["phase"] == "Failed"


def test_share_pid_gives_the_pod_one_pid_namespace(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start("--share-pid").startswith("ready ")
    assert pod.reaper > 0
    sleeper = Ctr("sleeper", ["sleep", "1000"])
    looker = Ctr(
        "looker",
        [
            "sh",
            "-c",
            "until grep -lx sleep /proc/[0-9]*/comm; do sleep 0.05; done; cat /proc/1/comm",
        ],
    )
    assert pod.go([sleeper, looker], share_pid=True) == ""
    pod.wait_status("looker", "the looker to finish", state="terminated", reason="Completed")
    out = [e[2] for e in pod.log("looker")]
    assert out[-1] == "corral-pod-init"
    assert re.fullmatch(r"/proc/\d+/comm", out[0])
    pod.stop("0")
    pod.wait_exit()
    _wait_for(lambda: not _alive(pod.reaper), "the pod's pid 1 to go")
    pod.assert_clean()


def test_monitor_is_static_where_libc_allows() -> None:
    """What keeps a monitor near 1 MiB resident (bench/ measures it: the density suite) is
    static linking: no ld.so, no shared libc mapped. setup.py links it statically whenever
    the C library has a static archive."""
    from runtime.pod.monitor import monitor_path

    libc_a = subprocess.run(
        ["gcc", "-print-file-name=libc.a"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not os.path.isabs(libc_a) or not os.path.exists(libc_a):
        pytest.skip("no static libc (libc.a): the monitor is linked dynamically here")
    assert is_static_elf(Path(monitor_path())), "corral-monitor is dynamically linked"


def test_an_idle_monitor_with_logging_probed_containers(pods: Callable[[], Pod]) -> None:
    """A few containers logging and probed; their output and the probes go through."""
    pod = pods()
    assert pod.start().startswith("ready ")
    ctrs = [
        Ctr(
            f"c{i}",
            ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo; exec sleep 1000"],
            conf=_probe("readiness", "probe_tcp 127.0.0.1 9"),
        )
        for i in range(4)
    ]
    assert pod.go(ctrs) == ""
    for c in ctrs:
        pod.wait_status(c.name, "running", state="running")
        _wait_for(lambda c=c: len(pod.log(c.name)) == 7, f"the output of {c.name}")
    _wait_for(lambda: pod.monitor_log().count("readiness probe of") >= 8, "some probes")
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()


def test_host_network_keeps_the_host_net_and_uts(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start("--host-network").startswith("ready ")
    for ns, same in (("net", True), ("uts", True), ("ipc", False)):
        host = os.readlink(f"/proc/self/ns/{ns}")
        assert (os.readlink(f"/proc/{pod.pid}/ns/{ns}") == host) is same, ns
    pod.close_sync()
    pod.wait_exit()
    pod.assert_clean()


def test_startup_probe_gates_liveness(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr(
        "c",
        ["sleep", "1000"],
        conf=_probe(
            "startup", "probe_exec test", "probe_exec -e", "probe_exec /home/go", threshold=10**6
        )
        + _probe("liveness", "probe_exec false"),
    )
    assert pod.go([ctr], restart_policy="Always") == ""
    _wait_for(
        lambda: "startup probe of c failed (3 in a row)" in pod.monitor_log(),
        "three failed startup probes",
    )
    # no liveness probe ran, the container was not killed, and it is not ready
    assert "liveness probe of c" not in pod.monitor_log()
    st = pod.status("c")
    assert (st["state"], st["restart_count"], st["ready"]) == ("running", "0", "false")
    (pod.shared / "go").touch()
    st = _wait_for(
        lambda: (s := pod.status("c")) and s.get("restart_count") == "1" and s,
        "the liveness probe to kill the container once started",
    )
    assert "Liveness probe failed" in st["last_message"]
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()


def test_a_probe_that_times_out_fails(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    ctr = Ctr(
        "c",
        ["sleep", "1000"],
        conf=[
            "probe readiness",
            "probe_period_s 0.1",
            "probe_timeout_s 0.3",
            "probe_exec sleep",
            "probe_exec 1000",
        ],
    )
    assert pod.go([ctr]) == ""
    _wait_for(
        lambda: "readiness probe of c failed (2 in a row): timed out" in pod.monitor_log(),
        "two timed-out probes",
    )
    assert pod.status("c")["ready"] == "false"
    pod.stop("0")
    pod.wait_exit()
    pod.assert_clean()


def test_stop_during_backoff(pods: Callable[[], Pod]) -> None:
    pod = pods()
    assert pod.start().startswith("ready ")
    assert pod.go([Ctr("c", ["false"])], restart_policy="Always", backoff_initial_ms=600000) == ""
    pod.wait_status("c", "the backoff", state="waiting", reason="CrashLoopBackOff")
    pod.stop()
    pod.wait_exit()
    pod.assert_clean()
    st = pod.status("c")
    assert (st["state"], st["reason"], st["last_exit_code"]) == ("waiting", "CrashLoopBackOff", "1")
    assert pod.pod_status()["phase"] == "Failed"
