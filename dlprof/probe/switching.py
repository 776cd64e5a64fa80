"""One DataLoader served by successive configurations within an epoch, every batch exactly once
and in the loader's order (``dlprof.autotune``).

A map-style epoch's batches of indices are drawn once, from the user's own (batch) sampler, into
an ``IndexStream``. Each configuration is a copy of the user's loader with other settings whose
sampler is a ``_TapSampler``: every torch iterator made from it pulls the next batches of the
shared stream through a ``_Tap``. A switch closes the old iterator's tap (torch then sees its
sampler end: it delivers the batches it has in flight and stops) and the next configuration's
iterator continues from the next batch; the loop gets the old batches first, so the sequence is
the untuned loader's. An iterator that fails gives the batches it took and did not deliver back
to the front of the stream, so another configuration delivers them.

torch draws a seed from the random generator for every iterator it makes; the extra iterators of
a switch are made with the generators' states restored after, so the draws of the epochs that
follow (a RandomSampler's shuffle) are the untuned loader's.
"""
from __future__ import annotations

import copy
import time
import weakref
from collections import deque
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils import MP_STATUS_CHECK_INTERVAL, signal_handling

from dlprof.scan_records import DEFAULT_PREFETCH, LoaderSettings


class IndexStream:
    """The batches of indices of one epoch, handed out once each, in order."""

    def __init__(self, index_sampler) -> None:
        self._source: Iterator = iter(index_sampler)
        self._back: deque = deque()  # handed out, not delivered, given back: served first
        self.ended = False

    def pull(self):
        if self._back:
            return self._back.popleft()
        try:
            return next(self._source)
        except StopIteration:
            self.ended = True
            raise

    def give_back(self, items) -> None:
        self._back.extendleft(reversed(list(items)))

    def empty(self) -> bool:
        """Nothing left to hand out (known only once the source has ended)."""
        return self.ended and not self._back


class _Tap:
    """What one torch iterator draws its batches of indices from, until it is closed."""

    __slots__ = ("stream", "taken", "sent", "count", "oldest", "closed")

    def __init__(self, stream: IndexStream) -> None:
        self.stream = stream
        self.taken: deque = deque()  # handed to the iterator, not delivered to the loop yet
        # by the order handed to the iterator (torch's send order, from 0 at each tap): those
        # that may still be outstanding, from ``oldest`` (see ``delivered``)
        self.sent: dict[int, object] = {}
        self.count = 0
        self.oldest = 0
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        item = self.stream.pull()
        self.taken.append(item)
        self.sent[self.count] = item
        self.count += 1
        return item

    def delivered(self, torch_iterator) -> None:
        """The loop got a batch of this tap's iterator (or the iterator went past one that
        raised): one fewer taken, and those sent before torch's receive pointer (``_rcvd_idx``:
        every task before it was delivered; none in a process without workers) are forgotten,
        so an epoch's batches of indices are not all held. O(1) amortised: on the hot path."""
        self.taken.popleft()
        done = getattr(torch_iterator, "_rcvd_idx", self.count)
        while self.oldest < done:
            self.sent.pop(self.oldest, None)
            self.oldest += 1

    def undelivered(self, torch_iterator) -> list:
        """The batches of indices ``torch_iterator`` took from this tap and has not delivered.
        In order, torch delivers them as taken, and each delivery pops ``taken``. With
        in_order=False its workers' batches arrive as they finish, so the ones outstanding are
        read from the iterator's own book of tasks (``_task_info``, keyed by the order they were
        sent to the workers, which is the order they were taken; it resets with the tap)."""
        tasks = getattr(torch_iterator, "_task_info", None)
        if tasks is None or getattr(torch_iterator, "_in_order", True):
            return list(self.taken)
        return [self.sent[k] for k in sorted(tasks) if k in self.sent]


class _TapSampler:
    """A configuration's sampler: ``open(stream)`` before a torch iterator is made or reset
    gives it a new tap, which its ``iter()`` returns (torch calls it then, or with num_workers=0
    at the first batch)."""

    def __init__(self, length: int) -> None:
        self._length = length
        self.tap: _Tap | None = None

    def __len__(self) -> int:
        return self._length

    def open(self, stream: IndexStream) -> _Tap:
        self.tap = _Tap(stream)
        return self.tap

    def __iter__(self):
        return self.tap


def configured(loader: DataLoader, s: LoaderSettings, timeout_s: float | None,
               tapped: bool = True) -> tuple[DataLoader, _TapSampler | None]:
    """A copy of ``loader`` (its dataset, collate_fn, worker_init_fn, generator, start method)
    with the settings ``s``, drawing its batches from a tap sampler (``tapped``; an iterable
    dataset's copy keeps its own). ``timeout_s``: with workers, a batch that takes longer raises
    (an explored configuration that hangs is left)."""
    taps = None
    c = copy.copy(loader)  # copies __dict__, past DataLoader.__setattr__'s guards
    d = c.__dict__
    if tapped:
        key = "batch_sampler" if loader.batch_sampler is not None else "sampler"
        taps = _TapSampler(len(getattr(loader, key)))
        d[key] = taps
    d["_iterator"] = None
    d["num_workers"] = s.num_workers
    d["prefetch_factor"] = (s.prefetch_factor or DEFAULT_PREFETCH) if s.num_workers else None
    d["persistent_workers"] = bool(s.persistent_workers and s.num_workers)
    d["pin_memory"] = s.pin_memory
    if s.num_workers and timeout_s:
        d["timeout"] = min(loader.timeout, timeout_s) if loader.timeout else timeout_s
    return c, taps


