"""``kubectl exec`` through the API server (``pods/exec``) to the kubelet (``/exec/...``): kubectl
1.32 over WebSocket (``v5.channel.k8s.io``), kubectl 1.20 over SPDY/3.1 (``v4.channel.k8s.io``,
which the API server carries on to the kubelet's WebSocket); a real ``corral server`` and
``corral agent`` (the cluster of test_kubelet.py, its fixture)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import socket
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from tests.integration import test_kubelet
from tests.integration.test_kubelet import IMAGE, Cluster, manifest, until
from tests.kubeserver import CORRAL, Kubectl

pytestmark = pytest.mark.root

cluster = test_kubelet.cluster  # the module's server and agent, as test_kubelet's
both = pytest.mark.parametrize("version", ["1.32", "1.20"])


def _apply(cluster: Cluster, *objs: dict[str, object]) -> None:
    k = cluster.kubectl()
    k.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


@pytest.fixture(scope="module")
def shell(cluster: Cluster) -> str:
    """A running pod ``sh1`` with one container, ``app``."""
    _apply(cluster, manifest("sh1"))
    cluster.wait_running("sh1")
    return "sh1"


@both
def test_exec_prints_the_command_output(cluster: Cluster, shell: str, version: str) -> None:
    p = cluster.kubectl(version).run("exec", shell, "--", "echo", "hi")
    assert p.stdout == "hi\n"


@both
def test_stdout_and_stderr_stay_apart(cluster: Cluster, shell: str, version: str) -> None:
    p = cluster.kubectl(version).run("exec", shell, "--", "sh", "-c", "echo out; echo err >&2")
    assert p.stdout == "out\n"
    assert "err\n" in p.stderr and "out" not in p.stderr


@both
def test_the_exit_code_is_kubectls(cluster: Cluster, shell: str, version: str) -> None:
    p = cluster.kubectl(version).run(
        "exec", shell, "--", "sh", "-c", "echo bye; exit 3", check=False
    )
    assert p.returncode == 3, p
    assert p.stdout == "bye\n"


@both
def test_a_command_the_container_lacks_fails(cluster: Cluster, shell: str, version: str) -> None:
    p = cluster.kubectl(version).run("exec", shell, "--", "no-such-command-here", check=False)
    assert p.returncode != 0, p
    assert p.stdout == ""


@both
def test_stdin_reaches_the_command(cluster: Cluster, shell: str, version: str) -> None:
    k = cluster.kubectl(version)
    p = k.run("exec", "-i", shell, "--", "cat", input="data\nmore data\n")
    assert p.stdout == "data\nmore data\n"
    big = "".join(f"line {i}\n" for i in range(40000))  # more than a pipe holds
    p = k.run("exec", "-i", shell, "--", "wc", "-c", input=big)
    assert p.stdout.strip() == str(len(big))
    # without -i the command's stdin is empty
    p = k.run("exec", shell, "--", "cat", input="ignored\n")
    assert p.stdout == ""


@both
def test_exec_picks_the_container(cluster: Cluster, version: str) -> None:
    containers = [
        {
            "name": name,
            "image": IMAGE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            "env": [{"name": "WHO", "value": name}],
        }
        for name in ("first", "second")
    ]
    _apply(cluster, manifest("two", containers=containers))
    cluster.wait_running("two")
    k = cluster.kubectl(version)
    p = k.run("exec", "two", "-c", "second", "--", "sh", "-c", "echo $WHO")
    assert p.stdout == "second\n"
    p = k.run("exec", "two", "-c", "first", "--", "sh", "-c", "echo $WHO")
    assert p.stdout == "first\n"
    p = k.run("exec", "two", "-c", "third", "--", "true", check=False)
    assert p.returncode == 1
    assert "container third is not valid for pod two" in p.stderr, p.stderr


@pytest.fixture(scope="module")
def exited(cluster: Cluster) -> str:
    """A running pod ``half`` whose container ``quick`` has exited (``main`` runs on)."""
    loop = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
    containers = [
        {"name": "main", "image": IMAGE, "command": ["sh", "-c", loop]},
        {"name": "quick", "image": IMAGE, "command": ["true"]},
    ]
    _apply(cluster, manifest("half", containers=containers, restartPolicy="Never"))

    def quick_exited() -> bool:
        st = cluster.pod("half").get("status") or {}
        states = {c["name"]: c.get("state") or {} for c in st.get("containerStatuses") or []}
        return "terminated" in states.get("quick", {}) and "running" in states.get("main", {})

    until("the quick container exits", quick_exited)
    return "half"


@both
def test_exec_into_an_exited_container_is_refused_as_kube_refuses_it(
    cluster: Cluster, exited: str, version: str
) -> None:
    """The kubelet finds the container among the running ones, as kube's does: an exited one
    is 'container not found', the upgrade refused (kubectl: 'unable to upgrade connection');
    it ran the command through the runtime, which printed its own error."""
    k = cluster.kubectl(version)
    p = k.run("exec", exited, "-c", "quick", "--", "echo", "hi", check=False)
    assert p.returncode == 1, p
    assert 'unable to upgrade connection: container not found ("quick")' in p.stderr, p.stderr
    assert p.stdout == ""
    assert k.run("exec", exited, "-c", "main", "--", "echo", "hi").stdout == "hi\n"


@both
def test_exec_into_a_missing_pod_is_not_found(cluster: Cluster, version: str) -> None:
    p = cluster.kubectl(version).run("exec", "nope", "--", "echo", "hi", check=False)
    assert p.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in p.stderr, p.stderr
    code, body = cluster.server.json(
        "POST", "/api/v1/namespaces/default/pods/nope/exec?command=true&stdout=true"
    )
    assert code == 404 and body["reason"] == "NotFound", body


def _user(
    cluster: Cluster, name: str, verbs: list[str] | None, home: Path, version: str
) -> Kubectl:
    """A kubectl for user ``name``, who may get pods and, with ``verbs``, pods/exec and
    pods/portforward."""
    path = cluster.server.root / f"{name}.kubeconfig"
    argv = [CORRAL, "kubeconfig", "--user", name, "--data-dir", str(cluster.server.data_dir)]
    subprocess.run([*argv, "-o", str(path)], check=True, capture_output=True)
    rules: list[dict[str, object]] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    if verbs:
        rules.append(
            {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": verbs}
        )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": f"exec-{name}", "namespace": "default"},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"exec-{name}", "namespace": "default"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"exec-{name}",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}],
    }
    _apply(cluster, role, binding)
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(cluster.kubectl(version).binary, home, path, version)


@both
def test_exec_needs_create_on_pods_exec(
    cluster: Cluster, shell: str, tmp_path: Path, version: str
) -> None:
    reader = _user(cluster, "reader", None, tmp_path / "reader", version)
    getter = _user(cluster, "getter", ["get"], tmp_path / "getter", version)
    runner = _user(cluster, "runner", ["create"], tmp_path / "runner", version)
    for who, k in (("reader", reader), ("getter", getter)):
        p = k.run("exec", shell, "--", "echo", "hi", check=False)
        assert p.returncode == 1, p
        assert p.stdout == ""
        assert (
            f'Error from server (Forbidden): pods "{shell}" is forbidden: User "{who}" cannot '
            f'create resource "pods/exec" in API group "" in the namespace "default"'
        ) in p.stderr, p.stderr
    p = runner.run("exec", shell, "--", "echo", "hi")
    assert p.stdout == "hi\n"


class Terminal:
    """kubectl on a pseudo-terminal it controls (resizes reach it as SIGWINCH): what it
    writes, and what the test types."""

    def __init__(self, k: Kubectl, args: list[str], rows: int, cols: int) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols)
        self.out = b""
        try:
            self.proc = subprocess.Popen(
                [k.binary, *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=k.env(),
                start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
        finally:
            os.close(slave)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self) -> bytes:
        """What kubectl writes next (b"" once it is gone); a minute of silence fails."""
        ready, _, _ = select.select([self.master], [], [], 60)
        if not ready:
            self.proc.kill()
            raise AssertionError(f"kubectl wrote nothing for a minute; so far: {self.out!r}")
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: kubectl is gone
            chunk = b""
        self.out += chunk
        return chunk

    def expect(self, what: bytes) -> None:
        while what not in self.out:
            if not self.read():
                raise AssertionError(f"kubectl ended without writing {what!r}: {self.out!r}")

    def finish(self) -> int:
        while self.read():
            pass
        return self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@both
def test_exec_with_a_terminal(cluster: Cluster, shell: str, version: str) -> None:
    script = "tty; read x; stty size; echo typed-$x; while read y; do stty size; done; exit 5"
    term = Terminal(
        cluster.kubectl(version), ["exec", "-it", shell, "--", "sh", "-c", script], 33, 101
    )
    try:
        term.expect(b"/dev/pts/")
        term.type(b"3\n")
        term.expect(b"typed-3")  # what was typed reached the command
        assert b"33 101" in term.out  # the client's size, through the resize channel
        # a resize while the command runs reaches it (kubectl sends it when it sees it)
        term.resize(40, 120)
        for _ in range(100):  # each newline: one `stty size` of the command
            seen = len(term.out)
            term.type(b"\n")
            while not re.search(rb"\d+ \d+\r\n", term.out[seen:]):
                if not term.read():
                    raise AssertionError(f"kubectl ended: {term.out!r}")
            if b"40 120" in term.out[seen:]:
                break
        else:
            raise AssertionError(f"the resize never reached the command: {term.out!r}")
        term.type(b"\x04")  # the end of input: the loop ends, so does sh
        assert term.finish() == 5, term.out
    finally:
        term.close()


# ============================================================================= port-forward


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> str:
    """A pod ``web``: an HTTP server on its loopback only (127.0.0.1:8080) and an echo server
    (any address, 9090) in another container."""
    serve = "echo hello-from-pod > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www"
    containers = [
        {
            "name": "http",
            "image": IMAGE,
            "command": ["sh", "-c", serve],
            "volumeMounts": [{"name": "www", "mountPath": "/www"}],
        },
        {"name": "echo", "image": IMAGE, "command": ["nc", "-ll", "-p", "9090", "-e", "cat"]},
    ]
    _apply(
        cluster, manifest("web", containers=containers, volumes=[{"name": "www", "emptyDir": {}}])
    )
    cluster.wait_running("web")
    return "web"


class Forward:
    """``kubectl port-forward`` running: the local port of each remote one."""

    def __init__(self, k: Kubectl, target: str, *remote: int) -> None:
        self.proc = k.popen(
            "port-forward", "--address", "127.0.0.1", target, *(f":{p}" for p in remote)
        )
        self.local: dict[int, int] = {}
        assert self.proc.stdout is not None
        while len(self.local) < len(remote):
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                assert self.proc.stderr is not None
                raise AssertionError(f"kubectl port-forward ended: {self.proc.stderr.read()}")
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if m:
                self.local[int(m.group(2))] = int(m.group(1))

    def connect(self, remote: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.local[remote]), timeout=60)

    def stop(self) -> str:
        """Stop kubectl; what it wrote on stderr."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=60)
        return err


