"""Judgements over measured trials that the search makes again and again: pure, no torch."""
from __future__ import annotations

import math

from dlprof.analysis.bottleneck import epoch_ms_of
from dlprof.analysis.thresholds import MIN_GAIN
from dlprof.analysis.throughput import noise_margin, t975
from dlprof.scan_records import LoaderSettings, TrialResult

MAX_TIE = 0.15  # a preferred trial wins a tie with a faster one at most this far behind
# A simpler configuration (fewer workers) is chosen over a faster one at most this far behind:
# MIN_GAIN, the smallest gain the scan acts on, so simplicity never costs more than a gain the
# scan would not recommend a change for (at 15%, windows of wide intervals settled image_folder
# on 2 workers at 0.85 of the grid's best).
SIMPLER_TIE = MIN_GAIN


# Restarting workers every epoch is worth avoiding past this share of an epoch: MIN_GAIN, the
# smallest difference the scan acts on anywhere.
RESTART_SHARE = MIN_GAIN


def restart_cost(t: TrialResult) -> tuple[list[float], float, bool]:
    """(start-up ms per epoch, epoch ms, whether restarting workers is over 3% of an epoch)."""
    startup = t.startup_ms[1:] or t.startup_ms  # later epochs show the restart cost
    epoch_ms, _ = epoch_ms_of(t, startup[0] if startup else 0.0)
    matters = bool(epoch_ms > 0 and startup and (sum(startup) / len(startup)) > RESTART_SHARE * epoch_ms)
    return startup, epoch_ms, matters


def buffer_matters(s: LoaderSettings, epoch_batches: int | None) -> bool:
    """Does the configuration hold a real part of an epoch in flight? Then each epoch begins by
    filling its queues (after starting workers, unless they persist) and ends draining them with
    fewer workers busy: costs a window inside an epoch leaves out, while it counts the full
    queues' burst. Such trials measure whole epochs. "A real part": more than MIN_GAIN, the
    smallest difference between two configurations the scan acts on."""
    if not s.num_workers or not epoch_batches:
        return False
    return s.num_workers * (s.prefetch_factor or 2) > MIN_GAIN * epoch_batches


def whole_epoch_turns(epoch_s: float | None, turn_s: float) -> bool:
    """Do side-by-side turns of ``turn_s`` run whole epochs? When an epoch takes at most two
    turns' time: every epoch holds the same samples, so whole epochs leave out which samples a
    window caught (a heavy tail of slow samples) and where a restart fell in it; longer epochs
    would make turns long. (Also when ``buffer_matters`` for a side.)"""
    return epoch_s is not None and 0 < epoch_s <= 2 * turn_s


def spans_epochs(t: TrialResult, window_s: float) -> bool:
    """Is an epoch at ``t``'s rate shorter than a trial's window? Then a trial with workers
    restarted every epoch measures their restarts as much as the count's rate; kept workers
    (persistent_workers) only skip the restarts, so they measure what the count sustains."""
    epoch_ms, _ = epoch_ms_of(t, 0.0)
    return 0 < epoch_ms < 1000.0 * window_s


def batches_per_epoch(t: TrialResult, batch_size: int | None = None) -> int:
    """From the first completed epoch, else the dataset's length; 0 when unknown. In batches of
    ``batch_size`` (None: of the trial's own)."""
    per_epoch = t.samples_per_epoch or (t.dataset_len if t.dataset_kind == "map" else 0)
    size = batch_size or t.settings.batch_size
    return math.ceil(per_epoch / size) if per_epoch and size else 0


def useful_workers(max_workers: int, batches: int) -> int:
    """The most workers worth trying when an epoch holds ``batches`` batches (0: unknown). torch
    hands each epoch's batches to the workers in turn from worker 0, kept workers too (its
    iterator's reset), so workers past that count never get a batch: processes, memory and
    start-up for nothing."""
    return max(1, min(max_workers, batches)) if batches > 0 else max_workers


def within_noise(t: TrialResult, top: TrialResult, cap: float = MAX_TIE) -> bool:
    """Is ``top`` faster than ``t`` by no more than their intervals allow, and by at most
    ``cap``? An interval wider than that says the trials were too short to tell (few epochs
    restarting workers), not that a larger gap is noise. MAX_TIE for measured evidence (kept
    workers that skip a measured restart); SIMPLER_TIE when only simplicity speaks for ``t``."""
    margin = min(noise_margin(t.ci_pct, top.ci_pct, MIN_GAIN), cap)
    return t.samples_per_s >= top.samples_per_s * (1 - margin)


def measurably_faster(speedup: tuple[float, float, float]) -> bool:
    """(ratio, low, high) of the side-by-side pairs: recommend only when the whole 95% interval
    lies above 1 + MIN_GAIN (smaller gains are ties). Above MIN_GAIN, not merely above 1: the
    rule is checked after every pair, and each look is another chance for noise to pass it;
    with the stricter bound a tie is recommended in under 2% of measurements of 12 looks at 8%
    noise a pair, against 9% with "above 1" (tests/test_search_rules.py simulates both)."""
    return speedup[1] > 1 + MIN_GAIN


def side_by_side_decided(speedup: tuple[float, float, float]) -> bool:
    """(ratio, low, high) so far: a recommendation stands (``measurably_faster``), or the
    interval excludes a gain worth a change. Either way more pairs would not change the answer."""
    return measurably_faster(speedup) or speedup[2] < 1 + MIN_GAIN


def side_by_side_futile(speedup: tuple[float, float, float], pairs: int, max_pairs: int) -> bool:
    """(ratio, low, high) after ``pairs`` pairs: even if every pair up to ``max_pairs`` measured
    as these did (the same mean log ratio and spread), the interval would still hold no gain at
    all (1.0). More pairs are then unlikely to make a recommendation, and online each costs the
    job two switches. It only ends a check on "keep", so it adds no false recommendation; in
    simulation it ends a tie after about 3 pairs instead of 5-6 and keeps a true 1.15x at 8%
    noise a pair 79% of the time instead of 82% (tests/test_search_rules.py)."""
    ratio, low, high = speedup
    if pairs < 2 or pairs >= max_pairs or not (0 < low and math.isfinite(high)):
        return False
    sd = (math.log(high) - math.log(low)) / 2 * math.sqrt(pairs) / t975(pairs - 1)
    return math.log(ratio) - t975(max_pairs - 1) * sd / math.sqrt(max_pairs) <= 0.0


def side_by_side_undecided(speedup: tuple[float, float, float], pairs: int, max_pairs: int) -> bool:
    """Did a check end before its answer? Its interval still holds both a gain worth a change and
    none, and more pairs could still have made a recommendation: the budget ended it, not the
    measurements, and the scan says so rather than calling it a tie."""
    return (pairs < max_pairs and not side_by_side_decided(speedup)
            and not side_by_side_futile(speedup, pairs, max_pairs))
