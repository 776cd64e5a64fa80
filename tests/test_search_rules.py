"""The scan's pure decision rules: throughput intervals over short epochs, and which worker
counts are still worth a trial. Synthetic arrival times stand in for measured ones here only
because the rules are pure functions of them; the scans in test_scan.py run real loaders."""
import dataclasses
import math
import time

import pytest

from dlprof.analysis.throughput import rate_and_ci
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult
from dlprof.sweep.search import Scan, ScanPlan
from dlprof.sweep.rules import buffer_matters
from dlprof.sweep.policy import Proposal, SearchSpace, SearchState, rising_from, search, worker_candidates


def _short_epochs(epochs: int, per_epoch: int = 20, burst_ms: float = 5.0, restart_ms: float = 250.0):
    """Arrival times of batches that come in a burst after a restart pause, epoch after epoch."""
    times, samples, epoch_of = [], [], []
    t = 0.0
    for e in range(epochs):
        t += restart_ms
        for _ in range(per_epoch):
            t += burst_ms
            times.append(int(t * 1e6))
            samples.append(32)
            epoch_of.append(e)
    return times, samples, epoch_of


def test_blocks_follow_epochs_when_epochs_are_short():
    times, samples, epoch_of = _short_epochs(7)
    rate, ci_fixed = rate_and_ci(times, samples)
    rate_e, ci_epochs = rate_and_ci(times, samples, epoch_of)
    # over whole epochs: 20 batches of 32 per 250 ms restart + 20 x 5 ms burst
    assert math.isclose(rate_e, 20 * 32 / 0.35)
    assert rate > 1.05 * rate_e  # the plain window opens after the first restart: flattered
    assert ci_epochs < 1.0  # every epoch repeats the same pattern
    assert ci_fixed > 10 * ci_epochs  # blocks cut across restarts vary with where they fall


def test_too_few_epochs_keep_fixed_blocks():
    times, samples, epoch_of = _short_epochs(3)
    assert rate_and_ci(times, samples, epoch_of) == rate_and_ci(times, samples)
    assert rate_and_ci(times[:5], samples[:5])[1] == math.inf  # too few batches for 8 blocks


def _trial(workers: int, rate: float) -> TrialResult:
    settings = LoaderSettings(workers, False, 2 if workers else None, False, 32)
    return TrialResult(settings, "ok", "workers", samples_per_s=rate, ci_pct=50.0)


def _state_with(rates: dict[int, float]) -> SearchState:
    state = SearchState()
    for workers, rate in rates.items():
        state.add(_trial(workers, rate))
    return state


def test_fewer_workers_are_skipped_while_throughput_rises():
    assert rising_from(_state_with({0: 220, 16: 1250, 8: 1150}).trials()) == 8
    assert rising_from(_state_with({0: 220, 16: 1150, 8: 1250}).trials()) == 0  # past the peak: all open
    assert rising_from(_state_with({0: 220, 16: 1160, 8: 1150}).trials()) == 0  # within noise


def test_best_is_the_fastest_even_when_its_interval_is_wide():
    state = _state_with({0: 220, 16: 1380, 8: 1155})
    state.seen[_trial(16, 0).settings.key()].ci_pct = 72.0
    assert state.best().settings.num_workers == 16


SLOW = dict(samples_per_s=100.0, ci_pct=5.0, wait_pct=80.0)  # a configuration the table leaves out: it loses


def _run_policy(table: dict[tuple, dict], baseline: tuple, seeded=(), cores=2, max_workers=16,
                window_s=5.0, shm_free_bytes=None) -> SearchState:
    """The search driven to its end with measurements from ``table`` (keyed by workers,
    prefetch, persistent; others measure SLOW): the rules decide from numbers, so these tests
    give them numbers and run no process. ``seeded``: trials measured before the search began."""
    state = SearchState()

    def measured(settings, purpose):
        key = (settings.num_workers, settings.prefetch_factor, settings.persistent_workers)
        return TrialResult(settings, "ok", purpose, **table.get(key, SLOW))

    def settings(key):
        return LoaderSettings(key[0], False, key[1], key[2], 32)

    base = measured(settings(baseline), "baseline")
    state.add(base)
    for key in seeded:
        state.add(measured(settings(key), "workers"))
    proposals = search(SearchSpace(cores=cores, max_workers=max_workers, window_s=window_s,
                                   shm_free_bytes=shm_free_bytes), state, base)
    try:
        proposal = next(proposals)
        while True:
            trial = state.seen.get(proposal.settings.key()) or measured(proposal.settings, proposal.purpose)
            state.add(trial)
            proposal = proposals.send(trial)
    except StopIteration:
        pass
    return state


