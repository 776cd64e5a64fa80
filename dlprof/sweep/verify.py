"""The end of a scan: the best candidate and the baseline measured side by side, the speedup
with its interval, the stacks of both. A part of ``Scan`` (sweep.search), kept apart so the search
and its verification read on their own."""
from __future__ import annotations

import math
import os
import time

from dlprof.analysis.throughput import paired_ratio
from dlprof.scan_records import Check, CheckOutcome, LoaderSettings, TrialResult
from dlprof.sweep.paired import MAX_PAIRS, MIN_PAIRS, run_side_by_side
from dlprof.sweep.rules import measurably_faster, side_by_side_undecided

# a trial's wall time beyond its measured window (fork, load, warm-up): 0.8-1.1 s for trials
# of 0-2 workers in a quick scan of recipes/startup_cost.py on our 2-core machine
TRIAL_SETUP_S = 1.0


class Verification:
    """Mixed into Scan: uses its plan, result, seen trials, budget and progress."""

    def _sample_hotspots(self, named: list[tuple[str, LoaderSettings]]) -> None:
        """Where the time goes (py-spy stacks), in trials of their own, while the budget lasts."""
        for name, s in named:
            if not self.plan.hotspots or self.time_left() < self.cost_s.get(s.key(), self.trial_cost_s):
                return
            self.trial(s, f"hotspots: {name}", again=True, sample_stacks=True)

    def _verify(self) -> None:
        """Measure the baseline and the best again, taking turns: the speedup is their ratio."""
        base = self.result.baseline
        best = self.state.candidate(base.settings) if base.status == "ok" else self.best()
        if base.status != "ok" or best.settings.key() == base.settings.key():
            self.result.recommendation = base if base.status == "ok" else best
            self.result.speedup = 1.0 if base.status == "ok" else None
            if not self.plan.quick:  # nothing to compare: the configuration to keep
                self._sample_hotspots([("baseline", self.result.recommendation.settings)])
            return
        final_base, final_rec, pairs = self._side_by_side(base.settings, best.settings)
        # Stacks are sampled apart from the turns that give the speedup: py-spy's reads cost
        # each sampled process, so they would cost a configuration with workers more (5-8% of
        # the throughput of 2 workers against 1-2% without, reports/benchmarks/overhead-stacks.txt)
        self._sample_hotspots([("baseline", base.settings), ("recommendation", best.settings)])
        self.result.speedup_samples = sorted(c / b for b, c in pairs)
        failed = next((t for t in (final_rec, final_base) if t.status != "ok"), None)
        if failed is not None:  # a configuration that failed once is not one to hand a user
            self.result.check = Check(CheckOutcome.FAILED, pairs=len(pairs))
            which = "the best candidate" if failed is final_rec else "the baseline"
            self.result.notes.append(
                f"{which} ({failed.settings.label()}) failed in the side-by-side measurement "
                f"({failed.status}: {failed.error}): no speedup is claimed; keep the current configuration")
            self.result.recommendation, self.result.speedup = base, 1.0
            return
        speedup, low, high = paired_ratio(pairs)
        one_pair = not math.isfinite(high)
        if measurably_faster((speedup, low, high)):
            outcome = CheckOutcome.FASTER
        elif side_by_side_undecided((speedup, low, high), len(pairs), MAX_PAIRS):
            outcome = CheckOutcome.UNDECIDED
        else:
            outcome = CheckOutcome.TIE
        self.result.check = Check(outcome, speedup, None if one_pair else low, None if one_pair else high, len(pairs))
        if outcome != CheckOutcome.FASTER:
            # not measurably faster side by side: keep the user's configuration
            interval = "one pair of turns: no interval" if one_pair else f"95% interval {low:.2f}-{high:.2f}x"
            why = (f"undecided after {len(pairs)} pairs when the budget ran out, so the recommendation is "
                   "to keep the current configuration until a scan with a larger --budget decides"
                   if outcome == CheckOutcome.UNDECIDED
                   else "not measurably faster, so the recommendation is to keep the current configuration")
            self.result.notes.append(
                f"the best candidate ({best.settings.label()}) measured {speedup:.2f}x the baseline side "
                f"by side ({interval}): {why}")
            self.result.recommendation, self.result.speedup = base, 1.0
            return
        self.result.recommendation, self.result.speedup = final_rec, speedup
        self.result.speedup_ci = [low, high]

    def _side_turn_s(self, t: TrialResult | None) -> float:
        """A turn of ``t``'s configuration: whole epochs (their restarts included) where an epoch
        takes at most two turns, else a turn's length; and at least one batch more."""
        if t is None:
            return self.turn_s
        batch_s = t.seconds / t.batches if t.batches else 0.0
        epoch_s = t.epoch_ms / 1000
        return (max(self.turn_s, epoch_s) if 0 < epoch_s <= 2 * self.turn_s else self.turn_s) + batch_s

    def startup_per_worker_s(self) -> float:
        """The longest a worker took to start in the trials so far (a first epoch's start-up over
        its workers): spawned workers import torch, a second or more each; forked ones start in
        milliseconds."""
        per = [t.startup_ms[0] / 1000 / t.settings.num_workers for t in self.seen.values()
               if t.status == "ok" and t.settings.num_workers and t.startup_ms]
        return max(per, default=0.0)

    def _startup_s(self, s: LoaderSettings) -> float:
        """Seconds to start ``s``'s workers once: as its trial measured, else estimated per worker."""
        known = self.seen.get(s.key())
        if known is not None and known.startup_ms:
            return known.startup_ms[0] / 1000
        return self.startup_per_worker_s() * s.num_workers

    def side_by_side_s(self, pairs: int, cand: LoaderSettings | None = None) -> float:
        """Seconds for the side-by-side measurement of the baseline and ``cand`` (None: a
        candidate like the baseline) with ``pairs`` pairs of turns after the warm-up pair: both
        loaders' workers start first (spawned ones take seconds), then the turns."""
        base = self.result.baseline
        base_turn = self._side_turn_s(base)
        cand_turn = self._side_turn_s(self.seen.get(cand.key())) if cand is not None else base_turn
        start = (self._startup_s(base.settings) if base is not None else 0.0) + (
            self._startup_s(cand) if cand is not None else 0.0)
        return TRIAL_SETUP_S + start + (1 + pairs) * (base_turn + cand_turn)

    def _side_by_side(self, base: LoaderSettings, cand: LoaderSettings) -> tuple[TrialResult, TrialResult, list]:
        """Turns of the two in one process (sweep.paired) until the speedup is decided, or up
        to MAX_PAIRS pairs while the budget lasts; both records join the trials."""
        pair_s = self._side_turn_s(self.result.baseline) + self._side_turn_s(self.seen.get(cand.key()))
        start_s = self._startup_s(base) + self._startup_s(cand)  # inside the child's time
        # the verdict before the hotspots: an undecided check may take the time their trials
        # would (they run after it, in what is left); a decided or futile one ends early
        max_s = start_s + max((1 + MIN_PAIRS) * pair_s,
                              min(self.time_left() - TRIAL_SETUP_S - start_s, (1 + MAX_PAIRS) * pair_s))
        index = len(self.result.trials) + 1
        self.progress(f"[trial {index}, {max(0, self.time_left()):.0f} s left] side by side, in turns of "
                      f"{self.turn_s:g} s (up to {max_s:.0f} s): the baseline and {cand.label()}")
        began = time.monotonic()
        final_base, final_rec, pairs = run_side_by_side(
            self.plan.spec, base, cand, os.path.join(self.plan.out_dir, "trials"), index, self.plan.device,
            self.turn_s, max_s, timeout_s=max_s + 3 * pair_s + 30)
        self.trial_cost_s = max(self.trial_cost_s, (time.monotonic() - began) / max(1, 2 * len(pairs)))
        for t in (final_base, final_rec):
            t.log = os.path.relpath(t.log, self.plan.out_dir) if t.log else ""
            self.result.trials.append(t)
        self.save()
        if pairs:
            ratio, low, high = paired_ratio(pairs)
            interval = f"95% interval {low:.2f}-{high:.2f}x" if math.isfinite(high) else "no interval"
            self.progress(f"    {len(pairs)} pairs: baseline {final_base.samples_per_s:,.0f}, candidate "
                          f"{final_rec.samples_per_s:,.0f} samples/s; {ratio:.2f}x ({interval})")
        for t in (final_base, final_rec):
            if t.status != "ok":
                self.progress(f"    {t.purpose}: {t.status}: {t.error}")
        return final_base, final_rec, pairs
