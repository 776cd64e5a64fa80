"""dlprof.autotune's decisions (sweep.online), from records alone: the tuner is pure, so its
rules are tested with windows described by their figures; tests/test_autotune.py runs it on real
loaders."""
from __future__ import annotations

import pytest

from dlprof.scan_records import LoaderSettings, TrialResult
from dlprof.sweep.online import (MAX_TURN_S, MIN_PAIRS, TURN_REL_CI, Tuner, Window, tuning_to_dict, window_done,
                                 workers_ceiling)
from dlprof.sweep.policy import SearchSpace

BASE = LoaderSettings(num_workers=0, pin_memory=False, prefetch_factor=None, persistent_workers=False, batch_size=32)
SPACE = SearchSpace(cores=2, max_workers=8, window_s=5.0)


def window(s: LoaderSettings, rate: float, wait: float = 80.0, at: float = 0.0, seconds: float = 2.0) -> tuple:
    """A window's figures: a fetch-heavy pipeline (40 ms to make a batch, a 2 ms step) whose
    workers compute, so the search climbs the worker count."""
    t = TrialResult(settings=s, status="ok", samples_per_s=rate, ci_pct=2.0, batches=50, seconds=seconds,
                    wait_pct=wait, wait_ci_pct=1.0, stage_ms={"fetch": 38.0, "collate": 2.0, "step": 2.0, "wait": 30.0},
                    worker_cpu_pct=95.0, worker_busy_pct=95.0, main_cpu_pct=20.0, dataset_len=10_000)
    return t, Window(s, "", "", start_ns=int(at * 1e9), end_ns=int((at + seconds) * 1e9))


def rate_of(s: LoaderSettings) -> float:
    """The pipeline's throughput by configuration: workers help up to the 2 cores."""
    return 800.0 * min(s.num_workers, 2) if s.num_workers else 700.0