def _tried(state: SearchState) -> set[tuple]:
    return {(t.settings.num_workers, t.settings.prefetch_factor, t.settings.persistent_workers)
            for t in state.trials()}


CPU_BOUND = dict(worker_cpu_pct=90.0, worker_busy_pct=95.0, main_cpu_pct=40.0, ci_pct=6.0, wait_pct=40.0)


def test_a_contended_step_climbs_one_step_past_the_cores():
    table = {
        (0, None, False): dict(samples_per_s=800, ci_pct=2.0, stage_ms={"step": 4.0}),
        (1, 2, True): dict(samples_per_s=700, stage_ms={"step": 20.0}, **CPU_BOUND),
        (2, 2, True): dict(samples_per_s=1050, stage_ms={"step": 20.0}, **CPU_BOUND),
        (4, 2, True): dict(samples_per_s=1130, stage_ms={"step": 12.0}, **CPU_BOUND),
        (8, 2, True): dict(samples_per_s=1200, stage_ms={"step": 10.0}, **CPU_BOUND),
    }
    state = _run_policy(table, baseline=(2, 2, True), seeded=[(0, None, False)])
    tried = {w for w, _, _ in _tried(state)}
    assert 4 in tried and 8 not in tried  # one step past the cores (2 x cores), not further
    assert state.best().settings.num_workers == 4


def test_without_contention_computing_workers_stop_at_the_cores():
    table = {
        (0, None, False): dict(samples_per_s=800, ci_pct=2.0, stage_ms={"step": 4.0}),
        (1, 2, True): dict(samples_per_s=700, stage_ms={"step": 4.5}, **CPU_BOUND),
        (2, 2, True): dict(samples_per_s=1050, stage_ms={"step": 4.5}, **CPU_BOUND),
        (4, 2, True): dict(samples_per_s=1130, stage_ms={"step": 4.5}, **CPU_BOUND),
    }
    state = _run_policy(table, baseline=(2, 2, True), seeded=[(0, None, False)])
    assert 4 not in {w for w, _, _ in _tried(state)}
    assert state.best().settings.num_workers == 2


def test_a_deeper_queue_on_a_preferred_configuration_inherits_the_preference_when_faster():
    table = {
        (2, 2, False): dict(samples_per_s=600, startup_ms=[500.0, 500.0], epoch_ms=900.0, **CPU_BOUND),
        (2, 2, True): dict(samples_per_s=629, startup_ms=[500.0, 5.0], epoch_ms=500.0, **CPU_BOUND),
        (2, 8, True): dict(samples_per_s=740, startup_ms=[500.0, 5.0], epoch_ms=450.0,
                           **dict(CPU_BOUND, wait_pct=45.0, ci_pct=20.0)),
        (0, None, False): dict(samples_per_s=700, ci_pct=30.0),
    }
    state = _run_policy(table, baseline=(2, 2, False), seeded=[(0, None, False)])
    assert (2, 2, True) in _tried(state)
    best = state.best().settings
    assert (best.num_workers, best.prefetch_factor, best.persistent_workers) == (2, 8, True)


def test_a_contended_short_epoch_gets_one_kept_worker_per_batch():
    short = dict(samples_per_epoch=480, dataset_len=480, **CPU_BOUND)
    table = {
        (0, None, False): dict(samples_per_s=450, ci_pct=2.0, stage_ms={"step": 4.0}, dataset_len=480),
        (2, 2, False): dict(samples_per_s=640, stage_ms={"step": 35.0}, **short),
        (15, 2, True): dict(samples_per_s=760, stage_ms={"step": 6.0}, **short),
    }
    # 480 samples in batches of 32: 15 batches, 15 workers
    state = _run_policy(table, baseline=(2, 2, False), seeded=[(0, None, False)])
    assert (15, 2, True) in _tried(state)
    assert state.best().settings == LoaderSettings(15, False, 2, True, 32)


def test_no_epoch_in_flight_without_contention_or_with_long_epochs():
    for step_ms, per_epoch in [(4.5, 480), (35.0, 64_000)]:
        fields = dict(samples_per_epoch=per_epoch, dataset_len=per_epoch, **CPU_BOUND)
        table = {(0, None, False): dict(samples_per_s=450, ci_pct=2.0, stage_ms={"step": 4.0}),
                 (2, 2, False): dict(samples_per_s=640, stage_ms={"step": step_ms}, **fields)}
        state = _run_policy(table, baseline=(2, 2, False), seeded=[(0, None, False)])
        assert not [t for t in state.trials() if t.purpose == "epoch in flight"]


