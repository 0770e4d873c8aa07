"""``corral agent`` as a command: it parses and checks its options, then the same process
(same pid) becomes the agent (corral_cli.agent_main). What a user sees of that: a bad option
is click's usage error (2) before anything starts; a failure of the agent itself is one line
naming what failed (1); ``ps`` shows the command line that was typed."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from testkit.kubeagent import CORRAL

pytestmark = pytest.mark.root


def test_a_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [CORRAL, "agent", "--server", "https://127.0.0.1:1", "--token", "t", "--node-taint", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r
    assert "Invalid value for --node-taint: invalid taint 'x'" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_agent_that_cannot_join_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [CORRAL, "agent", f"--server=https://127.0.0.1:{port}", "--token", "t"]
        + ["--data-dir", str(tmp_path / "a"), "--node-name", "n1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"corral: agent: get https://127.0.0.1:{port}/cacerts:"), r.stderr
    assert "Traceback" not in r.stderr


def test_the_agent_process_shows_the_command_line_typed(tmp_path: Path) -> None:
    with socket.socket() as listener:  # a server that accepts and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        argv = [CORRAL, "agent", f"--server=https://127.0.0.1:{port}", "--token", "t"]
        argv += ["--data-dir", str(tmp_path / "a"), "--node-name", "n1"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        conn = None
        try:
            conn, _ = listener.accept()  # the agent's process connects and waits for TLS
            deadline = time.monotonic() + 30
            while True:
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                title = cmdline.replace(b"\0", b" ").decode().strip()
                if "agent_main" not in title or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert title == " ".join(["corral", *argv[1:]]), title
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            assert b"corral_cli.agent_main" not in environ
            fds = {str(p.resolve()) for p in Path(f"/proc/{proc.pid}/fd").iterdir()}
            assert not any("corral-agent-config" in f for f in fds), fds  # read and closed
        finally:
            if conn is not None:
                conn.close()
            proc.kill()
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
