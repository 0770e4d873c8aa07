"""``kubectl exec`` through the API server (``pods/exec``) to the kubelet (``/exec/...``): kubectl
1.32 over WebSocket (``v5.channel.k8s.io``), kubectl 1.20 over SPDY/3.1 (``v4.channel.k8s.io``,
which the API server carries on to the kubelet's WebSocket); a real ``corral server`` and
``corral agent`` (the cluster of test_kubelet.py, its fixture)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from tests.integration import test_kubelet
from tests.integration.test_kubelet import IMAGE, Cluster, manifest
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
    """A kubectl for user ``name``, who may get pods and, with ``verbs``, use pods/exec."""
    path = cluster.server.root / f"{name}.kubeconfig"
    argv = [CORRAL, "kubeconfig", "--user", name, "--data-dir", str(cluster.server.data_dir)]
    subprocess.run([*argv, "-o", str(path)], check=True, capture_output=True)
    rules: list[dict[str, object]] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    if verbs:
        rules.append({"apiGroups": [""], "resources": ["pods/exec"], "verbs": verbs})
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
            "name": role["metadata"]["name"],
        },  # type: ignore[index]
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


def _in_terminal(k: Kubectl, args: list[str], after: bytes, typed: bytes) -> tuple[int, bytes]:
    """Run kubectl on a pseudo-terminal of 33 rows and 101 columns, type ``typed`` once it
    wrote ``after``; its exit code and everything it wrote to the terminal."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    try:
        proc = subprocess.Popen(
            [k.binary, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=k.env(),
            start_new_session=True,
        )
        os.close(slave)
        slave = -1
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                proc.kill()
                raise AssertionError(f"kubectl {args} wrote nothing for a minute: {out!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: kubectl is gone
                break
            if not chunk:
                break
            out += chunk
            if typed and after in out:
                os.write(master, typed)
                typed = b""
        return proc.wait(timeout=60), out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


@both
def test_exec_with_a_terminal(cluster: Cluster, shell: str, version: str) -> None:
    k = cluster.kubectl(version)
    script = "tty; stty size; read x; echo typed-$x; exit 5"
    code, out = _in_terminal(k, ["exec", "-it", shell, "--", "sh", "-c", script], b"101", b"3\n")
    assert code == 5, out
    assert b"/dev/pts/" in out, out
    assert b"33 101" in out, out  # the client's size, from the resize channel
    assert b"typed-3" in out, out  # what was typed reached the command
