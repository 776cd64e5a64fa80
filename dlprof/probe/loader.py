"""Wrapping a user's DataLoader so that iterating it records every stage of every batch.

The user's loader is never modified. A shallow copy (the "shadow") shares its dataset,
sampler and generator, so it yields the same batches in the same order under the same seed;
only its ``dataset`` and ``collate_fn`` are swapped for the timing proxies of ``hooks``.
"""
from __future__ import annotations

import copy
import time
import weakref
from array import array
from time import perf_counter_ns
from typing import Callable, Collection

from torch.utils.data import DataLoader

from dlprof.probe.device import DeviceMover
from dlprof.probe.hooks import CollateProxy, IndexSamplerProxy, StampedBatch, failing_index
from dlprof.records import BatchRecord, EpochRecord, LoaderConfig



def _fetch_mode(loader: DataLoader) -> str:
    if loader._dataset_kind == 1:  # _DatasetKind.Iterable
        return "stream"
    return "batch" if getattr(loader.dataset, "__getitems__", None) else "sample"


def _name(obj) -> str:
    if obj is None:
        return "None"
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{name}" if module else name


def describe_loader(loader: DataLoader, device: str | None) -> LoaderConfig:
    dataset = loader.dataset
    try:
        dataset_len = len(dataset)
    except TypeError:
        dataset_len = None
    sampler = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    return LoaderConfig(
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        pin_memory=bool(loader.pin_memory),
        prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
        persistent_workers=bool(loader.persistent_workers),
        drop_last=bool(loader.drop_last),
        dataset_type=_name(type(dataset)),
        dataset_kind="iterable" if loader._dataset_kind == 1 else "map",
        dataset_len=dataset_len,
        # a batch sampler names the sampler inside it: BatchSampler(DistributedSampler)
        sampler=_name(type(sampler)) + (f"({_name(type(sampler.sampler))})" if hasattr(sampler, "sampler") else ""),
        collate_fn=_name(loader.collate_fn),
        device=device,
    )


