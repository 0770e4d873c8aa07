"""Boot the test VM (cgroup v2 only) and run the guest's cgroup v2 tests in it.

Two boots: a smoke test of the harness itself (output, exit status, what the guest sees), then
tests/vm/guest/ with the project's own .venv Python, from inside a leaf cgroup as under
systemd. A failure in the guest fails here with the guest's pytest output.
CORRAL_VM_GUEST_K=EXPR passes ``-k EXPR`` to the guest's pytest.
"""

from __future__ import annotations

import os
import shlex
import sys
import uuid
from pathlib import Path

import pytest

from testkit.cache import CACHE_DIR
from tests.conftest import REPO
from tests.vm.conftest import Runner

pytestmark = pytest.mark.root

GUEST_TESTS = "tests/vm/guest"
GUEST_TIMEOUT = 900.0


def test_the_vm_runs_a_command_on_a_private_copy_of_the_host(vm: Runner) -> None:
    marker = Path("/var/tmp") / f"corral-vm-written-in-the-guest-{uuid.uuid4().hex[:8]}"
    script = (
        "echo to-stdout; echo to-stderr >&2; "
        "cat /proc/self/cgroup; "
        "awk '$3 ~ /^cgroup/ {print $2, $3}' /proc/self/mounts; "
        "cat /sys/fs/cgroup/cgroup.controllers; "
        f"echo x > {marker} && cat {marker}; "
        "exit 7"
    )
    res = vm(["/bin/sh", "-c", script], timeout=300)
    assert res.rc == 7, res
    lines = res.out.splitlines()
    assert lines[0] == "to-stdout"
    assert res.err.strip() == "to-stderr"
    assert lines[1] == "0::/"
    assert lines[2] == "/sys/fs/cgroup cgroup2"  # the only cgroup mount
    assert {"cpu", "cpuset", "io", "memory", "pids"} <= set(lines[3].split())
    assert lines[4] == "x"  # the guest can write anywhere: into its tmpfs overlay
    assert not marker.exists()  # ... and the host sees none of it


def test_cgroup_v2_suite_passes_in_the_vm(vm: Runner) -> None:
    # The guest reads the shared rootfs from the host's cache: build it here, at host speed.
    from testkit.rootfs import BusyboxMissing, cached_rootfs

    try:
        cached_rootfs(CACHE_DIR)
    except BusyboxMissing as exc:
        pytest.skip(str(exc))
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    pytest_cmd = [
        str(python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
        GUEST_TESTS,
    ]
    # A leaf cgroup for the test process, as systemd would give it (a cgroup with processes
    # cannot delegate controllers to children: the driver must cope with that).
    script = (
        "set -e; cg=/sys/fs/cgroup/corral-vm.slice/tests.scope; mkdir -p $cg; "
        f"echo $$ > $cg/cgroup.procs; exec {shlex.join(pytest_cmd)}"
    )
    env = {"PYTHONDONTWRITEBYTECODE": "1", "CORRAL_TEST_CACHE": str(CACHE_DIR)}
    if os.environ.get("CORRAL_VM_GUEST_K"):
        script += " -k " + shlex.quote(os.environ["CORRAL_VM_GUEST_K"])
    res = vm(["/bin/sh", "-c", script], cwd=str(REPO), env=env, timeout=GUEST_TIMEOUT)
    report = f"guest pytest exited {res.rc} after {res.seconds:.0f} s\n{res.out}\n{res.err}"
    print(report)
    assert res.rc == 0, report
    assert " passed" in res.out and " failed" not in res.out, report
