"""What ``dlprof.autotune`` did, as a table: its windows from the results (``ProfileRun.tuning``,
the plain form of ``sweep.online.Tuning``). Pure, no torch."""
from __future__ import annotations

from typing import Any

import pandas as pd

from dlprof.scan_records import LoaderSettings

WINDOW_COLUMNS = ("start_s", "end_s", "configuration", "purpose", "samples_per_s", "ci_pct", "wait_pct", "outcome")


def settings(d: dict[str, Any] | None) -> LoaderSettings | None:
    return LoaderSettings(**d) if d else None


def windows_frame(tuning: dict[str, Any]) -> pd.DataFrame:
    """One row per window, times in s from the first window's start."""
    windows = tuning.get("windows") or []
    t0 = min((w["start_ns"] for w in windows if w["start_ns"]), default=0)
    rows = [{"start_s": max(0.0, (w["start_ns"] - t0) / 1e9), "end_s": max(0.0, (w["end_ns"] - t0) / 1e9),
             "configuration": LoaderSettings(**w["settings"]).label(), "purpose": w["purpose"],
             "samples_per_s": w["samples_per_s"], "ci_pct": w["ci_pct"], "wait_pct": w["wait_pct"],
             "outcome": w["outcome"]} for w in windows]
    return pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))


def decision_line(tuning: dict[str, Any]) -> str:
    """One line: what it settled on and why (with the side-by-side interval when there was one)."""
    base, settled = settings(tuning.get("baseline")), settings(tuning.get("settled"))
    if settled is None:
        return "autotune: still exploring (the run ended before a decision)"
    if base is not None and settled.key() == base.key():
        return f"autotune: kept the DataLoader as it is ({tuning.get('reason')})"
    return f"autotune: settled on {settled.label()}: {tuning.get('reason')}"