class LoaderProbe:
    """Iterable over the user's batches; each ``iter()`` is one epoch, recorded."""

    def __init__(self, loader: DataLoader, device, on_epoch_start: Callable[[], None],
                 batches: list[BatchRecord], epochs: list[EpochRecord], hold: bool = True,
                 start: Callable = iter, sync: Callable[[], None] | None = None) -> None:
        """``hold=False``: keep the user's loader weakly (``dlprof run`` hangs the probe on the
        loader itself, which then ends with its workers when the program drops it). ``start``:
        how an epoch's torch iterator is made from the copy (``dlprof run``: DataLoader's own
        ``__iter__``, under a subclass's override that called it)."""
        if not isinstance(loader, DataLoader):
            raise TypeError(f"dlprof.profile expects a torch.utils.data.DataLoader, got {type(loader).__name__}")
        self._loader = loader if hold else weakref.ref(loader)
        self._start = start
        self._shadow = copy.copy(loader)  # copies __dict__; bypasses DataLoader.__setattr__ guards
        shadow = self._shadow.__dict__
        shadow["_iterator"] = None  # own persistent workers, not the user's
        shadow["_dlprof_shadow"] = True  # iterated as a plain DataLoader, never profiled again
        sampler_key = "batch_sampler" if loader.batch_sampler is not None else "sampler"
        in_flight = loader.num_workers * (loader.prefetch_factor or 2)
        self._sampler_key = sampler_key
        self._indices = IndexSamplerProxy(getattr(loader, sampler_key), loader.num_workers == 0, in_flight)
        shadow[sampler_key] = self._indices
        shadow["collate_fn"] = CollateProxy(loader.collate_fn, _fetch_mode(loader))
        pinned = bool(loader.pin_memory)
        self.mover = DeviceMover(device, non_blocking=pinned) if device is not None else None
        self._on_epoch_start = on_epoch_start
        self.sync = sync
        # the current epoch's torch iterator, weakly: its workers for post-mortems, yet the
        # workers end when the loop drops the iterator (a ``break``), as with the bare loader
        self._torch_iter = lambda: None
        self._current = lambda: None  # the epoch iterator made last, weakly (not_a_step)
        self._batches = batches
        self._epochs = epochs
        self._lean = False  # lean(): epochs counted, batches not recorded

    @property
    def loader(self) -> DataLoader | None:
        """The user's loader (None once a weakly held one is gone)."""
        return self._loader() if isinstance(self._loader, weakref.ref) else self._loader

    def __len__(self) -> int:
        return len(self._shadow)

    def __iter__(self) -> "_EpochIterator":
        # len(loader) of an IterableDataset arms torch's "length exceeded" warning on the loader
        # it was called on: the user's, maybe after this copy was made
        called = getattr(self.loader, "__dict__", {}).get("_IterableDataset_len_called")
        if called is not None:
            self._shadow.__dict__["_IterableDataset_len_called"] = called
        reused = self._shadow._iterator is not None
        self._on_epoch_start()
        start = perf_counter_ns()
        it = self._start(self._shadow)
        self._torch_iter = weakref.ref(it)
        ready = perf_counter_ns()
        record = EpochRecord(epoch=len(self._epochs), iter_start_ns=start, iter_ready_ns=ready,
                             first_batch_ns=0, end_ns=0, batches=0, workers_reused=reused,
                             completed=False)
        self._epochs.append(record)
        kind = _LeanEpochIterator if self._lean else _EpochIterator if self.sync is None else _SyncedEpochIterator
        epoch = kind(self, it, record)
        self._current = weakref.ref(epoch)
        return epoch

    def lean(self, now: bool = False) -> None:
        """From the next epoch on, batches are counted in their epoch's record, not recorded one by
        one, and the copy iterates with the user's own sampler and collate_fn; ``now``: the epoch
        being iterated too, from its next batch (its torch iterator keeps the proxies it was made
        with, whose stamps are dropped, so only its records stop): ``autotune`` once
        settled, which needs no more measurements and may serve a run of millions of batches (a
        record, with its per-sample clock marks, is about 1 KB at 64 samples; its timing about 40 us a batch
        of 64 streamed samples). Workers kept from before still stamp their batches; the stamp
        is dropped here. Only without a device mover: moving a batch is timed into its record."""
        if self.mover is not None:
            raise ValueError("a probe that moves batches to a device records every batch")
        if not self._lean:
            self._lean = True
            self._indices.lean = True  # a kept (persistent) iterator holds the proxy: it hands on plain indices
            shadow = self._shadow.__dict__
            shadow[self._sampler_key] = self._indices.inner
            shadow["collate_fn"] = shadow["collate_fn"].inner
        current = self._current() if now else None
        if type(current) is _EpochIterator:
            current.__class__ = _LeanEpochIterator  # the same slots: only the hot path changes

    def not_a_step(self, ns: int) -> None:
        """``ns`` spent by the code iterating (a scan's own checks, between two batches) is not
        the training step's: it leaves the step time of the batch being stepped on."""
        epoch = self._current()
        if epoch is not None and epoch._last is not None:
            epoch._last_handed_ns += ns

    def failed_batch(self) -> tuple[object, object]:
        """After the loader raised: (the dataset index that failed, the indices of its batch),
        each None where unknown. The index is known when the main process fetches
        (num_workers=0); with workers only the batch is, the one the loop was waiting for."""
        position = self._epochs[-1].batches if self._epochs else 0
        return failing_index() if self._shadow.num_workers == 0 else None, self._indices.indices_of(position)

    def dead_workers(self, named: Collection[int] = ()) -> list[tuple[int, int, int]]:
        """(worker id, pid, exit code) of the current iterator's workers that have exited; a
        negative exit code is the signal that killed the worker. A worker of ``named`` (pids
        torch said are dead) is waited for up to a second: torch can raise before its exit
        code is readable, and the same death must read the same every time."""
        workers = getattr(self._torch_iter(), "_workers", None) or []
        dead = []
        deadline = perf_counter_ns() + 1_000_000_000
        for wid, proc in enumerate(workers):
            try:
                code = proc.exitcode  # polls without blocking: a live worker is not waited for
                while code is None and proc.pid in named and perf_counter_ns() < deadline:
                    time.sleep(0.01)
                    code = proc.exitcode
            except ValueError:  # a process object already closed
                continue
            if code is not None and code != 0:
                dead.append((wid, proc.pid, code))
        return dead

    def _end_epoch(self, record: EpochRecord, end_ns: int, completed: bool) -> None:
        record.end_ns = end_ns
        record.completed = completed
        if self.mover is not None:
            self.mover.resolve()


