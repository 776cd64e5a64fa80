"""Per-batch and per-stage views of a profile run: pure functions of the records.

DataFrames use units in column names (``fetch_ms``, ``wait_pct``). No torch import.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

from dlprof.analysis.batches import BATCH_COLUMNS, STAGES, batch_rows
from dlprof.analysis.memory import memory_growth_warning, worker_memory_rows
from dlprof.analysis.pinning import pin_cost, pin_note
from dlprof.analysis.thresholds import BALANCED_PCT, DATA_BOUND_PCT, interval_text, spanned_cutoffs, verdict as judge
from dlprof.analysis.throughput import share_and_ci
from dlprof.records import MAIN_PROCESS, ProfileRun


_NS_PER_MS = 1e6


def batch_frame(run: ProfileRun) -> pd.DataFrame:
    """One row per batch (``batches.batch_rows``). Times in ms; ``*_at_ms`` are offsets from the start
    of the run."""
    return pd.DataFrame(batch_rows(run), columns=BATCH_COLUMNS)


def sample_frame(run: ProfileRun) -> pd.DataFrame:
    """One row per sample whose fetch was timed on its own (``__getitem__`` or ``next()``)."""
    rows = []
    for b in run.batches:
        marks = b.sample_marks_ns
        for k in range(min(b.samples, len(marks) - 1)):
            rows.append((b.epoch, b.index, b.worker_id, k, (marks[k + 1] - marks[k]) / _NS_PER_MS))
    return pd.DataFrame(rows, columns=["epoch", "batch", "worker_id", "sample", "fetch_ms"])


def steady_batches(frame: pd.DataFrame, uses_workers: bool) -> pd.DataFrame:
    """Batches past start-up. With workers, an epoch's first wait includes starting them."""
    if uses_workers and (~frame["first_in_epoch"]).any():
        return frame[~frame["first_in_epoch"]]
    return frame


def stage_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per stage: batches seen, mean / median / p90 per batch and total, in ms."""
    rows = []
    for stage in STAGES:
        col = frame[f"{stage}_ms"]
        if stage == "pin" and not (col > 0).any():
            continue  # no pin-memory thread ran
        if stage == "transfer" and not (col > 0).any():
            continue  # no device copy
        rows.append({"stage": stage, "batches": int(col.count()), "mean_ms": col.mean(),
                     "p50_ms": col.median(), "p90_ms": col.quantile(0.9), "total_ms": col.sum()})
    return pd.DataFrame(rows, columns=["stage", "batches", "mean_ms", "p50_ms", "p90_ms", "total_ms"])


@dataclass
class Summary:
    """What ``summary()`` shows; renderers format it and compute nothing."""

    loader: dict
    batches: int
    epochs: int
    samples: int
    stages: pd.DataFrame
    wait_pct: float  # of the steady-state loop time (wait + transfer + step)
    wait_ci_pct: float | None  # half-width of its 95% interval, percentage points; None: too few batches
    verdict: str  # data-bound | balanced | compute-bound | unknown
    reason: str
    samples_per_s: float  # steady state
    startup_ms: list[float]  # per epoch: iter() to first batch
    workers_reused: list[bool]
    batches_per_worker: dict[int, int]
    notes: list[str] = field(default_factory=list)
    tuning: dict | None = None  # dlprof.autotune's windows and decision (analysis.tuning reads it)


def summarize(run: ProfileRun) -> Summary:
    frame = batch_frame(run)
    uses_workers = bool(run.loader and run.loader.num_workers > 0)
    steady = steady_batches(frame, uses_workers)
    loop = steady["wait_ms"] + steady["transfer_ms"] + steady["step_ms"]
    loop_ms = float(loop.sum())
    wait_pct, wait_ci = share_and_ci(steady["wait_ms"].tolist(), loop.tolist(), steady["epoch"].tolist())
    wait_ci = wait_ci if wait_ci != float("inf") else None
    verdict, reason = verdict_hint(wait_pct, wait_ci, len(steady))
    samples_per_s = 1000.0 * float(steady["samples"].sum()) / loop_ms if loop_ms > 0 else float("nan")
    startup = [(e.first_batch_ns - e.iter_start_ns) / _NS_PER_MS for e in run.epochs if e.first_batch_ns]
    per_worker = {int(k): int(v) for k, v in frame.groupby("worker_id").size().items()}
    notes = list(run.notes)
    workers = run.loader.num_workers if run.loader else 0
    growth = memory_growth_warning(worker_memory_rows(run), run.loader.dataset_len if run.loader else None, workers)
    if growth:
        notes.append("warning: " + growth)
    pinned = pin_cost(steady)
    if pinned is not None:
        notes.append(pin_note(pinned))
    if uses_workers and len(steady) < len(frame):
        notes.append("steady-state figures leave out each epoch's first batch, whose wait includes "
                     "worker start-up (see startup)")
    return Summary(
        loader={} if run.loader is None else dataclasses.asdict(run.loader),
        batches=len(frame), epochs=len(run.epochs), samples=int(frame["samples"].sum()),
        stages=stage_table(frame), wait_pct=wait_pct, wait_ci_pct=wait_ci, verdict=verdict, reason=reason,
        samples_per_s=samples_per_s, startup_ms=startup,
        workers_reused=[e.workers_reused for e in run.epochs], batches_per_worker=per_worker,
        notes=notes, tuning=run.tuning,
    )


def verdict_hint(wait_pct: float, wait_ci_pct: float | None, batches: int) -> tuple[str, str]:
    """The verdict of ``thresholds.verdict`` and the sentence that explains it."""
    if batches == 0 or wait_pct != wait_pct:  # NaN: nothing measured
        return "unknown", "no batches were measured"
    found = judge(wait_pct)
    share = interval_text(wait_pct, wait_ci_pct)
    cuts = spanned_cutoffs(wait_pct, wait_ci_pct)
    if cuts:
        share += ", at the " + " and ".join(f"{c:.0f}%" for c in cuts) + f" cut-off{'s' if len(cuts) > 1 else ''}"
    if found == "data-bound":
        return found, f"the loop waited for data {share} of the time (>= {DATA_BOUND_PCT:.0f}%: high input stall)"
    if found == "balanced":
        return found, (f"the loop waited for data {share} of the time "
                       f"({BALANCED_PCT:.0f}-{DATA_BOUND_PCT:.0f}%: moderate input stall)")
    return found, (f"the loop waited for data only {share} of the time (< {BALANCED_PCT:.0f}%): "
                   "the training step sets the pace")


def worker_label(worker_id: int) -> str:
    return "main" if worker_id == MAIN_PROCESS else f"worker {worker_id}"
