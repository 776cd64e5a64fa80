"""The search's decisions: which configuration to measure next, and why. Pure: no torch, no
process, no file; it reads TrialResults only, so every rule can be tested from records alone.

``search()`` is a coroutine: it yields a Proposal and is sent the trial that measured it. The
runner (sweep.search.Scan) owns the budget, the trials, saving and progress.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Generator

from dlprof.analysis.bottleneck import step_contention
from dlprof.analysis.judgements import cores_busy, cores_spare, fetch_waits_on_io, workers_compute
from dlprof.analysis.thresholds import BALANCED_PCT, MIN_GAIN
from dlprof.scan_records import DEFAULT_PREFETCH, LoaderSettings, TrialResult
from dlprof.sweep.rules import (RESTART_SHARE, SIMPLER_TIE, batches_per_epoch, restart_cost, spans_epochs,
                               within_noise)


def worker_candidates(reference: TrialResult, cores: int, max_workers: int) -> list[int]:
    """num_workers to try, most promising first, from the cost of producing a batch."""
    s = reference.stage_ms
    produce = s.get("fetch", 0.0) + s.get("collate", 0.0)  # one batch, one process
    consume = max(s.get("step", 0.0) + s.get("transfer", 0.0), 0.05)
    needed = max(1, math.ceil(produce / consume))
    io_bound = fetch_waits_on_io(reference)
    limit = max_workers if io_bound else min(cores, max_workers)  # never past what the user allows
    # Idle workers are cheap, and the step measured at num_workers=0 is inflated by waking
    # from the long waits, so `needed` underestimates: start I/O-bound pipelines at the limit.
    first = limit if io_bound else min(needed, limit)
    order = [first, max(1, first // 2), min(limit, first * 2), 0, 1, cores]
    if needed > limit:
        # the estimate was capped: a pipeline that needs more producers than it may have
        # gains nothing from fewer, except none at all (no hand-over overhead), tried anyway
        order = [w for w in order if w == 0 or w >= first or w == cores]
    seen: list[int] = []
    for w in order:
        if 0 <= w <= max_workers and w not in seen:
            seen.append(w)
    return seen


def rising_from(trials: list[TrialResult]) -> int:
    """The smallest num_workers w measured with a larger count 2w or more that beat it clearly
    (0 when there is none). Throughput against num_workers rises, then flattens or falls, so
    counts below w are not worth a trial."""
    by_workers: dict[int, float] = {}
    for t in trials:
        if t.status == "ok":
            w = t.settings.num_workers
            by_workers[w] = max(by_workers.get(w, 0.0), t.samples_per_s)
    rising = [lo for lo in by_workers if lo > 0 and any(
        hi >= 2 * lo and rate > by_workers[lo] * (1 + MIN_GAIN) for hi, rate in by_workers.items())]
    return min(rising) if rising else 0


def idle_at(trials: list[TrialResult], cores: int) -> int:
    """The largest num_workers measured without saturating the CPU while its workers sat
    mostly idle (waiting on I/O), 0 if none. Below that count the CPU cannot be what limits
    throughput, so fewer workers can only overlap fewer waits."""
    idle = [t.settings.num_workers for t in trials
            if t.status == "ok" and t.settings.num_workers > cores and not workers_compute(t) and cores_spare(t, cores)]
    return max(idle, default=0)


# -- the search as a coroutine of proposals --------------------------------------------

# deepest prefetch_factor tried: 4x torch's default of 2, one step of the queue phase; what it
# holds in flight is bounded by shared memory (``fits_in_shm``), not by a count of batches
MAX_PREFETCH = 8
# batches in flight may take this share of the free /dev/shm: the training process, other jobs
# and torch's own buffers share it, and running out kills the workers with a Bus error
SHM_SHARE = 0.25
# the loop waits more than a balanced pipeline does: a deeper queue or out-of-order batches may help
WAIT_WORTH_A_QUEUE_PCT = BALANCED_PCT


@dataclass(frozen=True)
class SearchSpace:
    """What the search may vary, and the facts about the machine it decides from."""

    cores: int
    max_workers: int
    window_s: float  # a trial's measuring window
    batch_sizes: tuple[int, ...] = ()  # other batch sizes the user allows
    device: str | None = None
    shm_free_bytes: int | None = None  # free /dev/shm when the search began; None: unknown
    allow_reorder: bool = False  # the user accepts batches out of order (in_order=False)


def fits_in_shm(space: SearchSpace, batch_bytes: int, batches: int) -> bool:
    """Do ``batches`` batches in flight fit in the share of /dev/shm they may take (yes when unknown)?"""
    return space.shm_free_bytes is None or batch_bytes * batches <= SHM_SHARE * space.shm_free_bytes


@dataclass(frozen=True)
class Proposal:
    """The next configuration to measure, why, and under which purpose it is recorded."""

    settings: LoaderSettings
    purpose: str
    reason: str


def simplicity(s: LoaderSettings) -> tuple:
    """Of configurations that measure alike, the one to prefer sorts first: fewer worker processes
    (memory, start-up, CPU left to the step), then a shallower queue (batches held in shared
    memory), then fewer changes outside the DataLoader call (torch threads, batch order). Among
    near-equal trials the fastest is whichever noise favoured; the simplest is the same in every
    run that measured them alike."""
    depth = (s.prefetch_factor or DEFAULT_PREFETCH) if s.num_workers else 0
    return (s.num_workers, depth, s.num_threads is not None, not s.in_order)


class SearchState:
    """What the search has measured: the first trial of each configuration (its key), and the
    configurations that win a tie within noise on structural evidence (kept workers that skip a
    measured restart, a deeper queue on top of them)."""

    def __init__(self) -> None:
        self.seen: dict[tuple, TrialResult] = {}
        self.preferred: set[tuple] = set()

    def add(self, t: TrialResult) -> None:
        if t.status != "error":
            self.seen.setdefault(t.settings.key(), t)

    def trials(self) -> list[TrialResult]:
        return list(self.seen.values())

    def best(self) -> TrialResult | None:
        """The trial with the highest throughput. Not the highest lower confidence bound: that
        passes over configurations whose short epochs make their rate bursty (many workers
        restarted every epoch), which are often the fastest. A lucky estimate is caught by the
        side-by-side measurement at the end instead."""
        return self.fastest([t for t in self.seen.values() if t.status == "ok"])

    def fastest(self, ok: list[TrialResult]) -> TrialResult | None:
        """The highest throughput; a preferred trial wins when the leader's margin is within noise."""
        if not ok:
            return None
        top = max(ok, key=lambda t: t.samples_per_s)
        preferred = [t for t in ok if t.settings.key() in self.preferred and within_noise(t, top)]
        return max(preferred, key=lambda t: t.samples_per_s) if preferred else top

    def best_with_workers(self) -> TrialResult | None:
        """The configuration with workers that the next knobs build on: the fastest, or among
        those within noise of it, the simplest (``simplicity``: the fewest workers first). A knob
        tried on a configuration that only won by noise tells little, and runs that rank ties
        differently then still build on the same one."""
        with_workers = [t for t in self.seen.values() if t.status == "ok" and t.settings.num_workers > 0]
        top = self.fastest(with_workers)
        if top is None or top.settings.key() in self.preferred:
            return top
        return _simplest_near(with_workers, top)

    def candidate(self, baseline: LoaderSettings) -> TrialResult | None:
        """The configuration to check against ``baseline`` side by side: the fastest (``best``),
        or among the others within noise of it the simplest, so that two runs whose trials rank
        near-equal configurations differently check, and recommend, the same one. Never the
        baseline in place of a faster one: the side-by-side pairs resolve gains that trials
        cannot. A preferred fastest (kept workers that skip a measured restart) stands, as in
        ``best_with_workers``: that evidence outranks simplicity."""
        top = self.best()
        if top is None or top.settings.key() == baseline.key() or top.settings.key() in self.preferred:
            return top
        pool = [t for t in self.seen.values() if t.status == "ok" and t.settings.key() != baseline.key()]
        return _simplest_near(pool, top)


