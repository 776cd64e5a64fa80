"""``dlprof.autotune(loader)``: the running job is the experiment. The loop gets exactly the
batches ``loader`` would give, in its order, while the first part of training moves between
DataLoader configurations for measured windows (``sweep.online`` decides, ``probe.switching``
switches at batch boundaries), then settles on the fastest, kept only when it beat the user's
configuration side by side beyond noise.

A map-style dataset's configurations switch mid-epoch (their index stream is shared by the
configurations); an iterable dataset's only between epochs, as its samples follow the worker
count (``tuned_epochs``), and only when asked (``explore_epochs``): an explored epoch cannot be
cut once it turns out slower.
"""
from __future__ import annotations

import copy
import math
import sys
import weakref
from time import perf_counter_ns, process_time_ns

from torch.utils.data import DataLoader

from dlprof.analysis.recommend import dataloader_call
from dlprof.analysis.throughput import half_width, rate_and_ci
from dlprof.analysis.trial import trial_stats
from dlprof.api import Profiler
from dlprof.probe.device import synchronize
from dlprof.probe.environment import available_cores, shm_free_bytes
from dlprof.probe.handoff import receive_ms
from dlprof.probe.loader import describe_loader
from dlprof.probe.switching import OwnRandom
from dlprof.records import ProfileRun
from dlprof.result import ProfileResult
from dlprof.sweep.faults import loader_error_line
from dlprof.sweep.loaders import settings_of
from dlprof.sweep.online import MAX_WINDOW_S, MIN_WINDOW_BATCHES, Tuner, Window, tuning_to_dict
from dlprof.sweep.policy import SearchSpace
from dlprof.sweep.rules import useful_workers
from dlprof.sweep.trial import len_or_none, next_check, warmup_batches
from dlprof.tuned_epochs import Config, IterableEpoch, MapEpoch

# An explored configuration whose next batch takes this long has hung (the user's own loader
# gets no limit): past any worker start-up (spawned workers import torch: seconds) on a busy machine.
HANG_S = 60.0


def main_draws_note(generators: list[str]) -> str:
    """What changes when a dataset that draws from the training process's global random generators
    (``generators``: "torch", "numpy", "random") is served by workers, which draw from their own."""
    names = ", ".join({"torch": "torch's", "numpy": "numpy's", "random": "Python's"}[g] for g in generators)
    note = (f"the dataset draws from {names} global random generator in the training process (random "
            f"augmentation at num_workers=0): in the configurations with workers those draws happened in the "
            f"workers, from their own generators, as with num_workers changed by hand, so the augmentations differ "
            f"from the untuned run's")
    if "torch" in generators:
        note += (", and so do the step's own random draws and the later epochs' shuffle (DataLoader(generator=...) "
                 "keeps its order)")
    return note + "; every epoch still gave each sample once"


