"""Keep in a scan's results what its reports draw of the trials' runs: the timelines, CPU and
memory, GPU samples of the baseline and the recommendation, and the flame graphs' call trees of
trials with sampled stacks. Read from the per-trial dumps (``trials/*.profile.json``) once, at the
scan's end; the reports then need the results file alone. No torch."""
from __future__ import annotations

import os

from dlprof.analysis.hotspots import busiest_stages, stage_tree
from dlprof.analysis.views import gpu_frame, process_frame, pruned, timeline_frame, to_columns
from dlprof.records import ProfileRun, ResultsFileError, load_json
from dlprof.scan_records import RunViews, ScanResult, TrialResult

FLAME_STAGES = 3  # flame graphs for the stages with the most sampled stacks


def run_of(trial: TrialResult | None, results_dir: str) -> ProfileRun | None:
    """A trial's per-trial dump (its full profile run), None where it has none or it is gone."""
    if trial is None or not trial.profile:
        return None
    try:
        return ProfileRun.from_dict(load_json(os.path.join(results_dir, trial.profile)))
    except ResultsFileError:  # a trial folder not copied along: no views of it
        return None


def flame_stages(trial: TrialResult) -> list[str]:
    """The stages with the most sampled stacks, most first."""
    return busiest_stages(trial.hotspots, FLAME_STAGES)


def keep_views(result: ScanResult, results_dir: str) -> None:
    """Fill ``views`` of the trials the reports draw, from their dumps where they are missing;
    drop them from trials no longer drawn (a resumed scan that changed its recommendation)."""
    drawn = [t for t in (result.baseline, result.recommendation) if t is not None]
    for trial in result.trials:
        wanted = any(trial is t for t in drawn) or bool(trial.hotspots)
        if not wanted:
            trial.views = None
        if trial.views is not None or not wanted:
            continue
        run = run_of(trial, results_dir)
        if run is None:
            continue
        views = RunViews()
        if any(trial is t for t in drawn):
            views.timeline = to_columns(timeline_frame(run))
            views.processes = to_columns(process_frame(run))
            views.gpus = to_columns(gpu_frame(run))
        if trial.hotspots and run.stacks_raw:
            views.flames = {stage: pruned(stage_tree(run.stacks_raw, stage)) for stage in flame_stages(trial)}
        trial.views = views