def test_a_longer_short_epoch_is_put_in_flight_with_a_deeper_queue():
    fields = dict(samples_per_epoch=2048, dataset_len=2048, **CPU_BOUND)
    table = {(0, None, False): dict(samples_per_s=3700, ci_pct=2.0, stage_ms={"step": 0.6}),
             (2, 2, False): dict(samples_per_s=3100, stage_ms={"step": 5.4}, **fields),
             (16, 4, True): dict(samples_per_s=4800, stage_ms={"step": 0.7}, **fields)}
    # 64 batches: 16 workers (max_workers) x prefetch 4
    state = _run_policy(table, baseline=(2, 2, False), seeded=[(0, None, False)])
    assert state.best().settings == LoaderSettings(16, False, 4, True, 32)


def test_counts_run_on_kept_workers_when_an_epoch_is_shorter_than_a_window():
    # 1,024 samples at 1,000 samples/s: a 1 s epoch, inside a 1.5 s window: restarts would be timed
    table = {(0, None, False): dict(samples_per_s=1000, ci_pct=3.0, dataset_len=1024, main_cpu_pct=90.0,
                                    wait_pct=55.0, stage_ms={"fetch": 17.0, "step": 13.0})}
    state = _run_policy(table, baseline=(0, None, False), window_s=1.5)
    counts = [t for t in state.trials() if t.purpose == "workers"]
    assert counts and all(t.settings.persistent_workers for t in counts)
    # the same epoch against a 0.5 s window: each trial sits inside one epoch, workers restart
    state = _run_policy(table, baseline=(0, None, False), window_s=0.5)
    assert not any(t.settings.persistent_workers for t in state.trials() if t.purpose == "workers")


def test_a_tie_between_counts_goes_to_the_fewest_workers_for_the_next_knob():
    # 2 and 4 workers within each other's noise and 3%: the deeper queue is tried on 2
    table = {(0, None, False): dict(samples_per_s=800, ci_pct=2.0, main_cpu_pct=90.0, wait_pct=50.0,
                                    stage_ms={"fetch": 20.0, "step": 10.0}),
             (2, 2, False): dict(samples_per_s=1120, **dict(CPU_BOUND, ci_pct=9.0)),
             (1, 2, False): dict(samples_per_s=900, **CPU_BOUND),
             (4, 2, False): dict(samples_per_s=1150, **dict(CPU_BOUND, ci_pct=9.0))}
    state = _run_policy(table, baseline=(0, None, False), seeded=[(4, 2, False)], window_s=0.5)
    assert state.best().settings.num_workers == 4  # the fastest, by noise
    queued = [t for t in state.trials() if t.purpose == "prefetch_factor"]
    assert [t.settings.num_workers for t in queued] == [2]


def test_the_candidate_among_near_equal_configurations_is_the_simplest_whichever_noise_favoured():
    """Three quiet scans of image_folder (reports/benchmarks/repeat-scan.txt, before this rule)
    recommended 2 workers with prefetch_factor 8, 2 with 2, and 15, each with one torch thread,
    at 1.64-1.73x with overlapping intervals: noise ranked near-equal trials. Within noise of the
    fastest and at most MIN_GAIN (3%) behind it, the simplest is checked, whatever their order; a
    clear winner is still the fastest, a wide interval gives up no more than 3% for simplicity,
    and the baseline is never checked in place of a faster configuration."""
    base = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline", samples_per_s=552, ci_pct=5.0)

    def t(workers, prefetch, rate, ci=4.0, threads=1):
        s = LoaderSettings(workers, False, prefetch, True, 32, num_threads=threads)
        return TrialResult(s, "ok", "torch threads", samples_per_s=rate, ci_pct=ci)

    near = [t(2, 2, 959), t(2, 8, 975), t(15, 2, 985), t(2, 2, 957, threads=None)]  # within 3%
    for order in (near, near[::-1], near[1:] + near[:1]):
        state = SearchState()
        for trial in [base] + order:
            state.add(trial)
        assert state.best().samples_per_s == 985  # the fastest, by noise
        chosen = state.candidate(base.settings).settings
        assert (chosen.num_workers, chosen.prefetch_factor, chosen.num_threads) == (2, 2, None)
        assert state.best_with_workers().settings == chosen  # the next knobs build on it too
    clear = SearchState()
    for trial in (base, t(2, 2, 700, ci=2.0), t(15, 2, 985, ci=2.0)):
        clear.add(trial)
    assert clear.candidate(base.settings).settings.num_workers == 15  # 41% faster: no tie
    wide = SearchState()  # within wide intervals, but simplicity would give up 6%: the fastest stands
    for trial in (base, t(2, 2, 925, ci=10.0), t(15, 2, 985, ci=10.0)):
        wide.add(trial)
    assert wide.candidate(base.settings).settings.num_workers == 15
    assert wide.best_with_workers().settings.num_workers == 15
    close = SearchState()
    for trial in (base, t(2, 2, 575)):  # within the baseline's noise: still checked side by side
        close.add(trial)
    assert close.candidate(base.settings).settings.num_workers == 2


