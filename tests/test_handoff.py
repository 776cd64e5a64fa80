"""probe.handoff: what receiving a batch from a DataLoader worker costs the training process,
timed on a copy of the batch, against a real worker's hand-over in the same run."""
from __future__ import annotations

import ctypes
import multiprocessing.resource_sharer as resource_sharer
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from dlprof.probe.handoff import _received_from_thread, receive_ms, worker_receive_ms


def batch_of(tensors: int) -> dict:
    return {f"t{i}": torch.full((64, 16), float(i)) for i in range(tensors)}


def test_the_timed_reception_is_of_the_size_of_a_real_workers_hand_over():
    """benchmarks/handoff.py measures the ratio (reports/benchmarks/handoff.txt; the workers'
    ceiling counts half the timing, sweep.online.RECEIVE_SHARE). Bounds wide enough for a noisy
    machine."""
    batch = batch_of(8)
    estimate, real = receive_ms(batch), worker_receive_ms(batch)
    assert estimate is not None and 0 < estimate <= 2.5 * real, (estimate, real)
    assert estimate >= real / 20, (estimate, real)  # the same work, not a different thing


def test_a_batch_of_more_tensors_costs_more_to_receive():
    one, many = receive_ms(batch_of(1)), receive_ms(batch_of(32))
    assert many > 4 * one, (one, many)  # each tensor's storage comes as its own descriptor


@pytest.mark.parametrize("timed", [receive_ms, _received_from_thread], ids=["helper process", "thread"])
def test_the_batch_is_left_as_it_was_and_no_thread_is_left_running(timed):
    """Both ways (a forked helper; a thread of this process where there is no fork)."""
    batch = batch_of(3)
    before = {k: v.clone() for k, v in batch.items()}
    had = resource_sharer._resource_sharer._listener is not None
    assert timed(batch, 5) is not None
    assert all(torch.equal(batch[k], before[k]) and not batch[k].is_shared() for k in batch)
    assert (resource_sharer._resource_sharer._listener is not None) == had


SINGLE_THREADED = textwrap.dedent("""
    import ctypes, threading
    import torch
    from torch.utils.data import DataLoader, IterableDataset
    import dlprof
    from dlprof.probe.handoff import receive_ms

    flag = ctypes.c_char.in_dll(ctypes.CDLL(None), "__libc_single_threaded")

    class Stream(IterableDataset):
        def __iter__(self):
            return iter([torch.full((16,), float(i)) for i in range(640)])

    print("start", flag.value[0])
    assert receive_ms({"x": torch.ones(64, 16), "y": torch.zeros(64, 1)}) is not None
    print("receive_ms", flag.value[0])
    tuned = dlprof.autotune(DataLoader(Stream(), batch_size=64))
    for _ in range(2):
        assert sum(1 for _ in tuned) == 10
    assert tuned.result().run.tuning["receive_ms"] is not None
    print("autotune", flag.value[0])
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    print("thread", flag.value[0])
""")


def test_timing_the_reception_starts_no_thread_in_the_training_process():
    """A process that never started a thread keeps glibc's single-threaded fast paths (every
    mutex and malloc, the GIL's included); a thread started once loses them for good. So timing
    the reception, alone or in dlprof.autotune's first epoch of a loop without workers, leaves
    the process single-threaded; one thread started at the end shows the check can tell."""
    try:
        ctypes.c_char.in_dll(ctypes.CDLL(None), "__libc_single_threaded")
    except (AttributeError, ValueError, OSError):
        pytest.skip("not glibc 2.32 or later: no __libc_single_threaded to read")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # torch's intra-op threads: none started
    out = subprocess.run([sys.executable, "-c", SINGLE_THREADED], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    flags = dict(line.split() for line in out.stdout.splitlines())
    assert flags == {"start": "1", "receive_ms": "1", "autotune": "1", "thread": "0"}, flags


def test_a_batch_with_nothing_to_hand_over_is_not_timed():
    assert receive_ms([1, "a", None]) is None
    assert receive_ms({"ids": [1, 2, 3]}) is None
