"""One model of a scan's report, built once from the results; the console, Markdown and HTML
renderers only format it (``render(model) -> str``), so the three say the same thing.

Built from the results file alone (figures from the trials' kept ``views``), so a report
rendered again with ``dlprof report results.json`` is the report the scan wrote. No torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlprof.analysis.recommend import changes, dataloader_call
from dlprof.analysis.views import (GPU_COLUMNS, PROCESS_COLUMNS, TIMELINE_COLUMNS, from_columns, trials_frame)
from dlprof.scan_records import Check, CheckOutcome, LoaderSettings, Purpose, ScanResult, TrialResult
from dlprof.scan_views import flame_stages


@dataclass
class Figure:
    title: str
    svg: str
    file: str  # the file name report.md links (written beside it)


@dataclass
class TrialRow:
    number: int  # 1-based, in the order run
    purpose: str
    settings: LoaderSettings
    status: str
    samples_per_s: float
    ci_pct: float
    wait_pct: float
    stage_ms: dict[str, float]
    error: str
    role: str  # "rec", "base" or ""


@dataclass
class Hotspots:
    number: int
    purpose: str
    label: str  # the trial's settings
    note: str
    rows: list[dict[str, Any]]  # analysis.hotspots rows
    flames: list[Figure]  # one per stage with the most samples


@dataclass
class FailedTrial:
    number: int
    label: str
    status: str
    error: str
    traceback: str
    log: str


@dataclass
class ScanReport:
    target: str
    complete: bool
    headline: str
    verdict: str  # data-bound, balanced, compute-bound, unknown; "" without a diagnosis
    evidence: list[str]
    warnings: list[str]
    speedup_line: str
    recommended_code: str | None
    baseline_code: str | None
    changes: list[str] | None  # None without both a baseline and a recommendation
    trials: list[TrialRow]
    hotspots: list[Hotspots]
    hotspot_lines: list[str]  # the console's one line per sampled trial
    failed: list[FailedTrial]
    environment: dict[str, Any]
    notes: list[str]
    figures: list[Figure] = field(default_factory=list)


def headline(r: ScanResult) -> str:
    b = r.bottleneck
    if b is None:
        return "no diagnosis (the scan did not finish)"
    stage = b.stage + (f" ({b.kind})" if b.kind else "")
    return f"{b.verdict}, bottleneck: {stage}"


def speedup_line(r: ScanResult) -> str:
    if r.recommendation is None or r.speedup is None:
        return "no recommendation: no configuration was measured successfully"
    if r.speedup == 1.0 and r.recommendation is r.baseline:
        searched = [t for t in r.trials if t.purpose.searched]
        if not searched:
            return ("keep the current configuration, untested: the budget ran out before any other "
                    "configuration was tried (a larger --budget lets the scan search)")
        return "keep the current configuration" + _kept_because(r.check)
    rounds = ", ".join(f"{x:.2f}x" for x in r.speedup_samples)  # one ratio a pair of turns
    interval = (f", 95% interval {r.speedup_ci[0]:.2f}-{r.speedup_ci[1]:.2f}x" if r.speedup_ci
                else " (no interval: results of an older dlprof)")
    return f"measured speedup {r.speedup:.2f}x{interval} over the baseline (side by side, pairs of turns: {rounds})"


def _kept_because(check: Check | None) -> str:
    """Why the configuration is kept, from the side-by-side check: a tie, or a check the budget
    ended before its answer (then "for now": a larger budget may still recommend)."""
    if check is not None and check.outcome == CheckOutcome.FAILED:
        return ": a side failed in the side-by-side measurement (see the notes), so no speedup is claimed"
    if check is None or check.ratio is None:  # no check ran, or an older results file
        return ": no candidate was measurably faster"
    measured = (f"the best candidate measured {check.ratio:.2f}x side by side ("
                + (f"95% interval {check.low:.2f}-{check.high:.2f}x, " if check.low is not None else "no interval, ")
                + f"{check.pairs} pair{'s' if check.pairs != 1 else ''})")
    if check.outcome == CheckOutcome.UNDECIDED:
        return (f" for now: {measured}, undecided when the budget ran out; "
                "a scan with a larger --budget decides")
    return f": {measured}, not measurably faster"


def hotspot_line(rows: list[dict]) -> str:
    """Each stage's first function by total time: 'fetch: 62% decode (data.py:10); ...'."""
    firsts: dict[str, dict] = {}
    for h in rows:
        if h["rank_by"] == "total":
            firsts.setdefault(h["stage"], h)
    return "; ".join(f"{stage}: {h['pct']:.0f}% {h['function']} ({h['location']})" for stage, h in firsts.items())


