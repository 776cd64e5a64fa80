"""Online tuning's decisions (``dlprof.autotune``): which configuration the next window of the
running job uses, when a window has measured enough, and what to settle on. Pure: no torch, no
process; fed TrialResults of windows, so every rule is tested from records alone.

The search is the scan's own (``policy.search``), fed windows instead of trials. Then, as the
scan verifies its recommendation side by side, the best candidate and the user's configuration
take turns in windows; it is kept only when the pairs' whole 95% interval is above 1 + MIN_GAIN
(``rules.measurably_faster``). Otherwise, or when anything is left undecided when the budget
ends, the user's configuration is kept.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from dlprof.analysis.bottleneck import epoch_ms_of
from dlprof.analysis.thresholds import BALANCED_PCT, MIN_GAIN
from dlprof.analysis.throughput import paired_ratio, t975
from dlprof.scan_records import LoaderSettings, TrialResult
from dlprof.sweep.paired import MIN_PAIRS
from dlprof.sweep.policy import Search, SearchSpace, SearchState, search
from dlprof.sweep.rules import (buffer_matters, measurably_faster, side_by_side_decided, side_by_side_futile,
                               whole_epoch_turns)

# A window measures until its rate's 95% interval is within this share (the scan's trials use
# the same), between MIN_WINDOW_S and MAX_WINDOW_S of steady batches: at least a second, so a
# window spans many batches of a fast loop; at most five, so one slower configuration costs the
# job at most five seconds at its rate.
REL_CI = 0.04
MIN_WINDOW_S = 1.0
MAX_WINDOW_S = 5.0
MIN_WINDOW_BATCHES = 8  # a block estimate of the interval needs several batches
# A side-by-side turn needs less: the pairs' interval (Student's t over their log ratios) holds
# each turn's noise. With MIN_PAIRS pairs (t = 4.3 at 2 degrees of freedom), a 1.2x gain clears
# 1 + MIN_GAIN when a pair's log ratio varies by about 6%, each turn's rate by about 4%: a 95%
# interval of about 8%.
TURN_REL_CI = 2 * REL_CI
# ... and lasts at most half a window, as the scan's turns last half its longest trial window
# (sweep.search): a pipeline whose interval stays wide (workers restarted every short epoch)
# then takes more pairs, whose interval holds that noise, not longer turns.
MAX_TURN_S = MAX_WINDOW_S / 2
# pairs of turns in the side-by-side check, at most (the scan's bound)
MAX_PAIRS = 6
# The default budget: exploring stops after the larger of these. A minute holds the search's
# usual proposals (windows of 1-5 s) and its side-by-side pairs; on a long epoch, "a few percent"
# of it (issue 20), which a job that runs for epochs repays if the tuner finds a few percent.
DEFAULT_BUDGET_S = 60.0
BUDGET_EPOCH_SHARE = 0.03
# The share of the timed reception of a batch (probe.handoff) that the workers' ceiling counts:
# received from a forked helper it came out at 0.08-1.26x a real worker's hand-over, by batch
# shape and round (benchmarks/handoff.py, reports/benchmarks/handoff.txt); half of it keeps the
# ceiling an upper bound.
RECEIVE_SHARE = 0.5


@dataclass
class Window:
    """One stretch of the job in one configuration, as the results keep it."""

    settings: LoaderSettings
    purpose: str  # "baseline", the policy's purpose, "side by side: baseline|candidate"
    reason: str
    start_ns: int = 0
    end_ns: int = 0
    batches: int = 0  # measured (after the warm-up)
    samples_per_s: float = 0.0
    ci_pct: float = 0.0
    wait_pct: float = 0.0
    outcome: str = ""  # what the tuner concluded from it (or the failure)


@dataclass
class Tuning:
    """What the tuner did: its windows, what it settled on and the measured speedup."""

    baseline: LoaderSettings
    windows: list[Window] = field(default_factory=list)
    settled: LoaderSettings | None = None
    reason: str = ""
    speedup: tuple[float, float, float] | None = None  # (ratio, low, high) of the side-by-side pairs
    pairs: list[tuple[float, float]] = field(default_factory=list)  # (baseline, candidate) samples/s
    failed: list[str] = field(default_factory=list)  # configurations left after a failure
    receive_ms: float | None = None  # receiving a batch from a worker, timed once (iterable, no workers)


def window_done(seconds: float, batches: int, ci_pct: float, rel_ci: float = REL_CI,
                max_s: float = MAX_WINDOW_S) -> bool:
    """Has a window measured enough? ``seconds`` and ``batches`` after its warm-up; ``rel_ci``
    and ``max_s``: the interval it measures to and its longest (a side-by-side turn's are
    ``turn_rel_ci`` and MAX_TURN_S)."""
    if batches < MIN_WINDOW_BATCHES:
        return False
    if seconds >= max_s:
        return True
    return seconds >= MIN_WINDOW_S and ci_pct <= 100 * rel_ci


def turn_rel_ci(gain: float) -> float:
    """The interval a side-by-side turn measures to when the candidate looked ``gain`` times as
    fast as the user's configuration: TURN_REL_CI, or wider where MIN_PAIRS pairs of turns that
    noisy would still put the whole interval above 1 + MIN_GAIN with half the gap to spare (the
    gain is itself an estimate). Past a few times as fast, each baseline turn costs the job most
    of its time, and 8% turns only decide what a wider interval already shows."""
    if gain <= 1 + MIN_GAIN:
        return TURN_REL_CI
    # a pair's log ratio varies by sqrt(2) turns' (relative) sd; a turn's 95% half-width is ~2 sd
    pair_sd = 0.5 * (math.log(gain) - math.log(1 + MIN_GAIN)) * math.sqrt(MIN_PAIRS) / t975(MIN_PAIRS - 1)
    return max(TURN_REL_CI, 2 * pair_sd / math.sqrt(2))


def default_budget_s(baseline: TrialResult) -> float:
    """DEFAULT_BUDGET_S, or BUDGET_EPOCH_SHARE of an epoch at the baseline's rate if longer."""
    epoch_ms, _ = epoch_ms_of(baseline, 0.0)
    return max(DEFAULT_BUDGET_S, BUDGET_EPOCH_SHARE * epoch_ms / 1000.0)