def drive(tuner: Tuner, rate=rate_of, limit: int = 60) -> list[LoaderSettings]:
    served, s, at = [], tuner.first(), 0.0
    while s is not None and len(served) < limit:
        served.append(s)
        t, w = window(s, rate(s), at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    return served


def test_a_loop_that_hardly_waits_keeps_its_configuration_after_one_window():
    tuner = Tuner(SPACE, BASE, budget_s=60)
    t, w = window(BASE, 700.0, wait=2.0)
    assert tuner.next_settings(t, w) is None
    assert tuner.tuning.settled == BASE and "under 5%" in tuner.tuning.reason


def test_a_faster_configuration_is_kept_only_after_side_by_side_pairs():
    tuner = Tuner(SPACE, BASE, budget_s=120)
    served = drive(tuner)
    tuning = tuner.tuning
    assert tuning.settled is not None and tuning.settled.num_workers >= 2
    assert len(tuning.pairs) >= MIN_PAIRS and tuning.speedup[1] > 1.03  # the whole interval above 1.03x
    sides = [w.purpose for w in tuning.windows if w.purpose.startswith("side by side")]
    assert sides[:2] == ["side by side: candidate", "side by side: baseline"]
    assert served[0] == BASE and any(s.num_workers > 0 for s in served)


def test_a_candidate_within_noise_of_the_baseline_side_by_side_is_not_kept():
    """Exploring found a 'faster' window (a lucky one); side by side the two are the same."""
    def lucky(s):
        return 750.0 if s.num_workers else 740.0

    tuner = Tuner(SPACE, BASE, budget_s=120)
    served, s, at, side = [], tuner.first(), 0.0, False
    while s is not None and len(served) < 60:
        served.append(s)
        side = side or tuner._candidate is not None
        rate = (730.0 if s.num_workers else 735.0) if side else lucky(s) * (1.1 if s.num_workers == 2 else 1.0)
        t, w = window(s, rate, at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    assert tuner.tuning.settled == BASE and "not measurably faster" in tuner.tuning.reason
    assert "best candidate (num_workers=2," in tuner.tuning.reason  # which one, for the reader


def test_a_failed_configuration_is_never_proposed_again_and_the_budget_bounds_exploring():
    tuner = Tuner(SPACE, BASE, budget_s=30)
    t, w = window(BASE, 700.0)
    first = tuner.next_settings(t, w)
    assert first is not None and first.num_workers > 0
    again = tuner.failed(first, "RuntimeError: DataLoader worker (pid 1) is killed by signal: Killed.",
                         Window(first, "", "", 2_000_000_000, 2_000_000_000))
    served = [first]
    s, at = again, 2.0
    while s is not None and len(served) < 60:
        served.append(s)
        t, w = window(s, rate_of(s), at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    assert first.key() not in {x.key() for x in served[1:]}
    assert tuner.tuning.failed and tuner.tuning.settled is not None
    exploring = [w for w in tuner.tuning.windows if not w.purpose.startswith("side by side")]
    assert sum((w.end_ns - w.start_ns) / 1e9 for w in exploring) <= 30  # the budget, verification apart


def test_an_explored_window_clearly_slower_than_the_best_ends_early():
    tuner = Tuner(SPACE, BASE, budget_s=60)
    t, w = window(BASE, 700.0)
    proposed = tuner.next_settings(t, w)
    assert proposed is not None
    assert tuner.done(seconds=1.2, batches=12, rate=400.0, ci_pct=10.0)  # 440 at most: far below 700
    assert not tuner.done(seconds=1.2, batches=12, rate=650.0, ci_pct=10.0)  # might still reach 700
    assert not tuner.done(seconds=1.2, batches=4, rate=400.0, ci_pct=10.0)  # too few batches to judge
    assert not tuner.done(seconds=0.3, batches=12, rate=400.0, ci_pct=10.0)  # under a second: a burst


def test_window_ends_on_a_narrow_interval_or_its_time():
    assert not window_done(seconds=3.0, batches=5, ci_pct=1.0)  # too few batches for an interval
    assert not window_done(seconds=0.5, batches=40, ci_pct=1.0)  # under a second
    assert window_done(seconds=1.5, batches=40, ci_pct=3.0)
    assert not window_done(seconds=1.5, batches=40, ci_pct=9.0)
    assert window_done(seconds=5.0, batches=40, ci_pct=9.0)  # the longest a window lasts


def test_side_by_side_turns_measure_to_a_wider_interval_and_keep_both_sides_workers():
    """Exploring windows measure to 4%; once side by side, a turn ends at 8% (the pairs' interval
    holds each turn's noise), and both sides' workers are kept between turns, until it settles."""
    tuner = Tuner(SPACE, BASE, budget_s=120)
    s, at = tuner.first(), 0.0

    def rate_of(settings):  # workers gain 1.2x: turns of 8%
        return 840.0 if settings.num_workers else 700.0
    while tuner._candidate is None:
        assert not tuner.done(seconds=1.5, batches=40, rate=rate_of(s), ci_pct=7.0)  # exploring: 4%
        assert not tuner.done(seconds=MAX_TURN_S, batches=40, rate=rate_of(s), ci_pct=7.0)
        assert not tuner.keeps(s)
        t, w = window(s, rate_of(s), at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    assert 7.0 <= 100 * TURN_REL_CI
    assert tuner.done(seconds=1.5, batches=40, rate=rate_of(s), ci_pct=7.0)
    assert not tuner.done(seconds=1.5, batches=40, rate=rate_of(s), ci_pct=100 * TURN_REL_CI + 1)
    assert tuner.keeps(s) and tuner.keeps(BASE)
    # a turn lasts at most MAX_TURN_S, whatever its interval (an exploring window: MAX_WINDOW_S)
    assert tuner.done(seconds=MAX_TURN_S, batches=40, rate=rate_of(s), ci_pct=60.0)
    assert not tuner.done(seconds=MAX_TURN_S - 0.1, batches=40, rate=rate_of(s), ci_pct=60.0)
    while s is not None:
        t, w = window(s, rate_of(s), at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    assert tuner.tuning.settled is not None and not tuner.keeps(tuner.tuning.settled) and not tuner.keeps(BASE)


def test_the_default_budget_is_a_minute_or_a_few_percent_of_a_long_epoch():
    short = Tuner(SPACE, BASE)  # 10,000 samples at 700/s: a 14 s epoch
    short.next_settings(*window(BASE, 700.0))
    assert short.budget_s == 60.0
    long = Tuner(SPACE, BASE)
    t, w = window(BASE, 700.0)
    t.dataset_len = 7_000_000  # 10,000 s an epoch: 3% of it
    long.next_settings(t, w)
    assert long.budget_s == pytest.approx(300.0)
    given = Tuner(SPACE, BASE, budget_s=20)
    given.next_settings(t, w)
    assert given.budget_s == 20


def test_a_turn_measures_only_as_finely_as_the_gain_seen_needs():
    from dlprof.sweep.online import turn_rel_ci

    assert turn_rel_ci(0.9) == turn_rel_ci(1.2) == TURN_REL_CI  # a modest gain needs 8% turns
    assert TURN_REL_CI < turn_rel_ci(2.0) < turn_rel_ci(4.0) < turn_rel_ci(10.0)
    # a 4x gain: 30% turns still clear 1.03x with MIN_PAIRS pairs at that noise
    assert turn_rel_ci(4.0) > 0.30
    tuner = Tuner(SPACE, BASE, budget_s=120)
    s, at = tuner.first(), 0.0

    def fast(settings):  # workers make it 4x as fast
        return 2800.0 if settings.num_workers else 700.0
    while tuner._candidate is None:
        t, w = window(s, fast(s), at=at)
        at += 2.0
        s = tuner.next_settings(t, w)
    assert tuner.done(seconds=1.5, batches=40, rate=fast(s), ci_pct=25.0)  # 25%: enough at 4x
    assert not tuner.done(seconds=1.5, batches=40, rate=fast(s), ci_pct=100 * turn_rel_ci(4.0) + 5)


def test_turns_span_whole_epochs_when_an_epoch_is_shorter_than_two_turns():
    """As the scan's turns (rules.whole_epoch_turns): a short epoch (here 1.4 s at the
    baseline's rate) is measured whole in each turn, asked at its ends; a long one (1,400 s,
    little in flight) is cut into turns as before. Once settled, no more turns."""
    def until_side_by_side(dataset_len):
        tuner = Tuner(SPACE, BASE, budget_s=120)
        s, at = tuner.first(), 0.0
        while tuner._candidate is None:
            t, w = window(s, rate_of(s), at=at)
            t.dataset_len = dataset_len
            at += 2.0
            s = tuner.next_settings(t, w)
        return tuner
    assert not until_side_by_side(1_000_000).whole_epochs
    short = until_side_by_side(1_000)
    assert short.whole_epochs
    # at an epoch's end: one 1.4 s epoch at a wide interval goes on, two (2.8 s) end the turn
    assert not short.done(seconds=1.4, batches=31, rate=700.0, ci_pct=100.0)
    assert short.done(seconds=2.8, batches=62, rate=700.0, ci_pct=100.0)
    while short.tuning.settled is None:
        short.next_settings(*window(short._candidate, 1600.0))
        if short.tuning.settled is None:
            short.next_settings(*window(BASE, 700.0))
    assert not short.whole_epochs


def test_an_iterable_datasets_windows_are_whole_epochs_and_a_long_epoch_leaves_no_room():
    """Epochs only (an iterable dataset): every window is whole epochs, side-by-side turns too;
    where the first window (an epoch) already spent the budget with its pairs' reserve, the
    user's configuration is kept and the reason says why; a shorter epoch is explored."""
    tuner = Tuner(SPACE, BASE, budget_s=60, epochs_only=True, explore_epochs=True)
    assert tuner.whole_epochs
    t, w = window(BASE, 700.0, seconds=40.0)  # one epoch: 40 s
    assert tuner.next_settings(t, w) is None
    assert tuner.tuning.settled == BASE and "iterable dataset" in tuner.tuning.reason
    assert "budget" in tuner.tuning.reason and not tuner.whole_epochs

    tuner = Tuner(SPACE, BASE, budget_s=60, epochs_only=True, explore_epochs=True)
    served = drive(tuner)  # 2 s windows
    assert any(s.num_workers > 0 for s in served)
    sides = [w for w in tuner.tuning.windows if w.purpose.startswith("side by side")]
    assert sides and tuner.tuning.settled is not None and tuner.tuning.settled.num_workers >= 2


def test_a_search_with_nothing_left_to_try_is_not_said_to_be_out_of_budget():
    """The budget's reason is given only when the budget, not the search, ended exploring."""
    tuner = Tuner(SearchSpace(cores=2, max_workers=0, window_s=5.0), BASE, budget_s=60)
    drive(tuner)
    assert "budget" not in tuner.tuning.reason


def stream_window(main_cpu_pct: float, wait_ms: float, step_ms: float) -> tuple:
    """The user's window of an iterable dataset read without workers: ``wait_ms`` of fetch and
    collate a batch in the loop's own time, then a ``step_ms`` step."""
    t, w = window(BASE, 700.0, wait=100.0 * wait_ms / (wait_ms + step_ms))
    t.stage_ms = {"fetch": wait_ms - 0.2, "collate": 0.2, "wait": wait_ms, "transfer": 0.0, "step": step_ms}
    t.main_cpu_pct = main_cpu_pct
    return t, w


def test_workers_ceiling_counts_the_receiving_and_the_cores():
    t, _ = stream_window(main_cpu_pct=100.0, wait_ms=8.0, step_ms=2.0)
    # the wait goes to workers, (half) the receiving comes in: 10 / (2 + 1); the cores hold (10 + 1) / 2
    assert workers_ceiling(t, receive_ms=2.0, cores=2) == pytest.approx(10 / 5.5)
    assert workers_ceiling(t, receive_ms=2.0, cores=16) == pytest.approx(10 / 3)
    t.main_cpu_pct = 0.0  # the CPU not sampled: only the loop's own bound
    assert workers_ceiling(t, receive_ms=2.0, cores=2) == pytest.approx(10 / 3)
    t.main_cpu_pct = 200.0  # the loop already kept both cores busy: workers can only add work
    assert workers_ceiling(t, receive_ms=2.0, cores=2) < 1


@pytest.mark.parametrize("epochs_only", [True, False])
def test_an_iterable_loop_whose_workers_cannot_repay_an_epoch_keeps_its_configuration(epochs_only):
    """Without workers, a loop that waits 2 ms a batch for data, with both cores busy and 1.5 ms
    to receive each batch from a worker, has no epoch to spare on workers: an iterable dataset
    asked to explore keeps the user's configuration after its first window, and says why. A
    map-style dataset's windows, which are cut when they lose, still try them."""
    tuner = Tuner(SPACE, BASE, budget_s=120, epochs_only=epochs_only, explore_epochs=True)
    tuner.received(1.5)
    t, w = stream_window(main_cpu_pct=197.0, wait_ms=2.0, step_ms=1.4)
    nxt = tuner.next_settings(t, w)
    if epochs_only:
        assert nxt is None and tuner.tuning.settled == BASE
        assert "at most 0." in tuner.tuning.reason and "1.50 ms" in tuner.tuning.reason
        assert "cannot be cut" in tuner.tuning.reason and "none was tried" in tuner.tuning.reason
    else:
        assert nxt is not None and nxt.num_workers > 0 and tuner.tuning.settled is None


def test_an_iterable_loop_whose_workers_can_repay_it_explores_them_when_asked():
    """The same loop with a 20 ms fetch (one core busy): workers could make it several times
    faster. Asked to explore epochs, the tuner tries them; by default it keeps the user's
    configuration and says what they could gain and how to try them."""
    tuner = Tuner(SPACE, BASE, budget_s=120, epochs_only=True, explore_epochs=True)
    tuner.received(1.5)
    t, w = stream_window(main_cpu_pct=100.0, wait_ms=20.0, step_ms=1.4)
    nxt = tuner.next_settings(t, w)
    assert nxt is not None and nxt.num_workers > 0
    assert tuner.tuning.receive_ms == 1.5 and tuning_to_dict(tuner.tuning)["receive_ms"] == 1.5

    tuner = Tuner(SPACE, BASE, budget_s=120, epochs_only=True)
    tuner.received(1.5)
    assert tuner.next_settings(t, w) is None and tuner.tuning.settled == BASE
    assert "at most 1.9" in tuner.tuning.reason and "explore_epochs=True" in tuner.tuning.reason


def test_an_iterable_loop_not_asked_to_explore_decides_after_its_first_epoch():
    """Unless asked to explore, an iterable dataset's tuner keeps the user's configuration
    whatever its first window measures: that window ends with the first epoch of a few batches,
    however wide its interval; asked to explore, the interval still decides."""
    kept = Tuner(SPACE, BASE, budget_s=120, epochs_only=True)
    assert not kept.done(seconds=0.2, batches=5, rate=700.0, ci_pct=100.0)  # too few batches for a rate
    assert kept.done(seconds=0.2, batches=12, rate=700.0, ci_pct=100.0)
    explores = Tuner(SPACE, BASE, budget_s=120, epochs_only=True, explore_epochs=True)
    assert not explores.done(seconds=1.2, batches=12, rate=700.0, ci_pct=10.0)


def test_an_iterable_loop_with_workers_keeps_them_unless_asked_to_explore():
    with_workers = LoaderSettings(num_workers=2, pin_memory=False, prefetch_factor=2, persistent_workers=False,
                                  batch_size=32)
    tuner = Tuner(SPACE, with_workers, budget_s=120, epochs_only=True)
    t, w = window(with_workers, 700.0)
    assert tuner.next_settings(t, w) is None and tuner.tuning.settled == with_workers
    assert "explore_epochs=True" in tuner.tuning.reason and "at most" not in tuner.tuning.reason
