"""The epochs of ``dlprof.autotune``'s loader (``tuned.AutotunedLoader``): how the configurations
serve one epoch of the user's loop, and what happens when one of them fails.

A map-style epoch (``MapEpoch``) is one index stream drawn from the user's sampler, served by
successive configurations' torch iterators (``probe.switching``): a switch is at a batch
boundary, a failed configuration's batches go back to the stream. An iterable dataset's epoch
(``IterableEpoch``) is served whole by one configuration: its samples follow the worker count
(each worker iterates its own share), so configurations change only between epochs.
"""
from __future__ import annotations

import warnings
from time import perf_counter_ns, process_time_ns

from torch.utils.data import DataLoader

from dlprof.probe.loader import LoaderProbe
from dlprof.probe.switching import (IndexStream, OwnRandom, RandomState, checked_in_next, configured,
                                    draw_iterator_seed, draws_from_global_random, shut_down)
from dlprof.records import ProfileRun
from dlprof.sweep.faults import dead_worker_pids, loader_error_line



def worker_failure(exc: Exception, workers: int) -> bool:
    """A failure of a configuration's ``workers`` worker processes, not of the dataset: a worker
    died (torch names its pid, or the pipe of a batch it was handing over broke before torch saw
    it dead: a bare EOFError or ConnectionError), a batch outlived the explored configuration's
    time limit, or shared memory ran out. A dataset's own error in a worker reaches the loop
    wrapped by torch ("Caught ValueError in DataLoader worker process 1"), with none of these."""
    text = str(exc)
    if workers and isinstance(exc, (EOFError, ConnectionError)) and "DataLoader worker process" not in text:
        return True
    return bool(dead_worker_pids(exc)) or "DataLoader timed out" in text or any(
        s in text for s in ("No space left on device", "shared memory"))


class Config:
    """One configuration: a copy of the user's loader (drawing from tap samplers for a map-style
    dataset) and its probe, recording into the tuned loader's run. ``timeout_s``: an explored
    configuration's batch time limit (None: the user's own, which behaves as torch's does); an
    explored one's dead worker is reported by its own ``next()`` (``checked_in_next``).

    ``next(it)`` gets a batch from one of its iterators: without workers, for a loader written
    with them, under its own random generator (``OwnRandom``); the user's own configuration
    without workers checks its first batch for draws from the global one (``on_draws``)."""

    def __init__(self, loader: DataLoader, settings, run: ProfileRun, timeout_s: float | None, sync,
                 on_draws=None, own_random: OwnRandom | None = None) -> None:
        """``own_random``: for a loader written with workers, the generator its configurations
        without workers fetch under (one for all, so that two of them do not repeat its draws)."""
        self.settings = settings
        self.explored = timeout_s is not None
        self.key = settings.key()
        self.loader, self.taps = configured(loader, settings, timeout_s, tapped=loader._dataset_kind == 0)
        self.probe = LoaderProbe(self.loader, None, lambda: None, run.batches, run.epochs, sync=sync)
        self.next = next
        if not settings.num_workers and own_random is not None:
            self._own = own_random
            self.next = self._own_next
        elif not settings.num_workers and on_draws is not None:
            self._on_draws = on_draws
            self.next = self._checked_next

    def _own_next(self, it):
        with self._own:
            return next(it)

    def _checked_next(self, it):
        batch, generators = draws_from_global_random(it)
        self.next = next  # once
        self._on_draws(generators)
        return batch

    def iterator(self, user_loader: DataLoader):
        """A torch iterator; it draws nothing from the random generators (their state is put back)."""
        state = RandomState(user_loader)
        try:
            with warnings.catch_warnings():  # torch's "more workers than cores" advice: exploring
                warnings.filterwarnings("ignore", message=".*worker processes in total.*")
                it = iter(self.probe)
        finally:
            state.restore()
        if self.explored:
            checked_in_next(it._it)
        return it

    def open(self, stream: IndexStream, user_loader: DataLoader):
        """A segment: a torch iterator on ``stream``'s next batches."""
        tap = self.taps.open(stream)
        return Segment(self, self.iterator(user_loader), tap)

    def release(self) -> None:
        """Persistent workers of a configuration left behind end now."""
        shadow = self.probe._shadow
        if shadow._iterator is not None:
            shut_down(shadow._iterator)
            shadow.__dict__["_iterator"] = None