def nothing_to_gain(t: TrialResult) -> bool:
    """The loop waits under BALANCED_PCT of its time, the whole interval included: no loader
    setting can make it faster by more than that share, under the smallest gain worth a change."""
    return t.wait_pct + (t.wait_ci_pct if t.wait_ci_pct is not None else t.wait_pct) < BALANCED_PCT


def loop_ms(t: TrialResult) -> float:
    """The loop's time a batch: its wait for data, the copy to the device and the step."""
    return sum(t.stage_ms.get(k, 0.0) for k in ("wait", "transfer", "step"))


def workers_ceiling(t: TrialResult, receive_ms: float, cores: int) -> float:
    """The most that any number of workers can speed up a loop measured without them (``t``).
    They take over its wait for data (the fetch and collate, in the loop's own time at
    num_workers=0); the training process still steps, copies to the device and receives each
    batch from a worker (``receive_ms``, timed by ``probe.handoff``; RECEIVE_SHARE of it counts).
    And the work moves, it does not go away: the CPU the training process spent a batch (all of
    the loop's work, without workers), plus the receiving, is spread over ``cores`` at best. An
    upper bound: it counts no worker-side cost and no waiting between the processes."""
    receive_ms *= RECEIVE_SHARE
    wait, loop = t.stage_ms.get("wait", 0.0), loop_ms(t)
    cpu_ms = t.main_cpu_pct / 100.0 * loop  # 0 when the CPU was not sampled: that bound is left out
    return loop / max(loop - wait + receive_ms, (cpu_ms + receive_ms) / max(cores, 1), 1e-6)


