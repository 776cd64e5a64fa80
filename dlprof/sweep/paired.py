"""The side-by-side measurement behind a recommendation: the baseline and the candidate in one
child process, taking turns, so that drift on a shared machine hits both alike.

Trials run seconds apart differ by more than the gains a scan looks for: one quick scan of
recipes/accelerator_step.py on our 2-core machine measured the same baseline at 858, 978 and
1,099 samples/s within 20 s, so rounds of separate trials needed more rounds than a budget holds
to tell a 10% gain from none. Turns a fraction of a second apart share that drift, and each pair's
ratio is measured under the same conditions.

A turn runs one loader for ``turn_s``: whole epochs when an epoch is shorter than that (each from
``iter()``, so workers restarted every epoch pay their restart, as training does), else a window
inside an epoch whose iterator is kept between turns: the batches its workers made while the
other loader ran are taken first (through the step, unmeasured), then the window opens. Pairs
alternate which side goes first, so neither always follows the other.
"""
from __future__ import annotations

import dataclasses
import json
import os
import traceback
from time import perf_counter

from dlprof.analysis.throughput import half_width, paired_ratio
from dlprof.records import save_json
from dlprof.scan_records import LoaderSettings, TrialResult
from dlprof.sweep.faults import dead_worker_pids, explain_loader_failure, explain_step_failure
from dlprof.sweep.processes import fork_and_wait
from dlprof.sweep.rules import buffer_matters, side_by_side_decided, side_by_side_futile, whole_epoch_turns
from dlprof.sweep.trial import StepRaised, child_setup, dead_child, len_or_none, trial_paths, warmup_batches

SIDE_BY_SIDE_SCHEMA = "dlprof.side_by_side"  # the child's file: pairs, and both sides' trials
MIN_PAIRS = 3  # pairs before the interval is judged: Student's t with 2 degrees of freedom at least
# the scan's check takes turns until the speedup is decided; past this many pairs (t with 11
# degrees of freedom: the interval is within 10% of its limit) more time buys little
MAX_PAIRS = 12


