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
        return "\n".join(lines) + "\n"