def _hotspot_line(t: TrialResult) -> str | None:
    label = (t.purpose if t.purpose in (Purpose.HOTSPOTS_BASELINE, Purpose.HOTSPOTS_RECOMMENDATION)
             else f"hotspots ({t.purpose})")
    if t.hotspots:
        return f"{label}: {hotspot_line(t.hotspots)}"
    if t.hotspots_note:
        return f"{label}: {t.hotspots_note}"
    return None


def _role(r: ScanResult, s: LoaderSettings) -> str:
    if r.recommendation is not None and s == r.recommendation.settings:
        return "rec"
    return "base" if r.baseline is not None and s == r.baseline.settings else ""


def scan_report(r: ScanResult, figures: bool = True) -> ScanReport:
    """The report of ``r``; ``figures=False`` leaves the plots out (the console draws none)."""
    b = r.bottleneck
    drawn = figures_of(r) if figures else []
    flames = flames_of(r) if figures else {}
    return ScanReport(
        target=r.target, complete=r.complete, headline=headline(r), verdict=b.verdict if b else "",
        evidence=list(b.evidence) if b else [], warnings=list(r.warnings), speedup_line=speedup_line(r),
        recommended_code=dataloader_call(r.recommendation.settings) if r.recommendation else None,
        baseline_code=dataloader_call(r.baseline.settings) if r.baseline else None,
        changes=(changes(r.baseline.settings, r.recommendation.settings)
                 if r.baseline is not None and r.recommendation is not None else None),
        trials=[TrialRow(i, str(t.purpose), t.settings, str(t.status), t.samples_per_s, t.ci_pct, t.wait_pct,
                         dict(t.stage_ms), t.error, _role(r, t.settings)) for i, t in enumerate(r.trials, 1)],
        hotspots=[Hotspots(i, str(t.purpose), t.settings.label(), t.hotspots_note, list(t.hotspots), flames.get(i, []))
                  for i, t in enumerate(r.trials, 1) if t.hotspots or t.hotspots_note],
        hotspot_lines=[line for line in map(_hotspot_line, r.trials) if line],
        failed=[FailedTrial(i, t.settings.label(), str(t.status), t.error, t.traceback, t.log)
                for i, t in enumerate(r.trials, 1) if t.status != "ok"],
        environment=dict(r.environment), notes=list(r.notes), figures=drawn)


def figures_of(r: ScanResult) -> list[Figure]:
    """The plots: throughput and stages of every trial, then the timeline, CPU and memory, and GPU
    of the baseline's run and of the recommendation's (once when the baseline is kept)."""
    from dlprof.report import plots  # matplotlib: only where figures are drawn

    out: list[tuple[str, str]] = []
    trials = trials_frame(r)
    if not trials.empty:
        out += [("Throughput by num_workers", plots.throughput_vs_workers(trials)),
                ("Time per batch in the training loop", plots.stage_bars(trials)),
                ("Producer stages per batch", plots.producer_bars(trials))]
    for label, trial in (("baseline", r.baseline), ("recommendation", r.recommendation)):
        if trial is None or trial.views is None or (label == "recommendation" and trial is r.baseline):
            continue
        v = trial.views
        spans = from_columns(v.timeline, TIMELINE_COLUMNS)
        if not spans.empty:
            out.append((f"Timeline of the {label} (first batches)", plots.timeline(spans, f"{label}: per worker and loop")))
        procs = from_columns(v.processes, PROCESS_COLUMNS)
        if not procs.empty:
            out.append((f"CPU and memory: {label}", plots.processes(procs, label)))
        gpu = from_columns(v.gpus, GPU_COLUMNS)
        if not gpu.empty:
            out.append((f"GPU: {label}", plots.gpus(gpu, label)))
    return [Figure(title, svg, f"plot-{i}.svg") for i, (title, svg) in enumerate(out, 1)]


def flames_of(r: ScanResult) -> dict[int, list[Figure]]:
    """Trial number -> flame graphs of its stages with the most sampled stacks."""
    from dlprof.report.flame import flame_svg

    out: dict[int, list[Figure]] = {}
    for i, t in enumerate(r.trials, 1):
        if not t.hotspots or t.views is None or not t.views.flames:
            continue
        out[i] = [Figure(stage, flame_svg(t.views.flames[stage], f"trial {i} ({t.purpose}): {stage}"), "")
                  for stage in flame_stages(t) if stage in t.views.flames]
    return out