def test_a_deeper_queue_is_bounded_by_shared_memory_not_by_a_count_of_batches():
    # 16 workers that still leave the loop waiting: prefetch 2 -> 8 (128 batches of 1 MiB in
    # flight) where /dev/shm holds them; the deepest that fits where it is small; none if none fits
    mib = 1 << 20
    io = dict(worker_cpu_pct=3.0, worker_busy_pct=95.0, main_cpu_pct=10.0, ci_pct=4.0, wait_pct=30.0)
    table = {(0, None, False): dict(samples_per_s=200, ci_pct=2.0, main_cpu_pct=10.0, wait_pct=95.0,
                                    batch_bytes=mib, stage_ms={"fetch": 130.0, "wait": 130.0, "step": 8.0}),
             (16, 2, False): dict(samples_per_s=2500, **io)}
    for shm_mib, depth in [(None, 8), (4096, 8), (400, 6), (100, None)]:
        state = _run_policy(table, baseline=(0, None, False), window_s=0.5,
                            shm_free_bytes=shm_mib and shm_mib * mib)
        queued = [t.settings.prefetch_factor for t in state.trials() if t.purpose == "prefetch_factor"]
        assert queued == ([depth] if depth else []), (shm_mib, queued)


def test_fewer_workers_than_an_idle_count_past_the_cores_are_skipped():
    # 16 workers waiting on storage, the CPU 30% used: fewer can only overlap fewer waits
    io = dict(worker_cpu_pct=3.0, worker_busy_pct=95.0, main_cpu_pct=10.0, ci_pct=4.0, wait_pct=30.0)
    table = {(0, None, False): dict(samples_per_s=200, ci_pct=2.0, main_cpu_pct=10.0, wait_pct=95.0,
                                    stage_ms={"fetch": 130.0, "wait": 130.0, "step": 8.0}),
             (16, 2, False): dict(samples_per_s=2500, **io)}
    state = _run_policy(table, baseline=(0, None, False), window_s=0.5)
    counts = sorted({t.settings.num_workers for t in state.trials() if t.purpose == "workers"})
    assert counts == [16]  # 8 (half) and 1, 2 (the cores) skipped; 0 is the baseline


def test_pin_memory_only_on_cuda_and_every_allowed_batch_size():
    table = {(0, None, False): dict(samples_per_s=1000, ci_pct=2.0, main_cpu_pct=95.0, wait_pct=2.0,
                                    stage_ms={"fetch": 1.0, "step": 30.0})}
    base = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline", **table[(0, None, False)])
    for device, pinned in ((None, False), ("cuda:0", True)):
        state = SearchState()
        state.add(base)
        space = SearchSpace(cores=2, max_workers=16, window_s=5.0, batch_sizes=(64, 128), device=device)
        proposals = list(_all_proposals(search(space, state, base), state))
        assert any(p.purpose == "pin_memory" for p in proposals) == pinned
        assert [p.settings.batch_size for p in proposals if p.purpose == "batch_size"] == [64, 128]
        assert all(p.reason for p in proposals)  # every proposal says why


def _all_proposals(proposals, state):
    """Every proposal, each answered with a slow trial."""
    try:
        proposal = next(proposals)
        while True:
            yield proposal
            trial = TrialResult(proposal.settings, "ok", proposal.purpose, **SLOW)
            state.add(trial)
            proposal = proposals.send(trial)
    except StopIteration:
        return


