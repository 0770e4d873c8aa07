"""Suite pod: pod start latency, from the manifest to the pod's app container running.

The latency of one pod is ``end - t0``:

- **t0** is the wall clock (CLOCK_REALTIME) when the manifest is handed over: before
  ``parse_pod`` + ``runtime.pod.api.run`` (library, in this process), before the fork of
  ``corral pod run -d FILE`` (command line), before the fork of ``podman pod create`` (podman).
  For pods started at once, t0 is the moment the whole burst is handed over.
- **end** is the same observable for every runner: the app container's first output, seen
  from outside. Its command first creates a file named after the pod in a host directory
  bind-mounted into it (a hostPath volume for Corral, ``-v`` for podman), then sleeps; end is
  that file's modification time (the kernel's clock when the container's process wrote it,
  at its coarse-clock granularity, a few ms at most). This process polls for the file to learn
  that the pod got there, but the figure does not depend on how often it polls.

The image is imported beforehand (not timed); each pod is removed after it was measured (not
timed), so every pod starts on the same node. Runners are interleaved pod by pod (A B C, then
C B A), bursts likewise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from .model import Latencies, LatencyCase, Status, SuiteResult
from .podenv import PodEnv, Podman, manifest, pod_env
from .proc import measure
from .stats import interleaved_rounds

if TYPE_CHECKING:
    from runtime.pod.prepare import PodOptions

    from .spawn import Params

RUNNING_TIMEOUT = 120.0  # seconds: a pod not running by then is a failure, not a sample
POLL = 0.01


class PodStartFailed(OSError):
    """A pod did not get all its containers running."""


def parse_rfc3339(text: str) -> float:
    """``2026-11-25T13:10:38.639975325Z`` (RFC 3339, UTC, up to nanoseconds) as a Unix time."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC RFC 3339 time: {text!r}")
    whole, _, frac = text[:-1].partition(".")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    if frac and not frac.isdigit():
        raise ValueError(f"bad fraction in {text!r}")
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def all_running_at(containers: Sequence[tuple[str, str | None]]) -> float | None:
    """The time the last app container started, once all are running; else None.
    ``containers``: (state, started_at) per app container."""
    if not containers or any(state != "Running" or not at for state, at in containers):
        return None
    return max(parse_rfc3339(at) for _state, at in containers if at)


def mark_time(path: str) -> float | None:
    """When the container created its mark (its mtime, as a Unix time); None before."""
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


def wait_marks(
    env: PodEnv, started: Sequence[Started], check: Callable[[Started], None]
) -> list[float]:
    """Each pod's mark time, once all are there; ``check`` raises for a pod that will not
    get there."""
    ends: dict[str, float] = {}
    deadline = time.monotonic() + RUNNING_TIMEOUT
    while True:
        for s in started:
            if s.name in ends:
                continue
            at = mark_time(env.mark(s.name))
            if at is not None:
                ends[s.name] = at
            else:
                check(s)
        if len(ends) == len(started):
            return [ends[s.name] for s in started]
        if time.monotonic() > deadline:
            raise PodStartFailed(f"pods not running after {RUNNING_TIMEOUT:.0f} s")
        time.sleep(POLL)


def printed_uid(output: str) -> str | None:
    """The pod uid (32 hex digits) that ``corral pod run -d`` prints: its last such line."""
    for line in reversed(output.splitlines()):
        word = line.strip()
        if len(word) == 32 and all(c in "0123456789abcdef" for c in word):
            return word
    return None


@dataclass
class Started:
    name: str
    t0: float  # time.time() when the manifest was handed over
    uid: str | None = None  # a Corral pod
    end: float | None = None  # known when the start command returned (podman)


class Runner(Protocol):
    label: str

    def start(self, name: str, t0: float | None = None) -> Started: ...

    def wait_running(self, started: Sequence[Started]) -> list[float]: ...

    def remove(self, started: Started) -> None: ...


class CorralRunner:
    """Shared by the library and the command-line runners: status polling and removal."""

    label = "corral"

    def __init__(self, env: PodEnv, opts: PodOptions) -> None:
        self.env = env
        self.opts = opts

    def start(self, name: str, t0: float | None = None) -> Started:
        raise NotImplementedError

    def wait_running(self, started: Sequence[Started]) -> list[float]:
        from runtime.pod import api

        def check(s: Started) -> None:
            assert s.uid is not None
            st = api.status(s.uid, self.opts)
            if st.location != "run" or st.phase in ("Failed", "Succeeded", "Unknown"):
                why = "; ".join(f"{c.name}: {c.reason} {c.message}" for c in st.containers)
                raise PodStartFailed(f"pod {s.name} did not start ({st.phase}): {why}")

        return wait_marks(self.env, started, check)

    def remove(self, started: Started) -> None:
        from runtime.pod import api

        if started.uid is not None:
            api.remove(started.uid, self.opts, force=True)


class CorralLib(CorralRunner):
    label = "corral (library)"

    def start(self, name: str, t0: float | None = None) -> Started:
        from runtime.pod import api
        from runtime.pod.manifest import parse_pod

        raw = manifest(name, self.env.marks)
        t0 = time.time() if t0 is None else t0
        pd = api.run(parse_pod(raw), self.opts, raw)
        return Started(name, t0, uid=pd.uid)


