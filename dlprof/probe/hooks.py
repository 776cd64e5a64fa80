"""The objects that ride along with a DataLoader's work and time it where it happens.

dlprof leaves the user's dataset untouched (a worker_init_fn still finds the user's own
object in ``get_worker_info().dataset``). It swaps two things in a private copy of the loader:

* the index sampler: each batch of indices it yields becomes a ``TimedIndices`` list. The
  fetching process notes when the indices arrive (when they are unpickled in a worker, or
  yielded in the main process with ``num_workers=0``), and iterating them, which the DataLoader's
  fetcher does once per sample, stamps the clock between samples. No dlprof frame is on the
  stack while ``__getitem__`` runs, so a dataset's exception and its traceback are unchanged.
* ``collate_fn``: ``CollateProxy`` times the user's collate function and returns the batch
  wrapped in a ``StampedBatch`` that carries the worker's timings to the main process inside
  the batch itself: no extra channel, no extra synchronisation.

``StampedBatch.pin_memory`` is what the DataLoader's pin-memory thread calls, so pinning is
timed there. The main process unwraps the batch before the user sees it.

Hot-path cost: per sample one generator step, one clock read and one append to an array of
64-bit ints (one object a batch, not a Python int a mark: a kept record is 4x smaller and leaves
no scattered ints behind in the training process's heap); per batch a few more. Everything else
is deferred to the main process or to analysis.
"""
from __future__ import annotations

import os
from array import array
from collections import deque
from time import perf_counter_ns, thread_time_ns

from torch.utils.data import get_worker_info

# Per process: (arrival_ns, TimedIndices or None) of the batch being fetched. Fetching and
# collating one batch run back to back in one process, so the collate proxy reads what the
# arrival of that batch's indices left here.
_arrival: tuple[int, "TimedIndices | None"] | None = None
_pid = os.getpid()  # cached: a syscall per batch otherwise; a forked worker resets it
os.register_at_fork(after_in_child=lambda: globals().update(_pid=os.getpid()))


class TimedIndices(list):
    """A batch of indices that stamps the clock each time the fetcher asks for the next one."""

    __slots__ = ("marks",)

    def __iter__(self):
        marks = self.marks = array("q")
        append = marks.append
        for index in list.__iter__(self):
            append(perf_counter_ns())
            yield index
        append(perf_counter_ns())  # the fetcher asked past the last index: fetching is done

    def __reduce__(self):
        return (_arrive_list, (list.copy(self),))  # list(self) would run __iter__ and stamp