def test_the_policy_imports_no_torch_no_process_and_no_file_access():
    import ast
    import subprocess
    import sys

    import dlprof.sweep.policy as policy

    tree = ast.parse(open(policy.__file__, encoding="utf-8").read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"torch", "os", "subprocess", "multiprocessing", "shutil", "io", "pathlib", "psutil"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "open"]
    # nor does anything it imports bring torch in
    out = subprocess.run([sys.executable, "-c", "import sys, dlprof.sweep.policy; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_step_slowed_by_busy_workers_gets_the_cores_they_leave():
    # the step takes 20 ms beside 2 workers using 1.8 cores, 4 ms alone: 1 intra-op thread
    table = {(0, None, False): dict(samples_per_s=800, ci_pct=2.0, main_cpu_pct=95.0, wait_pct=50.0,
                                    stage_ms={"fetch": 8.0, "wait": 8.0, "step": 4.0}),
             (2, 2, False): dict(samples_per_s=1050, stage_ms={"step": 20.0}, **CPU_BOUND)}
    state = _run_policy(table, baseline=(0, None, False), seeded=[(2, 2, False)], window_s=0.5)
    threads = [t.settings for t in state.trials() if t.purpose == "torch threads"]
    assert [(s.num_workers, s.num_threads) for s in threads] == [(2, 1)]
    # no slowdown of the step: no trial of the threads
    table[(2, 2, False)] = dict(samples_per_s=1050, stage_ms={"step": 4.5}, **CPU_BOUND)
    state = _run_policy(table, baseline=(0, None, False), seeded=[(2, 2, False)], window_s=0.5)
    assert not [t for t in state.trials() if t.purpose == "torch threads"]


def test_the_recommended_code_sets_the_threads_it_was_measured_with():
    from dlprof.analysis.recommend import changes, dataloader_call

    base = LoaderSettings(0, False, None, False, 32)
    rec = LoaderSettings(2, False, 2, True, 32, num_threads=1)
    code = dataloader_call(rec)
    assert code.startswith("torch.set_num_threads(1)") and "num_workers=2" in code
    assert "num_threads: None -> 1" in changes(base, rec)
    assert "set_num_threads" not in dataloader_call(base)
    assert rec.key() != LoaderSettings(2, False, 2, True, 32).key()  # measured apart


def _reorder_policy(allow: bool, p99_ms: float) -> SearchState:
    table = {(0, None, False): dict(samples_per_s=900, ci_pct=2.0, main_cpu_pct=95.0, wait_pct=90.0,
                                    stage_ms={"fetch": 16.0, "wait": 16.0, "step": 1.5}),
             (2, 2, False): dict(samples_per_s=1400, produce_p50_ms=8.0, produce_p99_ms=p99_ms, **CPU_BOUND)}
    state = SearchState()
    base = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline", **table[(0, None, False)])
    state.add(base)
    state.add(TrialResult(LoaderSettings(2, False, 2, False, 32), "ok", "workers", **table[(2, 2, False)]))
    space = SearchSpace(cores=2, max_workers=2, window_s=0.5, allow_reorder=allow)
    for proposal in _all_proposals(search(space, state, base), state):
        pass
    return state


def test_out_of_order_only_when_allowed_and_the_tail_is_heavy():
    def reordered(state):
        return [t.settings for t in state.trials() if t.purpose == "in_order"]

    # one batch in a hundred takes 12x the median (a long document among short ones)
    assert [s.in_order for s in reordered(_reorder_policy(True, 96.0))] == [False]
    assert reordered(_reorder_policy(False, 96.0)) == []  # the order is the user's to give up
    assert reordered(_reorder_policy(True, 16.0)) == []  # 2x the median: no tail to get past


def test_worker_candidates_skip_half_the_estimate_only_when_it_was_capped():
    # fetch 90 ms against a 10 ms step needs 9 workers; 2 cores cap the estimate at 2
    capped = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline",
                         stage_ms={"fetch": 90.0, "step": 10.0}, main_cpu_pct=99.0)
    assert worker_candidates(capped, 2, 16) == [2, 0]
    # 15 ms against 10 ms needs 2: half of it (1) is still worth a trial
    fits = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline",
                       stage_ms={"fetch": 15.0, "step": 10.0}, main_cpu_pct=99.0)
    assert worker_candidates(fits, 2, 16) == [2, 1, 0]


