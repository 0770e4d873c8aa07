"""``python -m bench [--quick] [SUITE...]``: run the suites, print the table, write results."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime

from corral_common import hostsys
from images.errors import ImageError
from orchestrator.store.errors import StoreError
from runtime.errors import CorralError

from . import host, report, spawn, suites
from .model import Report, Status, SuiteResult, from_json, to_json
from .proc import CommandFailed

FULL = {"runs": 30, "warmup": 3, "loop": 100, "loop_runs": 5}
FULL |= {"pods": 100, "burst": 20, "bursts": 3, "density": 50, "max_pods": 500}
QUICK = {"runs": 2, "warmup": 1, "loop": 3, "loop_runs": 1}
QUICK |= {"pods": 2, "burst": 2, "bursts": 1, "density": 2, "max_pods": 3}
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of Corral side by side with runc and crun (run as root).",
    )
    p.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of: {', '.join(suites.ORDER)}")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny N to prove the harness works; judges nothing, writes no RESULTS.md "
        "unless --out names another directory",
    )
    p.add_argument("-n", "--runs", type=int, help="interleaved rounds of single runs")
    p.add_argument("--warmup", type=int, help="warm-up runs of each runtime")
    p.add_argument("--loop", type=int, help="runs in one loop timed as a whole")
    p.add_argument("--loop-runs", type=int, help="interleaved rounds of loops")
    p.add_argument("--pods", type=int, help="pod: pods started one after another")
    p.add_argument("--burst", type=int, help="pod: pods started at once")
    p.add_argument("--bursts", type=int, help="pod: rounds of pods started at once")
    p.add_argument("--density", type=int, help="density: pods running when memory is read")
    p.add_argument(
        "--max-pods", type=int, help="density: pods started until the first failure or this many"
    )
    p.add_argument("--out", help="directory for results.json and RESULTS.md (default bench/)")
    return p.parse_args(argv)


def _params(args: argparse.Namespace) -> dict[str, int]:
    base = QUICK if args.quick else FULL
    out = {}
    for key, default in base.items():
        value = getattr(args, key)
        out[key] = default if value is None else value
        if out[key] < (0 if key == "warmup" else 1):
            raise SystemExit(f"bench: --{key.replace('_', '-')} must be positive")
    return out


def _out_dir(args: argparse.Namespace) -> str | None:
    if args.out is None:
        return None if args.quick else BENCH_DIR
    out = os.path.abspath(args.out)
    if args.quick and os.path.realpath(out) == os.path.realpath(BENCH_DIR):
        raise SystemExit("bench: --quick never writes bench/RESULTS.md; pick another --out")
    return out


def missing_peers(rep: Report) -> list[str]:
    """What keeps ``rep`` from standing as the published figures: a suite that did not run,
    a comparison with no peer, a peer that was not measured. Suites whose feature has not
    landed (unavailable) say so themselves."""
    out = []
    for suite in rep.suites:
        if suite.status is Status.UNAVAILABLE:
            continue
        if suite.status is not Status.OK:
            out.append(f"{suite.name}: {suite.status.value} ({suite.reason})")
            continue
        for note in suite.reason.split("; "):
            if "not measured" in note or "not run" in note:
                out.append(f"{suite.name}: {note}")
        for case in suite.cases:
            if not case.ratios:
                out.append(f"{suite.name}: {case.title}: no peer ran")
        for lc in suite.latencies:
            if len(lc.runners) < 2:
                out.append(f"{suite.name}: {lc.title}: no peer ran")
            for lat in lc.runners:
                if not lat.values_s:
                    why = lat.skipped or "no values"
                    out.append(f"{suite.name}: {lc.title}: {lat.label} did not run ({why})")
        for table in suite.tables:
            for row in table.rows:
                if any(cell.startswith("not run") for cell in row):
                    out.append(f"{suite.name}: {table.title}: {row[0]} did not run")
    return out


def _failed(name: str, e: BaseException) -> SuiteResult:
    return SuiteResult(name, suites.SUITES.get(name, ""), Status.FAILED, reason=str(e))


def _other(name: str, p: spawn.Params) -> SuiteResult:
    """A suite that sets up what it needs itself (image, network, store, control-plane)."""
    if name == "store":  # needs no root
        from . import store

        return store.store_suite(p.quick)
    if name == "control-plane":  # needs no root either
        from . import controlplane

        return controlplane.control_plane_suite(p.quick)
    if name == "scheduler":  # needs no root
        from . import scheduler

        return scheduler.scheduler_suite(p.quick)
    if os.geteuid() != 0:
        return SuiteResult(name, suites.SUITES[name], Status.SKIPPED, "needs root")
    if name == "image":
        from . import image

        return image.image_suite(p)
    if name == "pull":
        from . import pull

        return pull.pull_suite(p)
    if name == "pod":
        from . import pod

        return pod.pod_suite(p)
    if name == "density":
        from . import density

        return density.density_suite(p)
    if name == "kubelet":
        from . import kubelet

        return kubelet.kubelet_suite(p)
    if name == "proxy":
        from . import proxy

        return proxy.proxy_suite(p)
    if name == "cluster":
        from . import cluster

        return cluster.cluster_suite(p)
    if name == "cluster-idle":
        from . import cluster

        return cluster.cluster_idle_suite(p)
    from . import network

    return network.network_suite(p)


def run(names: list[str], params: dict[str, int], quick: bool) -> Report:
    started = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    p = spawn.Params(quick=quick, **params)
    results: list[SuiteResult] = []
    footnotes: dict[str, str] = {}
    wanted_spawn = [n for n in names if n in suites.SPAWN]
    host.compile_bytecode()
    with ExitStack() as stack:
        b = None
        if wanted_spawn and os.geteuid() == 0:
            b = stack.enter_context(spawn.bench_context())
            footnotes.update(b.footnotes)
        for name in names:
            if name in suites.PENDING:
                results.append(suites.pending(name).result())
                continue
            if name in suites.OTHER:
                print(f"bench: running {name} ...", file=sys.stderr, flush=True)
                t0 = time.monotonic()
                try:
                    results.append(_other(name, p))
                except (
                    CommandFailed,
                    OSError,
                    ValueError,
                    CorralError,
                    ImageError,
                    StoreError,
                ) as e:
                    results.append(_failed(name, e))
                print(f"bench: {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr)
                continue
            if b is None:
                results.append(
                    SuiteResult(
                        name, suites.SPAWN[name], Status.SKIPPED, "needs root (it runs containers)"
                    )
                )
                continue
            print(f"bench: running {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                fn = spawn.spawn_cli if name == "spawn-cli" else spawn.spawn_lib
                results.append(fn(b, p))
            except (CommandFailed, OSError, ValueError) as e:
                results.append(_failed(name, e))
            print(f"bench: {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr)
    versions = host.versions()
    commit = versions.get("corral", "")
    return Report(
        quick=quick,
        started=started,
        machine=host.machine(),
        versions=versions,
        params=params,
        suites=tuple(replace(r, started=started, commit=commit) for r in results),
        footnotes=footnotes,
    )


def merge(old: Report, new: Report) -> Report:
    """``new`` with the suites it did not run taken from ``old`` (each keeps the start and
    commit of the run that measured it), in the registry's order."""
    ran = {s.name: s for s in new.suites}
    kept = {s.name: s for s in old.suites if s.name not in ran and s.name in suites.SUITES}
    both = ran | kept
    return replace(
        new,
        suites=tuple(both[n] for n in suites.ORDER if n in both),
        footnotes=old.footnotes | new.footnotes,
    )