class _Carrier:
    """Carries the indices of one batch to a worker; unpickling it there notes their arrival."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __reduce__(self):
        value = self.value
        return (_arrive_list if type(value) is list else _arrive_value, (value,))


def _arrive_list(indices: list) -> TimedIndices:
    global _arrival
    timed = TimedIndices(indices)
    timed.marks = None
    _arrival = (perf_counter_ns(), timed)
    return timed


def _arrive_value(value):
    global _arrival
    _arrival = (perf_counter_ns(), None)
    return value


class IndexSamplerProxy:
    """Wraps the loader's batch sampler (or sampler, when batching is off).

    With workers it remembers the last ``in_flight`` index batches it handed out (one deque
    append per batch), so that when a worker fails, the indices of the batch it was building
    are known in the main process: the DataLoader delivers batches in order, so the failed one
    is the next one the training loop was waiting for.
    """

    def __init__(self, inner, in_main_process: bool, in_flight: int = 0) -> None:
        self.inner = inner
        self.in_main_process = in_main_process
        self.recent: deque = deque(maxlen=in_flight + 2)
        self.handed_out = 0  # index batches handed out in the current pass
        self.lean = False  # LoaderProbe.lean(): from the next pass on, the indices go as they are

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        # the sampler's iter() now, when torch calls it (a torch iterator is made), not at the
        # first batch as a generator would: a sampler whose iter() binds state (a shared index
        # stream, a draw) binds it to this iterator even when two are alive at once
        inner = iter(self.inner)
        if self.lean:
            return inner
        return self._main(inner) if self.in_main_process else self._workers(inner)

    @staticmethod
    def _main(inner):
        for item in inner:  # num_workers=0: the fetch follows the yield at once
            yield _arrive_list(item) if type(item) is list else _arrive_value(item)

    def _workers(self, inner):
        recent = self.recent  # the arrival is noted when the worker unpickles the item
        recent.clear()
        self.handed_out = 0
        for self.handed_out, item in enumerate(inner, 1):
            recent.append(item)
            yield _Carrier(item)

    def indices_of(self, position: int):
        """The indices of the ``position``-th batch (0-based) of the current pass, if still held."""
        if self.in_main_process:  # the batch being fetched when the dataset raised
            timed = _fetching()
            return list.copy(timed) if timed is not None else None
        first = self.handed_out - len(self.recent)
        return self.recent[position - first] if first <= position < self.handed_out else None


def _fetching() -> "TimedIndices | None":
    """In this process: the indices of the batch being fetched, until its collate succeeds."""
    return _arrival[1] if _arrival is not None else None


def failing_index():
    """With num_workers=0: the index whose ``__getitem__`` raised, if the fetcher was walking one."""
    timed = _fetching()
    marks = timed.marks if timed is not None else None
    if not marks or len(marks) > len(timed):
        return None  # not iterated yet, or every index was fetched (collate failed)
    return timed[len(marks) - 1]


class StampedBatch:
    """A batch with the timings of the worker that built it; unwrapped in the main process."""

    __slots__ = ("batch", "stamp", "pin_start_ns", "pin_end_ns", "pin_cpu_ns")

    def __init__(self, batch, stamp, pin_start_ns: int = 0, pin_end_ns: int = 0, pin_cpu_ns: int = 0) -> None:
        self.batch = batch
        # (worker_id, pid, fetch_start, collate_start (= fetch end), collate_end, samples,
        #  per-sample clock marks or None, fetch_mode)
        self.stamp = stamp
        self.pin_start_ns = pin_start_ns
        self.pin_end_ns = pin_end_ns
        self.pin_cpu_ns = pin_cpu_ns  # CPU time of the pin-memory thread on this batch

    def pin_memory(self, *_args):
        # Called by torch.utils.data._utils.pin_memory.pin_memory in the pin-memory thread.
        from torch.utils.data._utils.pin_memory import pin_memory

        start, cpu_start = perf_counter_ns(), thread_time_ns()
        pinned = pin_memory(self.batch)
        return StampedBatch(pinned, self.stamp, start, perf_counter_ns(), thread_time_ns() - cpu_start)

    def __reduce__(self):
        return (StampedBatch, (self.batch, self.stamp, self.pin_start_ns, self.pin_end_ns, self.pin_cpu_ns))


class CollateProxy:
    """Times the user's collate_fn and stamps the batch with this process's fetch timings.

    ``fetch_mode``: "sample" (one ``__getitem__`` per index: per-sample times are known),
    "batch" (``__getitems__``) or "stream" (an IterableDataset: one ``next()`` per sample).
    """

    __slots__ = ("inner", "fetch_mode")

    def __init__(self, inner, fetch_mode: str) -> None:
        self.inner = inner
        self.fetch_mode = fetch_mode

    def __call__(self, data):
        global _arrival
        start = perf_counter_ns()
        try:
            batch = self.inner(data)
        except BaseException as exc:
            # Drop this frame from the traceback (a bare raise adds no new entry), so the
            # worker's "Original Traceback" reads exactly as it would without dlprof.
            exc.__traceback__ = exc.__traceback__.tb_next
            raise
        end = perf_counter_ns()
        arrival, _arrival = _arrival, None
        if arrival is None:  # an index type dlprof could not follow
            fetch_start, marks, mode = start, None, "unknown"
        else:
            fetch_start, indices = arrival
            marks = indices.marks if indices is not None and self.fetch_mode != "batch" else None
            mode = self.fetch_mode
        info = get_worker_info()
        if type(data) is list:
            samples = len(data)
        else:  # __getitems__ returning its own type, or batch_size=None (a single sample)
            samples = len(indices) if arrival is not None and indices is not None else 1
        stamp = (-1 if info is None else info.id, _pid, fetch_start, start, end, samples,
                 marks, mode)
        return StampedBatch(batch, stamp)

    def __reduce__(self):
        return (CollateProxy, (self.inner, self.fetch_mode))
