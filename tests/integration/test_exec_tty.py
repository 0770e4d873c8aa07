"""exec, terminals and the console socket, through the corral-oci CLI as podman drives it."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Runtime

pytestmark = pytest.mark.root


def _running(runtime: Runtime, *args: str, **process: object) -> str:
    cid, bundle = runtime.prepare(*args, **process)
    runtime.cli("run", "--detach", "--bundle", str(bundle), cid, check=True)
    return cid


def _read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


class ConsoleListener:
    """What conmon does: listen on a unix socket and take the pty master sent to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.master = -1
        self.name = b""
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(30)
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
            self.name = msg
            self.master = fds[0]

    def wait(self) -> int:
        self.thread.join(30)
        assert self.master >= 0, "no pty master received"
        return self.master

    def close(self) -> None:
        self.sock.close()
        if self.master >= 0:
            os.close(self.master)


def test_exec_joins_the_container(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    res = runtime.cli(
        "exec", cid, "sh", "-c", "corral-test hostname; corral-test netdevs; exec corral-test ppid"
    )
    assert res.rc == 0, res.err
    hostname, lo, ppid = res.out.split()
    assert (hostname, lo) == ("corral", "lo")
    assert ppid == "0"  # its parent is outside the container's pid namespace
    # It sees the container's init as pid 1 and the same mount namespace.
    res = runtime.cli("exec", cid, "corral-test", "cat", "/proc/1/cmdline")
    assert res.rc == 0, res.err
    assert res.out.split("\0")[:2] == ["corral-test", "sleep"]


def test_exec_exit_code_user_env_cwd(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    assert runtime.cli("exec", cid, "sh", "-c", "exit 9").rc == 9
    res = runtime.cli(
        "exec",
        "--user",
        "1000:1000",
        "-g",
        "2000",
        "--cwd",
        "/tmp",
        "--env",
        "FOO=bar",
        cid,
        "sh",
        "-c",
        "corral-test ids; corral-test cwd; corral-test env FOO",
    )
    assert res.rc == 0, res.err
    assert res.out.splitlines() == [
        "uid=1000 gid=1000 euid=1000 egid=1000 groups=2000",
        "/tmp",
        "bar",
    ]


def test_exec_is_in_the_container_cgroup(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    res = runtime.cli("exec", "--detach", "--pid-file", str(runtime.tmp / "p"), cid, "sleep", "100")
    assert res.rc == 0, res.err
    pid = (runtime.tmp / "p").read_text().strip()
    paths = json.loads((runtime.root / cid / "state.json").read_text())["cgroup_paths"]
    procs = Path(paths["pids"], "cgroup.procs").read_text().split()
    assert pid in procs


def test_exec_process_file_and_missing_command(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    proc = {"args": ["corral-test", "env", "X"], "cwd": "/", "env": ["X=from-file"]}
    pf = runtime.tmp / "process.json"
    pf.write_text(json.dumps(proc))
    res = runtime.cli("exec", "--process", str(pf), cid)
    assert res.rc == 0, res.err
    assert res.out.strip() == "from-file"
    res = runtime.cli("exec", cid, "no-such-command")
    assert res.rc != 0
    assert "executable file not found in $PATH" in res.err


def test_exec_in_stopped_container_fails(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true")
    runtime.cli("run", "--keep", "--bundle", str(bundle), cid, check=True)
    res = runtime.cli("exec", cid, "true")
    assert res.rc != 0 and "stopped" in res.err


def test_create_with_console_socket(runtime: Runtime) -> None:
    listener = ConsoleListener(runtime.tmp / "console.sock")
    try:
        cid, bundle = runtime.prepare(
            "sh", "-c", "corral-test ttyname; read line; echo got=$line", terminal=True
        )
        res = runtime.cli(
            "create", "--console-socket", str(listener.path), "--bundle", str(bundle), cid
        )
        assert res.rc == 0, res.err
        master = listener.wait()
        assert runtime.cli("start", cid).rc == 0
        out = _read_until(master, b"/dev/pts/")
        os.write(master, b"typed\n")
        out += _read_until(master, b"got=typed")
        assert b"/dev/pts/0" in out
    finally:
        listener.close()


def test_terminal_needs_console_socket_when_detached(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare("true", terminal=True)
    res = runtime.cli("create", "--bundle", str(bundle), cid)
    assert res.rc != 0 and "console-socket" in res.err
    assert not (runtime.root / cid).exists()
    cid2, bundle2 = runtime.prepare("true")
    res = runtime.cli("create", "--console-socket", "/nonexistent", "--bundle", str(bundle2), cid2)
    assert res.rc != 0 and "terminal" in res.err


def test_run_attached_with_terminal(runtime: Runtime) -> None:
    cid, bundle = runtime.prepare(
        "sh", "-c", "corral-test ttyname; read line; echo got=$line; exit 4", terminal=True
    )
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    p = subprocess.run(
        [*cmd, "run", "--bundle", str(bundle), cid],
        input=b"hello\n",
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert p.returncode == 4, p.stderr
    assert b"/dev/pts/0" in p.stdout
    assert b"got=hello" in p.stdout


def test_exec_with_tty(runtime: Runtime) -> None:
    cid = _running(runtime, "corral-test", "sleep", "1000")
    cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(runtime.root)]
    p = subprocess.run(
        [*cmd, "exec", "--tty", cid, "corral-test", "ttyname"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"/dev/pts/")
