"""A distributed job's ranks side by side: per-rank stages, stragglers, what they cost. Pure.

In DistributedDataParallel every step ends in an all-reduce, so every rank waits for the
slowest one: a rank whose loader stalls shows the stall as its own data wait, and the other
ranks show it as a longer step (they wait inside the all-reduce). A straggler is a rank whose
wait per batch exceeds the others' median by more than their spread allows.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pandas as pd

from dlprof.analysis.stages import batch_frame, steady_batches, summarize
from dlprof.analysis.throughput import mean_and_ci
from dlprof.records import ProfileRun

MIN_MARGIN_MS = 1.0  # a straggler waits at least this much longer per batch...
STEP_SHARE = 0.10  # ... and 10% of the median step (loop time per batch) ...
SPREAD_MADS = 3.0  # ... and 3 robust standard deviations of the other ranks' waits ...
# ... and the 95% intervals of its own mean wait and of the others' (combined): a difference
# that the ranks' own batch-to-batch noise explains is no straggler


@dataclass
class RankAnalysis:
    table: pd.DataFrame  # one row per rank
    world_size: int = 0
    stragglers: list[int] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    lost_ms_per_step: float = 0.0
    lost_pct: float = 0.0


def rank_table(merged: dict) -> pd.DataFrame:
    rows = []
    for entry in merged["ranks"]:
        facts, run = entry["facts"], ProfileRun.from_dict(entry["run"])
        frame = steady_batches(batch_frame(run), bool(run.loader and run.loader.num_workers))
        s = summarize(run)
        loop = frame["wait_ms"] + frame["transfer_ms"] + frame["step_ms"]
        wait_ci = mean_and_ci(frame["wait_ms"].tolist())[1] if len(frame) else math.inf
        rows.append({
            "rank": facts["rank"], "host": facts["host"], "local_rank": facts["local_rank"],
            "cores_per_rank": max(1, facts["cores"] // max(1, facts["local_world_size"])),
            "num_workers": run.loader.num_workers if run.loader else 0,
            "sampler": _short_sampler(facts.get("sampler") or ""),
            "batches": len(frame), "wait_ms": float(frame["wait_ms"].mean()) if len(frame) else 0.0,
            "wait_ci_ms": wait_ci if math.isfinite(wait_ci) else float("nan"),
            "fetch_ms": float(frame["fetch_ms"].mean()) if len(frame) else 0.0,
            "step_ms": float(frame["step_ms"].mean()) if len(frame) else 0.0,
            "loop_ms": float(loop.mean()) if len(frame) else 0.0,
            "wait_pct": s.wait_pct, "samples_per_s": s.samples_per_s, "verdict": s.verdict,
        })
    return pd.DataFrame(rows).sort_values("rank").reset_index(drop=True)


def _short_sampler(name: str) -> str:
    """torch.utils.data.sampler.BatchSampler(torch.utils.data.distributed.DistributedSampler)
    -> BatchSampler(DistributedSampler)."""
    outer, _, inner = name.partition("(")
    short = outer.rsplit(".", 1)[-1]
    return f"{short}({inner.rstrip(')').rsplit('.', 1)[-1]})" if inner else short


def _mad(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - med) for v in values)


def analyse_ranks(merged: dict) -> RankAnalysis:
    table = rank_table(merged)
    result = RankAnalysis(table, world_size=int(merged.get("world_size", len(table))))
    step = float(table["loop_ms"].median()) if len(table) else 0.0
    for row in table.itertuples(index=False):
        others = [w for r, w in zip(table["rank"], table["wait_ms"]) if r != row.rank]
        if not others:
            continue
        typical = statistics.median(others)
        cis = [c for r, c in zip(table["rank"], table["wait_ci_ms"]) if r != row.rank and c == c]
        noise = math.hypot(row.wait_ci_ms if row.wait_ci_ms == row.wait_ci_ms else 0.0, max(cis, default=0.0))
        margin = max(MIN_MARGIN_MS, STEP_SHARE * step, SPREAD_MADS * _mad(others), noise)
        if row.wait_ms > typical + margin:
            result.stragglers.append(int(row.rank))
            result.evidence.append(
                f"rank {row.rank} ({row.host}) waited {row.wait_ms:.2f} ms a batch for data against "
                f"{typical:.2f} ms on the other ranks (margin {margin:.2f} ms: the larger of {MIN_MARGIN_MS:g} ms, "
                f"{STEP_SHARE:.0%} of the {step:.2f} ms loop time, {SPREAD_MADS:g} MADs of the others and the ranks' "
                f"95% intervals); its "
                f"fetch took {row.fetch_ms:.2f} ms a batch with num_workers={row.num_workers}")
    if result.stragglers:
        typical_all = float(table[~table["rank"].isin(result.stragglers)]["wait_ms"].median())
        worst = float(table[table["rank"].isin(result.stragglers)]["wait_ms"].max())
        result.lost_ms_per_step = worst - typical_all
        result.lost_pct = 100.0 * result.lost_ms_per_step / step if step > 0 else 0.0
        result.evidence.append(
            f"every step waits for the slowest rank: the job loses about {result.lost_ms_per_step:.2f} ms a step "
            f"({result.lost_pct:.0f}% of the {step:.2f} ms loop time) to "
            + ", ".join(f"rank {r}" for r in result.stragglers))
    for row in table.itertuples(index=False):
        if row.rank in result.stragglers or row.verdict == "data-bound":
            more = min(row.cores_per_rank, max(row.num_workers * 2, 1))
            advice = (f"num_workers={more}" if more > row.num_workers else
                      "the rank already uses its cores: lighten __getitem__, or give this host fewer ranks")
            result.recommendations.append(
                f"rank {row.rank}: data-bound (wait {row.wait_pct:.0f}% of its loop) with num_workers={row.num_workers} "
                f"and {row.cores_per_rank} cores per rank on {row.host}: {advice}; check with dlprof scan on that host")
    return result