def _get(conn: socket.socket, path: str = "/") -> bytes:
    with conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return _read_all(conn)


def _read_all(conn: socket.socket) -> bytes:
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


@both
def test_port_forward_reaches_the_pods_ports(cluster: Cluster, web: str, version: str) -> None:
    fwd = Forward(cluster.kubectl(version), f"pod/{web}", 8080, 9090)
    try:
        # a port the pod binds on its loopback only, twice (one stream pair a connection)
        for _ in range(2):
            reply = _get(fwd.connect(8080))
            assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n")[0], reply
            assert reply.endswith(b"hello-from-pod\n"), reply
        # both ways at once, more than any window, then our half-close ends the pod's side
        payload = os.urandom(3 << 20)
        with fwd.connect(9090) as conn:
            sender = threading.Thread(
                target=lambda: (conn.sendall(payload), conn.shutdown(socket.SHUT_WR))
            )
            sender.start()
            echoed = _read_all(conn)
            sender.join()
        assert echoed == payload
    finally:
        fwd.stop()


@both
def test_port_forward_to_a_closed_port_says_so(cluster: Cluster, web: str, version: str) -> None:
    fwd = Forward(cluster.kubectl(version), f"pod/{web}", 7777)
    try:
        with fwd.connect(7777) as conn:
            assert _read_all(conn) == b""  # the connection ends
    finally:
        err = fwd.stop()
    assert "an error occurred forwarding" in err and "7777" in err, err
    assert "connection refused" in err.lower(), err


