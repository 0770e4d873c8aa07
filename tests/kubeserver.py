"""A real ``corral server`` for the tests (``testkit.kubeserver``, shared with the benchmarks);
kubectl (the machine's, and 1.20 from Debian's kubernetes-client) with their own HOME."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.kubeserver import (
    API_ONLY,
    CORRAL,
    NO_CONTROLLERS,
    NO_SCHEDULER,
    START_DEADLINE,
    Server,
)

__all__ = [
    "API_ONLY",
    "CORRAL",
    "KUBECTL_120",
    "KUBECTL_CURRENT",
    "KUBECTL_VERSIONS",
    "api_only_server",
    "running_server",
    "kubectl_for",
    "temp_namespace",
    "NO_SCHEDULER",
    "REPO",
    "START_DEADLINE",
    "Kubectl",
    "NO_CONTROLLERS",
    "Server",
]

REPO = Path(__file__).resolve().parent.parent
# kubectl 1.20: scripts/setup.sh unpacks Debian's kubernetes-client here.
KUBECTL_120 = os.environ.get(
    "CORRAL_KUBECTL_120", "/var/cache/corral-test/kubernetes-client/usr/bin/kubectl"
)
KUBECTL_CURRENT = shutil.which("kubectl") or "/usr/bin/kubectl"


@dataclass
class Kubectl:
    binary: str
    home: Path
    kubeconfig: Path
    version: str

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
        }

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"kubectl {self.version} {' '.join(args)}: rc={p.returncode}\n"
                f"{p.stdout}\n{p.stderr}"
            )
        return p

    def popen(self, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )


# Both kubectl versions the API tests run (a module's ``kubectl`` fixture is parametrised on it).
KUBECTL_VERSIONS = {"1.32": KUBECTL_CURRENT, "1.20": KUBECTL_120}


def kubectl_for(version: str, server: Server, tmp: Any) -> Kubectl:
    """kubectl ``version`` (a key of KUBECTL_VERSIONS) with a HOME of its own below ``tmp``
    (pytest's tmp_path_factory) and ``server``'s kubeconfig; the test is skipped when that
    kubectl is not installed (scripts/setup.sh unpacks 1.20)."""
    import pytest

    binary = KUBECTL_VERSIONS[version]
    if not os.access(binary, os.X_OK):
        pytest.skip(f"kubectl {version} not found at {binary} (scripts/setup.sh)")
    return Kubectl(binary, tmp.mktemp(f"home-{version}"), server.kubeconfig, version)


@contextlib.contextmanager
def api_only_server(root: Path) -> Iterator[Server]:
    """The API server alone (no scheduler or controllers acting on what a test makes), in
    ``root``; it must stop cleanly on SIGTERM."""
    with running_server(root, API_ONLY) as srv:
        yield srv


@contextlib.contextmanager
def running_server(root: Path, extra: tuple[str, ...]) -> Iterator[Server]:
    """A server started with ``extra`` options, in ``root``; it must stop cleanly on
    SIGTERM."""
    srv = Server(root, extra=extra)
    srv.start()
    try:
        yield srv
    finally:
        rc = srv.stop()
    assert rc == 0, f"corral server did not stop cleanly on SIGTERM: {rc}"


@contextlib.contextmanager
def temp_namespace(server: Server, prefix: str) -> Iterator[str]:
    """A namespace of its own (``prefix``-random) made through the API, deleted afterwards."""
    import uuid

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    code, body = server.json("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code == 201, body
    try:
        yield name
    finally:
        server.json("DELETE", f"/api/v1/namespaces/{name}")
