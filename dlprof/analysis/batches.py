"""One row of figures per batch, in plain Python: what the training process needs (dlprof.autotune's
windows, a trial's statistics) without importing pandas there. Pure, no torch.

``stages.batch_frame`` is the same rows as a DataFrame. Times in ms; ``*_at_ms`` are offsets from
the start of the run.
"""
from __future__ import annotations

import math

from dlprof.records import ProfileRun

STAGES = ("fetch", "collate", "pin", "wait", "transfer", "step")
BATCH_COLUMNS = ["epoch", "batch", "worker_id", "worker_pid", "samples", "fetch_mode", "fetch_ms",
                 "fetch_per_sample_ms", "collate_ms", "pin_ms", "pin_cpu_ms", "pin_wait_ms", "wait_ms",
                 "transfer_ms", "step_ms", "fetch_at_ms", "wait_at_ms", "first_in_epoch"]
_NS_PER_MS = 1e6


def batch_rows(run: ProfileRun) -> list[dict]:
    """One dict per batch, keyed by BATCH_COLUMNS."""
    origin = run.epochs[0].iter_start_ns if run.epochs else 0
    first_of_epoch = {e.epoch for e in run.epochs}
    rows = []
    for b in run.batches:
        fetch_ns = b.fetch_end_ns - b.fetch_start_ns
        rows.append({
            "epoch": b.epoch,
            "batch": b.index,
            "worker_id": b.worker_id,
            "worker_pid": b.worker_pid,
            "samples": b.samples,
            "fetch_mode": b.fetch_mode,
            "fetch_ms": fetch_ns / _NS_PER_MS,
            "fetch_per_sample_ms": _per_sample_ms(b.sample_marks_ns, b.samples, fetch_ns),
            "collate_ms": (b.collate_end_ns - b.collate_start_ns) / _NS_PER_MS,
            "pin_ms": (b.pin_end_ns - b.pin_start_ns) / _NS_PER_MS,
            "pin_cpu_ms": b.pin_cpu_ns / _NS_PER_MS,
            "pin_wait_ms": _pin_wait_ns(b) / _NS_PER_MS,
            "wait_ms": (b.wait_end_ns - b.wait_start_ns) / _NS_PER_MS,
            "transfer_ms": b.transfer_ns / _NS_PER_MS,
            "step_ms": b.step_ns / _NS_PER_MS,
            "fetch_at_ms": (b.fetch_start_ns - origin) / _NS_PER_MS if b.fetch_start_ns else float("nan"),
            "wait_at_ms": (b.wait_start_ns - origin) / _NS_PER_MS,
            "first_in_epoch": b.index == 0 and b.epoch in first_of_epoch,
        })
    return rows


def mean(values: list[float]) -> float:
    """NaN for no values, as pandas' mean."""
    return math.fsum(values) / len(values) if values else float("nan")


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as pandas' and numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _pin_wait_ns(b) -> int:
    """The part of the loop's wait for this batch that fell while the batch was with the
    pin-memory thread: queued for it after collate, or being pinned. 0 without pinning."""
    if not b.pin_end_ns:
        return 0
    began = b.collate_end_ns or b.pin_start_ns
    return max(0, min(b.wait_end_ns, b.pin_end_ns) - max(b.wait_start_ns, began))


def _per_sample_ms(marks: list[int], samples: int, fetch_ns: int) -> float:
    """Mean fetch time per sample: from the marks when known, else the batch's share."""
    n = min(samples, len(marks) - 1)
    if n > 0:
        return (marks[n] - marks[0]) / n / _NS_PER_MS
    return fetch_ns / samples / _NS_PER_MS if samples else 0.0
