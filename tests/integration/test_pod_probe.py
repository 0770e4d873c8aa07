"""``python -m runtime.pod.probe https ...`` (the monitor's https probe) against a TLS server
with a self-signed certificate, in a network namespace this test makes (lo only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import tlsserver
from tests.conftest import REPO

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own, held by a sleeping process, with lo up."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 30
        while os.readlink(path) == own:
            assert time.monotonic() < deadline, "unshare -n did not make a namespace"
            time.sleep(0.01)
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"], check=True)
        yield path
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def server(netns: str, tmp_path: Path) -> Iterator[tlsserver.TlsServer]:
    srv = tlsserver.start(netns, tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def probe(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", sys.executable, "-m", "runtime.pod.probe", "https", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_https_get_without_verifying_the_certificate(
    netns: str, server: tlsserver.TlsServer
) -> None:
    port = str(server.port)
    res = probe(netns, "127.0.0.1", port, "/healthz", "X-Probe: yes", "User-Agent: custom")
    assert (res.returncode, res.stdout) == (0, "HTTP status 200\n"), res.stderr
    [req] = server.requests()
    assert req["path"] == "/healthz"
    headers = req["headers"]
    assert headers["Host"] == f"127.0.0.1:{port}"
    assert headers["X-Probe"] == "yes"
    assert headers["User-Agent"] == "custom"  # a header given replaces the default
    assert headers["Accept"] == "*/*" and headers["Connection"] == "close"
    res = probe(netns, "localhost", port, "/moved")
    assert (res.returncode, res.stdout) == (0, "HTTP status 302\n")  # 200..399 succeed
    assert server.requests()[-1]["headers"]["User-Agent"] == "kube-probe/corral"


def test_https_failures_say_why(netns: str, server: tlsserver.TlsServer) -> None:
    res = probe(netns, "127.0.0.1", str(server.port), "/nothing")
    assert (res.returncode, res.stdout) == (1, "HTTP status 404\n")
    res = probe(netns, "127.0.0.1", "1", "/healthz")  # nothing listens there
    assert res.returncode == 1 and "Connection refused" in res.stdout, res.stdout
    res = probe(netns, "127.0.0.1", "http", "/")
    assert res.returncode == 2 and res.stdout.startswith("usage:")


def test_plain_http_is_not_https(netns: str, tmp_path: Path) -> None:
    plain = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c",
         "import http.server as h, sys; s = h.HTTPServer(('127.0.0.1', 0), "
         "h.SimpleHTTPRequestHandler); print(s.server_address[1], flush=True); "
         "s.serve_forever()"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert plain.stdout is not None
        port = plain.stdout.readline().strip().decode()
        res = probe(netns, "127.0.0.1", port, "/")
        assert res.returncode == 1 and res.stdout.startswith(f"GET https://127.0.0.1:{port}/: ")
    finally:
        plain.kill()
        plain.wait()
