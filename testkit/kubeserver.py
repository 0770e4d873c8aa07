"""A real ``corral server`` for the tests and the benchmarks: its own data dir, a free port on
127.0.0.1, the embedded SQLite store unless ``extra`` names another datastore; an HTTPS client
with the admin certificate. Only processes started here are ever signalled."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testkit.net import free_port

CORRAL = str(Path(sys.executable).parent / "corral")
# For tests of the API itself: no scheduler writing conditions, events and a Lease.
NO_SCHEDULER = ("--disable-scheduler",)
# For tests of the scheduler: no controllers (node IPAM, node lifecycle) changing their nodes.
NO_CONTROLLERS = ("--disable-controller-manager",)
# The API server alone: no scheduler and no controllers acting on what a test makes.
API_ONLY = (*NO_SCHEDULER, *NO_CONTROLLERS)
START_DEADLINE = 60.0  # seconds: a start that takes longer is a failure, not a measurement

_CTX: dict[tuple[str, bool], ssl.SSLContext] = {}
_CTX_LOCK = threading.Lock()


@dataclass
class Server:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    agent: bool = False  # run the server's own agent (a node on this host)
    start_deadline: float = START_DEADLINE  # longer in a slow (emulated) guest

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig.yaml"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with _CTX_LOCK:  # a (re)start may come with new certificates
            for cert in (True, False):
                _CTX.pop((str(self.root), cert), None)
        argv = [
            CORRAL,
            "server",
            "--data-dir",
            str(self.data_dir),
            "--https-listen-port",
            str(self.port),
            "--write-kubeconfig",
            str(self.kubeconfig),
            *(() if self.agent else ("--disable-agent",)),
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_deadline
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if b"ready" in line or not line:
                    break
            if self.proc.poll() is not None:
                break
        if b"ready" not in line:
            self.kill()
            raise RuntimeError(f"corral server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> int | None:
        """SIGTERM, then wait; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # ---------------------------------------------------------------- raw HTTPS

    def ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        # Made once per kind and kept: threads of a test (a fake kubelet) share it, and
        # never read the certificate files while another writes them.
        with _CTX_LOCK:
            key = (str(self.root), client_cert)
            if key not in _CTX:
                _CTX[key] = self._make_ssl_context(client_cert)
            return _CTX[key]

    def _make_ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        if client_cert:
            cert = self.root / "admin.crt"
            key = self.root / "admin.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            os.chmod(key, 0o600)
            ctx.load_cert_chain(cert, key)
        return ctx

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
        client_cert: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ssl_context(client_cert), timeout=60
        )
        try:
            hdrs = dict(headers or {})
            if isinstance(body, dict | list):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        code, _, data = self.request(method, path, body, **kw)
        return code, json.loads(data) if data else None


@contextlib.contextmanager
def servers_on_etcd(root: Path, count: int = 2) -> Iterator[tuple[Any, list[Server]]]:
    """A three-member etcd (Debian's etcd-server) and ``count`` servers on it, the later ones
    joined with the first one's token (as k3s servers are); killed and removed on the way out.
    Nodes made as API objects renew no Lease: the node lifecycle must not taint them, so its
    grace period is an hour. Raises testkit.etcdcluster.EtcdMissing without etcd."""
    from testkit.etcdcluster import EtcdCluster

    etcd = EtcdCluster(3)
    etcd.start()
    servers: list[Server] = []
    try:
        extra = ("--datastore-endpoint", etcd.url, "--node-monitor-grace-period", "3600")
        for i in range(count):
            token = () if i == 0 else ("--token", read_token(servers[0]))
            srv = Server(root / f"s{i + 1}", extra=(*extra, *token))
            servers.append(srv)
            srv.start()
        yield etcd, servers
    finally:
        for srv in servers:
            srv.kill()
        etcd.stop()


def read_token(srv: Server) -> str:
    """The join token ``srv`` wrote at its first start."""
    return (srv.data_dir / "token").read_text().strip()


def lease_holder(srv: Server, lease: str) -> str:
    """The holderIdentity of the kube-system Lease ``lease`` ("" when there is none)."""
    code, body = srv.json(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}"
    )
    return str((body.get("spec") or {}).get("holderIdentity") or "") if code == 200 else ""
