"""A real ``corral server`` for the tests (``testkit.kubeserver``, shared with the benchmarks);
kubectl (the machine's, and 1.20 from Debian's kubernetes-client) with their own HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

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