class RandomState:
    """The random generators a new torch iterator draws from: saved, then put back."""

    def __init__(self, loader: DataLoader) -> None:
        self._generator = loader.generator
        self._cpu = torch.get_rng_state()
        self._own = self._generator.get_state() if self._generator is not None else None

    def restore(self) -> None:
        torch.set_rng_state(self._cpu)
        if self._own is not None:
            self._generator.set_state(self._own)


class OwnRandom:
    """torch's global random generator, kept apart while a configuration without workers fetches
    for a loader written with them (``with own_random: next(it)``). Written with workers, the
    dataset's random draws (augmentation) happen in the workers, never in the training process;
    fetched here, they would advance the generator that the step's own draws (dropout) and the
    next epoch's shuffle come from, and the later batches would no longer be the untuned
    loader's. This one is seeded from ``torch.initial_seed()`` (a seeded job's augmentations stay
    reproducible) without drawing from the global generator."""

    def __init__(self) -> None:
        g = torch.Generator()
        g.manual_seed((torch.initial_seed() + 0x9E3779B97F4A7C15) % 2 ** 63)
        self._state = g.get_state()
        self._main = None

    def __enter__(self) -> None:
        self._main = torch.get_rng_state()
        torch.set_rng_state(self._state)

    def __exit__(self, *exc) -> None:
        self._state = torch.get_rng_state()
        torch.set_rng_state(self._main)


def _global_states() -> dict[str, object]:
    """The global random generators a dataset's ``__getitem__`` may draw from, by the name of their
    module; each worker seeds its own of each (torch's ``_worker_loop``)."""
    import random

    import numpy as np

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}


def _same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, tuple):  # numpy's (name, keys, pos, ...) and Python's (version, state, gauss)
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    if hasattr(a, "shape"):  # numpy's keys
        return bool((a == b).all())
    return a == b


def draws_from_global_random(it) -> tuple[object, list[str]]:
    """``next(it)``, and which global random generators it drew from (a dataset at num_workers=0
    whose ``__getitem__`` augments with ``torch.rand``, ``np.random``, ``random``)."""
    before = _global_states()
    batch = next(it)
    after = _global_states()
    return batch, [name for name in before if not _same_state(before[name], after[name])]


def draw_iterator_seed(loader: DataLoader) -> None:
    """What torch draws when the user's loader makes an iterator (its workers' base seed), drawn
    here so the draws that follow are the untuned loader's (torch/utils/data/dataloader.py,
    ``_BaseDataLoaderIter.__init__``)."""
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)


# How often an explored configuration's iterator, waiting for a batch, checks that its workers live
# (torch's SIGCHLD handler no longer watches them: see checked_in_next). The loop is already
# waiting whenever it runs, so a shorter check costs nothing the loop would have used; a second
# keeps a failure's stall far below the batch time limit (HANG_S) on any machine.
LIVENESS_POLL_S = 1.0


def checked_in_next(torch_iterator) -> None:
    """A worker of this iterator that dies is reported by the iterator's own ``next()``, never
    wherever the main thread happens to be. torch's SIGCHLD handler raises a dead worker's error
    in whatever code runs then (the loop's own step, between two ``next()`` calls), where an
    explored configuration's failure could not be caught and handed back. So the iterator's pids
    leave that handler's watch, and its wait for a batch checks the workers' liveness every
    ``LIVENESS_POLL_S`` (torch's own check on a timed-out wait) within its time limit. Only for
    explored configurations: the user's own configuration keeps torch's behaviour."""
    if not getattr(torch_iterator, "_workers", None) or "_try_get_data" in torch_iterator.__dict__:
        return  # no workers, or done already (persistent workers: the same iterator each epoch)
    if torch_iterator._worker_pids_set:
        signal_handling._remove_worker_pids(id(torch_iterator))
        torch_iterator._worker_pids_set = False
    ref = weakref.ref(torch_iterator)  # no cycle: torch ends the workers when the iterator is freed
    try_get = type(torch_iterator)._try_get_data

    def polled(timeout: float = MP_STATUS_CHECK_INTERVAL) -> tuple[bool, object]:
        deadline = time.monotonic() + timeout
        while True:
            ok, data = try_get(ref(), max(min(LIVENESS_POLL_S, deadline - time.monotonic()), 0.0))
            if ok or time.monotonic() >= deadline:
                return ok, data

    torch_iterator._try_get_data = polled


def shut_down(torch_iterator, failed: bool = False) -> None:
    """End an iterator's workers now (one left for another configuration, or one that failed).
    ``failed``: one of its workers died; torch's SIGCHLD handler would report it again while the
    others are joined (it watches the iterator's pids until the end of the shutdown), so they
    are taken off its watch first."""
    stop = getattr(torch_iterator, "_shutdown_workers", None)
    if stop is None:
        return
    if failed and getattr(torch_iterator, "_worker_pids_set", False):
        signal_handling._remove_worker_pids(id(torch_iterator))
        torch_iterator._worker_pids_set = False
    stop()