class Tuner:
    """Proposes the next window's configuration from the windows measured so far.

    ``next_settings(window)`` is sent each finished window (None for the first call) and returns
    the configuration of the next window, or None once settled (``tuning.settled``).
    ``failed(settings, error)`` when a configuration failed: it is never proposed again and the
    next window goes back to the best configuration that worked."""

    def __init__(self, space: SearchSpace, baseline: LoaderSettings, budget_s: float | None = None,
                 epochs_only: bool = False, explore_epochs: bool = False) -> None:
        """``budget_s``: seconds of exploring; None: the default, set from the baseline's window
        (``default_budget_s``). ``epochs_only``: configurations change only between epochs (an
        iterable dataset), so every window is made of whole epochs. ``explore_epochs``: such a
        tuner explores (each explored configuration then serves a whole epoch, slower or not);
        without it, it keeps the user's configuration after its first window and says what
        workers could gain at most (``workers_ceiling``)."""
        self.space = space
        self.budget_s = budget_s or DEFAULT_BUDGET_S
        self._auto_budget = budget_s is None
        self.spent_s = 0.0
        self.tuning = Tuning(baseline=baseline)
        self.state = SearchState()
        self._search: Search | None = None
        self._candidate: LoaderSettings | None = None
        self._turns: list[TrialResult] = []  # side by side, alternating: candidate, baseline, ...
        self._pending = None  # the proposal being measured
        self._failed: set[tuple] = set()  # keys of configurations that failed: never again
        # side-by-side turns span whole epochs, as the scan's (set with the candidate: _whole_epochs)
        self.epochs_only = epochs_only
        self.explore_epochs = explore_epochs
        self.whole_epochs = epochs_only

    # -- the conversation ------------------------------------------------------------------

    def first(self) -> LoaderSettings:
        return self.tuning.baseline

    def done(self, seconds: float, batches: int, rate: float, ci_pct: float, epoch_end: bool = True) -> bool:
        """Has the current window measured enough (``window_done``), or is it, while exploring,
        already slower than the best configuration so far beyond its interval and MIN_GAIN? Such
        a window cannot win, and each second more in it costs the job. A side-by-side turn
        measures to ``turn_rel_ci`` of the gain seen so far (asked only at epoch ends when turns
        span whole epochs, ``whole_epochs``). ``epoch_end``: asked as an epoch ended, not after
        one of its batches."""
        if self._candidate is not None:
            return window_done(seconds, batches, ci_pct, self._turn_rel_ci, MAX_TURN_S)
        if self._search is None and not self.explores:
            # the user's configuration is kept whatever this window measures
            # (_keeps_an_iterables_epochs): it measures for the results only, and each batch
            # more recorded costs the job the profiling of it: at most one epoch, or a window as
            # any other's within a longer epoch (an hour-long stream is not recorded whole)
            return batches >= MIN_WINDOW_BATCHES if epoch_end else window_done(seconds, batches, ci_pct)
        if window_done(seconds, batches, ci_pct):
            return True
        best = self.state.best() if self._search is not None else None
        # after MIN_WINDOW_S, as any window: the first batches after a switch carry its bursts
        return (best is not None and batches >= MIN_WINDOW_BATCHES and seconds >= MIN_WINDOW_S
                and rate * (1 + ci_pct / 100) < best.samples_per_s * (1 - MIN_GAIN))

    @property
    def explores(self) -> bool:
        """Is any configuration but the user's tried? An iterable dataset's, only when asked
        (``explore_epochs``): otherwise its first window is measured for the results only."""
        return not self.epochs_only or self.explore_epochs

    def next_settings(self, measured: TrialResult, window: Window) -> LoaderSettings | None:
        self.tuning.windows.append(window)
        self.spent_s += window.end_ns / 1e9 - window.start_ns / 1e9
        if self.tuning.settled is not None:
            return None
        if self._search is None:  # the baseline's window
            self.state.add(measured)
            if self._auto_budget:
                self.budget_s = default_budget_s(measured)
            if nothing_to_gain(measured):
                return self.settle(self.tuning.baseline, f"the loop waits {measured.wait_pct:.1f}% of its time: "
                                    f"under {BALANCED_PCT:.0f}%, no loader setting can gain more")
            if self._keeps_an_iterables_epochs(measured):
                return None
            self._search = search(self.space, self.state, measured)
            return self._propose(None)
        if self._candidate is not None:
            return self._side_by_side(measured, window)
        self.state.add(measured)
        window.outcome = f"{measured.samples_per_s:,.0f} samples/s"
        return self._propose(measured)

    @property
    def _turn_rel_ci(self) -> float:
        """``turn_rel_ci`` of the smaller of the gains seen: exploring's windows, the pairs'."""
        seen = self.state.seen
        base, cand = seen.get(self.tuning.baseline.key()), seen.get(self._candidate.key())
        gains = [cand.samples_per_s / base.samples_per_s] if base and cand and base.samples_per_s > 0 else []
        if self.tuning.speedup:
            gains.append(self.tuning.speedup[0])
        return turn_rel_ci(min(gains)) if gains else TURN_REL_CI

    def keeps(self, settings: LoaderSettings) -> bool:
        """Will ``settings`` run again soon (a side of the side-by-side check)? Its kept workers
        then wait between turns rather than start again in each."""
        return self._candidate is not None and self.tuning.settled is None and settings.key() in (
            self._candidate.key(), self.tuning.baseline.key())

    def failed(self, settings: LoaderSettings, error: str, window: Window) -> LoaderSettings | None:
        window.outcome = f"failed: {error}"
        self.tuning.windows.append(window)
        self.tuning.failed.append(f"{settings.label()}: {error}")
        self._failed.add(settings.key())
        if self._candidate is not None:  # the candidate failed side by side: keep the user's
            return self.settle(self.tuning.baseline, f"the candidate failed: {error}")
        if self.tuning.settled is not None or self._search is None:
            return None
        # the search goes on from what worked
        return self._propose(TrialResult(settings=settings, status="error", error=error))

    def received(self, ms: float | None) -> None:
        """What receiving a batch from a worker costs the training process (``probe.handoff``)."""
        self.tuning.receive_ms = ms

    # -- inside -----------------------------------------------------------------------------

    def _keeps_an_iterables_epochs(self, baseline: TrialResult) -> bool:
        """An iterable dataset: an explored configuration serves a whole epoch, which cannot be
        cut once it turns out slower (a map-style window that loses is cut after a second).
        Unless ``explore_epochs``, none is explored: the user's configuration is kept, and the
        reason says what workers could gain at most. With it, a loop without workers tries them
        only when their ceiling (``workers_ceiling``) clears MIN_GAIN, the smallest gain worth a
        change: under it, the explored epoch could only lose."""
        if not self.epochs_only:
            return False
        ms = self.tuning.receive_ms
        ceiling = (workers_ceiling(baseline, ms, self.space.cores)
                   if ms is not None and not self.tuning.baseline.num_workers else None)
        if self.explore_epochs and (ceiling is None or ceiling >= 1 + MIN_GAIN):
            return False
        why = ("an iterable dataset's explored epoch cannot be cut when it turns out slower, so "
               + ("none was tried" if self.explore_epochs else
                  "none is tried unless asked (dlprof.autotune(loader, explore_epochs=True))"))
        if ceiling is not None:
            why = (f"workers could make this loop at most {ceiling:.2f}x as fast (it takes {loop_ms(baseline):.2f} "
                   f"ms a batch, "
                   f"{baseline.stage_ms.get('wait', 0.0):.2f} ms of it waiting for data, using "
                   f"{baseline.main_cpu_pct / 100:.1f} of {self.space.cores} cores; receiving a batch from a "
                   f"worker would cost it {ms:.2f} ms); " + why)
        self.settle(self.tuning.baseline, why)
        return True

    def _reserve_s(self) -> float:
        """Time kept for the side-by-side check: MIN_PAIRS pairs of windows as long as the
        windows so far, so that exploring does not leave its winner unverified."""
        windows = self.tuning.windows
        return 2 * MIN_PAIRS * self.spent_s / len(windows) if windows else 0.0

    def _propose(self, measured: TrialResult | None) -> LoaderSettings | None:
        while self.spent_s + self._reserve_s() < self.budget_s:
            try:
                # the first proposal after the baseline's window starts the search; each later one
                # answers the trial of the one before
                p = next(self._search) if measured is None else self._search.send(measured)
            except StopIteration:
                break
            key = p.settings.key()
            if key in self.state.seen or key in self._failed or self._unsupported(p.settings):
                measured = self.state.seen.get(key) or TrialResult(
                    settings=p.settings, status="error", error="failed before" if key in self._failed
                    else "not tunable online")
                continue
            self._pending = p
            return p.settings
        else:  # the budget ran out (not the search)
            if len(self.state.seen) == 1 and not self._failed:  # only the user's configuration ran
                return self.settle(self.tuning.baseline, self._no_room())
        return self._verify_or_settle()

    def _unsupported(self, s: LoaderSettings) -> bool:
        """Settings that would change the batches the loop sees (their size or order) or the
        step's own process (its threads): an online tuner only moves what the loader does."""
        base = self.tuning.baseline
        return s.batch_size != base.batch_size or s.in_order != base.in_order or s.num_threads != base.num_threads

    def proposal(self):
        """(purpose, reason) of the configuration just proposed."""
        p = self._pending
        return (p.purpose, p.reason) if p is not None else ("baseline", "the configuration as the user wrote it")

    def _verify_or_settle(self) -> LoaderSettings | None:
        base = self.tuning.baseline
        best = self.state.candidate(base)
        if best is None or best.settings.key() == base.key():
            return self.settle(base, "no configuration was faster than the user's")
        self._candidate = best.settings
        self._pending = None
        self._turns = []
        self.whole_epochs = self.epochs_only or self._whole_epochs()
        return self._candidate

    def _no_room(self) -> str:
        """Why nothing but the user's configuration ran: the budget holds no window more (and the
        side-by-side pairs it keeps time for)."""
        why = f"the budget ({self.budget_s:.0f} s) leaves no time to try another configuration"
        if self.epochs_only:
            why += (f" after the first window ({self.spent_s:.1f} s): an iterable dataset's configuration changes "
                    f"only between epochs, so each window is whole epochs; a larger budget explores over more")
        return why

    def _whole_epochs(self) -> bool:
        """Turns of whole epochs, by the scan's rule (``rules.whole_epoch_turns``): an epoch at
        the baseline's rate takes at most two turns, or a side holds a real part of an epoch in
        flight (``rules.buffer_matters``). A turn cut mid-epoch on such a pipeline reads a burst
        or a stall; a whole epoch holds both, as the job pays them."""
        base = self.state.seen.get(self.tuning.baseline.key())
        if base is None:
            return False
        epoch_ms, _ = epoch_ms_of(base, 0.0)
        samples = base.samples_per_epoch or base.dataset_len or 0
        size = self.tuning.baseline.batch_size
        batches = -(-samples // size) if samples and size else None
        return whole_epoch_turns(epoch_ms / 1000, MAX_TURN_S) or any(
            buffer_matters(s, batches) for s in (self.tuning.baseline, self._candidate))

    def _side_by_side(self, measured: TrialResult, window: Window) -> LoaderSettings | None:
        self._turns.append(measured)
        window.purpose = "side by side: " + ("candidate" if len(self._turns) % 2 else "baseline")
        window.outcome = f"{measured.samples_per_s:,.0f} samples/s"
        if len(self._turns) % 2:  # the candidate's turn ended: the baseline's next
            return self.tuning.baseline
        pairs = [(self._turns[i + 1].samples_per_s, self._turns[i].samples_per_s)
                 for i in range(0, len(self._turns) - 1, 2)]
        self.tuning.pairs = pairs
        ratio = paired_ratio(pairs)
        self.tuning.speedup = ratio
        decided = len(pairs) >= MIN_PAIRS and (side_by_side_decided(ratio)
                                               or side_by_side_futile(ratio, len(pairs), MAX_PAIRS))
        # at least MIN_PAIRS pairs, past the budget if need be (their time was kept for them)
        if decided or len(pairs) >= MAX_PAIRS or (self.spent_s >= self.budget_s and len(pairs) >= MIN_PAIRS):
            if len(pairs) >= MIN_PAIRS and measurably_faster(ratio):
                return self.settle(self._candidate, f"{ratio[0]:.2f}x the user's configuration side by side "
                                    f"(95% interval {ratio[1]:.2f}-{ratio[2]:.2f}x, {len(pairs)} pairs)")
            return self.settle(self.tuning.baseline, f"the best candidate ({self._candidate.label()}) was not "
                               f"measurably faster side by side ({ratio[0]:.2f}x, 95% interval "
                               f"{ratio[1]:.2f}-{ratio[2]:.2f}x, {len(pairs)} pairs)")
        return self._candidate

    def settle(self, settings: LoaderSettings, reason: str) -> None:
        self.whole_epochs = False
        self.tuning.settled = settings
        self.tuning.reason = reason
        return None


def tuning_to_dict(t: Tuning) -> dict:
    """The plain form kept in the results (``ProfileRun.tuning``)."""
    d = dataclasses.asdict(t)
    d["speedup"] = list(t.speedup) if t.speedup else None
    d["pairs"] = [list(p) for p in t.pairs]
    return d
