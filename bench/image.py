"""Suite image: importing a multi-layer image, re-importing it, and mounting its rootfs.

The image is built here, deterministically (seeded pseudo-random files, fixed mtimes, sorted
entries), so every run and every machine measures the same bytes: half of each layer's files
are incompressible, half are text. Peers run from private directories under /var/tmp (podman
with its own --root/--runroot and the overlay storage driver; umoci into a fresh bundle), and
everything is removed afterwards, mounts first.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from corral_common import hostsys

from . import host, peers
from .model import CaseResult, Sample, Status, SuiteResult
from .proc import Launch, measure

if TYPE_CHECKING:
    from .spawn import Params

WORK_PARENT = "/var/tmp"
TAG = "localhost/corral-bench:1"

Runner = Callable[[], Sample]


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A synthetic image: ``layers`` layers of ``files`` files of about ``file_size`` bytes."""

    layers: int
    files: int
    file_size: int
    seed: int = 8

    def describe(self, total: int) -> str:
        return f"{self.layers}-layer, {total / 1e6:.1f} MB"


FULL_LARGE = ImageSpec(layers=5, files=400, file_size=20_000)  # about 40 MB
QUICK_LARGE = ImageSpec(layers=3, files=20, file_size=8_000)  # about 0.5 MB
SMALL = ImageSpec(layers=1, files=10, file_size=1_000, seed=9)


def _words(rng: random.Random, n: int) -> bytes:
    vocab = [b"corral", b"layer", b"overlay", b"digest", b"blob", b"image", b"pod", b"node"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(vocab) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:n])


