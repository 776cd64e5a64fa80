"""The diagnosis as a pure function of trial records built by hand (no DataLoader needed)."""
from __future__ import annotations

import json

import pytest

from dlprof.analysis.bottleneck import diagnose, step_contention
from dlprof.analysis.recommend import changes, dataloader_call
from dlprof.records import ResultsFileError
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult

CORES = 2


def trial(workers=0, wait_pct=50.0, fetch=10.0, collate=0.5, step=2.0, wait=8.0, worker_cpu=95.0,
          main_cpu=95.0, busy=90.0, startup=(50.0, 50.0), epoch_ms=2000.0, **extra):
    settings = LoaderSettings(workers, False, 2 if workers else None, False, 32)
    stage_ms = {"fetch": fetch, "collate": collate, "pin": 0.0, "wait": wait, "transfer": 0.0, "step": step,
                "fetch_per_sample": fetch / 32}
    return TrialResult(settings, "ok", "baseline", samples_per_s=1000.0, ci_pct=3.0, wait_pct=wait_pct,
                       stage_ms=stage_ms, startup_ms=list(startup), epoch_ms=epoch_ms, worker_cpu_pct=worker_cpu,
                       main_cpu_pct=main_cpu, worker_busy_pct=busy, **extra)


@pytest.mark.parametrize("records, verdict, stage, kind", [
    (dict(wait_pct=2.0, wait=0.1, step=20.0), "compute-bound", "step", None),
    (dict(wait_pct=12.0), "balanced", "step", None),  # the step is 88% of the loop: it sets the pace
    (dict(wait_pct=80.0, main_cpu=10.0), "data-bound", "fetch", "io"),
    (dict(wait_pct=80.0, main_cpu=98.0), "data-bound", "fetch", "cpu"),
    (dict(wait_pct=60.0, fetch=1.0, collate=6.0), "data-bound", "collate", None),
    (dict(workers=2, wait_pct=70.0, startup=(600.0, 600.0), epoch_ms=900.0), "data-bound", "startup", None),
    (dict(workers=2, wait_pct=70.0, fetch=0.05, collate=0.02, wait=0.4, busy=8.0), "data-bound", "main", None),
    (dict(workers=4, wait_pct=50.0, worker_cpu=5.0, busy=90.0), "data-bound", "fetch", "io"),
])
def test_verdict_stage_and_kind(records, verdict, stage, kind):
    found, _ = diagnose(trial(**records), [trial(**records)], CORES)
    assert (found.verdict, found.stage, found.kind) == (verdict, stage, kind), found.evidence
    assert found.evidence and "waited for data" in found.evidence[0]


@pytest.mark.parametrize("dataset_len, stage", [
    (1000, "startup"),  # 1.5 s to start, then 1,000 samples at 1,000/s: 60% of a 2.5 s epoch
    (2_000_000, "fetch"),  # the same start-up against an epoch of 2,000 s
])
def test_startup_judged_against_a_projected_epoch_when_none_finished(dataset_len, stage):
    """A trial window inside the first epoch: the epoch is projected, not left out."""
    found, _ = diagnose(trial(workers=2, wait_pct=70.0, startup=(1500.0,), epoch_ms=0.0, dataset_len=dataset_len),
                        [], CORES)
    assert found.stage == stage, found.evidence
    if stage == "startup":
        assert "of each 2500 ms epoch (projected" in found.evidence[-1]


