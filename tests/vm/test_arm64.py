"""Boot the arm64 VM (qemu-system-aarch64, TCG, ``virt``) and run Corral's arm64 selection in it.

The guest is Debian's arm64 kernel with a Debian arm64 userland (tests/vm/arm64.py builds and
caches it). The checkout is shared read-only under a tmpfs overlay; the guest's gcc builds the
cffi core, corral-monitor and corral-exec into it (``setup.py build_ext --inplace``), then
pytest runs tests/vm/guest/test_arm64_guest.py from a leaf cgroup. The built files are kept
on the host, keyed by a hash of the C sources and build scripts, and handed to the next boot
instead of compiling again (about two minutes under TCG). ``python -m pytest tests/vm -k arm64``
runs this; it skips with the reason where qemu-system-aarch64 is missing or the userland
cannot be built (no Debian mirror).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.vm import arm64, harness

pytestmark = pytest.mark.root

GUEST_TESTS = "tests/vm/guest/test_arm64_guest.py"
TIMEOUT = 900.0

#: What `setup.py build_ext --inplace` makes (the cffi modules' names vary with the build).
BUILT_GLOBS = ("runtime/_corral*.so", "runtime/_seccomp*.so", "runtime/_bin/corral-*")
#: What that build reads.
BUILD_INPUTS = ("setup.py", "pyproject.toml", "csrc")


def build_key(repo: Path = REPO) -> str:
    """A hash of the C sources, the build scripts and the guest's userland (its compiler)."""
    h = hashlib.sha256(arm64.cache_key().encode())
    for top in BUILD_INPUTS:
        paths = [repo / top] if (repo / top).is_file() else sorted((repo / top).rglob("*"))
        for p in paths:
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(f"{p.relative_to(repo)}\n".encode() + p.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def arm64_boot() -> harness.BootFiles:
    if os.geteuid() != 0:
        pytest.skip("needs root (the guest's files are root's; qemu must read them all)")
    try:
        harness.qemu_binary(harness.AARCH64)
        return harness.boot_files(arch=harness.AARCH64)
    except harness.VMUnavailable as exc:
        pytest.skip(str(exc))


def _guest_script(built: str) -> str:
    """Use the host's cached build when there is one, else build and hand it back."""
    globs = " ".join(BUILT_GLOBS)
    return f"""set -e
built={built}
if [ -e $built/complete ]; then
    cp -a $built/runtime/. runtime/
    echo "arm64: using the cached build" >&2
else
    python3 setup.py -q build_ext --inplace >$built.log 2>&1 || {{ cat $built.log >&2; exit 1; }}
    for f in {globs}; do mkdir -p $built/$(dirname $f); cp -a $f $built/$f; done
    touch $built/complete
    echo "arm64: built the C core in the guest" >&2
fi
# The checkout on every Python's path, as the host's editable install (compat mode) puts it:
# the pod monitor runs `python3 -m runtime.cli.oci` from the pod's directory.
echo "$PWD" > /usr/local/lib/python{arm64.PYTHON_VERSION}/dist-packages/corral-checkout.pth
cg=/sys/fs/cgroup/corral-vm.slice/tests.scope
mkdir -p $cg
echo $$ > $cg/cgroup.procs
exec python3 -m pytest -p no:cacheprovider -q -rs {GUEST_TESTS}
"""


def test_arm64_selection_passes_in_the_arm64_vm(arm64_boot: harness.BootFiles) -> None:
    cache = arm64.CACHE_DIR / f"built-{build_key()}"

    def hand_in(out: Path) -> None:
        if (cache / "complete").is_file():
            shutil.copytree(cache, out / "built", symlinks=True)

    def take_out(out: Path) -> None:
        made = out / "built"
        if (cache / "complete").is_file() or not (made / "complete").is_file():
            return
        for old in arm64.CACHE_DIR.glob("built-*"):
            shutil.rmtree(old, ignore_errors=True)  # built from other sources
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=arm64.CACHE_DIR))
        shutil.copytree(made, tmp / "b", symlinks=True)
        try:
            os.rename(tmp / "b", cache)
        except OSError:
            pass  # a concurrent run stored the same build
        shutil.rmtree(tmp, ignore_errors=True)

    res = harness.run(
        ["/bin/sh", "-c", _guest_script(f"{harness.GUEST_OUT}/built")],
        cwd=str(REPO),
        env={"PYTHONDONTWRITEBYTECODE": "1", "CORRAL_TEST_CACHE": "/var/tmp/corral-test-cache"},
        timeout=TIMEOUT,
        arch=harness.AARCH64,
        src=REPO,
        before=hand_in,
        after=take_out,
    )
    report = f"arm64 guest exited {res.rc} after {res.seconds:.0f} s\n{res.out}\n{res.err}"
    print(report)
    assert res.rc == 0, report
    assert " passed" in res.out and " failed" not in res.out and "skipped" not in res.out, report