def _simplest_near(pool: list[TrialResult], top: TrialResult) -> TrialResult:
    """Among the trials of ``pool`` within noise of ``top`` (one of them) and at most SIMPLER_TIE
    behind it, the simplest; the faster of two equally simple."""
    ties = [t for t in pool if within_noise(t, top, SIMPLER_TIE)]
    return min(ties, key=lambda t: (simplicity(t.settings), -t.samples_per_s))


Search = Generator[Proposal, TrialResult, None]


def search(space: SearchSpace, state: SearchState, baseline: TrialResult) -> Search:
    """The whole search: yields what to measure next and is sent the trial that measured it (the
    runner also records it in ``state``). It ends when nothing is left worth a trial; the runner
    stops it sooner when the budget is spent. The same coroutine can be fed measured windows of
    a running job instead of trials."""
    yield from _worker_counts(space, state, baseline.settings)
    yield from _climb(space, state)
    # a deeper queue and kept workers first: one trial each on the best count, where the epoch
    # in flight starts many workers and is the long shot
    yield from _persistence_and_prefetch(space, state, baseline)
    yield from _step_threads(space, state)
    if space.allow_reorder:
        yield from _out_of_order(state)
    yield from _epoch_in_flight(space, state, baseline)
    if (space.device or "").startswith("cuda"):  # pinning only helps a copy to an accelerator
        best = state.best().settings
        yield Proposal(dataclasses.replace(best, pin_memory=not best.pin_memory), "pin_memory",
                       "the copy to the accelerator: pinned pages copy without a staging buffer")
    for size in space.batch_sizes:
        yield Proposal(dataclasses.replace(state.best().settings, batch_size=size), "batch_size",
                       "a batch size the user allows")