@pytest.mark.parametrize("wait_pct, ci, verdict, borderline", [
    (7.0, 1.0, "balanced", None),  # 6-8%: clear of both cut-offs
    (7.0, 3.0, "balanced", 5),  # 4-10%: at the 5% cut-off, said so
    (36.0, 19.0, "data-bound", 20),  # text_padding on a loaded machine: 17-55%
    (25.0, 2.0, "data-bound", None),
    (25.0, None, "data-bound", None),  # interval unknown (results of schema 2): judged as measured
    # 0-75% (a scan whose own checks used to land in the step): both cut-offs, said so (it used
    # to name the 20% one only, "one band higher")
    (11.3, 63.4, "balanced", "both cut-offs (5% and 20%)"),
])
def test_verdict_comes_with_its_interval(wait_pct, ci, verdict, borderline):
    found, _ = diagnose(trial(wait_pct=wait_pct, wait_ci_pct=ci), [], CORES)
    assert found.verdict == verdict, found.evidence
    if ci is not None:
        assert f"95% interval {max(wait_pct - ci, 0):.1f}-{min(wait_pct + ci, 100):.1f}%" in found.evidence[0]
    said = [e for e in found.evidence if e.startswith("borderline")]
    assert bool(said) == (borderline is not None)
    if isinstance(borderline, str):
        assert f"spans {borderline}" in said[0] and "any of the three verdicts" in said[0]
    elif borderline:
        assert f"spans the {borderline}% cut-off" in said[0]


def test_step_dominated_loop_names_the_step_and_the_most_it_could_gain():
    """step 10.6 ms, wait 0.87 ms (fetch 0.47): the COMPUTE_BOUND scan of tests/test_scan.py under
    load measured 7-8% wait; the stage that limits throughput is the step, not fetch."""
    found, _ = diagnose(trial(wait_pct=7.6, wait_ci_pct=0.5, fetch=0.47, collate=0.1, wait=0.87, step=10.59), [],
                        CORES)
    assert (found.verdict, found.stage) == ("balanced", "step")
    assert "at most 1.08x faster" in " ".join(found.evidence) and "fetch (0.47 ms" in " ".join(found.evidence)


