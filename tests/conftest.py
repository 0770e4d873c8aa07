"""Fixtures shared by the test suites.

Containers made by a test live under a state root of their own and a cgroup below this
process's own cgroup; the finalizers delete them with ``--force`` and check nothing is left,
even when the test failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime import config as cfg
from runtime.state import list_ids
from testkit.cache import CACHE_DIR

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def _cgroup2_dirs() -> list[str]:
    """The cgroup2 mount's root and every directory down to this process's own cgroup: the
    ones whose cgroup.subtree_control creating a cgroup may enable controllers in."""
    mounts = [ln.split() for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    roots = [f[4] for f in mounts if f[f.index("-") + 1] == "cgroup2"]
    own = next((ln[3:] for ln in Path("/proc/self/cgroup").read_text().splitlines()
                if ln.startswith("0::")), "/")  # fmt: skip
    out = []
    for root in roots:
        path = root
        out.append(path)
        for part in [p for p in own.split("/") if p]:
            path = os.path.join(path, part)
            out.append(path)
    return [p for p in out if os.path.exists(os.path.join(p, "cgroup.subtree_control"))]


@pytest.fixture(scope="session", autouse=True)
def _subtree_control_restored() -> Iterator[None]:
    """Controllers the tests' cgroups enabled in the host's cgroup2 subtree_control (hugetlb
    through the unified hierarchy of a hybrid host, say) are disabled again at the end."""
    if os.geteuid() != 0:
        yield
        return
    before = {
        p: set(Path(p, "cgroup.subtree_control").read_text().split()) for p in _cgroup2_dirs()
    }
    yield
    for path in sorted(before, key=len, reverse=True):  # children first
        control = Path(path, "cgroup.subtree_control")
        try:
            added = set(control.read_text().split()) - before[path]
        except OSError:
            continue
        for ctrl in sorted(added):
            try:
                control.write_text(f"-{ctrl}")
            except OSError:
                pass  # still in use below: a leak the cgroup checks report


@pytest.fixture(scope="session")
def rootfs() -> Iterator[Path]:
    """The shared busybox + corral-test rootfs; containers must mount it read-only. A session
    whose tests wrote into it (a file, a mount point the runtime had to make) ends with an
    error naming what changed: every later run shares the tree."""
    from testkit.rootfs import BusyboxMissing, cached_rootfs, manifest_changes, tree_manifest

    try:
        path = cached_rootfs(CACHE_DIR)
    except BusyboxMissing as e:
        pytest.skip(str(e))
    before = tree_manifest(path)
    yield path
    changes = manifest_changes(before, tree_manifest(path))
    if changes:
        pytest.fail(f"tests wrote into the shared rootfs {path}: {', '.join(changes[:10])}")


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Runtime:
    """Drives ``corral-oci`` as a separate process, the way podman does."""

    root: Path
    tmp: Path
    rootfs: Path
    tag: str
    made: list[str] = field(default_factory=list)

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 60, check: bool = False
    ) -> Result:
        cmd = [sys.executable, "-m", "runtime.cli.oci", "--root", str(self.root), *args]
        # Files, not pipes: a created container keeps its stdio open until it exits, so a
        # pipe would not see EOF when `create` returns.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(
                cmd,
                input=input.encode() if input is not None else None,
                stdout=out,
                stderr=err,
                timeout=timeout,
                cwd=REPO,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
            out.seek(0)
            err.seek(0)
            res = Result(p.returncode, out.read().decode(), err.read().decode())
        if check and p.returncode != 0:
            raise AssertionError(f"{cmd} exited {p.returncode}: {res.err}")
        return res

    def spec(self, *args: str, **process: Any) -> dict[str, Any]:
        """A default spec over the shared rootfs running ``args`` with no terminal."""
        spec = cfg.default_spec()
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = list(args)
        spec["process"].update(process)
        spec["mounts"].append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}
        )
        return spec

    def bundle(self, spec: dict[str, Any], name: str | None = None) -> Path:
        path = self.tmp / (name or f"bundle-{uuid.uuid4().hex[:8]}")
        path.mkdir()
        (path / "config.json").write_text(json.dumps(spec, indent=1))
        return path

    def new_id(self, base: str = "c") -> str:
        cid = f"{base}-{uuid.uuid4().hex[:8]}"
        self.made.append(cid)
        return cid

    def cgroup_path(self, cid: str) -> str:
        """A relative cgroupsPath: below this process's own cgroup in every hierarchy."""
        return f"{self.tag}-{cid}"

    def prepare(
        self, *args: str, resources: dict[str, Any] | None = None, **process: Any
    ) -> tuple[str, Path]:
        """A fresh id and a bundle for it, its cgroup under ours."""
        cid = self.new_id()
        spec = self.spec(*args, **process)
        spec["linux"]["cgroupsPath"] = self.cgroup_path(cid)
        if resources:
            spec["linux"]["resources"].update(resources)
        return cid, self.bundle(spec, cid)

    def run(self, *args: str, resources: dict[str, Any] | None = None, **process: Any) -> Result:
        cid, bundle = self.prepare(*args, resources=resources, **process)
        return self.cli("run", "--bundle", str(bundle), cid)

    def state(self, cid: str) -> dict[str, Any]:
        res = self.cli("state", cid, check=True)
        return json.loads(res.out)


def leftover_cgroups(tag: str) -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if d.startswith(tag):
                found.append(os.path.join(dirpath, d))
        if dirpath.count("/") > 6:
            dirnames[:] = []
    return found


@pytest.fixture
def runtime(rootfs: Path, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(
        root=tmp_path / "state", tmp=tmp_path, rootfs=rootfs, tag=f"ct{uuid.uuid4().hex[:6]}"
    )
    try:
        yield rt
    finally:
        for cid in set(rt.made) | set(list_ids(str(rt.root))):
            rt.cli("delete", "--force", cid)
        left = list_ids(str(rt.root))
        cgroups = leftover_cgroups(rt.tag)
        for path in sorted(cgroups, key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError:
                pass
        assert not left, f"state left behind: {left}"
        assert not cgroups, f"cgroups left behind: {cgroups}"
