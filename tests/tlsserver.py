"""An HTTPS server for probe tests, run inside a network namespace (a pod's, or one a test
made) with a throwaway self-signed certificate from ``openssl req``.

``GET /healthz`` answers 200, ``/moved`` 302, anything else 404; every request's path and
headers are appended as a JSON line to ``requests`` (``TlsServer.requests()`` reads them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER = r"""
import http.server, json, ssl, sys

cert, key, log, port = sys.argv[1:5]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
        code = {"/healthz": 200, "/moved": 302}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def self_signed(dest: Path) -> tuple[Path, Path]:
    """(cert, key) in ``dest``; skips the test when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (scripts/setup.sh installs it)")
    cert, key = dest / "cert.pem", dest / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=probe"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass
class TlsServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start(netns: str, tmp: Path, port: int = 0) -> TlsServer:
    """An HTTPS server on 127.0.0.1 of the network namespace at ``netns`` (a path), on
    ``port`` (0: any free one)."""
    cert, key = self_signed(tmp)
    log = tmp / "requests"
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", SERVER]
        + [str(cert), str(key), str(log), str(port)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        proc.wait()
        raise AssertionError(f"the TLS server did not start (said {line!r})")
    return TlsServer(proc, int(line), log)
