"""Cut-offs shared by the analyses, and the one verdict judged against them.

Share of the training loop's time spent waiting for data. The TensorFlow profiler's
input-pipeline analyzer calls an input stall above 5% of step time moderate and above 20%
high; we use the same cut-offs so verdicts read the same across tools.
"""
from __future__ import annotations

import math

DATA_BOUND_PCT = 20.0
BALANCED_PCT = 5.0

# Two measured rates closer than this fraction count as equal: a candidate must beat the best
# by it to count as better, and pinning must lose by it to be called harmful.
MIN_GAIN = 0.03


def verdict(wait_pct: float) -> str:
    """data-bound | balanced | compute-bound from the wait share (% of the loop); 'unknown'
    when nothing was measured (NaN). A scan measures its baseline until the share's interval
    clears the cut-offs where it can (``spanned_cutoffs``), and says so where it could not."""
    if wait_pct != wait_pct:
        return "unknown"
    if wait_pct >= DATA_BOUND_PCT:
        return "data-bound"
    if wait_pct >= BALANCED_PCT:
        return "balanced"
    return "compute-bound"


def spanned_cutoffs(wait_pct: float, ci_pct: float | None) -> list[float]:
    """Every cut-off the share's 95% interval spans, lowest first (a wide interval can span
    both: another run could read any of the three verdicts)."""
    if ci_pct is None or not math.isfinite(ci_pct) or wait_pct != wait_pct:
        return []
    return [cut for cut in (BALANCED_PCT, DATA_BOUND_PCT) if wait_pct - ci_pct < cut <= wait_pct + ci_pct]


def interval_text(wait_pct: float, ci_pct: float | None) -> str:
    """'7.2% (95% interval 6.1-8.3%)': the share with its interval, as every claim prints it."""
    if ci_pct is None or not math.isfinite(ci_pct):
        return f"{wait_pct:.1f}% (interval unknown: too few batches)"
    return f"{wait_pct:.1f}% (95% interval {max(wait_pct - ci_pct, 0.0):.1f}-{min(wait_pct + ci_pct, 100.0):.1f}%)"