def test_worker_candidates_hold_a_worker_count_when_max_workers_is_below_the_cores():
    """--max-workers 1 on 2 cores: the estimate (9) is capped at 1, not at the cores (2), whose
    count the limit then drops: the scan must still try 1 worker (a suite run once tried none)."""
    capped = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline",
                         stage_ms={"fetch": 90.0, "step": 10.0}, main_cpu_pct=99.0)
    assert worker_candidates(capped, 2, 1) == [1, 0]
    assert worker_candidates(capped, 4, 3) == [3, 0]


def test_the_budget_counts_the_commands_start_and_keeps_time_for_the_reports():
    plan = ScanPlan("x.py", "/nonexistent", 30, cores=2, max_workers=16,
                    started_at=time.monotonic() - 4.0, finish_reserve_s=1.5)
    left = Scan(plan, ScanResult("x.py"), print).time_left()
    assert 24.0 < left <= 24.5  # 30 - 4 spent before the scan - 1.5 for the reports


def test_a_slow_baseline_reserves_longer_turns_for_the_side_by_side():
    scan = Scan(ScanPlan("x.py", "/nonexistent", 30, cores=2, max_workers=16, quick=True), ScanResult("x.py"), print)
    scan.trial_cost_s = 2.0
    fast = TrialResult(LoaderSettings(2, False, 2, False, 32), "ok", "baseline", seconds=1.5, batches=150)
    slow = TrialResult(LoaderSettings(2, False, 2, False, 32), "ok", "baseline", seconds=4.0, batches=4)
    scan.result.baseline = fast
    # turns of 0.75 s (half the quick window) and batches of 0.01 s: pairs of 1.52 s; the
    # warm-up pair and MIN_PAIRS + 1 pairs, 1 s of set-up: 8.6 s, then 2 s for one more trial
    assert scan.side_by_side_s(4) == pytest.approx(1.0 + 5 * 1.52)
    scan.plan.budget_s = 10.4
    assert not scan.affordable()
    scan.plan.budget_s = 10.8
    assert scan.affordable()
    # a baseline batch of a second makes every turn at least that long
    scan.result.baseline = slow
    assert scan.side_by_side_s(4) == pytest.approx(1.0 + 5 * 2 * (0.75 + 1.0))
    assert not scan.affordable()


def test_a_configuration_measured_before_costs_nothing_when_the_budget_is_short():
    """The search proposes the baseline's own configuration (answered from its trial): a short
    budget must not end the search there, only at the next configuration that needs a trial
    (a demo scan once stopped at 'num_workers=0, about 12 s' with 37 s left)."""
    scan = Scan(ScanPlan("x.py", "/nonexistent", 10, cores=2, max_workers=16, quick=True), ScanResult("x.py"),
                lambda line: None)
    scan.trial_cost_s = 5.0
    base = TrialResult(LoaderSettings(0, False, None, False, 32), "ok", "baseline", samples_per_s=100.0,
                       seconds=1.5, batches=150)
    scan.result.baseline = base
    scan.state.add(base)
    assert not scan.affordable()
    got = []

    def proposals():
        got.append((yield Proposal(base.settings, "workers", "")))
        got.append((yield Proposal(LoaderSettings(2, False, 2, False, 32), "workers", "")))

    scan._run_search(proposals())
    assert got == [base]  # answered from its trial; the 2-worker one was not run
    assert [n for n in scan.result.notes if "next trial (workers: num_workers=2," in n]


def test_slow_starting_workers_are_counted_before_a_trial_and_the_side_by_side():
    # spawned workers took 3 s to start two of them: 16 would take about 24 s, in their trial
    # and again in the side-by-side measurement (recipes/spawn_workers.py: a 16-worker trial took
    # 38 s and left the side-by-side one pair, so a 7x gain went unclaimed)
    scan = Scan(ScanPlan("x.py", "/nonexistent", 55, cores=2, max_workers=16), ScanResult("x.py"), print)
    scan.trial_cost_s = 8.0
    base = TrialResult(LoaderSettings(2, False, 2, False, 64), "ok", "baseline", samples_per_s=700.0,
                       seconds=5.0, batches=50, epoch_ms=3500.0, startup_ms=[3000.0, 3000.0])
    kept = TrialResult(LoaderSettings(4, False, 2, True, 64), "ok", "workers", samples_per_s=3400.0,
                       seconds=5.0, batches=250, epoch_ms=950.0, startup_ms=[6000.0, 2.0])
    scan.result.baseline = base
    for t in (base, kept):
        scan.state.add(t)
    assert scan.startup_per_worker_s() == pytest.approx(1.5)
    assert not scan.affordable(LoaderSettings(16, False, 4, True, 64))
    assert scan.affordable(LoaderSettings(2, False, 8, True, 64))
    # the side-by-side of the 16 workers starts the baseline's 2 (3 s) and them (24 s) first;
    # then the warm-up and 4 pairs: the baseline's turns are its whole 3.5 s epochs (plus a
    # batch), the unmeasured candidate's a turn (2.5 s)
    assert scan.side_by_side_s(4, LoaderSettings(16, False, 4, True, 64)) == pytest.approx(
        1.0 + 3.0 + 24.0 + 5 * (3.5 + 0.1 + 2.5))


