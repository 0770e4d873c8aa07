"""Statistics and pairing: pure functions, no I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Ratio, RunnerResult, Sample, Summary


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize")
    return Summary(
        median=statistics.median(values), min=min(values), max=max(values), n=len(values)
    )


def interleaved_rounds(labels: Sequence[str], rounds: int) -> list[list[str]]:
    """The run order: one round runs every label once; the direction alternates (A B C, then
    C B A) so that no runtime always follows the same neighbour."""
    out: list[list[str]] = []
    for i in range(rounds):
        out.append(list(labels) if i % 2 == 0 else list(reversed(labels)))
    return out


def pair_ratios(base: Sequence[float], peer: Sequence[float]) -> list[float]:
    """base[i] / peer[i] for each round i (the two runs of one round form a pair). Pairs where
    the peer's value is zero are skipped (a ratio to nothing means nothing)."""
    if len(base) != len(peer):
        raise ValueError(f"unpaired samples: {len(base)} vs {len(peer)}")
    return [b / p for b, p in zip(base, peer, strict=True) if p > 0]


def _median_or_nan(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(base: RunnerResult, peer: RunnerResult) -> Ratio:
    """Base/peer, pair by pair, reported as the median of the per-pair ratios."""
    b, p = base.samples, peer.samples
    wall = pair_ratios([s.wall_s for s in b], [s.wall_s for s in p])
    cpu = pair_ratios([s.cpu_s for s in b], [s.cpu_s for s in p])
    rss = pair_ratios([float(s.maxrss_kib) for s in b], [float(s.maxrss_kib) for s in p])
    return Ratio(
        peer=peer.label,
        wall=_median_or_nan(wall),
        cpu=_median_or_nan(cpu),
        rss=_median_or_nan(rss),
        pairs=len(wall),
    )


def ratios(runners: Sequence[RunnerResult]) -> tuple[Ratio, ...]:
    """The first runner (Corral) against each of the others."""
    if not runners:
        return ()
    base = runners[0]
    return tuple(ratio(base, peer) for peer in runners[1:])


def loop_sample(samples: Sequence[Sample]) -> Sample:
    """A loop of runs as one sample: total wall and CPU time, the largest peak RSS."""
    return Sample(
        wall_s=sum(s.wall_s for s in samples),
        cpu_s=sum(s.cpu_s for s in samples),
        maxrss_kib=max((s.maxrss_kib for s in samples), default=0),
    )


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p99: float
    min: float
    max: float
    n: int


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``q`` % of the values at
    or below it (so p50 of 1..4 is 2 and p99 of 100 values is the 99th smallest)."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[max(rank, 1) - 1]


def percentiles(values: Sequence[float]) -> Percentiles:
    return Percentiles(
        p50=percentile(values, 50),
        p99=percentile(values, 99),
        min=min(values),
        max=max(values),
        n=len(values),
    )