@both
def test_port_forward_needs_create_on_pods_portforward(
    cluster: Cluster, web: str, version: str, tmp_path: Path
) -> None:
    reader = _user(cluster, "reader", None, tmp_path / "reader", version)
    p = reader.run("port-forward", f"pod/{web}", ":8080", check=False, timeout=60)
    assert p.returncode == 1, p
    assert (
        f'error upgrading connection: pods "{web}" is forbidden: User "reader" cannot create '
        f'resource "pods/portforward" in API group "" in the namespace "default"'
    ) in p.stderr, p.stderr
    runner = _user(cluster, "runner", ["create"], tmp_path / "runner", version)
    fwd = Forward(runner, f"pod/{web}", 8080)
    try:
        assert _get(fwd.connect(8080)).endswith(b"hello-from-pod\n")
    finally:
        fwd.stop()


# ============================================================================= attach


@both
def test_attach_streams_the_output_until_the_container_ends(cluster: Cluster, version: str) -> None:
    """The output written after kubectl attached, until this run of the container ends
    (the pod goes on: restartPolicy Always)."""
    name = f"talker-{version.replace('.', '')}"
    script = (
        "i=0; until [ -e /flag/go ]; do i=$((i+1)); echo waiting-$i; sleep 0.2; done; "
        "echo bye-now; echo err-now >&2; exit 0"
    )
    containers = [
        {
            "name": "app",
            "image": IMAGE,
            "command": ["sh", "-c", script],
            "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
        }
    ]
    _apply(
        cluster, manifest(name, containers=containers, volumes=[{"name": "flag", "emptyDir": {}}])
    )
    cluster.wait_running(name)
    k = cluster.kubectl(version)

    def logged() -> int:
        n = len(k.run("logs", name).stdout.splitlines())
        return n if n >= 3 else 0

    before = until("three lines logged", logged)
    attach = k.popen("attach", name)
    try:
        assert attach.stdout is not None
        first = attach.stdout.readline()
        assert re.fullmatch(r"waiting-\d+\n", first), first
        assert int(first[8:]) > before, first  # written after it attached, not before
        k.run("exec", name, "--", "touch", "/flag/go")
        out, err = attach.communicate(timeout=120)
    finally:
        if attach.poll() is None:
            attach.kill()
            attach.communicate()
    assert attach.returncode == 0, (out, err)
    assert out.endswith("bye-now\n") and out.count("bye-now") == 1, out  # this run only
    assert "err-now\n" in err, err