def test_speedup_interval_and_the_rule_to_recommend():
    from dlprof.analysis.throughput import paired_ratio
    from dlprof.sweep.rules import measurably_faster, side_by_side_decided

    # pairs of (baseline, candidate) samples/s that agree on a 20% gain: recommended, decided
    tight = paired_ratio([(1000.0, 1190.0), (1000.0, 1210.0), (990.0, 1200.0)])
    assert tight[0] == pytest.approx(1.2, rel=0.01) and 1.0 < tight[1] < 1.2 < tight[2]
    assert measurably_faster(tight) and side_by_side_decided(tight)
    # pairs that disagree: the spread makes the interval, which spans "no gain": undecided
    spread = paired_ratio([(1000.0, 1300.0), (1000.0, 950.0), (1000.0, 1150.0)])
    assert spread[1] < 1.0 < spread[2] and not measurably_faster(spread) and not side_by_side_decided(spread)
    # one pair proves nothing, however large its ratio
    one = paired_ratio([(1000.0, 1530.0)])
    assert one[1] == 0.0 and one[2] == float("inf") and not measurably_faster(one)
    # a tight 1% gain is a tie, not a recommendation; and no gain worth a change can hide in
    # its interval, so more pairs would not change the answer
    tie = paired_ratio([(1000.0, 1010.0), (1000.0, 1011.0), (1000.0, 1009.0)])
    assert not measurably_faster(tie) and side_by_side_decided(tie)
    # a drift that slows both sides of every pair alike leaves the ratio alone
    drift = paired_ratio([(1000.0, 1200.0), (800.0, 960.0), (1100.0, 1320.0)])
    assert drift[0] == pytest.approx(1.2) and drift[2] - drift[1] < 0.01


def _sequential_false_recommendations(rule, sd: float, runs: int = 2000, max_pairs: int = 12) -> float:
    """How often the side-by-side rule, checked after every pair from MIN_PAIRS on as
    sweep.paired does, recommends a candidate that is exactly as fast as the baseline, when each
    pair's ratio carries lognormal noise of ``sd``."""
    import random

    from dlprof.analysis.throughput import paired_ratio
    from dlprof.sweep.paired import MIN_PAIRS

    rng = random.Random(17)
    wrong = 0
    for _ in range(runs):
        pairs = []
        for n in range(1, max_pairs + 1):
            pairs.append((1000.0, 1000.0 * math.exp(rng.gauss(0.0, sd))))
            if n >= MIN_PAIRS and (rule(paired_ratio(pairs)) or paired_ratio(pairs)[2] < 1.03):
                break
        wrong += rule(paired_ratio(pairs))
    return wrong / runs


def test_checking_after_every_pair_rarely_recommends_a_tie():
    from dlprof.sweep.rules import measurably_faster

    def above_one(speedup):  # the rule before: the interval excludes 1 and the estimate is 3% up
        return speedup[1] > 1.0 and speedup[0] >= 1.03

    # 8% noise a pair: turns of 0.75 s on our 2-core machine (recipes/accelerator_step.py)
    assert _sequential_false_recommendations(measurably_faster, 0.08) < 0.025
    assert _sequential_false_recommendations(above_one, 0.08) > 0.06  # the looks add up
    assert _sequential_false_recommendations(measurably_faster, 0.04) < 0.01


def _online_check(sd: float, gain: float, futile: bool, runs: int = 2000) -> tuple[float, float]:
    """sweep.online's side-by-side check, from MIN_PAIRS to its MAX_PAIRS pairs, each pair's
    ratio ``gain`` with lognormal noise ``sd``: (share kept, mean pairs used)."""
    import random

    from dlprof.analysis.throughput import paired_ratio
    from dlprof.sweep.online import MAX_PAIRS
    from dlprof.sweep.paired import MIN_PAIRS
    from dlprof.sweep.rules import measurably_faster, side_by_side_decided, side_by_side_futile

    rng = random.Random(23)
    kept = used = 0
    for _ in range(runs):
        pairs = []
        for n in range(1, MAX_PAIRS + 1):
            pairs.append((1000.0, 1000.0 * gain * math.exp(rng.gauss(0.0, sd))))
            r = paired_ratio(pairs)
            if n >= MIN_PAIRS and (side_by_side_decided(r) or (futile and side_by_side_futile(r, n, MAX_PAIRS))):
                break
        kept += measurably_faster(paired_ratio(pairs))
        used += len(pairs)
    return kept / runs, used / runs


