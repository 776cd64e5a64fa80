"""Plain-text rendering of a profile summary (what ``prof.summary()`` prints)."""
from __future__ import annotations

from dlprof.analysis.stages import Summary, worker_label


class ConsoleRenderer:
    def render(self, summary: Summary) -> str:
        lo = summary.loader
        lines = ["dlprof profile"]
        if lo:
            lines.append(
                f"  loader: {lo['dataset_type']} ({lo['dataset_kind']}), batch_size={lo['batch_size']}, "
                f"num_workers={lo['num_workers']}, pin_memory={lo['pin_memory']}, "
                f"prefetch_factor={lo['prefetch_factor']}, persistent_workers={lo['persistent_workers']}, "
                f"device={lo['device']}")
        lines.append(f"  {summary.epochs} epoch(s), {summary.batches} batches, {summary.samples} samples; "
                     f"steady state {summary.samples_per_s:,.0f} samples/s")
        lines.append("")
        lines.append(f"  {'stage':<10}{'batches':>9}{'mean ms':>11}{'p50 ms':>11}{'p90 ms':>11}{'total ms':>12}")
        for row in summary.stages.itertuples(index=False):
            lines.append(f"  {row.stage:<10}{row.batches:>9}{row.mean_ms:>11.3f}{row.p50_ms:>11.3f}"
                         f"{row.p90_ms:>11.3f}{row.total_ms:>12.1f}")
        if summary.startup_ms:
            parts = [f"{ms:.1f} ms" + (" (workers reused)" if reused else "")
                     for ms, reused in zip(summary.startup_ms, summary.workers_reused)]
            lines.append(f"  {'startup':<10} per epoch: " + ", ".join(parts))
        if summary.batches_per_worker:
            lines.append("  batches by: " + ", ".join(
                f"{worker_label(w)}: {n}" for w, n in sorted(summary.batches_per_worker.items())))
        lines.append("")
        lines.append(f"  wait share {summary.wait_pct:.1f}% -> {summary.verdict}: {summary.reason}")
        for note in summary.notes:
            lines.append(f"  note: {note}")
        if summary.tuning:
            lines += [""] + tuning_lines(summary.tuning)
        return "\n".join(lines) + "\n"


def tuning_lines(tuning: dict) -> list[str]:
    """dlprof.autotune's decision and its windows (the batches above are all configurations')."""
    from dlprof.analysis.recommend import dataloader_call
    from dlprof.analysis.tuning import decision_line, settings, windows_frame

    lines = [f"  {decision_line(tuning)}"]
    frame = windows_frame(tuning)
    if not frame.empty:
        lines.append(f"  {'from s':>8}{'to s':>8}  {'samples/s':>11}{'+/- %':>7}{'wait %':>8}  configuration; purpose: outcome")
        for w in frame.itertuples(index=False):
            lines.append(f"  {w.start_s:>8.1f}{w.end_s:>8.1f}  {w.samples_per_s:>11,.0f}{w.ci_pct:>7.1f}{w.wait_pct:>8.0f}"
                         f"  {w.configuration}; {w.purpose}: {w.outcome}")
    settled, base = settings(tuning.get("settled")), settings(tuning.get("baseline"))
    if settled is not None and base is not None and settled.key() != base.key():
        lines.append(f"  put in the code: {dataloader_call(settled)}")
    for failure in tuning.get("failed") or []:
        lines.append(f"  left after a failure: {failure}")
    if tuning.get("receive_ms") is not None:
        lines.append(f"  receiving a batch from a worker would cost the training process {tuning['receive_ms']:.2f} ms "
                     "(timed once, on a copy of the first batch)")
    return lines
