"""Two scan results side by side: throughput change per matching configuration. Pure.

A change counts only when it exceeds the measured spread: the two trials' 95% confidence
half-widths combined (root sum of squares). Within that, the verdict is "within noise",
whatever the sign, so a CI gate does not fail on a lucky or unlucky run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dlprof.scan_records import ScanResult, TrialResult


@dataclass
class ConfigChange:
    label: str
    base_samples_per_s: float
    new_samples_per_s: float
    change_pct: float
    spread_pct: float
    verdict: str  # faster | slower | within noise


@dataclass
class Comparison:
    rows: list[ConfigChange]
    overall_change_pct: float  # geometric mean of the matched ratios
    overall_spread_pct: float  # median spread of the matched configurations
    verdict: str
    regression: bool  # slower beyond both the spread and the threshold
    threshold_pct: float


def _judge(change_pct: float, spread_pct: float) -> str:
    if abs(change_pct) <= spread_pct:
        return "within noise"
    return "faster" if change_pct > 0 else "slower"


def _best_per_config(result: ScanResult) -> dict[tuple, TrialResult]:
    """One trial per configuration: the most precise successful one."""
    out: dict[tuple, TrialResult] = {}
    for t in result.trials:
        if t.status != "ok" or t.samples_per_s <= 0:
            continue
        key = t.settings.key()
        if key not in out or t.ci_pct < out[key].ci_pct:
            out[key] = t
    return out


def compare(base: ScanResult, new: ScanResult, threshold_pct: float) -> Comparison:
    old, cur = _best_per_config(base), _best_per_config(new)
    rows = []
    for key in [k for k in old if k in cur]:
        a, b = old[key], cur[key]
        change = 100.0 * (b.samples_per_s / a.samples_per_s - 1)
        spread = math.hypot(min(a.ci_pct, 100.0), min(b.ci_pct, 100.0))
        rows.append(ConfigChange(a.settings.label(), a.samples_per_s, b.samples_per_s, change, spread,
                                 _judge(change, spread)))
    if not rows:
        return Comparison([], 0.0, 0.0, "no configuration in common", False, threshold_pct)
    log_mean = sum(math.log(1 + r.change_pct / 100) for r in rows) / len(rows)
    overall = 100.0 * (math.exp(log_mean) - 1)
    spreads = sorted(r.spread_pct for r in rows)
    spread = spreads[len(spreads) // 2]
    verdict = _judge(overall, spread)
    regression = verdict == "slower" and -overall > threshold_pct
    return Comparison(rows, overall, spread, verdict, regression, threshold_pct)
