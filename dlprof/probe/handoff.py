"""What receiving one batch from a DataLoader worker costs the training process, measured on a
copy of a real batch (``dlprof.autotune`` on an iterable dataset).

A worker hands a batch over as torch's multiprocessing pickling does: each tensor's storage
is moved into shared memory and its file descriptor is passed; the training process unpickles
it, receiving the descriptor and mapping the memory, once per tensor. That receiving happens in
the training process for every batch, in the loop's own time, and no number of workers takes
it over. This module times it: a forked helper process pickles copies of the batch as a worker
would, and this process unpickles them, in the CPU time of the thread that unpickles.

The helper is a process, not a thread of this one, because a thread leaves a cost behind: the
descriptors are served by multiprocessing's resource sharer, a thread of the process that
pickled, and once a process has started any thread glibc takes the slow, locked path of every
mutex and ``malloc`` for the rest of its life (``__libc_single_threaded`` never goes back).
A training loop that is single-threaded (``OMP_NUM_THREADS=1``, no workers) releases and takes
the GIL hundreds of times a batch (each tensor made or freed): a thread started once cost such a
loop 1-2% of its CPU for good (benchmarks/thread_cost.py, reports/benchmarks/thread_cost.txt).
Without ``os.fork`` (Windows) the helper is a thread of this process.
"""
from __future__ import annotations

import io
import multiprocessing
import multiprocessing.resource_sharer as resource_sharer
import os
import pickle
import warnings
from multiprocessing.reduction import ForkingPickler
from time import perf_counter_ns, sleep, thread_time_ns

import torch
import torch.multiprocessing  # noqa: F401  (registers torch's reductions with ForkingPickler)
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.data import DataLoader, Dataset

# The fastest of up to this many receptions, within TIME_CAP_S: the cost without the machine's
# interruptions (a bound on what workers can gain wants the cost at its lowest); a large batch
# stops after the cap, so timing it costs the job a fraction of a second, once.
REPEATS = 5
TIME_CAP_S = 0.2
# The helper's longest wait for a pickled copy: a fork and a copy of the largest batch take well
# under a second; past this the helper is stuck (a lock held across the fork) and the cost unknown.
HELPER_WAIT_S = 10.0


def receive_ms(batch, repeats: int = REPEATS) -> float | None:
    """CPU milliseconds the training process takes to receive ``batch`` from a worker (the
    fastest of ``repeats``, fewer past TIME_CAP_S), or None when it cannot be timed: a batch
    without CPU tensors (nothing to hand over through shared memory, or tensors torch hands
    over otherwise), one that torch's pickling refuses, or a helper that did not answer.
    ``batch`` itself is left as it was (its tensors are copied first)."""
    leaves, _ = tree_flatten(batch)
    tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
    if not tensors or any(x.device.type != "cpu" or x.is_sparse for x in tensors):
        return None
    if not hasattr(os, "fork"):
        return _received_from_thread(batch, repeats)
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    helper = context.Process(target=_hand_over, args=(batch, theirs, mine), name="dlprof-handoff", daemon=True)
    try:
        with warnings.catch_warnings():  # Python 3.12's note on fork() in a multi-threaded process:
            warnings.simplefilter("ignore", DeprecationWarning)  # the helper only pickles, as a worker does
            helper.start()
    except OSError:  # no fork now (memory, process limits): the cost is unknown, the job goes on
        mine.close()
        return None
    finally:
        theirs.close()

    def from_helper() -> bytes | None:
        mine.send_bytes(b"next")
        return mine.recv_bytes() if mine.poll(HELPER_WAIT_S) else None

    try:
        return _fastest_reception(from_helper, repeats)
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError):
        return None
    finally:
        try:
            mine.send_bytes(b"done")
        except OSError:  # the helper is gone
            pass
        mine.close()
        helper.join(HELPER_WAIT_S)
        if helper.exitcode is None:
            helper.kill()
            helper.join()


def _fastest_reception(pickled, repeats: int) -> float | None:
    """The fastest of ``repeats`` receptions (fewer past TIME_CAP_S) of what ``pickled()`` gives,
    in CPU milliseconds of this thread; None as soon as it gives nothing (b"" or None)."""
    times: list[float] = []
    began = perf_counter_ns()
    while len(times) < repeats and not (times and perf_counter_ns() - began > TIME_CAP_S * 1e9):
        data = pickled()
        if not data:
            return None
        start = thread_time_ns()
        received = pickle.loads(data)
        times.append((thread_time_ns() - start) / 1e6)
        del received
    return min(times)


def _pickled_copy(batch) -> bytes:
    """A copy of ``batch`` pickled as a worker pickles it: its storages moved into shared memory,
    their descriptors registered with this process's resource sharer."""
    copy = tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, batch)
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(copy)
    return buf.getvalue()  # copy freed: the storages are mapped anew by the receiver


def _hand_over(batch, conn, parents_end) -> None:
    """The helper process: a pickled copy each time the training process asks, as a worker
    (b"" when torch's pickling refuses it: it would in a worker too)."""
    parents_end.close()  # inherited: the training process's exit then ends the helper's recv
    torch.set_num_threads(1)  # as torch's worker loop
    try:
        while conn.recv_bytes() == b"next":
            try:
                data = _pickled_copy(batch)
            except (pickle.PicklingError, TypeError, AttributeError, RuntimeError, OSError):
                data = b""
            conn.send_bytes(data)
    except (EOFError, OSError):  # the training process is done with it
        pass


def _received_from_thread(batch, repeats: int) -> float | None:
    """``receive_ms`` without ``os.fork``: the descriptors come from a thread of this process."""
    listening = getattr(resource_sharer, "_resource_sharer", None)
    had_listener = listening is not None and getattr(listening, "_listener", None) is not None
    try:
        return _fastest_reception(lambda: _pickled_copy(batch), repeats)
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError, OSError):
        return None  # torch's pickling of this batch failed here: it would in a worker too, or differently
    finally:
        if not had_listener and listening is not None:
            resource_sharer.stop()  # the thread that passed the descriptors


class _Copies(Dataset):
    """``batch`` again and again, a copy each time (``batch_size=None``: each item is a batch)."""

    def __init__(self, batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, self.batch)


def worker_receive_ms(batch, batches: int = 60) -> float:
    """The reference ``receive_ms`` is checked against: the training thread's CPU milliseconds a
    batch while it iterates a real 1-worker DataLoader that has ``batches`` copies of ``batch``
    ready (receiving them, and the loop's own few microseconds). Starts a worker: for tests and
    benchmarks, not for a training job."""
    it = iter(DataLoader(_Copies(batch, batches + 1), batch_size=None, num_workers=1,
                         prefetch_factor=batches + 1))
    next(it)
    sleep(1.0)  # the worker makes its batches ahead
    start = thread_time_ns()
    count = sum(1 for _ in it)
    return (thread_time_ns() - start) / 1e6 / count
