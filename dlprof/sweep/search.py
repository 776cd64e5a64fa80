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

from dlprof.analysis.bottleneck import diagnose
from dlprof.analysis.judgements import shared_cores
from dlprof.analysis.memory import shm_shortfall
from dlprof.errors import DlprofError, ScanFailed
from dlprof.probe.environment import OthersOnTheCores, shm_free_bytes
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, ScanResult, Status, TrialResult
from dlprof.sweep.paired import MIN_PAIRS
from dlprof.sweep.policy import Search, SearchSpace, SearchState, search
from dlprof.sweep.rules import batches_per_epoch, buffer_matters, useful_workers
from dlprof.sweep.trial import TrialLimits, preload_torch, run_trial
from dlprof.sweep.verify import TRIAL_SETUP_S, Verification

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
    hotspots: bool = True  # sample stacks with py-spy, after the side-by-side measurement
    allow_reorder: bool = False  # may recommend in_order=False (batches in another order)
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
        self.state = SearchState()  # what the policy decides from
        self.seen = self.state.seen  # the first trial of each configuration
        self.cost_s: dict[tuple, float] = {}  # wall seconds of the last trial of each settings
        self.early_warnings: list[str] = []  # raised before a trial ran (shared memory)
        # a turn of the side-by-side measurement: half a trial's window, so a pair takes one
        self.turn_s = self.limits.max_seconds / 2
        for t in result.trials:  # resuming: what was measured is not measured again
            if t.status != Status.ERROR and not t.purpose.measured_again:
                self.seen.setdefault(t.settings.key(), t)

    # -- bookkeeping -----------------------------------------------------------------
    def time_left(self) -> float:
        """Seconds left for trials: the budget less what was spent and what the end needs."""
        return self.plan.budget_s - self.plan.finish_reserve_s - (time.monotonic() - self.start)

    def save(self) -> None:
        self.result.elapsed_s = time.monotonic() - self.start
        save_json(self.result.to_dict(), os.path.join(self.plan.out_dir, "results.json"))

    def best(self) -> TrialResult | None:
        return self.state.best()

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

    def affordable(self, settings: LoaderSettings | None = None) -> bool:
        """Can a trial of ``settings`` (None: a typical one) run and still leave the side-by-side
        measurement the time to decide a clear gain (MIN_PAIRS + 1 pairs: a first pair's
        interval may be undecided), whether the best so far or ``settings`` is then the
        candidate? A trial costs what trials have cost, plus its workers' start-up where workers
        start slowly (spawned ones import torch: 16 of them took 38 s on 2 cores); the turns of
        a slow baseline are longer. The first trial's wall time is not a guide to a trial's cost,
        it includes the target's first import."""
        left, reserve, cost = self._room(settings)
        return left - reserve >= cost

    def _room(self, settings: LoaderSettings | None) -> tuple[float, float, float]:
        """(seconds left, seconds kept for the side-by-side measurement, a trial's cost) for
        ``affordable``."""
        best = self.best()
        reserve = max(self.side_by_side_s(MIN_PAIRS + 1, best.settings if best is not None else None),
                      self.side_by_side_s(MIN_PAIRS + 1, settings) if settings is not None else 0.0)
        startup = self.startup_per_worker_s() * settings.num_workers if settings else 0.0
        cost = self.trial_cost_s + startup
        base = self.result.baseline
        known = settings is not None and base is not None and base.status == "ok"
        epoch_batches = batches_per_epoch(base, settings.batch_size) if known else 0
        if known and buffer_matters(settings, epoch_batches):
            # It measures whole epochs (until two have ended in its window: three epochs with
            # the one it began in), up to its hard limit: what windows cost is no guide (a
            # demo's check got 3 pairs, undecided, after a 15-worker trial of whole epochs). An
            # epoch at the baseline's pace, the slowest known, with the workers' start where
            # they do not persist.
            epoch_s = epoch_batches * base.seconds / base.batches if base.batches else math.inf
            restart = 0.0 if settings.persistent_workers else startup
            whole = min(self.limits.hard_factor * self.limits.max_seconds, 3 * (epoch_s + restart))
            cost = max(cost, TRIAL_SETUP_S + startup + whole)
        return self.time_left(), reserve, cost

    # -- the search ------------------------------------------------------------------
    def run(self) -> ScanResult:
        others = OthersOnTheCores()
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
        if base.status != "ok":
            self._fallback_baseline(base.settings)
        batches = batches_per_epoch(base) if base.status == "ok" else 0
        space = SearchSpace(cores=self.plan.cores, max_workers=useful_workers(self.plan.max_workers, batches),
                            window_s=self.limits.max_seconds, batch_sizes=tuple(self.plan.batch_sizes),
                            device=self.plan.device, shm_free_bytes=shm_free_bytes(),
                            allow_reorder=self.plan.allow_reorder)
        self._run_search(search(space, self.state, base))
        self._verify()
        self.result.bottleneck, warnings = diagnose(self.result.baseline, self.result.trials, self.plan.cores)
        shared = self._others_on_the_cores(others)
        self.result.warnings = self.early_warnings + warnings + ([shared] if shared else [])
        self.result.complete = True
        self.save()
        return self.result

    def _run_search(self, proposals: Search) -> None:
        """Measure what the policy proposes while the budget still holds the side-by-side
        measurement; a configuration measured before is answered from its first trial."""
        try:
            proposal = next(proposals)
            # a configuration measured before is answered from its trial: it costs nothing
            while proposal.settings.key() in self.seen or self.affordable(proposal.settings):
                proposal = proposals.send(self.trial(proposal.settings, proposal.purpose))
            left, reserve, cost = self._room(proposal.settings)
            note = (f"the budget left no room for the next trial ({proposal.purpose}: {proposal.settings.label()}, "
                    f"about {cost:.0f} s): {max(0.0, left):.0f} s were left and the side-by-side check keeps "
                    f"{reserve:.0f} s; a larger --budget tries it")
            self.result.notes.append(note)
            self.progress(f"    {note}")
        except StopIteration:  # nothing left worth a trial
            pass
        finally:
            proposals.close()

    def _others_on_the_cores(self, others: OthersOnTheCores) -> str | None:
        """What other processes and machines took from the cores while the scan ran (cores on
        average, in the results' environment), and the warning when it could decide a comparison."""
        used, stolen = others.stop()
        self.result.environment = {**self.result.environment, "other_processes_cores": round(used, 3),
                                   "steal_cores": round(stolen, 3)}
        return shared_cores(used, stolen, self.plan.cores)

    def _adopt_target_info(self, base: TrialResult) -> None:
        """What only the target knows: its dlprof_config, whether batches can be resized, the device."""
        info = base.info
        self.result.environment = dict(info.get("environment", {}))  # a copy: the baseline's info stays as measured
        self.plan.device = info.get("device", self.plan.device)
        config = info.get("dlprof_config", {})
        if config.get("allow_reorder"):
            self.plan.allow_reorder = True
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