class AutotunedLoader:
    """Iterate it exactly like the DataLoader it wraps; ``result()`` has the windows, the
    switches and what it settled on (also in ``summary()`` and the HTML report)."""

    def __init__(self, loader: DataLoader, budget_s: float | None = None, sample_system: bool = True,
                 tuner: Tuner | None = None, device_sync: bool = False, explore_epochs: bool = False) -> None:
        """``tuner``: the decisions (tests drive the switching with a scripted one).
        ``device_sync``: as ``dlprof.profile``'s, in every configuration. ``explore_epochs``: an
        iterable dataset's tuner explores other configurations, a whole epoch each (``autotune``)."""
        if not isinstance(loader, DataLoader):
            raise TypeError(f"dlprof.autotune expects a torch.utils.data.DataLoader, got {type(loader).__name__}")
        if budget_s is not None and not budget_s > 0:
            raise ValueError(f"budget must be a positive number of seconds, got {budget_s!r}")
        # a copy: it shares the dataset, samplers, collate_fn and generator, not the user's
        # iterator, and keeps no hold on the user's loader (dlprof run hangs this on it)
        self.loader = copy.copy(loader)
        self.loader.__dict__["_iterator"] = None
        self.loader.__dict__["_dlprof_shadow"] = True  # under dlprof run: iterated as a plain DataLoader
        self.iterable = loader._dataset_kind != 0  # not _DatasetKind.Map: switched between epochs
        cores = available_cores()
        # an iterable dataset's workers each iterate their own share: no epoch length caps them
        batches = 0 if self.iterable else (len_or_none(loader) or 0)
        space = SearchSpace(cores=cores, max_workers=useful_workers(max(16, 4 * cores), batches),
                            window_s=MAX_WINDOW_S,
                            shm_free_bytes=shm_free_bytes())
        self.tuner = tuner or Tuner(space, settings_of(loader), budget_s, epochs_only=self.iterable,
                                    explore_epochs=explore_epochs)
        # a tuner that explores nothing starts no sampler process (its start-up and ticks take CPU
        # from the loop): its one window reads this process's CPU time itself (end_window)
        self.profiler = Profiler(sample_system=sample_system and self.tuner.explores)
        self.run = self.profiler.run
        self.run.loader = describe_loader(loader, None)
        # the environment, the system sampler, the device-sync note
        self.profiler.wrap(self.loader, device_sync=device_sync)
        self._sync = synchronize if device_sync else None
        self.current = self.tuner.first()  # the configuration that serves (see current_key)
        self._configs: dict[tuple, Config] = {}
        self._maps: list[weakref.ref] = []  # map-style epochs made, weakly (an abandoned one is gone)
        self._epochs = 0
        self._epoch_open = False  # an epoch began and has not ended (the loop may leave one early)
        self._open_epoch: IterableEpoch | None = None  # an iterable's epoch not ended
        self.epoch_samples = 0  # samples of the last whole epoch (0 until one ended)
        self._printed = False
        self.window: Window | None = None  # the window being measured (start_window)
        # an iterable dataset read by the training process itself: its first batch times what
        # receiving a batch from a worker would cost (the tuner's bound on what workers can gain)
        self.time_receive = self.iterable and self.tuner.tuning.baseline.num_workers == 0
        self._to_receive = None  # the first batch, kept until its reception is timed (receive_timed)
        # the user's configuration kept whatever is measured: a window within the first epoch will
        # do (False once settled: one test a batch on the hot path after that)
        self.within_epoch = self.iterable and not self.tuner.explores
        self._window_cpu = (0, 0)  # this process's CPU and the clock at the window's first batch
        # the user's configuration without workers: the global random generators its dataset draws
        # from in the training process (checked on its first batch; None: not known)
        self.main_draws: list[str] | None = None
        # written with workers: the generator its configurations without workers fetch under (Config)
        self._own_random = OwnRandom() if loader.num_workers else None

    @property
    def current(self):
        return self._current

    @current.setter
    def current(self, settings) -> None:
        self._current = settings
        self.current_key = settings.key()  # compared with each batch's configuration

    def _config(self, settings, configs: dict | None = None) -> Config:
        """The configuration's Config, made once in ``configs`` (default: the loader's own; an
        epoch iterated beside another has its own, see ``__iter__``)."""
        configs = self._configs if configs is None else configs
        key = settings.key()
        if key not in configs:
            users = key == self.tuner.tuning.baseline.key()  # the user's own: no limit it did not set
            configs[key] = Config(self.loader, settings, self.run, None if users else HANG_S, self._sync,
                                  on_draws=self._drew if users else None, own_random=self._own_random)
            if self.tuner.tuning.settled is not None:
                configs[key].probe.lean()
        return configs[key]

    def _drew(self, generators: list[str]) -> None:
        self.main_draws = generators

    def fallback(self):
        """Where a failure goes back to: what the tuner settled on, else the user's configuration."""
        return self.tuner.tuning.settled or self.tuner.tuning.baseline

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        """The DataLoader's own attributes (``dataset``, ``sampler``, ``batch_size``, ...) as the
        user wrote them (the configuration serving now is ``current``): a loop that computes
        ``len(loader.dataset)`` or calls ``loader.sampler.set_epoch(epoch)`` runs unchanged (the
        sampler is the user's own object, which every configuration draws from). Only looked up
        for names the wrapper does not have."""
        if name.startswith("__") or name == "loader":  # not set yet (a failed __init__, a copy)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        if self.iterable:
            return IterableEpoch(self)
        # epochs iterated at once (zip(loader, loader); an iterator kept while another is made)
        # behave as the untuned loader's: with persistent workers torch has one iterator, which
        # a new iter() resets, so the open epochs go on as the new one; without, each is a pass
        # of its own (MapEpoch._config: a persistent configuration's one iterator serves one)
        open_epochs = self.open_epochs()
        joined = open_epochs if self.tuner.tuning.baseline.persistent_workers else []
        for e in joined:  # first, so that the new epoch finds their iterators free
            e.retire()
        epoch = MapEpoch(self)
        for e in joined:
            e.joined = epoch
        self._maps = [weakref.ref(e) for e in open_epochs if e not in joined] + [weakref.ref(epoch)]
        return epoch

    def open_epochs(self) -> list:
        """The map-style epochs made and not ended (an abandoned one, freed, is not)."""
        return [e for e in (ref() for ref in self._maps) if e is not None and not e.ended]

    def result(self) -> ProfileResult:
        result = self.profiler.result()
        result.run.tuning = tuning_to_dict(self.tuner.tuning)
        if self.main_draws and any(w.settings.num_workers for w in self.tuner.tuning.windows):
            result.run.notes.append(main_draws_note(self.main_draws))
        counted = sum(e.batches for e in result.run.epochs)
        if counted > len(result.run.batches):
            result.run.notes.append(
                f"once settled, dlprof.autotune counted the batches of each epoch without recording them one by one "
                f"({counted - len(result.run.batches):,} of {counted:,} batches): its decision needed no more, and "
                f"a long run would hold a record of every batch")
        return result

    def summary(self, file=None) -> None:
        self.result().summary(file)

    def save(self, path) -> None:
        """The results file, as ``dlprof.profile``'s (with what the tuner did in ``tuning``)."""
        self.result().save(path)

    def save_trace(self, path) -> None:
        self.result().save_trace(path)

    def save_reports(self, folder) -> list[str]:
        """report.html (the windows' plot included), report.md and trace.json in ``folder``."""
        return self.result().save_reports(folder)

    def close(self) -> None:
        for c in self._configs.values():
            c.release()
        self.profiler.close()

    def __enter__(self):
        """``with dlprof.autotune(loader) as tuned:``: closed at the end of the block (workers
        kept for other configurations end, the sampler stops; the results stay)."""
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- windows ------------------------------------------------------------------------------

    def start_window(self) -> None:
        purpose, reason = self.tuner.proposal()
        self.window = Window(self.current, purpose, reason)
        self.window_first = None  # set at the configuration's first batch, once the old one drained
        self._next_check = MIN_WINDOW_BATCHES
        self.window_epochs: list[tuple[int, int, int, int]] = []  # a turn of whole epochs: (first
        # record, start ns, end ns, samples) of each

    def window_check(self) -> bool:
        """After a batch of the current configuration: has its window measured enough? The
        interval is computed after 8 batches, then each time the window grew by an eighth
        (linear work over a window, however many batches it holds)."""
        if self.window_first is None:  # this batch is the configuration's first: its warm-up starts
            self.window_first = len(self.run.batches) - 1 + warmup_batches(self.current)
            self._window_cpu = (process_time_ns(), perf_counter_ns())  # for end_window without a sampler
        n = len(self.run.batches) - self.window_first
        if n < self._next_check:
            return False
        self._next_check = next_check(n)
        window = self.run.batches[self.window_first:]
        seconds = (window[-1].wait_end_ns - window[0].wait_end_ns) / 1e9
        rate, ci = rate_and_ci([b.wait_end_ns for b in window], [b.samples for b in window], [b.epoch for b in window])
        return self.tuner.done(seconds, n, rate, ci if math.isfinite(ci) else 100.0, epoch_end=False)

    def epoch_check(self, first_record: int, start_ns: int, cpu_start_ns: int, end_ns: int | None = None) -> bool:
        """After a whole epoch in the current configuration, when turns span whole epochs: has
        the turn measured enough? Its rate is the epochs' samples over their wall time, from each
        ``iter()`` to the loop's ask past the last batch (start-up, bursts and the last step in);
        ``end_ns``: an epoch the loop left early ends at its last batch. ``cpu_start_ns``: this
        process's CPU time (all its threads) at ``iter()``, for the epoch's CPU (end_window)."""
        cpu_ns = process_time_ns() - cpu_start_ns
        end_ns = end_ns or perf_counter_ns()
        samples = sum(b.samples for b in self.run.batches[first_record:])
        self.window_epochs.append((first_record, start_ns, end_ns, samples, cpu_ns))
        self.window_first = self.window_epochs[0][0]
        rate, ci = self._epochs_rate()
        seconds = sum(e[2] - e[1] for e in self.window_epochs) / 1e9
        return self.tuner.done(seconds, len(self.run.batches) - self.window_first, rate, ci)

    def _epochs_rate(self) -> tuple[float, float]:
        """The whole epochs' rate and the half-width of its 95% interval in % (their per-epoch
        rates' t-interval; from one epoch, ``_one_epoch_ci``)."""
        epochs = self.window_epochs
        rate = sum(e[3] for e in epochs) / (sum(e[2] - e[1] for e in epochs) / 1e9)
        if len(epochs) < 2:
            first, start_ns, end_ns = epochs[0][:3]
            return rate, self._one_epoch_ci(first, start_ns, end_ns)
        return rate, 100.0 * half_width([e[3] / ((e[2] - e[1]) / 1e9) for e in epochs]) / rate

    def _one_epoch_ci(self, first: int, start_ns: int, end_ns: int) -> float:
        """One whole epoch's interval, in %: its batches' (block means, as a window's), combined
        with its start-up's share of the epoch (``iter()`` to the first batch), counted as
        uncertain by all of itself: the start-up (workers started, files opened) is what varies
        between epochs and one epoch cannot show by how much. A long epoch that starts quickly
        then measures in one epoch, not two: an explored configuration (an iterable's) or a turn
        of whole epochs costs the job one epoch."""
        batches = self.run.batches[first:]
        if len(batches) < MIN_WINDOW_BATCHES or end_ns <= start_ns:
            return 100.0
        _, ci = rate_and_ci([b.wait_end_ns for b in batches], [b.samples for b in batches])
        startup_pct = 100.0 * (batches[0].wait_end_ns - start_ns) / (end_ns - start_ns)
        return min(100.0, math.hypot(ci, startup_pct)) if math.isfinite(ci) else 100.0

    def end_window(self):
        """The window's figures; the configuration the tuner wants next (None: settled)."""
        if self._to_receive is not None:  # a forked helper and its copies take a few ms: not measured
            batch, self._to_receive = self._to_receive, None
            self.tuner.received(receive_ms(batch))
        batches = self.run.batches[self.window_first:]
        segments = {b.epoch for b in batches}
        run = ProfileRun(loader=self.run.loader, batches=batches,
                         epochs=[e for e in self.run.epochs if e.epoch in segments],
                         processes=self.profiler.process_samples())
        measured = trial_stats(run, self.current, 0)
        # the records' epochs are the configurations' segments (an iterator each): the epoch's
        # length is the user's, its time projected from the window's rate (bottleneck.epoch_ms_of)
        measured.samples_per_epoch, measured.epoch_ms = self.epoch_samples, 0.0
        w = self.window
        w.start_ns, w.end_ns = batches[0].wait_end_ns, batches[-1].wait_end_ns
        if self.window_epochs:  # a turn of whole epochs
            measured.samples_per_s, measured.ci_pct = self._epochs_rate()
            w.start_ns, w.end_ns = self.window_epochs[0][1], self.window_epochs[-1][2]
            wall_ns = sum(e[2] - e[1] for e in self.window_epochs)
            if not run.processes and wall_ns > 0:  # no sampler: the training process's CPU, read in it
                measured.main_cpu_pct = 100.0 * sum(e[4] for e in self.window_epochs) / wall_ns
        elif not run.processes and self.iterable:  # a window within an iterable's epoch (decide_within)
            cpu_ns, wall_ns = process_time_ns() - self._window_cpu[0], perf_counter_ns() - self._window_cpu[1]
            measured.main_cpu_pct = 100.0 * cpu_ns / wall_ns if wall_ns > 0 else 0.0
        w.batches, w.samples_per_s, w.ci_pct, w.wait_pct = (measured.batches, measured.samples_per_s,
                                                             measured.ci_pct, measured.wait_pct)
        if not w.purpose or w.purpose == "baseline":
            w.outcome = "the user's configuration"
        return self.tuner.next_settings(measured, w)

    def decide_within(self, probe) -> None:
        """A tuner that keeps an iterable dataset's configuration whatever it measures (it explores
        nothing) decides after a window within the first epoch when that epoch is longer than a
        window: it settles, and ``probe``, serving the epoch, stops recording from the next batch."""
        self.between_epochs(self.end_window())
        probe.lean(now=True)

    def receive_timed(self, batch) -> None:
        """Once, on the first batch: kept, for its reception from a worker to be timed (on a copy)
        as the window ends (end_window), outside the time the window measures."""
        self.time_receive = False
        self._to_receive = batch

    def settled(self, serving: set[tuple]) -> None:
        """Once settled: say so, stop sampling, and end the workers of every configuration but the
        settled one and those still serving this epoch (``serving``: their keys)."""
        self.announce()
        self.within_epoch = False
        self.profiler.stop_sampling()  # the CPU readings fed the decisions: no more needed
        keep = serving | {self.tuner.tuning.settled.key()}
        for key, config in self._configs.items():  # the side that lost, its workers waiting
            if key not in keep:
                config.release()
            else:  # their next epochs counted, not recorded batch by batch (LoaderProbe.lean)
                config.probe.lean()

    def between_epochs(self, settings) -> None:
        """A decision at an epoch's end (a turn of whole epochs): the next epoch opens in
        ``settings`` (None: settled)."""
        if settings is None:
            self.settled(set())
            settings = self.tuner.tuning.settled
        self.current = settings
        if self.tuner.tuning.settled is None:
            self.start_window()

    def after_failure(self, settings, exc: Exception, serving: set[tuple], note: str = "") -> None:
        """An explored configuration failed: the tuner hears it (never proposed again) and
        ``current`` is where the epoch goes on; ``serving``: keys of configurations still
        delivering this epoch's batches."""
        now = perf_counter_ns()
        window = Window(settings, "explored", "", start_ns=now, end_ns=now)
        error = loader_error_line(exc) + (f"; {note}" if note else "")
        nxt = self.tuner.failed(settings, error, window)
        if nxt is None and self.tuner.tuning.settled is not None:
            self.settled(serving)
        self.current = nxt or self.fallback()
        if self.tuner.tuning.settled is None:
            self.start_window()

    def announce(self) -> None:
        """Once, when settled: what to put in the code, to stderr."""
        if self._printed:
            return
        self._printed = True
        t = self.tuner.tuning
        if t.settled is not None and t.settled.key() != t.baseline.key():
            print(f"dlprof.autotune: {self.settled_call()}  # {t.reason}", file=sys.stderr, flush=True)
            if self.main_draws and t.settled.num_workers:  # what that call changes beyond the speed
                print(f"dlprof.autotune: note: {main_draws_note(self.main_draws)}", file=sys.stderr, flush=True)
        else:
            print(f"dlprof.autotune: keeping the DataLoader as it is: {t.reason}", file=sys.stderr, flush=True)

    def settled_call(self) -> str:
        tuning = self.tuner.tuning
        return dataloader_call(tuning.settled) if tuning.settled else ""


def autotune(loader: DataLoader, budget: float | None = None, sample_system: bool = True,
             device_sync: bool = False, explore_epochs: bool = False) -> AutotunedLoader:
    """Iterate ``loader`` tuned online: the same batches in the same order, epoch after epoch,
    while up to ``budget`` seconds of the first part of training (default: 60 s, or 3% of the
    first epoch if longer) try other DataLoader settings in measured windows; then it settles
    on the fastest (kept only when it beat ``loader``'s own settings side by side beyond noise)
    and prints the ``DataLoader(...)`` call once.
    An iterable dataset's configurations change only between epochs, and an explored one serves
    a whole epoch, which cannot be cut if it turns out slower: its settings are kept, with what
    workers could gain at most, unless ``explore_epochs=True``.
    ``sample_system``: sample CPU and memory in a separate process while it explores (none is
    started when nothing is explored: an iterable dataset without ``explore_epochs``).
    ``device_sync``: as ``dlprof.profile``'s."""
    return AutotunedLoader(loader, budget_s=budget, sample_system=sample_system, device_sync=device_sync,
                           explore_epochs=explore_epochs)