class _Side:
    """One loader's turns: the profiled loader, and its iterator kept between window turns."""

    def __init__(self, loader, settings: LoaderSettings, device: str | None, step) -> None:
        import torch

        from dlprof.api import Profiler

        self.default_threads = torch.get_num_threads()  # the process's own, for a side without its own
        self.settings = settings
        self.loader = loader
        self.prof = Profiler(sample_system=False).wrap(loader, device=device)
        self.step = step
        self.it = None
        self.began = 0.0
        self.whole = False  # the epoch in progress began in the turn now running
        self.in_flight = settings.num_workers * (settings.prefetch_factor or 2)
        # turns are whole epochs: an epoch fits in two turns (_learn_epoch), or the batches in
        # flight are a real part of one (the trials' rule: a window would measure the burst)
        self.short = buffer_matters(settings, len_or_none(loader))
        self.turns: list[tuple[int, float]] = []  # (samples, seconds) of the counted turns
        self.epoch_s: list[float] = []  # epochs run within one turn, from iter() to the end

    def _next(self) -> int | None:
        """One batch through the step: its samples; None when the epoch ended."""
        if self.it is None:
            self.it, self.began = iter(self.prof), perf_counter()
            self.whole = True  # this epoch runs within the turn it began in, so far
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = None
            if self.whole:
                self.epoch_s.append(perf_counter() - self.began)
            return None
        if self.step is not None:
            try:
                self.step(batch)
            except Exception as exc:  # the user's step: reported as such, not as the loader's
                if dead_worker_pids(exc):  # a worker died while the step ran: a loader's failure
                    raise
                raise StepRaised(exc) from exc
        return self.prof.profiler.run.batches[-1].samples

    def turn(self, turn_s: float) -> tuple[int, float]:
        """About ``turn_s`` of training on this loader: (samples, seconds) measured."""
        import torch

        torch.set_num_threads(self.settings.num_threads or self.default_threads)
        if self.it is not None:
            self.whole = False
            # the batches made while the other loader ran (a window turn), or the rest of an
            # epoch begun before its epochs were known to be short: taken unmeasured
            drained = 0
            while self.short or drained < self.in_flight:
                drained += 1
                if self._next() is None:
                    break
        start, samples, batches = perf_counter(), 0, 0
        while True:
            n = self._next()
            if n is not None:
                samples, batches = samples + n, batches + 1
            elapsed = perf_counter() - start
            if elapsed >= turn_s and samples > 0 and (not self.short or self.it is None):
                self._learn_epoch(turn_s, elapsed / batches)
                return samples, elapsed

    def _learn_epoch(self, turn_s: float, batch_s: float) -> None:
        """Turns become whole epochs once an epoch is known to take at most two turns' time
        (seen whole, or its length at the rate just measured). Every epoch holds the same samples,
        so whole epochs leave out the noise of which samples a window caught (a heavy tail of
        slow samples) and of where the restart fell in it; longer epochs would make turns long."""
        if self.short:
            return
        epoch_s = self.epoch_s[-1] if self.epoch_s else None
        if epoch_s is None:
            batches = len_or_none(self.loader)
            if batches is None:  # an IterableDataset without __len__: only a whole epoch tells
                return
            epoch_s = batches * batch_s
        self.short = whole_epoch_turns(epoch_s, turn_s)

    def result(self, purpose: str) -> TrialResult:
        from dlprof.analysis.trial import trial_stats

        stats = trial_stats(self.prof.profiler.run, self.settings, warmup_batches(self.settings))
        samples = sum(n for n, _ in self.turns)
        seconds = sum(s for _, s in self.turns)
        rates = [n / s for n, s in self.turns if s > 0]
        rate = samples / seconds if seconds > 0 else 0.0
        # Student's t over the turns' rates: a few turns give a wide interval, as they should
        ci = min(100.0, 100.0 * half_width(rates) / rate) if len(rates) >= 2 and rate > 0 else 100.0
        return dataclasses.replace(
            stats, purpose=purpose, samples_per_s=rate, ci_pct=ci, seconds=seconds, batches=len(self.prof.profiler.run.batches),
            epoch_ms=1000.0 * sum(self.epoch_s) / len(self.epoch_s) if self.epoch_s else 0.0)


def alternate(target, base: LoaderSettings, cand: LoaderSettings, device: str | None, turn_s: float,
              max_s: float) -> tuple[_Side, _Side, list[tuple[float, float]], _Side | None, BaseException | None]:
    """Turns of the two loaders until the speedup is decided or ``max_s`` has passed, and at least
    MIN_PAIRS pairs, the fewest whose interval is judged: turns that run longer than the scan
    planned (a machine slower than during the trials) overrun ``max_s`` by the missing pairs
    rather than end on an interval that can only say "keep" (with 2 pairs Student's t is 12.7,
    and the demo's 1.72x read 1.00-2.96x). It also ends when even MAX_PAIRS pairs measured like
    these would leave no gain in the interval (``side_by_side_futile``: it only ends on "keep").
    (baseline side, candidate side, pairs of rates, the side that failed, its exception)."""
    from dlprof.sweep.loaders import build_loader, settings_of

    deadline = perf_counter() + max_s
    own = settings_of(target.loader) == base  # the baseline: the target's own loader, as its trials
    a = _Side(target.loader if own else build_loader(target.loader, base), base, device, target.train_step)
    b = _Side(build_loader(target.loader, cand), cand, device, target.train_step)
    pairs: list[tuple[float, float]] = []
    side = a
    try:
        for side in (a, b):  # warm-up: start-up, first epoch, caches; not counted
            side.turn(turn_s)
        while True:
            order = (a, b) if len(pairs) % 2 == 0 else (b, a)
            measured = {}
            for side in order:
                measured[id(side)] = side.turn(turn_s)
            for s in (a, b):
                s.turns.append(measured[id(s)])
            (na, sa), (nb, sb) = measured[id(a)], measured[id(b)]
            pairs.append((na / sa, nb / sb))
            if len(pairs) >= MIN_PAIRS:
                ratio = paired_ratio(pairs)
                if (perf_counter() >= deadline or side_by_side_decided(ratio)
                        or side_by_side_futile(ratio, len(pairs), MAX_PAIRS)):
                    return a, b, pairs, None, None
    except Exception as exc:  # the pipeline failed in one side's turn
        # torch reports a dead worker in whatever code runs then: the other side's turn too
        pids = dead_worker_pids(exc)
        owner = next((s for s in (a, b) if pids & {pid for _, pid, _ in s.prof.dead_workers(pids)}), side)
        return a, b, pairs, owner, exc


