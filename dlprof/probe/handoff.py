"""What receiving one batch from a DataLoader worker costs the training process, measured on a
copy of a real batch without starting a worker (``dlprof.autotune`` on an iterable dataset).

A worker hands a batch over as torch's multiprocessing pickling does: each tensor's storage
is moved into shared memory and its file descriptor is passed; the training process unpickles
it, receiving the descriptor and mapping the memory, once per tensor. That receiving happens in
the training process for every batch, in the loop's own time, and no number of workers takes
it over. This module times it: a copy of the batch is pickled as a worker would (not timed) and
unpickled as the training process would, in the CPU time of the thread that unpickles (the
descriptors come from a thread of this process here, from the worker in a real hand-over: the
wall time would count this process's threads taking turns, which a real hand-over does not).
"""
from __future__ import annotations

import io
import multiprocessing.resource_sharer as resource_sharer
import pickle
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


def receive_ms(batch, repeats: int = REPEATS) -> float | None:
    """CPU milliseconds the training process takes to receive ``batch`` from a worker (the
    fastest of ``repeats``, fewer past TIME_CAP_S), or None when it cannot be timed: a batch
    without CPU tensors (nothing to hand over through shared memory, or tensors torch hands
    over otherwise), or one that torch's pickling refuses. ``batch`` itself is left as it was
    (its tensors are copied first)."""
    leaves, _ = tree_flatten(batch)
    tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
    if not tensors or any(x.device.type != "cpu" or x.is_sparse for x in tensors):
        return None
    listening = getattr(resource_sharer, "_resource_sharer", None)
    had_listener = listening is not None and getattr(listening, "_listener", None) is not None
    times: list[float] = []
    began = perf_counter_ns()
    try:
        while len(times) < repeats and not (times and perf_counter_ns() - began > TIME_CAP_S * 1e9):
            copy = tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, batch)
            buf = io.BytesIO()
            ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(copy)
            del copy  # as in another process: the storages are mapped anew, not found in torch's cache
            data = buf.getvalue()
            start = thread_time_ns()
            received = pickle.loads(data)
            times.append((thread_time_ns() - start) / 1e6)
            del received
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError, OSError):
        return None  # torch's pickling of this batch failed here: it would in a worker too, or differently
    finally:
        if not had_listener and listening is not None:
            # the descriptors went through multiprocessing's resource sharer, which started a
            # thread in this process to pass them: stop it, as the process was before
            resource_sharer.stop()
    return min(times)


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