def test_wait_share_interval_from_blocks():
    from dlprof.analysis.throughput import share_and_ci

    steady = share_and_ci([1.0] * 80, [10.0] * 80)
    assert steady == (10.0, 0.0)
    # alternating blocks of 5% and 15%: the same mean, a wide interval
    wait = [0.5] * 10 + [1.5] * 10
    noisy = share_and_ci(wait * 4, [10.0] * 80)
    assert noisy[0] == pytest.approx(10.0) and noisy[1] > 3.0
    # blocks follow whole epochs when there are five or more
    epochs = [i // 10 for i in range(80)]
    by_epoch = share_and_ci(wait * 4, [10.0] * 80, epochs)
    assert by_epoch[1] > 3.0
    assert share_and_ci([1.0, 1.0], [2.0, 2.0])[1] == float("inf")  # too few batches for blocks


def test_unsharded_stream_and_failed_trials_are_warned():
    base = trial(stream_repeats=True, dataset_kind="iterable")
    failed = TrialResult(LoaderSettings(2, False, 2, False, 32), "failed", "workers", error="ValueError: boom")
    _, warnings = diagnose(base, [base, failed], CORES)
    assert any("does not shard" in w for w in warnings)
    assert any("ValueError: boom" in w for w in warnings)


def test_step_slowed_by_busy_workers_is_warned():
    alone = trial(step=1.0)
    crowded = trial(workers=2, step=4.0, worker_cpu=90.0)
    _, warnings = diagnose(alone, [alone, crowded], CORES)
    assert any("intra-op threads" in w for w in warnings)
    _, calm = diagnose(alone, [alone, trial(workers=2, step=1.1)], CORES)
    assert not any("intra-op threads" in w for w in calm)


def test_no_baseline_means_unknown():
    found, _ = diagnose(None, [], CORES)
    assert found.verdict == "unknown"


def test_recommendation_code_and_changes():
    base = LoaderSettings(0, False, None, False, 32)
    rec = LoaderSettings(4, False, 4, True, 32)
    assert dataloader_call(rec).startswith("DataLoader(dataset, batch_size=32, num_workers=4, prefetch_factor=4, "
                                           "persistent_workers=True, pin_memory=False")
    assert changes(base, rec) == ["num_workers: 0 -> 4", "prefetch_factor: None -> 4", "persistent_workers: False -> True"]


def test_scan_results_round_trip():
    base = trial()
    result = ScanResult(target="t.py", baseline=base, recommendation=base, speedup=1.0, trials=[base], complete=True)
    again = ScanResult.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    saved = result.to_dict()
    assert saved["baseline"] == saved["recommendation"] == {"trial": 0}  # references, not copies
    assert again.recommendation is again.baseline is again.trials[0]  # "keep": the baseline itself
    assert saved["trials"][0]["config"]["num_workers"] == 0
    # a version 3 file held copies: each is matched to the trial it copies
    old = dict(saved, schema_version=3, baseline=saved["trials"][0], recommendation=saved["trials"][0])
    read = ScanResult.from_dict(old)
    assert read.recommendation is read.baseline is read.trials[0]


def test_step_contention_counts_workers_that_split_the_cores():
    """mnist_mlp on 2 cores: 2 workers at 31% of a core each, busy half the time, and the step
    4x slower than alone. Each worker's share is low because they and the step split the
    cores, not because they wait on I/O."""
    alone = trial(step=1.04, has_train_step=True)
    shared = trial(workers=2, step=4.27, worker_cpu=31.0, busy=51.0, has_train_step=True)
    assert step_contention([alone, shared]) == (shared, 1.04)
    waiting = trial(workers=2, step=4.27, worker_cpu=5.0, busy=90.0, has_train_step=True)  # I/O
    assert step_contention([alone, waiting]) is None


def test_keep_says_whether_any_other_configuration_was_tried():
    from dlprof.report.model import speedup_line

    base = trial()
    alone = ScanResult(target="t.py", baseline=base, recommendation=base, speedup=1.0, trials=[base], complete=True)
    assert "untested: the budget ran out" in speedup_line(alone)
    other = trial(workers=2)
    other.purpose = "workers"
    searched = ScanResult(target="t.py", baseline=base, recommendation=base, speedup=1.0, trials=[base, other],
                          complete=True)
    assert speedup_line(searched) == "keep the current configuration: no candidate was measurably faster"


def test_a_kept_configuration_says_whether_its_check_found_a_tie_or_ran_out_of_time():
    """A demo on a loaded machine: 4 pairs, 3.91x (0.61-24.91x) when the budget ended the check.
    The terminal said "no candidate was measurably faster"; it now says the check was undecided,
    with its numbers, as the results file records (and a version 5 file, with no check, reads)."""
    from dlprof.report.model import speedup_line
    from dlprof.scan_records import Check, CheckOutcome

    base, other = trial(), trial(workers=4)
    other.purpose = "workers"
    result = ScanResult(target="t.py", baseline=base, recommendation=base, speedup=1.0, trials=[base, other],
                        complete=True, check=Check(CheckOutcome.UNDECIDED, 3.91, 0.61, 24.91, 4))
    again = ScanResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.check == result.check and again.check.outcome is CheckOutcome.UNDECIDED
    assert speedup_line(again) == (
        "keep the current configuration for now: the best candidate measured 3.91x side by side (95% interval "
        "0.61-24.91x, 4 pairs), undecided when the budget ran out; a scan with a larger --budget decides")
    result.check = Check(CheckOutcome.TIE, 1.01, 0.86, 1.19, 3)
    assert speedup_line(result).endswith("1.01x side by side (95% interval 0.86-1.19x, 3 pairs), not measurably faster")
    older = dict(result.to_dict(), schema_version=5)
    del older["check"]
    assert ScanResult.from_dict(older).check is None
    with pytest.raises(ResultsFileError):
        ScanResult.from_dict(dict(result.to_dict(), check={"outcome": "maybe", "pairs": 3}))


@pytest.mark.parametrize("wait_pct, ci, said", [
    (7.0, 1.0, None),
    (7.0, 3.0, "at the 5% cut-off"),
    (11.3, 63.4, "at the 5% and 20% cut-offs"),  # it named the 20% one only
])
def test_a_profiles_verdict_names_every_cut_off_its_interval_spans(wait_pct, ci, said):
    from dlprof.analysis.stages import verdict_hint

    _, reason = verdict_hint(wait_pct, ci, batches=100)
    assert (said in reason) if said else "cut-off" not in reason, reason
