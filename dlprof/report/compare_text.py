"""A Comparison as terminal text."""
from __future__ import annotations

from dlprof.analysis.compare import Comparison


class CompareRenderer:
    def render(self, c: Comparison) -> str:
        if not c.rows:
            return "no configuration was measured in both files: nothing to compare\n"
        width = max(len(r.label) for r in c.rows)
        lines = [f"{'configuration':<{width}}  {'base/s':>10}  {'new/s':>10}  {'change':>8}  {'spread':>7}  verdict"]
        for r in c.rows:
            lines.append(f"{r.label:<{width}}  {r.base_samples_per_s:>10,.0f}  {r.new_samples_per_s:>10,.0f}  "
                         f"{r.change_pct:>+7.1f}%  {r.spread_pct:>6.1f}%  {r.verdict}")
        lines.append(f"overall: {c.overall_change_pct:+.1f}% (spread {c.overall_spread_pct:.1f}%): {c.verdict}")
        if c.regression:
            lines.append(f"REGRESSION: slower by more than the {c.threshold_pct:g}% threshold and the measured spread")
        return "\n".join(lines) + "\n"
