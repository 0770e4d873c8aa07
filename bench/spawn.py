"""Suites spawn-cli and spawn-lib: how fast a container of busybox `true` runs, whole."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from . import host, peers
from .model import CaseResult, RunnerResult, Sample, Status, SuiteResult
from .proc import Launch, measure
from .stats import interleaved_rounds, loop_sample, ratios
from .suites import SPAWN

MEMORY_LIMIT = 64 * 1024 * 1024
PIDS_LIMIT = 64
ROOTFS_CACHE = "/var/tmp/corral-test-cache"


@dataclass(frozen=True, slots=True)
class Params:
    runs: int  # N for single runs
    warmup: int
    loop: int  # runs in one loop timed as a whole
    loop_runs: int  # N for loops
    quick: bool = False
    pods: int = 100  # pod: pods one after another
    burst: int = 20  # pod: pods at once ...
    bursts: int = 3  # ... this many times
    density: int = 50  # density: pods running when the monitors' memory is read
    max_pods: int = 500  # density: pods started until the first failure or this many


@dataclass
class Bench:
    """Everything a spawn suite uses: the bundles, the runtimes, a scratch file, and what to
    say about them. Built by ``bench_context``, which cleans it all up."""

    workdir: str
    cgroup_name: str
    bundles: dict[str, str]
    runtimes: list[peers.CliRuntime]
    notes: list[str] = field(default_factory=list)
    footnotes: dict[str, str] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def lib_root(self) -> str:
        return os.path.join(self.workdir, "corral-lib")

    @property
    def scratch(self) -> str:
        return os.path.join(self.workdir, "output")

    def new_id(self, tag: str) -> str:
        return f"bench-{os.getpid()}-{tag}-{next(self._ids)}"


def make_config(rootfs: str, cgroup_name: str, *, limits: bool) -> dict[str, object]:
    from runtime.config import default_spec

    spec = default_spec()
    spec["root"] = {"path": rootfs, "readonly": True}
    process = spec["process"]
    assert isinstance(process, dict)
    process["terminal"] = False
    process["args"] = ["true"]
    linux = spec["linux"]
    assert isinstance(linux, dict)
    # Relative: every runtime puts it below this process's own cgroup in each hierarchy.
    linux["cgroupsPath"] = cgroup_name
    if limits:
        resources = linux.setdefault("resources", {})
        assert isinstance(resources, dict)
        resources["memory"] = {"limit": MEMORY_LIMIT}
        resources["pids"] = {"limit": PIDS_LIMIT}
    return spec


def _write_bundle(path: str, config: dict[str, object]) -> str:
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    return path


@contextmanager
def bench_context() -> Iterator[Bench]:
    """Bundles over the cached test rootfs, a state root per runtime, crun's namespace when
    the host needs it; on the way out, every container, state root, cgroup and the
    namespace are removed, whatever happened."""
    from pathlib import Path

    sys.path.insert(0, str(host.REPO))
    from testkit.rootfs import cached_rootfs

    rootfs = str(cached_rootfs(Path(ROOTFS_CACHE)))
    workdir = tempfile.mkdtemp(prefix="corral-bench-", dir="/run")
    cgroup_name = f"corral-bench-{os.getpid()}"
    env = peers.child_env()
    with ExitStack() as stack:
        b = Bench(workdir=workdir, cgroup_name=cgroup_name, bundles={}, runtimes=[])
        stack.callback(shutil.rmtree, workdir, True)

        def finish() -> None:
            lib = peers.CliRuntime("corral (library)", peers.corral_oci_binary(), b.lib_root, env)
            for rt in [*b.runtimes, lib]:
                left = rt.clean(b.scratch)
                if left:
                    print(f"bench: {rt.label} left containers: {left}", file=sys.stderr)
            left_cg = host.remove_cgroup_everywhere(cgroup_name)
            if left_cg:
                print(f"bench: could not remove cgroups: {left_cg}", file=sys.stderr)

        b.bundles["plain"] = _write_bundle(
            os.path.join(workdir, "bundle"), make_config(rootfs, cgroup_name, limits=False)
        )
        b.bundles["limits"] = _write_bundle(
            os.path.join(workdir, "bundle-limits"), make_config(rootfs, cgroup_name, limits=True)
        )
        b.runtimes.append(
            peers.CliRuntime("corral-oci", peers.corral_oci_binary(), f"{workdir}/corral", env)
        )
        runc = shutil.which("runc")
        if runc:
            b.runtimes.append(peers.CliRuntime("runc", runc, f"{workdir}/runc", env))
        else:
            b.notes.append("runc is not installed: not measured.")
        crun = shutil.which("crun")
        if crun is None:
            b.notes.append("crun is not installed: not measured.")
        elif peers.crun_needs_namespace():
            try:
                fd = stack.enter_context(peers.crun_mount_namespace())
            except peers.NamespaceError as e:
                b.notes.append(f"crun: not measured ({e}).")
            else:
                b.runtimes.append(
                    peers.CliRuntime(peers.CRUN_NS_LABEL, crun, f"{workdir}/crun", env, fd)
                )
                b.footnotes[peers.CRUN_NS_LABEL] = peers.CRUN_NS_NOTE
        else:
            b.runtimes.append(peers.CliRuntime("crun", crun, f"{workdir}/crun", env))
        # Registered last, so it runs first: containers and cgroups go before the namespace.
        stack.callback(finish)
        yield b


Runner = Callable[[], Sample]


def _single(b: Bench, rt: peers.CliRuntime, bundle: str) -> Runner:
    def run() -> Sample:
        return measure(rt.run(bundle, b.new_id(rt.label.split()[0])), b.scratch)

    return run


def _engine_sequence(b: Bench, rt: peers.CliRuntime, bundle: str) -> Runner:
    """create, start, state, delete --force: the commands podman and containerd's shim run
    for a container, as one sample (totals of the four)."""

    def run() -> Sample:
        cid = b.new_id(rt.label.split()[0])
        steps = (("create", "--bundle", bundle, cid), ("start", cid), ("state", cid),
                 ("delete", "--force", cid))  # fmt: skip
        return loop_sample([measure(rt.command(*argv), b.scratch) for argv in steps])

    return run


def _loop(b: Bench, rt: peers.CliRuntime, bundle: str, count: int) -> Runner:
    one = _single(b, rt, bundle)

    def run() -> Sample:
        return loop_sample([one() for _ in range(count)])

    return run


def _lib_loop(b: Bench, bundle: str, count: int, warmup: int) -> Runner:
    """A fresh interpreter per sample; the worker times its loop itself."""
    out = os.path.join(b.workdir, "libworker.json")
    root = b.lib_root

    def run() -> Sample:
        argv = (
            sys.executable, "-m", "bench.libworker", "--bundle", bundle, "--root", root,
            "--prefix", b.new_id("lib"), "--count", str(count), "--warmup", str(warmup),
            "--out", out,
        )  # fmt: skip
        measure(Launch(argv=argv, env=peers.child_env()), b.scratch)
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
        os.unlink(out)
        return Sample(float(data["wall_s"]), float(data["cpu_s"]), int(data["maxrss_kib"]))

    return run


def run_case(
    title: str,
    runners: list[tuple[str, Runner]],
    *,
    rounds: int,
    warmup: int,
    runs_per_sample: int,
    notes: tuple[str, ...] = (),
    warmers: dict[str, Runner] | None = None,
) -> CaseResult:
    """Warm-up runs of each (with its ``warmers`` entry when given: a single run rather than
    a whole loop), then ``rounds`` interleaved rounds; Corral (first) vs the rest."""
    by_label = dict(runners)
    for label, runner in runners:
        warm = (warmers or {}).get(label, runner)
        for _ in range(warmup):
            warm()
    samples: dict[str, list[Sample]] = {label: [] for label, _ in runners}
    for order in interleaved_rounds([label for label, _ in runners], rounds):
        for label in order:
            samples[label].append(by_label[label]())
    results = tuple(RunnerResult(label, tuple(samples[label])) for label, _ in runners)
    return CaseResult(
        title=title,
        warmup=warmup,
        runs_per_sample=runs_per_sample,
        runners=results,
        ratios=ratios(results),
        notes=notes,
    )


def spawn_cli(b: Bench, p: Params) -> SuiteResult:
    plain, limits = b.bundles["plain"], b.bundles["limits"]
    cases = [
        run_case(
            "run busybox `true`",
            [(rt.label, _single(b, rt, plain)) for rt in b.runtimes],
            rounds=p.runs,
            warmup=p.warmup,
            runs_per_sample=1,
        ),
        run_case(
            f"run busybox `true` with memory ({MEMORY_LIMIT // 2**20} MiB) and pids "
            f"({PIDS_LIMIT}) limits",
            [(rt.label, _single(b, rt, limits)) for rt in b.runtimes],
            rounds=p.runs,
            warmup=p.warmup,
            runs_per_sample=1,
        ),
        run_case(
            "create, start, state, delete --force of busybox `true` (an engine's sequence)",
            [(rt.label, _engine_sequence(b, rt, plain)) for rt in b.runtimes],
            rounds=p.runs,
            warmup=p.warmup,
            runs_per_sample=4,
            notes=("Each sample is the four commands one after another: wall and CPU are "
                   "their totals, peak RSS the largest.",),
        ),
        run_case(
            f"{p.loop} sequential runs of busybox `true`",
            [(rt.label, _loop(b, rt, plain, p.loop)) for rt in b.runtimes],
            rounds=p.loop_runs,
            warmup=p.warmup,
            warmers={rt.label: _single(b, rt, plain) for rt in b.runtimes},
            runs_per_sample=p.loop,
            notes=("A loop is timed as a whole: wall and CPU are totals over its runs, "
                   "peak RSS is the largest of any run.",),
        ),
    ]  # fmt: skip
    return SuiteResult(
        name="spawn-cli",
        description=SPAWN["spawn-cli"],
        status=Status.OK,
        reason="; ".join(b.notes),
        cases=tuple(cases),
    )


def spawn_lib(b: Bench, p: Params) -> SuiteResult:
    plain = b.bundles["plain"]
    runners: list[tuple[str, Runner]] = [
        ("corral (library)", _lib_loop(b, plain, p.loop, max(p.warmup, 1)))
    ]
    runners += [(rt.label, _loop(b, rt, plain, p.loop)) for rt in b.runtimes]
    case = run_case(
        f"{p.loop} containers in a row: library in one process vs command-line loops",
        runners,
        rounds=p.loop_runs,
        warmup=p.warmup,
        warmers={
            "corral (library)": _lib_loop(b, plain, 1, 1),
            **{rt.label: _single(b, rt, plain) for rt in b.runtimes},
        },
        runs_per_sample=p.loop,
        notes=(
            "corral (library): runtime.container.run (create, start, wait, delete) in one "
            "Python process; the worker times its loop itself, after its own warm-up runs, so "
            "the interpreter start is not counted. CPU is that process plus the containers it "
            "reaped; peak RSS is the worker's own (the Python process), the others' the "
            "largest runtime process of the loop.",
        ),
    )
    return SuiteResult(
        name="spawn-lib",
        description=SPAWN["spawn-lib"],
        status=Status.OK,
        reason="; ".join(b.notes),
        cases=(case,),
    )
