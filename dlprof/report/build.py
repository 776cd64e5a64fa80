"""Write every report of a scan into a folder: report.md (+ its plot files), report.html,
trace.json (the recommendation's run) and, when the baseline is not kept, trace-baseline.json. Works
without torch."""
from __future__ import annotations

import os

from dlprof.analysis.hotspots import stage_tree
from dlprof.analysis.views import gpu_frame, process_frame, timeline_frame, trials_frame
from dlprof.records import ProfileRun, ResultsFileError, load_json
from dlprof.report import plots
from dlprof.report.flame import flame_svg
from dlprof.report.html import HtmlRenderer
from dlprof.report.scan_text import MarkdownRenderer
from dlprof.report.trace import TraceRenderer
from dlprof.scan_records import ScanResult, TrialResult

FORMATS = ("md", "html")


def _profile_of(trial: TrialResult | None, results_dir: str) -> ProfileRun | None:
    if trial is None or not trial.profile:
        return None
    path = os.path.join(results_dir, trial.profile)
    try:
        return ProfileRun.from_dict(load_json(path))
    except ResultsFileError:  # a trial folder not copied along: reports without its timeline
        return None


def figures_of(result: ScanResult, results_dir: str) -> tuple[dict[str, str], dict[str, ProfileRun]]:
    """Title -> SVG, and the profile runs they came from ("baseline", "recommendation")."""
    figures: dict[str, str] = {}
    trials = trials_frame(result)
    if not trials.empty:
        figures["Throughput by num_workers"] = plots.throughput_vs_workers(trials)
        figures["Time per batch in the training loop"] = plots.stage_bars(trials)
        figures["Producer stages per batch"] = plots.producer_bars(trials)
    runs = {}
    for label, trial in (("baseline", result.baseline), ("recommendation", result.recommendation)):
        run = _profile_of(trial, results_dir)
        if run is None or (label == "recommendation" and trial is result.baseline):
            continue
        runs[label] = run
        spans = timeline_frame(run)
        if not spans.empty:
            figures[f"Timeline of the {label} (first batches)"] = plots.timeline(spans, f"{label}: per worker and loop")
        procs = process_frame(run)
        if not procs.empty:
            figures[f"CPU and memory: {label}"] = plots.processes(procs, label)
        gpu = gpu_frame(run)
        if not gpu.empty:
            figures[f"GPU: {label}"] = plots.gpus(gpu, label)
    return figures, runs


FLAME_STAGES = 3  # flame graphs for the stages with the most samples


def flames_of(result: ScanResult, results_dir: str) -> dict[int, dict[str, str]]:
    """Trial number -> stage -> flame graph SVG, for the trials with sampled stacks."""
    flames: dict[int, dict[str, str]] = {}
    for i, trial in enumerate(result.trials, 1):
        if not trial.hotspots:
            continue
        run = _profile_of(trial, results_dir)
        if run is None or not run.stacks_raw:
            continue
        stages = sorted({(h["stage_samples"], h["stage"]) for h in trial.hotspots}, reverse=True)[:FLAME_STAGES]
        flames[i] = {stage: flame_svg(stage_tree(run.stacks_raw, stage), f"trial {i} ({trial.purpose}): {stage}")
                     for _, stage in stages}
    return flames


def write_reports(result: ScanResult, out_dir: str, results_dir: str, formats=FORMATS) -> list[str]:
    """Render and write; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    figures, runs = figures_of(result, results_dir)
    written = []
    if "html" in formats:
        path = os.path.join(out_dir, "report.html")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(HtmlRenderer().render(result, figures, flames_of(result, results_dir)))
        written.append(path)
    if "md" in formats:
        links = {}
        for i, (title, svg) in enumerate(figures.items(), 1):
            name = f"plot-{i}.svg"
            with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fh:
                fh.write(svg)
            links[title] = name
        path = os.path.join(out_dir, "report.md")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(MarkdownRenderer().render(result, links))
        written.append(path)
    traces = {"trace.json": runs.get("recommendation") or runs.get("baseline")}
    if result.recommendation is not result.baseline:  # kept: the same run, written once
        traces["trace-baseline.json"] = runs.get("baseline")
    for name, run in traces.items():
        if run is not None:
            path = os.path.join(out_dir, name)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(TraceRenderer().render(run))
            written.append(path)
    return written


def load_scan(path: str) -> ScanResult:
    return ScanResult.from_dict(load_json(path))
