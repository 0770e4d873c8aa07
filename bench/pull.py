"""Suite pull: a multi-layer image pulled from a local registry, Corral vs podman and skopeo.

The image is the image suite's synthetic one (``bench.image.build``: deterministic, gzip
layers as registries serve them), pushed once (untimed) to Debian's docker-registry
(distribution 2.8), started by the suite on 127.0.0.1 with a free port (``testkit.registry``)
and stopped afterwards. Every runner pulls the same reference over plain HTTP into a
destination of its own, made before and removed after each run (untimed), under
/var/tmp/cbl-*:

- ``corral image pull`` into an empty store (blobs verified, layers unpacked);
- ``podman pull`` into an empty private ``--root``/``--runroot`` (overlay driver: layers
  unpacked too);
- ``skopeo copy`` into an empty OCI layout (blobs only: nothing is unpacked).

Then the same pull into a store (and a podman root) that already holds the image.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import host, image
from .model import CaseResult, Sample, Status, SuiteResult
from .proc import Launch, measure

if TYPE_CHECKING:
    from .spawn import Params

REPO_TAG = "bench/pull:1"
COLD_NOTES = (
    "Each run starts from an empty destination made beforehand and removed afterwards (not "
    "timed). corral and podman verify the blobs and unpack every layer (podman: its own "
    "--root/--runroot, overlay driver); skopeo copy only writes the blobs into an OCI layout, "
    "so it is the floor for fetching the bytes.",
    "The registry is docker-registry (distribution 2.8) on 127.0.0.1, plain HTTP, filesystem "
    "storage on the same disk; every runner pulls the same reference.",
)
WARM_NOTE = (
    "Into a store (podman: a root) that already holds the image: the manifest is fetched "
    "again, no layer is."
)


@dataclass
class PullTools:
    """The commands each runner runs, and where their destinations go."""

    work: Path
    scratch: str
    env: dict[str, str]
    ref: str  # host:port/bench/pull:1
    conf: Path  # an empty registries.conf: the ref is fully qualified
    podman: str | None = field(default_factory=lambda: shutil.which("podman"))
    skopeo: str | None = field(default_factory=lambda: shutil.which("skopeo"))

    def fresh(self, kind: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.work))

    def corral_pull(self, store: Path) -> Launch:
        exe = str(Path(sys.executable).parent / "corral")
        return Launch(
            (exe, "image", "--store", str(store), "pull", self.ref, "--tls-verify=false",
             "--registries-conf", str(self.conf), "--authfile", str(self.work / "auth.json")),
            self.env,
        )  # fmt: skip

    def podman_pull(self, root: Path) -> Launch:
        assert self.podman is not None
        return Launch(
            (self.podman, "--root", str(root / "root"), "--runroot", str(root / "run"),
             "--storage-driver", "overlay", "--events-backend", "none",
             "--cgroup-manager", "cgroupfs", "pull", "-q", "--tls-verify=false", self.ref),
            self.env,
        )  # fmt: skip

    def skopeo_copy(self, layout: Path) -> Launch:
        assert self.skopeo is not None
        return Launch(
            (self.skopeo, "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{self.ref}", f"oci:{layout}:bench"),
            self.env,
        )  # fmt: skip

    def missing(self) -> list[str]:
        """Notes for the peers this machine lacks (``bench.cli.missing_peers`` reads them)."""
        out = []
        for name, path in (("podman", self.podman), ("skopeo", self.skopeo)):
            if path is None:
                out.append(f"{name} is not installed: not measured.")
        return out


Runner = image.Runner
LABELS = {"corral": "corral image pull", "podman": "podman pull",
          "skopeo": "skopeo copy (to oci:)"}  # fmt: skip


def cold(t: PullTools, kind: str) -> Runner:
    """A pull into a fresh destination of ``kind`` (corral, podman, skopeo)."""
    make = {"corral": t.corral_pull, "podman": t.podman_pull, "skopeo": t.skopeo_copy}[kind]

    def run() -> Sample:
        d = t.fresh(kind)
        try:
            target = d / "layout" if kind == "skopeo" else d
            return measure(make(target), t.scratch)
        finally:
            image.remove_tree(str(d))

    return run


def warm(t: PullTools, kind: str, dest: Path) -> Runner:
    make = {"corral": t.corral_pull, "podman": t.podman_pull}[kind]

    def run() -> Sample:
        return measure(make(dest), t.scratch)

    return run


def suite_result(cases: list[CaseResult], notes: list[str], description: str) -> SuiteResult:
    return SuiteResult(
        name="pull",
        description=description,
        status=Status.OK,
        reason="; ".join(notes),
        cases=tuple(cases),
    )


@contextmanager
def _registry(work: Path) -> Iterator[str]:
    """docker-registry on 127.0.0.1 holding nothing yet; yields its host:port."""
    sys.path.insert(0, str(host.REPO))
    from testkit.registry import start_registry

    try:
        reg = start_registry(work / "registry")
    except RuntimeError as e:  # it exited or did not listen: the suite failed, saying why
        raise OSError(f"docker-registry: {e}") from e
    try:
        yield reg.host
    finally:
        reg.stop()


def _push(built: image.Built, work: Path, ref: str) -> str:
    """Import the OCI layout into a store of its own and push it to ``ref`` (untimed)."""
    from images.pull import Options
    from images.push import push
    from images.regconf import RegistriesConf
    from images.store import Store

    store = Store(work / "source")
    store.import_path(built.oci_layout, name="bench:1")
    opts = Options(conf=RegistriesConf(), tls_verify=False, auth_file=str(work / "auth.json"))
    return push(store, "bench:1", ref, opts)


def pull_suite(p: Params) -> SuiteResult:
    from . import peers
    from .spawn import run_case
    from .suites import SUITES

    sys.path.insert(0, str(host.REPO))
    from testkit.registry import REGISTRY, Missing, need

    try:
        need(REGISTRY, "docker-registry")
    except Missing as e:
        return SuiteResult("pull", SUITES["pull"], Status.SKIPPED, str(e))
    work = Path(tempfile.mkdtemp(prefix="cbl-", dir=image.WORK_PARENT))
    try:
        built = image.build(image.QUICK_LARGE if p.quick else image.FULL_LARGE, work / "image")
        with _registry(work) as reg_host:
            conf = work / "registries.conf"
            conf.write_text("")
            ref = f"{reg_host}/{REPO_TAG}"
            digest = _push(built, work, ref)
            t = PullTools(work, str(work / "output"), peers.child_env(), ref, conf)
            kinds = ["corral"] + [k for k in ("podman", "skopeo") if getattr(t, k)]
            cases = [
                run_case(
                    f"pull of a {built.label} image (gzip layers) from a local registry "
                    "into an empty store",
                    [(LABELS[k], cold(t, k)) for k in kinds],
                    rounds=p.runs,
                    warmup=p.warmup,
                    runs_per_sample=1,
                    notes=COLD_NOTES,
                )  # fmt: skip
            ]
            stores = {"corral": t.fresh("warm-corral")}
            measure(t.corral_pull(stores["corral"]), t.scratch)
            if t.podman:
                stores["podman"] = t.fresh("warm-podman")
                measure(t.podman_pull(stores["podman"]), t.scratch)
            cases.append(
                run_case(
                    "pull of the same image again (every layer already stored)",
                    [(LABELS[k], warm(t, k, d)) for k, d in stores.items()],
                    rounds=p.runs,
                    warmup=p.warmup,
                    runs_per_sample=1,
                    notes=(WARM_NOTE, f"Manifest digest {digest}."),
                )  # fmt: skip
            )
            return suite_result(cases, t.missing(), SUITES["pull"])
    finally:
        image.remove_tree(str(work))
