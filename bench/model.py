"""The results: frozen dataclasses, and their JSON form."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured thing (a run, or a whole loop of runs)."""

    wall_s: float
    cpu_s: float  # user + sys of the process and the descendants it waited for
    maxrss_kib: int  # ru_maxrss: the largest resident set of that process tree


@dataclass(frozen=True, slots=True)
class Summary:
    median: float
    min: float
    max: float
    n: int


@dataclass(frozen=True, slots=True)
class RunnerResult:
    label: str
    samples: tuple[Sample, ...]

    @property
    def wall(self) -> Summary:
        from .stats import summarize

        return summarize([s.wall_s for s in self.samples])

    @property
    def cpu(self) -> Summary:
        from .stats import summarize

        return summarize([s.cpu_s for s in self.samples])

    @property
    def rss(self) -> Summary:
        from .stats import summarize

        return summarize([float(s.maxrss_kib) for s in self.samples])


@dataclass(frozen=True, slots=True)
class Ratio:
    """Corral/peer: the median of the per-pair ratios."""

    peer: str
    wall: float
    cpu: float
    rss: float
    pairs: int


@dataclass(frozen=True, slots=True)
class CaseResult:
    title: str
    warmup: int
    runs_per_sample: int  # 1, or the length of a loop timed as a whole
    runners: tuple[RunnerResult, ...]
    ratios: tuple[Ratio, ...]
    notes: tuple[str, ...] = ()


class Status(enum.Enum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # the feature it measures has not landed
    SKIPPED = "skipped"  # this machine or user cannot run it
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Latencies:
    """One runner's latencies in one case (seconds, in the order measured); ``skipped`` says
    why a runner did not run (then ``values_s`` is empty)."""

    label: str
    values_s: tuple[float, ...]
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class LatencyCase:
    """Start latencies: a distribution per runner, reported as percentiles."""

    title: str
    warmup: int
    runners: tuple[Latencies, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    """A table a suite lays out itself (memory figures), with its raw numbers for JSON."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SuiteResult:
    name: str
    description: str
    status: Status
    reason: str = ""
    cases: tuple[CaseResult, ...] = ()
    latencies: tuple[LatencyCase, ...] = ()
    tables: tuple[Table, ...] = ()
    # The run that measured it: its start (ISO 8601, UTC) and the commit it was built from
    # (a report can keep suites of an earlier run: see ``bench.cli``).
    started: str = ""
    commit: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    quick: bool
    started: str  # ISO 8601, UTC
    machine: dict[str, str]
    versions: dict[str, str]
    params: dict[str, int]
    suites: tuple[SuiteResult, ...]
    footnotes: dict[str, str] = field(default_factory=dict)  # runner label -> how it was run


def _summary_json(s: Summary) -> dict[str, float | int]:
    return {"median": s.median, "min": s.min, "max": s.max, "n": s.n}


def _percentiles_json(values: tuple[float, ...]) -> dict[str, float | int]:
    from .stats import percentiles

    p = percentiles(values)
    return {"p50": p.p50, "p99": p.p99, "min": p.min, "max": p.max, "n": p.n}


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """NaN (no usable pair) is not JSON: it becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def to_json(report: Report) -> dict[str, Any]:
    """The machine-readable form: everything in the report, plus the summaries."""
    suites = []
    for suite in report.suites:
        cases = []
        for case in suite.cases:
            runners = []
            for r in case.runners:
                runners.append(
                    {
                        "label": r.label,
                        "wall_s": _summary_json(r.wall),
                        "cpu_s": _summary_json(r.cpu),
                        "maxrss_kib": _summary_json(r.rss),
                        "samples": [asdict(s) for s in r.samples],
                    }
                )
            cases.append(
                {
                    "title": case.title,
                    "warmup": case.warmup,
                    "runs_per_sample": case.runs_per_sample,
                    "runners": runners,
                    "ratios": [_finite(asdict(x)) for x in case.ratios],
                    "notes": list(case.notes),
                }
            )
        latencies = []
        for lc in suite.latencies:
            runners = []
            for lat in lc.runners:
                entry: dict[str, Any] = {"label": lat.label, "values_s": list(lat.values_s)}
                if lat.values_s:
                    entry["percentiles_s"] = _percentiles_json(lat.values_s)
                if lat.skipped:
                    entry["skipped"] = lat.skipped
                runners.append(entry)
            latencies.append(
                {"title": lc.title, "warmup": lc.warmup, "runners": runners,
                 "notes": list(lc.notes)}
            )  # fmt: skip
        tables = [
            {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows],
             "notes": list(t.notes), "data": t.data}
            for t in suite.tables
        ]  # fmt: skip
        suites.append(
            {
                "name": suite.name,
                "description": suite.description,
                "status": suite.status.value,
                "reason": suite.reason,
                "cases": cases,
                "latencies": latencies,
                "tables": tables,
                "started": suite.started,
                "commit": suite.commit,
            }
        )
    return {
        "quick": report.quick,
        "started": report.started,
        "machine": report.machine,
        "versions": report.versions,
        "params": report.params,
        "footnotes": report.footnotes,
        "suites": suites,
    }


def _ratio(d: dict[str, Any]) -> Ratio:
    nan = float("nan")
    return Ratio(
        d["peer"],
        nan if d["wall"] is None else d["wall"],
        nan if d["cpu"] is None else d["cpu"],
        nan if d["rss"] is None else d["rss"],
        d["pairs"],
    )


def _suite(d: dict[str, Any]) -> SuiteResult:
    cases = tuple(
        CaseResult(
            c["title"],
            c["warmup"],
            c["runs_per_sample"],
            tuple(
                RunnerResult(r["label"], tuple(Sample(**s) for s in r["samples"]))
                for r in c["runners"]
            ),
            tuple(_ratio(x) for x in c["ratios"]),
            tuple(c["notes"]),
        )
        for c in d["cases"]
    )
    latencies = tuple(
        LatencyCase(
            lc["title"],
            lc["warmup"],
            tuple(
                Latencies(r["label"], tuple(r["values_s"]), r.get("skipped", ""))
                for r in lc["runners"]
            ),
            tuple(lc["notes"]),
        )
        for lc in d["latencies"]
    )
    tables = tuple(
        Table(
            t["title"],
            tuple(t["columns"]),
            tuple(tuple(r) for r in t["rows"]),
            tuple(t["notes"]),
            t["data"],
        )
        for t in d["tables"]
    )
    return SuiteResult(
        d["name"],
        d["description"],
        Status(d["status"]),
        d["reason"],
        cases,
        latencies,
        tables,
        d.get("started", ""),
        d.get("commit", ""),
    )


def from_json(d: dict[str, Any]) -> Report:
    """A report back from its JSON form (``to_json``); suites written before they carried
    their own run's start and commit get the report's."""
    suites = []
    for sd in d["suites"]:
        suite = _suite(sd)
        if not suite.started:
            suite = replace(suite, started=d["started"], commit=d["versions"].get("corral", ""))
        suites.append(suite)
    return Report(
        d["quick"],
        d["started"],
        d["machine"],
        d["versions"],
        d["params"],
        tuple(suites),
        d.get("footnotes", {}),
    )
