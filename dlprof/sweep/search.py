"""The scan: a search over DataLoader settings guided by what each trial measured.

Not a grid. The baseline's stage times give the cost of producing a batch and the rate the
training step consumes them; from those it picks num_workers (beyond the core count when
workers sit idle on I/O, or when the step's threads slow down beside busy workers: then also a
kept worker per batch of a short epoch), then tries prefetch_factor, persistent_workers (when
start-up is a real share of an epoch), pin_memory (GPU only) and the batch sizes the user
allowed. At the end
the baseline and the best candidate are measured again, interleaved, so the speedup reported
is a fresh side-by-side measurement.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from dlprof.analysis.bottleneck import diagnose, step_contention
from dlprof.analysis.memory import shm_shortfall
from dlprof.analysis.throughput import ratio_and_ci
from dlprof.analysis.thresholds import MIN_GAIN
from dlprof.errors import DlprofError, ScanFailed
from dlprof.probe.environment import shm_free_bytes
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, ScanResult, TrialResult
from dlprof.sweep.rules import (batches_per_epoch, measurably_faster, restart_cost, speedup_undecided,
                               within_noise)
from dlprof.sweep.trial import TrialLimits, preload_torch, run_trial

FINAL_ROUNDS = 2  # baseline/recommendation pairs measured at the end (1 with --quick)
MIN_SPREAD_ROUNDS = 3  # rounds whose spread gives the speedup's interval (analysis.throughput.ratio_and_ci)
MAX_PREFETCH = 8  # deepest prefetch_factor the epoch in flight uses
# a trial's wall time beyond its measured window (fork, load, warm-up): 0.8-1.1 s for trials
# of 0-2 workers in a quick scan of recipes/startup_cost.py on our 2-core machine
TRIAL_SETUP_S = 1.0


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


class Scan:
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
        self.final_rounds = 1 if plan.quick else FINAL_ROUNDS  # a quick scan spends more on the search
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
        """Can ``trials`` more search trials run and still leave the final side-by-side rounds
        their time? A round re-measures the baseline and the candidate. The baseline's window is
        known (a slow baseline with short epochs runs up to three times a quick trial's limit);
        its first trial's wall time is not a guide, it includes the target's first import."""
        base = self.result.baseline
        base_cost = max(self.trial_cost_s, base.seconds + TRIAL_SETUP_S) if base is not None else self.trial_cost_s
        # The final rounds only: reserving the three that the rounds' spread needs (when the
        # trials' own intervals are wide) left a quick scan's 30 s no time to search at all
        # (recipes/accelerator_step.py: the baseline, then "keep", untested).
        reserve = self.final_rounds * (base_cost + self.trial_cost_s)
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
        self._search_epoch_in_flight()
        self._search_prefetch_and_persistence()
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

    def _worker_candidates(self, reference: TrialResult) -> list[int]:
        """num_workers to try, most promising first, from the cost of producing a batch."""
        s = reference.stage_ms
        produce = s.get("fetch", 0.0) + s.get("collate", 0.0)  # one batch, one process
        consume = max(s.get("step", 0.0) + s.get("transfer", 0.0), 0.05)
        needed = max(1, math.ceil(produce / consume))
        workers = reference.settings.num_workers
        busy = reference.worker_busy_pct / 100 if workers else 1.0
        cpu_share = (reference.worker_cpu_pct if workers else reference.main_cpu_pct) / 100
        io_bound = cpu_share < 0.5 * max(busy, 0.01) and cpu_share < 0.5
        limit = self.plan.max_workers if io_bound else self.plan.cores
        # Idle workers are cheap, and the step measured at num_workers=0 is inflated by waking
        # from the long waits, so `needed` underestimates: start I/O-bound pipelines at the limit.
        first = limit if io_bound else min(needed, limit)
        order = [first, max(1, first // 2), min(limit, first * 2), 0, 1, self.plan.cores]
        if needed > limit:
            # the estimate was capped: a pipeline that needs more producers than it may have
            # gains nothing from fewer, except none at all (no hand-over overhead), tried anyway
            order = [w for w in order if w == 0 or w >= first or w == self.plan.cores]
        seen: list[int] = []
        for w in order:
            if 0 <= w <= self.plan.max_workers and w not in seen:
                seen.append(w)
        return seen

    def _search_workers(self, base_settings: LoaderSettings) -> None:
        reference = self.best()
        # workers restarted every epoch make counts compare by their start-up, not their
        # throughput: where the baseline's restarts matter, compare counts with kept workers
        keep = base_settings.persistent_workers or (
            reference.settings.num_workers > 0 and restart_cost(reference)[2])
        for workers in self._worker_candidates(reference):
            if not self.affordable():
                break
            if 0 < workers < self._rising_from():
                continue  # throughput still rises above this count: fewer workers cannot win
            if 0 < workers < self._idle_at():
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
            computing = (best.worker_cpu_pct >= 0.5 * max(best.worker_busy_pct, 1.0)
                         or w * best.worker_cpu_pct + best.main_cpu_pct >= 80.0 * self.plan.cores)
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

    def _rising_from(self) -> int:
        """The smallest num_workers w measured with a larger count 2w or more that beat it clearly
        (0 when there is none). Throughput against num_workers rises, then flattens or falls, so
        counts below w are not worth a trial."""
        by_workers: dict[int, float] = {}
        for t in self.seen.values():
            if t.status == "ok":
                w = t.settings.num_workers
                by_workers[w] = max(by_workers.get(w, 0.0), t.samples_per_s)
        rising = [lo for lo in by_workers if lo > 0 and any(
            hi >= 2 * lo and rate > by_workers[lo] * (1 + MIN_GAIN) for hi, rate in by_workers.items())]
        return min(rising) if rising else 0

    def _idle_at(self) -> int:
        """The largest num_workers measured without saturating the CPU while its workers sat
        mostly idle (waiting on I/O), 0 if none. Below that count the CPU cannot be what limits
        throughput, so fewer workers can only overlap fewer waits."""
        idle = [t.settings.num_workers for t in self.seen.values()
                if t.status == "ok" and t.settings.num_workers > self.plan.cores
                and t.worker_cpu_pct < 0.5 * max(t.worker_busy_pct, 1.0)
                and t.settings.num_workers * t.worker_cpu_pct + t.main_cpu_pct < 60.0 * self.plan.cores]
        return max(idle, default=0)

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
        return self._fastest([t for t in self.seen.values() if t.status == "ok" and t.settings.num_workers > 0])

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

    def _sample_hotspots(self, named: list[tuple[str, LoaderSettings]]) -> None:
        """Where the time goes (py-spy stacks), in trials of their own, while the budget lasts."""
        for name, s in named:
            if not self.plan.hotspots or self.time_left() < self.cost_s.get(s.key(), self.trial_cost_s):
                return
            self.trial(s, f"hotspots: {name}", again=True, sample_stacks=True)

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

    def _verify(self) -> None:
        """Measure baseline and the best again, interleaved: the speedup is that ratio."""
        base, best = self.result.baseline, self.best()
        if base.status != "ok" or best.settings.key() == base.settings.key():
            self.result.recommendation = base if base.status == "ok" else best
            self.result.speedup = 1.0 if base.status == "ok" else None
            if not self.plan.quick:  # nothing to compare: the configuration to keep
                self._sample_hotspots([("baseline", self.result.recommendation.settings)])
            return
        rounds: list[tuple[float, float, float, float]] = []  # candidate and baseline: rate, interval %
        failed: list[TrialResult] = []
        last = None

        def side_by_side() -> None:
            nonlocal last
            b = self.trial(base.settings, "final: baseline", again=True)
            r = self.trial(best.settings, "final: recommendation", again=True)
            if r.status != "ok":
                failed.append(r)
            elif b.status == "ok":
                rounds.append((r.samples_per_s, r.ci_pct, b.samples_per_s, b.ci_pct))
                last = r

        for _ in range(self.final_rounds):
            if failed or (rounds and self.time_left() < 2 * self.trial_cost_s * 0.8):
                break
            side_by_side()
        # while the interval spans "no gain", more rounds, up to the three whose spread makes
        # the interval (the trials' own intervals are wide for a few bursty epochs)
        while (rounds and not failed and len(rounds) < MIN_SPREAD_ROUNDS and self.time_left() >= 2 * self.trial_cost_s
               and speedup_undecided(ratio_and_ci(rounds))):
            side_by_side()
        # Stacks are sampled apart from the rounds that give the speedup: py-spy's reads cost
        # each sampled process, so they would cost a configuration with workers more (5-8% of
        # the throughput of 2 workers against 1-2% without, reports/benchmarks/overhead-stacks.txt)
        self._sample_hotspots([("baseline", base.settings), ("recommendation", best.settings)])
        self.result.speedup_samples = sorted(r / b for r, _, b, _ in rounds)
        if failed:  # a configuration that failed once is not one to hand a user
            self.result.notes.append(
                f"the best candidate ({best.settings.label()}) failed in a side-by-side round "
                f"({failed[0].status}: {failed[0].error}): not recommended; keep the current configuration")
            self.result.recommendation, self.result.speedup = base, 1.0
            return
        if not rounds:
            self.result.notes.append("the final side-by-side measurement failed; no speedup is claimed")
            self.result.recommendation, self.result.speedup = base, 1.0
            return
        speedup, low, high = ratio_and_ci(rounds)
        if not measurably_faster((speedup, low, high)):
            # not measurably faster side by side: keep the user's configuration
            self.result.notes.append(
                f"the best candidate ({best.settings.label()}) measured {speedup:.2f}x the baseline side "
                f"by side (95% interval {low:.2f}-{high:.2f}x): not measurably faster, so the recommendation "
                "is to keep the current configuration")
            self.result.recommendation, self.result.speedup = base, 1.0
            return
        self.result.recommendation, self.result.speedup = last, speedup
        self.result.speedup_ci = [low, high]
