"""The markdown report: pure rendering of a ``Report``."""

from __future__ import annotations

import math

from .model import (
    CaseResult,
    Latencies,
    LatencyCase,
    Report,
    RunnerResult,
    Status,
    SuiteResult,
    Table,
)
from .stats import Percentiles, percentiles


def fmt_ms(seconds: float) -> str:
    """Milliseconds, with one decimal below 100 ms and none above."""
    ms = seconds * 1000.0
    if math.isnan(ms):
        return "n/a"
    return f"{ms:.1f}" if abs(ms) < 100 else f"{ms:,.0f}"


def fmt_mib(kib: float) -> str:
    return "n/a" if math.isnan(kib) else f"{kib / 1024.0:.1f}"


def fmt_ratio(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}×"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _label(r: RunnerResult, footnotes: dict[str, str]) -> str:
    if r.label in footnotes:
        marks = list(footnotes)
        return f"{r.label} [{marks.index(r.label) + 1}]"
    return r.label


def render_case(case: CaseResult, footnotes: dict[str, str]) -> list[str]:
    n = case.runners[0].wall.n if case.runners else 0
    loops = case.runs_per_sample > 1
    what = "loops" if loops else "runs"
    text = f"N = {n} {what} per runtime, interleaved, after {case.warmup} warm-up run(s) each"
    if loops:
        text += f"; each loop is {case.runs_per_sample} runs timed as a whole"
    lines = [f"### {case.title}", "", text + "."]
    lines.append("")
    base = case.runners[0].label if case.runners else "Corral"
    head = ["runtime", "wall median ms", "wall min ms", "wall max ms"]
    if case.runs_per_sample > 1:
        head.append("wall ms/run")
    head += ["CPU median ms", "CPU min ms", "CPU max ms", "peak RSS MiB (median)"]
    head += [f"{base}/this wall", f"{base}/this CPU", f"{base}/this RSS"]
    lines.append(_row(head))
    lines.append(_row(["---"] + ["---:"] * (len(head) - 1)))
    by_peer = {x.peer: x for x in case.ratios}
    for r in case.runners:
        w, c, m = r.wall, r.cpu, r.rss
        cells = [_label(r, footnotes), fmt_ms(w.median), fmt_ms(w.min), fmt_ms(w.max)]
        if case.runs_per_sample > 1:
            cells.append(fmt_ms(w.median / case.runs_per_sample))
        cells += [fmt_ms(c.median), fmt_ms(c.min), fmt_ms(c.max), fmt_mib(m.median)]
        x = by_peer.get(r.label)
        if x is None:
            cells += ["—", "—", "—"]
        else:
            cells += [fmt_ratio(x.wall), fmt_ratio(x.cpu), fmt_ratio(x.rss)]
        lines.append(_row(cells))
    for note in case.notes:
        lines += ["", f"_{note}_"]
    lines.append("")
    return lines


def _pct(lat: Latencies) -> Percentiles | None:
    return percentiles(lat.values_s) if lat.values_s else None


def latency_ratios(case: LatencyCase) -> list[tuple[str, float, float]]:
    """(peer, p50 ratio, p99 ratio) of the first runner (Corral) to each other runner that
    ran; NaN where either side has no values."""
    if not case.runners:
        return []
    base = _pct(case.runners[0])
    out = []
    for lat in case.runners[1:]:
        p = _pct(lat)
        if base is None or p is None or p.p50 <= 0 or p.p99 <= 0:
            out.append((lat.label, math.nan, math.nan))
        else:
            out.append((lat.label, base.p50 / p.p50, base.p99 / p.p99))
    return out


def render_latency_case(case: LatencyCase) -> list[str]:
    lines = [f"### {case.title}", ""]
    lines.append(
        f"Runners interleaved, after {case.warmup} warm-up pod(s) each; percentiles are "
        "nearest-rank."
    )
    lines.append("")
    base = case.runners[0].label if case.runners else "Corral"
    head = ["runtime", "N", "p50 ms", "p99 ms", "min ms", "max ms"]
    head += [f"{base}/this p50", f"{base}/this p99"]
    lines.append(_row(head))
    lines.append(_row(["---"] + ["---:"] * (len(head) - 1)))
    by_peer = {peer: (a, b) for peer, a, b in latency_ratios(case)}
    for lat in case.runners:
        p = _pct(lat)
        if p is None:
            why = lat.skipped or "no values"
            lines.append(_row([lat.label, "0", f"not run: {why}", "", "", "", "—", "—"]))
            continue
        cells = [lat.label, str(p.n), fmt_ms(p.p50), fmt_ms(p.p99), fmt_ms(p.min), fmt_ms(p.max)]
        x = by_peer.get(lat.label)
        cells += ["—", "—"] if x is None else [fmt_ratio(x[0]), fmt_ratio(x[1])]
        lines.append(_row(cells))
    for note in case.notes:
        lines += ["", f"_{note}_"]
    lines.append("")
    return lines


