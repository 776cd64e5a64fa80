"""The pin-memory analyses are pure functions of records. A CPU-only torch never starts the
pin-memory thread, so these tests build the records a pinned run leaves; tests/test_gpu.py
checks the same figures from a real pinned DataLoader on a GPU."""
from dlprof.analysis.bottleneck import diagnose
from dlprof.analysis.pinning import pin_cost, pin_note, pinning_effect
from dlprof.analysis.stages import batch_frame, summarize
from dlprof.records import BatchRecord, EpochRecord, ProfileRun
from dlprof.scan_records import LoaderSettings, TrialResult

MS = 1_000_000


def _batch(i: int, collate_end: int, pin: tuple[int, int], wait: tuple[int, int], pin_cpu: int) -> BatchRecord:
    return BatchRecord(0, i, 0, 100, 32, collate_end - 5 * MS, collate_end - MS, [], collate_end - MS, collate_end,
                       wait[0], wait[1], pin[0], pin[1], 0, 2 * MS, "sample", pin_cpu)


def _run(batches: list[BatchRecord]) -> ProfileRun:
    return ProfileRun(epochs=[EpochRecord(0, 0, 0, batches[0].wait_end_ns, batches[-1].wait_end_ns + 2 * MS,
                                          len(batches), False, True)], batches=batches)


def test_the_wait_that_falls_on_the_pin_thread_is_measured():
    batches = [
        # pinned before the loop asked: no wait on the pin thread
        _batch(0, collate_end=10 * MS, pin=(11 * MS, 14 * MS), wait=(20 * MS, 21 * MS), pin_cpu=3 * MS),
        # collated at 30, queued for the busy pin thread until 34, pinned until 40; the loop asked at 32
        _batch(1, collate_end=30 * MS, pin=(34 * MS, 40 * MS), wait=(32 * MS, 41 * MS), pin_cpu=5 * MS),
        # the loop asked before the worker finished: only the part after collate falls on pinning
        _batch(2, collate_end=50 * MS, pin=(50 * MS, 52 * MS), wait=(45 * MS, 53 * MS), pin_cpu=2 * MS),
    ]
    frame = batch_frame(_run(batches))
    assert list(frame["pin_wait_ms"]) == [0.0, 8.0, 2.0]
    assert list(frame["pin_cpu_ms"]) == [3.0, 5.0, 2.0]
    cost = pin_cost(frame)
    assert cost.batches == 3 and round(cost.pin_wait_ms, 6) == round(10 / 3, 6)
    assert "pin-memory thread" in pin_note(cost) and "falls behind" in pin_note(cost)


def test_a_run_without_pinning_has_no_pin_figures():
    batch = BatchRecord(0, 0, 0, 100, 32, 0, 4 * MS, [], 4 * MS, 5 * MS, 6 * MS, 7 * MS)
    frame = batch_frame(_run([batch]))
    assert pin_cost(frame) is None and frame["pin_wait_ms"].iloc[0] == 0.0
    assert not any("pin-memory" in n for n in summarize(_run([batch])).notes)


def _trial(pin: bool, rate: float, ci: float = 2.0, purpose: str = "pin_memory") -> TrialResult:
    stage = {"fetch": 5.0, "collate": 1.0, "pin": 6.0 if pin else 0.0, "wait": 4.0, "transfer": 1.0 if pin else 3.0,
             "step": 2.0, "fetch_per_sample": 0.15, "pin_cpu": 5.5 if pin else 0.0, "pin_wait": 3.0 if pin else 0.0}
    return TrialResult(LoaderSettings(2, pin, 2, False, 32), "ok", purpose, samples_per_s=rate, ci_pct=ci,
                       wait_pct=50.0, stage_ms=stage, worker_cpu_pct=80.0, worker_busy_pct=90.0)


def test_pinning_that_measured_slower_is_called_harmful():
    text = pinning_effect([_trial(False, 1000.0, purpose="workers"), _trial(True, 800.0)])
    assert text.startswith("pinning hurts here") and "20% fewer" in text and "keep pin_memory=False" in text
    assert "5.50 ms of CPU" in text and "1.00 ms pinned against 3.00 ms unpinned" in text
    base = _trial(True, 800.0, purpose="baseline")
    _, warnings = diagnose(base, [base, _trial(False, 1000.0, purpose="pin_memory")], cores=2)
    assert any(w.startswith("pinning hurts here") for w in warnings)


def test_pinning_that_helped_or_tied_gets_no_warning():
    assert pinning_effect([_trial(False, 1000.0), _trial(True, 1200.0)]) is None  # helped
    assert pinning_effect([_trial(False, 1000.0, ci=15.0), _trial(True, 900.0, ci=15.0)]) is None  # noise
    assert pinning_effect([_trial(True, 800.0)]) is None  # nothing to compare with
    # a pair that differs in more than pinning says nothing about pinning
    other = TrialResult(LoaderSettings(4, False, 2, False, 32), "ok", "workers", samples_per_s=2000.0, ci_pct=1.0)
    assert pinning_effect([other, _trial(True, 800.0)]) is None