class _EpochIterator:
    """The hot path: one ``__next__`` per batch, kept to a few clock reads and one record."""

    __slots__ = ("_probe", "_it", "_epoch", "_batches", "_mover", "_last", "_last_handed_ns", "_done",
                 "_raised_after", "__weakref__")

    def __init__(self, probe: LoaderProbe, it, epoch: EpochRecord) -> None:
        self._probe = probe
        self._it = it
        self._epoch = epoch
        self._batches = probe._batches
        self._mover = probe.mover
        self._last: BatchRecord | None = None
        self._last_handed_ns = 0
        self._done = False
        self._raised_after = -1  # the epoch's batch count when the last exception came through

    def __iter__(self):
        return self

    def __next__(self):
        asked = perf_counter_ns()
        last = self._last
        if last is not None:
            last.step_ns = asked - self._last_handed_ns
        if self._done:
            raise StopIteration
        try:
            item = next(self._it)
        except StopIteration:
            self._finish(asked, completed=True)
            raise
        except BaseException:
            # torch's iterator goes on after an exception (a loop that catches a bad batch gets
            # the next one), and so does this one: the epoch is closed as it stands, and a later
            # batch or the end of the epoch updates it
            self._probe._end_epoch(self._epoch, perf_counter_ns(), completed=False)
            self._last = None  # the time until the next ask is the handler's, not a step
            self._raised_after = self._epoch.batches
            raise
        got = perf_counter_ns()
        epoch = self._epoch
        if type(item) is StampedBatch:
            batch = item.batch
            wid, pid, f0, c0, c1, samples, marks, mode = item.stamp
            record = BatchRecord(epoch.epoch, epoch.batches, wid, pid, samples, f0, c0, marks or array("q"),
                                 c0, c1, asked, got, item.pin_start_ns, item.pin_end_ns, 0, 0, mode,
                                 item.pin_cpu_ns)
        else:  # a dataset dlprof does not wrap: only the main-process view is known
            batch = item
            record = BatchRecord(epoch.epoch, epoch.batches, -1, 0, 0, 0, 0, array("q"), 0, 0, asked, got,
                                 fetch_mode="unknown")
        if epoch.batches == 0:
            epoch.first_batch_ns = got
        epoch.batches += 1
        if self._mover is not None:
            batch = self._mover.move(batch, record)
        self._batches.append(record)
        self._last = record
        self._last_handed_ns = perf_counter_ns()
        return batch

    def __getattr__(self, name: str):
        """Attributes of torch's iterator (``_workers``, ``_pin_memory_thread``, ...), as the bare
        loader's iterator has them; only looked up when the attribute is not the wrapper's own."""
        if name == "_it":  # not set yet (a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self._it, name)

    def _finish(self, end_ns: int, completed: bool) -> None:
        if not self._done:
            self._done = True
            self._probe._end_epoch(self._epoch, end_ns, completed)

    def close(self) -> None:
        """The loop left early (``break``): close the epoch with the last step counted."""
        now = perf_counter_ns()
        if self._raised_after == self._epoch.batches:  # left by the exception: the epoch ended then
            self._done = True
            return
        if self._last is not None and not self._done:
            self._last.step_ns = now - self._last_handed_ns
        self._finish(now, completed=False)

    def __del__(self):
        # A ``for`` loop that breaks drops the iterator without calling close().
        if not self._done:
            self.close()


class _LeanEpochIterator(_EpochIterator):
    """After ``LoaderProbe.lean()``: the epoch's batches counted, none recorded, no clock read but
    the first batch's and the end's."""

    __slots__ = ()

    def __next__(self):
        if self._done:
            raise StopIteration
        try:
            item = next(self._it)
        except StopIteration:
            self._finish(perf_counter_ns(), completed=True)
            raise
        except BaseException:
            self._probe._end_epoch(self._epoch, perf_counter_ns(), completed=False)
            self._raised_after = self._epoch.batches
            raise
        epoch = self._epoch
        if not epoch.batches:
            epoch.first_batch_ns = perf_counter_ns()
        epoch.batches += 1
        return item.batch if type(item) is StampedBatch else item


class _SyncedEpochIterator(_EpochIterator):
    """With ``sync``: the device's queued work ends before the ask is timed (a class of its own,
    so the default hot path has no test for it)."""

    __slots__ = ()

    def __next__(self):
        self._probe.sync()
        return _EpochIterator.__next__(self)