def render_table(table: Table) -> list[str]:
    lines = [f"### {table.title}", ""]
    lines.append(_row(list(table.columns)))
    lines.append(_row(["---"] + ["---:"] * (len(table.columns) - 1)))
    lines += [_row(list(r)) for r in table.rows]
    for note in table.notes:
        lines += ["", f"_{note}_"]
    lines.append("")
    return lines


def render_suite(suite: SuiteResult, footnotes: dict[str, str], started: str = "") -> list[str]:
    lines = [f"## {suite.name}: {suite.description}", ""]
    if suite.started and suite.started != started:
        lines += [f"_Measured in an earlier run: started {suite.started}, commit {suite.commit}._"]
        lines.append("")
    if suite.status is Status.UNAVAILABLE:
        lines += [f"**Not available yet** ({suite.reason}).", ""]
        return lines
    if suite.status is not Status.OK:
        lines += [f"**{suite.status.value}**: {suite.reason}", ""]
    elif suite.reason:
        lines += [f"_{suite.reason}_", ""]
    for case in suite.cases:
        lines += render_case(case, footnotes)
    for lc in suite.latencies:
        lines += render_latency_case(lc)
    for table in suite.tables:
        lines += render_table(table)
    return lines


def render_overview(report: Report) -> list[str]:
    """One line per suite, and the median ratios of each case at a glance."""
    lines = ["| suite | case | Corral vs | wall ratio | CPU ratio | RSS ratio |"]
    lines.append("| --- | --- | --- | ---: | ---: | ---: |")
    for suite in report.suites:
        if suite.status is not Status.OK or not (suite.cases or suite.latencies or suite.tables):
            reason = suite.reason or suite.status.value
            word = "not available yet" if suite.status is Status.UNAVAILABLE else suite.status.value
            text = f"{word} ({reason})" if reason != word else word
            lines.append(_row([suite.name, text, "", "", "", ""]))
            continue
        for case in suite.cases:
            base = case.runners[0].label if case.runners else "Corral"
            if not case.ratios:
                lines.append(_row([suite.name, case.title, f"({base} alone)", "", "", ""]))
            for x in case.ratios:
                lines.append(
                    _row(
                        [
                            suite.name,
                            case.title,
                            f"{base} / {x.peer}",
                            fmt_ratio(x.wall),
                            fmt_ratio(x.cpu),
                            fmt_ratio(x.rss),
                        ]
                    )
                )
        for lc in suite.latencies:
            base = lc.runners[0].label if lc.runners else "Corral"
            skipped = {x.label: x.skipped for x in lc.runners}
            for peer, p50, _p99 in latency_ratios(lc):
                vs = f"{base} / {peer}"
                if skipped.get(peer):
                    vs += " (not run)"
                lines.append(_row([suite.name, f"{lc.title} (p50)", vs, fmt_ratio(p50), "", ""]))
        for table in suite.tables:
            lines.append(_row([suite.name, table.title, "(table below)", "", "", ""]))
    return lines


def render(report: Report) -> str:
    title = "Corral benchmarks"
    if report.quick:
        title += " (--quick: tiny N, the figures mean nothing)"
    lines = [f"# {title}", ""]
    lines.append(
        "Generated by `python -m bench` (see bench/README.md). Ratios are Corral/peer, "
        "computed pair by pair (the two runs of one interleaved round) and reported as the "
        "median of those ratios: below 1× means Corral is faster or smaller."
    )
    lines.append("")
    lines.append(f"Started {report.started}.")
    lines.append("")
    earlier = [x.name for x in report.suites if x.started and x.started != report.started]
    if earlier:
        lines.append(
            f"Kept from earlier runs (each names its own start and commit below): "
            f"{', '.join(earlier)}. The machine and versions below are those of this run."
        )
        lines.append("")
    lines.append("| machine | |")
    lines.append("| --- | --- |")
    for k, v in report.machine.items():
        lines.append(_row([k, v]))
    lines.append("")
    lines.append("| version | |")
    lines.append("| --- | --- |")
    for k, v in report.versions.items():
        lines.append(_row([k, v]))
    lines.append("")
    lines.append("Parameters: " + ", ".join(f"{k} = {v}" for k, v in report.params.items()) + ".")
    lines.append("")
    lines.append("## Overview")
    lines.append("")
    lines += render_overview(report)
    lines.append("")
    for suite in report.suites:
        lines += render_suite(suite, report.footnotes, report.started)
    if report.footnotes:
        lines.append("## Notes")
        lines.append("")
        for i, (label, text) in enumerate(report.footnotes.items(), start=1):
            lines.append(f"{i}. **{label}**: {text}")
        lines.append("")
    return "\n".join(lines)