class Segment:
    __slots__ = ("config", "it", "tap")

    def __init__(self, config: Config, it, tap) -> None:
        self.config = config
        self.it = it
        self.tap = tap


def _reuses_iterator(o) -> bool:
    """Does the user's loader reuse its iterator for this epoch (kept workers after the first)?
    torch then draws no seed for it."""
    loader = o.loader
    return loader.persistent_workers and loader.num_workers > 0 and o._epochs > 0


def _begin_epoch(o) -> None:
    """What an iterable dataset's epoch does first: the seed the user's loader draws for a new
    iterator, the epoch count (a map-style epoch asks its sampler too: MapEpoch)."""
    if not _reuses_iterator(o):
        draw_iterator_seed(o.loader)
    o._epochs += 1


class MapEpoch:
    """One epoch of a map-style dataset: the segments of its configurations, oldest first (a
    switched-from one drains)."""

    def __init__(self, owner) -> None:
        self.o = owner
        loader = owner.loader
        # a persistent configuration whose one iterator serves another open epoch (two iterated
        # at once, without the user's persistent workers): this epoch's own, released at its end
        self.configs: dict = {}
        self.ended = False
        self.joined: MapEpoch | None = None  # retired: the epoch that goes on in its place
        # what torch's DataLoader.__iter__ asks of the sampler and the random generator, in its
        # order (a batch sampler may draw when iter() is called): a new iterator calls iter() on
        # the sampler, draws its workers' seed and, with workers, calls iter() again (its
        # _reset), whose batches it serves; a persistent iterator reused calls iter() once
        sampler = loader._index_sampler
        self.stream = IndexStream(sampler)
        if not _reuses_iterator(owner):
            draw_iterator_seed(loader)
            if loader.num_workers:
                self.stream = IndexStream(sampler)
        owner._epochs += 1
        if owner._epoch_open and owner.tuner.whole_epochs:
            # the loop left an epoch before its end (a break, a step limit): turns that end only
            # at epoch ends might never end, so they are cut within epochs from now on
            owner.tuner.whole_epochs = False
        owner._epoch_open = True
        self.first_record = len(owner.run.batches)
        self.start_ns, self.cpu_ns = perf_counter_ns(), process_time_ns()
        # a turn of whole epochs counts this epoch if one configuration serves all of it
        self.whole = owner.tuner.whole_epochs and owner.window is not None
        self.segments: list[Segment] = []
        self.primed = False
        if loader.num_workers:  # the user's workers are handed the first batches as the iterator is made
            self._prime()
        # without workers the sampler is first asked at the first batch (its draws then: a
        # RandomSampler's shuffle follows whatever the loop drew after iter())

    def _prime(self) -> None:
        """The epoch's first batch of indices taken (the sampler's own draws happen now, outside
        the iterators whose random state is restored) and its first configuration opened."""
        o = self.o
        self.primed = True
        try:
            self.stream.give_back([self.stream.pull()])
        except StopIteration:
            pass
        self.segments = [self._config(o.current).open(self.stream, o.loader)]
        if o.tuner.tuning.settled is None and o.window is None:
            o.start_window()

    def __iter__(self):
        return self

    def _config(self, settings):
        shared = self.o._config(settings)
        if shared.settings.persistent_workers and shared.settings.num_workers and any(
                e is not self and any(seg.config is shared for seg in e.segments) for e in self.o.open_epochs()):
            return self.o._config(settings, self.configs)
        return shared

    def retire(self) -> None:
        """A new iter() of a loader with persistent workers: torch resets its one iterator, so
        this epoch's batches not delivered are dropped, and (``joined``) it gives the new
        epoch's."""
        for seg in self.segments:
            seg.tap.closed = True
            seg.tap.taken.clear()
            if not seg.config.settings.persistent_workers:
                shut_down(seg.it._it)
        self.segments = []
        self.primed = self.ended = True

    def __next__(self):
        if self.joined is not None:
            return next(self.joined)
        if not self.primed:
            self._prime()
        o = self.o
        while True:
            if not self.segments:  # ended
                raise StopIteration
            seg = self.segments[0]
            try:
                batch = seg.config.next(seg.it)
            except StopIteration:
                self.segments.pop(0)
                if seg.config.key != o.current_key and not o.tuner.keeps(seg.config.settings):
                    seg.config.release()  # kept workers of a configuration left behind
                if self.segments:
                    continue
                if not self.stream.empty():  # the current one was cut off, nothing opened after
                    self.segments.append(self._config(o.current).open(self.stream, o.loader))
                    continue
                self.ended = True
                for config in self.configs.values():
                    config.release()
                o._epoch_open = False
                if o.tuner.tuning.settled is None:  # the windows' epoch length (end_window)
                    o.epoch_samples = sum(b.samples for b in o.run.batches[self.first_record:])
                    if self.whole and o.tuner.whole_epochs and o.epoch_check(self.first_record, self.start_ns,
                                                                             self.cpu_ns):
                        o.between_epochs(o.end_window())
                raise
            except Exception as exc:
                culprit = self._culprit(seg, exc)
                if culprit.config.key == o.fallback().key():
                    if culprit is seg:
                        seg.tap.delivered(seg.it._it)  # consumed, as torch's iterator goes on past it
                    raise
                self._failed(culprit, exc)
                continue
            seg.tap.delivered(seg.it._it)
            # a window measures its own configuration: not the batches a switched-from one still
            # delivers (it took the epoch's last batches, so nothing was opened after it)
            if (o.tuner.tuning.settled is None and not o.tuner.whole_epochs and len(self.segments) == 1
                    and seg.config.key == o.current_key):
                t0 = perf_counter_ns()
                if o.window_check():
                    self._switch(o.end_window())
                seg.config.probe.not_a_step(perf_counter_ns() - t0)  # the tuner's time, not the step's
            return batch

    def _switch(self, settings) -> None:
        o = self.o
        if settings is None:  # settled
            settings = o.tuner.tuning.settled
            o.settled({seg.config.key for seg in self.segments})
        if settings.key() == o.current_key:
            if o.tuner.tuning.settled is None:
                o.start_window()
            return
        old = self.segments[-1]
        old.tap.closed = True  # torch delivers what it has in flight, then ends (see __next__)
        o.current = settings
        if not self.stream.empty():
            self.segments.append(self._config(settings).open(self.stream, o.loader))
        if o.tuner.tuning.settled is None:
            o.start_window()

    def _culprit(self, seg: Segment, exc: Exception) -> Segment:
        """The segment whose worker died: torch reports a worker's death in whichever of the
        process's iterators the main thread is in (its SIGCHLD handler), by pid."""
        pids = dead_worker_pids(exc)
        if pids:
            for s in self.segments:
                if pids & {w.pid for w in (getattr(s.it, "_workers", None) or [])}:
                    return s
        return seg

    def _failed(self, seg: Segment, exc: Exception) -> None:
        """An explored configuration failed: its batches not delivered, and those of any segment
        after it, go back to the stream; the fallback configuration delivers them."""
        o = self.o
        i = self.segments.index(seg)
        lost = []
        for s in self.segments[i:]:
            s.tap.closed = True
            lost.extend(s.tap.undelivered(s.it._it))
            s.tap.taken.clear()
            shut_down(s.it._it, failed=True)
            s.config.release()
        del self.segments[i:]
        self.whole = False  # not one configuration's epoch
        self.stream.give_back(lost)
        o.after_failure(seg.config.settings, exc, {s.config.key for s in self.segments})
        self.segments.append(self._config(o.current).open(self.stream, o.loader))


