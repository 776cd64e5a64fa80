"""From one trial's profile records to its TrialResult figures: pure, no torch, and no pandas
(dlprof.autotune computes them in the training process, whose speed an import of pandas changes)."""
from __future__ import annotations

import math

from dlprof.analysis.batches import STAGES, batch_rows, mean, quantile
from dlprof.analysis.memory import memory_growth_warning, worker_memory_rows
from dlprof.analysis.throughput import rate_and_ci, share_and_ci  # rate_and_ci: the stopping rule's estimate
from dlprof.records import ProfileRun
from dlprof.scan_records import LoaderSettings, TrialResult


def trial_stats(run: ProfileRun, settings: LoaderSettings, warm: int) -> TrialResult:
    rows = batch_rows(run)
    warm = min(warm, len(rows) // 3)  # a short trial keeps two thirds of what it measured
    steady = rows[warm:]
    times = [b.wait_end_ns for b in run.batches[warm:]]
    samples = [b.samples for b in run.batches[warm:]]
    epochs = [b.epoch for b in run.batches[warm:]]
    rate, ci = rate_and_ci(times, samples, epochs)
    loop = [r["wait_ms"] + r["transfer_ms"] + r["step_ms"] for r in steady]
    loop_ms = math.fsum(loop)
    wait_pct, wait_ci = share_and_ci([r["wait_ms"] for r in steady], loop, epochs)
    window_ns = times[-1] - times[0] if len(times) > 1 else 0
    produce = [r["fetch_ms"] + r["collate_ms"] for r in steady]
    completed = [e for e in run.epochs if e.completed]
    result = TrialResult(
        settings=settings, status="ok",
        samples_per_s=rate, ci_pct=ci if ci != float("inf") else 100.0,
        batches=len(steady), epochs=len(run.epochs), seconds=window_ns / 1e9,
        wait_pct=wait_pct if loop_ms > 0 else 0.0, wait_ci_pct=wait_ci if math.isfinite(wait_ci) else None,
        stage_ms={k: mean([r[f"{k}_ms"] for r in steady])
                  for k in (*STAGES, "fetch_per_sample", "pin_cpu", "pin_wait")},
        startup_ms=[(e.first_batch_ns - e.iter_start_ns) / 1e6 for e in run.epochs if e.first_batch_ns],
        epoch_ms=(sum(e.end_ns - e.iter_start_ns for e in completed) / len(completed) / 1e6) if completed else 0.0,
        samples_per_epoch=sum(b.samples for b in run.batches if b.epoch == completed[0].epoch) if completed else 0,
        dataset_kind=run.loader.dataset_kind if run.loader else "map",
        dataset_len=run.loader.dataset_len if run.loader else None,
        produce_p50_ms=quantile(produce, 0.5) if produce else 0.0,
        produce_p99_ms=quantile(produce, 0.99) if produce else 0.0,
    )
    if run.stacks_raw:  # py-spy's stacks: a scan's trial (its own process), never dlprof.autotune
        from dlprof.analysis.hotspots import hotspots

        table = hotspots(run.stacks_raw)
        result.hotspots = table.to_dict("records")
    result.hotspots_note = next((n for n in run.notes if n.startswith("no hotspots")), "")
    workers = settings.num_workers
    result.memory_warning = memory_growth_warning(worker_memory_rows(run), result.dataset_len, workers) or ""
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
