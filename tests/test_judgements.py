"""The judgements the search and the diagnosis share (dlprof.analysis.judgements), from
hand-built trials: no process runs."""
from __future__ import annotations

from dlprof.analysis.judgements import (computes, cores_busy, cores_spare, fetch_usage, fetch_waits_on_io,
                                        workers_compute)
from dlprof.scan_records import LoaderSettings, TrialResult


def trial(workers: int, worker_cpu=0.0, worker_busy=0.0, main_cpu=0.0, wait=0.0, step=0.0) -> TrialResult:
    return TrialResult(LoaderSettings(workers, False, 2 if workers else None, False, 32), "ok",
                       worker_cpu_pct=worker_cpu, worker_busy_pct=worker_busy, main_cpu_pct=main_cpu,
                       stage_ms={"wait": wait, "step": step})


def test_a_process_computes_when_its_cpu_is_half_its_busy_time_or_more():
    assert computes(50.0, 100.0) and computes(40.0, 60.0)
    assert not computes(20.0, 60.0) and not computes(49.0, 100.0)
    assert computes(0.5, 0.0)  # busy under 1%: judged against 1%, not against nothing


def test_workers_waiting_on_storage_wait_on_io_and_computing_ones_do_not():
    storage = trial(16, worker_cpu=4.0, worker_busy=95.0)
    decode = trial(2, worker_cpu=90.0, worker_busy=95.0)
    assert fetch_waits_on_io(storage) and not workers_compute(storage)
    assert not fetch_waits_on_io(decode) and workers_compute(decode)
    # half a core or more is CPU work, whatever the busy time says
    assert not fetch_waits_on_io(trial(1, worker_cpu=55.0, worker_busy=100.0))


def test_without_workers_the_main_process_fetches_while_the_loop_waits():
    # the loop waited 94% of the time; the main process used 12% of a core: storage latency
    slow_storage = trial(0, main_cpu=12.0, wait=134.0, step=8.0)
    cpu, busy = fetch_usage(slow_storage)
    assert cpu == 12.0 and 94.0 < busy < 95.0 and fetch_waits_on_io(slow_storage)
    # 77% of a core while waiting 55% of the loop: decoding in the main process
    assert not fetch_waits_on_io(trial(0, main_cpu=77.0, wait=17.7, step=13.6))
    assert not workers_compute(trial(0, main_cpu=100.0))  # no workers, nothing to judge


def test_cores_busy_and_spare_leave_a_band_between_them():
    two = 2
    full = trial(4, worker_cpu=35.0, main_cpu=30.0)  # 170% of 200%
    idle = trial(4, worker_cpu=10.0, main_cpu=30.0)  # 70%
    between = trial(4, worker_cpu=25.0, main_cpu=40.0)  # 140%: 70% of the cores
    assert cores_busy(full, two) and not cores_spare(full, two)
    assert cores_spare(idle, two) and not cores_busy(idle, two)
    assert not cores_busy(between, two) and not cores_spare(between, two)
