"""The plain-Python batch figures (what dlprof.autotune computes in the training process) against
pandas' (what the reports compute from the same records)."""
import math
import random

import pandas as pd
import pytest

from dlprof.analysis.batches import BATCH_COLUMNS, batch_rows, mean, quantile
from dlprof.analysis.stages import batch_frame
from dlprof.analysis.trial import trial_stats
from dlprof.records import BatchRecord, EpochRecord, ProfileRun
from dlprof.scan_records import LoaderSettings


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_mean_and_quantiles_are_pandas_own(n):
    rng = random.Random(n)
    values = [rng.lognormvariate(0, 1) for _ in range(n)]
    series = pd.Series(values)
    assert mean(values) == pytest.approx(series.mean(), rel=1e-12)
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert quantile(values, q) == pytest.approx(series.quantile(q), rel=1e-12), q
    assert math.isnan(mean([])) and math.isnan(quantile([], 0.5))


def _run(batches: int) -> ProfileRun:
    rng = random.Random(batches)
    run = ProfileRun()
    run.epochs.append(EpochRecord(epoch=0, iter_start_ns=1_000, iter_ready_ns=2_000, first_batch_ns=2_000_000, end_ns=0,
                                  batches=batches, workers_reused=False, completed=False))
    t = 2_000_000
    for i in range(batches):
        fetch = int(rng.lognormvariate(13, 1))
        wait = int(rng.lognormvariate(12, 1))
        b = BatchRecord(epoch=0, index=i, worker_id=i % 2, worker_pid=100 + i % 2, samples=8,
                        fetch_start_ns=t, fetch_end_ns=t + fetch,
                        sample_marks_ns=[t + k * fetch // 8 for k in range(9)], collate_start_ns=t + fetch,
                        collate_end_ns=t + fetch + 50_000, wait_start_ns=t, wait_end_ns=t + wait,
                        step_ns=int(rng.lognormvariate(13, 0.5)))
        t += wait + b.step_ns
        run.batches.append(b)
    return run


def test_a_trials_figures_match_the_reports_dataframe():
    run = _run(60)
    frame = batch_frame(run)
    assert list(frame.columns) == BATCH_COLUMNS and frame.to_dict("records") == batch_rows(run)
    settings = LoaderSettings(num_workers=2, pin_memory=False, prefetch_factor=2, persistent_workers=False,
                              batch_size=8)
    stats = trial_stats(run, settings, warm=5)
    steady = frame.iloc[5:]
    for stage in ("fetch", "collate", "wait", "step", "fetch_per_sample"):
        assert stats.stage_ms[stage] == pytest.approx(steady[f"{stage}_ms"].mean(), rel=1e-12)
    produce = steady["fetch_ms"] + steady["collate_ms"]
    assert stats.produce_p50_ms == pytest.approx(produce.quantile(0.5), rel=1e-12)
    assert stats.produce_p99_ms == pytest.approx(produce.quantile(0.99), rel=1e-12)
    assert stats.batches == 55
