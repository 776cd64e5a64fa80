"""The scan: a search over DataLoader settings guided by what each trial measured.

Not a grid. The baseline's stage times give the cost of producing a batch and the rate the
training step consumes them; from those it picks num_workers (beyond the core count when
workers sit idle on I/O, or when the step's threads slow down beside busy workers: then also a
kept worker per batch of a short epoch), then tries prefetch_factor, persistent_workers (when
start-up is a real share of an epoch), pin_memory (GPU only) and the batch sizes the user
allowed. At the end
the baseline and the best candidate take turns in one process (sweep.paired, sweep.verify), so
the speedup reported is a fresh side-by-side measurement with its interval.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from dlprof.analysis.bottleneck import diagnose, step_contention
from dlprof.analysis.judgements import cores_busy, workers_compute
from dlprof.analysis.memory import shm_shortfall
from dlprof.analysis.thresholds import MIN_GAIN
from dlprof.errors import DlprofError, ScanFailed
from dlprof.probe.environment import shm_free_bytes
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult
from dlprof.sweep.paired import MIN_PAIRS
from dlprof.sweep.policy import idle_at, rising_from, worker_candidates
from dlprof.sweep.rules import batches_per_epoch, restart_cost, spans_epochs, within_noise
from dlprof.sweep.trial import TrialLimits, preload_torch, run_trial
from dlprof.sweep.verify import Verification

MAX_PREFETCH = 8  # deepest prefetch_factor the epoch in flight uses


@dataclass
class ScanPlan:
    spec: str
    out_dir: str
    budget_s: float
    cores: int
    max_workers: int
    batch_sizes: list[int] = field(default_factory=list)  # empty: the batch size is not varied
    device: str | None = None
    max_epochs: int | None = None
    quick: bool = False
    max_workers_from_cli: bool = False
    trial_timeout_s: float | None = None  # None: from the trial limits (see Scan.trial)
    hotspots: bool = True  # sample stacks with py-spy, after the final side-by-side rounds
    # The budget is the whole command's: the time.monotonic() at which it started (None: when
    # the scan starts), and the seconds kept after the last trial to write the reports and exit
    started_at: float | None = None
    finish_reserve_s: float = 0.0

    def limits(self) -> TrialLimits:
        if self.quick:
            return TrialLimits(max_seconds=1.5, max_epochs=self.max_epochs, rel_ci=0.08, min_seconds=0.4)
        return TrialLimits(max_seconds=5.0, max_epochs=self.max_epochs, rel_ci=0.04)


class Scan(Verification):
    """Runs trials within the budget, keeps the results file current after every trial."""

    def __init__(self, plan: ScanPlan, result: ScanResult, progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.result = result
        self.progress = progress
        self.limits = plan.limits()
        # a resumed scan has spent some already
        self.start = (time.monotonic() if plan.started_at is None else plan.started_at) - result.elapsed_s
        self.trial_cost_s = self.limits.max_seconds + 3.0  # refined after each trial
        self.seen: dict[tuple, TrialResult] = {}
        self.cost_s: dict[tuple, float] = {}  # wall seconds of the last trial of each settings
        self.preferred: set[tuple] = set()  # settings keys that win ties within noise
        self.early_warnings: list[str] = []  # raised before a trial ran (shared memory)
        # a turn of the side-by-side measurement: half a trial's window, so a pair takes one
        self.turn_s = self.limits.max_seconds / 2
        for t in result.trials:  # resuming: what was measured is not measured again
            if t.status != "error" and not t.purpose.startswith(("final", "hotspots")):
                self.seen.setdefault(t.settings.key(), t)

    # -- bookkeeping -----------------------------------------------------------------
    def time_left(self) -> float:
        """Seconds left for trials: the budget less what was spent and what the end needs."""
        return self.plan.budget_s - self.plan.finish_reserve_s - (time.monotonic() - self.start)

    def save(self) -> None:
        self.result.elapsed_s = time.monotonic() - self.start
        save_json(self.result.to_dict(), os.path.join(self.plan.out_dir, "results.json"))

    def best(self) -> TrialResult | None:
        """The trial with the highest throughput. Not the highest lower confidence bound: that
        passes over configurations whose short epochs make their rate bursty (many workers
        restarted every epoch), which are often the fastest. A lucky estimate is caught by the
        final side-by-side measurement instead."""
        return self._fastest([t for t in self.seen.values() if t.status == "ok"])

    def _fastest(self, ok: list[TrialResult]) -> TrialResult | None:
        """The highest throughput; a trial the search prefers on structural evidence (see
        ``_search_prefetch_and_persistence``) wins when the leader's margin is within noise."""
        if not ok:
            return None
        top = max(ok, key=lambda t: t.samples_per_s)
        preferred = [t for t in ok if t.settings.key() in self.preferred and within_noise(t, top)]
        return max(preferred, key=lambda t: t.samples_per_s) if preferred else top

    def trial(self, settings: LoaderSettings | None, purpose: str, again: bool = False,
              sample_stacks: bool = False) -> TrialResult:
        if settings is not None and not again and settings.key() in self.seen:
            return self.seen[settings.key()]
        self._check_shm(settings)
        index = len(self.result.trials) + 1
        best = self.best()
        best_text = f"best so far {best.samples_per_s:,.0f} samples/s" if best else "no result yet"
        self.progress(f"[trial {index}, {max(0, self.time_left()):.0f} s left; {best_text}] "
                      f"{purpose}: {settings.label() if settings else 'as configured in the target'}")
        began = time.monotonic()
        timeout = self.plan.trial_timeout_s or (
            # a trial stops itself after hard_factor x max_seconds; start-up gets 30 s more, and
            # the first trial the whole budget (a dataset may be prepared on first import)
            self.limits.hard_factor * self.limits.max_seconds + 30 + (self.plan.budget_s if index == 1 else 0))
        trial = run_trial(self.plan.spec, settings, purpose, os.path.join(self.plan.out_dir, "trials"),
                          index, self.plan.device, self.limits, timeout, sample_stacks)
        self.trial_cost_s = max(self.trial_cost_s * 0.5, time.monotonic() - began)
        if settings is not None:
            self.cost_s[settings.key()] = time.monotonic() - began
        # paths relative to the results file, so the output folder can be moved or shared
        trial.log = os.path.relpath(trial.log, self.plan.out_dir) if trial.log else ""
        trial.profile = os.path.relpath(trial.profile, self.plan.out_dir) if trial.profile else ""
        self.result.trials.append(trial)
        if not again and trial.status != "error":
            self.seen[trial.settings.key()] = trial
        self.save()  # a crash of dlprof itself loses at most the trial in flight
        if trial.status == "ok":
            self.progress(f"    {trial.samples_per_s:,.0f} samples/s (+/- {trial.ci_pct:.1f}%), "
                          f"wait {trial.wait_pct:.0f}% of the loop"
                          + (f" (+/- {trial.wait_ci_pct:.1f})" if trial.wait_ci_pct is not None else ""))
        else:
            self.progress(f"    {trial.status}: {trial.error}")
        return trial

    def _check_shm(self, settings: LoaderSettings | None) -> None:
        """Before a trial with workers: will its batches in flight fit in /dev/shm?"""
        base = self.result.baseline
        if settings is None or base is None or not base.batch_bytes or not settings.num_workers:
            return
        scale = (settings.batch_size / base.settings.batch_size
                 if settings.batch_size and base.settings.batch_size else 1.0)
        warning = shm_shortfall(int(base.batch_bytes * scale), settings.num_workers, settings.prefetch_factor,
                                shm_free_bytes())
        if warning and warning not in self.early_warnings:
            self.early_warnings.append(warning)
            self.progress(f"    warning: {warning}")

    def affordable(self, trials: int = 1) -> bool:
        """Can ``trials`` more search trials run and still leave the side-by-side measurement
        the time to decide a clear gain (MIN_PAIRS + 1 pairs: a first pair's interval may be
        undecided)? Its pairs take turns of a known length, at least one batch each: a slow
        baseline's turns are longer. The first trial's wall time is not a guide to a trial's
        cost, it includes the target's first import."""
        reserve = self.side_by_side_s(MIN_PAIRS + 1)
        return self.time_left() - reserve >= trials * self.trial_cost_s

    # -- the search ------------------------------------------------------------------
    def run(self) -> ScanResult:
        preload_torch()
        # the target's loader as the user configured it (kept from the saved scan on --resume)
        base = self.result.baseline or self.trial(None, "baseline")
        if base.status == "error":  # the target did not load: nothing was measured, no results
            self.result.trials.remove(base)
            results = os.path.join(self.plan.out_dir, "results.json")
            if not self.result.trials and os.path.exists(results):
                os.unlink(results)
            raise DlprofError(base.error, os.path.join(self.plan.out_dir, base.log))
        self.result.baseline = base
        self._adopt_target_info(base)
        baseline_settings = base.settings
        if base.status != "ok":
            self._fallback_baseline(baseline_settings)
        self._search_workers(baseline_settings)
        # a deeper queue and kept workers first: one trial each on the best count, where the
        # epoch in flight starts many workers and is the long shot
        self._search_prefetch_and_persistence()
        self._search_epoch_in_flight()
        self._search_pin_memory()
        self._search_batch_size()
        self._verify()
        self.result.bottleneck, warnings = diagnose(self.result.baseline, self.result.trials, self.plan.cores)
        self.result.warnings = self.early_warnings + warnings
        self.result.complete = True
        self.save()
        return self.result

    def _adopt_target_info(self, base: TrialResult) -> None:
        """What only the target knows: its dlprof_config, whether batches can be resized, the device."""
        info = base.info
        self.result.environment = info.get("environment", {})
        self.plan.device = info.get("device", self.plan.device)
        config = info.get("dlprof_config", {})
        if "max_workers" in config and not self.plan.max_workers_from_cli:
            self.plan.max_workers = int(config["max_workers"])
        sizes = self.plan.batch_sizes or [int(x) for x in config.get("batch_size", []) or []]
        if sizes and not info.get("batch_size_free", False):
            note = "the loader's own batch_sampler fixes the batches: batch sizes not varied"
            if note not in self.result.notes:
                self.result.notes.append(note)
            sizes = []
        self.plan.batch_sizes = [x for x in sizes if x != base.settings.batch_size]

    def _fallback_baseline(self, settings: LoaderSettings) -> None:
        """The user's configuration failed: keep its failure, try the simplest configuration."""
        simple = dataclasses.replace(settings, num_workers=0, prefetch_factor=None, persistent_workers=False)
        if simple.key() != settings.key():
            self.trial(simple, "fallback")
        if self.best() is None:
            raise ScanFailed(f"every configuration failed: {self.result.baseline.error}")

    def _search_workers(self, base_settings: LoaderSettings) -> None:
        reference = self.best()
        # workers restarted every epoch make counts compare by their start-up, not their
        # throughput: where the baseline's restarts matter, or a trial's window spans epochs,
        # compare counts with kept workers
        keep = base_settings.persistent_workers or spans_epochs(reference, self.limits.max_seconds) or (
            reference.settings.num_workers > 0 and restart_cost(reference)[2])
        for workers in worker_candidates(reference, self.plan.cores, self.plan.max_workers):
            if not self.affordable():
                break
            if 0 < workers < rising_from(list(self.seen.values())):
                continue  # throughput still rises above this count: fewer workers cannot win
            if 0 < workers < idle_at(list(self.seen.values()), self.plan.cores):
                continue  # the CPU had room to spare with more workers: fewer only overlap fewer waits
            settings = dataclasses.replace(
                base_settings, num_workers=workers,
                prefetch_factor=(base_settings.prefetch_factor or 2) if workers else None,
                persistent_workers=keep and workers > 0)
            self.trial(settings, "workers")
        # climb past the best while it keeps improving (I/O-bound pipelines want many workers)
        while self.affordable():
            best = self.best()
            w = best.settings.num_workers
            nxt = min(self.plan.max_workers, max(1, w * 2))
            if w == 0 or nxt == w or dataclasses.replace(best.settings, num_workers=nxt).key() in self.seen:
                break
            # busy workers that mostly compute, or that share the cores fully (past the cores each
            # one's CPU share drops, which alone would read as waiting on I/O)
            computing = workers_compute(best) or cores_busy(best, self.plan.cores)
            if nxt > self.plan.cores and computing and not (
                    nxt <= 2 * self.plan.cores and step_contention(list(self.seen.values())) is not None):
                # the workers compute while busy: more of them than cores only share the cores.
                # Except one step where the step's own threads slow down beside busy workers: the
                # scheduler splits the cores by runnable threads, so more workers take a larger share
                break
            before = best.samples_per_s
            trial = self.trial(dataclasses.replace(best.settings, num_workers=nxt), "workers")
            if trial.status != "ok" or trial.samples_per_s < before * (1 + MIN_GAIN):
                break

    def _search_epoch_in_flight(self) -> None:
        """Where the step slows down beside busy workers and an epoch is short: the whole epoch
        in flight, on kept workers (one per batch, up to max_workers). The workers then build
        the epoch while the loop waits, and the step runs alone on the cores; throughput against
        num_workers is not monotonic there (the climb stops before it), so this gets its own trial."""
        best = self._best_with_workers()
        if best is None or step_contention(list(self.seen.values())) is None or not best.settings.batch_size:
            return
        batches = batches_per_epoch(best)
        if not batches or batches > MAX_PREFETCH * self.plan.max_workers:
            return  # epoch length unknown, or too long to hold in flight
        base, shm_free = self.result.baseline, shm_free_bytes()
        if base is not None and shm_free is not None and base.batch_bytes * batches > shm_free / 4:
            return  # the epoch's batches would crowd /dev/shm
        workers = min(self.plan.max_workers, batches)
        if workers <= best.settings.num_workers or not self.affordable():
            return
        self.trial(dataclasses.replace(best.settings, num_workers=workers, persistent_workers=True,
                                       prefetch_factor=max(2, math.ceil(batches / workers))), "epoch in flight")

    def _best_with_workers(self) -> TrialResult | None:
        """The configuration with workers that the next knobs build on: the fastest, or among
        those within noise of it, the one with the fewest workers. Fewer processes cost less
        memory and take less CPU from the step, so a tie goes to them; and a knob tried on a
        count that only won by noise tells little."""
        with_workers = [t for t in self.seen.values() if t.status == "ok" and t.settings.num_workers > 0]
        top = self._fastest(with_workers)
        if top is None or top.settings.key() in self.preferred:
            return top
        ties = [t for t in with_workers if within_noise(t, top)]
        return min(ties, key=lambda t: (t.settings.num_workers, -t.samples_per_s))

    def _search_prefetch_and_persistence(self) -> None:
        """On the best configuration with workers, even when num_workers=0 leads so far: keeping
        workers across epochs can turn a start-up-bound pipeline around."""
        best = self._best_with_workers()
        if best is None:
            return
        startup, epoch_ms, restarts_matter = restart_cost(best)
        if not best.settings.persistent_workers and restarts_matter and self.affordable():
            kept = self.trial(dataclasses.replace(best.settings, persistent_workers=True), "persistent_workers")
            restart = kept.startup_ms[1:]
            saved_ms = sum(startup) / len(startup) - (sum(restart) / len(restart) if restart else 0.0)
            if kept.status == "ok" and restart and saved_ms > 0.03 * epoch_ms:
                # Kept workers measurably skip the restart every epoch: a saving by construction,
                # so they win unless measured slower beyond noise (short trials on a busy machine
                # cannot resolve a 10% difference, the restart saving can be that size).
                self.preferred.add(kept.settings.key())
        best = self._best_with_workers()
        # with a whole epoch already in flight a deeper queue has nothing left to fetch ahead
        in_flight = best.settings.num_workers * (best.settings.prefetch_factor or 2)
        if best.wait_pct > 5 and in_flight < (batches_per_epoch(best) or math.inf) and self.affordable():
            # deeper, but at most 64 batches in flight (shared memory)
            depth = best.settings.prefetch_factor or 2
            deeper = max(depth + 1, min(4 * depth, 64 // best.settings.num_workers))
            queued = self.trial(dataclasses.replace(best.settings, prefetch_factor=deeper), "prefetch_factor")
            if (queued.status == "ok" and best.settings.key() in self.preferred
                    and (queued.wait_pct <= best.wait_pct or queued.samples_per_s >= best.samples_per_s)):
                # the loop waited less, or delivered more, with a deeper queue on top of a preferred
                # configuration: it absorbs bursts (workers slowed by a step sharing their cores);
                # it inherits the preference, so the faster of the two wins a tie
                self.preferred.add(queued.settings.key())

    def _search_pin_memory(self) -> None:
        if not (self.plan.device or "").startswith("cuda"):
            return  # pinning only helps a copy to an accelerator
        best = self.best()
        if self.affordable():
            self.trial(dataclasses.replace(best.settings, pin_memory=not best.settings.pin_memory), "pin_memory")

    def _search_batch_size(self) -> None:
        for size in self.plan.batch_sizes:
            if not self.affordable():
                break
            self.trial(dataclasses.replace(self.best().settings, batch_size=size), "batch_size")
