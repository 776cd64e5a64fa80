"""Which configurations the search tries next: pure decisions over measured trials, no torch.

The search (sweep.search) runs trials and asks these functions what to try; they only read
TrialResults, so each decision can be tested from records alone.
"""
from __future__ import annotations

import math

from dlprof.analysis.judgements import cores_spare, fetch_waits_on_io, workers_compute
from dlprof.analysis.thresholds import MIN_GAIN
from dlprof.scan_records import TrialResult


def worker_candidates(reference: TrialResult, cores: int, max_workers: int) -> list[int]:
    """num_workers to try, most promising first, from the cost of producing a batch."""
    s = reference.stage_ms
    produce = s.get("fetch", 0.0) + s.get("collate", 0.0)  # one batch, one process
    consume = max(s.get("step", 0.0) + s.get("transfer", 0.0), 0.05)
    needed = max(1, math.ceil(produce / consume))
    io_bound = fetch_waits_on_io(reference)
    limit = max_workers if io_bound else cores
    # Idle workers are cheap, and the step measured at num_workers=0 is inflated by waking
    # from the long waits, so `needed` underestimates: start I/O-bound pipelines at the limit.
    first = limit if io_bound else min(needed, limit)
    order = [first, max(1, first // 2), min(limit, first * 2), 0, 1, cores]
    if needed > limit:
        # the estimate was capped: a pipeline that needs more producers than it may have
        # gains nothing from fewer, except none at all (no hand-over overhead), tried anyway
        order = [w for w in order if w == 0 or w >= first or w == cores]
    seen: list[int] = []
    for w in order:
        if 0 <= w <= max_workers and w not in seen:
            seen.append(w)
    return seen


def rising_from(trials: list[TrialResult]) -> int:
    """The smallest num_workers w measured with a larger count 2w or more that beat it clearly
    (0 when there is none). Throughput against num_workers rises, then flattens or falls, so
    counts below w are not worth a trial."""
    by_workers: dict[int, float] = {}
    for t in trials:
        if t.status == "ok":
            w = t.settings.num_workers
            by_workers[w] = max(by_workers.get(w, 0.0), t.samples_per_s)
    rising = [lo for lo in by_workers if lo > 0 and any(
        hi >= 2 * lo and rate > by_workers[lo] * (1 + MIN_GAIN) for hi, rate in by_workers.items())]
    return min(rising) if rising else 0


def idle_at(trials: list[TrialResult], cores: int) -> int:
    """The largest num_workers measured without saturating the CPU while its workers sat
    mostly idle (waiting on I/O), 0 if none. Below that count the CPU cannot be what limits
    throughput, so fewer workers can only overlap fewer waits."""
    idle = [t.settings.num_workers for t in trials
            if t.status == "ok" and t.settings.num_workers > cores and not workers_compute(t) and cores_spare(t, cores)]
    return max(idle, default=0)