# ============================================================================= the Python client


def test_the_python_client_execs_over_v4(cluster: Cluster, shell: str) -> None:
    """The ``kubernetes`` client's ``stream`` (websocket-client, ``v4.channel.k8s.io``: no
    close signal) with stdin, stdout, stderr and the exit code from the status channel."""
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.stream import stream

    api = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(str(cluster.server.kubeconfig))
    )
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        shell,
        "default",
        command=["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 7"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    try:
        resp.write_stdin("hello\n")
        out, err = "", ""
        while resp.is_open():
            resp.update(timeout=60)
            out += resp.read_stdout(timeout=0) or ""
            err += resp.read_stderr(timeout=0) or ""
        assert resp.returncode == 7
    finally:
        resp.close()
    assert out == "got-hello\n"
    assert err == "oops\n"


def _stdin_pod(cluster: Cluster, name: str, script: str, **flags: bool) -> None:
    """A pod whose container ``app`` keeps stdin open (``flags``: stdinOnce, tty)."""
    containers = [
        {"name": "app", "image": IMAGE, "command": ["sh", "-c", script], "stdin": True, **flags}
    ]
    _apply(cluster, manifest(name, containers=containers, restartPolicy="Never"))
    cluster.wait_running(name)


@both
def test_attach_i_feeds_the_containers_stdin(cluster: Cluster, version: str) -> None:
    """``kubectl attach -i``: what kubectl reads reaches the container's stdin (stdin: true,
    kept open by the monitor), the container's output comes back at once; without
    stdinOnce the end of the attach leaves stdin open for the next one."""
    name = f"cat-{version.replace('.', '')}"
    _stdin_pod(cluster, name, 'while read l; do echo "got:$l"; echo "err:$l" >&2; done; echo eof')
    k = cluster.kubectl(version)
    for word in ("hello", "again"):
        attach = k.popen("attach", "-i", name, stdin=subprocess.PIPE)
        try:
            assert attach.stdin is not None and attach.stdout is not None
            attach.stdin.write(f"{word}\n")
            attach.stdin.flush()
            assert attach.stdout.readline() == f"got:{word}\n"
        finally:
            attach.kill()
            attach.communicate()
    until("the lines logged", lambda: "got:again" in k.run("logs", name).stdout)
    logged = k.run("logs", name).stdout
    assert "got:hello\nerr:hello\n" in logged and "eof" not in logged, logged
    assert cluster.pod(name)["status"]["phase"] == "Running"
    k.run("delete", "pod", name, "--grace-period=0", "--force", check=False)


@both
def test_attach_stdin_once_closes_stdin_when_kubectl_is_done(
    cluster: Cluster, version: str
) -> None:
    name = f"once-{version.replace('.', '')}"
    _stdin_pod(cluster, name, "cat; echo stdin-closed", stdinOnce=True)
    k = cluster.kubectl(version)
    p = k.run("attach", "-i", name, input="one\ntwo\n", timeout=120)
    assert p.stdout.startswith("one\ntwo\n"), p
    phase = until(
        "the container to end",
        lambda: (
            cluster.pod(name)["status"]["phase"] in ("Succeeded", "Failed")
            and cluster.pod(name)["status"]["phase"]
        ),
    )
    assert phase == "Succeeded"
    assert k.run("logs", name).stdout == "one\ntwo\nstdin-closed\n"
    k.run("delete", "pod", name, check=False)


@both
def test_attach_it_gets_a_prompt_runs_a_command_and_resizes(cluster: Cluster, version: str) -> None:
    name = f"tty-{version.replace('.', '')}"
    _stdin_pod(cluster, name, "exec sh -i", tty=True)
    term = Terminal(cluster.kubectl(version), ["attach", "-it", name], 33, 101)
    try:
        term.expect(b"command prompt")  # kubectl's hint: it is attached
        term.type(b"\n")  # a prompt, as kubectl's own hint says
        term.expect(b"# ")
        term.type(b"stty size; echo do''ne\n")
        term.expect(b"done")
        assert b"33 101" in term.out, term.out  # kubectl's size, through the resize channel
        term.resize(40, 120)
        for _ in range(100):  # kubectl sends the resize when it sees SIGWINCH
            seen = len(term.out)
            term.type(b"stty size\n")
            while not re.search(rb"\d+ \d+\r\n", term.out[seen:]):
                if not term.read():
                    raise AssertionError(f"kubectl ended: {term.out!r}")
            if b"40 120" in term.out[seen:]:
                break
        else:
            raise AssertionError(f"the resize never reached the container: {term.out!r}")
        term.type(b"exit 4\n")
        term.finish()
    finally:
        term.close()
    st = until(
        "the container to end",
        lambda: cluster.pod(name)["status"]["phase"] == "Failed" and cluster.pod(name),
    )
    assert st["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    cluster.kubectl(version).run("delete", "pod", name, check=False)


@both
def test_kubectl_run_it_rm(cluster: Cluster, version: str) -> None:
    """``kubectl run -it --rm --restart=Never``: the pod is created with stdin, stdinOnce and
    tty, kubectl attaches to it, the session is the container's, and the pod is deleted
    afterwards."""
    name = f"runit-{version.replace('.', '')}"
    k = cluster.kubectl(version)
    args = ["run", "-it", "--rm", "--restart=Never", f"--image={IMAGE}"]
    args += ["--image-pull-policy=IfNotPresent", name, "--", "sh", "-c"]
    # kubectl attaches with the terminal's size plus one, then sends the size itself (to make
    # a re-attached program redraw): the size is read once the second resize has come, and a
    # size that never becomes the terminal's fails on the minute of silence
    args += [
        'read x; echo typed-$x; until [ "$(stty size)" = "21 77" ]; do sleep 0.1; done; stty size'
    ]
    term = Terminal(k, args, 21, 77)
    try:
        term.expect(b"command prompt")  # kubectl's hint: it is attached
        term.type(b"abc\n")
        term.expect(b"typed-abc")
        term.expect(b"21 77")
        assert term.finish() == 0, term.out
    finally:
        term.close()
    assert b'pod "' + name.encode() + b'" deleted' in term.out, term.out
    until("the pod to be gone", lambda: k.run("get", "pod", name, check=False).returncode == 1)


@pytest.mark.parametrize(
    "sub,headers",
    [
        ("exec?command=true&stdout=true", {}),
        ("exec?command=true&stdout=true", {"Connection": "Upgrade", "Upgrade": "h2c"}),
        ("exec?command=true&stdout=true", {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}),
        ("exec?stdout=true", {"Connection": "Upgrade", "Upgrade": "websocket"}),
        ("exec?command=true", {"Connection": "Upgrade", "Upgrade": "websocket"}),
        ("portforward?ports=80", {}),
        ("portforward?ports=80", {"Connection": "Upgrade", "Upgrade": "h2c"}),
    ],
    ids=["exec-plain", "exec-h2c", "exec-spdy-no-protocol", "exec-no-command", "exec-no-stream",
         "pf-plain", "pf-h2c"],
)  # fmt: skip
def test_a_stream_request_without_a_stream_is_a_400(
    cluster: Cluster, shell: str, sub: str, headers: dict[str, str]
) -> None:
    """Requests kubectl never sends to a running pod's streams: a Status 400 each (or 403 for
    an upgrade we do not speak), and the server keeps serving."""
    code, _, raw = cluster.server.request(
        "POST", f"/api/v1/namespaces/default/pods/{shell}/{sub}", b"", headers
    )
    status = json.loads(raw)
    assert (status["kind"], status["code"]) == ("Status", code), status
    assert code in (400, 403), status
    assert cluster.server.request("GET", "/healthz")[0] == 200
