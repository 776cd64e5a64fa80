"""The scan's pure decision rules: throughput intervals over short epochs, and which worker
counts are still worth a trial. Synthetic arrival times stand in for measured ones here only
because the rules are pure functions of them; the scans in test_scan.py run real loaders."""
import math

from dlprof.analysis.throughput import rate_and_ci
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult
from dlprof.sweep.search import Scan, ScanPlan


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
    assert rate == rate_e  # the estimate is the same; only its interval changes
    assert ci_epochs < 1.0  # every epoch repeats the same pattern
    assert ci_fixed > 10 * ci_epochs  # blocks cut across restarts vary with where they fall


def test_too_few_epochs_keep_fixed_blocks():
    times, samples, epoch_of = _short_epochs(3)
    assert rate_and_ci(times, samples, epoch_of) == rate_and_ci(times, samples)
    assert rate_and_ci(times[:5], samples[:5])[1] == math.inf  # too few batches for 8 blocks


def _trial(workers: int, rate: float) -> TrialResult:
    settings = LoaderSettings(workers, False, 2 if workers else None, False, 32)
    return TrialResult(settings, "ok", "workers", samples_per_s=rate, ci_pct=50.0)


def _scan_with(rates: dict[int, float]) -> Scan:
    scan = Scan(ScanPlan("x.py", "/nonexistent", 30, cores=2, max_workers=16), ScanResult("x.py"), print)
    for workers, rate in rates.items():
        t = _trial(workers, rate)
        scan.seen[t.settings.key()] = t
    return scan


def test_fewer_workers_are_skipped_while_throughput_rises():
    assert _scan_with({0: 220, 16: 1250, 8: 1150})._rising_from() == 8
    assert _scan_with({0: 220, 16: 1150, 8: 1250})._rising_from() == 0  # past the peak: all open
    assert _scan_with({0: 220, 16: 1160, 8: 1150})._rising_from() == 0  # within noise


def test_best_is_the_fastest_even_when_its_interval_is_wide():
    scan = _scan_with({0: 220, 16: 1380, 8: 1155})
    scan.seen[_trial(16, 0).settings.key()].ci_pct = 72.0
    assert scan.best().settings.num_workers == 16