def layer_entries(spec: ImageSpec, index: int) -> list[tuple[str, bytes]]:
    """The files of layer ``index``: (path, content), the same for the same spec."""
    rng = random.Random(f"{spec.seed}-{index}")
    out = []
    for j in range(spec.files):
        size = rng.randint(spec.file_size // 2, spec.file_size * 3 // 2)
        data = rng.randbytes(size) if j % 2 == 0 else _words(rng, size)
        out.append((f"data/l{index}/d{j % 8}/f{j:05}", data))
    return out


def layer_tars(spec: ImageSpec) -> list[bytes]:
    sys.path.insert(0, str(host.REPO))
    from testkit.imagebuild import Entry, tar_entries

    tars = []
    for i in range(spec.layers):
        files = layer_entries(spec, i)
        dirs = sorted({p.rsplit("/", k)[0] for p, _ in files for k in (1, 2)} | {"data"})
        entries = [Entry(d, "dir") for d in dirs] + [Entry(p, data=d) for p, d in files]
        tars.append(tar_entries(entries))
    return tars


@dataclass
class Built:
    docker_archive: Path  # uncompressed layers, as `docker save` writes
    oci_layout: Path  # gzip layers, as registries serve them
    layer_bytes: int  # uncompressed
    spec: ImageSpec

    @property
    def label(self) -> str:
        return self.spec.describe(self.layer_bytes)


def build(spec: ImageSpec, dest: Path) -> Built:
    sys.path.insert(0, str(host.REPO))
    from testkit.imagebuild import config_for, docker_files, oci_files, write_dir, write_tar

    tars = layer_tars(spec)
    cfg = config_for(tars, Cmd=["/bin/sh"])
    dest.mkdir(parents=True, exist_ok=True)
    files, _ = docker_files(tars, cfg, repo_tags=[TAG], compression="none")
    archive = write_tar(dest / "image-docker.tar", files)
    files, _ = oci_files(tars, cfg, ref_name="bench", compression="gzip")
    layout = write_dir(dest / "image-oci", files)
    return Built(archive, layout, sum(len(t) for t in tars), spec)


# -- clean-up --------------------------------------------------------------------------------


def mounts_under(path: str) -> list[str]:
    return hostsys.mounts_under(path)


def remove_tree(path: str) -> None:
    """Unmount whatever is mounted below ``path`` (deepest first), then remove it."""
    from images import overlay

    for mp in sorted(mounts_under(path), key=len, reverse=True):
        overlay.umount(Path(mp))
    shutil.rmtree(path, ignore_errors=True)


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


# -- the tools -------------------------------------------------------------------------------


@dataclass
class Tools:
    work: Path
    scratch: str
    env: dict[str, str]
    podman: str | None = field(default_factory=lambda: shutil.which("podman"))
    umoci: str | None = field(default_factory=lambda: shutil.which("umoci"))
    notes: list[str] = field(default_factory=list)
    _n: Iterator[int] = field(default_factory=lambda: iter(range(1 << 30)))

    def fresh(self, kind: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{kind}{next(self._n)}-", dir=self.work))

    def corral(self, *args: str) -> Launch:
        return Launch((str(Path(sys.executable).parent / "corral"), *args), self.env)

    def podman_cmd(self, d: Path, *args: str) -> Launch:
        assert self.podman is not None
        return Launch(
            (self.podman, "--root", str(d / "root"), "--runroot", str(d / "run"),
             "--storage-driver", "overlay", "--events-backend", "none",
             "--cgroup-manager", "cgroupfs", *args),
            self.env,
        )  # fmt: skip


@contextmanager
def tools_context() -> Iterator[Tools]:
    work = Path(tempfile.mkdtemp(prefix="cbi-", dir=WORK_PARENT))
    try:
        t = Tools(work=work, scratch=str(work / "output"), env=peers.child_env())
        if t.podman is None:
            t.notes.append("podman is not installed: not measured.")
        if t.umoci is None:
            t.notes.append("umoci is not installed: not measured.")
        yield t
    finally:
        remove_tree(str(work))


def import_corral(t: Tools, source: Path) -> Runner:
    """``corral image import`` into an empty store (made before, removed after, untimed)."""

    def run() -> Sample:
        d = t.fresh("corral")
        try:
            return measure(t.corral("image", "--store", str(d), "import", str(source)), t.scratch)
        finally:
            remove_tree(str(d))

    return run


def load_podman(t: Tools, archive: Path) -> Runner:
    def run() -> Sample:
        d = t.fresh("p")
        try:
            return measure(t.podman_cmd(d, "load", "-q", "-i", str(archive)), t.scratch)
        finally:
            remove_tree(str(d))

    return run


def unpack_umoci(t: Tools, layout: Path) -> Runner:
    assert t.umoci is not None
    umoci = t.umoci

    def run() -> Sample:
        d = t.fresh("umoci")
        try:
            argv = (umoci, "unpack", "--image", f"{layout}:bench", str(d / "bundle"))
            return measure(Launch(argv, t.env), t.scratch)
        finally:
            remove_tree(str(d))

    return run


def reimport_corral(t: Tools, archive: Path, store: Path) -> Runner:
    def run() -> Sample:
        return measure(t.corral("image", "--store", str(store), "import", str(archive)), t.scratch)

    return run


def reload_podman(t: Tools, archive: Path, root: Path) -> Runner:
    def run() -> Sample:
        return measure(t.podman_cmd(root, "load", "-q", "-i", str(archive)), t.scratch)

    return run


def mount_loop(store_root: Path, ref: str, count: int) -> Runner:
    """``count`` overlay rootfs mounts and unmounts through the library, in this process:
    wall and CPU (this process, kernel time included) for the whole loop."""
    from images.store import Store

    store = Store(store_root)
    img = store.get(ref)
    base = store_root / "ctr"

    def run() -> Sample:
        base.mkdir(exist_ok=True)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(count):
            dest, work = base / f"r{i}", base / f"w{i}"
            store.mount_rootfs(img, dest, work)
            store.umount(dest, work)
            os.rmdir(dest)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return Sample(wall_s=wall, cpu_s=cpu, maxrss_kib=0)

    return run


def _store_data_bytes(store: Path) -> int:
    return tree_bytes(store / "blobs") + tree_bytes(store / "layers")


def reimport_note(grown: int, reimports: int) -> str:
    """What the store's growth over ``reimports`` re-imports of stored layers says."""
    head = f"corral's blobs and layers grew by {grown} bytes over {reimports} re-imports"
    if grown == 0:
        return head + ": no layer data was written again."
    return head + f" ({grown / max(reimports, 1):,.0f} bytes each): layer data was written again."


def image_suite(p: Params) -> SuiteResult:
    from .spawn import run_case
    from .suites import SUITES

    runs, warmup, loop = p.runs, p.warmup, p.loop
    cases: list[CaseResult] = []
    with tools_context() as t:
        large = build(QUICK_LARGE if p.quick else FULL_LARGE, t.work / "large")
        small = build(SMALL, t.work / "small")
        # 1. a docker-archive into an empty store: corral vs podman load
        runners = [("corral image import", import_corral(t, large.docker_archive))]
        if t.podman:
            runners.append(("podman load", load_podman(t, large.docker_archive)))
        cases.append(run_case(
            f"import of a {large.label} docker-archive into an empty store",
            runners, rounds=runs, warmup=warmup, runs_per_sample=1,
            notes=("Each run starts from an empty store made beforehand and removed "
                   "afterwards (not timed). podman: its own --root/--runroot, overlay driver.",),
        ))  # fmt: skip
        # 2. an OCI layout with gzip layers: corral import vs umoci unpack
        runners = [("corral image import", import_corral(t, large.oci_layout))]
        if t.umoci:
            runners.append(("umoci unpack", unpack_umoci(t, large.oci_layout)))
        cases.append(run_case(
            "import of the same image from an OCI layout (gzip layers) vs umoci unpack",
            runners, rounds=runs, warmup=warmup, runs_per_sample=1,
            notes=("umoci unpack flattens the layers into one bundle rootfs; corral verifies "
                   "and stores each blob and unpacks each layer into its own tree.",),
        ))  # fmt: skip
        # 3. the same layers again, into stores that have them
        store = t.fresh("warm")
        measure(t.corral("image", "--store", str(store), "import", str(large.docker_archive)),
                t.scratch)  # fmt: skip
        before = _store_data_bytes(store)
        runners = [("corral image import", reimport_corral(t, large.docker_archive, store))]
        if t.podman:
            proot = t.fresh("p")
            measure(t.podman_cmd(proot, "load", "-q", "-i", str(large.docker_archive)), t.scratch)
            runners.append(("podman load", reload_podman(t, large.docker_archive, proot)))
        case = run_case(
            "re-import of the same image (every layer already stored)",
            runners, rounds=runs, warmup=warmup, runs_per_sample=1,
        )  # fmt: skip
        note = reimport_note(_store_data_bytes(store) - before, warmup + runs)
        cases.append(CaseResult(case.title, case.warmup, case.runs_per_sample, case.runners,
                                case.ratios, (note,)))  # fmt: skip
        # 4. rootfs creation: the large image vs the small one
        for b, name in ((large, "large"), (small, "small")):
            measure(t.corral("image", "--store", str(t.work / "mnt"), "import", "--name",
                             name, str(b.docker_archive)), t.scratch)  # fmt: skip
        os.sync()  # else the first unmount pays for writing back what the imports wrote
        cases.append(run_case(
            f"{loop} overlay rootfs mounts + unmounts: large vs small image",
            [(f"large ({large.label})", mount_loop(t.work / "mnt", "large", loop)),
             (f"small ({small.label})", mount_loop(t.work / "mnt", "small", loop))],
            rounds=p.loop_runs, warmup=warmup, runs_per_sample=loop,
            notes=("Store.mount_rootfs + Store.umount through the library in the bench "
                   "process. The ratio here is large/small: near 1× means rootfs creation "
                   "does not grow with the image size. Peak RSS is not measured (0).",),
        ))  # fmt: skip
    return SuiteResult(
        name="image",
        description=SUITES["image"],
        status=Status.OK,
        reason="; ".join(t.notes),
        cases=tuple(cases),
    )
