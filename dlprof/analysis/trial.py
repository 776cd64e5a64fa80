"""From one trial's profile records to its TrialResult figures: pure, no torch."""
from __future__ import annotations

import math

from dlprof.analysis.hotspots import hotspots
from dlprof.analysis.memory import memory_growth_warning, worker_memory_growth
from dlprof.analysis.stages import STAGES, batch_frame
from dlprof.analysis.throughput import rate_and_ci, share_and_ci  # rate_and_ci: the stopping rule's estimate
from dlprof.records import ProfileRun
from dlprof.scan_records import LoaderSettings, TrialResult


def trial_stats(run: ProfileRun, settings: LoaderSettings, warm: int) -> TrialResult:
    frame = batch_frame(run)
    warm = min(warm, len(frame) // 3)  # a short trial keeps two thirds of what it measured
    steady = frame.iloc[warm:]
    times = [b.wait_end_ns for b in run.batches[len(frame) - len(steady):]]
    samples = [b.samples for b in run.batches[len(frame) - len(steady):]]
    epochs = [b.epoch for b in run.batches[len(frame) - len(steady):]]
    rate, ci = rate_and_ci(times, samples, epochs)
    loop = steady["wait_ms"] + steady["transfer_ms"] + steady["step_ms"]
    loop_ms = float(loop.sum())
    wait_pct, wait_ci = share_and_ci(steady["wait_ms"].tolist(), loop.tolist(), epochs)
    window_ns = times[-1] - times[0] if len(times) > 1 else 0
    produce = (steady["fetch_ms"] + steady["collate_ms"]) if len(steady) else None
    completed = [e for e in run.epochs if e.completed]
    result = TrialResult(
        settings=settings, status="ok",
        samples_per_s=rate, ci_pct=ci if ci != float("inf") else 100.0,
        batches=len(steady), epochs=len(run.epochs), seconds=window_ns / 1e9,
        wait_pct=wait_pct if loop_ms > 0 else 0.0, wait_ci_pct=wait_ci if math.isfinite(wait_ci) else None,
        stage_ms={stage: float(steady[f"{stage}_ms"].mean()) for stage in STAGES}
        | {k: float(steady[f"{k}_ms"].mean()) for k in ("fetch_per_sample", "pin_cpu", "pin_wait")},
        startup_ms=[(e.first_batch_ns - e.iter_start_ns) / 1e6 for e in run.epochs if e.first_batch_ns],
        epoch_ms=(sum(e.end_ns - e.iter_start_ns for e in completed) / len(completed) / 1e6) if completed else 0.0,
        samples_per_epoch=sum(b.samples for b in run.batches if b.epoch == completed[0].epoch) if completed else 0,
        dataset_kind=run.loader.dataset_kind if run.loader else "map",
        dataset_len=run.loader.dataset_len if run.loader else None,
        produce_p50_ms=float(produce.quantile(0.5)) if produce is not None else 0.0,
        produce_p99_ms=float(produce.quantile(0.99)) if produce is not None else 0.0,
    )
    if run.stacks_raw:
        table = hotspots(run.stacks_raw)
        result.hotspots = table.to_dict("records")
    result.hotspots_note = next((n for n in run.notes if n.startswith("no hotspots")), "")
    workers = settings.num_workers
    result.memory_warning = memory_growth_warning(worker_memory_growth(run), result.dataset_len, workers) or ""
    if window_ns > 0:
        t0, t1 = times[0], times[-1]
        in_window = [p for p in run.processes if t0 <= p.t_ns <= t1]
        workers = [p.cpu_pct for p in in_window if p.role == "worker"]
        main = [p.cpu_pct for p in in_window if p.role == "main"]
        result.worker_cpu_pct = sum(workers) / len(workers) if workers else 0.0
        result.main_cpu_pct = sum(main) / len(main) if main else 0.0
        if settings.num_workers:
            busy_ns = sum((b.collate_end_ns - b.fetch_start_ns) for b in run.batches
                          if t0 <= b.wait_end_ns <= t1 and b.worker_id >= 0)
            result.worker_busy_pct = 100.0 * busy_ns / (settings.num_workers * window_ns)
    return result