def _worker_counts(space: SearchSpace, state: SearchState, base: LoaderSettings) -> Search:
    reference = state.best()
    # workers restarted every epoch make counts compare by their start-up, not their
    # throughput: where the baseline's restarts matter, or a trial's window spans epochs,
    # compare counts with kept workers
    keep = base.persistent_workers or spans_epochs(reference, space.window_s) or (
        reference.settings.num_workers > 0 and restart_cost(reference)[2])
    for workers in worker_candidates(reference, space.cores, space.max_workers):
        if 0 < workers < rising_from(state.trials()):
            continue  # throughput still rises above this count: fewer workers cannot win
        if 0 < workers < idle_at(state.trials(), space.cores):
            continue  # the CPU had room to spare with more workers: fewer only overlap fewer waits
        settings = dataclasses.replace(base, num_workers=workers,
                                       prefetch_factor=(base.prefetch_factor or 2) if workers else None,
                                       persistent_workers=keep and workers > 0)
        yield Proposal(settings, "workers", "from the cost of producing a batch against the step's")


def _climb(space: SearchSpace, state: SearchState) -> Search:
    """Past the best count while throughput keeps improving (I/O-bound pipelines want many)."""
    while True:
        best = state.best()
        w = best.settings.num_workers
        nxt = min(space.max_workers, max(1, w * 2))
        if w == 0 or nxt == w or dataclasses.replace(best.settings, num_workers=nxt).key() in state.seen:
            return
        # busy workers that mostly compute, or that share the cores fully (past the cores each
        # one's CPU share drops, which alone would read as waiting on I/O)
        computing = workers_compute(best) or cores_busy(best, space.cores)
        if nxt > space.cores and computing and not (
                nxt <= 2 * space.cores and step_contention(state.trials()) is not None):
            # the workers compute while busy: more of them than cores only share the cores.
            # Except one step where the step's own threads slow down beside busy workers: the
            # scheduler splits the cores by runnable threads, so more workers take a larger share
            return
        before = best.samples_per_s
        trial = yield Proposal(dataclasses.replace(best.settings, num_workers=nxt), "workers",
                               f"twice the best count ({w}) while more workers keep helping")
        if trial.status != "ok" or trial.samples_per_s < before * (1 + MIN_GAIN):
            return


def _persistence_and_prefetch(space: SearchSpace, state: SearchState, baseline: TrialResult) -> Search:
    """On the best configuration with workers, even when num_workers=0 leads so far: keeping
    workers across epochs can turn a start-up-bound pipeline around."""
    best = state.best_with_workers()
    if best is None:
        return
    startup, epoch_ms, restarts_matter = restart_cost(best)
    if not best.settings.persistent_workers and restarts_matter:
        kept = yield Proposal(dataclasses.replace(best.settings, persistent_workers=True), "persistent_workers",
                              "restarting the workers costs over 3% of an epoch")
        restart = kept.startup_ms[1:]
        saved_ms = sum(startup) / len(startup) - (sum(restart) / len(restart) if restart else 0.0)
        if kept.status == "ok" and restart and saved_ms > RESTART_SHARE * epoch_ms:
            # Kept workers measurably skip the restart every epoch: a saving by construction,
            # so they win unless measured slower beyond noise (short trials on a busy machine
            # cannot resolve a 10% difference, the restart saving can be that size).
            state.preferred.add(kept.settings.key())
    best = state.best_with_workers()
    # with a whole epoch already in flight a deeper queue has nothing left to fetch ahead
    in_flight = best.settings.num_workers * (best.settings.prefetch_factor or 2)
    if best.wait_pct > WAIT_WORTH_A_QUEUE_PCT and in_flight < (batches_per_epoch(best) or math.inf):
        depth = best.settings.prefetch_factor or 2
        workers = best.settings.num_workers
        deeper = next((d for d in range(max(depth + 1, min(4 * depth, MAX_PREFETCH)), depth, -1)
                       if fits_in_shm(space, baseline.batch_bytes, workers * d)), None)
        if deeper is None:
            return
        queued = yield Proposal(dataclasses.replace(best.settings, prefetch_factor=deeper), "prefetch_factor",
                                f"the loop still waits {best.wait_pct:.0f}% of the time")
        if (queued.status == "ok" and best.settings.key() in state.preferred
                and (queued.wait_pct <= best.wait_pct or queued.samples_per_s >= best.samples_per_s)):
            # the loop waited less, or delivered more, with a deeper queue on top of a preferred
            # configuration: it absorbs bursts (workers slowed by a step sharing their cores);
            # it inherits the preference, so the faster of the two wins a tie
            state.preferred.add(queued.settings.key())