def _child(spec: str, base: LoaderSettings, cand: LoaderSettings, device: str | None, turn_s: float, max_s: float,
           result_path: str, log_path: str, tmp_dir: str) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        child_setup(log_path, tmp_dir)
        from dlprof.sweep.target import load_target

        out: dict = {"schema": SIDE_BY_SIDE_SCHEMA, "schema_version": 1, "pairs": []}
        try:
            target = load_target(spec)
            a, b, pairs, failed, exc = alternate(target, base, cand, device, turn_s, max_s)
            out["pairs"] = pairs
            results = {"baseline": a.result("final: baseline"), "candidate": b.result("final: recommendation")}
            if failed is not None:
                traceback.print_exception(exc)
                failure = (explain_step_failure(exc.exc, failed.settings.batch_size) if isinstance(exc, StepRaised)
                           else explain_loader_failure(exc, failed.prof.failed_batch(), failed.loader,
                                                       failed.prof.dead_workers(dead_worker_pids(exc))))
                name = "baseline" if failed is a else "candidate"
                results[name] = TrialResult(failed.settings, "failed", results[name].purpose, **failure.as_fields())
            for side in (a, b):
                side.prof.close()
            out.update({k: v.to_dict() for k, v in results.items()})
        except Exception as exc:  # the target or a loader could not be built
            traceback.print_exc()
            out["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
        save_json(out, result_path)
        code = 0
    finally:
        os._exit(code)


def run_side_by_side(spec: str, base: LoaderSettings, cand: LoaderSettings, trial_dir: str, index: int,
                     device: str | None, turn_s: float, max_s: float,
                     timeout_s: float) -> tuple[TrialResult, TrialResult, list[tuple[float, float]]]:
    """Fork a child that takes turns of the two configurations; wait at most ``timeout_s``.
    (final baseline, final candidate, pairs of rates (baseline, candidate))."""
    result_path, log_path = trial_paths(trial_dir, index)
    status = fork_and_wait(lambda tmp_dir: _child(spec, base, cand, device, turn_s, max_s, result_path, log_path,
                                                  tmp_dir), log_path, timeout_s)

    def both(status_text: str, **fields) -> tuple[TrialResult, TrialResult, list]:
        return (TrialResult(base, status_text, "final: baseline", log=log_path, **fields),
                TrialResult(cand, status_text, "final: recommendation", log=log_path, **fields), [])

    if status is None:
        return both("timeout", error=f"the side-by-side measurement did not finish within {timeout_s:.0f} s")
    if not os.path.exists(result_path):
        return both("failed", **dead_child(status).as_fields())
    with open(result_path, encoding="utf-8") as fh:
        data = json.load(fh)
    if "error" in data:
        return both("failed", error=data["error"], failure_kind="crash")
    final = [dataclasses.replace(TrialResult.from_dict(data[name]), log=log_path) for name in ("baseline", "candidate")]
    return final[0], final[1], [tuple(p) for p in data["pairs"]]