def test_a_futile_check_ends_a_tie_early_and_keeps_real_gains_nearly_as_often():
    from dlprof.sweep.rules import side_by_side_futile

    assert side_by_side_futile((1.02, 0.90, 1.15), 3, 6)  # no gain in sight
    assert not side_by_side_futile((1.25, 1.00, 1.55), 3, 6)  # more pairs would clear 1.03x
    assert not side_by_side_futile((1.02, 0.90, 1.15), 6, 6) and not side_by_side_futile((1.0, 0.0, math.inf), 1, 6)
    tie_kept, tie_pairs = _online_check(0.08, 1.0, futile=True)
    _, tie_pairs_before = _online_check(0.08, 1.0, futile=False)
    assert tie_pairs < 4 < tie_pairs_before and tie_kept < 0.03
    for gain in (1.15, 1.3):
        with_rule, _ = _online_check(0.08, gain, futile=True)
        without, _ = _online_check(0.08, gain, futile=False)
        assert with_rule >= without - 0.06, gain


def test_no_more_workers_than_an_epochs_batches():
    from dlprof.sweep.rules import useful_workers

    assert useful_workers(16, 3) == 3  # workers past an epoch's batches never get one
    assert useful_workers(16, 0) == 16  # epoch length unknown (an iterable dataset)
    assert useful_workers(16, 400) == 16


def test_a_trial_that_measures_whole_epochs_is_counted_at_its_hard_limit():
    """A configuration holding a real part of an epoch in flight measures whole epochs, up to the
    trial's hard limit: what window trials cost is no guide to it (the demo's 15-worker trial
    overran the estimate and left the side-by-side check 3 pairs)."""
    scan = Scan(ScanPlan("x.py", "/nonexistent", 60, cores=2, max_workers=16), ScanResult("x.py"), print)
    scan.trial_cost_s = 7.0
    base = TrialResult(LoaderSettings(0, False, None, False, 64), "ok", "baseline", samples_per_s=700.0,
                       seconds=5.0, batches=50, dataset_len=16000, dataset_kind="map")
    scan.result.baseline = base
    scan.state.add(base)
    many = LoaderSettings(15, False, 2, False, 64)  # 30 batches in flight of an epoch's 250
    assert not buffer_matters(LoaderSettings(1, False, 2, False, 64), 250)
    assert buffer_matters(many, 250)
    limits = scan.limits
    _, _, cost_many = scan._room(many)
    _, _, cost_one = scan._room(LoaderSettings(1, False, 2, False, 64))
    assert cost_one == pytest.approx(7.0)
    assert cost_many >= limits.hard_factor * limits.max_seconds
    # epochs of 3 batches (0.3 s at the baseline's pace) end within a window: no more than one
    scan.result.baseline = dataclasses.replace(base, dataset_len=192)
    assert scan._room(many)[2] == pytest.approx(7.0)


def test_a_check_the_budget_ended_undecided_is_told_from_a_tie():
    """The demo's check on a slow machine: pairs of 1.43, 1.61 and 2.27x, 1.74x (0.96-3.16x):
    undecided, not 'no gain'. The same ratios over the most pairs decide; a tie is futile."""
    from dlprof.analysis.throughput import paired_ratio
    from dlprof.sweep.paired import MAX_PAIRS
    from dlprof.sweep.rules import side_by_side_undecided

    def judged(ratios):
        speedup = paired_ratio([(1.0, r) for r in ratios])
        return side_by_side_undecided(speedup, len(ratios), MAX_PAIRS)

    assert judged([1.43, 1.61, 2.27])
    assert not judged([1.43, 1.61, 2.27] * 4)  # 12 pairs: measurably faster
    assert not judged([0.99, 1.01, 1.00, 0.98])  # a tie: decided
    assert not judged([1.02, 0.97, 1.05, 0.95, 1.01, 0.99] * 2)  # the most pairs: no more to measure