def _write(path: str, text: str) -> None:
    hostsys.write_atomic(path, text, 0o644)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every container and cgroup is cleaned up


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    try:
        names = suites.select(args.suites)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    params = _params(args)
    out = _out_dir(args)
    publish = out == BENCH_DIR
    if publish:
        rev, dirty = host.tree_state()
        if dirty:
            # bench/RESULTS.md is built from a commit: it names it, and nothing else ran.
            print(f"bench: uncommitted changes ({', '.join(dirty)}): commit them first, or "
                  "write elsewhere with --out", file=sys.stderr)  # fmt: skip
            return 2
    rep = run(names, params, args.quick)
    previous = os.path.join(out, "results.json") if out is not None else ""
    if args.suites and previous and os.path.exists(previous):
        # Some suites only: the others stay as an earlier run measured them, each saying so.
        with open(previous) as f:
            old = from_json(json.load(f))
        if old.quick == rep.quick:
            rep = merge(old, rep)
    text = report.render(rep)
    data = json.dumps(to_json(rep), indent=1) + "\n"
    print(text)
    failed = [s.name for s in rep.suites if s.status is Status.FAILED]
    if failed and args.out is None:
        # A broken run must not replace real figures: only an explicit --out gets it.
        print("bench: a suite failed, so bench/RESULTS.md is left as it was", file=sys.stderr)
        out = None
    missing = missing_peers(rep) if publish and not failed else []
    if missing:
        # Figures without their peers are not the comparison bench/RESULTS.md stands for.
        print("bench: not every peer ran, so bench/RESULTS.md is left as it was:",
              *missing, sep="\n  ", file=sys.stderr)  # fmt: skip
        out = None
    if out is not None:
        os.makedirs(out, exist_ok=True)
        _write(os.path.join(out, "results.json"), data)
        _write(os.path.join(out, "RESULTS.md"), text)
        print(f"bench: wrote {out}/results.json and {out}/RESULTS.md", file=sys.stderr)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or missing else 0