class IterableEpoch:
    """One epoch of an iterable dataset, served whole by one configuration: the turns and windows
    are whole epochs, and a decision takes effect at the next epoch. A loop that leaves an epoch
    early ends its turn at that epoch's last batch.

    An explored configuration whose workers fail mid-epoch cannot hand the epoch on: another
    worker count splits the dataset otherwise, so the rest of the epoch cannot be told apart from
    what was delivered. That epoch then ends early, with a warning that says how many samples it
    delivered, and the next epoch is served by the configuration that worked. Other errors (the
    dataset's own) reach the loop as torch raises them, and iteration goes on."""

    def __init__(self, owner) -> None:
        self.o = owner
        if owner._open_epoch is not None:  # the loop left it early (a step limit)
            owner._open_epoch.leave()
        _begin_epoch(owner)
        if owner.tuner.tuning.settled is None and owner.window is None:
            owner.start_window()
        owner._open_epoch = self
        self.first_record = len(owner.run.batches)
        self.start_ns, self.cpu_ns = perf_counter_ns(), process_time_ns()
        self.config = owner._config(owner.current)
        self.it = self.config.iterator(owner.loader)
        self.ended = False  # and self.it None: ended by a failure

    def __iter__(self):
        return self

    def __next__(self):
        o = self.o
        if self.it is None:
            raise StopIteration
        try:
            batch = self.config.next(self.it)
        except StopIteration:
            self._end(perf_counter_ns())
            raise
        except Exception as exc:
            if self.config.key == o.fallback().key() or not worker_failure(exc, self.config.settings.num_workers):
                raise
            self._failed(exc)
            raise StopIteration from None
        if o.time_receive:
            o.receive_timed(batch)
        if o.within_epoch:  # a window within the epoch, until settled (decide_within)
            t0 = perf_counter_ns()
            if o.window_check():
                o.decide_within(self.config.probe)
            self.config.probe.not_a_step(perf_counter_ns() - t0)  # the tuner's time, not the step's
        return batch

    def _end(self, end_ns: int) -> None:
        """The epoch ended (or was left): a turn's epoch measured, a decision for the next."""
        o = self.o
        if self.ended:  # asked again past its end
            return
        self.ended = True
        o._open_epoch = None
        if o.tuner.tuning.settled is not None or len(o.run.batches) == self.first_record:
            return
        o.epoch_samples = sum(b.samples for b in o.run.batches[self.first_record:])
        if o.epoch_check(self.first_record, self.start_ns, self.cpu_ns, end_ns):
            o.between_epochs(o.end_window())
        if self.config.key != o.current_key and not o.tuner.keeps(self.config.settings):
            self.config.release()

    def leave(self) -> None:
        """The loop left this epoch early: its turn ends at its last batch."""
        batches = self.o.run.batches
        self._end(batches[-1].wait_end_ns if len(batches) > self.first_record else perf_counter_ns())

    def _failed(self, exc: Exception) -> None:
        o = self.o
        delivered = sum(b.samples for b in o.run.batches[self.first_record:])
        self.ended = True
        shut_down(self.it._it, failed=True)
        self.it = None
        self.config.release()
        o._open_epoch = None
        note = (f"the epoch ended after {delivered} samples: an iterable dataset's epoch cannot go on in another "
                f"configuration (its samples follow the worker count)")
        warnings.warn(f"dlprof.autotune: {self.config.settings.label()} failed mid-epoch "
                      f"({loader_error_line(exc)}); {note}",
                      RuntimeWarning, stacklevel=3)
        o.after_failure(self.config.settings, exc, set(), note)