class CorralCli(CorralRunner):
    label = "corral pod run -d"

    def start(self, name: str, t0: float | None = None) -> Started:
        path = self.env.manifest_file(name, self.env.marks)
        out = os.path.join(self.env.work, f"out-{name}")
        launch = self.env.corral_cli(self.opts, "run", "-d", path)
        t0 = time.time() if t0 is None else t0
        measure(launch, out)
        with open(out, encoding="utf-8") as f:
            uid = printed_uid(f.read())
        os.unlink(out)
        if uid is None:
            raise PodStartFailed(f"corral pod run -d {name} printed no uid")
        return Started(name, t0, uid=uid)


class PodmanRunner:
    def __init__(self, env: PodEnv, podman: Podman, network: bool) -> None:
        self.env = env
        self.podman = podman
        self.network = network
        self.label = podman.label

    def start(self, name: str, t0: float | None = None) -> Started:
        out = os.path.join(self.env.work, f"out-{name}")
        t0 = time.time() if t0 is None else t0
        measure(self.podman.pod_create(name, self.network), out)
        measure(self.podman.run_in_pod(name, self.network, self.env.marks), out)
        os.unlink(out)
        return Started(name, t0)

    def wait_running(self, started: Sequence[Started]) -> list[float]:
        # `podman run -d` returned (it exits non-zero when the start failed): the mark comes
        return wait_marks(self.env, started, lambda s: None)

    def remove(self, started: Started) -> None:
        out = os.path.join(self.env.work, f"out-rm-{started.name}")
        measure(self.podman.pod_rm(started.name, self.network), out)
        os.unlink(out)


def one_pod(runner: Runner, name: str) -> float:
    """Start one pod, wait for it to run, remove it; its latency."""
    s = runner.start(name)
    try:
        (end,) = runner.wait_running([s])
    finally:
        runner.remove(s)
    return end - s.t0


def burst(runner: Runner, names: Sequence[str]) -> list[float]:
    """Hand over ``len(names)`` pods at once (a thread each), wait until all run, remove
    them; each pod's latency from the moment the burst was handed over."""
    started: list[Started] = []
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        t0 = time.time()
        futures = [pool.submit(runner.start, n, t0) for n in names]
        for f in futures:
            try:
                started.append(f.result())
            except Exception as e:  # noqa: BLE001 - the others are removed, then it is raised
                errors.append(e)
        try:
            if errors:
                raise errors[0]
            ends = runner.wait_running(started)
        finally:
            for f in [pool.submit(runner.remove, s) for s in started]:
                f.result()
    return [end - t0 for end in ends]


def collect(
    runners: Sequence[Runner],
    rounds: int,
    warmup: int,
    sample: Callable[[Runner, int], list[float]],
) -> dict[str, list[float]]:
    """Warm-up samples of each runner, then ``rounds`` interleaved rounds; ``sample(runner,
    i)`` measures one pod (or one burst) and returns its latencies."""
    for r in runners:
        for i in range(warmup):
            sample(r, i)
    by_label = {r.label: r for r in runners}
    out: dict[str, list[float]] = {r.label: [] for r in runners}
    for i, order in enumerate(interleaved_rounds([r.label for r in runners], rounds)):
        for label in order:
            out[label] += sample(by_label[label], warmup + i)
    return out


def _cases(e: PodEnv, p: Params, network: bool) -> list[LatencyCase]:
    runners: list[Runner] = [
        CorralLib(e, e.corral_opts("pods-lib", network)),
        CorralCli(e, e.corral_opts("pods-cli", network)),
    ]
    if e.podman is not None:
        runners.append(PodmanRunner(e, e.podman, network))
    what = "with the node network" if network else "without network (lo only)"

    def seq(r: Runner, i: int) -> list[float]:
        return [one_pod(r, e.name("s"))]

    def at_once(r: Runner, i: int) -> list[float]:
        return burst(r, [e.name("b") for _ in range(p.burst)])

    seq_lat = collect(runners, p.pods, p.warmup, seq)
    burst_lat = collect(runners, p.bursts, 0, at_once)  # warm from the pods in a row
    skipped = []
    if e.podman is None:
        skipped = [Latencies("podman", (), e.podman_skipped)]
    notes = [
        "Latency: manifest handed over -> the app container's first output seen from outside "
        "(the mtime of a file its command creates in a bind-mounted host directory), the "
        "same end for every runner. Image already imported; each pod removed after (not "
        "timed). " + " ".join(e.notes)
    ]
    if network:
        notes.append(
            "Node network in namespaces the bench made (Corral: its bridge, a veth and an "
            "address per pod; podman: its CNI bridge network, run with its commands joined "
            "to that namespace)."
        )
    return [
        LatencyCase(
            f"{p.pods} pods one after another, {what}",
            p.warmup,
            tuple(Latencies(label, tuple(v)) for label, v in seq_lat.items()) + tuple(skipped),
            tuple(notes),
        ),
        LatencyCase(
            f"{p.burst} pods at once ({p.bursts} round(s)), {what}",
            0,
            tuple(Latencies(label, tuple(v)) for label, v in burst_lat.items()) + tuple(skipped),
            (
                f"Each round hands over {p.burst} pods at once (a thread each; the library runs "
                "them in this one process) and measures each pod from that moment. No warm-up "
                "here: it runs right after the pods in a row, in the same place.",
            ),
        ),  # fmt: skip
    ]


def pod_suite(p: Params) -> SuiteResult:
    from .suites import SUITES

    cases: list[LatencyCase] = []
    for network in (False, True):
        with pod_env(network) as e:
            cases += _cases(e, p, network)
    return SuiteResult(
        name="pod", description=SUITES["pod"], status=Status.OK, latencies=tuple(cases)
    )