def _step_threads(space: SearchSpace, state: SearchState) -> Search:
    """Where the step slows beside busy workers: its intra-op threads cut to the cores the
    workers leave (at least one), on the best configuration with workers. The scheduler splits
    the cores by runnable threads, and an intra-op thread descheduled mid-op holds up the op, so
    fewer step threads can be worth more than more workers (loadtune searches this knob too)."""
    best = state.best_with_workers()
    if best is None or best.settings.num_threads or step_contention(state.trials()) is None:
        return
    worker_cores = best.settings.num_workers * best.worker_cpu_pct / 100
    threads = max(1, space.cores - round(worker_cores))
    if threads >= space.cores:
        return  # the workers leave every core: nothing to give them
    yield Proposal(dataclasses.replace(best.settings, num_threads=threads), "torch threads",
                   f"the step slows beside {best.settings.num_workers} busy workers using "
                   f"{worker_cores:.1f} cores: {threads} intra-op thread(s) leave them theirs")


# A batch whose production takes this many times the median holds up the in-order queue: the
# batches behind it, finished, wait for it. 4x: with k workers a slow batch stalls the loop
# only when it outlasts the k - 1 batches the other workers make meanwhile (2 cores: 2 workers,
# so a batch past 2x the median already stalls; 4x leaves room for the median's own noise).
TAIL_RATIO = 4.0


def _out_of_order(state: SearchState) -> Search:
    """Where building a batch is heavy-tailed and the loop waits: in_order=False, on the best
    configuration with workers. The batches then arrive as the workers finish them, so a slow
    one no longer holds up the rest; it changes the order of the batches, so only when allowed."""
    best = state.best_with_workers()
    if best is None or not best.settings.in_order or best.produce_p50_ms <= 0:
        return
    tail = best.produce_p99_ms / best.produce_p50_ms
    if tail < TAIL_RATIO or best.wait_pct <= WAIT_WORTH_A_QUEUE_PCT:
        return
    yield Proposal(dataclasses.replace(best.settings, in_order=False), "in_order",
                   f"a batch's slowest 1% take {tail:.0f}x the median to build, and the loop waits "
                   f"{best.wait_pct:.0f}% of the time")


def _epoch_in_flight(space: SearchSpace, state: SearchState, baseline: TrialResult) -> Search:
    """Where the step slows down beside busy workers and an epoch is short: the whole epoch in
    flight, on kept workers (one per batch, up to max_workers). The workers then build the epoch
    while the loop waits, and the step runs alone on the cores; throughput against num_workers
    is not monotonic there (the climb stops before it), so this gets its own trial."""
    best = state.best_with_workers()
    if best is None or step_contention(state.trials()) is None or not best.settings.batch_size:
        return
    batches = batches_per_epoch(best)
    if not batches or batches > MAX_PREFETCH * space.max_workers:
        return  # epoch length unknown, or too long to hold in flight
    if not fits_in_shm(space, baseline.batch_bytes, batches):
        return  # the epoch's batches would crowd /dev/shm
    workers = min(space.max_workers, batches)
    if workers <= best.settings.num_workers:
        return
    yield Proposal(dataclasses.replace(best.settings, num_workers=workers, persistent_workers=True,
                                       prefetch_factor=max(2, math.ceil(batches / workers))), "epoch in flight",
                   "the step slows beside busy workers and the epoch is short")
